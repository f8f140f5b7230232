"""What ``axhw train`` and ``axhw evaluate`` report (docs/training.md, "Which accuracy"): the float and the
hardware test accuracy, labelled, the hardware one computed as ``evaluate`` computes it; and the integer
evaluation streamed in batches, equal bit for bit to one pass over the whole test set."""

import json
from pathlib import Path

import pytest
import torch

import axhw.training.trainer as trainer
from axhw.apps.cli import main
from axhw.arith.registry import get_multiplier
from axhw.arith.sram import NTVStorage
from axhw.golden.network import QuantizedNetwork
from axhw.nn import HardwareConfig, calibrate_model, to_quantized
from axhw.training.evaluate import evaluate
from axhw.training.models import build_model
from axhw.training.trainer import (
    TrainConfig,
    _accuracy,
    config_from_dict,
    integer_accuracy,
    integer_batch_size,
    integer_outputs,
    load_checkpoint,
    load_training_data,
    model_from_checkpoint,
    network_inputs,
    output_loss,
    quantized_from_checkpoint,
    train,
)

#: axtrain for K2 at 660 mV (NTV flips), chip seed 2: a seed other than evaluate's default 0.
AXTRAIN = TrainConfig(method="axtrain", epochs=2, pas_epochs=1, multiplier="K2", voltage_mv=660, seed=2, limit=200)


@pytest.fixture(scope="module")
def axtrain_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("axtrain")
    return d, train(AXTRAIN, d, progress=False)


