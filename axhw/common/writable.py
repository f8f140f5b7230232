"""One line, not a traceback, when axhw cannot write where it keeps its caches.

Why a module: read-only homes are common in CI and containers. Every folder axhw writes on its own lies in
the cache (:func:`axhw.common.paths.cache_dir`) or under a finer variable that moves one part of it. When
such a folder cannot be written, the user needs the folder's name and the variable that moves it, in one
line, before any long work starts. :func:`check_writable` is that check (commands call it before their
work), and :func:`unwritable_error` turns an ``OSError`` met later into the same line (the command line's
last resort, so that no write failure is ever a raw traceback).

A cache that already holds what a command needs may be read-only: only commands that will write check.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from axhw.common.cli_checks import OutDirError, check_out_dir

__all__ = ["WRITE_ERRNOS", "CacheNotWritableError", "check_writable", "mover_of", "unwritable_error"]

#: errno values that mean "this folder cannot be written" (as opposed to a bug or a missing tool).
WRITE_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT})

#: The variables that move a part of the cache, most specific first; AXHW_CACHE moves all of it.
_MOVERS = ("AXHW_KERNEL_DIR", "AXHW_SIM_BUILD", "AXHW_RTL_REGISTRY", "AXHW_DATA", "AXHW_MULTIPLIER_LIBRARY",
           "AXHW_CACHE", "XDG_CACHE_HOME")


class CacheNotWritableError(ValueError):
    """A folder axhw must write cannot be written; the message is one line with the variable that moves it."""


def mover_of(path: str | os.PathLike[str]) -> str:
    """The environment variable that moves ``path``: the most specific one set whose folder holds it, else
    ``AXHW_CACHE`` (which moves the whole cache)."""
    p = Path(path).expanduser().absolute()
    for var in _MOVERS:
        value = os.environ.get(var)
        if value:
            root = Path(value).expanduser().absolute()
            if p == root or root in p.parents:
                return "AXHW_CACHE" if var == "XDG_CACHE_HOME" else var
    return "AXHW_CACHE"


def _message(path: Path, why: str, variable: str | None) -> str:
    var = variable or mover_of(path)
    where = f"${var}" + (f" (now {os.environ[var]})" if os.environ.get(var) else "")
    return f"cannot write axhw's cache folder {path}: {why}; point {where} at a writable folder"


def check_writable(path: str | os.PathLike[str], variable: str | None = None) -> Path:
    """Return ``path`` if it can be created or written, else raise :class:`CacheNotWritableError`.

    ``variable``: the variable that moves this folder (default: found by :func:`mover_of`). Creates nothing.
    """
    p = Path(path).expanduser()
    try:
        return check_out_dir(p, "cache folder")
    except OutDirError as exc:  # its message is "cache folder <p>: <why>"
        why = str(exc).removeprefix(f"cache folder {p}: ")
        raise CacheNotWritableError(_message(p, why, variable)) from None


def unwritable_error(exc: OSError) -> CacheNotWritableError | None:
    """The one-line error for an ``OSError`` that means "cannot write here", or None for any other error."""
    if exc.errno not in WRITE_ERRNOS:
        return None
    path = Path(exc.filename) if exc.filename else None
    why = (exc.strerror or type(exc).__name__).lower()
    if path is None:
        return CacheNotWritableError(f"cannot write ({why}): point $AXHW_CACHE (and --out) at a writable folder")
    folder = path if path.is_dir() else path.parent
    return CacheNotWritableError(_message(folder, why, None))
