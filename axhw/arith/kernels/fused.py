"""Compiled elementwise kernels of the fused hardware forward (:mod:`axhw.nn.fused`).

Why: a training-mode hardware forward is dispatch-bound, not compute-bound (issue 15: ~1,400 aten calls per
AxTrain-pas step at ~6 us each against ~330 for BP). The integer definitions of :mod:`axhw.arith.fixedpoint`,
:mod:`axhw.arith.sram` and :mod:`axhw.golden.network` take 10-30 small tensor operations per step of the pipeline
(quantize, flip, operand transform, accumulate, re-quantize,
dequantize); the C loops here do each step in one pass over memory, through one ``ctypes`` call:

* ``axhw_quantize``: ``code = sat(round_half_even(x * 2**frac))`` of float32 values (reporting NaNs);
  ``axhw_quantize_transform`` adds ``out = T(code)`` in the same pass (counting minimum codes, and the
  largest ``|T|``, the data bound that proves GEMM exactness);
* ``axhw_flip``: XOR the NTV bit flips (sorted flat bit positions, :meth:`axhw.arith.sram.NTVStorage.flip_positions`)
  into the stored words of a code array, sign-extend, and re-transform the flipped words;
* ``axhw_transform`` / ``axhw_transform64``: ``out = T(code)`` by table (the separable operand transform of
  :class:`axhw.arith.multipliers.SeparableMultiplier`; AVX2 gathers where the CPU has them), the int64 variant
  range-checked for :meth:`~axhw.arith.multipliers.SeparableMultiplier.matmul`, with ``axhw_sum_parts`` (exact
  float32 partial GEMMs into int64) and ``axhw_min_pairs`` (the DRUM-2 (min, min) correction as a sparse
  join);
* ``axhw_epilogue*``: the accumulator from exact float GEMM partial sums plus bias codes, saturated to the
  accumulator word, re-quantized (round-half-up shift) and saturated to the output word, dequantized to
  float32, and the saturation-STE mask (int32 lanes where the bounds allow, else doubles);
* ``axhw_ste_grad``: eq. 12's clipped gradient times the mask.

Exactness: rounding uses the 1.5 * 2**52 trick on values already clamped into ``[lo, hi]`` (``|v| < 2**51``),
which is IEEE round-half-to-even, what ``torch.round`` does; clamping before rounding equals rounding before
clamping because rounding is monotone and ``lo``, ``hi`` are integers; ``x * 2**frac`` is formed in double,
exact for every float32 ``x``. Every kernel is tested equal to the eager integer definitions bit for bit
(tests/nn/test_fused.py). The library is built like :mod:`axhw.arith.kernels.lut` (same compiler, same cache
folder, ``python -m axhw.arith.kernels`` builds both); ``AXHW_FAST_FORWARD=0`` or a missing compiler leaves
the eager path, which gives the same numbers.
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

__all__ = ["available", "build", "library_path"]

_SOURCE = r"""
#include <stdint.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#if defined(__x86_64__) && defined(__GNUC__) && !defined(AXHW_NO_CLONES)
#include <immintrin.h>
#endif

#define RND 6755399441055744.0 /* 1.5 * 2**52: (v + RND) - RND rounds half to even for |v| < 2**51 */

/* x86-64: an AVX2 clone of each vector loop next to the baseline one, picked at load time (ifunc). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(AXHW_NO_CLONES)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

/* The loops are written for the auto-vectorizer (-O3, baseline SSE2): no calls, no divisions, selects. */

/* codes[i] = sat(rint(x[i] * scale)); returns 1 if any x[i] is NaN. */
CLONES int32_t axhw_quantize(const float *x, int64_t n, double scale, double lo, double hi, int32_t *codes) {
    int32_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        float xi = x[i];
        bad |= (xi != xi);
        double v = (double)xi * scale;
        v = (xi != xi) ? 0.0 : v; /* NaN (reported) -> a valid code: callers may index tables with it */
        v = v < lo ? lo : v;
        v = v > hi ? hi : v;
        codes[i] = (int32_t)((v + RND) - RND); /* no -ffast-math: IEEE keeps this rounding step */
    }
    return bad;
}

/* XOR flips at sorted flat bit positions pos[j] in [offset, offset + n * bits) into the bits-wide stored
   words of codes[0..n) (bit b of word w is position offset + w * bits + b), then sign-extend (signed).
   Starts at pos[j0]; returns the index of the first position at or beyond this array. With a table, also
   re-transforms the flipped words in out (stats[0]: change of the minimum-code count, stats[1]: the
   largest |out| among them). */
