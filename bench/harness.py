"""The one timing harness of axhw's benchmarks: interleaved variants, medians, per-round ratios.

Why: on a shared machine, load from other jobs drifts during a run. Timing variant A for a while and then
variant B compares A under one load with B under another. Here every round times each variant once, in a
freshly shuffled order, so drifting load hits all variants alike; a comparison is then summarized by the
median (and spread) of its *per-round* ratios, two timings taken seconds apart, which is robust to the
drift. Every result records the torch thread count and ``os.getloadavg()`` before and after the run, so a
reader can tell a quiet measurement from a busy one.

Used by ``bench_matmul.py``, ``bench_sram.py`` and ``bench_train.py``::

    load_before = os.getloadavg()
    times = interleaved_times({"a": fa, "b": fb}, rounds=21)
    result = {**header("my benchmark", load_before), **summarize(times, [("a", "b")])}
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch

__all__ = ["METHOD", "act_macs", "header", "interleaved_times", "ratio_name", "spread", "summarize"]

METHOD = "variants interleaved in a shuffled order per round; ratios are per-round, then summarized"


def interleaved_times(
    fns: Mapping[str, Callable[[], object]],
    rounds: int,
    seed: int = 0,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
    order_log: list[list[str]] | None = None,
) -> dict[str, list[float]]:
    """Seconds per round per variant: each round runs every variant once, in a freshly shuffled order.

    Args:
        fns: variant name -> zero-argument callable (the timed work).
        rounds: timed rounds (>= 1); every variant gets exactly one timing per round.
        seed: seeds the shuffles (``random.Random``), so a rerun uses the same orders.
        warmup: untimed calls of every variant first (kernel builds, caches, page faults).
        clock: the timer (tests pass a fake one).
        order_log: if given, each round's order is appended to it.
    """
    if rounds < 1:
        raise ValueError(f"rounds={rounds} out of range: valid range is >= 1")
    if not fns:
        raise ValueError("no variants to time")
    rng = random.Random(seed)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        order = list(fns)
        rng.shuffle(order)
        if order_log is not None:
            order_log.append(order)
        for name in order:
            t0 = clock()
            fns[name]()
            times[name].append(clock() - t0)
    return times


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min, quartiles (p25, p75) and max of ``values`` (at least one)."""
    if not values:
        raise ValueError("spread of no values")
    q = statistics.quantiles(values, n=4) if len(values) >= 2 else [values[0]] * 3
    return {
        "median": statistics.median(values),
        "min": min(values),
        "p25": q[0],
        "p75": q[2],
        "max": max(values),
    }


def ratio_name(num: str, den: str) -> str:
    return f"{num}_over_{den}"


def summarize(times: Mapping[str, Sequence[float]], ratios: Iterable[tuple[str, str]]) -> dict[str, object]:
    """Medians per variant and, per ``(num, den)`` pair, the spread of the per-round ratios ``num / den``.

    Returns ``seconds_median``, ``seconds_spread``, ``ratios`` (``"<num>_over_<den>"`` -> spread) and
    ``ratio_medians`` (the medians alone, what goals are judged on).
    """
    ratio_spreads = {}
    for num, den in ratios:
        per_round = [x / y for x, y in zip(times[num], times[den], strict=True)]
        ratio_spreads[ratio_name(num, den)] = spread(per_round)
    return {
        "seconds_median": {name: statistics.median(ts) for name, ts in times.items()},
        "seconds_spread": {name: spread(ts) for name, ts in times.items()},
        "ratios": ratio_spreads,
        "ratio_medians": {name: r["median"] for name, r in ratio_spreads.items()},
    }


def header(
    benchmark: str,
    load_before: Sequence[float],
    load_after: Sequence[float] | None = None,
    **extra: object,
) -> dict[str, object]:
    """The JSON header every benchmark result starts with: what ran, how, and on how loaded a machine.

    ``load_before`` is ``os.getloadavg()`` taken before the timed rounds; ``load_after`` defaults to now.
    ``extra`` entries (e.g. the allocator setting) go into ``machine``.
    """
    after = os.getloadavg() if load_after is None else load_after
    return {
        "benchmark": benchmark,
        "method": METHOD,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            **cpu_description(),
            "loadavg_before": list(load_before),
            "loadavg_after": list(after),
            **extra,
        },
    }


def cpu_description() -> dict[str, object]:
    """The CPU model and its vector extensions (kernels pick their path by them: an AVX2-only and an AVX-512
    machine run different table-matmul kernels), from ``/proc/cpuinfo`` where it exists."""
    model, flags = platform.processor() or "unknown", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("unknown", "x86_64", ""):
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return {"cpu_model": model, "cpu_vector_isa": sorted(flags & {"avx2", "avx512f", "avx512bw", "avx512vl"}),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def act_macs(layers: Sequence[tuple[str, int]], probes: int) -> tuple[int, int]:
    """Multiply-accumulates per sample of a BP step and of an act step with ``probes`` output probes (K: exact
    S), from each Linear/Conv2d layer's ``(kind, forward MACs)`` in forward order: the arithmetic floor of
    act/BP at equal kernel efficiency (``bench_act.py``, ``bench_train.py``).

    BP: forward F, weight gradients F, input gradients F - F_1. S with R probes adds R delta propagations
    through every layer but the first (R (F - F_1)) and every convolution's per-sample gradient (R F_l),
    the linear closed form ``|a| |W|`` (F_l), and the backward of all of it (2x; 1x for the first layer,
    whose patches are the data). Any exact method pays these (the paper's R-operator included).

    >>> act_macs([("linear", 10), ("linear", 5)], 2)
    (35, 100)
    """
    f = sum(m for _, m in layers)
    f1 = layers[0][1]
    bp = 3 * f - f1
    extra = 3 * probes * (f - f1)
    for i, (kind, m) in enumerate(layers):
        extra += (2 if i == 0 else 3) * (probes * m if kind == "conv" else m)
    return bp, bp + extra
