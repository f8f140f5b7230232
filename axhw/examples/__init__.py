"""Example models written as a user would write them (plain ``torch.nn``), for the worked examples in
``docs/`` and for ``axhw train --model``: :mod:`axhw.examples.residual`."""
