"""Integer multiplier models: exact, DRUM-k (Hashemi et al., ICCAD 2015) and table-defined
(docs/hardware-models.md, "Multipliers").

Every multiplier takes int64 tensors of operand *values* (signed: ``[-2**(bits-1), 2**(bits-1))``,
unsigned: ``[0, 2**bits)``) and returns exact int64 products. These are the single definitions that the
training code, the RTL testbenches and the power flow compare against.

DRUM-k on an unsigned ``n``-bit operand ``x`` (leading one at bit ``p``):

* ``x < 2**k``: used exactly (shift ``t = 0``);
* else ``t = p - k + 1`` and ``x' = (x >> t) | 1``: keep the leading one and the next ``k - 2`` bits, and
  force the ``k``-th kept bit to 1, which makes the truncation error zero-mean;
* product ``(a' * b') << (ta + tb)``.

Signed DRUM is sign-magnitude around that core. The operand transform ``T(x) = sign(x) * (x' << t)`` makes
DRUM *separable*: ``drum(a, b) = T(a) * T(b)``, so an approximate matmul is one ordinary GEMM of
transformed operands (see :mod:`axhw.arith.intgemm` for why that GEMM is exact).

One corner is not representable: for signed operands, ``k = 2`` and ``n >= 3``, ``T(-2**(n-1)) =
1.5 * 2**(n-1)`` and the product of two minimum operands is ``2.25 * 2**(2n-2)``, beyond the ``2n``-bit
signed product the hardware has. axhw defines that product as *saturated* to ``2**(2n-1) - 1`` (the RTL
implements the same saturation); it is the only pair, for any ``k``, whose DRUM product leaves the range.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from axhw.arith.fixedpoint import check_codes
from axhw.arith.intgemm import (
    FLOAT64_EXACT_LIMIT,
    INT64_SAFE_LIMIT,
    exact_chunks,
    exact_float_dtype,
    exact_int_matmul,
)
from axhw.common import taken

if TYPE_CHECKING:
    from axhw.arith.kernels.lut import PreparedTable

__all__ = [
    "DRUM",
    "K_PRESETS",
    "LUT_MAX_BITS",
    "ErrorStats",
    "Exact",
    "LUTMultiplier",
    "Multiplier",
    "SeparableMultiplier",
    "error_stats",
]

#: Widest multiplier operand: 32 x 32 -> 64-bit products, the most int64 can hold.
MAX_BITS = 32
#: The paper's approximate modes K1..K4 are DRUM-k with k = 1..4, K1 the most aggressive
#: (docs/hardware-models.md, "Multipliers").
K_PRESETS: dict[str, int] = {"K1": 1, "K2": 2, "K3": 3, "K4": 4}
#: A full product table has 4**bits entries; 12 bits (16 Mi entries, 128 MiB) is the practical limit.
LUT_MAX_BITS = 12
#: Operand transforms are tabulated (one gather instead of ~10 elementwise ops) up to this width.
TABLE_TRANSFORM_MAX_BITS = 16
_INT64_MAX = (1 << 63) - 1


IntPair = int | tuple[int, int]


def as_pair(v: IntPair) -> tuple[int, int]:
    """``v`` or ``(v, v)`` as a pair of ints (conv options)."""
    if isinstance(v, int):
        return int(v), int(v)
    if len(v) != 2:
        raise ValueError(f"expected an int or an (h, w) pair, got {v!r}")
    return int(v[0]), int(v[1])


def _check_groups(c: int, out_c: int, in_c: int, groups: int) -> None:
    if groups < 1 or c != in_c * groups or out_c % groups:
        raise ValueError(f"conv2d groups={groups} does not fit {c} input channels, weights of {out_c} x {in_c} channels")


def _check_bits(bits: int, signed: bool, limit: int = MAX_BITS) -> None:
    lo = 2 if signed else 1
    if not isinstance(bits, int) or isinstance(bits, bool) or not lo <= bits <= limit:
        raise ValueError(f"bits={bits!r} out of range: valid range is [{lo}, {limit}]")


class Multiplier(ABC):
    """Common interface of all multiplier models.

    Subclasses define :meth:`__call__` (elementwise) and :meth:`matmul` (sum of approximate products,
    exact). Operands outside :attr:`operand_range` raise ``ValueError`` naming the range.
    """

    def __init__(self, bits: int, signed: bool = True) -> None:
        _check_bits(bits, signed, self._max_bits())
        self.bits = bits
        self.signed = signed

    @classmethod
    def _max_bits(cls) -> int:
        return MAX_BITS

    @property
    @abstractmethod
    def name(self) -> str:
        """Short registry name, e.g. ``exact`` or ``drum3``."""

    @property
    def operand_range(self) -> tuple[int, int]:
        """Inclusive ``(lo, hi)`` of valid operand values."""
        if self.signed:
            return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        return 0, (1 << self.bits) - 1

    @property
    def product_range(self) -> tuple[int, int]:
        """Inclusive range of the ``2*bits``-bit product word the hardware outputs."""
        if self.signed:
            return -(1 << (2 * self.bits - 1)), (1 << (2 * self.bits - 1)) - 1
        return 0, (1 << (2 * self.bits)) - 1

    def check_operands(self, x: torch.Tensor, what: str = "operand") -> torch.Tensor:
        lo, hi = self.operand_range
        check_codes(x, lo, hi, what=f"{what} of {self!r}")
        return x.to(torch.int64)

    def spec(self) -> dict[str, object]:
        """Plain-data description (used for caching, registries and RTL generation)."""
        return {"name": self.name, "bits": self.bits, "signed": self.signed}

    @abstractmethod
    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Elementwise products of broadcastable int64 operand tensors."""

    @abstractmethod
    def matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``C[m, n] = sum_k mul(A[m, k], B[k, n])`` exactly, as int64."""

    def conv2d(self, a: torch.Tensor, w: torch.Tensor, stride: IntPair = 1, padding: IntPair = 0,
               dilation: IntPair = 1, groups: int = 1) -> torch.Tensor:
        """Exact 2-D convolution (cross-correlation, zero padding) where every product goes through this
        multiplier: ``a`` is ``(N, C, H, W)``, ``w`` is ``(O, C / groups, kh, kw)``; returns int64
        ``(N, O, oh, ow)``. ``stride``, ``padding`` and ``dilation`` are ints or ``(h, w)`` pairs, as in
        ``F.conv2d``.

        Generic path: im2col (exact in float64 for codes below 2**53) and :meth:`matmul`, one per group.
        """
        n, c, h, wd = a.shape
        out_c, in_c, kh, kw = w.shape
        _check_groups(c, out_c, in_c, groups)
        (sh, sw), (ph, pw), (dh, dw) = as_pair(stride), as_pair(padding), as_pair(dilation)
        cols = F.unfold(a.to(torch.float64), (kh, kw), dilation=(dh, dw), padding=(ph, pw), stride=(sh, sw))
        oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        k = in_c * kh * kw
        cols = cols.to(torch.int64).transpose(1, 2).reshape(-1, c * kh * kw)  # (N*L, C*kh*kw), channel-major
        wm = w.reshape(out_c, k)
        if groups == 1:
            acc = self.matmul(cols, wm.T.contiguous())
        else:
            og = out_c // groups
            acc = torch.cat([self.matmul(cols[:, g * k:(g + 1) * k].contiguous(), wm[g * og:(g + 1) * og].T.contiguous())
                             for g in range(groups)], dim=1)
        return acc.reshape(n, oh * ow, out_c).transpose(1, 2).reshape(n, out_c, oh, ow)

    def product_table(self) -> torch.Tensor:
        """Full ``(2**bits, 2**bits)`` table indexed by the operands' two's-complement words."""
        if self.bits > LUT_MAX_BITS:
            raise ValueError(f"product tables exist for bits <= {LUT_MAX_BITS}, got bits={self.bits}")
        lo, hi = self.operand_range
        vals = torch.arange(lo, hi + 1, dtype=torch.int64)
        words = vals & ((1 << self.bits) - 1)
        order = torch.argsort(words)
        v = vals[order]
        return self(v[:, None], v[None, :])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bits={self.bits}, signed={self.signed})"


class SeparableMultiplier(Multiplier):
    """A multiplier of the form ``sat(T(a) * T(b))`` for a per-operand integer transform ``T``.

    Separability is what makes approximate GEMMs fast: transform both operands once, then one exact
    GEMM. ``sat`` clamps to :attr:`product_range` and is only ever active at ``(min, min)`` (checked at
    construction), so ``matmul`` adds a correction per ``(min, min)`` pair of each output, counted only
    where such pairs occur (no second full GEMM).
    """

    def __init__(self, bits: int, signed: bool = True) -> None:
        super().__init__(bits, signed)
        lo, hi = self.operand_range
        ends = self._transform_values(torch.tensor([lo, hi], dtype=torch.int64))
        t_min, t_max = abs(int(ends[0])), abs(int(ends[1]))
        #: ``max |T(x)|`` over all operands, the bound that proves GEMM exactness.
        self.transform_bound = max(t_min, t_max)
        _p_lo, p_hi = self.product_range
        self.sat_correction = 0
        if self.signed and t_min * t_min > p_hi:
            if t_min * t_max > p_hi:  # pragma: no cover - impossible for DRUM, guards new transforms
                raise AssertionError("saturation beyond (min, min) breaks the separable matmul")
            self.sat_correction = p_hi - t_min * t_min
        # Products that do not fit int64 (only unsigned 32-bit operands) must be refused, not wrapped.
        largest = t_min * t_max if self.sat_correction else self.transform_bound**2
        self._may_overflow_int64 = max(largest, t_max * t_max) > _INT64_MAX

    @abstractmethod
    def _transform_values(self, x: torch.Tensor) -> torch.Tensor:
        """The arithmetic definition of ``T`` on in-range int64 values (no checks)."""

    @cached_property
    def _transform_table(self) -> torch.Tensor:
        lo, hi = self.operand_range
        return self._transform_values(torch.arange(lo, hi + 1, dtype=torch.int64))

    def transform(self, x: torch.Tensor, dtype: torch.dtype = torch.int64) -> torch.Tensor:
        """``T(x)`` for in-range operands (checked), in ``dtype`` (int64, or float64 for GEMM input)."""
        x = self.check_operands(x)
        if self.bits <= TABLE_TRANSFORM_MAX_BITS:
            table = self._transform_table if dtype == torch.int64 else self.table_as(dtype)
            return torch.take(table, x - self.operand_range[0])
        return self._transform_values(x).to(dtype)

    def table_as(self, dtype: torch.dtype) -> torch.Tensor:
        cache = self.__dict__.setdefault("_table_cache", {})
        if dtype not in cache:
            cache[dtype] = self._transform_table.to(dtype)
        return cache[dtype]

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ta, tb = self.transform(a), self.transform(b)
        if self._may_overflow_int64:
            ma, mb = torch.broadcast_tensors(ta.abs(), tb.abs())
            over = (ma > 0) & (mb > _INT64_MAX // ma.clamp(min=1))
            if bool(over.any()):
                raise OverflowError(
                    f"{int(over.sum())} product(s) of {self!r} exceed the int64 range; "
                    f"use bits <= {MAX_BITS - 1} for unsigned operands"
                )
        prod = ta * tb
        if self.sat_correction:
            lo = self.operand_range[0]
            prod = torch.where((a == lo) & (b == lo), self.product_range[1], prod)
        return prod

    def matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"matmul needs (M, K) @ (K, N) matrices, got {tuple(a.shape)} @ {tuple(b.shape)}")
        fused = self._matmul_compiled(a, b)
        if fused is not None:
            return fused
        if self.bits <= TABLE_TRANSFORM_MAX_BITS:  # transform straight into the exact GEMM dtype
            gemm_dtype = exact_float_dtype(a.shape[1] * self.transform_bound**2) or torch.float64
        else:
            gemm_dtype = torch.int64
        ta, tb = self.transform(a, gemm_dtype), self.transform(b, gemm_dtype)
        # (min, min) pairs are found before the GEMM, while the operands are still in cache
        correct = self._min_pairs_matmul(a, b) if self.sat_correction else None
        out = exact_int_matmul(ta, tb, self.transform_bound, self.transform_bound)
        if correct is not None:
            correct(out)
        return out

    def _matmul_compiled(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
        """:meth:`matmul` through the compiled passes of :mod:`axhw.arith.kernels.fused` (None: not applicable): the
        range check, the transform and the exactness bound (the largest ``|T|`` each operand actually
        holds) in one pass per operand, float32 GEMMs over reduction chunks that bound proves exact, and one
        pass summing them into int64. Same numbers as the path below (tests/arith/test_multipliers.py)."""
        from axhw.arith.kernels import fused as hwkernel
        if (self.bits > TABLE_TRANSFORM_MAX_BITS or a.dtype != torch.int64 or b.dtype != torch.int64
                or a.device.type != "cpu" or b.device.type != "cpu" or not a.numel() or not b.numel()
                or not hwkernel.available()):
            return None
        lo, hi = self.operand_range
        table = self.table_as(torch.float32)
        m, kdim = a.shape
        n = b.shape[1]
        cap = self._MIN_POSITIONS if self.sat_correction else 0
        ta, bad_a, nmin_a, max_a, pos_a = hwkernel.transform64(a.contiguous(), lo, hi, table, cap)
        if bad_a:
            self.check_operands(a)  # raises the one-line range error
        tb, bad_b, nmin_b, max_b, pos_b = hwkernel.transform64(b.contiguous(), lo, hi, table, cap)
        if bad_b:
            self.check_operands(b)
        plan = exact_chunks(kdim, 1, max_a * max_b)
        if plan is None or len(plan[0]) > 4:
            return None
        chunks, dtype = plan
        if dtype == torch.float64:
            out = torch.mm(ta.double(), tb.double()).to(torch.int64)
        elif len(chunks) == 1:
            out = torch.mm(ta, tb).to(torch.int64)
        else:
            out = hwkernel.sum_parts([torch.mm(ta[:, c0:c1], tb[c0:c1]) for c0, c1 in chunks])
        if self.sat_correction and nmin_a and nmin_b:
            # sparse join in C while the pairs are few (as in _min_pairs_matmul), else the numpy/GEMM path
            per = self._DENSE_MACS_PER_PAIR
            max_pairs = (m * kdim * n) // per if per > 0 else 1 << 62
            sparse = pos_a is not None and pos_b is not None and hwkernel.min_pairs(
                out, pos_a, pos_b, kdim, self.sat_correction, max_pairs)
            if sparse:
                taken.count("arith.minmin_sparse")
            else:
                correct = self._min_pairs_matmul(a, b)
                if correct is not None:
                    correct(out)
        taken.count("arith.compiled_matmul")
        return out

    # ------------------------------------------------------------------ (min, min) saturation correction
    # The correction adds ``sat(min * min) - T(min)**2`` once per (min, min) pair of each output. Pairs are
    # found from the positions of the minimum in both operands and joined on the reduction index (channel)
    # one by one, in numpy (its compare-and-nonzero is ~2x torch's on CPU, its small ops ~5x cheaper): cost
    # ~ one scan of each operand + the number of pairs, no second GEMM. Only when the pairs are so many that
    # a GEMM is cheaper (dense minima), the 0/1 count GEMM / convolution runs, over the shared reduction
    # indices only.

    #: One joined pair costs about as much as this many multiply-adds of the dense count GEMM (measured on
    #: the bench shape: ~85 with 1 thread, ~170 with 2; the crossover lies near 10 % minima in both operands).
    _DENSE_MACS_PER_PAIR = 128
    #: The compiled matmul records up to this many minimum positions per operand for its sparse join.
    _MIN_POSITIONS = 1 << 16

    @staticmethod
    def _min_positions(x: torch.Tensor, lo: int):  # -> numpy int64 array
        """Row-major flat indices of ``x == lo``, ascending (numpy)."""
        import numpy as np

        return np.flatnonzero(x.detach().cpu().numpy() == lo)

    @staticmethod
    def _equal_key_pairs(key_a, key_b, nkeys: int):  # numpy arrays -> (idx_a, idx_b)
        """All ``(i, j)`` with ``key_a[i] == key_b[j]`` (keys in ``[0, nkeys)``, ``key_b`` ascending), as two
        index arrays, in O(len(key_a) + len(key_b) + nkeys + pairs)."""
        import numpy as np

        count_b = np.bincount(key_b, minlength=nkeys)
        first = (np.cumsum(count_b) - count_b)[key_a]
        reps = count_b[key_a]
        idx_a = np.repeat(np.arange(key_a.size), reps)
        # the j-th pair of a's entry i is b's entry first[i] + j
        shift = first - (np.cumsum(reps) - reps)
        return idx_a, shift[idx_a] + np.arange(idx_a.size)

    @staticmethod
    def _add_at(out: torch.Tensor, flat, value: int) -> None:
        """``out.view(-1)[flat] += value``, repeated indices accumulating (``flat``: numpy, row-major)."""
        import numpy as np

        if out.device.type == "cpu" and out.is_contiguous():
            np.add.at(out.numpy().reshape(-1), flat, value)  # shares out's memory
            return
        index = torch.from_numpy(flat).to(out.device)
        out.index_put_(torch.unravel_index(index, out.shape), torch.full_like(index, value), accumulate=True)

    def _min_pairs_matmul(self, a: torch.Tensor, b: torch.Tensor) -> Callable[[torch.Tensor], object] | None:
        """The correction of ``matmul``, as a function that applies it to the GEMM result in place:
        ``out[i, j] += correction * #{k : a[i, k] == b[k, j] == min}`` (None: no pair)."""
        lo = self.operand_range[0]
        (m, kdim), n = a.shape, b.shape[1]
        pos_b = self._min_positions(b, lo)
        if pos_b.size == 0:
            return None
        pos_a = self._min_positions(a, lo)
        if pos_a.size == 0:
            return None
        import numpy as np

        row_a, k_a = divmod(pos_a, kdim)
        k_b, col_b = divmod(pos_b, n)  # k_b ascending: row-major positions
        count_b = np.bincount(k_b, minlength=kdim)
        pairs = int(count_b[k_a].sum())
        if pairs == 0:
            return None
        if pairs * self._DENSE_MACS_PER_PAIR <= m * kdim * n:
            pa, pb = self._equal_key_pairs(k_a, k_b, kdim)  # join on k
            flat = row_a[pa] * n + col_b[pb]
            taken.count("arith.minmin_sparse")
            return lambda out: self._add_at(out, flat, self.sat_correction)
        shared = np.bincount(k_a, minlength=kdim).astype(bool) & count_b.astype(bool)
        ks = torch.from_numpy(shared.nonzero()[0]).to(a.device)
        # 0/1 operands: exact_int_matmul picks float32 while len(ks) < 2**24 (counts and partial sums <= len(ks))
        ia, ib = (a[:, ks] == lo).to(torch.float32), (b[ks] == lo).to(torch.float32)
        correction = exact_int_matmul(ia, ib, 1, 1) * self.sat_correction
        taken.count("arith.minmin_gemm")
        return lambda out: out.add_(correction)

    def conv2d(self, a: torch.Tensor, w: torch.Tensor, stride: IntPair = 1, padding: IntPair = 0,
               dilation: IntPair = 1, groups: int = 1) -> torch.Tensor:
        """Separable fast path: one floating-point convolution of transformed operands (any stride,
        padding, dilation, groups), exact while ``C / groups * kh * kw * max|T|**2`` stays below 2**24
        (float32) or 2**53 (float64) (the GEMM argument of :mod:`axhw.arith.intgemm`), else the generic im2col
        path. Zero padding is exact because ``T(0) = 0``."""
        _check_groups(a.shape[1], w.shape[0], w.shape[1], groups)
        k = w.shape[1] * w.shape[2] * w.shape[3]
        if self.bits > TABLE_TRANSFORM_MAX_BITS or k * self.transform_bound**2 >= FLOAT64_EXACT_LIMIT:
            return super().conv2d(a, w, stride, padding, dilation, groups)
        # float32 (the fast oneDNN kernels) is exact too when every partial sum stays below 2**24.
        dtype = exact_float_dtype(k * self.transform_bound**2) or torch.float64
        ta, tw = self.transform(a, dtype), self.transform(w, dtype)
        out = F.conv2d(ta, tw, stride=as_pair(stride), padding=as_pair(padding), dilation=as_pair(dilation),
                       groups=groups).round().to(torch.int64)
        taken.count("arith.conv2d_float")
        if self.sat_correction:
            if groups == 1:
                self._correct_min_pairs_conv2d(out, a, w, stride, padding, dilation)
            else:
                lo = self.operand_range[0]
                og, cg = w.shape[0] // groups, w.shape[1]
                w_has = (w == lo).reshape(groups, -1).any(dim=1)
                a_has = (a == lo).transpose(0, 1).reshape(groups, -1).any(dim=1)
                for g in torch.nonzero(w_has & a_has).flatten().tolist():  # groups holding (min, min) pairs
                    self._correct_min_pairs_conv2d(out[:, g * og:(g + 1) * og], a[:, g * cg:(g + 1) * cg],
                                                   w[g * og:(g + 1) * og], stride, padding, dilation)
        return out

    def _correct_min_pairs_conv2d(
        self, out: torch.Tensor, a: torch.Tensor, w: torch.Tensor, stride: IntPair, padding: IntPair,
        dilation: IntPair,
    ) -> None:
        """The convolution form of :meth:`_min_pairs_matmul`, applied in place: pairs join on the input channel;
        the pair ``a[n, c, y, x]``, ``w[o, c, dy, dx]`` lands on output ``(n, o, (y + padding - dy * dilation)
        / stride, (x + padding - dx * dilation) / stride)`` where that is an integer position inside the output (padding holds
        zeros, never the minimum). Many pairs: the 0/1 count convolution over the shared channels only."""
        import numpy as np

        lo = self.operand_range[0]
        # channel-major copies make the join keys (channels) of the weights ascending
        pos_w = self._min_positions(w.transpose(0, 1), lo)
        if pos_w.size == 0:
            return
        pos_a = self._min_positions(a, lo)
        if pos_a.size == 0:
            return
        out_c, oh, ow = out.shape[1:]
        in_c, h, wd = a.shape[1:]
        kh, kw = w.shape[2:]
        rest, xa = divmod(pos_a, wd)
        rest, ya = divmod(rest, h)
        na, ca = divmod(rest, in_c)
        rest, dx = divmod(pos_w, kw)
        rest, dy = divmod(rest, kh)
        cw, o = divmod(rest, out_c)
        per_c_a, per_c_w = np.bincount(ca, minlength=in_c), np.bincount(cw, minlength=in_c)
        pairs = int((per_c_a * per_c_w).sum())
        if pairs == 0:
            return
        shared = per_c_a.astype(bool) & per_c_w.astype(bool)
        if pairs * self._DENSE_MACS_PER_PAIR <= out.numel() * int(shared.sum()) * kh * kw:
            pa, pw = self._equal_key_pairs(ca, cw, in_c)
            (sh, sw), (ph, pw_), (dh, dw) = as_pair(stride), as_pair(padding), as_pair(dilation)
            y, x = ya[pa] + (ph - dy[pw] * dh), xa[pa] + (pw_ - dx[pw] * dw)
            (y, ry), (x, rx) = divmod(y, sh), divmod(x, sw)
            keep = (ry == 0) & (rx == 0) & (y >= 0) & (x >= 0) & (y < oh) & (x < ow)
            flat = ((na[pa] * out_c + o[pw]) * oh + y) * ow + x
            self._add_at(out, np.ascontiguousarray(flat[keep]), self.sat_correction)
            taken.count("arith.minmin_sparse")
            return
        cs = torch.from_numpy(shared.nonzero()[0]).to(a.device)
        dtype = exact_float_dtype(cs.numel() * kh * kw) or torch.float64  # counts and partial sums <= that
        ia, iw = (a[:, cs] == lo).to(dtype), (w[:, cs] == lo).to(dtype)
        count = F.conv2d(ia, iw, stride=as_pair(stride), padding=as_pair(padding), dilation=as_pair(dilation))
        out += count.round().to(torch.int64) * self.sat_correction
        taken.count("arith.minmin_gemm")


