/* lut.c: the product-table matmul C[m, n] = sum_k T[a[m, k], b[k, n]] behind axhw.arith.kernels.lut (the
   module docstring there explains the kernels). Exported functions are declared in lut.h, the one source
   of their ctypes signatures; build.py compiles this file with -Wall -Wextra -Wconversion -Werror. */
#include "lut.h"

#include <stdint.h>

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

/* -DAXHW_NO_AVX512 compiles the portable branch on x86-64 too (the tests check its signatures there). */
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
#else
int axhw_lut_avx512(void) { return 0; }
void axhw_lut_mm16(const int16_t *T, const int32_t *a, const int16_t *b, int64_t *c,
                   int64_t M, int64_t K, int64_t Np, int64_t kblock, int sign) {
    (void)T; (void)a; (void)b; (void)c; (void)M; (void)K; (void)Np; (void)kblock; (void)sign;
}
#endif
