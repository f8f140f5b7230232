"""Dynamic fixed point: the number format of weights and activations (docs/hardware-models.md, "Dynamic fixed point").

A :class:`FixedPoint` is a two's-complement (or unsigned) word of ``bits`` bits whose integer code ``q``
stands for the real value ``q * 2**-frac``. *Dynamic* fixed point means ``frac`` is chosen per tensor
(per layer, separately for weights and activations), because the paper (section 3.2) notes weights live in
1e-3..1e-1 and need no integer bits while activations are about 100x larger. ``frac`` may therefore be
larger than ``bits`` (a tiny-valued tensor) or negative (a large-valued one).

Quantization rounds half to even (IEEE default, what ``torch.round`` does) and then saturates: no value
ever wraps around. The bit view (:meth:`FixedPoint.to_words` / :meth:`FixedPoint.from_words`) is the
stored SRAM word that :mod:`axhw.arith.sram` flips.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = ["MAX_BITS", "FixedPoint", "calibrate", "calibrate_range", "check_codes", "fit_width"]

#: Widest word supported. Codes are held in int64 and shifted by up to ``bits``, so 62 is the hard limit;
#: it covers the 48-bit accumulators that 16-bit operands need (multipliers stop at 32-bit operands).
MAX_BITS = 62
#: ``frac`` bound: 2**64 scaling already over- or underflows any float32 tensor we could meet.
MAX_ABS_FRAC = 64


def _value_range(bits: int, signed: bool) -> tuple[int, int]:
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def check_codes(codes: torch.Tensor, lo: int, hi: int, what: str = "codes") -> None:
    """Raise ``ValueError`` if ``codes`` is not an integer tensor inside ``[lo, hi]``.

    Every model in axhw refuses out-of-range integers instead of wrapping them silently.
    """
    if not isinstance(codes, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor of integers, got {type(codes).__name__}")
    if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
        raise TypeError(f"{what} must be an integer tensor (int64 recommended), got dtype {codes.dtype}")
    if codes.numel() == 0:
        return
    cmin, cmax = torch.aminmax(codes)
    if int(cmin) < lo or int(cmax) > hi:
        raise ValueError(
            f"{what} out of range: found [{int(cmin)}, {int(cmax)}], valid range is [{lo}, {hi}]"
        )


def fit_width(codes: torch.Tensor, max_bits: int) -> int:
    """The narrowest two's-complement word (at least 2 bits, at most ``max_bits``) that holds every code.

    This is how a stored word drops the high-order bits its values never use (paper section 3.2: "unnecessary
    high order bits that do not affect accuracy should be eliminated to confine the effect of the noise"),
    the word-length counterpart of dynamic fixed point's per-tensor ``frac``: the hardware layers size each
    layer's bias word with it (:attr:`axhw.nn.HardwareConfig.bias_word`), from the bias codes at the
    accumulator scale, so the codes themselves, and clean inference, are unchanged. Codes that need more
    than ``max_bits`` are an error (they were to be saturated to ``max_bits`` first).

    >>> fit_width(torch.tensor([-129, 5]), 16), fit_width(torch.tensor([0, 0]), 16)
    (9, 2)
    >>> fit_width(torch.tensor([127]), 16), fit_width(torch.tensor([-128]), 16), fit_width(torch.tensor([128]), 16)
    (8, 8, 9)
    """
    if not 2 <= max_bits <= MAX_BITS:
        raise ValueError(f"max_bits={max_bits} out of range: valid range is [2, {MAX_BITS}]")
    check_codes(codes, -(1 << (max_bits - 1)), (1 << (max_bits - 1)) - 1)
    if codes.numel() == 0:
        return 2
    lo, hi = (int(v) for v in torch.aminmax(codes))
    # a code c >= 0 needs c.bit_length() + 1 bits (sign bit); c < 0 needs (~c).bit_length() + 1 = (-c - 1)'s
    return max(2, (~lo).bit_length() + 1 if lo < 0 else 2, hi.bit_length() + 1 if hi > 0 else 2)


@dataclass(frozen=True)
class FixedPoint:
    """A fixed-point word format: ``value = code * 2**-frac`` (hls4ml-style: rounding and saturation are
    part of the type, here fixed to round-half-to-even and saturate as the spec requires).

    Attributes:
        bits: word length in bits, 1..62 (2..62 when signed).
        frac: number of fractional bits; any integer in [-64, 64] (dynamic fixed point).
        signed: two's complement when True, unsigned otherwise.

    >>> fmt = FixedPoint(8, 6)
    >>> fmt.quantize(torch.tensor([0.5, 1.99, -3.0])).tolist()
    [32, 127, -128]
    """

    bits: int
    frac: int
    signed: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or isinstance(self.bits, bool):
            raise ValueError(f"bits must be an int, got {self.bits!r}")
        lo_bits = 2 if self.signed else 1
        if not lo_bits <= self.bits <= MAX_BITS:
            raise ValueError(
                f"bits={self.bits} out of range: valid range is [{lo_bits}, {MAX_BITS}] "
                f"for {'signed' if self.signed else 'unsigned'} formats"
            )
        if not isinstance(self.frac, int) or isinstance(self.frac, bool):
            raise ValueError(f"frac must be an int, got {self.frac!r}")
        if abs(self.frac) > MAX_ABS_FRAC:
            raise ValueError(f"frac={self.frac} out of range: valid range is [-{MAX_ABS_FRAC}, {MAX_ABS_FRAC}]")

    # ------------------------------------------------------------------ ranges
    @property
    def qmin(self) -> int:
        """Smallest code (``-2**(bits-1)`` signed, 0 unsigned)."""
        return _value_range(self.bits, self.signed)[0]

    @property
    def qmax(self) -> int:
        """Largest code (``2**(bits-1) - 1`` signed, ``2**bits - 1`` unsigned)."""
        return _value_range(self.bits, self.signed)[1]

    @property
    def step(self) -> float:
        """The value of one LSB, ``2**-frac``."""
        return math.ldexp(1.0, -self.frac)

    @property
    def min_value(self) -> float:
        return self.qmin * self.step

    @property
    def max_value(self) -> float:
        return self.qmax * self.step

    # ------------------------------------------------------------ conversions
    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Real values -> int64 codes: round half to even, then saturate to ``[qmin, qmax]``.

        Scaling by ``2**frac`` is exact in binary floating point, so the only rounding is the one we ask
        for. NaN has no code and raises ``ValueError``; +-inf saturate.
        """
        x = torch.as_tensor(x)
        if not x.dtype.is_floating_point:
            x = x.to(torch.float64)
        if torch.isnan(x).any():
            raise ValueError("cannot quantize NaN values")
        scaled = torch.ldexp(x.to(torch.float64), torch.tensor(self.frac, dtype=torch.float64))
        # Clamp in float first (keeps the int64 conversion in range), then exactly in int64: above 53 bits
        # qmax itself is not a float64.
        return torch.round(scaled).clamp_(self.qmin, self.qmax).to(torch.int64).clamp_(self.qmin, self.qmax)

    def dequantize(self, codes: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """int codes -> real values ``code * 2**-frac`` (exact in float64 up to 53 bits, float32 up to 24)."""
        check_codes(codes, self.qmin, self.qmax)
        return torch.ldexp(codes.to(torch.float64), torch.tensor(-self.frac, dtype=torch.float64)).to(dtype)

    def fake_quantize(self, x: torch.Tensor) -> torch.Tensor:
        """``dequantize(quantize(x))`` in ``x``'s dtype: the value the hardware actually holds."""
        return self.dequantize(self.quantize(x), dtype=x.dtype if x.dtype.is_floating_point else torch.float32)

    def to_words(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes -> the unsigned ``bits``-bit words stored in memory (two's complement), as int64."""
        check_codes(codes, self.qmin, self.qmax)
        return codes.to(torch.int64) & ((1 << self.bits) - 1)

    def from_words(self, words: torch.Tensor) -> torch.Tensor:
        """Unsigned stored words -> codes (sign extension for signed formats), as int64."""
        check_codes(words, 0, (1 << self.bits) - 1, what="words")
        words = words.to(torch.int64)
        if not self.signed:
            return words
        sign = 1 << (self.bits - 1)
        return (words ^ sign) - sign

    def with_frac(self, frac: int) -> FixedPoint:
        return FixedPoint(self.bits, frac, self.signed)

    def __str__(self) -> str:
        return f"{'' if self.signed else 'u'}fix<{self.bits},{self.frac}>"


def calibrate(
    x: torch.Tensor,
    bits: int,
    signed: bool = True,
    mode: Literal["maxabs", "percentile"] = "maxabs",
    percentile: float = 99.99,
) -> FixedPoint:
    """Choose ``frac`` for a tensor: the largest ``frac`` whose range covers the tensor (docs/hardware-models.md).

    ``maxabs`` covers the most positive and the most negative value exactly (no saturation at all);
    ``percentile`` covers the given percentile of ``|x|`` and lets the outliers saturate, which buys
    resolution for heavy-tailed tensors. A tensor of zeros gets ``frac = bits - 1`` (signed) or ``bits``
    (unsigned), the format of [-1, 1): any ``frac`` represents zero, and a fixed answer keeps calibration
    deterministic.

    >>> calibrate(torch.tensor([0.3, -0.9]), bits=8)
    FixedPoint(bits=8, frac=7, signed=True)
    """
    FixedPoint(bits, 0, signed)  # validates bits
    x = torch.as_tensor(x).detach().to(torch.float64).flatten()
    if x.numel() == 0 or not torch.isfinite(x).all():
        raise ValueError("calibrate needs a non-empty tensor of finite values")
    if mode == "maxabs":
        lo, hi = torch.aminmax(x)
        pos, neg = max(float(hi), 0.0), max(-float(lo), 0.0)
    elif mode == "percentile":
        if not 0.0 < percentile <= 100.0:
            raise ValueError(f"percentile={percentile} out of range: valid range is (0, 100]")
        m = float(torch.quantile(x.abs(), percentile / 100.0))
        pos, neg = m, (m if signed else 0.0)
    else:
        raise ValueError(f"unknown calibration mode {mode!r}: valid modes are 'maxabs', 'percentile'")
    if not signed and neg > 0 and mode == "maxabs":
        raise ValueError("unsigned format cannot cover negative values; use signed=True")
    return _covering_format(pos, neg, bits, signed)


def calibrate_range(lo: float, hi: float, bits: int, signed: bool = True) -> FixedPoint:
    """``maxabs`` :func:`calibrate` of a tensor whose minimum and maximum are ``lo`` and ``hi`` (what
    ``torch.aminmax`` returns): the same format, without touching the tensor again. Non-finite ends (a NaN
    propagates through ``aminmax``; an inf is an end) are the same error as :func:`calibrate`'s.

    >>> calibrate_range(-0.9, 0.3, bits=8)
    FixedPoint(bits=8, frac=7, signed=True)
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError("calibrate needs a non-empty tensor of finite values")
    pos, neg = max(hi, 0.0), max(-lo, 0.0)
    if not signed and neg > 0:
        raise ValueError("unsigned format cannot cover negative values; use signed=True")
    return _covering_format(pos, neg, bits, signed)


@functools.lru_cache(maxsize=4096)
def _covering_format(pos: float, neg: float, bits: int, signed: bool) -> FixedPoint:
    """The largest-``frac`` format covering ``[-neg, pos]`` (cached: the hot path asks per step)."""
    fmt0 = FixedPoint(bits, 0, signed)
    qmin, qmax = fmt0.qmin, fmt0.qmax

    def covers(frac: int) -> bool:
        step = math.ldexp(1.0, -frac)
        return pos <= qmax * step and -neg >= qmin * step

    if pos == 0.0 and neg == 0.0:
        return FixedPoint(bits, bits - 1 if signed else bits, signed)
    # Closed-form guess, then walk to the exact answer (log2 rounding can be off by one).
    m = max(pos, neg)
    # difference of logs: the quotient overflows for subnormal m (found by hypothesis: m = 2.2e-308)
    frac = math.floor(math.log2(max(fmt0.qmax, 1)) - math.log2(m)) if m > 0 else bits
    frac = max(-MAX_ABS_FRAC, min(MAX_ABS_FRAC, frac))
    while frac < MAX_ABS_FRAC and covers(frac + 1):
        frac += 1
    while frac > -MAX_ABS_FRAC and not covers(frac):
        frac -= 1
    if not covers(frac):
        raise ValueError(f"values up to {m:g} cannot be covered by a {bits}-bit format with |frac| <= {MAX_ABS_FRAC}")
    return FixedPoint(bits, frac, signed)
