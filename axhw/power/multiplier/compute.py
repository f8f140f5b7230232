"""Multiplier power per mode from real operand streams: synthesize, simulate, annotate (steps 1-2 joined).

One call per (network, mode): the network's test set runs on the integer model with that mode's multiplier,
the operand stream is replayed on the synthesized netlist (checked bit for bit), and OpenSTA turns the
measured activity into power; the vectorless estimate is kept beside it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from axhw.arith.multipliers import K_PRESETS
from axhw.arith.registry import get_multiplier
from axhw.golden.network import QuantizedNetwork
from axhw.power.flow.activity import SimConfig, simulate
from axhw.power.flow.sta import PowerConfig, PowerResult, activity_power, resolve_annotation, vectorless_power
from axhw.power.flow.synth import SynthConfig, SynthResult, synthesize
from axhw.power.multiplier.operands import OperandStream, capture_operands
from axhw.rtl.generate import MultiplierConfig
from axhw.rtl.imported import ImportedConfig

__all__ = ["ComputePower", "imported_config", "measure_stream", "mode_config", "network_compute_power"]


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


def imported_config(name: str, bits: int | None = None, signed: bool = True) -> ImportedConfig:
    """The configuration of library circuit ``name`` that a PE instantiates (see :func:`mode_config`).

    ``bits`` (when given) must be the circuit's width; only signed use is synthesized (networks are signed;
    an unsigned circuit used unsigned would be its ``raw`` variant, which :func:`imported_configs` also has).
    """
    from axhw.arith import library
    from axhw.rtl.imported import imported_configs

    info = library.circuit_info(name)
    if bits is not None and bits != info.bits:
        raise ValueError(f"circuit {name!r} is a {info.bits}-bit multiplier, not {bits}-bit: "
                         f"use it at {info.bits} bits")
    cfgs = {c.variant: c for c in imported_configs(name)}
    if not signed:
        if info.signed:
            raise ValueError(f"circuit {name!r} is signed: it has no unsigned use")
        return cfgs["raw"]
    return cfgs["raw" if info.signed else "signed"]


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


def measure_stream(mode: str, bits: int, stream: OperandStream, synth_cfg: SynthConfig | None = None,
                   sim_cfg: SimConfig | None = None, power_cfg: PowerConfig | None = None) -> ComputePower:
    """Synthesize ``mode`` at ``bits``, run ``stream`` through the netlist, and report its power."""
    cfg = mode_config(mode, bits)
    synth: SynthResult = synthesize(cfg, synth_cfg)
    power_cfg = power_cfg or PowerConfig()
    with tempfile.TemporaryDirectory(prefix="axhw-power-vcd-") as tmp:
        if resolve_annotation(power_cfg) == "vcd":  # OpenSTA reads the VCD itself: keep it until then
            sim_cfg = sim_cfg or SimConfig()
            sim_cfg = replace(sim_cfg, work_dir=sim_cfg.work_dir or Path(tmp), keep_vcd=True)
        sim = simulate(synth, cfg, stream, sim_cfg)
        measured = activity_power(synth, sim.activity, power_cfg, vcd=sim.vcd)
    extra: dict[str, Any] = {"mismatch_lines": sim.mismatch_lines}
    if isinstance(cfg, ImportedConfig):
        extra["circuit"] = {"name": cfg.info.name, "top": cfg.info.top, "variant": cfg.variant,
                            "core_signed": cfg.info.signed, "source_hash": cfg.info.source_hash,
                            "table_hash": cfg.info.table_hash}
    return ComputePower(
        mode=mode, config_id=cfg.config_id, source=stream.source, area_um2=synth.area_um2, n_cells=synth.n_cells,
        leakage_nw=synth.leakage_nw, vectors=sim.vectors, mismatches=sim.mismatches,
        measured=measured, vectorless=vectorless_power(synth, power_cfg), extra=extra,
    )


def network_compute_power(qnet: QuantizedNetwork, x_int: Any, mode: str, bits: int, n_pairs: int, seed: int,
                          source: str, **kw: Any) -> ComputePower:
    """:func:`measure_stream` on the operands ``qnet`` feeds its multipliers in ``mode`` (test set ``x_int``)."""
    stream = capture_operands(qnet, x_int, get_multiplier(mode, bits), n_pairs, seed, source)
    return measure_stream(mode, bits, stream, **kw)
