"""One trainer for the four methods of the paper (section 3): BP, AxTrain-act, AxTrain-pas and AxTrain.

* ``bp``: conventional training of the ideal (float) network on the output error E.
* ``act``: E_tot = E + gamma * S(w) (eq. 4), S from :func:`axhw.training.sensitivity.network.sensitivity` with its exact
  gradient by double backward (the Hessian-vector product of eq. 6), gamma adapted per epoch (section 3.1.3);
  ``sensitivity="estimate"`` uses an unbiased estimate of both from sampled outputs instead.
* ``pas``: the forward pass runs the hardware model (quantized operands, the chosen multiplier, fresh NTV
  flips on stored parameters every pass); gradients pass the clipped straight-through estimator (eq. 12).
* ``axtrain``: act until E and S converge (or the act budget ends), then pas for ``pas_epochs``.

Every epoch is checkpointed atomically, so ``--resume`` continues an interrupted run with the same numbers.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from axhw.arith.fixedpoint import FixedPoint
from axhw.arith.multipliers import Exact, Multiplier
from axhw.arith.registry import get_multiplier
from axhw.arith.sram import NOMINAL_MV, NTVStorage
from axhw.common import numerics, reproducible
from axhw.common.io import atomic_torch_save, atomic_write_json
from axhw.data.registry import APPLICATIONS
from axhw.golden.network import IntConv2d, QuantizedNetwork
from axhw.nn import HardwareConfig, approx_layers, calibrate_model, sample_chip, set_hardware, to_quantized
from axhw.nn.fx.lower import hardware_formats, load_hardware_formats
from axhw.nn.fx.trace import describe_parts
from axhw.training.factories import (
    check_float_parts,
    check_outputs,
    check_spec,
    load_user_data,
    normalize_args,
    normalize_keep_float,
    user_model,
)
from axhw.training.models import build_model
from axhw.training.options import METHODS
from axhw.training.sensitivity.estimate import ESTIMATORS
from axhw.training.sensitivity.network import AdaptiveGamma, sensitivity, sensitivity_and_output

__all__ = [
    "CHECKPOINT_VERSION",
    "METHODS",
    "TrainConfig",
    "TrainState",
    "accuracy_summary",
    "build_training_model",
    "config_diff",
    "describe_target",
    "finished_here",
    "hardware_model_accuracy",
    "hardware_target",
    "integer_accuracy",
    "integer_batch_size",
    "integer_correct",
    "integer_outputs",
    "integer_test_inputs",
    "load_checkpoint",
    "load_training_data",
    "network_inputs",
    "output_loss",
    "phase_for",
    "same_config",
    "split_record",
    "targets_hardware",
    "train",
    "train_cached",
    "train_step",
]

Method = Literal["bp", "act", "pas", "axtrain"]
CHECKPOINT_VERSION = 1
_CHECKPOINT_FORMAT = "axhw.checkpoint"
#: Samples used to measure S(w) at the end of every epoch (same probe for every method, for comparability).
SENSITIVITY_PROBE = 256
#: Offset of the S estimator's per-epoch seeds, apart from the batch-order seeds ``seed * 7919 + epoch``.
_ESTIMATE_STREAM = 1 << 32


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (the same config and seed give the same numbers).

    Attributes:
        dataset: application of Table 1 (``breast_cancer``, ``image_seg``, ``ionosphere``, ``satimage``,
            ``mnist_mlp``, ``mnist_cnn``): the data, and the network unless ``model`` is given. With
            ``data`` it is only the run's label (any name; it names the run in outputs).
        model: your network instead of the Table 1 one: ``"pkg.module:factory"``, a function returning an
            ``nn.Module`` (:mod:`axhw.training.factories`), made hardware-aware by :func:`axhw.convert`. Its outputs
            are trained like the paper's sigmoid units (``loss``): end it in a sigmoid.
        model_args: keyword arguments of the ``model`` factory (JSON values; tuples are stored as lists).
        data: your data instead of ``dataset``'s: ``"pkg.module:factory"`` returning ``(x_train, y_train,
            x_test, y_test)`` (:func:`axhw.training.factories.load_user_data`); inputs are used as given (no scaling,
            no reshaping) and ``data_dir`` is unused.
        keep_float: parts of the ``model`` that run in float on purpose: module paths and names of float
            operations (:func:`axhw.convert`'s ``keep_float``). A model with an operation the integer network
            has no equivalent for (GELU, tanh, LayerNorm...) is refused before training unless it is listed
            here (:func:`axhw.training.factories.check_float_parts`); with it, ``axhw evaluate`` runs those
            parts in float between the integer layers, and the integer export and the RTL refuse the network.
        method: ``bp``, ``act``, ``pas`` or ``axtrain``.
        multiplier: multiplier of the pas phase (``exact``, ``drum<k>``, ``K1``..``K4``).
        voltage_mv: SRAM voltage of the pas phase (1100 = no flips).
        epochs: total epochs (for ``axtrain``: act and pas together).
        pas_epochs: epochs of the pas phase of ``axtrain`` (the paper used 10 for MNIST).
        batch_size, lr: Adam mini-batch training.
        act_warmup: first epochs of act (and of AxTrain's act phase) trained on E alone, before the
            adaptive gamma starts (the gamma rule is not updated during them). Default 1. Why, measured:
            on full-data LeNet-5 (sigmoid outputs, MSE), act with gamma0 = 1e-3 from the first step drove
            two output units into saturation, where neither E nor S has a gradient left, and training
            stalled at 80% (4+ epochs); with one warm-up epoch it reached 98.6% after 4 epochs, like BP.
        pas_lr: learning rate of pas epochs (None: ``lr``). A fine-tuning rate for AxTrain's pas phase, whose
            gradients come from a noisy forward (fresh bit flips every pass).
        seed: seeds the data split, initialisation, batch order and bit flips.
        bits: weight and activation word length.
        bias_bits: stored bias word width (None: ``2 * bits``, see :class:`axhw.nn.HardwareConfig`); under
            ``bias_word="fit"`` the widest a layer's bias word may be.
        bias_word: ``fit`` (default): each layer's bias word drops the high-order bits its biases do not use
            (paper section 3.2); ``fixed``: every bias word is ``bias_bits`` wide (before this field existed).
            See :class:`axhw.nn.HardwareConfig` and docs/hardware-models.md, "NTV SRAM storage".
        ntv_biases: whether biases are stored in the NTV memory with the weights and flip with them (default
            True, the paper's parameters W), or in reliable memory at nominal voltage (``False``).
        gamma0, d_gamma, error_bound: adaptive gamma of AxTrain-act (section 3.1.3); the error is the
            epoch's training error rate, so ``error_bound`` is an error-rate bound. The paper gives no
            values; measured on MNIST-MLP (5,000 samples, 6 epochs), gamma0 = 1e-3 keeps BP's accuracy
            (0.916) with 32% lower S, 3e-3 costs 17 points and 1e-2 collapses training (0.40).
        converge_tol: relative change of E and S per epoch below which act counts as converged (axtrain).
        loss: output error E: ``mse`` on the sigmoid outputs against one-hot targets (the paper's) or ``bce``.
        saturation_ste: pas: also zero the gradient of outputs the hardware clamped (default; see
            :class:`axhw.nn.HardwareConfig`); without it pas from random init stalls on MNIST-MLP.
        sensitivity: how act computes S(w) and its eq. 6 gradient in each step: ``exact`` (all K outputs, the
            default) or ``estimate`` (unbiased estimate from ``probes`` sampled outputs per sample, seeded
            from ``seed`` and the epoch; :mod:`axhw.training.sensitivity.estimate`). The per-epoch S in the history
            is always exact.
        probes: outputs sampled per sample by the ``estimate`` (>= 1; cost grows with it, variance falls).
        limit: use at most this many training samples, a seeded stratified subset (quick runs; None = all).
        val_fraction: share of the training samples held out as a seeded, stratified validation split
            (:func:`axhw.data.loaders.carve_validation`), never trained on: every selection a study makes (the
            minimum-power configuration, accuracy bounds, ApproxAnn's switches) is made on it, and the test
            split scores what was chosen (docs/power.md, "Selection on validation data"). 0 (plain ``axhw
            train``): no validation split, all training samples train. Recorded in the checkpoint, so a run
            with another split is never reused or mixed in.
        data_dir: dataset cache directory (None = default).
    """

    dataset: str = "breast_cancer"
    method: Method = "bp"
    multiplier: str = "exact"
    voltage_mv: float = 1100.0
    epochs: int = 30
    pas_epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    pas_lr: float | None = None
    act_warmup: int = 1
    seed: int = 0
    bits: int = 8
    bias_bits: int | None = None
    bias_word: Literal["fit", "fixed"] = "fit"
    ntv_biases: bool = True
    gamma0: float = 1e-3
    d_gamma: float = 5e-4
    error_bound: float = 0.02
    converge_tol: float = 0.01
    loss: Literal["mse", "bce"] = "mse"
    saturation_ste: bool = True
    sensitivity: Literal["exact", "estimate"] = "exact"
    probes: int = 1
    limit: int | None = None
    val_fraction: float = 0.0
    data_dir: str | None = None
    model: str | None = None
    # hash=False: a dict does not hash; configs that differ only here still compare unequal
    model_args: dict[str, Any] = field(default_factory=dict, hash=False)
    data: str | None = None
    keep_float: list[str] = field(default_factory=list, hash=False)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}: valid methods are {', '.join(METHODS)}")
        if self.data is not None:
            check_spec(self.data, "--data")
            if not isinstance(self.dataset, str) or not self.dataset.strip():
                raise ValueError("dataset (the run's label with --data) must be a non-empty name")
        elif self.dataset not in APPLICATIONS:
            raise ValueError(f"unknown dataset {self.dataset!r}: valid datasets are {', '.join(APPLICATIONS)}")
        if self.model is not None:
            check_spec(self.model, "--model")
        elif self.model_args:
            raise ValueError("model_args without model: --model-arg needs --model")
        object.__setattr__(self, "model_args", normalize_args(self.model_args))
        object.__setattr__(self, "keep_float", normalize_keep_float(self.keep_float))
        if self.keep_float and self.model is None:
            raise ValueError("keep_float without model: --keep-float names parts of your --model (the Table 1 "
                             "networks have none)")
        bad = [f"{name}={value!r} (must be {rule})" for name, value, rule, ok in (
            ("epochs", self.epochs, ">= 1", self.epochs >= 1),
            ("batch_size", self.batch_size, ">= 1", self.batch_size >= 1),
            ("lr", self.lr, "> 0", self.lr > 0),
            ("pas_lr", self.pas_lr, "> 0", self.pas_lr is None or self.pas_lr > 0)) if not ok]
        if bad:
            raise ValueError("out of range: " + ", ".join(bad))
        if self.method == "axtrain" and self.epochs < 2:
            raise ValueError(f"axtrain needs epochs >= 2 (at least one act epoch, then pas), got epochs={self.epochs}")
        if self.method == "axtrain" and not 1 <= self.pas_epochs < self.epochs:
            raise ValueError(f"pas_epochs={self.pas_epochs} out of range: valid range is [1, epochs-1={self.epochs - 1}] "
                             f"(axtrain's last pas_epochs epochs are pas): lower pas_epochs or raise epochs to "
                             f"{self.pas_epochs + 1} or more")
        if not 0.0 <= self.val_fraction <= 0.5:
            raise ValueError(f"val_fraction={self.val_fraction} out of range: valid range is [0, 0.5] (0: no "
                             "validation split)")
        if self.act_warmup < 0:
            raise ValueError(f"act_warmup={self.act_warmup} out of range: must be >= 0")
        if self.sensitivity not in ESTIMATORS:
            raise ValueError(f"unknown sensitivity {self.sensitivity!r}: valid choices are {', '.join(ESTIMATORS)}")
        if isinstance(self.probes, bool) or not isinstance(self.probes, int) or self.probes < 1:
            raise ValueError(f"probes={self.probes!r} out of range: must be an integer >= 1")
        if self.loss not in ("mse", "bce"):
            raise ValueError(f"unknown loss {self.loss!r}: valid losses are 'mse', 'bce'")
        self.pas_hardware()  # validates multiplier, bits and voltage

    def pas_hardware(self) -> HardwareConfig:
        return HardwareConfig(mode="hardware", multiplier=self.multiplier, bits=self.bits, voltage_mv=self.voltage_mv,
                              bias_bits=self.bias_bits, saturation_ste=self.saturation_ste,
                              bias_word=self.bias_word, ntv_biases=self.ntv_biases)


