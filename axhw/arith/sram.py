"""Near-threshold-voltage (NTV) SRAM weight storage with random bit flips (docs/hardware-models.md,
"NTV SRAM storage").

Lowering the SRAM supply toward the threshold voltage saves energy but makes bit cells fail. Following the
paper (section 4.1, after Dreslinski et al., "Near-Threshold Computing", Proc. IEEE 98(2), 2010, Fig. 9),
every stored bit of every parameter word flips independently with a probability ``p(V)`` anchored at

* 10 % at 400 mV, 1 % at 660 mV, 0.1 % at 850 mV,
* 0 at the nominal 1100 mV (treated as reliable, as the paper does).

Between anchors ``log10 p`` is interpolated linearly in ``V`` (failure rates fall roughly exponentially
with supply voltage). Between 850 mV and 1100 mV the 660-850 mV log-slope (one decade per 190 mV) is
extended, so ``p`` keeps falling smoothly (4.8e-5 just below 1100 mV); 1100 mV itself is exactly 0.

Evaluation draws one flip pattern per run (a chip instance) and holds it; training (AxTrain-pas) draws a
fresh pattern at every forward pass. Both use :meth:`NTVStorage.corrupt` with an explicit generator so the
same seed gives the same flips.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import cached_property

import torch

from axhw.arith.fixedpoint import FixedPoint, check_codes

__all__ = ["ANCHORS_MV", "NOMINAL_MV", "VOLTAGE_RANGE_MV", "NTVStorage", "bernoulli_positions", "flip_probability"]

#: (voltage in mV, bit-flip probability): Dreslinski et al. 2010, as used by the paper (section 4.1).
ANCHORS_MV: tuple[tuple[float, float], ...] = ((400.0, 1e-1), (660.0, 1e-2), (850.0, 1e-3))
#: Nominal supply, treated as error-free.
NOMINAL_MV = 1100.0
#: Supported supply range; below 400 mV the anchors say nothing and cells are past threshold.
VOLTAGE_RANGE_MV = (400.0, NOMINAL_MV)
#: Up to this flip probability, flips are drawn by geometric gaps (cost ~ number of flips), above densely.
_GAP_MAX_P = 0.25


def flip_probability(voltage_mv: float) -> float:
    """Per-bit flip probability at supply ``voltage_mv`` (log-linear between the anchors).

    >>> flip_probability(660)
    0.01
    >>> round(flip_probability(530), 6)   # halfway between 400 and 660 mV in log space
    0.031623
    """
    v = float(voltage_mv)
    lo, hi = VOLTAGE_RANGE_MV
    if not math.isfinite(v) or not lo <= v <= hi:
        raise ValueError(f"voltage {voltage_mv!r} mV out of range: valid range is [{lo:g}, {hi:g}] mV")
    if v >= NOMINAL_MV:
        return 0.0
    for (v0, p0), (v1, p1) in itertools.pairwise(ANCHORS_MV):
        if v0 <= v <= v1:
            if v == v0:
                return p0
            if v == v1:
                return p1
            return _loglinear(v, v0, p0, v1, p1)
    (v0, p0), (v1, p1) = ANCHORS_MV[-2], ANCHORS_MV[-1]
    return _loglinear(v, v0, p0, v1, p1)  # extension of the last segment above 850 mV


def _loglinear(v: float, v0: float, p0: float, v1: float, p1: float) -> float:
    frac = (v - v0) / (v1 - v0)
    return 10.0 ** (math.log10(p0) + frac * (math.log10(p1) - math.log10(p0)))


def bernoulli_positions(n: int, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sorted indices ``i < n`` of the successes of ``n`` independent Bernoulli(``p``) trials.

    The gaps between successive successes are i.i.d. geometric, drawn by inversion
    (``floor(log(1 - U) / log(1 - p)) + 1``), so this costs O(n p) instead of O(n).
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p={p!r} out of range: valid range is (0, 1)")
    log_q = math.log1p(-p)
    chunks: list[torch.Tensor] = []
    last = -1  # index of the last success so far
    while last < n:
        mean = (n - last) * p
        draw = int(mean + 6.0 * math.sqrt(mean + 1.0) + 16)
        u = torch.rand(draw, generator=generator, dtype=torch.float64)
        # in place, the same arithmetic as floor(log1p(-u) / log_q) + 1 (the hot path of AxTrain-pas)
        gaps = u.neg_().log1p_().div_(log_q).floor_().to(torch.int64).add_(1)
        pos = torch.cumsum(gaps, 0).add_(last)
        last = int(pos[-1])
        # positions ascend: the ones below n are a prefix
        chunks.append(pos if last < n else pos[: int(torch.searchsorted(pos, n))])
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks)


@dataclass(frozen=True)
class NTVStorage:
    """Parameter storage at supply ``voltage_mv``; ``p`` overrides the voltage model when given.

    Attributes:
        voltage_mv: SRAM supply in mV, within :data:`VOLTAGE_RANGE_MV`.
        p: per-bit flip probability; ``None`` means ``flip_probability(voltage_mv)``.
    """

    voltage_mv: float = NOMINAL_MV
    p: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.flip_p <= 1.0:
            raise ValueError(f"flip probability p={self.p!r} out of range: valid range is [0, 1]")

    @cached_property  # computed once, in __post_init__ (it writes the instance __dict__: frozen is no obstacle)
    def flip_p(self) -> float:
        """The per-bit flip probability in force."""
        return flip_probability(self.voltage_mv) if self.p is None else float(self.p)

    def flip_positions(self, n_bits: int, generator: torch.Generator | None) -> torch.Tensor:
        """Sorted flat indices (int64) of the flipped bits among ``n_bits`` stored bits, each flipped
        independently with :attr:`flip_p`: the random stream of every NTV draw in axhw.

        For ``p <= 1/4`` the flipped trials are drawn as geometric *gaps* (see :func:`bernoulli_positions`),
        so the cost is proportional to the number of flips, not of bits: this is the hot path of
        AxTrain-pas (a fresh pattern at every forward pass) and of chip sampling (10^7 8-bit words at
        p = 10 % in ~0.4 s). Above, one uniform per bit is cheaper. Both are exactly independent per-bit
        coin flips.
        """
        p = self.flip_p
        if p == 0.0 or n_bits == 0:
            return torch.zeros(0, dtype=torch.int64)
        if p == 1.0:
            return torch.arange(n_bits, dtype=torch.int64)
        if p > _GAP_MAX_P:
            return torch.nonzero(torch.rand(n_bits, generator=generator, dtype=torch.float64) < p).flatten()
        return bernoulli_positions(n_bits, p, generator)

    def flip_mask(self, shape: torch.Size | tuple[int, ...], bits: int, generator: torch.Generator | None) -> torch.Tensor:
        """int64 XOR masks, one per word, each of the ``bits`` bits set independently with ``p``.

        The ``n * bits`` stored bits are one flat Bernoulli sequence (word-major: bit ``b`` of word ``w`` is
        trial ``w * bits + b``), drawn by :meth:`flip_positions`.
        """
        n_words = math.prod(shape)
        pos = self.flip_positions(n_words * bits, generator)
        return _mask_from_positions(pos, n_words, bits).view(shape)

    def corrupt_all(self, codes: list[torch.Tensor], fmts: list[FixedPoint],
                    generator: torch.Generator | None = None, slots: list[int] | None = None) -> list[torch.Tensor]:
        """:meth:`corrupt` of several tensors stored one after another (a layer's weights, then its biases)
        with *one* draw: their words form one flat Bernoulli sequence, tensor after tensor, word-major
        within each (bit ``b`` of word ``w`` of tensor ``t`` is trial ``offset_t + w * bits_t + b``).

        One draw per layer instead of one per tensor (docs/hardware-models.md, "NTV SRAM storage"): the flips
        are the same i.i.d. coin flips, half the random-number calls. The training-time hardware forward (:mod:`axhw.nn.fused`),
        :meth:`axhw.golden.network.IntLinear.stored` (hence ``forward_int`` and ``sample_chip``) all draw this way,
        so equal seeds give equal chips everywhere. For a single tensor the stream is :meth:`corrupt`'s.

        ``slots`` (one per tensor, each >= its word width): the draw gives every word of tensor ``t`` a slot of
        ``slots[t]`` trials and the word keeps the flips of its slot's low ``fmt.bits`` trials (its stored bits;
        the rest are bits that are not stored, and their coin flips land nowhere). The stored bits still flip
        i.i.d. with ``p``, and the stream no longer depends on the word width: two networks whose bias words
        have different widths (``HardwareConfig.bias_word``) meet the same chips on the bits both store (common
        random numbers; docs/hardware-models.md).
        """
        for c, fmt in zip(codes, fmts, strict=True):
            check_codes(c, fmt.qmin, fmt.qmax)
        widths = [fmt.bits for fmt in fmts] if slots is None else list(slots)
        if len(widths) != len(codes) or any(w < fmt.bits for w, fmt in zip(widths, fmts, strict=True)):
            raise ValueError(f"slots {slots} must give one width per tensor, each at least its word width")
        if self.flip_p == 0.0:
            return [c.clone() for c in codes]
        sizes = [c.numel() * w for c, w in zip(codes, widths, strict=True)]
        pos = self.flip_positions(sum(sizes), generator)
        out: list[torch.Tensor] = []
        offset = 0
        for c, fmt, size, w in zip(codes, fmts, sizes, widths, strict=True):
            mine = pos[(pos >= offset) & (pos < offset + size)] - offset if len(codes) > 1 else pos
            if w != fmt.bits:  # keep the stored (low) bits of each slot, renumbered word-major at fmt.bits
                bit = mine % w
                keep = bit < fmt.bits
                mine = (mine[keep] // w) * fmt.bits + bit[keep]
            out.append(self._apply(c, fmt, _mask_from_positions(mine, c.numel(), fmt.bits).view(c.shape)))
            offset += size
        return out

    @staticmethod
    def _apply(codes: torch.Tensor, fmt: FixedPoint, mask: torch.Tensor) -> torch.Tensor:
        # Same arithmetic as fmt.to_words / fmt.from_words, done in place on the mask: this is the hot
        # path of AxTrain-pas (a fresh pattern every forward pass), and each extra 10^7-word temporary
        # costs ~20 ms.
        out = mask
        out ^= codes.to(torch.int64) & ((1 << fmt.bits) - 1)
        if fmt.signed:
            sign = 1 << (fmt.bits - 1)
            out ^= sign
            out -= sign
        return out.to(codes.dtype)

    def corrupt(self, codes: torch.Tensor, fmt: FixedPoint, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return ``codes`` as read back from NTV storage: each stored bit of each ``fmt`` word flipped
        independently with :attr:`flip_p`. Same dtype and shape; the input is not modified.

        >>> s = NTVStorage(400)
        >>> g = torch.Generator().manual_seed(0)
        >>> s.corrupt(torch.zeros(4, dtype=torch.int64), FixedPoint(8, 4), g).shape
        torch.Size([4])
        """
        check_codes(codes, fmt.qmin, fmt.qmax)
        if self.flip_p == 0.0:
            return codes.clone()
        return self._apply(codes, fmt, self.flip_mask(codes.shape, fmt.bits, generator))


def _mask_from_positions(pos: torch.Tensor, n_words: int, bits: int) -> torch.Tensor:
    """Flat int64 XOR masks of ``n_words`` words from the flat flipped-bit positions ``pos``."""
    mask = torch.zeros(n_words, dtype=torch.int64)
    if pos.numel():
        # Distinct bits of one word are distinct powers of two, so adding them is OR-ing them.
        mask.index_add_(0, pos // bits, torch.ones_like(pos) << (pos % bits))
    return mask
