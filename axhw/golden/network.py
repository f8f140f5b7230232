"""Integer inference: the golden model the RTL is checked against (formats: docs/training.md, "Number formats").

Per layer: ``acc = sum_j mul(a_int[j], w_int[i][j]) + b_int[i]`` in the accumulator format (fractional bits
``frac_a + frac_w``; biases are stored in that format), saturated to the accumulator word, then re-quantization of ``acc`` to the next layer's
activation format by an arithmetic right shift with round-half-up (what a shifter plus an adder of
``2**(s-1)`` does in RTL), saturated to the activation word, then ReLU. Re-quantization is monotone and maps
0 to 0, so it commutes with ReLU and max-pooling; both orders give the same integers.

The same functions (:func:`linear_int`, :func:`conv2d_int`, :func:`requantize`) are used by the
hardware-aware layers of :mod:`axhw.nn`, so eval-mode hardware simulation equals :meth:`forward_int` exactly.

Graphs (residual connections, concatenation; :mod:`axhw.nn.fx.trace` builds them from any ``torch.fx``-traceable
model): every op has ``inputs``, the indices of the values it reads, where value 0 is the network input and
value ``i + 1`` is op ``i``'s output; ``None`` (the default, and all a chain needs) reads the previous value.
Three ops join or average values, defined here once for the golden model and the hardware-aware modules of
:mod:`axhw.nn.fx.ops` alike:

* :class:`IntAdd` (residual addition): each operand is re-quantized from its own format to the output format
  (the aligning shifter with round-half-up and saturation that :func:`requantize` models), then the operands
  are added and the sum saturates to the output word. A hardware adder of two fixed-point words must align
  their binary points first; rounding each operand on its own keeps the adder one output word wide.
* :class:`IntCat` (channel concatenation): every operand re-quantized to the common output format, then
  concatenated (what writing both into one buffer of one format means).
* :class:`IntAvgPool2d`: the exact integer sum of each window divided by the window size with
  round-half-up, in the input's format (an average stays in its operands' range, so no new format is needed;
  hardware: an adder tree and a divider by a constant, a multiply-and-shift that is exact over the
  accumulator range).

Per-neuron multiplier modes (ApproxAnn, Zhang et al. DATE 2015; :mod:`axhw.approxann`): a layer may carry a
boolean mask ``approx_neurons`` over its output neurons (conv: output channels). When :meth:`forward_int` gets
an ``approx`` multiplier, the products of masked neurons go through ``approx`` and all others through
``multiplier``; this is the per-output-neuron mode bit of the PE array. Without ``approx`` the mask is inert,
so every existing caller keeps its meaning. A file without masks is written exactly as before.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from axhw.arith.fixedpoint import FixedPoint, check_codes
from axhw.arith.multipliers import Exact, IntPair, Multiplier, as_pair
from axhw.arith.sram import NTVStorage
from axhw.common.io import atomic_torch_save

__all__ = [
    "FORMAT_VERSION",
    "IntAdd",
    "IntAvgPool2d",
    "IntCat",
    "IntConv2d",
    "IntFlatten",
    "IntLinear",
    "IntMaxPool2d",
    "IntReLU",
    "QuantizedNetwork",
    "add_int",
    "avgpool2d_int",
    "cat_int",
    "conv2d_int",
    "linear_int",
    "requantize",
]

FORMAT_VERSION = 1
_FORMAT_NAME = "axhw.QuantizedNetwork"


def requantize(acc: torch.Tensor, acc_frac: int, fmt: FixedPoint) -> torch.Tensor:
    """Accumulator codes (``acc_frac`` fractional bits) -> ``fmt`` codes: arithmetic shift right by
    ``s = acc_frac - fmt.frac`` with round-half-up (``(acc + 2**(s-1)) >> s``), or a left shift when
    ``s < 0``, then saturation to ``fmt``'s range."""
    s = acc_frac - fmt.frac
    if s > 0:
        out = (acc + (1 << (s - 1))) >> s
    elif s < 0:
        # A left shift could leave int64: saturate first (any value beyond the word saturates anyway).
        out = acc.clamp(fmt.qmin, fmt.qmax) << (-s)
    else:
        out = acc
    return out.clamp(fmt.qmin, fmt.qmax)