def output_loss(out: torch.Tensor, y: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """The output error E between sigmoid outputs and one-hot targets."""
    target = F.one_hot(y, out.shape[1]).to(out.dtype)
    if kind == "bce":
        return F.binary_cross_entropy(out.clamp(1e-7, 1 - 1e-7), target)
    return ((out - target) ** 2).sum(dim=1).mean() / 2


def network_inputs(cfg: TrainConfig, x: torch.Tensor) -> torch.Tensor:
    """The network's view of the inputs: ``--data`` as given, MNIST-CNN 1x28x28 images, else flat vectors."""
    if cfg.data is not None:
        return x
    return x.reshape(-1, 1, 28, 28) if cfg.dataset == "mnist_cnn" else x.reshape(x.shape[0], -1)


def load_training_data(cfg: TrainConfig) -> Any:
    """The data set of ``cfg``: a user's ``--data`` factory, else the registry's (seeded, offline)."""
    from axhw.data import load

    if cfg.data is not None:
        return load_user_data(cfg.data, seed=cfg.seed, limit=cfg.limit, val_fraction=cfg.val_fraction)
    return load(cfg.dataset, seed=cfg.seed, data_dir=cfg.data_dir, limit=cfg.limit, val_fraction=cfg.val_fraction)


def split_record(cfg: TrainConfig, data: Any) -> dict[str, Any]:
    """Sizes of the train / validation / test splits of ``data`` and a SHA-256 (16 hex) of the validation
    samples and labels (``None`` without a validation split): what ``metrics.json`` records of the split."""
    import hashlib

    digest = None
    if len(data.y_val):
        h = hashlib.sha256(data.x_val.contiguous().numpy().tobytes())
        h.update(data.y_val.contiguous().numpy().tobytes())
        digest = h.hexdigest()[:16]
    return {"val_fraction": cfg.val_fraction, "train": len(data.y_train), "val": len(data.y_val),
            "test": len(data.y_test), "val_digest": digest}


def build_training_model(cfg: TrainConfig) -> nn.Module:
    """The untrained float-mode network of ``cfg``: the Table 1 network of ``cfg.dataset``, or the ``model``
    factory's module converted by :func:`axhw.convert` (same factory and arguments, same structure).

    >>> build_training_model(TrainConfig(dataset="breast_cancer"))[0]
    ApproxLinear(in_features=30, out_features=64, bias=True)
    """
    hw = HardwareConfig(mode="float", bits=cfg.bits)
    if cfg.model is None:
        return build_model(cfg.dataset, hw)
    from axhw.nn.convert import convert

    try:
        model, _ = convert(user_model(cfg.model, cfg.model_args), hw, keep_float=cfg.keep_float)
    except (ValueError, TypeError) as exc:
        if str(exc).startswith("--model "):
            raise
        raise ValueError(f"--model {cfg.model}: {exc}") from exc
    return model


def _recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Re-estimate batch-norm running statistics from the training data with the current weights
    (``torch.optim.swa_utils.update_bn``: a cumulative average over one no-grad pass), after every
    regularized act epoch.

    Why: pas freezes the running statistics and the hardware folds them, so they must describe the final
    weights, not an exponential average over an epoch in which the S term moved them. Measured on the residual
    MNIST example (docs/own-network.md) when the S gradient still treated the statistics as detached (it
    moved the normalized layers' weight scale, axhw.training.sensitivity.network): train-mode accuracy 0.90 while the
    eval-mode network collapsed (0.59 -> 0.10); these statistics restored the agreement. The S gradient now
    follows the statistics and leaves the scale alone, and the pass stays: it costs one forward per epoch.
    Freezing the statistics during act instead let S drive the network dead (S = 0, every output 0.5).
    """
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return
    from torch.optim.swa_utils import update_bn

    with torch.no_grad():
        update_bn(x.split(batch_size), model)


@dataclass
class TrainState:
    """Where a run stands: the epoch about to be trained, the phase of the last one, and every finished
    epoch's metrics (what :func:`phase_for` decides from)."""

    epoch: int = 0
    phase: str = "bp"
    history: list[dict[str, Any]] = field(default_factory=list)


def phase_for(cfg: TrainConfig, state: TrainState) -> str:
    """The phase (``bp``, ``act`` or ``pas``) of the next epoch. AxTrain runs act until S and the loss have
    converged (relative change below ``converge_tol``) or its act budget is spent, then pas, never back; the
    per-target search (:mod:`axhw.power.search.targets`) replays this rule on an act run's history."""
    if cfg.method == "bp":
        return "bp"
    if cfg.method == "act":
        return "act"
    if cfg.method == "pas":
        return "pas"
    # axtrain: act until converged or the act budget is spent, then pas (never back)
    if state.phase == "pas" or state.epoch >= cfg.epochs - cfg.pas_epochs:
        return "pas"
    h = state.history
    if len(h) >= 2:
        def rel(key: str) -> float:
            a, b = h[-2][key], h[-1][key]
            return abs(a - b) / max(abs(a), 1e-12)

        if rel("loss") < cfg.converge_tol and rel("sensitivity") < cfg.converge_tol:
            return "pas"
    return "act"


def _set_phase(model: nn.Module, cfg: TrainConfig, phase: str, x_calib: torch.Tensor, seed: int) -> None:
    if phase == "pas":
        set_hardware(model, cfg.pas_hardware())
        if any(layer.act_fmt is None for layer in approx_layers(model)):
            # Only before the first epoch: every epoch ends by calibrating on the same data and weights.
            calibrate_model(model, x_calib)
        for i, layer in enumerate(approx_layers(model)):
            layer.generator = torch.Generator().manual_seed(seed * 1000 + i)
    else:
        set_hardware(model, HardwareConfig(mode="float", bits=cfg.bits))


def train_step(model: nn.Module, opt: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor,
               gamma: float = 0.0, loss_kind: str = "mse", estimator: Literal["exact", "estimate"] = "exact",
               probes: int = 1, generator: torch.Generator | None = None) -> tuple[torch.Tensor, float]:
    """One optimisation step on ``E + gamma * S(w)`` (eq. 4; plain E when ``gamma == 0``).

    The model's mode decides BP/act (float) or pas (hardware forward, clipped STE backward).
    ``estimator``, ``probes``, ``generator``: how S is computed (see :func:`axhw.training.sensitivity.network.sensitivity`).
    Returns the detached outputs and the value of E.
    """
    if gamma > 0:
        # one forward for E and S (eq. 4)
        s, out = sensitivity_and_output(model, xb, estimator=estimator, probes=probes, generator=generator)
        loss = output_loss(out, yb, loss_kind)
        total = loss + gamma * s
    else:
        out = model(xb)
        loss = total = output_loss(out, yb, loss_kind)
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()
    return out.detach(), float(loss.detach())


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(x[i : i + 1024]) for i in range(0, len(x), 1024)])
    return float((out.argmax(1) == y).float().mean())


