"""NTV SRAM storage: the voltage model and the bit-flip process (docs/hardware-models.md, "NTV SRAM storage")."""

import itertools
import math

import pytest
import torch

from axhw.arith import sram
from axhw.arith.fixedpoint import FixedPoint
from axhw.arith.sram import ANCHORS_MV, NTVStorage, bernoulli_positions, flip_probability


def test_anchors_nominal_and_interpolation():
    for v, p in ANCHORS_MV:
        assert flip_probability(v) == p
    assert flip_probability(1100) == 0.0
    assert flip_probability(530) == pytest.approx(10**-1.5)  # log-linear midpoint of 400..660 mV
    assert flip_probability(755) == pytest.approx(10**-2.5)
    assert flip_probability(1040) == pytest.approx(1e-4)  # 660-850 slope extended: a decade per 190 mV
    volts = [400 + 10 * i for i in range(70)]
    ps = [flip_probability(v) for v in volts]
    assert all(x > y for x, y in itertools.pairwise(ps))


def test_interpolation_is_log_linear_for_any_anchor_table(monkeypatch):
    """The shipped anchors are one decade apart, where a wrong slope (the log step divided instead of
    multiplied) gives the same numbers; a two-decade segment tells them apart."""
    monkeypatch.setattr(sram, "ANCHORS_MV", ((400.0, 1e-1), (660.0, 1e-3), (850.0, 1e-4)))
    assert flip_probability(465) == pytest.approx(10**-1.5)  # a quarter of 400..660 mV: -1 - 0.25 * 2 decades
    assert flip_probability(1040) == pytest.approx(1e-5)  # the last segment's slope extended, 190 mV later


@pytest.mark.parametrize("v", [399.9, 1100.1, -5, float("nan"), float("inf")])
def test_out_of_range_voltages_rejected(v):
    with pytest.raises(ValueError, match=r"valid range is \[400, 1100\] mV"):
        flip_probability(v)


def test_bad_override_probability():
    with pytest.raises(ValueError, match=r"valid range is \[0, 1\]"):
        NTVStorage(660, p=1.5)


@pytest.mark.parametrize("fmt", [FixedPoint(8, 5), FixedPoint(16, 12), FixedPoint(8, 0, signed=False)], ids=str)
@pytest.mark.parametrize("s", [NTVStorage(400), NTVStorage(660), NTVStorage(p=0.3)],
                         ids=["gap-400mV", "gap-660mV", "dense-p0.3"])
def test_flip_rate_per_bit_position_within_bounds(fmt, s):
    n = 200_000
    p = s.flip_p
    g = torch.Generator().manual_seed(11)
    codes = torch.randint(fmt.qmin, fmt.qmax + 1, (n,), generator=g)
    out = s.corrupt(codes, fmt, g)
    flipped = fmt.to_words(out) ^ fmt.to_words(codes)
    sigma = math.sqrt(p * (1 - p) / n)
    for bit in range(fmt.bits):
        rate = ((flipped >> bit) & 1).double().mean().item()
        assert abs(rate - p) < 5 * sigma, (bit, rate, p)


@pytest.mark.parametrize("s", [NTVStorage(400), NTVStorage(p=0.3)], ids=["gap", "dense"])
def test_flips_are_independent_across_bits(s):
    # Two flipped bits in one word occur with probability p**2 (independence), neighbours and far bits alike.
    fmt = FixedPoint(8, 0)
    n = 1_000_000
    p2 = s.flip_p**2
    flipped = fmt.to_words(s.corrupt(torch.zeros(n, dtype=torch.int64), fmt, torch.Generator().manual_seed(2)))
    for b0, b1 in ((0, 7), (3, 4)):
        both = (((flipped >> b0) & 1) & ((flipped >> b1) & 1)).double().mean().item()
        assert abs(both - p2) < 5 * math.sqrt(p2 * (1 - p2) / n), (b0, b1)


def test_nominal_changes_nothing_and_input_untouched():
    fmt = FixedPoint(8, 4)
    codes = torch.arange(-128, 128, dtype=torch.int16).reshape(16, 16)
    before = codes.clone()
    out = NTVStorage(1100).corrupt(codes, fmt, torch.Generator().manual_seed(0))
    assert torch.equal(out, codes) and out.dtype == torch.int16
    out = NTVStorage(400).corrupt(codes, fmt, torch.Generator().manual_seed(0))
    assert torch.equal(codes, before), "input must not be modified"
    assert out.dtype == codes.dtype and out.shape == codes.shape
    assert int(out.min()) >= fmt.qmin and int(out.max()) <= fmt.qmax
    assert not torch.equal(out, codes)


