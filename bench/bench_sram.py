"""Benchmark: NTV bit-flip corruption of 10^7 8-bit words at each paper voltage.

Timed with :mod:`harness` (bench/harness.py): the three voltages are interleaved in a shuffled order per
round; reported are per-voltage medians and spreads and the per-round ratios to 850 mV (the lowest flip
probability), with thread count and load before/after.

Goal (issue 2): 10^7 8-bit words in well under a second (median, every voltage).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
from harness import header, interleaved_times, summarize

from axhw.arith.fixedpoint import FixedPoint
from axhw.arith.sram import NTVStorage
from axhw.common.io import atomic_write_json
from axhw.common.runtime import tune_allocator

VOLTAGES = (850, 660, 400)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/sram.json"))
    ap.add_argument("--words", type=int, default=10**7)
    ap.add_argument("--rounds", "--repeats", dest="rounds", type=int, default=7)
    args = ap.parse_args()
    tuned = tune_allocator()
    fmt = FixedPoint(8, 6)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(fmt.qmin, fmt.qmax + 1, (args.words,), generator=g)
    storages = {f"{v}mV": NTVStorage(v) for v in VOLTAGES}
    fns = {name: (lambda st=st: st.corrupt(codes, fmt, g)) for name, st in storages.items()}
    load_before = os.getloadavg()
    times = interleaved_times(fns, args.rounds)
    summary = summarize(times, [(f"{v}mV", f"{VOLTAGES[0]}mV") for v in VOLTAGES[1:]])
    rows = {
        name: {"p": st.flip_p, "seconds_median": summary["seconds_median"][name], "seconds_max": max(times[name])}
        for name, st in storages.items()
    }
    result = {
        **header("NTV corrupt", load_before, allocator_tuned=tuned),
        "words": args.words,
        "bits": 8,
        "rounds": args.rounds,
        "results": rows,
        **summary,
        "goal_seconds": 1.0,
        "goals_met": all(r["seconds_median"] < 1.0 for r in rows.values()),
    }
    atomic_write_json(result, args.out)
    print(json.dumps({"results": rows, "ratio_medians": summary["ratio_medians"],
                      "loadavg": [result["machine"]["loadavg_before"], result["machine"]["loadavg_after"]]}, indent=2))


if __name__ == "__main__":
    main()
