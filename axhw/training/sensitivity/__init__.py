"""AxTrain-act's network sensitivity S(w) (paper section 3.1, eqs. 4-7): the exact value and its adaptive
preference factor (:mod:`~axhw.training.sensitivity.network`), the unbiased stochastic estimate
(:mod:`~axhw.training.sensitivity.estimate`) and the autograd Functions for its largest tensors
(:mod:`~axhw.training.sensitivity.kernels`). Derivations and measured costs: ``docs/sensitivity.md``.
"""
