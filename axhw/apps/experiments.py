"""The method x hardware accuracy matrix of one application (the numbers behind the paper's Figs. 6-7).

BP and AxTrain-act are hardware-agnostic and trained once; AxTrain-pas and AxTrain are trained *for* a
target (a multiplier mode, or an NTV voltage of Table 1) and evaluated on that target, as in the paper.
Runs go through :mod:`axhw.training.sweep` (cached by config and code version, resumable, parallel).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from axhw.common.io import atomic_write_text
from axhw.common.tables import markdown_table
from axhw.data.registry import APPLICATIONS
from axhw.training.sweep import Experiment, Target, run_tasks

__all__ = ["accuracy_matrix", "default_targets"]


def default_targets(dataset: str) -> list[tuple[str, Target]]:
    """Exact, K4..K1 at nominal voltage, and the aggressive / conservative NTV voltages of Table 1."""
    app = APPLICATIONS[dataset]
    return [
        ("exact", Target("exact", 1100.0)),
        *[(k, Target(k, 1100.0)) for k in ("K4", "K3", "K2", "K1")],
        (f"NTV agg {app.agg_voltage_mv:g}mV", Target("exact", app.agg_voltage_mv)),
        (f"NTV con {app.con_voltage_mv:g}mV", Target("exact", app.con_voltage_mv)),
    ]


def accuracy_matrix(dataset: str, out_dir: str | Path, epochs: int = 30, pas_epochs: int | None = None, seed: int = 0,
                    runs: int = 50, limit: int | None = None, data_dir: str | None = None,
                    workers: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Train BP, act, pas and AxTrain on ``dataset`` and evaluate them on every target.

    ``pas_epochs`` (AxTrain's last, pas epochs) defaults to 5, or ``epochs - 1`` when ``epochs`` is 5 or less.
    Writes ``out_dir/accuracy.json`` and ``out_dir/accuracy.md``; returns the JSON content.
    """
    if pas_epochs is None:
        pas_epochs = 5 if epochs > 5 else max(1, epochs - 1)
    if dataset not in APPLICATIONS:
        raise ValueError(f"unknown dataset {dataset!r}: valid datasets are {', '.join(APPLICATIONS)}")
    out_dir = Path(out_dir)
    targets = default_targets(dataset)
    exp = Experiment(datasets=(dataset,), methods=("bp", "act", "pas", "axtrain"),
                     targets=tuple(t for _, t in targets), seeds=(seed,), runs=runs,
                     train={"epochs": epochs, "pas_epochs": pas_epochs, "limit": limit, "data_dir": data_dir})
    res = run_tasks(exp.tasks(), out_dir / "cache", workers=workers, progress=progress)
    rows: dict[str, dict[str, Any]] = {}
    for m in exp.methods:
        row: dict[str, Any] = {}
        for label, t in targets:
            r = res[exp.eval_task(dataset, m, seed, t).key]
            row[label] = {"mean": r["accuracy_mean"], "std": r["accuracy_std"], "loss": r["loss_mean"]}
        if m in ("bp", "act"):
            metrics = json.loads((out_dir / "cache" / "runs" / exp.train_task(dataset, m, seed).key /
                                  "metrics.json").read_text())
            row["float"] = metrics["test_accuracy"]
            row["sensitivity"] = metrics["history"][-1]["sensitivity"]
        rows[m] = row
    result = {"dataset": dataset, "epochs": epochs, "pas_epochs": pas_epochs, "seed": seed, "runs": runs,
              "limit": limit, "targets": {label: asdict(t) for label, t in targets}, "accuracy": rows}
    header = ["method", "float", "S(w)", *[label for label, _ in targets]]
    table = []
    for method, row in rows.items():
        cells = [method, f"{row['float']:.4f}" if "float" in row else "-",
                 f"{row['sensitivity']:.3g}" if "sensitivity" in row else "-"]
        for label, _ in targets:
            c = row[label]
            cells.append(f"{c['mean']:.4f}" + (f" ± {c['std']:.4f}" if c["std"] > 0 else ""))
        table.append(cells)
    md = (f"# {dataset}: test accuracy on the integer hardware model\n\n"
          f"seed {seed}, {epochs} epochs (AxTrain: last {pas_epochs} pas), NTV: {runs} chip instances; "
          "pas and AxTrain rows: one network trained for each column's target.\n\n" + markdown_table(header, table) + "\n")
    atomic_write_text(json.dumps(result, indent=2), out_dir / "accuracy.json")
    atomic_write_text(md, out_dir / "accuracy.md")
    return result
