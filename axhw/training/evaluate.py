"""Evaluate a trained network on the integer hardware model (docs/training.md, "Evaluation": one chip per run).

Accuracy and output loss come from :meth:`QuantizedNetwork.forward_int`, the golden model the RTL is
checked against, so these numbers are what the generated hardware would produce. Under NTV every run draws
one flip pattern (a chip instance), holds it for the whole test set, and runs are seeded ``seed + run``.
The test set streams through in batches (:func:`axhw.training.trainer.integer_outputs`, bounded memory),
with results equal bit for bit to one pass over the whole set.

A network trained with float parts on purpose (``axhw train --keep-float``) has no integer network: it runs
as the eval-mode hardware model instead, whose layers compute what the integer layers compute bit for bit
(the same functions, the same chip draw), with the kept parts in float between them; the result names
those parts (``float_parts``).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from axhw.arith.multipliers import Multiplier
from axhw.arith.registry import get_multiplier
from axhw.arith.sram import NTVStorage
from axhw.nn import HardwareConfig
from axhw.nn.fx.trace import float_parts
from axhw.training.trainer import (
    TrainConfig,
    config_from_dict,
    hardware_model_accuracy,
    integer_correct,
    load_checkpoint,
    load_training_data,
    model_from_checkpoint,
    network_inputs,
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
    #: Parts that ran in float between the integer layers (``name (op)``, trained with ``--keep-float``);
    #: empty: the whole network ran as the integer network.
    float_parts: list[str] = field(default_factory=list)
    #: The samples scored: ``test``, or ``val`` (the validation split the run was trained with, where studies
    #: make their choices).
    split: str = "test"
    #: Per sample, how many of the ``runs`` chips classified it right (the integer network; None for a network
    #: with float parts): what paired tests between two configurations read (:mod:`axhw.power.search.stats`).
    correct_counts: list[int] | None = None
    #: How the biases were stored (:class:`axhw.nn.HardwareConfig`): ``fit`` or ``fixed`` words, in the NTV
    #: memory or not (``--bias-word``, ``--ntv-words``).
    bias_word: str = "fit"
    ntv_biases: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line naming the hardware the accuracy is of (``axhw evaluate`` prints it): the multiplier,
        the voltage and, under NTV, the chips (seeds); without flips every chip is the same, so no spread."""
        if NTVStorage(self.voltage_mv).flip_p > 0:
            chips = (f", {self.runs} chips (seeds {self.seed}..{self.seed + self.runs - 1})" if self.runs > 1
                     else f", chip seed {self.seed}")
            acc, loss = (f"{self.accuracy_mean:.4f} +- {self.accuracy_std:.4f}",
                         f"{self.loss_mean:.4f} +- {self.loss_std:.4f}")
        else:
            chips, acc, loss = " (no bit flips)", f"{self.accuracy_mean:.4f}", f"{self.loss_mean:.4f}"
        on = "" if self.split == "test" else f" on the {self.split} split"
        return (f"{self.dataset} {self.method} | {self.multiplier} @ {self.voltage_mv:g} mV{chips}: "
                f"hardware accuracy{on} {acc}, output loss {loss}")


