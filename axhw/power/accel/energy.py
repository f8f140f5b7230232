"""Accelerator-level energy per inference: the whole PE array on a real network run (docs/power.md,
"Accelerator-level energy").

Steps (each its own module, as the multiplier-only flow):

1. :mod:`axhw.power.accel.synth`: the array generated for the network (:func:`fit_array`) is synthesized to
   osu018 cells without its memories (cached);
2. :mod:`axhw.power.accel.sim`: test samples run through the gate-level array (Icarus, cell delays), checked
   against ``forward_int`` bit for bit; every cell's output toggles and every memory's reads and writes are
   counted;
3. here: OpenSTA gives every cell its energy per output toggle and per clock cycle (``power/accel_power.tcl.j2``,
   :func:`cell_energies`), so logic energy = sum over cells of (toggles x energy per toggle + cycles x clock
   energy) + leakage x time, split by unit (multipliers; adders; re-quantization; control);
4. storage: the counted accesses x word width x the SRAM model's energy per bit at the voltage
   (:mod:`axhw.power.sram_energy`) + leakage of every memory bit over the inference.

Why per-cell energies from two STA runs: the installed OpenSTA overwrites annotated pin activities
(docs/power.md, "Annotation"), so, as the multiplier flow does, each cell's power at 1 transition per cycle
is scaled by its measured toggle rate -- but a flip-flop also burns clock-pin energy in every cycle its clock
ticks, whether its output moves or not (every cycle on the free-running clock; behind a clock gate, the
cycles the gate lets through: :func:`clock_energies`). A second run at zero activity isolates that
clock-driven part (``Z``); the per-toggle energy is ``(U - Z) / f`` and the per-cycle energy ``Z / f``, with
``U`` the unit-activity power.

Nodes: the logic is osu018 (180 nm, 1.8 V), the SRAM model 65 nm / 1.1 V. Totals are given on the SRAM's
node with the logic scaled by :data:`axhw.power.search.study.NODE_SCALE_180_TO_65` (C V^2 scaling, the same factor as
the report's joint power; stated, not measured), and the logic alone at osu018.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import torch

from axhw.common.io import atomic_write_json
from axhw.common.paths import cache_dir
from axhw.golden.network import QuantizedNetwork
from axhw.power.accel.sim import (
    ArrayActivity,
    clock_domains,
    leaf_cells,
    memory_instances,
    simulate_array,
    testbench,
    unit_of,
)
from axhw.power.accel.synth import ArraySynth, synthesize_array
from axhw.power.accel.timing import clock_mhz_for, timing_closure
from axhw.power.flow.sta import instance_rows, run_sta
from axhw.power.flow.synth import SynthConfig
from axhw.power.flow.templates import render
from axhw.power.flow.tools import OSU018_LABEL, find_toolchain
from axhw.power.sram_energy import SRAMTechnology, leakage_per_bit_w, read_energy_per_bit_j
from axhw.rtl.pe import DEFAULT_GEOMETRY, ArrayConfig, PEMultiplier
from axhw.rtl.program import NetworkDoesNotFit, compile_network

__all__ = ["UNITS", "AccelConfig", "AccelEnergy", "accelerator_energy", "array_for", "cell_energies", "clock_energies",
           "fit_array", "fitted_array", "gate_level_activity", "gate_outputs", "storage_and_totals", "storage_energy"]

#: The split of the logic energy (:func:`axhw.power.accel.sim.unit_of`).
UNITS = ("multipliers", "adders", "requantization", "control")


@dataclass(frozen=True)
class AccelConfig:
    """Settings of an accelerator-level measurement.

    Attributes:
        pes: PEs of the array (the default geometry's 16); memory depths are fitted to the network.
        samples: test samples run at gate level (the first ones of the test set).
        period_ns: simulated clock period: long enough for every path to settle (the buffered 16-PE 8-bit
            arrays meet 7.8 ns at osu018; a violation would show as mismatches), so the toggles are the
            design's at any clock it meets; not the power clock (``clock_mhz``).
        clock_mhz: operating clock for leakage (energy = leakage power x cycles / clock). None (default): the
            fastest clock the synthesized array meets at osu018 (:func:`axhw.power.accel.timing.timing_closure`:
            worst setup slack >= 0); a clock faster than that is refused.
        timing: honour the cell models' specify delays (glitches counted) or simulate zero-delay.
        voltages: SRAM supply voltages (mV) at which storage energy is reported.
        scaled_memories: memory modules on the scaled supply: the parameter storage whose bit flips the
            accuracy evaluation models (:mod:`axhw.arith.sram`: weights and biases). The array stores every
            weight once, in the weight store the PEs read (docs/rtl.md, "Weights stored once"), so these are all
            the weight bits; the PEs' neuron local memories, the neuron/output buffers and the instruction memory
            stay at the nominal 1.1 V (their flips are not modelled, so scaling them would claim accuracy that
            was never measured).
        write_read_ratio: SRAM write energy per bit / read energy per bit. 1.0 (assumed): the model's anchor
            (Horowitz, ISSCC 2014) is a 64-bit access of an 8 KB array, without a read/write split.
        use_cache: reuse a stored activity (simulation) for identical inputs.
        cache_root: folder of stored activities (default ``power/accel`` in the axhw cache).
        engine: ``icarus`` (gate level, cell delays with ``timing``: the reference), ``verilator`` (gate level,
            zero-delay, compiled once per netlist: no glitches, so its switching energy is lower; docs/power.md,
            "Engines", gives the measured ratios per unit) or ``model`` (no simulation: action counts x
            calibrated energies, :mod:`axhw.power.accel.model`, through
            :func:`axhw.power.accel.engines.energy_per_inference`).
    """

    pes: int = DEFAULT_GEOMETRY["pes"]
    samples: int = 2
    period_ns: float = 50.0
    clock_mhz: float | None = None
    timing: bool = True
    voltages: tuple[float, ...] = (1100.0, 850.0, 660.0, 400.0)
    scaled_memories: tuple[str, ...] = ("array_wbuf", "array_bbuf")
    write_read_ratio: float = 1.0
    use_cache: bool = True
    cache_root: Path | None = None
    engine: str = "icarus"

    @property
    def store(self) -> Path:
        """Where simulated activities are kept (``power/accel`` in the axhw cache unless ``cache_root``)."""
        return Path(self.cache_root) if self.cache_root is not None else cache_dir("power", "accel")


def fit_array(mul: PEMultiplier, qnet: QuantizedNetwork, pes: int = 16,
              input_shape: tuple[int, ...] | None = None) -> ArrayConfig:
    """The smallest array of ``pes`` PEs whose memories hold ``qnet`` (depths grown as the compiler asks).

    ``input_shape``: ``(C, H, W)`` of a network that starts with a convolution (MNIST's is inferred).

    Memory capacity sets SRAM leakage, so an array sized for MNIST would overstate a small network's.
    Raises :class:`NetworkDoesNotFit` for what growing memories cannot fix (word widths, operations).
    """
    acfg = ArrayConfig(mul, pes=pes, max_fan_in=2, nbuf_depth=2, wbuf_depth=2, bbuf_depth=2, obuf_depth=2,
                       imem_depth=2)  # every memory at its smallest, grown below
    for _ in range(32):
        try:
            compile_network(acfg, qnet, input_shape=input_shape)
            return acfg
        except NetworkDoesNotFit as exc:
            msg = str(exc)
            grow = re.search(r"--([a-z][a-z-]*) (\d+)", msg) or re.search(r"\b(acc_bits|bias_bits)\s*>?=\s*(\d+)", msg)
            if grow is None or grow.group(1) == "bits":
                raise
            acfg = acfg.copy(**{grow.group(1).replace("-", "_"): int(grow.group(2))})
    raise NetworkDoesNotFit(f"could not fit the network after 32 resizes (last: {acfg.config_id})")


# --- per-cell energies -----------------------------------------------------------------------------------


def _instances(out: str, marker: str) -> dict[str, tuple[float, float]]:
    """Per-instance ``(dynamic, leakage)`` power after ``marker`` (:func:`axhw.power.flow.sta.instance_rows`)."""
    return {name: (internal + switching, leakage)
            for name, (internal, switching, leakage) in instance_rows(out, marker).items()}


@functools.lru_cache(maxsize=8)
def _read_json(path: str, _mtime: int) -> dict[str, Any]:
    """A stored JSON file, parsed once per process and version (callers only read it)."""
    return json.loads(Path(path).read_text())


def cell_energies(synth: ArraySynth, period_ns: float) -> dict[str, Any]:
    """Per leaf cell (order of :func:`leaf_cells`): energy per output toggle (J), clock energy per cycle (J),
    leakage (W); plus the critical path (ns). Cached beside the netlist."""
    path = Path(synth.netlist).parent / f"cell_energies_{period_ns:g}ns.json"
    if path.is_file():
        return _read_json(str(path), path.stat().st_mtime_ns)
    tc = find_toolchain()
    script = render("accel_power.tcl.j2", liberty=tc.liberty, netlist=synth.sta_netlist, top=synth.top,
                    period_ns=period_ns)
    try:
        out = run_sta(script, tc.sta)
    except RuntimeError as exc:
        raise RuntimeError(f"sta failed on {synth.netlist}: {exc}") from exc
    if "AXHW_CHECKS" not in out:
        raise RuntimeError(f"sta failed on {synth.netlist}: {out.strip()[-2000:]}")
    unit = _instances(out.split("AXHW_ZERO")[0], "AXHW_UNIT")
    zero = _instances(out, "AXHW_ZERO")
    cells = leaf_cells(synth)
    missing = [c.sta_name for c in cells if c.sta_name not in unit or c.sta_name not in zero]
    if missing:
        raise RuntimeError(f"report_power lists no power for {len(missing)} cells, e.g. {missing[:3]}")
    seconds = period_ns * 1e-9
    arrival = re.search(r"([0-9.]+)\s+data arrival time", out.split("AXHW_CHECKS")[1])
    result = {
        "period_ns": period_ns,
        "toggle_j": [max(unit[c.sta_name][0] - zero[c.sta_name][0], 0.0) * seconds for c in cells],
        "clock_j": [zero[c.sta_name][0] * seconds for c in cells],
        "leakage_w": [unit[c.sta_name][1] for c in cells],
        "critical_path_ns": float(arrival.group(1)) if arrival else None,
    }
    atomic_write_json(result, path, indent=None)
    return result


def clock_energies(synth: ArraySynth, ce: dict[str, Any], cycles: float, enabled: dict[str, float]) -> list[float]:
    """Per leaf cell, its clock-driven energy per inference (J): a flip-flop's or latch's per-cycle clock
    energy (``ce["clock_j"]``) over the cycles its clock pin saw -- all ``cycles`` on the free-running clock,
    the gate's ``enabled`` cycles behind a clock gate (rtl/clock_gate.v.j2) -- and each gate's output (its
    AND, which rises and falls once per enabled cycle) at ``2 x enabled x`` its energy per toggle. The gates'
    outputs are therefore not part of any unit's data switching (see :func:`gate_outputs`).

    Raises:
        KeyError: ``enabled`` lacks a clock gate of the netlist.
    """
    dom = clock_domains(synth)
    missing = sorted(set(dom.gate_output) - set(enabled))
    if missing:
        raise KeyError(f"no enabled-cycle count for the clock gate(s) {', '.join(missing[:3])} of {synth.netlist}")
    out = [a * z for a, z in zip(dom.active_cycles(cycles, enabled), ce["clock_j"], strict=True)]
    for g, i in dom.gate_output.items():
        out[i] += 2 * enabled[g] * ce["toggle_j"][i]
    return out


def gate_outputs(synth: ArraySynth) -> set[int]:
    """Indices (:func:`leaf_cells` order) of the cells that drive a gated clock: their toggles are clock
    energy (:func:`clock_energies`), not data switching."""
    return set(clock_domains(synth).gate_output.values())


# --- storage ---------------------------------------------------------------------------------------------


class _MemoryEnergy(TypedDict):
    """One memory instance's share of :func:`storage_energy` (per inference)."""

    module: str
    voltage_mv: float
    reads: float
    writes: float
    width: int
    bits: int
    dynamic_j: float
    leakage_j: float


def storage_energy(synth: ArraySynth, act: ArrayActivity, voltage_mv: float, cfg: AccelConfig,
                   tech: SRAMTechnology | None = None) -> dict[str, Any]:
    """SRAM energy per inference (J) of every memory instance at ``voltage_mv`` (scaled memories) or nominal.

    dynamic = (reads x bits read + ``write_read_ratio`` x writes x word bits) x E_read(V) per bit (a memory
    banked per PE lane reads one lane's bits per counted read: :class:`axhw.power.accel.sim.MemoryInstance`);
    leakage = capacity bits x P_leak(V) x the inference's time (cycles / the clock:
    :attr:`AccelConfig.clock_mhz`).
    """
    tech = tech or SRAMTechnology()
    seconds = act.cycles / act.samples / (clock_mhz_for(synth, cfg.clock_mhz) * 1e6)
    per: dict[str, _MemoryEnergy] = {}
    for m in memory_instances(synth):
        spec = synth.memories[m.module]
        v = voltage_mv if m.module in cfg.scaled_memories else tech.nominal_mv
        e_bit = read_energy_per_bit_j(v, tech)
        reads, writes = act.reads.get(m.path, 0) / act.samples, act.writes.get(m.path, 0) / act.samples
        dyn = (reads * m.read_bits(spec.width) + cfg.write_read_ratio * writes * spec.width) * e_bit
        leak = spec.bits * leakage_per_bit_w(v, tech) * seconds
        per[m.path] = {"module": m.module, "voltage_mv": v, "reads": reads, "writes": writes, "width": spec.width,
                       "bits": spec.bits, "dynamic_j": dyn, "leakage_j": leak}
    by_module: dict[str, float] = {}
    for p in per.values():
        by_module[p["module"]] = by_module.get(p["module"], 0.0) + p["dynamic_j"] + p["leakage_j"]
    return {"voltage_mv": float(voltage_mv), "total_j": sum(by_module.values()),
            "dynamic_j": sum(p["dynamic_j"] for p in per.values()),
            "leakage_j": sum(p["leakage_j"] for p in per.values()), "by_module": by_module}


# --- the measurement -------------------------------------------------------------------------------------


@dataclass
class AccelEnergy:
    """Energy per inference of one network on one array (one multiplier mode), all voltages.

    Attributes:
        mode, config_id: multiplier mode and the array generated for the network.
        logic_j: per unit (:data:`UNITS`), the logic energy per inference at the selected library's node
            (dynamic + clock + leakage).
        logic_clock_j: the part of ``logic_j`` that is clock: the flip-flops' clock pins in the cycles their
            clock (free-running, or a clock gate's) ticks, whatever the data, and the clock gates' outputs.
        logic_modules_j: the same per synthesized module.
        storage: per voltage (``"1100"``...), :func:`storage_energy`'s dict.
        totals: per voltage, ``{"total_j", "multipliers_j", "adders_requant_control_j", "storage_j",
            "multiplier_share"}`` on the 65 nm node (logic scaled by ``node_scale``).
        activity: samples, cycles, toggles, outputs compared, mismatches, wall times.
        library: the cell library the logic was mapped to (:attr:`axhw.power.flow.tools.CellLibrary.label`).
    """

    mode: str
    config_id: str
    logic_j: dict[str, float]
    logic_clock_j: dict[str, float]
    logic_modules_j: dict[str, float]
    storage: dict[str, dict[str, Any]]
    totals: dict[str, dict[str, float]]
    activity: dict[str, Any]
    synthesis: dict[str, Any]
    node_scale: float
    multiplies_per_inference: int
    settings: dict[str, Any] = field(default_factory=dict)
    library: str = OSU018_LABEL

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _key(synth: ArraySynth, acfg: ArrayConfig, program_images: dict[str, str], x_int: torch.Tensor, mode: str,
         cfg: AccelConfig) -> str:
    h = hashlib.sha256()
    h.update(synth.key.encode())
    h.update(json.dumps(program_images, sort_keys=True).encode())
    h.update(x_int.to(torch.int64).numpy().tobytes())
    settings = {k: v for k, v in asdict(cfg).items() if k in ("period_ns", "timing")}
    if cfg.engine != "icarus":  # Icarus keys carry no engine field (activities stored before engines existed)
        settings["engine"] = cfg.engine
        settings["timing"] = False  # Verilator is zero-delay whatever was asked
    # the testbench as rendered for this engine: edits that leave it unchanged (the other engine's branch,
    # comments outside it) keep the stored activities
    tb = testbench(synth, acfg, cfg.period_ns, two_state=cfg.engine == "verilator")
    h.update(json.dumps({"mode": mode, "testbench": tb, **settings}, sort_keys=True).encode())
    return h.hexdigest()


def accelerator_energy(qnet: QuantizedNetwork, x_int: torch.Tensor, mode: str, cfg: AccelConfig | None = None,
                       synth_cfg: SynthConfig | None = None, work_dir: Path | None = None) -> AccelEnergy:
    """Energy per inference of ``qnet`` on the array with multiplier ``mode`` (``exact``, ``K1``..``K4``,
    ``drum<k>``), over the first ``cfg.samples`` rows of ``x_int`` (input codes).

    Raises:
        ValueError: the gate-level array disagrees with ``forward_int`` (its energy would be meaningless).
        NetworkDoesNotFit: the array cannot run the network.
        ToolMissing: Yosys, OpenSTA, Icarus or osu018 missing.

    >>> from axhw.training.trainer import integer_test_inputs, load_checkpoint
    >>> qnet, x = integer_test_inputs(load_checkpoint("runs/bp/checkpoint.pt"))  # doctest: +SKIP
    >>> e = accelerator_energy(qnet, x, "K2", AccelConfig(samples=2))  # doctest: +SKIP
    >>> e.activity["mismatches"], 0 < e.totals["1100"]["multiplier_share"] < 1  # doctest: +SKIP
    (0, True)
    """
    cfg = cfg or AccelConfig()
    if cfg.engine == "model":
        raise ValueError("accelerator_energy simulates (engine icarus or verilator); the model engine is "
                         "axhw.power.accel.model.model_energy, and axhw.power.accel.engines.energy_per_inference "
                         "takes any engine")
    synth, acfg, act, x = gate_level_activity(qnet, x_int, mode, cfg, synth_cfg, work_dir)
    return _energy(synth, acfg, act, mode, cfg, qnet, x, find_toolchain().library.node_scale)


def fitted_array(qnet: QuantizedNetwork, x_int: torch.Tensor, mode: str, pes: int) -> ArrayConfig:
    """:func:`fit_array` for multiplier ``mode`` (``exact``, ``K1``..``K4``, ``drum<k>``, or an imported library
    circuit: its signed use, as the PE instantiates it) and the inputs' shape."""
    from axhw.power.multiplier.compute import mode_config

    mcfg = mode_config(mode, qnet.layers[0].act_fmt.bits)
    shape = tuple(x_int.shape[1:]) if x_int.dim() == 4 else None  # a conv network's (C, H, W)
    return fit_array(mcfg, qnet, pes, shape)


def array_for(qnet: QuantizedNetwork, x_int: torch.Tensor, mode: str, cfg: AccelConfig,
              synth_cfg: SynthConfig | None = None) -> tuple[ArraySynth, ArrayConfig]:
    """The array fitted to ``qnet`` with multiplier ``mode``, synthesized (cached)."""
    acfg = fitted_array(qnet, x_int, mode, cfg.pes)
    return synthesize_array(acfg, synth_cfg), acfg


def gate_level_activity(qnet: QuantizedNetwork, x_int: torch.Tensor, mode: str, cfg: AccelConfig,
                        synth_cfg: SynthConfig | None = None, work_dir: Path | None = None,
                        synth: tuple[ArraySynth, ArrayConfig] | None = None,
                        ) -> tuple[ArraySynth, ArrayConfig, ArrayActivity, torch.Tensor]:
    """The gate-level run of the first ``cfg.samples`` rows of ``x_int`` on ``mode``'s array (``cfg.engine``:
    ``icarus`` or ``verilator``), stored and reused; checked against ``forward_int``. ``synth``: an array to
    run on instead of the one fitted to ``qnet`` (calibration runs share one array)."""
    if cfg.engine not in ("icarus", "verilator"):
        raise ValueError(f"engine {cfg.engine!r} does not simulate; the gate-level engines are icarus, verilator")
    syn, acfg = synth if synth is not None else array_for(qnet, x_int, mode, cfg, synth_cfg)
    shape = tuple(x_int.shape[1:]) if x_int.dim() == 4 else None
    x = x_int.to(torch.int64)[: cfg.samples]  # as shaped: the golden model of a conv network reads (N, C, H, W)
    program = compile_network(acfg, qnet, input_shape=shape)
    store = cfg.store / f"{acfg.config_id}-{_key(syn, acfg, program.images, x.flatten(1), mode, cfg)[:20]}.json"
    act: ArrayActivity | None = None
    if cfg.use_cache and store.is_file():
        act = ArrayActivity(**json.loads(store.read_text()))
    if act is None:
        timing = cfg.timing and cfg.engine == "icarus"
        # sim_seconds: the simulation alone; compile_seconds: the testbench's build (0 when cached)
        act = simulate_array(syn, acfg, qnet, x, period_ns=cfg.period_ns, timing=timing, work_dir=work_dir,
                             engine=cfg.engine)
        if act.mismatches:
            raise ValueError(f"mode {mode}: the gate-level array disagrees with forward_int on {act.mismatches} of "
                             f"{act.outputs_compared} outputs (first: sample, layer, neuron, expected, got = "
                             f"{act.first_bad}): its energy would be meaningless")
        atomic_write_json(asdict(act), store, indent=None)
    return syn, acfg, act, x


def storage_and_totals(synth: ArraySynth, act: ArrayActivity, cfg: AccelConfig, units: dict[str, float],
                       node_scale: float) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, float]]]:
    """Per voltage of ``cfg``: :func:`storage_energy` and the totals of :class:`AccelEnergy` (logic per unit
    ``units`` at osu018, scaled to the SRAM's node by ``node_scale``, plus storage)."""
    storage = {f"{v:g}": storage_energy(synth, act, v, cfg) for v in cfg.voltages}
    totals = {}
    for v, s in storage.items():
        mul = units["multipliers"] * node_scale
        other = (units["adders"] + units["requantization"] + units["control"]) * node_scale
        total = mul + other + s["total_j"]
        totals[v] = {"total_j": total, "multipliers_j": mul, "adders_requant_control_j": other,
                     "storage_j": s["total_j"], "multiplier_share": mul / total if total else 0.0}
    return storage, totals


