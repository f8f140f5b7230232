"""The gradient tricks of hardware-mode training, each a named autograd Function: :class:`ClippedSTE` (the
paper's eq. 12) for layers, :class:`StraightThrough` for the weight-free graph operations."""

from __future__ import annotations

import torch

__all__ = ["ClippedSTE", "StraightThrough"]

class ClippedSTE(torch.autograd.Function):
    """Straight-through estimator with gradient clipping, the paper's eq. 12:
    ``grad_in = grad_out * 1{|grad_out| < 1}``.

    Why: the approximate multiplier and bit flips have no useful derivative; the forward value comes from
    the hardware model while the gradient passes straight to the ideal computation, and large
    noise-induced gradients are cut so they cannot derail convergence.
    """

    @staticmethod
    def forward(ctx, reference: torch.Tensor, hardware: torch.Tensor,
                live: torch.Tensor | None = None) -> torch.Tensor:
        ctx.has_live = live is not None
        if live is not None:
            ctx.save_for_backward(live)
        return hardware.detach().clone()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        grad = grad_out * (grad_out.abs() < 1).to(grad_out.dtype)
        if ctx.has_live:  # optional: no gradient where the hardware clamped (saturation-aware STE)
            (live,) = ctx.saved_tensors
            grad = grad * live.to(grad.dtype)
        return grad, None, None


class StraightThrough(torch.autograd.Function):
    """Forward the hardware value, backward the gradient of the float operation unchanged (the weight-free
    graph operations of :mod:`axhw.nn.fx.ops`, which only round and saturate)."""

    @staticmethod
    def forward(ctx, reference: torch.Tensor, hardware: torch.Tensor) -> torch.Tensor:
        return hardware.detach().clone()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad_out, None
