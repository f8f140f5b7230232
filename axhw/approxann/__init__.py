"""ApproxAnn (Zhang et al., "ApproxANN: an approximate computing framework for artificial neural network",
DATE 2015) on axhw's hardware model, and the paper's Fig. 8 (ApproxAnn on BP- vs AxTrain-act-pretrained nets).

* :mod:`~axhw.approxann.criticality`: neuron criticality (backpropagated error sensitivity) and the
  approximate-multiplier count (one multiplier per synapse);
* :mod:`~axhw.approxann.search`: the iterative switch-and-retrain search under an accuracy bound;
* :mod:`~axhw.approxann.fig8`: the Fig. 8 experiment (JSON + PNG);
* :mod:`~axhw.approxann.cli`: argparse registration of ``approxann`` and ``fig8``.
"""

from axhw.approxann.criticality import MEASURES, count_multipliers, neuron_criticality
from axhw.approxann.search import (
    ApproxAnnConfig,
    ApproxAnnResult,
    RoundRecord,
    approxann,
    hardware_accuracy,
    run_approxann,
)

__all__ = [
    "MEASURES",
    "ApproxAnnConfig",
    "ApproxAnnResult",
    "RoundRecord",
    "approxann",
    "count_multipliers",
    "hardware_accuracy",
    "neuron_criticality",
    "run_approxann",
]
