"""Multiplier models against an obviously-correct scalar reference (docs/hardware-models.md, "Multipliers")."""

import ctypes
import itertools
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from axhw.arith import multipliers
from axhw.arith.kernels import build as kernel_build
from axhw.arith.kernels import lut as lutkernel
from axhw.arith.multipliers import DRUM, Exact, LUTMultiplier, error_stats
from axhw.arith.registry import get_multiplier, multiplier_names
from axhw.common import taken


# --------------------------------------------------------------------------- scalar reference
def drum_reference(a: int, b: int, k: int, bits: int, signed: bool) -> int:
    """DRUM-k on plain Python ints, written straight from the spec (section 2), one pair at a time."""

    def core(x: int) -> int:
        if x < 2**k:
            return x
        t = x.bit_length() - 1 - k + 1  # leading one at bit p = bit_length - 1
        return ((x >> t) | 1) << t

    negative = signed and ((a < 0) != (b < 0))
    product = core(abs(a)) * core(abs(b))
    if negative:
        product = -product
    if signed:  # the 2*bits-bit signed product word saturates (only DRUM-2 at (min, min) needs it)
        product = min(product, 2 ** (2 * bits - 1) - 1)
    return product


def operand_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def corners(bits: int, signed: bool) -> list[int]:
    lo, hi = operand_range(bits, signed)
    vals = {0, 1, lo, hi, lo + 1, hi - 1}
    for p in range(bits):
        for v in (2**p, 2**p - 1, 2**p + 1):
            vals.update({v, -v} if signed else {v})
    return sorted(v for v in vals if lo <= v <= hi)


# --------------------------------------------------------------------------- exhaustive 8-bit
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("k", range(1, 9))
def test_drum_exhaustive_8bit(k, signed):
    lo, hi = operand_range(8, signed)
    vals = list(range(lo, hi + 1))
    a = torch.tensor(vals).repeat_interleave(len(vals))
    b = torch.tensor(vals).repeat(len(vals))
    got = DRUM(k, 8, signed)(a, b).tolist()
    want = [drum_reference(x, y, k, 8, signed) for x, y in itertools.product(vals, vals)]
    assert got == want


@pytest.mark.parametrize("signed", [True, False])
def test_exact_exhaustive_8bit_and_drum_k_ge_bits_is_exact(signed):
    lo, hi = operand_range(8, signed)
    v = torch.arange(lo, hi + 1)
    a, b = torch.meshgrid(v, v, indexing="ij")
    assert torch.equal(Exact(8, signed)(a, b), a * b)
    assert torch.equal(DRUM(8, 8, signed)(a, b), a * b)


def test_saturation_corner_is_the_only_one():
    m = DRUM(2, 8)
    assert m(torch.tensor(-128), torch.tensor(-128)).item() == 32767  # 192 * 192 = 36864 saturates
    lo, hi = m.product_range
    v = torch.arange(-128, 128)
    p = m(v[:, None], v[None, :])
    transformed = m.transform(v)[:, None] * m.transform(v)[None, :]
    differs = (p != transformed).nonzero().tolist()
    assert differs == [[0, 0]]
    assert int(p.min()) >= lo and int(p.max()) <= hi


