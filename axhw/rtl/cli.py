"""``axhw rtl ...`` subcommands: a thin argparse layer over :mod:`axhw.rtl.generate` and friends.

``axhw.apps.cli`` wires it in with ``add_parser(subparsers)``; every subcommand sets ``func`` to a handler
``(args) -> int`` (the process exit status), so the top-level CLI runs ``sys.exit(args.func(args))``.

    axhw rtl generate --multiplier drum3 --bits 8 --out build/rtl/drum_k3_s8
    axhw rtl simulators
    axhw rtl verify --multiplier K3 --bits 8 --sim icarus        # the names train takes: exact, K1..K4, drum<k>, ...
    axhw rtl generate --design array --bits 8 --multiplier K2 --network build/nets/bc/checkpoint.pt --out build/rtl/bc
    axhw rtl verify --design array --multiplier K2 --network build/nets/lenet/checkpoint.pt --samples 100 --sim verilator
    axhw rtl verify-all                      # = make rtl-verify
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final

from axhw.rtl.generate import (
    DESIGNS,
    MAX_BITS,
    MIN_BITS,
    GeneratedRTLError,
    MultiplierConfig,
    write,
    write_files,
)
from axhw.rtl.pe import ArrayConfig
from axhw.rtl.simulators import SIMULATORS, available_simulators

__all__ = [
    "add_parser",
    "array_config_from_args",
    "config_from_args",
    "main_generate",
    "main_simulators",
    "main_verify",
    "main_verify_all",
]

_GEOMETRY: Final = ("pes", "max_fan_in", "nbuf_depth", "wbuf_depth", "bbuf_depth", "obuf_depth", "imem_depth")


#: What ``--multiplier`` takes here, in the words of ``axhw train --multiplier``.
MULTIPLIER_HELP = "multiplier: exact, K1..K4, drum<k> (k in 1..bits)"


def _add_multiplier_argument(p: argparse.ArgumentParser, imported: bool) -> None:
    """``--multiplier NAME``, the name ``train``/``evaluate`` take; the design follows from it. The old
    ``--k`` stays as a hidden alias (``--design drum --k 2`` = ``--multiplier drum2``)."""
    extra = ", or a circuit imported with `axhw multipliers import`" if imported else ""
    p.add_argument("--multiplier", default=None, metavar="NAME",
                   help=f"{MULTIPLIER_HELP}{extra}; with --design pe/array: the PEs' multiplier (default exact)")
    p.add_argument("--k", type=int, default=None, help=argparse.SUPPRESS)


def _add_config_arguments(p: argparse.ArgumentParser) -> None:
    _add_multiplier_argument(p, imported=False)
    p.add_argument("--design", choices=sorted(DESIGNS), default=None,
                   help="pe or array: the processing element or the PE array around the multiplier (default: the "
                        "multiplier alone, as --multiplier names it)")
    p.add_argument("--bits", type=int, default=8, help=f"operand width, {MIN_BITS}..{MAX_BITS} (default 8)")
    p.add_argument("--unsigned", action="store_true", help="unsigned operands (default: two's complement)")


def _add_array_arguments(p: argparse.ArgumentParser) -> None:
    from axhw.rtl.pe import DEFAULT_GEOMETRY

    g = p.add_argument_group("pe / array (--multiplier K2 or drum2: DRUM-2 PEs; default exact PEs)")
    for name in _GEOMETRY:
        g.add_argument(f"--{name.replace('_', '-')}", type=int, default=DEFAULT_GEOMETRY[name],
                       help=f"default {DEFAULT_GEOMETRY[name]}")
    g.add_argument("--dual", action="store_true", help="exact + approximate multiplier per PE, per-neuron mode bit")
    g.add_argument("--network", type=Path, default=None,
                   help="array: QuantizedNetwork file or training checkpoint; also write its memory images")
    g.add_argument("--input-shape", type=_shape, default=None, metavar="C,H,W",
                   help="input maps of a --network that starts with a convolution (default: known for MNIST)")


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated shape such as 1,28,28") from None
    if not shape or any(v < 1 for v in shape):
        raise argparse.ArgumentTypeError(f"{text!r}: dimensions must be positive")
    return shape


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register the ``rtl`` command (``generate``, ``simulators``, ``verify``) on ``subparsers``."""
    rtl = subparsers.add_parser("rtl", help="generate and verify the multiplier RTL")
    sub = rtl.add_subparsers(dest="rtl_command", required=True, metavar="{generate,simulators,verify,verify-all}")

    gen = sub.add_parser("generate", help="render Verilog for one multiplier configuration")
    _add_config_arguments(gen)
    _add_array_arguments(gen)
    gen.add_argument("--out", type=Path, required=True, help="output directory (created if missing)")
    gen.set_defaults(func=main_generate)

    sims = sub.add_parser("simulators", help="report which HDL simulators are usable, with versions")
    sims.set_defaults(func=main_simulators)

    ver = sub.add_parser("verify", help="simulate one configuration against the Python model (cocotb)")
    _add_multiplier_argument(ver, imported=True)
    ver.add_argument("--design", default=None, metavar="DESIGN",
                     help="array: a trained --network on the PE array (default: the multiplier alone, as "
                          "--multiplier names it)")
    ver.add_argument("--bits", type=int, default=None,
                     help=f"operand width, {MIN_BITS}..{MAX_BITS} (default 8; imported circuits: their own)")
    ver.add_argument("--unsigned", action="store_true", help="unsigned operands (default: two's complement)")
    ver.add_argument(
        "--sim", choices=SIMULATORS, action="append", help="simulator (repeatable; default: all)"
    )
    ver.add_argument("--build-root", type=Path, default=None,
                     help="simulator build cache (default: sim/ in the axhw cache: $AXHW_SIM_BUILD, else "
                          "$AXHW_CACHE/sim, ~/.cache/axhw/sim)")
    ver.add_argument("--quiet", action="store_true", help="no progress output (results still print)")
    from axhw.rtl.pe import DEFAULT_GEOMETRY

    net = ver.add_argument_group("--design array: a trained network on the PE array (--multiplier K2 or drum2: "
                                 "DRUM-2 PEs; default exact PEs)")
    net.add_argument("--network", type=Path, default=None,
                     help="training checkpoint (`axhw train` writes one) or QuantizedNetwork file")
    net.add_argument("--samples", type=int, default=10, help="test samples to simulate (default 10)")
    for name in _GEOMETRY:
        net.add_argument(f"--{name.replace('_', '-')}", type=int, default=DEFAULT_GEOMETRY[name],
                         help=f"default {DEFAULT_GEOMETRY[name]}")
    net.add_argument("--vcd", type=Path, default=None, help="also dump the array's signals to this VCD file")
    net.add_argument("--report", type=Path, default=None,
                     help="write the result, cycles per inference and PE utilisation per layer to this JSON file")
    ver.set_defaults(func=main_verify)

    from axhw.rtl.verify_all import add_arguments

    va = sub.add_parser("verify-all", help="multipliers, PE and array on trained networks, both simulators")
    add_arguments(va)
    va.set_defaults(func=main_verify_all)
    return rtl


