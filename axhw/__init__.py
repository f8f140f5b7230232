"""axhw: train neural networks for approximate hardware and verify them bit for bit in simulated silicon.

Implements AxTrain (He et al., ISLPED 2018) on bit-exact models of the DRUM-k approximate multiplier,
dynamic fixed point and near-threshold-voltage SRAM weight storage.

The names below load on first use (PEP 562): ``import axhw`` alone does not import torch, so the command
line parses its arguments (and answers ``--help`` or a typo) in a fraction of a second instead of after
torch's 1-2 s import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from axhw import _compat
from axhw.common.lazy import lazy_exports

if TYPE_CHECKING:  # the real bindings, for type checkers and IDEs
    from axhw.arith.fixedpoint import FixedPoint, calibrate
    from axhw.arith.multipliers import DRUM, Exact, LUTMultiplier, Multiplier, error_stats
    from axhw.arith.registry import get_multiplier
    from axhw.arith.sram import NTVStorage, flip_probability
    from axhw.nn.convert import ConversionReport, convert

_compat.install()

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_LAZY: dict[str, str] = {
    "FixedPoint": "axhw.arith.fixedpoint",
    "calibrate": "axhw.arith.fixedpoint",
    "DRUM": "axhw.arith.multipliers",
    "Exact": "axhw.arith.multipliers",
    "LUTMultiplier": "axhw.arith.multipliers",
    "Multiplier": "axhw.arith.multipliers",
    "error_stats": "axhw.arith.multipliers",
    "get_multiplier": "axhw.arith.registry",
    "NTVStorage": "axhw.arith.sram",
    "flip_probability": "axhw.arith.sram",
    "ConversionReport": "axhw.nn.convert",
    "convert": "axhw.nn.convert",
}

__all__ = [
    "DRUM",
    "ConversionReport",
    "Exact",
    "FixedPoint",
    "LUTMultiplier",
    "Multiplier",
    "NTVStorage",
    "__version__",
    "calibrate",
    "convert",
    "error_stats",
    "flip_probability",
    "get_multiplier",
]


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