#: About how many bytes the intermediate tensors of one batch of :func:`integer_outputs` may take
#: (:func:`integer_batch_size`). Why 64 MiB: small next to what a command holds anyway (torch ~220 MB, MNIST
#: ~250 MB while it loads), so evaluating stays below what training the same network needs; large enough
#: that a batch is ~100 LeNet-5 samples or thousands of MLP samples. Measured on LeNet-5's 10,000 MNIST test
#: images (1 thread): batches of 100-300 run no slower than the whole set at once (cache-sized tensors).
INTEGER_BATCH_BYTES = 64 << 20


def integer_batch_size(qnet: QuantizedNetwork, x_int: torch.Tensor, multiplier: Multiplier,
                       budget: int | None = None) -> int:
    """Samples per batch of :func:`integer_outputs` whose intermediate tensors take about ``budget`` bytes
    (default :data:`INTEGER_BATCH_BYTES`).

    Bytes per sample, from one sample's forward (``x_int[:1]``), all int64 or float64 (8 bytes a value):
    :meth:`QuantizedNetwork.forward_int` keeps every operation's output until it returns (all counted); the
    layer being computed adds temporaries the size of its output (the float GEMM/convolution result, then
    copies for rounding, the bias, saturation and the re-quantizing shift: 4 of the largest output counted);
    a convolution on the generic path (a product-table multiplier) builds im2col columns, input channels x
    kernel values per output position, once in float64 and twice in int64 (3 of the largest counted, whatever
    the multiplier: an upper bound); the input codes come from a float64 copy (2 counted). LeNet-5: 0.75 MB a
    sample (0.47 MB of it the first convolution's columns), so batches of 89; an MLP on MNIST: thousands.
    """
    budget = INTEGER_BATCH_BYTES if budget is None else budget
    outs = qnet.forward_int(x_int[:1], multiplier, return_all=True)
    assert isinstance(outs, list)
    sizes = [o.numel() * 8 for o in outs]
    im2col = max((op.weight[0].numel() * op.groups * out.shape[-2] * out.shape[-1] * 8
                  for op, out in zip(qnet.ops, outs, strict=True) if isinstance(op, IntConv2d)), default=0)
    per_sample = 2 * x_int[0].numel() * 8 + sum(sizes) + 4 * max(sizes, default=0) + 3 * im2col
    return max(1, budget // per_sample)


def integer_outputs(qnet: QuantizedNetwork, x: torch.Tensor, multiplier: Multiplier,
                    storage: NTVStorage | None = None, generator: torch.Generator | None = None,
                    batch_size: int | None = None) -> torch.Tensor:
    """The integer network's output codes for the real inputs ``x``, equal bit for bit to
    ``qnet.forward_int(qnet.quantize_input(x), multiplier, storage, generator)``, computed in batches
    (``batch_size``, default :func:`integer_batch_size`) so that memory stays bounded on any test set.

    Why equal: one chip (flip pattern) is drawn from ``generator`` before the first batch, the draw
    ``forward_int`` makes, and held for every batch; quantizing the inputs and every integer operation act on
    each sample alone, exactly. Why batches: one ``forward_int`` over MNIST's 10,000 test images held 1.3 GB
    of intermediate tensors for LeNet-5 (``axhw evaluate`` peaked at 1.8 GB, 2.5x training).
    """
    params = qnet.stored_params(storage, generator)
    if len(x) == 0:
        out = qnet.forward_int(qnet.quantize_input(x), multiplier, params=params)
        assert isinstance(out, torch.Tensor)
        return out
    if batch_size is None:
        batch_size = integer_batch_size(qnet, qnet.quantize_input(x[:1]), multiplier)
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} out of range: valid range is >= 1")
    outs = []
    for i in range(0, len(x), batch_size):
        out = qnet.forward_int(qnet.quantize_input(x[i : i + batch_size]), multiplier, params=params)
        assert isinstance(out, torch.Tensor)
        outs.append(out)
    return torch.cat(outs)