def resolve_multiplier(args: argparse.Namespace, imported: bool = False) -> None:
    """Turn ``--multiplier NAME`` into ``args.design`` and ``args.k`` (in place), the form the generators take.

    ``NAME`` is any name ``axhw train --multiplier`` takes: ``exact``, ``K1..K4``, ``drum<k>`` and, where
    ``imported``, a circuit of the multiplier library. With ``--design pe|array`` it picks the PEs'
    multiplier (exact or DRUM-k: what the PE instantiates). The old spelling ``--design exact|drum [--k K]``
    (and ``--design NAME`` for an imported circuit) still works; mixing both, or ``drum`` without ``--k``,
    is a one-line ``ValueError``.
    """
    from axhw.arith import library
    from axhw.arith.multipliers import K_PRESETS

    if getattr(args, "multiplier_resolved", False):  # already done (generate resolves, then builds the array)
        return
    args.multiplier_resolved = True
    name, design = args.multiplier, args.design
    if name is None:
        if design is None:
            raise ValueError("say which multiplier: --multiplier exact, K1..K4, drum<k>"
                             + (" or an imported circuit's name" if imported else ""))
        if design == "drum" and args.k is None:
            raise ValueError("--design drum needs --k K (1..bits); or say --multiplier drum<K> or K1..K4")
        return
    if args.k is not None:
        raise ValueError(f"--k {args.k} and --multiplier {name} both name the multiplier: keep --multiplier")
    if design not in (None, "pe", "array"):
        raise ValueError(f"--design {design} and --multiplier {name} both name the multiplier: keep --multiplier "
                         "(--design is for pe and array)")
    key = name.strip()
    if key.lower() == "exact":
        k = None
    elif key.upper() in K_PRESETS:
        k = K_PRESETS[key.upper()]
    elif key.lower().startswith("drum") and key[4:].isdigit():
        k = int(key[4:])
    elif imported and key in library.names():
        if design is None:
            args.design = key
        else:  # the PEs of a pe/array design multiply with the library circuit
            args.imported = key
        return
    else:
        where = ("the PE array's multipliers are exact, DRUM-k or an imported circuit (rtl verify)"
                 if design in ("pe", "array") else "")
        names = "exact, K1..K4, drum<k>" + (", " + ", ".join(library.names()) if imported and library.names() else "")
        raise ValueError(f"unknown multiplier {name!r}" + (f" here ({where})" if where else "") +
                         f": valid names are {names}")
    args.k = k
    if design is None:
        args.design = "exact" if k is None else "drum"


