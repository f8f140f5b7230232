"""Graphs: any ``torch.fx``-traceable model as hardware (trace, classify, rewrite for :func:`axhw.convert`).

A chain of layers holds one fixed-point format per layer boundary. A graph (residual additions,
concatenation, global average pooling, batch normalization) needs the same for every value the hardware
holds. This module:

* **traces** a model with ``torch.fx`` (hardware-aware modules and ``keep_float`` modules are leaves);
* **classifies** every node by what it is to the integer network (layer, folded batch norm, addition,
  concatenation, pooling, ReLU, flatten, shape arithmetic, or float: no integer equivalent), with the table of
  :mod:`axhw.nn.fx.patterns`;
* **rewrites** it for :func:`axhw.convert`: additions, concatenations and average pooling written in the
  model's ``forward`` become the modules of :mod:`axhw.nn.fx.ops` (so the hardware-mode forward computes their
  integer semantics), and every batch norm right after a layer is folded into that layer; a batch norm that
  cannot be folded is an error;
* names its **float parts** (:func:`float_parts`): the live nodes the integer network has no operation for,
  one definition for the export's refusal, the calibration's warning and the trainer's check before
  training, each marked kept when the caller's ``keep_float`` asked for it.

:mod:`axhw.nn.fx.lower` then chooses every value's format (:func:`axhw.nn.fx.lower.calibrate`) and lowers the
graph to a :class:`~axhw.golden.network.QuantizedNetwork` (:func:`axhw.nn.fx.lower.lower`).

Models ``torch.fx`` cannot trace (data-dependent control flow) still convert with ``graph=False``: then
every layer calibrates its own input and output formats, and there is no integer export.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from axhw.nn.config import HardwareConfig
from axhw.nn.fx.ops import FoldedBatchNorm1d, FoldedBatchNorm2d, HardwareAdd, HardwareAvgPool2d, HardwareCat
from axhw.nn.fx.patterns import FLOAT, MONOTONE, classify, feeds_output, meta_nodes, node_arg
from axhw.nn.layers import HardwareAware, HardwareLayer, approx_layers

__all__ = [
    "FLOAT_LEAVES_ATTR",
    "KEEP_FLOAT_ATTR",
    "UNTRACED_ATTR",
    "FloatPart",
    "GraphRewrite",
    "call_order",
    "describe_parts",
    "float_nodes",
    "float_parts",
    "modules_by_path",
    "node_desc",
    "rewrite",
    "trace",
    "type_name",
]

#: Attribute :func:`rewrite` leaves on a converted model: module paths traced as opaque float leaves.
FLOAT_LEAVES_ATTR = "_axhw_float_leaves"
#: Attribute :func:`rewrite` leaves on a converted model: every name its ``keep_float`` listed (module paths
#: and float operations), so that the float parts a caller asked for are told apart from the rest.
KEEP_FLOAT_ATTR = "_axhw_keep_float"
#: Attribute marking a model converted with ``graph=False`` (not traced: no integer export).
UNTRACED_ATTR = "_axhw_untraced"

_ADD_FNS = (operator.add, operator.iadd, torch.add)


class _Tracer(fx.Tracer):
    """Hardware-aware modules and the caller's float modules are leaves: the graph shows them as calls."""

    def __init__(self, leaves: Iterable[str] = ()) -> None:
        super().__init__()
        self.leaves = tuple(leaves)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, HardwareAware):
            return True
        if any(module_qualified_name == p or module_qualified_name.startswith(p + ".") for p in self.leaves):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module, leaves: Iterable[str] = ()) -> fx.Graph:
    """The ``torch.fx`` graph of ``model`` (a GraphModule's own graph); a model fx cannot trace is a
    one-line ``ValueError`` saying why."""
    if isinstance(model, fx.GraphModule):
        return model.graph
    if getattr(model, UNTRACED_ATTR, False):
        raise ValueError("model was converted with graph=False (not traced): it has no graph; "
                         "convert it with axhw.convert(model, hw) to get one")
    try:
        return _Tracer(leaves or getattr(model, FLOAT_LEAVES_ATTR, ())).trace(model)
    except Exception as exc:  # fx raises TraceError, TypeError, RuntimeError... for untraceable code
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"model is not torch.fx-traceable ({type(exc).__name__}: {reason[:200]}); make its forward "
                         "free of data-dependent control flow, or convert with graph=False (layers only, "
                         "no batch-norm folding, no integer export)") from exc


