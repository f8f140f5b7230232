"""Gate-level simulation of a synthesized netlist on an operand stream, and VCD -> per-net activity.

Icarus runs the netlist with the osu018 cell models. Each vector is checked against the Python model
(:meth:`MultiplierConfig.model`) once settled, so every power number comes with a free proof that synthesis
kept the function bit for bit. With ``timing=True`` the cell models' ``specify`` delays are honoured
(``-gspecify``): glitches, a large part of a multiplier's dynamic power, appear in the VCD. Activity is then
counted per net bit from the VCD (transitions per vector = per clock cycle, one multiply per cycle) with
``pyvcd``'s tokenizer, and the duty is the fraction of time the bit is high.
"""

from __future__ import annotations

import math
import re
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from axhw.power.flow.synth import SynthResult
from axhw.power.flow.templates import render
from axhw.power.flow.tools import find_toolchain
from axhw.power.multiplier.operands import OperandStream
from axhw.rtl.generate import MultiplierConfig

if TYPE_CHECKING:
    from axhw.rtl.imported import ImportedConfig

__all__ = ["NetActivity", "SimConfig", "SimResult", "held_for_clock", "simulate", "vcd_activity", "vectors_sha256"]


@dataclass(frozen=True)
class SimConfig:
    """Gate-level simulation settings.

    Attributes:
        period_ns: time each vector is held (long enough for the slowest path to settle; it is not the
            power clock, activity is counted per vector).
        timing: honour the cell models' specify delays (glitches counted) or simulate zero-delay.
        work_dir: where the testbench, VCD and logs go (a temporary directory when None).
        keep_vcd: keep the VCD file after counting (only with ``work_dir``; a temporary directory is removed).
    """

    period_ns: int = 50
    timing: bool = True
    work_dir: Path | None = None
    keep_vcd: bool = False


def held_for_clock(sim: SimConfig, clock_mhz: float) -> SimConfig:
    """``sim`` with each vector held for at least one period of ``clock_mhz``.

    Why: the accelerator feeds its multiplier one operand pair per clock cycle, and a netlist that meets the
    clock settles within one period; the fixed 50 ns default does not cover a slow library (sky130 at 0.9 V: an
    8-bit multiplier's critical path is about 95 ns, met at 10 MHz). Activity is counted per vector, so a longer
    hold adds no toggles; at 20 MHz and above the default is kept, and with it every earlier measurement.
    """
    return replace(sim, period_ns=max(sim.period_ns, math.ceil(1e3 / clock_mhz - 1e-9)))


@dataclass(frozen=True)
class NetActivity:
    """Toggles per vector (= per clock cycle) and duty (fraction of time high) of one net bit."""

    toggles_per_cycle: float
    duty: float


@dataclass(frozen=True)
class SimResult:
    """Outcome of one simulation: vectors run, mismatches (must be 0), per-net-bit activity by VCD name
    (``_123_`` or ``p[4]``), and the VCD path if kept."""

    vectors: int
    mismatches: int
    mismatch_lines: list[str]
    activity: dict[str, NetActivity]
    vcd: Path | None


def _hex_vectors(cfg: MultiplierConfig | ImportedConfig, stream: OperandStream) -> list[str]:
    model = cfg.model()
    a, b = stream.a.to(torch.int64), stream.b.to(torch.int64)
    p = model(a, b).to(torch.int64)
    bits, width = cfg.bits, 4 * cfg.bits
    m1, m2 = (1 << bits) - 1, (1 << (2 * bits)) - 1
    digits = (width + 3) // 4
    return [f"{(((ai & m1) << (3 * bits)) | ((bi & m1) << (2 * bits)) | (pi & m2)):0{digits}x}"
            for ai, bi, pi in zip(a.tolist(), b.tolist(), p.tolist(), strict=True)]


def vectors_sha256(cfg: MultiplierConfig | ImportedConfig, stream: OperandStream) -> str:
    """SHA-256 of the testbench vectors: the operands in order and the products expected of them, so a
    cached measurement keyed by it changes with the stream and with the model (an imported table) alike."""
    import hashlib

    return hashlib.sha256("\n".join(_hex_vectors(cfg, stream)).encode()).hexdigest()


