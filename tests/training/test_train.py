"""The trainer (bp, act, pas, axtrain), checkpoints, resume and hardware evaluation on breast cancer."""

import json
import statistics
from pathlib import Path

import pytest
import torch

from axhw.apps.cli import main
from axhw.arith.registry import get_multiplier
from axhw.arith.sram import NTVStorage
from axhw.training.evaluate import evaluate
from axhw.training.trainer import (
    TrainConfig,
    config_from_dict,
    integer_test_inputs,
    load_checkpoint,
    load_training_data,
    quantized_from_checkpoint,
    train,
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = {}
    for method in ("bp", "act", "pas", "axtrain"):
        d = tmp_path_factory.mktemp(method)
        cfg = TrainConfig(method=method, epochs=3, pas_epochs=1, multiplier="K2", voltage_mv=850, seed=1)
        out[method] = (d, train(cfg, d, progress=False))
    return out


def test_metrics_and_history(runs):
    for method, (d, m) in runs.items():
        saved = json.loads((d / "metrics.json").read_text())
        assert saved["method"] == method and saved["dataset"] == "breast_cancer" and saved["seed"] == 1
        assert len(saved["history"]) == 3
        for h in saved["history"]:
            assert {"loss", "sensitivity", "gamma", "test_accuracy"} <= h.keys()
        assert m["test_accuracy"] > 0.85, (method, m["test_accuracy"])
    phases = [h["phase"] for h in runs["axtrain"][1]["history"]]
    assert phases[0] == "act" and phases[-1] == "pas"
    act_gammas = [h["gamma"] for h in runs["act"][1]["history"]]
    assert act_gammas[0] == 0.0  # one warm-up epoch on E alone (act_warmup=1)
    assert act_gammas[1] == pytest.approx(1e-3)
    assert act_gammas[2] in (pytest.approx(5e-4), pytest.approx(1.5e-3))  # adapted per epoch


def test_act_lowers_sensitivity_vs_bp(runs):
    s_bp = runs["bp"][1]["history"][-1]["sensitivity"]
    s_act = runs["act"][1]["history"][-1]["sensitivity"]
    assert s_act < s_bp


def test_same_seed_same_numbers(runs, tmp_path):
    m = train(TrainConfig(method="bp", epochs=3, seed=1), tmp_path, progress=False)
    assert m["history"] == runs["bp"][1]["history"]


def test_resume_continues_identically(tmp_path):
    full = train(TrainConfig(method="act", epochs=3, seed=2), tmp_path / "full", progress=False)
    train(TrainConfig(method="act", epochs=2, seed=2), tmp_path / "part", progress=False)
    resumed = train(TrainConfig(method="act", epochs=3, seed=2), tmp_path / "part", resume=True, progress=False)
    assert resumed["history"] == full["history"]


def test_evaluate_uses_integer_model(runs):
    d, _m = runs["bp"]
    ck = load_checkpoint(d / "checkpoint.pt")
    qnet = quantized_from_checkpoint(ck)
    assert qnet.layers[0].weight.dtype == torch.int64
    exact = evaluate(d / "checkpoint.pt", "exact", 1100, runs=5)
    assert exact.accuracy_std == 0 and len(exact.accuracies) == 5
    ntv = evaluate(d / "checkpoint.pt", "K1", 400, runs=5, seed=3)
    assert ntv.accuracy_mean < exact.accuracy_mean and ntv.accuracy_std > 0
    # run r is one chip seeded seed + r: its accuracy recomputed from the integer network; mean and
    # population std over the five runs
    q, x_int = integer_test_inputs(ck)
    y = load_training_data(config_from_dict(ck["config"])).y_test
    for r in (0, 4):
        out = q.forward_int(x_int, get_multiplier("K1"), storage=NTVStorage(400),
                            generator=torch.Generator().manual_seed(3 + r))
        assert ntv.accuracies[r] == float((out.argmax(1) == y).double().mean())
    assert ntv.accuracy_mean == pytest.approx(statistics.fmean(ntv.accuracies), rel=1e-12)
    assert ntv.accuracy_std == pytest.approx(statistics.pstdev(ntv.accuracies), rel=1e-12)
    assert evaluate(d / "checkpoint.pt", "K1", 400, runs=5, seed=3) == ntv  # seeded


def test_cli_train_evaluate_and_bad_input(tmp_path, capsys):
    assert main(["train", "--dataset", "breast_cancer", "--method", "bp", "--epochs", "1", "--out",
                 str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "metrics.json").exists()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "checkpoint.pt"), "--multiplier", "K3",
                 "--voltage", "660", "--runs", "3"]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert json.loads((tmp_path / "eval_drum3_660mV.json").read_text())["runs"] == 3
    assert main(["train", "--dataset", "cifar", "--method", "bp", "--out", str(tmp_path / "x")]) == 2
    assert "valid datasets" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "bad.pt")]) == 2
    assert "corrupt checkpoint" in capsys.readouterr().err


