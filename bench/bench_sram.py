"""Benchmark: NTV bit-flip corruption of 10^7 8-bit words at each paper voltage (medians over repeats).

Goal (issue 2): 10^7 8-bit words in well under a second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from axhw.fixedpoint import FixedPoint
from axhw.io import atomic_write_json
from axhw.sram import NTVStorage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/sram.json"))
    ap.add_argument("--words", type=int, default=10**7)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    fmt = FixedPoint(8, 6)
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(fmt.qmin, fmt.qmax + 1, (args.words,), generator=g)
    rows = {}
    for v in (850, 660, 400):
        st = NTVStorage(v)
        st.corrupt(codes, fmt, g)  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            st.corrupt(codes, fmt, g)
            times.append(time.perf_counter() - t0)
        rows[f"{v}mV"] = {"p": st.flip_p, "seconds_median": statistics.median(times), "seconds_max": max(times)}
    result = {"benchmark": "NTV corrupt", "words": args.words, "bits": 8, "repeats": args.repeats,
              "results": rows, "goal_seconds": 1.0,
              "goals_met": all(r["seconds_median"] < 1.0 for r in rows.values()),
              "torch": torch.__version__, "threads": torch.get_num_threads()}
    atomic_write_json(result, args.out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
