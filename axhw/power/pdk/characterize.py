"""Characterize a combinational cell at one supply: timing and internal-energy tables, pin capacitances,
per-state leakage, and a DC check of its function, all from one batch of ngspice copies per try.

Conventions (sky130_fd_sc_hd's own): delays from 50% of the input to 50% of the output, transitions 20-80%
(``slew_derate_from_library`` 1), the table's input transition is the 20-80% time of a linear ramp.

Energy of one output edge = V * int(-i_VDD) dt over the edge's window, less the settled leakage over the
window. For an output rise the supply also charges the load: the table holds that energy less C_L V^2 (Liberty's
internal energy; the tool adds C_L V^2 / 2 per toggle as switching energy), C_L x the output's actual step x V
to be exact when the window closes just short of the rail. Energy drawn from the input source
is the driver's (lctime counted it; issue 29). When two outputs toggle together (full/half adders) the edge's
internal energy is split evenly between them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

import numpy as np

from axhw.power.pdk.cells import CellSpec, combinational_arcs
from axhw.power.pdk.ngspice import Probe, SimulationFailed, Traces, operating_point, simulate
from axhw.power.pdk.source import PdkSource
from axhw.power.pdk.waveform import crossing, integral, supply_energy, transition
from axhw.power.pdk.waveform import settled as settled_at

__all__ = [
    "SKY130_SLEWS_NS",
    "CharacterizationFailed",
    "Grid",
    "characterize_comb",
    "default_grid",
    "max_step_ns",
    "when",
]

#: sky130_fd_sc_hd's input-transition axis (ns, 20-80%), as in its official Liberty files.
SKY130_SLEWS_NS = (0.01, 0.0230506, 0.0531329, 0.122474, 0.282311, 0.650743, 1.5)

#: the rise/fall ramp's full swing takes slew / (0.8 - 0.2)
FULL_PER_SLEW = 1.0 / 0.6
#: an edge is settled when the output is within this fraction of VDD of its rail 90% into the window
SETTLE_TOL = 0.01
#: the first input edge (ns): the settling of the operating point comes first
T0_NS = 0.2


class CharacterizationFailed(RuntimeError):
    """A cell could not be characterized at a voltage (no convergence, never settled, wrong function)."""


@dataclass(frozen=True)
class Grid:
    """Table axes: input transitions (ns) and output loads (pF) for a drive-1 cell (scaled by drive)."""

    slews_ns: tuple[float, ...]
    loads_pf: tuple[float, ...]

    def loads_for(self, cell: CellSpec) -> tuple[float, ...]:
        return tuple(round(c * cell.drive, 7) for c in self.loads_pf)


def default_grid(points: int = 7) -> Grid:
    """7x7 by default: sky130's slew axis, loads 0.5 fF to 100 fF geometric (``points`` < 7 subsamples both)."""
    loads = tuple(float(f"{c:.4g}") for c in np.geomspace(0.0005, 0.1, 7))
    if points >= 7:
        return Grid(SKY130_SLEWS_NS, loads)
    pick = np.unique(np.round(np.linspace(0, 6, points)).astype(int))
    return Grid(tuple(SKY130_SLEWS_NS[k] for k in pick), tuple(loads[k] for k in pick))


def max_step_ns(grid: Grid, supply: float) -> float:
    """ngspice's largest time step: a quarter of the fastest input ramp at 1.8 V (4.2 ps; a 4x finer step
    moved no table entry of xor2_1 by more than 0.35%, a 5x coarser one up to 5.7%), longer below 1.8 V where
    every output edge slows down (delays grow ~(1.8/V)^3 to ^5 over 1.8-0.9 V); the ramps' own corners are
    breakpoints, so they are resolved at any step."""
    return min(grid.slews_ns) * FULL_PER_SLEW / 4 * max(1.0, (1.8 / supply) ** 3)


def when(assign: Sequence[tuple[str, int]]) -> str:
    """A Liberty ``when`` condition for an assignment: ``(("A", 1), ("B", 0))`` -> ``A&!B``."""
    return "&".join(p if v else f"!{p}" for p, v in assign) or "1"


def _ramp(slew: float, t0: float, window: float, first_high: bool) -> tuple[tuple[float, float], ...]:
    """Up at ``t0`` then down at ``t0 + window`` (or the reverse when the pin starts high), full swing 1 V."""
    full = slew * FULL_PER_SLEW
    a, b = (1.0, 0.0) if first_high else (0.0, 1.0)
    return ((0.0, a), (t0, a), (t0 + full, b), (t0 + window, b), (t0 + window + full, a))


@dataclass(frozen=True)
class _Job:
    kind: str  # "arc" (the output moves) | "idle" (it does not)
    pin: str
    side: tuple[tuple[str, int], ...]
    slew_i: int
    load_i: int


