"""Accelerator-level energy tables (``axhw power accel``, ``axhw power report --accel``) and the search's
accelerator-level objective.

For each network and multiplier mode: energy per inference on the array (:func:`axhw.power.accel.energy.accelerator_energy`)
at every SRAM voltage, split into multipliers; adders, re-quantization and control; storage, and the
multipliers' share -- beside the multiplier-only compute energy of the existing flow (the network's operand
stream through the bare multiplier, :func:`axhw.power.multiplier.compute.network_compute_power`, times the multiplies
per inference), so the table shows how much of a multiplier saving survives at the accelerator level.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from axhw.common.io import atomic_write_json, atomic_write_text
from axhw.power.accel.energy import AccelConfig
from axhw.power.accel.engines import energy_per_inference
from axhw.power.flow.tools import OSU018_LABEL
from axhw.power.search.grid import Candidate

__all__ = ["accel_candidates", "markdown", "measure_network", "section", "write_accel_report"]


def measure_network(checkpoint: str | Path, modes: Sequence[str], cfg: AccelConfig, n_pairs: int = 4096,
                    seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Accelerator energy of one trained checkpoint for every mode, with the multiplier-only energy beside it.

    ``n_pairs``: operand pairs of the multiplier-only measurement (0: skip it).
    """
    import torch

    from axhw.power.multiplier.compute import network_compute_power
    from axhw.training.trainer import integer_test_inputs, load_checkpoint

    qnet, x_int = integer_test_inputs(load_checkpoint(checkpoint))
    macs = qnet.multiplies_per_inference(x_int)
    out: dict[str, Any] = {"checkpoint": str(checkpoint), "multiplies_per_inference": macs, "modes": {}}
    for mode in modes:
        t0 = time.perf_counter()
        with torch.no_grad():
            e = energy_per_inference(qnet, x_int, mode, cfg).as_dict()
            if n_pairs:
                c = network_compute_power(qnet, x_int, mode, qnet.layers[0].act_fmt.bits, n_pairs, seed,
                                          str(checkpoint))
                e["multiplier_only"] = {"energy_pj_per_multiply": c.measured.energy_pj,
                                        "energy_j_per_inference": c.measured.energy_pj * 1e-12 * macs,
                                        "vectors": c.vectors, "mismatches": c.mismatches}
        e["wall_s"] = time.perf_counter() - t0
        out["modes"][mode] = e
        if progress:
            tot = e["totals"][next(iter(e["totals"]))]
            print(f"{Path(checkpoint).parent.name} {mode}: {tot['total_j'] * 1e6:.3f} uJ/inference, multipliers "
                  f"{100 * tot['multiplier_share']:.1f}% ({e['wall_s']:.0f} s)", flush=True)
    return out


def _uj(x: float | None) -> str:
    return "-" if x is None else f"{x * 1e6:.3f}"


