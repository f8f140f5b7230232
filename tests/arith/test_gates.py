"""Gate netlists (axhw.arith.gates) and their bit-sliced kernel (axhw.arith.kernels.bitslice): the netlist's
own checks, the torch reference against hand-computed products, the kernel against the reference on every
gate type and every product mode (signed, unsigned, sign-magnitude wrapped, saturation included), the kernel
proven taken, and sampled statistics whose confidence interval holds the exhaustive value."""

from __future__ import annotations

import pytest
import torch

from axhw.arith.gates import GateMultiplier, GateNetlist, GateNetlistError
from axhw.arith.kernels import bitslice
from axhw.arith.library import sign_magnitude_table
from axhw.arith.multipliers import DRUM, LUTMultiplier, error_stats
from axhw.common import taken


def _all_ops_netlist(bits: int = 4) -> GateNetlist:
    """A 'multiplier' that uses every gate type, the constants and a MUX on each product bit (not a real
    multiplier: a function of a and b that exercises the evaluator)."""
    a = [2 + i for i in range(bits)]
    b = [2 + bits + i for i in range(bits)]
    gates: list[tuple[str, tuple[int, ...]]] = []
    first = 2 + 2 * bits

    def add(op: str, *ins: int) -> int:
        gates.append((op, ins))
        return first + len(gates) - 1

    outs = []
    ops = ["AND", "NAND", "OR", "NOR", "XOR", "XNOR", "ANDNOT", "ORNOT"]
    for i in range(2 * bits):
        x, y = a[i % bits], b[(i * 3 + 1) % bits]
        g = add(ops[i % len(ops)], x, y)
        h = add("NOT", g) if i % 2 else add("BUF", g)
        m = add("MUX", h, b[i % bits], a[(i + 1) % bits])
        outs.append(m)
    outs[-1] = 1  # a constant-1 product bit
    outs[0] = add("XOR", outs[0], 0)  # a constant input
    return GateNetlist(bits, tuple(gates), tuple(outs))


def _and_multiplier() -> GateNetlist:
    """1-bit unsigned multiplier: p = {0, a & b}."""
    return GateNetlist(1, (("AND", (2, 3)),), (4, 0))


def test_netlist_refuses_what_is_not_a_combinational_netlist() -> None:
    with pytest.raises(GateNetlistError, match="unknown operation 'LATCH'"):
        GateNetlist(1, (("LATCH", (2, 3)),), (4, 0))
    with pytest.raises(GateNetlistError, match=r"gate 0 \(AND\) has 1 inputs, needs 2"):
        GateNetlist(1, (("AND", (2,)),), (4, 0))
    with pytest.raises(GateNetlistError, match="reads signal 5, which is not driven before it"):  # a loop
        GateNetlist(1, (("AND", (2, 5)), ("OR", (4, 3))), (4, 0))
    with pytest.raises(GateNetlistError, match="has 2 product bits, got 1"):
        GateNetlist(1, (("AND", (2, 3)),), (4,))
    with pytest.raises(GateNetlistError, match="product bit 1 is signal 9"):
        GateNetlist(1, (("AND", (2, 3)),), (4, 9))
    with pytest.raises(GateNetlistError, match="not a gate netlist"):
        GateNetlist.from_dict({"bits": 1, "outputs": [0, 0]})


def test_reference_evaluates_gates_in_order() -> None:
    n = _and_multiplier()
    a, b = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])
    assert n.evaluate(a, b).tolist() == [0, 0, 0, 1]
    nl = _all_ops_netlist()
    assert GateNetlist.from_dict(nl.as_dict()) == nl
    # spot-check one product by hand: bit 1 is NOT(NAND(a1, b0)) -> MUX(S=a2: b1 or that)
    aw, bw = 0b0110, 0b0011
    p = int(nl.evaluate(torch.tensor(aw), torch.tensor(bw)))
    a1, b0, a2, b1 = (aw >> 1) & 1, bw & 1, (aw >> 2) & 1, (bw >> 1) & 1
    h = 1 - (1 - (a1 & b0))
    assert (p >> 1) & 1 == (b1 if a2 else h)
    assert (p >> 7) & 1 == 1  # the constant-1 bit


def _kernel(n: GateNetlist) -> bitslice.BitslicedEvaluator:
    ev = bitslice.evaluator(n)
    assert ev is not None, "the bit-sliced kernel did not build (a C compiler is required by the suite)"
    return ev