def evaluate(checkpoint: str | Path, multiplier: str | Multiplier = "exact", voltage_mv: float = 1100.0, runs: int = 50,
             seed: int = 0, data_dir: str | None = None, bias_bits: int | None = None,
             allow_circuit_change: bool = False, split: str = "test",
             bias_word: Literal["fit", "fixed"] | None = None, ntv_biases: bool | None = None) -> EvalResult:
    """Hardware-model accuracy of a checkpoint under ``multiplier`` and SRAM ``voltage_mv``, on the test split
    or (``split="val"``) on the validation split the checkpoint was trained with (studies choose on it).

    A checkpoint trained for an imported circuit records that circuit's table hash; evaluating it by the
    same name after the library's circuit was replaced is refused
    (:func:`axhw.arith.library.check_circuit_unchanged`) unless ``allow_circuit_change``.

    ``bias_bits``, ``bias_word`` and ``ntv_biases`` override how the checkpoint's biases are stored
    (:class:`axhw.nn.HardwareConfig`: the widest bias word, whether each layer's word is sized to its biases,
    whether the words sit in the NTV memory); None: as trained.
    """
    from axhw.arith.library import check_circuit_unchanged

    if runs < 1:
        raise ValueError(f"runs={runs} out of range: valid range is >= 1")
    if split not in ("test", "val"):
        raise ValueError(f"unknown split {split!r}: valid splits are 'test', 'val'")
    ck = load_checkpoint(checkpoint)
    cfg = config_from_dict(ck["config"])
    if split == "val" and not cfg.val_fraction:
        raise ValueError(f"{checkpoint} was trained without a validation split (val_fraction 0): it has no "
                         "validation samples; retrain with --val-fraction (e.g. 0.2) or evaluate on the test split")
    if data_dir is not None:
        cfg = config_from_dict({**asdict(cfg), "data_dir": data_dir})
    if bias_word is not None or ntv_biases is not None:  # the bias storage evaluated, else the trained one
        cfg = config_from_dict({**asdict(cfg), "bias_word": bias_word or cfg.bias_word,
                                "ntv_biases": cfg.ntv_biases if ntv_biases is None else ntv_biases})
    mul = get_multiplier(multiplier, cfg.bits)
    if not allow_circuit_change:
        check_circuit_unchanged(ck.get("multiplier_circuit"), mul, str(checkpoint))
    storage = NTVStorage(voltage_mv)
    n_runs = runs if storage.flip_p > 0 else 1  # without flips every run is the same chip
    floats: list[str] = []
    accs: list[float] = []
    losses: list[float] = []
    counts: torch.Tensor | None = None
    if cfg.keep_float:
        floats, accs, losses = _runs_with_float_parts(ck, cfg, mul, voltage_mv, bias_bits, n_runs, seed, split)
    else:
        qnet = quantized_from_checkpoint(ck, bias_bits, cfg.bias_word, cfg.ntv_biases)
        xs, y = load_training_data(cfg).split(split)
        x = network_inputs(cfg, xs)
        for r in range(n_runs):
            # streamed in batches, one chip held for all of them: equal to one forward_int over the test set
            right, loss = integer_correct(qnet, x, y, mul, storage, torch.Generator().manual_seed(seed + r), cfg.loss)
            accs.append(float(right.double().mean()))
            losses.append(loss)
            counts = right.to(torch.int64) if counts is None else counts + right.to(torch.int64)
    if n_runs < runs:
        accs, losses = accs * runs, losses * runs
        counts = None if counts is None else counts * runs
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
        float_parts=floats, split=split, correct_counts=None if counts is None else counts.tolist(), bias_word=cfg.bias_word, ntv_biases=cfg.ntv_biases,
    )


@torch.no_grad()
def _runs_with_float_parts(ck: dict[str, Any], cfg: TrainConfig, mul: Multiplier, voltage_mv: float,
                           bias_bits: int | None, n_runs: int, seed: int,
                           split: str = "test") -> tuple[list[str], list[float], list[float]]:
    """Accuracy and loss of a network with parts kept float (module docstring): the eval-mode hardware model,
    one chip per run drawn by :func:`axhw.nn.sample_chip` from ``seed + run`` (the draw order of
    :meth:`QuantizedNetwork.stored_params`), on the sigmoid outputs the model itself ends in."""
    hw = HardwareConfig(mode="hardware", multiplier=mul, bits=cfg.bits, voltage_mv=voltage_mv,
                        bias_bits=bias_bits or cfg.bias_bits, bias_word=cfg.bias_word, ntv_biases=cfg.ntv_biases)
    model = model_from_checkpoint(ck, hw).eval()
    floats = [str(p) for p in float_parts(model)]
    xs, y = load_training_data(cfg).split(split)
    x = network_inputs(cfg, xs)
    runs = [hardware_model_accuracy(model, x, y, torch.Generator().manual_seed(seed + r), cfg.loss)
            for r in range(n_runs)]
    return floats, [a for a, _ in runs], [e for _, e in runs]
