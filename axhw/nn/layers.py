"""Hardware-aware layers: ``ApproxLinear`` / ``ApproxConv2d`` and the clipped straight-through estimator.

Three layers of abstraction, as in IBM aihwkit: integer numerics (:mod:`axhw.arith.multipliers`,
:mod:`axhw.golden.network`), the autograd function :class:`ClippedSTE`, and the ``nn`` modules here. A layer runs in
one of three modes (:class:`HardwareConfig.mode`):

* ``float``: the ideal network (conventional BP and AxTrain-act train here);
* ``quantized``: dynamic fixed-point operands and exact multiplication;
* ``hardware``: quantized operands, the configured approximate multiplier and NTV storage of the parameters
  (AxTrain-pas trains here; fresh bit flips every forward pass in training, a held chip in eval).

Per-neuron modes (ApproxAnn, :mod:`axhw.approxann`): in ``hardware`` mode a layer's ``approx_neurons`` mask
selects the neurons whose products go through :attr:`HardwareConfig.approx_multiplier`; the rest use
:attr:`HardwareConfig.multiplier`, exactly as :meth:`axhw.golden.network.QuantizedNetwork.forward_int` does with
``approx=``. The mask is a plain attribute (not a buffer), so state dicts and checkpoints are unchanged.

In the two integer modes the layer emits the next layer's activation codes, dequantized (exact in float32),
computed by the very functions :meth:`axhw.golden.network.QuantizedNetwork.forward_int` uses, so eval-mode output
equals integer inference bit for bit. Where it applies, the fused path of :mod:`axhw.nn.fused` computes the
same integers in a few compiled passes (tested equal to this eager path, gradients included).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from axhw.arith.fixedpoint import FixedPoint, calibrate
from axhw.arith.multipliers import Multiplier, get_multiplier
from axhw.arith.sram import NOMINAL_MV, NTVStorage
from axhw.golden.network import IntConv2d, IntLinear, QuantizedNetwork
from axhw.nn import fused as fastpath

__all__ = [
    "ApproxConv2d",
    "ApproxLinear",
    "ClippedSTE",
    "HardwareAware",
    "HardwareConfig",
    "StraightThrough",
    "approx_layers",
    "calibrate_model",
    "require_cpu",
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
            circuit imported into the multiplier library, :mod:`axhw.arith.library`) or a
            :class:`~axhw.arith.multipliers.Multiplier` object such as a ``LUTMultiplier`` (its ``bits`` must match).
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


class StraightThrough(torch.autograd.Function):
    """Forward the hardware value, backward the gradient of the float operation unchanged (the weight-free
    graph operations of :mod:`axhw.nn.fx.ops`, which only round and saturate)."""

    @staticmethod
    def forward(ctx, reference: torch.Tensor, hardware: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return hardware.detach().clone()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad_out, None


def require_cpu(x: torch.Tensor, what: str) -> None:
    """The integer models run on the CPU (exact int64 arithmetic, the C table kernel); a tensor elsewhere is
    a one-line error, not a silent copy or a device-mismatch traceback. ``float`` mode runs anywhere."""
    if x.device.type != "cpu":
        raise RuntimeError(f"{what}: the quantized and hardware modes run on the CPU, got a tensor on "
                           f"{x.device}: move the model and its inputs with .cpu() (float mode runs on any device)")


class HardwareAware:
    """A module with a :class:`HardwareConfig` (``hw``): the layers here and the graph operations of
    :mod:`axhw.nn.fx.ops`; :func:`set_hardware` reaches all of them."""

    hw: HardwareConfig

    def set_hardware(self, hw: HardwareConfig) -> None:
        self.hw = hw


class _HardwareLayer(HardwareAware):
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
        # The batch norm folded into this layer in the integer modes (axhw.nn.fx.ops), or None. Not a
        # registered submodule: the batch norm stays where the model has it (same state-dict keys).
        object.__setattr__(self, "folded_bn", None)

    def fold_batchnorm(self, bn: object) -> None:
        """Fold ``bn`` (an :mod:`axhw.nn.fx.ops` ``FoldedBatchNorm``) into this layer's integer modes."""
        object.__setattr__(self, "folded_bn", bn)

    def effective_params(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight and bias the hardware multiplies: the layer's own, or with the folded batch norm's
        running statistics folded in (:mod:`axhw.nn.fx.ops`), differentiable in both."""
        bn = self.folded_bn
        if bn is None:
            return self.weight, self.bias
        scale, shift = bn.scale_shift()  # type: ignore[attr-defined]
        w = self.weight * scale.reshape(-1, *([1] * (self.weight.dim() - 1)))
        b = shift if self.bias is None else self.bias * scale + shift
        return w, b

    def set_hardware(self, hw: HardwareConfig) -> None:
        self.hw = hw
        self._mul = hw.get_multiplier()
        self._approx_mul = hw.get_approx_multiplier()
        self._chip = None

    def weight_fmt(self) -> FixedPoint:
        return calibrate(self.effective_params()[0].detach(), self.hw.bits, mode=self.hw.calibration,
                         percentile=self.hw.percentile)

    def _int_fields(self) -> dict[str, object]:
        """Formats and clean codes of the integer layer, each computed once per call."""
        if self.act_fmt is None:
            raise ValueError("layer has no activation format: run axhw.nn.calibrate_model(model, x) first")
        weight, bias = (p.detach() if p is not None else None for p in self.effective_params())
        assert weight is not None
        wf = calibrate(weight, self.hw.bits, mode=self.hw.calibration, percentile=self.hw.percentile)
        accf = FixedPoint(int(self.hw.acc_bits), self.act_fmt.frac + wf.frac)
        bf = FixedPoint(int(self.hw.bias_bits), accf.frac)
        b = bias if bias is not None else torch.zeros(weight.shape[0], device=weight.device)
        return {"weight": wf.quantize(weight), "bias": bf.quantize(b), "act_fmt": self.act_fmt,
                "weight_fmt": wf, "acc_fmt": accf, "out_fmt": self.out_fmt, "bias_fmt": bf,
                "approx_neurons": None if self.approx_neurons is None else self.approx_neurons.clone()}

    def _int_layer(self) -> IntLinear:
        raise NotImplementedError

    def _reference(self, x: torch.Tensor, weight: torch.Tensor | None = None,
                   bias: torch.Tensor | None = None) -> torch.Tensor:
        """The float layer (with ``weight``/``bias`` in place of its own, when given)."""
        raise NotImplementedError

    def stored_params(self, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) codes as read from this layer's storage (one fresh flip pattern)."""
        return self._int_layer().stored(self.hw.storage(), generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.hw.mode == "float":
            return self._reference(x)
        require_cpu(x, type(self).__name__)
        fused = fastpath.fused_forward(self, x)
        if fused is not None:
            return fused
        return self._eager_forward(x)

    def _eager_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The integer-definition forward, step by step (:class:`axhw.golden.network.IntLinear`): the reference the
        fused path of :mod:`axhw.nn.fused` is tested against, and what runs where that path does not apply."""
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
        return ClippedSTE.apply(self._reference(x, *self.effective_params()), hw_out, live)


class ApproxLinear(_HardwareLayer, nn.Linear):
    """``nn.Linear`` that can run as quantized or approximate hardware (see module docstring)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, hw: HardwareConfig | None = None,
                 *, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias, device=device, dtype=dtype)
        self._init_hardware(hw)

    def _reference(self, x: torch.Tensor, weight: torch.Tensor | None = None,
                   bias: torch.Tensor | None = None) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) if weight is None else F.linear(x, weight, bias)

    def _int_layer(self) -> IntLinear:
        return IntLinear(**self._int_fields())  # type: ignore[arg-type]


