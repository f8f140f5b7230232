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

from typing import Literal, Protocol, TypedDict

import torch
import torch.nn.functional as F
from torch import nn

from axhw.arith.fixedpoint import FixedPoint, calibrate
from axhw.arith.multipliers import IntPair
from axhw.golden.network import IntConv2d, IntLinear
from axhw.nn import fused as fastpath
from axhw.nn.config import HardwareConfig
from axhw.nn.ste import ClippedSTE

__all__ = ["ApproxConv2d", "ApproxLinear", "HardwareAware", "HardwareLayer", "approx_layers", "require_cpu"]


def require_cpu(x: torch.Tensor, what: str) -> None:
    """The integer models run on the CPU (exact int64 arithmetic, the C table kernel); a tensor elsewhere is
    a one-line error, not a silent copy or a device-mismatch traceback. ``float`` mode runs anywhere."""
    if x.device.type != "cpu":
        raise RuntimeError(f"{what}: the quantized and hardware modes run on the CPU, got a tensor on "
                           f"{x.device}: move the model and its inputs with .cpu() (float mode runs on any device)")


PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]


class FoldedBatchNormLike(Protocol):
    """What a layer reads of the batch norm folded into it (:mod:`axhw.nn.fx.ops`, which imports this module)."""

    def scale_shift(self) -> tuple[torch.Tensor, torch.Tensor]: ...


class _IntFields(TypedDict):
    """Keyword arguments of :class:`IntLinear` (and the shared ones of :class:`IntConv2d`) a layer computes."""

    weight: torch.Tensor
    bias: torch.Tensor
    act_fmt: FixedPoint
    weight_fmt: FixedPoint
    acc_fmt: FixedPoint
    out_fmt: FixedPoint | None
    bias_fmt: FixedPoint
    bias_in_ntv: bool
    approx_neurons: torch.Tensor | None


class _IntConvOptions(TypedDict):
    """The convolution keyword arguments of :class:`IntConv2d`."""

    stride: IntPair
    padding: IntPair | tuple[int, int, int, int]
    dilation: IntPair
    groups: int
    padding_mode: str


class HardwareAware(nn.Module):
    """A module with a :class:`HardwareConfig` (``hw``): the layers here and the graph operations of
    :mod:`axhw.nn.fx.ops`; :func:`set_hardware` reaches all of them."""

    hw: HardwareConfig

    def set_hardware(self, hw: HardwareConfig) -> None:
        self.hw = hw


class HardwareLayer(HardwareAware):
    """Shared hardware behaviour of :class:`ApproxLinear` and :class:`ApproxConv2d`.

    Its public attributes are those of :class:`axhw.nn.protocol.HardwareLayerLike` (what the fused forward,
    the graph lowering and the trainer read); :meth:`int_layer` is the layer as the golden integer network
    holds it."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    training: bool
    # The batch norm folded into this layer in the integer modes (axhw.nn.fx.ops), or None. Not a
    # registered submodule: the batch norm stays where the model has it (same state-dict keys).
    folded_bn: FoldedBatchNormLike | None

    def _init_hardware(self, hw: HardwareConfig | None) -> None:
        self.hw = hw or HardwareConfig()
        self.act_fmt: FixedPoint | None = None  # input activation format, set by calibrate_model
        self.out_fmt: FixedPoint | None = None  # next layer's activation format; None for the output layer
        self.generator: torch.Generator | None = None  # source of training-time bit flips
        self.chip: tuple[torch.Tensor, torch.Tensor] | None = None
        self.mul = self.hw.get_multiplier()
        self.approx_mul = self.hw.get_approx_multiplier()
        #: Bool mask over output neurons (conv: channels) in the approximate mode; None: all exact.
        self.approx_neurons: torch.Tensor | None = None
        object.__setattr__(self, "folded_bn", None)  # past nn.Module.__setattr__: no submodule registered

    def fold_batchnorm(self, bn: FoldedBatchNormLike) -> None:
        """Fold ``bn`` (an :mod:`axhw.nn.fx.ops` ``FoldedBatchNorm``) into this layer's integer modes."""
        object.__setattr__(self, "folded_bn", bn)

    def effective_params(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The weight and bias the hardware multiplies: the layer's own, or with the folded batch norm's
        running statistics folded in (:mod:`axhw.nn.fx.ops`), differentiable in both."""
        bn = self.folded_bn
        if bn is None:
            return self.weight, self.bias
        scale, shift = bn.scale_shift()
        w = self.weight * scale.reshape(-1, *([1] * (self.weight.dim() - 1)))
        b = shift if self.bias is None else self.bias * scale + shift
        return w, b

    def set_hardware(self, hw: HardwareConfig) -> None:
        self.hw = hw
        self.mul = hw.get_multiplier()
        self.approx_mul = hw.get_approx_multiplier()
        self.chip = None

    def weight_fmt(self) -> FixedPoint:
        return calibrate(self.effective_params()[0].detach(), self.hw.bits, mode=self.hw.calibration,
                         percentile=self.hw.percentile)

    def _int_fields(self) -> _IntFields:
        """Formats and clean codes of the integer layer, each computed once per call."""
        if self.act_fmt is None:
            raise ValueError("layer has no activation format: run axhw.nn.calibrate_model(model, x) first")
        weight, bias = (p.detach() if p is not None else None for p in self.effective_params())
        assert weight is not None
        wf = calibrate(weight, self.hw.bits, mode=self.hw.calibration, percentile=self.hw.percentile)
        accf = FixedPoint(self.hw.acc_bits, self.act_fmt.frac + wf.frac)
        b = bias if bias is not None else torch.zeros(weight.shape[0], device=weight.device)
        # codes saturate to the widest word (bias_bits); the stored word is then as wide as they need
        # (HardwareConfig.bias_word: "fit" drops the unused high-order bits, losslessly)
        bcodes = FixedPoint(self.hw.bias_bits, accf.frac).quantize(b)
        bf = FixedPoint(self.hw.bias_word_bits(bcodes), accf.frac)
        return {"weight": wf.quantize(weight), "bias": bcodes, "act_fmt": self.act_fmt,
                "weight_fmt": wf, "acc_fmt": accf, "out_fmt": self.out_fmt, "bias_fmt": bf,
                "bias_in_ntv": self.hw.ntv_biases,
                "approx_neurons": None if self.approx_neurons is None else self.approx_neurons.clone()}

    def int_layer(self) -> IntLinear:
        raise NotImplementedError

    def _reference(self, x: torch.Tensor, weight: torch.Tensor | None = None,
                   bias: torch.Tensor | None = None) -> torch.Tensor:
        """The float layer (with ``weight``/``bias`` in place of its own, when given)."""
        raise NotImplementedError

    def stored_params(self, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) codes as read from this layer's storage (one fresh flip pattern)."""
        return self.int_layer().stored(self.hw.storage(), generator)

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
        layer = self.int_layer()
        if self.training or self.chip is None:
            params = layer.stored(self.hw.storage(), self.generator)  # fresh flips every pass (AxTrain-pas)
        else:
            params = self.chip
        with torch.no_grad():
            codes = layer.run(layer.act_fmt.quantize(x.detach()), self.mul, *params, approx=self.approx_mul)
            fmt = layer.out_fmt if layer.out_fmt is not None else layer.acc_fmt
            hw_out = fmt.dequantize(codes, x.dtype)
            live = (codes > fmt.qmin) & (codes < fmt.qmax) if self.hw.saturation_ste else None
        return ClippedSTE.apply(self._reference(x, *self.effective_params()), hw_out, live)


class ApproxLinear(HardwareLayer, nn.Linear):
    """``nn.Linear`` that can run as quantized or approximate hardware (see module docstring)."""

    # nn.Linear's bias is None with bias=False, but torch's annotations infer Parameter from its __init__.
    bias: torch.Tensor | None  # type: ignore[assignment]

    def __init__(self, in_features: int, out_features: int, bias: bool = True, hw: HardwareConfig | None = None,
                 *, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias, device=device, dtype=dtype)
        self._init_hardware(hw)

    def _reference(self, x: torch.Tensor, weight: torch.Tensor | None = None,
                   bias: torch.Tensor | None = None) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) if weight is None else F.linear(x, weight, bias)

    def int_layer(self) -> IntLinear:
        return IntLinear(**self._int_fields())


