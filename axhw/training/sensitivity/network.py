"""Network sensitivity S(w) of AxTrain-act and its adaptive preference factor (paper section 3.1, eqs. 4-7).

AxTrain-act (He et al., ISLPED 2018) trains with ``E_tot = E + gamma * S(w)`` (eq. 4), where

    S(w) = sum_k sum_{l,ij} |w_ij^l| |dO_k / dw_ij^l|                                   (eq. 5)

is evaluated per sample and averaged over the batch (docs/sensitivity.md). ``O`` are the network outputs as the
model's ``forward`` returns them (after the output nonlinearity, e.g. sigmoid) and the sum runs over every
weight *and* bias of every :class:`torch.nn.Linear` and :class:`torch.nn.Conv2d` (subclasses included, so the
project's ``ApproxLinear``/``ApproxConv2d`` count). The absolute value is taken per sample, per output and
per parameter before anything is summed: noise on sensitive weights must not cancel (paper, point 1 under
eq. 5).

How it is computed, exactly and without per-output loops:

* Forward hooks record every layer call's input ``a`` and pre-activation output ``z``.
* One batched backward (``torch.autograd.grad(..., is_grads_batched=True)``, a vmap over the output basis
  ``e_1..e_K``) gives ``delta_k = dO_k/dz`` for all ``K`` outputs and all layers at once (the BP of eq. 2).
* Linear layer (2-D input, parameter used once): ``|dO_k/dW_ij| = |delta_k,i| |a_j|`` so the weight term is
  ``sum_k |delta_k|^T |W| |a| = (sum_k |delta_k|) . (|W| |a|)`` and the bias term ``(sum_k |delta_k|) . |b|``;
  no per-sample gradient is materialised.
* Conv2d layer (and anything else: shared weights, layers called twice, Linear on >2-D input): the
  per-sample, per-output gradient ``dO_k/dW`` sums over spatial positions (or calls), so the absolute value
  must come *after* that sum; it is formed exactly with im2col and a batched GEMM (for a ``groups=1``
  convolution used once: :class:`~axhw.training.sensitivity.kernels.ConvWeightTerm`, in chunks of samples with a hand-written backward;
  otherwise ``unfold`` and an einsum).

The result keeps its graph (``create_graph=True``), so ``torch.autograd.grad(S, params)`` is the exact
gradient of eq. 6: autograd's double backward through the hooked backward is the same Hessian-vector
product ``H V`` with ``V = |w| sign(dO/dw)`` that the paper evaluates with Pearlmutter's R-operator
(eqs. 7-11), at the cost of roughly one extra forward-backward sweep per output batch.

Estimate. ``estimator="estimate"`` replaces the output basis by ``P`` sampled, reweighted outputs per
sample (:mod:`axhw.training.sensitivity.estimate`): the same code then gives an unbiased estimate of S and of its
eq. 6 gradient at the cost of ``P`` outputs instead of ``K``.

Assumption: samples are independent (``O[n]`` depends on ``x[n]`` only), which holds for the MLPs and
LeNet-5 of the paper. Batch normalisation that uses batch statistics (train mode, or no running
statistics) couples the samples; there S is *defined* with the batch statistics as constants: the
per-sample Jacobian of the network BN folds into at inference, with this batch's mean and (biased)
variance as the fixed statistics. Those BatchNorm modules (``isinstance`` of torch's ``_BatchNorm``, so
subclasses too) then run with this batch's statistics held constant in the per-sample derivatives, which
leaves their running statistics untouched; :func:`sensitivity_and_output` takes the returned outputs from a
separate, ordinary forward (standard BN training for E, one extra forward).

The gradient of S (eq. 6) with batch-statistics BN is the derivative of that value as a function of the
weights, the statistics included: S at ``w + dw`` uses the statistics at ``w + dw``. So the statistics are
held constant inside the per-sample derivatives but stay attached to the weights for the gradient (they are
taken from a second forward of the batch, a separate branch of the graph, the E forward where there is one).
Why it matters, measured on the residual MNIST example (docs/own-network.md): with detached statistics the
gradient also has a component along each normalized channel's own weights, a scale that batch norm divides
out of the network but not out of S (a channel's share grows as the square of its scale). act followed it:
S measured after each epoch *rose* (142 -> 231 -> 314), accuracy fell (0.93 -> 0.80), channels shrank
towards the batch norm's ``eps`` and K2 accuracy fell 0.42 -> 0.15. With attached statistics that
component is gone (the gradient is orthogonal to every normalized channel's weights) and the same act
epochs lowered S (142 -> 76) while K2 accuracy rose (0.42 -> 0.62).

The adaptive preference factor of section 3.1.3 is :class:`AdaptiveGamma`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from types import MethodType
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from axhw.training.sensitivity.estimate import OutputSampler, make_sampler
from axhw.training.sensitivity.kernels import AbsWeightedSum, ConvWeightTerm

__all__ = [
    "LAYER_TYPES",
    "AdaptiveGamma",
    "GammaSchedule",
    "per_sample_sensitivity",
    "sensitivity",
    "sensitivity_and_output",
    "sensitivity_by_parameter",
    "sensitivity_map",
]

#: Layer types whose weights and biases enter S(w) (isinstance, so subclasses are included).
LAYER_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d)

Estimator = Literal["exact", "estimate"]


@dataclass
class _Call:
    """One recorded call of a Linear/Conv2d layer: its input ``a`` and output (pre-activation) ``z``."""

    layer: nn.Module
    a: Tensor
    z: Tensor


def _params(layer: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n in ("weight", "bias") if isinstance(p := getattr(layer, n, None), nn.Parameter)]


def _batch_stat_norms(model: nn.Module) -> list[nn.Module]:
    """BatchNorm modules (subclasses included) that normalise with batch statistics: train mode, or none kept."""
    bn = nn.modules.batchnorm._BatchNorm
    return [m for m in model.modules() if isinstance(m, bn) and (m.training or m.running_mean is None)]


#: Batch statistics ``(mean, biased var)`` per BatchNorm module, one entry per call in call order.
BatchStats = dict[nn.Module, list[tuple[Tensor, Tensor]]]


def _stats_of(x: Tensor) -> tuple[Tensor, Tensor]:
    dims = [0, *range(2, x.dim())]
    return x.mean(dims), x.var(dims, unbiased=False)  # biased variance, as train-mode BN normalises


def _normalize(bn: nn.modules.batchnorm._BatchNorm, x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """``bn`` with the given statistics, written out (``F.batch_norm`` refuses statistics that need grad)."""
    shape = (1, -1, *([1] * (x.dim() - 2)))
    y = (x - mean.reshape(shape)) * torch.rsqrt(var.reshape(shape) + bn.eps)
    if bn.weight is not None:
        y = y * bn.weight.reshape(shape)
    if bn.bias is not None:
        y = y + bn.bias.reshape(shape)
    return y


def _bn_constant_stats_forward(self: nn.modules.batchnorm._BatchNorm, x: Tensor,
                               live: list[tuple[Tensor, Tensor]] | None = None) -> Tensor:
    """BatchNorm with this batch's statistics as constants of the per-sample Jacobian, no buffer update.

    ``live``: statistics of a forward of the same batch (:func:`_live_batch_stats`), attached to the weights
    that produced them, used in call order; the per-sample derivatives do not see them (they come from
    another branch of the graph) but the gradient of S does. Without them the statistics are detached.
    """
    if live:
        return _normalize(self, x, *live.pop(0))
    mean, var = _stats_of(x.detach())
    return F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)


def _bn_recording_forward(self: nn.modules.batchnorm._BatchNorm, x: Tensor,
                          record: list[tuple[Tensor, Tensor]]) -> Tensor:
    """Train-mode BatchNorm without the buffer update, recording its attached statistics."""
    record.append(_stats_of(x))
    return _normalize(self, x, *record[-1])


@contextmanager
def _patched_norms(model: nn.Module, forward: Callable[[nn.Module], Callable[..., Tensor]]) -> Iterator[bool]:
    """Within the block, every batch-statistics BatchNorm of ``model`` runs ``forward(module)``.

    An instance attribute shadows the class's ``forward``, so ``module(x)`` calls from any model (Sequential,
    custom, torch.fx GraphModule) see it; the original is always restored. Yields whether any module changed.
    """
    mods = _batch_stat_norms(model)
    saved = [m.__dict__.get("forward") for m in mods]
    for m in mods:
        m.forward = MethodType(forward(m), m)
    try:
        yield bool(mods)
    finally:
        for m, f in zip(mods, saved, strict=True):
            if f is None:
                del m.forward
            else:
                m.forward = f


def _batch_stats_as_constants(model: nn.Module, live: BatchStats | None = None) -> AbstractContextManager[bool]:
    """Batch-statistics BatchNorms take their statistics as constants of the per-sample Jacobian (module
    docstring): detached, or ``live`` ones (:func:`_live_batch_stats`) so that the gradient of S sees them."""
    return _patched_norms(model, lambda m: partial(_bn_constant_stats_forward,
                                                   live=list(live[m]) if live and m in live else None))


def _live_batch_stats(model: nn.Module, x: Tensor, capture_only: bool = False) -> tuple[BatchStats, Tensor]:
    """Each batch-statistics BatchNorm call's statistics on ``x``, attached to the graph, and the outputs.

    ``capture_only``: run the modules unchanged (train-mode forward with its buffer update: the forward of
    E) and record the statistics with pre-hooks; else run without touching any buffer.
    """
    stats: BatchStats = {m: [] for m in _batch_stat_norms(model)}
    if capture_only:
        handles = [m.register_forward_pre_hook(lambda mod, args: stats[mod].append(_stats_of(args[0])))
                   for m in stats]
        try:
            return stats, model(x)
        finally:
            for h in handles:
                h.remove()
    with _patched_norms(model, lambda m: partial(_bn_recording_forward, record=stats[m])):
        return stats, model(x)


def _record(model: nn.Module, x: Tensor) -> tuple[Tensor, list[_Call]]:
    """Run ``model(x)`` with temporary forward hooks on every Linear/Conv2d; hooks are always removed."""
    calls: list[_Call] = []

    def hook(layer: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Tensor) -> Tensor:
        if not out.requires_grad:
            # Nothing upstream needs a gradient (frozen layer on a plain input): a fresh leaf lets us still
            # take dO/dz here, and the frozen parameters still count in S as constants.
            out = out.detach().requires_grad_()
        calls.append(_Call(layer, args[0] if args else kwargs["input"], out))
        return out

    handles = [
        m.register_forward_hook(hook, with_kwargs=True) for m in model.modules() if isinstance(m, LAYER_TYPES)
    ]
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    if not isinstance(out, Tensor) or out.dim() == 0 or out.shape[0] != x.shape[0]:
        raise ValueError("model(x) must return one tensor whose first dimension is the batch dimension")
    return out, calls


def _output_deltas(out2d: Tensor, zs: list[Tensor], create_graph: bool, vectorize: bool,
                   basis: Tensor | None = None) -> list[Tensor]:
    """``delta[k] = dO_k/dz`` for every recorded ``z``, shape ``(K, *z.shape)`` (BP of eq. 2, all outputs).

    ``basis`` ``(R, N, K)`` replaces the output basis ``e_1..e_K`` (the estimator's probes): then
    ``delta[r] = sum_k basis[r, :, k] dO_k/dz``, shape ``(R, *z.shape)``.
    """
    n, k = out2d.shape
    if basis is None:
        basis = torch.eye(k, dtype=out2d.dtype, device=out2d.device).unsqueeze(1).expand(k, n, k)
    kwargs: dict[str, Any] = dict(retain_graph=True, create_graph=create_graph, allow_unused=True)
    kwargs["materialize_grads"] = True
    if vectorize:
        return list(torch.autograd.grad(out2d, zs, basis, is_grads_batched=True, **kwargs))
    per_k = [torch.autograd.grad(out2d, zs, basis[i], **kwargs) for i in range(basis.shape[0])]
    return [torch.stack(ds) for ds in zip(*per_k, strict=True)]


def _linear_grads(call: _Call, delta: Tensor) -> dict[str, Tensor]:
    """Per-sample, per-output gradients ``(K, N, *p.shape)`` of a Linear call (positions summed first)."""
    k, n = delta.shape[:2]
    d = delta.reshape(k, n, -1, delta.shape[-1])
    a = call.a.reshape(n, -1, call.a.shape[-1])
    return {"weight": torch.einsum("knto,nti->knoi", d, a), "bias": d.sum(2)}


def _conv_pad(layer: nn.Conv2d) -> tuple[int, int, int, int]:
    """Padding in ``F.pad`` order (left, right, top, bottom), resolving ``padding='same'/'valid'``."""
    if isinstance(layer.padding, str):
        if layer.padding == "valid":
            return (0, 0, 0, 0)
        pads: list[int] = []
        for d, kk in zip(reversed(layer.dilation), reversed(layer.kernel_size), strict=True):
            total = d * (kk - 1)  # PyTorch's 'same': the extra element goes right/bottom
            pads += [total // 2, total - total // 2]
        return (pads[0], pads[1], pads[2], pads[3])
    ph, pw = layer.padding
    return (pw, pw, ph, ph)


def _conv_grads(call: _Call, delta: Tensor) -> dict[str, Tensor]:
    """Per-sample, per-output gradients ``(K, N, *p.shape)`` of a Conv2d call.

    ``dO_k/dW[o, c, i, j] = sum_pos delta_k[o, pos] * patch[c, i, j, pos]`` (im2col); the absolute value is
    applied by the caller only after this positional sum, because one weight is shared by all positions.
    """
    layer = call.layer
    assert isinstance(layer, nn.Conv2d)
    a = call.a
    if a.dim() != 4:
        raise ValueError("sensitivity needs batched (N, C, H, W) inputs to Conv2d layers")
    mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
    a = F.pad(a, _conv_pad(layer), mode=mode)
    cols = F.unfold(a, layer.kernel_size, dilation=layer.dilation, stride=layer.stride)  # (N, C*kh*kw, L)
    k, n, o = delta.shape[:3]
    g = layer.groups
    d = delta.reshape(k, n, g, o // g, -1)
    cols = cols.reshape(n, g, -1, cols.shape[-1])
    gw = torch.einsum("kngol,ngcl->kngoc", d, cols).reshape(k, n, *layer.weight.shape)
    return {"weight": gw, "bias": d.sum(-1).reshape(k, n, o)}


def _conv_sample_terms(layer: nn.Conv2d, a: Tensor, delta: Tensor) -> dict[str, Tensor]:
    """Per-sample terms ``sum_k sum_{w in p} |w| |dO_k/dw|`` ``(N,)`` of one call of a ``groups=1`` Conv2d.

    The numbers of :func:`_conv_grads` followed by ``|.|`` and the weighted sum, computed by
    :class:`~axhw.training.sensitivity.kernels.ConvWeightTerm` (chunked, no full im2col) and ``AbsWeightedSum`` for the bias. Used
    wherever a parameter enters S once.
    """
    k, n, o = delta.shape[:3]
    pad: Any = layer.padding
    if isinstance(pad, str) or layer.padding_mode != "zeros":
        a = F.pad(a, _conv_pad(layer), mode="constant" if layer.padding_mode == "zeros" else layer.padding_mode)
        pad = (0, 0)
    pair = torch.nn.modules.utils._pair
    geom = (pair(layer.kernel_size), pair(layer.dilation), pair(pad), pair(layer.stride))
    d = delta.reshape(k, n, o, -1).transpose(0, 1).reshape(n, k * o, -1)  # a view for one probe
    terms: dict[str, Tensor] = {}
    for name, p in _params(layer):
        if name == "weight":
            terms[name] = ConvWeightTerm.apply(a, d, p.abs().reshape(o, -1), k, geom)
        else:
            terms[name] = AbsWeightedSum.apply(d.sum(2, keepdim=True).view(n, k, -1), p.abs().reshape(-1))
    return terms


def _linear_closed_form(
    a: Tensor, delta: Tensor, p: Tensor, name: str, reduce: Literal["sample", "param"]
) -> Tensor:
    """Linear-layer term without per-sample gradients: ``|dO_k/dW_ij| = |delta_k,i| |a_j|`` (eq. 2).

    ``sum_k |delta_k|^T |W| |a| = (sum_k |delta_k|) . (|W| |a|)`` because ``|W| |a|`` does not depend on k.
    """
    dsum = delta.abs().sum(0)  # (N, out)
    if reduce == "sample":
        return (dsum * (a.abs() @ p.abs().t())).sum(1) if name == "weight" else dsum @ p.abs()
    return p.abs() * (dsum.t() @ a.abs() if name == "weight" else dsum.sum(0)) / a.shape[0]


def _terms(
    model: nn.Module,
    x: Tensor,
    reduce: Literal["sample", "param"],
    *,
    create_graph: bool,
    vectorize: bool,
    only: set[nn.Parameter] | None = None,
    sampler: OutputSampler | None = None,
    live: BatchStats | None = None,
) -> tuple[dict[nn.Parameter, Tensor], Tensor]:
    """Sensitivity contribution of each parameter, either per sample ``(N,)`` or per element (mean over N),
    and the model output of the hooked forward.

    ``reduce="sample"`` gives ``sum_k sum_{w in p} |w| |dO_k(x_n)/dw|`` for each sample n;
    ``reduce="param"`` gives ``|w| * mean_n sum_k |dO_k(x_n)/dw|`` with the parameter's shape (Fig. 4).
    With a ``sampler`` the sum over k is its unbiased estimate (:mod:`axhw.training.sensitivity.estimate`).
    ``live``: attached batch statistics to hold constant (:func:`_live_batch_stats`); with ``create_graph``
    and none given, a buffer-neutral forward provides them, so every gradient of S follows the statistics.
    """
    if live is None and create_graph and _batch_stat_norms(model):
        with torch.enable_grad():
            live, _ = _live_batch_stats(model, x)
    with torch.enable_grad(), _batch_stats_as_constants(model, live):
        out, calls = _record(model, x)
        z_last = calls[-1].z if calls else None
        if only is not None:
            calls = [c for c in calls if any(p in only for _, p in _params(c.layer))]
        if not calls:
            return {}, out
        out2d = out.reshape(out.shape[0], -1)
        basis = _probe_basis(sampler, out2d, z_last, vectorize)
        deltas = _output_deltas(out2d, [c.z for c in calls], create_graph, vectorize, basis)
        uses = Counter(p for c in calls for _, p in _params(c.layer))

        result: dict[nn.Parameter, Tensor] = {}
        shared: dict[nn.Parameter, Tensor] = {}  # summed per-sample gradients (K, N, *p.shape)
        for call, delta in zip(calls, deltas, strict=True):
            params = [(name, p) for name, p in _params(call.layer) if only is None or p in only]
            closed = isinstance(call.layer, nn.Linear) and call.a.dim() == 2
            fused = (reduce == "sample" and isinstance(call.layer, nn.Conv2d) and call.layer.groups == 1
                     and call.a.dim() == 4 and all(uses[p] == 1 for _, p in params))
            if fused:
                assert isinstance(call.layer, nn.Conv2d)  # fused is conv-only
                terms = _conv_sample_terms(call.layer, call.a, delta)
                result.update({p: terms[name] for name, p in params})
            for name, p in params:
                if closed and uses[p] == 1:
                    result[p] = _linear_closed_form(call.a, delta, p, name, reduce)
            rest = [(name, p) for name, p in params if not fused and not (closed and uses[p] == 1)]
            if rest:
                linear = isinstance(call.layer, nn.Linear)
                grads = _linear_grads(call, delta) if linear else _conv_grads(call, delta)
                for name, p in rest:
                    shared[p] = shared[p] + grads[name] if p in shared else grads[name]
        for p, g in shared.items():
            # |.| only now: after summing over positions/calls, exactly as |dO_k/dw| of eq. 5.
            ga = g.abs().sum(0)  # sum over outputs k -> (N, *p.shape)
            result[p] = (ga * p.abs()).flatten(1).sum(1) if reduce == "sample" else p.abs() * ga.mean(0)
    if not create_graph:
        result = {p: t.detach() for p, t in result.items()}
    return result, out


def _probe_basis(sampler: OutputSampler | None, out2d: Tensor, z_last: Tensor | None,
                 vectorize: bool) -> Tensor | None:
    """The estimator's probes ``(P, N, K)``, or ``None`` (exact: the output basis).

    The ``tail`` proposal gets ``dO/dz`` of the last Linear/Conv2d call: a K-probe backward through the
    output nonlinearity only (autograd stops at ``z``), cheap next to the P probes through the network.
    """
    if sampler is None:
        return None
    tail = None
    if sampler.needs_tail and sampler.probes < out2d.shape[1] and z_last is not None and z_last.requires_grad:
        tail = _output_deltas(out2d, [z_last], False, vectorize)[0]
    return sampler.basis(out2d, tail)


# --------------------------------------------------------------------------- Sequential fast path
_ELEMENTWISE = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.Identity)


def _flat_modules(model: nn.Module) -> list[nn.Module] | None:
    """The leaf modules of a (nested) ``nn.Sequential`` in call order, or None if ``model`` is not one."""
    if not isinstance(model, nn.Sequential):
        return None
    mods: list[nn.Module] = []
    for m in model:
        sub = _flat_modules(m) if isinstance(m, nn.Sequential) else [m]
        if sub is None:
            return None
        mods += sub
    return mods


def _standard_forward(m: nn.Module) -> bool:
    """Plain ``F.linear``/``F.conv2d`` forward: torch's own, or an axhw layer in float mode (checked by the
    caller), whose ``forward`` then is exactly that."""
    base = nn.Linear if isinstance(m, nn.Linear) else nn.Conv2d
    return type(m).forward is base.forward or hasattr(m, "_reference")


def _fast_supported(mods: list[nn.Module]) -> bool:
    """Whether every module has a closed-form reverse step below (else the hooked generic path runs)."""
    if len({id(m) for m in mods}) != len(mods):
        return False  # a module called twice shares its parameters: |.| must follow the sum over calls
    for m in mods:
        hw = getattr(m, "hw", None)
        if hw is not None and getattr(hw, "mode", "float") != "float":
            return False  # hardware forward (ClippedSTE): keep the generic definition
        if isinstance(m, nn.Linear | nn.Conv2d) and not _standard_forward(m):
            return False  # a subclass with its own forward may compute anything
        if isinstance(m, nn.Conv2d):
            if m.groups != 1 or m.dilation != (1, 1) or m.padding_mode != "zeros" or isinstance(m.padding, str):
                return False
        elif isinstance(m, nn.MaxPool2d):
            ks = torch.nn.modules.utils._pair(m.kernel_size)
            ss = torch.nn.modules.utils._pair(m.stride if m.stride is not None else m.kernel_size)
            if m.padding != 0 or m.dilation != 1 or m.ceil_mode or any(a > b for a, b in zip(ks, ss, strict=True)):
                return False  # overlapping windows would need scatter-add, not unpooling
        elif isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                return False
        elif not isinstance(m, (nn.Linear, *_ELEMENTWISE)):
            return False
    return True


def _sequential_sensitivity(mods: list[nn.Module], x: Tensor,
                            sampler: OutputSampler | None = None) -> tuple[Tensor, Tensor]:
    """Per-sample S ``(N,)`` and the model output for a Sequential of Linear/Conv2d/ReLU/Sigmoid/Tanh/
    MaxPool2d/Flatten, with ``delta_k`` propagated explicitly instead of through a vmapped autograd backward.

    Same mathematics as :func:`_terms`: one forward records ``a``, ``z``, ReLU outputs, pooling indices and
    activation slopes; ``delta_k = dO_k/dz`` for all K outputs is then built layer by layer backwards
    (``delta @ W``, transposed convolution, unpooling, times the slope), as an ordinary differentiable
    expression. So ``S.backward()`` is a plain first-order backward over that expression and equals the
    eq. 6 gradient of the generic path (the ReLU masks and pooling indices are piecewise constant, exactly
    as in autograd's double backward). Why: it saves the second forward and the batched double backward,
    the bulk of AxTrain-act's step time (bench/bench_train.py). With a ``sampler`` the K outputs' basis
    is replaced by its P probes (unbiased estimate, :mod:`axhw.training.sensitivity.estimate`).
    """
    h = x
    z_last: Tensor | None = None
    rev: list[tuple[str, Any]] = []  # reverse-step records, in forward order
    layers: list[tuple[nn.Linear | nn.Conv2d, Tensor, int]] = []  # (layer, input a, index into rev)
    for m in mods:
        if isinstance(m, nn.Linear | nn.Conv2d):
            if isinstance(m, nn.Linear) and h.dim() != 2:
                raise _Fallback
            layers.append((m, h, len(rev)))
            rev.append(("layer", (m, h.shape)))
            h = z_last = m(h)
        elif isinstance(m, nn.MaxPool2d):
            shape = h.shape
            h, idx = F.max_pool2d(h, m.kernel_size, m.stride, 0, 1, False, True)
            rev.append(("pool", (m, idx, shape)))
        elif isinstance(m, nn.Flatten):
            rev.append(("flatten", h.shape))
            h = m(h)
        elif isinstance(m, nn.ReLU):
            h = m(h)
            rev.append(("relu", h))  # slope (h > 0) formed only where needed: at the arg-max after a pooling
        elif isinstance(m, nn.Sigmoid):
            h = m(h)
            rev.append(("slope", h * (1 - h)))
        elif isinstance(m, nn.Tanh):
            h = m(h)
            rev.append(("slope", 1 - h * h))
        # nn.Identity: nothing to record
    out = h
    if out.dim() != 2 or not layers:
        raise _Fallback
    n, k = out.shape
    first = layers[0][2]
    probes = _probe_basis(sampler, out, z_last, True)
    delta: Tensor = torch.eye(k, dtype=out.dtype, device=out.device).unsqueeze(1).expand(k, n, k) \
        if probes is None else probes
    k = delta.shape[0]  # from here on: the number of probes (K for the exact basis)
    deltas: dict[int, Tensor] = {}
    d: Tensor | _Pooled = delta
    for i in range(len(rev) - 1, first - 1, -1):
        kind, rec = rev[i]
        if kind == "slope":
            if isinstance(d, _Pooled):  # only the arg-max positions carry a delta: gather their slopes
                d = _Pooled(d.values * rec.flatten(2).gather(2, d.idx).unsqueeze(0), d.idx, d.shape)
            else:
                d = d * rec.unsqueeze(0)
        elif kind == "relu":  # rec is the ReLU output: slope 1 where it is positive
            if isinstance(d, _Pooled):
                d = _Pooled(d.values * (rec.flatten(2).gather(2, d.idx) > 0).unsqueeze(0), d.idx, d.shape)
            else:
                d = d * (rec > 0).unsqueeze(0)
        elif kind == "flatten":
            d = _dense(d).reshape(k, *rec)
        elif kind == "pool":
            _m, idx, shape = rec
            dd = _dense(d)
            d = _Pooled(dd.reshape(k, n, shape[1], -1), idx.flatten(2), shape)
        else:  # layer: d is dO/dz here; step through it only if an earlier layer needs it
            deltas[i] = dd = _dense(d)
            if i == first:
                break
            lay, a_shape = rec
            if isinstance(lay, nn.Linear):
                d = dd @ lay.weight
            else:
                flat = dd.reshape(k * n, *dd.shape[2:])
                op = [(a_shape[2 + t] + 2 * lay.padding[t] - lay.kernel_size[t]) % lay.stride[t] for t in (0, 1)]
                flat = F.conv_transpose2d(flat, lay.weight, stride=lay.stride, padding=lay.padding, output_padding=op)
                d = flat.reshape(k, *a_shape)
    total = out.new_zeros(n)
    for lay, a, i in layers:
        di = deltas[i]
        if isinstance(lay, nn.Linear):
            for name, p in _params(lay):
                total = total + _linear_closed_form(a, di, p, name, "sample")
        else:  # |.| after the sum over positions (eq. 5), as in _terms
            for t in _conv_sample_terms(lay, a, di).values():
                total = total + t
    return total, out


@dataclass
class _Pooled:
    """A ``delta`` that is zero except at the arg-max positions of a non-overlapping max-pooling.

    ``values`` ``(K, N, C, L')`` sit at flat positions ``idx`` ``(N, C, L')`` of the ``(H, W)`` planes of a
    ``shape = (N, C, H, W)`` tensor. Keeping deltas in this form from a pooling layer down to the
    convolution below it applies the activation slopes on the pooled grid (4x fewer elements for
    LeNet-5's 2x2 pools) and places the values once, instead of unpooling and masking the full grid.
    """

    values: Tensor
    idx: Tensor
    shape: torch.Size


def _dense(d: Tensor | _Pooled) -> Tensor:
    if not isinstance(d, _Pooled):
        return d
    k = d.values.shape[0]
    n, c, hh, ww = d.shape
    # Positions within one window-plane are distinct (non-overlapping windows): scatter is a plain placement.
    flat = d.values.new_zeros(k, n, c, hh * ww).scatter(3, d.idx.unsqueeze(0).expand_as(d.values), d.values)
    return flat.reshape(k, n, c, hh, ww)


class _Fallback(Exception):
    """The Sequential fast path does not apply to this input; use the hooked generic path."""


def sensitivity_and_output(
    model: nn.Module, x: Tensor, *, estimator: Estimator | OutputSampler = "exact", probes: int = 1,
    generator: torch.Generator | int | None = None,
) -> tuple[Tensor, Tensor]:
    """``(S, model(x))`` from one forward: the regulariser of eq. 4 and the outputs for the loss E.

    Training with ``E + gamma * S`` needs both; sharing the forward saves one pass per step. ``S`` is the
    differentiable scalar of :func:`sensitivity` (same value, same eq. 6 gradient; with
    ``estimator="estimate"`` an unbiased estimate of both) and the outputs are those of ``model(x)``, with
    their graph. With batch-statistics BatchNorm the outputs come from a second, ordinary forward (module
    docstring), so E trains BN as usual and its running statistics are updated once.

    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3), nn.Sigmoid())
    >>> s, out = sensitivity_and_output(net, torch.randn(5, 3), estimator="estimate", probes=1, generator=0)
    >>> s.shape, out.shape
    (torch.Size([]), torch.Size([5, 3]))
    """
    sampler = make_sampler(estimator, probes, generator)
    if _batch_stat_norms(model):
        live, out = _live_batch_stats(model, x, capture_only=True)
        per_sample, _ = _per_sample_and_output(model, x, create_graph=True, vectorize=True, sampler=sampler,
                                               live=live)
        return per_sample.mean(), out
    per_sample, out = _per_sample_and_output(model, x, create_graph=True, vectorize=True, sampler=sampler)
    return per_sample.mean(), out


def _per_sample_and_output(model: nn.Module, x: Tensor, *, create_graph: bool, vectorize: bool,
                           path: Literal["auto", "hooks"] = "auto",
                           sampler: OutputSampler | None = None,
                           live: BatchStats | None = None) -> tuple[Tensor, Tensor]:
    mods = _flat_modules(model) if path == "auto" else None
    if mods is not None and _fast_supported(mods):
        try:
            with torch.enable_grad():
                s, out = _sequential_sensitivity(mods, x, sampler)
        except _Fallback:
            pass
        else:
            return (s, out) if create_graph else (s.detach(), out)
    terms, out = _terms(model, x, "sample", create_graph=create_graph, vectorize=vectorize, sampler=sampler,
                        live=live)
    s = torch.stack(list(terms.values())).sum(0) if terms else x.new_zeros(x.shape[0])
    return s, out


def per_sample_sensitivity(
    model: nn.Module, x: Tensor, *, create_graph: bool = True, vectorize: bool = True,
    path: Literal["auto", "hooks"] = "auto", estimator: Estimator | OutputSampler = "exact", probes: int = 1,
    generator: torch.Generator | int | None = None,
) -> Tensor:
    """Per-sample network sensitivity ``S_n = sum_k sum_w |w| |dO_k(x_n)/dw|`` (eq. 5), shape ``(N,)``.

    Args:
        model: Network; all weights and biases of its Linear/Conv2d modules (and subclasses) are counted.
            Batch-statistics BatchNorm is taken with its batch statistics as constants (module docstring).
        x: Input batch; ``model(x)`` must return outputs with the batch as first dimension. Outputs with
            more than one further dimension are flattened into ``K`` outputs.
        create_graph: Keep the graph so the result can be differentiated (eq. 6); ``False`` detaches.
        vectorize: Compute all ``K`` output derivatives in one vmapped backward (fast); ``False`` loops over
            outputs (reference path, or for layers without vmap support).
        path: ``"auto"`` uses the explicit Sequential path where every module has a closed-form reverse
            step (Linear, Conv2d, ReLU, Sigmoid, Tanh, MaxPool2d, Flatten), else the hooked autograd path;
            ``"hooks"`` forces the latter (the general definition, used as the reference in tests).
        estimator: ``"exact"`` (all K outputs), ``"estimate"`` (unbiased estimate from ``probes`` sampled
            outputs per sample, :mod:`axhw.training.sensitivity.estimate`), or an
            :class:`~axhw.training.sensitivity.estimate.OutputSampler` for full control of the sampling.
        probes: ``P >= 1`` for ``"estimate"`` (cost ~ P outputs instead of K; ``P >= K`` is exact).
        generator: ``torch.Generator`` or seed of the draw (``None``: torch's global RNG).

    Returns:
        Tensor of shape ``(N,)``.

    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.Sigmoid())
    >>> per_sample_sensitivity(net, torch.randn(5, 3)).shape
    torch.Size([5])
    """
    sampler = make_sampler(estimator, probes, generator)
    return _per_sample_and_output(model, x, create_graph=create_graph, vectorize=vectorize, path=path,
                                  sampler=sampler)[0]


def sensitivity(model: nn.Module, x: Tensor, *, create_graph: bool = True, vectorize: bool = True,
                path: Literal["auto", "hooks"] = "auto", estimator: Estimator | OutputSampler = "exact",
                probes: int = 1, generator: torch.Generator | int | None = None) -> Tensor:
    """Batch-mean network sensitivity ``S(w)`` of eq. 5, the regulariser of eq. 4, as a differentiable scalar.

    ``torch.autograd.grad(S, params)`` is the exact eq. 6 gradient (first term plus the Hessian-vector product
    that the paper computes with Pearlmutter's R-operator, eqs. 7-11); with ``estimator="estimate"`` both
    are unbiased estimates. Parameter ``.grad`` fields, hooks and BatchNorm running statistics are left
    untouched; train and eval mode both work (batch-statistics BN: statistics as constants).

    Args:
        model: Network; all weights and biases of its Linear/Conv2d modules (and subclasses) are counted.
        x: Input batch.
        create_graph: Keep the graph for ``backward`` (default); ``False`` gives a detached value for logging.
        vectorize, path, estimator, probes, generator: See :func:`per_sample_sensitivity`.

    Returns:
        Scalar tensor ``mean_n sum_k sum_w |w| |dO_k(x_n)/dw|``.

    >>> torch.manual_seed(0) and None
    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.Sigmoid())
    >>> s = sensitivity(net, torch.randn(5, 3))
    >>> s.backward()  # gradient of eq. 6 lands in .grad, as for any loss
    >>> bool(s > 0)
    True
    """
    return per_sample_sensitivity(model, x, create_graph=create_graph, vectorize=vectorize, path=path,
                                  estimator=estimator, probes=probes, generator=generator).mean()


def sensitivity_by_parameter(
    model: nn.Module, x: Tensor, *, create_graph: bool = False, vectorize: bool = True
) -> dict[str, Tensor]:
    """Each parameter's share of ``S(w)`` (batch mean), keyed by ``model.named_parameters()`` names.

    Useful for logging which layer dominates the sensitivity; the values sum to :func:`sensitivity`.

    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.Sigmoid())
    >>> sorted(sensitivity_by_parameter(net, torch.randn(5, 3)))
    ['0.bias', '0.weight', '2.bias', '2.weight']
    """
    terms, _ = _terms(model, x, "sample", create_graph=create_graph, vectorize=vectorize)
    return {name: terms[p].mean() for name, p in model.named_parameters() if p in terms}


def sensitivity_map(
    model: nn.Module,
    x: Tensor,
    layer: nn.Module,
    *,
    param: str = "weight",
    create_graph: bool = False,
    vectorize: bool = True,
) -> Tensor:
    """Per-weight sensitivity ``|w| * mean_n sum_k |dO_k(x_n)/dw|`` of one layer (paper Fig. 4).

    Summing the map over all parameters of all layers gives :func:`sensitivity`.

    Args:
        model: Network containing ``layer``.
        x: Input batch.
        layer: A Linear/Conv2d module of ``model``.
        param: ``"weight"`` or ``"bias"``.
        create_graph: Keep the graph (default ``False``: a detached map for plotting).
        vectorize: See :func:`per_sample_sensitivity`.

    Returns:
        Tensor with the shape of ``getattr(layer, param)``; zeros if the layer is not used by ``model(x)``.

    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.Sigmoid())
    >>> sensitivity_map(net, torch.randn(5, 3), net[0]).shape
    torch.Size([4, 3])
    """
    if not isinstance(layer, LAYER_TYPES):
        raise TypeError(f"layer must be an nn.Linear or nn.Conv2d (or subclass), got {type(layer).__name__}")
    p = getattr(layer, param, None)
    if not isinstance(p, nn.Parameter):
        raise ValueError(f"{type(layer).__name__} has no parameter {param!r}")
    terms, _ = _terms(model, x, "param", create_graph=create_graph, vectorize=vectorize, only={p})
    return terms[p] if p in terms else torch.zeros_like(p, requires_grad=False)


def _geometric_weights() -> tuple[float, ...]:
    # 0.5, 0.25, 0.125, ... (paper 3.1.3); 32 terms: older epochs weigh < 2**-32 and are dropped.
    return tuple(0.5**i for i in range(1, 33))


@dataclass
class AdaptiveGamma:
    """Per-epoch adaptive preference factor gamma of eq. 4 (paper section 3.1.3, after Weigend et al. 1991).

    Rule (``update`` once per epoch with that epoch's training error ``E_t``):

        threshold_t = sum_{i>=1} weights[i-1] * E_{t-i}       (most recent previous epoch first)
        gamma += d_gamma   if E_t < threshold_t or E_t < error_bound
        gamma -= d_gamma   otherwise, clamped at 0.

    Interpretation where the paper is vague (documented choices):

    * "Weighted sum (0.5, 0.25, 0.125 ...)" is taken literally: the weights are *not* renormalised over the
      available history. The threshold is then an exponential moving average started from 0, so during the
      first few epochs it is strict (epoch 2 needs ``E_2 < E_1 / 2``) and gamma mostly falls, protecting
      accuracy while the error is still dropping fast; after ~5 epochs it is the usual weighted average of
      recent errors. ``normalize=True`` divides by the sum of the weights used (bias-corrected average).
    * First epoch: there are no previous errors, the weighted sum is empty (0, or undefined when
      normalised), so only the error-bound test can raise gamma; otherwise it is lowered.
    * Comparisons are strict ("smaller than"). ``error`` may be a loss or an error rate (1 - accuracy, the
      paper's "accuracy bound"), as long as ``error_bound`` uses the same unit.

    The state (gamma and the error history) is plain floats, see :meth:`state_dict`.

    >>> g = AdaptiveGamma(gamma0=0.01, d_gamma=0.005, error_bound=0.05)
    >>> g.update(0.20), g.update(0.08), g.update(0.09), g.update(0.04)  # -, +, -, + (bound)
    (0.005, 0.01, 0.005, 0.01)
    """

    gamma0: float
    """Initial gamma (value used for the first epoch)."""
    d_gamma: float
    """Step added or subtracted each epoch (the paper's Delta gamma)."""
    error_bound: float = 0.0
    """Pre-defined error bound: an epoch error below it always raises gamma (0 disables the test)."""
    weights: tuple[float, ...] = field(default_factory=_geometric_weights)
    """Weights for previous epochs' errors, most recent first (paper: 0.5, 0.25, 0.125, ...)."""
    normalize: bool = False
    """Divide the weighted sum by the weights actually used (off: the paper's literal weighted sum)."""
    gamma: float = field(init=False)
    """Current gamma, to use for the next epoch."""
    history: list[float] = field(init=False, default_factory=list)
    """Previous epochs' training errors, most recent last (at most ``len(weights)`` kept)."""
    last_threshold: float | None = field(init=False, default=None)
    """Weighted-sum threshold of the last update (``None`` before any or when the history was empty)."""
    last_increased: bool | None = field(init=False, default=None)
    """Whether the last update raised gamma (``None`` before any update)."""

    def __post_init__(self) -> None:
        if self.gamma0 < 0 or self.d_gamma < 0:
            raise ValueError("gamma0 and d_gamma must be >= 0")
        if not self.weights:
            raise ValueError("weights must not be empty")
        self.weights = tuple(float(w) for w in self.weights)
        self.gamma = float(self.gamma0)

    def threshold(self) -> float | None:
        """Weighted sum of previous epochs' errors (most recent first), ``None`` without history."""
        if not self.history:
            return None
        recent = self.history[::-1][: len(self.weights)]
        total = sum(w * e for w, e in zip(self.weights, recent, strict=False))
        if self.normalize:
            total /= sum(self.weights[: len(recent)])
        return total

    def update(self, epoch_train_error: float) -> float:
        """Apply the section 3.1.3 rule for one finished epoch and return the new gamma."""
        err = float(epoch_train_error)
        thr = self.threshold()
        self.last_increased = (thr is not None and err < thr) or err < self.error_bound
        self.last_threshold = thr
        step = self.d_gamma if self.last_increased else -self.d_gamma
        self.gamma = max(0.0, self.gamma + step)
        self.history = [*self.history, err][-len(self.weights) :]
        return self.gamma

    def state_dict(self) -> dict[str, Any]:
        """Plain-Python state (floats, lists, bools): JSON- and ``torch.save``-friendly, easy to log."""
        return {
            "gamma0": self.gamma0,
            "d_gamma": self.d_gamma,
            "error_bound": self.error_bound,
            "weights": list(self.weights),
            "normalize": self.normalize,
            "gamma": self.gamma,
            "history": list(self.history),
            "last_threshold": self.last_threshold,
            "last_increased": self.last_increased,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict`."""
        self.gamma0 = float(state["gamma0"])
        self.d_gamma = float(state["d_gamma"])
        self.error_bound = float(state["error_bound"])
        self.weights = tuple(float(w) for w in state["weights"])
        self.normalize = bool(state["normalize"])
        self.gamma = float(state["gamma"])
        self.history = [float(e) for e in state["history"]]
        self.last_threshold = state["last_threshold"]
        self.last_increased = state["last_increased"]


#: Alias: the schedule object used by training loops.
GammaSchedule = AdaptiveGamma
