/* lut.c: the product-table matmul C[m, n] = sum_k T[a[m, k], b[k, n]] behind axhw.arith.kernels.lut (the
   module docstring there explains the kernels). Exported functions are declared in lut.h, the one source
   of their ctypes signatures; build.py compiles this file with -Wall -Wextra -Wconversion -Werror. */
#include "lut.h"

#include <stdint.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#define AXHW_OMP(directive) _Pragma(#directive)
#else
#define AXHW_OMP(directive) /* built without OpenMP (a compiler that refuses -fopenmp): one thread */
#endif

/* Scalar kernel, any table width (see lut.h). */
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

/* 1 if this build runs its team function on OpenMP threads (see lut.h). */
int axhw_lut_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* 1 if every element of a strided int64 matrix lies in [lo, hi] (see lut.h). */
int axhw_lut_in_range(const int64_t *x, int64_t rows, int64_t cols, int64_t rs, int64_t cs, int64_t lo,
                      int64_t hi) {
    int ok = 1;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) {
            int64_t v = x[i * rs + j * cs];
            ok &= (v >= lo) & (v <= hi);
        }
    return ok;
}

/* -DAXHW_NO_AVX512 compiles the portable branch (no AVX-512 and no AVX2 kernel) on x86-64 too (the tests check
   its signatures there). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(AXHW_NO_AVX512)
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

/* AVX2 kernel (x86-64 CPUs without AVX-512, see lut.h). Two steps per block of AXHW_KB terms k and 32 columns:
   1. expand: G[kk][u][j] = T[u][b[k0 + kk][n0 + j]] for the 256 words u, from the transposed table TT (row
      TT[v] is column v of T): 16 rows TT[b[k][n]] are loaded and transposed in registers, 16 x 8 at a time
      (48 unpacks per 256 entries, no gathers: AVX2 gathers run at ~2 entries per cycle). Blocks of 8 words
      that no row m holds in column k are skipped (blocks, from axhw_lut_word_blocks). Measured, this step is
      bound by its loads and stores (without the unpacks it takes 0.9x the time).
   2. accumulate: for every row m, acc += G[kk][a[m][k0 + kk]][0:32], plain 16-byte loads widened to int32.
   The expansion costs 256 x 32 entries per (k, tile) and is shared by all rows, so the kernel pays off when
   M is not small; lut.py sends small matmuls to the scalar kernel. Per row, 32 int32 partial sums are kept
   across blocks and added into the int64 output every kblock terms. AXHW_KB = 8 keeps G at 128 KiB, in L2
   beside P (measured interleaved on a Zen 3 EPYC: 8 was 0.74x the time of 16 and 0.88x that of 4).
   Operands are read as the caller's int64 values through strides (the word is value & mask), the output is
   written through strides, and axhw_lut_in_range checks the operands, so the caller runs no torch operation
   just before the kernel: one would leave torch's OpenMP threads spinning (libgomp's GOMP_SPINCOUNT) on the
   cores the kernel's threads need. Measured on the 2-core machine, interleaved: a parallel torch op before
   the call added about 1 ms to a 4 ms matmul (none with GOMP_SPINCOUNT=0), and bench_matmul's table/exact
   ratio went from 4.8-5.8x to 3.9-4.5x when the operand checks moved here. The threads themselves are
   torch's OpenMP team (axhw_lut_mm16_avx2_team): 3.3-3.5x. */
#define AXHW_KB 8
#define AXHW_AVX2 __attribute__((target("avx2")))

int axhw_lut_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}

/* Which blocks of 8 words occur in each column of rows [m_begin, m_end) of a (see lut.h). */
void axhw_lut_word_blocks(const axhw_lut_job *job, int64_t m_begin, int64_t m_end, int32_t *blocks) {
    uint32_t *restrict bits = (uint32_t *)blocks;
    const int64_t *restrict a = job->a;
    for (int64_t k = 0; k < job->K; k++) bits[k] = 0;
    for (int64_t m = m_begin; m < m_end; m++)
        for (int64_t k = 0; k < job->K; k++)
            bits[k] |= 1u << (((uint64_t)a[m * job->a_rs + k * job->a_cs] & (uint64_t)job->mask) >> 3);
}

/* In-lane 8 x 8 transpose of int16 words: r[i] = [row i, 8 words | row i + 8, the same 8 words] for i < 8; on
   return w[j] = [column j of rows 0-7 | column j of rows 8-15], a whole column of 16 rows. Unpacks pair rows
   (16-bit), then row pairs (32-bit), then row quads (64-bit); no lane crosses, as the loads put rows 8-15 in
   the upper lanes (vinserti128 from memory is cheaper than the cross-lane permutes a 16 x 16 transpose needs). */
