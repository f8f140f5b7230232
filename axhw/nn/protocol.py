"""What code below the layers may read of a hardware layer: :class:`HardwareLayerLike`.

Why a protocol: the fused forward (:mod:`axhw.nn.fused`) sits *below* the layers that call it, so it cannot
import their classes. It reads a layer through these public attributes only, which
:class:`axhw.nn.layers.HardwareLayer` provides (and a type checker verifies).
"""

from __future__ import annotations

from typing import Protocol

import torch

from axhw.arith.fixedpoint import FixedPoint
from axhw.arith.multipliers import Multiplier
from axhw.nn.config import HardwareConfig

__all__ = ["HardwareLayerLike"]


class HardwareLayerLike(Protocol):
    """A linear or convolution layer with a hardware model.

    Attributes:
        hw: its configuration.
        mul, approx_mul: the multipliers ``hw`` names, resolved once (``approx_mul``: ApproxAnn's per-neuron
            mode, None when unused).
        act_fmt, out_fmt: formats of its input and of the activations it emits (None: output layer).
        approx_neurons: bool mask of the output neurons that use ``approx_mul``, or None.
        chip: the held (weight, bias) codes of one NTV chip instance for eval-mode forwards, or None.
        generator: source of training-time bit flips.
    """

    hw: HardwareConfig
    mul: Multiplier
    approx_mul: Multiplier | None
    act_fmt: FixedPoint | None
    out_fmt: FixedPoint | None
    approx_neurons: torch.Tensor | None
    chip: tuple[torch.Tensor, torch.Tensor] | None
    generator: torch.Generator | None
    training: bool
    weight: torch.Tensor
    bias: torch.Tensor | None
    # Convolution options are nn.Conv2d's own (typed there): code that needs them narrows a layer with
    # ``isinstance(layer, nn.Conv2d)`` first (a linear layer has none).

    def effective_params(self) -> tuple[torch.Tensor, torch.Tensor | None]: ...
