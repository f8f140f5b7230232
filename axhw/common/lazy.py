"""Package attributes that load on first use (PEP 562), for the facades that re-export torch-heavy names.

Why: ``import axhw`` (and ``axhw.data``, ``axhw.approxann``) used to import torch (1-2 s) for names most
callers never touch, the command line first of all, which must answer ``--help`` or a typo at once.

>>> getattr_, dir_ = lazy_exports("axhw.common", {"dumps": "json"})
>>> getattr_("dumps")("x")
'"x"'
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, table: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package``: a name of ``table`` (name -> module that
    defines it) is imported on first access and then bound on the package, so later reads are plain."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *table})

    return __getattr__, __dir__
