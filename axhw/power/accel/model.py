"""The model engine: accelerator energy per inference from action counts, calibrated on gate-level runs.

Why: the gate-level reference (Icarus with cell delays) costs minutes per MNIST-MLP sample and half an hour
per LeNet-5 image, too slow for a search over configurations. Accelergy (Wu et al., ICCAD 2019) showed that
action counts x energy per action track post-layout energy within a few percent; this engine does the same
for axhw's array, with the energies taken from the array's own netlist and gate-level runs:

* **clock and leakage**, per unit: exact from the netlist, no fit. Every flip-flop's clock-pin energy per
  cycle and every cell's leakage come from OpenSTA (:func:`axhw.power.accel.energy.cell_energies`); the
  cycles of the inference, and the cycles each clock gate lets through (``Actions.gated``), come from the
  program (:mod:`axhw.power.accel.actions`).
* **storage**: exact given the access counts (:mod:`axhw.power.accel.actions`, equal to the simulated
  counts) and the SRAM model, as in the gate-level engines.
* **switching** of the logic, per unit (:data:`FEATURES`): a linear model in the unit's action counts and
  the Hamming distances of its data streams, fitted by non-negative least squares to the switching energy of
  gate-level runs (Icarus with cell delays, so glitches are in the coefficients) of small calibration networks
  (:func:`calibration_networks`: written for this purpose, seeded, none of them a network the model is
  validated on). The multipliers' and accumulators' coefficients are fitted per multiplier mode
  (:data:`PER_MODE`); the other units' once, over every run.

The calibration is stored in the axhw cache, keyed by the synthesis settings and the calibration set; the
validation against gate level on networks not used for calibration is ``bench/bench_accel_engines.py``
(table in docs/power.md, "Engines").
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from axhw.arith.fixedpoint import FixedPoint
from axhw.common.io import atomic_write_json, locked
from axhw.common.paths import cache_dir, resource_dir
from axhw.common.progress import note
from axhw.golden.network import IntConv2d, IntFlatten, IntLinear, IntMaxPool2d, IntReLU, QuantizedNetwork
from axhw.power.accel.actions import Actions, action_counts
from axhw.power.accel.energy import (
    UNITS,
    AccelConfig,
    AccelEnergy,
    array_for,
    cell_energies,
    clock_energies,
    fitted_array,
    gate_level_activity,
    gate_outputs,
    storage_and_totals,
)
from axhw.power.accel.sim import ArrayActivity, clock_domains, leaf_cells, memory_instances, unit_of
from axhw.power.accel.synth import ARRAY_BUFFERING, ArraySynth, synthesize_array
from axhw.power.accel.timing import clock_mhz_for
from axhw.power.flow.synth import SynthConfig
from axhw.power.flow.tools import find_toolchain
from axhw.rtl.pe import ArrayConfig
from axhw.rtl.program import compile_network

__all__ = ["FEATURES", "PER_MODE", "Calibration", "calibrate", "calibration_networks", "capacities", "model_energy", "shared_array", "unit_energies"]

#: Per unit, the action counts its switching energy is linear in (names of :attr:`Actions.features`, plus
#: ``cycles``). Multipliers: partial-product, operand and product bits that change. Adders (the PEs'
#: accumulators): partial-sum bits that change, product bits entering, bias loads, and the multiplier's own
#: activity (with cell delays its glitches reach the adder). Re-quantization: its input and output bits that
#: change, words written, and the accumulators' changes (its input multiplexer passes one lane's sum while the
#: lanes compute). Control (sequencer, PE controllers, the glue's buses): its counters step with the schedule,
#: the weight-store and gathered-activation buses switch with the data.
FEATURES: dict[str, tuple[str, ...]] = {
    "multipliers": ("mul_pp_hd", "mul_in_hd", "mul_out_hd"),
    "adders": ("acc_hd", "mul_out_hd", "acc_clears", "mul_pp_hd", "mul_in_hd"),
    "requantization": ("rq_in_hd", "rq_out_hd", "rq_writes", "acc_hd"),
    "control": ("cycles", "run_cycles", "loadn_cycles", "pixels", "rq_writes", "pool_reads", "input_words",
                "wbuf_hd", "nbuf_hd"),
}

#: Units whose coefficients are fitted per multiplier mode: the multipliers (each mode is another circuit) and
#: the accumulators they drive (with cell delays, a multiplier's glitches reach the adder's inputs, so the
#: adder's switching per product bit depends on the multiplier in front of it).
PER_MODE: tuple[str, ...] = ("multipliers", "adders")

#: Version of the calibration procedure (part of the cache key).
CALIBRATION_VERSION = 8


def _feature(actions: Actions, name: str) -> float:
    return actions.cycles if name == "cycles" else actions.features[name]


# --- calibration networks ------------------------------------------------------------------------------------


def _fp(frac: int) -> FixedPoint:
    return FixedPoint(8, frac)


def _dense(g: torch.Generator, fan_in: int, fan_out: int, last: bool) -> IntLinear:
    w = (torch.randn(fan_out, fan_in, generator=g) * 28).round().clamp(-128, 127).to(torch.int64)
    b = torch.randint(-3000, 3000, (fan_out,), generator=g)
    return IntLinear(weight=w, bias=b, act_fmt=_fp(4), weight_fmt=_fp(6), acc_fmt=FixedPoint(32, 10),
                     out_fmt=None if last else _fp(4))


def _conv(g: torch.Generator, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> IntConv2d:
    w = (torch.randn(cout, cin, k, k, generator=g) * 28).round().clamp(-128, 127).to(torch.int64)
    b = torch.randint(-3000, 3000, (cout,), generator=g)
    return IntConv2d(weight=w, bias=b, act_fmt=_fp(4), weight_fmt=_fp(6), acc_fmt=FixedPoint(32, 10),
                     out_fmt=_fp(4), stride=stride, padding=padding)


def _inputs(g: torch.Generator, shape: tuple[int, ...], samples: int) -> torch.Tensor:
    """Sparse non-negative codes, as image pixels and ReLU outputs are (about half zeros)."""
    x = torch.randint(0, 128, (samples, *shape), generator=g)
    return torch.where(torch.rand(samples, *shape, generator=g) < 0.5, torch.zeros_like(x), x)


def calibration_networks(samples: int = 2) -> dict[str, tuple[QuantizedNetwork, torch.Tensor]]:
    """Small integer networks with seeded random weights and sparse inputs, shaped to vary every action count
    independently (fan-in, output channels past a multiple of the PEs, pixels, padding, stride, pooling):
    three MLPs and three convolutional networks."""
    g = torch.Generator().manual_seed(2018)
    nets: dict[str, tuple[QuantizedNetwork, torch.Tensor]] = {}
    nets["mlp_24_20_5"] = (QuantizedNetwork([_dense(g, 24, 20, False), IntReLU(), _dense(g, 20, 5, True)]),
                           _inputs(g, (24,), samples))
    nets["mlp_40_33_16_3"] = (QuantizedNetwork([_dense(g, 40, 33, False), IntReLU(), _dense(g, 33, 16, False),
                                                IntReLU(), _dense(g, 16, 3, True)]), _inputs(g, (40,), samples))
    nets["mlp_96_8_4"] = (QuantizedNetwork([_dense(g, 96, 8, False), IntReLU(), _dense(g, 8, 4, True)]),
                          _inputs(g, (96,), samples))
    nets["cnn_pad_pool"] = (QuantizedNetwork([_conv(g, 1, 4, 3, padding=1), IntReLU(), IntMaxPool2d(2, 2), IntFlatten(),
                                              _dense(g, 4 * 4 * 4, 6, True)]), _inputs(g, (1, 8, 8), samples))
    nets["cnn_stride"] = (QuantizedNetwork([_conv(g, 2, 18, 3, stride=2), IntReLU(), _conv(g, 18, 6, 2), IntReLU(),
                                            IntFlatten(), _dense(g, 6 * 3 * 3, 5, True)]),
                          _inputs(g, (2, 9, 9), samples))
    nets["cnn_5x5"] = (QuantizedNetwork([_conv(g, 1, 3, 5, padding=2), IntReLU(), IntMaxPool2d(3, 3), IntFlatten(),
                                         _dense(g, 3 * 2 * 2, 4, True)]), _inputs(g, (1, 6, 6), samples))
    return nets


# --- per-unit energies of a gate-level run -------------------------------------------------------------------


def unit_energies(synth: ArraySynth, act: ArrayActivity, clock_mhz: float | None = None
                  ) -> dict[str, dict[str, float]]:
    """Per unit, per inference: ``switching`` (toggles x energy per toggle), ``clock`` and ``leakage`` (J), from
    a gate-level activity and the netlist's per-cell energies (leakage over the cycles at ``clock_mhz``; None:
    the fastest clock the netlist meets)."""
    ce = cell_energies(synth, act.period_ns)
    enabled = {g: c / act.samples for g, c in clock_domains(synth).enabled_cycles(act.toggles).items()}
    out: dict[str, dict[str, float]] = _static(synth, act.cycles / act.samples, clock_mhz_for(synth, clock_mhz),
                                               act.period_ns, enabled)
    for u in out.values():
        u["switching"] = 0.0
    gates = gate_outputs(synth)
    for i, c in enumerate(leaf_cells(synth)):
        if i not in gates:  # a clock gate's output is clock energy, in _static
            out[unit_of(c.module)]["switching"] += act.toggles[i] / act.samples * ce["toggle_j"][i]
    return out


def capacities(synth: ArraySynth, period_ns: float = 50.0) -> dict[str, float]:
    """Per unit, the summed energy per output toggle of its cells (J): how much switching capacitance the
    netlist gives the unit."""
    ce = cell_energies(synth, period_ns)
    out = dict.fromkeys(UNITS, 0.0)
    for i, c in enumerate(leaf_cells(synth)):
        out[unit_of(c.module)] += ce["toggle_j"][i]
    return out


def _static(synth: ArraySynth, cycles: float, clock_mhz: float, period_ns: float, enabled: dict[str, float]
            ) -> dict[str, dict[str, float]]:
    """Per unit, clock (:func:`axhw.power.accel.energy.clock_energies`: the clock gates' ``enabled`` cycles)
    and leakage energy per inference of ``cycles``."""
    ce = cell_energies(synth, period_ns)
    clk = clock_energies(synth, ce, cycles, enabled)
    out = {u: {"clock": 0.0, "leakage": 0.0} for u in UNITS}
    for i, c in enumerate(leaf_cells(synth)):
        u = out[unit_of(c.module)]
        u["clock"] += clk[i]
        u["leakage"] += ce["leakage_w"][i] * cycles / (clock_mhz * 1e6)
    return out


# --- calibration ---------------------------------------------------------------------------------------------


@dataclass
class Calibration:
    """Fitted energies per action (J per counted feature), per unit; the multipliers' per mode.

    Attributes:
        coef: ``{"control": {feature: J}, ..., "multipliers": {mode: {feature: J}}}`` (:data:`PER_MODE` units
            per mode).
        runs: the calibration runs (network, mode, features, measured switching energy per unit).
        residual: per unit, the largest relative error of the fit on its own runs.
        reference: how the calibration runs were simulated (engine, timing).
    """

    coef: dict[str, Any]
    runs: list[dict[str, Any]] = field(default_factory=list)
    residual: dict[str, float] = field(default_factory=dict)
    reference: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    capacity: dict[str, float] = field(default_factory=dict)

    def switching(self, unit: str, mode: str, actions: Actions, capacity: float | None = None) -> float:
        """The modelled switching energy (J per inference) of ``unit`` in ``mode``'s array; ``capacity``: the
        unit's summed energy per toggle in the target netlist (:func:`capacities`), which scales the fit from
        the calibration array's netlist to the target's (wider address counters in a larger array: more cells
        switch per step)."""
        coef = self.coef[unit]
        if unit in PER_MODE:
            if mode not in coef:
                raise ValueError(f"the model is not calibrated for mode {mode!r} (calibrated: {', '.join(coef)}): "
                                 f"calibrate it (axhw.power.accel.model.calibrate(modes=[..., {mode!r}]))")
            coef = coef[mode]
        scale = 1.0
        if capacity is not None:
            ref = self.capacity.get(unit if unit not in PER_MODE else f"{unit}@{mode}")
            scale = capacity / ref if ref else 1.0
        return scale * sum(c * _feature(actions, f) for f, c in coef.items())


def shared_array(nets: dict[str, tuple[QuantizedNetwork, torch.Tensor]], mode: str, cfg: AccelConfig,
                 synth_cfg: SynthConfig | None = None) -> tuple[ArraySynth, ArrayConfig]:
    """One array (every memory as deep as the deepest network needs) that runs all of ``nets``: one synthesis
    and one compiled testbench per mode for the whole calibration set."""
    fitted = [fitted_array(q, x, mode, cfg.pes) for q, x in nets.values()]
    depths = {f: max(getattr(a, f) for a in fitted) for f in ("max_fan_in", "nbuf_depth", "wbuf_depth", "bbuf_depth",
                                                              "obuf_depth", "imem_depth")}
    acfg = fitted[0].copy(**depths)
    return synthesize_array(acfg, synth_cfg), acfg


def _nnls(rows: list[list[float]], target: list[float]) -> list[float]:
    """Non-negative least squares on relative errors (each run weighted by 1 / its energy, so the small runs
    count as much as the large ones)."""
    from scipy.optimize import nnls

    a, b = np.asarray(rows, dtype=np.float64), np.asarray(target, dtype=np.float64)
    w = 1.0 / np.maximum(b, 1e-30)
    scale = np.maximum(np.abs(a).max(axis=0), 1e-30)  # columns to one scale: nnls is not scale-free in practice
    x, _ = nnls(a * w[:, None] / scale, b * w)
    return list(x / scale)


def _calibration_key(modes: tuple[str, ...], cfg: AccelConfig, synth_cfg: SynthConfig | None, samples: int) -> str:
    lib = find_toolchain().library
    h = hashlib.sha256()
    h.update(json.dumps({"v": CALIBRATION_VERSION, "modes": sorted(modes), "pes": cfg.pes, "samples": samples,
                         "timing": cfg.timing, "engine": cfg.engine, "period": cfg.period_ns,
                         "features": FEATURES, "synth": repr(synth_cfg), "array_abc": ARRAY_BUFFERING,
                         # another library, another fit (osu018's keys stay those stored before issue 29)
                         **({} if lib.pdk == "osu018" else {"library": find_toolchain().library_sha256})},
                        sort_keys=True).encode())
    # the array's RTL templates: an edit of the array gives other netlists, so the fit must be redone
    for t in sorted(resource_dir("rtl").glob("*.j2")):
        h.update(t.name.encode())
        h.update(t.read_bytes())
    for name, (qnet, x) in calibration_networks(samples).items():
        h.update(name.encode())
        h.update(x.numpy().tobytes())
        for layer in qnet.layers:
            h.update(layer.weight.numpy().tobytes())
    return h.hexdigest()[:20]


def calibrate(modes: tuple[str, ...] = ("exact", "K4", "K3", "K2", "K1"), cfg: AccelConfig | None = None,
              synth_cfg: SynthConfig | None = None, samples: int = 2, root: Path | None = None) -> Calibration:
    """Fit the model to gate-level runs of :func:`calibration_networks` in every mode (``cfg.engine``, default
    Icarus with cell delays), or load the stored fit. Each run is stored as any gate-level activity."""
    cfg = replace(cfg or AccelConfig(), samples=samples, engine=(cfg.engine if cfg and cfg.engine != "model"
                                                                  else "icarus"))
    key = _calibration_key(tuple(modes), cfg, synth_cfg, samples)
    path = (root or cache_dir("power", "accel-model")) / f"calibration-{key}.json"
    if path.is_file():
        return Calibration(**json.loads(path.read_text()))
    with locked(path.parent / f".{path.name}.lock"):
        if path.is_file():
            return Calibration(**json.loads(path.read_text()))
        t0 = time.perf_counter()
        runs: list[dict[str, Any]] = []
        nets = calibration_networks(samples)
        capacity: dict[str, float] = {}
        for mode in modes:
            shared = shared_array(nets, mode, cfg, synth_cfg)
            cap = capacities(shared[0], cfg.period_ns)
            for u in UNITS:  # the shared array of every mode has the same control and re-quantization netlist
                capacity[f"{u}@{mode}" if u in PER_MODE else u] = cap[u]
            for name, (qnet, x) in nets.items():
                note(f"calibrating the accelerator model: {name} in {mode} ({cfg.engine}) ...")
                syn, acfg, act, xs = gate_level_activity(qnet, x, mode, cfg, synth_cfg, synth=shared)
                acts = action_counts(acfg, qnet, xs)
                measured = unit_energies(syn, act)
                runs.append({"network": name, "mode": mode, "features": {**acts.features, "cycles": acts.cycles},
                             "switching": {u: measured[u]["switching"] for u in UNITS}})
        coef: dict[str, Any] = {}
        residual = {}
        for unit, feats in FEATURES.items():
            groups = {m: [r for r in runs if r["mode"] == m] for m in modes} if unit in PER_MODE else {"": runs}
            fitted: dict[str, dict[str, float]] = {}
            worst = 0.0
            for m, rs in groups.items():
                rows = [[r["features"][f] for f in feats] for r in rs]
                target = [r["switching"][unit] for r in rs]
                c = _nnls(rows, target)
                fitted[m] = dict(zip(feats, c, strict=True))
                for row, y in zip(rows, target, strict=True):
                    worst = max(worst, abs(sum(a * b for a, b in zip(row, c, strict=True)) - y) / max(y, 1e-30))
            coef[unit] = fitted if unit in PER_MODE else fitted[""]
            residual[unit] = worst
        cal = Calibration(coef=coef, runs=runs, residual=residual,
                          reference={"engine": cfg.engine, "timing": cfg.timing, "samples": samples,
                                     "networks": sorted(nets), "modes": list(modes), "pes": cfg.pes},
                          seconds=time.perf_counter() - t0, capacity=capacity)
        atomic_write_json(asdict(cal), path)
    return cal


# --- the engine ------------------------------------------------------------------------------------------------


def model_energy(qnet: QuantizedNetwork, x_int: torch.Tensor, mode: str, cfg: AccelConfig | None = None,
                 synth_cfg: SynthConfig | None = None, calibration: Calibration | None = None) -> AccelEnergy:
    """Energy per inference of ``qnet`` on ``mode``'s array over the first ``cfg.samples`` rows of ``x_int``,
    without simulation: the same :class:`AccelEnergy` as the gate-level engines (``activity["engine"]`` is
    ``"model"``; no toggles, no outputs compared)."""
    cfg = cfg or AccelConfig(engine="model")
    t0 = time.perf_counter()
    cal = calibration or calibrate(cfg=replace(cfg, engine="icarus"), synth_cfg=synth_cfg)
    synth, acfg = array_for(qnet, x_int, mode, cfg, synth_cfg)
    x = x_int.to(torch.int64)[: cfg.samples]
    shape = tuple(x.shape[1:]) if x.dim() == 4 else None
    program = compile_network(acfg, qnet, input_shape=shape)
    acts = action_counts(acfg, qnet, x, program=program)
    return _priced(synth, acfg, acts, mode, cfg, cal, qnet, x, find_toolchain().library.node_scale,
                   time.perf_counter() - t0)


def _pseudo_activity(synth: ArraySynth, acts: Actions, period_ns: float) -> ArrayActivity:
    """An :class:`ArrayActivity` of one inference carrying the modelled cycles and memory accesses (for
    :func:`axhw.power.accel.energy.storage_energy`)."""
    # counts per inference are the same for every input (the schedule does not depend on the data): integers
    counts = {m.path: acts.accesses(m.path, m.module) for m in memory_instances(synth)}
    reads = {p: round(r) for p, (r, _) in counts.items()}
    writes = {p: round(w) for p, (_, w) in counts.items()}
    return ArrayActivity(samples=1, cycles=round(acts.cycles), busy_cycles=0, toggles=[], reads=reads,
                         writes=writes, outputs_compared=0, mismatches=0, period_ns=period_ns, timing=False,
                         engine="model")


def _priced(synth: ArraySynth, acfg: ArrayConfig, acts: Actions, mode: str, cfg: AccelConfig, cal: Calibration,
            qnet: QuantizedNetwork, x: torch.Tensor, node_scale: float, seconds: float) -> AccelEnergy:
    clock_mhz = clock_mhz_for(synth, cfg.clock_mhz)
    static = _static(synth, acts.cycles, clock_mhz, cfg.period_ns, acts.gated)
    cap = capacities(synth, cfg.period_ns)
    units = {u: cal.switching(u, mode, acts, cap[u]) + static[u]["clock"] + static[u]["leakage"] for u in UNITS}
    clock = {u: static[u]["clock"] for u in UNITS}
    act = _pseudo_activity(synth, acts, cfg.period_ns)
    storage, totals = storage_and_totals(synth, act, cfg, units, node_scale)
    activity: dict[str, Any] = {"samples": acts.samples, "cycles": acts.cycles * acts.samples, "busy_cycles": None,
                "outputs_compared": 0, "mismatches": 0, "sim_seconds": 0.0, "compile_seconds": 0.0,
                "model_seconds": seconds, "period_ns": cfg.period_ns, "timing": False, "fallback_reads": [],
                "engine": "model", "cycles_per_inference": acts.cycles, "features": acts.features,
                "clock_mhz": clock_mhz,
                "calibration": cal.reference}
    synthesis = {"area_um2": synth.area_um2, "cells": len(leaf_cells(synth)), "key": synth.key}
    settings = {k: v for k, v in asdict(cfg).items() if k != "use_cache"}
    return AccelEnergy(mode=mode, config_id=acfg.config_id, logic_j=units, logic_clock_j=clock,
                       logic_modules_j={}, storage=storage, totals=totals, activity=activity, synthesis=synthesis,
                       node_scale=node_scale, multiplies_per_inference=qnet.multiplies_per_inference(x),
                       settings=settings, library=find_toolchain().library.label)
