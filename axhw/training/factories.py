"""Your own network and data from an import path: ``axhw train --model pkg.module:factory --data ...``.

A *factory* is named ``"pkg.module:attr"`` (``attr`` may be dotted, e.g. ``Class.build``), as in
``uvicorn main:app``. The model factory is called with the keyword arguments of ``--model-arg k=v`` and must
return an ``nn.Module``; :func:`axhw.convert` then makes it hardware-aware. The data factory is called
without arguments and returns ``(x_train, y_train, x_test, y_test)`` or an object with those attributes
(an :class:`axhw.data.Dataset` qualifies). Both are called again whenever a checkpoint is used
(``axhw evaluate``, ``approxann``, the power flow), so they must be deterministic: seed what they draw.

Where the module is looked for: the installed packages and ``PYTHONPATH`` first, then the current
directory (appended to ``sys.path``, so a local file never shadows an installed package). ``python -m``
puts the current directory first; we put it last for that reason. A checkpoint stores the import path, not
the code: evaluate it where the same module imports.
"""

from __future__ import annotations

import ast
import importlib
import math
import os
import sys
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from axhw.data.loaders import Dataset, carve_validation, stratified_subset
from axhw.nn.fx.lower import INTEGER_OPS
from axhw.nn.fx.trace import FloatPart, describe_parts, float_parts

__all__ = ["check_float_parts", "check_outputs", "check_spec", "import_factory", "load_user_data", "normalize_args",
           "normalize_keep_float", "parse_model_args", "user_model"]


def check_spec(spec: str, what: str = "--model") -> tuple[str, str]:
    """Split ``"pkg.module:attr"`` into module and attribute, or a one-line ``ValueError``."""
    module, sep, attr = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    if not sep or not all(p.isidentifier() for p in module.split(".")) or \
            not all(p.isidentifier() for p in attr.split(".")):
        raise ValueError(f"{what} {spec!r} is not an import path: expected 'pkg.module:factory'")
    return module, attr


