"""Tests for axhw.training.sensitivity.network: S(w) of eq. 5 against brute force, its eq. 6 gradient, and adaptive gamma."""

from __future__ import annotations

import copy
import itertools
import json
import math

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp

from axhw.training.sensitivity.network import (
    LAYER_TYPES,
    AdaptiveGamma,
    GammaSchedule,
    per_sample_sensitivity,
    sensitivity,
    sensitivity_by_parameter,
    sensitivity_map,
)

DT = torch.float64


# --------------------------------------------------------------------------- reference implementation
def layer_params(model: nn.Module) -> list[nn.Parameter]:
    """Weights and biases of all Linear/Conv2d modules, each parameter once."""
    seen: dict[int, nn.Parameter] = {}
    for m in model.modules():
        if isinstance(m, LAYER_TYPES):
            for p in (m.weight, m.bias):
                if p is not None:
                    seen.setdefault(id(p), p)
    return list(seen.values())


def brute_per_sample(model: nn.Module, x: Tensor) -> Tensor:
    """Eq. 5 by definition: one autograd.grad per sample n and output k, |p| * |g| summed."""
    params = layer_params(model)
    out = model(x).reshape(x.shape[0], -1)
    s = torch.zeros(x.shape[0], dtype=out.dtype)
    for n in range(out.shape[0]):
        for k in range(out.shape[1]):
            gs = torch.autograd.grad(out[n, k], params, retain_graph=True, allow_unused=True)
            s[n] += sum((p.abs() * g.abs()).sum() for p, g in zip(params, gs, strict=True) if g is not None)
    return s


def brute_map(model: nn.Module, x: Tensor, p: Tensor) -> Tensor:
    out = model(x).reshape(x.shape[0], -1)
    acc = torch.zeros_like(p)
    for n in range(out.shape[0]):
        for k in range(out.shape[1]):
            (g,) = torch.autograd.grad(out[n, k], [p], retain_graph=True)
            acc += g.abs()
    return p.abs() * acc / out.shape[0]


# --------------------------------------------------------------------------- models
class ApproxLinearStandIn(nn.Linear):
    """Stands in for the project's ApproxLinear(nn.Linear): must be picked up by isinstance."""


class TwiceUsed(nn.Module):
    """A Linear applied twice (shared weight): |.| must come after summing both uses' gradients."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(4, 5)
        self.mid = nn.Linear(5, 5)
        self.out = nn.Linear(5, 3)
        self.unused = nn.Linear(5, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.inp(x))
        h = torch.tanh(self.mid(h))
        h = torch.relu(self.mid(h) + h)
        return torch.sigmoid(self.out(h))


class SequenceLinear(nn.Module):
    """Linear on a (N, T, F) input: its per-sample gradient sums over T before |.|."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.head = nn.Linear(4 * 5, 6)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.fc(x.reshape(-1, 5, 3)))
        return torch.sigmoid(self.head(h.flatten(1))).reshape(-1, 2, 3)  # 2-D output grid, K = 6


def mlp(act: type[nn.Module] = nn.ReLU, sizes: tuple[int, ...] = (6, 8, 7, 4)) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers += [nn.Linear(a, b), act() if i < len(sizes) - 2 else nn.Sigmoid()]
    return nn.Sequential(*layers)


def small_cnn(act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        act(),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3),
        act(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Sequential(ApproxLinearStandIn(4, 5), act(), nn.Linear(5, 3)),
        nn.Sigmoid(),
    )


def lenet5_small() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 12),
        nn.ReLU(),
        nn.Linear(12, 10),
        nn.Sigmoid(),
    )


CONV_VARIANTS = {
    "stride_dilation": dict(stride=2, dilation=2, padding=2),
    "groups_nobias": dict(groups=2, bias=False, padding=1),
    "same_reflect": dict(padding="same", padding_mode="reflect"),
    "same_even_kernel": dict(padding="same", kernel_size=4),
    "valid_circular": dict(padding=1, padding_mode="circular", stride=(1, 2)),
}


def conv_variant(kw: dict) -> nn.Sequential:
    kw = dict(kw)
    ks = kw.pop("kernel_size", 3)
    return nn.Sequential(
        nn.Conv2d(2, 4, ks, **kw),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 3),
        nn.Sigmoid(),
    )


def make(builder, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return builder().to(DT)


def assert_close(a: Tensor, b: Tensor, rtol: float = 1e-10) -> None:
    a, b = a.detach(), b.detach()
    torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * float(b.abs().max()) + 1e-300)


