"""Compiled elementwise kernels of the fused hardware forward (:mod:`axhw.nn.fused`).

Why: a training-mode hardware forward is dispatch-bound, not compute-bound (~1,400 aten calls per AxTrain-pas
step at ~6 us each against ~330 for BP; docs/training.md, "Step time"). The integer definitions of
:mod:`axhw.arith.fixedpoint`, :mod:`axhw.arith.sram` and :mod:`axhw.golden.network` take 10-30 small tensor operations per step of the pipeline
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
(tests/nn/test_fused.py). The library is built from ``fused.c`` like :mod:`axhw.arith.kernels.lut` (same
compiler, same cache folder, ``python -m axhw.arith.kernels`` builds both); ``AXHW_FAST_FORWARD=0`` or a missing
compiler leaves the eager path, which gives the same numbers.

Why a C file, a header and strict flags (ABI safety): the ctypes signatures and the ``axhw_epi`` Structure are
not written here but parsed from ``fused.h``, which ``fused.c`` includes, so the compiler checks every
definition against the declaration ctypes calls through (twenty-odd hand-written argument lists could drift
from the C code and corrupt memory silently); every warning (``-Wall -Wextra -Wconversion``) fails the build;
``AXHW_KERNEL_SANITIZE=1`` builds with AddressSanitizer and UBSan for the slow test that runs the equality
tests under them (:mod:`axhw.arith.kernels.build`).
"""

from __future__ import annotations

import ctypes
import itertools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from axhw.arith.kernels.build import Kernel, load_library, pool

__all__ = ["available", "build", "library_path"]

#: ``-fno-trapping-math`` lets the vectorizer evaluate both arms of a select (no FP exception is ever
#: observed here); it changes no result: every operation stays IEEE, nothing is reassociated or contracted.
_FLAGS = ("-fno-trapping-math", "-ffp-contract=off")
#: fused.c, whose exported functions and struct fused.h declares (the ctypes signatures come from parsing it).
_KERNEL = Kernel("hwkernel", "fused.c", "fused.h", _FLAGS)

_lock = threading.Lock()
_state: dict[str, object] = {}


def library_path() -> Path:
    """Where the compiled kernels live (named by a hash of ``fused.c``, ``fused.h``, the flags and the
    platform)."""
    return _KERNEL.library_path()


def build(force: bool = False) -> Path:
    """Compile the kernels into :func:`library_path` (atomic, like :func:`axhw.arith.kernels.lut.build`).

    Raises:
        RuntimeError: no C compiler, or the compile failed.
    """
    try:
        return _KERNEL.build(force=force)
    except RuntimeError as first:  # a compiler without target_clones: baseline loops only
        try:
            return _KERNEL.build(force=force, extra=("-DAXHW_NO_CLONES",))
        except RuntimeError as second:
            if str(second) == str(first):
                raise
            raise RuntimeError(f"{second}\n(with target_clones: {first})") from first


def _epi() -> type[ctypes.Structure]:
    """The ctypes Structure of ``axhw_epi`` parsed from fused.h: the class the bound signature of
    ``axhw_epilogue`` points to (kept by :func:`_load`, so the hot path reads no file)."""
    lib()
    return _state["epi"]  # type: ignore[return-value]


def _load() -> ctypes.CDLL | None:
    if "lib" in _state:  # loaded (or refused) once: no lock on the hot path
        return _state["lib"]  # type: ignore[return-value]
    with _lock:
        if "lib" in _state:
            return _state["lib"]  # type: ignore[return-value]
        lib, header = load_library(_KERNEL, build, "AXHW_FAST_FORWARD",
                                   "fused hardware-forward kernels unavailable, using the eager path")
        if lib is not None:
            _state["epi"] = header.structs["axhw_epi"]
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


def _split(n: int, fn: Callable[[int, int], Any], per: int = 1) -> list[Any]:
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
        e = _epi()(acc_lo=acc[0], acc_hi=acc[1], half=float(1 << (shift - 1)) if shift > 0 else 0.0,
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
    if not 1 <= len(parts) <= 4:  # the C function takes four pointers: more would be read from nowhere
        raise ValueError(f"sum_parts sums 1 to 4 tensors, got {len(parts)}")
    k = lib()
    out = torch.empty(parts[0].shape, dtype=torch.int64)
    ptrs = [p.data_ptr() for p in parts]
    ks = [1 if i < len(ptrs) else 0 for i in range(1, 4)]
    ptrs += [ptrs[0]] * (4 - len(ptrs))
    op = out.data_ptr()
    _split(out.numel(), lambda a, b: k.axhw_sum_parts(*[p + 4 * a for p in ptrs], *ks, b - a, op + 8 * a))
    return out
