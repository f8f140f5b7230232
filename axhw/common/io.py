"""Atomic file output: a reader (or a crash) sees the old file or the whole new one, never half of it.

Every artefact axhw writes (checkpoints, metrics, reports, registries, benchmark JSON) goes through here:
write to a temporary file in the destination directory, then ``os.replace`` it into place. The file gets
the permissions a plain ``open()`` would give it (0666 less the umask), not ``mkstemp``'s private 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_dir", "atomic_torch_save", "atomic_write", "atomic_write_json", "atomic_write_text", "locked"]


def _umask() -> int:
    """The process umask, read without changing it where Linux reports it (``os.umask`` sets it, briefly
    exposing other threads' new files to a wrong mask)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:  # mkstemp creates 0600; give the file the mode open() would (0666 less the umask)
            os.fchmod(fd, 0o666 & ~_umask())
        finally:
            os.close(fd)
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def atomic_write_text(text: str, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write_json(obj: Any, path: str | Path, indent: int | None = 2) -> Path:
    return atomic_write_text(json.dumps(obj, indent=indent), path)


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A folder built whole or not at all: the block fills a temporary folder beside ``path``, which then
    replaces ``path`` (an older one is removed first); an exception leaves ``path`` as it was and removes
    the temporary folder. Cache entries (synthesis runs) are published this way."""
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created, with its folder) for the duration of the block: writers
    of one shared file or build folder (parallel test workers, sweep processes) take turns."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