class Exact(SeparableMultiplier):
    """The exact ``bits x bits`` multiplier (``T`` is the identity)."""

    @property
    def name(self) -> str:
        return "exact"

    def _transform_values(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


class DRUM(SeparableMultiplier):
    """DRUM-k, the dynamic-range unbiased multiplier (Hashemi, Bahar, Reda, ICCAD 2015), sign-magnitude
    for signed operands (docs/hardware-models.md, "DRUM semantics"). ``k >= bits`` is exact; ``k = 1`` is a
    power-of-two multiplier.

    >>> DRUM(3, 8)(torch.tensor([100]), torch.tensor([-7])).tolist()   # 100 -> 112, 7 -> 7
    [-784]
    """

    def __init__(self, k: int, bits: int = 8, signed: bool = True) -> None:
        _check_bits(bits, signed)
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= bits:
            raise ValueError(f"k={k!r} out of range: valid range is [1, bits={bits}]")
        self.k = k
        super().__init__(bits, signed)

    @property
    def name(self) -> str:
        return f"drum{self.k}"

    def spec(self) -> dict[str, object]:
        return {**super().spec(), "k": self.k}

    def _transform_values(self, x: torch.Tensor) -> torch.Tensor:
        mag = x.abs()  # |-2**(n-1)| = 2**(n-1) fits: int64 is wider than n
        # Leading-one position p (frexp is exact on integers below 2**53; |x| <= 2**32 here).
        _, exp = torch.frexp(mag.to(torch.float64))
        t = (exp.to(torch.int64) - self.k).clamp(min=0)  # p - k + 1 with p = exp - 1
        approx = ((mag >> t) | 1) << t
        out = torch.where(mag >= (1 << self.k), approx, mag)
        return torch.where(x < 0, -out, out)

    def __repr__(self) -> str:
        return f"DRUM(k={self.k}, bits={self.bits}, signed={self.signed})"


class LUTMultiplier(Multiplier):
    """Any multiplier given as a full product table, e.g. a circuit from a library of approximate
    multipliers (EvoApproxLib). Not separable, so ``matmul`` is an exact gather-and-sum: a compiled
    kernel (:mod:`axhw.arith.kernels.lut`: AVX-512, AVX2 or scalar; 2-4x ``Exact.matmul`` for (256 x 784) @
    (784 x 128) at 8 bits on AVX-512 and AVX2 CPUs, bench/results/matmul*.json) or, without a C compiler,
    a chunked torch gather; both are tested equal to the elementwise ``__call__``, the reference.

    Args:
        table: ``(2**bits, 2**bits)`` integer tensor; ``table[i, j]`` is the product of the operands whose
            ``bits``-bit two's-complement words are ``i`` and ``j`` (for unsigned operands: the values).
        bits: operand width, at most :data:`LUT_MAX_BITS`.
        signed: operand interpretation.
        name: registry name for reports.
    """

    #: Gathered elements per chunk of the torch path: 2**18 keeps index and gathered values (3 MiB) in
    #: cache; measured 3.5x faster than 2**22 on the bench shape.
    CHUNK_ELEMENTS = 1 << 18
    #: Whether :meth:`matmul` uses the compiled kernel of :mod:`axhw.arith.kernels.lut` when it is available
    #: (False on an instance forces the pure-torch path, which gives the same numbers).
    use_kernel = True

    def __init__(self, table: torch.Tensor, bits: int, signed: bool = True, name: str = "lut") -> None:
        super().__init__(bits, signed)
        table = torch.as_tensor(table)
        side = 1 << bits
        if tuple(table.shape) != (side, side):
            raise ValueError(f"table shape {tuple(table.shape)} invalid: a {bits}-bit table must be ({side}, {side})")
        if table.dtype.is_floating_point or table.dtype == torch.bool:
            raise ValueError(f"table must hold integers, got dtype {table.dtype}")
        p_lo, p_hi = self.product_range
        check_codes(table, p_lo, p_hi, what=f"table entries of a {bits}-bit {'signed' if signed else 'unsigned'} multiplier")
        self._name = name
        self.table = table.to(torch.int64).contiguous()
        self._flat = self.table.flatten()
        self._max_abs = int(self.table.abs().max())
        # int32 gathers move half the bytes; every product word of <= 12-bit operands (at most 24 bits) fits.
        self._flat32 = self._flat.to(torch.int32)
        self._kernel_table: PreparedTable | None = None  # lutkernel.prepare_table copies, made on first use

    @classmethod
    def _max_bits(cls) -> int:
        return LUT_MAX_BITS

    @classmethod
    def from_multiplier(cls, m: Multiplier, name: str | None = None) -> LUTMultiplier:
        """Tabulate another multiplier (used to cross-check the table path against a model)."""
        return cls(m.product_table(), m.bits, m.signed, name=name or f"lut({m.name})")

    @property
    def name(self) -> str:
        return self._name

    def _words(self, x: torch.Tensor, what: str) -> torch.Tensor:
        return self.check_operands(x, what) & ((1 << self.bits) - 1)

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        idx = (self._words(a, "operand a") << self.bits) | self._words(b, "operand b")
        return torch.take(self._flat, idx)

    def matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"matmul needs (M, K) @ (K, N) matrices, got {tuple(a.shape)} @ {tuple(b.shape)}")
        k = a.shape[1]
        if k * self._max_abs >= INT64_SAFE_LIMIT:
            raise OverflowError(f"matmul of K={k} products up to {self._max_abs} may exceed int64")
        from axhw.arith.kernels import lut as lutkernel  # local: this class is the kernel's only user

        if self.use_kernel and lutkernel.available():
            if self._kernel_table is None:
                self._kernel_table = lutkernel.prepare_table(self.table, self.bits)
            taken.count("arith.lut_kernel")
            lo, hi = self.operand_range
            # The AVX2 path checks int64 operands in C: a torch operation just before its threads start would
            # leave torch's OpenMP threads spinning on their cores (axhw/arith/kernels/lut.c).
            if not (lutkernel.backend(self.bits, (a.shape[0], b.shape[1])) == "c-avx2"
                    and lutkernel.in_range(a, lo, hi) and lutkernel.in_range(b, lo, hi)):
                a, b = self.check_operands(a, "operand a"), self.check_operands(b, "operand b")
            return lutkernel.lut_matmul(self._kernel_table, self.bits, self.signed, self._max_abs, a, b)
        return self._matmul_torch(self._words(a, "operand a"), self._words(b, "operand b"))

    @property
    def backend(self) -> str:
        """The path :meth:`matmul` takes on a matmul of many rows: ``"c-avx512"``, ``"c-avx2"``, ``"c-scalar"``
        (:mod:`axhw.arith.kernels.lut`; the AVX2 machine runs matmuls of few rows on ``"c-scalar"``) or
        ``"torch"``."""
        from axhw.arith.kernels import lut as lutkernel
        return lutkernel.backend(self.bits) if self.use_kernel else "torch"

    def _matmul_torch(self, aw: torch.Tensor, bw: torch.Tensor) -> torch.Tensor:
        """Pure-torch fallback of :meth:`matmul` on checked operand words: chunked gather, int64 sums."""
        m, k = aw.shape
        n = bw.shape[1]
        aw = aw << self.bits
        bwt = bw.T.contiguous()  # (N, K): the reduction runs over contiguous memory
        flat = self._flat32
        out = torch.empty(m, n, dtype=torch.int64)
        rows = max(1, self.CHUNK_ELEMENTS // max(1, k * n))
        for r0 in range(0, m, rows):
            idx = aw[r0 : r0 + rows, None, :] | bwt[None, :, :]
            torch.sum(torch.take(flat, idx), dim=2, dtype=torch.int64, out=out[r0 : r0 + rows])
        return out

    def __repr__(self) -> str:
        return f"LUTMultiplier(name={self._name!r}, bits={self.bits}, signed={self.signed})"


@dataclass(frozen=True)
class ErrorStats:
    """Error metrics of an approximate multiplier against exact multiplication, in the literature's
    standard definitions (EvoApproxLib's set, Mrazek et al. DATE 2017; NMED as in Liang, Han, Lombardi,
    IEEE TC 2013; the relative ones the DRUM paper reports).

    Notation: over the evaluated operand pairs ``(a, b)``, ``p = a * b`` is the exact product, ``p~`` the
    multiplier's, ``e = p~ - p`` the error (``a`` is the activation operand, ``b`` the weight: for a
    non-commutative circuit the order matters). "Relative" metrics are over the pairs whose exact product is
    nonzero only (``p = 0`` has no relative error); they are 0 when there is no such pair.

    Attributes:
        name, bits, signed: the multiplier (``signed``: two's-complement operands).
        pairs: operand pairs evaluated; exhaustive: whether that is all ``4**bits`` of them (else ``pairs``
            drawn uniformly, seeded).
        mre: mean relative error ``mean |e| / |p|`` (MRED), a fraction, over ``p != 0``.
        max_re: worst-case relative error ``max |e| / |p|`` (WCRE), a fraction, over ``p != 0``.
        mean_error: mean signed error ``mean e`` (the bias), in product units.
        mean_rel_error: mean signed relative error ``mean e / |p|``, over ``p != 0``.
        mae: mean absolute error ``mean |e|`` (MED), in product units.
        wce: worst-case (maximum) absolute error ``max |e|``, in product units.
        mse: mean squared error ``mean e**2``, in squared product units.
        ep: error probability, the fraction of pairs with ``e != 0``.
        nmed: normalized mean error distance ``mae / max |p|`` (``max |p|`` the largest exact product
            magnitude over the operand range: ``(2**bits - 1)**2`` unsigned, ``2**(2*bits-2)`` signed).
        mae_percent, wce_percent: EvoApproxLib's header convention, ``100 * mae / 2**(2*bits)`` and
            ``100 * wce / 2**(2*bits)`` for signed and unsigned alike (compare these with published headers).
        ci95: sampled statistics only (``None`` when exhaustive): the 95% confidence interval ``[lo, hi]`` of
            each mean-type metric (mean +- 1.96 standard errors: the pairs are independent uniform draws, and
            at the sample sizes used, 10**6 and more, the normal approximation is tight). The worst cases
            (``wce``, ``max_re``) have none: over samples they are lower bounds of the true ones.
    """

    name: str
    bits: int
    signed: bool
    pairs: int
    exhaustive: bool
    mre: float
    max_re: float
    mean_error: float
    mean_rel_error: float
    mae: float
    wce: float
    mse: float
    ep: float
    nmed: float
    mae_percent: float
    wce_percent: float
    ci95: dict[str, list[float]] | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def error_stats(m: Multiplier, samples: int = 1_000_000, seed: int = 0, exhaustive_max_bits: int = 8) -> ErrorStats:
    """Measure :class:`ErrorStats` of ``m``: over all operand pairs when ``bits <= exhaustive_max_bits``,
    else over ``samples`` uniformly drawn pairs from a ``torch.Generator`` seeded with ``seed``."""
    lo, hi = m.operand_range
    if m.bits <= exhaustive_max_bits:
        v = torch.arange(lo, hi + 1, dtype=torch.int64)
        a, b = torch.meshgrid(v, v, indexing="ij")
        a, b = a.flatten(), b.flatten()
        exhaustive = True
    else:
        if samples < 1:
            raise ValueError(f"samples={samples} out of range: valid range is >= 1")
        g = torch.Generator().manual_seed(seed)
        a = torch.randint(lo, hi + 1, (samples,), generator=g, dtype=torch.int64)
        b = torch.randint(lo, hi + 1, (samples,), generator=g, dtype=torch.int64)
        exhaustive = False
    exact_int = a * b
    err = (m(a, b) - exact_int).to(torch.float64)  # int64 difference: exact before conversion
    exact = exact_int.to(torch.float64)
    nz = exact != 0
    rel = err[nz] / exact[nz].abs()
    max_exact = max(lo * lo, hi * hi)  # >= 1: every range holds a nonzero operand
    ci95 = None
    if not exhaustive:
        def interval(x: torch.Tensor, scale: float = 1.0) -> list[float]:
            if not x.numel():
                return [0.0, 0.0]
            mean, half = float(x.mean()), 1.96 * float(x.std()) / x.numel() ** 0.5 if x.numel() > 1 else 0.0
            return [scale * (mean - half), scale * (mean + half)]

        ae = err.abs()
        ci95 = {"mre": interval(rel.abs()), "mean_error": interval(err), "mean_rel_error": interval(rel),
                "mae": interval(ae), "mse": interval(err * err), "ep": interval((err != 0).to(torch.float64)),
                "nmed": interval(ae, 1.0 / max_exact),
                "mae_percent": interval(ae, 100.0 / 4**m.bits)}
    return ErrorStats(
        name=m.name,
        bits=m.bits,
        signed=m.signed,
        pairs=int(a.numel()),
        exhaustive=exhaustive,
        mre=float(rel.abs().mean()) if rel.numel() else 0.0,
        max_re=float(rel.abs().max()) if rel.numel() else 0.0,
        mean_error=float(err.mean()),
        mean_rel_error=float(rel.mean()) if rel.numel() else 0.0,
        mae=float(err.abs().mean()),
        wce=float(err.abs().max()),
        mse=float((err * err).mean()),
        ep=float((err != 0).to(torch.float64).mean()),
        nmed=float(err.abs().mean()) / max_exact,
        mae_percent=100.0 * float(err.abs().mean()) / 4**m.bits,
        wce_percent=100.0 * float(err.abs().max()) / 4**m.bits,
        ci95=ci95,
    )
