"""The names the training options take, in a module without torch.

Why: the command line builds its parser (``choices=``) from these tuples; importing them from the trainer
would import torch (1-2 s) before a typo in an argument could be reported.
"""

from __future__ import annotations

__all__ = ["ESTIMATORS", "METHODS"]

#: Training methods (paper section 3): plain backpropagation, AxTrain-act, AxTrain-pas and both in turn.
METHODS: tuple[str, ...] = ("bp", "act", "pas", "axtrain")
#: How S(w) is computed: exactly (all K outputs) or by the unbiased estimate
#: (:mod:`axhw.training.sensitivity.estimate`).
ESTIMATORS: tuple[str, ...] = ("exact", "estimate")
