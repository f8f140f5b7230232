"""Hardware-aware modules for the weight-free operations of a graph: residual addition, concatenation,
average pooling, and batch normalization folded into the layer before it.

:func:`axhw.convert` puts them into a traced model (:mod:`axhw.nn.fx.trace`) where the model's ``forward`` adds,
concatenates or average-pools tensors, or normalizes a layer's output. In ``float`` mode each computes what
the original operation did, bit for bit. In the integer modes each computes with the very functions of the
golden model (:func:`axhw.golden.network.add_int`, :func:`~axhw.golden.network.cat_int`, :func:`~axhw.golden.network.avgpool2d_int`)
on the codes of its operands, so the eval-mode hardware forward of a residual network equals
:meth:`axhw.golden.network.QuantizedNetwork.forward_int` exactly, as it does for a chain of layers. The gradient is
the straight-through one (the float operation's): these operations only round.

Batch normalization (Ioffe & Szegedy 2015) is folded into the preceding ``ApproxConv2d``/``ApproxLinear``
for the integer modes, the standard inference fold (Jacob et al., CVPR 2018, section 3.2):
``W' = W * gamma / sqrt(var + eps)`` per output channel and ``b' = beta + (b - mean) * gamma / sqrt(var + eps)``
with the running statistics. The layer quantizes and multiplies ``W'`` and ``b'``; the
:class:`FoldedBatchNorm2d` module after it passes its input through unchanged. During training in an
integer mode (AxTrain-pas) the statistics are frozen at their running values, the "freeze batch norm"
scheme of Jacob et al. and Krishnamoorthi (arXiv:1806.08342, section 3.2): pas fine-tunes a trained network,
so its statistics are settled, and training then sees exactly the folded integer network that inference
runs; the gradient reaches ``W``, ``gamma`` and ``beta`` through the fold. In ``float`` mode (BP,
AxTrain-act) the module is an ordinary batch normalization with batch statistics.
"""

from __future__ import annotations

from typing import Any, Self

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from axhw.arith.fixedpoint import FixedPoint
from axhw.arith.multipliers import IntPair
from axhw.golden.network import add_int, avgpool2d_int, cat_int
from axhw.nn.config import HardwareConfig
from axhw.nn.layers import HardwareAware, require_cpu
from axhw.nn.ste import StraightThrough

__all__ = [
    "FoldedBatchNorm1d",
    "FoldedBatchNorm2d",
    "GraphOp",
    "HardwareAdd",
    "HardwareAvgPool2d",
    "HardwareCat",
]


class GraphOp(HardwareAware, nn.Module):
    """A weight-free operation with integer semantics in the integer modes."""

    def __init__(self, hw: HardwareConfig | None = None) -> None:
        nn.Module.__init__(self)
        self.hw = hw or HardwareConfig()

    def _integer(self, xs: tuple[Any, ...]) -> bool:
        """Run the integer semantics: an integer mode and tensor operands (``x.size(0) + 1`` stays Python)."""
        if self.hw.mode == "float" or not all(isinstance(x, Tensor) for x in xs):
            return False
        for x in xs:
            require_cpu(x, type(self).__name__)
        return True

    def _uncalibrated(self) -> ValueError:
        return ValueError(f"{type(self).__name__} has no formats: run axhw.nn.calibrate_model(model, x) first")


class _Join(GraphOp):
    """Shared by :class:`HardwareAdd` and :class:`HardwareCat`: operands in their own formats, one output
    format (set by :func:`axhw.nn.calibrate_model`)."""

    def __init__(self, hw: HardwareConfig | None = None) -> None:
        super().__init__(hw)
        self.in_fmts: list[FixedPoint] | None = None
        self.out_fmt: FixedPoint | None = None

    def _float(self, xs: tuple[Tensor, ...]) -> Tensor:
        raise NotImplementedError

    def _codes(self, codes: list[Tensor], in_fmts: list[FixedPoint], out_fmt: FixedPoint) -> Tensor:
        raise NotImplementedError

    def forward(self, *xs: Any) -> Any:
        ref = self._float(xs)
        if not self._integer(xs):
            return ref
        if self.in_fmts is None or self.out_fmt is None:
            raise self._uncalibrated()
        if len(xs) != len(self.in_fmts):
            raise ValueError(f"{type(self).__name__} was calibrated for {len(self.in_fmts)} operands, got {len(xs)}")
        with torch.no_grad():
            codes = [f.quantize(x.detach()) for f, x in zip(self.in_fmts, xs, strict=True)]
            hw_out = self.out_fmt.dequantize(self._codes(codes, self.in_fmts, self.out_fmt), ref.dtype)
        return StraightThrough.apply(ref, hw_out)

    def extra_repr(self) -> str:
        fmts = "uncalibrated" if self.in_fmts is None else f"{', '.join(map(str, self.in_fmts))} -> {self.out_fmt}"
        return f"mode={self.hw.mode}, {fmts}"


