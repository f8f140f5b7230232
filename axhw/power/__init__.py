"""Power evaluation flow (paper section 4, Fig. 9): Yosys synthesis to osu018 cells, gate-level simulation
on real operand streams, OpenSTA power, an NTV SRAM energy model, and the minimum-power search.

Steps, in data-flow order: :mod:`~axhw.power.synth` -> :mod:`~axhw.power.operands` ->
:mod:`~axhw.power.activity` -> :mod:`~axhw.power.sta` -> :mod:`~axhw.power.compute`;
:mod:`~axhw.power.sram_energy`; :mod:`~axhw.power.study` -> :mod:`~axhw.power.report`.
"""
