"""Multiplier-level power: the operand stream a trained network's multipliers see
(:mod:`~axhw.power.multiplier.operands`) and each mode's power on it (:mod:`~axhw.power.multiplier.compute`).
"""
