"""Hardware-oriented training (paper section 3): the trainer for BP, AxTrain-act, AxTrain-pas and AxTrain
(:mod:`~axhw.training.trainer`), the network sensitivity of AxTrain-act and its estimator
(:mod:`~axhw.training.sensitivity`), evaluation on the integer hardware model
(:mod:`~axhw.training.evaluate`), the paper's networks (:mod:`~axhw.training.models`), user model and data
factories (:mod:`~axhw.training.factories`) and cached, resumable sweeps (:mod:`~axhw.training.sweep`).
"""
