"""axhw.convert (plain torch model -> hardware-aware layers) and ApproxConv2d's conv options (groups,
dilation, stride, padding) in every mode, bit-exact against an elementwise integer reference."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import axhw
from axhw.arith.fixedpoint import FixedPoint
from axhw.arith.multipliers import DRUM, Exact, LUTMultiplier
from axhw.arith.registry import get_multiplier
from axhw.arith.sram import NTVStorage
from axhw.golden.network import IntConv2d, QuantizedNetwork
from axhw.nn import (
    ApproxConv2d,
    ApproxLinear,
    HardwareConfig,
    approx_layers,
    calibrate_model,
    sample_chip,
    set_hardware,
)
from axhw.nn.convert import ConversionReport, convert
from axhw.nn.fx.trace import float_parts


def perturbed_lut(bits: int = 8) -> LUTMultiplier:
    """A non-separable table: exact products with a deterministic +-3 perturbation."""
    exact = Exact(bits).product_table()
    noise = torch.randint(-3, 4, exact.shape, generator=torch.Generator().manual_seed(0))
    lo, hi = Exact(bits).product_range
    return LUTMultiplier((exact + noise).clamp(lo, hi), bits, name="perturbed")


MULS = {"exact": lambda: Exact(8), "K2": lambda: DRUM(2), "lut": perturbed_lut}


def pad4(padding, kernel, dilation):
    """(left, right, top, bottom) zero padding; 'same' puts the odd extra column/row at the end."""
    (kh, kw), (dh, dw) = nn.modules.utils._pair(kernel), nn.modules.utils._pair(dilation)
    if padding == "same":
        th, tw = dh * (kh - 1), dw * (kw - 1)
        return tw // 2, tw - tw // 2, th // 2, th - th // 2
    if padding == "valid":
        return 0, 0, 0, 0
    ph, pw = nn.modules.utils._pair(padding)
    return pw, pw, ph, ph


def conv_reference(a, w, mul, stride, padding, dilation, groups):
    """Sum over elementwise products ``mul(a, w)`` of every window: independent of conv2d and matmul."""
    kh, kw = w.shape[2:]
    a = F.pad(a, pad4(padding, (kh, kw), dilation))  # zero codes
    cg, og = w.shape[1], w.shape[0] // groups
    outs = []
    for g in range(groups):
        cols = F.unfold(a[:, g * cg:(g + 1) * cg].double(), (kh, kw), dilation=dilation, stride=stride).long()
        wg = w[g * og:(g + 1) * og].reshape(og, -1)
        outs.append(mul(cols[:, None, :, :], wg[None, :, :, None]).sum(dim=2))  # (N, og, L)
    out = torch.cat(outs, dim=1)
    dh, dw = nn.modules.utils._pair(dilation)
    sh, sw = nn.modules.utils._pair(stride)
    oh = (a.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (a.shape[3] - dw * (kw - 1) - 1) // sw + 1
    return out.reshape(out.shape[0], out.shape[1], oh, ow)


# (in, out, kernel, stride, padding, dilation, groups)
CONVS = [
    (4, 6, 3, 1, 1, 2, 2),
    (6, 6, 3, 2, 0, 1, 6),  # depthwise
    (4, 8, (3, 2), (2, 1), (1, 2), (1, 2), 4),
    (3, 3, 2, 1, "same", 1, 3),  # asymmetric 'same' (even kernel: the extra column/row at the end)
    (2, 4, (4, 2), 1, "same", (1, 2), 1),  # asymmetric in height only
    (2, 4, 3, 1, "valid", 1, 1),
]


def codes(shape, gen, dense_min: float):
    c = torch.randint(-128, 128, shape, generator=gen)
    c[torch.rand(shape, generator=gen) < dense_min] = -128  # the DRUM saturating (min, min) pair
    return c


@pytest.mark.parametrize("dense_min", [0.02, 0.5])  # sparse and dense (min, min) correction paths
@pytest.mark.parametrize("mul", list(MULS))
@pytest.mark.parametrize("conv", CONVS)
def test_multiplier_conv2d_options_equal_elementwise(conv, mul, dense_min):
    cin, cout, k, stride, padding, dilation, groups = conv
    if isinstance(padding, str):
        return  # string padding is resolved by the layer (next test)
    m = MULS[mul]()
    gen = torch.Generator().manual_seed(1)
    kh, kw = nn.modules.utils._pair(k)
    a, w = codes((2, cin, 9, 8), gen, dense_min), codes((cout, cin // groups, kh, kw), gen, dense_min)
    got = m.conv2d(a, w, stride, padding, dilation, groups)
    assert torch.equal(got, conv_reference(a, w, m, stride, padding, dilation, groups))
    if mul != "lut":  # the generic im2col path gives the same numbers as the separable fast path
        assert torch.equal(got, LUTMultiplier.from_multiplier(m).conv2d(a, w, stride, padding, dilation, groups))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")  # torch's own float conv
@pytest.mark.parametrize("mul", list(MULS))
@pytest.mark.parametrize("conv", CONVS)
def test_hardware_conv_layer_with_options_is_bit_exact(conv, mul):
    cin, cout, k, stride, padding, dilation, groups = conv
    m = MULS[mul]()
    layer = ApproxConv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation, groups=groups,
                         hw=HardwareConfig(mode="hardware", multiplier=m))
    gen = torch.Generator().manual_seed(2)
    w_codes = codes(layer.weight.shape, gen, 0.3)
    w_codes.view(-1)[0], w_codes.view(-1)[1] = -128, 127  # weight format fix<8,6> holds these exactly
    a_codes = codes((2, cin, 9, 8), gen, 0.3)
    a_codes.view(-1)[0] = -128
    with torch.no_grad():
        layer.weight.copy_(w_codes / 64)
        layer.bias.copy_(torch.arange(cout) / 8 - 0.25)
    layer.act_fmt = FixedPoint(8, 5)
    layer.eval()
    y = layer(a_codes / 32)
    fields = layer._int_fields()
    assert fields["weight_fmt"] == FixedPoint(8, 6) and torch.equal(fields["weight"], w_codes)
    acc_fmt = fields["acc_fmt"]
    want = conv_reference(a_codes, w_codes, m, stride, padding, dilation, groups) + fields["bias"].reshape(1, -1, 1, 1)
    assert torch.equal(torch.round(torch.ldexp(y.double(), torch.tensor(acc_fmt.frac))).long(), want)
    # float mode computes what nn.Conv2d does with the same weights
    layer.set_hardware(HardwareConfig(mode="float"))
    ref = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation, groups=groups)
    ref.load_state_dict(layer.state_dict())
    x = torch.randn(2, cin, 9, 8)
    assert torch.equal(layer(x), ref(x))


def test_grouped_conv_per_channel_modes():
    layer = ApproxConv2d(4, 4, 3, padding=1, groups=2,
                         hw=HardwareConfig(mode="hardware", multiplier="exact", approx_multiplier="K2"))
    layer.approx_neurons = torch.tensor([True, False, False, True])
    gen = torch.Generator().manual_seed(3)
    w_codes, a_codes = codes(layer.weight.shape, gen, 0.3), codes((1, 4, 5, 5), gen, 0.3)
    w_codes.view(-1)[0] = -128
    with torch.no_grad():
        layer.weight.copy_(w_codes / 64)
        layer.bias.zero_()
    layer.act_fmt = FixedPoint(8, 5)
    y = layer.eval()(a_codes / 32)
    got = torch.round(torch.ldexp(y.double(), torch.tensor(layer._int_fields()["acc_fmt"].frac))).long()
    exact = conv_reference(a_codes, w_codes, Exact(8), 1, 1, 1, 2)
    approx = conv_reference(a_codes, w_codes, DRUM(2), 1, 1, 1, 2)
    mask = layer.approx_neurons.reshape(1, -1, 1, 1)
    assert torch.equal(got, torch.where(mask, approx, exact)) and not torch.equal(exact, approx)


def test_int_conv_options_save_load(tmp_path):
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding="same", dilation=2, groups=2), nn.ReLU(),
                          nn.Conv2d(4, 4, 2, stride=(2, 1), padding=1, padding_mode="reflect"), nn.ReLU(),
                          nn.Conv2d(4, 2, 1), nn.Flatten())
    hw_model, _ = convert(model, HardwareConfig(mode="hardware", multiplier="K2"))
    x = torch.randn(3, 2, 8, 8)
    calibrate_model(hw_model, x)
    qnet = axhw.nn.to_quantized(hw_model)
    first, _, _, last = qnet.layers[0], None, None, qnet.layers[-1]
    assert (first.dilation, first.groups, first.padding) == (2, 2, 2)  # symmetric 'same': a plain int
    state_last = qnet.state()["ops"][-2]
    assert not {"dilation", "groups", "padding_mode"} & set(state_last)  # defaults: the old file format
    qnet.save(tmp_path / "q.pt")
    back = QuantizedNetwork.load(tmp_path / "q.pt")
    assert isinstance(back.layers[1], IntConv2d) and back.layers[1].padding_mode == "reflect"
    m = get_multiplier("K2")
    want = qnet.forward_int(qnet.quantize_input(x), m)
    assert torch.equal(back.forward_int(back.quantize_input(x), m), want)
    hw_model.eval()
    got = torch.round(torch.ldexp(hw_model(x).double(), torch.tensor(last.acc_fmt.frac))).long()
    assert torch.equal(got, want)  # model in hardware mode == integer golden model, reflect padding included


# --------------------------------------------------------------------------- convert
class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=2, dilation=2, groups=c)

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.bn(self.conv1(x)))))


class ResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.blocks = nn.ModuleList([Block(8), Block(8)])
        self.heads = nn.ModuleDict({"cls": nn.Linear(8, 5), "aux": nn.Linear(8, 1, bias=False)})
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        h = self.stem(x)
        for b in self.blocks:
            h = b(h)
        h = self.drop(F.adaptive_avg_pool2d(h, 1).flatten(1))
        return self.heads["cls"](h) + self.heads["aux"](h)


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.rnn = nn.LSTM(8, 8, batch_first=True)

    def forward(self, x):
        return self.rnn(self.embed(x))[0]


class Seq(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.encoder(x)[:, -1])


def test_residual_cnn_converts_with_same_float_output():
    torch.manual_seed(5)
    model = ResNet().eval()
    x = torch.randn(4, 3, 16, 16)
    want = model(x)
    rng = torch.get_rng_state()
    hw_model, report = convert(model, HardwareConfig(mode="hardware", multiplier="K3"))
    assert torch.equal(torch.get_rng_state(), rng)  # no initialization ran
    assert isinstance(report, ConversionReport)
    assert report.converted == [("stem.0", "nn.Conv2d"), ("blocks.0.conv1", "nn.Conv2d"), ("blocks.0.conv2", "nn.Conv2d"),
                                ("blocks.1.conv1", "nn.Conv2d"), ("blocks.1.conv2", "nn.Conv2d"),
                                ("heads.cls", "nn.Linear"), ("heads.aux", "nn.Linear")]
    assert report.kept_float == [] and "converted 7 layer(s)" in str(report)
    # inplace=False: the original is untouched and shares no parameters with the copy
    assert type(model.stem[0]) is nn.Conv2d and type(model.heads["cls"]) is nn.Linear
    assert model.stem[0].weight is not hw_model.stem[0].weight
    assert isinstance(hw_model.blocks[1].conv2, ApproxConv2d) and hw_model.blocks[1].conv2.groups == 8
    assert hw_model.heads["aux"].bias is None and isinstance(hw_model.blocks[0].bn, nn.BatchNorm2d)
    assert len(approx_layers(hw_model)) == 7
    assert all(layer.hw.multiplier == "K3" for layer in approx_layers(hw_model))
    set_hardware(hw_model, HardwareConfig(mode="float"))
    assert torch.equal(hw_model(x), want)
    # after convert the model-level helpers find the layers and the hardware forward runs
    set_hardware(hw_model, HardwareConfig(mode="hardware", multiplier="K2", voltage_mv=660))
    calibrate_model(hw_model, x)
    sample_chip(hw_model, torch.Generator().manual_seed(0))
    y = hw_model(x)
    assert y.shape == want.shape and torch.isfinite(y).all() and not torch.equal(y, want)
    # the value: the integer golden model of the converted network, same multiplier and the same chip's flips
    assert not hw_model.training
    q = axhw.nn.to_quantized(hw_model)
    codes = q.forward_int(q.quantize_input(x), get_multiplier("K2"), storage=NTVStorage(660),
                          generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.round(torch.ldexp(y.double(), torch.tensor(q.output_fmt.frac))).long(), codes)


def test_inplace_keeps_parameter_objects():
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    params = list(model.parameters())
    out, report = convert(model, HardwareConfig(), inplace=True)
    assert out is model and isinstance(model[0], ApproxLinear) and isinstance(model[2], ApproxLinear)
    assert [p for p in model.parameters()] == params and all(a is b for a, b in zip(model.parameters(), params, strict=True))
    assert [p for p, _ in report.converted] == ["0", "2"]
    # converting again leaves the layers and reports them as already hardware-aware
    _, again = convert(model, HardwareConfig(mode="quantized"), inplace=True)
    assert again.converted == [] and again.already_hardware == ["0", "2"]
    assert model[0].hw.mode == "quantized"


def test_lstm_is_an_error_naming_its_path_unless_kept_float():
    model = Seq()
    with pytest.raises(ValueError) as exc:
        convert(model, HardwareConfig(), inplace=True)
    assert str(exc.value) == ("encoder.rnn: nn.LSTM has no hardware equivalent; "
                              "pass keep_float=['encoder.rnn'] to keep it float")
    assert type(model.encoder.embed) is nn.Linear  # nothing changed before the error
    x = torch.randn(2, 5, 4)
    hw_model, report = convert(model, HardwareConfig(), keep_float=["encoder.rnn"])
    assert report.kept_float == ["encoder.rnn"] and "kept float: encoder.rnn" in str(report)
    assert [p for p, _ in report.converted] == ["encoder.embed", "head"]
    assert isinstance(hw_model.encoder.rnn, nn.LSTM) and torch.equal(hw_model(x), model(x))
    # the LSTM and the items taken from its (out, (h, c)) are one float part, kept on purpose
    assert report.float_ops == [] and all(p.kept for p in float_parts(hw_model))
    assert [p.name for p in float_parts(hw_model)] == ["encoder.rnn", "getitem", "getitem_1"]
    # a whole subtree can stay float
    _, sub = convert(model, HardwareConfig(), keep_float=["encoder"])
    assert [p for p, _ in sub.converted] == ["head"]
    with pytest.raises(ValueError, match=r"keep_float names no module of the model: 'encoder\.rnm'"):
        convert(model, HardwareConfig(), keep_float=["encoder.rnm"])


@pytest.mark.parametrize("module, name", [
    (nn.MultiheadAttention(8, 2), "nn.MultiheadAttention"),
    (nn.Conv3d(2, 2, 3), "nn.Conv3d"),
    (nn.Conv1d(2, 2, 3), "nn.Conv1d"),
    (nn.ConvTranspose2d(2, 2, 3), "nn.ConvTranspose2d"),
    (nn.Embedding(5, 3), "nn.Embedding"),
])
def test_weighted_modules_without_hardware_equivalent(module, name):
    model = nn.Sequential(nn.Linear(2, 2), nn.ModuleDict({"x": module}))
    with pytest.raises(ValueError, match=rf"^1\.x: {name} has no hardware equivalent; pass keep_float=\['1\.x'\]"):
        convert(model, HardwareConfig())
    _, report = convert(model, HardwareConfig(), keep_float=["1.x"])
    assert report.converted == [("0", "nn.Linear")]


def test_several_refusals_and_custom_parameters():
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.s = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return x * self.s

    class MyLinear(nn.Linear):
        def forward(self, x):
            return super().forward(x) * 2

    model = nn.Sequential(Scale(), MyLinear(3, 3), nn.LayerNorm(3), nn.Linear(3, 1))
    with pytest.raises(ValueError) as exc:
        convert(model, HardwareConfig())
    msg = str(exc.value)
    assert msg.startswith("0: test_convert.") and "Scale, 1: test_convert." in msg and "MyLinear have no" in msg
    assert msg.endswith("pass keep_float=['0', '1'] to keep them float") and "\n" not in msg


def test_root_layer_and_tied_weights():
    lin = nn.Linear(3, 3)
    new, report = convert(lin, HardwareConfig())
    assert isinstance(new, ApproxLinear) and report.converted == [("", "nn.Linear")]
    assert type(lin) is nn.Linear
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    hw_model, report = convert(model, HardwareConfig())
    assert [p for p, _ in report.converted] == ["0", "2"] and hw_model[0] is hw_model[2]
    with pytest.raises(TypeError, match="HardwareConfig"):
        convert(model, "hardware")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lazy"):
        convert(nn.Sequential(nn.LazyLinear(2)), HardwareConfig())


def test_model_helpers_refuse_a_model_without_hardware_layers():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2))
    for call in (lambda: set_hardware(model, HardwareConfig(mode="hardware")),
                 lambda: calibrate_model(model, torch.randn(1, 1, 3, 3)),
                 lambda: sample_chip(model, None)):
        with pytest.raises(ValueError, match=r"^model has no ApproxLinear/ApproxConv2d layers .*axhw\.convert") as exc:
            call()
        assert "\n" not in str(exc.value)
