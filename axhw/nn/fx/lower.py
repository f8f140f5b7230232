"""Formats and integers of a traced graph: :func:`calibrate` (behind :func:`axhw.nn.calibrate_model`),
:func:`lower` (behind :func:`axhw.nn.to_quantized`) and the formats a checkpoint stores.

How formats are chosen, *domains*: values are grouped into domains, a value together with everything ReLU,
max/average pooling, flattening or a folded batch norm derive from it (they keep their input's format). A
domain starts at the network input, a layer's output, an addition or concatenation, or a float operation.
Its format is calibrated (:func:`axhw.arith.fixedpoint.calibrate`) on every place the domain is read: layer
inputs, operands of additions and concatenations, inputs of average pooling (the window is held before it
is averaged), operands of float operations and the network output. ReLU and max pooling need no reading of
their own: they commute with saturation. A layer's ``out_fmt`` is its domain's format, and every layer that
reads the domain gets it as ``act_fmt``. For a chain this is exactly the rule of the paper's networks: each
layer's input format, and the previous layer re-quantizes to it. A layer whose output is the network
output (through flattening, ReLU, max pooling or a final sigmoid/softmax only) keeps its accumulator
(``out_fmt=None``).

Why domains and not per-edge formats: hardware holds one word per value; two readers of one buffer cannot
read it in two formats, and an extra re-quantizer per edge is hardware the model does not have.

Models converted with ``graph=False`` (not traced): every layer calibrates its own input and output
formats, and :func:`lower` refuses them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, fx, nn

from axhw.arith.fixedpoint import FixedPoint
from axhw.arith.fixedpoint import calibrate as calibrate_tensor
from axhw.golden.network import (
    IntAdd,
    IntAvgPool2d,
    IntCat,
    IntFlatten,
    IntMaxPool2d,
    IntOp,
    IntReLU,
    QuantizedNetwork,
)
from axhw.nn.config import HardwareConfig
from axhw.nn.fx.ops import FoldedBatchNorm1d, HardwareAdd, HardwareAvgPool2d, HardwareCat
from axhw.nn.fx.patterns import (
    ADD,
    AVGPOOL,
    CAT,
    FLATTEN,
    FLOAT,
    FOLD,
    IDENTITY,
    LAYER,
    MAXPOOL,
    META,
    MONOTONE,
    OUTPUT,
    RELU,
    classify,
    feeds_output,
    meta_nodes,
    node_arg,
)
from axhw.nn.fx.trace import (
    UNTRACED_ATTR,
    FloatPart,
    call_order,
    describe_parts,
    float_parts,
    modules_by_path,
    node_desc,
    trace,
)
from axhw.nn.layers import HardwareAware, HardwareLayer, approx_layers

__all__ = ["INTEGER_OPS", "calibrate", "export_refusal", "hardware_formats", "load_hardware_formats", "lower"]

#: What the integer network (and the RTL, which runs it) computes, for messages.
INTEGER_OPS = "linear, conv2d, ReLU, max/average pooling, flatten, residual addition and concatenation"


# --------------------------------------------------------------------------- calibration
#: Kinds whose output is in their input's domain (the same format).
_KEEPS_FORMAT = (RELU, MAXPOOL, FLATTEN, IDENTITY, AVGPOOL, FOLD, MONOTONE)
#: Kinds that read their tensor operands in their domains' formats (average pooling reads its own way).
_READS_OPERANDS = (LAYER, ADD, CAT, FLOAT)


@dataclass
class _Domains:
    """Which value each tensor node holds the format of, and where each domain is read."""

    root: dict[fx.Node, fx.Node]
    kind: dict[fx.Node, str]
    reads: dict[fx.Node, list[tuple[fx.Node, fx.Node]]]  # root -> (reader node, value node read)
    has_avgpool: set[fx.Node]


def _first_tensor_arg(node: fx.Node) -> fx.Node:
    for a in node.all_input_nodes:
        return a
    raise ValueError(f"{node_desc(node)} has no tensor input")


def _domains(graph: fx.Graph, mods: dict[str, nn.Module], values: dict[fx.Node, Any] | None) -> _Domains:
    meta = meta_nodes(graph)
    root: dict[fx.Node, fx.Node] = {}
    kinds: dict[fx.Node, str] = {}
    reads: dict[fx.Node, list[tuple[fx.Node, fx.Node]]] = {}
    has_avgpool: set[fx.Node] = set()
    for node in graph.nodes:
        kind = classify(node, mods, meta)
        if values is not None and node.op != "output" and kind != META and not isinstance(values.get(node), Tensor):
            # not a tensor: sizes are meta; a float op's tuple (an LSTM's) holds no format of its own
            kinds[node] = kind if kind == FLOAT else META
            continue
        kinds[node] = kind
        if kind == META:
            continue
        if kind == MONOTONE and not feeds_output(node, mods, meta):
            kind = kinds[node] = FLOAT
        tensor_args = [a for a in _flat_args(node) if a in root]
        if kind == OUTPUT:
            for a in tensor_args:
                reads.setdefault(root[a], []).append((node, a))
            continue
        if kind in _KEEPS_FORMAT:
            src = tensor_args[0] if tensor_args else _first_tensor_arg(node)
            root[node] = root[src]
            if kind == AVGPOOL:
                # the window values are held in the format before they are averaged (an average of
                # saturated values is not the saturated average): the pooling reads its input
                has_avgpool.add(root[src])
                reads.setdefault(root[src], []).append((node, src))
        else:
            root[node] = node
        if kind in _READS_OPERANDS:
            for a in tensor_args:
                reads.setdefault(root[a], []).append((node, a))
    return _Domains(root, kinds, reads, has_avgpool)


def _flat_args(node: fx.Node) -> list[fx.Node]:
    """Tensor-node arguments in order, lists (``torch.cat``) flattened."""
    out: list[fx.Node] = []

    def visit(a: Any) -> None:
        if isinstance(a, fx.Node):
            out.append(a)
        elif isinstance(a, tuple | list):
            for b in a:
                visit(b)
        elif isinstance(a, dict):
            for b in a.values():
                visit(b)

    visit(node.args)
    visit(node.kwargs)
    return out


def _float_mode(model: nn.Module) -> list[tuple[HardwareAware, HardwareConfig]]:
    saved = [(m, m.hw) for m in model.modules() if isinstance(m, HardwareAware)]
    for m, hw in saved:
        m.set_hardware(replace(hw, mode="float"))
    return saved


@torch.no_grad()
def calibrate(model: nn.Module, x: Tensor) -> None:
    """Set the formats of every hardware value from a float forward on ``x`` (module docstring)."""
    layers = approx_layers(model)
    hw = layers[0].hw
    if len({layer.hw.bits for layer in layers}) != 1:
        raise ValueError(f"layers of {sorted({layer.hw.bits for layer in layers})} bits: one word length per network")
    if isinstance(model, HardwareLayer) or getattr(model, UNTRACED_ATTR, False):
        _calibrate_layers(model, x)
        return
    graph = trace(model)
    mods = modules_by_path(model)
    saved = _float_mode(model)
    was_training = model.training
    try:
        model.eval()
        interp = fx.Interpreter(model, garbage_collect_values=False, graph=graph)
        interp.run(x)
        values = dict(interp.env)
    finally:
        model.train(was_training)
        for m, mhw in saved:
            m.set_hardware(mhw)
    dom = _domains(graph, mods, values)

    def fmt_of(observed: list[Tensor]) -> FixedPoint:
        flat = torch.cat([t.detach().flatten().to(torch.float64) for t in observed])
        return calibrate_tensor(flat, hw.bits, mode=hw.calibration, percentile=hw.percentile)

    fmts: dict[fx.Node, FixedPoint | None] = {}
    for r in {r for r in dom.root.values()}:
        readers = dom.reads.get(r, [])
        if dom.kind[r] == LAYER and r not in dom.has_avgpool and all(n.op == "output" for n, _ in readers):
            fmts[r] = None  # the output layer: its accumulator is the network output
            continue
        fmts[r] = fmt_of([values[v] for _, v in readers] or [values[r]])
    layer_calls: dict[int, fx.Node] = {}
    pools: dict[int, FixedPoint] = {}
    for node in graph.nodes:
        kind = dom.kind.get(node)
        if kind == LAYER:
            layer = mods[str(node.target)]
            assert isinstance(layer, HardwareLayer)
            if id(layer) in layer_calls:
                raise ValueError(f"layer {node.target!r} is called more than once (shared weights): each call needs "
                                 "its own formats and storage; give each call its own layer")
            layer_calls[id(layer)] = node
            src = _flat_args(node)[0]
            layer.act_fmt = fmts[dom.root[src]]
            layer.out_fmt = fmts[node]
        elif kind in (ADD, CAT):
            join = mods[str(node.target)]
            assert isinstance(join, HardwareAdd | HardwareCat)
            join.in_fmts = [_need(fmts[dom.root[a]], a) for a in _flat_args(node)]
            join.out_fmt = fmts[node]
        elif kind == AVGPOOL:
            pool = _avgpool_of(node, mods)
            fmt = _need(fmts[dom.root[node]], node)
            if pools.setdefault(id(pool), fmt) != fmt:
                raise ValueError(f"average pooling {node.target!r} is called on values of two formats: "
                                 "give each call its own module")
            pool.fmt = fmt
        elif kind == FLATTEN and node.op == "call_method" and node.target in ("view", "reshape"):
            src, out = values[_flat_args(node)[0]], values[node]
            if tuple(out.shape) != (src.shape[0], src[0].numel()):
                raise ValueError(f"{node_desc(node)} reshapes {tuple(src.shape)} to {tuple(out.shape)}: only a "
                                 "flatten to (batch, features) has an integer equivalent")
        elif kind == FOLD and isinstance(mods[str(node.target)], FoldedBatchNorm1d) and values[node].dim() != 2:
            raise ValueError(f"{node.target!r}: a BatchNorm1d folds into a Linear on (batch, features) only")
    # the parts kept float on purpose (convert's keep_float) were asked for: no warning about them
    floats = [p for p in float_parts(model, graph=graph) if not p.kept]
    if floats:
        warnings.warn(f"operations without an integer equivalent run in float between hardware layers: "
                      f"{describe_parts(floats)} (each layer is exact; to_quantized refuses this model; "
                      f"convert(..., keep_float={[p.name for p in floats]!r}) keeps them float on purpose)",
                      stacklevel=3)


def _need(fmt: FixedPoint | None, node: fx.Node) -> FixedPoint:
    if fmt is None:
        raise ValueError(f"{node_desc(node)} reads an output layer's accumulator")
    return fmt


def _avgpool_of(node: fx.Node, mods: dict[str, nn.Module]) -> HardwareAvgPool2d:
    pool = mods[str(node.target)]
    assert isinstance(pool, HardwareAvgPool2d)
    return pool


def _calibrate_layers(model: nn.Module, x: Tensor) -> None:
    """Untraced models: every layer calibrates its own input and output (no format is shared)."""
    layers = approx_layers(model)
    seen: dict[int, tuple[Tensor, Tensor]] = {}
    hooks = [layer.register_forward_hook(
        lambda m, inp, out: seen.__setitem__(id(m), (inp[0].detach(), out.detach()))) for layer in layers]
    saved = _float_mode(model)
    was_training = model.training
    try:
        model.eval()
        model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
        for m, mhw in saved:
            m.set_hardware(mhw)
    for layer in layers:
        if id(layer) not in seen:
            raise ValueError("a hardware layer was not called on the calibration input")
        a, z = seen[id(layer)]
        hw = layer.hw
        layer.act_fmt = calibrate_tensor(a, hw.bits, mode=hw.calibration, percentile=hw.percentile)
        layer.out_fmt = calibrate_tensor(z, hw.bits, mode=hw.calibration, percentile=hw.percentile)


# --------------------------------------------------------------------------- lowering
def _lower_layer(node: fx.Node, mods: dict[str, nn.Module]) -> list[IntOp]:
    layer = mods[str(node.target)]
    assert isinstance(layer, HardwareLayer)
    return [layer.int_layer()]


def _lower_avgpool(node: fx.Node, mods: dict[str, nn.Module]) -> list[IntOp]:
    pool = _avgpool_of(node, mods)
    ops: list[IntOp] = [IntAvgPool2d(None if pool.is_global else pool.kernel, None if pool.is_global else pool.stride)]
    if pool.how == "mean" and not pool.keepdim:
        ops.append(IntFlatten())  # the mean drops the two 1x1 dimensions
    return ops


def _lower_join(node: fx.Node, mods: dict[str, nn.Module]) -> list[IntOp]:
    join = mods[str(node.target)]
    assert isinstance(join, HardwareAdd | HardwareCat)
    if join.in_fmts is None or join.out_fmt is None:
        raise ValueError(f"{node_desc(node)} has no formats: run axhw.nn.calibrate_model(model, x) first")
    return [IntAdd(list(join.in_fmts), join.out_fmt) if isinstance(join, HardwareAdd)
            else IntCat(list(join.in_fmts), join.out_fmt, join.dim)]


#: The integer ops of each kind, ``(node, mods) -> ops``: the first reads the node's first tensor operand
#: (every operand, for :data:`_JOINS`), each later one the op before it.
_LOWERINGS: dict[str, Callable[[fx.Node, dict[str, nn.Module]], list[IntOp]]] = {
    LAYER: _lower_layer,
    RELU: lambda node, mods: [IntReLU()],
    MAXPOOL: lambda node, mods: [_int_maxpool(node, mods)],
    FLATTEN: lambda node, mods: [IntFlatten()],
    AVGPOOL: _lower_avgpool,
    ADD: _lower_join,
    CAT: _lower_join,
}
#: Kinds whose op reads every tensor operand.
_JOINS = (ADD, CAT)
#: Kinds that are their input's value in the integer network: no op.
_PASSES_THROUGH = (IDENTITY, FOLD, MONOTONE)


def export_refusal(parts: list[FloatPart]) -> str:
    """Why a model with float parts has no integer network, in one line naming every part: those kept
    float on purpose (``keep_float``) and those without an integer equivalent."""
    kept = [p for p in parts if p.kept]
    other = [p for p in parts if not p.kept]
    why = []
    if other:
        why.append(f"{describe_parts(other)} {'has' if len(other) == 1 else 'have'} no integer equivalent")
    if kept:
        why.append(f"{describe_parts(kept)} {'runs' if len(kept) == 1 else 'run'} in float on purpose "
                   "(keep_float, axhw train --keep-float)")
    return (f"{' and '.join(why)}: the integer network, and the RTL that runs it, has no float unit; it "
            f"supports {INTEGER_OPS}")


def lower(model: nn.Module, meta: dict[str, object] | None = None) -> QuantizedNetwork:
    """The integer network of a calibrated model (module docstring); an unsupported node is a one-line
    ``ValueError`` naming it (every float part at once: :func:`export_refusal`)."""
    if isinstance(model, HardwareLayer):
        model = nn.Sequential(model)
    graph = trace(model)
    mods = modules_by_path(model)
    dom = _domains(graph, mods, None)
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ValueError(f"model takes {len(placeholders)} inputs: to_quantized needs exactly one input tensor")
    out_node = next(n for n in graph.nodes if n.op == "output")
    result = out_node.args[0]
    if not isinstance(result, fx.Node):
        raise ValueError(f"model returns a {type(result).__name__}: to_quantized needs one output tensor")
    floats = float_parts(model, graph=graph)
    if floats:
        raise ValueError(export_refusal(floats))
    live: set[fx.Node] = set()
    stack = [result]
    while stack:
        n = stack.pop()
        if n not in live:
            live.add(n)
            stack.extend(n.all_input_nodes)
    value: dict[fx.Node, int] = {placeholders[0]: 0}
    ops: list[IntOp] = []
    seen_layers: set[int] = set()

    def emit(op: IntOp, node: fx.Node, reads: list[fx.Node]) -> None:
        idx = tuple(value[r] for r in reads)
        op.inputs = None if idx == (len(ops),) else idx
        ops.append(op)
        value[node] = len(ops)

    for node in graph.nodes:
        if node not in live or node.op in ("placeholder", "output"):
            continue
        kind = dom.kind[node]
        if kind == META:
            continue
        args = [a for a in _flat_args(node) if a in value]
        if not args:
            raise ValueError(f"{node_desc(node)} reads no tensor of the network")
        src = args[0]
        if kind in _PASSES_THROUGH:
            value[node] = value[src]
            continue
        if kind == LAYER:  # the one check across nodes: a layer's weights are stored once
            if (layer_id := id(mods[str(node.target)])) in seen_layers:
                raise ValueError(f"layer {node.target!r} is called more than once: give each call its own layer")
            seen_layers.add(layer_id)
        if kind not in _LOWERINGS:
            raise ValueError(f"{node_desc(node)} is of kind {kind!r}, which has no integer op")
        first, *rest = _LOWERINGS[kind](node, mods)
        emit(first, node, args if kind in _JOINS else [src])
        for op in rest:
            emit(op, node, [node])
    if not ops or value.get(result) != len(ops):
        raise ValueError("the network output is not computed by the network's last operation")
    if call_order(graph, mods) != [id(m) for m in approx_layers(model)]:
        # sample_chip draws flips in approx_layers order, forward_int in call order: they must agree
        raise ValueError("the model calls its layers in another order than it registers them: convert it with "
                         "axhw.convert(model, hw), which returns a GraphModule in call order")
    return QuantizedNetwork(ops, meta)


def _int_maxpool(node: fx.Node, mods: dict[str, nn.Module]) -> IntMaxPool2d:
    if node.op == "call_module":
        m = mods[str(node.target)]
        assert isinstance(m, nn.MaxPool2d)
        k, s = m.kernel_size, m.stride
    else:
        k, s = node_arg(node, 1, "kernel_size", None), node_arg(node, 2, "stride", None)
    k = k if isinstance(k, int) else k[0]
    s = k if s is None or s == [] or s == () else (s if isinstance(s, int) else s[0])
    return IntMaxPool2d(int(k), int(s))


# --------------------------------------------------------------------------- formats in checkpoints
def _fmt_dict(f: FixedPoint | None) -> dict[str, Any] | None:
    return None if f is None else {"bits": f.bits, "frac": f.frac, "signed": f.signed}


def _fmt(d: dict[str, Any] | None) -> FixedPoint | None:
    return None if d is None else FixedPoint(**d)


def hardware_formats(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Every calibrated format of the model by module path (layers: ``act_fmt``/``out_fmt``; joins:
    ``in_fmts``/``out_fmt``; average pooling: ``fmt``), to store beside its state dict."""
    out: dict[str, dict[str, Any]] = {}
    for path, m in model.named_modules():
        if isinstance(m, HardwareLayer):
            out[path] = {"act_fmt": _fmt_dict(m.act_fmt), "out_fmt": _fmt_dict(m.out_fmt)}
        elif isinstance(m, HardwareAdd | HardwareCat):
            out[path] = {"in_fmts": None if m.in_fmts is None else [_fmt_dict(f) for f in m.in_fmts],
                         "out_fmt": _fmt_dict(m.out_fmt)}
        elif isinstance(m, HardwareAvgPool2d):
            out[path] = {"fmt": _fmt_dict(m.fmt)}
    return out


def load_hardware_formats(model: nn.Module, formats: dict[str, dict[str, Any]]) -> None:
    """Restore :func:`hardware_formats`; a path the model lacks (or a module the formats lack) is an error."""
    mods = dict(model.named_modules())
    mine = {p for p, m in mods.items() if isinstance(m, HardwareLayer | HardwareAdd | HardwareCat | HardwareAvgPool2d)}
    if mine != set(formats):
        raise ValueError(f"formats do not match the model: missing {sorted(mine - set(formats))}, "
                         f"unknown {sorted(set(formats) - mine)}")
    for path, d in formats.items():
        m = mods[path]
        if isinstance(m, HardwareLayer):
            m.act_fmt, m.out_fmt = _fmt(d["act_fmt"]), _fmt(d["out_fmt"])
        elif isinstance(m, HardwareAdd | HardwareCat):
            m.in_fmts = None if d["in_fmts"] is None else [FixedPoint(**f) for f in d["in_fmts"]]
            m.out_fmt = _fmt(d["out_fmt"])
        elif isinstance(m, HardwareAvgPool2d):
            m.fmt = _fmt(d["fmt"])

