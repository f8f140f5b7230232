"""The exact integer GEMM picks a path by proven bounds; every path must agree with Python ints."""

import pytest
import torch

from axhw.intgemm import exact_int_matmul


def python_matmul(a: torch.Tensor, b: torch.Tensor) -> list[list[int]]:
    return [[sum(x * y for x, y in zip(r, c, strict=True)) for c in b.T.tolist()] for r in a.tolist()]


@pytest.mark.parametrize(
    "bound",
    [2**10, 2**30, 2**40],  # single float64 GEMM, 16-bit limbs, native int64 fallback
    ids=["float64", "limbs", "int64"],
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
