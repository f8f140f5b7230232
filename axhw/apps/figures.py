"""Reproduce the paper's Figs. 4, 6 and 7 (docs/figures.md) as data (JSON + CSV) and PNG plots.

* Fig. 4: per-weight sensitivity maps ``|w| mean_n sum_k |dO_k/dw|`` of the last layer for BP, AxTrain-act
  and AxTrain-pas (trained with K1, the most aggressive mode, as in the paper), MNIST-MLP.
* Fig. 6: test output loss under exact, K4, K3, K2, K1 multipliers normalised to the same network with
  exact multipliers, for BP, AxTrain-act and AxTrain (trained for each K), per application; plus accuracy.
* Fig. 7: accuracy under the aggressive and conservative NTV voltages of Table 1 over 50 chip instances,
  mean and std, BP vs AxTrain (trained for each voltage), per application.
* ``summary.md``: our averages next to the paper's headline numbers, with seeds and run counts.

All numbers come from the integer golden model through :mod:`axhw.training.sweep` (cached, resumable, parallel).
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from axhw.common.io import atomic_write, atomic_write_text
from axhw.common.tables import markdown_table
from axhw.data.registry import APPLICATIONS
from axhw.training.sweep import Backend, Experiment, Target, run_tasks
from axhw.training.trainer import Method

__all__ = ["FIGURES", "PAPER", "ReproduceConfig", "reproduce"]

FIGURES = ("fig4", "fig6", "fig7", "fig8")
K_MODES = ("K4", "K3", "K2", "K1")
#: The paper's headline numbers (the paper's section 5; docs/figures.md), to compare with, not to copy.
PAPER = {
    "act_error_reduction": {"K1": 40.8, "K2": 34.6, "K3": 25.2},
    "axtrain_error_reduction": {"K1": 75.6, "K2": 58.5, "K3": 37.7},
    "ntv_accuracy_gain": {"aggressive": 32.1, "conservative": 8.2},
}


@dataclass(frozen=True)
class ReproduceConfig:
    """How much to run. ``quick`` (tests): breast cancer, 3 epochs, 1 seed, 3 NTV runs.

    Full mode: 3 seeds on the UCI sets, 1 on MNIST; 30 epochs (AxTrain: last 5 pas); MNIST-MLP 10 epochs
    on 20,000 samples and LeNet-5 5 epochs on 10,000 (AxTrain: last 2 pas), 50 NTV runs.
    """

    datasets: tuple[str, ...] = tuple(APPLICATIONS)
    quick: bool = False
    backend: Backend = "local"
    workers: int | None = None
    address: str | None = None
    data_dir: str | None = None
    progress: bool = True

    def experiment(self, targets: tuple[Target, ...], methods: tuple[Method, ...], dataset: str) -> Experiment:
        train: dict[str, Any] = {"data_dir": self.data_dir}
        if self.quick:
            return Experiment(datasets=(dataset,), methods=methods, targets=targets, seeds=(0,),
                              train={**train, "epochs": 3, "pas_epochs": 1}, runs=3)
        seeds: tuple[int, ...] = (0, 1, 2)
        if dataset == "mnist_mlp":
            train.update(epochs=10, pas_epochs=3, limit=20000, batch_size=64)
            seeds = (0,)
        elif dataset == "mnist_cnn":
            train.update(epochs=5, pas_epochs=2, limit=10000, batch_size=64)
            seeds = (0,)
        else:
            train.update(epochs=30, pas_epochs=5)
        return Experiment(datasets=(dataset,), methods=methods, targets=targets, seeds=seeds, train=train, runs=50)


def _mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.pstdev(xs) if len(xs) > 1 else 0.0)


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    if not rows:
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(buf.getvalue(), path)


def _savefig(fig: Any, path: Path, title: str, legend_ax: Any = None) -> None:
    """Title, legend, atomic PNG write, close."""
    import matplotlib.pyplot as plt

    if legend_ax is not None:
        legend_ax.legend(fontsize=7)
    fig.suptitle(title, y=1.04)  # above the subplot titles; bbox_inches="tight" keeps it in the image
    try:  # atomic (no half-written or stray temporary PNG on Ctrl-C), with the umask's permissions
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    finally:
        plt.close(fig)


# --------------------------------------------------------------------------- Fig. 6
def fig6(cfg: ReproduceConfig, root: Path, out: Path) -> dict[str, Any]:
    exact = Target("exact", 1100.0)
    ks = [Target(k, 1100.0) for k in K_MODES]
    rows: list[dict[str, Any]] = []
    for d in cfg.datasets:
        exp = cfg.experiment((exact, *ks), ("bp", "act", "axtrain"), d)
        tasks = []
        for s in exp.seeds:
            for m in ("bp", "act"):
                tasks += [exp.eval_task(d, m, s, t) for t in (exact, *ks)]
            for t in ks:  # AxTrain is trained for each K and normalised by itself under exact products
                tasks += [exp.eval_task(d, "axtrain", s, t), exp.eval_task(d, "axtrain", s, t, on=exact)]
        res = run_tasks(tasks, root, backend=cfg.backend, workers=cfg.workers, address=cfg.address,
                        progress=cfg.progress)
        for m in exp.methods:  # bp, act, axtrain
            for t in ks:
                norm, common, acc = [], [], []
                for s in exp.seeds:
                    if m == "axtrain":
                        r, r0 = res[exp.eval_task(d, m, s, t).key], res[exp.eval_task(d, m, s, t, on=exact).key]
                    else:
                        r, r0 = res[exp.eval_task(d, m, s, t).key], res[exp.eval_task(d, m, s, exact).key]
                    norm.append(r["loss_mean"] / r0["loss_mean"])
                    # One normaliser per application: the BP network with exact multipliers (same seed).
                    common.append(r["loss_mean"] / res[exp.eval_task(d, "bp", s, exact).key]["loss_mean"])
                    acc.append(r["accuracy_mean"])
                (nm, ns), (cm, cs), (am, ast) = _mean_std(norm), _mean_std(common), _mean_std(acc)
                rows.append({"dataset": d, "method": m, "mode": t.multiplier, "seeds": len(exp.seeds),
                             "norm_loss_mean": nm, "norm_loss_std": ns, "common_norm_loss_mean": cm,
                             "common_norm_loss_std": cs, "accuracy_mean": am, "accuracy_std": ast})
    _write_csv(rows, out / "fig6.csv")
    atomic_write_text(json.dumps(rows, indent=2), out / "fig6.json")
    _plot_fig6(rows, cfg.datasets, out / "fig6.png")
    return {"rows": rows}


def _plot_fig6(rows: list[dict[str, Any]], datasets: tuple[str, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(datasets), figsize=(3.2 * len(datasets), 3.2), squeeze=False)
    for ax, d in zip(axes[0], datasets, strict=True):
        for i, m in enumerate(("bp", "act", "axtrain")):
            sel = [r for r in rows if r["dataset"] == d and r["method"] == m]
            xs = [K_MODES.index(r["mode"]) + (i - 1) * 0.27 for r in sel]
            ax.bar(xs, [r["norm_loss_mean"] for r in sel], 0.27, yerr=[r["norm_loss_std"] for r in sel],
                   label={"bp": "BP", "act": "AxTrain-act", "axtrain": "AxTrain"}[m])
        ax.set_xticks(range(len(K_MODES)), K_MODES)
        ax.axhline(1.0, color="k", lw=0.6)
        ax.set_title(d)
        ax.set_ylabel("output loss / exact")
    _savefig(fig, path, "Fig. 6: normalised output loss under DRUM K-modes", axes[0][0])


# --------------------------------------------------------------------------- Fig. 7
def fig7(cfg: ReproduceConfig, root: Path, out: Path) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for d in cfg.datasets:
        app = APPLICATIONS[d]
        volts = {"aggressive": Target("exact", app.agg_voltage_mv), "conservative": Target("exact", app.con_voltage_mv)}
        exp = cfg.experiment(tuple(volts.values()), ("bp", "axtrain"), d)
        tasks = [exp.eval_task(d, m, s, t) for s in exp.seeds for m in ("bp", "axtrain") for t in volts.values()]
        res = run_tasks(tasks, root, backend=cfg.backend, workers=cfg.workers, address=cfg.address,
                        progress=cfg.progress)
        for m in ("bp", "axtrain"):
            for level, t in volts.items():
                rs = [res[exp.eval_task(d, m, s, t).key] for s in exp.seeds]
                all_accs = [a for r in rs for a in r["accuracies"]]
                mean, std = _mean_std(all_accs)
                rows.append({"dataset": d, "method": m, "level": level, "voltage_mv": t.voltage_mv,
                             "seeds": len(exp.seeds), "runs_per_seed": exp.runs, "accuracy_mean": mean,
                             "accuracy_std": std,
                             "seed_means": [r["accuracy_mean"] for r in rs]})
    _write_csv([{k: v for k, v in r.items() if k != "seed_means"} for r in rows], out / "fig7.csv")
    atomic_write_text(json.dumps(rows, indent=2), out / "fig7.json")
    _plot_fig7(rows, cfg.datasets, out / "fig7.png")
    return {"rows": rows}


def _plot_fig7(rows: list[dict[str, Any]], datasets: tuple[str, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 1.6 * len(datasets)), 3.2), squeeze=False)
    for ax, level in zip(axes[0], ("aggressive", "conservative"), strict=True):
        for i, m in enumerate(("bp", "axtrain")):
            sel = [next(r for r in rows if r["dataset"] == d and r["method"] == m and r["level"] == level)
                   for d in datasets]
            ax.bar([j + (i - 0.5) * 0.4 for j in range(len(datasets))], [r["accuracy_mean"] for r in sel], 0.4,
                   yerr=[r["accuracy_std"] for r in sel], label={"bp": "BP", "axtrain": "AxTrain"}[m], capsize=2)
        ax.set_xticks(range(len(datasets)), datasets, rotation=30, fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(f"{level} NTV")
        ax.set_ylabel("accuracy")
    _savefig(fig, path, "Fig. 7: accuracy under NTV weight storage (mean, std over chips)", axes[0][0])


# --------------------------------------------------------------------------- Fig. 4
def fig4(cfg: ReproduceConfig, root: Path, out: Path) -> dict[str, Any]:
    import torch

    from axhw.data import load
    from axhw.training.sensitivity.network import sensitivity_map
    from axhw.training.trainer import load_checkpoint, model_from_checkpoint, network_inputs

    d = "breast_cancer" if cfg.quick else "mnist_mlp"
    k1 = Target("K1", 1100.0)
    exp = cfg.experiment((k1,), ("bp", "act", "pas"), d)
    seed = exp.seeds[0]
    tasks = [exp.train_task(d, m, seed, k1) for m in ("bp", "act", "pas")]
    run_tasks(tasks, root, backend=cfg.backend, workers=cfg.workers, address=cfg.address,
              progress=cfg.progress)
    ck0 = load_checkpoint(root / "runs" / tasks[0].key / "checkpoint.pt")
    from axhw.training.trainer import config_from_dict

    tcfg = config_from_dict(ck0["config"])
    data = load(d, seed=seed, data_dir=cfg.data_dir, limit=tcfg.limit)
    x = network_inputs(tcfg, data.x_test)[:500]
    maps = {}
    for m, task in zip(("bp", "act", "pas"), tasks, strict=True):
        model = model_from_checkpoint(load_checkpoint(root / "runs" / task.key / "checkpoint.pt")).eval()
        last = [mod for mod in model.children() if isinstance(mod, torch.nn.Linear)][-1]
        maps[m] = sensitivity_map(model, x, last).detach()
    data_out = {m: {"total": float(v.sum()), "max": float(v.max()), "shape": list(v.shape), "map": v.tolist()}
                for m, v in maps.items()}
    atomic_write_text(json.dumps({"dataset": d, "seed": seed, "maps": data_out}), out / "fig4.json")
    _plot_fig4(maps, d, out / "fig4.png")
    return {"dataset": d, "totals": {m: data_out[m]["total"] for m in maps}}


def _plot_fig4(maps: dict[str, Any], dataset: str, path: Path) -> None:
    """One heat map per method, all on the common scale of the largest entry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vmax = max(float(v.max()) for v in maps.values())
    fig, axes = plt.subplots(3, 1, figsize=(8, 6.5), gridspec_kw={"hspace": 0.55})
    for ax, (m, v) in zip(axes, maps.items(), strict=True):
        im = ax.imshow((v / vmax).numpy(), aspect="auto", cmap="Blues", vmin=0, vmax=1)
        ax.set_title({"bp": "BP", "act": "AxTrain-act", "pas": "AxTrain-pas (K1)"}[m] + f": sum {float(v.sum()):.3g}",
                     fontsize=8)
        ax.set_ylabel("output")
    axes[-1].set_xlabel("hidden neuron (input of the last layer)")
    fig.colorbar(im, ax=list(axes), label="relative sensitivity")
    _savefig(fig, path, f"Fig. 4: last-layer sensitivity maps ({dataset})")


