"""Import a multiplier wider than 8 bits: compiled into gates, checked against the simulation of its Verilog.

Why not a table: a 16 x 16 circuit has 2**32 operand pairs. Its model is the circuit itself, compiled by Yosys
into gates (:func:`axhw.rtl.bitslice.compile_circuit`) and evaluated bit-sliced
(:class:`axhw.arith.gates.GateMultiplier`). Nothing trusts that compilation: the import simulates the original
Verilog (Icarus or Verilator, :data:`sim/import_pairs_tb.v.j2`) on every pair of operand corners (0, +-1, the
extremes, +-2**i, 2**i +- 1) and on :data:`CHECK_PAIRS` seeded uniform pairs, and refuses the circuit unless
the gates give the same product word on every one (and, for an unsigned circuit, unless the generated
sign-magnitude wrapper's words equal the wrapped model's). The error statistics are then sampled
(:data:`STATS_SAMPLES` pairs, with 95% confidence intervals), since exhaustive ones are out of reach.

Everything else is as for an 8-bit import (:func:`axhw.rtl.imported.import_circuit`): one-line errors, nothing
written on failure, the library entry written atomically, the check recorded in the verification registry.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from axhw.arith import library
from axhw.arith.gates import GateMultiplier, GateNetlist, signed_values
from axhw.arith.library import CircuitInfo
from axhw.arith.multipliers import ErrorStats, error_stats

__all__ = ["CHECK_PAIRS", "MAX_WIDE_BITS", "STATS_SAMPLES", "check_pairs", "corner_words", "default_simulator",
           "import_wide", "simulate_pairs", "verify_netlist"]

#: The widest circuit imported (16 x 16: the widths published libraries ship; products and K-sums fit int64).
MAX_WIDE_BITS = 16
#: Seeded uniform operand pairs the gates are checked on against the Verilog's simulation (plus the corners).
CHECK_PAIRS = 10_000_000
#: Seeded uniform operand pairs the error statistics are sampled on.
STATS_SAMPLES = 1_000_000
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def default_simulator(bits: int) -> str:
    """The import's simulator when none is named: Icarus up to 8 bits (65,536 pairs in about a second, no
    build), Verilator above when it is installed (10**7 pairs of a 16-bit circuit: 41 s against about 23
    minutes under Icarus, measured on the 2-core machine)."""
    from axhw.rtl.simulators import simulator_info

    return "verilator" if bits > 8 and simulator_info("verilator").available else "icarus"


def corner_words(bits: int) -> np.ndarray:
    """Operand corner *words*: 0, 1, 2**bits - 1 (-1 signed), the signed extremes, and +-2**i, 2**i +- 1 as
    two's-complement words, sorted and unique."""
    mask = (1 << bits) - 1
    vals = {0, 1, mask, mask - 1, 1 << (bits - 1), (1 << (bits - 1)) - 1, (1 << (bits - 1)) + 1}
    for i in range(bits):
        for v in (1 << i, (1 << i) - 1, (1 << i) + 1):
            vals.update((v & mask, (-v) & mask))
    return np.array(sorted(vals), dtype=np.int64)