AXHW_AVX2 static inline void axhw_tr8x2(const __m256i r[8], __m256i w[8]) {
    __m256i s[8], t[8];
    for (int p = 0; p < 4; p++) {
        s[2 * p] = _mm256_unpacklo_epi16(r[2 * p], r[2 * p + 1]);
        s[2 * p + 1] = _mm256_unpackhi_epi16(r[2 * p], r[2 * p + 1]);
    }
    for (int q = 0; q < 2; q++) {
        t[4 * q] = _mm256_unpacklo_epi32(s[4 * q], s[4 * q + 2]);
        t[4 * q + 1] = _mm256_unpackhi_epi32(s[4 * q], s[4 * q + 2]);
        t[4 * q + 2] = _mm256_unpacklo_epi32(s[4 * q + 1], s[4 * q + 3]);
        t[4 * q + 3] = _mm256_unpackhi_epi32(s[4 * q + 1], s[4 * q + 3]);
    }
    for (int c = 0; c < 4; c++) {
        w[2 * c] = _mm256_unpacklo_epi64(t[c], t[4 + c]);
        w[2 * c + 1] = _mm256_unpackhi_epi64(t[c], t[4 + c]);
    }
}

AXHW_AVX2 static inline __m256i axhw_widen(__m128i v, int sign) {
    return sign ? _mm256_cvtepi16_epi32(v) : _mm256_cvtepu16_epi32(v);
}

/* Adds the int32 partial sums P (rows [m_begin, m_end), 32 columns from n0, of which nt are real) into c and
   clears them. */
static void axhw_flush32(const axhw_lut_job *job, int32_t *P, int64_t m_begin, int64_t m_end, int64_t n0,
                         int64_t nt) {
    for (int64_t m = m_begin; m < m_end; m++) {
        int32_t *pm = P + (m - m_begin) * 32;
        for (int64_t j = 0; j < nt; j++) job->c[m * job->c_rs + (n0 + j) * job->c_cs] += pm[j];
        for (int j = 0; j < 32; j++) pm[j] = 0;
    }
}

AXHW_AVX2 static void axhw_avx2_tiles(const axhw_lut_job *job, const int32_t *blocks, int16_t *G, int32_t *P,
                                      int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end, int sign) {
    const int64_t K = job->K;
    for (int64_t m = m_begin; m < m_end; m++)
        for (int64_t n = n_begin; n < n_end; n++) job->c[m * job->c_rs + n * job->c_cs] = 0;
    for (int64_t i = 0; i < (m_end - m_begin) * 32; i++) P[i] = 0;
    for (int64_t n0 = n_begin; n0 < n_end; n0 += 32) {
        const int64_t nt = n_end - n0 < 32 ? n_end - n0 : 32; /* real columns; the others look up word 0 */
        int64_t pending = 0;                                  /* terms in P */
        for (int64_t k0 = 0; k0 < K; k0 += AXHW_KB) {
            int64_t kb = K - k0 < AXHW_KB ? K - k0 : AXHW_KB;
            if (pending + kb > job->kblock) {
                axhw_flush32(job, P, m_begin, m_end, n0, nt);
                pending = 0;
            }
            pending += kb;
            for (int64_t kk = 0; kk < kb; kk++) {
                const int64_t *bk = job->b + (k0 + kk) * job->b_rs;
                int16_t *g = G + kk * 256 * 32;
                const uint32_t present = (uint32_t)blocks[k0 + kk];
                for (int half = 0; half < 2; half++) {
                    const int16_t *src[16];
                    for (int i = 0; i < 16; i++) {
                        int64_t j = 16 * half + i;
                        int64_t v = j < nt ? bk[(n0 + j) * job->b_cs] & job->mask : 0;
                        src[i] = job->tt + (v << 8);
                    }
                    for (int u0 = 0; u0 < 256; u0 += 8) {
                        if (!((present >> (u0 >> 3)) & 1u)) continue; /* no row m reads these 8 rows of G */
                        __m256i r[8], w[8];
                        for (int i = 0; i < 8; i++)
                            r[i] = _mm256_inserti128_si256(
                                _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(src[i] + u0))),
                                _mm_loadu_si128((const __m128i *)(src[i + 8] + u0)), 1);
                        axhw_tr8x2(r, w);
                        for (int j = 0; j < 8; j++)
                            _mm256_storeu_si256((__m256i *)(g + (u0 + j) * 32 + 16 * half), w[j]);
                    }
                }
            }
            for (int64_t m = m_begin; m < m_end; m++) {
                const int64_t *am = job->a + m * job->a_rs + k0 * job->a_cs;
                __m256i acc0 = _mm256_setzero_si256(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
                for (int64_t kk = 0; kk < kb; kk++) {
                    const int16_t *g = G + kk * 256 * 32 + (am[kk * job->a_cs] & job->mask) * 32;
                    acc0 = _mm256_add_epi32(acc0, axhw_widen(_mm_loadu_si128((const __m128i *)g), sign));
                    acc1 = _mm256_add_epi32(acc1, axhw_widen(_mm_loadu_si128((const __m128i *)(g + 8)), sign));
                    acc2 = _mm256_add_epi32(acc2, axhw_widen(_mm_loadu_si128((const __m128i *)(g + 16)), sign));
                    acc3 = _mm256_add_epi32(acc3, axhw_widen(_mm_loadu_si128((const __m128i *)(g + 24)), sign));
                }
                __m256i *pm = (__m256i *)(P + (m - m_begin) * 32);
                _mm256_storeu_si256(pm, _mm256_add_epi32(_mm256_loadu_si256(pm), acc0));
                _mm256_storeu_si256(pm + 1, _mm256_add_epi32(_mm256_loadu_si256(pm + 1), acc1));
                _mm256_storeu_si256(pm + 2, _mm256_add_epi32(_mm256_loadu_si256(pm + 2), acc2));
                _mm256_storeu_si256(pm + 3, _mm256_add_epi32(_mm256_loadu_si256(pm + 3), acc3));
            }
        }
        axhw_flush32(job, P, m_begin, m_end, n0, nt);
    }
}

