"""The hardware's arithmetic, as integer reference models: dynamic fixed point
(:mod:`~axhw.arith.fixedpoint`), exact integer GEMM on float hardware (:mod:`~axhw.arith.intgemm`),
multipliers (:mod:`~axhw.arith.multipliers`: exact, DRUM-k, product tables), circuits imported from Verilog
(:mod:`~axhw.arith.library`), the record of RTL checks (:mod:`~axhw.arith.verification`), NTV SRAM bit
flips (:mod:`~axhw.arith.sram`) and the compiled kernels behind the fast paths (:mod:`~axhw.arith.kernels`).

Everything above (the golden network, ``nn``, training, RTL, power) takes its numbers from here. This layer
imports only :mod:`axhw.common` and torch.
"""