# --------------------------------------------------------------------------- value tests
CASES = {
    "mlp_relu": (lambda: mlp(nn.ReLU), (5, 6)),
    "mlp_tanh": (lambda: mlp(nn.Tanh), (5, 6)),
    "cnn": (small_cnn, (4, 2, 8, 8)),
    "lenet": (lenet5_small, (3, 1, 28, 28)),
    "twice_used": (TwiceUsed, (4, 4)),
    "sequence": (SequenceLinear, (3, 15)),
    **{f"conv_{k}": ((lambda kw=kw: conv_variant(kw)), (3, 2, 7, 7)) for k, kw in CONV_VARIANTS.items()},
}


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("vectorize", [True, False])
def test_matches_brute_force(name: str, vectorize: bool) -> None:
    builder, shape = CASES[name]
    model = make(builder)
    x = torch.randn(*shape, dtype=DT)
    got = per_sample_sensitivity(model, x, vectorize=vectorize)
    ref = brute_per_sample(model, x)
    assert got.shape == (shape[0],)
    assert_close(got, ref)
    assert_close(sensitivity(model, x, vectorize=vectorize), ref.mean())


@pytest.mark.parametrize("name", ["cnn", "twice_used", "sequence", "mlp_relu", "conv_groups_nobias"])
def test_maps_match_brute_force_and_sum_to_s(name: str) -> None:
    builder, shape = CASES[name]
    model = make(builder)
    x = torch.randn(*shape, dtype=DT)
    total = torch.zeros((), dtype=DT)
    for m in model.modules():
        if isinstance(m, LAYER_TYPES):
            for pname in ("weight", "bias"):
                p = getattr(m, pname)
                if p is None:
                    continue
                got = sensitivity_map(model, x, m, param=pname)
                assert got.shape == p.shape and not got.requires_grad
                if m is not getattr(model, "unused", None):
                    assert_close(got, brute_map(model, x, p))
                total = total + got.sum()
    assert_close(total, sensitivity(model, x).detach())
    by_param = sensitivity_by_parameter(model, x)
    assert_close(sum(by_param.values()), sensitivity(model, x).detach())


def test_unused_layer_and_subclass() -> None:
    model = make(TwiceUsed)
    x = torch.randn(3, 4, dtype=DT)
    assert torch.equal(sensitivity_map(model, x, model.unused), torch.zeros_like(model.unused.weight))
    assert "unused.weight" not in sensitivity_by_parameter(model, x)
    cnn = make(small_cnn)
    approx = cnn[7][0]
    assert isinstance(approx, ApproxLinearStandIn)
    assert "7.0.weight" in sensitivity_by_parameter(cnn, torch.randn(2, 2, 8, 8, dtype=DT))


def test_frozen_layers_still_count() -> None:
    model = make(small_cnn)
    x = torch.randn(3, 2, 8, 8, dtype=DT)
    ref = sensitivity(model, x).detach()
    for p in model[0].parameters():
        p.requires_grad_(False)
    s = sensitivity(model, x)
    assert_close(s, ref)
    trainable = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(s, trainable)
    assert all(torch.isfinite(g).all() for g in grads)
    # the value: central differences of S (the frozen layer's terms included) along random directions of the
    # trainable parameters
    gen = torch.Generator().manual_seed(3)
    for _ in range(2):
        d = [torch.randn(p.shape, dtype=DT, generator=gen) for p in trainable]
        vals = []
        with torch.no_grad():
            for sign in (1.0, -1.0):
                for p, dp in zip(trainable, d, strict=True):
                    p.add_(sign * 1e-6 * dp)
                vals.append(float(sensitivity(model, x, create_graph=False)))
                for p, dp in zip(trainable, d, strict=True):
                    p.sub_(sign * 1e-6 * dp)
        analytic = float(sum((g * dp).sum() for g, dp in zip(grads, d, strict=True)))
        assert analytic == pytest.approx((vals[0] - vals[1]) / 2e-6, rel=1e-6)


def test_map_rejects_other_layers() -> None:
    model = make(small_cnn)
    with pytest.raises(TypeError):
        sensitivity_map(model, torch.randn(2, 2, 8, 8, dtype=DT), model[1])
    with pytest.raises(ValueError):
        sensitivity_map(model, torch.randn(2, 2, 8, 8, dtype=DT), model[0], param="scale")


# --------------------------------------------------------------------------- gradient tests (eq. 6)
def flat_grad_fd(model: nn.Module, x: Tensor, h: float = 1e-6) -> Tensor:
    params = list(model.parameters())
    out = []
    with torch.no_grad():
        for p in params:
            flat = p.view(-1)
            for i in range(flat.numel()):
                old = float(flat[i])
                flat[i] = old + h
                up = float(sensitivity(model, x, create_graph=False))
                flat[i] = old - h
                down = float(sensitivity(model, x, create_graph=False))
                flat[i] = old
                out.append((up - down) / (2 * h))
    return torch.tensor(out, dtype=DT)


