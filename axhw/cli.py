"""The ``axhw`` command line: a thin layer over the package (every verb calls a library function).

Errors that a user can fix (bad names, ranges, missing data or tools) print one line to stderr and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from axhw import __version__

Handler = Callable[[argparse.Namespace], int]


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="show the hardware models on the embedded default data")
    p.add_argument("--bits", type=int, default=8, help="operand width (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the NTV flip patterns")

    def run(args: argparse.Namespace) -> int:
        from axhw.demo import hardware_tables

        print(hardware_tables(bits=args.bits, seed=args.seed))
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


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_demo, _add_multipliers]


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
