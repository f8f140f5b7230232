"""The fused hardware forward (axhw.nn.fused, axhw.arith.kernels.fused) equals the eager integer definitions bit for
bit: outputs, straight-through gradients (hence the saturation mask) and the random stream of the flips."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from axhw.arith.fixedpoint import FixedPoint, calibrate, calibrate_range
from axhw.arith.kernels import fused as hwkernel
from axhw.arith.multipliers import DRUM
from axhw.arith.registry import get_multiplier
from axhw.arith.sram import NTVStorage
from axhw.common import taken
from axhw.nn import (
    ApproxConv2d,
    ApproxLinear,
    HardwareConfig,
    calibrate_model,
    sample_chip,
    set_hardware,
    to_quantized,
)
from axhw.nn import fused as fastpath

pytestmark = pytest.mark.skipif(not hwkernel.available(), reason="no C compiler: the fused kernels are not built")


def _run(model: nn.Module, x: torch.Tensor, fused: bool, seed: int, monkeypatch: pytest.MonkeyPatch,
         train: bool = True) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Output, parameter gradients and each layer's generator state after one forward/backward."""
    monkeypatch.setattr(fastpath, "ENABLED", fused)
    layers = [m for m in model.modules() if isinstance(m, ApproxLinear | ApproxConv2d)]
    for i, layer in enumerate(layers):
        layer.generator = torch.Generator().manual_seed(seed + i)
    model.train(train)
    model.zero_grad(set_to_none=True)
    xr = x.clone().requires_grad_(True)
    out = model(xr)
    g = torch.Generator().manual_seed(99)
    (out * torch.randn(out.shape, generator=g)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None] + [xr.grad.clone()]
    return out.detach(), grads, [layer.generator.get_state() for layer in layers]


def _assert_same(model: nn.Module, x: torch.Tensor, monkeypatch: pytest.MonkeyPatch, seed: int = 0,
                 train: bool = True, paths: tuple[str, ...] = ("nn.fused",)) -> torch.Tensor:
    """Fused and eager runs agree on outputs, gradients and generator states, and the fused run really took
    the fused ``paths`` (the eager run none of them): an equality test of a path that never ran proves nothing."""
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    with taken.counting() as fused_paths:
        out_f, grads_f, gens_f = _run(a, x, True, seed, monkeypatch, train)
    with taken.counting() as eager_paths:
        out_e, grads_e, gens_e = _run(b, x, False, seed, monkeypatch, train)
    assert all(fused_paths[p] > 0 for p in paths), (paths, fused_paths)
    assert not any(k.startswith("nn.fused") for k in eager_paths), eager_paths
    assert torch.equal(out_f, out_e)
    assert all(torch.equal(u, v) for u, v in zip(grads_f, grads_e, strict=True))
    assert all(torch.equal(u, v) for u, v in zip(gens_f, gens_e, strict=True))
    return out_f


def _mlp(sizes: tuple[int, ...], hw: HardwareConfig, x: torch.Tensor, bias: bool = True) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        mods.append(ApproxLinear(sizes[i], sizes[i + 1], bias=bias))
        if i < len(sizes) - 2:
            mods.append(nn.ReLU())
    model = nn.Sequential(*mods)
    set_hardware(model, hw)
    calibrate_model(model, x)
    return model


