"""``axhw power synth``'s tables: each multiplier synthesized, simulated on uniform operands and annotated
(:func:`axhw.power.multiplier.compute.measure_stream`), one row per design.

Every row is cached (``power/measure`` in the axhw cache, keyed by everything that determines it,
:func:`axhw.power.multiplier.compute.measurement_key`), so a rerun, or a named multiplier shown beside the
same built-in comparison rows as last time, re-simulates nothing. Progress names the design and step
(synthesis, simulation, power) because a row takes seconds and a 16-bit one much longer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from axhw.arith.multipliers import K_PRESETS
from axhw.common.io import atomic_write_text
from axhw.common.paths import cache_dir
from axhw.common.tables import markdown_table
from axhw.power.flow.activity import SimConfig
from axhw.power.flow.synth import SynthConfig
from axhw.power.flow.tools import find_toolchain
from axhw.power.multiplier.compute import measure_stream, mode_config
from axhw.power.multiplier.operands import uniform_operands
from axhw.power.multiplier.stages import stage_markdown, stage_toggles

__all__ = ["SynthRun", "canonical_name", "default_compare", "measure_rows", "mismatch_errors", "mode_config",
           "named_rows", "pe_table", "resolve_names", "write_rows"]

_DRUM = re.compile(r"drum(\d+)", re.IGNORECASE)


def default_measure_cache() -> Path:
    """``power/measure`` in the user cache (:func:`axhw.common.paths.cache_dir`)."""
    return cache_dir("power", "measure")


@dataclass(frozen=True)
class SynthRun:
    """How the rows of one ``power synth`` call are measured.

    Attributes:
        n_pairs, seed: the uniform operand stream (:func:`axhw.power.multiplier.operands.uniform_operands`).
        timing: simulate with cell delays (glitches counted) or zero-delay (functional toggles only).
        stages: also measure the stage-boundary toggles (:mod:`axhw.power.multiplier.stages`).
        synth_cfg: synthesis settings (its cache, ``use_cache=False`` also re-measures every row).
        cache: the measurement cache folder; None measures afresh.
        progress: a progress bar naming the design and its current step.
    """

    n_pairs: int = 2000
    seed: int = 0
    timing: bool = True
    stages: bool = False
    synth_cfg: SynthConfig = field(default_factory=SynthConfig)
    cache: Path | None = field(default_factory=default_measure_cache)
    progress: bool = False

    @property
    def suffix(self) -> str:
        """File-name suffix: zero-delay tables sit beside the ones with delays in one folder."""
        return "" if self.timing else "_zero_delay"


def canonical_name(name: str) -> str:
    """A multiplier name as :func:`axhw.arith.registry.get_multiplier` reads it (``Exact``, ``k2``, ``DRUM4``
    are ``exact``, ``K2``, ``drum4``); any other name (an imported circuit's) as it is."""
    key = name.strip()
    if key.lower() == "exact":
        return "exact"
    if key.upper() in K_PRESETS:
        return key.upper()
    m = _DRUM.fullmatch(key)
    return f"drum{int(m.group(1))}" if m else key


def _builtin(name: str) -> bool:
    return name == "exact" or name in K_PRESETS or _DRUM.fullmatch(name) is not None


def resolve_names(names: list[str], bits: list[int] | None) -> list[tuple[str, list[int]]]:
    """``(name, widths)`` of each multiplier named, every one checked before any work.

    A built-in name (``exact``, ``K1``..``K4``, ``drum<k>``) is synthesized at each of ``bits`` (default 8),
    an imported circuit at its own width, which ``bits`` (when given) must include.
    """
    from axhw.arith import library

    out: dict[str, list[int]] = {}
    for raw in names:
        name = canonical_name(raw)
        if _builtin(name):
            widths = list(dict.fromkeys(bits or [8]))
        else:
            try:
                info = library.circuit_info(name)
            except ValueError as exc:
                raise ValueError(f"unknown multiplier {raw!r} (built-in names: exact, K1..K4, drum<k>); {exc}") from None
            if bits and info.bits not in bits:
                raise ValueError(f"{name} is a {info.bits}-bit circuit, which --bits {' '.join(map(str, bits))} "
                                 f"leaves out: add {info.bits} or drop --bits")
            widths = [info.bits]
        for w in widths:
            mode_config(name, w)  # e.g. drum9 at 8 bits fails here, in one line
        out.setdefault(name, widths)
    return list(out.items())


def default_compare(bits: int) -> list[str]:
    """The built-in rows of a ``bits``-wide table: exact, then DRUM k = min(bits, 8)..1."""
    return ["exact", *[f"drum{k}" for k in range(min(bits, 8), 0, -1)]]


def measure_rows(bits: int, modes: list[str], run: SynthRun, desc: str) -> list[dict[str, Any]]:
    """One row per mode (:meth:`ComputePower.as_dict`, plus ``stages`` with ``run.stages``) on the same
    uniform stream."""
    from tqdm.auto import tqdm

    stream = uniform_operands(bits, run.n_pairs, run.seed)
    rows = []
    with tqdm(modes, desc=desc, unit="design", disable=not run.progress) as bar:
        for mode in bar:
            def step(what: str, mode: str = mode) -> None:
                bar.set_postfix_str(f"{mode}: {what}")

            def stage_step(what: str, mode: str = mode) -> None:
                bar.set_postfix_str(f"{mode}: stage nets, {what}")

            row = measure_stream(mode, bits, stream, run.synth_cfg, SimConfig(timing=run.timing), cache=run.cache,
                                 step=step).as_dict()
            if run.stages:
                row["stages"] = stage_toggles(mode, bits, stream, run.synth_cfg, cache=run.cache, step=stage_step)
            rows.append(row)
    return rows


def named_rows(name: str, widths: list[int], compare: list[str] | None, run: SynthRun) -> list[dict[str, Any]]:
    """The table of one named multiplier: per width, the comparison rows (``compare``, default
    :func:`default_compare`; a row of the named design's own configuration is left out) and then its row."""
    rows: list[dict[str, Any]] = []
    for bits in widths:
        own = mode_config(name, bits).config_id
        others = default_compare(bits) if compare is None else [canonical_name(m) for m in compare]
        modes = [m for m in dict.fromkeys(others) if mode_config(m, bits).config_id != own]
        rows += measure_rows(bits, [*modes, name], run, f"{name} {bits}-bit")
    return rows


def write_rows(rows: list[dict[str, Any]], out: Path, name: str, run: SynthRun) -> list[Path]:
    """``name.json`` (the rows) and ``name.md`` (a header saying how they were measured, the table, and
    the stage table when measured)."""
    sim = "cell delays (glitches counted)" if run.timing else "zero delay (functional toggles only, no glitches)"
    body = [[r["config_id"], r["n_cells"], f"{r['area_um2']:.0f}", f"{r['leakage_nw']:.2f}", r["vectors"],
             r["mismatches"], f"{r['measured']['mean_toggles']:.3f}", f"{r['measured']['energy_pj']:.2f}",
             f"{r['vectorless']['energy_pj']:.2f}"] for r in rows]
    text = (f"{find_toolchain().library.label}, uniform operands ({run.n_pairs} pairs, seed {run.seed}), simulated with {sim}; energy = "
            "power at one multiply per 10 ns cycle.\n\n"
            + markdown_table(["config", "cells", "area um2", "leakage nW", "vectors", "mismatches",
                              "toggles/cell", "measured pJ/mul", "vectorless pJ/mul"], body) + "\n")
    stages = stage_markdown(rows)
    if stages:
        text += ("\nToggles per multiply at the stage boundaries (axhw.power.multiplier.stages), on netlists "
                 "synthesized with those nets kept:\n\n" + stages + "\n")
    paths = [out / f"{name}.json", out / f"{name}.md"]
    atomic_write_text(json.dumps(rows, indent=2, default=str), paths[0])
    atomic_write_text(text, paths[1])
    return paths


def mismatch_errors(rows: list[dict[str, Any]]) -> list[str]:
    """One line per row whose netlist disagreed with its model (an imported circuit: its stored table)."""
    return [f"{r['config_id']}: the netlist disagrees with the table on {r['mismatches']} of {r['vectors']} "
            f"operand pairs: {'; '.join(r.get('mismatch_lines', [])[:3])}" for r in rows if r["mismatches"]]


def pe_table(out: Path, max_fan_in: int = 64, progress: bool = False, synth_cfg: SynthConfig | None = None) -> str:
    """Cells, area and leakage of the FlexFlow PE per multiplier mode (8-bit), written as ``pe_8bit.md``."""
    from tqdm.auto import tqdm

    from axhw.power.flow.synth import synthesize_pe
    from axhw.rtl.generate import MultiplierConfig
    from axhw.rtl.pe import ArrayConfig

    modes = [("exact", MultiplierConfig("exact", 8)), *[(f"K{k}", MultiplierConfig("drum", 8, k=k)) for k in (4, 3, 2, 1)]]
    rows = []
    with tqdm(modes, desc="PE 8-bit", unit="design", disable=not progress) as bar:
        for name, cfg in bar:
            bar.set_postfix_str(f"{name}: synthesis")
            r = synthesize_pe(ArrayConfig(cfg, max_fan_in=max_fan_in), synth_cfg)
            rows.append([name, r.config_id, r.n_cells, f"{r.area_um2:.0f}", f"{r.leakage_nw:.1f}"])
    text = (f"PE (multiplier, accumulator, controller, {max_fan_in}-word local memories as flip-flops), "
            f"{find_toolchain().library.label}:\n\n"
            + markdown_table(["mode", "design", "cells", "area um2", "leakage nW"], rows) + "\n")
    atomic_write_text(text, out / "pe_8bit.md")
    return text
