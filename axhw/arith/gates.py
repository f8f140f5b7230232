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

from axhw.arith.multipliers import Multiplier
from axhw.common import taken

__all__ = ["ARITY", "OPS", "GateMultiplier", "GateNetlist", "GateNetlistError"]

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


class GateMultiplier(Multiplier):
    """A multiplier defined by its gates (:class:`GateNetlist`): any width up to 32 bits, no table.

    ``core_signed`` is how the circuit reads its own words; ``signed`` the operands it is used with. A signed
    use of an unsigned core goes through the sign-magnitude wrapper, with the semantics of
    :func:`axhw.arith.library.sign_magnitude_table` (magnitudes into the core, the sign applied after, the
    result saturated to the signed ``2 * bits``-bit word), as the generated ``rtl/sm_wrap.v.j2`` does.

    :meth:`__call__` and :meth:`matmul` run the bit-sliced kernel (:mod:`axhw.arith.kernels.bitslice`) when it
    builds, else :meth:`GateNetlist.evaluate`; both are tested equal, and equal to the exhaustive table of
    every 8-bit circuit.
    """

    #: Whether the compiled kernel is used when available (False forces the torch reference).
    use_kernel = True
    #: Products per chunk of the torch reference's matmul.
    CHUNK_PRODUCTS = 1 << 16

    def __init__(self, netlist: GateNetlist, signed: bool = True, core_signed: bool = True,
                 name: str = "gates") -> None:
        if core_signed and not signed:
            raise ValueError(f"circuit {name!r} is signed: unsigned operands need an unsigned circuit")
        super().__init__(netlist.bits, signed)
        self.netlist = netlist
        self.core_signed = core_signed
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def wrapped(self) -> bool:
        """Whether products go through the sign-magnitude wrapper (unsigned core, signed use)."""
        return self.signed and not self.core_signed

    def _evaluator(self) -> Any:
        if not self.use_kernel:
            return None
        from axhw.arith.kernels import bitslice

        return bitslice.evaluator(self.netlist)

    @property
    def backend(self) -> str:
        """``"c-bitslice"`` (compiled kernel) or ``"torch"`` (the reference)."""
        return "c-bitslice" if self._evaluator() is not None else "torch"

    def core_words(self, aw: torch.Tensor, bw: torch.Tensor) -> torch.Tensor:
        """The circuit's own product words for operand words ``aw``, ``bw``."""
        ev = self._evaluator()
        if ev is not None:
            taken.count("arith.bitslice_kernel")
            return ev.products(aw, bw)
        return self.netlist.evaluate(aw, bw)

    def _signed_value(self, words: torch.Tensor, width: int) -> torch.Tensor:
        return words - ((words >> (width - 1)) << width)

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a = self.check_operands(a, "operand a")
        b = self.check_operands(b, "operand b")
        n, pb = self.bits, 2 * self.bits
        if self.wrapped:
            core = self.core_words(a.abs(), b.abs())  # |-2**(n-1)| fits n unsigned bits
            res = torch.where((a < 0) ^ (b < 0), -core, core)
            return res.clamp(-(1 << (pb - 1)), (1 << (pb - 1)) - 1)
        mask = (1 << n) - 1
        words = self.core_words(a & mask, b & mask)
        return self._signed_value(words, pb) if self.signed else words

    def acc_bits(self, k: int) -> int:
        """The accumulator width a sum of ``k`` products needs (sign bit included)."""
        return 2 * self.bits + max(1, k).bit_length() + 1

    def matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"matmul needs (M, K) @ (K, N) matrices, got {tuple(a.shape)} @ {tuple(b.shape)}")
        k = a.shape[1]
        acc = self.acc_bits(k)
        if acc > 64:
            raise OverflowError(f"matmul of K={k} products of a {self.bits}-bit multiplier may exceed int64")
        a = self.check_operands(a, "operand a")
        b = self.check_operands(b, "operand b")
        ev = self._evaluator()
        if ev is None:
            return self._matmul_reference(a, b)
        taken.count("arith.bitslice_kernel")
        if self.wrapped:
            return ev.matmul(a.abs(), b.abs(), 2, acc, (a < 0).to(torch.int64), (b < 0).to(torch.int64))
        mask = (1 << self.bits) - 1
        return ev.matmul(a & mask, b & mask, 1 if self.signed else 0, acc)

    def _matmul_reference(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The torch path: elementwise products through :meth:`GateNetlist.evaluate`, summed in chunks."""
        m, k = a.shape
        n = b.shape[1]
        out = torch.zeros(m, n, dtype=torch.int64)
        rows = max(1, self.CHUNK_PRODUCTS // max(1, k * n))
        for r0 in range(0, m, rows):
            out[r0:r0 + rows] = self(a[r0:r0 + rows, :, None], b[None, :, :]).sum(dim=1)
        return out

    def __repr__(self) -> str:
        use = " (sign-magnitude wrapped)" if self.wrapped else ""
        return f"GateMultiplier(name={self._name!r}, bits={self.bits}, signed={self.signed}{use})"
