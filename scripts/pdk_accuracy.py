"""Compare an axhw-characterized sky130 Liberty file with SkyWater's official TT 1.8 V figures.

The official figures come from a checkout of google/skywater-pdk-libs-sky130_fd_sc_hd, whose per-cell files
``cells/<family>/sky130_fd_sc_hd__<cell>__tt_025C_1v80.lib.json`` are the source of its Liberty files (the
repository is not vendored here; clone it and pass its folder)::

    python scripts/pdk_accuracy.py --official ~/skywater-pdk-libs-sky130_fd_sc_hd \
        --ours power/pdk/sky130/axhw_sky130_fd_sc_hd__tt_025C_1v80.lib --out docs/results/pdk

Compared per cell, each table read at the same point (bilinear, as STA reads it; 53 ps input transition,
10 fF load): delays, internal energy per output cycle (rise + fall), mean input capacitance,
``cell_leakage_power``; for the flip-flop also the clock pin's energy per clock cycle and setup/hold.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from liberty.parser import parse_liberty

from axhw.common.io import atomic_write_json, atomic_write_text
from axhw.common.tables import markdown_table
from axhw.power.pdk.report import LOAD_PF, SLEW_NS, at


def _official_table(group: dict[str, Any], name: str) -> dict[str, Any] | None:
    for key, val in group.items():
        if key.split(",")[0] == name:
            return val
    return None


def official_cell(root: Path, cell: str) -> dict[str, Any] | None:
    family = cell.removeprefix("sky130_fd_sc_hd__").rsplit("_", 1)[0]
    path = root / "cells" / family / f"{cell}__tt_025C_1v80.lib.json"
    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    out: dict[str, Any] = {"leak": d["cell_leakage_power"], "caps": {}, "arcs": {}, "energy": {}}
    for key, pin in d.items():
        if not key.startswith("pin,"):
            continue
        name = key.split(",", 1)[1]
        if pin.get("direction") == "input":
            out["caps"][name] = pin["capacitance"]
            if pin.get("clock") in (True, "true") and isinstance(pin.get("internal_power"), dict):
                ip = pin["internal_power"]
                r, f = _official_table(ip, "rise_power"), _official_table(ip, "fall_power")
                if r and f:
                    out["clock_energy"] = at(r["index_1"], None, r["values"], SLEW_NS) + \
                        at(f["index_1"], None, f["values"], SLEW_NS)
            for t in pin.get("timing", []) if isinstance(pin.get("timing"), list) else [pin.get("timing")] if pin.get("timing") else []:
                if t.get("timing_type") in ("setup_rising", "hold_rising"):
                    rc = _official_table(t, "rise_constraint")
                    out[t["timing_type"]] = at(rc["index_1"], rc["index_2"], rc["values"], 0.01, 0.01)
            continue
        timings = pin.get("timing", [])
        timings = timings if isinstance(timings, list) else [timings]
        for t in timings:
            rel = t["related_pin"]
            if rel in out["arcs"].get(name, {}):
                continue
            vals = {}
            for q in ("cell_rise", "cell_fall"):
                tab = _official_table(t, q)
                if tab:
                    vals[q] = at(tab["index_1"], tab["index_2"], tab["values"], SLEW_NS, LOAD_PF)
            out["arcs"].setdefault(name, {})[rel] = vals
        powers = pin.get("internal_power", [])
        for p in powers if isinstance(powers, list) else [powers]:
            r, f = _official_table(p, "rise_power"), _official_table(p, "fall_power")
            if r and f and "index_2" in r and p.get("related_pin"):
                e = at(r["index_1"], r["index_2"], r["values"], SLEW_NS, LOAD_PF) + \
                    at(f["index_1"], f["index_2"], f["values"], SLEW_NS, LOAD_PF)
                out["energy"].setdefault(name, {}).setdefault(p["related_pin"], e)
    return out


def _lib_table(group: Any, x: float, y: float | None = None) -> float:
    i1 = [float(v) for v in group.get_array("index_1").ravel()]
    vals = group.get_array("values")
    if y is None:
        return float(np.interp(x, i1, vals.ravel()))
    i2 = [float(v) for v in group.get_array("index_2").ravel()]
    return at(i1, i2, vals, x, y)


def our_cells(lib_path: Path) -> dict[str, dict[str, Any]]:
    lib = parse_liberty(lib_path.read_text())
    cells = {}
    for c in lib.get_groups("cell"):
        name = str(c.args[0]).strip('"')
        out: dict[str, Any] = {"leak": float(c["cell_leakage_power"]), "caps": {}, "arcs": {}, "energy": {}}
        for pin in c.get_groups("pin"):
            pname = str(pin.args[0]).strip('"')
            if str(pin["direction"]) == "input":
                out["caps"][pname] = float(pin["capacitance"])
                if str(pin["clock"]) == "true":
                    ip = pin.get_groups("internal_power")[0]
                    out["clock_energy"] = _lib_table(ip.get_group("rise_power"), SLEW_NS) + \
                        _lib_table(ip.get_group("fall_power"), SLEW_NS)
                for t in pin.get_groups("timing"):
                    kind = str(t["timing_type"])
                    if kind in ("setup_rising", "hold_rising"):
                        out[kind] = _lib_table(t.get_group("rise_constraint"), 0.01, 0.01)
                continue
            for t in pin.get_groups("timing"):
                rel = str(t["related_pin"]).strip('"')
                out["arcs"].setdefault(pname, {})[rel] = {
                    q: _lib_table(t.get_group(q), SLEW_NS, LOAD_PF) for q in ("cell_rise", "cell_fall")}
            for p in pin.get_groups("internal_power"):
                rel = str(p["related_pin"]).strip('"')
                out["energy"].setdefault(pname, {})[rel] = (_lib_table(p.get_group("rise_power"), SLEW_NS, LOAD_PF)
                                                            + _lib_table(p.get_group("fall_power"), SLEW_NS, LOAD_PF))
        cells[name] = out
    return cells


def compare(ours: dict[str, dict[str, Any]], official_root: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = []
    for cell, o in sorted(ours.items()):
        ref = official_cell(official_root, cell)
        if ref is None:
            continue
        row: dict[str, Any] = {"cell": cell.removeprefix("sky130_fd_sc_hd__")}
        row["input_cap"] = (float(np.mean(list(o["caps"].values()))) if o["caps"] else None,
                            float(np.mean(list(ref["caps"].values()))) if ref["caps"] else None)
        row["leakage"] = (o["leak"], ref["leak"])
        delays_o, delays_r, en_o, en_r = [], [], [], []
        for out, arcs in o["arcs"].items():
            for rel, vals in arcs.items():
                rv = ref["arcs"].get(out, {}).get(rel, {})
                for q in ("cell_rise", "cell_fall"):
                    if q in rv and q in vals:
                        delays_o.append(vals[q])
                        delays_r.append(rv[q])
                if rel in o["energy"].get(out, {}) and rel in ref["energy"].get(out, {}):
                    en_o.append(o["energy"][out][rel])
                    en_r.append(ref["energy"][out][rel])
        row["delay"] = (float(np.mean(delays_o)), float(np.mean(delays_r))) if delays_o else (None, None)
        row["energy"] = (float(np.mean(en_o)), float(np.mean(en_r))) if en_o else (None, None)
        for k in ("clock_energy", "setup_rising", "hold_rising"):
            if k in o and k in ref:
                row[k] = (o[k], ref[k])
        rows.append(row)
    summary = {}
    for q in ("delay", "energy", "input_cap", "leakage", "clock_energy"):
        ratios = [r[q][0] / r[q][1] for r in rows if q in r and r[q][0] is not None and r[q][1]]
        if ratios:
            summary[q] = {"cells": len(ratios), "median_ratio": statistics.median(ratios),
                          "median_abs_error": statistics.median(abs(x - 1) for x in ratios),
                          "worst_ratio": max(ratios, key=lambda x: abs(x - 1))}
    return rows, summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", type=Path, required=True, help="checkout of google/skywater-pdk-libs-sky130_fd_sc_hd")
    ap.add_argument("--ours", type=Path, required=True, help="the axhw-characterized TT 1.8 V Liberty file")
    ap.add_argument("--out", type=Path, required=True, help="folder for accuracy.json and accuracy.md")
    args = ap.parse_args()
    commit = subprocess.run(["git", "-C", str(args.official), "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    rows, summary = compare(our_cells(args.ours), args.official)
    src = f"google/skywater-pdk-libs-sky130_fd_sc_hd@{commit}, cells/*/*__tt_025C_1v80.lib.json"

    def fmt(pair: tuple[float | None, float | None] | None, scale: float = 1.0, digits: int = 1) -> str:
        if not pair or pair[0] is None or pair[1] is None:
            return "-"
        return f"{pair[0] * scale:.{digits}f} / {pair[1] * scale:.{digits}f} ({pair[0] / pair[1]:.2f})"

    table = markdown_table(
        ["cell", "delay ps (ours / official, ratio)", "internal energy fJ per cycle", "input cap fF", "leakage pW",
         "clock energy fJ per cycle", "setup / hold ps (rise)"],
        [[r["cell"], fmt(r["delay"], 1e3), fmt(r["energy"], 1e3, 2), fmt(r["input_cap"], 1e3, 2),
          fmt(r["leakage"], 1e3, 2), fmt(r.get("clock_energy"), 1e3, 1),
          (f"{r['setup_rising'][0] * 1e3:.0f} / {r['setup_rising'][1] * 1e3:.0f}, "
           f"{r['hold_rising'][0] * 1e3:.0f} / {r['hold_rising'][1] * 1e3:.0f}") if "setup_rising" in r else "-"]
         for r in rows])
    summ = markdown_table(["quantity", "cells", "median ours/official", "median |error|", "worst ratio"],
                          [[q, s["cells"], f"{s['median_ratio']:.2f}", f"{100 * s['median_abs_error']:.0f}%",
                            f"{s['worst_ratio']:.2f}"] for q, s in summary.items()])
    text = (f"# sky130 characterization against SkyWater's official TT 1.8 V data\n\nOurs: `{args.ours.name}`. "
            f"Official: {src}. Each table read at a {SLEW_NS * 1e3:.0f} ps input transition and a "
            f"{LOAD_PF * 1e3:.0f} fF load (bilinear, as STA reads it); setup/hold at 10 ps on both pins. Delays are "
            "the mean over a cell's arcs (rise and fall), energy the mean over its output arcs of rise + fall.\n\n"
            + summ + "\n\n" + table + "\n")
    atomic_write_json({"source": src, "slew_ns": SLEW_NS, "load_pf": LOAD_PF, "rows": rows, "summary": summary},
                      args.out / "accuracy.json")
    atomic_write_text(text, args.out / "accuracy.md")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
