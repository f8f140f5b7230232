"""Benchmark: approximate 8-bit matmul paths on the MNIST-MLP first layer shape, (256 x 784) @ (784 x 128).

All variants run in one process, interleaved: every round times each variant once, in a freshly shuffled
order, so machine load (other jobs on a shared box) hits all of them alike. Reported per variant: the median
time over rounds; per ratio: the median *and spread* of the per-round ratios (both variants timed in the
same round), which is robust to load drifting during the run. Thread count and os.getloadavg() before and
after are recorded.

Variants:
* ``float64_gemm``: ``A.double() @ B.double()`` on pre-converted operands, the floor any exact path pays;
* ``exact``: :meth:`axhw.Exact.matmul` (checks, conversion, GEMM, back to int64) — the integer-valued matmul;
* ``drum``: :meth:`axhw.DRUM.matmul` (separable transform + exact GEMM);
* ``lut``: :meth:`axhw.LUTMultiplier.matmul` on DRUM's product table, default path (compiled kernel when
  built, see :mod:`axhw.lutkernel`);
* ``lut_random``: the same on a random full-range table (no structure at all: a non-separable circuit);
* ``lut_torch``: the pure-torch fallback of the table path (chunked gather), DRUM's table;
* ``lut_gather_naive``: the textbook LUT gather ``table[A[:, :, None], B[None]]`` summed over K.

Goals: drum <= 1.5x exact and lut_gather_naive >= 30x drum (issue 2); table matmul (lut, lut_random)
<= 10x exact (issue 12, item 7), judged on the median per-round ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from axhw import lutkernel
from axhw.io import atomic_write_json
from axhw.multipliers import DRUM, Exact, LUTMultiplier

#: (numerator, denominator) variant pairs whose per-round ratios are reported.
RATIOS = [
    ("drum", "exact"),
    ("drum", "float64_gemm"),
    ("lut", "exact"),
    ("lut_random", "exact"),
    ("lut", "drum"),
    ("lut_torch", "exact"),
    ("lut_torch", "lut"),
    ("lut_gather_naive", "drum"),
    ("lut_gather_naive", "lut"),
]


def interleaved_times(
    fns: dict[str, Callable[[], object]], rounds: int, seed: int = 0
) -> dict[str, list[float]]:
    """Seconds per round per variant; each round runs every variant once in a shuffled order."""
    rng = random.Random(seed)
    for fn in fns.values():  # warm-up: builds/loads the kernel, prepares tables, faults pages in
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        order = list(fns)
        rng.shuffle(order)
        for name in order:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def spread(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=4) if len(values) >= 2 else [values[0]] * 3
    return {
        "median": statistics.median(values),
        "min": min(values),
        "p25": q[0],
        "p75": q[2],
        "max": max(values),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/matmul.json"))
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--m", type=int, default=256)
    ap.add_argument("--kdim", type=int, default=784)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(0)
    a = torch.randint(-128, 128, (args.m, args.kdim), generator=g)
    b = torch.randint(-128, 128, (args.kdim, args.n), generator=g)
    exact, drum = Exact(8), DRUM(args.k, 8)
    lut = LUTMultiplier.from_multiplier(drum)
    lo, hi = exact.product_range
    lut_random = LUTMultiplier(torch.randint(lo, hi + 1, (256, 256), generator=g), 8, name="random")
    lut_torch = LUTMultiplier.from_multiplier(drum)
    lut_torch.use_kernel = False
    af, bf = a.double(), b.double()
    table = lut.table

    def naive_gather() -> torch.Tensor:
        out = torch.empty(args.m, args.n, dtype=torch.int64)
        for r in range(0, args.m, 32):  # 32 rows at a time keeps the temporary at ~25 MiB
            out[r : r + 32] = table[a[r : r + 32, :, None] & 255, b[None] & 255].sum(1)
        return out

    # Exactness first: every path against the elementwise definition and the separable models.
    want = drum.matmul(a, b)
    assert torch.equal(lut.matmul(a, b), want)
    assert torch.equal(lut_torch.matmul(a, b), want)
    assert torch.equal(naive_gather(), want)
    assert torch.equal(lut.matmul(a[:8], b), lut(a[:8, :, None], b[None]).sum(1))
    assert torch.equal(lut_random.matmul(a[:8], b), lut_random(a[:8, :, None], b[None]).sum(1))
    assert torch.equal(exact.matmul(a, b), a @ b)

    fns: dict[str, Callable[[], object]] = {
        "float64_gemm": lambda: af @ bf,
        "exact": lambda: exact.matmul(a, b),
        "drum": lambda: drum.matmul(a, b),
        "lut": lambda: lut.matmul(a, b),
        "lut_random": lambda: lut_random.matmul(a, b),
        "lut_torch": lambda: lut_torch.matmul(a, b),
        "lut_gather_naive": naive_gather,
    }
    load_before = os.getloadavg()
    times = interleaved_times(fns, args.rounds)
    load_after = os.getloadavg()
    t = {name: statistics.median(ts) for name, ts in times.items()}
    ratios = {
        f"{num}_over_{den}": spread([x / y for x, y in zip(times[num], times[den], strict=True)])
        for num, den in RATIOS
    }
    med = {name: r["median"] for name, r in ratios.items()}
    goals_met = {
        "drum_over_exact_max_1.5": med["drum_over_exact"] <= 1.5,
        "lut_gather_naive_over_drum_min_30": med["lut_gather_naive_over_drum"] >= 30.0,
        "lut_over_exact_max_10": med["lut_over_exact"] <= 10.0,
        "lut_random_over_exact_max_10": med["lut_random_over_exact"] <= 10.0,
    }
    result = {
        "benchmark": "approximate matmul",
        "shape": [args.m, args.kdim, args.n],
        "bits": 8,
        "k": args.k,
        "rounds": args.rounds,
        "method": "variants interleaved in a shuffled order per round; ratios are per-round, then summarized",
        "lut_backend": lut.backend,
        "seconds_median": t,
        "seconds_spread": {name: spread(ts) for name, ts in times.items()},
        "ratios": ratios,
        "ratio_medians": med,
        "goals_met": goals_met,
        "all_goals_met": all(goals_met.values()),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "loadavg_before": list(load_before),
            "loadavg_after": list(load_after),
            "lut_kernel_library": str(lutkernel.library_path()) if lutkernel.available() else None,
        },
    }
    atomic_write_json(result, args.out)
    print(
        json.dumps(
            {"seconds_median": t, "ratio_medians": med, "goals_met": goals_met, "backend": lut.backend},
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
