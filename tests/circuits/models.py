"""Python models of the test circuits in this folder (written independently of their Verilog)."""

from __future__ import annotations


def bam8u(a: int, b: int, hbl: int = 1, vbl: int = 6) -> int:
    """Broken array: partial products a_i b_j with j >= hbl and i + j >= vbl only."""
    return sum(1 << (i + j) for j in range(hbl, 8) for i in range(8) if i + j >= vbl and (a >> i) & 1 and (b >> j) & 1)


def trunc8u(a: int, b: int, t: int = 5) -> int:
    """Truncated array: partial products of weight i + j >= t only."""
    return sum(1 << (i + j) for j in range(8) for i in range(8) if i + j >= t and (a >> i) & 1 and (b >> j) & 1)


def rtrunc8s(a: int, b: int) -> int:
    """Signed product with the 4 low bits cleared: floor(a * b / 16) * 16."""
    return (a * b) >> 4 << 4


def sign_magnitude(core, a: int, b: int, bits: int = 8) -> int:
    """An unsigned core used for signed operands the DRUM way (independent re-statement for the tests)."""
    p = core(abs(a), abs(b))
    r = -p if (a < 0) != (b < 0) else p
    return max(-(1 << (2 * bits - 1)), min((1 << (2 * bits - 1)) - 1, r))


def rtrunc12s(a: int, b: int) -> int:
    """Signed 12-bit product with the 6 low bits cleared: floor(a * b / 64) * 64."""
    return (a * b) >> 6 << 6


def bam16u(a: int, b: int, hbl: int = 2, vbl: int = 12) -> int:
    """16-bit broken array: partial products a_i b_j with j >= hbl and i + j >= vbl only."""
    return sum(1 << (i + j) for j in range(hbl, 16) for i in range(16) if i + j >= vbl and (a >> i) & 1 and (b >> j) & 1)
