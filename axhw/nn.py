"""Hardware-aware layers: ``ApproxLinear`` / ``ApproxConv2d`` and the clipped straight-through estimator.

Three layers of abstraction, as in IBM aihwkit: integer numerics (:mod:`axhw.multipliers`,
:mod:`axhw.quant`), the autograd function :class:`ClippedSTE`, and the ``nn`` modules here. A layer runs in
one of three modes (:class:`HardwareConfig.mode`):

* ``float``: the ideal network (conventional BP and AxTrain-act train here);
* ``quantized``: dynamic fixed-point operands and exact multiplication;
* ``hardware``: quantized operands, the configured approximate multiplier and NTV storage of the parameters
  (AxTrain-pas trains here; fresh bit flips every forward pass in training, a held chip in eval).

Per-neuron modes (ApproxAnn, :mod:`axhw.approxann`): in ``hardware`` mode a layer's ``approx_neurons`` mask
selects the neurons whose products go through :attr:`HardwareConfig.approx_multiplier`; the rest use
:attr:`HardwareConfig.multiplier`, exactly as :meth:`axhw.quant.QuantizedNetwork.forward_int` does with
``approx=``. The mask is a plain attribute (not a buffer), so state dicts and checkpoints are unchanged.

In the two integer modes the layer emits the next layer's activation codes, dequantized (exact in float32),
computed by the very functions :meth:`axhw.quant.QuantizedNetwork.forward_int` uses, so eval-mode output
equals integer inference bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from axhw.fixedpoint import FixedPoint, calibrate
from axhw.multipliers import Multiplier, get_multiplier
from axhw.quant import (
    IntConv2d,
    IntFlatten,
    IntLinear,
    IntMaxPool2d,
    IntOp,
    IntReLU,
    QuantizedNetwork,
)
from axhw.sram import NOMINAL_MV, NTVStorage

__all__ = [
    "ApproxConv2d",
    "ApproxLinear",
    "ClippedSTE",
    "HardwareConfig",
    "approx_layers",
    "calibrate_model",
    "sample_chip",
    "set_hardware",
    "to_quantized",
]

Mode = Literal["float", "quantized", "hardware"]


@dataclass(frozen=True)
class HardwareConfig:
    """What the hardware model of a layer is.

    Attributes:
        mode: ``float`` (ideal), ``quantized`` (fixed point, exact products) or ``hardware``.
        multiplier: multiplier for ``hardware`` mode: a name (``exact``, ``drum<k>``, ``K1``..``K4``, or a
            circuit imported into the multiplier library, :mod:`axhw.library`) or a
            :class:`~axhw.multipliers.Multiplier` object such as a ``LUTMultiplier`` (its ``bits`` must match).
        bits: word length of weights and activations (spec section 1: 8 by default, 16 works).
        bias_bits: width of the stored bias word. Biases are stored at the accumulator's scale (spec
            section 1: they are added into it unshifted) in a word of ``2 * bits`` bits by default (the
            product width; capped at ``acc_bits``). Why not the full accumulator word: trained biases need
            far fewer bits (<= 10 on the Table 1 networks), and every unused high-order bit is one more
            bit an NTV flip can turn into a +-2**30 error (paper section 3.2: remove unnecessary high-order
            bits to confine storage noise). Clean inference is identical as long as the biases fit;
            values that do not fit saturate.
        acc_bits: accumulator word length; biases are stored in it. ``None``: 32 for words up to 8 bits
            (spec section 1), ``2 * bits + 16`` above (16-bit products summed over fan-ins up to 2**15).
        voltage_mv: SRAM supply for parameter storage in ``hardware`` mode (1100 = reliable).
        calibration: how ``frac`` is chosen for weights and activations (``maxabs`` or ``percentile``).
        percentile: percentile used by ``percentile`` calibration.
        saturation_ste: also zero the straight-through gradient of outputs that the re-quantizer clamped to
            the next layer's format (standard QAT practice, on top of eq. 12). On by default; ``False`` is
            eq. 12 alone, as the paper states it. Why: with activation formats calibrated per epoch,
            hidden layers saturate early in training from random init and the gradient of the unclamped
            float path runs away (measured on MNIST-MLP: pas stalls at 9.8% without it, see
            docs/training.md). Outputs inside the format keep eq. 12's gradient unchanged.
        approx_multiplier: in ``hardware`` mode, the multiplier of the neurons each layer marks in
            ``approx_neurons`` (ApproxAnn's per-neuron modes); None: masks are ignored.
    """

    mode: Mode = "float"
    multiplier: str | Multiplier = "exact"
    bits: int = 8
    acc_bits: int | None = None
    bias_bits: int | None = None
    voltage_mv: float = NOMINAL_MV
    calibration: Literal["maxabs", "percentile"] = "maxabs"
    percentile: float = 99.99
    approx_multiplier: str | Multiplier | None = None
    saturation_ste: bool = True

    def __post_init__(self) -> None:
        if self.mode not in ("float", "quantized", "hardware"):
            raise ValueError(f"unknown mode {self.mode!r}: valid modes are 'float', 'quantized', 'hardware'")
        if self.acc_bits is None:
            object.__setattr__(self, "acc_bits", 32 if self.bits <= 8 else 2 * self.bits + 16)
        self.get_multiplier()  # validates name and bits
        self.get_approx_multiplier()
        self.storage()  # validates the voltage
        FixedPoint(self.acc_bits, 0)
        if self.bias_bits is None:
            object.__setattr__(self, "bias_bits", min(2 * self.bits, self.acc_bits))
        if self.bias_bits is not None and not 2 <= self.bias_bits <= self.acc_bits:
            raise ValueError(f"bias_bits={self.bias_bits} out of range: valid range is [2, acc_bits={self.acc_bits}]")

    def get_multiplier(self) -> Multiplier:
        return get_multiplier(self.multiplier if self.mode == "hardware" else "exact", self.bits)

    def get_approx_multiplier(self) -> Multiplier | None:
        """The multiplier of approximate-mode neurons, or None (outside ``hardware`` mode, or unset)."""
        if self.approx_multiplier is None:
            return None
        mul = get_multiplier(self.approx_multiplier, self.bits)
        return mul if self.mode == "hardware" else None

    def storage(self) -> NTVStorage | None:
        st = NTVStorage(self.voltage_mv)
        return st if self.mode == "hardware" and st.flip_p > 0 else None


class ClippedSTE(torch.autograd.Function):
    """Straight-through estimator with gradient clipping, the paper's eq. 12:
    ``grad_in = grad_out * 1{|grad_out| < 1}``.

    Why: the approximate multiplier and bit flips have no useful derivative; the forward value comes from
    the hardware model while the gradient passes straight to the ideal computation, and large
    noise-induced gradients are cut so they cannot derail convergence.
    """

    @staticmethod
    def forward(ctx, reference: torch.Tensor, hardware: torch.Tensor,  # type: ignore[override]
                live: torch.Tensor | None = None) -> torch.Tensor:
        ctx.has_live = live is not None
        if live is not None:
            ctx.save_for_backward(live)
        return hardware.detach().clone()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        grad = grad_out * (grad_out.abs() < 1).to(grad_out.dtype)
        if ctx.has_live:  # optional: no gradient where the hardware clamped (saturation-aware STE)
            (live,) = ctx.saved_tensors
            grad = grad * live.to(grad.dtype)
        return grad, None, None


class _HardwareLayer:
    """Shared hardware behaviour of :class:`ApproxLinear` and :class:`ApproxConv2d`."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    training: bool

    def _init_hardware(self, hw: HardwareConfig | None) -> None:
        self.hw = hw or HardwareConfig()
        self.act_fmt: FixedPoint | None = None  # input activation format, set by calibrate_model
        self.out_fmt: FixedPoint | None = None  # next layer's activation format; None for the output layer
        self.generator: torch.Generator | None = None  # source of training-time bit flips
        self._chip: tuple[torch.Tensor, torch.Tensor] | None = None
        self._mul = self.hw.get_multiplier()
        self._approx_mul = self.hw.get_approx_multiplier()
        #: Bool mask over output neurons (conv: channels) in the approximate mode; None: all exact.
        self.approx_neurons: torch.Tensor | None = None

    def set_hardware(self, hw: HardwareConfig) -> None:
        self.hw = hw
        self._mul = hw.get_multiplier()
        self._approx_mul = hw.get_approx_multiplier()
        self._chip = None

    def weight_fmt(self) -> FixedPoint:
        return calibrate(self.weight.detach(), self.hw.bits, mode=self.hw.calibration, percentile=self.hw.percentile)

    def _int_fields(self) -> dict[str, object]:
        """Formats and clean codes of the integer layer, each computed once per call."""
        if self.act_fmt is None:
            raise ValueError("layer has no activation format: run axhw.nn.calibrate_model(model, x) first")
        wf = self.weight_fmt()
        accf = FixedPoint(int(self.hw.acc_bits), self.act_fmt.frac + wf.frac)
        bf = FixedPoint(int(self.hw.bias_bits), accf.frac)
        b = self.bias.detach() if self.bias is not None else torch.zeros(self.weight.shape[0])
        return {"weight": wf.quantize(self.weight.detach()), "bias": bf.quantize(b), "act_fmt": self.act_fmt,
                "weight_fmt": wf, "acc_fmt": accf, "out_fmt": self.out_fmt, "bias_fmt": bf,
                "approx_neurons": None if self.approx_neurons is None else self.approx_neurons.clone()}

    def _int_layer(self) -> IntLinear:
        raise NotImplementedError

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def stored_params(self, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) codes as read from this layer's storage (one fresh flip pattern)."""
        return self._int_layer().stored(self.hw.storage(), generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hw.mode == "float":
            return self._reference(x)
        layer = self._int_layer()
        if self.training or self._chip is None:
            params = layer.stored(self.hw.storage(), self.generator)  # fresh flips every pass (AxTrain-pas)
        else:
            params = self._chip
        with torch.no_grad():
            codes = layer.run(layer.act_fmt.quantize(x.detach()), self._mul, *params, approx=self._approx_mul)
            fmt = layer.out_fmt if layer.out_fmt is not None else layer.acc_fmt
            hw_out = fmt.dequantize(codes, x.dtype)
            live = (codes > fmt.qmin) & (codes < fmt.qmax) if self.hw.saturation_ste else None
        return ClippedSTE.apply(self._reference(x), hw_out, live)


class ApproxLinear(_HardwareLayer, nn.Linear):
    """``nn.Linear`` that can run as quantized or approximate hardware (see module docstring)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, hw: HardwareConfig | None = None,
                 *, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias, device=device, dtype=dtype)
        self._init_hardware(hw)

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def _int_layer(self) -> IntLinear:
        return IntLinear(**self._int_fields())  # type: ignore[arg-type]


class ApproxConv2d(_HardwareLayer, nn.Conv2d):
    """``nn.Conv2d`` with hardware modes: any kernel shape, stride, padding (ints, pairs, ``'same'``,
    ``'valid'``; any ``padding_mode``), dilation and groups, in every mode; the integer modes are bit-exact
    (every product through the multiplier, :func:`axhw.quant.conv2d_int`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
                 bias: bool = True, hw: HardwareConfig | None = None, *, dilation: int | tuple[int, int] = 1,
                 groups: int = 1, padding_mode: str = "zeros", device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                           dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                           device=device, dtype=dtype)
        self._init_hardware(hw)

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight, self.bias)

    def _int_layer(self) -> IntConv2d:
        return IntConv2d(**self._int_fields(), **self._int_conv_options())  # type: ignore[arg-type]

    def _int_conv_options(self) -> dict[str, object]:
        """Options of the integer layer; square pairs as plain ints (the form older files hold)."""

        def short(v: tuple[int, ...]) -> int | tuple[int, int]:
            return int(v[0]) if v[0] == v[1] else (int(v[0]), int(v[1]))

        padding: object
        if isinstance(self.padding, str) or self.padding_mode != "zeros":
            # what nn.Conv2d pads: (left, right, top, bottom), the extra column/row of 'same' on the right
            left, right, top, bottom = (int(p) for p in self._reversed_padding_repeated_twice)
            symmetric = self.padding_mode == "zeros" and left == right and top == bottom
            padding = short((top, left)) if symmetric else (left, right, top, bottom)
        else:
            padding = short(self.padding)
        return {"stride": short(self.stride), "padding": padding, "dilation": short(self.dilation),
                "groups": int(self.groups), "padding_mode": self.padding_mode}


# --------------------------------------------------------------------------- model-level helpers
def approx_layers(model: nn.Module) -> list[_HardwareLayer]:
    return [m for m in model.modules() if isinstance(m, _HardwareLayer)]


_NO_LAYERS = ("model has no ApproxLinear/ApproxConv2d layers (a plain torch model?): "
              "convert it first with axhw.convert(model, hw)")


def _require_layers(model: nn.Module) -> list[_HardwareLayer]:
    layers = approx_layers(model)
    if not layers:
        raise ValueError(_NO_LAYERS)
    return layers


def set_hardware(model: nn.Module, hw: HardwareConfig, **changes: object) -> None:
    """Give every approximate layer the configuration ``hw`` (with ``changes`` applied); a model without
    any is an error (nothing would change)."""
    cfg = replace(hw, **changes) if changes else hw
    for layer in _require_layers(model):
        layer.set_hardware(cfg)


@torch.no_grad()
def calibrate_model(model: nn.Module, x: torch.Tensor) -> None:
    """Choose every layer's activation format from the inputs it sees on ``x`` (in float mode), and link
    each layer's output format to the next layer's input format.

    Only ReLU, max-pooling and flattening may stand between approximate layers (they commute with
    re-quantization); anything else would make the integer network differ from the model.
    """
    layers = _require_layers(model)
    seen: dict[int, torch.Tensor] = {}
    saved = [(layer, layer.hw) for layer in layers]
    hooks = [layer.register_forward_pre_hook(lambda m, inp: seen.__setitem__(id(m), inp[0].detach()))
             for layer in layers]  # type: ignore[attr-defined]
    try:
        for layer in layers:
            layer.set_hardware(replace(layer.hw, mode="float"))
        was_training = model.training
        model.eval()
        model(x)
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
        for layer, hw in saved:
            layer.set_hardware(hw)
    for layer in layers:
        layer.act_fmt = calibrate(seen[id(layer)], layer.hw.bits, mode=layer.hw.calibration,
                                  percentile=layer.hw.percentile)
    for cur, nxt in zip(layers, [*layers[1:], None], strict=True):
        cur.out_fmt = nxt.act_fmt if nxt is not None else None


def sample_chip(model: nn.Module, generator: torch.Generator | None) -> None:
    """Draw one NTV flip pattern (a chip instance) for every layer, held for eval-mode forwards; the
    draw order (layer by layer, weight then bias) matches :meth:`QuantizedNetwork.stored_params`."""
    for layer in _require_layers(model):
        layer._chip = layer.stored_params(generator)


def to_quantized(model: nn.Sequential, meta: dict[str, object] | None = None) -> QuantizedNetwork:
    """Export a calibrated model to integers. Supported modules: ApproxLinear, ApproxConv2d, ReLU,
    MaxPool2d, Flatten, and a final Sigmoid/Identity (monotone: argmax and the hardware are unaffected)."""
    ops: list[IntOp] = []
    mods = list(model)
    for i, m in enumerate(mods):
        if isinstance(m, _HardwareLayer):
            ops.append(m._int_layer())
        elif isinstance(m, nn.ReLU):
            ops.append(IntReLU())
        elif isinstance(m, nn.MaxPool2d):
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            s = m.stride if isinstance(m.stride, int) else m.stride[0]
            ops.append(IntMaxPool2d(int(k), int(s)))
        elif isinstance(m, nn.Flatten):
            ops.append(IntFlatten())
        elif isinstance(m, nn.Sigmoid | nn.Identity | nn.Softmax) and i == len(mods) - 1:
            continue
        else:
            raise ValueError(f"module {type(m).__name__} at position {i} has no integer equivalent")
    return QuantizedNetwork(ops, meta)

