"""Which fast path ran: every fast path of axhw counts the calls that took it, so a test that compares a fast
path with its reference can assert that the fast path really ran.

Why: a fast path that silently stops applying (a shape check that is too strict, a missing compiler) still
gives the right numbers, through the reference path, and every equality test still passes. Each fast path
calls :func:`count` with its name at the point where it commits to its own computation; a test wraps the
code it compares in :func:`counting` and checks the names it expects.

The names (``PATHS``): ``nn.fused`` (the fused hardware forward), ``nn.fused.chunked`` (its exact float32
GEMM in several chunks), ``nn.fused.minmin`` (its (min, min) product correction), ``arith.lut_kernel``
(the compiled product-table matmul), ``arith.chunked_gemm`` (:func:`axhw.arith.intgemm.exact_int_matmul`
in float32 chunks), ``arith.compiled_matmul`` (a separable multiplier's matmul through the compiled
transform), ``arith.minmin_sparse`` / ``arith.minmin_gemm`` (DRUM's (min, min) saturation corrected by the
sparse pair join or by a count GEMM), ``arith.bitslice_kernel`` (a gate-netlist multiplier's bit-sliced C
kernel, :mod:`axhw.arith.kernels.bitslice`).

>>> with counting() as c:
...     count("nn.fused")
>>> c["nn.fused"]
1
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator

__all__ = ["PATHS", "count", "counting"]

PATHS = ("nn.fused", "nn.fused.chunked", "nn.fused.minmin", "arith.lut_kernel", "arith.chunked_gemm",
         "arith.compiled_matmul", "arith.minmin_sparse", "arith.minmin_gemm", "arith.bitslice_kernel")

_lock = threading.Lock()
_active: list[Counter[str]] = []


def count(path: str) -> None:
    """Record that ``path`` (one of :data:`PATHS`) ran once; free when nobody is counting."""
    if _active:
        with _lock:
            for c in _active:
                c[path] += 1


@contextlib.contextmanager
def counting() -> Iterator[Counter[str]]:
    """A ``Counter`` of the fast paths taken inside the ``with`` block (nested blocks each see theirs)."""
    c: Counter[str] = Counter()
    with _lock:
        _active.append(c)
    try:
        yield c
    finally:
        with _lock:
            _active.remove(c)
