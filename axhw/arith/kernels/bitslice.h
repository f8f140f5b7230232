/* bitslice.h: the exported functions of a bit-sliced circuit evaluator, the single declaration of their ABI.

   axhw/arith/kernels/bitslice.py generates one C file per gate netlist (axhw.arith.gates.GateNetlist); that
   file includes this header (the compiler, with -Werror -Wmissing-prototypes, checks every definition against
   it) and build.py parses this header into the ctypes signatures bitslice.py calls through.

   Words are the operands' two's-complement bit patterns in [0, 2**bits), one int64 each. A block is
   axhw_bs_lanes() operand pairs evaluated at once, one per bit of a vector of uint64 words. */
#ifndef AXHW_BITSLICE_H
#define AXHW_BITSLICE_H

#include <stdint.h>

/* Operand pairs per block (the bits of one vector). */
int axhw_bs_lanes(void);

/* Elementwise: pw[i] = the circuit's product word of (aw[i], bw[i]), i < n. */
void axhw_bs_products(const int64_t *aw, const int64_t *bw, int64_t *pw, int64_t n);

/* Transpose bits [first, first + count) of the rows of a (M x K words, row-major) into bit planes, for the
   row blocks [r0, r1) and terms [k0, k1): block r = rows [r*lanes, (r+1)*lanes), plane (r, k, i) = lanes bits
   at planes[((r * K + k) * count + i) * (lanes / 64)], every word written (0 for rows >= M). planes holds
   ceil(M / lanes) * K * count * (lanes / 64) words; first + count <= 64. */
void axhw_bs_pack(const int64_t *aw, int64_t *planes, int64_t M, int64_t K, int64_t first, int64_t count,
                  int64_t r0, int64_t r1, int64_t k0, int64_t k1);

/* c[m * N + n] = sum_k product(a[m, k], b[k, n]) for the rows of blocks [r0, r1) and columns [j0, j1), from
   the packed planes of a's circuit operands (BITS planes) and b's (K x N, row-major). mode 0: the products
   are unsigned; 1: signed (two's complement); 2: sign-magnitude wrapper around an unsigned core (a and b
   hold magnitudes, asign the packed planes of a's sign bits, bneg b's signs as 0/1: the product is negated
   when the signs differ and saturated to the signed 2*BITS-bit word). acc_bits: the accumulator width
   (the caller makes K products fit). */
void axhw_bs_matmul(const int64_t *planes, const int64_t *asign, const int64_t *bw, const int64_t *bneg,
                    int64_t *c, int64_t M, int64_t K, int64_t N, int64_t r0, int64_t r1, int64_t j0, int64_t j1,
                    int mode, int acc_bits);

/* 1 if this build runs axhw_bs_matmul_team on OpenMP threads (built with -fopenmp), 0 if on one thread. */
int axhw_bs_openmp(void);

/* The whole matmul on nthreads threads of the OpenMP team (torch's, when torch loaded the same libgomp):
   packs a's words aw (and, mode 2, its signs asw as 0/1) into the scratch planes and asign (sizes as
   axhw_bs_pack, count BITS and 1), then c = the products' sums as axhw_bs_matmul, all M rows and N columns.
   Split by row blocks where there are at least nthreads of them, else the packing by terms and the products by
   columns. */
void axhw_bs_matmul_team(const int64_t *aw, const int64_t *asw, int64_t *planes, int64_t *asign, const int64_t *bw,
                         const int64_t *bneg, int64_t *c, int64_t M, int64_t K, int64_t N, int mode, int acc_bits,
                         int nthreads);

#endif