def integer_accuracy(qnet: QuantizedNetwork, x: torch.Tensor, y: torch.Tensor, multiplier: Multiplier,
                     storage: NTVStorage | None = None, generator: torch.Generator | None = None,
                     loss: str = "mse", batch_size: int | None = None) -> tuple[float, float]:
    """Accuracy and output error E (on the sigmoid of the output accumulator) of the integer network on
    ``(x, y)`` with one chip (:func:`integer_outputs`): one run of ``axhw evaluate``, and ``axhw train``'s
    hardware accuracy."""
    correct, err = integer_correct(qnet, x, y, multiplier, storage, generator, loss, batch_size)
    return float(correct.double().mean()), err


def integer_correct(qnet: QuantizedNetwork, x: torch.Tensor, y: torch.Tensor, multiplier: Multiplier,
                    storage: NTVStorage | None = None, generator: torch.Generator | None = None,
                    loss: str = "mse", batch_size: int | None = None) -> tuple[torch.Tensor, float]:
    """:func:`integer_accuracy` per sample: which samples one chip classifies right (bool, ``(N,)``) and the
    output error E. Paired tests compare two configurations sample by sample (docs/power.md)."""
    out = integer_outputs(qnet, x, multiplier, storage, generator, batch_size)
    logits = qnet.output_fmt.dequantize(out, torch.float64)
    return out.argmax(1) == y, float(output_loss(torch.sigmoid(logits), y, loss))


