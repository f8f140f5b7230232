"""Your model and data from the command line (docs/training.md, "Your model and data"):
``axhw train --model/--model-arg/--data``, and every consumer of the checkpoint (evaluate, approxann, the
power flow's operands) working on it."""

import json
import sys
import warnings
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from axhw.apps.cli import main
from axhw.arith.registry import get_multiplier
from axhw.arith.sram import NTVStorage
from axhw.nn import approx_layers, sample_chip
from axhw.training import trainer
from axhw.training.evaluate import _runs_with_float_parts, evaluate
from axhw.training.factories import import_factory, parse_model_args
from axhw.training.trainer import (
    TrainConfig,
    _accuracy,
    config_from_dict,
    integer_test_inputs,
    load_checkpoint,
    load_training_data,
    model_from_checkpoint,
    network_inputs,
    output_loss,
    quantized_from_checkpoint,
    same_config,
    train,
)

HERE = str(Path(__file__).parent)
USER = ["--model", "user_models:tiny_resnet", "--model-arg", "channels=4", "--data", "user_models:separable"]


@pytest.fixture(scope="module", autouse=True)
def user_models_importable():
    threads = torch.get_num_threads()  # the runs below use --threads 1 (tiny tensors: threads only contend)
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(HERE)
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """bp and axtrain (act, then pas under K2 at 660 mV) of the tiny residual CNN, trained by the CLI."""
    out = {}
    for method in ("bp", "axtrain"):
        d = tmp_path_factory.mktemp(method)
        argv = ["train", *USER, "--method", method, "--epochs", "3", "--pas-epochs", "1", "--lr", "0.01",
                "--batch-size", "16", "--multiplier", "K2", "--voltage", "660", "--seed", "1", "--out", str(d),
                "--quiet", "--threads", "1"]
        assert main(argv) == 0
        out[method] = d
    return out


def test_cli_trains_and_evaluates_a_user_model(runs, capsys):
    for method, d in runs.items():
        m = json.loads((d / "metrics.json").read_text())
        assert m["dataset"] == "separable"  # with --data, --dataset defaults to the factory's name
        assert m["config"]["model"] == "user_models:tiny_resnet" and m["config"]["model_args"] == {"channels": 4}
        assert m["config"]["data"] == "user_models:separable"
        ck = load_checkpoint(d / "checkpoint.pt")
        assert "formats" in ck and "act_fmts" not in ck and "axhw_add" in ck["formats"]
        assert main(["evaluate", "--checkpoint", str(d / "checkpoint.pt"), "--multiplier", "K2", "--voltage", "660",
                     "--runs", "2"]) == 0
        assert (d / "eval_drum2_660mV.json").is_file()
        if method == "axtrain":
            assert [h["phase"] for h in m["history"]] == ["act", "act", "pas"]
            # the warm-up act epoch and the pas epoch train on E alone (gamma 0); the first regularized act
            # epoch uses the starting gamma0, which the adaptive rule only updates after that epoch
            assert [h["gamma"] for h in m["history"]] == [0.0, TrainConfig().gamma0, 0.0]
        else:
            assert m["test_accuracy"] > 0.6  # 3 classes: chance is 1/3
    assert "separable axtrain | drum2 @ 660 mV" in capsys.readouterr().out


def test_checkpoint_round_trip_and_integer_network_bit_for_bit(runs):
    d = runs["axtrain"]
    ck = load_checkpoint(d / "checkpoint.pt")
    cfg = config_from_dict(ck["config"])
    data = load_training_data(cfg)
    x, y = network_inputs(cfg, data.x_test), data.y_test
    assert x.shape[1:] == (1, 8, 8)  # --data keeps its own shape
    float_model = model_from_checkpoint(ck)
    assert _accuracy(float_model, x, y) == json.loads((d / "metrics.json").read_text())["test_accuracy_float"]
    # eval-mode hardware forward (one chip at 660 mV) == forward_int, at the head's accumulator
    hw_model = model_from_checkpoint(ck, cfg.pas_hardware()).eval()
    sample_chip(hw_model, torch.Generator().manual_seed(7))
    seen = []
    approx_layers(hw_model)[-1].register_forward_hook(lambda _m, _i, o: seen.append(o))
    with torch.no_grad():
        hw_out = hw_model(x)
    qnet = quantized_from_checkpoint(ck)
    want = qnet.forward_int(qnet.quantize_input(x), get_multiplier("K2"), storage=NTVStorage(660),
                            generator=torch.Generator().manual_seed(7))
    got = torch.round(torch.ldexp(seen[0].double(), torch.tensor(qnet.output_fmt.frac))).long()
    assert torch.equal(got, want)
    r = evaluate(d / "checkpoint.pt", "K2", 660, runs=1, seed=7)
    assert r.accuracy_mean == pytest.approx(float((hw_out.argmax(1) == y).double().mean()))
    q_again, x_int = integer_test_inputs(ck)
    assert torch.equal(x_int, qnet.quantize_input(x))
    assert torch.equal(q_again.forward_int(x_int, get_multiplier("K2")), qnet.forward_int(x_int, get_multiplier("K2")))