int64_t axhw_flip(int32_t *codes, int64_t n, int bits, int is_signed, const int64_t *pos, int64_t npos,
                  int64_t j0, int64_t offset, const float *table, int32_t lo, float *out, int64_t *stats) {
    const int64_t end = offset + n * (int64_t)bits;
    const int64_t mask = ((int64_t)1 << bits) - 1, sign = (int64_t)1 << (bits - 1);
    int64_t j = j0, dmin = 0;
    int32_t m = 0;
    for (; j < npos && pos[j] < end; j++) {
        int64_t p = pos[j] - offset;
        int64_t w = p / bits;
        int32_t old = codes[w];
        int64_t word = ((int64_t)old & mask) ^ ((int64_t)1 << (p - w * bits));
        int32_t c = (int32_t)(is_signed ? (word ^ sign) - sign : word);
        codes[w] = c;
        if (table) { /* keep the transformed copy, its minimum count and its bound in step */
            float t = table[c - lo];
            out[w] = t;
            dmin += (c == lo) - (old == lo);
            int32_t a = (int32_t)fabsf(t);
            m = a > m ? a : m;
        }
    }
    if (stats) {
        stats[0] = dmin;
        stats[1] = m;
    }
    return j;
}

/* out[i] = table[codes[i] - lo] (integer entries below 2**24); returns how many codes equal lo; *maxabs =
   max |out[i]| (0 if n = 0). With AVX2 eight lookups per gather instruction, else a scalar loop. */
static int64_t transform_scalar(const int32_t *codes, int64_t n, int32_t lo, const float *table, float *out,
                                int32_t *maxabs) {
    int64_t nmin = 0;
    int32_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t c = codes[i];
        nmin += (c == lo);
        float t = table[c - lo];
        out[i] = t;
        int32_t a = (int32_t)fabsf(t);
        m = a > m ? a : m;
    }
    *maxabs = m;
    return nmin;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(AXHW_NO_CLONES)
__attribute__((target("avx2"))) static int64_t transform_avx2(const int32_t *codes, int64_t n, int32_t lo,
                                                              const float *table, float *out, int32_t *maxabs) {
    const __m256i vlo = _mm256_set1_epi32(lo);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256i cnt = _mm256_setzero_si256(), vmax = _mm256_setzero_si256();
    int64_t i = 0, nmin = 0;
    for (; i + 8 <= n; i += 8) {
        if ((i & ((1 << 28) - 8)) == 0 && i) { /* flush the 32-bit lane counts well before they could wrap */
            int32_t c8[8];
            _mm256_storeu_si256((__m256i *)c8, cnt);
            for (int j = 0; j < 8; j++) nmin -= c8[j];
            cnt = _mm256_setzero_si256();
        }
        __m256i c = _mm256_loadu_si256((const __m256i *)(codes + i));
        __m256 t = _mm256_i32gather_ps(table, _mm256_sub_epi32(c, vlo), 4);
        _mm256_storeu_ps(out + i, t);
        cnt = _mm256_add_epi32(cnt, _mm256_cmpeq_epi32(c, vlo)); /* -1 per minimum code */
        vmax = _mm256_max_epi32(vmax, _mm256_cvttps_epi32(_mm256_and_ps(t, absmask)));
    }
    int32_t c8[8], m8[8];
    _mm256_storeu_si256((__m256i *)c8, cnt);
    _mm256_storeu_si256((__m256i *)m8, vmax);
    int32_t m = 0;
    for (int j = 0; j < 8; j++) {
        nmin -= c8[j];
        m = m8[j] > m ? m8[j] : m;
    }
    int32_t mt = 0;
    nmin += transform_scalar(codes + i, n - i, lo, table, out + i, &mt);
    *maxabs = mt > m ? mt : m;
    return nmin;
}
#endif

int64_t axhw_transform(const int32_t *codes, int64_t n, int32_t lo, const float *table, float *out,
                       int32_t *maxabs) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(AXHW_NO_CLONES)
    if (__builtin_cpu_supports("avx2")) return transform_avx2(codes, n, lo, table, out, maxabs);
#endif
    return transform_scalar(codes, n, lo, table, out, maxabs);
}

/* Quantize and transform in one pass over x, block by block (the codes stay in L1 unless codes != NULL):
   out = table[sat(rint(x * scale)) - lo]. stats: [0] NaN seen, [1] minimum codes, [2] max |out|. */
void axhw_quantize_transform(const float *x, int64_t n, double scale, double lo, double hi, const float *table,
                             int32_t *codes, float *out, int64_t *stats) {
    int32_t buf[512];
    int64_t nmin = 0;
    int32_t bad = 0, m = 0;
    for (int64_t i = 0; i < n; i += 512) {
        int64_t len = n - i < 512 ? n - i : 512;
        int32_t *c = codes ? codes + i : buf;
        bad |= axhw_quantize(x + i, len, scale, lo, hi, c);
        int32_t mb = 0;
        nmin += axhw_transform(c, len, (int32_t)lo, table, out + i, &mb);
        m = mb > m ? mb : m;
    }
    stats[0] = bad;
    stats[1] = nmin;
    stats[2] = m;
}

/* The checked transform of int64 operands (Multiplier.matmul's inputs): codes outside [lo, hi] are counted
   (returned) and never used as an index; stats[0] = codes equal to lo, stats[1] = max |out|. The flat
   positions of the first `cap` codes equal to lo go to minpos (ascending). */