def hardware_target(cfg: TrainConfig) -> dict[str, Any]:
    """The hardware ``train`` measures its hardware accuracy on: the run's multiplier (as given, and the
    circuit name ``axhw evaluate`` files it under), SRAM voltage and flip probability, and under NTV the chip:
    its flips are seeded ``chip_seed`` (the run's seed), the chip ``axhw evaluate --runs 1 --seed <chip_seed>``
    evaluates too; ``chip_seed`` is None without flips (every chip is the same)."""
    mul = get_multiplier(cfg.multiplier, cfg.bits)
    storage = NTVStorage(cfg.voltage_mv)
    return {"multiplier": cfg.multiplier, "circuit": mul.name, "voltage_mv": float(cfg.voltage_mv),
            "flip_p": storage.flip_p, "chip_seed": cfg.seed if storage.flip_p > 0 else None, "bits": cfg.bits}


def targets_hardware(cfg: TrainConfig) -> bool:
    """Whether ``metrics.json``'s ``test_accuracy`` is the hardware accuracy (else the float one).

    It is when the run names hardware: a method with a pas phase (``pas``, ``axtrain``: trained for that
    hardware), or a multiplier other than exact or a voltage other than nominal (1100 mV; bp and act do not
    train on them, but they say which hardware the user asks about). A bp or act run on exact at 1100 mV
    names none: its ``test_accuracy`` stays the float accuracy, which the accuracy matrix (``axhw accuracy``,
    its ``float`` column) reads.
    """
    return (cfg.method in ("pas", "axtrain") or not isinstance(get_multiplier(cfg.multiplier, cfg.bits), Exact)
            or cfg.voltage_mv != NOMINAL_MV)


def describe_target(target: dict[str, Any]) -> str:
    """``K2, 660 mV, chip seed 0`` (``K2, 1100 mV`` without flips): a :func:`hardware_target` for labels."""
    chip = f", chip seed {target['chip_seed']}" if target.get("chip_seed") is not None else ""
    return f"{target['multiplier']}, {target['voltage_mv']:g} mV{chip}"


def accuracy_summary(metrics: dict[str, Any]) -> str:
    """``axhw train``'s result, both accuracies labelled, the headline (``test_accuracy``) first:
    ``test accuracy 0.2215 on hardware (K2, 1100 mV); float 0.1772``."""
    hw = f"on hardware ({describe_target(metrics['hardware_target'])})"
    acc_hw, acc_float = metrics["test_accuracy_hardware"], metrics["test_accuracy_float"]
    if metrics["test_accuracy_of"] == "hardware":
        return f"test accuracy {acc_hw:.4f} {hw}; float {acc_float:.4f}"
    return f"test accuracy {acc_float:.4f} in float; {hw} {acc_hw:.4f}"


@torch.no_grad()
def _hardware_accuracy(ck: dict[str, Any], cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor) -> float:
    """Test accuracy of the checkpoint ``ck`` on :func:`hardware_target`, computed as ``axhw evaluate
    --runs 1 --seed <cfg.seed>`` computes it (so the two agree exactly): the integer network from the
    checkpoint (:func:`quantized_from_checkpoint`), one chip seeded ``cfg.seed``; a network with parts kept
    float has no integer network and runs, as evaluate runs it, as the eval-mode hardware model (its layers
    the integer layers bit for bit, the chip drawn by :func:`sample_chip` from the same seed)."""
    mul = get_multiplier(cfg.multiplier, cfg.bits)
    chip = torch.Generator().manual_seed(cfg.seed)
    if cfg.keep_float:
        hw = HardwareConfig(mode="hardware", multiplier=cfg.multiplier, bits=cfg.bits, voltage_mv=cfg.voltage_mv,
                            bias_bits=cfg.bias_bits, bias_word=cfg.bias_word, ntv_biases=cfg.ntv_biases)
        acc, _ = hardware_model_accuracy(model_from_checkpoint(ck, hw).eval(), x, y, chip, cfg.loss)
        return acc
    acc, _ = integer_accuracy(quantized_from_checkpoint(ck), x, y, mul, NTVStorage(cfg.voltage_mv), chip, cfg.loss)
    return acc


