"""The logic supply as a design knob beside the SRAM supply (issue 29, item 5).

Why: the paper lowers only the SRAM supply (its NTV weight storage); the logic stays at nominal. With a
library characterized at lower supplies (sky130 at 1.8, 1.2 and 0.9 V, docs/pdk.md) the multipliers can run
lower too, as long as they still meet the study's clock. A multiplier that meets timing computes the same
products at any supply, so the logic supply changes power, never accuracy: the search over (mode, SRAM
supply) stays the paper's, and each mode's compute power becomes the lowest over the logic supplies at which
its netlist meets the clock.

How, per network and mode: the multiplier is synthesized and measured (gate-level, cell delays, the network's
own operand stream: :meth:`axhw.power.search.measure.Measurer.compute`) in the library of each supply, and
its critical path (:func:`axhw.power.flow.sta.critical_path_ns`) decides whether the supply meets the clock
(``critical path <= 1000 / clock_mhz`` ns). The grid's points are then re-priced with each mode's best
supply and the same rule (:func:`axhw.power.search.study.choose`) picks, at the same accuracy floor, the
compute and joint choices; the SRAM-only choices of the study stay beside them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from axhw.arith.sram import NOMINAL_MV
from axhw.power.flow.tools import PDKS, find_library, selected_library, use_library

if TYPE_CHECKING:
    from axhw.power.search.measure import Measurer

__all__ = ["check_supplies", "logic_supply_search", "markdown_section", "supply_grid"]


def check_supplies(supplies_mv: tuple[int, ...]) -> None:
    """Raise ``ValueError`` (one line) unless the selected PDK has a library at every supply."""
    pdk = selected_library().pdk
    for mv in supplies_mv:
        if mv not in PDKS[pdk]:
            raise ValueError(f"--logic-supply-mv {mv}: {pdk} has libraries at {', '.join(map(str, PDKS[pdk]))} mV "
                             "(use --pdk sky130 for logic voltage scaling)")
        find_library(pdk, mv)  # the files are there


def supply_grid(meas: Measurer, ck: Path, modes: tuple[str, ...], seed: int, source: str,
                supplies_mv: tuple[int, ...], clock_mhz: float) -> dict[str, dict[str, dict[str, Any]]]:
    """Per mode, per supply (``"1200"``): critical path (ns), whether it meets ``clock_mhz``, and where it does
    the measured compute power (W) and energy per multiply (pJ); None where it does not. Every measurement is
    the study's own (cached per library)."""
    from axhw.power.flow.sta import critical_path_ns
    from axhw.power.flow.synth import synthesize
    from axhw.power.multiplier.compute import mode_config

    pdk = selected_library().pdk
    period = 1e3 / clock_mhz
    out: dict[str, dict[str, dict[str, Any]]] = {m: {} for m in modes}
    for mv in supplies_mv:
        with use_library(pdk, mv):
            for m in modes:
                crit = critical_path_ns(synthesize(mode_config(m, meas.bits)))
                row: dict[str, Any] = {"critical_path_ns": crit, "meets_clock": crit <= period + 1e-9,
                                       "compute_w": None, "energy_pj": None}
                if row["meets_clock"]:  # a supply too slow for the clock is not measured: it cannot be chosen
                    c = meas.compute(ck, m, seed, source)
                    row["compute_w"], row["energy_pj"] = c["measured"]["total_w"], c["measured"]["energy_pj"]
                out[m][str(mv)] = row
    return out