def modules_by_path(model: nn.Module) -> dict[str, nn.Module]:
    """Every module of ``model`` by its dotted path, shared ones under each of their paths (what a traced
    graph's ``call_module`` targets name)."""
    return dict(model.named_modules(remove_duplicate=False))


def node_desc(node: fx.Node) -> str:
    """A node as error messages name it: ``module 'block.conv1'``, ``'relu' (torch.nn.functional.relu)``..."""
    target = node.target
    if node.op == "call_module":
        return f"module {target!r}"
    if node.op == "call_method":
        return f"{node.name!r} (method .{target}())"
    name = getattr(target, "__name__", str(target))
    mod = getattr(target, "__module__", None) or ""
    return f"{node.name!r} ({mod + '.' if mod and mod != '_operator' else ''}{name})"


def type_name(m: nn.Module) -> str:
    """A module's type as messages name it: ``nn.GELU`` for torch's own, ``pkg.module.Class`` for others."""
    t = type(m)
    return f"nn.{t.__name__}" if t.__module__.startswith("torch.nn") else f"{t.__module__}.{t.__qualname__}"


# --------------------------------------------------------------------------- float parts
@dataclass(frozen=True)
class FloatPart:
    """One operation of a traced model that the integer network has no operation for: it runs in float
    between hardware layers (:func:`float_parts`)."""

    name: str
    """What ``keep_float`` takes to keep it float on purpose: the module path of a module call or of a tensor
    attribute read in ``forward``, else the graph node's name (``gelu``, ``gelu_1``, ``tanh``)."""
    op: str
    """What it computes, for messages: ``nn.GELU``, ``F.gelu``, ``.tanh()``..."""
    kept: bool
    """Listed in ``keep_float`` (by its name or a module path above it), or an item taken from a kept part's
    output (an LSTM's ``out, state``)."""

    def __str__(self) -> str:
        return f"{self.name} ({self.op})"


def describe_parts(parts: Iterable[FloatPart]) -> str:
    """``act (nn.GELU), gelu (F.gelu)``: the parts as one line."""
    return ", ".join(map(str, parts))


def _live(graph: fx.Graph) -> set[fx.Node]:
    """Nodes the graph's output depends on (the rest is never exported)."""
    live: set[fx.Node] = set()
    stack = [n for n in graph.nodes if n.op == "output"]
    while stack:
        n = stack.pop()
        if n not in live:
            live.add(n)
            stack.extend(n.all_input_nodes)
    return live


def float_nodes(graph: fx.Graph, mods: dict[str, nn.Module]) -> list[fx.Node]:
    """The live nodes, in graph order, that the integer network has no operation for: of kind :data:`FLOAT`
    in the pattern table, or a sigmoid/softmax anywhere but at the output. The one definition of "no integer
    export": :func:`axhw.nn.fx.lower.lower` refuses exactly these, :func:`axhw.nn.fx.lower.calibrate` warns
    about them and the trainer refuses them before training (unless kept float)."""
    meta = meta_nodes(graph)
    live = _live(graph)
    return [node for node in graph.nodes if node in live and node.op not in ("placeholder", "output") and (
        (kind := classify(node, mods, meta)) == FLOAT or (kind == MONOTONE and not feeds_output(node, mods, meta)))]


def _part_name(node: fx.Node) -> str:
    return str(node.target) if node.op in ("call_module", "get_attr") else node.name


def _part_op(node: fx.Node, mods: dict[str, nn.Module]) -> str:
    target = node.target
    if node.op == "call_module":
        return type_name(mods[str(target)])
    if node.op == "get_attr":
        return "a tensor attribute read in forward"
    if node.op == "call_method":
        return f".{target}()"
    name = getattr(target, "__name__", str(target))
    for prefix, namespace in (("F.", F), ("torch.", torch), ("operator.", operator)):
        if getattr(namespace, name, None) is target:
            return prefix + name
    mod = getattr(target, "__module__", None)
    return f"{mod}.{name}" if mod else name


def _under(path: str, keep: tuple[str, ...]) -> bool:
    return any(p == "" or path == p or path.startswith(p + ".") for p in keep)