@pytest.mark.parametrize("mult", ["exact", "K1", "K2", "K3", "K4", "drum6"])
@pytest.mark.parametrize("voltage", [1100.0, 660.0, 400.0])
def test_linear_equals_eager(mult: str, voltage: float, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    x = torch.randn(16, 784)  # K = 784: one exact float32 GEMM (chunking: test_chunked_gemm_equals_eager)
    model = _mlp((784, 32, 16, 10), HardwareConfig(mode="hardware", multiplier=mult, voltage_mv=voltage), x)
    _assert_same(model, x, monkeypatch)
    _assert_same(model, x * 3, monkeypatch, seed=5)  # inputs saturate


@pytest.mark.parametrize("mult", ["exact", "K2", "K4"])
def test_chunked_gemm_equals_eager(mult: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reductions too long for one exact float32 GEMM run in chunks. Calibration puts every layer's largest
    code at |c| >= 64, so the largest transformed product is >= 64 * 64 and a reduction of K units of ``unit``
    products exceeds float32's exact range (2**24) once K * unit * 4096 > 2**24: K = 8192 (linear), 512
    channels x 3 x 3 (conv); at most 8 chunks (beyond: one float64 GEMM), which these shapes stay within."""
    torch.manual_seed(10)
    x = torch.randn(4, 8192)
    # 1100 mV: no flips (a flipped sign bit makes a -128 code, T = 192 for K2, and 9 chunks: one float64 GEMM)
    model = _mlp((8192, 8, 3), HardwareConfig(mode="hardware", multiplier=mult, voltage_mv=1100.0), x)
    _assert_same(model, x, monkeypatch, paths=("nn.fused", "nn.fused.chunked"))
    xc = torch.randn(2, 512, 4, 4)
    conv = nn.Sequential(ApproxConv2d(512, 4, 3, padding=1))
    set_hardware(conv, HardwareConfig(mode="hardware", multiplier=mult, voltage_mv=1100.0))
    calibrate_model(conv, xc)
    _assert_same(conv, xc, monkeypatch, paths=("nn.fused", "nn.fused.chunked"))


@pytest.mark.parametrize("ste", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_quantized_mode_and_options(ste: bool, bias: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(1)
    x = torch.randn(8, 30)
    for mode in ("quantized", "hardware"):
        hw = HardwareConfig(mode=mode, multiplier="K3", voltage_mv=530.0, saturation_ste=ste)  # type: ignore[arg-type]
        _assert_same(_mlp((30, 20, 2), hw, x, bias=bias), x, monkeypatch)


@pytest.mark.parametrize("mult", ["exact", "K2", "K3"])
def test_conv_equals_eager(mult: str, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(2)
    x = torch.randn(4, 3, 12, 12)
    model = nn.Sequential(
        ApproxConv2d(3, 64, 3, padding=1), nn.ReLU(),
        ApproxConv2d(64, 32, 3, stride=2, padding=(1, 2), dilation=(1, 2)), nn.ReLU(),
        ApproxConv2d(32, 16, 3, groups=4, bias=False), nn.ReLU(),
        nn.Flatten(), ApproxLinear(16 * 4 * 4, 10),
    )
    set_hardware(model, HardwareConfig(mode="hardware", multiplier=mult, voltage_mv=660.0))
    calibrate_model(model, x)
    _assert_same(model, x, monkeypatch)


def test_min_min_saturation_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    """DRUM k=2 saturates (-128) x (-128): both operands full of minimum codes take the reference product."""
    torch.manual_seed(3)
    x = torch.randn(16, 40)
    model = _mlp((40, 24, 5), HardwareConfig(mode="hardware", multiplier="K2", voltage_mv=400.0), x)
    first = model[0]
    with torch.no_grad():  # -0.5 is the largest |w| (init: |w| <= 1/sqrt(40)) and a power of two: code -128
        first.weight[:, ::3] = -0.5
    x2 = x.clone()
    x2[:, ::2] = -1e3  # saturates to the minimum activation code
    _assert_same(model, x2, monkeypatch, paths=("nn.fused", "nn.fused.minmin"))
    conv = nn.Sequential(ApproxConv2d(2, 4, 3, padding=1))
    xc = torch.randn(2, 2, 6, 6)
    set_hardware(conv, HardwareConfig(mode="hardware", multiplier="K2", voltage_mv=660.0))
    calibrate_model(conv, xc)
    with torch.no_grad():  # as above: |w| <= 1/sqrt(18) < 0.5, so -0.5 is code -128
        conv[0].weight[:, :, 1, 1] = -0.5
    xc[:, :, ::2, 1::2] = -1e3
    _assert_same(conv, xc, monkeypatch, paths=("nn.fused", "nn.fused.minmin"))


def test_eval_chip_equals_forward_int(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eval with a held chip: fused == eager == forward_int with the same chip draw."""
    torch.manual_seed(4)
    x = torch.randn(32, 30)
    model = _mlp((30, 16, 16, 2), HardwareConfig(mode="hardware", multiplier="K2", voltage_mv=530.0), x)
    model.eval()
    sample_chip(model, torch.Generator().manual_seed(7))
    out = _assert_same(model, x, monkeypatch, train=False)
    qnet = to_quantized(model)
    want = qnet.forward_int(qnet.quantize_input(x), get_multiplier("K2", 8),
                            NTVStorage(530.0), torch.Generator().manual_seed(7))
    assert torch.equal(out, qnet.output_fmt.dequantize(want))


def test_errors_match_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(5)
    x = torch.randn(4, 30)
    model = _mlp((30, 8, 2), HardwareConfig(mode="hardware", multiplier="K3"), x)
    bad = x.clone()
    bad[1, 3] = float("nan")
    for fused in (True, False):
        monkeypatch.setattr(fastpath, "ENABLED", fused)
        with pytest.raises(ValueError, match="cannot quantize NaN values"):
            model(bad)
        with torch.no_grad():
            saved = model[0].weight[0, 0].item()
            model[0].weight[0, 0] = float("inf")
        with pytest.raises(ValueError, match="finite values"):
            model(x)
        with torch.no_grad():
            model[0].weight[0, 0] = saved


def test_calibrate_range_equals_calibrate() -> None:
    g = torch.Generator().manual_seed(0)
    for scale in (1e-30, 1e-3, 0.3, 1.0, 7.9, 1e5):
        for bits in (2, 8, 16):
            x = torch.randn(50, generator=g) * scale
            lo, hi = torch.aminmax(x)
            assert calibrate_range(float(lo), float(hi), bits) == calibrate(x, bits)
            lo, hi = torch.aminmax(x.abs())
            assert calibrate_range(float(lo), float(hi), bits) == calibrate(x.abs(), bits)
    assert calibrate_range(0.0, 0.0, 8) == calibrate(torch.zeros(3), 8)


def test_quantize_kernel_equals_fixedpoint() -> None:
    """Round half to even and saturation of the compiled pass on ties, extremes, subnormals and infs."""
    g = torch.Generator().manual_seed(1)
    ties = torch.arange(-300, 300, dtype=torch.float32) / 2
    special = torch.tensor([0.0, -0.0, 1e-45, -1e-45, 1e-38, float("inf"), float("-inf"), 3e38, -3e38])
    x = torch.cat([ties, special, torch.randn(1000, generator=g) * 100])
    for fmt in (FixedPoint(8, 0), FixedPoint(8, 3), FixedPoint(8, -2), FixedPoint(16, 10), FixedPoint(31, 60),
                FixedPoint(4, -64), FixedPoint(2, 64)):
        codes = fastpath._quantize(x.contiguous(), fmt, "test")
        assert torch.equal(codes.to(torch.int64), fmt.quantize(x))
        if fmt.bits == 8:  # the one-pass quantize-and-transform, on every length of the tail
            table = DRUM(2, 8).table_as(torch.float32)
            for n in (x.numel(), 1000, 513, 9, 1):
                kept, t, bad, nmin, mx = hwkernel.quantize_transform(x[:n].contiguous(), fmt.frac, fmt.qmin,
                                                                     fmt.qmax, table, True)
                want = fmt.quantize(x[:n])
                assert kept is not None and torch.equal(kept.to(torch.int64), want) and not bad
                assert torch.equal(t, torch.take(table, want + 128)) and nmin == int((want == -128).sum())
                assert mx == int(t.abs().max())
    nan = torch.tensor([1.0, float("nan"), 2.0])
    assert hwkernel.quantize_transform(nan, 0, -128, 127, DRUM(2, 8).table_as(torch.float32), False)[2]


def test_flip_kernel_equals_corrupt_all() -> None:
    w, b = torch.randint(-128, 128, (40, 30)), torch.randint(-(1 << 15), 1 << 15, (40,))
    fw, fb = FixedPoint(8, 5), FixedPoint(16, 9)
    for p in (0.01, 0.1, 0.3, 1.0):
        st = NTVStorage(p=p)
        want = st.corrupt_all([w, b], [fw, fb], torch.Generator().manual_seed(3))
        pos = st.flip_positions(w.numel() * 8 + b.numel() * 16, torch.Generator().manual_seed(3))
        wc, bc = w.to(torch.int32), b.to(torch.int32)
        table = DRUM(2, 8).table_as(torch.float32)
        tw, nmin0, _ = hwkernel.transform(wc, -128, table)
        j, dmin, max_f = hwkernel.flip(wc, 8, pos, 0, 0, (tw, table, -128))  # keeps T(codes) in step
        hwkernel.flip(bc, 16, pos, j, w.numel() * 8)
        assert torch.equal(wc.to(torch.int64), want[0]) and torch.equal(bc.to(torch.int64), want[1])
        assert torch.equal(tw, torch.take(table, want[0] + 128))
        assert nmin0 + dmin == int((want[0] == -128).sum()) and max_f <= 192


def test_corrupt_all_single_tensor_is_corrupt() -> None:
    """One tensor: the one-pass draw is corrupt()'s stream (the per-layer draw only joins weight and bias)."""
    codes = torch.randint(-128, 128, (500,))
    for p in (0.02, 0.4):
        st = NTVStorage(p=p)
        one = st.corrupt_all([codes], [FixedPoint(8, 0)], torch.Generator().manual_seed(2))[0]
        assert torch.equal(one, st.corrupt(codes, FixedPoint(8, 0), torch.Generator().manual_seed(2)))


def test_fallbacks_run_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cases the fused path leaves to the eager one still work (float64 model, percentile calibration)."""
    torch.manual_seed(6)
    x = torch.randn(8, 12)
    model = _mlp((12, 6, 3), HardwareConfig(mode="hardware", multiplier="K2", voltage_mv=660.0,
                                            calibration="percentile"), x)
    _assert_same(model, x, monkeypatch)
    model64 = copy.deepcopy(model).double()
    assert fastpath.fused_forward(model64[0], x.double()) is None
    assert fastpath.fused_forward(model[0], x[None]) is None  # 3-D: the eager path and its error


def test_folded_batchnorm_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    """A converted model with a folded batch norm: the gradients reach the weights and the BN parameters
    through the effective parameters identically on both paths."""
    from axhw.nn.convert import convert

    torch.manual_seed(7)
    x = torch.randn(8, 1, 6, 6)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 6, 3))
    with torch.no_grad():
        model(x)  # running statistics away from their initial values
    hw_model, report = convert(model, HardwareConfig(mode="hardware", multiplier="K3", voltage_mv=660.0))
    assert report.folded
    calibrate_model(hw_model, x)
    _assert_same(hw_model, x, monkeypatch)


def test_ste_grad_kernel_equals_clipped_ste() -> None:
    """Sign of zero, NaN, infinities and the |g| = 1 edge: the compiled pass equals ClippedSTE's products."""
    from axhw.nn import ClippedSTE

    g = torch.tensor([0.5, -0.5, 1.0, -1.0, 0.999, -0.0, 0.0, float("nan"), float("inf"), -float("inf"), -3.0, 2e-45])
    live = torch.tensor([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 1], dtype=torch.bool)
    for mask in (live, None):
        ref = torch.zeros(12, requires_grad=True)
        out = ClippedSTE.apply(ref, torch.zeros(12), mask)
        out.backward(g)
        got = hwkernel.ste_grad(g, None if mask is None else mask.float())
        assert torch.equal(got.view(torch.int32), ref.grad.view(torch.int32))  # bit patterns, NaN included


def test_missing_compiler_runs_eager(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Without a C compiler the kernels are unavailable (one warning) and every path gives the same numbers."""
    from axhw.arith.kernels import build as kernel_build
    torch.manual_seed(8)
    x = torch.randn(6, 20)
    model = _mlp((20, 8, 3), HardwareConfig(mode="hardware", multiplier="K2", voltage_mv=660.0), x)
    for i, layer in enumerate(model):
        layer.generator = torch.Generator().manual_seed(i) if isinstance(layer, ApproxLinear) else None
    want = copy.deepcopy(model)(x)
    a, b = torch.randint(-128, 128, (5, 30)), torch.randint(-128, 128, (30, 4))
    want_mm = DRUM(2, 8).matmul(a, b)
    monkeypatch.setenv("AXHW_KERNEL_DIR", str(tmp_path))
    monkeypatch.setattr(hwkernel, "_state", {})
    monkeypatch.setattr(kernel_build, "compiler", lambda: None)
    with pytest.warns(UserWarning, match="eager path"):
        assert not hwkernel.available()
    assert fastpath.fused_forward(model[0], x) is None
    assert torch.equal(copy.deepcopy(model)(x), want)
    assert torch.equal(DRUM(2, 8).matmul(a, b), want_mm)


@pytest.mark.filterwarnings("ignore:operations without an integer equivalent")
@pytest.mark.parametrize("conv", [False, True])
def test_double_backward_equals_eager(conv: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """create_graph=True through the hardware forward (sensitivities of a hardware-mode model): the second
    derivatives equal the eager path's."""
    torch.manual_seed(9)
    if conv:
        x = torch.randn(3, 2, 6, 6)
        model = nn.Sequential(ApproxConv2d(2, 3, 3, padding=1), nn.Tanh(), nn.Flatten(), ApproxLinear(108, 4),
                              nn.Sigmoid())
        set_hardware(model, HardwareConfig(mode="hardware", multiplier="K3", voltage_mv=660.0))
        calibrate_model(model, x)
    else:
        x = torch.randn(5, 12)
        model = nn.Sequential(*_mlp((12, 9, 4), HardwareConfig(mode="hardware", multiplier="K3", voltage_mv=660.0),
                                    x), nn.Tanh())
    grads = []
    for fused in (True, False):
        monkeypatch.setattr(fastpath, "ENABLED", fused)
        m = copy.deepcopy(model)
        for i, layer in enumerate(mod for mod in m.modules() if isinstance(mod, ApproxLinear | ApproxConv2d)):
            layer.generator = torch.Generator().manual_seed(i)
        xr = x.clone().requires_grad_(True)
        (gx,) = torch.autograd.grad(m(xr).pow(2).sum(), xr, create_graph=True)
        gx.pow(2).sum().backward()
        grads.append([p.grad.clone() for p in m.parameters()] + [gx.detach()])
    assert all(torch.equal(u, v) for u, v in zip(*grads, strict=True))
