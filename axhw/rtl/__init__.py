"""RTL for axhw: Jinja2-generated Verilog multipliers (:mod:`axhw.rtl.generate`), simulator discovery
(:mod:`axhw.rtl.simulators`) and cocotb verification against :mod:`axhw.multipliers` (:mod:`axhw.rtl.verify`).

The functions ``generate``/``write`` are deliberately not re-exported here: ``axhw.rtl.generate`` must stay
the module (``import axhw.rtl.generate as gen`` would otherwise yield the function).
"""

from axhw.rtl.generate import DESIGNS, GeneratedRTLError, MultiplierConfig, register_design

__all__ = ["DESIGNS", "GeneratedRTLError", "MultiplierConfig", "register_design"]
