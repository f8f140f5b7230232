"""Where a multiplier switches: toggles per multiply at the boundaries of its datapath stages, with cell
delays (glitches counted) and without (functional toggles only).

Why: energy per multiply with delays minus the zero-delay energy is what glitches cost, and the stage
boundaries show where glitches start and how they grow along the path. The generated designs name their
stage outputs (``rtl/drum_mul.v.j2``; the sign-magnitude wrapper of an imported circuit names ``mag_a``,
``mag_b``, ``mag_p`` too), but synthesis flattens and renumbers every net, so an instrumented netlist keeps
those nets (:attr:`axhw.power.flow.synth.SynthConfig.keep_nets`) and is measured beside the real one. Kept
nets are no cut points (ABC may still share or duplicate logic around them), so energy cannot be split by
stage; the toggles at the boundaries are those of the instrumented netlist, whose cells and energy are
reported with them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from axhw.common.tables import markdown_table
from axhw.power.flow.activity import SimConfig
from axhw.power.flow.sta import PowerConfig
from axhw.power.flow.synth import SynthConfig
from axhw.power.multiplier.compute import measure_stream
from axhw.power.multiplier.operands import OperandStream

__all__ = ["KEEP_NETS", "STAGES", "stage_markdown", "stage_toggles"]

#: (stage, its output nets) in signal-flow order: the operands, DRUM's stages (rtl/drum_mul.v.j2) and the
#: product. ``mag_p`` is the barrel shifter's output in DRUM with k < bits, the core's product in DRUM with
#: k >= bits and in a sign-magnitude wrapped circuit. A design shows the stages whose nets it has.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("operands", ("a", "b")),
    ("sign-magnitude in", ("mag_a", "mag_b", "neg")),
    ("leading-one detector + encoder", ("oh_a", "oh_b", "whole_a", "whole_b", "t_a", "t_b")),
    ("segment mux", ("seg_a", "seg_b")),
    ("k x k multiplier", ("prod_k",)),
    ("shift amount", ("sh",)),
    ("magnitude product", ("mag_p",)),
    ("product (sign out)", ("p",)),
)

#: The internal nets kept through synthesis (the ports are nets of every netlist anyway).
KEEP_NETS: tuple[str, ...] = tuple(n for _, nets in STAGES[1:-1] for n in nets)


def stage_toggles(mode: str, bits: int, stream: OperandStream, synth_cfg: SynthConfig | None = None,
                  power_cfg: PowerConfig | None = None, cache: Path | None = None,
                  step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Toggles per multiply at each stage boundary of ``mode``'s instrumented netlist, with and without
    cell delays, on ``stream``; and that netlist's cells, area and energy per multiply both ways.

    Returns ``{"cells", "area_um2", "mismatches", "energy_pj": {"delays", "zero_delay"}, "stages": [{"stage",
    "nets", "bits", "delays", "zero_delay"}, ...]}`` (toggles summed over the stage's net bits).
    """
    sc = replace(synth_cfg or SynthConfig(), keep_nets=KEEP_NETS)
    runs = {timing: measure_stream(mode, bits, stream, sc, SimConfig(timing=timing), power_cfg, cache=cache, step=step)
            for timing in (True, False)}
    nets = {t: r.extra["net_toggles"] for t, r in runs.items()}
    stages = []
    for label, names in STAGES:
        have = [n for n in names if n in nets[True]]
        if have:
            stages.append({"stage": label, "nets": have, "bits": sum(nets[True][n]["bits"] for n in have),
                           "delays": sum(nets[True][n]["toggles"] for n in have),
                           "zero_delay": sum(nets[False][n]["toggles"] for n in have)})
    timed = runs[True]
    return {"cells": timed.n_cells, "area_um2": timed.area_um2,
            "mismatches": timed.mismatches + runs[False].mismatches,
            "energy_pj": {"delays": timed.measured.energy_pj, "zero_delay": runs[False].measured.energy_pj},
            "stages": stages}


def stage_markdown(rows: list[dict[str, Any]]) -> str:
    """The stage table of the rows of ``power synth --stages`` (rows carrying a ``stages`` entry), and one
    line per design comparing its instrumented netlist with the real one."""
    lines, notes = [], []
    for r in rows:
        st = r.get("stages")
        if not st:
            continue
        head = r["config_id"]
        for s in st["stages"]:
            ratio = f"{s['delays'] / s['zero_delay']:.2f}" if s["zero_delay"] > 0 else "-"
            lines.append([head, s["stage"], " ".join(s["nets"]), s["bits"], f"{s['delays']:.2f}",
                          f"{s['zero_delay']:.2f}", ratio])
            head = ""
        notes.append(f"* {r['config_id']}: {st['cells']} cells (real netlist {r['n_cells']}), "
                     f"{st['energy_pj']['delays']:.2f} pJ/mul with delays, {st['energy_pj']['zero_delay']:.2f} "
                     f"zero-delay, {st['mismatches']} mismatches")
    if not lines:
        return ""
    table = markdown_table(["design", "stage", "nets", "bits", "toggles/mul delays", "toggles/mul zero-delay",
                            "ratio"], lines)
    return table + "\n\nInstrumented netlists (stage nets kept):\n\n" + "\n".join(notes)