# --------------------------------------------------------------------------- wide operands
@pytest.mark.parametrize("bits", [16, 32])
@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 8, 16])
def test_drum_random_wide(bits, signed, k):
    lo, hi = operand_range(bits, signed)
    g = torch.Generator().manual_seed(1000 * bits + 10 * k + signed)
    n = 100_000
    a = torch.randint(lo, hi + 1, (n,), generator=g)
    b = torch.randint(lo, hi + 1, (n,), generator=g)
    c = torch.tensor(corners(bits, signed))
    a = torch.cat([a, c.repeat_interleave(len(c))])
    b = torch.cat([b, c.repeat(len(c))])
    m = DRUM(k, bits, signed)
    want = [drum_reference(x, y, k, bits, signed) for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    if bits == 32 and not signed:
        # 64-bit unsigned products do not fit int64: the transform is checked exactly with Python ints,
        # and the elementwise call must refuse (OverflowError), never wrap.
        ta, tb = m.transform(a).tolist(), m.transform(b).tolist()
        assert [x * y for x, y in zip(ta, tb, strict=True)] == want
        fits = torch.tensor([w < 2**63 for w in want])
        assert m(a[fits], b[fits]).tolist() == [w for w in want if w < 2**63]
        if not bool(fits.all()):
            with pytest.raises(OverflowError, match="int64"):
                m(a, b)
    else:
        assert m(a, b).tolist() == want


def test_drum_32bit_signed_saturation():
    lo = -(2**31)
    assert DRUM(2, 32)(torch.tensor(lo), torch.tensor(lo)).item() == 2**63 - 1
    assert DRUM(3, 32)(torch.tensor(lo), torch.tensor(lo)).item() == drum_reference(lo, lo, 3, 32, True)


# --------------------------------------------------------------------------- matmul
def elementwise_sum(m, a, b):
    return m(a[:, :, None], b[None, :, :]).sum(dim=1)


MULTIPLIERS_8 = [Exact(8), *[DRUM(k, 8) for k in range(1, 9)], Exact(8, False), DRUM(3, 8, False)]


@pytest.mark.parametrize("m", MULTIPLIERS_8, ids=repr)
def test_matmul_equals_sum_of_products(m):
    lo, hi = m.operand_range
    g = torch.Generator().manual_seed(7)
    a = torch.randint(lo, hi + 1, (17, 300), generator=g)
    b = torch.randint(lo, hi + 1, (300, 9), generator=g)
    a[0, :5] = lo  # exercise the (min, min) saturation correction
    b[:5, 0] = lo
    assert torch.equal(m.matmul(a, b), elementwise_sum(m, a, b))
    lut = LUTMultiplier.from_multiplier(m)
    assert torch.equal(lut.matmul(a, b), elementwise_sum(m, a, b))


@pytest.mark.parametrize("m", [Exact(16), DRUM(12, 16)], ids=repr)
def test_matmul_16bit_where_float32_rounds(m):
    g = torch.Generator().manual_seed(3)
    a = torch.randint(2**14, 2**15, (8, 4096), generator=g)  # sums reach ~2**42, far beyond float32's 2**24
    b = torch.randint(2**14, 2**15, (4096, 8), generator=g)
    want = elementwise_sum(m, a, b)
    ta, tb = m.transform(a), m.transform(b)
    naive32 = torch.mm(ta.float(), tb.float()).to(torch.int64)
    assert not torch.equal(naive32, want)  # the naive path is wrong here ...
    assert torch.equal(m.matmul(a, b), want)  # ... ours is exact


def test_matmul_32bit_limb_path_exact():
    m = DRUM(5, 32)
    g = torch.Generator().manual_seed(4)
    a = torch.randint(-(2**31), 2**31, (6, 40), generator=g) >> 8  # keep the sums inside int64
    b = torch.randint(-(2**31), 2**31, (40, 5), generator=g) >> 8
    a[0, 0], b[0, 0] = -(2**31), 2**20 + 12345  # a 32-bit corner operand
    want = [
        [sum(drum_reference(x, y, 5, 32, True) for x, y in zip(row, col, strict=True)) for col in b.T.tolist()]
        for row in a.tolist()
    ]
    assert m.matmul(a, b).tolist() == want


def test_matmul_refuses_int64_overflow():
    m = Exact(32)
    a = torch.full((1, 4), -(2**31))
    with pytest.raises(OverflowError, match="int64"):
        m.matmul(a, a.T.contiguous())


def test_matmul_shape_errors():
    with pytest.raises(ValueError, match=r"\(M, K\) @ \(K, N\)"):
        DRUM(3, 8).matmul(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(4, 2, dtype=torch.int64))


# --------------------------------------------------------------------------- LUT multiplier
def test_lut_custom_table_signed_word_indexing():
    bits = 4
    g = torch.Generator().manual_seed(5)
    table = torch.randint(-128, 128, (16, 16), generator=g)
    m = LUTMultiplier(table, bits, signed=True, name="rand4")
    v = torch.arange(-8, 8)
    a, b = torch.meshgrid(v, v, indexing="ij")
    assert torch.equal(m(a, b), table[a & 15, b & 15])
    A = torch.randint(-8, 8, (5, 33), generator=g)
    B = torch.randint(-8, 8, (33, 7), generator=g)
    assert torch.equal(m.matmul(A, B), elementwise_sum(m, A, B))


def test_lut_large_matmul_chunked_exact():
    m = LUTMultiplier.from_multiplier(DRUM(2, 8))
    m.use_kernel = False  # the torch path
    m.CHUNK_ELEMENTS = 1000  # force many chunks
    g = torch.Generator().manual_seed(6)
    A = torch.randint(-128, 128, (37, 64), generator=g)
    B = torch.randint(-128, 128, (64, 11), generator=g)
    assert torch.equal(m.matmul(A, B), DRUM(2, 8).matmul(A, B))


@pytest.mark.parametrize(
    "table,bits,match",
    [
        (torch.zeros(15, 16, dtype=torch.int64), 4, r"must be \(16, 16\)"),
        (torch.zeros(16, 16), 4, "integers"),
        (torch.full((16, 16), 200), 4, r"valid range is \[-128, 127\]"),
        (torch.zeros(2, 2, dtype=torch.int64), 13, r"valid range is \[2, 12\]"),
    ],
)
def test_lut_bad_tables(table, bits, match):
    with pytest.raises(ValueError, match=match):
        LUTMultiplier(table, bits)


# --------------------------------------------------------------------------- LUT matmul paths
# Every path of LUTMultiplier.matmul (AVX-512 kernel, scalar C kernel, pure torch) must equal the
# elementwise __call__ gather, the one reference definition, bit for bit.
LUT_PATHS = ["c-avx512", "c-avx2", "c-scalar", "torch"]


def lut_on_path(table, bits, signed, path, monkeypatch):
    """A LUTMultiplier whose matmul takes ``path`` for every shape (skips paths this machine cannot run): the
    AVX2 kernel is forced by hiding AVX-512 (any AVX-512 CPU has AVX2) and taken from one row on."""
    if path != "torch" and not lutkernel.available():
        pytest.skip("no C compiler: the LUT kernel is not built")
    if path == "c-avx512" and lutkernel.backend(8) != "c-avx512":
        pytest.skip("no AVX-512BW on this CPU")
    if path == "c-avx2" and not lutkernel._state["avx2"]:
        pytest.skip("no AVX2 on this CPU")
    if path in ("c-avx2", "c-scalar"):
        monkeypatch.setitem(lutkernel._state, "avx512", False)
    if path == "c-scalar":
        monkeypatch.setitem(lutkernel._state, "avx2", False)
    monkeypatch.setattr(lutkernel, "AVX2_MIN_SIDES", (0, 0))
    m = LUTMultiplier(table, bits, signed)
    m.use_kernel = path != "torch"
    if path in ("c-avx512", "c-avx2") and bits > 8:
        assert m.backend == "c-scalar"  # wider tables have no int16 kernel
    else:
        assert m.backend == path
    m.matmul(torch.zeros(1, 1, dtype=torch.int64), torch.zeros(1, 1, dtype=torch.int64))  # prepare the table
    return m


def lut_path_ran(ran, path, bits, calls):
    """The path under test ran ``calls`` times (tables over 8 bits run the scalar kernel on every C path)."""
    if path == "torch":
        return ran["arith.lut_kernel"] == 0
    want = "c-scalar" if bits > 8 else path
    return ran["arith.lut_kernel"] == calls and ran[f"arith.lut_kernel.{want}"] == calls


def lut_reference(m, a, b):
    if a.numel() == 0 or b.numel() == 0:
        return torch.zeros(a.shape[0], b.shape[1], dtype=torch.int64)
    return elementwise_sum(m, a, b)


LUT_SHAPES = [(0, 3, 4), (3, 0, 4), (3, 4, 0), (1, 1, 1), (5, 1, 33), (2, 7, 31), (7, 13, 32), (4, 29, 129),
              (3, 5, 300)]


@pytest.mark.parametrize("path", LUT_PATHS)
@pytest.mark.parametrize(
    "bits,signed",
    [(1, False), (2, True), (2, False), (3, True), (5, False), (7, True), (8, True), (8, False), (9, True), (12, False)],
)
@pytest.mark.parametrize("kind", ["random", "max", "min"])
def test_lut_matmul_paths_equal_elementwise(bits, signed, kind, path, monkeypatch):
    side = 1 << bits
    lo, hi = Exact(bits, signed).product_range
    g = torch.Generator().manual_seed(bits * 7 + signed)
    if kind == "random":
        table = torch.randint(lo, hi + 1, (side, side), generator=g)
        table[0, 0], table[-1, -1] = lo, hi  # the extreme entries, at the first and last words
    else:  # the maximum-magnitude tables: every product at the top or bottom of the product word
        table = torch.full((side, side), hi if kind == "max" else lo)
    m = lut_on_path(table, bits, signed, path, monkeypatch)
    olo, ohi = m.operand_range
    with taken.counting() as ran:
        _lut_shapes_equal_reference(m, g, olo, ohi)
    assert lut_path_ran(ran, path, bits, len(LUT_SHAPES)), dict(ran)
    if path == "c-avx2" and bits <= 8:  # both orientations of the AVX2 kernel ran: M < N is computed transposed
        assert 0 < ran["arith.lut_kernel.c-avx2.transposed"] < len(LUT_SHAPES), dict(ran)


def _lut_shapes_equal_reference(m, g, olo, ohi):
    for mm, k, n in LUT_SHAPES:
        a = torch.randint(olo, ohi + 1, (mm, k), generator=g)
        b = torch.randint(olo, ohi + 1, (k, n), generator=g)
        if a.numel():
            a.view(-1)[0], a.view(-1)[-1] = olo, ohi
        if b.numel():
            b.view(-1)[0], b.view(-1)[-1] = olo, ohi
        got = m.matmul(a, b)
        assert got.dtype == torch.int64 and got.shape == (mm, n)
        assert torch.equal(got, lut_reference(m, a, b)), (mm, k, n)


@pytest.mark.parametrize("path", LUT_PATHS)
@pytest.mark.parametrize("bits,signed", [(8, True), (8, False), (12, True)])
def test_lut_matmul_int32_blocks_do_not_wrap(bits, signed, path, monkeypatch):
    """Sums far beyond int32: the kernels accumulate int32 blocks of (2**31 - 1) // max|T| terms."""
    lo, hi = Exact(bits, signed).product_range
    for value in (hi, lo) if signed else (hi,):
        m = lut_on_path(torch.full((1 << bits, 1 << bits), value), bits, signed, path, monkeypatch)
        k = 2 * ((1 << 31) // abs(value)) + 3  # > 2 blocks: 65539 terms at 8 bits, 515 at 12 bits
        a = torch.zeros(2, k, dtype=torch.int64)
        b = torch.zeros(k, 40, dtype=torch.int64)
        with taken.counting() as ran:
            assert torch.equal(m.matmul(a, b), torch.full((2, 40), k * value))
        assert lut_path_ran(ran, path, bits, 1), dict(ran)


@settings(max_examples=40, deadline=None)
@given(
    bits=st.integers(2, 8),
    signed=st.booleans(),
    shape=st.tuples(st.integers(0, 9), st.integers(0, 40), st.integers(0, 70)),
    seed=st.integers(0, 2**31 - 1),
)
def test_lut_matmul_kernel_equals_torch_hypothesis(bits, signed, shape, seed):
    g = torch.Generator().manual_seed(seed)
    lo, hi = Exact(bits, signed).product_range
    m = LUTMultiplier(torch.randint(lo, hi + 1, (1 << bits, 1 << bits), generator=g), bits, signed)
    olo, ohi = m.operand_range
    mm, k, n = shape
    a = torch.randint(olo, ohi + 1, (mm, k), generator=g)
    b = torch.randint(olo, ohi + 1, (k, n), generator=g)
    want = lut_reference(m, a, b)
    assert torch.equal(m.matmul(a, b), want)
    m.use_kernel = False
    assert torch.equal(m.matmul(a, b), want)


@pytest.mark.parametrize("path", LUT_PATHS)
@pytest.mark.parametrize("model", [Exact(8), DRUM(2, 8), DRUM(3, 8), DRUM(3, 8, False), Exact(8, False)], ids=repr)
def test_lut_matmul_matches_models_on_bench_shape(model, path, monkeypatch):
    """(256 x 784) @ (784 x 128) int8-range operands: split across threads, padded to 32 columns."""
    m = lut_on_path(model.product_table(), 8, model.signed, path, monkeypatch)
    lo, hi = model.operand_range
    g = torch.Generator().manual_seed(11)
    rows = 256 if path != "torch" else 32
    a = torch.randint(lo, hi + 1, (rows, 784), generator=g)
    b = torch.randint(lo, hi + 1, (784, 128), generator=g)
    a[0], b[:, 0] = lo, lo  # DRUM-2's saturating (min, min) pair, 784 times
    with taken.counting() as ran:
        got, got_small = m.matmul(a, b), m.matmul(a[:, :100], b[:100, :77])
    assert lut_path_ran(ran, path, 8, 2), dict(ran)
    assert torch.equal(got, model.matmul(a, b))
    assert torch.equal(got_small, model.matmul(a[:, :100], b[:100, :77]))


@pytest.mark.parametrize("team", ["openmp", "pool"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(2048, 64, 10), (40, 300, 1000), (600, 40, 100)])
def test_lut_avx2_thread_splits_equal_reference(shape, threads, team, monkeypatch, torch_threads):
    """The AVX2 kernel's work splits: by 32-column tiles, by rows where there are fewer tiles than threads
    (N = 10: one tile), and transposed (M < N), each above the size that runs threads in parallel; on torch's
    OpenMP team (the default where the kernel was built with OpenMP) or on the package's thread pool."""
    m = lut_on_path(DRUM(2, 8).product_table(), 8, True, "c-avx2", monkeypatch)
    monkeypatch.setattr(lutkernel, "AVX2_MIN_SIDES", (4, 32))
    if team == "openmp" and not lutkernel._state["openmp"]:
        pytest.skip("the LUT kernel was built without OpenMP")
    monkeypatch.setitem(lutkernel._state, "openmp", team == "openmp")
    g = torch.Generator().manual_seed(sum(shape))
    mm, k, n = shape
    assert mm * k * n >= lutkernel._PARALLEL_MIN_PRODUCTS
    a = torch.randint(-128, 128, (mm, k), generator=g)
    b = torch.randint(-128, 128, (k, n), generator=g)
    torch_threads(threads)
    with taken.counting() as ran:
        got = m.matmul(a, b)
    assert ran["arith.lut_kernel.c-avx2"] == 1 and ran["arith.lut_kernel.c-avx2.transposed"] == (mm < n)
    assert ran["arith.lut_kernel.c-avx2.openmp"] == (team == "openmp" and threads > 1)
    assert torch.equal(got, DRUM(2, 8).matmul(a, b))


def test_lut_kernel_shares_torchs_openmp_runtime():
    """Built with OpenMP (gcc here), the kernel (and a bit-sliced one) binds to the libgomp torch loaded (same soname), so one OpenMP
    runtime, one thread team, serves both: a second runtime would bring back the competition for the cores."""
    if not lutkernel.available():
        pytest.skip("no C compiler: the LUT kernel is not built")
    assert lutkernel._state["openmp"], "the LUT kernel was built without OpenMP"
    import sklearn.linear_model  # noqa: F401  (scikit-learn brings its own libgomp, under another soname)

    from axhw.arith.gates import GateNetlist
    from axhw.arith.kernels import bitslice

    ev = bitslice.evaluator(GateNetlist(1, (("AND", (2, 3)),), (4, 0)))  # the bit-sliced kernels bind to it too
    assert ev is not None and ev.openmp, "the bit-sliced kernel was built without OpenMP"

    with open("/proc/self/maps") as maps:
        loaded = {line.split()[-1] for line in maps if "libgomp" in line.split()[-1]}
    # The kernel's DT_NEEDED is the soname libgomp.so.1: one file of that name may be loaded, torch's where
    # torch ships one. Runtimes under other sonames (scikit-learn's libgomp-<hash>.so) are other libraries'.
    same_soname = {p for p in loaded if Path(p).name == "libgomp.so.1"}
    assert len(same_soname) == 1, loaded
    torch_lib = Path(torch.__file__).parent / "lib"
    if (torch_lib / "libgomp.so.1").is_file():
        assert same_soname == {str((torch_lib / "libgomp.so.1").resolve())} or same_soname == {
            str(torch_lib / "libgomp.so.1")}, loaded


def test_lut_avx2_routes_small_matmuls_to_scalar(monkeypatch):
    """On an AVX2 CPU the table expansion pays off from AVX2_MIN_SIDES = (smaller, larger) of (M, N) on;
    smaller matmuls run the scalar kernel, wider tables always do."""
    if not lutkernel.available() or not lutkernel._state["avx2"]:
        pytest.skip("no AVX2 on this CPU")
    monkeypatch.setitem(lutkernel._state, "avx512", False)
    lo, hi = lutkernel.AVX2_MIN_SIDES
    assert lutkernel.backend(8, (hi - 1, hi - 1)) == "c-scalar" and lutkernel.backend(8, (lo, hi)) == "c-avx2"
    assert lutkernel.backend(8, (hi, lo - 1)) == "c-scalar" and lutkernel.backend(8, (hi, lo)) == "c-avx2"
    assert lutkernel.backend(9, (hi, hi)) == "c-scalar" and lutkernel.backend(8) == "c-avx2"
    m = LUTMultiplier.from_multiplier(DRUM(3, 8))
    for shape_a, shape_b, path in (((hi - 1, 20), (20, hi - 1), "c-scalar"), ((hi, 20), (20, lo - 1), "c-scalar"),
                                   ((hi, 20), (20, lo), "c-avx2"), ((lo, 20), (20, hi), "c-avx2")):
        a, b = torch.randint(-128, 128, shape_a), torch.randint(-128, 128, shape_b)
        with taken.counting() as ran:
            assert torch.equal(m.matmul(a, b), DRUM(3, 8).matmul(a, b))
        assert ran[f"arith.lut_kernel.{path}"] == 1, (shape_a, shape_b, dict(ran))


@pytest.mark.parametrize("layout", ["rows", "transposed"])
def test_lut_word_blocks_mark_the_words_present(layout):
    """axhw_lut_word_blocks: bit j of column k's mask is set exactly when a word of column k (of the rows asked
    for) lies in [8j, 8j + 8) (the AVX2 kernel expands only those blocks of table rows); A read through its
    strides, as the kernel reads a transposed operand."""
    if not lutkernel.available():
        pytest.skip("no C compiler: the LUT kernel is not built")
    g = torch.Generator().manual_seed(3)
    a = torch.randint(0, 256, (37, 11), generator=g)
    a[:, 0], a[:, 1], a[:5, 2], a[5:, 2] = 0, 255, 8, 15  # one block only: the first, the last, block 1
    a[:30, 3], a[30:, 3] = 7, 200  # rows beyond those asked for do not count
    held = a.T.contiguous() if layout == "transposed" else a  # the same matrix, stored the other way
    strides = held.stride()[::-1] if layout == "transposed" else held.stride()
    job = lutkernel._state["job"](a=held.data_ptr(), a_rs=strides[0], a_cs=strides[1], M=37, K=11, mask=255)
    blocks = torch.empty(11, dtype=torch.int32)
    lutkernel._load().axhw_lut_word_blocks(ctypes.byref(job), 0, 30, blocks.data_ptr())
    want = [sum(1 << j for j in set((a[:30, k] >> 3).tolist())) for k in range(11)]
    assert [int(x) & 0xFFFFFFFF for x in blocks] == want
    assert want[:4] == [1, 1 << 31, 2, 1]


@pytest.mark.parametrize("words", ["relu", "sparse", "one_block"])
def test_lut_avx2_skipped_blocks_are_never_read(words, monkeypatch):
    """Operand words confined to a few blocks of 8 (non-negative after a ReLU; a handful of values; one block):
    the kernel leaves the other table rows unexpanded, and the results still equal the reference, also with
    the expansion scratch full of garbage from an earlier call on other words."""
    table = torch.randint(-16384, 16385, (256, 256), generator=torch.Generator().manual_seed(5))
    m = lut_on_path(table, 8, True, "c-avx2", monkeypatch)
    g = torch.Generator().manual_seed(6)
    m.matmul(torch.randint(-128, 128, (64, 40), generator=g), torch.randint(-128, 128, (40, 64), generator=g))
    if words == "relu":
        a = torch.randint(0, 128, (96, 40), generator=g)
    elif words == "sparse":
        a = torch.tensor([-128, -1, 0, 9, 100])[torch.randint(0, 5, (96, 40), generator=g)]
    else:
        a = torch.randint(16, 24, (96, 40), generator=g)
    b = torch.randint(-128, 128, (40, 70), generator=g)
    with taken.counting() as ran:
        got = m.matmul(a, b)
    assert ran["arith.lut_kernel.c-avx2"] == 1 and ran["arith.lut_kernel.c-avx2.transposed"] == 0
    assert torch.equal(got, lut_reference(m, a, b))


def test_lut_matmul_refuses_possible_int64_overflow(monkeypatch):
    m = LUTMultiplier.from_multiplier(DRUM(3, 8))
    a = torch.ones(2, 8, dtype=torch.int64)
    monkeypatch.setattr(multipliers, "INT64_SAFE_LIMIT", 8 * m._max_abs)  # stands in for K ~ 2**47
    with pytest.raises(OverflowError, match="int64"):
        m.matmul(a, a.T.contiguous())
    m.use_kernel = False
    with pytest.raises(OverflowError, match="int64"):
        m.matmul(a, a.T.contiguous())


@pytest.mark.parametrize("rows", [2, 64])
def test_lut_matmul_operand_range_checked(rows):
    """Out-of-range operands are refused on every path: 64 rows take the AVX2 kernel on an AVX2 CPU, whose
    check runs in C (in_range) before torch's check names the operand."""
    m = LUTMultiplier.from_multiplier(DRUM(3, 8))
    b = torch.zeros(3, rows, dtype=torch.int64)
    b[2, rows - 1] = 128
    with pytest.raises(ValueError, match=r"operand b .*valid range is \[-128, 127\]"):
        m.matmul(torch.zeros(rows, 3, dtype=torch.int64), b)
    with pytest.raises(ValueError, match=r"operand a .*valid range is \[-128, 127\]"):
        m.matmul(b.T, torch.zeros(3, 8, dtype=torch.int64))  # a transposed (strided) operand, checked too
    with pytest.raises(TypeError, match="integer tensor"):
        m.matmul(torch.zeros(rows, 3), torch.zeros(3, rows, dtype=torch.int64))
    a32 = torch.randint(-128, 128, (rows, 3), dtype=torch.int32)  # other integer types are converted
    assert torch.equal(m.matmul(a32, b.clamp(max=127)), DRUM(3, 8).matmul(a32.long(), b.clamp(max=127)))


def test_lut_in_range_checks_every_element():
    if not lutkernel.available():
        pytest.skip("no C compiler: the LUT kernel is not built")
    x = torch.zeros(5, 7, dtype=torch.int64)
    assert lutkernel.in_range(x, 0, 0) and lutkernel.in_range(x.T, 0, 0)
    for i, j, v in ((0, 0, -1), (4, 6, 1), (2, 3, 1 << 40)):
        y = x.clone()
        y[i, j] = v
        assert not lutkernel.in_range(y, 0, 0) and not lutkernel.in_range(y.T, 0, 0)
        assert lutkernel.in_range(y, min(v, 0), max(v, 0))
    assert not lutkernel.in_range(x.int(), 0, 0)  # not int64: the caller's torch check decides


def test_lut_kernel_missing_compiler_falls_back(monkeypatch, tmp_path):
    monkeypatch.setattr(lutkernel, "_state", {})
    monkeypatch.setattr(kernel_build, "compiler", lambda: None)
    monkeypatch.setenv("AXHW_KERNEL_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="no C compiler"):
        lutkernel.build()
    with pytest.warns(UserWarning, match="torch path"):
        assert not lutkernel.available()
    m = LUTMultiplier.from_multiplier(DRUM(3, 8))
    assert m.backend == "torch"
    g = torch.Generator().manual_seed(4)
    a = torch.randint(-128, 128, (5, 30), generator=g)
    b = torch.randint(-128, 128, (30, 6), generator=g)
    assert torch.equal(m.matmul(a, b), DRUM(3, 8).matmul(a, b))


def test_lut_kernel_builds_into_fresh_dir(monkeypatch, tmp_path):
    if kernel_build.compiler() is None:
        pytest.skip("no C compiler")
    monkeypatch.setenv("AXHW_KERNEL_DIR", str(tmp_path))
    path = lutkernel.build()
    assert path.parent == tmp_path and path.is_file()
    assert lutkernel.build() == path  # cached: no rebuild
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary files left behind


# --------------------------------------------------------------------------- registry and errors
def test_registry():
    assert get_multiplier("exact", 8).name == "exact"
    assert get_multiplier("drum5", 16).k == 5
    assert [get_multiplier(f"K{i}").k for i in range(1, 5)] == [1, 2, 3, 4]
    assert get_multiplier("K1", presets={"K1": 6}).k == 6
    assert "drum<k>" in multiplier_names()
    with pytest.raises(ValueError, match="valid names are 'exact'"):
        get_multiplier("wallace")


@pytest.mark.parametrize("k,bits", [(0, 8), (9, 8), (3, 1), (3, 33)])
def test_bad_k_or_bits(k, bits):
    with pytest.raises(ValueError, match="valid range"):
        DRUM(k, bits)


def test_out_of_range_operands_name_the_range():
    m = DRUM(3, 8)
    with pytest.raises(ValueError, match=r"valid range is \[-128, 127\]"):
        m(torch.tensor([128]), torch.tensor([1]))
    with pytest.raises(ValueError, match=r"valid range is \[0, 255\]"):
        DRUM(3, 8, signed=False)(torch.tensor([-1]), torch.tensor([1]))
    with pytest.raises(TypeError, match="integer tensor"):
        m(torch.tensor([1.0]), torch.tensor([1]))
    with pytest.raises(ValueError, match="valid range"):
        m.matmul(torch.full((1, 1), 300), torch.ones(1, 1, dtype=torch.int64))


# --------------------------------------------------------------------------- error statistics
def test_error_stats_exact_is_zero_and_drum_improves_with_k():
    z = error_stats(Exact(8))
    assert z.exhaustive and z.pairs == 65536 and z.mae == 0 and z.ep == 0
    stats = [error_stats(DRUM(k, 8)) for k in range(1, 9)]
    mres = [s.mre for s in stats]
    assert all(x > y for x, y in itertools.pairwise(mres))
    assert stats[-1].mae == 0
    for s in stats[2:]:  # the forced 1 makes DRUM (nearly) unbiased for k >= 3
        assert abs(s.mean_rel_error) < 0.01


def test_error_stats_sampled_is_seeded():
    a = error_stats(DRUM(4, 16), samples=20_000, seed=1)
    b = error_stats(DRUM(4, 16), samples=20_000, seed=1)
    assert a == b and not a.exhaustive and a.pairs == 20_000
    assert 0.01 < a.mre < 0.1


@pytest.mark.parametrize("m", [Exact(8), DRUM(1, 8), DRUM(2, 8), DRUM(4, 8), DRUM(3, 8, signed=False)], ids=repr)
def test_conv2d_fast_path_equals_im2col_reference(m):
    lo, hi = m.operand_range
    g = torch.Generator().manual_seed(8)
    a = torch.randint(lo, hi + 1, (3, 4, 9, 9), generator=g)
    w = torch.randint(lo, hi + 1, (5, 4, 3, 3), generator=g)
    a[0, 0, :2, :2] = lo  # (min, min) pairs: the DRUM-2 saturation correction
    w[0, 0] = lo
    want = LUTMultiplier.from_multiplier(m).conv2d(a, w, stride=2, padding=1)  # generic im2col path
    brute = torch.zeros_like(want)
    ap = torch.nn.functional.pad(a, (1, 1, 1, 1))
    for i in range(want.shape[2]):
        for j in range(want.shape[3]):
            patch = ap[:, None, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
            brute[:, :, i, j] = m(patch, w[None]).sum(dim=(2, 3, 4))
    assert torch.equal(want, brute)
    assert torch.equal(m.conv2d(a, w, stride=2, padding=1), want)


# --------------------------------------------------------------------------- (min, min) saturation correction
def _with_minima(shape, fraction, lo, hi, g):
    x = torch.randint(lo, hi + 1, shape, generator=g)
    x[torch.rand(shape, generator=g) < fraction] = lo
    return x


@pytest.mark.parametrize("bits", [3, 8, 16])
@pytest.mark.parametrize(
    ("frac_a", "frac_b"),
    [(0.0, 0.0), (0.01, 0.0), (0.0, 0.01), (0.003, 0.003), (0.01, 0.01), (0.3, 0.3), (1.0, 1.0), (1.0, 0.02)],
)
def test_drum2_matmul_min_pairs_equal_elementwise(bits, frac_a, frac_b):
    """Few, many, no and only minimum values in both operands: the sparse join (few pairs) and the dense
    count GEMM on the shared reduction indices (many pairs) both equal the elementwise saturating sum."""
    m = DRUM(2, bits)
    assert m.sat_correction != 0
    lo, hi = m.operand_range
    g = torch.Generator().manual_seed(int(frac_a * 1000) * 7 + int(frac_b * 1000) + bits)
    a = _with_minima((19, 157), frac_a, lo, hi, g)
    b = _with_minima((157, 23), frac_b, lo, hi, g)
    assert torch.equal(m.matmul(a, b), elementwise_sum(m, a, b))


def test_drum2_matmul_min_pairs_both_paths_taken(monkeypatch):
    """The sparse and the dense correction agree (forced either way), on non-contiguous operands too."""
    m = DRUM(2, 8)
    g = torch.Generator().manual_seed(3)
    a = _with_minima((40, 300), 0.05, -128, 127, g)
    b = _with_minima((9, 300), 0.05, -128, 127, g).T  # (300, 9), not contiguous
    want = elementwise_sum(m, a, b)
    for macs_per_pair, path in ((0, "arith.minmin_sparse"), (1 << 40, "arith.minmin_gemm")):  # forced
        monkeypatch.setattr(type(m), "_DENSE_MACS_PER_PAIR", macs_per_pair)
        with taken.counting() as ran:
            assert torch.equal(m.matmul(a, b), want)
        assert set(ran) & {"arith.minmin_sparse", "arith.minmin_gemm"} == {path}, ran


def test_drum2_matmul_min_pairs_single_pair_and_edges():
    m = DRUM(2, 8)
    a = torch.zeros(3, 5, dtype=torch.int64)
    b = torch.zeros(5, 4, dtype=torch.int64)
    a[2, 4], b[4, 3] = -128, -128  # one pair, at the last reduction index and the last output
    out = m.matmul(a, b)
    assert out[2, 3].item() == 32767 and int(out.abs().sum()) == 32767
    a[0, 0], b[1, 0] = -128, -128  # minima at different k: no extra pair
    assert torch.equal(m.matmul(a, b), elementwise_sum(m, a, b))
    assert m.matmul(a[:, :0], b[:0]).shape == (3, 4)  # K = 0


@pytest.mark.parametrize(("frac_a", "frac_w"), [(0.0, 0.1), (0.02, 0.0), (0.02, 0.05), (0.5, 0.5), (1.0, 1.0)])
@pytest.mark.parametrize(("stride", "padding"), [(1, 0), (2, 1), (3, 2)])
@pytest.mark.parametrize("macs_per_pair", [None, 0, 1 << 40])  # default, always sparse, always dense
def test_drum2_conv2d_min_pairs_equal_reference(frac_a, frac_w, stride, padding, macs_per_pair, monkeypatch):
    """The convolution correction (sparse join on channels or dense count convolution) against the table
    multiplier's generic im2col path (elementwise products, no correction involved)."""
    m = DRUM(2, 8)
    if macs_per_pair is not None:
        monkeypatch.setattr(type(m), "_DENSE_MACS_PER_PAIR", macs_per_pair)
    g = torch.Generator().manual_seed(int(frac_a * 100) + 10 * stride + padding)
    a = _with_minima((3, 4, 11, 10), frac_a, -128, 127, g)
    w = _with_minima((5, 4, 3, 4), frac_w, -128, 127, g)
    want = LUTMultiplier.from_multiplier(m).conv2d(a, w, stride=stride, padding=padding)
    with taken.counting() as ran:
        assert torch.equal(m.conv2d(a, w, stride=stride, padding=padding), want)
    if frac_a and frac_w and macs_per_pair is not None:  # pairs exist: the forced correction ran
        assert ran["arith.minmin_sparse" if macs_per_pair == 0 else "arith.minmin_gemm"] > 0, ran
    assert torch.equal(multipliers.Multiplier.conv2d(m, a, w, stride=stride, padding=padding), want)


# ------------------------------------------------------- compiled matmul (docs/hardware-models.md, "Multipliers")
def _eager(m):
    """A copy of ``m`` whose matmul takes the torch path (the compiled one switched off)."""
    import copy

    e = copy.copy(m)
    e._matmul_compiled = lambda a, b: None
    return e


@pytest.mark.parametrize("m", [Exact(8), DRUM(1, 8), DRUM(2, 8), DRUM(3, 8), DRUM(4, 8), DRUM(3, 8, signed=False),
                               DRUM(2, 4), Exact(16), DRUM(5, 16)], ids=repr)
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 300, 5), (33, 1024, 17), (4, 3000, 9)])
@pytest.mark.parametrize("min_fraction", [0.0, 0.05, 1.0])
def test_compiled_matmul_equals_torch_path(m, shape, min_fraction):
    """The compiled transform (range check, data bound, chunked float32 GEMM, int64 sum) equals the torch
    path bit for bit, with and without (min, min) pairs, through every chunk count and the float64 path."""
    from axhw.arith.kernels import fused as hwkernel
    if not hwkernel.available():
        pytest.skip("no C compiler: the compiled path is not built")
    mm, kk, nn = shape
    lo, hi = m.operand_range
    g = torch.Generator().manual_seed(mm * kk + nn)
    a = torch.randint(lo, hi + 1, (mm, kk), generator=g)
    b = torch.randint(lo, hi + 1, (kk, nn), generator=g)
    a[torch.rand(a.shape, generator=g) < min_fraction] = lo
    b[torch.rand(b.shape, generator=g) < min_fraction] = lo
    with taken.counting() as eager_ran:
        want = _eager(m).matmul(a, b)
    assert eager_ran["arith.compiled_matmul"] == 0
    assert torch.equal(m.matmul(a, b), want)
    assert torch.equal(m.matmul(a.T.contiguous().T, b), want)  # non-contiguous operand
    if mm <= 7:
        assert torch.equal(want, m(a[:, :, None], b[None]).sum(1))


@pytest.mark.parametrize(("m", "shape", "compiled"), [
    (DRUM(3, 8), (7, 300, 5), True),    # |T| <= 160: 300 * 160**2 < 2**24, one float32 GEMM
    (DRUM(3, 8), (33, 1024, 17), True),  # 1024 * 160**2 = 26.2M: 2 exact float32 chunks
    (Exact(16), (4, 3000, 9), True),     # 3000 * 32768**2 = 3.2e12 < 2**53: one float64 GEMM
    (DRUM(2, 8), (4, 3000, 9), False),   # minima everywhere, |T| = 192: 3000 * 192**2 needs 7 chunks > 4
])
def test_compiled_matmul_taken_where_it_applies(m, shape, compiled):
    """The compiled matmul runs on the shapes it is built for (and hands the rest to the torch path)."""
    from axhw.arith.kernels import fused as hwkernel
    if not hwkernel.available():
        pytest.skip("no C compiler: the compiled path is not built")
    mm, kk, nn = shape
    lo, hi = m.operand_range
    g = torch.Generator().manual_seed(3)
    a, b = torch.randint(lo, hi + 1, (mm, kk), generator=g), torch.randint(lo, hi + 1, (kk, nn), generator=g)
    if not compiled:
        a[:], b[:] = lo, lo
    with taken.counting() as ran:
        got = m.matmul(a, b)
    assert ran["arith.compiled_matmul"] == int(compiled), ran
    assert torch.equal(got, _eager(m).matmul(a, b))


def test_compiled_matmul_errors_and_fallbacks():
    m = DRUM(3, 8)
    with pytest.raises(ValueError, match=r"operand of DRUM\(k=3, bits=8, signed=True\) out of range"):
        m.matmul(torch.full((2, 2), -129), torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="valid range"):
        m.matmul(torch.ones(2, 2, dtype=torch.int64), torch.full((2, 2), 1 << 40))
    a32 = torch.randint(-128, 128, (3, 4), dtype=torch.int32)  # other integer dtypes: the torch path
    assert torch.equal(m.matmul(a32, a32.T.contiguous()), m.matmul(a32.long(), a32.T.contiguous().long()))
    assert m.matmul(torch.zeros(0, 3, dtype=torch.int64), torch.zeros(3, 2, dtype=torch.int64)).shape == (0, 2)


@pytest.mark.parametrize("cap", [0, 3, 1 << 16])
@pytest.mark.parametrize("macs_per_pair", [0, 128, 1 << 40])
def test_compiled_min_pairs_join_equals_numpy(cap, macs_per_pair, monkeypatch):
    """The compiled sparse (min, min) join, its capacity and density fallbacks all equal the torch path."""
    from axhw.arith.kernels import fused as hwkernel
    if not hwkernel.available():
        pytest.skip("no C compiler: the compiled path is not built")
    m = DRUM(2, 8)
    g = torch.Generator().manual_seed(11)
    a = _with_minima((50, 400), 0.03, -128, 127, g)
    b = _with_minima((400, 20), 0.03, -128, 127, g)
    want = _eager(m).matmul(a, b)
    monkeypatch.setattr(type(m), "_MIN_POSITIONS", cap)
    monkeypatch.setattr(type(m), "_DENSE_MACS_PER_PAIR", macs_per_pair)
    assert torch.equal(m.matmul(a, b), want)


# ------------------------------------------------------- convolution options, exactness bounds, small interfaces
@pytest.mark.parametrize("m", [Exact(8), DRUM(2, 8), DRUM(5, 16), DRUM(3, 20), Exact(24)], ids=repr)
@pytest.mark.parametrize("opts", [{}, {"stride": (2, 1), "padding": (1, 2), "dilation": (2, 1)},
                                  {"groups": 2, "padding": 1}], ids=["defaults", "pairs", "groups"])
def test_conv2d_options_equal_brute_force(m, opts, conv_brute):
    """Stride, padding and dilation as (h, w) pairs, groups and the defaults, on the float fast path (up to
    16 bits) and the im2col path of wider operands; the path taken is the one documented."""
    lo, hi = m.operand_range
    g = torch.Generator().manual_seed(m.bits + len(opts))
    a = torch.randint(lo, hi + 1, (2, 4, 7, 6), generator=g)
    w = torch.randint(lo, hi + 1, (4, 4 // opts.get("groups", 1), 3, 2), generator=g)
    a[0, :, :2] = lo  # (min, min) pairs for the saturating DRUM-2
    w[:, :, 0] = lo
    want = conv_brute(m, a, w, **opts)
    with taken.counting() as ran:
        assert torch.equal(m.conv2d(a, w, **opts), want)
    assert ("arith.conv2d_float" in ran) == (m.bits <= multipliers.TABLE_TRANSFORM_MAX_BITS), ran
    assert torch.equal(multipliers.Multiplier.conv2d(m, a, w, **opts), want)


@pytest.mark.parametrize("kernel", [(8, 2), (2, 8)])
def test_conv2d_float32_bound_counts_every_term(kernel):
    """65 channels of an 8 x 2 (2 x 8) kernel: 1040 terms of up to 2**14 exceed float32's exact 2**24, so
    the convolution must run in float64; an odd sum past 2**24 shows any float32 rounding."""
    m = Exact(8)
    a = torch.full((1, 65, *kernel), -128)
    w = torch.full((1, 65, *kernel), -128)
    a[0, 0, 0, 0] = w[0, 0, 0, 0] = 1
    want = 1039 * 2**14 + 1
    assert want > 2**24
    assert m.conv2d(a, w).item() == want


def test_conv2d_float64_bound_counts_every_term():
    """2**23 + 2 channels of 16-bit products (2**30 each): the bound passes 2**53, so the convolution leaves
    the float path (im2col, limb GEMMs); the odd sum past 2**53 shows any float64 rounding."""
    m = Exact(16)
    k = 2**23 + 2
    a = torch.full((1, k, 1, 1), -32768)
    a[0, 0] = 1
    with taken.counting() as ran:
        got = m.conv2d(a, a[:1].clone()).item()
    assert got == (k - 1) * 2**30 + 1 and got > 2**53
    assert "arith.conv2d_float" not in ran, ran


@pytest.mark.parametrize("case", ["group1_top_rows", "group1_all_min", "group0"])
def test_drum2_grouped_conv2d_corrects_the_groups_holding_pairs(case, conv_brute):
    """Grouped convolution, (min, min) pairs inside one group: the correction must find that group whatever
    its other values (all minima included) and whichever sample holds the minima."""
    m = DRUM(2, 8)
    g = torch.Generator().manual_seed(41)
    a = torch.randint(-127, 128, (2, 4, 6, 6), generator=g)  # no minimum anywhere yet
    w = torch.randint(-127, 128, (4, 2, 3, 3), generator=g)
    if case == "group1_top_rows":
        a[0, 2:, :2] = -128  # sample 0, group 1's channels, top rows only
        w[2:] = -128
    elif case == "group1_all_min":
        a[:, 2:] = -128
        w[2:, :, 1, 1] = -128
    else:
        a[1, :2, 3:] = -128
        w[:2, 0] = -128
    want = conv_brute(m, a, w, padding=1, groups=2)
    assert torch.equal(m.conv2d(a, w, padding=1, groups=2), want)


def test_drum2_conv2d_single_minimum_single_pair():
    m = DRUM(2, 8)
    a = torch.zeros(1, 2, 4, 4, dtype=torch.int64)
    w = torch.zeros(3, 2, 3, 3, dtype=torch.int64)
    a[0, 1, 2, 2] = -128
    w[1, 1, 1, 1] = -128  # one pair, landing on output (0, 1, 2, 2) with padding 1
    out = m.conv2d(a, w, padding=1)
    assert out[0, 1, 2, 2].item() == 32767 and int(out.abs().sum()) == 32767


def _only_path(ran):
    return set(ran) & {"arith.minmin_sparse", "arith.minmin_gemm"}


def test_conv2d_min_pairs_join_up_to_the_cost_crossover(monkeypatch, conv_brute):
    """The sparse join runs while pairs x cost-per-pair <= output size x shared channels x kh x kw (the
    dense count convolution's multiply-adds), the count convolution beyond, both exact. Here: 2 pairs,
    27 outputs, 2 shared channels (a third channel holds a minimum in the input only), a 2 x 3 kernel."""
    m = DRUM(2, 8)
    a = torch.zeros(1, 3, 4, 5, dtype=torch.int64)
    w = torch.zeros(3, 3, 2, 3, dtype=torch.int64)
    a[0, 0, 1, 1] = a[0, 1, 2, 3] = a[0, 2, 0, 0] = -128
    w[0, 0, 1, 2] = w[2, 1, 0, 1] = -128
    want = conv_brute(m, a, w)
    crossover = 27 * 2 * 2 * 3 // 2
    for per_pair, path in ((crossover, "arith.minmin_sparse"), (crossover + 1, "arith.minmin_gemm")):
        monkeypatch.setattr(type(m), "_DENSE_MACS_PER_PAIR", per_pair)
        with taken.counting() as ran:
            assert torch.equal(m.conv2d(a, w), want)
        assert _only_path(ran) == {path}, (per_pair, ran)


def test_matmul_min_pairs_join_up_to_the_cost_crossover(monkeypatch):
    """The same crossover for the torch-path matmul: 2 pairs against a (3 x 4) @ (4 x 5) dense count GEMM."""
    m = _eager(DRUM(2, 8))
    a = torch.zeros(3, 4, dtype=torch.int64)
    b = torch.zeros(4, 5, dtype=torch.int64)
    a[0, 1] = a[2, 3] = -128
    b[1, 0] = b[3, 4] = -128
    want = elementwise_sum(m, a, b)
    for per_pair, path in ((30, "arith.minmin_sparse"), (31, "arith.minmin_gemm")):
        monkeypatch.setattr(type(m), "_DENSE_MACS_PER_PAIR", per_pair)
        with taken.counting() as ran:
            assert torch.equal(m.matmul(a, b), want)
        assert _only_path(ran) == {path}, (per_pair, ran)


def test_spec_repr_and_table_names():
    assert Exact(8).spec() == {"name": "exact", "bits": 8, "signed": True}
    assert DRUM(3, 12, signed=False).spec() == {"name": "drum3", "bits": 12, "signed": False, "k": 3}
    assert repr(Exact(6, False)) == "Exact(bits=6, signed=False)"
    assert LUTMultiplier.from_multiplier(DRUM(3, 8)).name == "lut(drum3)"
    assert LUTMultiplier.from_multiplier(DRUM(3, 8), name="mine").name == "mine"


def test_product_table_up_to_the_table_limit():
    limit = multipliers.LUT_MAX_BITS
    t = DRUM(1, limit).product_table()
    assert t.shape == (1 << limit, 1 << limit)
    assert t[1, (1 << limit) - 1].item() == -1  # word 0xfff is -1 in two's complement
    with pytest.raises(ValueError, match=rf"^product tables exist for bits <= {limit}, got bits={limit + 1}$"):
        Exact(limit + 1).product_table()


def test_conv_option_errors_are_one_line():
    with pytest.raises(ValueError, match=r"^expected an int or an \(h, w\) pair, got \(1, 2, 3\)$"):
        multipliers.as_pair((1, 2, 3))
    a = torch.zeros(1, 4, 5, 5, dtype=torch.int64)
    msg = r"^conv2d groups={} does not fit 4 input channels, weights of {} x {} channels$"
    with pytest.raises(ValueError, match=msg.format(1, 2, 3)):
        Exact(8).conv2d(a, torch.zeros(2, 3, 3, 3, dtype=torch.int64))  # channels differ, out divisible
    with pytest.raises(ValueError, match=msg.format(0, 2, 4)):
        Exact(8).conv2d(a, torch.zeros(2, 4, 3, 3, dtype=torch.int64), groups=0)
    with pytest.raises(ValueError, match=msg.format(2, 3, 2)):
        Exact(8).conv2d(a, torch.zeros(3, 2, 3, 3, dtype=torch.int64), groups=2)


# ------------------------------------------------------------------ error statistics against plain Python
def stats_reference(m, pairs, exhaustive):
    """Every ErrorStats field from the definitions in its docstring, over ``pairs`` of Python ints."""
    import statistics

    lo, hi = m.operand_range
    errs = [int(m(torch.tensor(a), torch.tensor(b))) - a * b for a, b in pairs]
    rels = [e / abs(a * b) for (a, b), e in zip(pairs, errs, strict=True) if a * b]
    max_p = max(lo * lo, hi * hi)
    n = len(pairs)

    def mean(xs):
        return sum(xs) / len(xs) if xs else 0.0

    def ci(xs, scale=1.0):
        if not xs:
            return [0.0, 0.0]
        half = 1.96 * statistics.stdev(xs) / len(xs) ** 0.5 if len(xs) > 1 else 0.0
        return [scale * (mean(xs) - half), scale * (mean(xs) + half)]

    ae = [abs(e) for e in errs]
    return {
        "name": m.name, "bits": m.bits, "signed": m.signed, "pairs": n, "exhaustive": exhaustive,
        "mre": mean([abs(r) for r in rels]), "max_re": max((abs(r) for r in rels), default=0.0),
        "mean_error": mean(errs), "mean_rel_error": mean(rels), "mae": mean(ae), "wce": float(max(ae)),
        "mse": mean([e * e for e in errs]), "ep": mean([float(e != 0) for e in errs]), "nmed": mean(ae) / max_p,
        "mae_percent": 100 * mean(ae) / 4**m.bits, "wce_percent": 100 * max(ae) / 4**m.bits,
        "ci95": None if exhaustive else {
            "mre": ci([abs(r) for r in rels]), "mean_error": ci(errs), "mean_rel_error": ci(rels), "mae": ci(ae),
            "mse": ci([e * e for e in errs]), "ep": ci([float(e != 0) for e in errs]), "nmed": ci(ae, 1 / max_p),
            "mae_percent": ci(ae, 100 / 4**m.bits)},
    }


def assert_stats(got, want):
    """Same keys; names, flags and counts equal; every number and interval within float rounding."""
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-15), key
        elif isinstance(value, dict):
            assert got[key].keys() == value.keys(), key
            for k, v in value.items():
                assert got[key][k] == pytest.approx(v, rel=1e-12, abs=1e-15), (key, k)
        else:
            assert got[key] == value and type(got[key]) is type(value), key


def _drawn_pairs(m, samples, seed):
    """The documented draw: a generator seeded with ``seed``, all ``a`` then all ``b``, uniform."""
    lo, hi = m.operand_range
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(lo, hi + 1, (samples,), generator=g)
    b = torch.randint(lo, hi + 1, (samples,), generator=g)
    return list(zip(a.tolist(), b.tolist(), strict=True))


@pytest.mark.parametrize("m", [DRUM(2, 4), DRUM(3, 5, signed=False), Exact(3)], ids=repr)
def test_error_stats_exhaustive_equal_the_definitions(m):
    lo, hi = m.operand_range
    pairs = [(a, b) for a in range(lo, hi + 1) for b in range(lo, hi + 1)]
    got = error_stats(m).as_dict()
    assert_stats(got, stats_reference(m, pairs, True))


@pytest.mark.parametrize(("m", "samples", "seed"), [(DRUM(3, 10), 400, 5), (DRUM(1, 9, signed=False), 2, 3),
                                                    (DRUM(2, 12), 1, 7)], ids=str)
def test_error_stats_sampled_equal_the_definitions(m, samples, seed):
    """Sampled statistics (9 bits and more by default) and their 95% intervals, down to one and two pairs."""
    got = error_stats(m, samples=samples, seed=seed).as_dict()
    want = stats_reference(m, _drawn_pairs(m, samples, seed), False)
    assert_stats(got, want)


def test_error_stats_sampled_without_a_nonzero_product():
    """Relative metrics over no pair are 0, and so are their intervals (a 1-bit operand is 0 half the time)."""
    m = Exact(1, signed=False)
    empty = 0
    for seed in range(12):
        pairs = _drawn_pairs(m, 1, seed)
        got = error_stats(m, samples=1, seed=seed, exhaustive_max_bits=0).as_dict()
        assert_stats(got, stats_reference(m, pairs, False))
        empty += pairs[0][0] * pairs[0][1] == 0
    assert 0 < empty < 12  # both cases met


def test_error_stats_defaults_and_sample_count_check():
    m = DRUM(4, 10)
    full = error_stats(m)
    assert full.pairs == 1_000_000 and not full.exhaustive
    assert error_stats(m, samples=300) == error_stats(m, samples=300, seed=0)
    with pytest.raises(ValueError, match=r"^samples=0 out of range: valid range is >= 1$"):
        error_stats(m, samples=0)


def test_drum2_conv2d_dense_count_beyond_float32():
    """One output whose (min, min) pairs number 4100 x 64 x 65 - 1 (odd, past 2**24): the dense count
    convolution must run where such counts are exact (float64), whatever the kernel's aspect."""
    m = DRUM(2, 8)
    a = torch.full((1, 4100, 64, 65), -128)
    w = torch.full((1, 4100, 64, 65), -128)
    w[0, 0, 0, 0] = 0
    pairs = 4100 * 64 * 65 - 1
    assert pairs > 2**24 and pairs % 2
    with taken.counting() as ran:
        assert m.conv2d(a, w).item() == 32767 * pairs
    assert ran["arith.minmin_gemm"] == 1


def test_conv2d_16_bit_stays_on_the_float_path_while_the_bound_allows():
    """256 terms of 2**30 (16-bit minima): 2**38, far below 2**53, so the float convolution runs (not im2col)."""
    m = Exact(16)
    a = torch.full((1, 16, 4, 4), -32768)
    with taken.counting() as ran:
        assert m.conv2d(a, a.clone()).item() == 2**38
    assert ran["arith.conv2d_float"] == 1


def test_lut_call_names_the_operand_out_of_range():
    m = LUTMultiplier.from_multiplier(Exact(4), name="t4")
    ok, bad = torch.tensor([1]), torch.tensor([8])
    with pytest.raises(ValueError, match=r"^operand a of .* out of range: found \[8, 8\]"):
        m(bad, ok)
    with pytest.raises(ValueError, match=r"^operand b of .* out of range: found \[8, 8\]"):
        m(ok, bad)


@pytest.mark.parametrize(("chunks", "compiled"), [(4, True), (5, False)])
def test_compiled_matmul_takes_at_most_four_float32_chunks(chunks, compiled):
    """8-bit minima (|T| = 128, 2**14 a product): 1023 terms a float32 chunk. Up to four chunks the compiled
    pass runs; beyond, the torch path (chunked exact_int_matmul) does; both exact."""
    from axhw.arith.kernels import fused as hwkernel
    if not hwkernel.available():
        pytest.skip("no C compiler: the compiled path is not built")
    k = chunks * 1023
    a = torch.full((2, k), -128)
    b = torch.full((k, 3), -128)
    with taken.counting() as ran:
        out = Exact(8).matmul(a, b)
    assert torch.equal(out, torch.full((2, 3), k * 2**14))
    assert ("arith.compiled_matmul" in ran) is compiled, ran
    assert ("arith.chunked_gemm" in ran) is not compiled, ran


def test_sum_parts_takes_one_to_four_tensors():
    """The C sum reads four pointers: a fifth tensor is refused in Python, before any C call."""
    from axhw.arith.kernels import fused as hwkernel
    if not hwkernel.available():
        pytest.skip("no C compiler: the compiled path is not built")
    x = torch.full((3, 2), 7.0)
    assert torch.equal(hwkernel.sum_parts([x] * 4), torch.full((3, 2), 28))
    for n in (0, 5):
        with pytest.raises(ValueError, match=rf"^sum_parts sums 1 to 4 tensors, got {n}$"):
            hwkernel.sum_parts([x] * n)
