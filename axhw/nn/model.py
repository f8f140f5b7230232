"""Whole-model operations on hardware-aware models: give every module a configuration
(:func:`set_hardware`), choose every format (:func:`calibrate_model`), draw a chip (:func:`sample_chip`) and
export to the golden integer network (:func:`to_quantized`). They sit above the layers and the graph
passes of :mod:`axhw.nn.fx`, which they call."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from axhw.golden.network import QuantizedNetwork
from axhw.nn.config import HardwareConfig
from axhw.nn.fx.lower import calibrate, lower
from axhw.nn.layers import HardwareAware, HardwareLayer, approx_layers

__all__ = ["calibrate_model", "require_layers", "sample_chip", "set_hardware", "to_quantized"]

_NO_LAYERS = ("model has no ApproxLinear/ApproxConv2d layers (a plain torch model?): "
              "convert it first with axhw.convert(model, hw)")


def require_layers(model: nn.Module) -> list[HardwareLayer]:
    layers = approx_layers(model)
    if not layers:
        raise ValueError(_NO_LAYERS)
    return layers


def set_hardware(model: nn.Module, hw: HardwareConfig, **changes: Any) -> None:
    """Give every hardware-aware module (layers, and the graph operations and folded batch norms of
    :mod:`axhw.nn.fx.ops`) the configuration ``hw`` (with ``changes`` applied); a model without hardware
    layers is an error (nothing would change)."""
    cfg = replace(hw, **changes) if changes else hw
    require_layers(model)
    for m in model.modules():
        if isinstance(m, HardwareAware):
            m.set_hardware(cfg)


@torch.no_grad()
def calibrate_model(model: nn.Module, x: torch.Tensor) -> None:
    """Choose the fixed-point format of every value the hardware holds from what the float model computes
    on ``x``, and link producers to consumers (:func:`axhw.nn.fx.lower.calibrate`): each layer's input format,
    its output format (the format its consumers read), and the formats of residual additions,
    concatenations and average pooling. For a chain of layers this is each layer's input format, with each
    layer's output format the next layer's input format."""
    require_layers(model)
    calibrate(model, x)


def sample_chip(model: nn.Module, generator: torch.Generator | None) -> None:
    """Draw one NTV flip pattern (a chip instance) for every layer, held for eval-mode forwards; the
    draw order (layer by layer in :func:`approx_layers` order, weight then bias) matches
    :meth:`QuantizedNetwork.stored_params` of :func:`to_quantized`."""
    for layer in require_layers(model):
        layer.chip = layer.stored_params(generator)


def to_quantized(model: nn.Module, meta: dict[str, object] | None = None) -> QuantizedNetwork:
    """Export a calibrated model to integers (:func:`axhw.nn.fx.lower.lower`): any ``torch.fx``-traceable model of
    hardware layers, ReLU, max and average pooling, flattening, residual addition and concatenation (and a
    final sigmoid/softmax, which is monotone: argmax and the hardware are unaffected). Anything else is an
    error naming the operation."""
    require_layers(model)
    return lower(model, meta)
