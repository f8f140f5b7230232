"""Convert a plain torch model to hardware-aware layers: :func:`convert`.

Walks any module tree (``nn.Sequential``, ``nn.ModuleList``, ``nn.ModuleDict``, custom modules with
children) and replaces every ``nn.Linear`` and ``nn.Conv2d`` by :class:`~axhw.nn.ApproxLinear` /
:class:`~axhw.nn.ApproxConv2d` holding the *same* parameter tensors, so the converted model in float mode
computes exactly what the original did. Everything else is decided up front, before anything changes:

* weight-free modules (activations, pooling, dropout, flatten, ...) and normalization layers other than
  batch norm (LayerNorm, GroupNorm, InstanceNorm) pass through untouched;
* then the model is traced with ``torch.fx`` (:mod:`axhw.nn.fx.trace`): every batch norm right after a layer is
  folded into it for the integer modes (:mod:`axhw.nn.fx.ops`; one that cannot be folded is an error naming
  it), and additions, concatenations and average pooling in the model's ``forward`` become hardware-aware
  modules, so the hardware-mode forward of a residual network equals its integer network bit for bit;
* a module that computes with parameters of its own and has no hardware equivalent (``nn.LSTM``,
  ``nn.MultiheadAttention``, ``nn.Conv1d``/``nn.Conv3d``, ``nn.Embedding``, a ``Linear`` subclass with
  its own ``forward``, a custom module with a raw ``nn.Parameter``...) is an error naming its path,
  unless the caller lists the path in ``keep_float``: then it (and everything under it) stays float and
  the report says so;
* a weight-free operation the integer network has no operation for (GELU, tanh, LayerNorm, a sigmoid
  inside the network...; :func:`axhw.nn.fx.trace.float_parts`) runs in float between hardware layers: the
  report lists it under ``float_ops`` (no integer export) unless ``keep_float`` names it (its module path,
  or for a function or method call its graph node's name, as ``float_ops`` shows it), which records that
  it is float on purpose (the trainer refuses a model with float operations it was not told to keep).

The API shape follows IBM aihwkit's ``convert_to_analog``; the code is this project's own.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import nn
from torch.nn.parameter import UninitializedParameter

from axhw.nn.config import HardwareConfig
from axhw.nn.fx.trace import UNTRACED_ATTR, rewrite, type_name
from axhw.nn.layers import ApproxConv2d, ApproxLinear, HardwareAware, HardwareLayer

__all__ = ["ConversionReport", "convert"]

#: Modules with parameters that pass through unconverted: they hold no multiplier-array products.
_PASS_THROUGH = (
    nn.modules.batchnorm._NormBase,  # BatchNorm* (folded by axhw.nn.fx.trace), InstanceNorm*
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
)


@dataclass
class ConversionReport:
    """What :func:`convert` did.

    Attributes:
        converted: ``(path, original type)`` of every replaced layer, in module order, e.g.
            ``("features.0", "nn.Conv2d")``; the root's path is ``""``.
        kept_float: what the caller listed in ``keep_float`` (left as it was): module paths and names of
            float operations.
        already_hardware: paths of layers that were hardware-aware before (given the ``hw`` configuration).
    """

    converted: list[tuple[str, str]] = field(default_factory=list)
    kept_float: list[str] = field(default_factory=list)
    already_hardware: list[str] = field(default_factory=list)
    #: ``(batch norm path, layer path)`` of every batch norm folded into the layer before it.
    folded: list[tuple[str, str]] = field(default_factory=list)
    #: ``(node or path, module kind)`` of the additions, concatenations and average poolings made hardware-aware.
    graph_ops: list[tuple[str, str]] = field(default_factory=list)
    #: Operations left float between hardware layers that ``keep_float`` does not name, as ``name (op)``
    #: (no integer equivalent; ``to_quantized`` refuses them, and so does the trainer unless they are kept).
    float_ops: list[str] = field(default_factory=list)
    #: Whether the model was traced (``graph=False``: layers only).
    traced: bool = True

    def __str__(self) -> str:
        lines = [f"converted {len(self.converted)} layer(s)"]
        lines += [f"  {path or '<root>'}: {kind}" for path, kind in self.converted]
        if self.already_hardware:
            lines.append(f"already hardware-aware: {', '.join(p or '<root>' for p in self.already_hardware)}")
        if self.folded:
            lines.append(f"folded batch norms: {', '.join(f'{bn} -> {layer}' for bn, layer in self.folded)}")
        if self.graph_ops:
            lines.append(f"hardware graph ops: {', '.join(f'{n} ({k})' for n, k in self.graph_ops)}")
        if self.kept_float:
            lines.append(f"kept float: {', '.join(p or '<root>' for p in self.kept_float)}")
        if self.float_ops:
            lines.append(f"float between hardware layers (no integer export): {', '.join(self.float_ops)}")
        if not self.traced:
            lines.append("not traced (graph=False): layers only, no batch-norm folding, no integer export")
        return "\n".join(lines)


def _plain(m: nn.Module, cls: type[nn.Module]) -> bool:
    """``m`` is a ``cls`` (or a subclass) that computes with ``cls``'s own forward."""
    return isinstance(m, cls) and type(m).forward is cls.forward




