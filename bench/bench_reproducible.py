"""Benchmark: what reproducible mode (``--reproducible``, :mod:`axhw.common.reproducible`) costs in training time.

Whole ``axhw train`` runs (each variant in its own process: the mode must be set before torch loads), timed
with :mod:`harness` (variants interleaved in a shuffled order per round, medians of per-round ratios):

* ``fast``: the CPU's own dispatch on every CPU this process may use (``--threads`` default);
* ``one_thread``: the CPU's own dispatch, ``--threads 1``;
* ``reproducible``: ``--reproducible`` (default dispatch, MKL compatible path, oneDNN SSE4.1, one thread).

Networks: MNIST-MLP (bp, 1 epoch on 5,000 samples) and LeNet-5 (bp, 1 epoch on 1,000 samples): the dense
and the convolutional path. Wall time includes the process start and the data load (the same in every
variant), so the ratios understate the cost on training alone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import header, interleaved_times, summarize

from axhw.common.io import atomic_write_json
from axhw.common.reproducible import ENV, VARIABLE

#: name -> ``axhw train`` arguments
CASES = {
    "mnist_mlp": ["--dataset", "mnist_mlp", "--method", "bp", "--epochs", "1", "--limit", "5000"],
    "mnist_cnn": ["--dataset", "mnist_cnn", "--method", "bp", "--epochs", "1", "--limit", "1000"],
}
VARIANTS = {"fast": [], "one_thread": ["--threads", "1"], "reproducible": ["--reproducible"]}


def _runner(case: list[str], variant: list[str], out: Path) -> object:
    env = {k: v for k, v in os.environ.items() if k not in (*ENV, VARIABLE)}
    env["OMP_WAIT_POLICY"] = "PASSIVE"  # no restart by the CLI (axhw.apps.cli._passive_openmp) in any variant
    cmd = [sys.executable, "-m", "axhw.apps.cli", "train", *case, *variant, "--quiet", "--force", "--out", str(out)]
    return lambda: subprocess.run(cmd, check=True, capture_output=True, env=env)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    p.add_argument("--cases", nargs="+", choices=sorted(CASES), default=sorted(CASES), help="networks (default all)")
    p.add_argument("--out", type=Path, required=True, help="JSON result")
    args = p.parse_args()
    load_before = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory(prefix="axhw-bench-repro-") as tmp:
        for name in args.cases:
            fns = {v: _runner(CASES[name], extra, Path(tmp) / f"{name}-{v}") for v, extra in VARIANTS.items()}
            times = interleaved_times(fns, rounds=args.rounds)
            results[name] = summarize(times, [("reproducible", "fast"), ("reproducible", "one_thread")])
            print(name, {k: f"{v:.2f}" for k, v in results[name]["ratio_medians"].items()})  # type: ignore[union-attr]
    atomic_write_json({**header("reproducible mode: axhw train wall time", load_before), "cases": results}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
