"""The method x hardware accuracy matrix of one application (the numbers behind the paper's Figs. 6-7).

BP and AxTrain-act are hardware-agnostic and trained once; AxTrain-pas and AxTrain are trained *for* a
target (a multiplier mode, or an NTV voltage of Table 1) and evaluated on that target, as in the paper.
Every evaluation runs the integer golden model (:meth:`QuantizedNetwork.forward_int`); NTV columns are the
mean and standard deviation over ``runs`` chip instances. Finished trainings are reused (same config, same
``metrics.json``), so an interrupted matrix resumes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from axhw.data.registry import APPLICATIONS
from axhw.evaluate import evaluate
from axhw.report import markdown_table
from axhw.train import TrainConfig, _atomic_write_text, train

__all__ = ["Target", "accuracy_matrix", "default_targets"]


@dataclass(frozen=True)
class Target:
    """A hardware configuration to evaluate on (and to train pas/AxTrain for)."""

    label: str
    multiplier: str
    voltage_mv: float


def default_targets(dataset: str) -> list[Target]:
    """Exact, K4..K1 at nominal voltage, and the aggressive / conservative NTV voltages of Table 1."""
    app = APPLICATIONS[dataset]
    return [
        Target("exact", "exact", 1100.0),
        *[Target(k, k, 1100.0) for k in ("K4", "K3", "K2", "K1")],
        Target(f"NTV agg {app.agg_voltage_mv:g}mV", "exact", app.agg_voltage_mv),
        Target(f"NTV con {app.con_voltage_mv:g}mV", "exact", app.con_voltage_mv),
    ]


def _train_cached(cfg: TrainConfig, out: Path, progress: bool) -> dict[str, Any]:
    metrics = out / "metrics.json"
    if metrics.exists():
        saved = json.loads(metrics.read_text())
        if saved.get("config") == asdict(cfg):
            return saved
    return train(cfg, out, resume=True, progress=progress)


def accuracy_matrix(dataset: str, out_dir: str | Path, epochs: int = 30, pas_epochs: int = 5, seed: int = 0,
                    runs: int = 50, limit: int | None = None, targets: list[Target] | None = None,
                    data_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train BP, act, pas and AxTrain on ``dataset`` and evaluate them on every target.

    Writes ``out_dir/accuracy.json`` and ``out_dir/accuracy.md``; returns the JSON content.
    """
    if dataset not in APPLICATIONS:
        raise ValueError(f"unknown dataset {dataset!r}: valid datasets are {', '.join(APPLICATIONS)}")
    out_dir = Path(out_dir)
    targets = targets or default_targets(dataset)
    base = TrainConfig(dataset=dataset, epochs=epochs, pas_epochs=pas_epochs, seed=seed, limit=limit,
                       data_dir=data_dir)
    rows: dict[str, dict[str, Any]] = {}
    for method in ("bp", "act"):
        cfg = TrainConfig(**{**asdict(base), "method": method})
        m = _train_cached(cfg, out_dir / method, progress)
        row: dict[str, Any] = {"float": m["test_accuracy"],
                               "sensitivity": m["history"][-1]["sensitivity"]}
        for t in targets:
            r = evaluate(out_dir / method / "checkpoint.pt", t.multiplier, t.voltage_mv, runs, seed, data_dir)
            row[t.label] = {"mean": r.accuracy_mean, "std": r.accuracy_std, "loss": r.loss_mean}
        rows[method] = row
    for method in ("pas", "axtrain"):
        row = {}
        for t in targets:
            cfg = TrainConfig(**{**asdict(base), "method": method, "multiplier": t.multiplier,
                                 "voltage_mv": t.voltage_mv})
            run_dir = out_dir / f"{method}_{t.multiplier}_{t.voltage_mv:g}mV"
            m = _train_cached(cfg, run_dir, progress)
            r = evaluate(run_dir / "checkpoint.pt", t.multiplier, t.voltage_mv, runs, seed, data_dir)
            row[t.label] = {"mean": r.accuracy_mean, "std": r.accuracy_std, "loss": r.loss_mean,
                            "float": m["test_accuracy"]}
        rows[method] = row
    result = {"dataset": dataset, "epochs": epochs, "pas_epochs": pas_epochs, "seed": seed, "runs": runs,
              "limit": limit, "targets": [asdict(t) for t in targets], "accuracy": rows}
    header = ["method", "float", "S(w)", *[t.label for t in targets]]
    table = []
    for method, row in rows.items():
        cells = [method, f"{row['float']:.4f}" if "float" in row else "-",
                 f"{row['sensitivity']:.3g}" if "sensitivity" in row else "-"]
        for t in targets:
            c = row[t.label]
            cells.append(f"{c['mean']:.4f}" + (f" ± {c['std']:.4f}" if c["std"] > 0 else ""))
        table.append(cells)
    md = (f"# {dataset}: test accuracy on the integer hardware model\n\n"
          f"seed {seed}, {epochs} epochs (AxTrain: last {pas_epochs} pas), NTV: {runs} chip instances; "
          "pas and AxTrain rows: one network trained for each column's target.\n\n" + markdown_table(header, table) + "\n")
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write_text(json.dumps(result, indent=2), out_dir / "accuracy.json")
    _atomic_write_text(md, out_dir / "accuracy.md")
    return result