def _convertible(m: nn.Module) -> bool:
    return not isinstance(m, HardwareLayer) and (_plain(m, nn.Linear) or _plain(m, nn.Conv2d))


def _hardware_twin(m: nn.Module, hw: HardwareConfig) -> nn.Module:
    """The hardware-aware layer of ``m``, sharing ``m``'s parameter tensors. Built on the meta device so
    no initialization runs (and no random numbers are drawn)."""
    new: nn.Module
    if isinstance(m, nn.Linear):
        new = ApproxLinear(m.in_features, m.out_features, bias=m.bias is not None, hw=hw, device="meta")
    else:
        assert isinstance(m, nn.Conv2d)

        def pair(v: tuple[int, ...]) -> tuple[int, int]:  # torch types Conv2d's stored pairs as tuple[int, ...]
            h, w = v
            return h, w

        padding = m.padding if isinstance(m.padding, str) else pair(m.padding)
        new = ApproxConv2d(m.in_channels, m.out_channels, pair(m.kernel_size), stride=pair(m.stride),
                           padding=padding, bias=m.bias is not None, hw=hw,
                           dilation=pair(m.dilation), groups=m.groups, padding_mode=m.padding_mode,
                           device="meta")
    new.weight = m.weight
    new.bias = m.bias
    new.train(m.training)
    return new