def float_parts(model: nn.Module, keep: Iterable[str] | None = None, graph: fx.Graph | None = None) -> list[FloatPart]:
    """The operations of a converted model that run in float between hardware layers (:func:`float_nodes`),
    each once, with whether the caller kept it float on purpose.

    Args:
        model: a model :func:`axhw.convert` returned (traced).
        keep: the ``keep_float`` names; None: those :func:`axhw.convert` recorded on the model.
        graph: the model's traced graph (None: :func:`trace` it).

    Raises:
        ValueError: the model cannot be traced (as :func:`trace`).
    """
    graph = trace(model) if graph is None else graph
    mods = modules_by_path(model)
    kept_names = tuple(getattr(model, KEEP_FLOAT_ATTR, ())) if keep is None else tuple(keep)
    parts: dict[tuple[str, str], FloatPart] = {}
    kept_nodes: set[fx.Node] = set()
    for node in float_nodes(graph, mods):
        kept = (_under(str(node.target), kept_names) if node.op in ("call_module", "get_attr")
                else node.name in kept_names)
        # an item of a kept part's output (out, (h, c) = self.lstm(x)) belongs to that part
        kept = kept or (node.op == "call_function" and node.target is operator.getitem and bool(node.args)
                        and node.args[0] in kept_nodes)
        if kept:
            kept_nodes.add(node)
        part = FloatPart(_part_name(node), _part_op(node, mods), kept)
        parts.setdefault((part.name, part.op), part)
    return list(parts.values())


def _int_or_pair(v: Any) -> bool:
    return isinstance(v, int) or (isinstance(v, tuple | list) and len(v) == 2 and all(isinstance(i, int) for i in v))


def _spatial_dims(dims: Any) -> bool:
    if isinstance(dims, int) or not isinstance(dims, tuple | list) or len(dims) != 2:
        return False
    return {d % 4 if isinstance(d, int) else None for d in dims} == {2, 3}


# --------------------------------------------------------------------------- rewrite (axhw.convert)
@dataclass
class GraphRewrite:
    """What :func:`rewrite` did to a traced model.

    Attributes:
        folded: ``(batch norm path, layer path)`` of every batch norm folded into the layer before it.
        ops: ``(node, module kind)`` of every addition, concatenation and average pooling made
            hardware-aware (module kind: ``HardwareAdd``, ``HardwareCat``, ``HardwareAvgPool2d``).
        float_ops: operations that stay float between hardware layers (no integer equivalent): the
            hardware-mode forward still runs (each layer exact), but :func:`lower` refuses the model.
    """

    folded: list[tuple[str, str]] = field(default_factory=list)
    ops: list[tuple[str, str]] = field(default_factory=list)
    float_ops: list[str] = field(default_factory=list)


def _fold_target(node: fx.Node, mods: dict[str, nn.Module]) -> tuple[fx.Node, HardwareLayer] | str:
    """The layer a batch-norm node folds into, or why it cannot."""
    bn = mods[str(node.target)]
    src = node.args[0] if node.args else None
    if not isinstance(src, fx.Node) or src.op != "call_module" or not isinstance(
            layer := mods[str(src.target)], HardwareLayer):
        what = ("the network input" if isinstance(src, fx.Node) and src.op == "placeholder"
                else node_desc(src) if isinstance(src, fx.Node) else "no layer")
        return f"it follows {what}, not a Linear/Conv2d layer"
    if len(src.users) != 1:
        return f"the output of {src.target!r} is also used elsewhere (the fold would change those uses)"
    if sum(1 for n in node.graph.nodes if n.op == "call_module" and n.target == src.target) != 1:
        return f"layer {src.target!r} is called more than once"
    conv = isinstance(layer, nn.Conv2d)
    if conv != isinstance(bn, nn.BatchNorm2d):
        return f"a {type(bn).__name__} after {'a conv' if conv else 'a linear'} layer is not a per-channel fold"
    if not bn.track_running_stats or bn.running_mean is None:
        return "it has no running statistics (track_running_stats=False)"
    if bn.num_features != layer.weight.shape[0]:
        return f"it normalizes {bn.num_features} channels but {src.target!r} has {layer.weight.shape[0]}"
    return src, layer


