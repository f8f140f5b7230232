"""Unbiased stochastic estimate of AxTrain-act's network sensitivity S(w) (eq. 5) and of its gradient (eq. 6).

Why: exact S needs the derivatives of all ``K`` outputs, i.e. ``K`` delta propagations and ``K`` per-sample
weight gradients per convolution, plus their backward for eq. 6; on a CIFAR-shaped CNN with K = 10 that is
tens of BP steps (``bench/bench_act.py``). This module is the *sampling design* that lets
:mod:`axhw.training.sensitivity.network` pay for ``P`` outputs instead of ``K``.

The quantity. Per sample ``n`` write ``S_n = sum_k s_nk`` with

    s_nk = sum_w |w| |dO_k(x_n)/dw| >= 0,          S = mean_n S_n                        (eq. 5)

Why not random projections. Hutchinson-style probes ``v`` (Rademacher or Gaussian) give one backward for
``v^T dO/dw = sum_k v_k dO_k/dw``, but eq. 5 takes ``|.|`` per output before summing (paper, point 1 under
eq. 5) and ``E|sum_k v_k a_k| != sum_k |a_k|`` (``a = (1, -1)``: 1 vs 2), so any projection mixing outputs
is biased. Scaling a *single* output is fine, because ``|c a| = c |a|`` for ``c > 0``.

The design (per sample, samples independent). Choose inclusion probabilities ``pi_nk`` in ``(0, 1]`` with
``sum_k pi_nk = P``; put the ``K`` outputs in a uniformly random order and take systematic sampling on the
cumulative ``pi`` (one uniform start ``u``, points ``u, u + 1, ..., u + P - 1``). Each interval has length
``pi_nk <= 1``, so exactly ``P`` distinct outputs are drawn and output ``k`` is drawn with probability
exactly ``pi_nk``. The Horvitz-Thompson estimate

    S^_n = sum_{k drawn} s_nk / pi_nk,      E[S^_n] = sum_k pi_nk s_nk / pi_nk = S_n      (unbiased)

costs ``P`` probes: probe ``j`` is the vector ``v_j[n] = e_{k_nj} / pi_{n,k_nj}`` and one backward of
``v_j . O`` gives ``delta = dO_k/dz / pi`` for *every* sample at once (``O[n]`` depends on ``x[n]`` only),
exactly like the exact code's output basis ``e_1..e_K``. ``P >= K`` selects every output: exact S.

Gradient (eq. 6). ``pi`` and the draw are computed from detached quantities, so for a fixed draw ``S^_n``
is a fixed positive combination of the ``s_nk(w)`` and autograd gives ``grad S^_n = sum_{k drawn}
grad s_nk / pi_nk``, whose expectation is ``sum_k grad s_nk = grad S_n``: unbiased for the eq. 6
gradient, Hessian-vector term included (the double backward runs through the ``P`` probes only).

Variance and the proposal. With uniform ``pi = P/K`` (simple random sampling without replacement)
``Var S^_n = K^2 (1 - P/K) sigma_n^2 / P``, ``sigma_n^2`` the spread of ``s_nk`` over ``k``: the finite
population factor makes it vanish at ``P = K``, unlike sampling with replacement. The spread is large for
sigmoid outputs: ``dO_k/dw = sigma'(z_k) dz_k/dw`` when the output layer is an elementwise nonlinearity of
the last layer's output ``z``, so ``s_nk = g_nk t_nk`` with ``g_nk = sigma'(z_nk)`` ranging over orders of
magnitude between saturated and unsaturated outputs. ``proposal="tail"`` therefore takes ``pi`` proportional
to ``g_nk = sum_j |dO_k(x_n)/dz_nj|`` (the output's Jacobian with respect to the last Linear/Conv2d output,
a ``K``-probe backward through the output nonlinearity only, negligible cost), mixed with the uniform
distribution: ``q = (1 - mix) g / sum_k g + mix / K``, ``pi = min(1, c q)`` with ``c`` such that
``sum_k pi = P``. The HT terms are then ``s_nk / pi_nk ~ t_nk``, which varies much less over ``k``; the
mixture keeps every ``pi_nk >= mix P / K`` (bounded weights, unbiased even where the proxy is 0 or wrong).
For any model the estimate stays unbiased; the proxy only changes the variance. ``bench/bench_act.py``
measures both proposals' relative standard deviation against ``P`` (``docs/sensitivity.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from axhw.training.options import ESTIMATORS  # defined without torch, for the command line

__all__ = ["ESTIMATORS", "PROPOSALS", "OutputSampler", "make_sampler"]

#: Inclusion probabilities of the sampled outputs: uniform, or proportional to the tail Jacobian (mixed).
PROPOSALS: tuple[str, ...] = ("uniform", "tail")

Proposal = Literal["uniform", "tail"]


@dataclass(frozen=True)
class OutputSampler:
    """Draws the ``P`` output probes of one evaluation of S (systematic Horvitz-Thompson sampling, above).

    Attributes:
        probes: ``P``, outputs drawn per sample (>= 1); ``P >= K`` gives exact S.
        generator: source of randomness (same generator state, same draw); ``None``: torch's global RNG.
        proposal: ``"tail"`` (default: ``pi`` follows the output nonlinearity's slope, lower variance for
            sigmoid outputs) or ``"uniform"`` (``pi = P / K``).
        mix: weight of the uniform distribution in the ``tail`` proposal, in ``(0, 1]`` (1: uniform).

    >>> s = OutputSampler(2, torch.Generator().manual_seed(0), proposal="uniform")
    >>> v = s.basis(torch.zeros(3, 5))  # (P, N, K): one scaled one-hot per probe and sample
    >>> v.shape, v.sum(2).unique().tolist()  # every weight is 1 / pi = K / P
    (torch.Size([2, 3, 5]), [2.5])
    """

    probes: int
    generator: torch.Generator | None = None
    proposal: Proposal = "tail"
    mix: float = 0.2

    def __post_init__(self) -> None:
        if isinstance(self.probes, bool) or not isinstance(self.probes, int) or self.probes < 1:
            raise ValueError(f"probes={self.probes!r} out of range: must be an integer >= 1")
        if self.proposal not in PROPOSALS:
            raise ValueError(f"unknown proposal {self.proposal!r}: valid proposals are {', '.join(PROPOSALS)}")
        if not 0.0 < self.mix <= 1.0:
            raise ValueError(f"mix={self.mix} out of range: valid range is (0, 1]")

    @property
    def needs_tail(self) -> bool:
        """Whether :meth:`basis` wants the tail Jacobian (the caller computes it only then)."""
        return self.proposal == "tail" and self.mix < 1.0

    def inclusion(self, n: int, k: int, tail: Tensor | None = None) -> Tensor:
        """Inclusion probabilities ``pi`` ``(N, K)`` (float64), each in ``(0, 1]``, rows summing to ``min(P, K)``.

        ``tail``: ``dO_k/dz`` of the last layer, ``(K, N, ...)`` (ignored by the uniform proposal).
        """
        p = min(self.probes, k)
        dev = tail.device if tail is not None else None
        if not self.needs_tail or tail is None or p == k:
            return torch.full((n, k), p / k, dtype=torch.float64, device=dev)
        g = tail.detach().abs().flatten(2).sum(2).t().to(torch.float64)  # (N, K)
        total = g.sum(1, keepdim=True)
        q = torch.where(total > 0, g / total.clamp_min(torch.finfo(torch.float64).tiny), 1.0 / k)
        q = (1.0 - self.mix) * q + self.mix / k
        pi = p * q
        # Cap at 1 and hand the excess to the others (a capped output stays capped: the scale only grows);
        # q >= mix / K > 0 keeps the uncapped mass positive, and at most p - 1 outputs can cap.
        for _ in range(p):
            capped = pi >= 1.0
            rest = torch.where(capped, 0.0, q).sum(1, keepdim=True)
            pi = torch.where(capped, 1.0, (p - capped.sum(1, keepdim=True)) * q / rest)
        return pi.clamp(max=1.0)

    def draw(self, pi: Tensor) -> Tensor:
        """Indices ``(N, R)`` of the drawn outputs, ``R = round(sum_k pi)``: systematic sampling in random order.

        Output ``k`` of sample ``n`` is drawn with probability exactly ``pi[n, k]``, never twice.
        """
        n, k = pi.shape
        r = round(float(pi[0].sum()))
        keys = self._rand(n, k, device=pi.device)
        order = keys.argsort(1)  # a uniformly random order per sample
        cum = pi.gather(1, order).cumsum(1)
        start = self._rand(n, 1, device=pi.device)
        points = start + torch.arange(r, dtype=pi.dtype, device=pi.device)
        pos = torch.searchsorted(cum, points, right=True).clamp(max=k - 1)
        return order.gather(1, pos)

    def basis(self, out2d: Tensor, tail: Tensor | None = None) -> Tensor:
        """The probes ``(R, N, K)``: probe ``j`` of sample ``n`` is ``e_k / pi_nk`` for its drawn ``k``.

        ``out2d``: the model outputs ``(N, K)`` (shape, dtype and device only); ``tail``: see
        :meth:`inclusion`. ``R = min(P, K)``.
        """
        n, k = out2d.shape
        if self.probes >= k:  # every output drawn with pi = 1: the exact basis
            return torch.eye(k, dtype=out2d.dtype, device=out2d.device).unsqueeze(1).expand(k, n, k)
        pi = self.inclusion(n, k, tail).to(out2d.device)
        idx = self.draw(pi)  # (N, R)
        weight = 1.0 / pi.gather(1, idx)
        v = torch.zeros(n, idx.shape[1], k, dtype=torch.float64, device=out2d.device)
        v.scatter_(2, idx.unsqueeze(2), weight.unsqueeze(2))
        return v.transpose(0, 1).to(out2d.dtype)

    def _rand(self, *shape: int, device: torch.device | None) -> Tensor:
        g = self.generator
        if g is None:
            return torch.rand(*shape, dtype=torch.float64, device=device)
        # Draw on the generator's device, then move: the same seed gives the same draw wherever S runs.
        return torch.rand(*shape, dtype=torch.float64, generator=g, device=g.device).to(device)


def make_sampler(
    estimator: str | OutputSampler, probes: int = 1, generator: torch.Generator | int | None = None
) -> OutputSampler | None:
    """``None`` for ``"exact"``, else the :class:`OutputSampler` of ``"estimate"`` (or ``estimator`` itself).

    ``generator`` may be a seed (a fresh ``torch.Generator`` seeded with it).

    >>> make_sampler("exact") is None, make_sampler("estimate", probes=2, generator=0).probes
    (True, 2)
    """
    if isinstance(estimator, OutputSampler):
        return estimator
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}: valid estimators are {', '.join(ESTIMATORS)}")
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 1:
        raise ValueError(f"probes={probes!r} out of range: must be an integer >= 1")
    if estimator == "exact":
        return None
    if isinstance(generator, bool):
        raise ValueError(f"generator={generator!r}: expected a torch.Generator, an integer seed or None")
    if isinstance(generator, int):
        generator = torch.Generator().manual_seed(generator)
    return OutputSampler(probes, generator)