class ApproxConv2d(_HardwareLayer, nn.Conv2d):
    """``nn.Conv2d`` with hardware modes: any kernel shape, stride, padding (ints, pairs, ``'same'``,
    ``'valid'``; any ``padding_mode``), dilation and groups, in every mode; the integer modes are bit-exact
    (every product through the multiplier, :func:`axhw.golden.network.conv2d_int`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
                 bias: bool = True, hw: HardwareConfig | None = None, *, dilation: int | tuple[int, int] = 1,
                 groups: int = 1, padding_mode: str = "zeros", device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                           dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                           device=device, dtype=dtype)
        self._init_hardware(hw)

    def _reference(self, x: torch.Tensor, weight: torch.Tensor | None = None,
                   bias: torch.Tensor | None = None) -> torch.Tensor:
        return self._conv_forward(x, self.weight, self.bias) if weight is None else self._conv_forward(x, weight, bias)

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
    """The model's hardware layers: in call order for a ``torch.fx.GraphModule`` (what :func:`axhw.convert`
    returns for graphs; its module tree keeps the user's registration order), else in module order."""
    from torch import fx

    layers = [m for m in model.modules() if isinstance(m, _HardwareLayer)]
    if isinstance(model, fx.GraphModule):
        called: dict[int, _HardwareLayer] = {}
        for node in model.graph.nodes:
            if node.op == "call_module" and isinstance(m := model.get_submodule(node.target), _HardwareLayer):
                called.setdefault(id(m), m)
        layers = [*called.values(), *(m for m in layers if id(m) not in called)]
    return layers


