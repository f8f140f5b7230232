"""A combinational multiplier as a list of two-input gates: the definition of a wide imported circuit.

Why: a circuit wider than 8 bits cannot be tabulated (a 16 x 16 table has 2**32 entries), so the circuit
itself, flattened by Yosys into simple gates (:func:`axhw.rtl.bitslice.compile_circuit`), is the model. This
module is its one integer reference definition: :meth:`GateNetlist.evaluate` computes every gate over
torch bool tensors, one element per operand pair, in the netlist's topological order. The bit-sliced C
evaluator (:mod:`axhw.arith.kernels.bitslice`) computes the same gates 64 or more pairs per machine word and
is tested equal to it; the import checks both against a simulation of the original Verilog
(docs/hardware-models.md, "Wide circuits").

Signals are numbered: 0 is constant 0, 1 constant 1, ``2 .. 2 + bits - 1`` the bits of operand ``a`` (LSB
first), the next ``bits`` those of ``b``, then one per gate in order. Gate operations are Yosys's fine-grained
cells (``$_AND_`` ...): ``Y = f(A, B)``, and ``MUX`` ``Y = S ? B : A`` with its inputs ``(A, B, S)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["ARITY", "OPS", "GateNetlist", "GateNetlistError"]

#: Each operation's inputs (Yosys's simple cells; ANDNOT is ``A & ~B``, ORNOT ``A | ~B``).
ARITY: dict[str, int] = {"BUF": 1, "NOT": 1, "AND": 2, "NAND": 2, "OR": 2, "NOR": 2, "XOR": 2, "XNOR": 2,
                         "ANDNOT": 2, "ORNOT": 2, "MUX": 3}
OPS = tuple(ARITY)


class GateNetlistError(ValueError):
    """A gate list that is not a well-formed combinational netlist (one line)."""


@dataclass(frozen=True)
class GateNetlist:
    """A ``bits`` x ``bits`` -> ``2 * bits`` combinational multiplier as gates (see the module docstring).

    Attributes:
        bits: operand width.
        gates: ``(op, inputs)`` in topological order; gate ``i`` drives signal ``2 + 2 * bits + i``.
        outputs: the signal of each product bit, LSB first (``2 * bits`` of them; 0/1 for constant bits).
    """

    bits: int
    gates: tuple[tuple[str, tuple[int, ...]], ...]
    outputs: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.bits, int) or not 1 <= self.bits <= 32:
            raise GateNetlistError(f"bits={self.bits!r} out of range: valid range is [1, 32]")
        if len(self.outputs) != 2 * self.bits:
            raise GateNetlistError(f"a {self.bits}-bit multiplier has {2 * self.bits} product bits, "
                                   f"got {len(self.outputs)}")
        first = self.first_gate_signal
        for i, (op, ins) in enumerate(self.gates):
            if op not in ARITY:
                raise GateNetlistError(f"gate {i}: unknown operation {op!r} (known: {', '.join(OPS)})")
            if len(ins) != ARITY[op]:
                raise GateNetlistError(f"gate {i} ({op}) has {len(ins)} inputs, needs {ARITY[op]}")
            for s in ins:
                if not 0 <= s < first + i:  # only constants, operands and earlier gates: no loops
                    raise GateNetlistError(f"gate {i} ({op}) reads signal {s}, which is not driven before it "
                                           "(the gates must be in topological order)")
        for b, s in enumerate(self.outputs):
            if not 0 <= s < first + len(self.gates):
                raise GateNetlistError(f"product bit {b} is signal {s}, which no gate drives")

    @property
    def first_gate_signal(self) -> int:
        """The signal number of gate 0's output."""
        return 2 + 2 * self.bits

    def a_signal(self, i: int) -> int:
        """The signal of bit ``i`` of operand ``a``."""
        return 2 + i

    def b_signal(self, i: int) -> int:
        """The signal of bit ``i`` of operand ``b``."""
        return 2 + self.bits + i

    def counts(self) -> dict[str, int]:
        """How many gates of each operation."""
        out: dict[str, int] = {}
        for op, _ in self.gates:
            out[op] = out.get(op, 0) + 1
        return out

    # ------------------------------------------------------------------------------------------ reference
    def evaluate(self, aw: torch.Tensor, bw: torch.Tensor) -> torch.Tensor:
        """The product *words* (``2 * bits``-bit, in ``[0, 4**bits)``) of operand words ``aw``, ``bw`` (same
        shape, in ``[0, 2**bits)``), gate by gate: the reference the bit-sliced kernel is tested against."""
        aw, bw = torch.broadcast_tensors(aw.to(torch.int64), bw.to(torch.int64))
        shape = aw.shape
        aw, bw = aw.reshape(-1), bw.reshape(-1)
        zero = torch.zeros(aw.shape, dtype=torch.bool)
        sig: list[torch.Tensor] = [zero, ~zero]
        sig += [((aw >> i) & 1).bool() for i in range(self.bits)]
        sig += [((bw >> i) & 1).bool() for i in range(self.bits)]
        for op, ins in self.gates:
            x = [sig[s] for s in ins]
            sig.append(_apply(op, x))
        out = torch.zeros(aw.shape, dtype=torch.int64)
        for b, s in enumerate(self.outputs):
            out |= sig[s].to(torch.int64) << b
        return out.reshape(shape)

    # ------------------------------------------------------------------------------------------ storage
    def as_dict(self) -> dict[str, Any]:
        return {"bits": self.bits, "gates": [[op, *ins] for op, ins in self.gates], "outputs": list(self.outputs)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GateNetlist:
        try:
            gates = tuple((str(g[0]), tuple(int(s) for s in g[1:])) for g in data["gates"])
            return cls(int(data["bits"]), gates, tuple(int(s) for s in data["outputs"]))
        except (KeyError, TypeError, IndexError) as exc:
            raise GateNetlistError(f"not a gate netlist ({exc!r})") from exc


def _apply(op: str, x: Sequence[torch.Tensor]) -> torch.Tensor:
    if op == "BUF":
        return x[0]
    if op == "NOT":
        return ~x[0]
    if op == "AND":
        return x[0] & x[1]
    if op == "NAND":
        return ~(x[0] & x[1])
    if op == "OR":
        return x[0] | x[1]
    if op == "NOR":
        return ~(x[0] | x[1])
    if op == "XOR":
        return x[0] ^ x[1]
    if op == "XNOR":
        return ~(x[0] ^ x[1])
    if op == "ANDNOT":
        return x[0] & ~x[1]
    if op == "ORNOT":
        return x[0] | ~x[1]
    # MUX: inputs (A, B, S), Y = S ? B : A
    return torch.where(x[2], x[1], x[0])
