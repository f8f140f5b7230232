"""Graph patterns as data: which traced ``torch.fx`` node is which operation of the integer network.

:data:`PATTERNS` is one ordered table, a row (:class:`Pattern`) per operation the integer network knows (in
the spirit of ``torch.ao.quantization``'s ``BackendConfig``); :func:`classify` gives a node the kind of the
first row that matches it, :data:`FLOAT` when none does (no integer equivalent: the operation runs in float
between hardware layers, and :func:`axhw.nn.fx.lower.lower` refuses the model). The kinds
(:data:`KINDS`):

* ``input``, ``output``: the graph's placeholder and output;
* ``layer``: a hardware layer (``ApproxLinear``/``ApproxConv2d``);
* ``fold``: a batch norm folded into the layer before it (:mod:`axhw.nn.fx.ops`);
* ``add``, ``cat``, ``avgpool``: the hardware-aware joins and pooling :func:`axhw.nn.fx.trace.rewrite` puts in;
* ``relu``, ``maxpool`` (one square kernel and stride, no padding), ``flatten`` (to ``(batch, features)``);
* ``identity``: dropout, ``contiguous``, ``clone`` (nothing at inference);
* ``monotone``: sigmoid/softmax, order-preserving, so at the network output only (elsewhere float);
* ``meta``: shapes and sizes (``x.size(0)``), not tensors;
* ``float``: anything else.

What a kind *means* (its formats, its integer op) is :mod:`axhw.nn.fx.lower`'s; a row only says which nodes
are of that kind. To teach the converter that one more module, function or tensor method is one of these
operations, register a row in one place; :func:`unregister_pattern` takes it out again::

    import torch.nn.functional as F
    from torch import nn
    from axhw.nn.fx.patterns import IDENTITY, Pattern, register_pattern, unregister_pattern

    noise = Pattern(IDENTITY, modules=(nn.Dropout3d,), functions=(F.alpha_dropout,),
                    doc="dropout variants: nothing at inference")
    register_pattern(noise)  # appended: nodes the built-in rows match keep their kind
    ...                      # axhw.convert / calibrate_model / to_quantized now take them
    unregister_pattern(noise)

``register_pattern(row, before="relu")`` puts a row ahead of the first ``relu`` row instead, so it can
override a built-in row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from axhw.nn.fx.ops import FoldedBatchNorm1d, FoldedBatchNorm2d, HardwareAdd, HardwareAvgPool2d, HardwareCat
from axhw.nn.layers import HardwareLayer

__all__ = [
    "ADD",
    "AVGPOOL",
    "CAT",
    "FLATTEN",
    "FLOAT",
    "FOLD",
    "IDENTITY",
    "INPUT",
    "KINDS",
    "LAYER",
    "MAXPOOL",
    "META",
    "MONOTONE",
    "OUTPUT",
    "PATTERNS",
    "RELU",
    "Pattern",
    "classify",
    "feeds_output",
    "meta_nodes",
    "node_arg",
    "register_pattern",
    "unregister_pattern",
]

# --------------------------------------------------------------------------- kinds
INPUT = "input"
OUTPUT = "output"
LAYER = "layer"
FOLD = "fold"
ADD = "add"
CAT = "cat"
AVGPOOL = "avgpool"
RELU = "relu"
MAXPOOL = "maxpool"
FLATTEN = "flatten"
IDENTITY = "identity"
MONOTONE = "monotone"
META = "meta"
FLOAT = "float"
#: Every kind :func:`classify` returns and :mod:`axhw.nn.fx.lower` knows.
KINDS: tuple[str, ...] = (INPUT, OUTPUT, LAYER, FOLD, ADD, CAT, AVGPOOL, RELU, MAXPOOL, FLATTEN, IDENTITY, MONOTONE,
                          META, FLOAT)

#: ``where`` predicates and :meth:`Pattern.matches` are called as ``(node, mods, meta)``.
Predicate = Callable[[fx.Node, dict[str, nn.Module], set[fx.Node]], bool]


# --------------------------------------------------------------------------- the row
@dataclass(frozen=True)
class Pattern:
    """One row of :data:`PATTERNS`: which nodes are of one kind.

    A node matches when its opcode is in ``ops``, or it calls a module, function or method listed here,
    and then ``where`` (if any) holds.
    """

    kind: str
    """What the matched node is to the integer network: one of :data:`KINDS`, the string :func:`classify` returns."""
    modules: tuple[type, ...] = ()
    """``call_module`` nodes whose module is an instance of one of these types."""
    functions: tuple[Callable[..., Any], ...] = ()
    """``call_function`` nodes calling one of these functions (``F.relu``, ``torch.flatten``...)."""
    methods: tuple[str, ...] = ()
    """``call_method`` nodes calling a tensor method of one of these names (``x.relu()``...)."""
    ops: tuple[str, ...] = ()
    """fx opcodes matched whatever the node's target (``placeholder``, ``output``, ``get_attr``...)."""
    where: Predicate | None = None
    """An extra condition on a node the fields above matched, called as ``where(node, mods, meta)`` (``mods``:
    module path to module; ``meta``: the nodes :func:`meta_nodes` found); ``None``: none."""
    doc: str = ""
    """What the row stands for, in words (for readers of the table)."""

    def __post_init__(self) -> None:
        for name in ("modules", "functions", "methods", "ops"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not (self.modules or self.functions or self.methods or self.ops):
            raise ValueError(f"pattern {self.kind!r} names no modules, functions, methods or ops: it matches nothing")

    def matches(self, node: fx.Node, mods: dict[str, nn.Module], meta: set[fx.Node]) -> bool:
        """Whether ``node`` is of this row's kind (``mods``, ``meta``: as for :func:`classify`)."""
        op = node.op
        if op in self.ops:
            hit = True
        elif op == "call_module":
            hit = bool(self.modules) and isinstance(mods[str(node.target)], self.modules)
        elif op == "call_function":
            hit = node.target in self.functions
        elif op == "call_method":
            hit = node.target in self.methods
        else:
            hit = False
        return hit and (self.where is None or self.where(node, mods, meta))


# --------------------------------------------------------------------------- helpers of the rows
def node_arg(node: fx.Node, i: int, name: str, default: Any) -> Any:
    """Argument ``i`` of a call node, passed by position or as keyword ``name``; ``default`` if neither."""
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


def _in_meta(node: fx.Node, mods: dict[str, nn.Module], meta: set[fx.Node]) -> bool:
    return node in meta


def _is_meta(node: Any, meta: set[fx.Node]) -> bool:
    return isinstance(node, fx.Node) and node in meta


def _plain_maxpool(kernel: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: Any) -> bool:
    """Max pooling the integer op models: one square kernel and stride, no padding, dilation or ceil."""
    def one(v: Any) -> int | None:
        if isinstance(v, int):
            return v
        if isinstance(v, tuple | list) and len(v) == 2 and v[0] == v[1] and isinstance(v[0], int):
            return v[0]
        return None
    stride = kernel if stride is None or stride == [] or stride == () else stride
    return (one(kernel) is not None and one(stride) is not None and one(padding) == 0 and one(dilation) == 1
            and ceil_mode is False)


def _plain_maxpool_node(node: fx.Node, mods: dict[str, nn.Module], meta: set[fx.Node]) -> bool:
    """An ``nn.MaxPool2d`` or ``F.max_pool2d`` call the integer op models (:func:`_plain_maxpool`)."""
    if node.op == "call_module":
        m = mods[str(node.target)]
        return _plain_maxpool(m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)
    return _plain_maxpool(node_arg(node, 1, "kernel_size", None), node_arg(node, 2, "stride", None),
                          node_arg(node, 3, "padding", 0), node_arg(node, 4, "dilation", 1),
                          node_arg(node, 5, "ceil_mode", False))


def _flatten_shape(shape: tuple[Any, ...], meta: set[fx.Node]) -> bool:
    """``view``/``reshape`` to ``(batch, -1)`` (the batch a size read from the tensor) or ``(-1, n)``
    (checked against the real shape when calibrating)."""
    if len(shape) == 1 and isinstance(shape[0], tuple | list):
        shape = tuple(shape[0])
    if len(shape) != 2:
        return False
    first, second = shape
    return (second == -1 and _is_meta(first, meta)) or (first == -1 and isinstance(second, int | fx.Node))


def _flatten_node(node: fx.Node, mods: dict[str, nn.Module], meta: set[fx.Node]) -> bool:
    """A flatten to ``(batch, features)``: ``nn.Flatten()``, ``torch.flatten(x, 1)``, ``x.flatten(1)``,
    ``x.view(x.size(0), -1)``, ``x.reshape(-1, n)``..."""
    if node.op == "call_module":
        m = mods[str(node.target)]
        return isinstance(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1
    if node.op == "call_method" and node.target in ("view", "reshape"):
        return _flatten_shape(node.args[1:], meta)
    return node_arg(node, 1, "start_dim", 0) == 1 and node_arg(node, 2, "end_dim", -1) == -1


# --------------------------------------------------------------------------- the table
_TENSORS = ("call_module", "call_function", "call_method")

#: The operations the integer network knows, first match wins (:func:`classify`).
PATTERNS: tuple[Pattern, ...] = (
    Pattern(INPUT, ops=("placeholder",), doc="the network input"),
    Pattern(OUTPUT, ops=("output",), doc="the network output"),
    Pattern(FLOAT, ops=("get_attr",), doc="a parameter or buffer read in forward: float"),
    Pattern(META, ops=_TENSORS, where=_in_meta, doc="shapes and sizes (x.size(0), x.shape[1] * 2...), not tensors"),
    Pattern(LAYER, modules=(HardwareLayer,), doc="a hardware layer (ApproxLinear, ApproxConv2d)"),
    Pattern(FOLD, modules=(FoldedBatchNorm1d, FoldedBatchNorm2d), doc="a batch norm folded into the layer before it"),
    Pattern(ADD, modules=(HardwareAdd,), doc="a residual addition"),
    Pattern(CAT, modules=(HardwareCat,), doc="a concatenation"),
    Pattern(AVGPOOL, modules=(HardwareAvgPool2d,), doc="average pooling, global or windowed, and spatial means"),
    Pattern(RELU, modules=(nn.ReLU,), functions=(F.relu, torch.relu, torch.relu_), methods=("relu", "relu_"),
            doc="ReLU"),
    Pattern(MAXPOOL, modules=(nn.MaxPool2d,), functions=(F.max_pool2d, torch.max_pool2d), where=_plain_maxpool_node,
            doc="max pooling: one square kernel and stride, no padding, dilation or ceil mode"),
    Pattern(FLATTEN, modules=(nn.Flatten,), functions=(torch.flatten,), methods=("flatten", "view", "reshape"),
            where=_flatten_node, doc="a flatten to (batch, features)"),
    Pattern(IDENTITY, modules=(nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout),
            functions=(F.dropout, F.dropout2d, torch.dropout), methods=("contiguous", "clone"),
            doc="nothing at inference"),
    Pattern(MONOTONE, modules=(nn.Sigmoid, nn.Softmax, nn.LogSoftmax),
            functions=(torch.sigmoid, F.sigmoid, torch.softmax, F.softmax, F.log_softmax, torch.log_softmax),
            methods=("sigmoid", "softmax", "log_softmax"),
            doc="sigmoid/softmax: order-preserving, so at the network output only (elsewhere float)"),
)


def classify(node: fx.Node, mods: dict[str, nn.Module], meta: set[fx.Node]) -> str:
    """What ``node`` is to the integer network: the kind of the first row of :data:`PATTERNS` it matches,
    :data:`FLOAT` if none (static: from the graph and the modules alone).

    Args:
        node: a node of a traced graph.
        mods: module path to module (``dict(model.named_modules(remove_duplicate=False))``).
        meta: the graph's shape nodes (:func:`meta_nodes`).
    """
    for pattern in PATTERNS:
        if pattern.matches(node, mods, meta):
            return pattern.kind
    return FLOAT


def register_pattern(pattern: Pattern, before: str | None = None) -> None:
    """Add a row to :data:`PATTERNS`: at the end (``before=None``: only nodes no other row matches take it),
    or ahead of the first row of kind ``before``.

    Raises:
        ValueError: the row's kind is not one of :data:`KINDS` (calibration and lowering know no other), or
            no row has kind ``before``.
    """
    global PATTERNS
    if pattern.kind not in KINDS:
        raise ValueError(f"pattern kind {pattern.kind!r} is not one of {', '.join(KINDS)}: a new kind needs its "
                         "formats and integer op in axhw.nn.fx.lower too")
    if before is None:
        PATTERNS = (*PATTERNS, pattern)
        return
    at = next((i for i, p in enumerate(PATTERNS) if p.kind == before), None)
    if at is None:
        raise ValueError(f"no pattern of kind {before!r} to register before")
    PATTERNS = (*PATTERNS[:at], pattern, *PATTERNS[at:])


def unregister_pattern(pattern: Pattern) -> None:
    """Take out a row :func:`register_pattern` added (the first equal row).

    Raises:
        ValueError: the table holds no such row.
    """
    global PATTERNS
    if pattern not in PATTERNS:
        raise ValueError(f"pattern {pattern.kind!r} ({pattern.doc or 'no doc'}) is not in the table")
    at = PATTERNS.index(pattern)
    PATTERNS = PATTERNS[:at] + PATTERNS[at + 1:]


# --------------------------------------------------------------------------- graph-wide questions
def _reads_shape(node: fx.Node) -> bool:
    """``x.size()``, ``x.dim()``, ``x.shape``...: a value about a tensor, not a tensor."""
    if node.op == "call_method":
        return node.target in ("size", "dim")
    return node.op == "call_function" and node.target is getattr and node.args[1] in ("shape", "dtype", "device", "ndim")


def meta_nodes(graph: fx.Graph) -> set[fx.Node]:
    """Nodes that compute shapes and sizes, not tensors (``x.size(0)``, ``x.shape[1] * 2``...)."""
    meta: set[fx.Node] = set()
    for node in graph.nodes:
        derived = node.op in ("call_function", "call_method") and bool(node.all_input_nodes) and all(
            a in meta for a in node.all_input_nodes)
        if _reads_shape(node) or derived:
            meta.add(node)
    return meta


def feeds_output(node: fx.Node, mods: dict[str, nn.Module], meta: set[fx.Node]) -> bool:
    """``node``'s only use is the graph output, directly or through other :data:`MONOTONE` ops (where a
    sigmoid or softmax has an integer meaning: the order of the outputs)."""
    users = list(node.users)
    if len(users) != 1:
        return False
    user = users[0]
    if user.op == "output":
        return user.args[0] is node
    return classify(user, mods, meta) == MONOTONE and feeds_output(user, mods, meta)