def test_train_stores_float_and_hardware_accuracy_labelled(axtrain_run):
    d, m = axtrain_run
    saved = json.loads((d / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(m))
    assert saved["hardware_target"] == {"multiplier": "K2", "circuit": "drum2", "voltage_mv": 660.0,
                                        "flip_p": NTVStorage(660).flip_p, "chip_seed": 2, "bits": 8}
    # the two differ here, so the headline below tells which one it is
    assert saved["test_accuracy_float"] != saved["test_accuracy_hardware"]
    assert saved["test_accuracy_of"] == "hardware" and saved["test_accuracy"] == saved["test_accuracy_hardware"]
    # hardware: exactly `axhw evaluate --multiplier K2 --voltage 660 --runs 1 --seed 2` (the integer network)
    ck_path = d / "checkpoint.pt"
    assert saved["test_accuracy_hardware"] == evaluate(ck_path, "K2", 660, runs=1, seed=2).accuracy_mean
    # float: the float network of the checkpoint
    ck = load_checkpoint(ck_path)
    cfg = config_from_dict(ck["config"])
    data = load_training_data(cfg)
    assert saved["test_accuracy_float"] == _accuracy(model_from_checkpoint(ck), network_inputs(cfg, data.x_test),
                                                     data.y_test)
    # per epoch: act in float, pas on the hardware of the checkpoint saved at that epoch (here the last)
    act, pas = saved["history"]
    assert (act["phase"], act["test_accuracy_on"]) == ("act", "float")
    assert (pas["phase"], pas["test_accuracy_on"]) == ("pas", "hardware")
    assert pas["test_accuracy"] == saved["test_accuracy_hardware"]


def test_headline_rule(tmp_path):
    """bp on exact at 1100 mV names no hardware: the headline stays float (what the accuracy matrix reads);
    a multiplier (or voltage) names the hardware, and bp's headline is then that hardware's accuracy."""
    plain = train(TrainConfig(method="bp", epochs=2, limit=200, seed=1), tmp_path / "plain", progress=False)
    assert plain["test_accuracy_of"] == "float" and plain["test_accuracy"] == plain["test_accuracy_float"]
    assert plain["hardware_target"]["chip_seed"] is None  # no flips at 1100 mV: every chip is the same
    assert plain["test_accuracy_hardware"] == evaluate(tmp_path / "plain" / "checkpoint.pt", runs=1).accuracy_mean
    k1 = train(TrainConfig(method="bp", epochs=2, limit=200, seed=1, multiplier="K1"), tmp_path / "k1", progress=False)
    assert k1["test_accuracy_of"] == "hardware" and k1["test_accuracy"] == k1["test_accuracy_hardware"]
    assert k1["test_accuracy_float"] == plain["test_accuracy_float"]  # bp does not train on the multiplier
    assert k1["test_accuracy_hardware"] == evaluate(tmp_path / "k1" / "checkpoint.pt", "K1", runs=1).accuracy_mean
    ntv = train(TrainConfig(method="bp", epochs=2, limit=200, seed=1, voltage_mv=850), tmp_path / "v", progress=False)
    assert ntv["test_accuracy_of"] == "hardware" and ntv["hardware_target"]["chip_seed"] == 1


def test_cli_prints_both_accuracies_labelled(tmp_path, capsys):
    argv = ["train", "--dataset", "breast_cancer", "--method", "axtrain", "--epochs", "2", "--pas-epochs", "1",
            "--multiplier", "K2", "--voltage", "660", "--seed", "2", "--limit", "200", "--threads", "1"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    epochs = [line for line in out.splitlines() if line.startswith("epoch")]
    assert epochs[0].endswith("in float") and epochs[1].endswith(
        f"test acc {m['history'][1]['test_accuracy']:.4f} on hardware (K2, 660 mV, chip seed 2)")
    assert (f"breast_cancer axtrain seed 2: test accuracy {m['test_accuracy_hardware']:.4f} on hardware "
            f"(K2, 660 mV, chip seed 2); float {m['test_accuracy_float']:.4f} -> ") in out
    assert main(["train", "--dataset", "breast_cancer", "--method", "bp", "--epochs", "1", "--limit", "200",
                 "--quiet", "--threads", "1", "--out", str(tmp_path / "bp")]) == 0
    bp = json.loads((tmp_path / "bp" / "metrics.json").read_text())
    assert (f"test accuracy {bp['test_accuracy_float']:.4f} in float; on hardware (exact, 1100 mV) "
            f"{bp['test_accuracy_hardware']:.4f} -> ") in capsys.readouterr().out
    ck = str(tmp_path / "run" / "checkpoint.pt")
    assert main(["evaluate", "--checkpoint", ck, "--multiplier", "K2", "--voltage", "660", "--runs", "1", "--seed",
                 "2", "--threads", "1"]) == 0
    assert (f"breast_cancer axtrain | drum2 @ 660 mV, chip seed 2: hardware accuracy "
            f"{m['test_accuracy_hardware']:.4f} +- 0.0000") in capsys.readouterr().out
    assert main(["evaluate", "--checkpoint", ck, "--multiplier", "K2", "--voltage", "660", "--runs", "3",
                 "--threads", "1"]) == 0
    assert "drum2 @ 660 mV, 3 chips (seeds 0..2): hardware accuracy" in capsys.readouterr().out
    assert main(["evaluate", "--checkpoint", ck, "--runs", "3", "--threads", "1"]) == 0
    assert "exact @ 1100 mV (no bit flips): hardware accuracy" in capsys.readouterr().out


def _lenet() -> QuantizedNetwork:
    torch.manual_seed(0)
    model = build_model("mnist_cnn", HardwareConfig(mode="quantized"))
    calibrate_model(model, torch.rand(64, 1, 28, 28))
    return to_quantized(model)


def test_streamed_outputs_equal_one_pass_bit_for_bit():
    """One chip drawn before the first batch and held (NTV at 660 mV, K2): any batch size gives the
    outputs of one forward_int over all samples."""
    qnet = _lenet()
    x = torch.rand(23, 1, 28, 28)
    mul = get_multiplier("K2")
    whole = qnet.forward_int(qnet.quantize_input(x), mul, storage=NTVStorage(660),
                             generator=torch.Generator().manual_seed(5))
    for batch_size in (1, 4, 23, None):
        got = integer_outputs(qnet, x, mul, NTVStorage(660), torch.Generator().manual_seed(5), batch_size)
        assert torch.equal(got, whole), batch_size


def test_batch_size_from_the_bytes_per_sample():
    """LeNet-5, per sample in 8-byte values: the op outputs forward_int keeps (15,002), 4 x the largest
    (conv1, 6x28x28), 3 x the largest im2col (conv1: 25 x 784) and 2 x the input (784): 753,488 bytes."""
    qnet = _lenet()
    x_int = qnet.quantize_input(torch.rand(1, 1, 28, 28))
    per_sample = 8 * (15_002 + 4 * 4704 + 3 * 25 * 784 + 2 * 784)
    assert per_sample == 753_488
    assert integer_batch_size(qnet, x_int, get_multiplier("exact")) == (64 << 20) // per_sample == 89
    assert integer_batch_size(qnet, x_int, get_multiplier("exact"), budget=10 * per_sample) == 10
    assert integer_batch_size(qnet, x_int, get_multiplier("exact"), budget=1) == 1


def test_evaluate_streams_and_equals_the_whole_test_set(axtrain_run, monkeypatch):
    """evaluate in batches of 7 samples gives the accuracies and losses of one pass over the whole test set
    (the computation before streaming), bit for bit, run by run (a chip each)."""
    d, _ = axtrain_run
    ck_path = d / "checkpoint.pt"
    ck = load_checkpoint(ck_path)
    cfg = config_from_dict(ck["config"])
    qnet = quantized_from_checkpoint(ck)
    data = load_training_data(cfg)
    x, y = network_inputs(cfg, data.x_test), data.y_test
    mul = get_multiplier("K2")
    accs, losses = [], []
    for r in range(3):
        out = qnet.forward_int(qnet.quantize_input(x), mul, storage=NTVStorage(660),
                               generator=torch.Generator().manual_seed(4 + r))
        logits = qnet.output_fmt.dequantize(out, torch.float64)
        accs.append(float((out.argmax(1) == y).double().mean()))
        losses.append(float(output_loss(torch.sigmoid(logits), y, cfg.loss)))
    per_sample = (64 << 20) // integer_batch_size(qnet, qnet.quantize_input(x[:1]), mul)
    monkeypatch.setattr(trainer, "INTEGER_BATCH_BYTES", 7 * per_sample)
    calls = []
    forward_int = type(qnet).forward_int
    monkeypatch.setattr(type(qnet), "forward_int", lambda self, x_int, *a, **k: (
        calls.append(len(x_int)), forward_int(self, x_int, *a, **k))[1])
    r = evaluate(ck_path, "K2", 660, runs=3, seed=4)
    assert max(calls) == 7 and len(calls) > 3 * (len(x) // 7)  # streamed in batches of 7
    assert r.accuracies == accs and r.losses == losses
    assert (r.accuracies[0], r.losses[0]) == integer_accuracy(qnet, x, y, mul, NTVStorage(660),
                                                              torch.Generator().manual_seed(4), cfg.loss)


def test_keep_float_network_hardware_accuracy_is_evaluates(tmp_path, monkeypatch):
    """A network with parts kept float has no integer network: train's hardware accuracy is then evaluate's
    eval-mode hardware model, the same chip (seed 2), exactly."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # user_models
    cfg = TrainConfig(dataset="separable", model="user_models:gelu_mlp", data="user_models:separable",
                      keep_float=["act", "tanh"], method="axtrain", epochs=2, pas_epochs=1, multiplier="K2",
                      voltage_mv=660, seed=2, lr=0.01)
    m = train(cfg, tmp_path, progress=False)
    r = evaluate(tmp_path / "checkpoint.pt", "K2", 660, runs=1, seed=2)
    assert r.float_parts and m["test_accuracy"] == m["test_accuracy_hardware"] == r.accuracy_mean
    assert m["history"][-1]["test_accuracy"] == r.accuracy_mean
