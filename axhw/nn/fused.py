"""The fused hardware forward of :class:`axhw.nn.ApproxLinear` / :class:`axhw.nn.ApproxConv2d` (docs/hardware-models.md,
"The fast hardware forward").

The eager path of a hardware-mode layer builds an :class:`axhw.golden.network.IntLinear` every call and runs the
integer definitions step by step in int64 (calibrate, quantize, corrupt, transform, GEMM, re-quantize,
dequantize), each a handful of checked tensor operations: ~130 aten calls per layer, which dominate a
training step of a small network (dispatch-bound). This path computes the same integers with:

* the weight format from one ``aminmax`` (:func:`axhw.arith.fixedpoint.calibrate_range`; a NaN or inf weight is
  the same one-line error);
* quantization, NTV flips and the operand transform of weights and activations in compiled passes
  (:mod:`axhw.arith.kernels.fused`), in float32 holding small integers (exact), no int64 copies;
* the flips of a layer's weights and biases in one draw (:meth:`axhw.arith.sram.NTVStorage.corrupt_all`, the
  draw :meth:`axhw.golden.network.IntLinear.stored` makes too, so ``forward_int`` and ``sample_chip`` see the same
  chips for the same seeds), the bias words in the width :meth:`axhw.nn.HardwareConfig.bias_word_bits` gives and
  only when they sit in the NTV memory (:attr:`axhw.nn.HardwareConfig.ntv_biases`);
* one exact float GEMM / convolution of transformed operands (float32 in reduction chunks whose partial
  sums stay below 2**24 by the operands' actual largest ``|T|``, the argument of :mod:`axhw.arith.intgemm`), then
  one compiled epilogue: bias, accumulator saturation, re-quantization, dequantization, saturation mask;
* no float reference forward: its value is never read, so :class:`StraightThroughLinear` /
  :class:`StraightThroughConv2d` run, on eq. 12's clipped gradient, exactly the backward autograd would run
  for ``F.linear`` / ``F.conv2d``.

What is proven once instead of per element: operand codes lie in the multiplier's range because they are
produced by saturation to the format the multiplier was checked against (``HardwareConfig`` validates
``bits``); flipped words are re-sign-extended into the same range; the GEMM is exact by the bound above.
What stays checked per call: NaN inputs and non-finite weights (same messages as the eager path). The
(min, min) saturation of DRUM k=2 is applied by the reference integer product whenever both operands hold
the minimum code (counted by the transform passes, so free otherwise).

Anything this path does not cover (non-float32 tensors, inputs other than 2-D (linear) / 4-D (conv), table
multipliers, per-neuron modes, padding modes other than zeros or string paddings, formats wider than 31
bits, no C compiler, ``AXHW_FAST_FORWARD=0`` or ``axhw.nn.fused.ENABLED = False``) runs the eager path,
the reference: tests/nn/test_fused.py checks both give the same outputs, first and second derivatives and
random streams bit for bit.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F
from torch import nn

from axhw.arith.fixedpoint import FixedPoint, calibrate, calibrate_range
from axhw.arith.intgemm import exact_chunks
from axhw.arith.kernels import fused as hwkernel
from axhw.arith.multipliers import TABLE_TRANSFORM_MAX_BITS, SeparableMultiplier
from axhw.common import taken
from axhw.nn.protocol import HardwareLayerLike

__all__ = ["ENABLED", "StraightThroughConv2d", "StraightThroughLinear", "fused_forward"]

#: Switch for the fused path (tests and benchmarks compare it with the eager one).
ENABLED = os.environ.get("AXHW_FAST_FORWARD", "1") != "0"
#: Widest stored word the compiled passes hold (int32 codes).
_MAX_WORD_BITS = 31
#: Largest re-quantization shift handled (the epilogue computes in double: 31-bit codes << 21 stay exact).
_MAX_SHIFT = 21
#: stride, padding, dilation (pairs) and groups of a convolution, in F.conv2d's order.
ConvOptions = tuple[tuple[int, int], tuple[int, int], tuple[int, int], int]


@functools.lru_cache(maxsize=1024)
def _layer_formats(act: FixedPoint, wf: FixedPoint, acc_bits: int, bias_bits: int) -> tuple[FixedPoint, FixedPoint]:
    """The accumulator format and the widest bias format (``bias_bits``, the codes' saturation range)."""
    accf = FixedPoint(acc_bits, act.frac + wf.frac)
    return accf, FixedPoint(bias_bits, accf.frac)


@functools.lru_cache(maxsize=1024)
def _bias_format(bits: int, frac: int) -> FixedPoint:
    return FixedPoint(bits, frac)


def _clipped_grad(grad_out: torch.Tensor, live: torch.Tensor | None) -> torch.Tensor:
    """eq. 12's clipped gradient (:class:`axhw.nn.ClippedSTE`, with the saturation mask): one compiled pass
    (:func:`axhw.arith.kernels.fused.ste_grad`, equal to ClippedSTE's products bit for bit), or ClippedSTE's torch
    products where a graph of the backward is being built (``create_graph=True``: sensitivities through the
    hardware forward differentiate it again)."""
    if grad_out.dtype != torch.float32 or torch.is_grad_enabled():
        grad = grad_out * (grad_out.abs() < 1).to(grad_out.dtype)
        return grad if live is None else grad * live.to(grad.dtype)
    return hwkernel.ste_grad(grad_out.contiguous(), live)


class StraightThroughLinear(torch.autograd.Function):
    """The hardware output of a linear layer (2-D input) with the float layer's gradient behind eq. 12's
    clipped STE, without computing the float layer's forward value (nobody reads it): backward is exactly
    what autograd runs for ``F.linear`` = ``addmm(b, x, w.t())`` (``grad @ w``, ``grad.t() @ x``, the sum
    over the batch), on ClippedSTE's gradient, so the gradients equal the eager path's bit for bit
    (tests/nn/test_fused.py). Saves one float GEMM per layer and step: the hardware GEMM takes its place."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,
                hardware: tuple[torch.Tensor, torch.Tensor | None]) -> torch.Tensor:
        y, live = hardware
        ctx.save_for_backward(x, w)
        ctx.live, ctx.has_bias = live, b is not None
        return y

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, w = ctx.saved_tensors
        g = _clipped_grad(grad_out, ctx.live)
        need_x, need_w, need_b, _ = ctx.needs_input_grad
        gx = g.mm(w) if need_x else None
        gw = g.t().mm(x) if need_w else None
        gb = g.sum(0) if ctx.has_bias and need_b else None
        return gx, gw, gb, None


class StraightThroughConv2d(torch.autograd.Function):
    """:class:`StraightThroughLinear` for a convolution: backward is ``aten.convolution_backward``, the
    function autograd calls for ``F.conv2d``, with the same arguments."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,
                hardware: tuple[torch.Tensor, torch.Tensor | None], opts: ConvOptions) -> torch.Tensor:
        y, live = hardware
        ctx.save_for_backward(x, w)
        ctx.live, ctx.has_bias, ctx.opts = live, b is not None, opts
        return y

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, w = ctx.saved_tensors
        g = _clipped_grad(grad_out, ctx.live)
        need_x, need_w, need_b, _, _ = ctx.needs_input_grad
        stride, padding, dilation, groups = ctx.opts
        gx, gw, gb = torch.ops.aten.convolution_backward(
            g, x, w, [w.shape[0]] if ctx.has_bias else None, list(stride), list(padding), list(dilation), False,
            [0, 0], groups, [need_x, need_w, ctx.has_bias and need_b])
        return gx, gw, gb, None, None


