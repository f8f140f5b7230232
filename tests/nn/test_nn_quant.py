"""Hardware-aware layers in eval mode equal integer inference (forward_int) bit for bit."""

import pytest
import torch
from torch import nn

from axhw.arith.fixedpoint import FixedPoint
from axhw.arith.registry import get_multiplier
from axhw.golden.network import QuantizedNetwork, requantize
from axhw.nn import ClippedSTE, HardwareConfig, calibrate_model, sample_chip, set_hardware, to_quantized
from axhw.training.models import build_mlp, build_model, lenet5


def outputs_as_codes(model, x, qnet):
    """Eval-mode model output (pre-sigmoid) -> accumulator codes."""
    pre = nn.Sequential(*list(model)[:-1])
    y = pre(x).double()
    return torch.round(torch.ldexp(y, torch.tensor(qnet.output_fmt.frac))).to(torch.int64)


@pytest.mark.parametrize("mult", ["exact", "K4", "K2", "K1"])
@pytest.mark.parametrize("bits", [8, 16])
def test_mlp_eval_equals_forward_int(mult, bits):
    torch.manual_seed(0)
    x = torch.randn(64, 30)
    hw = HardwareConfig(mode="hardware", multiplier=mult, bits=bits)
    model = build_mlp((30, 64, 64, 2), hw).double().eval()  # float64: 48-bit accumulators print exactly
    x = x.double()
    calibrate_model(model, x)
    qnet = to_quantized(model)
    want = qnet.forward_int(qnet.quantize_input(x), get_multiplier(mult, bits))
    assert torch.equal(outputs_as_codes(model, x, qnet), want)


def test_every_layer_output_matches_and_requant_is_half_up():
    assert requantize(torch.tensor([5, 6, 7, -5, -6, -7, 10**6]), 2, FixedPoint(8, 0)).tolist() == [1, 2, 2, -1, -1, -2, 127]
    assert requantize(torch.tensor([3, -200]), 0, FixedPoint(8, 2)).tolist() == [12, -128]
    torch.manual_seed(1)
    x = torch.randn(16, 30)
    model = build_model("breast_cancer", HardwareConfig(mode="hardware", multiplier="K3")).eval()
    calibrate_model(model, x)
    qnet = to_quantized(model)
    outs = qnet.forward_int(qnet.quantize_input(x), get_multiplier("K3"), return_all=True)
    h = x
    layers = list(model)[:-1]
    for mod, want in zip(layers, outs, strict=True):
        h = mod(h)
        fmt = getattr(mod, "out_fmt", None) or (qnet.output_fmt if mod is layers[-1] else None)
        if fmt is not None:
            got = torch.round(torch.ldexp(h.double(), torch.tensor(fmt.frac))).to(torch.int64)
            assert torch.equal(got, want)


def test_ntv_chip_matches_forward_int_with_same_seed():
    torch.manual_seed(2)
    x = torch.randn(32, 30)
    hw = HardwareConfig(mode="hardware", multiplier="K2", voltage_mv=660)
    model = build_mlp((30, 64, 64, 2), hw).eval()
    calibrate_model(model, x)
    qnet = to_quantized(model)
    sample_chip(model, torch.Generator().manual_seed(5))
    want = qnet.forward_int(qnet.quantize_input(x), get_multiplier("K2"), storage=hw.storage(),
                            generator=torch.Generator().manual_seed(5))
    assert torch.equal(outputs_as_codes(model, x, qnet), want)
    clean = qnet.forward_int(qnet.quantize_input(x), get_multiplier("K2"))
    assert not torch.equal(clean, want)


def test_lenet_eval_equals_forward_int():
    torch.manual_seed(3)
    x = torch.randn(4, 1, 28, 28)
    model = lenet5(HardwareConfig(mode="hardware", multiplier="K3")).eval()
    calibrate_model(model, x)
    qnet = to_quantized(model)
    want = qnet.forward_int(qnet.quantize_input(x), get_multiplier("K3"))
    assert torch.equal(outputs_as_codes(model, x, qnet), want)


def test_multiplies_per_inference_counts_every_output_pixel():
    """LeNet-5 on 28x28: 6*1*25*28*28 + 16*6*25*10*10 + 400*120 + 120*84 + 84*10 products (a convolution
    reuses its weights once per output pixel); an MLP: its weight count."""
    torch.manual_seed(3)
    x = torch.randn(2, 1, 28, 28)
    model = lenet5(HardwareConfig(mode="quantized")).eval()
    calibrate_model(model, x)
    qnet = to_quantized(model)
    assert qnet.multiplies_per_inference(qnet.quantize_input(x)) == 117600 + 240000 + 48000 + 10080 + 840
    mlp = build_mlp([8, 5, 3], HardwareConfig(mode="quantized")).eval()
    x = torch.randn(3, 8)
    calibrate_model(mlp, x)
    q = to_quantized(mlp)
    assert q.multiplies_per_inference(q.quantize_input(x)) == 8 * 5 + 5 * 3


