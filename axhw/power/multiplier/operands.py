"""Capture the operand stream a trained network's multipliers actually see (power flow, step 2).

The integer golden model (:meth:`QuantizedNetwork.forward_int`) runs the test set; each layer's input codes
and weight codes are then replayed in **execution order**: one PE computes one output neuron's dot product
``sum_j mul(a[n, j], w[i, j])`` with ``j`` ascending (weight-stationary per neuron, FlexFlow-style). Order
matters: switching activity depends on consecutive operands, so independent random pairs would overstate
it. A seeded sample of whole dot products, layers drawn in proportion to their multiply count, keeps the
stream's statistics those of the full workload while bounding simulation time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from axhw.arith.multipliers import Multiplier
from axhw.golden.network import IntConv2d, IntLinear, QuantizedNetwork

__all__ = ["OperandStream", "capture_operands", "uniform_operands"]


@dataclass(frozen=True)
class OperandStream:
    """Multiplier operands in issue order: ``a`` activation codes, ``b`` weight codes (int64, same length)."""

    a: torch.Tensor
    b: torch.Tensor
    source: str

    def __len__(self) -> int:
        return int(self.a.numel())


def _layer_inputs(qnet: QuantizedNetwork, x_int: torch.Tensor, mul: Multiplier) -> list[torch.Tensor]:
    """The input codes of every parameter layer (what its multipliers' ``a`` port sees)."""
    outs = qnet.forward_int(x_int, mul, return_all=True)
    assert isinstance(outs, list)
    return qnet.layer_inputs(outs, x_int)


def _dot_products(layer: IntLinear, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(activations ``(N*, fan_in)``, weights ``(out, fan_in)``) of every dot product of ``layer``."""
    if isinstance(layer, IntConv2d):
        k = layer.weight.shape[-1]
        plain = (layer.groups == 1 and layer.dilation in (1, (1, 1)) and layer.padding_mode == "zeros"
                 and layer.weight.shape[-2] == k and isinstance(layer.padding, int | tuple) and
                 (isinstance(layer.padding, int) or len(layer.padding) == 2))
        if not plain:
            raise ValueError("operand streams are sampled for plain convolutions only (square kernel, groups=1, "
                             "no dilation, symmetric zero padding); this layer has groups/dilation/padding "
                             f"{layer.groups}/{layer.dilation}/{layer.padding!r} ({layer.padding_mode})")
        cols = F.unfold(h.to(torch.float64), k, padding=layer.padding, stride=layer.stride)  # exact: small ints
        acts = cols.transpose(1, 2).reshape(-1, cols.shape[1]).to(torch.int64)
        return acts, layer.weight.reshape(layer.weight.shape[0], -1)
    return h.reshape(h.shape[0], -1), layer.weight


def capture_operands(qnet: QuantizedNetwork, x_int: torch.Tensor, multiplier: Multiplier, n_pairs: int = 4096,
                     seed: int = 0, source: str = "network") -> OperandStream:
    """Sample ``n_pairs`` operand pairs, whole dot products in execution order (see module docstring).

    Args:
        qnet: the trained integer network.
        x_int: input codes of the test set.
        multiplier: the multiplier inference runs with (activations of later layers depend on it).
        n_pairs: stream length (the last dot product is truncated).
        seed: seeds the choice of (layer, sample, neuron).
    """
    gen = torch.Generator().manual_seed(seed)
    layers = qnet.layers
    inputs = _layer_inputs(qnet, x_int, multiplier)
    dots = [_dot_products(layer, h) for layer, h in zip(layers, inputs, strict=True)]
    macs = torch.tensor([float(acts.shape[0] * w.shape[0] * w.shape[1]) for acts, w in dots])
    a_parts, b_parts, total = [], [], 0
    while total < n_pairs:
        li = int(torch.multinomial(macs / macs.sum(), 1, generator=gen))
        acts, w = dots[li]
        n = int(torch.randint(acts.shape[0], (1,), generator=gen))
        i = int(torch.randint(w.shape[0], (1,), generator=gen))
        a_parts.append(acts[n])
        b_parts.append(w[i])
        total += w.shape[1]
    a, b = torch.cat(a_parts)[:n_pairs], torch.cat(b_parts)[:n_pairs]
    return OperandStream(a.to(torch.int64), b.to(torch.int64), source)


def uniform_operands(bits: int, n_pairs: int, seed: int = 0, signed: bool = True) -> OperandStream:
    """Independent uniform operands: the data-free reference stream (e.g. for 16-bit, where no net is trained)."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    a = torch.randint(lo, hi, (n_pairs,), generator=gen)
    b = torch.randint(lo, hi, (n_pairs,), generator=gen)
    return OperandStream(a, b, f"uniform{bits}")