static int64_t transform64_scalar(const int64_t *codes, int64_t i0, int64_t n, int64_t lo, int64_t hi,
                                  const float *table, float *out, int64_t *nmin_io, int32_t *m_io,
                                  int64_t *minpos, int64_t cap) {
    int64_t bad = 0, nmin = *nmin_io;
    int32_t m = *m_io;
    for (int64_t i = i0; i < n; i++) {
        int64_t c = codes[i];
        int64_t ok = (c >= lo) & (c <= hi);
        bad += 1 - ok;
        if (c == lo) {
            if (nmin < cap) minpos[nmin] = i;
            nmin++;
        }
        float t = table[ok ? c - lo : 0];
        out[i] = t;
        int32_t a = (int32_t)fabsf(t);
        m = a > m ? a : m;
    }
    *nmin_io = nmin;
    *m_io = m;
    return bad;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(AXHW_NO_CLONES)
/* Eight codes per step: range check in 64 bits, narrowed to 32 bits, one gather; a block holding the minimum
   code or a bad one is redone by the scalar loop (positions in order, the same counts). */
__attribute__((target("avx2"))) static int64_t transform64_avx2(const int64_t *codes, int64_t n, int64_t lo,
                                                                int64_t hi, const float *table, float *out,
                                                                int64_t *stats, int64_t *minpos, int64_t cap) {
    const __m256i vlo = _mm256_set1_epi64x(lo - 1), vhi = _mm256_set1_epi64x(hi), vmin = _mm256_set1_epi64x(lo);
    const __m256i lo32 = _mm256_set1_epi32((int32_t)lo);
    const __m256i pick = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256i vmax = _mm256_setzero_si256();
    int64_t bad = 0, nmin = 0, i = 0;
    int32_t m = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i c0 = _mm256_loadu_si256((const __m256i *)(codes + i));
        __m256i c1 = _mm256_loadu_si256((const __m256i *)(codes + i + 4));
        __m256i odd = _mm256_or_si256(
            _mm256_or_si256(_mm256_cmpgt_epi64(c0, vhi), _mm256_cmpgt_epi64(vlo, c0)),
            _mm256_or_si256(_mm256_cmpgt_epi64(c1, vhi), _mm256_cmpgt_epi64(vlo, c1)));
        odd = _mm256_or_si256(odd, _mm256_or_si256(_mm256_cmpeq_epi64(c0, vmin), _mm256_cmpeq_epi64(c1, vmin)));
        if (!_mm256_testz_si256(odd, odd)) {
            bad += transform64_scalar(codes, i, i + 8, lo, hi, table, out, &nmin, &m, minpos, cap);
            continue;
        }
        /* low dwords of the eight int64 codes, in order */
        __m128i l0 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(c0, pick));
        __m128i l1 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(c1, pick));
        __m256i c = _mm256_inserti128_si256(_mm256_castsi128_si256(l0), l1, 1);
        __m256 t = _mm256_i32gather_ps(table, _mm256_sub_epi32(c, lo32), 4);
        _mm256_storeu_ps(out + i, t);
        vmax = _mm256_max_epi32(vmax, _mm256_cvttps_epi32(_mm256_and_ps(t, absmask)));
    }
    int32_t m8[8];
    _mm256_storeu_si256((__m256i *)m8, vmax);
    for (int j = 0; j < 8; j++) m = m8[j] > m ? m8[j] : m;
    bad += transform64_scalar(codes, i, n, lo, hi, table, out, &nmin, &m, minpos, cap);
    stats[0] = nmin;
    stats[1] = m;
    return bad;
}
#endif

int64_t axhw_transform64(const int64_t *codes, int64_t n, int64_t lo, int64_t hi, const float *table,
                         float *out, int64_t *stats, int64_t *minpos, int64_t cap) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(AXHW_NO_CLONES)
    if (__builtin_cpu_supports("avx2") && lo >= INT32_MIN && hi <= INT32_MAX)
        return transform64_avx2(codes, n, lo, hi, table, out, stats, minpos, cap);
#endif
    int64_t bad = 0, nmin = 0;
    int32_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t c = codes[i];
        int64_t ok = (c >= lo) & (c <= hi);
        bad += 1 - ok;
        if (c == lo) {
            if (nmin < cap) minpos[nmin] = i;
            nmin++;
        }
        float t = table[ok ? c - lo : 0];
        out[i] = t;
        int32_t a = (int32_t)fabsf(t);
        m = a > m ? a : m;
    }
    stats[0] = nmin;
    stats[1] = m;
    return bad;
}

/* The (min, min) saturation correction of a separable matmul C = A (M x K) @ B (K x N): out[i, j] += corr
   for every k with A[i, k] = B[k, j] = min, from the ascending flat positions of the minima of A (pa) and
   B (pb). Joins on k through a row index of B: O(na + nb + K + pairs). Returns the number of pairs; when it
   exceeds max_pairs, returns -1 and leaves out untouched (the caller then counts them with a GEMM). */
