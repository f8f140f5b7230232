"""RTL for axhw: Jinja2-generated Verilog multipliers (:mod:`axhw.rtl.generate`), the PE and PE array
(:mod:`axhw.rtl.pe`, :mod:`axhw.rtl.program`), simulator discovery
(:mod:`axhw.rtl.simulators`) and cocotb verification against :mod:`axhw.arith.multipliers` (:mod:`axhw.rtl.verify`).

The functions ``generate``/``write`` are deliberately not re-exported here: ``axhw.rtl.generate`` must stay
the module (``import axhw.rtl.generate as gen`` would otherwise yield the function).
"""

from axhw.rtl.generate import DESIGNS, GeneratedRTLError, MultiplierConfig, register_design
from axhw.rtl.pe import ArrayConfig  # registers the `pe` and `array` designs

__all__ = ["DESIGNS", "ArrayConfig", "GeneratedRTLError", "MultiplierConfig", "register_design"]
