"""ApproxAnn's iterative approximation with retraining (Zhang et al., DATE 2015; the paper's Fig. 8 baseline).

From a pre-trained network, every round:

1. rank the still-exact neurons by :func:`~axhw.approxann.criticality.neuron_criticality` (on the
   training split, with the current weights);
2. switch the ``step`` least critical ones to the approximate multiplier (per-neuron mode bit);
3. measure accuracy on the integer hardware model (:meth:`QuantizedNetwork.forward_int` with per-neuron
   modes); if it is within ``bound`` percentage points of the exact network, accept;
4. otherwise retrain with the trial modes in the forward pass (AxTrain-pas style: hardware forward, clipped
   STE backward, paper eq. 12) for up to ``retrain_epochs`` epochs, accepting as soon as the bound holds;
5. if it still fails, restore the weights and modes of the last accepted network and halve ``step``.

The search stops when every neuron is approximate, ``step`` falls below 1 or ``max_rounds`` is spent. Only
accepted states are kept, so the returned network satisfies the bound on the acceptance split by
construction (the test split by default: the paper states its 2% limit against the exact implementation's
quality, which is measured on the test data; ``accept_split="train"`` makes the search blind to the test
split, and :attr:`ApproxAnnResult.bound_respected` then reports whether the bound held on test anyway;
``accept_split="val"`` enforces it on the validation split the network was trained with, the minimum-power
study's choice: blind to the test split, and not the data the retraining fits).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from axhw.approxann.criticality import Measure, count_multipliers, neuron_criticality
from axhw.arith.multipliers import Multiplier
from axhw.arith.registry import get_multiplier
from axhw.golden.network import QuantizedNetwork
from axhw.nn import HardwareConfig, approx_layers, calibrate_model, set_hardware, to_quantized
from axhw.nn.fx.lower import hardware_formats, load_hardware_formats
from axhw.training.trainer import (
    TrainConfig,
    config_from_dict,
    load_checkpoint,
    load_training_data,
    model_from_checkpoint,
    network_inputs,
    train_step,
)

__all__ = ["ApproxAnnConfig", "ApproxAnnResult", "RoundRecord", "approxann", "hardware_accuracy",
           "run_approxann"]


@dataclass(frozen=True)
class ApproxAnnConfig:
    """Settings of one ApproxAnn search.

    Attributes:
        mode: approximate multiplier of switched neurons (``K1``..``K4``, ``drum<k>``); the paper's Fig. 8
            uses the aggressive K1 and K2.
        bound: largest allowed accuracy loss versus the exact network, in percentage points (paper: 2).
        measure: criticality measure, ``gradient`` (ApproxAnn's error sensitivity) or ``taylor``.
        initial_step: neurons switched in the first round, as a fraction of all neurons; halved after every
            rejected round (a binary search for the largest safe batch).
        retrain_epochs: retraining epochs allowed per round before the round is rejected.
        lr: Adam learning rate of retraining (below training's, to fine-tune rather than relearn).
        batch_size: retraining mini-batch.
        max_rounds: hard limit on rounds (accepted plus rejected).
        accept_split: split the bound is enforced on (``test``, ``val`` or ``train``).
        criticality_samples: training samples the criticality averages over (None: all).
        seed: batch order of retraining.
    """

    mode: str = "K2"
    bound: float = 2.0
    measure: Measure = "gradient"
    initial_step: float = 0.25
    retrain_epochs: int = 3
    lr: float = 5e-4
    batch_size: int = 32
    max_rounds: int = 40
    accept_split: Literal["test", "val", "train"] = "test"
    criticality_samples: int | None = 4096
    seed: int = 0

    def __post_init__(self) -> None:
        get_multiplier(self.mode)  # validates the name
        if self.bound < 0:
            raise ValueError(f"bound={self.bound} out of range: valid range is >= 0 (percentage points)")
        if not 0 < self.initial_step <= 1:
            raise ValueError(f"initial_step={self.initial_step} out of range: valid range is (0, 1]")
        if self.retrain_epochs < 0 or self.max_rounds < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("retrain_epochs must be >= 0, max_rounds and batch_size >= 1, lr > 0")
        if self.accept_split not in ("test", "val", "train"):
            raise ValueError(f"unknown accept_split {self.accept_split!r}: valid splits are 'test', 'val', 'train'")


@dataclass
class RoundRecord:
    """One round of the search (accepted or not): what was tried and what it gave."""

    round: int
    step: int
    switched: list[list[int]]  #: [layer index, neuron index] pairs tried this round
    accepted: bool
    retrain_epochs: int  #: retraining epochs spent (0: accepted without retraining)
    approx_neurons: int  #: after the round (the trial's if accepted, the previous state's if not)
    approx_multipliers: int
    fraction: float
    test_accuracy: float  #: of the trial network (after retraining, if any)
    train_accuracy: float


@dataclass
class ApproxAnnResult:
    """Outcome of a search; :attr:`network` is the final mixed-mode integer network."""

    dataset: str
    method: str
    mode: str
    bound: float
    exact_test_accuracy: float
    exact_train_accuracy: float
    uniform_test_accuracy: float  #: every neuron approximate, no retraining (the naive alternative)
    floor: float  #: accuracy the acceptance split had to keep
    test_accuracy: float
    train_accuracy: float
    approx_multipliers: int
    total_multipliers: int
    fraction: float
    approx_neurons: int
    total_neurons: int
    per_layer: list[dict[str, int]]
    bound_respected: bool  #: test accuracy >= exact test accuracy - bound
    trace: list[RoundRecord]
    config: dict[str, Any]
    network: QuantizedNetwork = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "network"}
        d["trace"] = [asdict(r) for r in self.trace]
        return d


def hardware_accuracy(qnet: QuantizedNetwork, x: torch.Tensor, y: torch.Tensor, approx: Multiplier | None,
                      batch_size: int = 8192) -> float:
    """Accuracy of the integer golden model with per-neuron modes (exact multiplier for exact neurons)."""
    exact = get_multiplier("exact", qnet.input_fmt.bits)
    correct = 0
    for i in range(0, len(x), batch_size):
        out = qnet.forward_int(qnet.quantize_input(x[i : i + batch_size]), exact, approx=approx)
        assert isinstance(out, torch.Tensor)
        correct += int((out.argmax(1) == y[i : i + batch_size]).sum())
    return correct / len(x)


def _set_masks(model: nn.Module, masks: list[torch.Tensor]) -> None:
    for layer, mask in zip(approx_layers(model), masks, strict=True):
        layer.approx_neurons = mask.clone() if bool(mask.any()) else None


def _snapshot(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    # every format, also those of residual additions/concatenations/pooling that retraining recalibrates
    return copy.deepcopy(model.state_dict()), hardware_formats(model)


def _restore(model: nn.Module, snap: tuple[dict[str, torch.Tensor], dict[str, Any]]) -> None:
    model.load_state_dict(snap[0])
    load_hardware_formats(model, snap[1])


def approxann(model: nn.Module, train_cfg: TrainConfig, data: Any, cfg: ApproxAnnConfig,
              meta: dict[str, Any] | None = None, progress: bool = False) -> ApproxAnnResult:
    """Run the ApproxAnn search on a calibrated pre-trained ``model`` (modified in place).

    Args:
        model: the pre-trained network (e.g. :func:`axhw.training.trainer.model_from_checkpoint`).
        train_cfg: its training configuration (dataset, word lengths, loss).
        data: the :class:`axhw.data.Dataset` it was trained on (same seed, same split).
        cfg: the search settings.
        meta: extra metadata for the exported network.
        progress: print one line per round.
    """
    x_tr, y_tr = network_inputs(train_cfg, data.x_train), data.y_train
    x_te, y_te = network_inputs(train_cfg, data.x_test), data.y_test
    if cfg.accept_split == "val":
        x_va, y_va = data.split("val")  # a one-line DataError when the network has no validation split
        x_acc, y_acc = network_inputs(train_cfg, x_va), y_va
    else:
        x_acc, y_acc = (x_te, y_te) if cfg.accept_split == "test" else (x_tr, y_tr)
    n_crit = len(x_tr) if cfg.criticality_samples is None else min(cfg.criticality_samples, len(x_tr))
    crit_idx = torch.randperm(len(x_tr), generator=torch.Generator().manual_seed(cfg.seed))[:n_crit]
    approx = get_multiplier(cfg.mode, train_cfg.bits)
    hw = HardwareConfig(mode="hardware", multiplier="exact", bits=train_cfg.bits, bias_bits=train_cfg.bias_bits,
                        approx_multiplier=cfg.mode)
    set_hardware(model, hw)
    layers = approx_layers(model)
    masks = [torch.zeros(layer.weight.shape[0], dtype=torch.bool) for layer in layers]
    _set_masks(model, masks)

    def export() -> QuantizedNetwork:
        return to_quantized(model, meta={**(meta or {}), "approx_multiplier": cfg.mode})

    def accuracies(qnet: QuantizedNetwork) -> tuple[float, float, float]:
        acc_split = hardware_accuracy(qnet, x_acc, y_acc, approx)
        te = acc_split if cfg.accept_split == "test" else hardware_accuracy(qnet, x_te, y_te, approx)
        tr = acc_split if cfg.accept_split == "train" else hardware_accuracy(qnet, x_tr, y_tr, approx)
        return acc_split, te, tr

    base = export()
    exact_acc, exact_te, exact_tr = accuracies(base)
    floor = exact_acc - cfg.bound / 100.0
    _set_masks(model, [~m for m in masks])
    uniform_te = hardware_accuracy(export(), x_te, y_te, approx)
    _set_masks(model, masks)
    best_te, best_tr, best_qnet = exact_te, exact_tr, base

    n_neurons = sum(len(m) for m in masks)
    step = max(1, math.ceil(cfg.initial_step * n_neurons))
    trace: list[RoundRecord] = []
    opt_gen = torch.Generator().manual_seed(cfg.seed)
    for rnd in range(1, cfg.max_rounds + 1):
        remaining = n_neurons - sum(int(m.sum()) for m in masks)
        if remaining == 0 or step < 1:
            break
        crit = neuron_criticality(model, x_tr[crit_idx], y_tr[crit_idx], cfg.measure, approx, train_cfg.loss)
        cand = [(float(c[j]), li, j) for li, (c, m) in enumerate(zip(crit, masks, strict=True))
                for j in range(len(m)) if not m[j]]
        cand.sort()
        chosen = [(li, j) for _, li, j in cand[: min(step, remaining)]]
        trial = [m.clone() for m in masks]
        for li, j in chosen:
            trial[li][j] = True
        snap = _snapshot(model)
        _set_masks(model, trial)
        qnet = export()
        acc, te, tr = accuracies(qnet)
        epochs_used = 0
        if acc < floor - 1e-12 and cfg.retrain_epochs > 0:
            opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
            while epochs_used < cfg.retrain_epochs and acc < floor - 1e-12:
                model.train()
                order = torch.randperm(len(x_tr), generator=opt_gen)
                for i in range(0, len(x_tr), cfg.batch_size):
                    idx = order[i : i + cfg.batch_size]
                    train_step(model, opt, x_tr[idx], y_tr[idx], 0.0, train_cfg.loss)
                epochs_used += 1
                calibrate_model(model, x_tr)  # formats follow the weights, as after every training epoch
                qnet = export()
                acc, te, tr = accuracies(qnet)
        accepted = acc >= floor - 1e-12
        if accepted:
            masks, best_te, best_tr, best_qnet = trial, te, tr, qnet
        else:
            _restore(model, snap)
            _set_masks(model, masks)
            step //= 2
        counts = count_multipliers(best_qnet)
        trace.append(RoundRecord(rnd, len(chosen), [[li, j] for li, j in chosen], accepted, epochs_used,
                                 counts["approx_neurons"], counts["approx_multipliers"], counts["fraction"], te, tr))
        if progress:
            print(f"round {rnd:2d}: tried {len(chosen):3d} neurons, {'accepted' if accepted else 'rejected'} "
                  f"after {epochs_used} retraining epoch(s), acc {acc:.4f} (floor {floor:.4f}); "
                  f"{counts['approx_multipliers']}/{counts['total_multipliers']} approximate multipliers")
    counts = count_multipliers(best_qnet)
    return ApproxAnnResult(
        dataset=train_cfg.dataset, method=train_cfg.method, mode=cfg.mode, bound=cfg.bound,
        exact_test_accuracy=exact_te, exact_train_accuracy=exact_tr, uniform_test_accuracy=uniform_te, floor=floor,
        test_accuracy=best_te, train_accuracy=best_tr, approx_multipliers=counts["approx_multipliers"],
        total_multipliers=counts["total_multipliers"], fraction=counts["fraction"],
        approx_neurons=counts["approx_neurons"], total_neurons=counts["total_neurons"],
        per_layer=counts["per_layer"], bound_respected=best_te >= exact_te - cfg.bound / 100.0 - 1e-12,
        trace=trace, config=asdict(cfg), network=best_qnet,
    )


def run_approxann(checkpoint: str | Path, cfg: ApproxAnnConfig, out_dir: str | Path | None = None,
                  data_dir: str | None = None, progress: bool = False) -> ApproxAnnResult:
    """ApproxAnn on a training checkpoint; with ``out_dir``, write ``network.pt`` (the mixed-mode
    :class:`QuantizedNetwork`, ``approx_neurons`` per layer, ``meta["approx_multiplier"]``) and
    ``approxann.json`` (counts, accuracies, the per-round trace)."""
    import json

    from axhw.common.io import atomic_write_text

    ck = load_checkpoint(checkpoint)
    train_cfg = config_from_dict(ck["config"])
    if data_dir is not None:
        train_cfg = replace(train_cfg, data_dir=data_dir)
    data = load_training_data(train_cfg)
    model = model_from_checkpoint(ck)
    torch.manual_seed(cfg.seed)
    meta = {"dataset": train_cfg.dataset, "method": train_cfg.method, "seed": train_cfg.seed,
            "approxann_bound": cfg.bound}
    result = approxann(model, train_cfg, data, cfg, meta=meta, progress=progress)
    if out_dir is not None:
        out = Path(out_dir)
        result.network.save(out / "network.pt")
        atomic_write_text(json.dumps({**result.as_dict(), "checkpoint": str(checkpoint)}, indent=2),
                           out / "approxann.json")
    return result
