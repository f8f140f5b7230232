"""Compile a kernel's C files into a cached shared library, declare its ctypes signatures from its header, and
the worker pool the kernels split rows over.

Why one module: both kernels (:mod:`~axhw.arith.kernels.lut`, :mod:`~axhw.arith.kernels.fused`) are C files of
this package (``lut.c`` with ``lut.h``, ``fused.c`` with ``fused.h``) compiled at first use by the system C
compiler (``$CC``, else ``cc``) into the cache (``$AXHW_KERNEL_DIR``, else ``$AXHW_CACHE``, else
``$XDG_CACHE_HOME/axhw``, else ``~/.cache/axhw``), named by a hash of the files' contents, the flags and the
platform so that an edited file or another machine never loads a stale build, and share one thread pool.

Why the header is parsed (ABI safety): ctypes calls C through signatures nothing checks, so a Python list that
disagrees with the C definition corrupts memory silently. Each kernel's header is the single declaration: the C
file includes it (the compiler checks every definition against it; ``-Wmissing-prototypes`` refuses an exported
function it lacks) and :func:`parse_header` turns it into the ``argtypes``/``restype`` :func:`bind` sets,
refusing any type outside its small table. Why ``-Wall -Wextra -Wconversion -Werror``: a warning is a failed
build, so a suspicious line never ships (the kernels then stay off with a warning quoting the compiler, and the
torch paths run). Why sanitizers: ``AXHW_KERNEL_SANITIZE=1`` builds with AddressSanitizer and UBSan
(``-asan-`` in the library's name); the slow test in ``tests/arith/test_kernels.py`` runs the kernel equality
tests against that build, so an out-of-bounds access or an overflow fails a test instead of passing unseen.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from axhw.common.writable import unwritable_error

__all__ = [
    "SANITIZE_FLAGS",
    "WARNING_FLAGS",
    "Header",
    "Kernel",
    "Prototype",
    "bind",
    "compile_flags",
    "compile_library",
    "compiler",
    "kernel_dir",
    "library_path_for",
    "load_library",
    "parse_header",
    "pool",
    "refused_openmp",
    "sanitize",
]

_lock = threading.Lock()
_pool_state: dict[str, object] = {}

#: Every build: warnings are errors; no exported function without a prototype (the header) in scope.
WARNING_FLAGS = ("-Wall", "-Wextra", "-Wconversion", "-Wmissing-prototypes", "-Wstrict-prototypes", "-Werror")
#: ``AXHW_KERNEL_SANITIZE=1``: AddressSanitizer and UBSan, the first report aborts (the process needs the
#: compiler's libasan preloaded: ``LD_PRELOAD=$(cc -print-file-name=libasan.so)``).
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-fno-sanitize-recover=all", "-g")


def kernel_dir() -> Path:
    """Where compiled kernels are cached (see the module docstring for the variables that move it)."""
    for var in ("AXHW_KERNEL_DIR", "AXHW_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "axhw"


def sanitize() -> bool:
    """Whether builds (and the libraries the kernels load) are the sanitized ones (``AXHW_KERNEL_SANITIZE``)."""
    return os.environ.get("AXHW_KERNEL_SANITIZE", "") not in ("", "0")


def compile_flags(flags: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The compiler's flags for a kernel with extra ``flags``: ``-O3``, warnings as errors, the sanitizers
    when :func:`sanitize`, a C99 shared object."""
    return ("-O3", *flags, *WARNING_FLAGS, *(SANITIZE_FLAGS if sanitize() else ()), "-shared", "-fPIC", "-std=c99")


def library_path_for(source: str, stem: str, flags: tuple[str, ...] = (),
                     headers: Mapping[str, str] | None = None) -> Path:
    """The cache path of a library compiled from ``source`` (and the ``headers`` it includes, name -> text)
    with extra compiler ``flags``: a hash of all of them, the full flags and the platform."""
    parts = [source, *(f"{name}\0{text}" for name, text in sorted((headers or {}).items())),
             platform.machine(), sys.platform, " ".join(compile_flags(flags))]
    tag = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    return kernel_dir() / (f"{stem}-asan-{tag}.so" if sanitize() else f"{stem}-{tag}.so")


def compiler() -> str | None:
    """The system C compiler (``$CC``, else ``cc``, ``gcc``, ``clang``), or None."""
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc) or shutil.which("gcc") or shutil.which("clang")


