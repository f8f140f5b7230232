"""Tables and plots of the per-target search (docs/power.md, "Minimum-power search"): per-target vs
single-network AxTrain against BP, AxTrain vs ApproxAnn compute power, and the power-accuracy Pareto curves, for one ``power.json``
(``power.md``, ``pareto.png``) and over data sets (``summary.md``, ``pareto.png``), with the 95% bootstrap interval
of every mean and the readings of the bound (:func:`readings_section`, :func:`fidelity`; docs/power.md,
"Statistics and readings of the bound").

The paper's numbers to compare with (section 5): compute power -41.57% and storage power -33.14% for AxTrain
against BP within 2 points of the accurate implementation (Fig. 9); AxTrain 25.73% less compute power than
ApproxANN; satimage storage reaches 0.66 V with -27.01% power when 6 points are allowed.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from axhw.power.search.bound import READINGS
from axhw.power.search.stats import bootstrap_mean_ci, hierarchical_mean_ci

__all__ = ["PAPER", "fidelity", "fidelity_sections", "pareto_plot", "readings_section", "report_sections",
           "shown_accuracy", "summary_sections"]

#: The paper's averages (section 5), in percent.
PAPER = {"compute": -41.57, "storage": -33.14, "axtrain_vs_approxann": -25.73, "satimage_6pp_storage": -27.01}
_KEY = {"compute": "compute_w", "storage": "storage_w", "joint": "joint_w"}
_LABELS = {"bp": "BP", "per_target": "AxTrain (per target)", "single_network": "AxTrain (single network)",
           "approxann_bp": "ApproxAnn-BP"}


def _pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x:+.{digits}f}%"


def _num(x: float | None, fmt: str, scale: float = 1.0, none: str = "n/a") -> str:
    return none if x is None else format(x * scale, fmt)


def _ci(ci: list[float] | None, signed: bool = True, digits: int = 1) -> str:
    """`` [lo, hi]`` of a 95% interval, or nothing (fewer than 2 seeds: no interval)."""
    if not ci:
        return ""
    f = f"{'+' if signed else ''}.{digits}f"
    return f" [{format(ci[0], f)}, {format(ci[1], f)}]"


def _pct_ci(x: float | None, ci: list[float] | None) -> str:
    """A mean change with its interval: ``-12.3% [-20.1, -5.0]``."""
    return _pct(x) + ("" if x is None else _ci(ci))


def _values(blk: Mapping[str, Any], part: str) -> list[float]:
    """The per-seed changes a block's mean averages (seeds where both sides are feasible)."""
    vals = blk.get("vs_bp_percent_values", {}).get(part)
    if vals is None:  # a report written before the values were kept
        vals = [v["vs_bp_percent"][part] for v in blk["per_seed"].values() if v["vs_bp_percent"].get(part) is not None]
    return list(vals)


def _block_ci(blk: Mapping[str, Any], part: str) -> list[float] | None:
    ci = blk.get("ci95_vs_bp_percent", {}).get(part)
    if ci is None and "ci95_vs_bp_percent" not in blk:  # older report: the same seeded interval, computed here
        _, lo, hi = bootstrap_mean_ci(_values(blk, part))
        ci = None if lo is None or hi is None else [lo, hi]
    return ci


def shown_accuracy(p: Mapping[str, Any]) -> tuple[float, str]:
    """The accuracy to print for a chosen point: its test accuracy when choices were made on a validation
    split (``test_accuracy``), else the accuracy it was chosen on; and its label."""
    if p.get("test_accuracy") is not None:
        return float(p["test_accuracy"]), "test acc"
    return float(p["accuracy"]), "acc"


def _label(p: dict[str, Any] | None, part: str) -> str:
    if p is None:
        return "none"
    if part == "compute":
        return str(p["mode"])
    if part == "storage":
        return f"{p['voltage_mv']:g}"
    return f"{p['mode']}@{p['voltage_mv']:g}"


