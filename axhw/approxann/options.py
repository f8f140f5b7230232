"""The names ApproxAnn's options take, in a module without torch (the command line builds its parser from
them before anything imports torch; see :mod:`axhw.training.options`)."""

from __future__ import annotations

__all__ = ["MEASURES"]

#: Neuron criticality measures (:mod:`axhw.approxann.criticality`): backpropagated error, or its Taylor form.
MEASURES: tuple[str, ...] = ("gradient", "taylor")
