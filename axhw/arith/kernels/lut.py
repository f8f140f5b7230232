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

Building: ``make setup`` runs ``python -m axhw.arith.kernels``, which compiles the embedded C source with the
system C compiler (:mod:`axhw.arith.kernels.build`); first use builds it too when missing. Without a compiler,
or with ``AXHW_LUT_KERNEL=0``, :func:`available` is false and the pure-torch gather gives the same numbers.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import threading
import warnings
from pathlib import Path

import torch

from axhw.arith.kernels.build import compile_library, library_path_for, pool

__all__ = ["available", "backend", "build", "library_path", "lut_matmul"]

_SOURCE = r"""
#include <stdint.h>

/* Scalar kernel, any table width: T is side x side int32, a holds row offsets (word * side), b words. */
void axhw_lut_mm32(const int32_t *T, const int32_t *a, const int32_t *b, int64_t *c,
                   int64_t M, int64_t K, int64_t N, int64_t kblock) {
    int32_t acc[256];
    int64_t tot[256];
    for (int64_t m = 0; m < M; m++) {
        const int32_t *arow = a + m * K;
        for (int64_t n0 = 0; n0 < N; n0 += 256) {
            int64_t nt = N - n0 < 256 ? N - n0 : 256;
            for (int64_t j = 0; j < nt; j++) tot[j] = 0;
            for (int64_t k0 = 0; k0 < K; k0 += kblock) {
                int64_t k1 = K - k0 > kblock ? k0 + kblock : K;
                for (int64_t j = 0; j < nt; j++) acc[j] = 0;
                for (int64_t k = k0; k < k1; k++) {
                    const int32_t *row = T + arow[k];
                    const int32_t *bk = b + k * N + n0;
                    for (int64_t j = 0; j < nt; j++) acc[j] += row[bk[j]];
                }
                for (int64_t j = 0; j < nt; j++) tot[j] += acc[j];
            }
            for (int64_t j = 0; j < nt; j++) c[m * N + n0 + j] = tot[j];
        }
    }
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define AXHW_AVX512 __attribute__((target("avx512f,avx512bw")))

int axhw_lut_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}

/* nv (1..4) vectors of 32 columns starting at n0; T is 256 x 256 int16, b is K x Np int16 words. */
AXHW_AVX512 static inline void axhw_tile16(const int16_t *T, const int32_t *arow, const int16_t *b,
                                           int64_t *crow, int64_t K, int64_t Np, int64_t n0, int nv,
                                           int64_t kblock, int sign) {
    int64_t tot[128];
    int32_t part[32];
    const __m512i bit6 = _mm512_set1_epi16(64), bit7 = _mm512_set1_epi16(128);
    for (int j = 0; j < 32 * nv; j++) tot[j] = 0;
    for (int64_t k0 = 0; k0 < K; k0 += kblock) {
        int64_t k1 = K - k0 > kblock ? k0 + kblock : K;
        __m512i lo_acc[4], hi_acc[4];
        for (int j = 0; j < 4; j++) lo_acc[j] = hi_acc[j] = _mm512_setzero_si512();
        for (int64_t k = k0; k < k1; k++) {
            const int16_t *row = T + ((int64_t)arow[k] << 8);
            const __m512i r0 = _mm512_loadu_si512(row), r1 = _mm512_loadu_si512(row + 32);
            const __m512i r2 = _mm512_loadu_si512(row + 64), r3 = _mm512_loadu_si512(row + 96);
            const __m512i r4 = _mm512_loadu_si512(row + 128), r5 = _mm512_loadu_si512(row + 160);
            const __m512i r6 = _mm512_loadu_si512(row + 192), r7 = _mm512_loadu_si512(row + 224);
            const int16_t *bk = b + k * Np + n0;
            for (int j = 0; j < nv; j++) {
                __m512i idx = _mm512_loadu_si512(bk + 32 * j);
                /* permutex2var uses the low 6 index bits; bits 6 and 7 pick one of the four results. */
                __m512i p0 = _mm512_permutex2var_epi16(r0, idx, r1);
                __m512i p1 = _mm512_permutex2var_epi16(r2, idx, r3);
                __m512i p2 = _mm512_permutex2var_epi16(r4, idx, r5);
                __m512i p3 = _mm512_permutex2var_epi16(r6, idx, r7);
                __mmask32 m6 = _mm512_test_epi16_mask(idx, bit6);
                __mmask32 m7 = _mm512_test_epi16_mask(idx, bit7);
                __m512i v = _mm512_mask_blend_epi16(m7, _mm512_mask_blend_epi16(m6, p0, p1),
                                                    _mm512_mask_blend_epi16(m6, p2, p3));
                __m256i v0 = _mm512_castsi512_si256(v), v1 = _mm512_extracti64x4_epi64(v, 1);
                if (sign) {
                    lo_acc[j] = _mm512_add_epi32(lo_acc[j], _mm512_cvtepi16_epi32(v0));
                    hi_acc[j] = _mm512_add_epi32(hi_acc[j], _mm512_cvtepi16_epi32(v1));
                } else {
                    lo_acc[j] = _mm512_add_epi32(lo_acc[j], _mm512_cvtepu16_epi32(v0));
                    hi_acc[j] = _mm512_add_epi32(hi_acc[j], _mm512_cvtepu16_epi32(v1));
                }
            }
        }
        for (int j = 0; j < nv; j++) {
            _mm512_storeu_si512(part, lo_acc[j]);
            _mm512_storeu_si512(part + 16, hi_acc[j]);
            for (int i = 0; i < 32; i++) tot[32 * j + i] += part[i];
        }
    }
    for (int j = 0; j < 32 * nv; j++) crow[n0 + j] = tot[j];
}

/* Np must be a multiple of 32 (the caller pads b with word 0 and drops those columns). */
AXHW_AVX512 void axhw_lut_mm16(const int16_t *T, const int32_t *a, const int16_t *b, int64_t *c,
                               int64_t M, int64_t K, int64_t Np, int64_t kblock, int sign) {
    for (int64_t m = 0; m < M; m++) {
        const int32_t *arow = a + m * K;
        int64_t *crow = c + m * Np;
        int64_t n0 = 0;
        for (; n0 + 128 <= Np; n0 += 128) {
            if (sign) axhw_tile16(T, arow, b, crow, K, Np, n0, 4, kblock, 1);
            else axhw_tile16(T, arow, b, crow, K, Np, n0, 4, kblock, 0);
        }
        for (; n0 < Np; n0 += 32) {
            if (sign) axhw_tile16(T, arow, b, crow, K, Np, n0, 1, kblock, 1);
            else axhw_tile16(T, arow, b, crow, K, Np, n0, 1, kblock, 0);
        }
    }
}
#else
int axhw_lut_avx512(void) { return 0; }
void axhw_lut_mm16(const int16_t *T, const int32_t *a, const int16_t *b, int64_t *c,
                   int64_t M, int64_t K, int64_t Np, int64_t kblock, int sign) {
    (void)T; (void)a; (void)b; (void)c; (void)M; (void)K; (void)Np; (void)kblock; (void)sign;
}
#endif
"""

