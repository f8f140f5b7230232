"""Accelerator-level energy: the whole PE array mapped to cells (:mod:`~axhw.power.accel.synth`), a trained
network's inference simulated on it at gate level (:mod:`~axhw.power.accel.sim`), energy per inference by unit
(:mod:`~axhw.power.accel.energy`) and its tables (:mod:`~axhw.power.accel.report`); the engines (Icarus and
Verilator at gate level, :mod:`~axhw.power.accel.vbuild`; the calibrated action-count model,
:mod:`~axhw.power.accel.actions`, :mod:`~axhw.power.accel.model`) behind :mod:`~axhw.power.accel.engines`.
"""

from typing import Any


def __getattr__(name: str) -> Any:  # the names of the module this package replaced (axhw.power.accel)
    from axhw._compat import moved_attribute

    return moved_attribute(__name__, name, "axhw.power.accel.energy")