def test_kernel_equals_reference_on_every_gate_type() -> None:
    n = _all_ops_netlist()
    ev = _kernel(n)
    g = torch.Generator().manual_seed(0)
    for size in (1, 255, 256, 257, 5000):  # partial and full blocks of 256 lanes
        aw = torch.randint(0, 16, (size,), generator=g)
        bw = torch.randint(0, 16, (size,), generator=g)
        assert torch.equal(ev.products(aw, bw), n.evaluate(aw, bw))
    v = torch.arange(16)
    assert torch.equal(ev.products(v[:, None], v[None, :]), n.evaluate(v[:, None], v[None, :]))  # broadcast


def _saturating_core() -> GateNetlist:
    """A 3-bit unsigned core whose products reach the top bit: p = {a, b} (a in the high half), so the
    sign-magnitude wrapper must saturate."""
    return GateNetlist(3, (), (5, 6, 7, 2, 3, 4))


@pytest.mark.parametrize("case", ["signed", "unsigned", "wrapped", "saturating"])
def test_kernel_matmul_equals_reference_and_table(case: str) -> None:
    if case == "saturating":
        n, core_signed, signed = _saturating_core(), False, True
    else:
        n = _all_ops_netlist(4)
        core_signed = case == "signed"
        signed = case != "unsigned"
    kernel = GateMultiplier(n, signed=signed, core_signed=core_signed)
    ref = GateMultiplier(n, signed=signed, core_signed=core_signed)
    ref.use_kernel = False
    bits = n.bits
    side = 1 << bits
    core = n.evaluate(torch.arange(side)[:, None], torch.arange(side)[None, :])
    if core_signed:
        core = torch.where(core >= 1 << (2 * bits - 1), core - (1 << (2 * bits)), core)
    table = sign_magnitude_table(core, bits) if (signed and not core_signed) else core
    lut = LUTMultiplier(table, bits, signed)
    lo, hi = kernel.operand_range
    v = torch.arange(lo, hi + 1)
    with taken.counting() as paths:
        elementwise = kernel(v[:, None], v[None, :])
    assert paths["arith.bitslice_kernel"] == 1
    assert torch.equal(elementwise, lut(v[:, None], v[None, :]))
    assert torch.equal(ref(v[:, None], v[None, :]), elementwise)
    if case == "saturating":  # core(|a|, |b|) = 8|a| + |b|: 36 and 35 exceed 31, the wrapper saturates
        assert int(kernel(torch.tensor(3), torch.tensor(3))) == 27
        assert int(kernel(torch.tensor(-3), torch.tensor(3))) == -27
        assert int(kernel(torch.tensor(-4), torch.tensor(-4))) == 31
        assert int(kernel(torch.tensor(-4), torch.tensor(3))) == -32
    g = torch.Generator().manual_seed(1)
    for m, k, nn in ((1, 1, 1), (300, 37, 5), (513, 3, 2), (2, 70, 300)):
        a = torch.randint(lo, hi + 1, (m, k), generator=g)
        b = torch.randint(lo, hi + 1, (k, nn), generator=g)
        with taken.counting() as paths:
            got = kernel.matmul(a, b)
        assert paths["arith.bitslice_kernel"] == 1
        assert torch.equal(got, lut.matmul(a, b))
        assert torch.equal(ref.matmul(a, b), got)


def test_kernel_matmul_splits_over_threads_the_same(torch_threads) -> None:
    n = _all_ops_netlist(4)
    m = GateMultiplier(n, signed=True, core_signed=True)
    g = torch.Generator().manual_seed(2)
    a = torch.randint(-8, 8, (700, 64), generator=g)  # 3 row blocks
    b = torch.randint(-8, 8, (64, 9), generator=g)
    torch_threads(1)
    one = m.matmul(a, b)
    torch_threads(2)
    two = m.matmul(a, b)
    three = m.matmul(a[:256], b)  # one row block: split over columns
    assert torch.equal(one, two) and torch.equal(three, one[:256])


