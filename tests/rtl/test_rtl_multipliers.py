"""Generated multipliers against :mod:`axhw.arith.multipliers`, bit for bit, under Icarus and Verilator
(how: :mod:`axhw.rtl.verify`).

* 8-bit operands: every configuration exhaustively (DRUM k = 1..8 and exact, signed and unsigned). The
  default suite runs DRUM-3 signed; the full sweep is ``slow`` (``make test-all``).
* 16 and 32 bits: 10,000 seeded random pairs plus all pairs of corner values for several k.
* Mutations: a deliberately broken reference and a corrupted expectation must make the check fail, which
  shows the check can fail at all.

Builds are cached under ``build/sim`` (``AXHW_SIM_BUILD``); a first Verilator build takes ~10 s per
configuration, later runs reuse it.
"""

from __future__ import annotations

import pytest
import torch

from axhw.arith.multipliers import DRUM, Exact
from axhw.rtl.generate import MultiplierConfig
from axhw.rtl.verify import CheckResult, check, exhaustive_pairs, expected_products, run_vectors


def assert_matches(result: CheckResult) -> None:
    """Fail with the first mismatching pair (a, b, expected, rtl) when the RTL differs from the model."""
    assert result.ok, result.describe()


def _param(cfg: MultiplierConfig, default: bool) -> object:
    return pytest.param(cfg, id=cfg.config_id, marks=() if default else pytest.mark.slow)


# DRUM-3 signed is the quick default: it exercises segment, shift, sign and the one-hot mux at once.
EIGHT_BIT = [
    _param(MultiplierConfig("drum", 8, k, signed), default=(k, signed) == (3, True))
    for signed in (True, False)
    for k in range(1, 9)
] + [_param(MultiplierConfig("exact", 8, None, signed), default=False) for signed in (True, False)]


@pytest.mark.parametrize("cfg", EIGHT_BIT)
def test_exhaustive_8bit(cfg: MultiplierConfig, simulator: str) -> None:
    assert_matches(check(cfg, simulator, exhaustive_pairs(cfg)))


# 16/32 bits: the defaults cover the saturation corner (signed k = 2: (min, min) is among the corner pairs)
# and unsigned 32-bit, whose products above 2**63 the verifier takes from the model's operand transform.
WIDE = [
    _param(
        MultiplierConfig("drum", bits, k, signed), default=(bits, k, signed) in {(16, 4, True), (32, 2, True)}
    )
    for bits in (16, 32)
    for k in (1, 2, 4, 8, bits)
    for signed in (True, False)
] + [
    _param(MultiplierConfig("exact", bits, None, signed), default=False)
    for bits in (16, 32)
    for signed in (True, False)
]


@pytest.mark.parametrize("cfg", WIDE)
def test_random_and_corners_wide(cfg: MultiplierConfig, simulator: str) -> None:
    result = check(cfg, simulator)  # 10,000 seeded pairs + corner x corner pairs
    assert result.vectors >= 10_000
    assert_matches(result)


@pytest.mark.slow
@pytest.mark.parametrize("signed", [True, False], ids=["s", "u"])
def test_drum_k_equals_bits_is_exact(signed: bool, simulator: str) -> None:
    """Cross-identity in RTL: DRUM with k = bits checked against the *exact* model, not DRUM's."""
    cfg = MultiplierConfig("drum", 8, 8, signed)
    assert_matches(check(cfg, simulator, model=Exact(8, signed), tag="vs_exact"))


def _off_by_one_shift(self: DRUM, x: torch.Tensor) -> torch.Tensor:
    """DRUM's transform with the classic bug: the shift is one too small (k + 1 bits kept)."""
    mag = x.abs()
    _, exp = torch.frexp(mag.to(torch.float64))
    t = (exp.to(torch.int64) - self.k - 1).clamp(min=0)  # correct: exp - k
    approx = ((mag >> t) | 1) << t
    out = torch.where(mag >= (1 << self.k), approx, mag)
    return torch.where(x < 0, -out, out)


def test_mutated_reference_fails(simulator: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken model must make the RTL check fail: the check is not vacuous."""
    cfg = MultiplierConfig("drum", 8, 3, True)
    monkeypatch.setattr(DRUM, "_transform_values", _off_by_one_shift)
    broken = DRUM(3, 8, True)
    result = check(cfg, simulator, model=broken, tag="mutation")
    assert result.mismatches > 0 and result.direct_failures
    with pytest.raises(AssertionError, match="mismatches"):
        assert_matches(result)


def test_single_corrupted_expectation_is_counted(simulator: str) -> None:
    """The wrapper's comparator finds exactly one planted error and reports the right pair."""
    cfg = MultiplierConfig("drum", 8, 3, True)
    a, b = exhaustive_pairs(cfg)
    expected = expected_products(cfg.model(), a, b)
    i = 40_000
    expected[i] += 1
    result = run_vectors(cfg, simulator, a, b, expected, tag="corrupt")
    assert result.checked == a.numel()
    assert result.mismatches == 1
    assert result.first_bad == (int(a[i]), int(b[i]), expected[i], expected[i] - 1)


# Narrow widths, exhaustively, every k: the templates' edge cases (1-bit high part, 2-bit products, the
# saturation corner at its smallest width bits = 3). Icarus only: ~0.4 s per configuration with its build.
SMALL = [
    _param(MultiplierConfig("drum", bits, k, signed), default=(bits, k) in {(2, 1), (3, 2)} and signed)
    for bits in range(2, 7)
    for k in range(1, bits + 1)
    for signed in (True, False)
] + [
    _param(MultiplierConfig("exact", bits, None, signed), default=False)
    for bits in range(2, 7)
    for signed in (True, False)
]


@pytest.mark.parametrize("cfg", SMALL)
def test_exhaustive_small_widths(cfg: MultiplierConfig, icarus: str) -> None:
    assert_matches(check(cfg, icarus, exhaustive_pairs(cfg)))
