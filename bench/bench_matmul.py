"""Benchmark: approximate 8-bit matmul paths on the MNIST-MLP first layer shape, (256 x 784) @ (784 x 128).

Compares, in one run, medians over repeats:
* ``float64_gemm``: ``A.double() @ B.double()`` on pre-converted operands, the floor any exact path pays;
* ``exact``: :meth:`axhw.Exact.matmul` (checks, conversion, GEMM, back to int64) — the integer-valued matmul;
* ``drum``: :meth:`axhw.DRUM.matmul` (separable transform + one exact float64 GEMM);
* ``lut_axhw``: :meth:`axhw.LUTMultiplier.matmul` on DRUM's product table (chunked gather);
* ``lut_gather_naive``: the textbook LUT gather ``table[A[:, :, None], B[None]]`` summed over K.

Goals (issue 2): drum <= 1.5x exact, and >= 30x faster than the LUT gather.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from axhw.io import atomic_write_json
from axhw.multipliers import DRUM, Exact, LUTMultiplier


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/matmul.json"))
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--m", type=int, default=256)
    ap.add_argument("--kdim", type=int, default=784)
    ap.add_argument("--n", type=int, default=128)
    args = ap.parse_args()

    g = torch.Generator().manual_seed(0)
    a = torch.randint(-128, 128, (args.m, args.kdim), generator=g)
    b = torch.randint(-128, 128, (args.kdim, args.n), generator=g)
    exact, drum = Exact(8), DRUM(args.k, 8)
    lut = LUTMultiplier.from_multiplier(drum)
    af, bf = a.double(), b.double()
    table = lut.table

    def naive_gather() -> torch.Tensor:
        out = torch.empty(args.m, args.n, dtype=torch.int64)
        for r in range(0, args.m, 32):  # 32 rows at a time keeps the temporary at ~25 MiB
            out[r : r + 32] = table[a[r : r + 32, :, None] & 255, b[None] & 255].sum(1)
        return out

    assert torch.equal(drum.matmul(a, b), lut.matmul(a, b))
    assert torch.equal(naive_gather(), lut.matmul(a, b))
    assert torch.equal(exact.matmul(a, b), a @ b)

    slow_repeats = max(3, args.repeats // 4)
    t = {
        "float64_gemm": median_time(lambda: af @ bf, args.repeats),
        "exact": median_time(lambda: exact.matmul(a, b), args.repeats),
        "drum": median_time(lambda: drum.matmul(a, b), args.repeats),
        "lut_axhw": median_time(lambda: lut.matmul(a, b), slow_repeats),
        "lut_gather_naive": median_time(naive_gather, slow_repeats),
    }
    result = {
        "benchmark": "approximate matmul",
        "shape": [args.m, args.kdim, args.n],
        "bits": 8,
        "k": args.k,
        "repeats": args.repeats,
        "seconds_median": t,
        "ratios": {
            "drum_over_exact": t["drum"] / t["exact"],
            "drum_over_float64_gemm": t["drum"] / t["float64_gemm"],
            "lut_gather_naive_over_drum": t["lut_gather_naive"] / t["drum"],
            "lut_axhw_over_drum": t["lut_axhw"] / t["drum"],
            "lut_gather_naive_over_lut_axhw": t["lut_gather_naive"] / t["lut_axhw"],
        },
        "goals": {"drum_over_exact_max": 1.5, "lut_gather_over_drum_min": 30.0},
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
        },
    }
    result["goals_met"] = (
        result["ratios"]["drum_over_exact"] <= 1.5 and result["ratios"]["lut_gather_naive_over_drum"] >= 30.0
    )
    atomic_write_json(result, args.out)
    print(json.dumps({"seconds_median": t, "ratios": result["ratios"], "goals_met": result["goals_met"]}, indent=2))


if __name__ == "__main__":
    main()