def compile_library(source: str, path: Path, force: bool = False, flags: tuple[str, ...] = (),
                    headers: Mapping[str, str] | None = None, name: str | None = None) -> Path:
    """Compile C ``source`` (written as ``name``, next to the ``headers`` it includes) into the shared library
    ``path`` with the system compiler and :func:`compile_flags` of ``flags``, atomically (parallel builders
    never see a partial file).

    Raises:
        RuntimeError: no C compiler, or the compile failed (the message carries the compiler's output).
    """
    if path.is_file() and not force:
        return path
    cc = compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (set $CC or install gcc); the torch paths run instead")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        for header, text in (headers or {}).items():
            (Path(tmp) / header).write_text(text)
        src = Path(tmp) / (name or path.stem + ".c")
        src.write_text(source)
        out = Path(tmp) / path.name
        proc = subprocess.run([cc, *compile_flags(flags), str(src), "-o", str(out)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"compiling {path.stem} failed ({cc}):\n{proc.stderr.strip()}")
        os.replace(out, path)
    return path


def refused_openmp(exc: RuntimeError) -> bool:
    """Whether a failed :func:`compile_library` was the compiler refusing OpenMP (``-fopenmp`` or ``omp.h``):
    the kernels built with OpenMP then build without it, on the package's thread pool."""
    return "openmp" in str(exc).lower() or "omp.h" in str(exc)


# --------------------------------------------------------------------------- the header: the one declaration
#: The C types a header may use, and their ctypes. Pointers to these, to ``void`` or to a struct the header
#: defines are ``c_void_p``, except one level to a struct: ``POINTER(struct)``.
_SCALARS: dict[str, Any] = {
    "int64_t": ctypes.c_int64,
    "int32_t": ctypes.c_int32,
    "int16_t": ctypes.c_int16,
    "int": ctypes.c_int,
    "double": ctypes.c_double,
    "float": ctypes.c_float,
}
_QUALIFIERS = frozenset({"const", "restrict"})
_IDENT = r"[A-Za-z_]\w*"
_DIRECTIVE = re.compile(rf"#\s*(?:ifndef\s+{_IDENT}|define\s+{_IDENT}|endif|include\s+<[\w./]+>)\s*")
_STRUCT = re.compile(rf"typedef\s+struct\s*\{{(?P<body>[^{{}}]*)\}}\s*(?P<name>{_IDENT})\s*;")
_FUNCTION = re.compile(r"(?P<ret>[\w\s*]+?)\s*\b(?P<name>axhw_\w+)\s*\((?P<params>[^()]*)\)")


@dataclass(frozen=True)
class Prototype:
    """One exported function: ctypes ``restype`` (None: void) and ``argtypes``, and the parameter names."""

    name: str
    restype: Any
    argtypes: tuple[Any, ...]
    params: tuple[str, ...]


@dataclass(frozen=True)
class Header:
    """A parsed header: its exported functions and its structs (as ctypes Structures), by name."""

    name: str
    functions: Mapping[str, Prototype]
    structs: Mapping[str, type[ctypes.Structure]]


def _ctype(tokens: list[str], structs: Mapping[str, type[ctypes.Structure]], what: str, void_ok: bool) -> Any:
    """The ctypes type of C type ``tokens`` (qualifiers, one base type, stars), or RuntimeError."""
    spelled = " ".join(tokens).replace("* ", "*")
    stars = tokens.count("*")
    first_star = tokens.index("*") if stars else len(tokens)
    base = [t for t in tokens[:first_star] if t not in _QUALIFIERS]
    if any(t not in _QUALIFIERS and t != "*" for t in tokens[first_star:]) or len(base) != 1:
        raise RuntimeError(f"{what}: cannot read the type {spelled!r} (one base type, then '*' and qualifiers)")
    (b,) = base
    if b not in _SCALARS and b not in structs and b != "void":
        raise RuntimeError(f"{what}: unknown type {b!r} (the parser knows {', '.join(_SCALARS)}, void, "
                           f"pointers, and the structs the header typedefs: {', '.join(structs) or 'none'})")
    if stars:
        return ctypes.POINTER(structs[b]) if stars == 1 and b in structs else ctypes.c_void_p
    if b == "void" and void_ok:
        return None
    if b not in _SCALARS:
        raise RuntimeError(f"{what}: {spelled!r} by value is not supported (only {', '.join(_SCALARS)})")
    return _SCALARS[b]


def _declarator(text: str, structs: Mapping[str, type[ctypes.Structure]], what: str) -> tuple[str, Any]:
    """``TYPE NAME`` -> (NAME, ctypes type)."""
    tokens = re.findall(rf"{_IDENT}|\S", text)
    bad = [t for t in tokens if t != "*" and not re.fullmatch(_IDENT, t)]
    if bad:
        raise RuntimeError(f"{what}: unexpected {bad[0]!r} in {text.strip()!r}")
    if len(tokens) < 2 or tokens[-1] == "*" or tokens[-1] in _QUALIFIERS or tokens[-1] in _SCALARS:
        raise RuntimeError(f"{what}: {text.strip()!r} needs a type and a name")
    return tokens[-1], _ctype(tokens[:-1], structs, f"{what} ({tokens[-1]})", void_ok=False)


def _struct(name: str, body: str, structs: Mapping[str, type[ctypes.Structure]],
            where: str) -> type[ctypes.Structure]:
    fields: list[tuple[str, Any]] = []
    for decl in body.split(";")[:-1]:
        first, *more = decl.split(",")
        fname, ftype = _declarator(first, structs, f"{where}: struct {name}")
        fields.append((fname, ftype))
        for extra in more:  # `double a, b, c;`: the later names share the first one's type
            if not re.fullmatch(rf"\s*{_IDENT}\s*", extra):
                raise RuntimeError(f"{where}: struct {name}: {extra.strip()!r} must be a plain field name")
            fields.append((extra.strip(), ftype))
    if body.split(";")[-1].strip() or not fields:
        raise RuntimeError(f"{where}: struct {name}: fields are `TYPE NAME[, NAME...];`")
    if len({f for f, _ in fields}) != len(fields):
        raise RuntimeError(f"{where}: struct {name}: a field name repeats")
    return type(name, (ctypes.Structure,), {"_fields_": fields})


def parse_header(text: str, name: str = "header") -> Header:
    """Parse a kernel header of the restricted format (see ``lut.h``): ``RET axhw_NAME(TYPE NAME, ...);``
    prototypes (over one or more lines), ``typedef struct { TYPE NAME, ...; } NAME;`` structs, comments,
    include guards and ``#include <...>``; types from the fixed table (:data:`_SCALARS`, ``void``, pointers,
    the structs defined before use).

    Raises:
        RuntimeError: anything else (an unknown type, an unnamed parameter, ``()``, a conditional), naming the
            line.
    """
    text = text.replace("\r\n", "\n")
    if "/*" in re.sub(r"/\*.*?\*/", "", text, flags=re.S):
        raise RuntimeError(f"{name}: an unterminated comment")
    # Blank out comments and the allowed directives, keeping the line count for messages.
    code = re.sub(r"/\*.*?\*/|//[^\n]*", lambda m: re.sub(r"[^\n]", " ", m.group()), text, flags=re.S)
    lines = code.split("\n")
    for i, line in enumerate(lines):
        if line.lstrip().startswith("#"):
            if not _DIRECTIVE.fullmatch(line.strip()):
                raise RuntimeError(f"{name} line {i + 1}: directive {line.strip()!r} is not allowed "
                                   "(only #ifndef/#define/#endif guards and #include <...>)")
            lines[i] = ""
    code = "\n".join(lines)
    structs: dict[str, type[ctypes.Structure]] = {}
    functions: dict[str, Prototype] = {}
    pos = 0
    while True:
        while pos < len(code) and code[pos].isspace():
            pos += 1
        if pos == len(code):
            break
        where = f"{name} line {code.count(chr(10), 0, pos) + 1}"
        s = _STRUCT.match(code, pos)
        if s:
            if s["name"] in structs or s["name"] in _SCALARS:
                raise RuntimeError(f"{where}: struct {s['name']} defined twice")
            structs[s["name"]] = _struct(s["name"], s["body"], structs, where)
            pos = s.end()
            continue
        end = code.find(";", pos)
        stmt = " ".join(code[pos:end if end >= 0 else len(code)].split())
        f = _FUNCTION.fullmatch(stmt) if end >= 0 else None
        if f is None:
            raise RuntimeError(f"{where}: {stmt!r} is not a prototype `RET axhw_NAME(TYPE NAME, ...);`"
                               " (exported names start with axhw_; one declaration ends with ';')")
        fname = f["name"]
        if fname in functions:
            raise RuntimeError(f"{where}: {fname} declared twice")
        restype = _ctype(re.findall(rf"{_IDENT}|\S", f["ret"]), structs, f"{where}: {fname} return", void_ok=True)
        params = f["params"].strip()
        if not params:
            raise RuntimeError(f"{where}: {fname}() must say (void) for no parameters")
        decls = [] if params == "void" else [
            _declarator(p, structs, f"{where}: {fname} parameter {i + 1}") for i, p in enumerate(params.split(","))]
        if len({n for n, _ in decls}) != len(decls):
            raise RuntimeError(f"{where}: {fname}: a parameter name repeats")
        functions[fname] = Prototype(fname, restype, tuple(t for _, t in decls), tuple(n for n, _ in decls))
        pos = end + 1
    if not functions:
        raise RuntimeError(f"{name}: declares no axhw_ function")
    return Header(name, functions, structs)


def bind(lib: ctypes.CDLL, header: Header) -> ctypes.CDLL:
    """Set ``argtypes`` and ``restype`` of every function of ``header`` on ``lib`` (RuntimeError where the
    library lacks one): the only place the kernels' ctypes signatures come from."""
    for proto in header.functions.values():
        try:
            fn = getattr(lib, proto.name)
        except AttributeError:
            raise RuntimeError(f"{lib._name} does not export {proto.name}, declared in {header.name}") from None
        fn.argtypes = list(proto.argtypes)
        fn.restype = proto.restype
    return lib


@functools.cache
def _parsed(text: str, name: str) -> Header:
    # One parse per header text: the ctypes Structure classes keep one identity (POINTER(struct) argtypes
    # accept only instances of the class they were made from).
    return parse_header(text, name)


@dataclass(frozen=True)
class Kernel:
    """A C kernel of this package: ``source`` (a ``.c`` file) including ``header`` (its exported prototypes),
    built as ``<stem>-<hash>.so`` with extra compiler ``flags``."""

    stem: str
    source: str
    header: str
    flags: tuple[str, ...] = ()

    @staticmethod
    def text(name: str) -> str:
        """A C file of this package (found through importlib.resources: works from an installed wheel)."""
        return resources.files(__package__ or "axhw.arith.kernels").joinpath(name).read_text(encoding="utf-8")

    def headers(self) -> dict[str, str]:
        return {self.header: self.text(self.header)}

    def library_path(self) -> Path:
        """The cache path: a hash of the source and header contents, the flags and the platform."""
        return library_path_for(self.text(self.source), self.stem, self.flags, self.headers())

    def build(self, force: bool = False, extra: tuple[str, ...] = ()) -> Path:
        """Compile into :meth:`library_path` (``extra`` flags, a fallback's define, do not move the path)."""
        return compile_library(self.text(self.source), self.library_path(), force=force,
                               flags=(*self.flags, *extra), headers=self.headers(), name=self.source)

    def declarations(self) -> Header:
        """The parsed header (RuntimeError if it leaves the restricted format)."""
        return _parsed(self.text(self.header), self.header)


def load_library(kernel: Kernel, build: Callable[[], Path], switch: str,
                 unavailable: str) -> tuple[ctypes.CDLL | None, Header]:
    """Build (on first use), load and bind a kernel: the library with every signature set from its header, and
    the parsed header; None for the library, with one warning ``unavailable: <why>``, where there is no
    compiler, the build fails, or ``$switch`` is ``0``. A header the parser refuses raises instead: that is a
    bug of ours, not a reason to fall back. So does a kernel folder that cannot be written
    (:class:`~axhw.common.writable.CacheNotWritableError`, naming the folder and the variable that moves it)."""
    header = kernel.declarations()
    if os.environ.get(switch, "1") == "0":
        return None, header
    try:
        lib = ctypes.CDLL(str(build()))
    except OSError as exc:
        # An unwritable kernel folder is the user's to fix (one line naming it), not a reason to run slowly.
        error = unwritable_error(exc)
        if error is not None:
            raise error from None
        warnings.warn(f"{unavailable}: {exc}", stacklevel=4)
        return None, header
    except RuntimeError as exc:
        warnings.warn(f"{unavailable}: {exc}", stacklevel=4)
        return None, header
    bind(lib, header)
    return lib, header


def pool(workers: int) -> ThreadPoolExecutor:
    """The kernels' shared thread pool of ``workers`` threads (ctypes calls release the GIL)."""
    # Keyed by pid: a forked child inherits the executor object but not its threads.
    key = (os.getpid(), workers)
    with _lock:
        if _pool_state.get("key") != key:
            _pool_state["pool"] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="axhw-kernel")
            _pool_state["key"] = key
        return _pool_state["pool"]  # type: ignore[return-value]
