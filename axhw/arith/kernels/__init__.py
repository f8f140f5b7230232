"""Compiled C kernels of the fast paths, each tested equal to its torch reference: the product-table matmul
(:mod:`~axhw.arith.kernels.lut`) and the elementwise passes of the fused hardware forward
(:mod:`~axhw.arith.kernels.fused`), built by the system C compiler into the user cache
(:mod:`~axhw.arith.kernels.build`). ``python -m axhw.arith.kernels`` builds both.
"""
