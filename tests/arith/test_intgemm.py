"""The exact integer GEMM picks a path by proven bounds; every path must agree with Python ints."""

import pytest
import torch

from axhw.arith.intgemm import FLOAT32_EXACT_LIMIT, exact_float_dtype, exact_int_matmul
from axhw.common import taken


def python_matmul(a: torch.Tensor, b: torch.Tensor) -> list[list[int]]:
    return [[sum(x * y for x, y in zip(r, c, strict=True)) for c in b.T.tolist()] for r in a.tolist()]


@pytest.mark.parametrize(
    "bound",
    [2**9, 2**10, 2**30, 2**40],  # float32 GEMM, float64 GEMM, 16-bit limbs, native int64 fallback
    ids=["float32", "float64", "limbs", "int64"],
)
def test_paths_are_exact(bound):
    g = torch.Generator().manual_seed(bound % 97)
    hi = min(bound, 2**28)
    a = torch.randint(-hi, hi + 1, (7, 33), generator=g)
    b = torch.randint(-hi, hi + 1, (33, 5), generator=g)
    assert exact_int_matmul(a, b, bound, bound).tolist() == python_matmul(a, b)
    assert exact_int_matmul(a.double(), b.double(), bound, bound).tolist() == python_matmul(a, b)


def test_empty_reduction_and_shape_check():
    assert exact_int_matmul(torch.zeros(2, 0, dtype=torch.int64), torch.zeros(0, 3, dtype=torch.int64), 1, 1).tolist() == [[0] * 3] * 2
    with pytest.raises(ValueError, match="matmul needs"):
        exact_int_matmul(torch.zeros(2, 3), torch.zeros(2, 3), 1, 1)


def test_float32_path_at_its_edge_and_only_at_full_precision():
    # k * bound**2 just below 2**24: every product and partial sum is at the edge of float32's integers.
    k, bound = 63, 2**9
    assert k * bound * bound < FLOAT32_EXACT_LIMIT and exact_float_dtype(k * bound * bound) == torch.float32
    g = torch.Generator().manual_seed(3)
    a = torch.randint(0, 2, (6, k), generator=g) * 2 * bound - bound  # entries +-bound
    b = torch.full((k, 4), bound)
    b[::2, 1] = -bound + 1
    assert exact_int_matmul(a, b, bound, bound).tolist() == python_matmul(a, b)
    assert exact_float_dtype(FLOAT32_EXACT_LIMIT) == torch.float64
    old = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")  # TF32/bf16 allowed: float32 is no longer a proof
        assert exact_float_dtype(k * bound * bound) == torch.float64
        assert exact_int_matmul(a, b, bound, bound).tolist() == python_matmul(a, b)
    finally:
        torch.set_float32_matmul_precision(old)


def test_chunked_float32_path_just_beyond_one_chunk():
    # bound 160 (DRUM-3's |T| at 8 bits), K = 784: one float32 GEMM could round, two chunks of 655 / 129 cannot.
    k, bound = 784, 160
    assert k * bound * bound >= FLOAT32_EXACT_LIMIT
    g = torch.Generator().manual_seed(5)
    a = torch.randint(0, 2, (5, k), generator=g) * 2 * bound - bound  # +-bound: the largest partial sums
    b = torch.full((k, 3), bound)
    b[:, 1] = torch.randint(-bound, bound + 1, (k,), generator=g)
    with taken.counting() as ran:
        assert exact_int_matmul(a, b, bound, bound).tolist() == python_matmul(a, b)
        assert exact_int_matmul(a.double(), b.double(), bound, bound).tolist() == python_matmul(a, b)
    assert ran["arith.chunked_gemm"] == 2  # the chunked path, not one float64 GEMM