def _energy(synth: ArraySynth, acfg: ArrayConfig, act: ArrayActivity, mode: str, cfg: AccelConfig,
            qnet: QuantizedNetwork, x: torch.Tensor, node_scale: float) -> AccelEnergy:
    ce = cell_energies(synth, act.period_ns)
    cells = leaf_cells(synth)
    n = act.samples
    clock_mhz = clock_mhz_for(synth, cfg.clock_mhz)
    leak_s = act.cycles / n / (clock_mhz * 1e6)
    modules: dict[str, float] = {}
    clock = {u: 0.0 for u in UNITS}
    enabled = {g: c / n for g, c in clock_domains(synth).enabled_cycles(act.toggles).items()}
    clk = clock_energies(synth, ce, act.cycles / n, enabled)
    gates = gate_outputs(synth)
    for i, c in enumerate(cells):
        e_clk = clk[i]
        e = (0.0 if i in gates else (act.toggles[i] / n) * ce["toggle_j"][i]) + e_clk + ce["leakage_w"][i] * leak_s
        modules[c.module] = modules.get(c.module, 0.0) + e
        clock[unit_of(c.module)] += e_clk
    units = {u: 0.0 for u in UNITS}
    for m, e in modules.items():
        units[unit_of(m)] += e
    storage, totals = storage_and_totals(synth, act, cfg, units, node_scale)
    activity = {k: getattr(act, k) for k in ("samples", "cycles", "busy_cycles", "outputs_compared", "mismatches",
                                            "sim_seconds", "compile_seconds", "period_ns", "timing",
                                            "fallback_reads")}
    activity["cycles_per_inference"] = act.cycles / n
    activity["toggles_per_cycle"] = sum(act.toggles) / max(act.cycles, 1)
    activity["critical_path_ns"] = ce["critical_path_ns"]
    activity["clock_mhz"] = clock_mhz  # the clock leakage is charged at (met by the netlist: timing)
    activity["timing"] = timing_closure(synth)
    activity["clock_enabled_cycles"] = enabled  # per clock gate, per inference
    synthesis = {"area_um2": synth.area_um2, "cells": len(cells), "key": synth.key,
                 "modules": {m: {k: d[k] for k in ("n_cells", "area_um2", "leakage_nw")}
                             for m, d in synth.modules.items() if d["n_cells"]}}
    settings = {k: v for k, v in asdict(cfg).items() if k != "use_cache"}
    return AccelEnergy(mode=mode, config_id=acfg.config_id, logic_j=units, logic_clock_j=clock,
                       logic_modules_j=modules, storage=storage,
                       totals=totals, activity=activity, synthesis=synthesis, node_scale=node_scale,
                       multiplies_per_inference=qnet.multiplies_per_inference(x), settings=settings,
                       library=find_toolchain().library.label)

