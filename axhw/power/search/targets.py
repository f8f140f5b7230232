"""AxTrain networks trained *for* each candidate configuration of the minimum-power search (docs/power.md,
"Minimum-power search").

AxTrain (paper section 3) is AxTrain-act until E and S converge, then AxTrain-pas for a target: the pas
forward pass runs the target's multiplier and the NTV flips of its SRAM voltage (eq. 12 STE backward). A
designer who wants the cheapest accelerator fine-tunes for each candidate and keeps the cheapest that meets
the accuracy bound (paper section 5, Fig. 9), so the search needs one AxTrain network per candidate.

What is shared, precisely: the act phase runs the float network and never reads the target
(``TrainConfig.multiplier`` and ``voltage_mv`` enter training only through ``pas_hardware()``), and when act
ends is decided by :func:`axhw.training.trainer.phase_for` from the act history alone. So the first ``B`` epochs of
``axtrain`` are the same for every target. They are trained once per (data set, seed, settings) as an
``act`` run, ``B`` found by axtrain's own phase rule on its history (:meth:`TargetNetworks.act`); each
target then starts from a copy of that checkpoint relabelled with its configuration and resumes
(``train(..., resume=True)``), so only its pas epochs run. ``tests/power/test_per_target.py`` checks that the result equals training
``axtrain`` for that target from scratch, weight for weight and epoch record for epoch record.

Everything is cached like the sweeps (:mod:`axhw.training.sweep`): a finished network is reused when its
``metrics.json`` holds exactly the requested configuration (:func:`axhw.training.trainer.train_cached`), an
interrupted one resumes from its last epoch, and evaluations and gate-level power measurements are stored
under the SHA-256 of the checkpoint file they measured, so a re-run trains and simulates nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from axhw.arith.sram import NOMINAL_MV
from axhw.common.io import atomic_torch_save, atomic_write_json
from axhw.training.trainer import TrainConfig, config_diff, config_from_dict, load_checkpoint, train

__all__ = ["Ledger", "ResultCache", "TargetNetworks", "file_digest", "is_finished"]

_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes (memoised by path, size and mtime): the identity of a trained network."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = hashlib.sha256(p.read_bytes()).hexdigest()
    return _DIGESTS[key]


def _short_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


@dataclass
class Ledger:
    """What the study cost: networks trained (epochs run) and reused, gate-level simulations run."""

    trained: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    epochs_trained: int = 0
    simulations: int = 0
    evaluations: int = 0
    started: float = field(default_factory=time.monotonic)

    def note(self, label: str, trained: bool) -> None:
        """Record one network (a network looked up again is counted once)."""
        if trained:
            self.trained.append(label)
        elif label not in self.trained and label not in self.reused:
            self.reused.append(label)

    def as_dict(self) -> dict[str, Any]:
        return {"trainings_run": len(self.trained), "trainings_reused": len(self.reused),
                "epochs_trained": self.epochs_trained, "gate_level_simulations": self.simulations,
                "evaluations_run": self.evaluations, "wall_s": time.monotonic() - self.started,
                "trained": self.trained}


class ResultCache:
    """JSON results (evaluations, power measurements) under ``root/<kind>/<key>.json``; keys hash the
    checkpoint's bytes, every setting and the numerics stamp (:func:`axhw.common.numerics.stamp`, or
    ``numerics`` when given), so a stale entry can never be read for a retrained network or changed numerics."""

    def __init__(self, root: str | Path, numerics: str | None = None) -> None:
        from axhw.common.numerics import stamp

        self.root = Path(root)
        self.numerics = numerics if numerics is not None else stamp()

    def _keyed(self, payload: dict[str, Any]) -> dict[str, Any]:
        return json.loads(json.dumps({**payload, "numerics": self.numerics}, default=str))

    def path(self, kind: str, payload: dict[str, Any]) -> Path:
        return self.root / kind / f"{_short_hash(self._keyed(payload))}.json"

    def get(self, kind: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        p = self.path(kind, payload)
        if not p.is_file():
            return None
        saved = json.loads(p.read_text())
        return saved["result"] if saved.get("payload") == self._keyed(payload) else None

    def put(self, kind: str, payload: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        atomic_write_json({"payload": self._keyed(payload), "result": result}, self.path(kind, payload))
        return result


def is_finished(out_dir: Path, cfg: TrainConfig) -> bool:
    """Whether ``out_dir`` holds a finished run of exactly ``cfg`` (what :func:`~axhw.training.trainer.train_cached` reuses)."""
    from axhw.training.trainer import finished_here

    metrics = out_dir / "metrics.json"
    if not metrics.is_file():
        return False
    saved = json.loads(metrics.read_text())
    return saved.get("config") == asdict(cfg) and finished_here(saved, cfg)


class TargetNetworks:
    """The AxTrain networks of one (data set, seed, settings): one act phase, one pas phase per target.

    Args:
        base: the ``axtrain`` configuration (its ``multiplier`` and ``voltage_mv`` are replaced per target).
        root: folder of the act run and of one ``axtrain-<mode>-<mV>mV-<hash>`` folder per target.
        ledger: counts trainings run and reused.
        progress: per-epoch lines while training.
    """

    def __init__(self, base: TrainConfig, root: str | Path, ledger: Ledger, progress: bool = False) -> None:
        if base.method != "axtrain":
            raise ValueError(f"TargetNetworks trains axtrain networks, got method {base.method!r}")
        self.base = replace(base, multiplier="exact", voltage_mv=NOMINAL_MV)
        self.root = Path(root)
        self.ledger = ledger
        self.progress = progress
        self._act: Path | None = None

    def target_config(self, mode: str, voltage_mv: float) -> TrainConfig:
        return replace(self.base, multiplier=mode, voltage_mv=float(voltage_mv))

    def act(self) -> Path:
        """The checkpoint at the end of AxTrain's act phase (epoch ``B``, where axtrain switches to pas).

        One ``act`` run for axtrain's whole act budget (``epochs - pas_epochs``); ``B`` is then the first epoch
        at which axtrain's phase rule, applied to that run's history, says pas. When act converged earlier
        (``B`` below the budget), a second ``act`` run of ``B`` epochs gives that checkpoint (``act`` runs of
        different lengths agree epoch for epoch: the length only ends the loop).
        """
        if self._act is not None:
            return self._act
        from axhw.training.trainer import TrainState, phase_for, train_cached

        budget = self.base.epochs - self.base.pas_epochs
        act_cfg = replace(self.base, method="act", epochs=budget)
        tag = _short_hash(asdict(self.base))  # the act budget and the phase rule depend on epochs, pas_epochs
        ran = 0  # epochs trained here
        full = self.root / f"act-{tag}"
        ran += 0 if is_finished(full, act_cfg) else budget
        ck_path = train_cached(act_cfg, full, resume=True, progress=self.progress)
        history = json.loads((full / "metrics.json").read_text())["history"]
        boundary = next(e for e in range(budget + 1)
                        if phase_for(self.base, TrainState(epoch=e, phase="act", history=history[:e])) == "pas")
        if boundary < budget:
            short = replace(act_cfg, epochs=boundary)
            out = self.root / f"act-{tag}-e{boundary}"
            ran += 0 if is_finished(out, short) else boundary
            ck_path = train_cached(short, out, resume=True, progress=self.progress)
        self.ledger.epochs_trained += ran
        self.ledger.note(f"{self.base.dataset}/s{self.base.seed}/act", trained=ran > 0)
        self._act = ck_path
        return ck_path

    def checkpoint(self, mode: str, voltage_mv: float) -> Path:
        """The AxTrain network trained for (``mode``, ``voltage_mv``): trained, resumed or reused."""
        from axhw.arith.library import circuit_of

        cfg = self.target_config(mode, voltage_mv)
        out = self.root / f"axtrain-{mode}-{voltage_mv:g}mV-{_short_hash(asdict(cfg))}"
        ck_path = out / "checkpoint.pt"
        label = f"{cfg.dataset}/s{cfg.seed}/axtrain-{mode}-{voltage_mv:g}mV"
        if is_finished(out, cfg):
            self.ledger.note(label, trained=False)
            return ck_path
        start = 0
        if ck_path.exists() and not config_diff(config_from_dict(load_checkpoint(ck_path)["config"]), cfg):
            start = load_checkpoint(ck_path)["epoch"]  # an interrupted pas phase: resume it
        else:
            act = load_checkpoint(self.act())
            start = act["epoch"]
            seeded = {**act, "config": asdict(cfg), "multiplier_circuit": circuit_of(cfg.pas_hardware().get_multiplier())}
            atomic_torch_save(seeded, ck_path)
        train(cfg, out, resume=True, progress=self.progress)
        self.ledger.epochs_trained += cfg.epochs - start
        self.ledger.note(label, trained=True)
        return ck_path