def import_factory(spec: str, what: str = "--model") -> Any:
    """The callable that ``spec`` names (module docstring: where the module is looked for)."""
    module, attr = check_spec(spec, what)
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module == exc.name or module.startswith(exc.name + ".")):
            raise ValueError(f"{what} {spec}: importing {module} failed: {exc}") from exc
        raise ValueError(f"{what} {spec}: no module named {exc.name!r}; install it or put its folder on "
                         "PYTHONPATH (the current directory is searched too)") from exc
    except Exception as exc:
        raise ValueError(f"{what} {spec}: importing {module} failed: {type(exc).__name__}: "
                         f"{_first_line(exc)}") from exc
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{what} {spec}: module {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{what} {spec}: {attr} is a {type(obj).__name__}, not a function returning "
                         f"{'an nn.Module' if what == '--model' else 'data'}")
    return obj


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def parse_model_args(pairs: Iterable[str]) -> dict[str, Any]:
    """``["channels=8", "name=wide"]`` -> ``{"channels": 8, "name": "wide"}``: each value a Python literal
    (``ast.literal_eval``) where it parses as one, else the string itself."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"--model-arg {pair!r}: expected NAME=VALUE, e.g. channels=16")
        if key in out:
            raise ValueError(f"--model-arg {key} given twice")
        try:
            out[key] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            out[key] = text
    return normalize_args(out)


def normalize_args(args: Any) -> dict[str, Any]:
    """A copy of ``args`` as JSON values (tuples become lists), so that a config equals itself after a
    round trip through ``metrics.json``; anything else is a one-line ``ValueError``."""
    if not isinstance(args, dict):
        raise ValueError(f"model_args must be a dict of keyword arguments, got {type(args).__name__}")

    def norm(v: Any, where: str) -> Any:
        if v is None or isinstance(v, bool | int | str):
            return v
        if isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError(f"model_args {where}={v}: must be finite")
            return v
        if isinstance(v, list | tuple):
            return [norm(x, where) for x in v]
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return {k: norm(x, where) for k, x in v.items()}
        raise ValueError(f"model_args {where}={v!r}: values must be numbers, strings, booleans, None, or "
                         "lists/dicts of them (they are stored in the checkpoint as JSON)")

    for k in args:
        if not isinstance(k, str) or not k.isidentifier():
            raise ValueError(f"model_args key {k!r}: must be a keyword-argument name")
    return {k: norm(v, k) for k, v in args.items()}


def normalize_keep_float(names: Any) -> list[str]:
    """``--keep-float`` names as a sorted list without repeats (the order says nothing, so a config equals
    itself whatever order they were given in and after a round trip through ``metrics.json``)."""
    if isinstance(names, str) or not isinstance(names, Iterable):
        raise ValueError(f"keep_float must be a list of module paths or operation names, got {names!r}")
    names = list(names)
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ValueError(f"keep_float holds {bad[0]!r}: expected module paths or operation names (e.g. act gelu)")
    return sorted(set(names))


def check_float_parts(model: nn.Module, what: str) -> list[FloatPart]:
    """Refuse, before any training, a converted model whose float parts were not asked for: the integer
    network (evaluation, RTL, power) has no operation for them, so the trained network would be accepted by
    nothing. The check is the integer export's own (:func:`axhw.nn.fx.trace.float_parts`), so a model that
    passes it exports, or runs in float exactly the parts ``keep_float`` names. Returns the kept parts.

    Raises:
        ValueError: one line naming every float part not in ``keep_float``, and the ``--keep-float`` that
            would keep them float.
    """
    parts = float_parts(model)
    other = [p for p in parts if not p.kept]
    if other:
        one = len(other) == 1
        names = [p.name for p in other]
        raise ValueError(f"{what}: {describe_parts(other)} {'has' if one else 'have'} no integer equivalent, so "
                         f"nothing could evaluate or export the trained network: replace {'it' if one else 'them'} "
                         f"by integer operations ({INTEGER_OPS}), or train {'it' if one else 'them'} in float on "
                         f"purpose with --keep-float {' '.join(names)} (Python: keep_float={names!r}; evaluate then "
                         "runs the float parts in float, and there is no integer export or RTL)")
    return parts


def user_model(spec: str, args: dict[str, Any] | None = None) -> nn.Module:
    """Call the model factory ``spec`` with ``args``; it must return an ``nn.Module``."""
    factory = import_factory(spec, "--model")
    try:
        model = factory(**(args or {}))
    except TypeError as exc:  # usually a keyword the factory does not take
        raise ValueError(f"--model {spec}: calling it with {args or {}} failed: {_first_line(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise ValueError(f"--model {spec} returned a {type(model).__name__}, not an nn.Module")
    return model


_FIELDS = ("x_train", "y_train", "x_test", "y_test")


def load_user_data(spec: str, seed: int = 0, limit: int | None = None, val_fraction: float = 0.0) -> Dataset:
    """Call the data factory ``spec`` and check what it returns: ``x_*`` float tensors (or arrays) of one
    sample shape, ``y_*`` 1-D integer class indices >= 0 of the same lengths. ``limit`` keeps a seeded,
    stratified subset of the training samples and ``val_fraction`` holds a validation split out of them (as
    :func:`axhw.data.load` does). The inputs are used as
    given: no scaling, no reshaping (the model sees ``x_train[i]``'s shape)."""
    raw = import_factory(spec, "--data")()
    if isinstance(raw, tuple | list) and len(raw) == 4:
        parts = list(raw)
    elif all(hasattr(raw, f) for f in _FIELDS):
        parts = [getattr(raw, f) for f in _FIELDS]
    else:
        raise ValueError(f"--data {spec} returned a {type(raw).__name__}: expected (x_train, y_train, x_test, "
                         "y_test) or an object with those attributes")
    t: dict[str, torch.Tensor] = {}
    for name, v in zip(_FIELDS, parts, strict=True):
        try:
            t[name] = torch.as_tensor(v)
        except Exception as exc:
            raise ValueError(f"--data {spec}: {name} is a {type(v).__name__}, not a tensor") from exc
    for split in ("train", "test"):
        x, y = t[f"x_{split}"], t[f"y_{split}"]
        if not x.is_floating_point() or x.dim() < 2 or len(x) == 0:
            raise ValueError(f"--data {spec}: x_{split} has dtype {x.dtype} and shape {tuple(x.shape)}: expected "
                             "floating-point inputs (N, features...) with N >= 1")
        if y.dtype in (torch.bool, torch.uint8) or y.is_floating_point() or y.is_complex() or y.dim() != 1:
            raise ValueError(f"--data {spec}: y_{split} has dtype {y.dtype} and shape {tuple(y.shape)}: expected "
                             "1-D integer class indices")
        if len(y) != len(x):
            raise ValueError(f"--data {spec}: {len(x)} x_{split} samples but {len(y)} labels")
        if int(y.min()) < 0:
            raise ValueError(f"--data {spec}: y_{split} holds label {int(y.min())}: labels are class indices 0..K-1")
    if t["x_train"].shape[1:] != t["x_test"].shape[1:]:
        raise ValueError(f"--data {spec}: x_train samples have shape {tuple(t['x_train'].shape[1:])}, x_test "
                         f"samples {tuple(t['x_test'].shape[1:])}")
    x_tr, y_tr = t["x_train"].float(), t["y_train"].long()
    keep = torch.from_numpy(stratified_subset(y_tr.numpy(), limit, seed))
    x_tr, y_tr = x_tr[keep], y_tr[keep]
    n_classes = int(max(int(y_tr.max()), int(t["y_test"].max()))) + 1
    x_va, y_va = x_tr[:0], y_tr[:0]
    if val_fraction:  # carved from the training samples, as axhw.data.load does
        tr, va = (torch.from_numpy(i) for i in carve_validation(y_tr.numpy(), val_fraction, seed))
        x_tr, y_tr, x_va, y_va = x_tr[tr], y_tr[tr], x_tr[va], y_tr[va]
    shape = tuple(x_tr.shape[1:])
    return Dataset(name=spec, x_train=x_tr.contiguous(), y_train=y_tr.contiguous(),
                   x_test=t["x_test"].float().contiguous(), y_test=t["y_test"].long().contiguous(),
                   n_classes=n_classes, feature_shape=shape, mean=torch.zeros(shape), std=torch.ones(shape),
                   class_names=tuple(str(i) for i in range(n_classes)), x_val=x_va.contiguous(),
                   y_val=y_va.contiguous())


@torch.no_grad()
def check_outputs(model: nn.Module, x: torch.Tensor, n_classes: int, what: str) -> None:
    """One eval-mode forward of two samples: the model must take the data's inputs and give
    ``(batch, K)`` outputs with ``K >= n_classes``; a one-line ``ValueError`` otherwise."""
    was_training = model.training
    model.eval()
    try:
        out = model(x[:2])
    except Exception as exc:
        raise ValueError(f"{what} fails on inputs of shape {tuple(x[:2].shape)}: {type(exc).__name__}: "
                         f"{_first_line(exc)}") from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] < n_classes:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"{what} gives outputs {got} for inputs {tuple(x[:2].shape)}: expected (batch, classes) "
                         f"with classes >= {n_classes} (labels go up to {n_classes - 1})")
