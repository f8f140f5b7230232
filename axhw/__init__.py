"""axhw: train neural networks for approximate hardware and verify them bit for bit in simulated silicon.

Implements AxTrain (He et al., ISLPED 2018) on bit-exact models of the DRUM-k approximate multiplier,
dynamic fixed point and near-threshold-voltage SRAM weight storage.
"""

from axhw import _compat
from axhw.arith.fixedpoint import FixedPoint, calibrate
from axhw.arith.multipliers import DRUM, Exact, LUTMultiplier, Multiplier, error_stats
from axhw.arith.registry import get_multiplier
from axhw.arith.sram import NTVStorage, flip_probability
from axhw.nn.convert import ConversionReport, convert

_compat.install()

__version__ = "0.1.0"

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
