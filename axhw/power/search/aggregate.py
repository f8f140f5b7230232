"""``power.json`` of a study: the earlier content (first seed, BP vs single-network AxTrain) plus the keys
``per_target``, ``single_network``, ``approxann`` and ``pareto`` averaged over seeds (docs/power.md,
"Minimum-power search").

Power changes are relative, ``100 * (P_method / P_BP - 1)`` (negative = saving), per seed at the same bound,
then averaged over the seeds where both sides have a feasible point (the count is kept beside the mean).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from axhw.power.search.study import NODE_SCALE_180_TO_65, config_dict, mean_or_none, power_change

if TYPE_CHECKING:
    from axhw.power.search.study import StudyResult

__all__ = ["study_dict"]

PARTS = ("compute", "storage", "joint")
_KEY = {"compute": "compute_w", "storage": "storage_w", "joint": "joint_w"}


def _block(chosen_by_seed: dict[int, dict[str, Any]], bp_by_seed: dict[int, dict[str, Any]],
           parts: tuple[str, ...] = PARTS) -> dict[str, Any]:
    """Per seed: chosen points and change vs BP; over seeds: mean change and feasible-seed count."""
    per_seed: dict[str, Any] = {}
    for s, chosen in chosen_by_seed.items():
        per_seed[str(s)] = {"chosen": {p: chosen.get(p) for p in parts},
                            "vs_bp_percent": {p: power_change(bp_by_seed[s].get(p), chosen.get(p), _KEY[p]) for p in parts}}
    mean = {p: mean_or_none([v["vs_bp_percent"][p] for v in per_seed.values()]) for p in parts}
    n = {p: sum(v["vs_bp_percent"][p] is not None for v in per_seed.values()) for p in parts}
    return {"per_seed": per_seed, "mean_vs_bp_percent": mean, "seeds_with_both_feasible": n}


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
                              "chosen": labels, "feasible_seeds": sum(x is not None for x in pts)})
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
            "mean": {k: mean_or_none([r.get(k) for r in per_seed.values()]) for k in keys}}


def study_dict(res: StudyResult) -> dict[str, Any]:
    """The content of ``power.json`` (see the module docstring)."""
    cfg = res.config
    nets = res.networks
    out: dict[str, Any] = {"config": config_dict(cfg), "node_scale_compute_180_to_65": NODE_SCALE_180_TO_65,
                           "networks": nets}
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
    out["cost"] = res.cost
    return out