class HardwareAdd(_Join):
    """Residual addition ``a + b (+ ...)``; integer modes: :func:`axhw.golden.network.add_int` (operands aligned to
    the output format with round-half-up and saturation, summed, saturated)."""

    def _float(self, xs: tuple[Any, ...]) -> Any:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out

    def _codes(self, codes: list[Tensor], in_fmts: list[FixedPoint], out_fmt: FixedPoint) -> Tensor:
        return add_int(codes, in_fmts, out_fmt)


class HardwareCat(_Join):
    """Concatenation along ``dim``; integer modes: :func:`axhw.golden.network.cat_int` (one common format)."""

    def __init__(self, dim: int = 1, hw: HardwareConfig | None = None) -> None:
        super().__init__(hw)
        self.dim = dim

    def _float(self, xs: tuple[Tensor, ...]) -> Tensor:
        return torch.cat(xs, dim=self.dim)

    def _codes(self, codes: list[Tensor], in_fmts: list[FixedPoint], out_fmt: FixedPoint) -> Tensor:
        return cat_int(codes, in_fmts, out_fmt, self.dim)


class HardwareAvgPool2d(GraphOp):
    """Average pooling in the input's format; integer modes: :func:`axhw.golden.network.avgpool2d_int` (exact window
    sum, division by the window size with round-half-up).

    ``how`` records which operation it stands for, so ``float`` mode computes exactly that operation:
    ``adaptive`` (``F.adaptive_avg_pool2d(x, 1)``), ``avg`` (``F.avg_pool2d(x, kernel, stride)``) or ``mean``
    (``x.mean(dims, keepdim)`` over the two spatial dimensions).
    """

    def __init__(self, how: str, kernel: IntPair | None = None, stride: IntPair | None = None,
                 dims: tuple[int, ...] = (2, 3), keepdim: bool = True, hw: HardwareConfig | None = None) -> None:
        super().__init__(hw)
        if how not in ("adaptive", "avg", "mean"):
            raise ValueError(f"unknown average pooling {how!r}")
        self.how, self.kernel, self.stride, self.dims, self.keepdim = how, kernel, stride, dims, keepdim
        self.fmt: FixedPoint | None = None

    @property
    def is_global(self) -> bool:
        return self.how != "avg"

    def forward(self, x: Tensor) -> Tensor:
        if self.how == "adaptive":
            ref = F.adaptive_avg_pool2d(x, 1)
        elif self.how == "avg":
            assert self.kernel is not None
            ref = F.avg_pool2d(x, self.kernel, self.stride)
        else:
            ref = x.mean(self.dims, keepdim=self.keepdim)
        if not self._integer((x,)):
            return ref
        if self.fmt is None:
            raise self._uncalibrated()
        with torch.no_grad():
            codes = avgpool2d_int(self.fmt.quantize(x.detach()), None if self.is_global else self.kernel, self.stride)
            hw_out = self.fmt.dequantize(codes, ref.dtype).reshape(ref.shape)
        return StraightThrough.apply(ref, hw_out)

    def extra_repr(self) -> str:
        what = "global" if self.is_global else f"kernel={self.kernel}, stride={self.stride}"
        return f"{what}, mode={self.hw.mode}, fmt={self.fmt}"


class _FoldedBN(HardwareAware, nn.modules.batchnorm._BatchNorm):
    """Batch normalization folded into the layer before it (module docstring): a normal batch norm in
    ``float`` mode, the identity in the integer modes (the layer already applied the fold)."""

    hw: HardwareConfig

    def forward(self, x: Tensor) -> Tensor:
        if self.hw.mode == "float":
            return super().forward(x)
        return x

    @classmethod
    def twin(cls, bn: nn.modules.batchnorm._BatchNorm, hw: HardwareConfig) -> Self:
        """A folded batch norm holding ``bn``'s very parameters and statistics (same state-dict keys)."""
        new = cls(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                  track_running_stats=bn.track_running_stats, device="meta")
        new._parameters = bn._parameters
        new._buffers = bn._buffers
        new.train(bn.training)
        new.hw = hw
        return new

    def scale_shift(self) -> tuple[Tensor, Tensor]:
        """``(gamma / sqrt(running_var + eps), beta - running_mean * scale)`` per channel."""
        mean, var = self.running_mean, self.running_var
        assert mean is not None and var is not None  # folds need running statistics (trace checks it)
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = self.weight * scale
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias
        return scale, shift


class FoldedBatchNorm2d(_FoldedBN, nn.BatchNorm2d):
    """``nn.BatchNorm2d`` folded into the preceding :class:`~axhw.nn.ApproxConv2d` (module docstring)."""


class FoldedBatchNorm1d(_FoldedBN, nn.BatchNorm1d):
    """``nn.BatchNorm1d`` folded into the preceding :class:`~axhw.nn.ApproxLinear` (module docstring)."""