def section(nets: Mapping[str, dict[str, Any]], title: str = "Accelerator-level energy per inference") -> str:
    """Markdown of :func:`measure_network` results keyed by a label (``bp``, ``axtrain``, ...)."""
    from axhw.common.tables import markdown_table

    lines = [f"## {title}", ""]
    first = next((m for n in nets.values() for m in n["modes"].values()), None)
    if first is None:
        return "\n".join([*lines, "(nothing measured)", ""])
    s = first["settings"]
    engine = s.get("engine", "icarus")
    lib = first.get("library", OSU018_LABEL)  # results written before issue 29 were all osu018
    scaled = (f"logic scaled to 65 nm by {first['node_scale']:.3f}" if lib.startswith("osu018")
              else f"logic at its own node ({lib}), unscaled")
    how = {"icarus": f"gate level ({lib}, Icarus{' with cell delays' if s['timing'] else ', zero-delay'}), "
                     f"{first['activity']['samples']} test samples, outputs checked against forward_int",
           "verilator": f"gate level ({lib}, Verilator, zero-delay: no glitches), {first['activity']['samples']} "
                        "test samples, outputs checked against forward_int",
           "model": f"action-count model (axhw.power.accel.model: no simulation; switching energies calibrated on "
                    f"Icarus runs with cell delays of small networks), {first['activity']['samples']} test samples"
           }[engine]
    lines += [
        f"Whole PE array ({first['config_id']}), {how}; {scaled}; memories as SRAM (65 nm model; voltage-scaled: {', '.join(s['scaled_memories'])}"
        f"; the rest at 1.1 V); leakage over the inference at {_clock_text(s, nets)}. uJ per inference.",
        "",
    ]
    rows = []
    for label, net in nets.items():
        for mode, e in net["modes"].items():
            only = e.get("multiplier_only", {}).get("energy_j_per_inference")
            for v, t in e["totals"].items():
                rows.append([label, mode, v, _uj(t["total_j"]), _uj(t["multipliers_j"]), _uj(t["adders_requant_control_j"]),
                             _uj(t["storage_j"]), f"{100 * t['multiplier_share']:.1f}%",
                             _uj(e["logic_j"]["multipliers"]), _uj(only)])
    lines.append(markdown_table(["network", "mode", "SRAM mV", "total", "multipliers", "adders+requant+control",
                                 "storage", "multiplier share", f"multipliers {lib}", f"multiplier-only flow {lib}"],
                                rows))
    lines += ["", f"Logic ({lib}, uJ per inference; clock = flip-flop clock pins in the cycles their clock ticks, and the clock gates):", ""]
    rows = []
    for label, net in nets.items():
        for mode, e in net["modes"].items():
            lj, ck, a = e["logic_j"], e["logic_clock_j"], e["activity"]
            rows.append([label, mode, _uj(lj["multipliers"]), _uj(lj["adders"]), _uj(lj["requantization"]),
                         _uj(lj["control"]), _uj(sum(ck.values())), f"{a['cycles_per_inference']:.0f}",
                         f"{a['toggles_per_cycle']:.0f}" if "toggles_per_cycle" in a else "-",
                         f"{a['outputs_compared']}/{a['mismatches']}" if a["outputs_compared"] else "-",
                         f"{a['sim_seconds']:.0f}", f"{e.get('wall_s', 0):.0f}"])
    lines.append(markdown_table(["network", "mode", "multipliers", "adders", "requant", "control", "of which clock",
                                 "cycles/inference", "toggles/cycle", "outputs/mismatches", "sim s", "wall s"], rows))
    return "\n".join(lines) + "\n"


def markdown(result: dict[str, Any]) -> str:
    """The whole ``accel.md``."""
    return "# Accelerator-level energy\n\n" + section(result["networks"])


