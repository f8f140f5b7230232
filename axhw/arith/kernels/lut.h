/* lut.h: the exported functions of lut.c, the single declaration of their ABI.

   lut.c includes this file (the compiler, with -Werror -Wmissing-prototypes, checks every definition against
   it and refuses an exported function declared nowhere), and axhw/arith/kernels/build.py parses it into the
   ctypes signatures (argtypes, restype) that lut.py calls through, so the two can never disagree.

   The parser is strict: a prototype is `RET axhw_NAME(TYPE NAME, ...);` (it may span lines), with types from
   its table (int64_t, int32_t, int16_t, int, double, float, void, pointers to them, structs typedef'd here);
   comments and the include guard are the only other text. See build.parse_header. */
#ifndef AXHW_LUT_H
#define AXHW_LUT_H

#include <stdint.h>

/* Scalar kernel, any table width: T is side x side int32, a holds row offsets (word * side), b words. */
void axhw_lut_mm32(const int32_t *T, const int32_t *a, const int32_t *b, int64_t *c, int64_t M, int64_t K,
                   int64_t N, int64_t kblock);

/* 1 if the CPU runs axhw_lut_mm16 (x86-64 with AVX-512F and AVX-512BW), else 0. */
int axhw_lut_avx512(void);

/* AVX-512 kernel, tables of at most 8-bit operands: T is 256 x 256 int16, a holds words, b is K x Np int16
   words with Np a multiple of 32; sign: 1 sign-extends the table entries, 0 zero-extends them. */
void axhw_lut_mm16(const int16_t *T, const int32_t *a, const int16_t *b, int64_t *c, int64_t M, int64_t K,
                   int64_t Np, int64_t kblock, int sign);

/* 1 if the CPU runs axhw_lut_mm16_avx2 (x86-64 with AVX2), else 0. */
int axhw_lut_avx2(void);

/* 1 if every element x[i * rs + j * cs] (i < rows, j < cols) lies in [lo, hi], else 0: the operand check of
   the AVX2 path, without a torch operation before the kernel. */
int axhw_lut_in_range(const int64_t *x, int64_t rows, int64_t cols, int64_t rs, int64_t cs, int64_t lo,
                      int64_t hi);

/* One AVX2 table matmul C = A (x) B: operand values (int64; the word of a value is value & mask, mask at most
   255) and the int64 output are read and written through strides, element (i, j) of X at X[i * x_rs +
   j * x_cs]; A is M x K, B is K x N, C is M x N. tt is the transposed 256 x 256 int16 table
   (tt[v * 256 + u] = T[u][v]; uint16 bit patterns where sign is 0); kblock (at least 8) and sign as for
   axhw_lut_mm16. */
typedef struct {
    const int16_t *tt;
    const int64_t *a;
    const int64_t *b;
    int64_t *c;
    int64_t a_rs, a_cs, b_rs, b_cs, c_rs, c_cs, M, K, N, kblock, mask;
    int32_t sign;
} axhw_lut_job;

/* Bit j of blocks[k] (as uint32) is set when a word of column k of rows [m_begin, m_end) of A lies in
   [8j, 8j + 8): the AVX2 kernel expands only those blocks of table rows. */
void axhw_lut_word_blocks(const axhw_lut_job *job, int64_t m_begin, int64_t m_end, int32_t *blocks);

/* AVX2 kernel, tables of at most 8-bit operands: computes rows [m_begin, m_end) x columns [n_begin, n_end) of C
   (n_begin a multiple of 32), with blocks from axhw_lut_word_blocks over at least those rows. Scratch, one
   pair per thread: G holds 8 * 256 * 32 int16, P holds (m_end - m_begin) * 32 int32. */
void axhw_lut_mm16_avx2(const axhw_lut_job *job, const int32_t *blocks, int16_t *G, int32_t *P, int64_t m_begin,
                        int64_t m_end, int64_t n_begin, int64_t n_end);

/* The whole AVX2 matmul on nthreads threads of the OpenMP team, scratch allocated here; 0, or -1 when memory
   ran out. Built with -fopenmp, the library binds to the process's libgomp by its soname: torch's own, so
   the kernel runs on the very threads torch's operations use (and leave spinning) instead of competing with
   them for the cores. */
int axhw_lut_mm16_avx2_team(const axhw_lut_job *job, int nthreads);

/* 1 if the library was built with OpenMP (else the team function runs on one thread). */
int axhw_lut_openmp(void);

#endif