def test_same_seed_same_flips_other_seed_other_flips():
    fmt = FixedPoint(8, 4)
    codes = torch.zeros(10_000, dtype=torch.int64)
    s = NTVStorage(660)
    a = s.corrupt(codes, fmt, torch.Generator().manual_seed(42))
    b = s.corrupt(codes, fmt, torch.Generator().manual_seed(42))
    c = s.corrupt(codes, fmt, torch.Generator().manual_seed(43))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_p_one_flips_everything_and_range_checked():
    fmt = FixedPoint(4, 0)
    out = NTVStorage(p=1.0).corrupt(torch.tensor([0, -1, 7]), fmt)
    assert out.tolist() == [-1, 0, -8]
    with pytest.raises(ValueError, match=r"valid range is \[-8, 7\]"):
        NTVStorage(660).corrupt(torch.tensor([8]), fmt)


def test_bernoulli_positions_sorted_unique_and_rate():
    pos = bernoulli_positions(1_000_000, 0.02, torch.Generator().manual_seed(9))
    assert torch.all(pos[1:] > pos[:-1]) and int(pos.min()) >= 0 and int(pos.max()) < 1_000_000
    assert abs(pos.numel() - 20_000) < 5 * math.sqrt(20_000)
    with pytest.raises(ValueError, match="valid range"):
        bernoulli_positions(10, 0.0)


def test_bernoulli_positions_are_pinned_for_a_seed_and_every_index_at_certainty() -> None:
    """The flip positions are part of the reference definition (a seed names a chip in every study), so their
    exact values for a seed are pinned; p near 1 makes every index a success, which an off-by-one start or a
    wrong running position cannot fake (mutants the first full mutation run left alive)."""
    from axhw.arith.sram import bernoulli_positions

    assert bernoulli_positions(300, 0.05, torch.Generator().manual_seed(1)).tolist() == [
        1, 6, 12, 16, 32, 35, 48, 73, 90, 104, 118, 126, 151, 161, 163, 166, 186, 191, 206, 231, 282]
    assert bernoulli_positions(40, 0.5, torch.Generator().manual_seed(2)).tolist() == [
        3, 4, 6, 8, 12, 14, 15, 16, 18, 19, 20, 22, 24, 27, 29, 30, 35, 36, 39]
    assert bernoulli_positions(1000, 1 - 1e-12, torch.Generator().manual_seed(0)).tolist() == list(range(1000))
    assert bernoulli_positions(3, 1 - 1e-12, torch.Generator().manual_seed(0)).tolist() == [0, 1, 2]


def test_bernoulli_positions_consume_the_generator_as_pinned_and_refuse_p_outside_0_1() -> None:
    """Each chip's layers draw from one generator in turn, so how many uniforms a call consumes decides the
    next call's flips: pinned here through the call after it."""
    from axhw.arith.sram import bernoulli_positions

    g = torch.Generator().manual_seed(3)
    bernoulli_positions(200, 0.05, g)
    assert bernoulli_positions(200, 0.05, g).tolist() == [9, 30, 48, 55, 57, 80, 91, 118, 139, 149, 176, 185, 193]
    bernoulli_positions(37, 0.3, g)
    assert bernoulli_positions(37, 0.3, g).tolist() == [3, 5, 9, 13, 17, 20, 21, 22, 23, 25, 26, 29, 33, 35]
    for p in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=rf"^p={p!r} out of range: valid range is \(0, 1\)$"):
            bernoulli_positions(10, p)


def test_corrupt_all_slots_keep_the_low_bits_and_refuse_narrow_slots() -> None:
    """A word in a wider slot keeps the flips of the slot's low bits (its stored bits); at p = 1 every stored bit
    flips and nothing above; a slot narrower than its word is refused."""
    st = NTVStorage(p=1.0)
    codes = torch.tensor([5, -3, 0])
    fmt = FixedPoint(4, 0)
    (got,) = st.corrupt_all([codes], [fmt], torch.Generator().manual_seed(0), slots=[32])
    assert got.tolist() == fmt.from_words(fmt.to_words(codes) ^ 0xF).tolist()  # all 4 stored bits, no more
    half = NTVStorage(p=0.5)
    a = half.corrupt_all([codes, codes], [fmt, FixedPoint(8, 0)], torch.Generator().manual_seed(1), slots=[4, 16])
    b = half.corrupt_all([codes, codes], [fmt, FixedPoint(6, 0)], torch.Generator().manual_seed(1), slots=[4, 16])
    assert torch.equal(a[0], b[0])  # the stream does not depend on the second word's width
    assert ((FixedPoint(8, 0).to_words(a[1]) ^ FixedPoint(8, 0).to_words(codes)) & 0x3F).tolist() == \
        (FixedPoint(6, 0).to_words(b[1]) ^ FixedPoint(6, 0).to_words(codes)).tolist()
    with pytest.raises(ValueError, match="at least its word width"):
        st.corrupt_all([codes], [fmt], None, slots=[3])