@torch.no_grad()
def hardware_model_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chip: torch.Generator,
                            loss: str = "mse") -> tuple[float, float]:
    """Accuracy and output error E of the eval-mode hardware ``model`` on one chip drawn from ``chip``
    (:func:`axhw.nn.sample_chip`, the draw order of :meth:`QuantizedNetwork.stored_params`), on the sigmoid
    outputs the model itself ends in: how a network with parts kept float (``--keep-float``, no integer
    network) is evaluated by ``axhw evaluate`` and by ``train``'s hardware accuracy alike."""
    sample_chip(model, chip)
    out = torch.cat([model(x[i : i + 1024]) for i in range(0, len(x), 1024)]).double()
    return float((out.argmax(1) == y).double().mean()), float(output_loss(out, y, loss))


def _circuit_of(cfg: TrainConfig) -> dict[str, Any] | None:
    from axhw.arith.library import circuit_of

    return circuit_of(cfg.pas_hardware().get_multiplier())


def _checkpoint(cfg: TrainConfig, model: nn.Module, opt: torch.optim.Optimizer, gamma: AdaptiveGamma,
                state: TrainState) -> dict[str, Any]:
    layers = approx_layers(model)
    # Table 1 networks: one input format per layer (a chain); a factory's model: every format by module path.
    fmts: dict[str, Any] = ({"formats": hardware_formats(model)} if cfg.model is not None else
                            {"act_fmts": [asdict(layer.act_fmt) if layer.act_fmt is not None else None
                                          for layer in layers]})
    return {
        "format": _CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": asdict(cfg),
        # Which circuit an imported multiplier name stood for (name, source and table hashes); None: built-in.
        "multiplier_circuit": _circuit_of(cfg),
        "model": model.state_dict(),
        **fmts,
        "optimizer": opt.state_dict(),
        "gamma": gamma.state_dict(),
        "epoch": state.epoch,
        "phase": state.phase,
        "history": state.history,
    }


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a checkpoint; a corrupt or foreign file gives a one-line ``ValueError``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train one with `axhw train --out DIR`")
    if path.is_dir():
        raise ValueError(f"{path} is a folder: pass the checkpoint file inside it ({path / 'checkpoint.pt'})")
    # weights_only: an axhw checkpoint holds tensors, numbers, strings and containers only, so nothing in it
    # may name a callable; a pickle that would run code when loaded is refused before it runs.
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found is None:  # not a code-carrying pickle: a damaged file
            raise ValueError(f"{path}: corrupt checkpoint (UnpicklingError); retrain or restore it") from exc
        raise ValueError(f"{path}: refused, the file would run code when loaded ({found.group(1)}): not an axhw "
                         "checkpoint, or tampered with; axhw loads only tensors and plain data") from exc
    except Exception as exc:
        raise ValueError(f"{path}: corrupt checkpoint ({type(exc).__name__}); retrain or restore it") from exc
    if not isinstance(ck, dict) or ck.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an axhw checkpoint")
    if ck.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {ck.get('version')} unsupported (need {CHECKPOINT_VERSION})")
    return ck


def model_from_checkpoint(ck: dict[str, Any], hw: HardwareConfig | None = None) -> nn.Module:
    """Rebuild the trained model with its calibrated formats (a ``--model`` factory is called again)."""
    cfg = config_from_dict(ck["config"])
    model = build_training_model(cfg)
    if hw is not None:
        set_hardware(model, hw)
    model.load_state_dict(ck["model"])
    if "formats" in ck:
        load_hardware_formats(model, ck["formats"])
        return model
    layers = approx_layers(model)
    fmts = [FixedPoint(**f) if f is not None else None for f in ck["act_fmts"]]
    for layer, fmt in zip(layers, fmts, strict=True):
        layer.act_fmt = fmt
    for cur, nxt in zip(layers, [*layers[1:], None], strict=True):
        cur.out_fmt = nxt.act_fmt if nxt is not None else None
    return model


#: What a field means when a saved configuration (a checkpoint, a ``metrics.json``) predates it: what the code
#: did before the field existed, which is not always today's default. A run trained on the whole training split
#: (before validation splits) or with 16-bit bias words in the NTV memory is read back as exactly that, so it is
#: never mixed in silently with runs of the new defaults: it is labelled by its own configuration and not reused
#: where another one is asked for (:func:`same_config`).
LEGACY_DEFAULTS: dict[str, Any] = {"val_fraction": 0.0, "bias_word": "fixed", "ntv_biases": True}


def _with_legacy(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` with every field it lacks and :data:`LEGACY_DEFAULTS` names set to its legacy value."""
    return {**{k: v for k, v in LEGACY_DEFAULTS.items() if k not in d}, **d}


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` of a saved configuration; fields it lacks take their legacy meaning
    (:data:`LEGACY_DEFAULTS`), else today's default."""
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in _with_legacy(d).items() if k in names})


#: Fields a resumed run may change: the length of the run, and where the data cache lives.
RESUMABLE_CHANGES = ("epochs", "data_dir")


def config_diff(saved: TrainConfig, requested: TrainConfig) -> list[str]:
    """``field: saved-value (checkpoint) vs requested-value`` for every field that differs, except
    :data:`RESUMABLE_CHANGES`."""
    a, b = asdict(saved), asdict(requested)
    return [f"{name}: {a[name]!r} (checkpoint) vs {b[name]!r} (requested)"
            for name in a if name not in RESUMABLE_CHANGES and a[name] != b[name]]


def quantized_from_checkpoint(ck: dict[str, Any], bias_bits: int | None = None,
                              bias_word: Literal["fit", "fixed"] | None = None,
                              ntv_biases: bool | None = None) -> QuantizedNetwork:
    """The integer network of a checkpoint; ``bias_bits``, ``bias_word`` and ``ntv_biases`` override the
    stored bias word width, how it is sized and where it is stored (None: as trained)."""
    cfg = config_from_dict(ck["config"])
    model = model_from_checkpoint(ck, HardwareConfig(
        mode="quantized", bits=cfg.bits, bias_bits=bias_bits or cfg.bias_bits,
        bias_word=cfg.bias_word if bias_word is None else bias_word,
        ntv_biases=cfg.ntv_biases if ntv_biases is None else ntv_biases))
    return to_quantized(model, meta={"dataset": cfg.dataset, "method": cfg.method, "seed": cfg.seed})