def _quantize(x: torch.Tensor, fmt: FixedPoint, what: str) -> torch.Tensor:
    """int32 codes of float32 ``x`` in ``fmt`` (:meth:`FixedPoint.quantize`'s numbers and NaN error)."""
    codes, bad = hwkernel.quantize(x, fmt.frac, fmt.qmin, fmt.qmax)
    if bad:
        raise ValueError(f"cannot quantize NaN values ({what})")
    return codes


def _applicable(layer: HardwareLayerLike, x: torch.Tensor) -> bool:
    hw, mul = layer.hw, layer.mul
    if not ENABLED or not isinstance(mul, SeparableMultiplier) or not mul.signed:
        return False
    if mul.bits > TABLE_TRANSFORM_MAX_BITS or max(hw.bits, hw.bias_bits) > _MAX_WORD_BITS:
        return False
    if layer.approx_mul is not None and layer.approx_neurons is not None:
        return False
    if x.dtype != torch.float32 or layer.weight.dtype != torch.float32 or layer.weight.numel() == 0:
        return False
    conv = isinstance(layer, nn.Conv2d)
    if x.dim() != (4 if conv else 2):  # what the integer layers take; the eager path says so otherwise
        return False
    if isinstance(layer, nn.Conv2d) and (isinstance(layer.padding, str) or layer.padding_mode != "zeros"):
        return False
    return hwkernel.available()