def rewrite(model: nn.Module, hw: HardwareConfig, leaves: Iterable[str] = (),
            kept_ops: Iterable[str] = ()) -> tuple[nn.Module, GraphRewrite]:
    """Make a converted model's graph hardware-aware (module docstring); ``model`` already has its
    hardware layers. ``leaves``: module paths kept float (traced as opaque calls); ``kept_ops``: names of
    float operations kept float on purpose (:attr:`FloatPart.name`). Returns the model (a ``GraphModule``
    sharing ``model``'s modules when its ``forward`` had to change, else ``model`` itself with its batch
    norms folded) and what was done.

    Raises:
        ValueError: the model is not traceable, a batch norm cannot be folded (naming it and why), or a
            name in ``kept_ops`` is no float operation of the rewritten model.
    """
    leaves, kept_ops = tuple(leaves), tuple(kept_ops)
    graph = trace(model, leaves)
    mods = modules_by_path(model)
    meta = meta_nodes(graph)
    report = GraphRewrite()
    # 1. batch norms: every one must fold (checked before anything changes)
    folds: list[tuple[fx.Node, HardwareLayer]] = []
    refused: list[str] = []
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(mods[str(node.target)], nn.modules.batchnorm._BatchNorm):
            got = _fold_target(node, mods)
            if isinstance(got, str):
                refused.append(f"{node.target}: {type(mods[str(node.target)]).__name__} cannot be folded ({got})")
            else:
                folds.append((node, got[1]))
    if refused:
        raise ValueError("; ".join(refused) + "; fold-free hardware needs every batch norm right after the layer it "
                         "normalizes (or list it in keep_float: it then stays float and to_quantized refuses the model)")
    # 2. joins and average pooling written in forward: new modules, so the graph changes
    new_modules: dict[str, nn.Module] = {}
    replaced: list[tuple[fx.Node, nn.Module]] = []
    for node in graph.nodes:
        new = _graph_op(node, mods, meta, hw)
        if new is not None:
            replaced.append((node, new))
    # 3. apply
    for node, layer in folds:
        path = str(node.target)
        bn = mods[path]
        assert isinstance(bn, nn.modules.batchnorm._BatchNorm)  # what folds holds
        cls = FoldedBatchNorm2d if isinstance(bn, nn.BatchNorm2d) else FoldedBatchNorm1d
        folded = bn if isinstance(bn, cls) else cls.twin(bn, hw)
        folded.set_hardware(hw)
        _set_submodule(model, path, folded)
        layer.fold_batchnorm(folded)
        src = node.args[0]
        assert isinstance(src, fx.Node)  # the layer's node (_fold_target)
        report.folded.append((path, str(src.target)))
    for node in graph.nodes:  # module average pooling: swapped in place (same path, no parameters)
        if node.op == "call_module":
            m = mods[str(node.target)]
            swap = _avgpool_module(m, hw)
            if swap is not None:
                _set_submodule(model, str(node.target), swap)
                report.ops.append((str(node.target), "HardwareAvgPool2d"))
    if not replaced and call_order(graph, mods) == [id(m) for m in approx_layers(model)]:
        _note_float_ops(model, graph, report, leaves, kept_ops)
        return model, report
    for node, new in replaced:
        name = f"axhw_{node.name}"
        new_modules[name] = new
        report.ops.append((node.name, type(new).__name__))
        operands = node.args[0] if isinstance(new, HardwareCat) else node.args[:2] if isinstance(new, HardwareAdd) \
            else node.args[:1]
        assert isinstance(operands, tuple | list)  # cat: its sequence of tensors (_graph_op)
        with graph.inserting_before(node):
            call = graph.call_module(name, tuple(operands))
        node.replace_all_uses_with(call)
        graph.erase_node(node)
    gm = _graph_module(model, graph, new_modules)
    _note_float_ops(gm, gm.graph, report, leaves, kept_ops)
    return gm, report


def call_order(graph: fx.Graph, mods: dict[str, nn.Module]) -> list[int]:
    """Hardware layers in the order the graph calls them (ids, each once)."""
    order: dict[int, None] = {}
    for node in graph.nodes:
        if node.op == "call_module" and isinstance(mods.get(str(node.target)), HardwareLayer):
            order.setdefault(id(mods[str(node.target)]), None)
    return list(order)


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, name, module)


def _avgpool_module(m: nn.Module, hw: HardwareConfig) -> HardwareAvgPool2d | None:
    if isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1), [1, 1]):
        return HardwareAvgPool2d("adaptive", hw=hw)
    if isinstance(m, nn.AvgPool2d) and m.padding in (0, (0, 0)) and not m.ceil_mode and m.divisor_override is None \
            and _int_or_pair(m.kernel_size):
        return HardwareAvgPool2d("avg", m.kernel_size, m.stride or m.kernel_size, hw=hw)
    return None


