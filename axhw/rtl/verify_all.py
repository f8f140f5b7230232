"""``make rtl-verify``: generate, simulate under both simulators, summarize (``python -m axhw.rtl.verify_all``).

What it runs (docs/rtl.md, "Running a trained network"), every item under Icarus and Verilator:

1. the exhaustive 8-bit multiplier sweep: DRUM k = 1..8 and exact, signed and unsigned
   (:func:`axhw.rtl.verify.check`; each pass leaves a record for :func:`axhw.rtl.registry.coverage`);
2. the PE on real dot products: first-layer rows of a trained breast-cancer MLP against quantized test
   samples, exact and DRUM-K2 (the saturation corner's multiplier);
3. the PE array on the trained Table 1 networks (breast cancer, image segmentation, ionosphere, satimage,
   MNIST-MLP and LeNet-5 for MNIST-CNN: convolutions, max pooling and fully-connected layers on the same
   array), exact and K2, every layer's outputs against ``forward_int(return_all=True)``; plus breast cancer
   on a ``dual`` array with random per-neuron exact/approximate modes (the ApproxAnn hook);
4. the 16-bit datapath (FlexFlow's word length): the PE and the array on a 16-bit breast-cancer MLP with
   16-bit DRUM-6 multipliers and 48-bit accumulators.

Cycles per inference and PE utilisation per layer of LeNet-5 and MNIST-MLP are printed and written to
``OUT/cycles.json`` (the simulated busy cycles must equal the sequencer's schedule, or the run fails).

The networks are trained here (BP, a few epochs; MNIST on a subset) and cached in ``OUT/nets`` (``--out``,
default ``rtl-verify`` in the user cache, :func:`axhw.common.paths.cache_dir`); data sets that are not fetched are
skipped with a message. The summary table is printed and written to ``OUT/summary.json``; the exit status
is 1 on any mismatch or failed run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from axhw.common.io import atomic_write_text
from axhw.common.paths import cache_dir
from axhw.rtl.generate import MultiplierConfig
from axhw.rtl.pe import DEFAULT_GEOMETRY, ArrayConfig
from axhw.rtl.simulators import SIMULATORS, available_simulators

if TYPE_CHECKING:  # netverify (cocotb) is imported where used
    from axhw.rtl.netverify import LayerRow

__all__ = ["CYCLE_REPORT", "TABLE1", "Row", "format_layers", "main", "train_cached", "verify_all"]

#: Table 1 MLP applications and (training-sample limit, test samples simulated, of which under Icarus).
#: Why fewer under Icarus: it runs the 16-PE array at ~3-5k cycles/s with DRUM PEs (MNIST-MLP: 16k cycles a
#: sample, LeNet-5: 97k), Verilator ~20-100x faster.
TABLE1: dict[str, tuple[int | None, int, int]] = {
    "breast_cancer": (None, 114, 114),
    "image_seg": (None, 100, 24),
    "ionosphere": (None, 71, 24),
    "satimage": (None, 100, 24),
    "mnist_mlp": (6000, 300, 4),
    "mnist_cnn": (6000, 100, 1),
}
#: Applications whose per-layer cycles and PE utilisation are reported (docs/rtl.md, "Cycles and PE utilisation").
CYCLE_REPORT = ("mnist_mlp", "mnist_cnn")


@dataclass
class Row:
    """One line of the summary table."""

    design: str
    config: str
    simulator: str
    vectors: int
    mismatches: int
    seconds: float
    note: str = ""
    ok: bool = True
    layers: list[LayerRow] = field(default_factory=list)


def train_cached(app: str, epochs: int, limit: int | None, out_dir: Path | None = None, bits: int = 8) -> Path:
    """A BP-trained checkpoint for ``app`` (trained once, then reused from ``out_dir/app``, ``app_16`` for
    16-bit words; default ``rtl-verify/nets`` in the user cache)."""
    from axhw.training.trainer import TrainConfig, train

    out_dir = out_dir if out_dir is not None else cache_dir("rtl-verify", "nets")
    folder = out_dir / (app if bits == 8 else f"{app}_{bits}")
    path = folder / "checkpoint.pt"
    if not path.is_file():
        train(TrainConfig(dataset=app, method="bp", epochs=epochs, limit=limit, bits=bits), folder, progress=False)
    return path


def _mul_rows(sims: list[str], rows: list[Row]) -> None:
    from axhw.rtl.verify import check

    for signed in (True, False):
        for k in [*range(1, 9), None]:
            cfg = MultiplierConfig("drum" if k else "exact", 8, k, signed)
            for sim in sims:
                r = check(cfg, sim)
                rows.append(Row("multiplier", cfg.config_id, sim, r.vectors + r.direct,
                                max(r.mismatches, 0) + len(r.direct_failures), r.seconds,
                                "exhaustive" + (f" {r.error}" if r.error else ""), r.ok))
                _print_row(rows[-1])


def _net_row(r: object, note: str) -> Row:
    from axhw.rtl.netverify import NetCheckResult

    assert isinstance(r, NetCheckResult)
    extra = f"{r.network}, {r.samples} samples, {r.cycles} cycles"
    if r.build_seconds:
        extra += f", build {r.build_seconds:.1f} s"
    if r.error:
        extra += f", ERROR {r.error}"
    return Row(r.design, r.config_id, r.simulator, r.vectors, r.total_mismatches, r.seconds,
               f"{note}{extra}", r.ok, r.layers)


def format_layers(layers: list[LayerRow], title: str) -> str:
    """A per-step table of cycles per inference and PE utilisation (:func:`axhw.rtl.netverify.layer_report`)."""
    lines = [f"  {title}: cycles per inference and PE utilisation",
             f"  {'step':>5s} {'kind':10s} {'input':>12s} {'output':>12s} {'MACs':>9s} {'cycles':>8s} {'util.':>6s}"]
    for row in layers:
        shape_in = "x".join(str(v) for v in row["in_shape"])
        shape_out = "x".join(str(v) for v in row["out_shape"])
        lines.append(f"  {row['step']!s:>5s} {row['kind']!s:10s} {shape_in:>12s} {shape_out:>12s} "
                     f"{row['macs']!s:>9s} {row['cycles']!s:>8s} {100 * float(row['utilisation']):5.1f}%")
    return "\n".join(lines)


def _print_row(row: Row) -> None:
    print(f"{row.design:10s} {row.config:62s} {row.simulator:9s} {row.vectors:8d} {row.mismatches:6d} "
          f"{row.seconds:7.1f}  {row.note}", flush=True)


def verify_all(sims: list[str], epochs: int = 5, quick: bool = False, multipliers: bool = True,
               nets_dir: Path | None = None) -> list[Row]:
    """Run everything (see the module docstring) and return the table rows."""
    from axhw import data
    from axhw.data.registry import APPLICATIONS
    from axhw.rtl.netverify import run_array, run_pe
    from axhw.training.trainer import load_checkpoint, quantized_from_checkpoint

    rows: list[Row] = []
    print(f"{'design':10s} {'config':62s} {'simulator':9s} {'vectors':>8s} {'mism.':>6s} {'time s':>7s}  note")
    if multipliers:
        _mul_rows(sims, rows)
    available = data.status()
    muls = [MultiplierConfig("exact", 8), MultiplierConfig("drum", 8, 2)]
    for app, (limit, n_test, n_icarus) in TABLE1.items():
        if quick and app != "breast_cancer":
            continue
        dataset = APPLICATIONS[app].dataset
        if not available.get(dataset, False):
            print(f"skipping {app}: data set {dataset!r} is not fetched (axhw data fetch {dataset})")
            continue
        qnet = quantized_from_checkpoint(load_checkpoint(train_cached(app, epochs, limit, nets_dir)))
        ds = data.load(app, seed=0, test_limit=n_test)
        x_test = ds.x_test if app == "mnist_cnn" else ds.x_test.reshape(ds.x_test.shape[0], -1)
        x = qnet.quantize_input(x_test)
        for mcfg in muls:
            acfg = ArrayConfig(mcfg, **DEFAULT_GEOMETRY)
            for sim in sims:
                if app == "breast_cancer":
                    r = run_pe(acfg, sim, qnet.layers[0], x[:4], network=app, tag="bc_pe")
                    rows.append(_net_row(r, "first-layer rows x 4 samples; "))
                    _print_row(rows[-1])
                r = run_array(acfg, sim, qnet, x if sim != "icarus" else x[:n_icarus], network=app, tag=app)
                rows.append(_net_row(r, ""))
                _print_row(rows[-1])
                if app in CYCLE_REPORT and r.layers:
                    print(format_layers(r.layers, f"{app}, {mcfg.config_id}, {acfg.pes} PEs"), flush=True)
        if app == "breast_cancer":
            acfg = ArrayConfig(MultiplierConfig("drum", 8, 2), dual=True, **DEFAULT_GEOMETRY)
            g = torch.Generator().manual_seed(0)
            modes = [torch.rand(layer.weight.shape[0], generator=g) < 0.5 for layer in qnet.layers]
            for sim in sims:
                r = run_array(acfg, sim, qnet, x, network=app, modes=modes, tag="bc_dual")
                rows.append(_net_row(r, "per-neuron modes (random half approximate); "))
                _print_row(rows[-1])
            _sixteen_bit_rows(sims, epochs, nets_dir, rows)
    return rows


def _sixteen_bit_rows(sims: list[str], epochs: int, nets_dir: Path | None, rows: list[Row]) -> None:
    """FlexFlow's 16-bit word: a 16-bit breast-cancer MLP on 16-bit DRUM-6 (Hashemi et al.'s 16-bit choice) PEs
    and array, with the network's 48-bit accumulators."""
    from axhw import data
    from axhw.rtl.netverify import run_array, run_pe
    from axhw.training.trainer import load_checkpoint, quantized_from_checkpoint

    qnet = quantized_from_checkpoint(load_checkpoint(train_cached("breast_cancer", epochs, None, nets_dir, bits=16)))
    ds = data.load("breast_cancer", seed=0)
    x = qnet.quantize_input(ds.x_test.reshape(ds.x_test.shape[0], -1))
    acc = qnet.layers[0].acc_fmt.bits
    acfg = ArrayConfig(MultiplierConfig("drum", 16, 6), acc_bits=acc, bias_bits=acc, **DEFAULT_GEOMETRY)
    for sim in sims:
        r = run_pe(acfg, sim, qnet.layers[0], x[:4], network="breast_cancer_16", tag="bc16_pe")
        rows.append(_net_row(r, "16-bit, first-layer rows x 4 samples; "))
        _print_row(rows[-1])
        r = run_array(acfg, sim, qnet, x if sim != "icarus" else x[:24], network="breast_cancer_16", tag="bc16")
        rows.append(_net_row(r, "16-bit; "))
        _print_row(rows[-1])


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m axhw.rtl.verify_all [--sim S] [--quick] [--no-multipliers]``."""
    p = argparse.ArgumentParser(prog="axhw rtl verify-all", description=__doc__.splitlines()[0])
    add_arguments(p)
    return run(p.parse_args(argv))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``verify-all`` (shared by ``axhw rtl verify-all``)."""
    p.add_argument("--sim", choices=SIMULATORS, action="append", help="simulator (repeatable; default: all)")
    p.add_argument("--epochs", type=int, default=5, help="BP epochs of the networks trained here (default 5)")
    p.add_argument("--quick", action="store_true", help="breast cancer only (no other Table 1 networks)")
    p.add_argument("--no-multipliers", action="store_true", help="skip the exhaustive multiplier sweep")
    p.add_argument("--quiet", action="store_true", help="no per-run table, only the closing summary (axhw rtl verify-all)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for summary.json and the trained networks (default: rtl-verify in the axhw cache, "
                        "$AXHW_CACHE or ~/.cache/axhw)")