def test_approxann_and_power_operands_on_a_user_checkpoint(runs, tmp_path):
    from axhw.power.multiplier.operands import capture_operands

    ck_path = runs["bp"] / "checkpoint.pt"
    assert main(["approxann", "--checkpoint", str(ck_path), "--max-rounds", "1", "--retrain-epochs", "1",
                 "--out", str(tmp_path), "--quiet"]) == 0
    # one multiplier per weight of each neuron (output channel): stem 4 x (1*3*3), conv 4 x (4*3*3), head 3 x 4
    assert json.loads((tmp_path / "approxann.json").read_text())["total_multipliers"] == 4 * 9 + 4 * 36 + 3 * 4
    qnet, x_int = integer_test_inputs(load_checkpoint(ck_path))
    stream = capture_operands(qnet, x_int, get_multiplier("K2"), n_pairs=64)
    assert len(stream) == 64


def test_user_model_on_a_builtin_dataset(tmp_path, monkeypatch, synthetic_mnist):
    """--model with --dataset mnist_cnn: the data set's 1x28x28 view (a synthetic MNIST, 60 + 20 digits)."""
    folder = synthetic_mnist(tmp_path / "mnist")  # 60 + 20 random digits, labels 0..9 cycling
    monkeypatch.setenv("AXHW_MNIST_DIR", str(folder))
    out = tmp_path / "run"
    assert main(["train", "--model", "axhw.examples.residual:mnist_resnet", "--model-arg", "channels=4",
                 "--dataset", "mnist_cnn", "--method", "bp", "--epochs", "1", "--out", str(out), "--quiet",
                 "--threads", "1"]) == 0
    assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--runs", "1"]) == 0
    r = json.loads((out / "eval_exact_1100mV.json").read_text())
    assert r["dataset"] == "mnist_cnn"
    # accuracy and output loss, recomputed here: the training-side hardware model (exact products, no flips)
    # rebuilt from the checkpoint, read at its head's accumulator (the integer network's output), on the 20
    # test digits (random images: the network may well predict one class, so the loss is the sharper check)
    ck = load_checkpoint(out / "checkpoint.pt")
    cfg = config_from_dict(ck["config"])
    hw_model = model_from_checkpoint(ck, replace(cfg, multiplier="exact", voltage_mv=1100.0).pas_hardware()).eval()
    seen = []
    approx_layers(hw_model)[-1].register_forward_hook(lambda _m, _i, o: seen.append(o))
    data = load_training_data(cfg)
    x, y = network_inputs(cfg, data.x_test), data.y_test
    with torch.no_grad():
        hw_model(x)
    assert len(y) == 20 and r["accuracy_mean"] == pytest.approx(float((seen[0].argmax(1) == y).double().mean()))
    assert r["loss_mean"] == pytest.approx(float(output_loss(torch.sigmoid(seen[0].double()), y, cfg.loss)), rel=1e-6)


