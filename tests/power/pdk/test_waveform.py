"""Waveform measurements on analytic signals sampled on uneven steps (as ngspice's are)."""

from __future__ import annotations

import numpy as np
import pytest

from axhw.power.pdk.waveform import crossing, integral, settled, transition


def _uneven(t_end: float, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    steps = rng.uniform(0.05, 3.0, n)  # step sizes differing 60x, like a simulator's near and away from edges
    return np.concatenate(([0.0], np.cumsum(steps) / steps.sum() * t_end))


def test_integral_exact_on_uneven_steps_for_a_piecewise_linear_signal():
    t = np.union1d(_uneven(10.0, 400), [2.0, 5.0])
    y = np.interp(t, [0, 2, 5, 10], [0, 4, -1, 3])
    exact = 0.5 * 2 * 4 + 0.5 * 3 * (4 - 1) + 0.5 * 5 * (-1 + 3)  # trapezoids of the corner points
    assert integral(t, y, 0.0, 10.0) == pytest.approx(exact, rel=1e-12)
    # cut inside a segment: the end values are interpolated, not the nearest sample's
    assert integral(t, y, 1.0, 2.0) == pytest.approx(0.5 * (2 + 4), rel=1e-12)


def test_integral_of_an_exponential_pulse_converges():
    t = _uneven(20.0, 20000, seed=1)
    y = np.exp(-t / 2.0)
    assert integral(t, y, 1.0, 15.0) == pytest.approx(2.0 * (np.exp(-0.5) - np.exp(-7.5)), rel=1e-4)


def test_rectangle_sum_would_be_wrong_here():
    """Why the trapezoid: a left-rectangle sum over the same uneven steps is far off (lctime's defect)."""
    t = _uneven(20.0, 200, seed=2)
    y = np.exp(-t / 2.0)
    exact = 2.0 * (1 - np.exp(-10.0))
    rect = float(np.sum(np.diff(t) * y[:-1]))
    assert abs(rect - exact) / exact > 0.02
    assert integral(t, y, 0.0, 20.0) == pytest.approx(exact, rel=2e-2)


def test_crossing_and_transition_of_a_ramp():
    t = _uneven(10.0, 1000, seed=3)
    v = np.clip((t - 2.0) / 5.0, 0, 1) * 1.8  # 0 -> 1.8 V from t=2 to t=7
    assert crossing(t, v, 0.9, rising=True) == pytest.approx(4.5, abs=1e-9)
    assert transition(t, v, 1.8, rising=True, after=0.0) == pytest.approx(3.0, abs=1e-9)  # 20-80%: 0.6 x 5
    assert np.isnan(crossing(t, v, 0.9, rising=False))
    assert np.isnan(crossing(t, v, 0.9, rising=True, after=8.0))
    fall = 1.8 - v
    assert transition(t, fall, 1.8, rising=False, after=0.0) == pytest.approx(3.0, abs=1e-9)


def test_settled():
    t = np.linspace(0, 1, 11)
    v = 1.8 * (1 - np.exp(-t * 10))
    assert settled(t, v, 1.8, 1.0, 0.018)
    assert not settled(t, v, 1.8, 0.2, 0.018)
