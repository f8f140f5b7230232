"""``power.json`` of a study: the earlier content (first seed, BP vs single-network AxTrain) plus the keys
``per_target``, ``single_network``, ``approxann`` and ``pareto`` averaged over seeds (docs/power.md,
"Minimum-power search").

Power changes are relative, ``100 * (P_method / P_BP - 1)`` (negative = saving), per seed at the same bound,
then averaged over the seeds where both sides have a feasible point (the count is kept beside the mean).
Every mean over seeds has its 95% percentile-bootstrap interval beside it (``ci95_*``, :mod:`axhw.power.search.stats`;
None with fewer than 2 feasible seeds) and the per-seed values it averages (``*_values``).

``readings`` re-scores the stored grids of BP and the single-network AxTrain (every seed's whole grid is in
``per_seed_networks``) under the four readings of the paper's bound (:mod:`axhw.power.search.bound`: own or BP's
accurate implementation, percentage points or relative), without retraining; per-target AxTrain networks exist
only for the candidates the search visited, so its readings come from the study (``per_target.search[seed]
["readings"][reading]``, the shape of ``["bounds"][bound]``), and are marked ``not_searched`` where absent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from axhw.arith.sram import NOMINAL_MV
from axhw.power.flow.tools import selected_library
from axhw.power.search.bound import READINGS, floor, parse_reading, reading_name, rule_text
from axhw.power.search.stats import HINGE_SAMPLES, bootstrap_mean_ci, margin_samples
from axhw.power.search.study import NODE_SCALE_180_TO_65, choose, config_dict, mean_or_none, power_change

if TYPE_CHECKING:
    from axhw.power.search.study import StudyResult

__all__ = ["ci95", "readings_block", "rescore", "study_dict"]

PARTS = ("compute", "storage", "joint")
_KEY = {"compute": "compute_w", "storage": "storage_w", "joint": "joint_w"}


def ci95(values: list[float | None]) -> list[float] | None:
    """``[lo, hi]`` of the seeded 95% percentile bootstrap of the mean of the values that are not None (None
    with fewer than 2: an interval needs a spread)."""
    _, lo, hi = bootstrap_mean_ci([v for v in values if v is not None])
    return None if lo is None or hi is None else [lo, hi]


def _block(chosen_by_seed: dict[Any, dict[str, Any]], bp_by_seed: dict[Any, dict[str, Any]],
           parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    """Per seed: chosen points and change vs BP; over seeds: mean change, its 95% interval, the values it
    averages (seeds where both sides are feasible, in seed order) and their count."""
    per_seed: dict[str, Any] = {}
    for s, chosen in chosen_by_seed.items():
        per_seed[str(s)] = {"chosen": {p: chosen.get(p) for p in parts},
                            "vs_bp_percent": {p: power_change(bp_by_seed[s].get(p), chosen.get(p), _KEY[p]) for p in parts}}
    values = {p: [v["vs_bp_percent"][p] for v in per_seed.values() if v["vs_bp_percent"][p] is not None] for p in parts}
    return {"per_seed": per_seed, "mean_vs_bp_percent": {p: mean_or_none(values[p]) for p in parts},
            "seeds_with_both_feasible": {p: len(values[p]) for p in parts},
            "ci95_vs_bp_percent": {p: ci95(values[p]) for p in parts}, "vs_bp_percent_values": values}


def _pareto(res: StudyResult) -> dict[str, Any]:
    """Minimum power per method and bound, compute and storage, mean over seeds; ``relative_percent`` is the
    power as a percentage of BP's accurate implementation (exact multiplier / 1.1 V) of the same seed."""
    cfg = res.config
    out: dict[str, Any] = {"bounds": list(cfg.all_bounds), "compute": {}, "storage": {}}

    def pick(d: dict[str, Any], method: str, b: str, part: str) -> dict[str, Any] | None:
        if method in ("bp", "single_network"):
            return d["networks"]["bp" if method == "bp" else "axtrain"]["by_bound"][b][part]
        if method == "per_target":
            row = d.get("per_target", {}).get("bounds", {}).get(b, {})
            return row.get(part, {}).get("point") if part in row else None
        aa = d.get("approxann", {}).get("bp", {}).get(b)
        return None if aa is None else {"mode": f"{aa['best']} mix {100 * aa['modes'][aa['best']]['fraction']:.0f}%",
                                        "voltage_mv": 1100.0, "compute_w": aa["power_w"]}

    methods = ["bp", "single_network"]
    if cfg.search == "per_target":
        methods.insert(1, "per_target")
    for part in ("compute", "storage"):
        for method in [*methods, *(["approxann_bp"] if part == "compute" and cfg.approxann_modes
                                   and cfg.dataset != "mnist_cnn" else [])]:
            curve = []
            for b in map(str, cfg.all_bounds):
                pts, rel, labels = [], [], []
                for d in res.per_seed.values():
                    bp = d["networks"]["bp"]
                    norm = bp["compute"]["exact"]["measured"]["total_w"] if part == "compute" else \
                        bp["storage"][str(1100.0)]["total_w"]
                    p = pick(d, method, b, part)
                    w = None if p is None else p[_KEY[part]]
                    pts.append(w)
                    rel.append(None if w is None else 100.0 * w / norm)
                    labels.append("none" if p is None else (p["mode"] if part == "compute" else f"{p['voltage_mv']:g}"))
                curve.append({"bound_pp": float(b), "power_w": mean_or_none(pts), "relative_percent": mean_or_none(rel),
                              "chosen": labels, "feasible_seeds": sum(x is not None for x in pts),
                              "power_w_ci95": ci95(pts), "relative_percent_ci95": ci95(rel),
                              "relative_percent_values": rel})
            out[part][method] = curve
    return out