AXHW_AVX2 void axhw_lut_mm16_avx2(const axhw_lut_job *job, const int32_t *blocks, int16_t *G, int32_t *P,
                                  int64_t m_begin, int64_t m_end, int64_t n_begin, int64_t n_end) {
    if (job->sign) axhw_avx2_tiles(job, blocks, G, P, m_begin, m_end, n_begin, n_end, 1);
    else axhw_avx2_tiles(job, blocks, G, P, m_begin, m_end, n_begin, n_end, 0);
}

/* The whole of C on nthreads threads of the OpenMP team (see lut.h): the column tiles split over the threads,
   or the rows where there are fewer tiles than threads (each thread then finds its own rows' word blocks). */
int axhw_lut_mm16_avx2_team(const axhw_lut_job *job, int nthreads) {
    const int64_t tiles = (job->N + 31) / 32;
    const int by_tiles = tiles >= nthreads;
    int32_t *shared = by_tiles ? malloc((size_t)(job->K > 0 ? job->K : 1) * sizeof(int32_t)) : NULL;
    int failed = by_tiles && shared == NULL;
    if (failed) return -1;
    if (by_tiles) axhw_lut_word_blocks(job, 0, job->M, shared);
    AXHW_OMP(omp parallel num_threads(nthreads) reduction(| : failed))
    {
#ifdef _OPENMP
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
        const int64_t t = 0, nt = 1;
#endif
        int64_t r0 = 0, r1 = job->M, c0 = 0, c1 = job->N;
        if (by_tiles) {
            c0 = tiles * t / nt * 32;
            c1 = tiles * (t + 1) / nt * 32;
            c1 = c1 < job->N ? c1 : job->N;
        } else {
            r0 = job->M * t / nt;
            r1 = job->M * (t + 1) / nt;
        }
        int16_t *G = malloc((size_t)AXHW_KB * 256 * 32 * sizeof(int16_t));
        int32_t *P = malloc((size_t)((r1 - r0) > 0 ? r1 - r0 : 1) * 32 * sizeof(int32_t));
        int32_t *own = by_tiles ? NULL : malloc((size_t)(job->K > 0 ? job->K : 1) * sizeof(int32_t));
        if (G == NULL || P == NULL || (!by_tiles && own == NULL)) {
            failed = 1;
        } else if (r1 > r0 && c1 > c0) {
            if (!by_tiles) axhw_lut_word_blocks(job, r0, r1, own);
            axhw_lut_mm16_avx2(job, by_tiles ? shared : own, G, P, r0, r1, c0, c1);
        }
        free(G);
        free(P);
        free(own);
    }
    free(shared);
    return failed ? -1 : 0;
}
#else
int axhw_lut_avx512(void) { return 0; }
void axhw_lut_mm16(const int16_t *T, const int32_t *a, const int16_t *b, int64_t *c,
                   int64_t M, int64_t K, int64_t Np, int64_t kblock, int sign) {
    (void)T; (void)a; (void)b; (void)c; (void)M; (void)K; (void)Np; (void)kblock; (void)sign;
}
int axhw_lut_avx2(void) { return 0; }
void axhw_lut_word_blocks(const axhw_lut_job *job, int64_t m_begin, int64_t m_end, int32_t *blocks) {
    (void)job; (void)m_begin; (void)m_end; (void)blocks;
}
void axhw_lut_mm16_avx2(const axhw_lut_job *job, const int32_t *blocks, int16_t *G, int32_t *P, int64_t m_begin,
                        int64_t m_end, int64_t n_begin, int64_t n_end) {
    (void)job; (void)blocks; (void)G; (void)P; (void)m_begin; (void)m_end; (void)n_begin; (void)n_end;
}
int axhw_lut_mm16_avx2_team(const axhw_lut_job *job, int nthreads) {
    (void)job; (void)nthreads;
    return -1;
}
#endif