def test_matmul_refuses_sums_that_may_not_fit() -> None:
    m = GateMultiplier(GateNetlist(16, (), tuple([0] * 32)), signed=True)
    assert m.acc_bits(784) == 32 + 10 + 1
    with pytest.raises(OverflowError, match="may exceed int64"):
        m.matmul(torch.zeros(1, 1, dtype=torch.int64).expand(1, 1 << 31),
                 torch.zeros(1, 1, dtype=torch.int64).expand(1 << 31, 1))
    with pytest.raises(ValueError, match="is signed: unsigned operands need an unsigned circuit"):
        GateMultiplier(_and_multiplier(), signed=False, core_signed=True)


def test_sampled_statistics_intervals_are_calibrated() -> None:
    """Over 40 seeds, each 95% interval holds the exhaustive value about 95% of the time, and its half-width
    is 1.96 times the spread of the sampled means across seeds (too narrow or too wide both fail)."""
    m = DRUM(3, 8)
    full = error_stats(m)
    assert full.ci95 is None
    runs = [error_stats(m, samples=20_000, seed=s, exhaustive_max_bits=0) for s in range(40)]
    for key in ("mae", "mre", "ep", "mse", "mean_error", "mae_percent"):
        truth = getattr(full, key)
        covered = sum(r.ci95[key][0] < truth < r.ci95[key][1] for r in runs if r.ci95)
        assert covered >= 34, (key, covered)
        means = torch.tensor([getattr(r, key) for r in runs], dtype=torch.float64)
        half = torch.tensor([(r.ci95[key][1] - r.ci95[key][0]) / 2 for r in runs if r.ci95], dtype=torch.float64)
        ratio = float(half.mean() / (1.96 * means.std()))
        assert 0.7 < ratio < 1.4, (key, ratio)
    assert all(not r.exhaustive and r.wce <= full.wce for r in runs)  # a worst case over samples: a lower bound


@pytest.mark.parametrize("team", ["openmp", "pool"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(600, 40, 30), (200, 50, 70)])
@pytest.mark.parametrize("case", ["signed", "wrapped"])
def test_kernel_matmul_thread_splits_equal_reference(case, shape, threads, team, monkeypatch, torch_threads):
    """Above the size that runs threads, the matmul splits: by row blocks (600 rows: 3 blocks of 256 lanes, the
    last one 88 rows, partial 64-lane words and 8-row groups included), or, with fewer blocks than threads
    (200 rows), the packing by terms and the products by columns; on torch's OpenMP team (packing included) or
    on the package's thread pool, each proven taken."""
    n = _all_ops_netlist(4)
    kernel = GateMultiplier(n, signed=True, core_signed=case == "signed")
    ev = _kernel(n)
    assert ev.openmp, "the bit-sliced kernel was built without OpenMP (gcc's -fopenmp is expected here)"
    monkeypatch.setattr(ev, "openmp", team == "openmp")
    ref = GateMultiplier(n, signed=True, core_signed=case == "signed")
    ref.use_kernel = False
    lo, hi = kernel.operand_range
    g = torch.Generator().manual_seed(sum(shape))
    mm, k, nn = shape
    assert mm * k * nn >= bitslice._PARALLEL_MIN_PRODUCTS
    a = torch.randint(lo, hi + 1, (mm, k), generator=g)
    b = torch.randint(lo, hi + 1, (k, nn), generator=g)
    torch_threads(threads)
    with taken.counting() as ran:
        got = kernel.matmul(a, b)
    path = "serial" if threads == 1 else team
    assert ran[f"arith.bitslice_kernel.{path}"] == 1, dict(ran)
    assert torch.equal(got, ref.matmul(a, b))


