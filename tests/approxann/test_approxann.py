"""ApproxAnn: per-neuron multiplier modes in the hardware model, neuron criticality, the search, Fig. 8."""

import argparse
import json

import pytest
import torch
from torch import nn

from axhw.approxann import (
    ApproxAnnConfig,
    count_multipliers,
    hardware_accuracy,
    neuron_criticality,
    run_approxann,
)
from axhw.approxann.cli import add_parser
from axhw.approxann.fig8 import fig8
from axhw.arith.fixedpoint import FixedPoint
from axhw.arith.registry import get_multiplier
from axhw.golden.network import IntLinear, QuantizedNetwork
from axhw.nn import (
    ApproxConv2d,
    ApproxLinear,
    HardwareConfig,
    approx_layers,
    calibrate_model,
    set_hardware,
    to_quantized,
)
from axhw.training.models import build_mlp
from axhw.training.trainer import TrainConfig, train


def _tiny_net() -> nn.Sequential:
    """2-3-2 ReLU net, identity output, weights chosen for hand computation."""
    l1, l2 = ApproxLinear(2, 3), ApproxLinear(3, 2)
    with torch.no_grad():
        l1.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
        l1.bias.zero_()
        l2.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 5.0]]))
        l2.bias.zero_()
    return nn.Sequential(l1, nn.ReLU(), l2)


def test_gradient_criticality_by_hand():
    # Sample 1: x=(1,2): z1=(1,2,-1), h=(1,2,0), z2=(1,2); class 0 -> t=(1,0), E=1/2|z2-t|^2, dE/dz2=(0,2);
    #   dE/dz1 = W2^T dE/dz2 * 1{z1>0} = (0, 2, 10*0) = (0, 2, 0): neuron 3 is off, so not critical at all.
    # Sample 2: x=(-1,1): z1=(-1,1,1), h=(0,1,1), z2=(0,6); class 1 -> t=(0,1), dE/dz2=(0,5);
    #   dE/dz1 = (0*1+5*0, 5*1, 5*5) * (0,1,1) = (0, 5, 25).
    # Criticality = mean over samples of |dE/dz|: layer 1 (0, 3.5, 12.5), layer 2 ((0+0)/2, (2+5)/2).
    model = _tiny_net()
    x = torch.tensor([[1.0, 2.0], [-1.0, 1.0]])
    y = torch.tensor([0, 1])
    c1, c2 = neuron_criticality(model, x, y)
    torch.testing.assert_close(c1, torch.tensor([0.0, 3.5, 12.5], dtype=torch.float64))
    torch.testing.assert_close(c2, torch.tensor([0.0, 3.5], dtype=torch.float64))
    # Batching does not change the expectation; the model's hardware mode does not leak in.
    set_hardware(model, HardwareConfig(mode="quantized"))
    c1b, _ = neuron_criticality(model, x, y, batch_size=1)
    torch.testing.assert_close(c1b, c1)
    assert all(layer.hw.mode == "quantized" for layer in approx_layers(model))


def test_taylor_criticality_weights_gradient_by_injected_error():
    # Single layer 2 -> 2, identity output: dE_n/dz_nj = z_nj - t_nj. The injected error of K1 on the
    # quantized operands, computed product by product with the multiplier model, gives the expected value.
    torch.manual_seed(0)
    layer = ApproxLinear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.75, -0.5], [0.3, 0.6]]))
        layer.bias.zero_()
    model = nn.Sequential(layer)
    x = torch.tensor([[3.0, 1.0], [-2.0, 5.0]])
    y = torch.tensor([1, 0])
    calibrate_model(model, x)
    k1, exact = get_multiplier("K1"), get_multiplier("exact")
    ilayer = layer.int_layer()
    a = ilayer.act_fmt.quantize(x)
    w = ilayer.weight
    err = torch.stack([(k1(a[n][None, :], w) - exact(a[n][None, :], w)).sum(1) for n in range(2)]).double()
    err = err * 2.0 ** -ilayer.acc_fmt.frac
    z = x.double() @ layer.weight.detach().double().T
    g = z - torch.nn.functional.one_hot(y, 2).double()
    (c,) = neuron_criticality(model, x, y, measure="taylor", approx="K1")
    torch.testing.assert_close(c, (g * err).abs().mean(0))
    assert bool((err != 0).any())
    (c0,) = neuron_criticality(model, x, y, measure="taylor", approx="exact")
    assert bool((c0 == 0).all())  # an exact "approximate" multiplier injects no error
    with pytest.raises(ValueError, match="valid measures"):
        neuron_criticality(model, x, y, measure="hessian")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="approx"):
        neuron_criticality(model, x, y, measure="taylor")