@pytest.mark.parametrize("extra, message", [
    (["--model", "nosuchpkg_xyz:f", "--data", "user_models:separable"],
     "no module named 'nosuchpkg_xyz'; install it or put its folder on PYTHONPATH"),
    (["--model", "user_models:nope", "--data", "user_models:separable"],
     "module 'user_models' has no attribute 'nope'"),
    (["--model", "user_models", "--data", "user_models:separable"], "is not an import path"),
    (["--model", "user_models:not_a_model", "--data", "user_models:separable"], "returned a str, not an nn.Module"),
    (["--model", "user_models:tiny_resnet", "--model-arg", "width=3", "--data", "user_models:separable"],
     "calling it with {'width': 3} failed"),
    (["--model", "user_models:tiny_resnet", "--model-arg", "width", "--data", "user_models:separable"],
     "expected NAME=VALUE"),
    (["--model", "torch.nn:LSTM", "--model-arg", "input_size=4", "--model-arg", "hidden_size=4", "--data",
      "user_models:separable"], "nn.LSTM has no hardware equivalent"),
    (["--model", "user_models:tiny_resnet", "--data", "user_models:flat_data"], "fails on inputs of shape (2, 64)"),
    (["--model", "user_models:tiny_resnet", "--data", "user_models:float_labels"], "expected 1-D integer class"),
    (["--model", "user_models:tiny_resnet", "--data", "user_models:negative_labels"], "holds label -1"),
    (["--model", "user_models:tiny_resnet", "--data", "user_models:many_labels"], "labels go up to 9"),
    (["--data", "user_models:not_a_model"], "returned a str: expected (x_train, y_train, x_test, y_test)"),
    (["--dataset", "breast_cancer", "--model-arg", "channels=4"], "--model-arg needs --model"),
    (["--model", "user_models:tiny_resnet"], "--dataset is required (or --data"),
])
def test_bad_input_is_one_line_and_exit_2(extra, message, tmp_path, capsys):
    assert main(["train", *extra, "--method", "bp", "--epochs", "1", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
    assert not (tmp_path / "checkpoint.pt").exists()


def test_model_args_and_config_round_trip_through_json():
    args = parse_model_args(["a=1", "b=(1, 2)", "c=hello", "d=None", "e=0.5", "f=[True]"])
    assert args == {"a": 1, "b": [1, 2], "c": "hello", "d": None, "e": 0.5, "f": [True]}
    cfg = TrainConfig(dataset="toy", data="user_models:separable", model="user_models:tiny_resnet", model_args=args)
    hash(cfg)  # still hashable (model_args is left out of the hash)
    saved = json.loads(json.dumps(asdict(cfg)))
    assert same_config(saved, cfg) and config_from_dict(saved) == cfg
    assert cfg != TrainConfig(dataset="toy", data="user_models:separable", model="user_models:tiny_resnet")
    # a metrics.json written before model/model_args/data existed still describes the same run
    old = {k: v for k, v in asdict(TrainConfig()).items() if k not in ("model", "model_args", "data")}
    assert same_config(old, TrainConfig())
    with pytest.raises(ValueError, match="values must be numbers"):
        TrainConfig(model="m:f", model_args={"x": {1, 2}})
    with pytest.raises(ValueError, match="unknown dataset 'toy'"):
        TrainConfig(dataset="toy")  # without --data the dataset names the data


def test_current_directory_is_searched_last(tmp_path, monkeypatch):
    (tmp_path / "my_local_models.py").write_text("def net():\n    return 'here'\n")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.chdir(tmp_path)
    assert import_factory("my_local_models:net")() == "here"
    assert sys.path[-1] == str(tmp_path)


def test_resume_of_a_user_model_continues_identically(tmp_path):
    torch.set_num_threads(1)  # restored by the module fixture
    cfg = TrainConfig(dataset="toy", model="user_models:tiny_resnet", data="user_models:separable", method="act",
                      epochs=2, act_warmup=0, batch_size=16, lr=0.01, limit=96)
    full = train(cfg, tmp_path / "full", progress=False)
    train(replace(cfg, epochs=1), tmp_path / "part", progress=False)
    resumed = train(cfg, tmp_path / "part", resume=True, progress=False)
    assert resumed["history"] == full["history"]


GELU = ["--model", "user_models:gelu_mlp", "--data", "user_models:separable", "--method", "axtrain", "--epochs", "2",
        "--pas-epochs", "1", "--multiplier", "K2", "--batch-size", "32", "--lr", "0.01", "--threads", "1"]


def test_float_only_op_is_refused_before_training(tmp_path, monkeypatch, capsys):
    """A GELU and a tanh between layers: one line naming both and the --keep-float that keeps them, before
    any data is loaded; the run already in --out (overwritten with --force) is left as it was."""
    def no_data(cfg):
        raise AssertionError("the data was loaded: the refusal came too late")

    monkeypatch.setattr(trainer, "load_training_data", no_data)
    (tmp_path / "checkpoint.pt").write_bytes(b"an earlier run")
    assert main(["train", *GELU, "--out", str(tmp_path), "--force", "--quiet"]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and not out, err
    assert err.startswith("axhw train: error: --model user_models:gelu_mlp: act (nn.GELU), tanh (torch.tanh) have "
                          "no integer equivalent, so nothing could evaluate or export the trained network")
    assert "with --keep-float act tanh (" in err
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"an earlier run" and not (tmp_path / "metrics.json").exists()
    # keeping one of the two is not enough: the other is named
    assert main(["train", *GELU, "--keep-float", "act", "--out", str(tmp_path / "one"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "tanh (torch.tanh) has no integer equivalent" in err and "--keep-float tanh (" in err
    assert not (tmp_path / "one" / "checkpoint.pt").exists()
    # a name that is in neither the model's modules nor its float operations
    assert main(["train", *GELU, "--keep-float", "act", "gleu", "--out", str(tmp_path / "typo"), "--quiet"]) == 2
    assert "keep_float names no module or float operation of the model: 'gleu' (its float operations: act " \
           "(nn.GELU), tanh (torch.tanh))" in capsys.readouterr().err


def test_keep_float_trains_evaluates_with_float_parts_and_the_rtl_refuses(tmp_path, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(["train", *GELU, "--keep-float", "tanh", "act", "--out", str(tmp_path)]) == 0
    assert not [w for w in caught if "integer equivalent" in str(w.message)]  # a note, not raw warnings
    out = capsys.readouterr().out
    assert "note: act (nn.GELU), tanh (torch.tanh) run in float (--keep-float)" in out
    ck_path = tmp_path / "checkpoint.pt"
    ck = load_checkpoint(ck_path)
    assert ck["config"]["keep_float"] == ["act", "tanh"]  # recorded, sorted
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["keep_float"] == ["act", "tanh"]
    # evaluate: the float parts in a printed line and in the JSON
    assert main(["evaluate", "--checkpoint", str(ck_path), "--multiplier", "K2", "--voltage", "660", "--runs", "2"]) == 0
    out = capsys.readouterr().out
    assert "float parts (--keep-float): act (nn.GELU), tanh (torch.tanh) ran in float between the integer layers" in out
    r = json.loads((tmp_path / "eval_drum2_660mV.json").read_text())
    assert r["float_parts"] == ["act (nn.GELU)", "tanh (torch.tanh)"] and r["runs"] == 2
    assert 0.0 <= r["accuracy_mean"] <= 1.0 and len(set(r["accuracies"])) >= 1
    # the integer export and the RTL: one line naming the parts, the same line for both
    with pytest.raises(ValueError) as exc:
        quantized_from_checkpoint(ck)
    line = str(exc.value)
    assert line.startswith("act (nn.GELU), tanh (torch.tanh) run in float on purpose (keep_float, axhw train "
                           "--keep-float): the integer network, and the RTL that runs it, has no float unit")
    for argv in (["rtl", "verify", "--design", "array", "--network", str(ck_path)],
                 ["rtl", "generate", "--design", "array", "--network", str(ck_path), "--out", str(tmp_path / "rtl")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == f"axhw {argv[0]} {argv[1]}: error: {line}\n", err
    assert not (tmp_path / "rtl").exists()


def test_float_part_evaluation_is_the_integer_network_where_there_are_none(runs):
    """The hardware-model path evaluate takes for --keep-float networks, run on an integer network: the same
    accuracies as forward_int (same chips, K2 at 660 mV) and the same losses up to float32."""
    ck_path = runs["axtrain"] / "checkpoint.pt"
    ck = load_checkpoint(ck_path)
    cfg = config_from_dict(ck["config"])
    want = evaluate(ck_path, "K2", 660, runs=3, seed=3)
    floats, accs, losses = _runs_with_float_parts(ck, cfg, get_multiplier("K2"), 660.0, None, 3, 3)
    assert floats == [] and want.float_parts == []
    assert accs == want.accuracies and len(set(accs)) > 1  # three different chips
    assert losses == pytest.approx(want.losses, rel=1e-5)


def test_keep_float_in_the_config():
    cfg = TrainConfig(dataset="toy", data="user_models:separable", model="user_models:gelu_mlp",
                      keep_float=("tanh", "act", "tanh"))
    assert cfg.keep_float == ["act", "tanh"]
    hash(cfg)
    saved = json.loads(json.dumps(asdict(cfg)))
    assert same_config(saved, cfg) and config_from_dict(saved) == cfg
    assert same_config({k: v for k, v in saved.items() if k != "keep_float"}, replace(cfg, keep_float=[]))
    with pytest.raises(ValueError, match="keep_float without model: --keep-float names parts of your --model"):
        TrainConfig(keep_float=["act"])
    with pytest.raises(ValueError, match="keep_float must be a list"):
        TrainConfig(dataset="toy", data="user_models:separable", model="user_models:gelu_mlp", keep_float="act")
