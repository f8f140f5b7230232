"""One entry point for every accelerator-energy engine (``AccelConfig.engine``): the gate-level simulators
(:func:`axhw.power.accel.energy.accelerator_energy`) or the calibrated model
(:func:`axhw.power.accel.model.model_energy`). Its own module because the model is built on the gate-level
engine's pieces (calibration runs, per-cell energies): the dispatch cannot live in either without a cycle.
"""

from __future__ import annotations

import torch

from axhw.golden.network import QuantizedNetwork
from axhw.power.accel.energy import AccelConfig, AccelEnergy, accelerator_energy
from axhw.power.accel.model import model_energy
from axhw.power.flow.synth import SynthConfig

__all__ = ["energy_per_inference"]


def energy_per_inference(qnet: QuantizedNetwork, x_int: torch.Tensor, mode: str, cfg: AccelConfig | None = None,
                         synth_cfg: SynthConfig | None = None) -> AccelEnergy:
    """Energy per inference of ``qnet`` on ``mode``'s array by ``cfg.engine`` (``icarus``, ``verilator`` or
    ``model``), over the first ``cfg.samples`` rows of ``x_int``."""
    cfg = cfg or AccelConfig()
    if cfg.engine == "model":
        return model_energy(qnet, x_int, mode, cfg, synth_cfg)
    return accelerator_energy(qnet, x_int, mode, cfg, synth_cfg)
