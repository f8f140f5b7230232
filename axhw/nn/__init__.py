"""Hardware-aware ``nn``: layers that run in float, quantized or hardware mode (:mod:`~axhw.nn.layers`),
the fused hardware forward (:mod:`~axhw.nn.fused`), graphs of any traceable model (:mod:`~axhw.nn.fx`) and
:func:`~axhw.nn.convert.convert`. The names below are the public API of the layer.
"""

from axhw.nn.layers import (
    ApproxConv2d,
    ApproxLinear,
    ClippedSTE,
    HardwareAware,
    HardwareConfig,
    StraightThrough,
    approx_layers,
    calibrate_model,
    require_cpu,
    sample_chip,
    set_hardware,
    to_quantized,
)

__all__ = [
    "ApproxConv2d",
    "ApproxLinear",
    "ClippedSTE",
    "HardwareAware",
    "HardwareConfig",
    "StraightThrough",
    "approx_layers",
    "calibrate_model",
    "require_cpu",
    "sample_chip",
    "set_hardware",
    "to_quantized",
]
