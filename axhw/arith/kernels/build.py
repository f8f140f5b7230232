"""Compile a kernel's C source into a cached shared library, and the worker pool the kernels split rows over.

Why one module: both kernels (:mod:`~axhw.arith.kernels.lut`, :mod:`~axhw.arith.kernels.fused`) are C
sources compiled at first use by the system C compiler (``$CC``, else ``cc``) into the cache
(``$AXHW_KERNEL_DIR``, else ``$AXHW_CACHE``, else ``$XDG_CACHE_HOME/axhw``, else ``~/.cache/axhw``), named
by a hash of source, flags and platform so that an edited source or another machine never loads a stale
build, and share one thread pool.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["compile_library", "compiler", "kernel_dir", "library_path_for", "pool"]

_lock = threading.Lock()
_pool_state: dict[str, object] = {}


def kernel_dir() -> Path:
    """Where compiled kernels are cached (see the module docstring for the variables that move it)."""
    for var in ("AXHW_KERNEL_DIR", "AXHW_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "axhw"


def library_path_for(source: str, stem: str, flags: tuple[str, ...] = ()) -> Path:
    """The cache path of a library compiled from ``source`` with extra compiler ``flags`` ."""
    key = f"{source}|{platform.machine()}|{sys.platform}" + (f"|{' '.join(flags)}" if flags else "")
    tag = hashlib.sha256(key.encode()).hexdigest()[:16]
    return kernel_dir() / f"{stem}-{tag}.so"


def compiler() -> str | None:
    """The system C compiler (``$CC``, else ``cc``, ``gcc``, ``clang``), or None."""
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc) or shutil.which("gcc") or shutil.which("clang")


def compile_library(source: str, path: Path, force: bool = False, flags: tuple[str, ...] = ()) -> Path:
    """Compile C ``source`` into the shared library ``path`` with the system compiler (``-O3``, plus
    ``flags``), atomically."""
    if path.is_file() and not force:
        return path
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set $CC or install gcc); the torch paths run instead")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        src = Path(tmp) / (path.stem + ".c")
        src.write_text(source)
        out = Path(tmp) / path.name
        proc = subprocess.run(
            [cc, "-O3", *flags, "-shared", "-fPIC", "-std=c99", str(src), "-o", str(out)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"compiling {path.stem} failed ({cc}):\n{proc.stderr.strip()}")
        os.replace(out, path)
    return path


def pool(workers: int) -> ThreadPoolExecutor:
    """The kernels' shared thread pool of ``workers`` threads (ctypes calls release the GIL)."""
    # Keyed by pid: a forked child inherits the executor object but not its threads.
    key = (os.getpid(), workers)
    with _lock:
        if _pool_state.get("key") != key:
            _pool_state["pool"] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="axhw-kernel")
            _pool_state["key"] = key
        return _pool_state["pool"]  # type: ignore[return-value]