def _approxann_block(res: StudyResult) -> dict[str, Any]:
    cfg = res.config
    b = str(cfg.constraint_pp)
    per_seed: dict[str, Any] = {}
    for s, d in res.per_seed.items():
        aa = d.get("approxann")
        if aa is None:
            continue
        ax_pt = d.get("per_target", {}).get("bounds", {}).get(b, {}).get("compute", {}).get("point")
        single = d["networks"]["axtrain"]["chosen"]["compute"] if "axtrain" in d["networks"] else None
        row: dict[str, Any] = {"runs": aa}
        for pre, by_bound in aa.items():
            p_aa = by_bound[b]["power_w"]
            row[f"approxann_{pre}_w"] = p_aa
            row[f"per_target_vs_approxann_{pre}_percent"] = power_change({"w": p_aa}, None if ax_pt is None else
                                                                       {"w": ax_pt["compute_w"]}, "w")
            row[f"single_vs_approxann_{pre}_percent"] = power_change({"w": p_aa}, None if single is None else
                                                                   {"w": single["compute_w"]}, "w")
        per_seed[str(s)] = row
    if not per_seed:
        why = "convolutional network (ApproxAnn is FC-only here, as Fig. 8)" if cfg.dataset == "mnist_cnn" else \
            "approxann_modes is empty"
        return {"skipped": why}
    keys = sorted({k for r in per_seed.values() for k in r if k.endswith("_percent") or k.endswith("_w")})
    return {"bound_pp": cfg.constraint_pp, "modes": list(cfg.approxann_modes),
            "retrain_epochs": cfg.approxann_retrain_epochs, "per_seed": per_seed,
            "mean": {k: mean_or_none([r.get(k) for r in per_seed.values()]) for k in keys},
            "ci95": {k: ci95([r.get(k) for r in per_seed.values()]) for k in keys}}