def run(args: argparse.Namespace) -> int:
    """Run with parsed ``args``; print the table, write the JSON; 1 on any mismatch or unavailable simulator."""
    infos = available_simulators()
    sims = args.sim or list(SIMULATORS)
    missing = [s for s in sims if not infos[s].available]
    if missing:
        for s in missing:
            print(f"simulator {s} unavailable: {infos[s].reason}", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    out = args.out if args.out is not None else cache_dir("rtl-verify")
    rows = verify_all(sims, args.epochs, args.quick, not args.no_multipliers, out / "nets")
    total = time.perf_counter() - t0
    bad = [r for r in rows if not r.ok]
    summary = atomic_write_text(json.dumps({
        "ok": not bad,
        "seconds": round(total, 1),
        "simulators": {s: infos[s].version for s in sims},
        "rows": [vars(r) | {"seconds": round(r.seconds, 3)} for r in rows],
    }, indent=1) + "\n", out / "summary.json")
    cycles = {f"{r.note.split(',')[0]} {r.config} {r.simulator}": r.layers for r in rows
              if r.layers and r.note.split(",")[0] in CYCLE_REPORT}
    if cycles:
        print(f"cycles and utilisation: {atomic_write_text(json.dumps(cycles, indent=1) + chr(10), out / 'cycles.json')}")
    print(f"\n{len(rows)} runs, {len(bad)} failed, {sum(r.mismatches for r in rows)} mismatches, "
          f"{total:.0f} s; summary: {summary}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
