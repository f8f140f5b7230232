"""Exact integer matrix products on top of floating-point GEMM.

Why: approximate-multiplier matmuls (DRUM is separable, see :mod:`axhw.arith.multipliers`) reduce to an ordinary
product of integer matrices, and BLAS float64 GEMM is ~10-100x faster than torch's int64 matmul on CPU.
float64 GEMM is *exact* as long as every partial sum stays below 2**53: every intermediate the BLAS kernel
can form (any subset sum of products, with or without FMA) is an integer bounded by
``K * max|a| * max|b|``, so that single bound proves exactness for any summation order.

When the bound fails we split each operand into 16-bit limbs (``x = hi * 2**16 + lo``) so that each of the
four limb GEMMs satisfies the bound again, then recombine in int64. int64 arithmetic wraps modulo 2**64,
so the recombination is exact whenever the *final* result fits in int64, which we check separately from
an upper bound. Only when even limbs cannot be made exact (enormous ``K``) do we fall back to torch's
native int64 matmul.
"""

from __future__ import annotations

import torch

from axhw.common import taken

__all__ = ["FLOAT32_EXACT_LIMIT", "FLOAT64_EXACT_LIMIT", "INT64_SAFE_LIMIT", "exact_chunks", "exact_float_dtype",
           "exact_int_matmul"]

#: Largest magnitude below which every float64 integer is exact.
FLOAT64_EXACT_LIMIT = 1 << 53
#: Largest magnitude below which every float32 integer is exact.
FLOAT32_EXACT_LIMIT = 1 << 24
#: Chunked float32 GEMM: only with chunks of at least this many terms, and at most this many chunks
#: (beyond, one float64 GEMM is as fast as the chunks plus their int64 sums).
_MIN_CHUNK = 64
_MAX_CHUNKS = 8
#: Results are refused beyond this magnitude; leaves a margin for the float64 bound estimate.
INT64_SAFE_LIMIT = 1 << 62
_LIMB = 16


def _check_result_fits(a: torch.Tensor, b: torch.Tensor, k: int, bound_a: int, bound_b: int) -> None:
    if k * bound_a * bound_b < INT64_SAFE_LIMIT:
        return
    # Data-dependent bound: |A| @ |B| in float64 (relative error <= k * 2**-53, far below the margin).
    est = torch.mm(a.abs().to(torch.float64), b.abs().to(torch.float64))
    if est.numel() and float(est.max()) >= INT64_SAFE_LIMIT:
        raise OverflowError(
            f"matmul result may exceed the int64 range (|sum| up to {float(est.max()):.3g} >= 2**62); "
            "use narrower operands or split the reduction dimension"
        )


def exact_float_dtype(bound: int) -> torch.dtype | None:
    """The cheapest float dtype whose GEMMs/convolutions are exact for integer sums bounded by ``bound``.

    float32 (2x the BLAS throughput, half the memory) when ``bound < 2**24`` *and* torch is allowed no
    reduced-precision float32 matmul (``torch.get_float32_matmul_precision() == "highest"``: "high"/"medium"
    let oneDNN use TF32/bf16 internally, which would break the argument); float64 below 2**53; else None.
    """
    if bound < FLOAT32_EXACT_LIMIT and torch.get_float32_matmul_precision() == "highest":
        return torch.float32
    if bound < FLOAT64_EXACT_LIMIT:
        return torch.float64
    return None


