"""Cached measurements of trained networks for the minimum-power study: hardware-model accuracy and
gate-level multiplier power, keyed by the checkpoint's SHA-256 and every setting (:class:`ResultCache`), so a
re-run of a report re-simulates and re-evaluates nothing and a killed report resumes where it stopped."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from axhw.power.flow.activity import SimConfig, held_for_clock
from axhw.power.flow.sta import PowerConfig
from axhw.power.flow.synth import SynthConfig
from axhw.power.flow.tools import find_toolchain
from axhw.power.search.targets import Ledger, ResultCache, file_digest

__all__ = ["Measurer"]


@dataclass
class Measurer:
    """Accuracy (:func:`axhw.training.evaluate.evaluate`) and compute power (:func:`network_compute_power`) of
    checkpoints, cached.

    Attributes:
        cache: where results live.
        ledger: counts evaluations and simulations actually run.
        bits, n_pairs, clock_mhz, timing, runs: the study's settings (see :class:`~axhw.power.search.study.StudyConfig`).
    """

    cache: ResultCache
    ledger: Ledger
    bits: int
    n_pairs: int
    clock_mhz: float
    timing: bool
    runs: int

    def accuracy(self, ck: Path, mode: str, voltage_mv: float, seed: int, split: str = "test") -> dict[str, Any]:
        """Mean and std accuracy and loss over ``runs`` chip instances (NTV) of ``ck`` under (mode, voltage), on
        the ``test`` or the ``val`` split, with every chip's accuracy (``accuracies``: chip ``r`` is seeded
        ``seed + r`` for every network, so two networks of one architecture meet the same chips: common random
        numbers for paired comparisons)."""
        from axhw.arith.library import circuit_of
        from axhw.arith.registry import get_multiplier

        payload = {"checkpoint": file_digest(ck), "mode": mode, "circuit": circuit_of(get_multiplier(mode, self.bits)),
                   "voltage_mv": float(voltage_mv), "runs": self.runs, "seed": seed, "split": split}
        hit = self.cache.get("eval", payload)
        if hit is not None:
            return hit
        from axhw.training.evaluate import evaluate

        r = evaluate(ck, mode, voltage_mv, runs=self.runs, seed=seed, split=split)
        self.ledger.evaluations += 1
        return self.cache.put("eval", payload, {"accuracy_mean": r.accuracy_mean, "accuracy_std": r.accuracy_std,
                                                "loss_mean": r.loss_mean, "loss_std": r.loss_std,
                                                "accuracies": r.accuracies, "correct_counts": r.correct_counts})

    def compute(self, ck: Path, mode: str, seed: int, source: str) -> dict[str, Any]:
        """Gate-level power of ``mode`` on the operand stream of ``ck`` (``ComputePower.as_dict()``).

        Raises:
            ValueError: the netlist disagrees with the model on some operand pair (its power would be
                meaningless).
        """
        from axhw.power.multiplier.compute import mode_config

        payload = {"checkpoint": file_digest(ck), "mode": mode, "config_id": mode_config(mode, self.bits).config_id,
                   "bits": self.bits, "n_pairs": self.n_pairs, "seed": seed, "timing": self.timing,
                   "clock_mhz": self.clock_mhz, "library": find_toolchain().library_sha256}
        hit = self.cache.get("power", payload)
        if hit is not None:
            return hit
        import torch

        from axhw.power.multiplier.compute import network_compute_power
        from axhw.training.trainer import integer_test_inputs, load_checkpoint

        qnet, x_int = integer_test_inputs(load_checkpoint(ck))
        with torch.no_grad():
            c = network_compute_power(qnet, x_int, mode, self.bits, self.n_pairs, seed, source,
                                      synth_cfg=SynthConfig(), sim_cfg=SimConfig(timing=self.timing),
                                      power_cfg=PowerConfig(clock_mhz=self.clock_mhz))
        self.ledger.simulations += 1
        if c.mismatches:
            lines = "; ".join(c.extra.get("mismatch_lines", [])[:3])
            held = held_for_clock(SimConfig(), self.clock_mhz).period_ns
            raise ValueError(f"mode {mode}: the gate-level netlist disagrees with the model on {c.mismatches} "
                             f"of {c.vectors} operand pairs, each held {held} ns ({lines}): its power would be "
                             "meaningless (a netlist slower than that, e.g. at a low logic supply, needs a lower "
                             "--clock-mhz)")
        return self.cache.put("power", payload, c.as_dict())