def _seeds_label(block: Mapping[str, Any], part: str) -> str:
    return "/".join(_label(v["chosen"].get(part), part) for v in block["per_seed"].values())


def _bp_label(d: dict[str, Any], part: str) -> str:
    return "/".join(_label(v["chosen"][part], part) for v in d["bp"]["per_seed"].values())


def report_sections(d: dict[str, Any]) -> list[str]:
    """Markdown lines for one data set's ``power.md`` (empty for a report without the issue-14 keys)."""
    if "bp" not in d or "single_network" not in d:
        return []
    cfg = d["config"]
    seeds = ", ".join(map(str, d["seeds"]))
    lines = ["", f"## AxTrain trained per target vs one network (bound {cfg['constraint_pp']:g} pp, seeds {seeds})", "",
             "Chosen mode / SRAM voltage per seed (separated by /); change = mean over seeds of AxTrain vs BP power.", "",
             "| part | BP | AxTrain per target | change | AxTrain single network | change |", "|---|---|---|---|---|---|"]
    pt = d.get("per_target")
    sn = d["single_network"]
    for part in ("compute", "storage", "joint"):
        ptl = _seeds_label(pt, part) if pt else "-"
        ptc = _pct_ci(pt["mean_vs_bp_percent"][part], _block_ci(pt, part)) if pt else "-"
        lines.append(f"| {part} | {_bp_label(d, part)} | {ptl} | {ptc} | {_seeds_label(sn, part)} | "
                     f"{_pct_ci(sn['mean_vs_bp_percent'][part], _block_ci(sn, part))} |")
    lines.append("\n[lo, hi]: 95% percentile-bootstrap interval of the mean over seeds (none with fewer than 2 "
                 "seeds where both are feasible).")
    lines += readings_section(d)
    lines += hinge_section(d)
    if pt:
        lines += ["", "### Per-target search: candidates visited, cheapest first", "",
                  "| seed | bound pp | part | floor | visited (mode@mV accuracy) | chosen |", "|---|---|---|---|---|---|"]
        for s, search in pt["search"].items():
            for b, row in search["bounds"].items():
                for part in ("compute", "storage", "joint"):
                    if part not in row:
                        continue
                    vis = ", ".join(f"{v['mode']}@{v['voltage_mv']:g} {100 * v['accuracy']:.1f}"
                                    + ("" if v["feasible"] else "x") for v in row[part]["visited"])
                    lines.append(f"| {s} | {float(b):g} | {part} | {100 * row['floor']:.2f}% | {vis} | "
                                 f"{_label(row[part]['point'], part)} |")
        lines.append("\n(x: below the floor.)")
    aa = d.get("approxann", {})
    if "per_seed" in aa:
        lines += ["", f"## AxTrain vs ApproxAnn compute power (bound {aa['bound_pp']:g} pp)", "",
                  "ApproxAnn: per-neuron mix of exact and approximate multipliers; power = share-weighted measured "
                  "power of the two modes.", "",
                  "| seed | ApproxAnn-BP (mode, approx share) | uW | ApproxAnn-act | uW | AxTrain per target uW | "
                  "vs ApproxAnn-BP | vs ApproxAnn-act |", "|---|---|---|---|---|---|---|---|"]
        for s, row in aa["per_seed"].items():
            cells = []
            for pre in ("bp", "act"):
                r = row["runs"].get(pre, {}).get(str(aa["bound_pp"]))
                cells += (["-", "-"] if r is None else
                          [f"{r['best']} {100 * r['modes'][r['best']]['fraction']:.0f}%", f"{r['power_w'] * 1e6:.0f}"])
            ax = pt["per_seed"][s]["chosen"]["compute"] if pt else None
            lines.append(f"| {s} | {' | '.join(cells)} | {_num(None if ax is None else ax['compute_w'], '.0f', 1e6, '-')} | "
                         f"{_pct(row.get('per_target_vs_approxann_bp_percent'))} | "
                         f"{_pct(row.get('per_target_vs_approxann_act_percent'))} |")
        m, mci = aa["mean"], aa.get("ci95", {})
        lines.append(f"\nMean: AxTrain per target vs ApproxAnn-BP {_pct_ci(m.get('per_target_vs_approxann_bp_percent'), mci.get('per_target_vs_approxann_bp_percent'))}, "
                     f"vs ApproxAnn-act {_pct_ci(m.get('per_target_vs_approxann_act_percent'), mci.get('per_target_vs_approxann_act_percent'))} "
                     f"(paper: {PAPER['axtrain_vs_approxann']:+.2f}%).")
    par = d.get("pareto")
    if par:
        lines += ["", "## Power-accuracy Pareto curves (mean over seeds [95% interval], % of BP's accurate implementation)",
                  ""]
        for part in ("compute", "storage"):
            methods = list(par[part])
            lines += [f"{part}:", "", "| bound pp | " + " | ".join(_LABELS[m] for m in methods) + " |",
                      "|---|" + "---|" * len(methods)]
            for i, b in enumerate(par["bounds"]):
                cells = [_num(par[part][m][i]["relative_percent"], ".1f") + "%"
                         + _ci(par[part][m][i].get("relative_percent_ci95"), signed=False)
                         + f" ({'/'.join(par[part][m][i]['chosen'])})" for m in methods]
                lines.append(f"| {b:g} | " + " | ".join(cells) + " |")
            lines.append("")
    cost = d.get("cost")
    if cost:
        lines += [_cost_line(cost), ""]
    return lines


