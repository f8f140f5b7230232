"""Graphs: any ``torch.fx``-traceable model as hardware. :mod:`~axhw.nn.fx.ops` holds the hardware-aware
modules of weight-free operations (addition, concatenation, pooling, batch-norm folding),
:mod:`~axhw.nn.fx.patterns` the table that says which traced node is which operation,
:mod:`~axhw.nn.fx.trace` traces and rewrites a model, and :mod:`~axhw.nn.fx.lower` calibrates formats and
lowers a traced graph to the golden :class:`~axhw.golden.network.QuantizedNetwork`.
"""
