"""ApproxAnn (Zhang et al., "ApproxANN: an approximate computing framework for artificial neural network",
DATE 2015) on axhw's hardware model, and the paper's Fig. 8 (ApproxAnn on BP- vs AxTrain-act-pretrained nets).

* :mod:`~axhw.approxann.criticality`: neuron criticality (backpropagated error sensitivity) and the
  approximate-multiplier count (one multiplier per synapse);
* :mod:`~axhw.approxann.search`: the iterative switch-and-retrain search under an accuracy bound;
* :mod:`~axhw.approxann.fig8`: the Fig. 8 experiment (JSON + PNG);
* :mod:`~axhw.approxann.cli`: argparse registration of ``approxann`` and ``fig8``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from axhw.common.lazy import lazy_exports

if TYPE_CHECKING:
    from axhw.approxann.criticality import MEASURES, count_multipliers, neuron_criticality
    from axhw.approxann.search import (
        ApproxAnnConfig,
        ApproxAnnResult,
        RoundRecord,
        approxann,
        hardware_accuracy,
        run_approxann,
    )

#: Loaded on first use (PEP 562): the command line registers ``approxann`` without importing torch.
_LAZY = {"MEASURES": "axhw.approxann.criticality", "count_multipliers": "axhw.approxann.criticality",
         "neuron_criticality": "axhw.approxann.criticality", "ApproxAnnConfig": "axhw.approxann.search",
         "ApproxAnnResult": "axhw.approxann.search", "RoundRecord": "axhw.approxann.search",
         "approxann": "axhw.approxann.search", "hardware_accuracy": "axhw.approxann.search",
         "run_approxann": "axhw.approxann.search"}

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


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
