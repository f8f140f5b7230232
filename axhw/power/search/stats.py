"""Uncertainty of the minimum-power study's numbers (docs/power.md, "Statistics and readings of the bound").

The study's changes are per seed (training, NTV sampling and operand sampling are seeded), averaged over a
few seeds (default 3) and then over data sets; the paper reports one number per claim (section 5: compute
-41.57%, storage -33.14% on average over data sets, Fig. 9). With 3 seeds a single mean says little, so every
mean gets a 95% bootstrap interval:

* :func:`bootstrap_mean_ci`: one data set, the mean over its seeds (percentile bootstrap, scipy).
* :func:`hierarchical_mean_ci`: the mean over data sets of each data set's mean over seeds, resampling seeds
  within each data set independently: the interval of "the average over data sets" the paper's claims are about.
* :func:`mcnemar_exact`: the paired exact test of two classifiers scored on the same samples (discordant counts).
* :func:`margin_samples`: how many samples separate a point's accuracy from the floor, i.e. whether a choice
  "hinges on a few samples".

Why the percentile interval and not BCa: BCa's acceleration is a jackknife estimate, which with fewer than
about 10 values (3 seeds here) is itself noise, and with ties (seeds choosing the same configuration give
identical changes) the bias correction divides by zero or jumps (scipy warns ``DegenerateDataWarning`` and returns
NaN). The percentile interval is defined for any data with at least two values and never NaN. Its known
weakness is the other way: with n values it uses the plug-in spread (divisor n, not n - 1) and only
``C(2n - 1, n)`` distinct resamples (10 for n = 3), so its coverage is below the nominal 95% for tiny n.
With 3 values the all-one-seed resamples have probability 1/27 = 3.7% each, above 2.5%, so the 95%
interval is exactly [min, max] of the seeds (a doctest below): a plain, readable statement of the seed spread,
not a guarantee.

Every resampling is seeded (``numpy.random.default_rng(seed)``): the same call gives the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["HINGE_SAMPLES", "bootstrap_mean_ci", "hierarchical_mean_ci", "hinges", "margin_samples", "mcnemar_exact",
           "paired_test"]

#: A choice "hinges on a few samples" when its margin to the floor is at most this many samples.
HINGE_SAMPLES = 2


def _check_common(confidence: float, n_resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence}: give a level strictly between 0 and 1 (e.g. 0.95)")
    if n_resamples < 1:
        raise ValueError(f"n_resamples={n_resamples}: give at least 1 (e.g. 10000)")


def _finite(values: Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    if arr.ndim != 1 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be a flat list of finite numbers, got {list(values)!r}")
    return arr


def bootstrap_mean_ci(values: Sequence[float], confidence: float = 0.95, n_resamples: int = 10_000,
                      seed: int = 0) -> tuple[float | None, float | None, float | None]:
    """The mean of ``values`` and its percentile-bootstrap interval ``(mean, lo, hi)``.

    Fewer than 2 values: ``(mean, None, None)`` (one value: its own mean; none: ``(None, None, None)``),
    because an interval needs a spread to resample; a caller shows the mean without an interval.

    >>> bootstrap_mean_ci([1.0, 1.0, 1.0])
    (1.0, 1.0, 1.0)
    >>> bootstrap_mean_ci([1.0, 2.0, 4.0])  # 3 values: [min, max] (see the module docstring)
    (2.3333333333333335, 1.0, 4.0)
    >>> bootstrap_mean_ci([5.0])
    (5.0, None, None)

    Raises:
        ValueError: a value is not finite, or ``confidence`` / ``n_resamples`` is out of range.
    """
    _check_common(confidence, n_resamples)
    arr = _finite(values, "values")
    if arr.size == 0:
        return None, None, None
    mean = float(np.mean(arr))
    if arr.size < 2:
        return mean, None, None
    if np.all(arr == arr[0]):  # no spread: every resample has this mean (scipy would warn on a degenerate sample)
        return mean, mean, mean
    from scipy.stats import bootstrap

    res = bootstrap((arr,), np.mean, n_resamples=n_resamples, confidence_level=confidence, method="percentile",
                    vectorized=True, rng=np.random.default_rng(seed))
    ci = res.confidence_interval
    return mean, float(ci.low), float(ci.high)


def hierarchical_mean_ci(groups: Mapping[str, Sequence[float]], confidence: float = 0.95,
                         n_resamples: int = 10_000, seed: int = 0,
                         resample_groups: bool = False) -> tuple[float | None, float | None, float | None]:
    """Mean over groups (data sets) of each group's mean (over seeds), with a two-level percentile bootstrap.

    Each resample draws, for every data set independently, as many seeds as it has, with replacement, and
    averages the data sets' means with equal weight (the paper averages data sets, not seeds). The data sets
    themselves stay fixed by default: the paper's claims are about these six applications of Table 1, so the
    uncertainty to state is the seeds'. ``resample_groups=True`` also resamples the data sets (the interval
    for an average over *other* data sets like these: much wider with 6 data sets that differ by tens of
    points).

    A data set with one seed has no spread and adds none (its mean is fixed in every resample); one with no
    value (no seed feasible) is left out, so the count of data sets is the caller's to show. Fewer than 2
    values in all: ``(mean, None, None)`` as :func:`bootstrap_mean_ci`.

    >>> hierarchical_mean_ci({"a": [1.0, 1.0], "b": [3.0, 3.0, 3.0]})
    (2.0, 2.0, 2.0)
    >>> hierarchical_mean_ci({"a": [1.0], "b": []})
    (1.0, None, None)

    Raises:
        ValueError: a value is not finite, or ``confidence`` / ``n_resamples`` is out of range.
    """
    _check_common(confidence, n_resamples)
    arrs = [a for a in (_finite(v, f"groups[{k!r}]") for k, v in groups.items()) if a.size]
    if not arrs:
        return None, None, None
    mean = float(np.mean([a.mean() for a in arrs]))
    if not any(a.size >= 2 for a in arrs) and not (resample_groups and len(arrs) >= 2):
        return mean, None, None  # nothing to resample: no spread within (nor, resampling them, between) data sets
    rng = np.random.default_rng(seed)
    if resample_groups:
        which = rng.integers(0, len(arrs), size=(n_resamples, len(arrs)))
        means = np.zeros(n_resamples)
        for j in range(len(arrs)):
            means += _resampled_means(arrs, which[:, j], rng)
        stat = means / len(arrs)
    else:
        stat = np.mean([a[rng.integers(0, a.size, size=(n_resamples, a.size))].mean(axis=1) for a in arrs], axis=0)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stat, [alpha, 1.0 - alpha])
    return mean, float(lo), float(hi)


def _resampled_means(arrs: list[np.ndarray], picks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each resample, the mean over a seed-resample of the data set ``picks[i]`` names."""
    out = np.empty(picks.size)
    for g, a in enumerate(arrs):
        rows = np.flatnonzero(picks == g)
        out[rows] = a[rng.integers(0, a.size, size=(rows.size, a.size))].mean(axis=1)
    return out


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts of two classifiers on the same samples.

    ``b``: samples the first gets right and the second wrong; ``c``: the reverse. Under the null (equal
    accuracy) each discordant sample is a fair coin, so the p-value is the two-sided binomial test of ``b``
    successes in ``b + c`` trials at 0.5 (exact: no chi-square approximation, which fails at the few
    discordant samples two nearby hardware configurations produce). No discordant sample: 1.0.

    >>> mcnemar_exact(0, 5)
    0.0625
    >>> mcnemar_exact(2, 0)
    0.5
    >>> mcnemar_exact(0, 0)
    1.0

    Raises:
        ValueError: a count is negative or not an integer.
    """
    for name, v in (("b", b), ("c", c)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name}={v!r}: discordant counts are integers >= 0")
    if b + c == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(int(b), int(b + c), 0.5).pvalue)


def paired_test(reference: Sequence[int], candidate: Sequence[int], runs: int, n_resamples: int = 10_000,
                seed: int = 0) -> dict[str, Any]:
    """Whether a candidate configuration is less accurate than the reference on the same samples and chips.

    ``reference`` and ``candidate`` are, per sample, how many of the ``runs`` chips classified it right
    (:attr:`axhw.training.evaluate.EvalResult.correct_counts`; chip ``r`` is seeded alike for both, so the pair
    shares its chips). Without bit flips every count is 0 or ``runs`` (one classifier each) and the test is the
    exact McNemar test on the discordant samples (:func:`mcnemar_exact`). Under NTV the counts are chip averages:
    then a paired sign-flip permutation test of the per-sample differences (``n_resamples`` seeded random sign
    patterns, two-sided; exact McNemar is its special case for 0/1 differences).

    Returns ``{"test", "p_value", "discordant", "mean_difference"}`` (``discordant``: samples whose counts
    differ; ``mean_difference``: candidate minus reference accuracy).

    >>> paired_test([1, 1, 1, 1, 1], [0, 0, 0, 0, 0], 1)["p_value"]
    0.0625
    >>> paired_test([3, 3], [3, 3], 3)["p_value"]
    1.0
    """
    ref, cand = np.asarray(reference, dtype=np.int64), np.asarray(candidate, dtype=np.int64)
    if ref.shape != cand.shape or ref.ndim != 1 or runs < 1:
        raise ValueError(f"paired counts of {ref.shape} and {cand.shape} samples over {runs} runs: give one count per "
                         "sample for both, from the same samples, runs >= 1")
    if ((ref < 0) | (ref > runs) | (cand < 0) | (cand > runs)).any():
        raise ValueError(f"per-sample counts must lie in [0, runs={runs}]")
    d = (cand - ref) / runs
    out: dict[str, Any] = {"discordant": int((d != 0).sum()), "mean_difference": float(d.mean()) if len(d) else 0.0}
    binary = bool(np.isin(ref, (0, runs)).all() and np.isin(cand, (0, runs)).all())
    if binary:
        b, c = int(((ref == runs) & (cand == 0)).sum()), int(((ref == 0) & (cand == runs)).sum())
        return {"test": "mcnemar-exact", "p_value": mcnemar_exact(b, c), **out}
    nz = d[d != 0]
    if len(nz) == 0:
        return {"test": "sign-flip", "p_value": 1.0, **out}
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_resamples, len(nz)))
    stat = abs(float(nz.sum()))
    hits = int((np.abs(signs @ nz) >= stat - 1e-12).sum())
    return {"test": "sign-flip", "p_value": (hits + 1) / (n_resamples + 1), **out}


def margin_samples(accuracy: float, floor: float, n_samples: int) -> int:
    """Signed number of samples between ``accuracy`` and ``floor`` on an evaluation of ``n_samples``.

    ``>= 0``: the point is feasible and could lose that many correct samples and stay feasible; ``< 0``: it
    is infeasible and needs ``-margin`` more correct samples to reach the floor. ``floor((accuracy - floor) * n)``
    (1e-9 of a sample tolerance for float rounding, as the selection's 1e-12 in accuracy). A mean over NTV runs
    is a fractional count; the margin is still the whole samples it can lose or must gain.

    >>> margin_samples(0.95, 0.93, 100), margin_samples(0.93, 0.93, 100), margin_samples(0.925, 0.93, 100)
    (2, 0, -1)

    Raises:
        ValueError: ``n_samples`` < 1 or an accuracy outside [0, 1].
    """
    if n_samples < 1:
        raise ValueError(f"n_samples={n_samples}: give the evaluation's sample count (>= 1)")
    if not (0.0 <= accuracy <= 1.0 and math.isfinite(floor)):
        raise ValueError(f"accuracy={accuracy}, floor={floor}: give fractions (accuracy in [0, 1])")
    return math.floor((accuracy - floor) * n_samples + 1e-9)


def hinges(margin: int | None, samples: int = HINGE_SAMPLES) -> bool | None:
    """Whether a margin (:func:`margin_samples`) is within ``samples`` of the floor (None: margin unknown).

    >>> hinges(2), hinges(-3), hinges(None)
    (True, False, None)
    """
    return None if margin is None else abs(margin) <= samples