def _graph_op(node: fx.Node, mods: dict[str, nn.Module], meta: set[fx.Node], hw: HardwareConfig) -> nn.Module | None:
    """The :mod:`axhw.nn.fx.ops` module a functional node becomes, or None."""
    op, target = node.op, node.target
    if (op == "call_function" and target in _ADD_FNS) or (op == "call_method" and target == "add"):
        if (len(node.args) == 2 and not node.kwargs and all(isinstance(a, fx.Node) and a not in meta
                                                            for a in node.args)):
            return HardwareAdd(hw)
        return None
    if op == "call_function" and target is torch.cat:
        tensors, dim = node.args[0], node_arg(node, 1, "dim", 0)
        if (isinstance(tensors, tuple | list) and len(tensors) >= 2 and all(isinstance(t, fx.Node) for t in tensors)
                and isinstance(dim, int) and dim != 0 and set(node.kwargs) <= {"dim"}):
            return HardwareCat(dim, hw)
        return None
    if op == "call_function" and target is F.adaptive_avg_pool2d:
        return HardwareAvgPool2d("adaptive", hw=hw) if node_arg(node, 1, "output_size", None) in (1, (1, 1), [1, 1]) else None
    if op == "call_function" and target is F.avg_pool2d:
        k, s = node_arg(node, 1, "kernel_size", None), node_arg(node, 2, "stride", None)
        plain = (node_arg(node, 3, "padding", 0) in (0, (0, 0)) and node_arg(node, 4, "ceil_mode", False) is False
                 and node_arg(node, 6, "divisor_override", None) is None and _int_or_pair(k) and (s is None or _int_or_pair(s)))
        return HardwareAvgPool2d("avg", k, s or k, hw=hw) if plain else None
    if (op == "call_method" and target == "mean") or (op == "call_function" and target is torch.mean):
        dims, keep = node_arg(node, 1, "dim", None), node_arg(node, 2, "keepdim", False)
        if _spatial_dims(dims) and isinstance(keep, bool) and set(node.kwargs) <= {"dim", "keepdim"}:
            return HardwareAvgPool2d("mean", dims=tuple(dims), keepdim=keep, hw=hw)
        return None
    return None


def _graph_module(model: nn.Module, graph: fx.Graph, new_modules: dict[str, nn.Module]) -> fx.GraphModule:
    """A GraphModule running ``graph`` that keeps ``model``'s whole module tree (same paths, containers and
    state-dict keys; fx alone would make bare containers of the referenced paths only)."""
    root: dict[str, Any] = {}
    for node in graph.nodes:
        if node.op in ("call_module", "get_attr") and str(node.target) not in new_modules:
            root[str(node.target)] = model.get_submodule(str(node.target)) if node.op == "call_module" \
                else _get_attr(model, str(node.target))
    root.update(new_modules)
    gm = fx.GraphModule(root, graph, class_name=type(model).__name__)
    gm._modules.clear()
    for name, child in model._modules.items():
        gm._modules[name] = child
    for name, mod in new_modules.items():
        gm._modules[name] = mod
    for name, p in model._parameters.items():
        gm._parameters[name] = p
    for name, b in model._buffers.items():
        gm._buffers[name] = b
    gm.train(model.training)
    gm.recompile()
    return gm


def _get_attr(model: nn.Module, path: str) -> Any:
    obj: Any = model
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _note_float_ops(model: nn.Module, graph: fx.Graph, report: GraphRewrite, leaves: tuple[str, ...],
                    kept_ops: tuple[str, ...]) -> None:
    """Record the float parts the caller did not keep float, check every kept name, and mark the model."""
    parts = float_parts(model, (*leaves, *kept_ops), graph)
    unknown = [name for name in kept_ops if name not in {p.name for p in parts}]
    if unknown:
        have = f"its float operations: {describe_parts(parts)}" if parts else "it has no float operations"
        raise ValueError(f"keep_float names no module or float operation of the model: {', '.join(map(repr, unknown))} "
                         f"({have})")
    report.float_ops = [str(p) for p in parts if not p.kept]
    if leaves:
        setattr(model, FLOAT_LEAVES_ATTR, leaves)
    if leaves or kept_ops:
        setattr(model, KEEP_FLOAT_ATTR, (*leaves, *kept_ops))
