"""Where axhw finds its hardware flow files and where it writes builds and caches.

Why one module: axhw ships three folders of non-Python files that users know by their place in the
repository (``rtl/`` Jinja templates, ``sim/`` cocotb testbenches, ``power/`` flow scripts), and writes
builds (simulator builds, synthesis results, the verification registry, trained demo networks) that must
never land inside an installation. Every module asks here instead of computing paths from ``__file__``.

* :func:`resource_dir` finds ``rtl``/``sim``/``power``: in a source checkout (editable install) the
  top-level folders themselves; in an installed wheel the copies the build placed at ``axhw/_hw/<name>``
  (``pyproject.toml`` maps them there).
* :func:`cache_dir` is the root of everything axhw writes on its own: ``$AXHW_CACHE``, else
  ``$XDG_CACHE_HOME/axhw``, else ``~/.cache/axhw``. Finer variables (``$AXHW_SIM_BUILD``,
  ``$AXHW_RTL_REGISTRY``, ``$AXHW_DATA``, ``$AXHW_MULTIPLIER_LIBRARY``) still override single parts.

>>> resource_dir("rtl").joinpath("drum_mul.v.j2").is_file()
True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

__all__ = ["RESOURCES", "cache_dir", "resource_dir"]

Resource = Literal["rtl", "sim", "power"]
#: The non-Python folders of the hardware flow, and one file each that proves a folder is the real one.
RESOURCES: dict[str, str] = {"rtl": "drum_mul.v.j2", "sim": "mul_tb.v", "power": "synth.ys.j2"}

_PACKAGE = Path(__file__).resolve().parent.parent  # the axhw package (this file is axhw/common/paths.py)


def resource_dir(name: Resource) -> Path:
    """The folder holding axhw's ``rtl``, ``sim`` or ``power`` files (wheel copy first, then the checkout).

    Raises:
        FileNotFoundError: neither place has it (a broken installation); the message says how to repair it.
    """
    if name not in RESOURCES:
        raise ValueError(f"unknown resource {name!r}: valid names are {', '.join(RESOURCES)}")
    for candidate in (_PACKAGE / "_hw" / name, _PACKAGE.parent / name):
        if (candidate / RESOURCES[name]).is_file():
            return candidate
    raise FileNotFoundError(
        f"axhw's {name}/ files are missing from {_PACKAGE}: reinstall axhw (pip install --force-reinstall axhw) "
        "or run from a source checkout"
    )


def cache_dir(*parts: str) -> Path:
    """``$AXHW_CACHE`` (or ``$XDG_CACHE_HOME/axhw``, or ``~/.cache/axhw``) joined with ``parts``.

    Nothing is created here: writers create what they write (atomically, see :mod:`axhw.common.io`).
    """
    env = os.environ.get("AXHW_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "axhw"
    return root.joinpath(*parts)