def _probes(cell: CellSpec, grid: Grid, supply: float, window: float) -> tuple[list[_Job], list[Probe]]:
    loads = grid.loads_for(cell)
    jobs: list[_Job] = []
    probes: list[Probe] = []
    sides: dict[tuple[str, tuple[tuple[str, int], ...]], bool] = {}
    for arc in combinational_arcs(cell):
        sides[(arc.pin, arc.side)] = True
    for pin in cell.inputs:
        others = [p for p in cell.inputs if p != pin]
        for bits in product((0, 1), repeat=len(others)):
            side = tuple(zip(others, bits, strict=True))
            kind = "arc" if (pin, side) in sides else "idle"
            load_idx = range(len(loads)) if kind == "arc" else [0]
            for si, slew in enumerate(grid.slews_ns):
                for li in load_idx:
                    wave = tuple((t, v * supply) for t, v in _ramp(slew, T0_NS, window, False))
                    pins: dict[str, Any] = {p: v * supply for p, v in side}
                    pins[pin] = wave
                    probes.append(Probe(pins, {o: loads[li] for o in cell.output_pins}, (pin,)))
                    jobs.append(_Job(kind, pin, side, si, li))
    return jobs, probes


def _static(src: PdkSource, cell: CellSpec, supply: float, load: float) -> list[dict[str, Any]]:
    """Per input state: the outputs' DC levels (checked against the function) and the leakage, at an
    operating point (a transient's resting current is numerical noise at these picoamps)."""
    states = [tuple(zip(cell.inputs, bits, strict=True)) for bits in product((0, 1), repeat=len(cell.inputs))]
    probes = [Probe({p: v * supply for p, v in s}, {o: load for o in cell.output_pins}) for s in states]
    out = []
    for assign, (tr, k) in zip(states, operating_point(src, cell, probes, supply), strict=True):
        for pin in cell.output_pins:
            level = float(tr.v(k, pin)[0]) / supply
            want = cell.value(pin, dict(assign))
            if (want and level < 0.9) or (not want and level > 0.1):
                raise CharacterizationFailed(
                    f"{cell.name} at {supply} V: {pin} is {level:.2f} VDD for {when(assign)}, the function "
                    f"{dict(cell.outputs)[pin]!r} says {int(want)}")
        out.append({"when": when(assign), "nw": float(-tr.i_supply(k)[0]) * supply * 1e9})
    return out


def _edge(tr: Traces, k: int, cell: CellSpec, job: _Job, supply: float, load: float, start: float,
          window: float, input_rising: bool) -> dict[str, Any]:
    """Delays, transitions, toggling outputs and internal energy of one input edge starting at ``start`` (s)."""
    t = tr.time
    end = start + window
    tin = crossing(t, tr.v(k, job.pin), supply / 2, input_rising, start)
    side = dict(job.side)
    before = {**side, job.pin: 0 if input_rising else 1}
    after = {**side, job.pin: 1 if input_rising else 0}
    outs: dict[str, dict[str, float]] = {}
    settled = True
    for out in cell.output_pins:
        v0, v1 = cell.value(out, before), cell.value(out, after)
        wave = tr.v(k, out)
        if not settled_at(t, wave, supply if v1 else 0.0, start + 0.9 * window, SETTLE_TOL * supply):
            settled = False
        if v0 == v1:
            continue
        tout = crossing(t, wave, supply / 2, v1, start)
        swing = float(np.interp(end, t, wave) - np.interp(start, t, wave))
        outs[out] = {"rise": float(v1), "swing": swing, "delay_ns": (tout - tin) * 1e9,
                     "transition_ns": transition(t, wave, supply, v1, start) * 1e9}
    energy = supply_energy(t, -tr.i_supply(k), supply, start, end)  # J
    # the load's share: the charge the supply put on it (C_L x its voltage step) times V; C_L V^2 for a full
    # edge, and exactly what was delivered when the window ends a hair before the rail (no negative residue)
    energy -= sum(load * 1e-12 * supply * o["swing"] for o in outs.values() if o["rise"])
    q_in = integral(t, -tr.i_input(k, job.pin), start, end)
    return {"outs": outs, "energy_pj": energy * 1e12, "settled": settled, "cin_pf": abs(q_in) / supply * 1e12}


def characterize_comb(src: PdkSource, cell: CellSpec, supply: float, grid: Grid, jobs: int = 1,
                      window_ns: float | None = None, tries: int = 4) -> dict[str, Any]:
    """Characterize ``cell`` at ``supply`` volts; the window doubles until every edge settles (``tries``)."""
    if cell.kind != "comb":
        raise ValueError(f"{cell.name} is {cell.kind}, not combinational")
    loads = grid.loads_for(cell)
    window = window_ns or (2 * max(grid.slews_ns) * FULL_PER_SLEW + 4.0 * (1.8 / supply) ** 5)
    began = time.monotonic()
    attempts = 0
    for _ in range(tries):
        attempts += 1
        job_list, probes = _probes(cell, grid, supply, window)
        step = max_step_ns(grid, supply)
        stop = T0_NS + 2 * window + 0.1
        try:
            traces = simulate(src, cell, probes, supply, stop, step, jobs=jobs)
            leakage = _static(src, cell, supply, loads[0])
        except SimulationFailed as e:
            raise CharacterizationFailed(f"{cell.name} at {supply} V: {e}") from e
        edges: list[tuple[_Job, dict[str, Any], dict[str, Any]]] = []
        ok = True
        for job, (tr, k) in zip(job_list, traces, strict=True):
            load = loads[job.load_i]
            rise = _edge(tr, k, cell, job, supply, load, T0_NS * 1e-9, window * 1e-9, True)
            fall = _edge(tr, k, cell, job, supply, load, (T0_NS + window) * 1e-9, window * 1e-9, False)
            ok &= rise["settled"] and fall["settled"]
            edges.append((job, rise, fall))
        if ok:
            break
        window *= 2
    else:
        raise CharacterizationFailed(f"{cell.name} at {supply} V: outputs not settled within {window / 2:.3g} ns "
                                     f"after {tries} tries")
    result = _assemble(cell, grid, supply, leakage, edges, window)
    result["runtime_s"] = round(time.monotonic() - began, 2)
    result["attempts"] = attempts
    return result