# --------------------------------------------------------------------------- Fig. 8
def fig8(cfg: ReproduceConfig, root: Path, out: Path) -> dict[str, Any]:
    """ApproxAnn multiplier counts, BP- vs AxTrain-act-pretrained (see :mod:`axhw.approxann`)."""
    from axhw.approxann.fig8 import fig8 as run_fig8

    datasets = tuple(d for d in cfg.datasets if d != "mnist_cnn")  # the array and ApproxAnn are FC-only
    limit = None if cfg.quick else {"mnist_mlp": 5000}
    return run_fig8(datasets, out, quick=cfg.quick, limit=limit, data_dir=cfg.data_dir,
                    runs_dir=root / "fig8", progress=cfg.progress)


# --------------------------------------------------------------------------- summary
def _summary(cfg: ReproduceConfig, results: dict[str, dict[str, Any]]) -> str:
    gaps: list[list[str]] = []
    lines = ["# Reproduction summary", "",
             f"Mode: {'quick' if cfg.quick else 'full'}; datasets: {', '.join(cfg.datasets)}. "
             "All numbers from the integer golden model (`forward_int`).", ""]
    if "fig6" in results:
        rows = results["fig6"]["rows"]
        tables: dict[str, list[list[str]]] = {"norm_loss_mean": [], "common_norm_loss_mean": []}
        for key, table in tables.items():
            if key not in rows[0]:  # a fig6.json from before the common normaliser
                continue
            for k in ("K1", "K2", "K3", "K4"):
                red = {}
                for m in ("act", "axtrain"):
                    per_app = []
                    for d in cfg.datasets:
                        bp = next(r for r in rows if r["dataset"] == d and r["method"] == "bp" and r["mode"] == k)
                        mm = next(r for r in rows if r["dataset"] == d and r["method"] == m and r["mode"] == k)
                        # reduction of the normalised output loss (the Fig. 6 bars) relative to BP's bar
                        per_app.append(100.0 * (1.0 - mm[key] / bp[key]))
                    red[m] = statistics.fmean(per_app)
                table.append([k, f"{red['act']:.1f}", str(PAPER["act_error_reduction"].get(k, "-")),
                              f"{red['axtrain']:.1f}", str(PAPER["axtrain_error_reduction"].get(k, "-"))])
                for m, pkey in (("act", "act_error_reduction"), ("axtrain", "axtrain_error_reduction")):
                    paper = PAPER[pkey].get(k)
                    if paper is not None and abs(red[m] - paper) > 10:
                        norm = "common normaliser" if key == "common_norm_loss_mean" else "per-method normaliser"
                        gaps.append([f"Fig. 6 {m} loss reduction {k} (%, {norm})", f"{red[m]:.1f}", f"{paper}"])
        header = ["mode", "AxTrain-act (ours)", "paper", "AxTrain (ours)", "paper"]
        lines += ["## Fig. 6: reduction of the normalised output loss vs BP (%), mean over applications", "",
                  "Two normalisers. Common (one per application, the paper's wording: errors \"normalized to "
                  "original network results with accurate multipliers for each application\"): loss_K of the "
                  "method / loss_exact of the BP network; reduction = 1 - that / BP's, i.e. 1 - loss_K(method) / "
                  "loss_K(BP). Per method (each network's own exact loss): reduction = 1 - (loss_K / loss_exact of "
                  "the method) / (loss_K / loss_exact of BP).", ""]
        if tables["common_norm_loss_mean"]:
            lines += ["Common normaliser (BP at exact):", "", markdown_table(header, tables["common_norm_loss_mean"]), ""]
        lines += ["Per-method normaliser:", "", markdown_table(header, tables["norm_loss_mean"]), ""]
    if "fig7" in results:
        rows = results["fig7"]["rows"]
        table = []
        for level in ("aggressive", "conservative"):
            gains_pp, gains_rel = [], []
            for d in cfg.datasets:
                bp = next(r for r in rows if r["dataset"] == d and r["method"] == "bp" and r["level"] == level)
                ax = next(r for r in rows if r["dataset"] == d and r["method"] == "axtrain" and r["level"] == level)
                gains_pp.append(100 * (ax["accuracy_mean"] - bp["accuracy_mean"]))
                gains_rel.append(100 * (ax["accuracy_mean"] / bp["accuracy_mean"] - 1))
            table.append([level, f"{statistics.fmean(gains_pp):+.1f}", f"{statistics.fmean(gains_rel):+.1f}",
                          f"+{PAPER['ntv_accuracy_gain'][level]}"])
            if abs(statistics.fmean(gains_rel) - PAPER["ntv_accuracy_gain"][level]) > 10:
                gaps.append([f"Fig. 7 {level} NTV accuracy gain (relative %)", f"{statistics.fmean(gains_rel):+.1f}",
                             f"+{PAPER['ntv_accuracy_gain'][level]}"])
        lines += ["## Fig. 7: NTV accuracy gain of AxTrain over BP, mean over applications", "",
                  markdown_table(["NTV level", "ours (pp)", "ours (relative %)", "paper (%)"], table), ""]
        per = [[r["dataset"], r["method"], r["level"], f"{r['voltage_mv']:g}",
                f"{r['accuracy_mean']:.4f} ± {r['accuracy_std']:.4f}", r["seeds"], r["runs_per_seed"]] for r in rows]
        lines += [markdown_table(["dataset", "method", "level", "mV", "accuracy", "seeds", "runs/seed"], per), ""]
    if "fig6" in results:
        per = [[r["dataset"], r["method"], r["mode"], f"{r['norm_loss_mean']:.3f} ± {r['norm_loss_std']:.3f}",
                f"{r['common_norm_loss_mean']:.3f} ± {r['common_norm_loss_std']:.3f}" if "common_norm_loss_mean" in r
                else "-", f"{r['accuracy_mean']:.4f} ± {r['accuracy_std']:.4f}", r["seeds"]] for r in results["fig6"]["rows"]]
        lines += ["## Fig. 6 per application (mean ± std over seeds)", "",
                  markdown_table(["dataset", "method", "mode", "loss / own exact", "loss / BP exact", "accuracy",
                                  "seeds"], per), ""]
    if "fig8" in results:
        from axhw.approxann.fig8 import fig8_markdown

        lines += ["## Fig. 8: ApproxAnn approximate multipliers", "", fig8_markdown(results["fig8"]), ""]
    if "fig4" in results:
        t = results["fig4"]["totals"]
        lines += ["## Fig. 4: total last-layer sensitivity", "",
                  markdown_table(["BP", "AxTrain-act", "AxTrain-pas (K1)"], [[f"{t['bp']:.4g}", f"{t['act']:.4g}",
                                                                             f"{t['pas']:.4g}"]]), ""]
    if gaps:
        lines += ["## Where we differ from the paper by more than 10 points", "",
                  markdown_table(["metric", "ours", "paper"], gaps), ""]
    return "\n".join(lines)


def reproduce(figures: list[str], out_dir: str | Path, cfg: ReproduceConfig) -> dict[str, Any]:
    """Run the requested figures (``fig4``, ``fig6``, ``fig7``, ``fig8`` or ``all``) into ``out_dir``."""
    wanted = list(FIGURES) if "all" in figures else figures
    for f in wanted:
        if f not in FIGURES:
            raise ValueError(f"unknown figure {f!r}: valid figures are {', '.join(FIGURES)}, all")
    for d in cfg.datasets:
        if d not in APPLICATIONS:
            raise ValueError(f"unknown dataset {d!r}: valid datasets are {', '.join(APPLICATIONS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = out / "cache"
    makers = {"fig4": fig4, "fig6": fig6, "fig7": fig7, "fig8": fig8}
    results = {f: makers[f](cfg, root, out) for f in wanted}
    atomic_write_text(_summary(cfg, results), out / "summary.md")
    atomic_write_text(json.dumps({"config": asdict(cfg), "figures": wanted}, indent=2), out / "reproduce.json")
    return results