def exact_chunks(units: int, unit: int, bound: int) -> tuple[list[tuple[int, int]], torch.dtype] | None:
    """Ranges over ``units`` reduction units of ``unit`` terms each (linear: 1; conv: one input channel,
    ``kh * kw`` terms) and the GEMM dtype that make the float GEMM exact: every partial sum of a range is
    bounded by ``terms * bound`` (``bound``: the largest product magnitude, :mod:`axhw.arith.intgemm`'s
    argument). None: no float path is exact."""
    k = units * unit
    fp32 = torch.get_float32_matmul_precision() == "highest"
    if fp32 and k * bound < FLOAT32_EXACT_LIMIT:
        return [(0, units)], torch.float32
    per = (FLOAT32_EXACT_LIMIT - 1) // (max(1, bound) * unit)  # units per exact float32 chunk
    if fp32 and per * unit >= _MIN_CHUNK and -(-units // per) <= _MAX_CHUNKS:
        n = -(-units // per)
        size = -(-units // n)  # balanced chunks, each at most `per` units
        return [(i, min(units, i + size)) for i in range(0, units, size)], torch.float32
    if k * bound < FLOAT64_EXACT_LIMIT:
        return [(0, units)], torch.float64
    return None


def exact_int_matmul(a: torch.Tensor, b: torch.Tensor, bound_a: int, bound_b: int) -> torch.Tensor:
    """Exact ``a @ b`` for integer-valued matrices, returned as int64.

    Args:
        a: ``(M, K)`` int64 or float64 tensor holding integers with ``|a| <= bound_a``.
        b: ``(K, N)`` int64 or float64 tensor holding integers with ``|b| <= bound_b``.
        bound_a, bound_b: proven magnitude bounds (from the number formats, not from the data), used to
            choose a path that is exact by construction.

    Raises:
        OverflowError: if the result can exceed the int64 range.

    >>> a = torch.tensor([[3, -2]]); b = torch.tensor([[5], [7]])
    >>> exact_int_matmul(a, b, 3, 7).tolist()
    [[1]]
    """
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul needs (M, K) @ (K, N) matrices, got {tuple(a.shape)} @ {tuple(b.shape)}")
    k = a.shape[1]
    _check_result_fits(a, b, k, bound_a, bound_b)
    if k == 0:
        return torch.zeros(a.shape[0], b.shape[1], dtype=torch.int64)
    dtype = exact_float_dtype(k * bound_a * bound_b)
    if dtype == torch.float64 and exact_float_dtype(bound_a * bound_b) == torch.float32:
        # Split the reduction into chunks that are each exact in float32 (e.g. DRUM's |T| <= 160 at 8 bits
        # over K = 784: 2 chunks): the same flops at float32 speed, partial results summed in int64.
        chunk = (FLOAT32_EXACT_LIMIT - 1) // (bound_a * bound_b)
        if chunk >= _MIN_CHUNK and -(-k // chunk) <= _MAX_CHUNKS:
            a32, b32 = a.to(torch.float32), b.to(torch.float32)
            out = torch.mm(a32[:, :chunk], b32[:chunk]).to(torch.int64)
            for i in range(chunk, k, chunk):
                out += torch.mm(a32[:, i : i + chunk], b32[i : i + chunk]).to(torch.int64)
            taken.count("arith.chunked_gemm")
            return out
    if dtype is not None:
        return torch.mm(a.to(dtype), b.to(dtype)).to(torch.int64)

    hi_a, hi_b = (bound_a >> _LIMB) + 1, (bound_b >> _LIMB) + 1
    lo = 1 << _LIMB
    if k * max(hi_a, lo) * max(hi_b, lo) < FLOAT64_EXACT_LIMIT:
        ai, bi = a.to(torch.int64), b.to(torch.int64)
        a_hi, a_lo = (ai >> _LIMB).to(torch.float64), (ai & (lo - 1)).to(torch.float64)
        b_hi, b_lo = (bi >> _LIMB).to(torch.float64), (bi & (lo - 1)).to(torch.float64)
        hh = torch.mm(a_hi, b_hi).to(torch.int64)
        mid = torch.mm(a_hi, b_lo).to(torch.int64) + torch.mm(a_lo, b_hi).to(torch.int64)
        ll = torch.mm(a_lo, b_lo).to(torch.int64)
        taken.count("arith.limb_gemm")
        return (hh << (2 * _LIMB)) + (mid << _LIMB) + ll
    taken.count("arith.int64_gemm")
    return torch.mm(a.to(torch.int64), b.to(torch.int64))