def config_from_args(args: argparse.Namespace) -> MultiplierConfig:
    """The :class:`MultiplierConfig` the ``--multiplier/--design/--bits/--unsigned`` options describe (for
    ``--design pe|array`` also a library circuit, left in ``args.imported``)."""
    resolve_multiplier(args, imported=args.design in ("pe", "array"))
    return MultiplierConfig(design=args.design, bits=args.bits, k=args.k, signed=not args.unsigned)


def array_config_from_args(args: argparse.Namespace) -> ArrayConfig:
    """The :class:`ArrayConfig` of ``--design pe|array`` with the geometry options."""
    from axhw.rtl.imported import imported_config
    from axhw.rtl.pe import PEMultiplier, multiplier_config

    geometry = {name: getattr(args, name) for name in _GEOMETRY}
    cfg = config_from_args(args)
    name = getattr(args, "imported", None)
    mul: PEMultiplier = imported_config(name, cfg.bits, signed=True) if name else multiplier_config(cfg)
    return ArrayConfig(mul, dual=args.dual, **geometry)


def _fail(args: argparse.Namespace, exc: Exception) -> int:
    print(f"axhw rtl {args.rtl_command}: error: {exc}", file=sys.stderr)
    return 2


def main_generate(args: argparse.Namespace) -> int:
    """``axhw rtl generate``: write the files, print their paths; exit 2 on invalid input."""
    from axhw.rtl.pe import generate_pe
    from axhw.rtl.program import load_network, write_array

    try:
        cfg = config_from_args(args)
        if getattr(args, "network", None) is not None and cfg.design != "array":
            raise ValueError("--network only applies to --design array")
        if cfg.design == "array":
            qnet = load_network(args.network) if args.network is not None else None
            paths = write_array(array_config_from_args(args), args.out, qnet, input_shape=args.input_shape)
        elif cfg.design == "pe":
            paths = write_files(generate_pe(array_config_from_args(args)), args.out)
        else:
            paths = write(cfg, args.out)
    except (ValueError, GeneratedRTLError, FileNotFoundError) as exc:
        return _fail(args, exc)
    for path in paths:
        print(path)
    return 0


def main_simulators(args: argparse.Namespace) -> int:
    """``axhw rtl simulators``: one line per simulator; exit 1 when any is missing."""
    infos = available_simulators()
    for info in infos.values():
        state = f"{info.version} ({info.path})" if info.available else f"unavailable: {info.reason}"
        print(f"{info.name:10s} {state}")
    return 0 if all(i.available for i in infos.values()) else 1


def verifiable_designs() -> list[str]:
    """What ``rtl verify`` takes besides ``--multiplier``'s names (the old ``--design`` spelling): the generated
    multipliers and every imported circuit."""
    from axhw.arith import library
    return ["exact", "drum", *library.names()]


def _usable_simulators(requested: list[str] | None) -> list[str]:
    """The simulators to run: each one asked for must be usable (its reason names the package to install);
    without ``--sim``, every usable one, and at least one."""
    infos = available_simulators()
    if requested:
        missing = [infos[s] for s in dict.fromkeys(requested) if not infos[s].available]
        if missing:
            raise ValueError("; ".join(f"simulator {i.name} is unavailable: {i.reason}" for i in missing))
        return list(dict.fromkeys(requested))
    usable = [s for s in SIMULATORS if infos[s].available]
    if not usable:
        raise ValueError("no simulator is usable: " + "; ".join(f"{i.name}: {i.reason}" for i in infos.values()))
    return usable


