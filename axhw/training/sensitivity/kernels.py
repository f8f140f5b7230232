"""Autograd Functions for the largest tensors of the network sensitivity S(w) (eq. 5): per-sample gradients.

Why a module of its own: :mod:`axhw.training.sensitivity.network` defines S and its paths; these are performance kernels
with hand-written backward passes, each exactly the derivative of the autograd expression it replaces
(tests compare values and eq. 6 gradients with brute force), kept apart so the definitions stay readable.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CHUNK_BYTES", "AbsWeightedSum", "ConvWeightTerm", "patches"]


class AbsWeightedSum(torch.autograd.Function):
    """``t[n] = sum_{r,m} |g[n, r, m]| * pabs[m]``: eq. 5's ``|.|``-then-``|w|``-weighted sum for one parameter.

    Why a Function: ``g`` are per-sample gradients, the largest tensors of S. Autograd's ``abs``, ``mul``,
    ``sum`` chain makes about twice as many passes over them, forward and backward, as this forward
    (``|g|``, then a GEMV) and backward (``sgn(g) * pabs * grad`` in place; ``|g|^T grad`` for ``pabs``).
    ``sgn(0) = 0`` as in autograd's ``abs``, so gradients are identical.
    """

    @staticmethod
    def forward(ctx: Any, g: Tensor, pabs: Tensor) -> Tensor:
        a = g.abs()
        ctx.save_for_backward(g, a)
        ctx.pabs = pabs.detach()
        return (a @ pabs).sum(1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        g, a = ctx.saved_tensors
        gg = gp = None
        if ctx.needs_input_grad[0]:
            gg = torch.sgn(g).mul_(ctx.pabs).mul_(grad.view(-1, 1, 1))
        if ctx.needs_input_grad[1]:
            gp = (grad @ a.flatten(1)).view(a.shape[1:]).sum(0)
        return gg, gp


#: Largest per-chunk temporary of :class:`ConvWeightTerm` (patches, per-sample gradients): well under glibc's
#: mmap threshold (dynamic up to 32 MiB, :func:`axhw.common.runtime.tune_allocator`), so chunks are reused from the
#: heap instead of being mapped and page-faulted afresh on every step.
CHUNK_BYTES = 4 << 20


def patches(a: Tensor, geom: tuple[tuple[int, int], ...]) -> Tensor:
    """im2col ``(N, C*kh*kw, L)`` of ``a`` (zero padding), as ``F.unfold``: one copy of a strided view.

    Why not ``F.unfold``: its CPU kernel loops element by element; it measured slower than this
    vectorised copy on every layer of the CIFAR-shaped CNN of ``bench/bench_act.py``.

    >>> a = torch.randn(2, 3, 5, 5)
    >>> torch.equal(patches(a, ((3, 3), (1, 1), (1, 1), (1, 1))), F.unfold(a, 3, padding=1))
    True
    """
    kernel, dilation, padding, stride = geom
    ap = F.pad(a, (padding[1], padding[1], padding[0], padding[0])) if any(padding) else a
    n, c, hp, wp = ap.shape
    oh = (hp - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    ow = (wp - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    s0, s1, s2, s3 = ap.stride()
    view = ap.as_strided((n, c, kernel[0], kernel[1], oh, ow),
                         (s0, s1, s2 * dilation[0], s3 * dilation[1], s2 * stride[0], s3 * stride[1]),
                         ap.storage_offset())
    return view.reshape(n, c * kernel[0] * kernel[1], oh * ow)


class ConvWeightTerm(torch.autograd.Function):
    """``t[n] = sum_{r,o,q} |W[o,q]| |g[n,r,o,q]|``, the eq. 5 term of a ``groups=1`` Conv2d weight, where
    ``g[n, r, o, q] = sum_l d[n, r*O + o, l] cols[n, q, l]`` is the per-sample gradient for probe ``r``
    (``q`` = (c, i, j), ``cols`` the im2col patches of the layer input ``a``).

    Why a Function: the patches and per-sample gradients are the largest tensors of S (tens of MB for a
    CIFAR-sized layer and batch). It works on chunks of samples of at most :data:`CHUNK_BYTES`, so no
    temporary is large enough for glibc to ``mmap`` it afresh (and page-fault it) on every step, the full
    patches are never materialised (rebuilt per chunk in the backward), and the backward is written out:
    ``G = sgn(g) |W| grad`` in place, ``grad_d = G cols``, ``grad_cols = G^T d`` folded back onto ``a``
    (``F.fold``, the adjoint of im2col), ``grad_|W| = sum_n grad_n |g_n|``. ``sgn(0) = 0`` as in autograd's
    ``abs``, so values and gradients equal the autograd expression of :func:`axhw.training.sensitivity.network._conv_grads`.
    """

    @staticmethod
    def forward(ctx: Any, a: Tensor, d: Tensor, wabs: Tensor, probes: int,
                geom: tuple[tuple[int, int], ...]) -> Tensor:
        n = a.shape[0]
        q = wabs.shape[1]
        row = max(d[0].numel(), q * d.shape[2], d.shape[1] * q) * a.element_size()
        step = max(1, CHUNK_BYTES // row)
        t = a.new_empty(n)
        gs = []
        for s in range(0, n, step):
            g = torch.bmm(d[s : s + step], patches(a[s : s + step], geom).transpose(1, 2))  # (c, R*O, Q)
            t[s : s + step] = (g.abs().view(g.shape[0], probes, -1) @ wabs.reshape(-1)).sum(1)
            gs.append(g)
        ctx.save_for_backward(a, d, wabs, *gs)
        ctx.meta = (probes, geom, step)
        return t

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None, None]:
        a, d, wabs, *gs = ctx.saved_tensors
        probes, geom, step = ctx.meta
        need_a, need_d, need_w = ctx.needs_input_grad[:3]
        grad_a = torch.empty_like(a) if need_a else None
        grad_d = torch.empty_like(d) if need_d else None
        grad_w = torch.zeros_like(wabs).reshape(-1) if need_w else None
        w = wabs.reshape(1, 1, -1)
        kernel, dilation, padding, stride = geom
        for i, s in enumerate(range(0, a.shape[0], step)):
            g, gr = gs[i], grad[s : s + step]
            c = g.shape[0]
            if need_w:
                grad_w += (gr @ g.abs().view(c, -1)).view(probes, -1).sum(0)
            if not (need_a or need_d):
                continue
            big = torch.sgn(g).view(c, probes, -1).mul_(w).mul_(gr.view(-1, 1, 1)).view_as(g)  # (c, R*O, Q)
            if need_d:
                assert grad_d is not None
                torch.bmm(big, patches(a[s : s + step], geom), out=grad_d[s : s + step])
            if need_a:
                assert grad_a is not None
                gcols = torch.bmm(big.transpose(1, 2), d[s : s + step])  # (c, Q, L)
                grad_a[s : s + step] = F.fold(gcols, a.shape[-2:], kernel, dilation=dilation, padding=padding,
                                              stride=stride)
        return grad_a, grad_d, (grad_w.view_as(wabs) if grad_w is not None else None), None, None
