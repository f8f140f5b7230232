"""Reports: ``power.json``, ``power.md`` (tables) and ``power.png`` (the paper's Fig. 9 view), plus the
synthesis table of every multiplier configuration (power flow, step 5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from axhw.common.io import atomic_write, atomic_write_json, atomic_write_text
from axhw.power.flow.tools import OSU018_LABEL
from axhw.power.search.logic_voltage import markdown_section as logic_supply_section
from axhw.power.search.per_target import (
    fidelity,
    pareto_plot,
    report_sections,
    shown_accuracy,
    summary_sections,
)

__all__ = ["summary_markdown", "write_report", "write_summary"]

#: Fig. 9's label for the networks of ``power.json``'s ``networks`` (the first seed).
_NET_LABEL = {"bp": "bp", "axtrain": "axtrain (single network)"}

_PAPER = {"compute": -41.57, "storage": -33.14}


def _fmt(x: float | None, scale: float = 1.0, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x * scale:.{digits}f}"


def _chosen(c: dict[str, Any] | None, key: str, label: str) -> str:
    if c is None:
        return "no feasible point"
    what = c["mode"] if label == "compute" else f"{c['voltage_mv']:g} mV" if label == "storage" else \
        f"{c['mode']} @ {c['voltage_mv']:g} mV"
    acc, label = shown_accuracy(c)  # the test accuracy where the choice was made on validation data
    return f"{what}: {c[key] * 1e6:.1f} uW ({label} {100 * acc:.2f}%)"


def markdown(d: dict[str, Any]) -> str:
    """The tables of ``power.md`` from a study dictionary (:func:`axhw.power.search.aggregate.study_dict`)."""
    cfg = d["config"]
    lines = [f"# Minimum-power configuration: {cfg['dataset']}", "",
             f"Constraint: accuracy >= reference - {cfg['constraint_pp']} pp (reference: {cfg['reference']}); "
             f"{cfg['bits']}-bit, {cfg['clock_mhz']:g} MHz multiply rate, NTV runs: {cfg['runs']}, "
             f"operand pairs simulated per mode: {cfg['n_pairs']}, gate delays: {cfg['timing']}.", "",
             f"## Chosen configurations (Fig. 9), seed {d.get('seeds', [cfg.get('seed', 0)])[0]}", "",
             "| network | exact@1.1V acc | compute (V = 1.1 V) | storage (exact mul) | joint |",
             "|---|---|---|---|---|"]
    names = {} if d.get("source") == "networks" else _NET_LABEL  # --network: the checkpoints' own labels
    for m, net in d["networks"].items():
        ch = net["chosen"]
        lines.append(f"| {names.get(m, m)} | {100 * net['exact_nominal_accuracy']:.2f}% | "
                     f"{_chosen(ch['compute'], 'compute_w', 'compute')}"
                     f" | {_chosen(ch['storage'], 'storage_w', 'storage')} | {_chosen(ch['joint'], 'joint_w', 'joint')} |")
    red = d.get("axtrain_vs_bp_percent")
    if red:
        lines += ["", "## Single-network AxTrain vs BP power at the chosen points (first seed)", "",
                  "| part | this run | paper (avg over data sets) |", "|---|---|---|"]
        for part in ("compute", "storage", "joint"):
            paper = f"{_PAPER[part]:+.1f}%" if part in _PAPER else "-"
            val = "n/a (a side has no feasible point)" if red[part] is None else f"{red[part]:+.1f}%"
            lines.append(f"| {part} | {val} | {paper} |")
    if d.get("vs_bp_percent"):  # power report --network with a BP checkpoint
        lines += ["", "## Power change against the BP network at the chosen points", "",
                  "| network | compute | storage | joint |", "|---|---|---|---|"]
    for label, parts in (d.get("vs_bp_percent") or {}).items():
        lines.append(f"| {label} | " + " | ".join("n/a" if parts[p] is None else f"{parts[p]:+.1f}%"
                                                 for p in ("compute", "storage", "joint")) + " |")
    lines += report_sections(d)
    lines += logic_supply_section(d)
    if d.get("accelerator"):  # power report --accel
        from axhw.power.accel.report import study_section

        lines += ["", study_section(d["accelerator"])]
    lib = d.get("library", OSU018_LABEL)  # reports written before issue 29 were all osu018
    joint = "joint uW (65 nm)" if lib.startswith("osu018") else f"joint uW ({lib} logic unscaled + 65 nm SRAM)"
    lines += ["", f"## Multiplier power per mode (network operand streams, {lib})", "",
              "| network | mode | cells | area um2 | vectors | mismatches | measured pJ/mul | vectorless pJ/mul |"
              " mean toggles/cell/cycle |", "|---|---|---|---|---|---|---|---|---|"]
    for m, net in d["networks"].items():
        for mode, c in net["compute"].items():
            lines.append(f"| {m} | {mode} | {c['n_cells']} | {c['area_um2']:.0f} | {c['vectors']} | {c['mismatches']} | "
                         f"{c['measured']['energy_pj']:.2f} | {c['vectorless']['energy_pj']:.2f} | "
                         f"{c['measured']['mean_toggles']:.3f} |")
    test = any(p.get("test_accuracy") is not None for net in d["networks"].values() for p in net["points"])
    lines += ["", "## Accuracy grid (mean over NTV runs) and power", "",
              "| network | mode | V (mV) | accuracy % | std | " + ("test accuracy % | " if test else "")
              + f"compute uW ({lib}) | storage uW | {joint} |", "|---|---|---|---|---|---|---|---|" + ("---|" if test else "")]
    for m, net in d["networks"].items():
        for p in net["points"]:
            t = "" if not test else ("n/a | " if p.get("test_accuracy") is None else f"{100 * p['test_accuracy']:.2f} | ")
            lines.append(f"| {m} | {p['mode']} | {p['voltage_mv']:g} | {100 * p['accuracy']:.2f} | "
                         f"{100 * p['accuracy_std']:.2f} | {t}{p['compute_w'] * 1e6:.1f} | {p['storage_w'] * 1e6:.2f} | "
                         f"{p['joint_w'] * 1e6:.1f} |")
    return "\n".join(lines) + "\n"


def plot(d: dict[str, Any], path: Path) -> None:
    """Fig. 9 view: chosen compute and storage power, BP vs AxTrain, chosen mode above each bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    for ax, part, key in ((axes[0], "compute", "compute_w"), (axes[1], "storage", "storage_w")):
        names, vals, labels = [], [], []
        for m, net in d["networks"].items():
            c = net["chosen"][part]
            names.append(m)
            vals.append(0.0 if c is None else c[key] * 1e6)
            labels.append("infeasible" if c is None else c["mode"] if part == "compute" else f"{c['voltage_mv']:g}mV")
        bars = ax.bar(names, vals, color=["tab:gray", "tab:blue", "tab:green", "tab:orange"][: len(names)])
        for bar, lab in zip(bars, labels, strict=True):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), lab, ha="center", va="bottom", fontsize=8)
        ax.set_title(f"{part} power ({d['config']['dataset']})")
        ax.set_ylabel("uW")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def write_report(d: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write ``power.json``, ``power.md``, ``power.png`` and (with Pareto curves) ``pareto.png`` for a study
    dictionary into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "power.json", out / "power.md", out / "power.png"]
    from axhw.common.numerics import describe  # which numerics produced it (tests/common/test_numerics.py)

    atomic_write_text(json.dumps({**d, "numerics": d.get("numerics") or describe()}, indent=2, default=str),
                      paths[0])
    atomic_write_text(markdown(d), paths[1])
    atomic_write(paths[2], lambda tmp: plot(d, Path(tmp)))
    if "pareto" in d:
        paths.append(out / "pareto.png")
        pareto_plot({d["config"]["dataset"]: d}, paths[-1])
    return paths


