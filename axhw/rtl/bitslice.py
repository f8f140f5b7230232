"""Compile a user's combinational Verilog multiplier into a :class:`~axhw.arith.gates.GateNetlist` with Yosys.

Why: a circuit wider than 8 bits has no exhaustive table (2**32 entries at 16 bits), so its model is the
circuit itself. Yosys reads the sources, elaborates ``top``, flattens the hierarchy, lowers processes and
word-level cells to single-bit gates (``techmap``) and lets ABC re-map them onto its simple two-input gate
set plus MUX (``abc -g``: ABC keeps the combinational function; it only changes the gates, and fewer gates make
the bit-sliced evaluator faster). The JSON netlist is then read into gates in topological order.

Refused, in one line each (:class:`~axhw.rtl.imported.CircuitImportError`): sequential cells (flip-flops,
latches: the evaluator has no state), combinational loops (no topological order), undriven or ``x``/``z``
product bits, ports of the wrong width, and anything Yosys cannot read.

The compiled netlist is not trusted on its own: the import checks it against a simulation of the original
Verilog (:func:`axhw.rtl.wide_import.verify_netlist`), and against the exhaustive table where one exists.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from axhw.arith.netlist import GateNetlist

__all__ = ["YOSYS_CELLS", "compile_circuit", "gates_against_table", "netlist_from_yosys_json"]

#: Yosys's fine-grained combinational cells and the gate each becomes, with the order of its inputs.
YOSYS_CELLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "$_BUF_": ("BUF", ("A",)), "$_NOT_": ("NOT", ("A",)),
    "$_AND_": ("AND", ("A", "B")), "$_NAND_": ("NAND", ("A", "B")), "$_OR_": ("OR", ("A", "B")),
    "$_NOR_": ("NOR", ("A", "B")), "$_XOR_": ("XOR", ("A", "B")), "$_XNOR_": ("XNOR", ("A", "B")),
    "$_ANDNOT_": ("ANDNOT", ("A", "B")), "$_ORNOT_": ("ORNOT", ("A", "B")), "$_MUX_": ("MUX", ("A", "B", "S")),
}
#: ABC's target gate set (``abc -g``): every one of them is in :data:`YOSYS_CELLS`.
ABC_GATES = "AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX"
_SEQUENTIAL = ("$_DFF", "$_SDFF", "$_DFFE", "$_SDFFE", "$_SDFFCE", "$_ALDFF", "$_DLATCH", "$_SR", "$_FF_",
               "$dff", "$adff", "$dlatch", "$sr", "$mem")


def _error(msg: str) -> Exception:
    from axhw.rtl.import_steps import CircuitImportError

    return CircuitImportError(msg)


def netlist_from_yosys_json(data: dict[str, Any], top: str, bits: int, ports: dict[str, str]) -> GateNetlist:
    """The :class:`GateNetlist` of module ``top`` in a Yosys ``write_json`` netlist of single-bit gates,
    with ``ports`` mapping ``a``/``b``/``p`` to the module's port names."""
    try:
        mod = data["modules"][top]
    except KeyError:
        raise _error(f"module {top!r} is not in the compiled netlist") from None
    mports = mod.get("ports", {})
    bitsof: dict[str, list[Any]] = {}
    for role, width in (("a", bits), ("b", bits), ("p", 2 * bits)):
        name = ports[role]
        if name not in mports:
            raise _error(f"module {top!r} has no port {name!r} after synthesis")
        pbits = mports[name]["bits"]
        if len(pbits) != width:
            raise _error(f"port {name!r} of {top!r} is {len(pbits)} bits wide, a {bits}-bit multiplier needs {width}")
        bitsof[role] = pbits
    # signal numbers: constants, then a's bits, then b's bits, then the gates
    sig: dict[Any, int] = {"0": 0, "1": 1}
    for i, b in enumerate(bitsof["a"]):
        sig[b] = 2 + i
    for i, b in enumerate(bitsof["b"]):
        if b in sig:
            raise _error(f"operands {ports['a']!r} and {ports['b']!r} share a bit after synthesis")
        sig[b] = 2 + bits + i
    cells = mod.get("cells", {})
    seq = sorted({c["type"] for c in cells.values() if c["type"].startswith(_SEQUENTIAL)})
    if seq:
        n = sum(1 for c in cells.values() if c["type"] in seq)
        raise _error(f"{top!r} has {n} sequential cell(s) ({', '.join(seq)}: flip-flops or latches): the bit-sliced "
                     "evaluator takes combinational multipliers only (p a function of a and b alone)")
    other = sorted({c["type"] for c in cells.values() if c["type"] not in YOSYS_CELLS})
    if other:
        raise _error(f"{top!r} compiles to cells the bit-sliced evaluator does not know ({', '.join(other[:5])}): "
                     "instantiate only modules whose sources are given")
    # gates: output bit -> (op, input bits); ordered topologically (Kahn) from the operands
    pending: dict[Any, tuple[str, list[Any]]] = {}
    for cname, c in cells.items():
        op, pins = YOSYS_CELLS[c["type"]]
        conns = c["connections"]
        ins = [conns[p][0] for p in pins]
        y = conns["Y"][0]
        for b in ins:
            if b in ("x", "z"):
                raise _error(f"cell {cname} of {top!r} reads an undriven ({b}) value")
        pending[y] = (op, ins)
    gates: list[tuple[str, tuple[int, ...]]] = []
    first = 2 + 2 * bits
    waiting: dict[Any, list[Any]] = {}
    missing: dict[Any, int] = {}
    ready: list[Any] = []
    for y, (_, ins) in pending.items():
        need = {b for b in ins if b not in sig}
        for b in need:
            if b not in pending:
                raise _error(f"a gate of {top!r} reads a signal no gate or input drives (an undriven wire)")
            waiting.setdefault(b, []).append(y)
        missing[y] = len(need)
        if not need:
            ready.append(y)
    while ready:
        y = ready.pop()
        op, ins = pending[y]
        sig[y] = first + len(gates)
        gates.append((op, tuple(sig[b] for b in ins)))
        for z in waiting.get(y, ()):
            missing[z] -= 1
            if missing[z] == 0:
                ready.append(z)
    if len(gates) != len(pending):
        raise _error(f"{top!r} has a combinational loop ({len(pending) - len(gates)} gates on or behind it): a "
                     "multiplier's product must be a loop-free function of a and b")
    outputs = []
    for i, b in enumerate(bitsof["p"]):
        if b in ("x", "z") or b not in sig:
            raise _error(f"product bit {i} ({ports['p']}[{i}]) of {top!r} is undriven: drive every output bit")
        outputs.append(sig[b])
    return GateNetlist(bits, tuple(gates), tuple(outputs))


