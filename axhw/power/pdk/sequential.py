"""Characterize the rising-edge D flip-flop, the integrated clock gate (and tie cells) at one supply.

A flip-flop copy runs one clock program (W = the settle window)::

    CLK  _/^^^^^^\\______/^^^^^^\\______/^^^^^^
    D    ~d~~~~~~~~~~~~\\_d___________________        (D moves half a window before the second edge)
         T0           T0+1.5W T0+2W   T0+3W  T0+4W
         capture ~d   D pin   CLK->Q  CLK fall CLK rise, Q unchanged

The first edge only sets Q to ~d. Then D moves while CLK is low (the D pin's internal energy and capacitance),
the second rising edge moves Q to d (clock-to-Q delay, transition and the event's energy), and the two edges
after it leave Q alone (the clock pin's own energy per edge, and its capacitance). Liberty adds input-pin
internal energy on every toggle and output-pin energy on every output toggle, so the output's table holds the
event's energy less the clock pin's own rise energy (and less C_L V^2 for a rise): nothing is counted twice.

Setup and hold come from bisection: copies move D at an offset from the clock edge, and the constraint is the
smallest offset at which Q still takes the right value with a clock-to-Q delay within 10% of the settled one
(the usual pushout criterion). The clock gate's program and criteria are in :func:`_icg_program` and
:func:`_icg_constraints`. Every waveform is checked: overlapping ramps are refused (ngspice would read the
folded waveform silently).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from axhw.power.pdk.cells import CellSpec
from axhw.power.pdk.characterize import (
    FULL_PER_SLEW,
    SETTLE_TOL,
    SKY130_SLEWS_NS,
    T0_NS,
    CharacterizationFailed,
    Grid,
    max_step_ns,
    when,
)
from axhw.power.pdk.ngspice import Probe, SimulationFailed, Traces, internal_nets, operating_point, simulate
from axhw.power.pdk.source import PdkSource
from axhw.power.pdk.waveform import crossing, integral, settled, supply_energy, transition

__all__ = ["characterize_sequential"]

#: clock-to-Q pushout that defines setup and hold
_PUSHOUT = 1.10
#: bisection steps: the bracket (0.8 of a window, 7 ns at 1.8 V) shrinks to under 2 ps
_BISECT = 12
#: the first clock edge's 50% time: its slowest ramp must start after t = 0
_T0 = T0_NS + max(SKY130_SLEWS_NS) * FULL_PER_SLEW / 2


def _pwl(events: list[tuple[float, float, float]], start: float, supply: float) -> tuple[tuple[float, float], ...]:
    """A waveform from ``(t50_ns, new_level, slew_ns)`` events (each ramp centred on its 50% time)."""
    pts = [(0.0, start * supply)]
    level = start
    for t50, new, slew in sorted(events):
        if new == level:
            continue
        half = slew * FULL_PER_SLEW / 2
        if t50 - half < pts[-1][0]:  # ngspice would read a garbled waveform, not refuse it
            raise ValueError(f"ramp at {t50:.4g} ns overlaps the one before (ends {pts[-1][0]:.4g} ns)")
        pts += [(t50 - half, level * supply), (t50 + half, new * supply)]
        level = new
    return tuple(pts)


def _energy(tr: Traces, k: int, supply: float, start: float, end: float) -> float:
    """Supply energy (pJ) over ``[start, end]`` (ns) less the settled leakage at ``end``."""
    return supply_energy(tr.time, -tr.i_supply(k), supply, start * 1e-9, end * 1e-9) * 1e12


def _charge_cap(tr: Traces, k: int, pin: str, supply: float, start: float, end: float) -> float:
    return abs(integral(tr.time, -tr.i_input(k, pin), start * 1e-9, end * 1e-9)) / supply * 1e12


def _ff_program(slew: float, d: int, window: float, supply: float, load: float) -> Probe:
    w = window
    clk = [(_T0 + k * w, float((k + 1) % 2), slew) for k in range(5)]
    data = [(_T0 + 1.5 * w, float(d), slew)]
    return Probe({"CLK": _pwl(clk, 0.0, supply), "D": _pwl(data, float(1 - d), supply)}, {"Q": load},
                 ("CLK", "D"))


def _settled(tr: Traces, k: int, pin: str, at_ns: float, want: int, supply: float) -> bool:
    return settled(tr.time, tr.v(k, pin), want * supply, at_ns * 1e-9, SETTLE_TOL * supply)


def _ff_tables(src: PdkSource, cell: CellSpec, supply: float, grid: Grid, window: float,
               jobs: int) -> dict[str, Any] | None:
    """Clock-to-Q tables, pin energies and capacitances; ``None`` when some copy did not settle."""
    loads = grid.loads_for(cell)
    ns, nl = len(grid.slews_ns), len(loads)
    probes, keys = [], []
    for d in (0, 1):
        for si, slew in enumerate(grid.slews_ns):
            for li, load in enumerate(loads):
                probes.append(_ff_program(slew, d, window, supply, load))
                keys.append((d, si, li))
    w = window
    stop = _T0 + 4.8 * w
    traces = simulate(src, cell, probes, supply, stop, max_step_ns(grid, supply), jobs=jobs)
    out = {q: np.full((ns, nl), np.nan) for q in ("cell_rise", "rise_transition", "cell_fall", "fall_transition",
                                                   "rise_power", "fall_power")}
    clk_r, clk_f, d_r, d_f = (np.zeros(ns) for _ in range(4))
    caps: dict[str, list[float]] = {"CLK_r": [], "CLK_f": [], "D_r": [], "D_f": []}
    # windows: each event's runs from a quarter window before it to three quarters after (D's: +-1/4)
    t_edge, t_fall, t_quiet, t_d = _T0 + 2 * w, _T0 + 3 * w, _T0 + 4 * w, _T0 + 1.5 * w
    for (d, si, li), (tr, k) in zip(keys, traces, strict=True):
        for at, want in ((t_d - 0.3 * w, 1 - d), (t_fall - 0.3 * w, d), (stop - 0.05 * w, d)):
            if not _settled(tr, k, "Q", at, want, supply):
                return None
        tclk = crossing(tr.time, tr.v(k, "CLK"), supply / 2, True, (t_edge - w / 4) * 1e-9)
        tq = crossing(tr.time, tr.v(k, "Q"), supply / 2, bool(d), (t_edge - w / 4) * 1e-9)
        e_clk_rise = _energy(tr, k, supply, t_quiet - w / 4, t_quiet + 0.75 * w)
        e_event = _energy(tr, k, supply, t_edge - w / 4, t_edge + 0.75 * w) - e_clk_rise
        if d:  # the load's share: C_L x Q's actual step x V (see characterize._edge)
            qv = tr.v(k, "Q")
            e_event -= loads[li] * supply * float(np.interp((t_edge + 0.75 * w) * 1e-9, tr.time, qv)
                                                 - np.interp((t_edge - w / 4) * 1e-9, tr.time, qv))
        dirn = "rise" if d else "fall"
        out[f"cell_{dirn}"][si, li] = (tq - tclk) * 1e9
        out[f"{dirn}_transition"][si, li] = transition(tr.time, tr.v(k, "Q"), supply, bool(d),
                                                       (t_edge - w / 4) * 1e-9) * 1e9
        out[f"{dirn}_power"][si, li] = e_event
        if li == 0:
            clk_r[si] += e_clk_rise / 2
            clk_f[si] += _energy(tr, k, supply, t_fall - w / 4, t_fall + 0.75 * w) / 2
            (d_r if d else d_f)[si] = _energy(tr, k, supply, t_d - w / 4, t_d + w / 4)
            if si == ns // 2:
                caps["CLK_r"].append(_charge_cap(tr, k, "CLK", supply, t_quiet - w / 4, t_quiet + 0.75 * w))
                caps["CLK_f"].append(_charge_cap(tr, k, "CLK", supply, t_fall - w / 4, t_fall + 0.75 * w))
                caps["D_r" if d else "D_f"].append(_charge_cap(tr, k, "D", supply, t_d - w / 4, t_d + w / 4))
    for q, tab in out.items():
        if np.isnan(tab).any():
            raise CharacterizationFailed(f"{cell.name} at {supply} V: clock-to-Q {q} has unmeasured points")
    return {"arc": {q: np.round(tab, 7).tolist() for q, tab in out.items()},
            "clk": (clk_r, clk_f), "data": (d_r, d_f), "caps": {k: float(np.mean(v)) for k, v in caps.items()}}


def _hold_room(window: float, axis: list[float]) -> float:
    """How early (ns before the edge) a hold probe's D may leave: its ramp must start after the ramp that brought
    D (centred half a window before the edge) has ended, or the waveform would fold back on itself."""
    return min(0.4 * window, 0.5 * window - max(axis) * FULL_PER_SLEW - 0.1)


def _constraint_probe(kind: str, slew_clk: float, slew_d: float, d: int, offset: float, window: float,
                      supply: float, load: float) -> Probe:
    """Setup: D moves to ``d`` ``offset`` ns before the test edge. Hold: D reaches ``d`` early, the test edge
    captures it, and D leaves ``offset`` ns after the edge (``d`` is the value the edge must capture)."""
    w = window
    edge = _T0 + 2 * w
    clk = [(_T0, 1.0, slew_clk), (_T0 + w, 0.0, slew_clk), (edge, 1.0, slew_clk)]
    if kind == "setup":
        data = [(edge - offset, float(d), slew_d)]
    else:
        data = [(_T0 + 1.5 * w, float(d), slew_d), (edge + offset, float(1 - d), slew_d)]
    return Probe({"CLK": _pwl(clk, 0.0, supply), "D": _pwl(data, float(1 - d), supply)}, {"Q": load})


def _constraints(src: PdkSource, cell: CellSpec, supply: float, axis: list[float], window: float, jobs: int,
                 load: float) -> dict[str, dict[str, list[list[float]]]]:
    """setup_rising / hold_rising tables over (CLK transition, D transition), by bisection on the offset.

    All (kind, CLK slew, D slew, value) searches advance together, one copy each per deck, so a step costs one
    batch; a sweep of offsets in one deck was tried first and is slower (every copy's D edge at its own time
    shortens everyone's time steps).
    """
    w = window
    edge = _T0 + 2 * w
    # D must stay between the first edge's settling and the test edge's window (no reordered events)
    span = 0.4 * w
    combos = [(kind, ci, di, d) for kind in ("setup", "hold") for ci in range(len(axis))
              for di in range(len(axis)) for d in (0, 1)]

    def run(offsets: dict[Any, float]) -> dict[Any, float]:
        """Clock-to-Q delay (s) per combo at its offset; ``inf`` when Q misses the value."""
        probes = [_constraint_probe(c[0], axis[c[1]], axis[c[2]], c[3], offsets[c], w, supply, load) for c in combos]
        traces = simulate(src, cell, probes, supply, edge + w, max_step_ns(Grid(tuple(axis), ()), supply), jobs=jobs)
        out = {}
        for c, (tr, k) in zip(combos, traces, strict=True):
            tclk = crossing(tr.time, tr.v(k, "CLK"), supply / 2, True, (edge - w / 4) * 1e-9)
            tq = crossing(tr.time, tr.v(k, "Q"), supply / 2, bool(c[3]), (edge - w / 4) * 1e-9)
            ok = _settled(tr, k, "Q", edge + 0.95 * w, c[3], supply) and np.isfinite(tq)
            out[c] = (tq - tclk) if ok else np.inf
        return out

    ref = run({c: w / 2 for c in combos})  # D far from the edge: the settled clock-to-Q delay
    if any(not np.isfinite(v) for v in ref.values()):
        raise CharacterizationFailed(f"{cell.name} at {supply} V: a reference copy did not capture D")
    lo = {c: -span if c[0] == "setup" else -_hold_room(w, axis) for c in combos}
    return _bisect(cell, supply, combos, run, lambda c, v: v <= _PUSHOUT * ref[c], lo,
                   {c: span for c in combos}, len(axis))


def _bisect(cell: CellSpec, supply: float, combos: list[Any], run: Any, ok: Any, lo: dict[Any, float],
            hi: dict[Any, float], n: int) -> dict[str, dict[str, list[list[float]]]]:
    """Shrink every (kind, clock slew, data slew, value) bracket ``lo`` (fails) .. ``hi`` (passes) together,
    :data:`_BISECT` times, one ``run`` (a batch of copies) per step; tables of the passing ends."""
    if any(ok(c, v) for c, v in run(lo).items()) or not all(ok(c, v) for c, v in run(hi).items()):
        raise CharacterizationFailed(f"{cell.name} at {supply} V: setup/hold not bracketed within the window")
    for _step in range(_BISECT):
        mid = {c: (lo[c] + hi[c]) / 2 for c in combos}
        for c, v in run(mid).items():
            if ok(c, v):
                hi[c] = mid[c]
            else:
                lo[c] = mid[c]
    tables: dict[str, dict[str, list[list[float]]]] = {}
    for kind in ("setup", "hold"):
        tab: dict[str, list[list[float]]] = {}
        for d, q in ((1, "rise_constraint"), (0, "fall_constraint")):
            # hold's constrained edge is the data leaving the captured value: 0 captured -> it rises after
            dd = d if kind == "setup" else 1 - d
            tab[q] = [[round(hi[(kind, ci, di, dd)], 5) for di in range(n)] for ci in range(n)]
        tables[kind] = tab
    return tables


def _leakage_ff(src: PdkSource, cell: CellSpec, supply: float, window: float, load: float) -> list[dict[str, Any]]:
    """Leakage with CLK low for each (D, Q). A transient stores Q (one edge) and moves D; its final node
    voltages seed an operating point (``.nodeset`` on every internal net), which holds that state and gives
    the DC current (a transient's resting current is numerical noise at these picoamps)."""
    w = window
    nets = internal_nets(src, cell)
    probes, conds = [], []
    for q in (0, 1):
        for dnow in (0, 1):
            clk = [(_T0, 1.0, 0.05), (_T0 + w, 0.0, 0.05)]
            data = [(_T0 + 1.5 * w, float(dnow), 0.05)]
            probes.append(Probe({"CLK": _pwl(clk, 0.0, supply), "D": _pwl(data, float(q), supply)}, {"Q": load},
                                internals=tuple(nets)))
            conds.append((dnow, q))
    stop = _T0 + 3 * w
    traces = simulate(src, cell, probes, supply, stop, max_step_ns(Grid((0.05,), ()), supply))
    held = []
    for (dnow, _q), (tr, k) in zip(conds, traces, strict=True):
        seeds = (*tuple((n, float(tr.internal(k, n)[-1])) for n in nets), ("Q", float(tr.v(k, "Q")[-1])))
        held.append(Probe({"CLK": 0.0, "D": dnow * supply}, {"Q": load}, nodeset=seeds))
    out = []
    for (dnow, q), (tr, k) in zip(conds, operating_point(src, cell, held, supply), strict=True):
        level = float(tr.v(k, "Q")[0]) / supply
        if abs(level - q) > 0.1:
            raise CharacterizationFailed(f"{cell.name} at {supply} V: the operating point lost Q={q} ({level:.2f} VDD)")
        out.append({"when": when((("CLK", 0), ("D", dnow), ("Q", q))),
                    "nw": float(-tr.i_supply(k)[0]) * supply * 1e9})
    return out


def _tie(src: PdkSource, cell: CellSpec, supply: float, grid: Grid) -> dict[str, Any]:
    tr, k = operating_point(src, cell, [Probe({}, {"HI": 0.0005, "LO": 0.0005})], supply)[0]
    if tr.v(k, "HI")[0] < 0.9 * supply or tr.v(k, "LO")[0] > 0.1 * supply:
        raise CharacterizationFailed(f"{cell.name} at {supply} V: HI/LO are not at the rails")
    leak = max(0.0, float(-tr.i_supply(k)[0]) * supply * 1e9)  # two poly resistors: no device leaks
    return {"cell": cell.name, "kind": "tie", "voltage": supply, "slews_ns": list(grid.slews_ns),
            "loads_pf": list(grid.loads_for(cell)), "inputs": {},
            "outputs": {o: {"function": fn, "arcs": {}} for o, fn in cell.outputs},
            "leakage": [{"when": "1", "nw": leak}], "cell_leakage_nw": leak, "window_ns": 1.0}


def _icg_program(slew: float, g: int, window: float, supply: float, load: float) -> Probe:
    """CLK rises at T0 (GCLK follows the first GATE value, unmeasured), falls at T0+W; GATE moves to ``g`` at
    T0+1.5W while CLK is low (the latch is open); CLK rises at T0+2W and falls at T0+3W: GCLK pulses when
    ``g`` is 1 (the clock-to-GCLK arc) and stays low when it is 0 (the clock pin's own energy, gated)."""
    clk = [(_T0 + k * window, float((k + 1) % 2), slew) for k in range(4)]
    gate = [(_T0 + 1.5 * window, float(g), slew)]
    return Probe({"CLK": _pwl(clk, 0.0, supply), "GATE": _pwl(gate, float(1 - g), supply)}, {"GCLK": load},
                 ("CLK", "GATE"))


def _icg_tables(src: PdkSource, cell: CellSpec, supply: float, grid: Grid, window: float,
                jobs: int) -> dict[str, Any] | None:
    """CLK-to-GCLK tables, the clock pin's gated energy, GATE's energy and capacitances; ``None`` if unsettled."""
    loads = grid.loads_for(cell)
    ns, nl = len(grid.slews_ns), len(loads)
    w = window
    probes, keys = [], []
    for g in (0, 1):
        for si, slew in enumerate(grid.slews_ns):
            for li, load in enumerate(loads):
                probes.append(_icg_program(slew, g, w, supply, load))
                keys.append((g, si, li))
    stop = _T0 + 3.8 * w
    traces = simulate(src, cell, probes, supply, stop, max_step_ns(grid, supply), jobs=jobs)
    t_gate, t_rise, t_fall = _T0 + 1.5 * w, _T0 + 2 * w, _T0 + 3 * w
    windows = {"rise": (t_rise - w / 4, t_rise + 0.75 * w), "fall": (t_fall - w / 4, t_fall + 0.75 * w)}
    energy: dict[tuple[int, int, int, str], float] = {}
    out = {q: np.full((ns, nl), np.nan) for q in ("cell_rise", "rise_transition", "cell_fall", "fall_transition")}
    gate_r, gate_f = np.zeros(ns), np.zeros(ns)
    caps: dict[str, list[float]] = {"CLK_r": [], "CLK_f": [], "GATE_r": [], "GATE_f": []}
    for (g, si, li), (tr, k) in zip(keys, traces, strict=True):
        for at, want in ((t_gate - 0.3 * w, 0), (t_rise + 0.7 * w, g), (stop - 0.05 * w, 0)):
            if not _settled(tr, k, "GCLK", at, want, supply):
                return None
        for edge, (a, b) in windows.items():
            energy[(g, si, li, edge)] = _energy(tr, k, supply, a, b)
        if g:
            gclk = tr.v(k, "GCLK")
            for edge, rising in (("rise", True), ("fall", False)):
                a = windows[edge][0] * 1e-9
                tclk = crossing(tr.time, tr.v(k, "CLK"), supply / 2, rising, a)
                tq = crossing(tr.time, gclk, supply / 2, rising, a)
                out[f"cell_{edge}"][si, li] = (tq - tclk) * 1e9
                out[f"{edge}_transition"][si, li] = transition(tr.time, gclk, supply, rising, a) * 1e9
            swing = float(np.interp(windows["rise"][1] * 1e-9, tr.time, gclk)
                          - np.interp(windows["rise"][0] * 1e-9, tr.time, gclk))
            energy[(g, si, li, "load")] = loads[li] * supply * swing
        if li == 0:
            (gate_r if g else gate_f)[si] = _energy(tr, k, supply, t_gate - w / 4, t_gate + w / 4)
            if si == ns // 2:
                caps["GATE_r" if g else "GATE_f"].append(_charge_cap(tr, k, "GATE", supply, t_gate - w / 4,
                                                                     t_gate + w / 4))
                if not g:
                    caps["CLK_r"].append(_charge_cap(tr, k, "CLK", supply, *windows["rise"]))
                    caps["CLK_f"].append(_charge_cap(tr, k, "CLK", supply, *windows["fall"]))
    clk_r = np.array([energy[(0, si, 0, "rise")] for si in range(ns)])
    clk_f = np.array([energy[(0, si, 0, "fall")] for si in range(ns)])
    rise_p = np.array([[energy[(1, si, li, "rise")] - clk_r[si] - energy[(1, si, li, "load")] for li in range(nl)]
                       for si in range(ns)])
    fall_p = np.array([[energy[(1, si, li, "fall")] - clk_f[si] for li in range(nl)] for si in range(ns)])
    tables = {q: np.round(t, 7).tolist() for q, t in out.items()}
    tables["rise_power"] = np.round(rise_p, 7).tolist()
    tables["fall_power"] = np.round(fall_p, 7).tolist()
    return {"arc": tables, "clk": (clk_r, clk_f), "data": (gate_r, gate_f),
            "caps": {k: float(np.mean(v)) for k, v in caps.items()}}


def _icg_constraints(src: PdkSource, cell: CellSpec, supply: float, axis: list[float], window: float, jobs: int,
                     load: float) -> dict[str, dict[str, list[list[float]]]]:
    """GATE's setup_rising / hold_rising against CLK, by bisection: GCLK must pulse (GATE 1) with a delay within
    10% of the settled one, or stay below 10% of VDD (GATE 0)."""
    w = window
    edge = _T0 + 2 * w
    span = 0.4 * w
    combos = [(kind, ci, di, g) for kind in ("setup", "hold") for ci in range(len(axis))
              for di in range(len(axis)) for g in (0, 1)]

    def probe(c: tuple[str, int, int, int], offset: float) -> Probe:
        kind, ci, di, g = c
        clk = [(_T0, 1.0, axis[ci]), (_T0 + w, 0.0, axis[ci]), (edge, 1.0, axis[ci]), (edge + 0.75 * w, 0.0, axis[ci])]
        if kind == "setup":
            gate = [(edge - offset, float(g), axis[di])]
        else:
            gate = [(_T0 + 1.5 * w, float(g), axis[di]), (edge + offset, float(1 - g), axis[di])]
        return Probe({"CLK": _pwl(clk, 0.0, supply), "GATE": _pwl(gate, float(1 - g), supply)}, {"GCLK": load})

    def run(offsets: dict[Any, float]) -> dict[Any, float]:
        traces = simulate(src, cell, [probe(c, offsets[c]) for c in combos], supply, edge + w,
                          max_step_ns(Grid(tuple(axis), ()), supply), jobs=jobs)
        res = {}
        for c, (tr, k) in zip(combos, traces, strict=True):
            a = (edge - w / 4) * 1e-9
            high = (tr.time > a) & (tr.time < (edge + 0.5 * w) * 1e-9)  # CLK is high until 0.75 W
            if c[3]:
                gclk = tr.v(k, "GCLK")
                tclk = crossing(tr.time, tr.v(k, "CLK"), supply / 2, True, a)
                tq = crossing(tr.time, gclk, supply / 2, True, a)
                t90 = crossing(tr.time, gclk, 0.9 * supply, True, a)
                # a full pulse: up, and no dip below 80% once it is up
                stays = np.isfinite(t90) and float(np.min(gclk[high & (tr.time > t90)])) > 0.8 * supply
                res[c] = (tq - tclk) if stays else np.inf
            else:
                res[c] = 0.0 if float(np.max(tr.v(k, "GCLK")[high])) < 0.1 * supply else np.inf
        return res

    ref = run({c: w / 2 for c in combos})
    if any(not np.isfinite(v) for v in ref.values()):
        raise CharacterizationFailed(f"{cell.name} at {supply} V: the reference copies did not gate correctly")

    def ok(c: Any, v: float) -> bool:
        return bool(v <= _PUSHOUT * ref[c]) if c[3] else bool(np.isfinite(v))

    lo = {c: -span if c[0] == "setup" else -_hold_room(w, axis) for c in combos}
    return _bisect(cell, supply, combos, run, ok, lo, {c: span for c in combos}, len(axis))


def _until_settled(tables: Any, src: PdkSource, cell: CellSpec, supply: float, grid: Grid, jobs: int, tries: int,
                   out: str) -> tuple[dict[str, Any], float]:
    """Run a cell's clock program, doubling the window until every copy's output settles (``tries`` times)."""
    window = 2 * max(grid.slews_ns) * FULL_PER_SLEW + 4.0 * (1.8 / supply) ** 5
    for _attempt in range(tries):
        tabs = tables(src, cell, supply, grid, window, jobs)
        if tabs is not None:
            return tabs, window
        window *= 2
    raise CharacterizationFailed(f"{cell.name} at {supply} V: {out} not settled within {window / 2:.3g} ns")


def _clocked_pins(tabs: dict[str, Any], data: str, axis: list[float],
                  cons: dict[str, dict[str, list[list[float]]]]) -> dict[str, dict[str, Any]]:
    """The clock pin (its own energy per edge) and the data pin (energy while the clock is low, setup/hold)."""
    caps = tabs["caps"]
    clk_r, clk_f = tabs["clk"]
    d_r, d_f = tabs["data"]
    return {
        "CLK": {"clock": True, "rise_capacitance": caps["CLK_r"], "fall_capacitance": caps["CLK_f"],
                "capacitance": (caps["CLK_r"] + caps["CLK_f"]) / 2,
                "internals": [{"rise_power": np.round(clk_r, 7).tolist(), "fall_power": np.round(clk_f, 7).tolist()}]},
        data: {"rise_capacitance": caps[f"{data}_r"], "fall_capacitance": caps[f"{data}_f"],
               "capacitance": (caps[f"{data}_r"] + caps[f"{data}_f"]) / 2,
               "internals": [{"when": "!CLK", "rise_power": np.round(d_r, 7).tolist(),
                              "fall_power": np.round(d_f, 7).tolist()}],
               "constraints": [{"related_pin": "CLK", "timing_type": f"{k}_rising", "axis": axis, **cons[k]}
                               for k in ("setup", "hold")]},
    }


def _icg(src: PdkSource, cell: CellSpec, supply: float, grid: Grid, jobs: int, tries: int) -> dict[str, Any]:
    tabs, window = _until_settled(_icg_tables, src, cell, supply, grid, jobs, tries, "GCLK")
    axis = sorted({grid.slews_ns[0], grid.slews_ns[len(grid.slews_ns) // 2], grid.slews_ns[-1]})
    loads = grid.loads_for(cell)
    cons = _icg_constraints(src, cell, supply, axis, window, jobs, loads[len(loads) // 2])
    # leakage with CLK low: the latch is open, so GATE alone sets the state (a plain operating point)
    states = [(("CLK", 0), ("GATE", g)) for g in (0, 1)]
    held = [Probe({"CLK": 0.0, "GATE": g * supply}, {"GCLK": loads[0]}) for _, (_, g) in states]
    leakage = [{"when": when(st), "nw": float(-tr.i_supply(k)[0]) * supply * 1e9}
               for st, (tr, k) in zip(states, operating_point(src, cell, held, supply), strict=True)]
    pins = _clocked_pins(tabs, "GATE", axis, cons)
    arc = {"sense": "positive_unate", **tabs["arc"]}
    return {"cell": cell.name, "kind": "icg", "voltage": supply, "enable": "!CLK", "data": "GATE",
            "slews_ns": list(grid.slews_ns), "loads_pf": list(loads), "inputs": pins,
            "outputs": {"GCLK": {"function": "CLK&IQ", "arcs": {"CLK": arc}}},
            "leakage": leakage, "cell_leakage_nw": float(np.mean([x["nw"] for x in leakage])), "window_ns": window}


def characterize_sequential(src: PdkSource, cell: CellSpec, supply: float, grid: Grid, jobs: int = 1,
                            tries: int = 4) -> dict[str, Any]:
    """Characterize a flip-flop (``ff``), integrated clock gate (``icg``) or tie cell (``tie``) at ``supply``."""
    began = time.monotonic()
    if cell.kind == "tie":
        r = _tie(src, cell, supply, grid)
        r["runtime_s"] = round(time.monotonic() - began, 2)
        return r
    if cell.kind == "icg":
        try:
            r = _icg(src, cell, supply, grid, jobs, tries)
        except SimulationFailed as e:
            raise CharacterizationFailed(f"{cell.name} at {supply} V: {e}") from e
        r["runtime_s"] = round(time.monotonic() - began, 2)
        return r
    if cell.kind != "ff":
        raise CharacterizationFailed(f"{cell.name}: {cell.kind} cells are not characterized yet")
    try:
        tabs, window = _until_settled(_ff_tables, src, cell, supply, grid, jobs, tries, "Q")
        axis = sorted({grid.slews_ns[0], grid.slews_ns[len(grid.slews_ns) // 2], grid.slews_ns[-1]})
        loads = grid.loads_for(cell)
        cons = _constraints(src, cell, supply, axis, window, jobs, loads[len(loads) // 2])
        leakage = _leakage_ff(src, cell, supply, window, loads[0])
    except SimulationFailed as e:
        raise CharacterizationFailed(f"{cell.name} at {supply} V: {e}") from e
    pins = _clocked_pins(tabs, "D", axis, cons)
    arc = {"sense": "non_unate", "timing_type": "rising_edge", **tabs["arc"]}
    return {"cell": cell.name, "kind": "ff", "voltage": supply, "clock": "CLK", "data": "D",
            "slews_ns": list(grid.slews_ns), "loads_pf": list(loads), "inputs": pins,
            "outputs": {"Q": {"function": "IQ", "arcs": {"CLK": arc}}},
            "leakage": leakage, "cell_leakage_nw": float(np.mean([x["nw"] for x in leakage])),
            "window_ns": window, "runtime_s": round(time.monotonic() - began, 2)}