def autograd_flat(model: nn.Module, x: Tensor) -> Tensor:
    gs = torch.autograd.grad(sensitivity(model, x), list(model.parameters()))
    return torch.cat([g.reshape(-1) for g in gs])


def min_preactivation(model: nn.Module, x: Tensor) -> float:
    zs: list[Tensor] = []
    hs = [
        m.register_forward_hook(lambda m, a, o: zs.append(o))
        for m in model.modules()
        if isinstance(m, LAYER_TYPES)
    ]
    model(x)
    for hk in hs:
        hk.remove()
    return min(float(z.detach().abs().min()) for z in zs)


@pytest.mark.parametrize("act", [nn.Tanh, nn.ReLU])
def test_gradient_matches_finite_differences_mlp(act: type[nn.Module]) -> None:
    model = make(lambda: mlp(act, sizes=(3, 4, 4, 2)), seed=1)
    x = torch.randn(3, 3, dtype=DT)
    assert min_preactivation(model, x) > 1e-3  # no ReLU near its kink at this point
    assert_close(autograd_flat(model, x), flat_grad_fd(model, x), rtol=1e-6)


def test_gradient_matches_finite_differences_cnn() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8, 2), nn.Sigmoid()
    ).to(DT)
    x = torch.randn(2, 1, 4, 4, dtype=DT)
    assert_close(autograd_flat(model, x), flat_grad_fd(model, x), rtol=1e-6)


@pytest.mark.parametrize("act", [nn.Tanh, nn.ReLU])
def test_gradient_is_eq6_with_pearlmutter_r_operator(act: type[nn.Module]) -> None:
    """dS/dw = sign(w)|dO/dw| + H V with V = |w| sign(dO/dw) (eq. 6), H V = R_V{dO/dw} via jvp (eq. 7)."""
    model = make(lambda: mlp(act, sizes=(3, 5, 4, 3)), seed=3)
    x = torch.randn(4, 3, dtype=DT)
    names = [n for n, _ in model.named_parameters()]
    theta = tuple(p.detach() for p in model.parameters())

    def grad_out(params: tuple[Tensor, ...], n: int, k: int) -> tuple[Tensor, ...]:
        def o_nk(*ps: Tensor) -> Tensor:
            return functional_call(model, dict(zip(names, ps, strict=True)), (x[n : n + 1],))[0, k]

        return torch.func.grad(o_nk, argnums=tuple(range(len(params))))(*params)

    total = [torch.zeros_like(p) for p in theta]
    for n in range(x.shape[0]):
        for k in range(3):
            g = grad_out(theta, n, k)
            v = tuple(p.abs() * gi.sign() for p, gi in zip(theta, g, strict=True))
            _, hv = jvp(lambda *ps, n=n, k=k: grad_out(ps, n, k), theta, v)
            for i, (p, gi, hvi) in enumerate(zip(theta, g, hv, strict=True)):
                total[i] += p.sign() * gi.abs() + hvi
    eq6 = torch.cat([t.reshape(-1) for t in total]) / x.shape[0]
    assert_close(autograd_flat(model, x), eq6)


# --------------------------------------------------------------------------- side effects and modes
def count_hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
    )


def test_no_hooks_left_grads_untouched_and_failure_cleans_up() -> None:
    model = make(small_cnn)
    x = torch.randn(2, 2, 8, 8, dtype=DT)
    marker = torch.full_like(model[0].weight, 7.0)
    model[0].weight.grad = marker.clone()
    before = count_hooks(model)
    sensitivity(model, x)
    sensitivity_map(model, x, model[3])
    assert count_hooks(model) == before
    assert torch.equal(model[0].weight.grad, marker)
    assert all(p.grad is None for p in list(model.parameters())[1:])
    with pytest.raises(RuntimeError):
        sensitivity(model, torch.randn(2, 3, 8, 8, dtype=DT))  # wrong channel count fails inside forward
    assert count_hooks(model) == before


def test_backward_accumulates_like_a_loss() -> None:
    model = make(mlp)
    x = torch.randn(4, 6, dtype=DT)
    expected = autograd_flat(model, x)
    sensitivity(model, x).backward()
    assert_close(torch.cat([p.grad.reshape(-1) for p in model.parameters()]), expected)