def _conv_options(conv: nn.Conv2d) -> ConvOptions:
    """The options of a zero-padded convolution (what :func:`_applicable` admits) as pairs: nn.Conv2d types
    them as ``tuple[int, ...]``, and padding may be a string there."""
    assert not isinstance(conv.padding, str)
    (sh, sw), (ph, pw), (dh, dw) = conv.stride, conv.padding, conv.dilation
    return (sh, sw), (ph, pw), (dh, dw), int(conv.groups)


def fused_forward(layer: HardwareLayerLike, x: torch.Tensor) -> torch.Tensor | None:
    """The hardware-mode output of ``layer`` on ``x`` (value: the integer layer's, dequantized; gradient:
    :class:`axhw.nn.ClippedSTE`), or None where this path does not apply (the caller runs the eager one)."""
    if not _applicable(layer, x):
        return None
    hw, mul = layer.hw, layer.mul
    assert isinstance(mul, SeparableMultiplier)  # _applicable checked it
    act = layer.act_fmt
    if act is None:
        raise ValueError("layer has no activation format: run axhw.nn.calibrate_model(model, x) first")
    weight, bias = layer.effective_params()
    wd = weight.detach().contiguous()
    if hw.calibration == "maxabs":
        lo, hi = torch.aminmax(wd)
        wf = calibrate_range(float(lo), float(hi), hw.bits)
    else:
        wf = calibrate(wd, hw.bits, mode=hw.calibration, percentile=hw.percentile)
    accf, bmax = _layer_formats(act, wf, hw.acc_bits, hw.bias_bits)
    fmt = layer.out_fmt if layer.out_fmt is not None else accf
    shift = accf.frac - fmt.frac
    conv = _conv_options(layer) if isinstance(layer, nn.Conv2d) else None  # None: a linear layer
    groups = conv[3] if conv is not None else 1
    units, unit = (wd.shape[1], wd[0, 0].numel()) if conv is not None else (wd.shape[1], 1)
    if exact_chunks(units, unit, mul.transform_bound**2) is None or abs(shift) > _MAX_SHIFT:
        return None  # no exact float GEMM for this shape at all: the eager path's int64/limb GEMM
    taken.count("nn.fused")
    table = mul.table_as(torch.float32)
    op_lo = mul.operand_range[0]
    n_out = wd.shape[0]

    # ---- stored parameters: clean codes, one draw of flips for weights then biases, or the held chip
    chip = None if layer.training else layer.chip
    if chip is not None:
        wcodes = chip[0].to(torch.int32)
        bcodes = chip[1].to(torch.int32)
        tw, nmin_w, max_w = hwkernel.transform(wcodes, op_lo, table)
        bf = bmax  # held codes were stored in at most bias_bits: a valid bound on |bias| below
    else:
        # quantize and transform in one pass (weights are finite: calibration checked them)
        codes, tw, _, nmin_w, max_w = hwkernel.quantize_transform(wd, wf.frac, wf.qmin, wf.qmax, table, True)
        assert codes is not None  # asked for (True)
        wcodes = codes
        if bias is None:
            bcodes = torch.zeros(n_out, dtype=torch.int32)
        else:
            bcodes = _quantize(bias.detach().contiguous(), bmax, "biases")
        # the stored bias word: HardwareConfig.bias_word's width, the eager path's (HardwareLayer._int_fields)
        bf = bmax if hw.bias_word == "fixed" else _bias_format(hw.bias_word_bits(bcodes), accf.frac)
        storage = hw.storage()
        if storage is not None:  # flip the stored words, re-transforming only the flipped ones
            n_w = wcodes.numel() * wf.bits
            # biases at nominal voltage: not in the draw; in NTV: one accumulator-wide slot each, of which the
            # stored word's low bf.bits flip (NTVStorage.corrupt_all's slots: the chip is the same for any width)
            n_b = n_out * accf.bits if hw.ntv_biases else 0
            pos = storage.flip_positions(n_w + n_b, layer.generator)
            j, dmin, max_f = hwkernel.flip(wcodes, wf.bits, pos, 0, 0, (tw, table, op_lo))
            if hw.ntv_biases and j < pos.numel():
                rel = pos[j:] - n_w
                bit = rel % accf.bits
                keep = bit < bf.bits
                bpos = ((rel[keep] // accf.bits) * bf.bits + bit[keep]).contiguous()
                hwkernel.flip(bcodes, bf.bits, bpos, 0, 0)
            nmin_w, max_w = nmin_w + dmin, max(max_w, max_f)  # an upper bound stays a valid bound

    # ---- activations: quantize and transform in one pass
    _, ta, bad, nmin_a, max_a = hwkernel.quantize_transform(x.detach().contiguous(), act.frac, act.qmin,
                                                            act.qmax, table, False)
    if bad:
        raise ValueError("cannot quantize NaN values (activations)")
    # exactness from the operands' actual largest |T| (e.g. no minimum code: DRUM k=2's 192 becomes 96)
    plan = exact_chunks(units, unit, max_a * max_w)
    assert plan is not None  # max_a * max_w <= transform_bound**2, checked above
    chunks, dtype = plan
    if len(chunks) > 1 and groups != 1:
        chunks, dtype = [(0, units)], torch.float64

    # ---- exact accumulation
    parts: list[torch.Tensor] = []
    dpart: torch.Tensor | None = None
    if mul.sat_correction and nmin_a and nmin_w:
        # both operands hold the minimum code: the reference integer product, (min, min) saturation included
        a64, w64 = _quantize(x.detach().contiguous(), act, "activations").to(torch.int64), wcodes.to(torch.int64)
        if conv is not None:
            dpart = mul.conv2d(a64, w64, *conv)
        else:
            dpart = mul.matmul(a64, w64.T.contiguous())
        dpart = dpart.to(torch.float64)  # exact: |acc| < 2**53 by the GEMM bound
        taken.count("nn.fused.minmin")
    elif conv is not None:
        if dtype == torch.float64:
            dpart = F.conv2d(ta.double(), tw.double(), None, *conv)
        elif len(chunks) == 1:
            parts = [F.conv2d(ta, tw, None, *conv)]
        else:  # whole input channels per chunk (several chunks only with groups == 1)
            parts = [F.conv2d(ta[:, c0:c1], tw[:, c0:c1], None, *conv) for c0, c1 in chunks]
    elif dtype == torch.float64:
        dpart = torch.mm(ta.double(), tw.double().T)
    elif len(chunks) == 1:
        parts = [torch.mm(ta, tw.T)]
    else:
        parts = [torch.mm(ta[:, c0:c1], tw[:, c0:c1].T) for c0, c1 in chunks]
    parts = [p.contiguous() for p in parts]
    if len(parts) > 1:
        taken.count("nn.fused.chunked")
    if dpart is not None:
        dpart = dpart.contiguous()

    # ---- epilogue: bias, accumulator saturation, re-quantization, dequantization, STE mask
    ref = parts[0] if parts else dpart
    assert ref is not None
    inner = ref[0, 0].numel() if conv is not None else 1
    has_out = layer.out_fmt is not None
    y, live = hwkernel.epilogue(parts, dpart, bcodes, n_out, inner, (accf.qmin, accf.qmax),
                                (fmt.qmin, fmt.qmax) if has_out else None, shift if has_out else 0, fmt.frac,
                                hw.saturation_ste, bias_bound=-bf.qmin)
    if conv is not None:
        return StraightThroughConv2d.apply(x, weight, bias, (y, live), conv)
    return StraightThroughLinear.apply(x, weight, bias, (y, live))
