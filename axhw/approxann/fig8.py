"""The paper's Fig. 8: how many approximate multipliers ApproxAnn can use on BP- versus AxTrain-act-pretrained
networks under K1 and K2 within a 2% accuracy bound (paper section 5: +23.33% for K2, +25.51% for K1).

For every application and seed: train BP and AxTrain-act (:func:`axhw.training.trainer.train`, reused when a finished
run with the same config exists), run :func:`~axhw.approxann.search.run_approxann` under each mode, and write
``fig8.json``, ``fig8.md`` and ``fig8.png`` (grouped bars, BP vs act per application, one panel per mode).
The gain of act over BP is the relative increase of the approximate-multiplier count, averaged over
applications (the paper's averaging); applications where BP's count is 0 are left out of the average.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from axhw.approxann.search import ApproxAnnConfig, run_approxann
from axhw.common.io import atomic_write_text
from axhw.common.tables import markdown_table
from axhw.data.registry import APPLICATIONS
from axhw.training.trainer import Method, TrainConfig, train_cached

__all__ = ["DEFAULT_DATASETS", "PAPER_GAIN_PERCENT", "fig8", "fig8_markdown", "plot_fig8"]

#: The paper's reported average gains of ApproxAnn-AxTrain over ApproxAnn-BP (section 5), in percent.
PAPER_GAIN_PERCENT: dict[str, float] = {"K2": 23.33, "K1": 25.51}
DEFAULT_DATASETS: tuple[str, ...] = ("breast_cancer", "image_seg", "ionosphere", "satimage")
METHODS: tuple[Method, ...] = ("bp", "act")


def _approxann_cached(checkpoint: Path, cfg: ApproxAnnConfig, out: Path, data_dir: str | None,
                      progress: bool) -> dict[str, Any]:
    path = out / "approxann.json"
    if path.exists() and (out / "network.pt").exists():
        saved = json.loads(path.read_text())
        if saved.get("config") == asdict(cfg) and saved.get("checkpoint_mtime") == checkpoint.stat().st_mtime:
            return saved
    res = run_approxann(checkpoint, cfg, out, data_dir=data_dir, progress=progress).as_dict()
    res["checkpoint"] = str(checkpoint)
    res["checkpoint_mtime"] = checkpoint.stat().st_mtime
    atomic_write_text(json.dumps(res, indent=2), path)
    return res


def fig8(datasets: Sequence[str] = DEFAULT_DATASETS, out_dir: str | Path = "results/fig8", quick: bool = False,
         seeds: Sequence[int] = (0,), modes: Sequence[str] = ("K2", "K1"), bound: float = 2.0,
         epochs: int | None = None, limit: int | Mapping[str, int] | None = None, data_dir: str | None = None,
         approxann_cfg: ApproxAnnConfig | None = None, runs_dir: str | Path | None = None,
         progress: bool = False, val_fraction: float = 0.2) -> dict[str, Any]:
    """Run the Fig. 8 experiment and write ``fig8.json``, ``fig8.md``, ``fig8.png`` under ``out_dir``.

    Args:
        datasets: applications of Table 1 (``mnist_mlp`` works; pass ``limit`` to keep it modest).
        out_dir: where runs (``runs/<dataset>/seed<s>/<method>/``) and the figure go.
        quick: a smoke-test budget (8 training epochs, 1 retraining epoch, at most 1000 training samples).
        seeds: training seeds; counts are averaged over them.
        modes: approximate multipliers (the paper: K2 and K1).
        bound: allowed accuracy loss in percentage points.
        epochs: training epochs (default 30, the trainer's default; quick: 8).
        limit: training samples per application (None: all; quick: 1000), or a map application -> limit
            (e.g. ``{"mnist_mlp": 3000}``: a modest MNIST-MLP next to full small data sets).
        approxann_cfg: search settings (mode and bound are overridden per run).
        runs_dir: where trainings and searches live (default ``out_dir/runs``); share it between variants
            of the search (e.g. with and without retraining) so the networks are trained once.
        val_fraction: training samples held out as the validation split ApproxAnn's switches are accepted on
            (``accept_split="val"``); the counts are reported with the test accuracy. 0: the earlier behaviour
            (accepted on the test split, or on ``approxann_cfg.accept_split``).

    Returns:
        The content of ``fig8.json``.
    """
    for ds in datasets:
        if ds not in APPLICATIONS or ds == "mnist_cnn":
            valid = ", ".join(a for a in APPLICATIONS if a != "mnist_cnn")
            raise ValueError(f"unknown or unsupported dataset {ds!r}: valid datasets are {valid}")
    out_dir = Path(out_dir)
    runs_root = Path(runs_dir) if runs_dir is not None else out_dir / "runs"
    epochs = epochs or (8 if quick else 30)
    limit = limit if limit is not None else (1000 if quick else None)
    limits = {ds: (limit.get(ds) if isinstance(limit, Mapping) else limit) for ds in datasets}
    base_aa = approxann_cfg or ApproxAnnConfig(retrain_epochs=1 if quick else 3)
    if val_fraction:
        base_aa = replace(base_aa, accept_split="val")
    runs: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
    for ds in datasets:
        runs[ds] = {mode: {m: [] for m in METHODS} for mode in modes}
        for seed in seeds:
            for method in METHODS:
                cfg = TrainConfig(dataset=ds, method=method, epochs=epochs, seed=seed, limit=limits[ds],
                                  data_dir=data_dir, val_fraction=val_fraction)
                run_dir = runs_root / ds / f"seed{seed}" / (method + (f"-v{val_fraction:g}" if val_fraction else ""))
                train_cached(cfg, run_dir, resume=True, progress=progress)
                for mode in modes:
                    aa = replace(base_aa, mode=mode, bound=bound, seed=seed)
                    aa_dir = run_dir / f"approxann_{mode}_retrain{aa.retrain_epochs}_{aa.measure}"
                    res = _approxann_cached(run_dir / "checkpoint.pt", aa, aa_dir, data_dir, progress)
                    runs[ds][mode][method].append(res)
    result = _summarize(runs, modes, seeds, bound, epochs, limits)
    result["approxann_config"] = {**asdict(base_aa), "mode": list(modes), "bound": bound}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(result, indent=2), out_dir / "fig8.json")
    atomic_write_text(fig8_markdown(result), out_dir / "fig8.md")
    plot_fig8(result, out_dir / "fig8.png")
    return result


def _mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else float("nan")


def _summarize(runs: dict[str, Any], modes: Sequence[str], seeds: Sequence[int], bound: float, epochs: int,
               limit: dict[str, int | None]) -> dict[str, Any]:
    apps: dict[str, Any] = {}
    gains: dict[str, Any] = {}
    for mode in modes:
        per_app: dict[str, float] = {}
        for ds, by_mode in runs.items():
            cell: dict[str, Any] = {}
            for method, results in by_mode[mode].items():
                counts = [r["approx_multipliers"] for r in results]
                cell[method] = {
                    "approx_multipliers": _mean(counts),
                    "approx_multipliers_std": statistics.pstdev(counts) if len(counts) > 1 else 0.0,
                    "total_multipliers": results[0]["total_multipliers"],
                    "fraction": _mean([r["fraction"] for r in results]),
                    "exact_test_accuracy": _mean([r["exact_test_accuracy"] for r in results]),
                    "test_accuracy": _mean([r["test_accuracy"] for r in results]),
                    "uniform_test_accuracy": _mean([r["uniform_test_accuracy"] for r in results]),
                    "bound_respected": all(r["bound_respected"] for r in results),
                    "per_seed": [{k: r[k] for k in ("approx_multipliers", "fraction", "exact_test_accuracy",
                                                    "test_accuracy", "bound_respected")} for r in results],
                }
            apps.setdefault(ds, {})[mode] = cell
            bp, act = cell["bp"]["approx_multipliers"], cell["act"]["approx_multipliers"]
            if bp > 0:
                per_app[ds] = 100.0 * (act - bp) / bp
        tot_bp = sum(apps[ds][mode]["bp"]["approx_multipliers"] for ds in runs)
        tot_act = sum(apps[ds][mode]["act"]["approx_multipliers"] for ds in runs)
        gains[mode] = {"per_application_percent": per_app, "mean_percent": _mean(list(per_app.values())),
                       "pooled_percent": 100.0 * (tot_act - tot_bp) / tot_bp if tot_bp else float("nan"),
                       "paper_percent": PAPER_GAIN_PERCENT.get(mode)}
    return {"bound_percent_points": bound, "seeds": list(seeds), "epochs": epochs, "limit": limit,
            "modes": list(modes), "applications": apps, "gain_act_over_bp": gains,
            "bound_respected_everywhere": all(apps[ds][m][meth]["bound_respected"]
                                              for ds in apps for m in modes for meth in METHODS)}


def fig8_markdown(result: dict[str, Any]) -> str:
    """The Fig. 8 numbers as a Markdown table plus the average gains next to the paper's."""
    rows = []
    for ds, by_mode in result["applications"].items():
        for mode, cell in by_mode.items():
            g = result["gain_act_over_bp"][mode]["per_application_percent"].get(ds)
            rows.append([ds, mode, cell["bp"]["total_multipliers"],
                         *[f"{cell[m]['approx_multipliers']:.0f} ({100 * cell[m]['fraction']:.1f}%)" for m in METHODS],
                         "-" if g is None else f"{g:+.1f}%",
                         *[f"{cell[m]['exact_test_accuracy']:.4f} -> {cell[m]['test_accuracy']:.4f}" for m in METHODS],
                         "yes" if cell["bp"]["bound_respected"] and cell["act"]["bound_respected"] else "NO"])
    table = markdown_table(["application", "mode", "multipliers", "approx (BP)", "approx (act)", "act vs BP",
                            "test acc BP (exact -> final)", "test acc act (exact -> final)", "bound held"], rows)
    gains = "\n".join(f"- {mode}: mean gain {g['mean_percent']:+.1f}% (pooled {g['pooled_percent']:+.1f}%); "
                      f"paper {g['paper_percent']:+.2f}%" for mode, g in result["gain_act_over_bp"].items())
    return (f"# Fig. 8: approximate multipliers under ApproxAnn (bound {result['bound_percent_points']:g} points)\n\n"
            f"seeds {result['seeds']}, {result['epochs']} training epochs, limit {result['limit']}, "
            f"{result['approxann_config']['retrain_epochs']} retraining epoch(s) per round, "
            f"criticality measure {result['approxann_config']['measure']}\n\n"
            f"{table}\n\n{gains}\n")


def plot_fig8(result: dict[str, Any], path: str | Path) -> None:
    """Grouped bars: approximate-multiplier count of BP and act per application, one panel per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = result["modes"]
    apps = list(result["applications"])
    fig, axes = plt.subplots(1, len(modes), figsize=(4.5 * len(modes), 3.6), squeeze=False)
    width = 0.38
    for ax, mode in zip(axes[0], modes, strict=True):
        for k, (method, label, color) in enumerate([("bp", "ApproxAnn-BP", "#9e9e9e"),
                                                    ("act", "ApproxAnn-AxTrain-act", "#1f77b4")]):
            vals = [result["applications"][a][mode][method]["approx_multipliers"] for a in apps]
            errs = [result["applications"][a][mode][method]["approx_multipliers_std"] for a in apps]
            xs = [i + (k - 0.5) * width for i in range(len(apps))]
            ax.bar(xs, vals, width, yerr=errs if any(errs) else None, label=label, color=color)
        g = result["gain_act_over_bp"][mode]
        ax.set_title(f"{mode}: act vs BP {g['mean_percent']:+.1f}% (paper {g['paper_percent'] or float('nan'):+.1f}%)",
                     fontsize=9)
        ax.set_xticks(range(len(apps)), apps, rotation=20, fontsize=8)
        ax.set_ylabel("approximate multipliers")
        ax.legend(fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
