"""The golden integer network (:mod:`~axhw.golden.network`): integer layers and
:class:`~axhw.golden.network.QuantizedNetwork`, the model the RTL and the gate-level netlists are checked
against bit for bit. It is built from :mod:`axhw.arith` only; :mod:`axhw.nn` exports trained networks to it.
"""