def study_dict(res: StudyResult) -> dict[str, Any]:
    """The content of ``power.json`` (see the module docstring)."""
    cfg = res.config
    nets = res.networks
    lib = selected_library()
    out: dict[str, Any] = {"config": config_dict(cfg), "library": lib.label, "node_scale_compute": lib.node_scale,
                           "networks": nets}
    if lib.pdk == "osu018":
        out["node_scale_compute_180_to_65"] = NODE_SCALE_180_TO_65  # the key reports written before issue 29 read
    if "bp" in nets and "axtrain" in nets:
        bp, ax = nets["bp"]["chosen"], nets["axtrain"]["chosen"]
        out["axtrain_vs_bp_percent"] = {p: power_change(bp[p], ax[p], _KEY[p]) for p in PARTS}
    out["seeds"] = list(cfg.seeds)
    out["default_axtrain"] = "per_target" if cfg.search == "per_target" else "single_network"
    if "bp" not in nets:
        return out
    bp_chosen = {s: d["networks"]["bp"]["chosen"] for s, d in res.per_seed.items()}
    out["bp"] = {"per_seed": {str(s): {"exact_nominal_accuracy": d["networks"]["bp"]["exact_nominal_accuracy"],
                                       "chosen": {p: bp_chosen[s][p] for p in PARTS}} for s, d in res.per_seed.items()}}
    if "axtrain" in nets:
        out["single_network"] = {
            "target": {"multiplier": cfg.target_multiplier, "voltage_mv": cfg.target_voltage_mv},
            **_block({s: d["networks"]["axtrain"]["chosen"] for s, d in res.per_seed.items()}, bp_chosen)}
    if cfg.search == "per_target":
        main = str(cfg.constraint_pp)
        chosen = {s: {p: d["per_target"]["bounds"][main].get(p, {}).get("point") for p in PARTS}
                  for s, d in res.per_seed.items()}
        out["per_target"] = {**_block(chosen, bp_chosen),
                             "search": {str(s): d["per_target"] for s, d in res.per_seed.items()}}
    out["approxann"] = _approxann_block(res)
    out["pareto"] = _pareto(res)
    out["per_seed_networks"] = {str(s): d["networks"] for s, d in res.per_seed.items()}
    readings = readings_block(out)
    if readings is not None:
        out["readings"] = readings
    out["cost"] = res.cost
    return out


def _reference(net: dict[str, Any]) -> float:
    """A network's accurate-implementation accuracy on the split choices read: its exact multiplier at the
    nominal voltage in its own grid (the selection split by construction), else ``exact_nominal_accuracy``."""
    for p in net["points"]:
        if p["mode"] == "exact" and float(p["voltage_mv"]) == NOMINAL_MV:
            return float(p["accuracy"])
    return float(net["exact_nominal_accuracy"])