int64_t axhw_min_pairs(const int64_t *pa, int64_t na, const int64_t *pb, int64_t nb, int64_t K, int64_t N,
                       int64_t corr, int64_t max_pairs, int64_t *out) {
    int64_t *start = (int64_t *)calloc((size_t)K + 1, sizeof(int64_t));
    if (!start) return -2;
    for (int64_t t = 0; t < nb; t++) start[pb[t] / N + 1]++;
    for (int64_t k = 0; k < K; k++) start[k + 1] += start[k];
    int64_t pairs = 0;
    for (int64_t t = 0; t < na; t++) {
        int64_t k = pa[t] % K;
        pairs += start[k + 1] - start[k];
    }
    if (pairs > max_pairs) {
        free(start);
        return -1;
    }
    for (int64_t t = 0; t < na; t++) {
        int64_t i = pa[t] / K, k = pa[t] % K;
        int64_t *row = out + i * N;
        for (int64_t u = start[k]; u < start[k + 1]; u++) row[pb[u] % N] += corr;
    }
    free(start);
    return pairs;
}

/* out[i] = sum of nparts float32 partial sums (exact integers below 2**24 each) as int64. */
CLONES void axhw_sum_parts(const float *p0, const float *p1, const float *p2, const float *p3, int32_t k1,
                           int32_t k2, int32_t k3, int64_t n, int64_t *restrict out) {
    for (int64_t i = 0; i < n; i++)
        out[i] = (int64_t)p0[i] + k1 * (int64_t)p1[i] + k2 * (int64_t)p2[i] + k3 * (int64_t)p3[i];
}

typedef struct {
    double acc_lo, acc_hi, half, inv, out_lo, out_hi, out_scale; /* half = 2**(s-1) (s > 0), inv = 2**-s */
    int32_t has_out, shift;
} axhw_epi;

/* One output: exact integer accumulator v (a double below 2**53) -> dequantized output, live flag. */
static inline double epi_code(double v, const axhw_epi *e) {
    v = v < e->acc_lo ? e->acc_lo : v;
    v = v > e->acc_hi ? e->acc_hi : v;
    if (!e->has_out) return v;
    double c;
    if (e->shift > 0) { /* floor((acc + 2**(s-1)) * 2**-s), the arithmetic shift with round-half-up */
        double t = (v + e->half) * e->inv;
        double r = (t + RND) - RND;
        c = r - (r > t ? 1.0 : 0.0);
    } else if (e->shift < 0) {
        c = v < e->out_lo ? e->out_lo : v;
        c = c > e->out_hi ? e->out_hi : c;
        c = c * e->inv;
    } else c = v;
    c = c < e->out_lo ? e->out_lo : c;
    c = c > e->out_hi ? e->out_hi : c;
    return c;
}

/* Rows [r0, r1) of an output laid out as rows x nch x inner (linear: inner = 1; conv: inner = oh * ow):
   acc = sum of nparts float32 partial sums (+ one double partial sum) + bias[channel], then saturation,
   re-quantization, dequantization (y = code * out_scale) and live = (lo < code < hi) as 1.0 / 0.0 (the
   float mask ClippedSTE multiplies the gradient by). */
void axhw_epilogue(const float *const *parts, int32_t nparts, const double *dpart, int64_t r0, int64_t r1,
                   int64_t nch, int64_t inner, const int32_t *bias, const axhw_epi *e, float *y, float *live) {
    const double lo = e->has_out ? e->out_lo : e->acc_lo, hi = e->has_out ? e->out_hi : e->acc_hi;
    const int64_t row = nch * inner;
    const float *p0 = nparts > 0 ? parts[0] : 0, *p1 = nparts > 1 ? parts[1] : 0;
    for (int64_t r = r0; r < r1; r++) {
        for (int64_t c = 0; c < nch; c++) {
            const int64_t base = r * row + c * inner;
            const double b = bias ? (double)bias[c] : 0.0;
            for (int64_t j = base; j < base + inner; j++) {
                double v = b;
                if (p0) v += (double)p0[j];
                if (p1) v += (double)p1[j];
                for (int32_t p = 2; p < nparts; p++) v += (double)parts[p][j];
                if (dpart) v += dpart[j];
                double code = epi_code(v, e);
                y[j] = (float)(code * e->out_scale);
                if (live) live[j] = (code > lo) & (code < hi) ? 1.0f : 0.0f;
            }
        }
    }
}

/* The common case, vectorized: has_out and shift > 0, up to four float32 parts (p1..p3 weighted by k1..k3,
   0.0 for absent parts, which then point at p0: x * 0.0 = 0 for the finite integers held), bias codes
   given as doubles (exact).
   CHW: layout rows x nch x inner, the inner loop runs over one channel's outputs (conv). */
#define EPI_FAST_BODY(J, B)                                                                      \
    double v = (B) + (double)p0[J] + k1 * (double)p1[J] + k2 * (double)p2[J] + k3 * (double)p3[J]; \
    v = v < acc_lo ? acc_lo : v;                                                                 \
    v = v > acc_hi ? acc_hi : v;                                                                 \
    double t = (v + half) * inv;                                                                 \
    double rr = (t + RND) - RND;                                                                 \
    double c = rr - (rr > t ? 1.0 : 0.0);                                                        \
    c = c < out_lo ? out_lo : c;                                                                 \
    c = c > out_hi ? out_hi : c;                                                                 \
    y[J] = (float)(c * out_scale);                                                               \
    live[J] = (c > out_lo) & (c < out_hi) ? 1.0f : 0.0f;

