"""A multiplier defined by its gates (:class:`GateMultiplier`): the model of a wide imported circuit, evaluated
by the bit-sliced kernel (:mod:`axhw.arith.kernels.bitslice`) or, without a compiler, by the gate netlist's
torch reference (:mod:`axhw.arith.netlist`, the one definition both are tested against).
"""

from __future__ import annotations

from typing import Any

import torch

from axhw.arith.multipliers import Multiplier
from axhw.arith.netlist import ARITY, OPS, GateNetlist, GateNetlistError
from axhw.common import taken

__all__ = ["ARITY", "OPS", "GateMultiplier", "GateNetlist", "GateNetlistError", "signed_values"]


def signed_values(words: torch.Tensor, width: int) -> torch.Tensor:
    """``width``-bit two's-complement words (in ``[0, 2**width)``) as signed values."""
    return words - ((words >> (width - 1)) << width)


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
        self._kernel: tuple[Any] | None = None  # (evaluator or None), looked up once: the lookup hashes the C source

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
        if self._kernel is None:  # the process-wide lookup generates and hashes the netlist's C (~1.5 ms): once
            from axhw.arith.kernels import bitslice

            self._kernel = (bitslice.evaluator(self.netlist),)
        return self._kernel[0]

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
        return signed_values(words, pb) if self.signed else words

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
