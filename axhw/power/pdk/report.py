"""The cell table per voltage (issue 29's "must show"): each cell's delay, internal energy, leakage and input
capacitance, read from its tables at one operating point (53 ps input transition, 10 fF load, bilinear as STA
reads them), one column group per voltage."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.interpolate import RegularGridInterpolator

from axhw.common.tables import markdown_table

__all__ = ["LOAD_PF", "SLEW_NS", "at", "cell_summary", "cell_table"]

SLEW_NS, LOAD_PF = 0.0531329, 0.01


def at(ind1: Sequence[float], ind2: Sequence[float] | None, values: Any, x: float, y: float | None = None) -> float:
    """A table's value at ``(x, y)``: linear in each axis between the table's points (clamped outside)."""
    v = np.asarray(values, dtype=float)
    if ind2 is None or y is None:
        return float(np.interp(x, ind1, v.ravel()))
    x = float(np.clip(x, min(ind1), max(ind1)))
    y = float(np.clip(y, min(ind2), max(ind2)))
    f = RegularGridInterpolator((np.asarray(ind1, float), np.asarray(ind2, float)), v.reshape(len(ind1), len(ind2)))
    return float(f([[x, y]])[0])


def cell_summary(r: Mapping[str, Any]) -> dict[str, float | None]:
    """Mean delay (ns) over a cell's arcs and edges, mean internal energy per output cycle (pJ), leakage (nW),
    mean input capacitance (pF)."""
    slews, loads = r["slews_ns"], r["loads_pf"]
    delays, energies = [], []
    for out in r["outputs"].values():
        for arc in out["arcs"].values():
            delays += [at(slews, loads, arc[q], SLEW_NS, LOAD_PF) for q in ("cell_rise", "cell_fall") if q in arc]
            if "rise_power" in arc and "fall_power" in arc:
                energies.append(at(slews, loads, arc["rise_power"], SLEW_NS, LOAD_PF)
                                + at(slews, loads, arc["fall_power"], SLEW_NS, LOAD_PF))
    caps = [p["capacitance"] for p in r["inputs"].values()]
    return {"delay_ns": float(np.mean(delays)) if delays else None,
            "energy_pj": float(np.mean(energies)) if energies else None,
            "leakage_nw": float(r["cell_leakage_nw"]), "cap_pf": float(np.mean(caps)) if caps else None}


def cell_table(results: Mapping[float, Sequence[Mapping[str, Any]]]) -> str:
    """Markdown: one row per cell, delay / energy / leakage / input capacitance at each voltage."""
    volts = sorted(results, reverse=True)
    by_cell: dict[str, dict[float, dict[str, float | None]]] = {}
    for v in volts:
        for r in results[v]:
            by_cell.setdefault(r["cell"], {})[v] = cell_summary(r)

    def fmt(x: float | None, scale: float, digits: int) -> str:
        return "-" if x is None else f"{x * scale:.{digits}f}"

    header = ["cell"]
    for label in ("delay ps", "energy fJ/cycle", "leakage pW", "input cap fF"):
        header += [f"{label} {v:g} V" for v in volts]
    rows = []
    for cell in sorted(by_cell):
        row = [cell.removeprefix("sky130_fd_sc_hd__")]
        for key, scale, digits in (("delay_ns", 1e3, 1), ("energy_pj", 1e3, 2), ("leakage_nw", 1e3, 2),
                                   ("cap_pf", 1e3, 2)):
            row += [fmt(by_cell[cell][v][key], scale, digits) if v in by_cell[cell] else "not built" for v in volts]
        rows.append(row)
    return (f"Each table read at a {SLEW_NS * 1e3:.0f} ps input transition and a {LOAD_PF * 1e3:.0f} fF load; delay "
            "is the mean over the cell's arcs and edges, energy the mean internal energy per output cycle (rise + "
            "fall, without the load's C V^2), leakage the mean over input states.\n\n" + markdown_table(header, rows))
