"""Dynamic fixed point: rounding, saturation, bit views, calibration (docs/hardware-models.md, "Dynamic fixed point")."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from axhw.arith.fixedpoint import FixedPoint, calibrate

formats = st.builds(
    FixedPoint,
    bits=st.integers(2, 62),
    frac=st.integers(-8, 40),
    signed=st.booleans(),
).filter(lambda f: f.bits >= 2)


def test_round_half_to_even_and_saturate():
    fmt = FixedPoint(8, 1)
    x = torch.tensor([0.25, 0.75, 1.25, -0.25, -0.75, 63.4, 64.0, -64.0, -70.0, float("inf"), float("-inf")])
    # 0.25*2 = 0.5 -> 0 (even), 1.5 -> 2, 2.5 -> 2, -0.5 -> 0, -1.5 -> -2; then saturation to [-128, 127]
    assert fmt.quantize(x).tolist() == [0, 2, 2, 0, -2, 127, 127, -128, -128, 127, -128]


def test_unsigned_range_and_saturation():
    fmt = FixedPoint(4, 0, signed=False)
    assert (fmt.qmin, fmt.qmax) == (0, 15)
    assert fmt.quantize(torch.tensor([-3.0, 7.5, 8.5, 99.0])).tolist() == [0, 8, 8, 15]


def test_nan_rejected():
    with pytest.raises(ValueError, match="NaN"):
        FixedPoint(8, 4).quantize(torch.tensor([1.0, float("nan")]))


@pytest.mark.parametrize("bits,frac,signed", [(1, 0, True), (63, 0, True), (0, 0, False), (8, 65, True)])
def test_invalid_formats_name_the_range(bits, frac, signed):
    with pytest.raises(ValueError, match="valid range"):
        FixedPoint(bits, frac, signed)


def test_words_two_complement():
    fmt = FixedPoint(8, 3)
    codes = torch.tensor([-128, -1, 0, 1, 127])
    words = fmt.to_words(codes)
    assert words.tolist() == [0x80, 0xFF, 0x00, 0x01, 0x7F]
    assert fmt.from_words(words).tolist() == codes.tolist()
    with pytest.raises(ValueError, match=r"valid range is \[-128, 127\]"):
        fmt.to_words(torch.tensor([128]))
    with pytest.raises(ValueError, match=r"valid range is \[0, 255\]"):
        fmt.from_words(torch.tensor([256]))


@settings(max_examples=200, deadline=None)
@given(fmt=formats, data=st.data())
def test_codes_round_trip_exactly(fmt, data):
    codes = torch.tensor(data.draw(st.lists(st.integers(fmt.qmin, fmt.qmax), min_size=1, max_size=50)))
    if fmt.bits <= 53:  # float64 holds every code of up to 53 bits exactly
        assert torch.equal(fmt.quantize(fmt.dequantize(codes, torch.float64)), codes)
    assert torch.equal(fmt.from_words(fmt.to_words(codes)), codes)
    words = fmt.to_words(codes)
    assert int(words.min()) >= 0 and int(words.max()) < 2**fmt.bits


@settings(max_examples=200, deadline=None)
@given(fmt=formats, xs=st.lists(st.floats(-1e12, 1e12, allow_nan=False), min_size=1, max_size=50))
def test_quantize_is_nearest_and_saturating(fmt, xs):
    x = torch.tensor(xs, dtype=torch.float64)
    q = fmt.quantize(x)
    assert int(q.min()) >= fmt.qmin and int(q.max()) <= fmt.qmax
    scaled = [math.ldexp(v, fmt.frac) for v in xs]
    for s, c in zip(scaled, q.tolist(), strict=True):
        if fmt.qmin <= s <= fmt.qmax:
            assert abs(c - s) <= 0.5  # nearest code
            if abs(c - s) == 0.5:
                assert c % 2 == 0  # ties to even
        else:
            assert c == (fmt.qmax if s > fmt.qmax else fmt.qmin)  # saturation, never wrap


@settings(max_examples=100, deadline=None)
@given(
    bits=st.integers(2, 16),
    xs=st.lists(st.floats(-1e4, 1e4, allow_nan=False, allow_subnormal=False), min_size=1, max_size=40),
)
def test_calibrate_maxabs_covers_and_is_largest(bits, xs):
    x = torch.tensor(xs, dtype=torch.float64)
    fmt = calibrate(x, bits)
    if float(x.abs().max()) == 0.0:
        return
    assert float(x.max()) <= fmt.max_value and float(x.min()) >= fmt.min_value
    if fmt.frac == 64:  # the finest format we offer
        return
    finer = fmt.with_frac(fmt.frac + 1)
    assert float(x.max()) > finer.max_value or float(x.min()) < finer.min_value


def test_calibrate_examples_and_percentile():
    assert calibrate(torch.tensor([0.3, -0.9]), 8).frac == 7
    assert calibrate(torch.tensor([0.3, -1.0]), 8).frac == 7  # -1.0 == -128 * 2**-7 fits exactly
    assert calibrate(torch.tensor([1.0]), 8).frac == 6  # 127/128 < 1
    w = torch.cat([torch.full((9999,), 0.01), torch.tensor([5.0])])
    assert calibrate(w, 8, mode="percentile", percentile=99.0).frac > calibrate(w, 8).frac
    assert calibrate(torch.zeros(3), 8).frac == 7
    with pytest.raises(ValueError, match="valid modes"):
        calibrate(w, 8, mode="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="valid range"):
        calibrate(w, 8, mode="percentile", percentile=0.0)


def test_fake_quantize_is_the_stored_value():
    fmt = FixedPoint(8, 4)
    x = torch.tensor([0.03, 1.5, 100.0], dtype=torch.float32)
    y = fmt.fake_quantize(x)
    assert y.dtype == torch.float32 and y.tolist() == [0.0, 1.5, 127 / 16]  # 0.48 LSB rounds to 0; saturates


def test_fake_quantize_keeps_float_dtypes_and_floats_integer_inputs():
    fmt = FixedPoint(8, 4)
    x64 = torch.tensor([0.03, 1.5], dtype=torch.float64)
    assert fmt.fake_quantize(x64).dtype == torch.float64
    got = fmt.fake_quantize(torch.tensor([3, 200]))  # integer tensors: float32 values of the stored codes
    assert got.dtype == torch.float32 and got.tolist() == [3.0, 127 / 16]


def test_with_frac_keeps_width_and_signedness_and_the_name_says_both():
    u = FixedPoint(6, 2, signed=False)
    assert u.with_frac(-1) == FixedPoint(6, -1, signed=False)
    assert FixedPoint(8, 3).with_frac(5) == FixedPoint(8, 5)
    assert str(u) == "ufix<6,2>" and str(FixedPoint(8, 3)) == "fix<8,3>"


def test_calibrate_range_errors_say_exactly_what_is_wrong() -> None:
    """Mutants the first full mutation run left alive: a small negative end (between -1 and 0), the exact
    one-line messages."""
    import re

    from axhw.arith.fixedpoint import calibrate_range

    with pytest.raises(ValueError, match="^" + re.escape("unsigned format cannot cover negative values; use "
                                                         "signed=True") + "$"):
        calibrate_range(-0.5, 1.0, 8, signed=False)
    assert calibrate_range(0.0, 1.0, 8, signed=False) == FixedPoint(8, 7, False)  # 0 is not negative
    with pytest.raises(ValueError, match=r"^calibrate needs a non-empty tensor of finite values$"):
        calibrate_range(float("nan"), 1.0, 8)


def test_words_are_int64_and_their_errors_name_words() -> None:
    fmt = FixedPoint(8, 4, True)
    codes = torch.tensor([-128, -1, 0, 127], dtype=torch.int32)
    words = fmt.to_words(codes)
    assert words.dtype == torch.int64 and words.tolist() == [128, 255, 0, 127]
    back = fmt.from_words(words.to(torch.int32))
    assert back.dtype == torch.int64 and back.tolist() == [-128, -1, 0, 127]
    with pytest.raises(ValueError, match=r"^words "):
        fmt.from_words(torch.tensor([256]))