#define EPI_FAST_ARGS                                                                             \
    const float *p0, const float *p1, const float *p2, const float *p3, double k1, double k2,      \
    double k3, int64_t r0, int64_t r1, int64_t nch, int64_t inner, const double *bias,             \
    double acc_lo, double acc_hi, double half, double inv, double out_lo, double out_hi,           \
    double out_scale, float *restrict y, float *restrict live

/* linear (inner = 1): channels innermost */
CLONES void axhw_epilogue_rows(EPI_FAST_ARGS) {
    for (int64_t r = r0; r < r1; r++) {
        const int64_t o = r * nch;
        for (int64_t j = 0; j < nch; j++) {
            EPI_FAST_BODY(o + j, bias[j])
        }
    }
}

/* conv: rows x nch x inner, the inner loop over one channel's outputs */
CLONES void axhw_epilogue_chw(EPI_FAST_ARGS) {
    for (int64_t r = r0; r < r1; r++) {
        for (int64_t ch = 0; ch < nch; ch++) {
            const int64_t base = (r * nch + ch) * inner;
            const double b = bias[ch];
            for (int64_t j = base; j < base + inner; j++) {
                EPI_FAST_BODY(j, b)
            }
        }
    }
}

/* The common case in int32 lanes (twice the lanes of double): float32 partial sums below 2**24 each, at most
   four, and a bias below 2**26, so every sum stays below 2**31 (the caller checks the bounds). Saturation to
   the accumulator, the round-half-up shift (arithmetic shift right of acc + 2**(s-1)), saturation to the
   output word, dequantization code * 2**-frac (exact in float32 for codes below 2**24), live mask. */
#define EPI_I32_BODY(J, B)                                                                       \
    int32_t v = (B) + (int32_t)p0[J] + k1 * (int32_t)p1[J] + k2 * (int32_t)p2[J] + k3 * (int32_t)p3[J]; \
    v = v < acc_lo ? acc_lo : v;                                                                 \
    v = v > acc_hi ? acc_hi : v;                                                                 \
    int32_t c = (v + half) >> shift;                                                             \
    c = c < out_lo ? out_lo : c;                                                                 \
    c = c > out_hi ? out_hi : c;                                                                 \
    y[J] = (float)c * out_scale;                                                                 \
    live[J] = (c > out_lo) & (c < out_hi) ? 1.0f : 0.0f;

#define EPI_I32_ARGS                                                                              \
    const float *p0, const float *p1, const float *p2, const float *p3, int32_t k1, int32_t k2,    \
    int32_t k3, int64_t r0, int64_t r1, int64_t nch, int64_t inner, const int32_t *bias,           \
    int32_t acc_lo, int32_t acc_hi, int32_t half, int32_t shift, int32_t out_lo, int32_t out_hi,   \
    float out_scale, float *restrict y, float *restrict live

CLONES void axhw_epilogue_i32_rows(EPI_I32_ARGS) {
    for (int64_t r = r0; r < r1; r++) {
        const int64_t o = r * nch;
        for (int64_t j = 0; j < nch; j++) {
            EPI_I32_BODY(o + j, bias[j])
        }
    }
}

CLONES void axhw_epilogue_i32_chw(EPI_I32_ARGS) {
    for (int64_t r = r0; r < r1; r++) {
        for (int64_t ch = 0; ch < nch; ch++) {
            const int64_t base = (r * nch + ch) * inner;
            const int32_t b = bias[ch];
            for (int64_t j = base; j < base + inner; j++) {
                EPI_I32_BODY(j, b)
            }
        }
    }
}

/* The clipped straight-through gradient (nn.ClippedSTE, eq. 12): g * 1{|g| < 1} * live, as the eager
   products (g * m) * l with m, l in {0, 1}: the same value, sign of zero and NaN. */
