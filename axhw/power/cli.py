"""``axhw power ...`` subcommands: a thin argparse layer over :mod:`axhw.power`.

``axhw.cli`` wires it in with ``add_parser(subparsers)``; handlers return the exit status.

    axhw power report --dataset breast_cancer [--constraint 2.0] [--quick] --out build/power/breast_cancer
    axhw power synth --bits 8 --bits 16 --out build/power/synth
    axhw power summary --reports build/power/report
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from axhw.power.tools import ToolMissing, find_toolchain

__all__ = ["add_parser", "main_report", "main_summary", "main_synth"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Register the ``power`` command (``report``, ``synth``) on ``subparsers``."""
    from axhw.data.registry import APPLICATIONS

    power = subparsers.add_parser("power", help="synthesis, activity-based power and minimum-power search")
    sub = power.add_subparsers(dest="power_command", required=True, metavar="{report,summary,synth}")
    rep = sub.add_parser("report", help="minimum-power configuration of BP vs AxTrain (Fig. 9)")
    rep.add_argument("--dataset", required=True, choices=sorted(APPLICATIONS))
    rep.add_argument("--constraint", type=float, default=2.0, help="allowed accuracy loss, pp (default 2.0)")
    rep.add_argument("--quick", action="store_true", help="reduced run: few epochs, 5 NTV runs, 3 modes, 2 voltages")
    rep.add_argument("--epochs", type=int, default=None, help="training epochs (default 30, quick 4)")
    rep.add_argument("--runs", type=int, default=None, help="NTV runs per evaluation (default 50)")
    rep.add_argument("--pairs", type=int, default=None, help="operand pairs simulated per mode (default 4096)")
    rep.add_argument("--reference", choices=("own", "bp"), default="own", help="accuracy reference network")
    rep.add_argument("--zero-delay", action="store_true", help="simulate without cell delays (no glitches)")
    rep.add_argument("--work-dir", type=Path, default=Path("build/power/study"), help="checkpoints and scratch")
    rep.add_argument("--out", type=Path, required=True, help="output directory")
    rep.set_defaults(func=main_report)
    summ = sub.add_parser("summary", help="one BP vs AxTrain table over every report under a directory")
    summ.add_argument("--reports", type=Path, default=Path("build/power/report"), help="directory of reports")
    summ.add_argument("--out", type=Path, default=None, help="output file (default REPORTS/summary.md)")
    summ.set_defaults(func=main_summary)
    syn = sub.add_parser("synth", help="synthesize exact and DRUM-k multipliers; area, leakage, power")
    syn.add_argument("--bits", type=int, action="append", help="operand width (repeatable; default 8 and 16)")
    syn.add_argument("--pairs", type=int, default=2000, help="uniform operand pairs simulated per config")
    syn.add_argument("--out", type=Path, required=True, help="output directory")
    syn.set_defaults(func=main_synth)
    return power


def _fail(args: argparse.Namespace, exc: Exception) -> int:
    print(f"axhw power {args.power_command}: error: {exc}", file=sys.stderr)
    return 2


def main_report(args: argparse.Namespace) -> int:
    """``axhw power report``: run the study, write power.json/.md/.png, print the chosen table."""
    from axhw.power.report import markdown, write_report
    from axhw.power.study import StudyConfig, run_study

    changes = {k: v for k, v in (("epochs", args.epochs), ("runs", args.runs), ("n_pairs", args.pairs))
               if v is not None}
    base = StudyConfig.quick(args.dataset) if args.quick else StudyConfig(dataset=args.dataset)
    try:
        find_toolchain()  # fail in one line, before any training or progress bar
        cfg = base.copy(constraint_pp=args.constraint, reference=args.reference, timing=not args.zero_delay,
                        work_dir=args.work_dir, **changes)
        if cfg.epochs <= cfg.pas_epochs:
            cfg = cfg.copy(pas_epochs=max(1, cfg.epochs - 1))
        result = run_study(cfg).as_dict()
    except (ToolMissing, ValueError) as exc:
        return _fail(args, exc)
    for path in write_report(result, args.out):
        print(path)
    print(markdown(result).split("## Multiplier power")[0])
    return 0


def main_summary(args: argparse.Namespace) -> int:
    """``axhw power summary``: the cross-data-set table of ``power.json`` files (no tools needed)."""
    from axhw.power.report import write_summary

    try:
        path = write_summary(args.reports, args.out)
    except ValueError as exc:
        return _fail(args, exc)
    print(path.read_text())
    return 0


def main_synth(args: argparse.Namespace) -> int:
    """``axhw power synth``: tables of area, leakage and power for exact and DRUM k = bits..1."""
    from axhw.power.report import synthesis_table, write_synthesis_report

    try:
        find_toolchain()
        for bits in args.bits or [8, 16]:
            rows = synthesis_table(bits, n_pairs=args.pairs, progress=True)
            for path in write_synthesis_report(rows, args.out, f"synth_{bits}bit"):
                print(path)
            print((Path(args.out) / f"synth_{bits}bit.md").read_text())
        print(pe_table(Path(args.out)))
    except (ToolMissing, ValueError) as exc:
        return _fail(args, exc)
    return 0


def pe_table(out: Path, max_fan_in: int = 64) -> str:
    """Cells, area and leakage of the FlexFlow PE per multiplier mode (8-bit), written as ``pe_8bit.md``."""
    from axhw.io import atomic_write_text
    from axhw.power.synth import synthesize_pe
    from axhw.report import markdown_table
    from axhw.rtl.generate import MultiplierConfig
    from axhw.rtl.pe import ArrayConfig

    modes = [("exact", MultiplierConfig("exact", 8)), *[(f"K{k}", MultiplierConfig("drum", 8, k=k)) for k in (4, 3, 2, 1)]]
    rows = []
    for name, cfg in modes:
        r = synthesize_pe(ArrayConfig(cfg, max_fan_in=max_fan_in))
        rows.append([name, r.config_id, r.n_cells, f"{r.area_um2:.0f}", f"{r.leakage_nw:.1f}"])
    text = (f"PE (multiplier, accumulator, controller, {max_fan_in}-word local memories as flip-flops), osu018:\n\n"
            + markdown_table(["mode", "design", "cells", "area um2", "leakage nW"], rows) + "\n")
    atomic_write_text(text, out / "pe_8bit.md")
    return text