def linear_int(a: torch.Tensor, w: torch.Tensor, b: torch.Tensor, mul: Multiplier) -> torch.Tensor:
    """``acc[n, i] = sum_j mul(a[n, j], w[i, j]) + b[i]`` exactly (int64)."""
    return mul.matmul(a, w.T.contiguous()) + b


def conv2d_int(
    a: torch.Tensor, w: torch.Tensor, b: torch.Tensor, mul: Multiplier, stride: IntPair = 1,
    padding: IntPair | tuple[int, int, int, int] = 0, dilation: IntPair = 1, groups: int = 1,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Integer convolution: every product goes through ``mul`` (:meth:`Multiplier.conv2d`), plus the bias
    per output channel. ``padding`` is an int or ``(h, w)`` pair (zero padding is code 0), or the
    ``F.pad`` 4-tuple ``(left, right, top, bottom)`` (asymmetric ``padding='same'``); ``padding_mode``
    other than ``zeros`` pads the codes as ``nn.Conv2d`` pads its input (reflect/replicate/circular copy
    codes, so the result stays exact)."""
    if padding_mode != "zeros" or (isinstance(padding, tuple | list) and len(padding) == 4):
        pad4 = tuple(padding) if isinstance(padding, tuple | list) and len(padding) == 4 else (
            as_pair(padding)[1], as_pair(padding)[1], as_pair(padding)[0], as_pair(padding)[0])
        mode = "constant" if padding_mode == "zeros" else padding_mode
        a = F.pad(a.to(torch.float64), pad4, mode=mode).to(torch.int64)  # exact: small integer codes
        padding = 0
    return mul.conv2d(a, w, stride, padding, dilation, groups) + b.reshape(1, -1, 1, 1)


def add_int(operands: list[torch.Tensor], in_fmts: list[FixedPoint], out_fmt: FixedPoint) -> torch.Tensor:
    """Residual addition (:class:`IntAdd`): every operand re-quantized from its format to ``out_fmt``
    (round-half-up shift, saturation), summed (broadcasting as torch does), saturated to ``out_fmt``."""
    total = requantize(operands[0], in_fmts[0].frac, out_fmt)
    for a, fmt in zip(operands[1:], in_fmts[1:], strict=True):
        total = total + requantize(a, fmt.frac, out_fmt)
    return total.clamp(out_fmt.qmin, out_fmt.qmax)


def cat_int(operands: list[torch.Tensor], in_fmts: list[FixedPoint], out_fmt: FixedPoint, dim: int = 1) -> torch.Tensor:
    """Concatenation (:class:`IntCat`) of the operands re-quantized to the common ``out_fmt``."""
    return torch.cat([requantize(a, f.frac, out_fmt) for a, f in zip(operands, in_fmts, strict=True)], dim=dim)


def avgpool2d_int(a: torch.Tensor, kernel: IntPair | None, stride: IntPair | None = None) -> torch.Tensor:
    """Average pooling of codes (:class:`IntAvgPool2d`): the exact sum of each ``kernel`` window (None: the
    whole map, output 1x1) divided by the window size with round-half-up, ``floor((2 s + n) / 2n)``."""
    kh, kw = (a.shape[-2], a.shape[-1]) if kernel is None else as_pair(kernel)
    st = (kh, kw) if kernel is None or stride is None else as_pair(stride)
    # float64 sums are exact: |codes| < 2**31 and at most 2**21 of them per window
    s = F.avg_pool2d(a.to(torch.float64), (kh, kw), st, divisor_override=1).to(torch.int64)
    n = kh * kw
    return torch.div(2 * s + n, 2 * n, rounding_mode="floor")


# --------------------------------------------------------------------------- integer layers
@dataclass
class IntLinear:
    """A fully-connected layer in integers. ``out_fmt`` is the next layer's activation format, or None for
    the output layer (whose accumulator is the network output)."""

    weight: torch.Tensor
    bias: torch.Tensor
    act_fmt: FixedPoint
    weight_fmt: FixedPoint
    acc_fmt: FixedPoint
    out_fmt: FixedPoint | None
    bias_fmt: FixedPoint | None = None
    #: Output neurons (conv: channels) whose multipliers run in the approximate mode; None: all exact.
    approx_neurons: torch.Tensor | None = None
    kind: str = field(default="linear", init=False)
    #: Values read (0: network input, i + 1: op i's output); None: the previous value (a chain).
    inputs: tuple[int, ...] | None = field(default=None, kw_only=True)
    #: Whether the bias words sit in the NTV memory with the weights (they flip with them), or in reliable
    #: memory at the nominal supply (:attr:`axhw.nn.HardwareConfig.ntv_biases`). Files without it: True.
    bias_in_ntv: bool = field(default=True, kw_only=True)

    def __post_init__(self) -> None:
        # The stored bias word: the accumulator's scale (frac) in a word of its own width, by default the
        # accumulator's (docs/training.md, "Number formats"). A narrower word bounds what an NTV flip of a
        # bias can do.
        if self.bias_fmt is None:
            self.bias_fmt = self.acc_fmt
        if self.bias_fmt.frac != self.acc_fmt.frac or self.bias_fmt.bits > self.acc_fmt.bits:
            raise ValueError(f"bias format {self.bias_fmt} must have the accumulator's frac and at most its width")
        if not isinstance(self.bias_in_ntv, bool):
            raise ValueError(f"bias_in_ntv must be True or False, got {self.bias_in_ntv!r}")
        if self.approx_neurons is not None:
            mask = torch.as_tensor(self.approx_neurons)
            if mask.dtype != torch.bool or mask.shape != (self.weight.shape[0],):
                raise ValueError(f"approx_neurons must be a bool mask of shape ({self.weight.shape[0]},), "
                                 f"got {mask.dtype} {tuple(mask.shape)}")
            self.approx_neurons = mask

    @property
    def fan_in(self) -> int:
        """Multipliers per output neuron (one per synapse; conv: per kernel weight of a channel)."""
        return int(self.weight[0].numel())

    def stored(self, storage: NTVStorage | None, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) codes read back from ``storage``: weight words, then bias words (``bias_fmt``), one
        fresh flip pattern drawn in one pass for both (:meth:`NTVStorage.corrupt_all`, the draw the fused
        hardware forward of :mod:`axhw.nn.fused` makes too; each bias word drawn in an ``acc_fmt.bits``-wide
        slot of which its ``bias_fmt.bits`` low bits are stored, so the chip is the same for every bias width);
        clean codes without storage or at p = 0.
        Biases not in the NTV memory (:attr:`bias_in_ntv` False) come back clean and the draw covers the
        weight words only."""
        if storage is None or storage.flip_p == 0:
            return self.weight, self.bias
        assert self.bias_fmt is not None
        if not self.bias_in_ntv:
            return storage.corrupt_all([self.weight], [self.weight_fmt], generator)[0], self.bias
        # each bias word in an accumulator-wide slot of the draw: the chip does not depend on the bias width
        w, b = storage.corrupt_all([self.weight, self.bias], [self.weight_fmt, self.bias_fmt], generator,
                                   slots=[self.weight_fmt.bits, self.acc_fmt.bits])
        return w, b

    def accumulate(self, a: torch.Tensor, mul: Multiplier, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return linear_int(a, w, b, mul)

    def accumulate_modes(self, a: torch.Tensor, mul: Multiplier, w: torch.Tensor, b: torch.Tensor,
                         approx: Multiplier | None = None) -> torch.Tensor:
        """:meth:`accumulate` with per-neuron modes: neurons in :attr:`approx_neurons` multiply with
        ``approx``, the others with ``mul``. The neuron (channel) axis is dim 1 for linear and conv alike."""
        mask = self.approx_neurons
        if approx is None or mask is None or not bool(mask.any()):
            return self.accumulate(a, mul, w, b)
        if bool(mask.all()):
            return self.accumulate(a, approx, w, b)
        exact_part = self.accumulate(a, mul, w[~mask], b[~mask])
        approx_part = self.accumulate(a, approx, w[mask], b[mask])
        out = exact_part.new_empty((exact_part.shape[0], len(mask), *exact_part.shape[2:]))
        out[:, ~mask] = exact_part
        out[:, mask] = approx_part
        return out

    def run(self, a: torch.Tensor, mul: Multiplier, w: torch.Tensor, b: torch.Tensor,
            approx: Multiplier | None = None) -> torch.Tensor:
        """Accumulate, saturate to the accumulator word, re-quantize for the next layer.

        The sum is exact (hardware: an accumulator with ``ceil(log2(fan_in + 1))`` guard bits) and then
        saturates to ``acc_fmt``: sums only leave the word when NTV flips hit the high bits of a bias
        stored in the accumulator format, and saturation, unlike wrap-around, keeps the sign.
        ``approx`` selects the multiplier of the neurons in :attr:`approx_neurons` (see the module docstring).
        """
        acc = self.accumulate_modes(a, mul, w, b, approx).clamp(self.acc_fmt.qmin, self.acc_fmt.qmax)
        return acc if self.out_fmt is None else requantize(acc, self.acc_fmt.frac, self.out_fmt)


@dataclass
class IntConv2d(IntLinear):
    """A convolution layer in integers: ``stride``, ``padding`` and ``dilation`` are ints or ``(h, w)``
    pairs (``padding`` may also be the ``F.pad`` 4-tuple of an asymmetric ``'same'``), ``groups`` as in
    ``nn.Conv2d``. Options at their defaults are left out of saved files, which stay byte-for-byte what
    older versions wrote."""

    stride: IntPair = 1
    padding: IntPair | tuple[int, int, int, int] = 0
    kind: str = field(default="conv2d", init=False)
    dilation: IntPair = 1
    groups: int = 1
    padding_mode: str = "zeros"

    def accumulate(self, a: torch.Tensor, mul: Multiplier, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return conv2d_int(a, w, b, mul, self.stride, self.padding, self.dilation, self.groups, self.padding_mode)

    def accumulate_modes(self, a: torch.Tensor, mul: Multiplier, w: torch.Tensor, b: torch.Tensor,
                         approx: Multiplier | None = None) -> torch.Tensor:
        mask = self.approx_neurons
        if self.groups == 1 or approx is None or mask is None or bool(mask.all()) or not bool(mask.any()):
            return super().accumulate_modes(a, mul, w, b, approx)
        # a subset of output channels would break the group structure: run both modes, pick per channel
        return torch.where(mask.reshape(1, -1, 1, 1), self.accumulate(a, approx, w, b), self.accumulate(a, mul, w, b))


@dataclass
class IntReLU:
    kind: str = field(default="relu", init=False)
    inputs: tuple[int, ...] | None = field(default=None, kw_only=True)


@dataclass
class IntMaxPool2d:
    kernel: int
    stride: int
    kind: str = field(default="maxpool2d", init=False)
    inputs: tuple[int, ...] | None = field(default=None, kw_only=True)


@dataclass
class IntFlatten:
    kind: str = field(default="flatten", init=False)
    inputs: tuple[int, ...] | None = field(default=None, kw_only=True)


@dataclass
class IntAvgPool2d:
    """Average pooling in the input's format (:func:`avgpool2d_int`); ``kernel=None``: global (1x1 out)."""

    kernel: IntPair | None = None
    stride: IntPair | None = None
    kind: str = field(default="avgpool2d", init=False)
    inputs: tuple[int, ...] | None = field(default=None, kw_only=True)


@dataclass
class IntAdd:
    """Residual addition of ``len(in_fmts)`` values (:func:`add_int`)."""

    in_fmts: list[FixedPoint]
    out_fmt: FixedPoint
    kind: str = field(default="add", init=False)
    inputs: tuple[int, ...] | None = field(default=None, kw_only=True)


@dataclass
class IntCat:
    """Concatenation along ``dim`` in one common format (:func:`cat_int`)."""

    in_fmts: list[FixedPoint]
    out_fmt: FixedPoint
    dim: int = 1
    kind: str = field(default="cat", init=False)
    inputs: tuple[int, ...] | None = field(default=None, kw_only=True)


IntOp = IntLinear | IntConv2d | IntReLU | IntMaxPool2d | IntFlatten | IntAvgPool2d | IntAdd | IntCat
_JOINS = (IntAdd, IntCat)


class QuantizedNetwork:
    """A trained network in integers: per-layer formats, integer weights and biases, re-quantization
    shifts. Built from a model by :func:`axhw.nn.to_quantized`; saved and loaded as a versioned file."""

    def __init__(self, ops: list[IntOp], meta: dict[str, Any] | None = None) -> None:
        if not ops or not any(isinstance(op, IntLinear) for op in ops):
            raise ValueError("a QuantizedNetwork needs at least one linear or conv layer")
        for i, op in enumerate(ops):
            ins = self._inputs_of(i, op)
            if any(not 0 <= j <= i for j in ins):
                raise ValueError(f"op {i} ({op.kind}) reads values {ins}: only the input (0) and earlier ops' "
                                 f"outputs (1..{i}) exist there")
            n = len(op.in_fmts) if isinstance(op, _JOINS) else 1
            if len(ins) != n or (isinstance(op, _JOINS) and n < 2):
                raise ValueError(f"op {i} ({op.kind}) reads {len(ins)} value(s) but takes {n}"
                                 + (" (a join takes two or more)" if isinstance(op, _JOINS) else ""))
        self._formats(ops)
        self.ops = ops
        self.meta = dict(meta or {})

    @staticmethod
    def _inputs_of(i: int, op: IntOp) -> tuple[int, ...]:
        return (i,) if op.inputs is None else tuple(op.inputs)

    @property
    def is_chain(self) -> bool:
        """Every op reads the previous value only (no residual connection, no concatenation)."""
        return all(op.inputs is None or tuple(op.inputs) == (i,) for i, op in enumerate(self.ops))

    def op_inputs(self, i: int) -> tuple[int, ...]:
        """Indices of the values op ``i`` reads (0: the network input, ``j + 1``: op ``j``'s output)."""
        return self._inputs_of(i, self.ops[i])

    def value_formats(self) -> list[FixedPoint | None]:
        """The format of every value (index as in :meth:`op_inputs`): the input's, then each op's output.
        Layers emit their ``out_fmt`` (the accumulator's for an output layer), joins their ``out_fmt``, and
        ReLU, pooling and flattening keep their input's. A value read in a format other than the one it
        holds is an error (the integer network would not be the model's)."""
        return self._formats(self.ops)

    @classmethod
    def _formats(cls, ops: list[IntOp]) -> list[FixedPoint | None]:
        roots: list[int] = [0]  # the value whose format each value holds (pooling etc. keep their input's)
        held: dict[int, FixedPoint] = {}

        def read(i: int, j: int, fmt: FixedPoint) -> None:
            have = held.setdefault(roots[j], fmt)
            if have != fmt:
                raise ValueError(f"op {i} ({ops[i].kind}) reads value {j} as {fmt} but it holds {have}")

        for i, op in enumerate(ops):
            ins = cls._inputs_of(i, op)
            if isinstance(op, IntLinear):
                read(i, ins[0], op.act_fmt)
                held[i + 1] = op.out_fmt if op.out_fmt is not None else op.acc_fmt
                roots.append(i + 1)
            elif isinstance(op, _JOINS):
                for j, f in zip(ins, op.in_fmts, strict=True):
                    read(i, j, f)
                held[i + 1] = op.out_fmt
                roots.append(i + 1)
            else:
                roots.append(roots[ins[0]])
        return [held.get(r) for r in roots]

    @property
    def layers(self) -> list[IntLinear]:
        """The layers that hold parameters (linear and conv), in order."""
        return [op for op in self.ops if isinstance(op, IntLinear)]

    @property
    def input_fmt(self) -> FixedPoint:
        """Format of the input codes: what the first op that reads the input expects."""
        fmt = self.value_formats()[0]
        assert fmt is not None  # some op reads the input: __init__ allows no other graph
        return fmt

    @property
    def output_fmt(self) -> FixedPoint:
        """Format of the output codes (the output layer's accumulator, for the Table 1 networks)."""
        fmt = self.value_formats()[-1]
        assert fmt is not None
        return fmt

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """Real inputs -> input codes (round half to even, saturate)."""
        return self.input_fmt.quantize(x)

    def stored_params(
        self, storage: NTVStorage | None = None, generator: torch.Generator | None = None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(weight, bias) codes as read from storage: one chip instance, corrupted layer by layer, weight
        then bias (the order :func:`axhw.nn.sample_chip` follows too)."""
        return [layer.stored(storage, generator) for layer in self.layers]

    def forward_int(
        self,
        x_int: torch.Tensor,
        multiplier: Multiplier,
        storage: NTVStorage | None = None,
        generator: torch.Generator | None = None,
        return_all: bool = False,
        params: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
        approx: Multiplier | None = None,
    ) -> torch.Tensor | list[torch.Tensor]:
        """Integer-exact inference (the golden model).

        Args:
            x_int: input codes in :attr:`input_fmt`, shape ``(N, features)`` or ``(N, C, H, W)``.
            multiplier: the multiplier every product goes through.
            storage: NTV storage; one flip pattern (chip) is drawn per call and held for all of ``x_int``.
            generator: random source of the flips.
            return_all: also return every op's output (for layer-by-layer RTL checks).
            params: pre-drawn stored parameters (from :meth:`stored_params`), overriding ``storage``.
            approx: multiplier of the neurons each layer marks in ``approx_neurons`` (per-neuron modes,
                ApproxAnn); None: every product goes through ``multiplier``.

        Returns:
            The output layer's accumulator codes (``output_fmt``), or the list of all op outputs.
        """
        check_codes(x_int, self.input_fmt.qmin, self.input_fmt.qmax, what="input codes")
        if params is None:
            params = self.stored_params(storage, generator)
        values = [x_int.to(torch.int64)]
        it = iter(params)
        for i, op in enumerate(self.ops):
            args = [values[j] for j in self.op_inputs(i)]
            h = args[0]
            if isinstance(op, IntLinear):
                w, b = next(it)
                h = op.run(h, multiplier, w, b, approx)
            elif isinstance(op, IntReLU):
                h = h.clamp(min=0)
            elif isinstance(op, IntMaxPool2d):
                h = F.max_pool2d(h.to(torch.float64), op.kernel, op.stride).to(torch.int64)
            elif isinstance(op, IntFlatten):
                h = h.flatten(1)
            elif isinstance(op, IntAvgPool2d):
                h = avgpool2d_int(h, op.kernel, op.stride)
            elif isinstance(op, IntAdd):
                h = add_int(args, op.in_fmts, op.out_fmt)
            elif isinstance(op, IntCat):
                h = cat_int(args, op.in_fmts, op.out_fmt, op.dim)
            values.append(h)
        return values[1:] if return_all else values[-1]

    def layer_inputs(self, outs: list[torch.Tensor], x_int: torch.Tensor) -> list[torch.Tensor]:
        """The input codes of every parameter layer, picked from ``forward_int(..., return_all=True)``."""
        values = [x_int.to(torch.int64), *outs]
        return [values[self.op_inputs(i)[0]] for i, op in enumerate(self.ops) if isinstance(op, IntLinear)]

    def multiplies_per_inference(self, x_int: torch.Tensor) -> int:
        """Products of one inference on inputs shaped like ``x_int`` (codes; the first sample is run).

        A layer makes its weight count of products per output position: a fully-connected layer once, a
        convolution once per output pixel. Why a forward pass: a convolution's output size depends on the
        input size, which the network itself does not store (the weight count alone undercounts LeNet-5's
        416,520 products as 61,470).
        """
        bits = max(self.input_fmt.bits, *(layer.weight_fmt.bits for layer in self.layers))
        outs = self.forward_int(x_int[:1].to(torch.int64), Exact(bits, True), return_all=True)
        assert isinstance(outs, list)
        total = 0
        for i, op in enumerate(self.ops):
            if isinstance(op, IntLinear):
                out = outs[i]
                positions = out[0, 0].numel() if out.dim() == 4 else 1
                total += op.weight.numel() * positions
        return total

    def predict(self, x: torch.Tensor, multiplier: Multiplier, **kw: Any) -> torch.Tensor:
        """Class predictions from real inputs (argmax of the output accumulator)."""
        out = self.forward_int(self.quantize_input(x), multiplier, **kw)
        assert isinstance(out, torch.Tensor)
        return out.argmax(dim=1)

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        ops = []
        for op in self.ops:
            d: dict[str, Any] = {k: (asdict(v) if isinstance(v, FixedPoint) else v) for k, v in vars(op).items()}
            if d.get("approx_neurons", 0) is None:
                del d["approx_neurons"]  # files without modes stay byte-for-byte what older versions wrote
            for key, default in (("dilation", 1), ("groups", 1), ("padding_mode", "zeros")):
                if key in d and d[key] in (default, (default, default)):
                    del d[key]  # conv options at their defaults: the file older versions wrote
            if d.get("inputs", 0) is None:
                del d["inputs"]  # a chain: the file older versions wrote
            elif "inputs" in d:
                d["inputs"] = list(d["inputs"])
            if d.get("bias_in_ntv", False) is True:
                del d["bias_in_ntv"]  # biases in NTV memory: the file older versions wrote
            if "in_fmts" in d:
                d["in_fmts"] = [asdict(f) for f in d["in_fmts"]]
            d["kind"] = op.kind
            ops.append(d)
        return {"format": _FORMAT_NAME, "version": FORMAT_VERSION, "ops": ops, "meta": self.meta}

    def save(self, path: str | Path) -> None:
        """Write atomically (temp file in the same directory, then rename)."""
        atomic_torch_save(self.state(), path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> QuantizedNetwork:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise ValueError(f"{path}: not a readable QuantizedNetwork file ({type(exc).__name__}); re-export it") from exc
        return cls.from_state(state, source=str(path))

    @classmethod
    def from_state(cls, state: Any, source: str = "state") -> QuantizedNetwork:
        if not isinstance(state, dict) or state.get("format") != _FORMAT_NAME:
            raise ValueError(f"{source}: not a QuantizedNetwork file")
        if state.get("version") != FORMAT_VERSION:
            raise ValueError(f"{source}: QuantizedNetwork version {state.get('version')} unsupported (need {FORMAT_VERSION})")
        kinds = {"linear": IntLinear, "conv2d": IntConv2d, "relu": IntReLU, "maxpool2d": IntMaxPool2d,
                 "flatten": IntFlatten, "avgpool2d": IntAvgPool2d, "add": IntAdd, "cat": IntCat}
        ops: list[IntOp] = []
        try:
            for d in state["ops"]:
                d = dict(d)
                kind = d.pop("kind")
                for key in ("act_fmt", "weight_fmt", "acc_fmt", "out_fmt", "bias_fmt"):
                    if isinstance(d.get(key), dict):
                        d[key] = FixedPoint(**d[key])
                if "in_fmts" in d:
                    d["in_fmts"] = [FixedPoint(**f) for f in d["in_fmts"]]
                if d.get("inputs") is not None:
                    d["inputs"] = tuple(int(j) for j in d["inputs"])
                ops.append(kinds[kind](**d))
            net = cls(ops, state.get("meta"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: corrupt QuantizedNetwork ({exc})") from exc
        for layer in net.layers:  # codes must fit their words: a corrupt file fails here, not in RTL
            check_codes(layer.weight, layer.weight_fmt.qmin, layer.weight_fmt.qmax, what=f"{source} weights")
            assert layer.bias_fmt is not None
            check_codes(layer.bias, layer.bias_fmt.qmin, layer.bias_fmt.qmax, what=f"{source} biases")
        return net
