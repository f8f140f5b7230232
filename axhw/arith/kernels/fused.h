/* fused.h: the exported functions of fused.c, the single declaration of their ABI.

   fused.c includes this file (the compiler, with -Werror -Wmissing-prototypes, checks every definition
   against it and refuses an exported function declared nowhere), and axhw/arith/kernels/build.py parses it
   into the ctypes signatures (argtypes, restype) and the ctypes Structure of axhw_epi that fused.py calls
   through, so the two can never disagree.

   The parser is strict: a prototype is `RET axhw_NAME(TYPE NAME, ...);` (it may span lines), a struct is
   `typedef struct { TYPE NAME, NAME; ... } NAME;`, with types from its table (int64_t, int32_t, int16_t,
   int, double, float, void, pointers to them, structs typedef'd here); comments and the include guard are
   the only other text. See build.parse_header; the definitions are described in fused.c. */
#ifndef AXHW_FUSED_H
#define AXHW_FUSED_H

#include <stdint.h>

/* The general epilogue's constants: half = 2**(s-1) (s > 0), inv = 2**-s for the re-quantization shift s. */
typedef struct {
    double acc_lo, acc_hi, half, inv, out_lo, out_hi, out_scale;
    int32_t has_out, shift;
} axhw_epi;

/* codes[i] = sat(rint(x[i] * scale)); returns 1 if any x[i] is NaN. */
int32_t axhw_quantize(const float *x, int64_t n, double scale, double lo, double hi, int32_t *codes);

/* XOR sorted flat bit flips pos[j0..npos) into bits-wide words; returns the index of the first position
   beyond this array (stats: change of the minimum-code count, largest |out| re-transformed). */
int64_t axhw_flip(int32_t *codes, int64_t n, int bits, int is_signed, const int64_t *pos, int64_t npos,
                  int64_t j0, int64_t offset, const float *table, int32_t lo, float *out, int64_t *stats);

/* out[i] = table[codes[i] - lo]; returns how many codes equal lo; *maxabs = max |out[i]|. */
int64_t axhw_transform(const int32_t *codes, int64_t n, int32_t lo, const float *table, float *out,
                       int32_t *maxabs);

/* Quantize and transform in one pass. stats: [0] NaN seen, [1] minimum codes, [2] max |out|. */
void axhw_quantize_transform(const float *x, int64_t n, double scale, double lo, double hi, const float *table,
                             int32_t *codes, float *out, int64_t *stats);

/* The range-checked transform of int64 codes; returns the count outside [lo, hi]. */
int64_t axhw_transform64(const int64_t *codes, int64_t n, int64_t lo, int64_t hi, const float *table,
                         float *out, int64_t *stats, int64_t *minpos, int64_t cap);

/* The (min, min) saturation correction as a sparse join; returns the pair count, -1 past max_pairs, -2 on
   out of memory. */
int64_t axhw_min_pairs(const int64_t *pa, int64_t na, const int64_t *pb, int64_t nb, int64_t K, int64_t N,
                       int64_t corr, int64_t max_pairs, int64_t *out);

/* out[i] = p0[i] + k1 * p1[i] + k2 * p2[i] + k3 * p3[i] as int64. */
void axhw_sum_parts(const float *p0, const float *p1, const float *p2, const float *p3, int32_t k1, int32_t k2,
                    int32_t k3, int64_t n, int64_t *restrict out);

/* The general epilogue: rows [r0, r1) of rows x nch x inner outputs and live masks. */
void axhw_epilogue(const float *const *parts, int32_t nparts, const double *dpart, int64_t r0, int64_t r1,
                   int64_t nch, int64_t inner, const int32_t *bias, const axhw_epi *e, float *y, float *live);

/* The vectorized epilogue in doubles: linear (inner = 1) and conv (rows x nch x inner) layouts. */
void axhw_epilogue_rows(const float *p0, const float *p1, const float *p2, const float *p3, double k1,
                        double k2, double k3, int64_t r0, int64_t r1, int64_t nch, int64_t inner,
                        const double *bias, double acc_lo, double acc_hi, double half, double inv,
                        double out_lo, double out_hi, double out_scale, float *restrict y,
                        float *restrict live);
void axhw_epilogue_chw(const float *p0, const float *p1, const float *p2, const float *p3, double k1,
                       double k2, double k3, int64_t r0, int64_t r1, int64_t nch, int64_t inner,
                       const double *bias, double acc_lo, double acc_hi, double half, double inv,
                       double out_lo, double out_hi, double out_scale, float *restrict y,
                       float *restrict live);

/* The vectorized epilogue in int32 lanes (partial sums below 2**24, bias below 2**26). */
void axhw_epilogue_i32_rows(const float *p0, const float *p1, const float *p2, const float *p3, int32_t k1,
                            int32_t k2, int32_t k3, int64_t r0, int64_t r1, int64_t nch, int64_t inner,
                            const int32_t *bias, int32_t acc_lo, int32_t acc_hi, int32_t half, int32_t shift,
                            int32_t out_lo, int32_t out_hi, float out_scale, float *restrict y,
                            float *restrict live);
void axhw_epilogue_i32_chw(const float *p0, const float *p1, const float *p2, const float *p3, int32_t k1,
                           int32_t k2, int32_t k3, int64_t r0, int64_t r1, int64_t nch, int64_t inner,
                           const int32_t *bias, int32_t acc_lo, int32_t acc_hi, int32_t half, int32_t shift,
                           int32_t out_lo, int32_t out_hi, float out_scale, float *restrict y,
                           float *restrict live);

/* The clipped straight-through gradient g * 1{|g| < 1} * live (live may be NULL). */
void axhw_ste_grad(const float *g, const float *live, int64_t n, float *restrict out);

#endif