_INT32_MAX = (1 << 31) - 1
#: Below this many products one thread does the work (a pool hand-off costs ~50 us).
_PARALLEL_MIN_PRODUCTS = 1 << 20

_lock = threading.Lock()
_state: dict[str, object] = {}


def library_path() -> Path:
    """Where the compiled kernel lives: named by a hash of the source and the platform, so an edited
    source or another machine type never loads a stale build."""
    return library_path_for(_SOURCE, "lutkernel")


def build(force: bool = False) -> Path:
    """Compile the kernel into :func:`library_path` (atomically: parallel builders never see a partial file).

    Raises:
        RuntimeError: no C compiler, or the compile failed (the message carries the compiler output).
    """
    return compile_library(_SOURCE, library_path(), force=force)


def _load() -> ctypes.CDLL | None:
    """The loaded library, building it on first use; None (once warned) where that is impossible."""
    with _lock:
        if "lib" in _state:
            return _state["lib"]  # type: ignore[return-value]
        lib = None
        if os.environ.get("AXHW_LUT_KERNEL", "1") != "0":
            try:
                lib = ctypes.CDLL(str(build()))
            except (OSError, RuntimeError) as exc:
                warnings.warn(f"LUT matmul kernel unavailable, using the torch path: {exc}", stacklevel=3)
        if lib is not None:
            i64, ptr = ctypes.c_int64, ctypes.c_void_p
            lib.axhw_lut_mm32.argtypes = [ptr, ptr, ptr, ptr, i64, i64, i64, i64]
            lib.axhw_lut_mm32.restype = None
            lib.axhw_lut_mm16.argtypes = [ptr, ptr, ptr, ptr, i64, i64, i64, i64, ctypes.c_int]
            lib.axhw_lut_mm16.restype = None
            lib.axhw_lut_avx512.restype = ctypes.c_int
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