CLONES void axhw_ste_grad(const float *g, const float *live, int64_t n, float *restrict out) {
    if (live) {
        for (int64_t i = 0; i < n; i++) {
            float m = fabsf(g[i]) < 1.0f ? 1.0f : 0.0f;
            out[i] = (g[i] * m) * live[i];
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            float m = fabsf(g[i]) < 1.0f ? 1.0f : 0.0f;
            out[i] = g[i] * m;
        }
    }
}
"""

#: ``-fno-trapping-math`` lets the vectorizer evaluate both arms of a select (no FP exception is ever
#: observed here); it changes no result: every operation stays IEEE, nothing is reassociated or contracted.
_FLAGS = ("-fno-trapping-math", "-ffp-contract=off")

_lock = threading.Lock()
_state: dict[str, object] = {}


def library_path() -> Path:
    """Where the compiled kernels live (named by a hash of the source and the platform)."""
    return library_path_for(_SOURCE, "hwkernel", _FLAGS)


def build(force: bool = False) -> Path:
    """Compile the kernels into :func:`library_path` (atomic, like :func:`axhw.arith.kernels.lut.build`).

    Raises:
        RuntimeError: no C compiler, or the compile failed.
    """
    try:
        return compile_library(_SOURCE, library_path(), force=force, flags=_FLAGS)
    except RuntimeError:  # a compiler without target_clones: baseline loops only
        return compile_library(_SOURCE, library_path(), force=force, flags=(*_FLAGS, "-DAXHW_NO_CLONES"))


class _Epi(ctypes.Structure):
    _fields_ = [(name, ctypes.c_double) for name in ("acc_lo", "acc_hi", "half", "inv", "out_lo", "out_hi",
                                                    "out_scale")] + [("has_out", ctypes.c_int32),
                                                                     ("shift", ctypes.c_int32)]


def _load() -> ctypes.CDLL | None:
    if "lib" in _state:  # loaded (or refused) once: no lock on the hot path
        return _state["lib"]  # type: ignore[return-value]
    with _lock:
        if "lib" in _state:
            return _state["lib"]  # type: ignore[return-value]
        lib = None
        if os.environ.get("AXHW_FAST_FORWARD", "1") != "0":
            try:
                lib = ctypes.CDLL(str(build()))
            except (OSError, RuntimeError) as exc:
                warnings.warn(f"fused hardware-forward kernels unavailable, using the eager path: {exc}",
                              stacklevel=3)
        if lib is not None:
            i64, i32, dbl, ptr = ctypes.c_int64, ctypes.c_int32, ctypes.c_double, ctypes.c_void_p
            lib.axhw_quantize.argtypes = [ptr, i64, dbl, dbl, dbl, ptr]
            lib.axhw_quantize.restype = i32
            lib.axhw_flip.argtypes = [ptr, i64, i32, i32, ptr, i64, i64, i64, ptr, i32, ptr, ptr]
            lib.axhw_flip.restype = i64
            lib.axhw_transform.argtypes = [ptr, i64, i32, ptr, ptr, ptr]
            lib.axhw_transform.restype = i64
            lib.axhw_quantize_transform.argtypes = [ptr, i64, dbl, dbl, dbl, ptr, ptr, ptr, ptr]
            lib.axhw_quantize_transform.restype = None
            lib.axhw_epilogue.argtypes = [ptr, i32, ptr, i64, i64, i64, i64, ptr, ctypes.POINTER(_Epi), ptr, ptr]
            lib.axhw_epilogue.restype = None
            fast = [ptr] * 4 + [dbl] * 3 + [i64] * 4 + [ptr] + [dbl] * 7 + [ptr, ptr]
            for fn in (lib.axhw_epilogue_rows, lib.axhw_epilogue_chw):
                fn.argtypes = fast
                fn.restype = None
            lanes = [ptr] * 4 + [i32] * 3 + [i64] * 4 + [ptr] + [i32] * 6 + [ctypes.c_float, ptr, ptr]
            for fn in (lib.axhw_epilogue_i32_rows, lib.axhw_epilogue_i32_chw):
                fn.argtypes = lanes
                fn.restype = None
            lib.axhw_transform64.argtypes = [ptr, i64, i64, i64, ptr, ptr, ptr, ptr, i64]
            lib.axhw_transform64.restype = i64
            lib.axhw_min_pairs.argtypes = [ptr, i64, ptr, i64, i64, i64, i64, i64, ptr]
            lib.axhw_min_pairs.restype = i64
            lib.axhw_sum_parts.argtypes = [ptr] * 4 + [i32] * 3 + [i64, ptr]
            lib.axhw_sum_parts.restype = None
            lib.axhw_ste_grad.argtypes = [ptr, ptr, i64, ptr]
            lib.axhw_ste_grad.restype = None
        _state["lib"] = lib
        return lib


def available() -> bool:
    """Whether the fused kernels are compiled and loaded (else the eager path runs)."""
    return _load() is not None


def lib() -> ctypes.CDLL:
    loaded = _load()
    if loaded is None:
        raise RuntimeError("the fused hardware-forward kernels are not available")
    return loaded


#: Below this many elements one thread does a pass (a pool hand-off costs ~50 us).
_PARALLEL_MIN = 1 << 17


def _split(n: int, fn, per: int = 1) -> list:  # type: ignore[no-untyped-def]
    """Run ``fn(i0, i1)`` over ``[0, n)`` (units of ``per`` elements), in parallel blocks when the work is
    large (ctypes releases the GIL); the results in block order."""
    workers = min(torch.get_num_threads(), n, max(1, n * per // _PARALLEL_MIN))
    if workers <= 1:
        return [fn(0, n)]
    bounds = [n * i // workers for i in range(workers + 1)]
    futures = [pool(workers).submit(fn, a, b) for a, b in itertools.pairwise(bounds) if b > a]
    return [f.result() for f in futures]


def quantize(x: torch.Tensor, frac: int, lo: int, hi: int) -> tuple[torch.Tensor, bool]:
    """int32 codes ``sat(round_half_even(x * 2**frac))`` of contiguous float32 ``x``; True if ``x`` holds a NaN."""
    k = lib()
    codes = torch.empty(x.shape, dtype=torch.int32)
    xp, cp, scale = x.data_ptr(), codes.data_ptr(), 2.0**frac
    bad = _split(x.numel(), lambda a, b: k.axhw_quantize(xp + 4 * a, b - a, scale, float(lo), float(hi), cp + 4 * a))
    return codes, any(bad)


def transform(codes: torch.Tensor, lo: int, table: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """``table[codes - lo]`` as float32 (``table``: float32 integers, contiguous), how many codes equal
    ``lo``, and the largest ``|table[codes - lo]|`` (a data bound that proves GEMM exactness)."""
    k = lib()
    out = torch.empty(codes.shape, dtype=torch.float32)
    cp, op, tp = codes.data_ptr(), out.data_ptr(), table.data_ptr()

    def run(a: int, b: int) -> tuple[int, float]:
        m = ctypes.c_int32(0)
        return k.axhw_transform(cp + 4 * a, b - a, lo, tp, op + 4 * a, ctypes.byref(m)), m.value

    res = _split(codes.numel(), run)
    return out, sum(r[0] for r in res), int(max(r[1] for r in res))


def flip(codes: torch.Tensor, bits: int, pos: torch.Tensor, start: int, offset: int,
         transformed: tuple[torch.Tensor, torch.Tensor, int] | None = None) -> tuple[int, int, int]:
    """XOR the flipped bits ``pos[start:]`` that fall in ``[offset, offset + codes.numel() * bits)`` into
    the ``bits``-bit two's-complement words of int32 ``codes`` (in place). ``transformed``: ``(out, table,
    lo)`` whose ``out = table[codes - lo]`` is kept in step. Returns (index after the last position used,
    change of the count of codes equal to ``lo``, largest ``|out|`` among the flipped words)."""
    st = (ctypes.c_int64 * 2)()
    out, table, lo = transformed if transformed is not None else (None, None, 0)
    j = lib().axhw_flip(codes.data_ptr(), codes.numel(), bits, 1, pos.data_ptr(), pos.numel(), start, offset,
                        None if table is None else table.data_ptr(), lo, None if out is None else out.data_ptr(), st)
    return int(j), int(st[0]), int(st[1])


def quantize_transform(x: torch.Tensor, frac: int, lo: int, hi: int, table: torch.Tensor,
                       keep_codes: bool) -> tuple[torch.Tensor | None, torch.Tensor, bool, int, int]:
    """:func:`quantize` and :func:`transform` in one pass: (int32 codes if ``keep_codes``, transformed
    float32, NaN seen, count of codes equal to ``lo``, largest ``|table|`` used)."""
    k = lib()
    codes = torch.empty(x.shape, dtype=torch.int32) if keep_codes else None
    out = torch.empty(x.shape, dtype=torch.float32)
    xp, op, tp, scale = x.data_ptr(), out.data_ptr(), table.data_ptr(), 2.0**frac
    cp = None if codes is None else codes.data_ptr()

    def run(a: int, b: int) -> tuple[int, int, int]:
        st = (ctypes.c_int64 * 3)()
        k.axhw_quantize_transform(xp + 4 * a, b - a, scale, float(lo), float(hi), tp,
                                  None if cp is None else cp + 4 * a, op + 4 * a, st)
        return st[0], st[1], st[2]

    res = _split(x.numel(), run)
    return codes, out, any(r[0] for r in res), sum(r[1] for r in res), max(r[2] for r in res)


def epilogue(parts: list[torch.Tensor], dpart: torch.Tensor | None, bias: torch.Tensor, nch: int, inner: int,
             acc: tuple[int, int], out: tuple[int, int] | None, shift: int, frac: int,
             live: bool, bias_bound: int = 1 << 62) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Dequantized layer output and float 0/1 live mask from exact partial sums (float32 ``parts``, float64
    ``dpart``, each laid out rows x ``nch`` x ``inner``) and int32 ``bias`` codes per channel: saturation to
    ``acc``, re-quantization by ``shift`` to ``out`` (None: the accumulator is the output), times
    ``2**-frac``. ``bias_bound``: a proven bound on ``|bias|`` (from its format)."""
    k = lib()
    ref = parts[0] if parts else dpart
    assert ref is not None
    y = torch.empty(ref.shape, dtype=torch.float32)
    mask = torch.empty(ref.shape, dtype=torch.float32)
    rows = ref.numel() // (nch * inner)
    yp, mp = y.data_ptr(), mask.data_ptr()
    fast = out is not None and 0 < shift <= 30 and dpart is None and 1 <= len(parts) <= 4
    if fast and bias_bound < (1 << 26) and max(abs(out[0]), abs(out[1])) < (1 << 24):  # type: ignore[index]
        # int32 lanes: every partial sum < 2**24, so the total < 4 * 2**24 + 2**26 < 2**31
        assert out is not None
        ptrs = [p.data_ptr() for p in parts]
        ks = [1 if i < len(ptrs) else 0 for i in range(1, 4)]
        ptrs += [ptrs[0]] * (4 - len(ptrs))
        fn = k.axhw_epilogue_i32_rows if inner == 1 else k.axhw_epilogue_i32_chw
        i32_lo, i32_hi = -(1 << 31), (1 << 31) - 1
        args = (bias.data_ptr(), max(acc[0], i32_lo), min(acc[1], i32_hi), 1 << (shift - 1), shift,
                out[0], out[1], 2.0**-frac, yp, mp)
        _split(rows, lambda r0, r1: fn(*ptrs, *ks, r0, r1, nch, inner, *args), per=nch * inner)
    elif fast:  # doubles: exact for any partial sums and codes below 2**53
        assert out is not None
        ptrs = [p.data_ptr() for p in parts]
        ks2 = [1.0 if i < len(ptrs) else 0.0 for i in range(1, 4)]
        ptrs += [ptrs[0]] * (4 - len(ptrs))
        fn = k.axhw_epilogue_rows if inner == 1 else k.axhw_epilogue_chw
        b = bias.to(torch.float64)
        args2 = (b.data_ptr(), float(acc[0]), float(acc[1]), float(1 << (shift - 1)), 2.0**-shift,
                 float(out[0]), float(out[1]), 2.0**-frac, yp, mp)
        _split(rows, lambda r0, r1: fn(*ptrs, *ks2, r0, r1, nch, inner, *args2), per=nch * inner)
    else:
        e = _Epi(acc_lo=acc[0], acc_hi=acc[1], half=float(1 << (shift - 1)) if shift > 0 else 0.0,
                 inv=2.0**-shift, out_lo=out[0] if out else 0.0, out_hi=out[1] if out else 0.0,
                 out_scale=2.0**-frac, has_out=int(out is not None), shift=shift if out is not None else 0)
        arr = (ctypes.c_void_p * max(1, len(parts)))(*[p.data_ptr() for p in parts])
        dp = None if dpart is None else dpart.data_ptr()
        bp = bias.data_ptr()
        _split(rows, lambda r0, r1: k.axhw_epilogue(arr, len(parts), dp, r0, r1, nch, inner, bp, ctypes.byref(e),
                                                      yp, mp), per=nch * inner)
    return y, (mask if live else None)


