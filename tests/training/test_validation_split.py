"""The validation split (docs/power.md, "Selection on validation data"): carved from the training samples,
seeded and stratified, disjoint from both other splits, scored by ``evaluate(split="val")``, recorded in the
run, and a run without one never taken for a run with one."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch

from axhw.data import load
from axhw.data.loaders import carve_validation
from axhw.data.registry import DataError
from axhw.training.evaluate import evaluate
from axhw.training.trainer import LEGACY_DEFAULTS, TrainConfig, config_from_dict, same_config, train


def test_carved_from_training_disjoint_stratified_and_test_unmoved() -> None:
    plain = load("breast_cancer", seed=3)
    held = load("breast_cancer", seed=3, val_fraction=0.2)
    # the test split does not move when a validation split is carved
    assert torch.equal(plain.y_test, held.y_test)
    n_train = len(plain.y_train)
    assert len(held.y_val) == round(0.2 * n_train)
    assert len(held.y_train) + len(held.y_val) == n_train
    # raw rows (each split's own standardization undone): the held-out rows are training rows, none is a test row
    def raw(d, x: torch.Tensor) -> torch.Tensor:
        return x.double() * d.std.double() + d.mean.double()

    def nearest(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cdist(a, b).min(dim=1).values

    tr, va, te = raw(held, held.x_train), raw(held, held.x_val), raw(held, held.x_test)
    base = raw(plain, plain.x_train)
    assert float(nearest(va, base).max()) < 1e-2 and float(nearest(tr, base).max()) < 1e-2
    assert float(nearest(va, te).min()) > 1e-2 and float(nearest(va, tr).min()) > 1e-2
    # stratified: class shares within one sample of the training split's
    counts = np.bincount(held.y_val.numpy(), minlength=2)
    expect = np.bincount(plain.y_train.numpy(), minlength=2) * len(held.y_val) / n_train
    assert np.all(np.abs(counts - expect) <= 1)
    # standardized with what is left to train on, not with the validation samples
    assert torch.allclose(held.x_train.mean(0), torch.zeros(held.n_features), atol=1e-5)
    assert not torch.allclose(held.x_val.mean(0), torch.zeros(held.n_features), atol=1e-3)


def test_seeded_and_reproducible() -> None:
    a, b = load("ionosphere", seed=1, val_fraction=0.25), load("ionosphere", seed=1, val_fraction=0.25)
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_val, b.y_val)
    c = load("ionosphere", seed=2, val_fraction=0.25)
    assert not torch.equal(a.x_val, c.x_val)


def test_carve_validation_edges() -> None:
    tr, va = carve_validation(np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1]), 0.2, 0)
    assert len(va) == 2 and sorted(np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])[va].tolist()) == [0, 1]
    assert sorted([*tr, *va]) == list(range(10))
    # a class with one sample: no stratification, still a seeded split of the right size
    tr, va = carve_validation(np.array([0, 0, 0, 0, 1]), 0.4, 0)
    assert len(va) == 2 and len(tr) == 3
    with pytest.raises(DataError, match=r"val_fraction=1\.5 out of range"):
        carve_validation(np.array([0, 1]), 1.5, 0)
    with pytest.raises(DataError, match="has no validation split"):
        load("breast_cancer").split("val")


def test_legacy_runs_read_back_without_a_validation_split() -> None:
    cfg = TrainConfig(val_fraction=0.2)
    saved = {k: v for k, v in asdict(cfg).items() if k != "val_fraction"}  # a metrics.json from before the field
    assert LEGACY_DEFAULTS["val_fraction"] == 0.0
    assert config_from_dict(saved).val_fraction == 0.0
    assert not same_config(saved, cfg)  # never reused where a validation split is asked for
    assert same_config(saved, TrainConfig(val_fraction=0.0))
    with pytest.raises(ValueError, match=r"val_fraction=0\.7 out of range"):
        TrainConfig(val_fraction=0.7)


def test_train_records_split_and_evaluate_scores_it(tmp_path) -> None:
    cfg = TrainConfig(dataset="breast_cancer", epochs=2, seed=1, val_fraction=0.25)
    metrics = train(cfg, tmp_path, progress=False)
    data = load("breast_cancer", seed=1, val_fraction=0.25)
    split = metrics["split"]
    assert split["val"] == len(data.y_val) == round(0.25 * (len(data.y_train) + len(data.y_val)))
    assert split["train"] == len(data.y_train) and split["test"] == len(data.y_test)
    assert json.loads((tmp_path / "metrics.json").read_text())["split"]["val_digest"] == split["val_digest"]
    ck = tmp_path / "checkpoint.pt"
    val = evaluate(ck, split="val", runs=1)
    test = evaluate(ck, split="test", runs=1)
    assert val.split == "val" and "on the val split" in val.summary()
    # the fractions are of the samples each split holds: k / n exactly
    assert (val.accuracy_mean * len(data.y_val)) == pytest.approx(round(val.accuracy_mean * len(data.y_val)), abs=1e-9)
    assert test.accuracy_mean == metrics["test_accuracy_hardware"]
    plain = tmp_path / "plain"
    train(TrainConfig(dataset="breast_cancer", epochs=1, seed=1), plain, progress=False)
    with pytest.raises(ValueError, match="trained without a validation split"):
        evaluate(plain / "checkpoint.pt", split="val", runs=1)
