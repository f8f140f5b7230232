"""Checks the command line runs before any work, so that a bad option fails in one line and leaves nothing.

:func:`check_out_dir` validates an output folder (``--out``): every command calls it before loading data,
training or simulating, so a typo costs a second, not an hour of training that then cannot be saved.
It creates nothing: writability is probed with a temporary folder that is removed at once.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

__all__ = ["DATA_DIR_DEFAULT", "DATA_DIR_HELP", "OutDirError", "check_out_dir"]

#: Where data sets are cached when ``--data-dir`` is not given (:func:`axhw.data.registry.default_data_dir`).
DATA_DIR_DEFAULT = "$AXHW_DATA, else data/ in the axhw cache: $AXHW_CACHE/data or ~/.cache/axhw/data"
#: The help of every ``--data-dir``: one wording, naming both variables.
DATA_DIR_HELP = f"dataset cache (default: {DATA_DIR_DEFAULT})"


class OutDirError(ValueError):
    """An output folder that cannot be used; the message is one line and names the path."""


def check_out_dir(path: str | os.PathLike[str], option: str = "--out") -> Path:
    """Return ``path`` as a :class:`~pathlib.Path` if a folder can be created or written there.

    Refused, with a one-line :class:`OutDirError` (a ``ValueError``): an existing file (``--out`` is a
    folder), a path below a regular file, a folder (or the nearest existing parent of a missing one) that
    this user cannot write. Nothing is created or left behind.
    """
    out = Path(path).expanduser()
    if str(path) == "":
        raise OutDirError(f"{option} is empty: give a folder")
    if out.exists() and not out.is_dir():
        raise OutDirError(f"{option} {out}: is an existing file, not a folder ({option} names a folder)")
    existing = out
    while not existing.exists():
        if existing.is_symlink():  # a dangling link: writing through it would fail later
            raise OutDirError(f"{option} {out}: {existing} is a broken symbolic link")
        parent = existing.parent
        if parent == existing:
            break
        existing = parent
    if existing.exists() and not existing.is_dir():
        raise OutDirError(f"{option} {out}: {existing} is a file, so no folder can be created below it")
    if not os.access(existing, os.W_OK | os.X_OK):
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        why = "read-only file system" if read_only else "permission denied"
        raise OutDirError(f"{option} {out}: {existing} is not writable ({why})")
    try:  # os.access does not see read-only mounts, ACLs or full disks as reliably as trying
        os.rmdir(tempfile.mkdtemp(prefix=".axhw-probe-", dir=existing))
    except OSError as exc:
        why = "read-only file system" if exc.errno == errno.EROFS else (exc.strerror or type(exc).__name__)
        raise OutDirError(f"{option} {out}: cannot write in {existing} ({why.lower()})") from None
    return out