def test_kernel_packs_every_bit_of_every_row() -> None:
    """The packer (eight words per multiply) against the definition, bit by bit: row counts around the 8-row
    groups and the 64-lane words, a bit offset, and every plane word written (the scratch is not zeroed)."""
    n = _all_ops_netlist(4)
    ev = _kernel(n)
    g = torch.Generator().manual_seed(3)
    for m, k in ((1, 1), (7, 3), (9, 2), (63, 1), (65, 2), (257, 3)):
        words = torch.randint(0, 1 << 16, (m, k), generator=g)
        blocks = -(-m // ev.lanes)
        for first, count in ((0, 4), (3, 9)):
            planes = torch.full((blocks * k * count * ev.lanes // 64,), -1, dtype=torch.int64)
            ev.lib.axhw_bs_pack(words.data_ptr(), planes.data_ptr(), m, k, first, count, 0, blocks, 0, k)
            bits = planes.view(blocks, k, count, ev.lanes // 64)
            for r in range(blocks):
                for kk in range(k):
                    for i in range(count):
                        got = [(int(bits[r, kk, i, lane // 64]) >> (lane % 64)) & 1 for lane in range(ev.lanes)]
                        want = [(int(words[r * ev.lanes + lane, kk]) >> (first + i)) & 1
                                if r * ev.lanes + lane < m else 0 for lane in range(ev.lanes)]
                        assert got == want, (m, k, first, count, r, kk, i)


def test_kernel_builds_without_openmp(monkeypatch, torch_threads) -> None:
    """A compiler that refuses -fopenmp gets the same kernel without it (the pragmas compile away, no warning
    under -Werror): the team function then runs on one thread and gives the same sums."""
    import ctypes

    from axhw.arith.kernels.build import bind, compile_library, library_path_for

    n = _all_ops_netlist(4)
    source = bitslice.c_source(n) + "/* built without OpenMP */\n"  # its own cache path (a sanitized one under
    headers = bitslice._HEADER.headers()  # AXHW_KERNEL_SANITIZE, which the sanitizer run checks)
    path = compile_library(source, library_path_for(source, "bitslice", (), headers), force=True, headers=headers,
                           name="bitslice.c")
    lib = bind(ctypes.CDLL(str(path)), bitslice._HEADER.declarations())
    assert lib.axhw_bs_openmp() == 0
    serial = bitslice.BitslicedEvaluator(n, lib, path)
    assert not serial.openmp
    g = torch.Generator().manual_seed(4)
    a = torch.randint(0, 16, (300, 37), generator=g)
    b = torch.randint(0, 16, (37, 9), generator=g)
    want = _kernel(n).matmul(a, b, 0, 16)
    serial.openmp = True  # force the team function: one thread without OpenMP
    torch_threads(2)
    monkeypatch.setattr(bitslice, "_PARALLEL_MIN_PRODUCTS", 0)
    with taken.counting() as ran:
        got = serial.matmul(a, b, 0, 16)
    assert ran["arith.bitslice_kernel.openmp"] == 1
    assert torch.equal(got, want)


@pytest.mark.parametrize("refuses", [("-fopenmp",), ("clones",), ("-fopenmp", "clones")])
def test_build_falls_back_where_the_compiler_refuses(refuses, monkeypatch, tmp_path) -> None:
    """bitslice.build's fallbacks, through build itself: a compiler that refuses OpenMP (or target_clones, or
    both) gets the build without it, in the same cache path, and the library says whether it has OpenMP."""
    import ctypes

    from axhw.arith.kernels.build import bind

    monkeypatch.setenv("AXHW_KERNEL_DIR", str(tmp_path))
    real = bitslice.compile_library
    tried: list[tuple[str, ...]] = []

    def compiler(source, path, force=False, flags=(), headers=None, name=None):
        tried.append(tuple(flags))
        if "-fopenmp" in refuses and "-fopenmp" in flags:
            raise RuntimeError("compiling bitslice failed (cc):\ncc: error: unsupported option '-fopenmp'")
        if "clones" in refuses and "-DAXHW_NO_CLONES" not in flags:
            raise RuntimeError("compiling bitslice failed (cc):\nerror: the call requires 'ifunc', which is not "
                               "supported by this target (target_clones)")
        return real(source, path, force=force, flags=flags, headers=headers, name=name)

    monkeypatch.setattr(bitslice, "compile_library", compiler)
    n = _all_ops_netlist(4)
    path = bitslice.build(n)
    assert path == bitslice.library_path(n) and path.is_file()
    assert ("-fopenmp" in tried[-1]) == ("-fopenmp" not in refuses)
    assert ("-DAXHW_NO_CLONES" in tried[-1]) == ("clones" in refuses)
    lib = bind(ctypes.CDLL(str(path)), bitslice._HEADER.declarations())
    assert lib.axhw_bs_openmp() == int("-fopenmp" not in refuses)
    with pytest.raises(RuntimeError, match="syntax"):  # any other failure is raised, not retried forever
        monkeypatch.setattr(bitslice, "compile_library",
                            lambda *a, **k: (_ for _ in ()).throw(RuntimeError("syntax error")))
        bitslice.build(n, force=True)
