"""Module paths from before the layered layout (``docs/architecture.md``), importable for one release.

Why a finder rather than a file per old module: the package's folders are the layers, and 50 one-line shims at
the root would be the clutter the layout removes. ``import axhw.multipliers`` (or ``from axhw.train import
TrainConfig``) still works and warns once with the new path; the old module name gives an alias whose
attributes are those of the module that now holds the code, so checkpoints and caches that pickled an old
path still load. Nothing inside axhw imports an old path (``tests/test_architecture.py`` checks it).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings
from typing import Any

__all__ = ["ALSO", "MOVED", "install", "moved_attribute"]

#: Old module -> the module that holds its code now.
MOVED: dict[str, str] = {
    "axhw.io": "axhw.common.io",
    "axhw.paths": "axhw.common.paths",
    "axhw.runtime": "axhw.common.runtime",
    "axhw.report": "axhw.common.tables",
    "axhw.cli_checks": "axhw.common.cli_checks",
    "axhw.fixedpoint": "axhw.arith.fixedpoint",
    "axhw.intgemm": "axhw.arith.intgemm",
    "axhw.multipliers": "axhw.arith.multipliers",
    "axhw.library": "axhw.arith.library",
    "axhw.verification": "axhw.arith.verification",
    "axhw.sram": "axhw.arith.sram",
    "axhw.lutkernel": "axhw.arith.kernels.lut",
    "axhw.hwkernel": "axhw.arith.kernels.fused",
    "axhw.quant": "axhw.golden.network",
    "axhw.fastpath": "axhw.nn.fused",
    "axhw.graph": "axhw.nn.fx.trace",
    "axhw.graphops": "axhw.nn.fx.ops",
    "axhw.graphint": "axhw.nn.fx.lower",
    "axhw.convert": "axhw.nn.convert",
    "axhw.train": "axhw.training.trainer",
    "axhw.sensitivity": "axhw.training.sensitivity.network",
    "axhw.sensitivity_estimate": "axhw.training.sensitivity.estimate",
    "axhw.sensitivity_kernels": "axhw.training.sensitivity.kernels",
    "axhw.evaluate": "axhw.training.evaluate",
    "axhw.factories": "axhw.training.factories",
    "axhw.models": "axhw.training.models",
    "axhw.sweep": "axhw.training.sweep",
    "axhw.cli": "axhw.apps.cli",
    "axhw.demo": "axhw.apps.demo",
    "axhw.experiments": "axhw.apps.experiments",
    "axhw.figures": "axhw.apps.figures",
    "axhw.power.tools": "axhw.power.flow.tools",
    "axhw.power.liberty": "axhw.power.flow.liberty",
    "axhw.power.templates": "axhw.power.flow.templates",
    "axhw.power.synth": "axhw.power.flow.synth",
    "axhw.power.sta": "axhw.power.flow.sta",
    "axhw.power.activity": "axhw.power.flow.activity",
    "axhw.power.operands": "axhw.power.multiplier.operands",
    "axhw.power.compute": "axhw.power.multiplier.compute",
    "axhw.power.accel_synth": "axhw.power.accel.synth",
    "axhw.power.accel_sim": "axhw.power.accel.sim",
    "axhw.power.accel_report": "axhw.power.accel.report",
    "axhw.power.targets": "axhw.power.search.targets",
    "axhw.power.measure": "axhw.power.search.measure",
    "axhw.power.study": "axhw.power.search.study",
    "axhw.power.aggregate": "axhw.power.search.aggregate",
    "axhw.power.approxann_power": "axhw.power.search.approxann",
    "axhw.power.network_report": "axhw.power.search.networks",
    "axhw.power.report": "axhw.power.search.report",
    "axhw.power.search_report": "axhw.power.search.per_target",
}


#: Old modules whose names now live in more than one module: the others, searched in order after ``MOVED``'s.
ALSO: dict[str, tuple[str, ...]] = {"axhw.multipliers": ("axhw.arith.registry",)}


#: Old modules that ran as scripts (``python -m``) whose main now lives elsewhere than their code.
RUN_AS_MAIN: dict[str, str] = {"axhw.lutkernel": "axhw.arith.kernels.__main__"}


def _warn(old: str, new: str, stacklevel: int) -> None:
    warnings.warn(f"{old} moved to {new}; the old path is removed in the next release", DeprecationWarning,
                  stacklevel=stacklevel)


class _Alias(types.ModuleType):
    """The old module: every attribute is read from, and written to, the new one (no copy: monkeypatching
    either name patches the code that runs)."""

    def __init__(self, old: str, new: str) -> None:
        types.ModuleType.__init__(self, old, f"moved to {new}")
        self.__dict__["_axhw_target"] = new

    def __getattr__(self, name: str) -> Any:
        target = self.__dict__["_axhw_target"]
        for mod in (target, *ALSO.get(self.__name__, ())):
            m = importlib.import_module(mod)
            if hasattr(m, name):
                return getattr(m, name)
        raise AttributeError(f"module {self.__name__!r} (moved to {target}) has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:  # monkeypatching through the old name
        if name.startswith("__"):  # the import system's own attributes (__spec__, __loader__) stay here
            self.__dict__[name] = value
        else:
            setattr(importlib.import_module(self.__dict__["_axhw_target"]), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(importlib.import_module(self.__dict__["_axhw_target"]), name)

    def __dir__(self) -> list[str]:
        names = {n for mod in (self.__dict__["_axhw_target"], *ALSO.get(self.__name__, ()))
                 for n in dir(importlib.import_module(mod))}
        return sorted(names)


class _CallableAlias(_Alias):
    """``axhw.convert`` is both the old module and the public function: importing the old module path binds
    the alias onto the package, so the alias must still convert when called."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.convert(*args, **kwargs)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        new = MOVED[spec.name]
        importlib.import_module(new)  # fail here, with the new name, if the new module cannot import
        _warn(spec.name, new, stacklevel=4)
        return (_CallableAlias if spec.name == "axhw.convert" else _Alias)(spec.name, new)

    def exec_module(self, module: types.ModuleType) -> None:
        pass

    def get_code(self, fullname: str) -> types.CodeType | None:
        """``python -m axhw.cli`` (runpy asks for code, not a module): the new module's code, run as main."""
        new = RUN_AS_MAIN.get(fullname, MOVED[fullname])
        _warn(fullname, new, stacklevel=2)
        spec = importlib.util.find_spec(new)
        loader = spec.loader if spec else None
        if not isinstance(loader, importlib.abc.InspectLoader):
            raise ImportError(f"{fullname} moved to {new}, which cannot run as a script")
        return loader.get_code(new)


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once; after the path finders, so real modules always win)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())


def moved_attribute(package: str, name: str, new: str) -> Any:
    """For a package that replaced a module of the same name (``axhw.power.accel``): the old module's
    attributes, from ``new``, with the warning; anything else is an ``AttributeError`` as usual."""
    if not name.startswith("__"):
        mod = importlib.import_module(new)
        if name in getattr(mod, "__all__", ()):
            _warn(f"{package}.{name}", f"{new}.{name}", stacklevel=4)
            return getattr(mod, name)
    raise AttributeError(f"module {package!r} has no attribute {name!r}")
