"""argparse registration of ``axhw approxann`` (Fig. 8 runs through ``axhw reproduce fig8``).

Both follow :mod:`axhw.rtl.cli`: ``add_parser(subparsers)`` registers the command, sets ``func`` to a
handler that returns an exit code, and returns the parser.
"""

from __future__ import annotations

import argparse

from axhw.approxann.options import MEASURES
from axhw.common.cli_checks import DATA_DIR_DEFAULT

__all__ = ["add_parser", "main_approxann"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register ``approxann``: ApproxAnn on a checkpoint, writing the mixed-mode network and counts."""
    p = subparsers.add_parser("approxann", help="ApproxAnn: switch least-critical neurons to an approximate "
                                                "multiplier with retraining, within an accuracy bound")
    p.add_argument("--checkpoint", required=True,
                   help="training checkpoint: (axhw train --out DIR)/checkpoint.pt (required)")
    p.add_argument("--multiplier", default="K2",
                   help="approximate multiplier of switched neurons: K1..K4, drum<k> or an imported circuit's "
                        "name (default K2)")
    p.add_argument("--mode", dest="multiplier", help=argparse.SUPPRESS)  # the old name of --multiplier
    p.add_argument("--bound", type=float, default=2.0, help="allowed accuracy loss in percentage points (default 2)")
    p.add_argument("--measure", choices=MEASURES, default="gradient", help="criticality measure (default gradient)")
    p.add_argument("--retrain-epochs", type=int, default=3, help="retraining epochs per round (default 3)")
    p.add_argument("--initial-step", type=float, default=0.25, help="first round's share of neurons (default 0.25)")
    p.add_argument("--lr", type=float, default=5e-4, help="retraining learning rate (default 5e-4)")
    p.add_argument("--max-rounds", type=int, default=40, help="most search rounds (default 40)")
    p.add_argument("--accept-split", choices=("test", "val", "train"), default="test",
                   help="split the bound is enforced on (default test)")
    p.add_argument("--seed", type=int, default=0, help="seed of retraining and flips (default 0)")
    p.add_argument("--data-dir", default=None, help="dataset cache (default: as trained, else " + DATA_DIR_DEFAULT + ")")
    p.add_argument("--out", required=True, help="output folder: network.pt, approxann.json (required)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=main_approxann)
    return p


def main_approxann(args: argparse.Namespace) -> int:
    from axhw.approxann.search import ApproxAnnConfig, run_approxann
    from axhw.common.cli_checks import check_out_dir

    out = check_out_dir(args.out)  # before any work (also when called without axhw.apps.cli.main)
    cfg = ApproxAnnConfig(mode=args.multiplier, bound=args.bound, measure=args.measure, retrain_epochs=args.retrain_epochs,
                          initial_step=args.initial_step, lr=args.lr, max_rounds=args.max_rounds,
                          accept_split=args.accept_split, seed=args.seed)
    r = run_approxann(args.checkpoint, cfg, out, data_dir=args.data_dir, progress=not args.quiet)
    print(f"{r.dataset} {r.method} | ApproxAnn {r.mode}, bound {r.bound:g} points: "
          f"{r.approx_multipliers}/{r.total_multipliers} approximate multipliers ({100 * r.fraction:.1f}%), "
          f"{r.approx_neurons}/{r.total_neurons} neurons; test accuracy {r.exact_test_accuracy:.4f} (exact) -> "
          f"{r.test_accuracy:.4f}{'' if r.bound_respected else ' (BOUND VIOLATED on test)'} "
          f"-> {out / 'approxann.json'}")
    return 0
