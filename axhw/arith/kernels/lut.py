"""Compiled kernel for :meth:`axhw.arith.multipliers.LUTMultiplier.matmul`: ``C[m, n] = sum_k T[a[m, k], b[k, n]]``.

Why: a product table that is not separable has no GEMM shortcut; every one of the ``M * K * N`` products is a
table lookup. torch can only gather them through index tensors (~1 ns per product, memory bound); this small
C kernel keeps one table row ``T[a[m, k], :]`` in registers and looks up a whole row of ``b`` at once.

* ``axhw_lut_mm16`` (x86-64 with AVX-512BW, tables of at most 8-bit operands): the 256 int16 entries of a
  row live in eight zmm registers; four two-register word permutes plus three blends look up 32 products.
* ``axhw_lut_mm16_avx2`` (x86-64 with AVX2 but not AVX-512, at most 8-bit operands, ``(M, N)`` not
  smaller than :data:`AVX2_MIN_SIDES`): AVX2 has no two-register word permute, and its gathers fetch ~2 entries per
  cycle, no faster than scalar loads. So the kernel turns the lookup around: for a block of 8 terms ``k`` and
  32 columns it *expands* ``G[k][u][:] = T[u, b[k, :]]`` for all 256 words ``u`` (rows of the transposed
  table, transposed back in registers, 16 x 8 at a time), then every row ``m`` adds ``G[k][a[m, k]][:]`` with
  plain vector loads. The expansion is shared by all ``M`` rows, so small matmuls stay on the scalar kernel; it
  runs over the smaller of ``M`` and ``N`` (``M < N`` is computed transposed), and skips the blocks of 8
  words no row holds (half of them after a ReLU, whose outputs are never negative). Its threads are torch's
  OpenMP team (the library is built with ``-fopenmp`` and binds to the libgomp torch loaded): threads of our
  own would compete for the cores with the ones torch's last operation left spinning.
* ``axhw_lut_mm32`` (any CPU, any width up to 12 bits): a plain scalar gather from an int32 table.

All three accumulate in int32 over blocks of ``kblock = (2**31 - 1) // max|T|`` terms (no block sum can wrap:
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
from collections.abc import Callable
from pathlib import Path

import torch

from axhw.arith.kernels.build import Kernel, compile_library, load_library, pool, refused_openmp
from axhw.common import taken

__all__ = [
    "AVX2_MIN_SIDES",
    "PreparedTable",
    "available",
    "backend",
    "build",
    "in_range",
    "library_path",
    "lut_matmul",
    "prepare_table",
]

#: lut.c, whose exported functions lut.h declares (the ctypes signatures below come from parsing it).
_KERNEL = Kernel("lutkernel", "lut.c", "lut.h", flags=("-fopenmp",))

_INT32_MAX = (1 << 31) - 1
#: Below this many products one thread does the work (a pool hand-off costs ~50 us).
_PARALLEL_MIN_PRODUCTS = 1 << 20
#: Smallest (smaller side, larger side) of ``(M, N)`` that the AVX2 kernel runs: below 32 on the larger side
#: its expansion (as costly as ~32 rows of scalar lookups) does not pay; below 4 on the smaller side the
#: padding to 32-column tiles does not (measured, (20000 x 25) @ (25 x N), 2 threads: AVX2 / scalar time 1.35
#: at N = 1, 1.02 at N = 3, 0.82 at N = 4, 0.19 at N = 32).
AVX2_MIN_SIDES = (4, 32)
#: Terms per block and columns per tile of the AVX2 kernel (AXHW_KB and the tile width in lut.c).
_AVX2_KB, _AVX2_TILE = 8, 32

_lock = threading.Lock()
_state: dict[str, object] = {}


def library_path() -> Path:
    """Where the compiled kernel lives: named by a hash of ``lut.c``, ``lut.h``, the flags and the platform,
    so an edited file or another machine type never loads a stale build."""
    return _KERNEL.library_path()


def build(force: bool = False) -> Path:
    """Compile the kernel into :func:`library_path` (atomically: parallel builders never see a partial file),
    with OpenMP (``-fopenmp``); a compiler without OpenMP builds it without (the AVX2 kernel then splits its
    work over the package's own thread pool).

    Raises:
        RuntimeError: no C compiler, or the compile failed (the message carries the compiler output).
    """
    try:
        return _KERNEL.build(force=force)
    except RuntimeError as exc:
        if not refused_openmp(exc):
            raise
        return compile_library(Kernel.text(_KERNEL.source), _KERNEL.library_path(), force=True,
                               headers=_KERNEL.headers(), name=_KERNEL.source)


def _load() -> ctypes.CDLL | None:
    """The loaded library, building it on first use; None (once warned) where that is impossible."""
    with _lock:
        if "lib" in _state:
            return _state["lib"]  # type: ignore[return-value]
        lib, header = load_library(_KERNEL, build, "AXHW_LUT_KERNEL", "LUT matmul kernel unavailable, using the torch path")
        if lib is not None:
            _state["avx512"] = bool(lib.axhw_lut_avx512())
            _state["avx2"] = bool(lib.axhw_lut_avx2())
            _state["job"] = header.structs["axhw_lut_job"]
            _state["openmp"] = bool(lib.axhw_lut_openmp())
        _state["lib"] = lib
        return lib


def available() -> bool:
    """Whether :func:`lut_matmul` runs compiled code (else callers use their torch path)."""
    return _load() is not None


def backend(bits: int = 8, shape: tuple[int, int] | None = None) -> str:
    """``"c-avx512"``, ``"c-avx2"``, ``"c-scalar"`` or ``"torch"``: the path a ``bits``-wide table matmul with
    ``shape = (M, N)`` outputs takes (``None``: a large one)."""
    if _load() is None:
        return "torch"
    if bits <= 8 and _state["avx512"]:
        return "c-avx512"
    if bits <= 8 and _state["avx2"] and (
        shape is None or (min(shape) >= AVX2_MIN_SIDES[0] and max(shape) >= AVX2_MIN_SIDES[1])
    ):
        return "c-avx2"
    return "c-scalar"


class PreparedTable:
    """The kernels' copies of one table, each made on first use and kept (one object per multiplier):

    * :meth:`int16`: 256 x 256 int16 words (uint16 bit patterns for unsigned entries), for the AVX-512
      kernel, and for the AVX2 kernel on a transposed problem;
    * :meth:`int16_t`: the same transposed (``int16_t()[v, u] = T[u, v]``), for the AVX2 kernel;
    * :meth:`int32`: the ``2**bits`` square int32 table, for the scalar kernel.
    """

    def __init__(self, table: torch.Tensor, bits: int) -> None:
        self.table, self.bits = table, bits
        self._copies: dict[str, torch.Tensor] = {}

    def int16(self) -> torch.Tensor:
        if "int16" not in self._copies:
            if self.bits > 8:
                raise ValueError(f"a {self.bits}-bit table has no int16 copy (at most 8 bits)")
            side = 1 << self.bits
            padded = torch.zeros(256, 256, dtype=torch.int64)
            padded[:side, :side] = self.table
            # Entries lie in [-2**15, 2**16): values >= 2**15 (unsigned only) are stored as their uint16 pattern.
            self._copies["int16"] = torch.where(padded >= 1 << 15, padded - (1 << 16), padded).to(torch.int16)
        return self._copies["int16"]

    def int16_t(self) -> torch.Tensor:
        if "int16_t" not in self._copies:
            self._copies["int16_t"] = self.int16().T.contiguous()
        return self._copies["int16_t"]

    def int32(self) -> torch.Tensor:
        if "int32" not in self._copies:
            self._copies["int32"] = self.table.to(torch.int32).contiguous()
        return self._copies["int32"]


def prepare_table(table: torch.Tensor, bits: int) -> PreparedTable:
    """The kernels' copies of an int64 ``(2**bits, 2**bits)`` table; those of the default path of this CPU
    are made now."""
    prepared = PreparedTable(table, bits)
    {"c-avx512": prepared.int16, "c-avx2": prepared.int16_t}.get(backend(bits), prepared.int32)()
    return prepared


def in_range(x: torch.Tensor, lo: int, hi: int) -> bool:
    """Whether every element of the 2-D int64 tensor ``x`` (any strides) lies in ``[lo, hi]``, checked in C
    on this thread: the AVX2 path's operand check, which runs no torch operation before the kernel (lut.c
    says why). Other tensors answer False (the caller's torch check then gives the error)."""
    lib = _load()
    if lib is None or x.dtype != torch.int64 or x.dim() != 2:
        return False
    rows, cols = x.shape
    return bool(lib.axhw_lut_in_range(x.data_ptr(), rows, cols, x.stride(0), x.stride(1), lo, hi))


def lut_matmul(
    prepared: PreparedTable, bits: int, signed: bool, max_abs: int, a: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """``C[m, n] = sum_k T[word(a[m, k]), word(b[k, n])]`` as int64 for int64 operands ``a`` (M, K), ``b`` (K, N)
    inside the multiplier's operand range, where ``word(x) = x & (2**bits - 1)`` (a two's-complement value's
    word; an unsigned value is its own word), and the :func:`prepare_table` copies of ``T``, whose entries
    satisfy ``|T| <= max_abs``. The caller checks the operands and that ``K * max_abs`` fits int64. Counts the
    path it takes as ``arith.lut_kernel.<path>`` (:mod:`axhw.common.taken`)."""
    lib = _load()
    if lib is None:
        raise RuntimeError("the LUT kernel is not available")
    m, k = a.shape
    n = b.shape[1]
    path = backend(bits, (m, n))
    taken.count(f"arith.lut_kernel.{path}")
    kblock = max(1, _INT32_MAX // max(1, max_abs))
    mask = (1 << bits) - 1
    if path == "c-avx2":
        out = torch.empty(m, n, dtype=torch.int64)
        if m >= n:
            _matmul_avx2(lib, prepared.int16_t(), signed, kblock, mask, (a, a.stride()), (b, b.stride()),
                         (out, out.stride()), m, k, n)
        else:
            # Fewer rows than columns: the expansion (256 entries per term and column) is cheaper over the
            # rows, so compute C^T = B^T (x) A^T under the transposed table T' (whose own transpose is T),
            # through swapped strides: nothing is copied.
            taken.count("arith.lut_kernel.c-avx2.transposed")
            _matmul_avx2(lib, prepared.int16(), signed, kblock, mask, (b, b.stride()[::-1]), (a, a.stride()[::-1]),
                         (out, out.stride()[::-1]), n, k, m)
        return out
    aw, bw = a & mask, b & mask
    wide = path == "c-avx512"
    table = prepared.int16() if wide else prepared.int32()
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
            table.data_ptr(),
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

    _run_split(m, m * k * n, rows)
    if not (m and k and n) and m and n:
        out.zero_()
    return out if n_pad == n else out[:, :n].contiguous()


def _run_split(parts: int, products: int, fn: Callable[[int, int], None]) -> None:
    """Call ``fn(p0, p1)`` over ``[0, parts)``, split into one contiguous range per torch thread when the work
    is large enough (ctypes releases the GIL, so the ranges run in parallel)."""
    if not parts or not products:
        return
    workers = min(torch.get_num_threads(), parts)
    if workers <= 1 or products < _PARALLEL_MIN_PRODUCTS:
        fn(0, parts)
        return
    bounds = [parts * i // workers for i in range(workers + 1)]
    futures = [pool(workers).submit(fn, p0, p1) for p0, p1 in itertools.pairwise(bounds)]
    for f in futures:
        f.result()


def _matmul_avx2(
    lib: ctypes.CDLL,
    tt: torch.Tensor,
    signed: bool,
    kblock: int,
    mask: int,
    a: tuple[torch.Tensor, tuple[int, ...]],
    b: tuple[torch.Tensor, tuple[int, ...]],
    c: tuple[torch.Tensor, tuple[int, ...]],
    m: int,
    k: int,
    n: int,
) -> None:
    """The AVX2 kernel on int64 operands ``a`` (m x k) and ``b`` (k x n), words ``x & mask``, into ``c``
    (m x n), each given as (tensor, (row stride, column stride)). Threads split the 32-column tiles (each
    expands only its own columns, so no expansion is repeated), or the rows where there are fewer tiles than
    threads (each then expands the same tiles, but the lookups, the larger part, are split), each with its own
    scratch; on torch's OpenMP team where the library has OpenMP, else on the package's thread pool.
    ``kblock`` is at least 32768 for 8-bit tables (``|T| < 2**16``), far above the kernel's block of 8 terms.
    No torch operation runs between the caller's and the kernel (see lut.c: spinning OpenMP threads)."""
    if not (m and n):
        return
    job = _state["job"](  # type: ignore[operator]
        tt=tt.data_ptr(), a=a[0].data_ptr(), b=b[0].data_ptr(), c=c[0].data_ptr(), a_rs=a[1][0], a_cs=a[1][1],
        b_rs=b[1][0], b_cs=b[1][1], c_rs=c[1][0], c_cs=c[1][1], M=m, K=k, N=n, kblock=kblock, mask=mask,
        sign=int(signed))
    tiles = -(-n // _AVX2_TILE)
    threads = torch.get_num_threads() if m * max(k, 1) * n >= _PARALLEL_MIN_PRODUCTS else 1
    if threads > 1 and _state.get("openmp"):
        # On torch's OpenMP team: the threads a torch operation just before left spinning run the kernel,
        # instead of competing with it for the cores (measured: 0.50-0.58x the time of the thread pool below,
        # with an Exact.matmul before each call).
        taken.count("arith.lut_kernel.c-avx2.openmp")
        if lib.axhw_lut_mm16_avx2_team(ctypes.byref(job), threads) != 0:
            raise MemoryError(f"the AVX2 table matmul could not allocate its scratch for {m} rows")
        return

    def word_blocks(r0: int, r1: int) -> torch.Tensor:
        """Which blocks of 8 words each column of rows [r0, r1) of A holds (the kernel expands only those)."""
        blocks = torch.empty(max(k, 1), dtype=torch.int32)
        lib.axhw_lut_word_blocks(ctypes.byref(job), r0, r1, blocks.data_ptr())
        return blocks

    def run(r0: int, r1: int, c0: int, c1: int, blocks: torch.Tensor) -> None:
        expanded = torch.empty(_AVX2_KB * 256 * _AVX2_TILE, dtype=torch.int16)
        partial = torch.empty((r1 - r0) * _AVX2_TILE, dtype=torch.int32)
        lib.axhw_lut_mm16_avx2(ctypes.byref(job), blocks.data_ptr(), expanded.data_ptr(), partial.data_ptr(),
                               r0, r1, c0, c1)

    if tiles >= threads:
        blocks = word_blocks(0, m)
        _run_split(tiles, m * max(k, 1) * n,
                   lambda t0, t1: run(0, m, t0 * _AVX2_TILE, min(n, t1 * _AVX2_TILE), blocks))
    else:
        _run_split(m, m * max(k, 1) * n, lambda r0, r1: run(r0, r1, 0, n, word_blocks(r0, r1)))
