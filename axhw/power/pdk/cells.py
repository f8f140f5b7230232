"""The cells a library is built from: pins, functions and kind, written here from each cell's documented
behaviour (the sky130_fd_sc_hd data sheets); :mod:`.characterize` checks every combinational function against
the transistor netlist before it measures anything.

Issue 29 names the set the synthesis flow maps to: inverters and buffers, NAND/NOR 2-3, AND/OR 2, XOR/XNOR 2,
AOI/OAI 21, MUX2, full and half adders, a D flip-flop, a latch and an integrated clock gate for clock gating,
and tie cells.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product
from typing import Literal

from axhw.power.pdk.functions import Expr, evaluate, parse

__all__ = ["SKY130_HD", "Arc", "CellSpec", "combinational_arcs", "spec_by_name"]

Kind = Literal["comb", "ff", "latch", "icg", "tie"]


@dataclass(frozen=True)
class CellSpec:
    """One cell.

    Attributes:
        name: the cell's full name (``sky130_fd_sc_hd__nand2_1``), also its SPICE subcircuit.
        family: its folder in the PDK (``nand2``).
        kind: ``comb`` (outputs are functions of inputs), ``ff`` (rising-edge D flip-flop), ``latch``
            (transparent while ``GATE`` is high), ``icg`` (latch-based integrated clock gate), ``tie``.
        inputs: input pins, in the order truth tables enumerate them.
        outputs: output pin -> Liberty function of the inputs (for ``ff``/``latch`` the state ``IQ``; for ``icg``
            the gated clock).
        clock: the clock (``ff``, ``icg``) or enable (``latch``) pin.
        drive: the drive strength suffix (``_1`` -> 1); load grids scale with it.
    """

    name: str
    family: str
    kind: Kind
    inputs: tuple[str, ...]
    outputs: tuple[tuple[str, str], ...]
    clock: str | None = None
    drive: int = 1
    parsed: dict[str, Expr] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parsed", {pin: parse(fn) for pin, fn in self.outputs})

    @property
    def output_pins(self) -> tuple[str, ...]:
        return tuple(pin for pin, _ in self.outputs)

    def value(self, out: str, inputs: dict[str, int]) -> bool:
        """The combinational output ``out`` for the input values ``inputs``."""
        return evaluate(self.parsed[out], inputs)


@dataclass(frozen=True)
class Arc:
    """A combinational timing arc: ``pin`` switching moves ``out``, with the other inputs at ``side``.

    ``positive`` says whether ``out`` follows ``pin`` (rise -> rise) under this side assignment.
    """

    pin: str
    out: str
    side: tuple[tuple[str, int], ...]
    positive: bool


def combinational_arcs(cell: CellSpec) -> list[Arc]:
    """Every (input, output, sensitizing side assignment) of a combinational cell.

    >>> [(a.pin, a.side, a.positive) for a in combinational_arcs(spec_by_name("sky130_fd_sc_hd__nand2_1"))]
    [('A', (('B', 1),), False), ('B', (('A', 1),), False)]
    """
    arcs = []
    for out in cell.output_pins:
        for pin in cell.inputs:
            others = [p for p in cell.inputs if p != pin]
            for bits in product((0, 1), repeat=len(others)):
                side = dict(zip(others, bits, strict=True))
                low, high = cell.value(out, {**side, pin: 0}), cell.value(out, {**side, pin: 1})
                if low != high:
                    arcs.append(Arc(pin, out, tuple(side.items()), high))
    return arcs


def _comb(base: str, inputs: str, outputs: dict[str, str], drive: int = 1) -> CellSpec:
    return CellSpec(f"sky130_fd_sc_hd__{base}_{drive}", base, "comb", tuple(inputs.split()),
                    tuple(outputs.items()), drive=drive)


#: sky130_fd_sc_hd, the cells issue 29 names (functions from the cells' data sheets, checked in SPICE).
SKY130_HD: tuple[CellSpec, ...] = (
    _comb("inv", "A", {"Y": "!A"}),
    _comb("inv", "A", {"Y": "!A"}, drive=2),
    _comb("buf", "A", {"X": "A"}),
    _comb("buf", "A", {"X": "A"}, drive=2),
    _comb("nand2", "A B", {"Y": "!(A&B)"}),
    _comb("nand3", "A B C", {"Y": "!(A&B&C)"}),
    _comb("nor2", "A B", {"Y": "!(A|B)"}),
    _comb("nor3", "A B C", {"Y": "!(A|B|C)"}),
    _comb("and2", "A B", {"X": "A&B"}),
    _comb("or2", "A B", {"X": "A|B"}),
    _comb("xor2", "A B", {"X": "A^B"}),
    _comb("xnor2", "A B", {"Y": "!(A^B)"}),
    _comb("a21oi", "A1 A2 B1", {"Y": "!((A1&A2)|B1)"}),
    _comb("o21ai", "A1 A2 B1", {"Y": "!((A1|A2)&B1)"}),
    _comb("mux2", "A0 A1 S", {"X": "(A0&!S)|(A1&S)"}),
    _comb("ha", "A B", {"COUT": "A&B", "SUM": "A^B"}),
    _comb("fa", "A B CIN", {"COUT": "(A&B)|(A&CIN)|(B&CIN)", "SUM": "A^B^CIN"}),
    CellSpec("sky130_fd_sc_hd__dfxtp_1", "dfxtp", "ff", ("CLK", "D"), (("Q", "IQ"),), clock="CLK"),
    CellSpec("sky130_fd_sc_hd__dlxtp_1", "dlxtp", "latch", ("D", "GATE"), (("Q", "IQ"),), clock="GATE"),
    CellSpec("sky130_fd_sc_hd__dlclkp_1", "dlclkp", "icg", ("CLK", "GATE"), (("GCLK", "CLK&IQ"),), clock="CLK"),
    CellSpec("sky130_fd_sc_hd__conb_1", "conb", "tie", (), (("HI", "1"), ("LO", "0"))),
)


def spec_by_name(name: str) -> CellSpec:
    """The cell called ``name`` (full name or ``family_drive``), or ``KeyError`` listing the known ones."""
    for cell in SKY130_HD:
        if name in (cell.name, cell.name.removeprefix("sky130_fd_sc_hd__")):
            return cell
    raise KeyError(f"unknown cell {name!r}: known cells are "
                   + ", ".join(c.name.removeprefix("sky130_fd_sc_hd__") for c in SKY130_HD))