def test_train_and_eval_modes() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.3),
        nn.Linear(27, 4), nn.Sigmoid(),
    ).to(DT)  # fmt: skip
    x = torch.randn(3, 1, 8, 8, dtype=DT)
    model.train()  # batch-statistics BN: defined with the statistics as constants (test_sensitivity_estimate)
    assert torch.isfinite(sensitivity(model, x))
    # the value (dropout off, its mask aside): S of a copy whose BN holds this batch's mean and biased variance
    # as constants, in eval mode (eq. 5 by brute force; the eval-mode path is checked against it below too)
    no_drop = copy.deepcopy(model)
    no_drop[5].eval()
    frozen = copy.deepcopy(no_drop)
    with torch.no_grad():
        a = model[0](x)
    frozen[1].running_mean, frozen[1].running_var = a.mean((0, 2, 3)), a.var((0, 2, 3), unbiased=False)
    frozen[1].eval()
    assert_close(sensitivity(no_drop, x), brute_per_sample(frozen, x).mean(), rtol=1e-9)
    model[1].eval()  # running statistics: samples independent again; Dropout stays in train mode
    torch.manual_seed(5)
    got = per_sample_sensitivity(model, x)
    torch.manual_seed(5)  # same dropout mask for the reference's single forward
    assert_close(got, brute_per_sample(model, x))
    model.eval()
    assert_close(per_sample_sensitivity(model, x), brute_per_sample(model, x))
    assert model.training is False


def test_float32_and_no_grad_context() -> None:
    torch.manual_seed(0)
    model = small_cnn()
    x = torch.randn(3, 2, 8, 8)
    with torch.no_grad():
        s = sensitivity(model, x, create_graph=False)
    ref = brute_per_sample(model, x).mean()
    torch.testing.assert_close(s, ref, rtol=1e-5, atol=0)
    s = sensitivity(model, x)
    assert s.requires_grad and s.dtype == torch.float32


# --------------------------------------------------------------------------- adaptive gamma (section 3.1.3)
def run(g: AdaptiveGamma, errors: list[float]) -> list[float]:
    return [g.update(e) for e in errors]


def test_gamma_rule_hand_sequence() -> None:
    g = AdaptiveGamma(gamma0=1.0, d_gamma=0.25, error_bound=0.0)
    # thresholds: none, .5*.8=.4, .5*.3+.25*.8=.35, .5*.36+.25*.3+.125*.8=.355
    got = run(g, [0.8, 0.3, 0.36, 0.35])
    assert got == [0.75, 1.0, 0.75, 1.0]
    assert g.last_increased is True and g.last_threshold == pytest.approx(0.355)
    assert g.history == [0.8, 0.3, 0.36, 0.35]


def test_gamma_equal_to_threshold_is_not_smaller() -> None:
    g = AdaptiveGamma(gamma0=1.0, d_gamma=0.5)
    assert run(g, [0.4, 0.2]) == [0.5, 0.0]  # 0.2 == 0.5 * 0.4: not strictly smaller -> subtract


def test_gamma_error_bound_and_clamp_at_zero() -> None:
    g = AdaptiveGamma(gamma0=0.1, d_gamma=0.25, error_bound=0.05)
    assert run(g, [0.5, 0.6, 0.7]) == [0.0, 0.0, 0.0]  # rising error, never below 0
    assert run(g, [0.04]) == [0.25]  # below the bound: add, whatever the history
    first = AdaptiveGamma(gamma0=0.0, d_gamma=0.1, error_bound=0.2)
    assert first.update(0.1) == pytest.approx(0.1)  # first epoch: only the bound can raise gamma


def test_gamma_custom_and_normalized_weights() -> None:
    g = AdaptiveGamma(gamma0=1.0, d_gamma=0.5, weights=(1.0,))  # compare with the previous epoch only
    assert run(g, [1.0, 0.9, 0.95, 0.94]) == [0.5, 1.0, 0.5, 1.0]
    assert g.history == [0.94]
    n = AdaptiveGamma(gamma0=1.0, d_gamma=0.5, normalize=True)
    # normalised thresholds: 0.4, (0.5*.3+.25*.4)/.75 = 1/3
    assert run(n, [0.4, 0.3, 0.32]) == [0.5, 1.0, 1.5]
    assert n.last_threshold == pytest.approx(1 / 3)


