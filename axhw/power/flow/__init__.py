"""The EDA steps every power measurement shares: locate the tools (:mod:`~axhw.power.flow.tools`), read
the Liberty file (:mod:`~axhw.power.flow.liberty`), render the flow's templates
(:mod:`~axhw.power.flow.templates`), synthesize with Yosys (:mod:`~axhw.power.flow.synth`), simulate a
netlist and read its activity (:mod:`~axhw.power.flow.activity`), and OpenSTA power
(:mod:`~axhw.power.flow.sta`).
"""
