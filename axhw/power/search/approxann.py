"""Compute power of ApproxAnn's mixed-mode networks, to set beside AxTrain's (paper section 5: "AxTrain
requires 25.73% less power consumption than ApproxANN on average").

ApproxAnn (Zhang et al., DATE 2015; :mod:`axhw.approxann`) leaves each neuron's multiplier exact or
switches it to one approximate mode. One multiplier per synapse does one multiply per inference in a
fully-connected network, so the share of multiplies in the approximate mode is the share of approximate
multipliers (:func:`~axhw.approxann.criticality.count_multipliers`), and at one multiply per cycle the
compute power is the mix of the two modes' measured powers:

    ``P = f * P_mode + (1 - f) * P_exact``,  ``f`` = approximate multipliers / all multipliers.

``P_mode`` and ``P_exact`` are gate-level measurements (:mod:`axhw.power.multiplier.compute`) on the operand stream of
the pretrained network ApproxAnn started from (BP, or AxTrain-act), the same measurement the study makes
for every network. ApproxAnn's retraining rounds fine-tune those weights for a few epochs; their streams
are not re-simulated (stated approximation: streams of networks of one data set differ by a few percent in
power, against the tens of percent between modes).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from axhw.power.search.measure import Measurer
from axhw.power.search.targets import ResultCache, file_digest

__all__ = ["approxann_cached", "mixed_power"]


def mixed_power(fraction: float, p_mode: float, p_exact: float) -> float:
    """Power of a network whose multiplies are ``fraction`` approximate (``p_mode``) and the rest exact.

    >>> mixed_power(0.25, 1.0, 3.0)
    2.5
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction={fraction} out of range: valid range is [0, 1]")
    return fraction * p_mode + (1.0 - fraction) * p_exact


def approxann_cached(ck: Path, mode: str, bound_pp: float, seed: int, retrain_epochs: int, cache: ResultCache,
                     measurer: Measurer, source: str, accept_split: Literal["test", "val"] = "test") -> dict[str, Any]:
    """ApproxAnn on checkpoint ``ck`` with ``mode`` within ``bound_pp`` points, and its compute power. The bound
    is enforced on ``accept_split`` (the study's selection split: ``val`` where the network has one).

    Returns the search's counts and accuracies (no per-round trace) with ``power_w``, ``p_mode_w`` and
    ``p_exact_w``; cached under the checkpoint's SHA-256 and the search settings.
    """
    from axhw.approxann.search import ApproxAnnConfig, run_approxann

    aa = ApproxAnnConfig(mode=mode, bound=bound_pp, seed=seed, retrain_epochs=retrain_epochs,
                         accept_split=accept_split)
    payload = {"checkpoint": file_digest(ck), "config": asdict(aa)}
    hit = cache.get("approxann", payload)
    if hit is None:
        r = run_approxann(ck, aa).as_dict()
        hit = cache.put("approxann", payload, {k: v for k, v in r.items() if k not in ("trace", "per_layer")}
                        | {"rounds": len(r["trace"])})
    p_mode = measurer.compute(ck, mode, seed, source)["measured"]["total_w"]
    p_exact = measurer.compute(ck, "exact", seed, source)["measured"]["total_w"]
    return {**hit, "p_mode_w": p_mode, "p_exact_w": p_exact, "power_w": mixed_power(hit["fraction"], p_mode, p_exact)}
