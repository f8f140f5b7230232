"""Power evaluation flow (paper section 4, Fig. 9): Yosys synthesis to osu018 cells, gate-level simulation
on real operand streams, OpenSTA power, an NTV SRAM energy model, and the minimum-power search.

Steps, in data-flow order: :mod:`~axhw.power.flow.synth` -> :mod:`~axhw.power.multiplier.operands` ->
:mod:`~axhw.power.flow.activity` -> :mod:`~axhw.power.flow.sta` -> :mod:`~axhw.power.multiplier.compute`;
:mod:`~axhw.power.sram_energy`; :mod:`~axhw.power.search.study` -> :mod:`~axhw.power.search.report`.
"""