def _cost_line(cost: dict[str, Any]) -> str:
    c = cost.get("cumulative", cost)
    return (f"Cost of the search: {c['trainings_run']} networks trained ({c['epochs_trained']} epochs), "
            f"{c['gate_level_simulations']} gate-level simulations, {c['evaluations_run']} evaluations, "
            f"{c['wall_s'] / 60:.1f} min wall time" + (f" over {c['invocations']} invocation(s)" if "invocations" in c else "")
            + ".")


def summary_sections(reports: Mapping[str, dict[str, Any]], fid: dict[str, Any] | None = None) -> list[str]:
    """Markdown lines over data sets: per-target vs single vs BP, the fidelity table (readings of the bound,
    :func:`fidelity`; computed here unless given), ApproxAnn, Pareto, cost."""
    reps = {k: v for k, v in reports.items() if "single_network" in v}
    if not reps:
        return []
    lines = ["## Per-target AxTrain (default) and single-network AxTrain against BP", "",
             "Chosen mode (compute) / SRAM mV (storage) per seed; change = mean over seeds of 100 (P_AxTrain / P_BP - 1) "
             "[95% bootstrap interval over seeds]; the mean over data sets has the two-level interval (seeds "
             "resampled within each data set).", "",
             "| data set | seeds | compute BP | per target | change | single | change | storage BP | per target | change | "
             "single | change | joint per target | joint single |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    means: dict[str, list[float]] = {}
    groups: dict[str, dict[str, list[float]]] = {}
    for name, d in reps.items():
        pt, sn = d.get("per_target"), d["single_network"]
        cells = [name, str(len(d["seeds"]))]
        for part in ("compute", "storage"):
            cells.append(_bp_label(d, part))
            for key, blk in (("per_target", pt), ("single", sn)):
                if blk is None:
                    cells += ["-", "-"]
                    continue
                v = blk["mean_vs_bp_percent"][part]
                cells += [_seeds_label(blk, part), _pct_ci(v, _block_ci(blk, part))]
                if v is not None:
                    means.setdefault(f"{key}_{part}", []).append(v)
                    groups.setdefault(f"{key}_{part}", {})[name] = _values(blk, part)
        for key, blk in (("per_target", pt), ("single", sn)):
            v = None if blk is None else blk["mean_vs_bp_percent"]["joint"]
            cells.append("-" if blk is None else _pct_ci(v, _block_ci(blk, "joint")))
            if blk is not None and v is not None:
                means.setdefault(f"{key}_joint", []).append(v)
                groups.setdefault(f"{key}_joint", {})[name] = _values(blk, "joint")
        lines.append("| " + " | ".join(cells) + " |")

    def m(key: str) -> str:
        if not means.get(key):
            return "n/a"
        _, lo, hi = hierarchical_mean_ci(groups[key])
        return _pct_ci(statistics.fmean(means[key]), None if lo is None or hi is None else [lo, hi])

    lines += ["", "| mean over data sets | per target | single network | paper |", "|---|---|---|---|",
              f"| compute | {m('per_target_compute')} | {m('single_compute')} | {PAPER['compute']:+.2f}% |",
              f"| storage | {m('per_target_storage')} | {m('single_storage')} | {PAPER['storage']:+.2f}% |",
              f"| joint | {m('per_target_joint')} | {m('single_joint')} | - |", ""]
    lines += fidelity_sections(fidelity(reps) if fid is None else fid)
    aa_rows = [(n, d["approxann"]) for n, d in reps.items() if "mean" in d.get("approxann", {})]
    if aa_rows:
        lines += ["## AxTrain vs ApproxAnn compute power (2-point bound, mean over seeds)", "",
                  "| data set | ApproxAnn-BP uW | ApproxAnn-act uW | AxTrain per target vs ApproxAnn-BP | vs ApproxAnn-act | "
                  "single network vs ApproxAnn-BP |", "|---|---|---|---|---|---|"]
        acc: dict[str, dict[str, list[float]]] = {}  # per key: data set -> per-seed values
        for n, aa in aa_rows:
            mm, mci = aa["mean"], aa.get("ci95", {})
            for k in ("per_target_vs_approxann_bp_percent", "per_target_vs_approxann_act_percent",
                      "single_vs_approxann_bp_percent"):
                if mm.get(k) is not None:
                    acc.setdefault(k, {})[n] = [r[k] for r in aa["per_seed"].values() if r.get(k) is not None]
            lines.append(f"| {n} | {mm['approxann_bp_w'] * 1e6:.0f} | "
                         f"{_num(mm.get('approxann_act_w'), '.0f', 1e6, '-')} | "
                         f"{_pct_ci(mm.get('per_target_vs_approxann_bp_percent'), mci.get('per_target_vs_approxann_bp_percent'))} | "
                         f"{_pct_ci(mm.get('per_target_vs_approxann_act_percent'), mci.get('per_target_vs_approxann_act_percent'))} | "
                         f"{_pct_ci(mm.get('single_vs_approxann_bp_percent'), mci.get('single_vs_approxann_bp_percent'))} |")

        def avg(k: str) -> str:
            if k not in acc:
                return "n/a"
            mean, lo, hi = hierarchical_mean_ci(acc[k])
            return _pct_ci(mean, None if lo is None or hi is None else [lo, hi])

        lines += ["", f"Mean over data sets [two-level 95% interval]: AxTrain per target vs ApproxAnn-BP "
                      f"{avg('per_target_vs_approxann_bp_percent')}, vs ApproxAnn-act "
                      f"{avg('per_target_vs_approxann_act_percent')}; single network vs ApproxAnn-BP "
                      f"{avg('single_vs_approxann_bp_percent')} (paper: AxTrain "
                      f"{PAPER['axtrain_vs_approxann']:+.2f}% against ApproxANN).", ""]
    lines += ["## Power-accuracy Pareto curves (minimum power, % of BP's accurate implementation, mean over seeds "
              "[95% interval])", ""]
    for part in ("compute", "storage"):
        first = next(iter(reps.values()))["pareto"]
        methods = [m for m in ("bp", "per_target", "single_network", "approxann_bp")
                   if any(m in d["pareto"][part] for d in reps.values())]
        lines += [f"{part}:", "", "| data set | bound pp | " + " | ".join(_LABELS[m] for m in methods) + " |",
                  "|---|---|" + "---|" * len(methods)]
        for n, d in reps.items():
            for i, b in enumerate(d["pareto"]["bounds"]):
                cells = []
                for meth in methods:
                    c = d["pareto"][part].get(meth)
                    if c is None:
                        cells.append("-")
                        continue
                    r = c[i]["relative_percent"]
                    cells.append(("n/a" if r is None else f"{r:.1f}%" + _ci(c[i].get("relative_percent_ci95"), signed=False))
                                 + f" ({'/'.join(c[i]['chosen'])})")
                lines.append(f"| {n} | {b:g} | " + " | ".join(cells) + " |")
        lines.append("")
        del first
    if "satimage" in reps and "per_target" in reps["satimage"]:
        lines += _satimage_remark(reps["satimage"])
    lines += ["## Cost of the search", "", "| data set | networks trained | epochs | gate-level simulations | wall min |",
              "|---|---|---|---|---|"]
    for n, d in reps.items():
        c = d.get("cost", {})
        c = c.get("cumulative", c)
        if c:
            lines.append(f"| {n} | {c['trainings_run']} | {c['epochs_trained']} | {c['gate_level_simulations']} | "
                         f"{c['wall_s'] / 60:.1f} |")
    return [*lines, ""]


def readings_section(d: Mapping[str, Any]) -> list[str]:
    """``power.md``'s "Readings of the bound": AxTrain vs BP under each reading (mean [95% interval], feasible
    seeds), then the chosen configurations per seed (empty for a report without ``readings``)."""
    r = d.get("readings")
    if not r:
        return []
    parts = ("compute", "storage", "joint")
    lines = ["", f"## Readings of the bound (bound {r['bound_pp']:g}; the study chose under {r['study_reading']})", "",
             "own: each network's accurate implementation (exact multiplier, 1.1 V) is its reference; bp: BP's for "
             "every network. pp: floor = reference - bound/100; relative: floor = reference x (1 - bound/100). BP and "
             "the single network are re-scored on their stored grids; per-target AxTrain only where its search ran. "
             "Cells: change of AxTrain vs BP power, mean over seeds [95% interval] (seeds where both are feasible / "
             "seeds).", "", "| reading | floor | AxTrain | compute | storage | joint |", "|---|---|---|---|---|---|"]
    unsearched = []
    for name in r["readings"]:
        rd = r["by_reading"][name]
        for key, label in (("single_network", "single network"), ("per_target", "per target")):
            blk = rd[key]
            if "not_searched" in blk:
                unsearched.append(name)
                continue
            n_seeds = len(blk["per_seed"])
            cells = [f"{_pct_ci(blk['mean_vs_bp_percent'][p], _block_ci(blk, p))} "
                     f"({blk['seeds_with_both_feasible'][p]}/{n_seeds})" if p in blk.get("searched_parts", parts)
                     else "not searched" for p in parts]
            lines.append(f"| {name} | {rd['rule'].removeprefix('floor = ')} | {label} | " + " | ".join(cells) + " |")
    if unsearched:
        why = next(r["by_reading"][n]["per_target"]["not_searched"] for n in unsearched)
        lines.append(f"\nPer-target AxTrain not searched under {', '.join(unsearched)}: {why}.")
    lines += ["", "Chosen per seed (separated by /; compute mode, storage mV, joint mode@mV) and each network's floor:", "",
              "| reading | network | floor % | compute | storage | joint |", "|---|---|---|---|---|---|"]
    for name in r["readings"]:
        rd = r["by_reading"][name]
        for label, per_seed in (("BP", rd["bp"]["per_seed"]), ("AxTrain single", rd["single_network"]["per_seed"])):
            fl = "/".join(f"{100 * v['floor']:.2f}" for v in per_seed.values())
            lines.append(f"| {name} | {label} | {fl} | " + " | ".join(
                "/".join(_label(v["chosen"][p], p) for v in per_seed.values()) for p in parts) + " |")
    return lines


def hinge_section(d: Mapping[str, Any]) -> list[str]:
    """``power.md``'s "Choices that hinge on a few samples": under the study's reading, every choice (network,
    seed, part) whose chosen point is within :data:`~axhw.power.search.stats.HINGE_SAMPLES` samples of the floor,
    or whose cheapest rejected candidate is, with the paired test of the chosen point against the network's
    accurate implementation on the same samples and chips (``vs_reference``: exact McNemar without flips, a
    sign-flip test of the chip-averaged differences under NTV). Empty when no point carries sample counts."""
    r = d.get("readings")
    if not r:
        return []
    rd = r["by_reading"][r["study_reading"]]
    rows = []
    for label, per_seed in (("BP", rd["bp"]["per_seed"]), ("AxTrain single", rd["single_network"]["per_seed"])):
        for seed, v in per_seed.items():
            for part, m in (v.get("margins_samples") or {}).items():
                if not m or not m.get("hinges"):
                    continue
                c = v["chosen"].get(part)
                accurate = c is not None and c["mode"] == "exact" and float(c["voltage_mv"]) == 1100.0
                if accurate and (m["best_cheaper"] is None or m["best_cheaper"] < -2):
                    continue  # the reference itself clears its floor by the bound's width: nothing hinges on it
                test = (c or {}).get("vs_reference") or {}
                p_txt = f"{test['p_value']:.3g} ({test['test']}, {test['discordant']} discordant)" if test else "n/a"
                cheaper = "-" if m["best_cheaper"] is None else m["best_cheaper"]
                rows.append(f"| {label} | {seed} | {part} | {_label(c, part)} | {m['chosen']} | {cheaper} | {p_txt} |")
    if not any((v.get("margins_samples") is not None) for blk in (rd["bp"]["per_seed"], rd["single_network"]["per_seed"])
               for v in blk.values()):
        return []
    lines = ["", f"## Choices that hinge on a few samples ({r['study_reading']})", "",
             "A choice hinges when its chosen point clears the floor by at most 2 samples of the selection split, or "
             "a cheaper rejected candidate misses it by at most 2 (margins in whole samples; NTV accuracies are chip "
             "means). p: paired test of the chosen point against the network's accurate implementation on the same "
             "samples and chips (a small p says the loss is real, a large one that the two cannot be told apart on "
             "this split)."]
    n = next((int(pt["n_samples"]) for nets in (d.get("per_seed_networks") or {"0": d.get("networks", {})}).values()
              for net in nets.values() for pt in net.get("points", []) if pt.get("n_samples")), None)
    if n:
        lines[-1] += (f" Resolution: the selection split holds {n} samples, so the {r['bound_pp']:g}-point bound is "
                      f"{r['bound_pp'] * n / 100:.1f} samples wide.")
    if not rows:
        return [*lines, "", "None: every choice clears the floor, and every cheaper candidate misses it, by more than "
                "2 samples."]
    return [*lines, "", "| network | seed | part | chosen | margin (samples) | best cheaper margin | p vs accurate |",
            "|---|---|---|---|---|---|---|", *rows]


def _verdict(paper: float | None, ci: list[float] | None) -> str | None:
    """Whether the paper's number lies inside our 95% interval (None: no claim for this part)."""
    if paper is None:
        return None
    if ci is None:
        return "no interval"
    return "inside" if ci[0] <= paper <= ci[1] else "outside"


def _readings_of(d: dict[str, Any]) -> dict[str, Any] | None:
    """A report's ``readings``, re-scored from its stored grids when it predates them."""
    if "readings" in d:
        return d["readings"]
    if "per_seed_networks" not in d:
        return None
    from axhw.power.search.aggregate import readings_block

    return readings_block(d)


def fidelity(reports: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The numbers of the summary's fidelity table (and of ``summary.json``).

    For each reading and each AxTrain (``single_network``, ``per_target``): per data set the mean change vs BP
    over seeds with its 95% percentile-bootstrap interval (:func:`~axhw.power.search.stats.bootstrap_mean_ci`),
    and over data sets the mean of the data sets' means with the two-level interval
    (:func:`~axhw.power.search.stats.hierarchical_mean_ci`: seeds resampled within each data set, data sets
    fixed), with, for compute and storage, whether the paper's average (section 5) lies inside that interval.
    A data set with no seed where both sides are feasible is left out of that part's mean (``datasets`` counts).
    """
    parts = ("compute", "storage", "joint")
    per = {n: r for n, r in ((n, _readings_of(d)) for n, d in reports.items()) if r}
    out: dict[str, Any] = {
        "paper": {"compute": PAPER["compute"], "storage": PAPER["storage"]}, "confidence": 0.95,
        "interval": "percentile bootstrap, 10000 resamples, seed 0; over data sets: seeds resampled within each "
                    "data set, data sets fixed",
        "datasets": list(per), "study_readings": {n: r["study_reading"] for n, r in per.items()}, "readings": {}}
    for name in READINGS:
        entry: dict[str, Any] = {}
        for key in ("single_network", "per_target"):
            per_ds: dict[str, Any] = {}
            groups: dict[str, dict[str, list[float]]] = {p: {} for p in parts}
            for ds, r in per.items():
                blk = r["by_reading"].get(name, {}).get(key)
                if blk is None or "not_searched" in blk:
                    per_ds[ds] = {"not_searched": "no such reading" if blk is None else blk["not_searched"]}
                    continue
                row: dict[str, Any] = {"seeds": len(blk["per_seed"])}
                for p in parts:
                    if p not in blk.get("searched_parts", parts):
                        row[p] = {"not_searched": True}
                        continue
                    vals = _values(blk, p)
                    mean, lo, hi = bootstrap_mean_ci(vals)
                    row[p] = {"mean": mean, "ci95": None if lo is None or hi is None else [lo, hi], "values": vals,
                              "seeds_with_both_feasible": len(vals)}
                    if vals:
                        groups[p][ds] = vals
                per_ds[ds] = row
            over: dict[str, Any] = {}
            for p in parts:
                mean, lo, hi = hierarchical_mean_ci(groups[p])
                ci = None if lo is None or hi is None else [lo, hi]
                paper = PAPER.get(p) if p in ("compute", "storage") else None
                over[p] = {"mean": mean, "ci95": ci, "datasets": len(groups[p]), "paper": paper,
                           "verdict": _verdict(paper, ci)}
            entry[key] = {"per_dataset": per_ds, "over_datasets": over}
        out["readings"][name] = entry
    return out


def fidelity_sections(fid: Mapping[str, Any]) -> list[str]:
    """Markdown of :func:`fidelity`: per data set and over data sets, each reading, with the verdicts."""
    if not fid.get("datasets"):
        return []
    parts = ("compute", "storage", "joint")

    def cell(c: Mapping[str, Any], n: int) -> str:
        return _pct_ci(c["mean"], c["ci95"]) + f" ({c['seeds_with_both_feasible']}/{n})"

    searched = [(name, key) for name in READINGS for key in ("single_network", "per_target")
                if any("not_searched" not in v for v in fid["readings"][name][key]["per_dataset"].values())]
    label = {"single_network": "single network", "per_target": "per target"}
    lines = ["## Fidelity to the paper: readings of the bound", "",
             "AxTrain vs BP power change under each reading of the paper's \"maximum 2% degradation to accurate "
             "implementation\" (own / BP's accurate implementation; percentage points / relative; docs/power.md, "
             "\"Statistics and readings of the bound\"). Per data set: mean over seeds [95% interval] (feasible "
             "seeds / seeds).", "",
             "| data set | reading | AxTrain | compute | storage | joint |", "|---|---|---|---|---|---|"]
    for ds in fid["datasets"]:
        for name, key in searched:
            row = fid["readings"][name][key]["per_dataset"][ds]
            if "not_searched" in row:
                lines.append(f"| {ds} | {name} | {label[key]} | not searched | not searched | not searched |")
                continue
            lines.append(f"| {ds} | {name} | {label[key]} | " + " | ".join(
                "not searched" if "not_searched" in row[p] else cell(row[p], row["seeds"]) for p in parts) + " |")
    pc, ps = fid["paper"]["compute"], fid["paper"]["storage"]
    lines += ["", "Mean over data sets [two-level 95% interval: seeds resampled within each data set] and whether the "
                  f"paper's average lies inside it (compute {pc:+.2f}%, storage {ps:+.2f}%):", "",
              "| reading | AxTrain | compute | paper compute | storage | paper storage | joint | data sets (c/s/j) |",
              "|---|---|---|---|---|---|---|---|"]
    for name, key in searched:
        o = fid["readings"][name][key]["over_datasets"]
        lines.append(f"| {name} | {label[key]} | {_pct_ci(o['compute']['mean'], o['compute']['ci95'])} | "
                     f"{o['compute']['verdict']} | {_pct_ci(o['storage']['mean'], o['storage']['ci95'])} | "
                     f"{o['storage']['verdict']} | {_pct_ci(o['joint']['mean'], o['joint']['ci95'])} | "
                     + "/".join(str(o[p]["datasets"]) for p in parts) + " |")
    return [*lines, ""]


def _satimage_remark(d: dict[str, Any]) -> list[str]:
    """The paper's one Pareto point: satimage storage at a 6-point bound, 0.66 V with -27.01% power against the
    0.85 V that the 2-point bound enforced."""
    par, bounds = d["pareto"]["storage"], d["pareto"]["bounds"]
    if 6.0 not in bounds or 2.0 not in bounds:
        return []
    i6, i2 = bounds.index(6.0), bounds.index(2.0)
    out = ["Satimage storage at a 6-point bound (paper: AxTrain reaches 0.66 V, 27.01% less power than the 0.85 V "
           "its 2-point bound enforced):", ""]
    for meth in ("bp", "per_target", "single_network"):
        if meth in par:
            c6, c2 = par[meth][i6], par[meth][i2]
            change = None if c6["power_w"] is None or c2["power_w"] is None else 100 * (c6["power_w"] / c2["power_w"] - 1)
            out.append(f"- {_LABELS[meth]}: {'/'.join(c6['chosen'])} mV (2 points: {'/'.join(c2['chosen'])} mV), "
                       f"{_pct(change)} storage power against its 2-point choice.")
    return [*out, ""]


def pareto_plot(reports: Mapping[str, dict[str, Any]], path: str | Path) -> None:
    """Minimum power (% of BP's accurate implementation) against the allowed accuracy loss: one column per
    data set, compute above, storage below; BP, AxTrain per target, single network, ApproxAnn-BP."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from axhw.common.io import atomic_write

    reps = {k: v for k, v in reports.items() if "pareto" in v}
    if not reps:
        raise ValueError("no report has Pareto curves: run `axhw power report` without --single-network")
    fig, axes = plt.subplots(2, len(reps), figsize=(3.0 * len(reps) + 0.6, 5.4), squeeze=False)
    styles = {"bp": ("tab:gray", "o"), "per_target": ("tab:blue", "s"), "single_network": ("tab:cyan", "^"),
              "approxann_bp": ("tab:orange", "D")}
    for j, (name, d) in enumerate(reps.items()):
        par = d["pareto"]
        for i, part in enumerate(("compute", "storage")):
            ax = axes[i][j]
            for meth, curve in par[part].items():
                xs = [c["bound_pp"] for c in curve if c["relative_percent"] is not None]
                ys = [c["relative_percent"] for c in curve if c["relative_percent"] is not None]
                color, marker = styles[meth]
                ax.plot(xs, ys, marker=marker, color=color, label=_LABELS[meth], lw=1.2, ms=4, drawstyle="steps-post")
            ax.set_title(f"{name}: {part}", fontsize=8)
            ax.set_xlabel("allowed accuracy loss (pp)", fontsize=7)
            if j == 0:
                ax.set_ylabel("min power (% of BP exact / 1.1 V)", fontsize=7)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    fig.suptitle("Minimum power against the accuracy bound (Pareto curves)", y=1.02)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    finally:
        plt.close(fig)