def _calibrated_mlp(seed: int = 0) -> tuple[nn.Sequential, torch.Tensor]:
    torch.manual_seed(seed)
    model = build_mlp((6, 8, 7, 3))
    x = torch.randn(64, 6)
    calibrate_model(model, x)
    return model, x


@pytest.mark.parametrize("mode", ["K1", "K2"])
def test_eval_model_with_modes_equals_forward_int(mode):
    model, x = _calibrated_mlp()
    gen = torch.Generator().manual_seed(1)
    for layer in approx_layers(model):
        layer.approx_neurons = torch.rand(layer.weight.shape[0], generator=gen) < 0.5
    set_hardware(model, HardwareConfig(mode="hardware", multiplier="exact", approx_multiplier=mode))
    model.eval()
    with torch.no_grad():
        hw_out = model[:-1](x)  # before the final sigmoid: the output accumulator, dequantized
    qnet = to_quantized(model)
    out = qnet.forward_int(qnet.quantize_input(x), get_multiplier("exact"), approx=get_multiplier(mode))
    assert torch.equal(hw_out, qnet.output_fmt.dequantize(out, hw_out.dtype))
    # Mixed modes differ from both uniform settings, and the masks decide which neurons differ.
    exact_out = qnet.forward_int(qnet.quantize_input(x), get_multiplier("exact"))
    all_approx = qnet.forward_int(qnet.quantize_input(x), get_multiplier(mode))
    assert not torch.equal(out, exact_out) and not torch.equal(out, all_approx)


def test_first_layer_modes_select_columns():
    # One layer: each output neuron's accumulator equals the exact or the approximate one, per its bit.
    model, x = _calibrated_mlp(3)
    first = to_quantized(model).layers[0]
    mask = torch.tensor([True, False, True, True, False, False, True, False])
    fields = {k: v for k, v in vars(first).items() if k != "kind"}
    mixed = IntLinear(**fields | {"approx_neurons": mask})
    a = first.act_fmt.quantize(x)
    ex, k2 = get_multiplier("exact"), get_multiplier("K2")
    got = mixed.run(a, ex, mixed.weight, mixed.bias, approx=k2)
    want = torch.where(mask, first.run(a, k2, first.weight, first.bias), first.run(a, ex, first.weight, first.bias))
    assert torch.equal(got, want)
    assert torch.equal(mixed.run(a, ex, mixed.weight, mixed.bias), first.run(a, ex, first.weight, first.bias))
    with pytest.raises(ValueError, match="bool mask"):
        IntLinear(**fields | {"approx_neurons": torch.ones(3)})


def test_conv_modes_per_channel():
    torch.manual_seed(0)
    model = nn.Sequential(ApproxConv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), ApproxLinear(4 * 16, 3))
    x = torch.randn(5, 1, 4, 4)
    calibrate_model(model, x)
    approx_layers(model)[0].approx_neurons = torch.tensor([False, True, False, True])
    set_hardware(model, HardwareConfig(mode="hardware", approx_multiplier="K1"))
    model.eval()
    with torch.no_grad():
        hw_out = model(x)
    qnet = to_quantized(model)
    out = qnet.forward_int(qnet.quantize_input(x), get_multiplier("exact"), approx=get_multiplier("K1"))
    assert torch.equal(hw_out, qnet.output_fmt.dequantize(out, hw_out.dtype))
    assert count_multipliers(qnet)["approx_multipliers"] == 2 * 9


def test_save_load_modes_and_backward_compatibility(tmp_path):
    model, _x = _calibrated_mlp()
    plain = to_quantized(model)
    assert "approx_neurons" not in plain.state()["ops"][0]  # files without modes are unchanged
    back = QuantizedNetwork.load(_saved(plain, tmp_path / "plain.pt"))
    assert all(layer.approx_neurons is None for layer in back.layers)
    approx_layers(model)[1].approx_neurons = torch.tensor([True, False, False, True, False, False, True])
    mixed = to_quantized(model, meta={"approx_multiplier": "K2"})
    back = QuantizedNetwork.load(_saved(mixed, tmp_path / "mixed.pt"))
    assert back.layers[0].approx_neurons is None
    assert torch.equal(back.layers[1].approx_neurons, mixed.layers[1].approx_neurons)
    assert back.meta["approx_multiplier"] == "K2"
    c = count_multipliers(back)
    assert (c["approx_multipliers"], c["total_multipliers"], c["approx_neurons"]) == (3 * 8, 6 * 8 + 8 * 7 + 7 * 3, 3)