def ste_grad(grad: torch.Tensor, live: torch.Tensor | None) -> torch.Tensor:
    """``grad * 1{|grad| < 1} * live`` (float32 contiguous ``grad``, float 0/1 ``live`` or None), computed
    as :class:`axhw.nn.ClippedSTE`'s products."""
    k = lib()
    out = torch.empty_like(grad)
    gp, op = grad.data_ptr(), out.data_ptr()
    lp = None if live is None else live.data_ptr()
    _split(grad.numel(), lambda a, b: k.axhw_ste_grad(gp + 4 * a, None if lp is None else lp + 4 * a, b - a,
                                                        op + 4 * a))
    return out


def transform64(codes: torch.Tensor, lo: int, hi: int, table: torch.Tensor,
                min_positions: int = 0) -> tuple[torch.Tensor, int, int, int, torch.Tensor | None]:
    """``table[codes - lo]`` (float32) of contiguous int64 ``codes``: (transformed, count outside
    ``[lo, hi]``, count equal to ``lo``, largest ``|table|`` used, the ascending flat positions of the codes
    equal to ``lo`` when there are at most ``min_positions`` of them, else None). Out-of-range codes are
    never looked up. One pass (positions are only recorded in order, so no split across threads)."""
    k = lib()
    out = torch.empty(codes.shape, dtype=torch.float32)
    pos = torch.empty(min_positions, dtype=torch.int64)
    st = (ctypes.c_int64 * 2)()
    bad = k.axhw_transform64(codes.data_ptr(), codes.numel(), lo, hi, table.data_ptr(), out.data_ptr(), st,
                             pos.data_ptr(), min_positions)
    nmin = int(st[0])
    return out, int(bad), nmin, int(st[1]), (pos[:nmin] if nmin <= min_positions else None)


