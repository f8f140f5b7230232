"""Multiplier power per mode from real operand streams: synthesize, simulate, annotate (steps 1-2 joined).

One call per (network, mode): the network's test set runs on the integer model with that mode's multiplier,
the operand stream is replayed on the synthesized netlist (checked bit for bit), and OpenSTA turns the
measured activity into power; the vectorless estimate is kept beside it.

A measurement can be cached (``measure_stream(..., cache=FOLDER)``, as ``axhw power synth`` does): the
key covers everything the numbers depend on (:func:`measurement_key`), so a hit is the same measurement.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from axhw.arith.multipliers import K_PRESETS
from axhw.arith.registry import get_multiplier
from axhw.common.io import atomic_write_json
from axhw.golden.network import QuantizedNetwork
from axhw.power.flow.activity import NetActivity, SimConfig, held_for_clock, simulate, vectors_sha256
from axhw.power.flow.sta import PowerConfig, PowerResult, activity_power, resolve_annotation, vectorless_power
from axhw.power.flow.synth import SynthConfig, SynthResult, synthesize
from axhw.power.flow.templates import template_text
from axhw.power.flow.tools import file_sha256, find_toolchain
from axhw.power.multiplier.operands import OperandStream, capture_operands
from axhw.rtl.generate import MultiplierConfig
from axhw.rtl.imported import ImportedConfig, imported_config

__all__ = ["ComputePower", "imported_config", "measure_stream", "measurement_key", "mode_config", "net_toggles",
           "network_compute_power"]


def mode_config(mode: str, bits: int, signed: bool = True) -> MultiplierConfig | ImportedConfig:
    """The RTL configuration of a multiplier mode name (``exact``, ``K1``..``K4``, ``drum<k>``, or the name of
    a circuit in the multiplier library, :mod:`axhw.arith.library`).

    An imported circuit is configured as the PE instantiates it for signed networks, on the same footing as
    DRUM (whose RTL includes its sign-magnitude logic): a signed circuit as it is (variant ``raw``, behind
    the port adapter), an unsigned one inside the generated sign-magnitude wrapper (variant ``signed``).
    """
    if mode == "exact":
        return MultiplierConfig("exact", bits=bits, signed=signed)
    if mode in K_PRESETS:
        return MultiplierConfig("drum", bits=bits, k=K_PRESETS[mode], signed=signed)
    if mode.startswith("drum") and mode[4:].isdigit():
        return MultiplierConfig("drum", bits=bits, k=int(mode[4:]), signed=signed)
    from axhw.arith import library
    if mode in library.names():
        return imported_config(mode, bits, signed)
    have = library.names()
    raise ValueError(f"unknown mode {mode!r}: valid modes are 'exact', 'K1'..'K4', 'drum<k>'"
                     + (f" and the imported circuits {', '.join(have)}" if have else
                        " (or an imported circuit: axhw multipliers import FILE.v --top MODULE --bits N)"))




@dataclass(frozen=True)
class ComputePower:
    """Power of one multiplier mode on one operand stream.

    Attributes:
        mode, config_id: the mode and its RTL configuration.
        area_um2, n_cells, leakage_nw: from synthesis.
        vectors, mismatches: gate-level check of the stream against the Python model (mismatches must be 0).
        measured: activity-annotated power; vectorless: OpenSTA's default-activity estimate.
    """

    mode: str
    config_id: str
    source: str
    area_um2: float
    n_cells: int
    leakage_nw: float
    vectors: int
    mismatches: int
    measured: PowerResult
    vectorless: PowerResult
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "config_id": self.config_id, "source": self.source, "area_um2": self.area_um2,
                "n_cells": self.n_cells, "leakage_nw": self.leakage_nw, "vectors": self.vectors,
                "mismatches": self.mismatches, "measured": self.measured.as_dict(),
                "vectorless": self.vectorless.as_dict(), **self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ComputePower:
        """The inverse of :meth:`as_dict` (a cached measurement read back)."""
        names = {f for f in cls.__dataclass_fields__ if f != "extra"}
        kw: dict[str, Any] = {k: v for k, v in d.items() if k in names}
        kw["measured"], kw["vectorless"] = PowerResult(**d["measured"]), PowerResult(**d["vectorless"])
        return cls(**kw, extra={k: v for k, v in d.items() if k not in names})


#: Source files whose code turns a simulation into the numbers of a :class:`ComputePower` (part of the key).
_MEASURE_CODE = (*(Path(__file__).resolve().parents[1] / "flow" / f for f in ("activity.py", "sta.py")),
                 Path(__file__).resolve())


def measurement_key(mode: str, synth: SynthResult, cfg: MultiplierConfig | ImportedConfig, stream: OperandStream,
                    sim_cfg: SimConfig, power_cfg: PowerConfig) -> str:
    """SHA-256 of everything a :func:`measure_stream` result depends on: the synthesis key (design, RTL,
    scripts, tool versions, library, kept nets), the testbench vectors (operands and the products expected
    of them), the simulation and power settings with the annotation resolved against the installed tools,
    the testbench and STA templates, and the source of the code that counts activity and sums power (an
    edit there re-measures). Where the VCD goes is no part of it: it does not change the numbers."""
    from importlib.metadata import version

    payload = {
        "mode": mode, "source": stream.source, "synth": synth.key, "vectors": vectors_sha256(cfg, stream),
        "sim": {"period_ns": sim_cfg.period_ns, "timing": sim_cfg.timing},
        "power": {"clock_mhz": power_cfg.clock_mhz, "input_activity": power_cfg.input_activity,
                  "vcd_scope": power_cfg.vcd_scope, "annotation": resolve_annotation(power_cfg),
                  "vcd_reader": find_toolchain().vcd_reader},
        "templates": [template_text("tb.v.j2"), template_text("power.tcl.j2")],
        "code": file_sha256(*_MEASURE_CODE), "pyvcd": version("pyvcd"),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def measure_stream(mode: str, bits: int, stream: OperandStream, synth_cfg: SynthConfig | None = None,
                   sim_cfg: SimConfig | None = None, power_cfg: PowerConfig | None = None, *,
                   cache: Path | None = None, step: Callable[[str], None] | None = None) -> ComputePower:
    """Synthesize ``mode`` at ``bits``, run ``stream`` through the netlist, and report its power.

    Args:
        cache: a folder of measurements (``<config_id>-<key>.json``, :func:`measurement_key`): a hit is read
            back instead of simulating (seconds per row saved on every rerun); None (default),
            ``synth_cfg.use_cache=False`` or a ``sim_cfg.work_dir`` (whose files are wanted) measure afresh.
        step: called with ``"synthesis"``, ``"simulation"`` and ``"power"`` as each starts (progress display).

    With ``synth_cfg.keep_nets``, ``extra["net_toggles"]`` holds the toggles per multiply of each kept net
    and of the ports ``a``, ``b``, ``p`` (:func:`net_toggles`; :mod:`axhw.power.multiplier.stages`).
    """
    note = step or (lambda _what: None)
    cfg = mode_config(mode, bits)
    synth_cfg = synth_cfg or SynthConfig()
    power_cfg = power_cfg or PowerConfig()
    sim_cfg = held_for_clock(sim_cfg or SimConfig(), power_cfg.clock_mhz)  # one operand pair per clock cycle
    note("synthesis")
    synth: SynthResult = synthesize(cfg, synth_cfg)
    entry = None
    if cache is not None and synth_cfg.use_cache and sim_cfg.work_dir is None:
        key = measurement_key(mode, synth, cfg, stream, sim_cfg, power_cfg)
        entry = Path(cache) / f"{cfg.config_id}-{key[:24]}.json"
        if entry.is_file():
            return ComputePower.from_dict(json.loads(entry.read_text()))
    with tempfile.TemporaryDirectory(prefix="axhw-power-vcd-") as tmp:
        if resolve_annotation(power_cfg) == "vcd":  # OpenSTA reads the VCD itself: keep it until then
            sim_cfg = replace(sim_cfg, work_dir=sim_cfg.work_dir or Path(tmp), keep_vcd=True)
        note("simulation")
        sim = simulate(synth, cfg, stream, sim_cfg)
        note("power")
        measured = activity_power(synth, sim.activity, power_cfg, vcd=sim.vcd)
    extra: dict[str, Any] = {"mismatch_lines": sim.mismatch_lines}
    if isinstance(cfg, ImportedConfig):
        extra["circuit"] = {"name": cfg.info.name, "top": cfg.info.top, "variant": cfg.variant,
                            "core_signed": cfg.info.signed, "source_hash": cfg.info.source_hash,
                            "table_hash": cfg.info.table_hash}
    if synth_cfg.keep_nets:
        extra["net_toggles"] = net_toggles(sim.activity, ("a", "b", *synth_cfg.keep_nets, "p"))
    result = ComputePower(
        mode=mode, config_id=cfg.config_id, source=stream.source, area_um2=synth.area_um2, n_cells=synth.n_cells,
        leakage_nw=synth.leakage_nw, vectors=sim.vectors, mismatches=sim.mismatches,
        measured=measured, vectorless=vectorless_power(synth, power_cfg), extra=extra,
    )
    if entry is not None:
        atomic_write_json(result.as_dict(), entry)
    return result


def net_toggles(activity: dict[str, NetActivity], nets: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """``{net: {"bits": n, "toggles": t}}`` for each of ``nets`` that ``activity`` has, in the order of
    ``nets``: its bit count and its toggles per cycle summed over the bits (``p[3]`` is a bit of ``p``). A net
    the netlist lacks (not in this design) is left out."""
    out: dict[str, dict[str, float]] = {}
    for name, act in activity.items():
        base = name.split("[", 1)[0]
        if base in nets:
            d = out.setdefault(base, {"bits": 0, "toggles": 0.0})
            d["bits"] += 1
            d["toggles"] += act.toggles_per_cycle
    return {n: out[n] for n in nets if n in out}


def network_compute_power(qnet: QuantizedNetwork, x_int: Any, mode: str, bits: int, n_pairs: int, seed: int,
                          source: str, **kw: Any) -> ComputePower:
    """:func:`measure_stream` on the operands ``qnet`` feeds its multipliers in ``mode`` (test set ``x_int``)."""
    stream = capture_operands(qnet, x_int, get_multiplier(mode, bits), n_pairs, seed, source)
    return measure_stream(mode, bits, stream, **kw)
