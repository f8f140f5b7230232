"""Measurements on simulated waveforms: threshold crossings, transitions, charge and energy.

ngspice's time steps are uneven (it shortens them at every edge), so every integral here is the trapezoid
rule over the actual time points, cut exactly at the window's ends; lctime's rectangle sum over uneven steps
gave negative energies in issue 29's trial. Tested on analytic waveforms in ``tests/power/pdk``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["crossing", "integral", "settled", "supply_energy", "transition"]


def crossing(t: np.ndarray, v: np.ndarray, level: float, rising: bool, after: float = -np.inf) -> float:
    """The first time after ``after`` that ``v`` crosses ``level`` upward (``rising``) or downward.

    Linear between samples; ``nan`` when it never does.

    >>> t = np.array([0.0, 1.0, 2.0, 3.0]); v = np.array([0.0, 0.0, 1.0, 1.0])
    >>> crossing(t, v, 0.25, rising=True)
    1.25
    """
    a, b = v[:-1] - level, v[1:] - level
    hit = (a < 0) & (b >= 0) if rising else (a > 0) & (b <= 0)
    hit &= t[1:] > after
    idx = np.flatnonzero(hit)
    if idx.size == 0:
        return float("nan")
    k = int(idx[0])
    frac = (level - v[k]) / (v[k + 1] - v[k])
    return float(t[k] + frac * (t[k + 1] - t[k]))


def transition(t: np.ndarray, v: np.ndarray, vdd: float, rising: bool, after: float,
               low: float = 0.2, high: float = 0.8) -> float:
    """The ``low``-``high`` transition time (20-80% by default, sky130's slew thresholds) after ``after``."""
    first, second = (low, high) if rising else (high, low)
    t1 = crossing(t, v, first * vdd, rising, after)
    t2 = crossing(t, v, second * vdd, rising, t1 if np.isfinite(t1) else after)
    return t2 - t1


def integral(t: np.ndarray, y: np.ndarray, t0: float, t1: float) -> float:
    """``int y dt`` over ``[t0, t1]`` by the trapezoid rule on the samples, with both ends interpolated.

    >>> t = np.array([0.0, 0.1, 1.0, 3.0]); y = 2 * t
    >>> round(integral(t, y, 0.5, 2.0), 12)
    3.75
    """
    inside = (t > t0) & (t < t1)
    ts = np.concatenate(([t0], t[inside], [t1]))
    ys = np.interp(ts, t, y)
    return float(np.sum((ts[1:] - ts[:-1]) * (ys[1:] + ys[:-1]) / 2.0))


def settled(t: np.ndarray, v: np.ndarray, target: float, at: float, tol: float) -> bool:
    """Whether ``v`` is within ``tol`` of ``target`` at time ``at`` (the end of a measurement window)."""
    return bool(abs(float(np.interp(at, t, v)) - target) <= tol)


def supply_energy(t: np.ndarray, i: np.ndarray, supply: float, t0: float, t1: float) -> float:
    """Energy (J) a supply at ``supply`` volts delivers over ``[t0, t1]`` (s) beyond the leakage it settles to:
    ``V * (int i dt - i(t1) * (t1 - t0))``, ``i`` the current it delivers.

    >>> t = np.array([0.0, 1.0, 2.0, 4.0]); i = np.array([1.0, 3.0, 1.0, 1.0])
    >>> supply_energy(t, i, 2.0, 0.0, 4.0)  # a 2 x 2 / 2 triangle above a 1 A floor, at 2 V
    4.0
    """
    return supply * (integral(t, i, t0, t1) - float(np.interp(t1, t, i)) * (t1 - t0))