def write_accel_report(result: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """``accel.json`` and ``accel.md`` in ``out_dir``."""
    out = Path(out_dir)
    return [atomic_write_json(result, out / "accel.json"), atomic_write_text(markdown(result), out / "accel.md")]


def _clock_text(settings: dict[str, Any], nets: Mapping[str, dict[str, Any]]) -> str:
    """The clock(s) leakage was charged at: the asked one, or each array's fastest met clock (older results:
    the setting alone)."""
    clocks = sorted({round(e["activity"]["clock_mhz"], 1) for net in nets.values() for e in net["modes"].values()
                     if e.get("activity", {}).get("clock_mhz")})
    if not clocks:
        return f"{settings['clock_mhz']:g} MHz"
    lib = next((e.get("library") for net in nets.values() for e in net["modes"].values()), None) or OSU018_LABEL
    met = "" if settings.get("clock_mhz") else f" (the fastest clock each array meets at {lib}, STA)"
    return f"{clocks[0]:g} MHz{met}" if len(clocks) == 1 else f"{clocks[0]:g}-{clocks[-1]:g} MHz{met}"


def accel_candidates(modes: Sequence[str], voltages: Sequence[float],
                     energy_j: Callable[[str, float], float], inference_s: float) -> list[Candidate]:
    """The joint (mode, voltage) grid ordered by accelerator-level energy per inference, cheapest first
    (ties: the order of ``modes``, then ``voltages``); ``order_w`` = energy per inference / ``inference_s``
    (the array's average power at its throughput).

    >>> e = {("exact", 1100.0): 3.0, ("K2", 1100.0): 2.5, ("exact", 660.0): 2.0, ("K2", 660.0): 1.9}
    >>> [(c.mode, c.voltage_mv) for c in accel_candidates(["exact", "K2"], [1100.0, 660.0],
    ...                                                      lambda m, v: e[(m, v)], 1.0)][:2]
    [('K2', 660.0), ('exact', 660.0)]
    """
    grid = [(m, float(v)) for m in modes for v in voltages]
    rank = {g: i for i, g in enumerate(grid)}
    cands = [Candidate(m, v, energy_j(m, v) / inference_s) for m, v in grid]
    return sorted(cands, key=lambda c: (c.order_w, rank[(c.mode, c.voltage_mv)]))


# --- the minimum-power study at the accelerator level ------------------------------------------------------

_LABELS = {"bp": "BP", "per_target": "AxTrain (per target)", "single": "AxTrain (single network)"}


def _study_networks(d: dict[str, Any], seed: str) -> dict[str, dict[str, Any]]:
    nets = (d.get("per_seed_networks") or {}).get(seed)
    return nets if nets is not None else d["networks"]


def study_accelerator(d: dict[str, Any], cfg: AccelConfig, search: bool = False, progress: bool = False,
                      energy: Callable[[str, str], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Accelerator-level energy of a minimum-power study's chosen configurations (``power.json`` as a dict).

    For every seed: BP's, per-target AxTrain's and single-network AxTrain's compute and joint choices, each on
    its own network (one gate-level run per (network, mode); the voltage enters through the SRAM model), and
    AxTrain's change against BP. With ``search``, the accelerator-level objective: for BP and the single
    AxTrain network (whose whole (mode, voltage) grid the study evaluated), the configuration of least
    accelerator energy per inference that meets the study's accuracy floor (:func:`accel_candidates`, visited
    cheapest first as the study's search; every mode of the grid is simulated on the network).

    ``energy(checkpoint, mode)``: the :meth:`AccelEnergy.as_dict` to use (default: measured here).
    """
    from dataclasses import asdict, replace

    from axhw.power.search.grid import first_feasible

    study = d["config"]
    cfg = replace(cfg, voltages=tuple(float(v) for v in study["voltages"]))
    cache: dict[tuple[str, str], dict[str, Any]] = {}

    def measure(ck: str, mode: str) -> dict[str, Any]:
        if (ck, mode) not in cache:
            if energy is not None:
                cache[(ck, mode)] = energy(ck, mode)
            else:
                import torch

                from axhw.training.trainer import integer_test_inputs, load_checkpoint

                t0 = time.perf_counter()
                qnet, x_int = integer_test_inputs(load_checkpoint(ck))
                with torch.no_grad():
                    e = energy_per_inference(qnet, x_int, mode, cfg).as_dict()
                e["wall_s"] = time.perf_counter() - t0
                cache[(ck, mode)] = e
                if progress:
                    print(f"accelerator energy: {Path(ck).parent.name} {mode} ({e['wall_s']:.0f} s)", flush=True)
        return cache[(ck, mode)]

    def row(label: str, part: str, point: dict[str, Any] | None, ck: str) -> dict[str, Any]:
        if point is None:
            return {"network": label, "part": part, "mode": None, "voltage_mv": None, "checkpoint": ck}
        e = measure(ck, point["mode"])
        t = e["totals"][f"{float(point['voltage_mv']):g}"]
        return {"network": label, "part": part, "mode": point["mode"], "voltage_mv": float(point["voltage_mv"]),
                "checkpoint": ck, "accuracy": point.get("accuracy"), **t,
                "logic_j": e["logic_j"], "library": e.get("library", OSU018_LABEL),
                "cycles_per_inference": e["activity"]["cycles_per_inference"],
                "multiplies_per_inference": e["multiplies_per_inference"]}

    seeds: dict[str, Any] = {}
    for seed in [str(s) for s in d.get("seeds", [0])]:
        nets = _study_networks(d, seed)
        rows = []
        for part in ("compute", "joint"):
            rows.append(row("bp", part, nets["bp"]["chosen"][part], nets["bp"]["checkpoint"]))
            pt = ((d.get("per_target") or {}).get("per_seed", {}).get(seed, {}).get("chosen") or {}).get(part)
            if pt is not None:
                rows.append(row("per_target", part, pt, pt["checkpoint"]))
            if "axtrain" in nets:
                rows.append(row("single", part, nets["axtrain"]["chosen"][part], nets["axtrain"]["checkpoint"]))
        bp = {r["part"]: r for r in rows if r["network"] == "bp"}
        for r in rows:
            b = bp[r["part"]]
            r["vs_bp_percent"] = (100 * (r["total_j"] / b["total_j"] - 1)
                                  if r.get("total_j") and b.get("total_j") else None)
        entry: dict[str, Any] = {"chosen": rows}
        if search:
            entry["search"] = {}
            for label, net in (("bp", nets["bp"]), ("single", nets.get("axtrain"))):
                if net is None:
                    continue
                ref = nets["bp"] if study.get("reference") == "bp" else net
                floor = ref["exact_nominal_accuracy"] - study["constraint_pp"] / 100
                acc = {(p["mode"], float(p["voltage_mv"])): (p["accuracy"], p["accuracy_std"]) for p in net["points"]}
                ck = net["checkpoint"]
                cyc = measure(ck, study["modes"][0])["activity"]["cycles_per_inference"]

                def energy_j(m: str, v: float, ck: str = ck) -> float:
                    return measure(ck, m)["totals"][f"{v:g}"]["total_j"]

                def accuracy(c: Candidate, acc: dict[tuple[str, float], tuple[float, float]] = acc) -> tuple[float, float]:
                    return acc[(c.mode, c.voltage_mv)]

                first = measure(ck, study["modes"][0])  # older results: the clock of their settings
                clock = first["activity"].get("clock_mhz") or first["settings"]["clock_mhz"]
                cands = accel_candidates(study["modes"], cfg.voltages, energy_j, cyc / (clock * 1e6))
                out = first_feasible(cands, accuracy, floor, "accel", study["constraint_pp"])
                res = out.as_dict()
                if out.chosen is not None:
                    res["point"] = row(label, "accel", {"mode": out.chosen.mode, "voltage_mv": out.chosen.voltage_mv,
                                                        "accuracy": acc[(out.chosen.mode, out.chosen.voltage_mv)][0]},
                                       ck)
                entry["search"][label] = res
        seeds[seed] = entry
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("use_cache", "cache_root")}
    return {"settings": settings, "per_seed": seeds,
            "measured": {f"{Path(ck).parent.name}/{m}": e for (ck, m), e in cache.items()}}


def study_section(acc: dict[str, Any]) -> str:
    """Markdown of :func:`study_accelerator` (appended to ``power.md`` by ``power report --accel``)."""
    from axhw.common.tables import markdown_table

    s = acc["settings"]
    lines = ["## Accelerator-level energy per inference at the chosen configurations", "",
             f"Whole {s['pes']}-PE array at gate level on {s['samples']} test samples of each network (outputs checked "
             "bit for bit), memories as SRAM (voltage-scaled: " + ", ".join(s["scaled_memories"]) + "), logic scaled "
             "to 65 nm as the joint power; uJ per inference; multiplier share = multipliers / total.", ""]
    rows = []
    for seed, entry in acc["per_seed"].items():
        for r in entry["chosen"]:
            if r["mode"] is None:
                rows.append([seed, _LABELS.get(r["network"], r["network"]), r["part"], "none", "-", "-", "-", "-", "-",
                             "-", "-"])
                continue
            vs = "-" if r["vs_bp_percent"] is None or r["network"] == "bp" else f"{r['vs_bp_percent']:+.1f}%"
            rows.append([seed, _LABELS.get(r["network"], r["network"]), r["part"],
                         f"{r['mode']}@{r['voltage_mv']:g}mV", _uj(r["total_j"]), _uj(r["multipliers_j"]),
                         _uj(r["adders_requant_control_j"]), _uj(r["storage_j"]),
                         f"{100 * r['multiplier_share']:.1f}%", vs, f"{r['cycles_per_inference']:.0f}"])
    lines.append(markdown_table(["seed", "network", "choice", "config", "total", "multipliers",
                                 "adders+requant+control", "storage", "multiplier share", "vs BP", "cycles"], rows))
    searched = [(seed, label, res) for seed, entry in acc["per_seed"].items()
                for label, res in (entry.get("search") or {}).items()]
    if searched:
        lines += ["", "Minimum accelerator energy per inference meeting the accuracy floor (objective: the whole "
                  "array, every (mode, voltage) of the study's grid; visited cheapest first):", ""]
        rows = []
        for seed, label, res in searched:
            p = res.get("point")
            visited = " ".join(f"{v['mode']}@{v['voltage_mv']:g}{'+' if v['feasible'] else '-'}" for v in res["visited"])
            rows.append([seed, _LABELS.get(label, label), "none" if p is None else f"{p['mode']}@{p['voltage_mv']:g}mV",
                         "-" if p is None else _uj(p["total_j"]),
                         "-" if p is None else f"{100 * p['multiplier_share']:.1f}%", visited])
        lines.append(markdown_table(["seed", "network", "chosen", "total", "multiplier share", "visited (+ feasible)"],
                                    rows))
    return "\n".join(lines) + "\n"
