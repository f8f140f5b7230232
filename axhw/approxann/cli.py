"""argparse registration of ``axhw approxann`` and of the ``fig8`` figure (for ``axhw reproduce fig8``).

Both follow :mod:`axhw.rtl.cli`: ``add_parser(subparsers)`` registers the command, sets ``func`` to a
handler that returns an exit code, and returns the parser.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from axhw.approxann.criticality import MEASURES

__all__ = ["add_fig8_parser", "add_parser", "main_approxann", "main_fig8"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Register ``approxann``: ApproxAnn on a checkpoint, writing the mixed-mode network and counts."""
    p = subparsers.add_parser("approxann", help="ApproxAnn: switch least-critical neurons to an approximate "
                                                "multiplier with retraining, within an accuracy bound")
    p.add_argument("--checkpoint", required=True, help="training checkpoint (axhw train --out DIR)/checkpoint.pt")
    p.add_argument("--mode", default="K2", help="approximate multiplier of switched neurons (K1..K4, drum<k>)")
    p.add_argument("--bound", type=float, default=2.0, help="allowed accuracy loss in percentage points (default 2)")
    p.add_argument("--measure", choices=MEASURES, default="gradient", help="criticality measure (default gradient)")
    p.add_argument("--retrain-epochs", type=int, default=3, help="retraining epochs per round (default 3)")
    p.add_argument("--initial-step", type=float, default=0.25, help="first round's share of neurons (default 0.25)")
    p.add_argument("--lr", type=float, default=5e-4, help="retraining learning rate (default 5e-4)")
    p.add_argument("--max-rounds", type=int, default=40)
    p.add_argument("--accept-split", choices=("test", "train"), default="test",
                   help="split the bound is enforced on (default test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", required=True, help="output directory (network.pt, approxann.json)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=main_approxann)
    return p


def main_approxann(args: argparse.Namespace) -> int:
    from axhw.approxann.search import ApproxAnnConfig, run_approxann

    cfg = ApproxAnnConfig(mode=args.mode, bound=args.bound, measure=args.measure, retrain_epochs=args.retrain_epochs,
                          initial_step=args.initial_step, lr=args.lr, max_rounds=args.max_rounds,
                          accept_split=args.accept_split, seed=args.seed)
    r = run_approxann(args.checkpoint, cfg, args.out, data_dir=args.data_dir, progress=not args.quiet)
    print(f"{r.dataset} {r.method} | ApproxAnn {r.mode}, bound {r.bound:g} points: "
          f"{r.approx_multipliers}/{r.total_multipliers} approximate multipliers ({100 * r.fraction:.1f}%), "
          f"{r.approx_neurons}/{r.total_neurons} neurons; test accuracy {r.exact_test_accuracy:.4f} (exact) -> "
          f"{r.test_accuracy:.4f}{'' if r.bound_respected else ' (BOUND VIOLATED on test)'} "
          f"-> {Path(args.out) / 'approxann.json'}")
    return 0


def add_fig8_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    """Register ``fig8`` (meant for ``axhw reproduce fig8``): ApproxAnn counts, BP vs AxTrain-act."""
    from axhw.approxann.fig8 import DEFAULT_DATASETS

    p = subparsers.add_parser("fig8", help="paper Fig. 8: approximate multipliers under ApproxAnn, BP vs AxTrain-act")
    p.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS))
    p.add_argument("--out", default="results/fig8", help="output directory (default results/fig8)")
    p.add_argument("--quick", action="store_true", help="smoke-test budget (few epochs, <= 1000 samples)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--modes", nargs="+", default=["K2", "K1"])
    p.add_argument("--bound", type=float, default=2.0)
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default 30; quick 8)")
    p.add_argument("--limit", type=int, default=None, help="training samples per application")
    p.add_argument("--retrain-epochs", type=int, default=None, help="ApproxAnn retraining epochs per round "
                   "(default 3; quick 1; 0 = no retraining)")
    p.add_argument("--measure", choices=MEASURES, default="gradient", help="criticality measure")
    p.add_argument("--runs-dir", default=None, help="trainings and searches (default OUT/runs; share between variants)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=main_fig8)
    return p


def main_fig8(args: argparse.Namespace) -> int:
    from axhw.approxann.fig8 import fig8, fig8_markdown
    from axhw.approxann.search import ApproxAnnConfig

    retrain = args.retrain_epochs if args.retrain_epochs is not None else (1 if args.quick else 3)
    result = fig8(args.datasets, args.out, quick=args.quick, seeds=args.seeds, modes=args.modes, bound=args.bound,
                  epochs=args.epochs, limit=args.limit, data_dir=args.data_dir, runs_dir=args.runs_dir,
                  approxann_cfg=ApproxAnnConfig(retrain_epochs=retrain, measure=args.measure),
                  progress=not args.quiet)
    print(fig8_markdown(result))
    print(f"-> {Path(args.out) / 'fig8.json'}, {Path(args.out) / 'fig8.png'}")
    if not args.quiet:
        print(json.dumps(result["gain_act_over_bp"], indent=2))
    return 0