def _saved(qnet: QuantizedNetwork, path):
    qnet.save(path)
    return path


def test_count_multipliers_fan_in():
    f = FixedPoint(8, 4)
    layers = [IntLinear(torch.zeros(4, 10, dtype=torch.int64), torch.zeros(4, dtype=torch.int64), f, f,
                        FixedPoint(32, 8), f, approx_neurons=torch.tensor([True, True, False, False])),
              IntLinear(torch.zeros(2, 4, dtype=torch.int64), torch.zeros(2, dtype=torch.int64), f, f,
                        FixedPoint(32, 8), None, approx_neurons=torch.tensor([False, True]))]
    c = count_multipliers(layers)
    assert c["approx_multipliers"] == 2 * 10 + 1 * 4 and c["total_multipliers"] == 48
    assert c["fraction"] == pytest.approx(24 / 48)


@pytest.fixture(scope="module")
def bp_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("bp")
    train(TrainConfig(method="bp", epochs=4, seed=3), d, progress=False)
    return d


def test_search_respects_bound_and_records_trace(bp_run, tmp_path):
    # A zero bound with the most aggressive mode forces rejections and retraining; the result must hold.
    cfg = ApproxAnnConfig(mode="K1", bound=0.0, retrain_epochs=1, initial_step=0.5, max_rounds=6)
    r = run_approxann(bp_run / "checkpoint.pt", cfg, tmp_path / "aa")
    assert r.bound_respected and r.test_accuracy >= r.exact_test_accuracy
    saved = json.loads((tmp_path / "aa" / "approxann.json").read_text())
    assert saved["approx_multipliers"] == r.approx_multipliers and len(saved["trace"]) == len(r.trace) >= 1
    qnet = QuantizedNetwork.load(tmp_path / "aa" / "network.pt")
    assert count_multipliers(qnet)["approx_multipliers"] == r.approx_multipliers
    from axhw.data import load

    data = load("breast_cancer", seed=3)
    assert hardware_accuracy(qnet, data.x_test, data.y_test, get_multiplier("K1")) == pytest.approx(r.test_accuracy)
    accepted = [t for t in r.trace if t.accepted]
    assert all(t.test_accuracy >= r.exact_test_accuracy - 1e-12 for t in accepted)
    if accepted:
        assert accepted[-1].approx_multipliers == r.approx_multipliers
    counts = [t.approx_multipliers for t in r.trace]
    assert counts == sorted(counts)  # only accepted rounds add approximate neurons


def test_cli_parsers(bp_run, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["approxann", "--checkpoint", str(bp_run / "checkpoint.pt"), "--mode", "K2",
                              "--bound", "2", "--retrain-epochs", "1", "--out", str(tmp_path / "o"), "--quiet"])
    assert args.func(args) == 0
    assert "approximate multipliers" in capsys.readouterr().out
    assert (tmp_path / "o" / "network.pt").exists() and (tmp_path / "o" / "approxann.json").exists()
    with pytest.raises(ValueError, match="valid range"):
        ApproxAnnConfig(initial_step=0)
    with pytest.raises(ValueError, match="unknown multiplier"):
        ApproxAnnConfig(mode="K9")


def test_fig8_tiny(tmp_path):
    r = fig8(["breast_cancer"], tmp_path, modes=["K1"], epochs=2, limit=200,
             approxann_cfg=ApproxAnnConfig(retrain_epochs=1, max_rounds=3))
    cell = r["applications"]["breast_cancer"]["K1"]
    assert cell["bp"]["total_multipliers"] == 30 * 64 + 64 * 64 + 64 * 2
    assert r["bound_respected_everywhere"]
    assert r["gain_act_over_bp"]["K1"]["paper_percent"] == pytest.approx(25.51)
    for name in ("fig8.json", "fig8.md", "fig8.png"):
        assert (tmp_path / name).stat().st_size > 0
    again = fig8(["breast_cancer"], tmp_path, modes=["K1"], epochs=2, limit=200,
                 approxann_cfg=ApproxAnnConfig(retrain_epochs=1, max_rounds=3))  # cached: same numbers
    assert again == r
    with pytest.raises(ValueError, match="valid datasets"):
        fig8(["nope"], tmp_path)