def logic_supply_search(net: dict[str, Any], grid: dict[str, dict[str, dict[str, Any]]], floor: float,
                        node_scale: float) -> dict[str, Any]:
    """The compute and joint choices of ``net`` (a :func:`axhw.power.search.study.measure_network` result with
    ``points``) when each mode runs at its lowest-power supply that meets the clock (``grid``:
    :func:`supply_grid`). A mode with no such supply drops out. The pools are the study's: compute among the
    points at the nominal SRAM supply, joint among all."""
    from axhw.power.search.grid import choose

    best: dict[str, tuple[str, float]] = {}
    for m, per in grid.items():
        ok = [(mv, r["compute_w"]) for mv, r in per.items() if r["meets_clock"]]
        if ok:
            best[m] = min(ok, key=lambda t: t[1])
    points = []
    for p in net["points"]:
        if p["mode"] not in best:
            continue
        mv, c = best[p["mode"]]
        points.append({**p, "logic_mv": float(mv), "compute_w": c, "joint_w": c * node_scale + p["storage_w"]})
    pools = {"compute": [p for p in points if p["voltage_mv"] == NOMINAL_MV], "joint": points}  # as the study's
    return {"supplies": grid, "best_supply_mv": {m: float(mv) for m, (mv, _) in best.items()},
            "floor": floor, "chosen": {part: choose(pool, f"{part}_w", floor) for part, pool in pools.items()}}


def _point(c: dict[str, Any] | None, key: str, logic_mv: float | None) -> str:
    if c is None:
        return "no feasible point"
    mv = c.get("logic_mv", logic_mv)
    logic = "" if mv is None else f", logic {mv:g} mV"
    return f"{c['mode']} @ SRAM {c['voltage_mv']:g} mV{logic}: {c[key] * 1e6:.1f} uW"


def markdown_section(d: dict[str, Any]) -> list[str]:
    """``power.md`` lines: per network, the SRAM-only choices beside those with the logic supply free, and every
    mode's critical path and power per supply (empty when the study searched no logic supply)."""
    from axhw.common.tables import markdown_table

    nets = {m: n for m, n in d["networks"].items() if n.get("logic_supply")}
    if not nets:
        return []
    cfg = d["config"]
    lines = ["", f"## Logic supply as a knob ({d.get('library', '')}; {cfg['clock_mhz']:g} MHz; "
                 f"bound {cfg['constraint_pp']:g} pp, first seed)", "",
             "Each multiplier at the lowest-power supply at which its netlist meets the clock (OpenSTA critical "
             "path); accuracy does not depend on it, so the same floor picks the points (axhw.power.search."
             "logic_voltage).", ""]
    rows = []
    for m, net in nets.items():
        for part in ("compute", "joint"):
            key = f"{part}_w"
            a, b = net["chosen"][part], net["logic_supply"]["chosen"][part]
            change = "n/a" if a is None or b is None else f"{100 * (b[key] / a[key] - 1):+.1f}%"
            rows.append([m, part, _point(a, key, net["logic_supply"].get("library_mv")), _point(b, key, None), change])
    lines.append(markdown_table(["network", "part", "logic at the library's supply", "logic supply searched",
                                 "change"], rows))
    base = d["networks"].get("bp", {}).get("logic_supply")
    if base:
        lines += ["", "AxTrain against BP with the logic supply searched: " + "; ".join(
            f"{m} {part} {100 * (n['logic_supply']['chosen'][part][f'{part}_w'] / base['chosen'][part][f'{part}_w'] - 1):+.1f}%"
            for m, n in nets.items() if m != "bp" for part in ("compute", "joint")
            if n["logic_supply"]["chosen"][part] and base["chosen"][part]) + "."]
    rows = []
    for m, net in nets.items():
        for mode, per in net["logic_supply"]["supplies"].items():
            for mv, r in sorted(per.items(), key=lambda t: -float(t[0])):
                rows.append([m, mode, mv, f"{r['critical_path_ns']:.2f}", "yes" if r["meets_clock"] else "no",
                             "-" if r["compute_w"] is None else f"{r['compute_w'] * 1e6:.1f}",
                             "-" if r["energy_pj"] is None else f"{r['energy_pj']:.3f}"])
    lines += ["", markdown_table(["network", "mode", "logic mV", "critical path ns", "meets clock", "compute uW",
                                  "pJ/multiply"], rows)]
    return lines