def min_pairs(out: torch.Tensor, pos_a: torch.Tensor, pos_b: torch.Tensor, k: int, corr: int,
              max_pairs: int) -> bool:
    """Add ``corr`` to ``out`` (contiguous int64, M x N) once per (min, min) pair given the flat positions of
    the minima of A (M x ``k``) and B (``k`` x N); False (``out`` untouched) if there are more than
    ``max_pairs`` pairs."""
    r = lib().axhw_min_pairs(pos_a.data_ptr(), pos_a.numel(), pos_b.data_ptr(), pos_b.numel(), k,
                             out.shape[1], corr, max_pairs, out.data_ptr())
    if r == -2:  # pragma: no cover - calloc failed
        raise MemoryError("min_pairs: out of memory")
    return r >= 0


def sum_parts(parts: list[torch.Tensor]) -> torch.Tensor:
    """The int64 sum of 1-4 float32 tensors of one shape holding integers below 2**24."""
    k = lib()
    out = torch.empty(parts[0].shape, dtype=torch.int64)
    ptrs = [p.data_ptr() for p in parts]
    ks = [1 if i < len(ptrs) else 0 for i in range(1, 4)]
    ptrs += [ptrs[0]] * (4 - len(ptrs))
    op = out.data_ptr()
    _split(out.numel(), lambda a, b: k.axhw_sum_parts(*[p + 4 * a for p in ptrs], *ks, b - a, op + 8 * a))
    return out