def test_clipped_ste_gradient():
    ref = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    out = ClippedSTE.apply(ref * 2, torch.tensor([9.0, 9.0, 9.0]))
    assert out.tolist() == [9.0, 9.0, 9.0]
    out.backward(torch.tensor([0.5, -1.0, 2.0]))
    assert ref.grad.tolist() == [1.0, 0.0, 0.0]  # |g| < 1 passes (times d(2 ref)), the rest is cut


def test_saturation_aware_ste_blocks_clamped_outputs():
    ref = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    out = ClippedSTE.apply(ref * 2, torch.tensor([9.0, 9.0, 9.0]), torch.tensor([True, False, True]))
    out.backward(torch.tensor([0.5, 0.5, 2.0]))
    assert ref.grad.tolist() == [1.0, 0.0, 0.0]  # live and small / clamped / too large
    torch.manual_seed(7)
    x = torch.randn(16, 30)
    grads = {}
    for flag in (False, True):
        model = build_mlp((30, 16, 2), HardwareConfig(mode="quantized", saturation_ste=flag))
        torch.manual_seed(8)
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.3)
        with torch.no_grad():
            model[0].bias[0] = 5.0  # hidden unit 0 always clamps at the top of fix<8,7> (max 0.99)
        calibrate_model(model, x)
        model[0].out_fmt = FixedPoint(8, 7)
        model.train()
        model(x).sum().backward()
        grads[flag] = model[0].weight.grad.clone()
    assert grads[False][0].abs().sum() > 0 and torch.equal(grads[True][0], torch.zeros(30))
    assert grads[True][1:].abs().sum() > 0  # units that did not clamp still learn


def test_training_mode_fresh_flips_and_gradients_flow():
    torch.manual_seed(4)
    x = torch.randn(8, 30)
    model = build_mlp((30, 16, 2), HardwareConfig(mode="hardware", multiplier="K1", voltage_mv=400))
    calibrate_model(model, x)
    for layer in model:
        if hasattr(layer, "generator"):
            layer.generator = torch.Generator().manual_seed(0)
    model.train()
    y1, y2 = model(x), model(x)
    assert not torch.equal(y1, y2)  # a fresh flip pattern every pass
    y1.sum().backward()
    assert model[0].weight.grad is not None and model[0].weight.grad.abs().sum() > 0


def test_save_load_round_trip_and_corrupt_file(tmp_path):
    torch.manual_seed(5)
    x = torch.randn(8, 30)
    model = build_mlp((30, 8, 2), HardwareConfig(mode="quantized")).eval()
    calibrate_model(model, x)
    qnet = to_quantized(model, meta={"dataset": "breast_cancer"})
    qnet.save(tmp_path / "q.pt")
    back = QuantizedNetwork.load(tmp_path / "q.pt")
    m = get_multiplier("exact")
    assert torch.equal(back.forward_int(back.quantize_input(x), m), qnet.forward_int(qnet.quantize_input(x), m))
    assert back.meta == {"dataset": "breast_cancer"}
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable QuantizedNetwork"):
        QuantizedNetwork.load(tmp_path / "bad.pt")


def test_accumulator_saturates_instead_of_wrapping():
    torch.manual_seed(6)
    x = torch.randn(8, 30)
    model = build_mlp((30, 2), HardwareConfig(mode="quantized", bits=16, acc_bits=24)).eval()
    torch.nn.init.zeros_(model[0].bias)  # one layer, no bias: only the final accumulator can saturate
    calibrate_model(model, x)
    qnet = to_quantized(model)
    outs = qnet.forward_int(qnet.quantize_input(x), get_multiplier("exact", 16), return_all=True)
    fmt = qnet.output_fmt
    assert int(outs[-1].min()) >= fmt.qmin and int(outs[-1].max()) <= fmt.qmax
    wide = build_mlp((30, 2), HardwareConfig(mode="quantized", bits=16, acc_bits=48))
    wide.load_state_dict(model.state_dict())
    calibrate_model(wide, x)
    wq = to_quantized(wide)
    full = wq.forward_int(wq.quantize_input(x), get_multiplier("exact", 16))
    assert torch.equal(outs[-1], full.clamp(fmt.qmin, fmt.qmax))
    assert not torch.equal(outs[-1], full)  # the 24-bit word really saturated


def test_uncalibrated_and_bad_config_errors():
    model = build_mlp((4, 2), HardwareConfig(mode="quantized"))
    with pytest.raises(ValueError, match="calibrate_model"):
        model(torch.randn(1, 4))
    with pytest.raises(ValueError, match="valid modes"):
        HardwareConfig(mode="analog")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="valid range"):
        HardwareConfig(voltage_mv=300)
    with pytest.raises(ValueError, match="valid applications"):
        build_model("cifar")
    set_hardware(model, HardwareConfig(mode="float"))
    assert model(torch.randn(1, 4)).shape == (1, 2)
