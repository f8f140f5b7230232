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

#endif