def main_verify(args: argparse.Namespace) -> int:
    """``axhw rtl verify``: exhaustive for bits <= 8, random + corners above; exit 1 on any mismatch.

    An imported circuit (``--design NAME``) is re-simulated exhaustively against its stored table (and, if
    unsigned, its generated sign-magnitude wrapper against the signed model): :mod:`axhw.rtl.imported`.
    """
    from axhw.arith import library
    from axhw.rtl.verify import check

    try:
        resolve_multiplier(args, imported=True)
    except ValueError as exc:
        return _fail(args, exc)
    if args.design == "array" or getattr(args, "network", None) is not None:
        return main_verify_network(args)
    imported = args.design not in ("exact", "drum") and args.design in library.names()
    try:
        if imported:
            info = library.circuit_info(args.design)
            if args.bits is not None and args.bits != info.bits:
                raise ValueError(f"{args.design} is a {info.bits}-bit circuit: drop --bits or use --bits {info.bits}")
            if args.k is not None or args.unsigned:
                raise ValueError("--k and --unsigned do not apply to an imported circuit (its signedness is stored)")
        elif args.design not in ("exact", "drum"):
            raise ValueError(f"unknown design {args.design!r}: valid designs are {', '.join(verifiable_designs())}")
        else:
            cfg = MultiplierConfig(design=args.design, bits=8 if args.bits is None else args.bits, k=args.k,
                                   signed=not args.unsigned)
        sims = _usable_simulators(args.sim)
    except ValueError as exc:
        return _fail(args, exc)
    status = 0
    for sim in sims:
        if imported:
            from axhw.rtl.imported import verify_imported

            results = verify_imported(args.design, sim, build_root=args.build_root)
        else:
            results = [check(cfg, sim, build_root=args.build_root)]
        for result in results:
            print(result.describe())
            status |= 0 if result.ok else 1
    return status


def main_verify_network(args: argparse.Namespace) -> int:
    """``axhw rtl verify --design array --network CHECKPOINT``: a trained network on the generated array, every
    layer against ``forward_int``; exit 2 when it does not fit (one line naming what), 1 on any mismatch."""
    import json

    from axhw.common.io import atomic_write_text
    from axhw.rtl.netverify import run_array
    from axhw.rtl.pe import PEMultiplier, multiplier_config
    from axhw.rtl.program import NetworkDoesNotFit, compile_network, network_and_inputs
    from axhw.rtl.verify_all import format_layers

    try:
        if args.design != "array":
            raise ValueError("--network only applies to --design array")
        if args.network is None:
            raise ValueError("--design array needs --network CHECKPOINT (a trained network to run)")
        if args.unsigned:
            raise ValueError("the array runs signed networks: drop --unsigned")
        if args.samples < 1:
            raise ValueError(f"--samples {args.samples}: need at least 1")
        qnet, x = network_and_inputs(args.network, args.samples)
        first = qnet.layers[0]
        bits = first.act_fmt.bits if args.bits is None else args.bits
        name = getattr(args, "imported", None)
        mcfg: PEMultiplier
        if name is not None:  # a library circuit in every PE (its signed use: the wrapper for an unsigned one)
            from axhw.rtl.imported import imported_config

            mcfg = imported_config(name, bits, signed=True)
        else:
            mcfg = multiplier_config(MultiplierConfig("array", bits, args.k))
        acc = first.acc_fmt.bits
        acfg = ArrayConfig(mcfg, acc_bits=acc, bias_bits=acc, **{n: getattr(args, n) for n in _GEOMETRY})
        program = compile_network(acfg, qnet, input_shape=tuple(x.shape[1:]))
        sims = _usable_simulators(args.sim)
    except NetworkDoesNotFit as exc:
        print(f"axhw rtl verify: {args.network} does not fit the array: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as exc:
        return _fail(args, exc)
    status, report = 0, []
    for sim in sims:
        r = run_array(acfg, sim, qnet, x, network=str(args.network),
                      program=program, build_root=args.build_root, tag=f"verify_{args.network.stem}", vcd=args.vcd)
        print(r.describe())
        print(f"outputs compared: {r.vectors}, mismatches: {r.total_mismatches} (per step {r.mismatches}, classes "
              f"{r.class_mismatches}); {program.cycles_per_inference} cycles per inference; simulation "
              f"{r.seconds:.1f} s, build {r.build_seconds:.1f} s")
        if r.layers:
            print(format_layers(r.layers, f"{acfg.config_id}, {acfg.pes} PEs"))
        report.append({"simulator": sim, "config": acfg.config_id, "network": str(args.network), "ok": r.ok,
                       "samples": r.samples, "outputs": r.vectors, "mismatches": r.total_mismatches,
                       "per_step_mismatches": r.mismatches, "first_bad": r.first_bad, "error": r.error,
                       "cycles_per_inference": program.cycles_per_inference, "seconds": round(r.seconds, 2),
                       "build_seconds": round(r.build_seconds, 2), "layers": r.layers})
        status |= 0 if r.ok else 1
    if args.report is not None:
        print(f"report: {atomic_write_text(json.dumps(report, indent=1) + chr(10), args.report)}")
    return status


def main_verify_all(args: argparse.Namespace) -> int:
    """``axhw rtl verify-all``: see :mod:`axhw.rtl.verify_all`; exit 1 on any mismatch."""
    from axhw.rtl.verify_all import run

    return run(args)
