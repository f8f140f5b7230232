"""Statistics of the power study (axhw.power.search.stats) and the floor rule of the readings of the bound
(axhw.power.search.bound): exact values where they can be derived (docs/power.md, "Statistics and readings of
the bound")."""

from __future__ import annotations

import pytest

from axhw.power.search.bound import READINGS, floor, parse_reading, reading_name, rule_text
from axhw.power.search.stats import (
    bootstrap_mean_ci,
    hierarchical_mean_ci,
    hinges,
    margin_samples,
    mcnemar_exact,
)


def test_mcnemar_exact_values() -> None:
    assert mcnemar_exact(0, 5) == 0.0625  # 2 * 0.5**5
    assert mcnemar_exact(2, 0) == 0.5  # 2 * 0.5**2
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(3, 3) == 1.0
    assert mcnemar_exact(1, 9) == pytest.approx(2 * (1 + 10) / 2**10)  # P(X <= 1) doubled, n = 10
    for b, c in ((-1, 2), (1.5, 2), (True, 2)):
        with pytest.raises(ValueError, match="discordant"):
            mcnemar_exact(b, c)  # type: ignore[arg-type]


def test_bootstrap_mean_ci_exact_cases_and_seeded_reproduction() -> None:
    assert bootstrap_mean_ci([1.0, 1.0, 1.0]) == (1.0, 1.0, 1.0)
    # 3 values: an all-one-value resample has probability 1/27 > 2.5%, so the 95% interval is [min, max].
    assert bootstrap_mean_ci([-50.0, -40.0, -60.0]) == (-50.0, -60.0, -40.0)
    assert bootstrap_mean_ci([7.0]) == (7.0, None, None)
    assert bootstrap_mean_ci([]) == (None, None, None)
    vals = [1.0, 2.0, 4.0, 8.0, 16.0, 3.0]
    first = bootstrap_mean_ci(vals, seed=3)
    assert first == bootstrap_mean_ci(vals, seed=3)  # seeded: the same interval on a second call
    mean, lo, hi = first
    assert mean is not None and lo is not None and hi is not None
    assert mean == 34.0 / 6 and min(vals) < lo < mean < hi < max(vals)
    half = bootstrap_mean_ci(vals, confidence=0.5, seed=3)[1]
    assert half is not None and half > lo  # a lower level gives a narrower interval
    with pytest.raises(ValueError, match="finite"):
        bootstrap_mean_ci([1.0, float("nan")])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_mean_ci([1.0, 2.0], confidence=95)


def test_hierarchical_interval_contains_the_mean_and_widens_with_seed_spread() -> None:
    assert hierarchical_mean_ci({"a": [1.0, 1.0, 1.0], "b": [2.0, 2.0, 2.0]}) == (1.5, 1.5, 1.5)
    mean, lo, hi = hierarchical_mean_ci({"a": [1.0, 1.0, 1.0], "b": [0.0, 2.0, 4.0]})
    assert mean == 1.5 and lo is not None and hi is not None and lo < mean < hi
    _, lo2, hi2 = hierarchical_mean_ci({"a": [1.0, 1.0, 1.0], "b": [-2.0, 2.0, 6.0]})
    assert lo2 is not None and hi2 is not None and hi2 - lo2 > hi - lo  # wider spread, wider interval
    # One data set alone: the ordinary bootstrap over its seeds (3 values: [min, max]).
    assert hierarchical_mean_ci({"a": [-50.0, -40.0, -60.0]}) == (-50.0, -60.0, -40.0)
    # Data sets averaged with equal weight, whatever their seed counts; empty data sets left out.
    assert hierarchical_mean_ci({"a": [0.0, 0.0], "b": [3.0], "c": []}) == (1.5, 1.5, 1.5)
    assert hierarchical_mean_ci({"a": [1.0], "b": [3.0]}) == (2.0, None, None)  # no spread within data sets
    _, glo, ghi = hierarchical_mean_ci({"a": [1.0], "b": [3.0]}, resample_groups=True)
    assert (glo, ghi) == (1.0, 3.0)  # resampling data sets too: all-a / all-b resamples have 25% each
    assert hierarchical_mean_ci({"a": [0.0, 2.0], "b": [1.0, 5.0]}, seed=4) == \
        hierarchical_mean_ci({"a": [0.0, 2.0], "b": [1.0, 5.0]}, seed=4)


def test_margin_samples_signed_and_hinges() -> None:
    assert margin_samples(0.95, 0.93, 100) == 2
    assert margin_samples(0.93, 0.93, 100) == 0
    assert margin_samples(0.925, 0.93, 100) == -1
    assert margin_samples(0.90, 0.93, 100) == -3
    assert margin_samples(1.0, 0.9, 569) == 56
    assert [hinges(m) for m in (2, -2, 3, -3, None)] == [True, True, False, False, None]
    with pytest.raises(ValueError, match="n_samples"):
        margin_samples(0.9, 0.9, 0)


def test_floor_rule_of_every_reading() -> None:
    assert floor(0.95, 2.0, "pp") == pytest.approx(0.93, abs=1e-15)
    assert floor(0.95, 2.0, "relative") == pytest.approx(0.931, abs=1e-15)
    assert floor(0.60, 2.0, "pp") - floor(0.60, 2.0, "relative") == pytest.approx(-0.008)
    assert floor(0.9, 0.0, "relative") == 0.9
    assert READINGS == ("own-pp", "own-relative", "bp-pp", "bp-relative")
    assert parse_reading("bp-relative") == ("bp", "relative") and reading_name("own") == "own-pp"
    assert rule_text("bp-relative", 2.0) == "floor = BP's accurate accuracy x (1 - 2%)"
    with pytest.raises(ValueError, match="valid kinds"):
        floor(0.9, 2.0, "percent")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=">= 0"):
        floor(0.9, -1.0)
    with pytest.raises(ValueError, match="valid readings"):
        parse_reading("own")