def _assemble(cell: CellSpec, grid: Grid, supply: float, leakage: list[dict[str, Any]],
              edges: list[tuple[_Job, dict[str, Any], dict[str, Any]]], window: float) -> dict[str, Any]:
    ns, nl = len(grid.slews_ns), len(grid.loads_for(cell))
    # --- output arcs: per (out, pin) the worst delay/transition and the mean energy over side assignments
    arcs: dict[str, dict[str, dict[str, Any]]] = {o: {} for o in cell.output_pins}
    # one table per (output, pin, quantity, side assignment, input edge), filled point by point
    acc: dict[tuple[str, str, str], dict[Any, np.ndarray]] = {}
    senses: dict[tuple[str, str], set[bool]] = {}
    for job, rise, fall in edges:
        if job.kind != "arc":
            continue
        for edge, in_rise in ((rise, True), (fall, False)):
            n_out = max(1, len(edge["outs"]))
            for out, m in edge["outs"].items():
                dirn = "rise" if m["rise"] else "fall"
                senses.setdefault((out, job.pin), set()).add(bool(m["rise"]) == in_rise)
                for q, val in ((f"cell_{dirn}", m["delay_ns"]), (f"{dirn}_transition", m["transition_ns"]),
                               (f"{dirn}_power", edge["energy_pj"] / n_out)):
                    tabs = acc.setdefault((out, job.pin, q), {})
                    tab = tabs.setdefault((job.side, in_rise), np.full((ns, nl), np.nan))
                    tab[job.slew_i, job.load_i] = val
    for (out, pin, q), tabs in acc.items():
        stack = np.stack(list(tabs.values()))
        if np.isnan(stack).any():
            raise CharacterizationFailed(f"{cell.name} at {supply} V: {out} from {pin}: {q} has unmeasured points")
        # timing is the worst side assignment (what STA must assume), energy their mean
        table = stack.mean(axis=0) if q.endswith("_power") else stack.max(axis=0)
        arcs[out].setdefault(pin, {})[q] = np.round(table, 7).tolist()
    for (out, pin), s in senses.items():
        arcs[out][pin]["sense"] = ("positive_unate" if s == {True} else "negative_unate" if s == {False}
                                   else "non_unate")
    # --- input pins: capacitance (mid slew, smallest load, over the pin's arcs) and idle internal energy
    pins: dict[str, dict[str, Any]] = {}
    mid = ns // 2
    for pin in cell.inputs:
        caps_r = [r["cin_pf"] for j, r, _ in edges if j.pin == pin and j.slew_i == mid and j.load_i == 0]
        caps_f = [f["cin_pf"] for j, _, f in edges if j.pin == pin and j.slew_i == mid and j.load_i == 0]
        entry: dict[str, Any] = {"rise_capacitance": float(np.mean(caps_r)), "fall_capacitance": float(np.mean(caps_f))}
        entry["capacitance"] = (entry["rise_capacitance"] + entry["fall_capacitance"]) / 2
        idle = [(j, r, f) for j, r, f in edges if j.pin == pin and j.kind == "idle"]
        if idle:
            conds = sorted({j.side for j, _, _ in idle})
            rise_e = np.zeros(ns)
            fall_e = np.zeros(ns)
            for j, r, f in idle:
                rise_e[j.slew_i] += r["energy_pj"] / len(conds)
                fall_e[j.slew_i] += f["energy_pj"] / len(conds)
            entry["internal"] = {"when": "|".join(f"({when(c)})" for c in conds),
                                 "rise_power": np.round(rise_e, 7).tolist(), "fall_power": np.round(fall_e, 7).tolist()}
        pins[pin] = {k: (round(v, 7) if isinstance(v, float) else v) for k, v in entry.items()}
    return {"cell": cell.name, "kind": cell.kind, "voltage": supply, "slews_ns": list(grid.slews_ns),
            "loads_pf": list(grid.loads_for(cell)), "inputs": pins,
            "outputs": {o: {"function": dict(cell.outputs)[o], "arcs": arcs[o]} for o in cell.output_pins},
            "leakage": leakage, "cell_leakage_nw": float(np.mean([x["nw"] for x in leakage])),
            "window_ns": window}

