"""Evaluate a trained network on the integer hardware model (docs/training.md, "Evaluation": one chip per run).

Accuracy and output loss come from :meth:`QuantizedNetwork.forward_int`, the golden model the RTL is
checked against, so these numbers are what the generated hardware would produce. Under NTV every run draws
one flip pattern (a chip instance), holds it for the whole test set, and runs are seeded ``seed + run``.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from axhw.arith.multipliers import Multiplier
from axhw.arith.registry import get_multiplier
from axhw.arith.sram import NTVStorage
from axhw.training.trainer import (
    config_from_dict,
    load_checkpoint,
    load_training_data,
    network_inputs,
    output_loss,
    quantized_from_checkpoint,
)

__all__ = ["EvalResult", "evaluate"]


@dataclass(frozen=True)
class EvalResult:
    """Accuracy and output loss over runs (mean and population std), with the configuration."""

    dataset: str
    method: str
    multiplier: str
    voltage_mv: float
    runs: int
    seed: int
    accuracy_mean: float
    accuracy_std: float
    loss_mean: float
    loss_std: float
    accuracies: list[float]
    losses: list[float]
    rtl_coverage: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(checkpoint: str | Path, multiplier: str | Multiplier = "exact", voltage_mv: float = 1100.0, runs: int = 50,
             seed: int = 0, data_dir: str | None = None, bias_bits: int | None = None) -> EvalResult:
    """Hardware-model accuracy of a checkpoint under ``multiplier`` and SRAM ``voltage_mv``."""
    if runs < 1:
        raise ValueError(f"runs={runs} out of range: valid range is >= 1")
    ck = load_checkpoint(checkpoint)
    cfg = config_from_dict(ck["config"])
    if data_dir is not None:
        cfg = config_from_dict({**asdict(cfg), "data_dir": data_dir})
    mul = get_multiplier(multiplier, cfg.bits)
    storage = NTVStorage(voltage_mv)
    qnet = quantized_from_checkpoint(ck, bias_bits)
    data = load_training_data(cfg)
    x = network_inputs(cfg, data.x_test)
    x_int = qnet.quantize_input(x)
    y = data.y_test
    n_runs = runs if storage.flip_p > 0 else 1  # without flips every run is the same chip
    accs, losses = [], []
    for r in range(n_runs):
        out = qnet.forward_int(x_int, mul, storage=storage, generator=torch.Generator().manual_seed(seed + r))
        assert isinstance(out, torch.Tensor)
        logits = qnet.output_fmt.dequantize(out, torch.float64)
        accs.append(float((out.argmax(1) == y).double().mean()))
        losses.append(float(output_loss(torch.sigmoid(logits), y, cfg.loss)))
    if n_runs < runs:
        accs, losses = accs * runs, losses * runs
    from axhw.arith.library import circuit_of
    from axhw.arith.verification import coverage

    covered, message = coverage(mul, cfg.bits)
    circuit = circuit_of(mul)
    return EvalResult(
        dataset=cfg.dataset, method=cfg.method, multiplier=mul.name, voltage_mv=float(voltage_mv), runs=runs,
        seed=seed, accuracy_mean=statistics.fmean(accs), accuracy_std=statistics.pstdev(accs),
        loss_mean=statistics.fmean(losses), loss_std=statistics.pstdev(losses), accuracies=accs, losses=losses,
        rtl_coverage={"multiplier": mul.name, "covered": covered, "message": message, "circuit": circuit,
                      "trained_for": ck.get("multiplier_circuit")},
    )
