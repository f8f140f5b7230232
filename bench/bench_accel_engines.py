"""Benchmark: the accelerator-energy engines against the reference, Icarus with cell delays.

For each trained network (none of them used to calibrate the model) and multiplier mode, the energy per
inference of one test sample on the 16-PE array by

* ``icarus``: gate level with cell delays (glitches counted), the reference;
* ``verilator``: gate level, zero-delay (no glitches), the same testbench compiled to C++;
* ``model``: no simulation, action counts x energies calibrated on Icarus runs of the calibration networks
  (:mod:`axhw.power.accel.model`);

per unit (multipliers, adders, re-quantization, control, at osu018) and in total (at 1.1 V SRAM), with the
errors against the reference, and per unit the ratio of switching energy with cell delays to zero-delay
switching energy (what glitches add). Activities are stored in the axhw cache: a rerun simulates nothing.

``--speed``: the same MNIST-MLP sample simulated by Icarus with delays and by the Verilator model, timed
with :mod:`harness` (interleaved rounds; the Verilator build is timed once, apart), plus the model engine's
time per network after calibration (median of repeats).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

from harness import header, interleaved_times, summarize

from axhw.common.io import atomic_write_json
from axhw.power.accel.energy import UNITS, AccelConfig, accelerator_energy, array_for, gate_level_activity
from axhw.power.accel.model import calibrate, model_energy, unit_energies
from axhw.power.accel.sim import memory_sources, simulate_array, testbench
from axhw.power.accel.vbuild import icarus_build, verilator_build
from axhw.power.flow.tools import find_toolchain
from axhw.rtl.program import network_and_inputs


def _rel(x: float, ref: float) -> float:
    return (x - ref) / ref if ref else 0.0


def validate(nets: dict[str, Path], modes: list[str], cal_modes: tuple[str, ...]) -> dict[str, object]:
    cal = calibrate(modes=cal_modes)
    rows = []
    for label, ck in nets.items():
        qnet, x = network_and_inputs(ck, 1)
        for mode in modes:
            cfg = AccelConfig(samples=1)
            ref = accelerator_energy(qnet, x, mode, cfg)
            vl = accelerator_energy(qnet, x, mode, replace(cfg, engine="verilator", timing=False))
            t0 = time.perf_counter()
            mod = model_energy(qnet, x, mode, replace(cfg, engine="model"), calibration=cal)
            model_s = time.perf_counter() - t0
            syn, _, act_ref, _ = gate_level_activity(qnet, x, mode, cfg)
            _, _, act_vl, _ = gate_level_activity(qnet, x, mode, replace(cfg, engine="verilator", timing=False))
            sw_ref, sw_vl = unit_energies(syn, act_ref), unit_energies(syn, act_vl)
            row: dict[str, object] = {"network": label, "mode": mode, "config_id": ref.config_id,
                                      "cycles": ref.activity["cycles_per_inference"], "model_seconds": model_s,
                                      "icarus_sim_seconds": act_ref.sim_seconds, "verilator_sim_seconds": act_vl.sim_seconds}
            for name, e in (("icarus", ref), ("verilator", vl), ("model", mod)):
                row[name] = {"logic_j": e.logic_j, "total_j_1100": e.totals["1100"]["total_j"]}
            row["error"] = {name: {**{u: _rel(e.logic_j[u], ref.logic_j[u]) for u in UNITS},
                                   "total": _rel(e.totals["1100"]["total_j"], ref.totals["1100"]["total_j"])}
                            for name, e in (("verilator", vl), ("model", mod))}
            row["glitch_ratio"] = {u: sw_ref[u]["switching"] / sw_vl[u]["switching"] if sw_vl[u]["switching"] else None
                                   for u in UNITS}
            rows.append(row)
            err = row["error"]
            print(f"{label} {mode}: total {ref.totals['1100']['total_j'] * 1e6:.3f} uJ; model "
                  f"{100 * err['model']['total']:+.2f}% (units " +  # type: ignore[index]
                  " ".join(f"{u[:4]} {100 * err['model'][u]:+.1f}%" for u in UNITS) +  # type: ignore[index]
                  f"); verilator {100 * err['verilator']['total']:+.2f}%", flush=True)  # type: ignore[index]
    worst = {name: {k: max(abs(r["error"][name][k]) for r in rows) for k in (*UNITS, "total")}  # type: ignore[index]
             for name in ("verilator", "model")}
    return {"rows": rows, "worst_abs_error": worst, "calibration": {"reference": cal.reference,
                                                                    "residual": cal.residual,
                                                                    "seconds": cal.seconds}}


def speed(ck: Path, mode: str, rounds: int, cal_modes: tuple[str, ...]) -> dict[str, object]:
    qnet, x = network_and_inputs(ck, 1)
    cfg = AccelConfig(samples=1)
    synth, acfg = array_for(qnet, x, mode, cfg)
    tc = find_toolchain()
    t0 = time.perf_counter()
    _, build_s = verilator_build({"accel_tb.v": testbench(synth, acfg, two_state=True),
                                  **memory_sources(synth, acfg)}, [Path(synth.netlist), Path(tc.cell_models)])
    build_wall = time.perf_counter() - t0
    # Icarus's compiled testbench too (elaboration takes minutes for a 16-PE array): neither timing below
    # includes a build
    t0 = time.perf_counter()
    _, icarus_build_s = icarus_build({"accel_tb.v": testbench(synth, acfg), **memory_sources(synth, acfg)},
                                     [Path(synth.netlist), Path(tc.cell_models)], timing=True)
    fns = {"icarus_delays": lambda: simulate_array(synth, acfg, qnet, x, timing=True),
           "verilator": lambda: simulate_array(synth, acfg, qnet, x, timing=False, engine="verilator")}
    times = interleaved_times(fns, rounds=rounds, warmup=0)
    model_times = []
    cal = calibrate(modes=tuple(cal_modes))
    for _ in range(5):
        t0 = time.perf_counter()
        model_energy(qnet, x, mode, replace(cfg, engine="model"), calibration=cal)
        model_times.append(time.perf_counter() - t0)
    return {"network": str(ck), "mode": mode, "verilator_build_seconds": build_s or None,
            "icarus_build_seconds": icarus_build_s or None,
            "verilator_build_wall_seconds_this_run": build_wall, **summarize(times, [("icarus_delays", "verilator")]),
            "model_seconds_median": statistics.median(model_times)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--network", nargs="+", required=True, metavar="LABEL=CHECKPOINT",
                   help="trained checkpoints to validate on (not the calibration networks)")
    p.add_argument("--modes", nargs="+", default=["exact", "K3", "K1"])
    p.add_argument("--calibration-modes", nargs="+", default=["exact", "K4", "K3", "K2", "K1"])
    p.add_argument("--speed", metavar="LABEL", default=None, help="also time the engines on this network's sample")
    p.add_argument("--rounds", type=int, default=1, help="timed rounds of --speed (default 1: Icarus takes minutes)")
    p.add_argument("--no-validation", action="store_true", help="only --speed")
    p.add_argument("--merge", type=Path, default=None, help="keep the parts of this earlier result not rerun")
    p.add_argument("--out", type=Path, required=True, help="JSON result")
    args = p.parse_args()
    nets = {s.split("=", 1)[0]: Path(s.split("=", 1)[1]) for s in args.network}
    load_before = os.getloadavg()
    result: dict[str, object] = {}
    if args.merge is not None and args.merge.is_file():
        import json

        old = json.loads(args.merge.read_text())
        result.update({k: old[k] for k in ("validation", "speed") if k in old})
    if not args.no_validation:
        result["validation"] = validate(nets, args.modes, tuple(args.calibration_modes))
    if args.speed:
        result["speed"] = speed(nets[args.speed], args.modes[0], args.rounds, tuple(args.calibration_modes))
    atomic_write_json({**header("accelerator energy engines against Icarus with cell delays", load_before), **result},
                      args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