class ApproxConv2d(HardwareLayer, nn.Conv2d):
    """``nn.Conv2d`` with hardware modes: any kernel shape, stride, padding (ints, pairs, ``'same'``,
    ``'valid'``; any ``padding_mode``), dilation and groups, in every mode; the integer modes are bit-exact
    (every product through the multiplier, :func:`axhw.golden.network.conv2d_int`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] | str = 0,
                 bias: bool = True, hw: HardwareConfig | None = None, *, dilation: int | tuple[int, int] = 1,
                 groups: int = 1, padding_mode: PaddingMode = "zeros", device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                           dilation=dilation, groups=groups, bias=bias, padding_mode=padding_mode,
                           device=device, dtype=dtype)
        self._init_hardware(hw)

    def _reference(self, x: torch.Tensor, weight: torch.Tensor | None = None,
                   bias: torch.Tensor | None = None) -> torch.Tensor:
        return self._conv_forward(x, self.weight, self.bias) if weight is None else self._conv_forward(x, weight, bias)

    def int_layer(self) -> IntConv2d:
        return IntConv2d(**self._int_fields(), **self._int_conv_options())

    def _int_conv_options(self) -> _IntConvOptions:
        """Options of the integer layer; square pairs as plain ints (the form older files hold)."""

        def short(v: tuple[int, ...]) -> int | tuple[int, int]:
            return int(v[0]) if v[0] == v[1] else (int(v[0]), int(v[1]))

        padding: IntPair | tuple[int, int, int, int]
        if isinstance(self.padding, str) or self.padding_mode != "zeros":
            # what nn.Conv2d pads: (left, right, top, bottom), the extra column/row of 'same' on the right
            left, right, top, bottom = (int(p) for p in self._reversed_padding_repeated_twice)
            symmetric = self.padding_mode == "zeros" and left == right and top == bottom
            padding = short((top, left)) if symmetric else (left, right, top, bottom)
        else:
            padding = short(self.padding)
        return {"stride": short(self.stride), "padding": padding, "dilation": short(self.dilation),
                "groups": int(self.groups), "padding_mode": self.padding_mode}


def approx_layers(model: nn.Module) -> list[HardwareLayer]:
    """The model's hardware layers: in call order for a ``torch.fx.GraphModule`` (what :func:`axhw.convert`
    returns for graphs; its module tree keeps the user's registration order), else in module order."""
    from torch import fx

    layers: list[HardwareLayer] = [m for m in model.modules() if isinstance(m, HardwareLayer)]
    if isinstance(model, fx.GraphModule):
        called: dict[int, HardwareLayer] = {}
        for node in model.graph.nodes:
            if node.op == "call_module" and isinstance(m := model.get_submodule(node.target), HardwareLayer):
                called.setdefault(id(m), m)
        layers = [*called.values(), *(m for m in layers if id(m) not in called)]
    return layers