def train_cached(cfg: TrainConfig, out_dir: str | Path, resume: bool = False, progress: bool = False) -> Path:
    """Train into ``out_dir`` unless it holds a finished run (``metrics.json``) of exactly ``cfg``; return the
    checkpoint path. ``resume`` continues an interrupted run of the same configuration."""
    out_dir = Path(out_dir)
    metrics = out_dir / "metrics.json"
    if not (metrics.is_file() and finished_here(json.loads(metrics.read_text()), cfg)):
        train(cfg, out_dir, resume=resume, progress=progress)
    return out_dir / "checkpoint.pt"


def finished_here(metrics: dict[str, Any], cfg: TrainConfig) -> bool:
    """Whether a run's ``metrics.json`` is a finished run of ``cfg`` that this process may reuse: the same
    configuration (:func:`same_config`) and, in reproducible mode, trained in reproducible mode too (a run
    without it rounds differently; one from before the mode existed counts as without)."""
    if not same_config(metrics.get("config"), cfg):
        return False
    return not reproducible.requested() or bool((metrics.get("runtime") or {}).get("reproducible"))


def same_config(saved: Any, cfg: TrainConfig) -> bool:
    """Whether ``saved`` (a config read back from ``metrics.json``) is ``cfg``; fields newer than the file
    count as their legacy meaning (:data:`LEGACY_DEFAULTS`) or else their defaults, so a finished run stays
    finished when :class:`TrainConfig` grows a field that does not change what it trained."""
    if not isinstance(saved, dict):
        return False
    defaults = {f.name: f.default_factory() if f.default_factory is not MISSING else f.default
                for f in fields(TrainConfig)}
    return {**defaults, **_with_legacy(saved)} == asdict(cfg)


def integer_test_inputs(ck: dict[str, Any]) -> tuple[QuantizedNetwork, torch.Tensor]:
    """A checkpoint's integer network and its data set's test inputs as input codes: the operand source of
    the power flow and the demo."""
    cfg = config_from_dict(ck["config"])
    qnet = quantized_from_checkpoint(ck)
    return qnet, qnet.quantize_input(network_inputs(cfg, load_training_data(cfg).x_test))