class _RunsCode:
    """A pickle payload that calls a function when unpickled (what a malicious checkpoint.pt carries)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def test_code_carrying_checkpoint_is_refused_and_never_runs(tmp_path, capsys):
    """Every command that takes a user's checkpoint reads it with weights_only=True: a pickle that would call
    a function (here Path.touch) is refused in one line and the function never runs."""
    marker = tmp_path / "ran"
    bad = tmp_path / "checkpoint.pt"
    torch.save({"format": "axhw.checkpoint", "payload": _RunsCode(marker)}, bad)
    for argv in (["evaluate", "--checkpoint", str(bad)],
                 ["power", "report", "--network", str(bad), "--out", str(tmp_path / "p")],
                 ["rtl", "verify", "--design", "array", "--network", str(bad)],
                 ["approxann", "--checkpoint", str(bad), "--out", str(tmp_path / "a")],
                 ["power", "accel", "--network", str(bad), "--out", str(tmp_path / "q")],
                 ["train", "--dataset", "breast_cancer", "--method", "bp", "--epochs", "1", "--resume", "--out", str(tmp_path)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "refused, the file would run code" in err and err.count("\n") == 1, (argv, err)
    assert not marker.exists()  # the payload never ran
    with pytest.raises(ValueError, match="is a folder: pass the checkpoint file inside it"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("mult", ["K1", "K2", "K3", "K4"])
@pytest.mark.parametrize("voltage", [1100, 660])
def test_eval_model_equals_forward_int_on_real_test_data(runs, mult, voltage):
    from torch import nn

    from axhw.arith.registry import get_multiplier
    from axhw.data import load
    from axhw.nn import HardwareConfig, sample_chip
    from axhw.training.trainer import model_from_checkpoint

    d, _ = runs["axtrain"]
    ck = load_checkpoint(d / "checkpoint.pt")
    hw = HardwareConfig(mode="hardware", multiplier=mult, voltage_mv=voltage)
    model = model_from_checkpoint(ck, hw).eval()
    x = load("breast_cancer", seed=1).x_test
    sample_chip(model, torch.Generator().manual_seed(9))
    qnet = quantized_from_checkpoint(ck)
    want = qnet.forward_int(qnet.quantize_input(x), get_multiplier(mult), storage=hw.storage(),
                            generator=torch.Generator().manual_seed(9))
    pre = nn.Sequential(*list(model)[:-1])(x).double()
    got = torch.round(torch.ldexp(pre, torch.tensor(qnet.output_fmt.frac))).to(torch.int64)
    assert torch.equal(got, want)


def test_resume_with_other_config_and_nan_loss_are_clear_errors(tmp_path):
    train(TrainConfig(method="bp", epochs=1, seed=3), tmp_path, progress=False)
    with pytest.raises(ValueError, match="different config"):
        train(TrainConfig(method="act", epochs=2, seed=3), tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match="diverged"):
        train(TrainConfig(method="bp", epochs=1, seed=3, lr=float("inf")), tmp_path / "nan", progress=False)
    assert not (tmp_path / "nan" / "metrics.json").exists()


def test_narrow_bias_words_confine_ntv_damage(runs):
    d, _ = runs["bp"]
    clean16 = evaluate(d / "checkpoint.pt", "exact", 1100, runs=1, bias_word="fixed")
    clean32 = evaluate(d / "checkpoint.pt", "exact", 1100, runs=1, bias_bits=32, bias_word="fixed")
    assert clean16.accuracy_mean == clean32.accuracy_mean  # the trained biases fit the default 16-bit words
    wide = evaluate(d / "checkpoint.pt", "exact", 660, runs=20, seed=1, bias_bits=32, bias_word="fixed")
    narrow = evaluate(d / "checkpoint.pt", "exact", 660, runs=20, seed=1, bias_word="fixed")
    assert narrow.accuracy_mean > wide.accuracy_mean
    # "fit" words (the default) are sized to the biases, not to bias_bits: the same chips at 16 and 32
    fit16 = evaluate(d / "checkpoint.pt", "exact", 660, runs=20, seed=1)
    fit32 = evaluate(d / "checkpoint.pt", "exact", 660, runs=20, seed=1, bias_bits=32)
    assert fit16.accuracies == fit32.accuracies


def test_pas_lr_applies_to_pas_epochs_only(tmp_path):
    cfg = TrainConfig(method="axtrain", epochs=2, pas_epochs=1, multiplier="K2", seed=3, pas_lr=1e-5)
    train(cfg, tmp_path / "ax", progress=False)
    ck = load_checkpoint(tmp_path / "ax" / "checkpoint.pt")
    assert [h["phase"] for h in ck["history"]] == ["act", "pas"]
    assert ck["optimizer"]["param_groups"][0]["lr"] == 1e-5  # the last (pas) epoch ran at pas_lr
    train(TrainConfig(method="act", epochs=1, seed=3, pas_lr=1e-5), tmp_path / "act", progress=False)
    assert load_checkpoint(tmp_path / "act" / "checkpoint.pt")["optimizer"]["param_groups"][0]["lr"] == 1e-3
    with pytest.raises(ValueError, match="pas_lr"):
        TrainConfig(pas_lr=0.0)


def test_act_warmup_trains_on_e_alone_first(tmp_path):
    warm = train(TrainConfig(method="act", epochs=2, seed=4, act_warmup=2), tmp_path / "w", progress=False)
    bp = train(TrainConfig(method="bp", epochs=2, seed=4), tmp_path / "b", progress=False)
    strip = [{k: v for k, v in h.items() if k != "phase"} for h in warm["history"]]
    assert strip == [{k: v for k, v in h.items() if k != "phase"} for h in bp["history"]]  # = BP, gamma 0
    with pytest.raises(ValueError, match="act_warmup"):
        TrainConfig(act_warmup=-1)


def test_act_epochs_re_estimate_batchnorm_statistics():
    """After a regularized act epoch the running statistics are those of the current weights (docs/own-network.md)."""
    from torch import nn

    from axhw.training.trainer import _recalibrate_batchnorm

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU())
    x = torch.randn(64, 1, 8, 8) * 3 + 1
    model[1].running_mean.fill_(50.0)
    model[1].running_var.fill_(1e-3)
    _recalibrate_batchnorm(model, x, 16)
    z = model[0](x).detach()
    assert torch.allclose(model[1].running_mean, z.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(model[1].running_var, z.var((0, 2, 3)), rtol=0.05)
    assert model[1].momentum == 0.1 and model.training  # update_bn restores both
    _recalibrate_batchnorm(nn.Sequential(nn.Linear(2, 2)), torch.randn(4, 2), 2)  # no batch norm: nothing to do