def vcd_activity(vcd: Path, n_cycles: int) -> dict[str, NetActivity]:
    """Per-bit transitions per cycle and duty of every variable in ``vcd`` (x/z values count as no change).

    Vector variables give one entry per bit, named ``name[i]``; scalars keep their name.
    """
    from vcd.reader import TokenKind, tokenize

    names: dict[str, list[str]] = {}  # id_code -> bit names, LSB first
    last: dict[str, list[int]] = {}
    since: dict[str, list[int]] = {}
    toggles: dict[str, list[int]] = {}
    high: dict[str, list[int]] = {}
    # Times of the latest and the first time stamp. A token's ``data`` is the union of every kind's payload
    # (pyvcd types it so); each kind is read through its typed accessor (``time_change``, ``var``, ...).
    t = 0
    t0: int | None = None

    def update(code: str, bits: list[int]) -> None:
        prev, start = last[code], since[code]
        for i, v in enumerate(bits):
            if v < 0 or v == prev[i]:
                continue
            if prev[i] >= 0 and t0 is not None:
                toggles[code][i] += 1
            if prev[i] == 1:
                high[code][i] += t - start[i]
            prev[i], start[i] = v, t

    with open(vcd, "rb") as fh:
        for tok in tokenize(fh):
            kind = tok.kind
            if kind is TokenKind.CHANGE_TIME:
                t = tok.time_change
                if t0 is None:
                    t0 = t
            elif kind is TokenKind.CHANGE_SCALAR:
                sc = tok.scalar_change
                if sc.id_code in last:
                    update(sc.id_code, [1 if sc.value == "1" else 0 if sc.value == "0" else -1])
            elif kind is TokenKind.CHANGE_VECTOR:
                vc = tok.vector_change
                code = vc.id_code
                if code in last:
                    v = vc.value
                    n = len(last[code])
                    if isinstance(v, int):
                        update(code, [(v >> i) & 1 for i in range(n)])
                    else:
                        s = v.rjust(n, v[0] if v[0] in "xz" else "0")[-n:]
                        update(code, [1 if c == "1" else 0 if c == "0" else -1 for c in reversed(s)])
            elif kind is TokenKind.VAR:
                d = tok.var
                if d.id_code in names:
                    continue  # an alias of a net already declared
                ref = d.reference
                n = int(d.size or 1)
                lo = 0
                if d.bit_index is not None:
                    lo = d.bit_index[1] if isinstance(d.bit_index, tuple) else d.bit_index
                names[d.id_code] = [ref] if n == 1 and d.bit_index is None else [f"{ref}[{lo + i}]" for i in range(n)]
                last[d.id_code], since[d.id_code] = [-1] * n, [0] * n
                toggles[d.id_code], high[d.id_code] = [0] * n, [0] * n
    end = t
    start_t = t0 if t0 is not None else 0
    span = max(end - start_t, 1)
    out = {}
    for code, bit_names in names.items():
        for i, name in enumerate(bit_names):
            h = high[code][i] + (end - since[code][i] if last[code][i] == 1 else 0)
            out[name] = NetActivity(toggles[code][i] / n_cycles, min(max(h / span, 0.0), 1.0))
    return out


def simulate(synth: SynthResult, cfg: MultiplierConfig | ImportedConfig, stream: OperandStream,
             sim: SimConfig | None = None) -> SimResult:
    """Run ``stream`` through ``synth``'s netlist under Icarus; check every product; count activity.

    The expected products are ``cfg.model()``'s (for an imported circuit: its stored table, sign-magnitude
    wrapped for an unsigned core), so any disagreement between the table and the netlist is a mismatch.

    Raises:
        ToolMissing: Icarus or the cell models are missing.
    """
    sim = sim or SimConfig()
    if sim.work_dir is not None:
        return _simulate_in(Path(sim.work_dir), synth, cfg, stream, sim)
    with tempfile.TemporaryDirectory(prefix="axhw-power-sim-") as tmp:
        return _simulate_in(Path(tmp), synth, cfg, stream, replace(sim, keep_vcd=False))


def _simulate_in(work: Path, synth: SynthResult, cfg: MultiplierConfig | ImportedConfig, stream: OperandStream,
                 sim: SimConfig) -> SimResult:
    tc = find_toolchain()
    work.mkdir(parents=True, exist_ok=True)
    n = len(stream)
    (work / "vectors.hex").write_text("\n".join(_hex_vectors(cfg, stream)) + "\n")
    vcd = work / "dump.vcd"
    (work / "tb.v").write_text(render("tb.v.j2", bits=cfg.bits, n=n, top=synth.top, vectors="vectors.hex",
                                      vcd="dump.vcd", period_ns=sim.period_ns))
    flags = ["-gspecify"] if sim.timing else []
    comp = subprocess.run([tc.iverilog, "-g2005", *flags, "-s", "tb", "-o", "sim.vvp", "tb.v", str(synth.netlist),
                           str(tc.cell_models)], cwd=work, capture_output=True, text=True)
    if comp.returncode != 0:
        raise RuntimeError(f"iverilog failed in {work}: {comp.stderr.strip()[-2000:]}")
    run = subprocess.run([tc.vvp, "-n", "sim.vvp"], cwd=work, capture_output=True, text=True)
    done = re.search(r"DONE vectors=(\d+) errors=(\d+)", run.stdout)
    if run.returncode != 0 or done is None:
        raise RuntimeError(f"vvp failed in {work}: {(run.stdout + run.stderr).strip()[-2000:]}")
    activity = vcd_activity(vcd, n)
    if not sim.keep_vcd:
        vcd.unlink()
    return SimResult(vectors=int(done.group(1)), mismatches=int(done.group(2)),
                     mismatch_lines=re.findall(r"MISMATCH.*", run.stdout), activity=activity,
                     vcd=vcd if sim.keep_vcd else None)