def train(cfg: TrainConfig, out_dir: str | Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train, checkpoint every epoch to ``out_dir/checkpoint.pt``, write ``out_dir/metrics.json``.

    ``metrics.json`` is written when the run is complete and always describes the checkpoint beside it:
    a run that will train removes an older one first, so an interrupted run leaves a checkpoint and no
    metrics. Without ``resume`` an existing checkpoint is replaced (the CLI refuses unless ``--force``).
    With ``resume`` a checkpoint must come from the same configuration (only ``epochs`` and ``data_dir``
    may change, :func:`config_diff` names the rest) and hold at most ``epochs`` epochs.

    Returns the metrics dictionary: the float and the hardware test accuracy of the final checkpoint, the
    hardware they refer to, and which one the headline ``test_accuracy`` is (:func:`hardware_target`,
    :func:`targets_hardware`; docs/training.md, "Which accuracy").
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    ck_path = out_dir / "checkpoint.pt"
    metrics_path = out_dir / "metrics.json"
    ck: dict[str, Any] | None = None
    if resume and ck_path.exists():  # checked before any data is loaded: a mismatch fails at once
        ck = load_checkpoint(ck_path)
        diff = config_diff(config_from_dict(ck["config"]), cfg)
        if diff:
            raise ValueError(f"{ck_path}: was trained with a different config: {'; '.join(diff)}; resume with the "
                             "checkpoint's options, or start over with a new --out (or --force)")
        if ck["epoch"] > cfg.epochs:
            raise ValueError(f"{ck_path}: already holds {ck['epoch']} epochs, more than epochs={cfg.epochs}; "
                             f"resume with --epochs {ck['epoch']} or more, or start over with --force")
    if cfg.model is not None:
        # Before any data is loaded or file touched: an operation the integer network cannot run would make
        # the trained network unusable by evaluate, the RTL and the power flow. Built on a forked random
        # stream: a data factory that draws from the global stream (a Python caller may have seeded it)
        # sees what it saw without this check; the real model is built after seeding, below.
        with torch.random.fork_rng(devices=[]):
            kept = check_float_parts(build_training_model(cfg), f"--model {cfg.model}")
        if kept and progress:
            print(f"note: {describe_parts(kept)} {'runs' if len(kept) == 1 else 'run'} in float (--keep-float): "
                  "evaluate runs the float parts in float between the integer layers; the integer export and the "
                  "RTL refuse this network")
    data = load_training_data(cfg)
    x_tr, y_tr = network_inputs(cfg, data.x_train), data.y_train
    x_te, y_te = network_inputs(cfg, data.x_test), data.y_test
    torch.manual_seed(cfg.seed)
    model = build_training_model(cfg)
    if cfg.model is not None or cfg.data is not None:
        check_outputs(model, x_tr, int(max(int(y_tr.max()), int(y_te.max()))) + 1,
                      f"--model {cfg.model}" if cfg.model is not None else f"the {cfg.dataset} network")
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gamma = AdaptiveGamma(gamma0=cfg.gamma0, d_gamma=cfg.d_gamma, error_bound=cfg.error_bound)
    state = TrainState(phase=cfg.method if cfg.method != "axtrain" else "act")
    if ck is not None:
        model = model_from_checkpoint(ck)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        opt.load_state_dict(ck["optimizer"])
        gamma.load_state_dict(ck["gamma"])
        state = TrainState(epoch=ck["epoch"], phase=ck["phase"], history=ck["history"])
    if state.epoch < cfg.epochs:  # metrics.json stays absent until this run is complete
        metrics_path.unlink(missing_ok=True)
        if ck is None:
            ck_path.unlink(missing_ok=True)  # a fresh run: no old checkpoint to mistake for this one
    probe = x_tr[:SENSITIVITY_PROBE]
    n = len(x_tr)
    n_batches = math.ceil(n / cfg.batch_size)
    while state.epoch < cfg.epochs:
        state.phase = phase_for(cfg, state)
        _set_phase(model, cfg, state.phase, x_tr, cfg.seed + state.epoch)
        for group in opt.param_groups:
            group["lr"] = cfg.pas_lr if state.phase == "pas" and cfg.pas_lr is not None else cfg.lr
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 7919 + state.epoch))
        model.train()
        tot_loss = tot_err = 0.0
        bar = tqdm(total=n_batches, desc=f"{cfg.dataset} {state.phase} epoch {state.epoch + 1}/{cfg.epochs}",
                   leave=False, disable=not progress)
        regularize = state.phase == "act" and state.epoch >= cfg.act_warmup
        # Seeded per epoch (not carried across epochs) so that --resume draws the same probes.
        s_gen = torch.Generator().manual_seed(cfg.seed * 7919 + state.epoch + _ESTIMATE_STREAM)
        for i in range(0, n, cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            xb, yb = x_tr[idx], y_tr[idx]
            out, loss = train_step(model, opt, xb, yb, gamma.gamma if regularize else 0.0, cfg.loss,
                                   cfg.sensitivity, cfg.probes, s_gen)
            if not math.isfinite(loss):
                bar.close()
                raise ValueError(f"training diverged: loss is {loss} in epoch {state.epoch + 1}; lower --lr "
                                 "(the last good epoch is in the checkpoint, if any)")
            tot_loss += loss * len(idx)
            tot_err += float((out.argmax(1) != yb).sum())
            bar.update(1)
        bar.close()
        train_error = tot_err / n
        used_gamma = gamma.gamma if regularize else 0.0
        if regularize:
            gamma.update(train_error)
            _recalibrate_batchnorm(model, x_tr, cfg.batch_size)
        model.eval()
        if state.phase == "pas":  # S(w) is a property of the ideal network: measure it in float mode
            set_hardware(model, HardwareConfig(mode="float", bits=cfg.bits))
        s_probe = float(sensitivity(model, probe, create_graph=False))
        if state.phase == "pas":
            set_hardware(model, cfg.pas_hardware())
        # Final formats for export: calibrated on the training data, whatever the phase.
        calibrate_model(model, x_tr)
        record: dict[str, Any] = {
            "epoch": state.epoch + 1,
            "phase": state.phase,
            "loss": tot_loss / n,
            "train_accuracy": 1.0 - train_error,
            "sensitivity": s_probe,
            "gamma": used_gamma,
            "test_accuracy": None,
            "test_accuracy_on": "hardware" if state.phase == "pas" else "float",
        }
        state.history.append(record)
        state.epoch += 1
        ck_now = _checkpoint(cfg, model, opt, gamma, state)
        # pas: the hardware accuracy of exactly this checkpoint, as `axhw evaluate --runs 1 --seed <seed>`
        # computes it. Not the eval-mode model's: measured before this epoch's calibration it described other
        # formats, and its argmax over float32 sigmoid outputs ties where the integer outputs do not (a LeNet-5
        # pas epoch said 0.0980 where evaluate said 0.1095).
        record["test_accuracy"] = (_hardware_accuracy(ck_now, cfg, x_te, y_te) if state.phase == "pas"
                                   else _accuracy(model, x_te, y_te))
        atomic_torch_save(ck_now, ck_path)
        if progress:
            on = f"on hardware ({describe_target(hardware_target(cfg))})" if state.phase == "pas" else "in float"
            print(f"epoch {record['epoch']:3d} [{state.phase}] loss {record['loss']:.4f} "
                  f"S {record['sensitivity']:.4g} gamma {used_gamma:.4g} test acc {record['test_accuracy']:.4f} {on}")
    set_hardware(model, HardwareConfig(mode="float", bits=cfg.bits))
    acc_float = _accuracy(model, x_te, y_te)
    target = hardware_target(cfg)
    last = state.history[-1] if state.history else {}
    # A pas epoch's test accuracy is already this checkpoint's on this target (same function, same chip).
    acc_hw = (float(last["test_accuracy"]) if last.get("test_accuracy_on") == "hardware" else
              _hardware_accuracy(_checkpoint(cfg, model, opt, gamma, state), cfg, x_te, y_te))
    from axhw.arith.verification import coverage

    covered, message = coverage(cfg.multiplier, cfg.bits)
    metrics = {
        "dataset": cfg.dataset,
        "rtl_coverage": {"multiplier": cfg.multiplier, "covered": covered, "message": message,
                         "circuit": _circuit_of(cfg)},
        "method": cfg.method,
        "seed": cfg.seed,
        "config": asdict(cfg),
        # The headline (targets_hardware), and both accuracies labelled by what they measure.
        "test_accuracy": acc_hw if targets_hardware(cfg) else acc_float,
        "test_accuracy_of": "hardware" if targets_hardware(cfg) else "float",
        "test_accuracy_float": acc_float,
        "test_accuracy_hardware": acc_hw,
        "hardware_target": target,
        "final_phase": state.phase,
        "history": state.history,
        # Which samples trained, which validate (the study's selections) and which test: counts and a digest
        # of the validation samples, so a run on another split is recognized (docs/power.md).
        "split": split_record(cfg, data),
        # What decided the float rounding: reproducible mode, torch's CPU dispatch, threads (the last run's,
        # for a resumed one); axhw.common.reproducible.
        "runtime": reproducible.describe(),
        "numerics": numerics.describe(),  # which numerics code produced it (axhw.common.numerics)
    }
    atomic_write_json(metrics, metrics_path)
    return metrics