def compile_circuit(sources: Sequence[tuple[str, bytes]], top: str, bits: int, ports: dict[str, str],
                    workdir: Path) -> GateNetlist:
    """Compile ``top`` (in ``sources``: ``(file name, text)``) into gates with Yosys in ``workdir``.

    Raises:
        CircuitImportError: no Yosys, Yosys failed, or the circuit is refused (see the module docstring).
    """
    from axhw.rtl.import_steps import exec_step, first_error

    exe = shutil.which("yosys")
    if exe is None:
        raise _error("wide circuits (more than 8 bits) are compiled with Yosys, which is not installed: "
                     "install it (apt install yosys) or import an 8-bit circuit")
    names = []
    for fname, text in sources:
        path = workdir / Path(fname).name
        path.write_bytes(text)
        names.append(path.name)
    quoted = " ".join(f'"{n}"' for n in names)
    script = workdir / "bitslice.ys"
    script.write_text(f"read_verilog {quoted}\nhierarchy -check -top {top}\nproc\nflatten\nopt -full\ntechmap\nopt\n"
                      f"abc -g {ABC_GATES}\nopt_clean -purge\n"
                      "write_json bitslice.json\n")
    rc, log = exec_step([exe, "-q", "-s", script.name], workdir, "yosys (compiling the circuit into gates)")
    if rc != 0:
        raise _error(f"yosys could not compile {top!r} into gates: {first_error(log)}")
    data = json.loads((workdir / "bitslice.json").read_text())
    return netlist_from_yosys_json(data, top, bits, ports)


def gates_against_table(sources: Sequence[tuple[str, bytes]], top: str, bits: int, signed: bool,
                        ports: dict[str, str], table: Any, workdir: Path) -> dict[str, Any]:
    """Compile an imported 8-bit circuit into gates and compare them with its simulated table on every pair.

    Why at every 8-bit import: it keeps the gate compiler, which wide circuits depend on, checked against an
    exhaustive ground truth on every circuit users bring (the table comes from Icarus or Verilator, not from
    Yosys). Returns ``{"gates", "pairs", "mismatches"}``, or ``{"gates": None, "reason"}`` where Yosys is missing
    or cannot compile the circuit (its Verilog frontend is narrower than the simulators').
    """
    import torch

    from axhw.arith.gates import GateMultiplier

    try:
        netlist = compile_circuit(sources, top, bits, ports, workdir)
    except ValueError as exc:  # CircuitImportError: a circuit the simulators accept but Yosys does not: no check
        return {"gates": None, "reason": str(exc).splitlines()[0][:200]}
    side = 1 << bits
    words = torch.arange(side, dtype=torch.int64)
    got = GateMultiplier(netlist, signed=signed, core_signed=signed).core_words(words[:, None], words[None, :])
    want = torch.as_tensor(table).to(torch.int64) % (1 << (2 * bits))
    return {"gates": len(netlist.gates), "pairs": side * side, "mismatches": int((got != want).sum())}
