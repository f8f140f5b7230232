"""Near-threshold-voltage (NTV) SRAM weight storage with random bit flips (spec section 3).

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

import torch

from axhw.fixedpoint import FixedPoint, check_codes

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
        gaps = torch.floor(torch.log1p(-u) / log_q).to(torch.int64) + 1
        pos = last + torch.cumsum(gaps, 0)
        chunks.append(pos[pos < n])
        last = int(pos[-1])
    return torch.cat(chunks)


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
        prob = flip_probability(self.voltage_mv) if self.p is None else float(self.p)
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"flip probability p={self.p!r} out of range: valid range is [0, 1]")
        object.__setattr__(self, "_prob", prob)

    @property
    def flip_p(self) -> float:
        """The per-bit flip probability in force."""
        return self._prob  # type: ignore[attr-defined]

    def flip_mask(self, shape: torch.Size | tuple[int, ...], bits: int, generator: torch.Generator | None) -> torch.Tensor:
        """int64 XOR masks, one per word, each of the ``bits`` bits set independently with ``p``.

        The ``n * bits`` stored bits are one flat Bernoulli sequence (word-major: bit ``b`` of word ``w`` is
        trial ``w * bits + b``). For ``p <= 1/4`` the flipped trials are drawn as geometric *gaps* (see
        :func:`bernoulli_positions`), so the cost is proportional to the number of flips, not of bits: this
        is the hot path of AxTrain-pas (a fresh pattern at every forward pass) and of chip sampling
        (10^7 8-bit words at p = 10 % in ~0.4 s). Above, one uniform per bit is cheaper. Both are exactly
        independent per-bit coin flips.
        """
        n_words = math.prod(shape)
        p = self.flip_p
        if p == 1.0:
            return torch.full(tuple(shape), (1 << bits) - 1, dtype=torch.int64)
        mask = torch.zeros(n_words, dtype=torch.int64)
        if p == 0.0 or n_words == 0:
            return mask.view(shape)
        if p > _GAP_MAX_P:
            hits = torch.rand(n_words, bits, generator=generator, dtype=torch.float64) < p
            weights = torch.ones(bits, dtype=torch.int64) << torch.arange(bits, dtype=torch.int64)
            return (hits.to(torch.int64) * weights).sum(1).view(shape)
        pos = bernoulli_positions(n_words * bits, p, generator)
        # Distinct bits of one word are distinct powers of two, so adding them is OR-ing them.
        mask.index_add_(0, pos // bits, torch.ones_like(pos) << (pos % bits))
        return mask.view(shape)

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
        # Same arithmetic as fmt.to_words / fmt.from_words, done in place on the mask: this is the hot
        # path of AxTrain-pas (a fresh pattern every forward pass), and each extra 10^7-word temporary
        # costs ~20 ms.
        out = self.flip_mask(codes.shape, fmt.bits, generator)
        out ^= codes.to(torch.int64) & ((1 << fmt.bits) - 1)
        if fmt.signed:
            sign = 1 << (fmt.bits - 1)
            out ^= sign
            out -= sign
        return out.to(codes.dtype)
