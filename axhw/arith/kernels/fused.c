/* fused.c: the elementwise passes of the fused hardware forward behind axhw.arith.kernels.fused (the module
   docstring there explains them and why they are exact). Exported functions are declared in fused.h, the
   one source of their ctypes signatures; build.py compiles this file with -Wall -Wextra -Wconversion
   -Werror, -fno-trapping-math -ffp-contract=off, and -DAXHW_NO_CLONES where target_clones is missing. */
#include "fused.h"

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
    int64_t nmin = 0;
    int32_t m = 0;
    int64_t bad = transform64_scalar(codes, 0, n, lo, hi, table, out, &nmin, &m, minpos, cap);
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

/* axhw_epi (fused.h): half = 2**(s-1) (s > 0), inv = 2**-s for the re-quantization shift s. */

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
    (void)inner; /* 1 here; the parameter keeps one signature for both layouts */
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
    (void)inner; /* 1 here; the parameter keeps one signature for both layouts */
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
