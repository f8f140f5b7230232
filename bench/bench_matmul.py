"""Benchmark: approximate 8-bit matmul paths on the MNIST-MLP first layer shape, (256 x 784) @ (784 x 128).

Timed with :mod:`harness` (bench/harness.py): all variants run in one process, interleaved (every round times
each variant once, in a freshly shuffled order; a sample repeats the variant for about ``--sample-seconds``,
reported per call); reported per variant the median over rounds, per ratio the median and spread of the
per-round ratios; thread count and os.getloadavg() before and after are recorded.

Variants:
* ``float64_gemm``: ``A.double() @ B.double()`` on pre-converted operands, the floor any exact path pays;
* ``exact``: :meth:`axhw.Exact.matmul` (checks, conversion, GEMM, back to int64) — the integer-valued matmul;
* ``drum``: :meth:`axhw.DRUM.matmul` (separable transform + exact GEMM);
* ``lut``: :meth:`axhw.LUTMultiplier.matmul` on DRUM's product table, default path (compiled kernel when
  built, see :mod:`axhw.arith.kernels.lut`);
* ``lut_random``: the same on a random full-range table (no structure at all: a non-separable circuit);
* ``lut_scalar``, ``lut_random_scalar``: ``lut`` and ``lut_random`` forced onto the scalar C kernel (on an
  AVX2 machine the default is the AVX2 kernel; these give its speed-up over scalar in the same run);
* ``lut_relu``: ``lut`` with A's entries in [0, 127], as after a ReLU (the AVX2 kernel expands only the
  table rows of words that occur: half of them here);
* ``lut_torch``: the pure-torch fallback of the table path (chunked gather), DRUM's table;
* ``lut_gather_naive``: the textbook LUT gather ``table[A[:, :, None], B[None]]`` summed over K;
* ``drum2_min``, ``drum3_min``: DRUM k=2 and k=3 matmul on operands where ``--min-fraction`` (1 %) of the
  entries of *both* A and B are -128, so k=2 pays its (min, min) saturation correction;
* ``drum2_min_dense_count``: the correction as it was before issue 15 (a second, full float64 GEMM of the
  minimum-value indicators), for the before/after comparison;
* ``float32_gemm_1024``, ``drum_1024``, ``drum2_1024``, ``drum_1024_eager``: 1024 x 1024 x 1024 (uniform
  random 8-bit operands): the float32 GEMM of pre-converted operands, DRUM-k and DRUM-2 ``matmul`` (the
  compiled transform path of issue 15), and DRUM-k on the path before it (``_matmul_compiled`` off);
  ``float32_gemm_1024_over_drum_1024`` is DRUM's share of float32 GEMM throughput.

Goals: drum <= 1.5x exact and lut_gather_naive >= 30x drum (issue 2); table matmul (lut, lut_random)
<= 10x exact (issue 12, item 7), and <= 5x on CPUs with AVX2 but no AVX-512 (issue 28); drum2_min <= 1.2x drum3_min, no K2 cliff (issue 15, item 3); DRUM matmul
at least 80 % of float32 GEMM throughput on 1024^3 (issue 15, item 4); judged on the median per-round
ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from harness import header, interleaved_times, summarize

from axhw.arith.intgemm import exact_int_matmul
from axhw.arith.kernels import lut as lutkernel
from axhw.arith.multipliers import DRUM, Exact, LUTMultiplier
from axhw.common.io import atomic_write_json
from axhw.common.runtime import tune_allocator

#: (numerator, denominator) variant pairs whose per-round ratios are reported.
RATIOS = [
    ("drum", "exact"),
    ("drum", "float64_gemm"),
    ("lut", "exact"),
    ("lut_random", "exact"),
    ("lut", "drum"),
    ("lut_scalar", "exact"),
    ("lut", "lut_scalar"),
    ("lut_random", "lut_random_scalar"),
    ("lut_relu", "exact"),
    ("lut_relu", "lut"),
    ("lut_torch", "exact"),
    ("lut_torch", "lut"),
    ("lut_gather_naive", "drum"),
    ("lut_gather_naive", "lut"),
    ("drum2_min", "drum3_min"),
    ("drum2_min_dense_count", "drum3_min"),
    ("drum2_min_dense_count", "drum2_min"),
    ("float32_gemm_1024", "drum_1024"),
    ("float32_gemm_1024", "drum2_1024"),
    ("drum_1024_eager", "drum_1024"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/matmul.json"))
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--m", type=int, default=256)
    ap.add_argument("--kdim", type=int, default=784)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--min-fraction", type=float, default=0.01, help="share of -128 entries in the *_min operands")
    ap.add_argument("--sample-seconds", type=float, default=0.02,
                    help="each timed sample repeats a variant for about this long (reported per call)")
    ap.add_argument("--variants", default=None, help="comma-separated subset of the variants to time (default: all)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tuned = tune_allocator()

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

    # The K2 cliff (issue 15): -128 in both operands, k = 2 saturates at (-128, -128) and corrects for it.
    a_min, b_min = a.clone(), b.clone()
    a_min[torch.rand(a.shape, generator=g) < args.min_fraction] = -128
    b_min[torch.rand(b.shape, generator=g) < args.min_fraction] = -128
    drum2, drum3 = DRUM(2, 8), DRUM(3, 8)

    def drum2_dense_count() -> torch.Tensor:
        """DRUM(2).matmul with the correction of before issue 15: a full GEMM of the -128 indicators."""
        out = exact_int_matmul(drum2.transform(a_min, torch.float32), drum2.transform(b_min, torch.float32), 192, 192)
        count = torch.mm((a_min == -128).to(torch.float64), (b_min == -128).to(torch.float64)).to(torch.int64)
        return out + count * drum2.sat_correction

    want_min = drum2(a_min[:16, :, None], b_min[None]).sum(1)
    assert torch.equal(drum2.matmul(a_min, b_min)[:16], want_min)
    assert torch.equal(drum2_dense_count()[:16], want_min)

    # 1024^3: DRUM's share of float32 GEMM throughput (issue 15)
    a_big = torch.randint(-128, 128, (1024, 1024), generator=g)
    b_big = torch.randint(-128, 128, (1024, 1024), generator=g)
    af_big, bf_big = a_big.float(), b_big.float()
    drum_eager = DRUM(args.k, 8)
    drum_eager._matmul_compiled = lambda a, b: None  # type: ignore[method-assign]
    assert torch.equal(drum.matmul(a_big[:64], b_big), drum_eager.matmul(a_big[:64], b_big))
    assert torch.equal(drum2.matmul(a_big[:16], b_big), drum2(a_big[:16, :, None], b_big[None]).sum(1))

    def scalar(fn: Callable[[], object]) -> Callable[[], object]:
        """``fn`` with the AVX2 kernel switched off (the path a CPU without AVX2 takes)."""
        def run() -> object:
            saved = lutkernel._state.get("avx2")
            lutkernel._state["avx2"] = False
            try:
                return fn()
            finally:
                lutkernel._state["avx2"] = saved
        return run

    assert torch.equal(scalar(lambda: lut.matmul(a, b))(), want)
    a_relu = a.abs().clamp(max=127)
    assert torch.equal(lut.matmul(a_relu, b), drum.matmul(a_relu, b))
    fns: dict[str, Callable[[], object]] = {
        "float64_gemm": lambda: af @ bf,
        "exact": lambda: exact.matmul(a, b),
        "drum": lambda: drum.matmul(a, b),
        "lut": lambda: lut.matmul(a, b),
        "lut_random": lambda: lut_random.matmul(a, b),
        "lut_scalar": scalar(lambda: lut.matmul(a, b)),
        "lut_relu": lambda: lut.matmul(a_relu, b),
        "lut_random_scalar": scalar(lambda: lut_random.matmul(a, b)),
        "lut_torch": lambda: lut_torch.matmul(a, b),
        "lut_gather_naive": naive_gather,
        "drum2_min": lambda: drum2.matmul(a_min, b_min),
        "drum3_min": lambda: drum3.matmul(a_min, b_min),
        "drum2_min_dense_count": drum2_dense_count,
        "float32_gemm_1024": lambda: af_big @ bf_big,
        "drum_1024": lambda: drum.matmul(a_big, b_big),
        "drum2_1024": lambda: drum2.matmul(a_big, b_big),
        "drum_1024_eager": lambda: drum_eager.matmul(a_big, b_big),
    }
    if args.variants:
        chosen = args.variants.split(",")
        unknown = sorted(set(chosen) - set(fns))
        if unknown:
            ap.error(f"unknown variants {unknown}: valid are {sorted(fns)}")
        fns = {name: fns[name] for name in chosen}
    # A sample repeats a variant for about --sample-seconds (1 ms calls on a loaded machine are mostly
    # scheduler noise); times are reported per call, the interleaving per round is unchanged.
    reps = {}
    for name, fn in fns.items():
        fn()
        once = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            once.append(time.perf_counter() - t0)
        reps[name] = max(1, min(50, round(args.sample_seconds / max(min(once), 1e-6))))
    sampled = {name: (lambda fn=fn, n=reps[name]: [fn() for _ in range(n)]) for name, fn in fns.items()}
    load_before = os.getloadavg()
    times = {name: [t / reps[name] for t in ts] for name, ts in interleaved_times(sampled, args.rounds).items()}
    summary = summarize(times, [(num, den) for num, den in RATIOS if num in fns and den in fns])
    med = summary["ratio_medians"]
    goals = {
        "drum_over_exact_max_1.5": ("drum_over_exact", lambda r: r <= 1.5),
        "lut_gather_naive_over_drum_min_30": ("lut_gather_naive_over_drum", lambda r: r >= 30.0),
        "lut_over_exact_max_10": ("lut_over_exact", lambda r: r <= 10.0),
        "lut_random_over_exact_max_10": ("lut_random_over_exact", lambda r: r <= 10.0),
        **({"lut_over_exact_avx2_max_5": ("lut_over_exact", lambda r: r <= 5.0),
            "lut_random_over_exact_avx2_max_5": ("lut_random_over_exact", lambda r: r <= 5.0)}
           if lut.backend == "c-avx2" else {}),
        "drum2_min_over_drum3_min_max_1.2": ("drum2_min_over_drum3_min", lambda r: r <= 1.2),
        "drum_1024_at_least_80pct_of_float32": ("float32_gemm_1024_over_drum_1024", lambda r: r >= 0.8),
    }
    goals_met = {goal: ok(med[ratio]) for goal, (ratio, ok) in goals.items() if ratio in med}
    result = {
        **header(
            "approximate matmul",
            load_before,
            allocator_tuned=tuned,
            lut_kernel_library=str(lutkernel.library_path()) if lutkernel.available() else None,
        ),
        "shape": [args.m, args.kdim, args.n],
        "bits": 8,
        "k": args.k,
        "min_fraction": args.min_fraction,
        "rounds": args.rounds,
        "calls_per_sample": reps,
        "lut_backend": lut.backend,
        **summary,
        "goals_met": goals_met,
        "all_goals_met": all(goals_met.values()),
    }
    atomic_write_json(result, args.out)
    print(
        json.dumps(
            {
                "seconds_median": summary["seconds_median"],
                "ratios": summary["ratios"],
                "goals_met": goals_met,
                "backend": lut.backend,
                "loadavg": [result["machine"]["loadavg_before"], result["machine"]["loadavg_after"]],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
