"""Reproducible mode (axhw.common.reproducible): the same seed gives bit-identical weights whatever the CPU
dispatch, MKL's path and the thread count; without it they differ (so the check can fail)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from axhw.apps.cli import build_parser
from axhw.common import reproducible


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Every variable reproducible mode sets, restored after the test (apply() writes os.environ)."""
    for name in (*reproducible.ENV, reproducible.VARIABLE):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(reproducible._state, "active", False)
    return monkeypatch


def test_requested_reads_the_flag_then_the_variable(clean_env: pytest.MonkeyPatch) -> None:
    assert not reproducible.requested()
    clean_env.setenv(reproducible.VARIABLE, "1")
    assert reproducible.requested() and not reproducible.requested(False)
    clean_env.setenv(reproducible.VARIABLE, "maybe")
    with pytest.raises(ValueError, match=r"AXHW_REPRODUCIBLE='maybe': valid values are 1 \(on\) and 0 \(off\)"):
        reproducible.requested()


def test_apply_refuses_a_torch_loaded_with_another_dispatch(clean_env: pytest.MonkeyPatch) -> None:
    threads = torch.get_num_threads()
    try:
        if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
            assert reproducible.apply() == [] and torch.get_num_threads() == 1
            assert all(os.environ[k] == v for k, v in reproducible.ENV.items()) and reproducible.active()
        else:  # this pytest process loaded torch with the CPU's own dispatch: apply cannot change it any more
            with pytest.raises(ValueError, match=r"needs torch's default CPU dispatch, but torch was loaded with"):
                reproducible.apply()
            assert not reproducible.active() and reproducible.VARIABLE not in os.environ  # nothing half-applied
        assert not reproducible.describe()["reproducible"] or torch.backends.cpu.get_cpu_capability() == "DEFAULT"
    finally:
        torch.set_num_threads(threads)


def test_training_commands_take_the_option_with_their_defaults() -> None:
    p = build_parser()
    for argv, default in [(["train", "--method", "bp", "--out", "o"], False), (["accuracy", "--dataset", "x", "--out",
                          "o"], False), (["sweep", "e.toml", "--out", "o"], False), (["reproduce", "all", "--out", "o"],
                          True), (["demo"], True), (["power", "report", "--out", "o"], True)]:
        args = p.parse_args(argv)
        assert args.reproducible is None and args.reproducible_default is default, argv
        assert p.parse_args([*argv, "--no-reproducible"]).reproducible is False


def test_published_commands_fall_back_where_torch_is_loaded(clean_env) -> None:
    from axhw.apps.cli import _reproducible_mode

    args = build_parser().parse_args(["demo"])  # on by default; this pytest process loaded torch already
    _reproducible_mode(args)
    if torch.backends.cpu.get_cpu_capability() != "DEFAULT":
        assert not reproducible.active() and not reproducible.describe()["reproducible"]
        clean_env.setenv(reproducible.VARIABLE, "1")  # asked for explicitly: an error, not a note
        with pytest.raises(ValueError, match="needs torch's default CPU dispatch"):
            _reproducible_mode(args)
        assert not reproducible.active()


def _weights(run: Path) -> str:
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    tensors = [v for _, v in sorted(ck["model"].items()) if v.is_floating_point()]
    return hashlib.sha256(b"".join(t.numpy().tobytes() for t in tensors)).hexdigest()


@pytest.mark.slow
def test_same_weights_for_any_dispatch_and_thread_count(tmp_path: Path, mnist_or_synthetic: str) -> None:
    """LeNet-like CNN on MNIST (convolutions: oneDNN; dense layers: MKL): identical weights in reproducible mode
    with 1 and 2 threads and with the dispatch variables preset otherwise; without it 1 and 2 threads differ."""
    base = [sys.executable, "-m", "axhw.apps.cli", "train", "--dataset", "mnist_cnn", "--method", "bp", "--epochs",
            "1", "--limit", "500", "--quiet"]
    env = {k: v for k, v in os.environ.items() if k not in (*reproducible.ENV, reproducible.VARIABLE)}

    def train(name: str, *extra: str, **more_env: str) -> str:
        subprocess.run([*base, *extra, "--out", str(tmp_path / name)], check=True, capture_output=True,
                       env={**env, **more_env, "OMP_WAIT_POLICY": "PASSIVE"}, timeout=600)
        return _weights(tmp_path / name)

    same = {train("r1", "--threads", "1", "--reproducible"), train("r2", "--threads", "2", "--reproducible"),
            train("rcpu", "--threads", "1", "--reproducible", ATEN_CPU_CAPABILITY="avx2", MKL_CBWR="AUTO"),
            train("renv", "--threads", "2", AXHW_REPRODUCIBLE="1")}
    assert len(same) == 1
    runtime = json.loads((tmp_path / "r2" / "metrics.json").read_text())["runtime"]
    assert runtime["reproducible"] and runtime["cpu_capability"] == "DEFAULT" and runtime["torch_threads"] == 1
    if mnist_or_synthetic == "real":  # measured on real MNIST: the thread count changes the weights otherwise
        assert train("t1", "--threads", "1") != train("t2", "--threads", "2")
        assert not json.loads((tmp_path / "t2" / "metrics.json").read_text())["runtime"]["reproducible"]


def test_cached_runs_are_reused_only_in_the_mode_they_were_trained_in(clean_env: pytest.MonkeyPatch) -> None:
    from axhw.training.sweep import TrainTask
    from axhw.training.trainer import TrainConfig, finished_here

    cfg = TrainConfig(dataset="breast_cancer", method="bp", epochs=1)
    plain = {"config": asdict(cfg), "runtime": {"reproducible": False}}
    legacy = {"config": asdict(cfg)}  # written before the mode existed
    pinned = {"config": asdict(cfg), "runtime": {"reproducible": True}}
    key = TrainTask(cfg).key
    assert finished_here(plain, cfg) and finished_here(legacy, cfg) and finished_here(pinned, cfg)
    clean_env.setenv(reproducible.VARIABLE, "1")
    assert not finished_here(plain, cfg) and not finished_here(legacy, cfg) and finished_here(pinned, cfg)
    assert TrainTask(cfg).key != key  # the sweep's cache keeps the two apart too