def test_gamma_state_roundtrip_is_json_and_resumes() -> None:
    errors = [0.9, 0.5, 0.45, 0.5, 0.3, 0.31, 0.2]
    a = AdaptiveGamma(gamma0=0.3, d_gamma=0.1, error_bound=0.25)
    run(a, errors[:4])
    state = json.loads(json.dumps(a.state_dict()))
    b = GammaSchedule(gamma0=0.0, d_gamma=0.0)
    b.load_state_dict(state)
    assert b.state_dict() == a.state_dict()
    assert run(b, errors[4:]) == run(a, errors[4:])
    assert all(math.isfinite(v) for v in b.history)
    # both remember the same errors: all seven fed in, or the last len(weights) of them
    assert b.history == a.history == errors[-len(a.weights):]


def test_gamma_validates() -> None:
    with pytest.raises(ValueError):
        AdaptiveGamma(gamma0=-1.0, d_gamma=0.1)
    with pytest.raises(ValueError):
        AdaptiveGamma(gamma0=1.0, d_gamma=0.1, weights=())


# --------------------------------------------------------------------------- explicit Sequential path
def strided_cnn() -> nn.Sequential:
    """A stride-2 convolution after another layer: its transposed convolution needs output padding (8x8)."""
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(),
        nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.Tanh(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Sequential(nn.Linear(12, 5), nn.Sigmoid()), nn.Linear(5, 3), nn.Identity(),
    )


def axhw_lenet() -> nn.Module:
    from axhw.training.models import build_model

    return build_model("mnist_cnn")


FAST_CASES = {
    "mlp_relu": (lambda: mlp(nn.ReLU), (5, 6)),
    "mlp_tanh": (lambda: mlp(nn.Tanh), (5, 6)),
    "mlp_sigmoid": (lambda: mlp(nn.Sigmoid), (5, 6)),
    "lenet_small": (lenet5_small, (3, 1, 28, 28)),
    "axhw_lenet": (axhw_lenet, (2, 1, 28, 28)),
    "strided": (strided_cnn, (4, 1, 8, 8)),
}


@pytest.mark.parametrize("name", sorted(FAST_CASES))
def test_sequential_path_equals_hooked_path(name: str) -> None:
    from axhw.training.sensitivity.network import _fast_supported, _flat_modules

    builder, shape = FAST_CASES[name]
    model = make(builder)
    mods = _flat_modules(model)
    assert mods is not None and _fast_supported(mods)  # the case really takes the explicit path
    x = torch.randn(*shape, dtype=DT)
    fast = per_sample_sensitivity(model, x)
    hooks = per_sample_sensitivity(model, x, path="hooks")
    assert_close(fast, hooks, rtol=1e-12)
    params = [p for p in model.parameters()]
    g_fast = torch.autograd.grad(fast.mean(), params)
    g_hooks = torch.autograd.grad(hooks.mean(), params)
    for a, b in zip(g_fast, g_hooks, strict=True):
        assert_close(a, b, rtol=1e-10)
    if name in ("mlp_relu", "lenet_small"):
        assert_close(fast, brute_per_sample(model, x), rtol=1e-10)


def test_sequential_path_returns_the_model_output() -> None:
    from axhw.training.sensitivity.network import sensitivity_and_output

    model = make(lenet5_small)
    x = torch.randn(3, 1, 28, 28, dtype=DT)
    s, out = sensitivity_and_output(model, x)
    assert torch.equal(out, model(x))
    assert_close(s, sensitivity(model, x, path="hooks"), rtol=1e-12)
    s.backward()  # differentiable like any loss term
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("module", [nn.AvgPool2d(2), nn.MaxPool2d(3, stride=2), nn.Dropout(0.0)],
                         ids=["avgpool", "overlapping-maxpool", "dropout"])
def test_modules_without_a_closed_reverse_step_take_the_hooked_path(module: nn.Module) -> None:
    from axhw.training.sensitivity.network import _fast_supported, _flat_modules

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), module, nn.Flatten(), nn.LazyLinear(2), nn.Sigmoid()).to(DT)
    x = torch.randn(2, 1, 9, 9, dtype=DT)
    model(x)  # materialise the lazy layer
    assert not _fast_supported(_flat_modules(model))
    assert_close(per_sample_sensitivity(model, x), brute_per_sample(model, x), rtol=1e-10)


def test_hardware_mode_layers_take_the_hooked_path() -> None:
    from axhw.nn import HardwareConfig, calibrate_model, set_hardware
    from axhw.training.models import build_model
    from axhw.training.sensitivity.network import _fast_supported, _flat_modules

    model = build_model("breast_cancer")
    assert _fast_supported(_flat_modules(model))
    calibrate_model(model, torch.randn(8, 30))
    set_hardware(model, HardwareConfig(mode="hardware", multiplier="K2"))
    assert not _fast_supported(_flat_modules(model))
