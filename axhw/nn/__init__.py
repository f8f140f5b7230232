"""Hardware-aware ``nn``: what a layer's hardware is (:mod:`~axhw.nn.config`), the gradient tricks
(:mod:`~axhw.nn.ste`), the fused hardware forward (:mod:`~axhw.nn.fused`), the layers
(:mod:`~axhw.nn.layers`), graphs of any traceable model (:mod:`~axhw.nn.fx`), whole-model operations
(:mod:`~axhw.nn.model`) and :func:`~axhw.nn.convert.convert`. The names below are the layer's public API.
"""

from axhw.nn.config import HardwareConfig
from axhw.nn.layers import (
    ApproxConv2d,
    ApproxLinear,
    HardwareAware,
    HardwareLayer,
    approx_layers,
    require_cpu,
)
from axhw.nn.model import calibrate_model, require_layers, sample_chip, set_hardware, to_quantized
from axhw.nn.protocol import HardwareLayerLike
from axhw.nn.ste import ClippedSTE, StraightThrough

__all__ = [
    "ApproxConv2d",
    "ApproxLinear",
    "ClippedSTE",
    "HardwareAware",
    "HardwareConfig",
    "HardwareLayer",
    "HardwareLayerLike",
    "StraightThrough",
    "approx_layers",
    "calibrate_model",
    "require_cpu",
    "require_layers",
    "sample_chip",
    "set_hardware",
    "to_quantized",
]
