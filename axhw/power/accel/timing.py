"""The clock the synthesized PE array meets in its cell library, and the slack there (OpenSTA).

Why: energy per inference charges leakage (logic and SRAM) over the inference's time, cycles / clock. A
clock the netlist does not meet would understate that time and claim a speed the array does not have
(issue #27: the 16-PE LeNet-5 array's critical path was 75.7 ns while 100 MHz was charged). So the
reported clock is, unless a slower one is asked for, the fastest the netlist meets: the smallest period
with worst setup slack >= 0, rounded up to 0.1 ns.

How: OpenSTA 2.0.17 has no ``report_clock_min_period``, so the period is searched with worst-slack runs: a
full-cycle critical path with slack ``s`` at period ``P`` meets exactly ``P - s``, so the search jumps there
while that holds; the clock gates' enable paths end on the falling edge (half a cycle: their slack moves by
half the period change), so where a jump fails it bisects on the 0.1 ns grid (slack never falls as the period
grows). A handful of STA runs, ~10 s each for a 16-PE array, once per netlist (cached beside it).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from axhw.common.io import atomic_write_json
from axhw.power.accel.synth import ArraySynth
from axhw.power.flow.sta import run_sta
from axhw.power.flow.templates import render
from axhw.power.flow.tools import find_toolchain

__all__ = ["clock_mhz_for", "timing_closure", "worst_slack_ns"]


def worst_slack_ns(synth: ArraySynth, period_ns: float) -> tuple[float, str]:
    """Worst setup slack (ns) of ``synth``'s flat netlist at ``period_ns``, and the path's endpoint."""
    tc = find_toolchain()
    script = render("accel_timing.tcl.j2", liberty=tc.liberty, netlist=synth.sta_netlist, top=synth.top,
                    period_ns=period_ns)
    try:
        out = run_sta(script, tc.sta)
    except RuntimeError as exc:
        raise RuntimeError(f"sta timing check failed on {synth.sta_netlist}: {exc}") from exc
    body = out.split("AXHW_TIMING", 1)[-1]
    slack = re.search(r"(-?[0-9.]+)\s+slack\s+\((MET|VIOLATED)\)", body)
    if slack is None:
        raise RuntimeError(f"sta timing check failed on {synth.sta_netlist}: {out.strip()[-2000:]}")
    end = re.search(r"^Endpoint:\s+(\S+)", body, re.M)
    return float(slack.group(1)), end.group(1) if end else ""


def timing_closure(synth: ArraySynth, start_ns: float = 50.0) -> dict[str, Any]:
    """The smallest period (0.1 ns steps) at which ``synth`` has worst setup slack >= 0: ``{"period_ns",
    "clock_mhz", "slack_ns", "endpoint", "sta_runs"}``; cached beside the netlist."""
    path = Path(synth.netlist).parent / "timing.json"
    if path.is_file():
        return dict(json.loads(path.read_text()))
    runs = 0
    memo: dict[float, tuple[float, str]] = {}

    def slack_at(period: float) -> float:
        nonlocal runs
        if period not in memo:
            memo[period] = worst_slack_ns(synth, period)
            runs += 1
        return memo[period][0]

    def tenth(x: float) -> float:  # up to the 0.1 ns grid
        return math.ceil(round(x * 10, 6)) / 10

    hi = tenth(start_ns)
    for _ in range(8):  # a period that meets timing
        if slack_at(hi) >= 0:
            break
        hi = tenth(2 * hi)
    else:
        raise RuntimeError(f"{synth.netlist}: no clock up to {hi} ns meets timing")
    lo = 0.0  # a period known to fail (or 0)
    while True:  # a full-cycle path with slack s at P meets P - s: jump there while that holds
        guess = max(tenth(hi - slack_at(hi)), round(lo + 0.1, 1))
        if guess >= hi:
            break
        if slack_at(guess) >= 0:
            hi = guess
        else:  # a half-cycle path (clock-gate enables end on the falling edge) or a new worst path: bisect
            lo = guess
            break
    while round(hi - lo, 1) > 0.1:  # bisection on the 0.1 ns grid; slack never falls as the period grows
        mid = tenth((lo + hi) / 2)
        if mid >= hi:
            mid = round(hi - 0.1, 1)
        if slack_at(mid) >= 0:
            hi = mid
        else:
            lo = mid
    if round(hi - 0.1, 1) > 0 and round(hi - 0.1, 1) not in memo and slack_at(round(hi - 0.1, 1)) >= 0:
        raise RuntimeError(f"{synth.netlist}: timing search ended at {hi} ns but {hi - 0.1:.1f} ns also meets")
    period = hi
    slack, end = memo[period]
    result = {"period_ns": period, "clock_mhz": 1e3 / period, "slack_ns": slack, "endpoint": end,
              "sta_runs": runs}
    atomic_write_json(result, path)
    return result


def clock_mhz_for(synth: ArraySynth, asked_mhz: float | None) -> float:
    """The clock energies are reported at: ``asked_mhz``, or the fastest the netlist meets when None.

    Raises:
        ValueError: ``asked_mhz`` is faster than the netlist meets (its numbers would describe a chip that
            does not work).
    """
    met = timing_closure(synth)
    if asked_mhz is None:
        return float(met["clock_mhz"])
    if asked_mhz > met["clock_mhz"] * (1 + 1e-9):
        raise ValueError(f"the array meets {met['clock_mhz']:.1f} MHz at {find_toolchain().library.label} (critical path ending at "
                         f"{met['endpoint']}), not {asked_mhz:g} MHz: ask for at most that, or none (the default: "
                         "the fastest clock it meets)")
    return float(asked_mhz)