def test_exact_int_matmul_shapes_dtypes_and_overflow_message() -> None:
    """Mutants the first full mutation run left alive: one operand 1-D, int64 results on the empty and
    the float32 paths, the exact overflow message (and its boundary: exactly 2**62 is refused)."""
    import re

    from axhw.arith.intgemm import exact_int_matmul

    with pytest.raises(ValueError, match=re.escape("matmul needs (M, K) @ (K, N) matrices, got (3,) @ (3, 2)")):
        exact_int_matmul(torch.ones(3, dtype=torch.int64), torch.ones(3, 2, dtype=torch.int64), 1, 1)
    empty = exact_int_matmul(torch.zeros(2, 0, dtype=torch.int64), torch.zeros(0, 3, dtype=torch.int64), 5, 5)
    assert empty.dtype == torch.int64 and empty.shape == (2, 3) and not empty.any()
    small = exact_int_matmul(torch.tensor([[3, -2]]), torch.tensor([[5], [7]]), 3, 7)
    assert small.dtype == torch.int64 and small.tolist() == [[1]]
    half = 1 << 31
    with pytest.raises(OverflowError, match="^" + re.escape(
            "matmul result may exceed the int64 range (|sum| up to 4.61e+18 >= 2**62); use narrower operands or "
            "split the reduction dimension") + "$"):
        exact_int_matmul(torch.full((1, 1), half, dtype=torch.int64), torch.full((1, 1), half, dtype=torch.int64),
                         half, half)  # exactly 2**62


_PATHS = {"arith.chunked_gemm", "arith.limb_gemm", "arith.int64_gemm"}


@pytest.mark.parametrize(("bound_a", "bound_b", "k", "path"), [
    (2**9, 2**9, 63, None),                     # one float32 GEMM: never the chunks
    (2, 2, 10, None),                           # ... even where one chunk would hold every term
    (262143, 1, 8 * 64, "arith.chunked_gemm"),  # chunks of exactly 64 terms (the minimum), 8 of them (the most)
    (262143, 1, 8 * 64 + 1, None),              # a ninth chunk: one float64 GEMM instead
    (266305, 1, 2 * 63, None),                  # 63-term chunks are too short
    (258111, 1, 8 * 65, "arith.chunked_gemm"),  # 65 terms: (2**24 - 1) / 258111 exactly, still 8 chunks
    (2**20, 2**20, 2**21 - 1, "arith.limb_gemm"),  # 16-bit limbs: k * 2**16 * 2**16 < 2**53
    (2**20, 2**20, 2**21, "arith.int64_gemm"),     # ... and at exactly 2**53, torch's int64 matmul
    (2**32, 2**32, 2097088, "arith.limb_gemm"),    # high limbs of 2**16 + 1: k < 2**53 / (2**16 + 1)**2
    (2**32, 2**32, 2097100, "arith.int64_gemm"),
], ids=lambda v: str(v))
def test_path_boundaries(bound_a, bound_b, k, path):
    """Each path is taken exactly up to the bound its docstring proves (and the chunk policy: at least 64
    terms a chunk, at most 8 chunks), with int64 results; small operands, since only the proven bounds
    choose the path."""
    g = torch.Generator().manual_seed(k)
    a = torch.randint(-3, 4, (2, k), generator=g)
    b = torch.randint(-1, 2, (k, 3), generator=g)
    with taken.counting() as ran:
        out = exact_int_matmul(a, b, bound_a, bound_b)
    assert out.dtype == torch.int64
    assert torch.equal(out, a @ b)
    assert set(ran) & _PATHS == ({path} if path else set()), ran


def test_chunks_never_reach_2_to_the_24():
    """Products of 172961 = 257 * 673: 96 of them stay below 2**24, 97 make 2**24 + 1, which float32 cannot
    hold; the chunks must stop at 96 terms."""
    k = 2 * 97
    a = torch.full((1, k), 257)
    b = torch.full((k, 1), 673)
    with taken.counting() as ran:
        out = exact_int_matmul(a, b, 257, 673)
    assert ran["arith.chunked_gemm"] == 1
    assert out.dtype == torch.int64 and out.item() == k * 172961