def _pools(points: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The candidates of each part, as the study selects (Fig. 9): compute at the nominal voltage, storage with
    the exact multiplier, joint over the whole grid."""
    return {"compute": [p for p in points if float(p["voltage_mv"]) == NOMINAL_MV],
            "storage": [p for p in points if p["mode"] == "exact"], "joint": list(points)}


def _margins(pool: list[dict[str, Any]], key: str, chosen: dict[str, Any] | None, fl: float,
             n: int | None) -> dict[str, Any] | None:
    """How many samples the choice hinges on: the chosen point's margin to the floor and the best margin of a
    cheaper (rejected) candidate; None without the selection split's sample count (a point's ``n_samples``)."""
    if n is None:
        return None
    m_chosen = None if chosen is None else margin_samples(chosen["accuracy"], fl, n)
    cheaper = [p for p in pool if chosen is None or p[key] < chosen[key]]
    m_cheaper = max((margin_samples(p["accuracy"], fl, n) for p in cheaper), default=None)
    return {"chosen": m_chosen, "best_cheaper": m_cheaper,
            "hinges": (m_chosen is not None and m_chosen <= HINGE_SAMPLES)
            or (m_cheaper is not None and m_cheaper >= -HINGE_SAMPLES)}


def rescore(net: dict[str, Any], reference: float, bound: float, kind: str) -> dict[str, Any]:
    """Re-select one measured network's grid under a floor (:func:`axhw.power.search.bound.floor`): for each
    part the lowest-power point at or above it (the study's :func:`~axhw.power.search.study.choose`), with the
    margins in samples when the points carry ``n_samples``.

    >>> pts = [{"mode": m, "voltage_mv": 1100.0, "accuracy": a, "compute_w": w, "storage_w": 1.0, "joint_w": w}
    ...        for m, a, w in (("exact", 0.95, 3.0), ("K2", 0.932, 1.0))]
    >>> rescore({"points": pts}, 0.95, 2.0, "pp")["chosen"]["compute"]["mode"]
    'K2'
    >>> rescore({"points": pts}, 0.95, 2.0, "relative")["chosen"]["compute"]["mode"]  # floor 0.931
    'K2'
    >>> rescore({"points": pts}, 0.96, 2.0, "pp")["chosen"]["compute"]["mode"]  # BP's reference 0.96: floor 0.94
    'exact'
    """
    fl = floor(reference, bound, kind)  # type: ignore[arg-type]
    pools = _pools(net["points"])
    chosen = {part: choose(pools[part], _KEY[part], fl) for part in PARTS}
    out: dict[str, Any] = {"reference_accuracy": reference, "floor": fl, "chosen": chosen}
    n = next((int(p["n_samples"]) for p in net["points"] if p.get("n_samples")), None)
    if n is not None:
        out["margins_samples"] = {part: _margins(pools[part], _KEY[part], chosen[part], fl, n) for part in PARTS}
    return out


def _per_target_reading(d: dict[str, Any], name: str, bound: float, study_reading: str,
                        bp_chosen: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per-target AxTrain under one reading, from the study's search (no network exists for unvisited candidates)."""
    search = d.get("per_target", {}).get("search")
    if not search:
        return {"not_searched": "no per-target search in this report (--single-network)"}
    rows: dict[str, dict[str, Any]] = {}
    for s in bp_chosen:
        seed_search = search.get(s, {})
        row = seed_search.get("readings", {}).get(name)
        if name == study_reading:  # the study's own reading is also its bounds row, the joint part searched there
            main = seed_search.get("bounds", {}).get(str(float(bound)))
            row = row if main is None else {**main, **(row or {})}
        if row is None:
            return {"not_searched": f"the per-target search ran under {study_reading} only (its networks exist "
                                    "only for the candidates it visited)"}
        rows[s] = row
    chosen = {s: {p: (row[p].get("point") if isinstance(row.get(p), dict) else None) for p in PARTS}
              for s, row in rows.items()}
    blk = _block(chosen, bp_chosen)
    for s, row in rows.items():
        blk["per_seed"][s]["floor"] = row.get("floor")
        blk["per_seed"][s]["searched_parts"] = [p for p in PARTS if p in row]
    blk["searched_parts"] = [p for p in PARTS if all(p in row for row in rows.values())]  # others: not searched
    return blk


def readings_block(d: dict[str, Any]) -> dict[str, Any] | None:
    """``power.json``'s ``readings`` from a study dictionary (``d``: :func:`study_dict`'s content, or a
    ``power.json`` read back, so older reports can be re-scored too); None without BP and AxTrain grids.

    For each reading of :data:`~axhw.power.search.bound.READINGS` at the study's ``constraint_pp``: BP's and the
    single-network AxTrain's choice per seed (its reference, floor and chosen point per part), the change vs BP
    per seed, mean, 95% interval and feasible seeds (:func:`_block`), and per-target AxTrain from the study.
    Under ``bp-*`` BP's own reference is BP's, so BP's choices equal those of ``own-*``.
    """
    cfg = d["config"]
    bound = float(cfg["constraint_pp"])
    nets_by_seed = d.get("per_seed_networks") or {str(d.get("seeds", [0])[0]): d["networks"]}
    if not nets_by_seed or any("bp" not in n or "axtrain" not in n for n in nets_by_seed.values()):
        return None
    study_reading = reading_name(cfg.get("reference", "own"), "pp")
    by: dict[str, Any] = {}
    for name in READINGS:
        ref, kind = parse_reading(name)
        bp_sel: dict[str, dict[str, Any]] = {}
        ax_sel: dict[str, dict[str, Any]] = {}
        for s, nets in nets_by_seed.items():
            bp_ref = _reference(nets["bp"])
            bp_sel[s] = rescore(nets["bp"], bp_ref, bound, kind)
            ax_sel[s] = rescore(nets["axtrain"], _reference(nets["axtrain"]) if ref == "own" else bp_ref, bound, kind)
        bp_chosen = {s: v["chosen"] for s, v in bp_sel.items()}
        single = _block({s: v["chosen"] for s, v in ax_sel.items()}, bp_chosen)
        for s, v in ax_sel.items():
            single["per_seed"][s].update({k: v[k] for k in v if k != "chosen"})
        by[name] = {"rule": rule_text(name, bound), "reference": ref, "kind": kind,
                    "bp": {"per_seed": bp_sel}, "single_network": single,
                    "per_target": _per_target_reading(d, name, bound, study_reading, bp_chosen)}
    return {"bound_pp": bound, "study_reading": study_reading, "readings": list(READINGS), "by_reading": by}
