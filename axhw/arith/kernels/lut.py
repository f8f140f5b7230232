"""Compiled kernel for :meth:`axhw.arith.multipliers.LUTMultiplier.matmul`: ``C[m, n] = sum_k T[a[m, k], b[k, n]]``.

Why: a product table that is not separable has no GEMM shortcut; every one of the ``M * K * N`` products is a
table lookup. torch can only gather them through index tensors (~1 ns per product, memory bound); this small
C kernel keeps one table row ``T[a[m, k], :]`` in registers and looks up a whole row of ``b`` at once.

* ``axhw_lut_mm16`` (x86-64 with AVX-512BW, tables of at most 8-bit operands): the 256 int16 entries of a
  row live in eight zmm registers; four two-register word permutes plus three blends look up 32 products.
* ``axhw_lut_mm32`` (any CPU, any width up to 12 bits): a plain scalar gather from an int32 table.

Both accumulate in int32 over blocks of ``kblock = (2**31 - 1) // max|T|`` terms (no block sum can wrap:
it is bounded by ``kblock * max|T| < 2**31``) and add the blocks into int64; the caller refuses sums that may
exceed int64 before calling. Every entry of a ``bits <= 12`` table fits int32 (products have ``2 * bits``
bits), and of a ``bits <= 8`` table int16 (signed) or uint16 (unsigned, zero-extended by the kernel).

Building: ``make setup`` runs ``python -m axhw.arith.kernels``, which compiles ``lut.c`` (next to this module,
shipped in the wheel) with the system C compiler (:mod:`axhw.arith.kernels.build`); first use builds it too when
missing. Without a compiler, or with ``AXHW_LUT_KERNEL=0``, :func:`available` is false and the pure-torch
gather gives the same numbers.

Why a C file, a header and strict flags: the ctypes signatures are not written here but parsed from ``lut.h``,
which ``lut.c`` includes, so the compiler checks each definition against the very declaration ctypes calls
through (a hand-written list that drifted from the C code would corrupt memory silently); the build treats
every warning (``-Wall -Wextra -Wconversion``) as an error; and ``AXHW_KERNEL_SANITIZE=1`` builds with
AddressSanitizer and UBSan for the slow test that runs the kernel equality tests under them.
"""

from __future__ import annotations

import ctypes
import itertools
import threading
from pathlib import Path

import torch

from axhw.arith.kernels.build import Kernel, load_library, pool

__all__ = ["available", "backend", "build", "library_path", "lut_matmul"]

#: lut.c, whose exported functions lut.h declares (the ctypes signatures below come from parsing it).
_KERNEL = Kernel("lutkernel", "lut.c", "lut.h")

_INT32_MAX = (1 << 31) - 1
#: Below this many products one thread does the work (a pool hand-off costs ~50 us).
_PARALLEL_MIN_PRODUCTS = 1 << 20

_lock = threading.Lock()
_state: dict[str, object] = {}


def library_path() -> Path:
    """Where the compiled kernel lives: named by a hash of ``lut.c``, ``lut.h``, the flags and the platform,
    so an edited file or another machine type never loads a stale build."""
    return _KERNEL.library_path()


def build(force: bool = False) -> Path:
    """Compile the kernel into :func:`library_path` (atomically: parallel builders never see a partial file).

    Raises:
        RuntimeError: no C compiler, or the compile failed (the message carries the compiler output).
    """
    return _KERNEL.build(force=force)


def _load() -> ctypes.CDLL | None:
    """The loaded library, building it on first use; None (once warned) where that is impossible."""
    with _lock:
        if "lib" in _state:
            return _state["lib"]  # type: ignore[return-value]
        lib, _ = load_library(_KERNEL, build, "AXHW_LUT_KERNEL", "LUT matmul kernel unavailable, using the torch path")
        if lib is not None:
            _state["avx512"] = bool(lib.axhw_lut_avx512())
        _state["lib"] = lib
        return lib


def available() -> bool:
    """Whether :func:`lut_matmul` runs compiled code (else callers use their torch path)."""
    return _load() is not None


def backend(bits: int = 8) -> str:
    """``"c-avx512"``, ``"c-scalar"`` or ``"torch"``: the path a ``bits``-wide table matmul takes."""
    if _load() is None:
        return "torch"
    return "c-avx512" if bits <= 8 and _state["avx512"] else "c-scalar"


def prepare_table(table: torch.Tensor, bits: int) -> torch.Tensor:
    """The kernel's copy of an int64 ``(2**bits, 2**bits)`` table: for ``bits <= 8`` with AVX-512, int16
    words (uint16 bit patterns for unsigned entries) padded to 256 x 256; else int32."""
    if backend(bits) == "c-avx512":
        side = 1 << bits
        padded = torch.zeros(256, 256, dtype=torch.int64)
        padded[:side, :side] = table
        # Entries lie in [-2**15, 2**16): values >= 2**15 (unsigned only) are stored as their uint16 pattern.
        return torch.where(padded >= 1 << 15, padded - (1 << 16), padded).to(torch.int16).contiguous()
    return table.to(torch.int32).contiguous()


def lut_matmul(
    prepared: torch.Tensor, bits: int, signed: bool, max_abs: int, aw: torch.Tensor, bw: torch.Tensor
) -> torch.Tensor:
    """``C[m, n] = sum_k T[aw[m, k], bw[k, n]]`` as int64 for operand *words* ``aw`` (M, K), ``bw`` (K, N)
    in ``[0, 2**bits)`` and the :func:`prepare_table` copy of ``T``, whose entries satisfy
    ``|T| <= max_abs``. The caller checks the words and that ``K * max_abs`` fits int64."""
    lib = _load()
    if lib is None:
        raise RuntimeError("the LUT kernel is not available")
    m, k = aw.shape
    n = bw.shape[1]
    kblock = max(1, _INT32_MAX // max(1, max_abs))
    wide = prepared.dtype == torch.int16
    if wide:
        a_in = aw.to(torch.int32).contiguous()
        n_pad = -(-n // 32) * 32
        b_in = torch.zeros(k, n_pad, dtype=torch.int16)
        b_in[:, :n] = bw
    else:
        a_in = (aw << bits).to(torch.int32).contiguous()  # row offsets: at most 2**24
        n_pad = n
        b_in = bw.to(torch.int32).contiguous()
    out = torch.empty(m, n_pad, dtype=torch.int64)

    def rows(r0: int, r1: int) -> None:
        args = (
            prepared.data_ptr(),
            a_in[r0].data_ptr(),
            b_in.data_ptr(),
            out[r0].data_ptr(),
            r1 - r0,
            k,
            n_pad,
        )
        if wide:
            lib.axhw_lut_mm16(*args, kblock, 1 if signed else 0)
        else:
            lib.axhw_lut_mm32(*args, kblock)

    workers = min(torch.get_num_threads(), m)
    if m and k and n:
        if workers <= 1 or m * k * n < _PARALLEL_MIN_PRODUCTS:
            rows(0, m)
        else:  # ctypes releases the GIL, so the row blocks run in parallel
            bounds = [m * i // workers for i in range(workers + 1)]
            futures = [pool(workers).submit(rows, r0, r1) for r0, r1 in itertools.pairwise(bounds)]
            for f in futures:
                f.result()
    elif m and n:
        out.zero_()
    return out if n_pad == n else out[:, :n].contiguous()