def check_pairs(bits: int, pairs: int = CHECK_PAIRS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Operand word pairs to check: every pair of :func:`corner_words`, then ``pairs`` seeded uniform ones."""
    c = corner_words(bits)
    ca, cb = np.meshgrid(c, c, indexing="ij")
    rng = np.random.default_rng(seed)
    ra = rng.integers(0, 1 << bits, size=pairs, dtype=np.int64)
    rb = rng.integers(0, 1 << bits, size=pairs, dtype=np.int64)
    return np.concatenate([ca.ravel(), ra]), np.concatenate([cb.ravel(), rb])


def _hex_columns(words: np.ndarray, digits: int) -> np.ndarray:
    """``(n, digits)`` uint8 hex characters of ``words``, most significant first."""
    shifts = 4 * np.arange(digits - 1, -1, -1, dtype=np.int64)
    return _HEX[(words[:, None] >> shifts[None, :]) & 0xF]


def _read_words(data: bytes, n: int, columns: int, pbits: int, top: str, simulator: str) -> np.ndarray:
    """The ``(n, columns)`` product words of the testbench's output (fixed-width hex lines)."""
    from axhw.rtl.import_steps import CircuitImportError

    d = -(-pbits // 4)
    width = columns * (d + 1)
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size != n * width:
        got = int(np.count_nonzero(raw == ord("\n")))
        raise CircuitImportError(f"{simulator} simulation of {top} wrote {got} products, expected {n}")
    chars = raw.reshape(n, columns, d + 1)[:, :, :d]
    lut = np.full(256, 255, dtype=np.int64)
    lut[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16)
    lut[np.frombuffer(b"ABCDEF", dtype=np.uint8)] = np.arange(10, 16)
    val = lut[chars]
    bad = np.nonzero((val == 255).any(axis=2))
    if bad[0].size:
        i = int(bad[0][0])
        text = bytes(chars[i, int(bad[1][0])]).decode(errors="replace")
        raise CircuitImportError(f"{top} outputs unknown bits (x/z) {text!r} for pair {i} of the check: undriven or "
                                 "uninitialised logic")
    shifts = 4 * np.arange(d - 1, -1, -1, dtype=np.int64)
    words: np.ndarray = (val << shifts).sum(axis=2)
    return words


def simulate_pairs(sources: Sequence[tuple[str, bytes]], top: str, bits: int, signed: bool, ports: dict[str, str],
                   aw: np.ndarray, bw: np.ndarray, simulator: str = "verilator",
                   name: str | None = None) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Simulate ``top`` on the operand word pairs ``(aw, bw)`` with ``simulator``.

    Returns:
        ``(raw, wrapped, seconds)``: the circuit's product words, the sign-magnitude wrapper's words for an
        unsigned circuit (else ``None``), and the wall time of compile plus run.
    """
    from axhw.rtl.import_steps import run_testbench

    d = -(-bits // 4)
    lines = np.empty((aw.shape[0], 2 * d + 2), dtype=np.uint8)
    lines[:, :d] = _hex_columns(aw, d)
    lines[:, d] = ord(" ")
    lines[:, d + 1:2 * d + 1] = _hex_columns(bw, d)
    lines[:, -1] = ord("\n")
    data, seconds = run_testbench(sources, top, bits, signed, ports, simulator, name, "import_pairs_tb.v.j2",
                                  inputs={"in": lines.tobytes()})
    wrap = not signed
    words = _read_words(data, aw.shape[0], 2 if wrap else 1, 2 * bits, top, simulator)
    return words[:, 0], (words[:, 1] if wrap else None), seconds


def verify_netlist(netlist: GateNetlist, sources: Sequence[tuple[str, bytes]], top: str, signed: bool,
                   ports: dict[str, str], pairs: int = CHECK_PAIRS, simulator: str = "verilator",
                   name: str | None = None, seed: int = 0) -> tuple[int, float]:
    """Check the compiled ``netlist`` against the simulation of the Verilog on :func:`check_pairs` (and, for an
    unsigned circuit, the wrapped model against the generated sign-magnitude wrapper).

    Returns:
        ``(pairs checked, simulation seconds)``.

    Raises:
        CircuitImportError: a product differs (naming the first pair and the two words).
    """
    bits = netlist.bits
    aw, bw = check_pairs(bits, pairs, seed)
    raw, wrapped, seconds = simulate_pairs(sources, top, bits, signed, ports, aw, bw, simulator, name)
    core = GateMultiplier(netlist, signed=signed, core_signed=signed, name=name or top)
    ta, tb = torch.from_numpy(aw), torch.from_numpy(bw)
    ours = core.core_words(ta, tb).numpy()
    _refuse_difference(ours, raw, aw, bw, f"the gates Yosys compiled from {top} disagree with its simulation",
                       "gates", "simulation", "; a circuit whose products depend on more than a and b (delays, initial "
                       "blocks, x values) cannot be compiled: make p a plain combinational function of a and b")
    if wrapped is not None:
        model = GateMultiplier(netlist, signed=True, core_signed=False, name=name or top)
        va, vb = signed_values(ta, bits), signed_values(tb, bits)
        sm = (model(va, vb) & ((1 << (2 * bits)) - 1)).numpy()
        _refuse_difference(sm, wrapped, aw, bw, f"the generated sign-magnitude wrapper around {top} disagrees with "
                           "the Python model", "model", "RTL", "")
    return int(aw.size), seconds


def _refuse_difference(ours: np.ndarray, theirs: np.ndarray, aw: np.ndarray, bw: np.ndarray, what: str,
                       ours_label: str, theirs_label: str, advice: str) -> None:
    """Raise :class:`CircuitImportError` naming how many product words differ and the first pair."""
    from axhw.rtl.import_steps import CircuitImportError

    bad = np.nonzero(ours != theirs)[0]
    if bad.size:
        i = int(bad[0])
        raise CircuitImportError(
            f"{what} on {bad.size} of {aw.size} pairs (first: words a={int(aw[i]):#x}, b={int(bw[i]):#x}: "
            f"{theirs_label} {int(theirs[i]):#x}, {ours_label} {int(ours[i]):#x}){advice}")


def _sampled_reading(raw: np.ndarray, aw: np.ndarray, bw: np.ndarray, bits: int, signed: bool) -> tuple[float, float]:
    """(MRE, max relative error) of simulated product words read ``signed`` or unsigned, over ``p != 0``."""
    pb = 2 * bits
    if signed:
        a = np.where(aw >= 1 << (bits - 1), aw - (1 << bits), aw)
        b = np.where(bw >= 1 << (bits - 1), bw - (1 << bits), bw)
        p = np.where(raw >= 1 << (pb - 1), raw - (1 << pb), raw)
    else:
        a, b, p = aw, bw, raw
    exact = a * b
    nz = exact != 0
    rel = np.abs(p[nz] - exact[nz]) / np.abs(exact[nz])
    return (float(rel.mean()), float(rel.max())) if rel.size else (0.0, 0.0)


def import_wide(sources: Sequence[tuple[str, bytes]], top: str, bits: int, signed: bool, mapping: dict[str, str],
                name: str, simulator: str, force: bool, accept_error: bool,
                pairs: int = CHECK_PAIRS) -> tuple[CircuitInfo, list[ErrorStats], Path, float, list[dict[str, Any]]]:
    """The wide half of :func:`axhw.rtl.imported.import_circuit` (ports already resolved and checked)."""
    from axhw import __version__
    from axhw.arith.verification import record_imported
    from axhw.rtl.bitslice import compile_circuit
    from axhw.rtl.import_steps import SIGNALS, CircuitImportError, combinational_loop, refuse_reading, tempdir
    from axhw.rtl.simulators import simulator_info

    with tempdir("axhw-import-") as tmp:
        (tmp / "src").mkdir()
        for fname, data in sources:
            (tmp / "src" / fname).write_bytes(data)
        loop = combinational_loop([f"src/{fname}" for fname, _ in sources], top, tmp)
        if loop is not None:
            raise CircuitImportError(f"{top} has a combinational loop through {loop}, found by Yosys `check`: make "
                                     "every output a loop-free function of a and b")
        t0 = time.perf_counter()
        netlist = compile_circuit(sources, top, bits, mapping, tmp)
        compile_s = time.perf_counter() - t0
    checked, seconds = verify_netlist(netlist, sources, top, signed, mapping, pairs, simulator, name)
    if not accept_error:  # the declared reading, judged on the circuit's own words over sampled pairs
        aw, bw = check_pairs(bits, min(pairs, STATS_SAMPLES), seed=1)
        core = GateMultiplier(netlist, signed=signed, core_signed=signed, name=name)
        raw = core.core_words(torch.from_numpy(aw), torch.from_numpy(bw)).numpy()
        own, own_max = _sampled_reading(raw, aw, bw, bits, signed)
        other, _ = _sampled_reading(raw, aw, bw, bits, not signed)
        refuse_reading(top, bits, signed, own, own_max, other)
    sim = simulator_info(simulator)
    draft = CircuitInfo(
        name=name, top=top, bits=bits, signed=signed, ports=mapping, sources=[n for n, _ in sources],
        source_hash=library.source_hash(list(sources)), table_hash=library.gates_hash(netlist), simulator=simulator,
        simulator_version=sim.version, date=time.strftime("%Y-%m-%dT%H:%M:%S"), axhw_version=__version__)
    own_model = library.WideImportedMultiplier(netlist, draft, signed=signed)
    stats = [error_stats(own_model, samples=STATS_SAMPLES, seed=0, exhaustive_max_bits=0)]
    if not signed:
        stats.append(error_stats(library.WideImportedMultiplier(netlist, draft, signed=True), samples=STATS_SAMPLES,
                                 seed=0, exhaustive_max_bits=0))
    extra = {"gates": len(netlist.gates), "gate_counts": netlist.counts(), "check_pairs": checked,
             "compile_seconds": round(compile_s, 3), "check_seconds": round(seconds, 3)}
    info = CircuitInfo(**{**draft.__dict__, "stats": {**stats[0].as_dict(), **extra}})
    with SIGNALS.deferred(then_raise=False):
        try:
            path = library.save(info, netlist, list(sources), force)
        except ValueError as exc:
            raise CircuitImportError(str(exc)) from None
        recs = [record_imported(name, info.source_hash, info.table_hash, "raw", "import", simulator, sim.version,
                                checked, 0, seconds, exhaustive=False)]
        if not signed:
            recs.append(record_imported(name, info.source_hash, info.table_hash, "signed", "import", simulator,
                                        sim.version, checked, 0, seconds, exhaustive=False))
    return info, stats, path, seconds, recs

