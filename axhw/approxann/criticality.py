"""Neuron criticality and multiplier counting for ApproxAnn (Zhang et al., DATE 2015).

ApproxAnn ranks neurons by how much an error *in that neuron* moves the network's output error, measured by
backpropagating the output error (the same machinery as training), and approximates the least critical
ones first. An approximate multiplier perturbs a neuron's accumulator ``z_j = sum_i w_ji a_i + b_j`` (the
pre-activation: the error enters before ReLU and re-quantization), so by a first-order Taylor expansion of
the per-sample output error ``E_n``

    ``Delta E_n ~= sum_j (dE_n / dz_nj) * e_nj``,        ``e_nj = z_nj(approx) - z_nj(exact)``.

Two measures follow (:data:`MEASURES`):

* ``gradient`` (default, ApproxAnn's error sensitivity): ``c_j = (1/N) sum_n |dE_n / dz_nj|``. It depends on
  the network only, not on the multiplier, which is what makes one ranking valid for K1 and K2 alike. The
  absolute value keeps errors of opposite sign on different samples from cancelling; ReLU makes
  ``dE/dz = 0`` for samples where the neuron is off, so a rarely active neuron is rightly cheap to perturb.
* ``taylor``: ``c_j = (1/N) sum_n |dE_n / dz_nj * e_nj|``, the same expansion weighted by the error the
  chosen approximate multiplier actually injects into that neuron on that sample (integer model, inputs
  quantized as the hardware sees them). It accounts for fan-in and operand statistics.

Conv layers: a "neuron" is an output channel (one mode bit per channel); its criticality sums the
per-position terms. ``E`` is :func:`axhw.training.trainer.output_loss` (the training loss, MSE on the sigmoid
outputs by default), summed over samples so ``dE/dz_nj`` is the per-sample derivative.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

import torch
from torch import nn

from axhw.approxann.options import MEASURES  # defined without torch, for the command line
from axhw.arith.multipliers import Multiplier
from axhw.arith.registry import get_multiplier
from axhw.golden.network import IntLinear, QuantizedNetwork
from axhw.nn import approx_layers
from axhw.training.trainer import output_loss

__all__ = ["MEASURES", "Measure", "count_multipliers", "neuron_criticality"]

Measure = Literal["gradient", "taylor"]


def _injected_error(layer: Any, x: torch.Tensor, approx: Multiplier) -> torch.Tensor:
    """``e_nj`` in real units: accumulator of ``approx`` minus the exact one, same quantized inputs."""
    ilayer: IntLinear = layer.int_layer()
    a = ilayer.act_fmt.quantize(x.detach())
    zero = torch.zeros_like(ilayer.bias)
    exact = get_multiplier("exact", approx.bits)
    diff = ilayer.accumulate(a, approx, ilayer.weight, zero) - ilayer.accumulate(a, exact, ilayer.weight, zero)
    return ilayer.acc_fmt.dequantize(diff, torch.float64)


def neuron_criticality(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    measure: Measure = "gradient",
    approx: str | Multiplier | None = None,
    loss: str = "mse",
    batch_size: int = 1024,
) -> list[torch.Tensor]:
    """Criticality of every neuron of every approximate layer (see the module docstring for the formula).

    The model is evaluated as the ideal (float) network with its current weights, whatever its hardware
    configuration: the criticality is a property of the trained function (ApproxAnn ranks on the
    pre-trained network and re-ranks after each retraining round).

    Args:
        model: a model of :class:`axhw.nn.ApproxLinear` / ``ApproxConv2d`` layers (calibrated for ``taylor``).
        x, y: samples and class labels the expectation runs over (training data).
        measure: ``gradient`` or ``taylor``.
        approx: the approximate multiplier (name or model); required for ``taylor``.
        loss: output error kind of :func:`axhw.training.trainer.output_loss`.
        batch_size: samples per backward pass (memory only; the result does not depend on it).

    Returns:
        One float64 tensor per approximate layer, shape ``(out_neurons,)``.

    >>> import torch
    >>> from axhw.training.models import build_mlp
    >>> m = build_mlp((3, 4, 2))
    >>> [c.shape for c in neuron_criticality(m, torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1]))]
    [torch.Size([4]), torch.Size([2])]
    """
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}: valid measures are {', '.join(MEASURES)}")
    if measure == "taylor" and approx is None:
        raise ValueError("the taylor measure needs the approximate multiplier (approx=...)")
    layers = approx_layers(model)
    if not layers:
        raise ValueError("model has no ApproxLinear/ApproxConv2d layers")
    mul = get_multiplier(approx, layers[0].hw.bits) if isinstance(approx, str) else approx
    saved = [(layer, layer.hw) for layer in layers]
    was_training = model.training
    totals = [torch.zeros(layer.weight.shape[0], dtype=torch.float64) for layer in layers]
    captured: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        out.retain_grad()
        captured[id(m)] = (inp[0].detach(), out)

    handles = [layer.register_forward_hook(hook) for layer in layers]
    try:
        for layer in layers:
            layer.set_hardware(replace(layer.hw, mode="float"))
        model.eval()
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            captured.clear()
            with torch.enable_grad():
                out = model(xb)
                # output_loss averages over the batch; times N it is sum_n E_n, so z.grad[n] = dE_n/dz_n.
                (output_loss(out, yb, loss) * len(xb)).backward()
            for k, layer in enumerate(layers):
                inp, z = captured[id(layer)]
                assert z.grad is not None
                g = z.grad.to(torch.float64)
                term = g.abs() if mul is None or measure == "gradient" else (g * _injected_error(layer, inp, mul)).abs()
                totals[k] += term.reshape(term.shape[0], term.shape[1], -1).sum(dim=(0, 2))
        model.zero_grad(set_to_none=True)
    finally:
        for h in handles:
            h.remove()
        for layer, hw in saved:
            layer.set_hardware(hw)
        model.train(was_training)
    return [t / len(x) for t in totals]


def count_multipliers(qnet: QuantizedNetwork | Sequence[IntLinear]) -> dict[str, Any]:
    """Approximate-multiplier count as the paper's Fig. 8 counts it: one multiplier per synapse, so a
    neuron in the approximate mode contributes its fan-in (its number of weights).

    >>> import torch
    >>> from axhw.arith.fixedpoint import FixedPoint
    >>> f = FixedPoint(8, 4)
    >>> layer = IntLinear(torch.zeros(3, 5, dtype=torch.int64), torch.zeros(3, dtype=torch.int64), f, f,
    ...                   FixedPoint(32, 8), None, approx_neurons=torch.tensor([True, False, True]))
    >>> count_multipliers([layer])["approx_multipliers"]
    10
    """
    layers = qnet.layers if isinstance(qnet, QuantizedNetwork) else list(qnet)
    per_layer = []
    for layer in layers:
        n = int(layer.weight.shape[0])
        k = int(layer.approx_neurons.sum()) if layer.approx_neurons is not None else 0
        per_layer.append({"neurons": n, "approx_neurons": k, "fan_in": layer.fan_in,
                          "multipliers": n * layer.fan_in, "approx_multipliers": k * layer.fan_in})
    total = sum(p["multipliers"] for p in per_layer)
    approx = sum(p["approx_multipliers"] for p in per_layer)
    return {"approx_multipliers": approx, "total_multipliers": total, "fraction": approx / total if total else 0.0,
            "approx_neurons": sum(p["approx_neurons"] for p in per_layer),
            "total_neurons": sum(p["neurons"] for p in per_layer), "per_layer": per_layer}