def convert(model: nn.Module, hw: HardwareConfig, inplace: bool = False,
            keep_float: Iterable[str] = (), graph: bool = True) -> tuple[nn.Module, ConversionReport]:
    """Replace every ``nn.Linear`` / ``nn.Conv2d`` of ``model`` by its hardware-aware layer.

    Args:
        model: any module tree (the root itself may be a ``Linear``/``Conv2d``).
        hw: the :class:`~axhw.nn.HardwareConfig` of every converted layer (and of layers that were
            hardware-aware already).
        inplace: modify ``model`` itself (converted layers keep its very parameter objects, so an
            optimizer built on it stays valid); False (default) converts a deep copy and leaves ``model``
            unchanged.
        keep_float: what stays float on purpose: dotted module paths (as in ``model.named_modules()``), each
            with everything under it, and names of float operations (``gelu``, ``tanh_1``: a function or
            method call, named as :attr:`ConversionReport.float_ops` shows it); each must exist.
        graph: trace the model (:mod:`axhw.nn.fx.trace`): fold batch norms and make additions, concatenations
            and average pooling hardware-aware. ``False`` converts the layers only (for models
            ``torch.fx`` cannot trace: each layer then calibrates its own formats, batch norms stay float
            and ``to_quantized`` refuses the model).

    Returns:
        ``(converted model, ConversionReport)``. The model is a ``torch.fx.GraphModule`` when its
        ``forward`` had to change (additions, concatenations, functional pooling); it keeps the original's
        module tree, paths and state-dict keys (with ``inplace=True`` it shares the original's modules).

    Raises:
        ValueError: a module computes with parameters and has no hardware equivalent (naming every such
            path and the ``keep_float`` that would keep them float), a ``keep_float`` name that is no module
            or float operation of the model, an
            uninitialized lazy layer, a model ``torch.fx`` cannot trace, or a batch norm that cannot be
            folded. Nothing is modified when it raises.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert needs an nn.Module, got {type(model).__name__}")
    if not isinstance(hw, HardwareConfig):
        raise TypeError(f"hw must be an axhw.nn.HardwareConfig, got {type(hw).__name__}")
    if isinstance(keep_float, str):
        raise TypeError(f"keep_float must be a list of paths, got the string {keep_float!r}")
    keep = list(dict.fromkeys(keep_float))
    paths = {name for name, _ in model.named_modules(remove_duplicate=False)}
    traced = graph and not (isinstance(model, HardwareLayer) or _convertible(model))
    # the rest must name float operations of the traced graph (function calls, tensor attributes): checked
    # by rewrite once the graph is known; a dotted name that is no tensor of the model cannot be one
    tensors = {name for name, _ in (*model.named_parameters(remove_duplicate=False),
                                    *model.named_buffers(remove_duplicate=False))}
    kept_ops = [p for p in keep if p not in paths]
    unknown = [p for p in kept_ops if not traced or ("." in p and p not in tensors)]
    if unknown:
        raise ValueError(f"keep_float names no module of the model: {', '.join(map(repr, unknown))}")
    leaves = [p for p in keep if p in paths]

    report = ConversionReport(kept_float=keep)
    todo: list[tuple[str, nn.Module]] = []  # (path, module) to replace, in module order
    refused: list[tuple[str, nn.Module]] = []

    def plan(path: str, m: nn.Module) -> None:
        if path in leaves:
            return
        if isinstance(m, HardwareLayer):
            report.already_hardware.append(path)
            return
        if _convertible(m):
            if any(isinstance(p, UninitializedParameter) for p in m.parameters(recurse=False)):
                raise ValueError(f"{path or '<root>'}: {type_name(m)} is uninitialized (lazy): "
                                 "run one forward pass before convert")
            todo.append((path, m))
            return
        if any(True for _ in m.parameters(recurse=False)) and not isinstance(m, _PASS_THROUGH):
            refused.append((path, m))
            return  # its children belong to it (e.g. MultiheadAttention.out_proj)
        for name, child in m._modules.items():  # every path, also a second one to a shared module
            if child is not None:
                plan(f"{path}.{name}" if path else name, child)

    plan("", model)
    if refused:
        names = [p or "<root>" for p, _ in refused]
        what = ", ".join(f"{n}: {type_name(m)}" for n, (_, m) in zip(names, refused, strict=True))
        one = len(refused) == 1
        raise ValueError(f"{what} {'has' if one else 'have'} no hardware equivalent; pass "
                         f"keep_float={[p for p, _ in refused]!r} to keep {'it' if one else 'them'} float")

    if inplace and traced:
        # tracing and batch-norm folding may still refuse the model: try them on a copy first, so that
        # nothing has changed when they raise
        memo: dict[int, Any] = {}  # deepcopy's: copies of every kind
        trial = copy.deepcopy(model, memo)
        rewrite(_replace_layers(trial, [(p, memo[id(m)]) for p, m in todo], hw, ConversionReport()), hw, leaves,
                kept_ops)
    if not inplace:
        memo = {}
        model = copy.deepcopy(model, memo)
        todo = [(p, memo[id(m)]) for p, m in todo]
    model = _replace_layers(model, todo, hw, report)
    if traced:
        model, done = rewrite(model, hw, leaves, kept_ops)
        for m in model.modules():  # graph ops and folded batch norms of an earlier conversion too
            if isinstance(m, HardwareAware) and not isinstance(m, HardwareLayer):
                m.set_hardware(hw)
        report.folded, report.graph_ops, report.float_ops = done.folded, done.ops, done.float_ops
    elif not graph:
        report.traced = False
        setattr(model, UNTRACED_ATTR, True)
    return model, report


def _replace_layers(model: nn.Module, todo: list[tuple[str, nn.Module]], hw: HardwareConfig,
                    report: ConversionReport) -> nn.Module:
    """Put the hardware twin of every planned layer at its path (one twin per module object: a layer used
    at two paths, tied weights, stays one layer); give layers that were hardware-aware already ``hw``."""
    twins: dict[int, nn.Module] = {}
    for path, m in todo:
        if id(m) not in twins:
            twins[id(m)] = _hardware_twin(m, hw)
        report.converted.append((path, type_name(m)))
        if path == "":
            model = twins[id(m)]
        else:
            parent_path, _, name = path.rpartition(".")
            parent = model.get_submodule(parent_path) if parent_path else model
            setattr(parent, name, twins[id(m)])
    for path in report.already_hardware:
        layer = model.get_submodule(path)
        assert isinstance(layer, HardwareLayer)
        layer.set_hardware(hw)
    return model
