"""Benchmark: gate-netlist (bit-sliced) matmul of wide circuits on the MNIST-MLP first layer shape,
(256 x 784) @ (784 x 128), against the exact matmul of the same width.

Timed with :mod:`harness` (bench/harness.py): all variants in one process, interleaved round by round in a
shuffled order, medians of per-round ratios, load average before and after.

Variants (every circuit compiled by Yosys into gates, :func:`axhw.rtl.bitslice.compile_circuit`):
* ``exact16``: :meth:`axhw.Exact.matmul` at 16 bits (an exact GEMM in float64 chunks), the reference cost;
* ``gates16_exact``: a 16-bit signed ``a * b`` written for this benchmark, as gates (~1,700);
* ``gates16_drum4``: axhw's own generated DRUM-4 16-bit RTL (``rtl/drum_*.v.j2``), as gates;
* ``gates12_trunc``: the tests' 12-bit truncated multiplier (tests/circuits/rtrunc12s.v), with ``exact12``;
* ``gates8_drum3`` and ``lut8_drum3``: DRUM-3 8-bit as gates and as its product table (the table kernel), to
  show what a table buys where one exists;
* ``--circuit FILE.v --top T --bits N [--ports a=..,b=..,p=..] [--unsigned]``: also a user's circuit
  (``user``, against the exact matmul of its width ``exact_user``).

Every gate variant is first checked equal to its model (the exact product, DRUM, the table, the torch
reference of the gates). Goal (issue 28): 16-bit imported-circuit matmul at most 20x ``Exact.matmul``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from harness import header, interleaved_times, summarize

from axhw.arith.gates import GateMultiplier, GateNetlist
from axhw.arith.kernels import bitslice
from axhw.arith.multipliers import DRUM, Exact, LUTMultiplier
from axhw.common.io import atomic_write_json
from axhw.common.runtime import tune_allocator
from axhw.rtl.bitslice import compile_circuit
from axhw.rtl.generate import MultiplierConfig, generate
from axhw.rtl.imported import parse_port_map

ROOT = Path(__file__).resolve().parents[1]
RATIOS = [("gates16_exact", "exact16"), ("gates16_drum4", "exact16"), ("gates12_trunc", "exact12"),
          ("gates8_drum3", "lut8_drum3"), ("user", "exact_user")]


def _compile(sources: list[tuple[str, bytes]], top: str, bits: int, ports: dict[str, str]) -> GateNetlist:
    with tempfile.TemporaryDirectory() as tmp:
        return compile_circuit(sources, top, bits, ports, Path(tmp))


def _generated(design: str, bits: int, k: int | None) -> GateNetlist:
    cfg = MultiplierConfig(design, bits=bits, k=k, signed=True)
    return _compile([(n, t.encode()) for n, t in generate(cfg).items()], cfg.top, bits, {"a": "a", "b": "b", "p": "p"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/bitslice.json"))
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--m", type=int, default=256)
    ap.add_argument("--kdim", type=int, default=784)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--sample-seconds", type=float, default=0.05)
    ap.add_argument("--circuit", type=Path, default=None, help="also time this Verilog multiplier")
    ap.add_argument("--top", default=None)
    ap.add_argument("--bits", type=int, default=16)
    ap.add_argument("--ports", default=None)
    ap.add_argument("--unsigned", action="store_true")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tuned = tune_allocator()
    g = torch.Generator().manual_seed(0)

    def operands(bits: int, signed: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
        return (torch.randint(lo, hi, (args.m, args.kdim), generator=g),
                torch.randint(lo, hi, (args.kdim, args.n), generator=g))

    t0 = time.perf_counter()
    exact_src = [("mul16.v", b"module mul16 (input signed [15:0] a, input signed [15:0] b, output signed [31:0] p);\n"
                             b"    assign p = a * b;\nendmodule\n")]
    nets = {
        "gates16_exact": _compile(exact_src, "mul16", 16, {"a": "a", "b": "b", "p": "p"}),
        "gates16_drum4": _generated("drum", 16, 4),
        "gates12_trunc": _compile([("rtrunc12s.v", (ROOT / "tests/circuits/rtrunc12s.v").read_bytes())], "rtrunc12s",
                                  12, {"a": "x", "b": "w", "p": "y"}),
        "gates8_drum3": _generated("drum", 8, 3),
    }
    compile_s = time.perf_counter() - t0
    a16, b16 = operands(16)
    a12, b12 = operands(12)
    a8, b8 = operands(8)
    exact16, exact12 = Exact(16), Exact(12)
    gm = {name: GateMultiplier(n, signed=True) for name, n in nets.items()}
    lut8 = LUTMultiplier.from_multiplier(DRUM(3, 8))
    t0 = time.perf_counter()
    for m in gm.values():
        m.matmul(a8[:1, :1] if m.bits == 8 else torch.zeros(1, 1, dtype=torch.int64), torch.zeros(1, 1, dtype=torch.int64))
    build_s = time.perf_counter() - t0
    # exactness first
    assert torch.equal(gm["gates16_exact"].matmul(a16, b16), exact16.matmul(a16, b16))
    assert torch.equal(gm["gates16_drum4"].matmul(a16, b16), DRUM(4, 16).matmul(a16, b16))
    trunc_ref = GateMultiplier(nets["gates12_trunc"], signed=True)
    trunc_ref.use_kernel = False
    assert torch.equal(gm["gates12_trunc"].matmul(a12[:8], b12), trunc_ref.matmul(a12[:8], b12))
    assert torch.equal(gm["gates8_drum3"].matmul(a8, b8), lut8.matmul(a8, b8))
    fns: dict[str, Callable[[], object]] = {
        "exact16": lambda: exact16.matmul(a16, b16),
        "gates16_exact": lambda: gm["gates16_exact"].matmul(a16, b16),
        "gates16_drum4": lambda: gm["gates16_drum4"].matmul(a16, b16),
        "exact12": lambda: exact12.matmul(a12, b12),
        "gates12_trunc": lambda: gm["gates12_trunc"].matmul(a12, b12),
        "gates8_drum3": lambda: gm["gates8_drum3"].matmul(a8, b8),
        "lut8_drum3": lambda: lut8.matmul(a8, b8),
    }
    gates = {name: len(n.gates) for name, n in nets.items()}
    if args.circuit is not None:
        ports = parse_port_map(args.ports)
        ports = {"a": ports.get("a", "a"), "b": ports.get("b", "b"), "p": ports.get("p", "p")}
        net = _compile([(args.circuit.name, args.circuit.read_bytes())], args.top, args.bits, ports)
        user = GateMultiplier(net, signed=True, core_signed=not args.unsigned, name=args.top)
        au, bu = operands(args.bits)
        ref = GateMultiplier(net, signed=True, core_signed=not args.unsigned)
        ref.use_kernel = False
        assert torch.equal(user.matmul(au[:4], bu), ref.matmul(au[:4], bu))
        ex = Exact(args.bits)
        fns["user"] = lambda: user.matmul(au, bu)
        fns["exact_user"] = lambda: ex.matmul(au, bu)
        gates["user"] = len(net.gates)
    reps = {}
    for name, fn in fns.items():
        fn()
        t0 = time.perf_counter()
        fn()
        reps[name] = max(1, min(50, round(args.sample_seconds / max(time.perf_counter() - t0, 1e-6))))
    sampled = {name: (lambda fn=fn, n=reps[name]: [fn() for _ in range(n)]) for name, fn in fns.items()}
    load_before = os.getloadavg()
    times = {name: [t / reps[name] for t in ts] for name, ts in interleaved_times(sampled, args.rounds).items()}
    summary = summarize(times, [(num, den) for num, den in RATIOS if num in fns and den in fns])
    med = summary["ratio_medians"]
    goals_met = {"gates16_exact_over_exact16_max_20": med["gates16_exact_over_exact16"] <= 20.0,
                 "gates16_drum4_over_exact16_max_20": med["gates16_drum4_over_exact16"] <= 20.0}
    result = {
        **header("bit-sliced gate-netlist matmul", load_before, allocator_tuned=tuned),
        "shape": [args.m, args.kdim, args.n],
        "rounds": args.rounds,
        "lanes": bitslice.LANES,
        "gates": gates,
        "compile_seconds": round(compile_s, 2),
        "kernel_build_seconds": round(build_s, 2),
        "calls_per_sample": reps,
        **summary,
        "goals_met": goals_met,
        "all_goals_met": all(goals_met.values()),
    }
    atomic_write_json(result, args.out)
    print(json.dumps({"seconds_median": summary["seconds_median"], "ratios": summary["ratios"], "gates": gates,
                      "goals_met": goals_met, "loadavg": [result["machine"]["loadavg_before"],
                                                          result["machine"]["loadavg_after"]]}, indent=2))


if __name__ == "__main__":
    main()