def summary_markdown(reports: dict[str, dict[str, Any]], fid: dict[str, Any] | None = None) -> str:
    """One table over data sets from their ``power.json`` dictionaries: BP vs AxTrain at the chosen points, and
    the fidelity table (``fid``: :func:`~axhw.power.search.per_target.fidelity`, computed when not given).

    The mean reductions only average data sets where both sides have a feasible point.
    """
    lines = ["# Minimum-power configurations, all data sets (Fig. 9)", "", *summary_sections(reports, fid),
             "## Single-network AxTrain vs BP, first seed (the earlier table)", "",
             "| data set | NTV runs | exact acc BP / AxTrain | compute BP -> AxTrain | change | "
             "storage BP -> AxTrain | change | joint change |", "|---|---|---|---|---|---|---|---|"]
    sums: dict[str, list[float]] = {"compute": [], "storage": [], "joint": []}
    for name, d in reports.items():
        bp, ax = d["networks"]["bp"], d["networks"]["axtrain"]
        red = d.get("axtrain_vs_bp_percent", {})
        cells = []
        for part, key in (("compute", "mode"), ("storage", "voltage_mv")):
            b, a = bp["chosen"][part], ax["chosen"][part]
            cells.append(" -> ".join("none" if c is None else f"{c[key]:g}" if key == "voltage_mv" else c[key]
                                     for c in (b, a)))
            cells.append("n/a" if red.get(part) is None else f"{red[part]:+.1f}%")
        joint = "n/a" if red.get("joint") is None else f"{red['joint']:+.1f}%"
        for part in sums:
            if red.get(part) is not None:
                sums[part].append(red[part])
        lines.append(f"| {name} | {d['config']['runs']} | {100 * bp['exact_nominal_accuracy']:.2f}% / "
                     f"{100 * ax['exact_nominal_accuracy']:.2f}% | {' | '.join(cells)} | {joint} |")
    mean = {p: (f"{sum(v) / len(v):+.1f}%" if v else "n/a") for p, v in sums.items()}
    lines += ["", f"Mean change over data sets: compute {mean['compute']} (paper {_PAPER['compute']:+.1f}%), "
              f"storage {mean['storage']} (paper {_PAPER['storage']:+.1f}%), joint {mean['joint']}.", ""]
    return "\n".join(lines)


def write_summary(report_dir: str | Path, out: str | Path | None = None) -> Path:
    """Read every ``report_dir/*/power.json`` and write the cross-data-set table (default ``summary.md``) and,
    beside it, ``summary.json``: the fidelity table's numbers (:func:`~axhw.power.search.per_target.fidelity`)."""
    report_dir = Path(report_dir)
    reports = {p.parent.name: json.loads(p.read_text()) for p in sorted(report_dir.glob("*/power.json"))}
    if not reports:
        raise ValueError(f"no */power.json under {report_dir}: run `axhw power report` first")
    path = Path(out) if out is not None else report_dir / "summary.md"
    reps = {k: v for k, v in reports.items() if "single_network" in v}  # the reports summary_sections reads
    fid = fidelity(reps)
    atomic_write_text(summary_markdown(reports, fid), path)
    atomic_write_json(fid, path.with_name("summary.json"))
    if any("pareto" in r for r in reports.values()):
        pareto_plot(reports, path.parent / "pareto.png")
    return path