_NO_LAYERS = ("model has no ApproxLinear/ApproxConv2d layers (a plain torch model?): "
              "convert it first with axhw.convert(model, hw)")


def _require_layers(model: nn.Module) -> list[_HardwareLayer]:
    layers = approx_layers(model)
    if not layers:
        raise ValueError(_NO_LAYERS)
    return layers


def set_hardware(model: nn.Module, hw: HardwareConfig, **changes: object) -> None:
    """Give every hardware-aware module (layers, and the graph operations and folded batch norms of
    :mod:`axhw.nn.fx.ops`) the configuration ``hw`` (with ``changes`` applied); a model without hardware
    layers is an error (nothing would change)."""
    cfg = replace(hw, **changes) if changes else hw
    _require_layers(model)
    for m in model.modules():
        if isinstance(m, HardwareAware):
            m.set_hardware(cfg)


@torch.no_grad()
def calibrate_model(model: nn.Module, x: torch.Tensor) -> None:
    """Choose the fixed-point format of every value the hardware holds from what the float model computes
    on ``x``, and link producers to consumers (:func:`axhw.nn.fx.trace.calibrate`): each layer's input format,
    its output format (the format its consumers read), and the formats of residual additions,
    concatenations and average pooling. For a chain of layers this is each layer's input format, with each
    layer's output format the next layer's input format."""
    from axhw.nn.fx.lower import calibrate

    _require_layers(model)
    calibrate(model, x)


def sample_chip(model: nn.Module, generator: torch.Generator | None) -> None:
    """Draw one NTV flip pattern (a chip instance) for every layer, held for eval-mode forwards; the
    draw order (layer by layer in :func:`approx_layers` order, weight then bias) matches
    :meth:`QuantizedNetwork.stored_params` of :func:`to_quantized`."""
    for layer in _require_layers(model):
        layer._chip = layer.stored_params(generator)


def to_quantized(model: nn.Module, meta: dict[str, object] | None = None) -> QuantizedNetwork:
    """Export a calibrated model to integers (:func:`axhw.nn.fx.trace.lower`): any ``torch.fx``-traceable model of
    hardware layers, ReLU, max and average pooling, flattening, residual addition and concatenation (and a
    final sigmoid/softmax, which is monotone: argmax and the hardware are unaffected). Anything else is an
    error naming the operation."""
    from axhw.nn.fx.lower import lower

    _require_layers(model)
    return lower(model, meta)
