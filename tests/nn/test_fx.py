"""axhw.nn.fx.trace, axhw.nn.fx.ops and axhw.nn.fx.patterns: graphs (residual addition, concatenation, average
pooling, batch norm) in every mode, their integer networks, bit for bit, and the table that classifies their nodes."""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from axhw import convert
from axhw.arith.fixedpoint import FixedPoint
from axhw.arith.registry import get_multiplier
from axhw.arith.sram import NTVStorage
from axhw.examples.residual import mnist_resnet
from axhw.golden.network import (
    IntAdd,
    IntAvgPool2d,
    IntCat,
    QuantizedNetwork,
    add_int,
    avgpool2d_int,
    cat_int,
)
from axhw.nn import HardwareConfig, approx_layers, calibrate_model, sample_chip, set_hardware, to_quantized
from axhw.nn.fx import patterns
from axhw.nn.fx.lower import hardware_formats, load_hardware_formats
from axhw.nn.fx.ops import FoldedBatchNorm2d, HardwareAdd, HardwareAvgPool2d, HardwareCat
from axhw.nn.fx.patterns import (
    FLOAT,
    IDENTITY,
    KINDS,
    RELU,
    Pattern,
    classify,
    meta_nodes,
    register_pattern,
    unregister_pattern,
)
from axhw.nn.fx.trace import float_parts, modules_by_path, trace


def settle_bn(model: nn.Module, x: torch.Tensor, steps: int = 3) -> nn.Module:
    """Running statistics away from their initial values, as after training."""
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(x)
    return model.eval()


def hardware_codes(model: nn.Module, x: torch.Tensor, q: QuantizedNetwork) -> torch.Tensor:
    return torch.round(torch.ldexp(model(x).double(), torch.tensor(q.output_fmt.frac))).long()


class Inception(nn.Module):
    """Two branches concatenated, a 1x1 projection skip, average pooling, a mean, a view-flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 2, 1)
        self.bn_b = nn.BatchNorm2d(2)
        self.proj = nn.Conv2d(3, 6, 1, bias=False)
        self.mix = nn.Conv2d(6, 6, 3, padding=1)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        h = torch.cat([F.relu(self.a(x)), F.relu(self.bn_b(self.b(x)))], dim=1)
        h = F.relu(self.mix(h) + self.proj(x))
        h = F.avg_pool2d(h, 2)
        h = h.mean((2, 3), keepdim=True)
        return self.head(h.view(h.size(0), -1))


# --------------------------------------------------------------------------- integer ops
def test_add_int_aligns_rounds_and_saturates():
    a, b = torch.tensor([3, -3, 127]), torch.tensor([1, 1, 127])
    fa, fb, out = FixedPoint(8, 2), FixedPoint(8, 1), FixedPoint(8, 0)
    # 3 / 4 = 0.75 -> 1 (round half up of 0.75), -0.75 -> -1, 31.75 -> 32; b: 0.5 -> 1 (half up), 63.5 -> 64
    assert add_int([a, b], [fa, fb], out).tolist() == [2, 0, 96]
    assert add_int([a * 0 + 127, b * 0 + 127], [FixedPoint(8, 0), FixedPoint(8, 0)], out).tolist() == [127] * 3
    assert cat_int([a, b], [fa, fb], out, dim=0).tolist() == [1, -1, 32, 1, 1, 64]


def test_avgpool_int_is_round_half_up_of_the_exact_mean():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(-128, 128, (3, 2, 7, 7), generator=gen)
    got = avgpool2d_int(x, None)
    want = torch.floor(x.double().sum((2, 3), keepdim=True) / 49 + 0.5).long()
    assert torch.equal(got, want) and got.shape == (3, 2, 1, 1)
    got = avgpool2d_int(x[..., :6, :6], 2, 2)
    want = torch.floor(F.avg_pool2d(x[..., :6, :6].double(), 2) + 0.5).long()  # /4 is exact in float
    assert torch.equal(got, want)
    assert avgpool2d_int(torch.tensor([[[[1, 2], [2, 2]]]]), None).item() == 2  # 7/4 = 1.75
    assert avgpool2d_int(torch.tensor([[[[-1, -2], [-2, -1]]]]), None).item() == -1  # -1.5 -> -1 (half up)


# --------------------------------------------------------------------------- the worked example
@pytest.mark.parametrize("mul, mv", [("exact", 1100), ("K2", 660)])
def test_residual_cnn_hardware_forward_equals_forward_int(mul, mv):
    torch.manual_seed(0)
    x = torch.randn(16, 1, 28, 28)
    model = settle_bn(mnist_resnet(channels=8, sigmoid=False), x)  # outputs: the head's accumulator codes
    hw_model, report = convert(model, HardwareConfig(mode="hardware", multiplier=mul, voltage_mv=mv))
    assert [bn for bn, _ in report.folded] == ["stem.1", "block.bn1", "block.bn2", "down.1"]
    assert sorted(k for _, k in report.graph_ops) == ["HardwareAdd", "HardwareAvgPool2d"] and not report.float_ops
    assert isinstance(hw_model.block.bn1, FoldedBatchNorm2d) and isinstance(hw_model.pool, HardwareAvgPool2d)
    assert hw_model.state_dict().keys() == model.state_dict().keys()  # same paths, same keys
    set_hardware(hw_model, HardwareConfig(mode="float"))
    assert torch.equal(hw_model(x), model(x))  # float mode is the original, bit for bit
    set_hardware(hw_model, HardwareConfig(mode="hardware", multiplier=mul, voltage_mv=mv))
    calibrate_model(hw_model, x)
    hw_model.eval()
    sample_chip(hw_model, torch.Generator().manual_seed(7))
    q = to_quantized(hw_model)
    assert [op.kind for op in q.ops] == ["conv2d", "relu", "maxpool2d", "conv2d", "relu", "conv2d", "add", "relu",
                                         "conv2d", "relu", "avgpool2d", "flatten", "linear"]
    assert not q.is_chain and q.op_inputs(6) == (6, 3)  # the skip: conv2's output and the block input
    want = q.forward_int(q.quantize_input(x), get_multiplier(mul), storage=NTVStorage(mv),
                         generator=torch.Generator().manual_seed(7))
    assert torch.equal(hardware_codes(hw_model, x, q), want)


def test_batchnorm_fold_is_the_float_network_up_to_quantization():
    torch.manual_seed(1)
    x = torch.randn(64, 1, 28, 28)
    model = settle_bn(mnist_resnet(channels=8, sigmoid=False), x)
    hw_model, _ = convert(model, HardwareConfig(mode="quantized", bits=16))
    calibrate_model(hw_model, x)
    conv, bn = hw_model.block.conv1, hw_model.block.bn1
    w, b = conv.effective_params()
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    assert torch.allclose(w, conv.weight * scale[:, None, None, None]) and b is not None
    assert torch.allclose(b, bn.bias - bn.running_mean * scale)
    want = model(x)
    got = hw_model.eval()(x)
    assert (got - want).abs().max() < 1e-2 * want.abs().max()  # 16-bit: the fold is right
    assert torch.equal(got.argmax(1), want.argmax(1))


def test_concatenation_projection_pooling_and_view_flatten():
    torch.manual_seed(2)
    x = torch.randn(8, 3, 8, 8)
    model = settle_bn(Inception(), x)
    hw_model, report = convert(model, HardwareConfig(mode="hardware", multiplier="K3"))
    kinds = sorted(k for _, k in report.graph_ops)
    assert kinds == ["HardwareAdd", "HardwareAvgPool2d", "HardwareAvgPool2d", "HardwareCat"]
    assert report.folded == [("bn_b", "b")]
    set_hardware(hw_model, HardwareConfig(mode="float"))
    assert torch.equal(hw_model(x), model(x))
    set_hardware(hw_model, HardwareConfig(mode="hardware", multiplier="K3"))
    calibrate_model(hw_model, x)
    q = to_quantized(hw_model.eval())
    cat = next(op for op in q.ops if isinstance(op, IntCat))
    add = next(op for op in q.ops if isinstance(op, IntAdd))
    assert len(cat.in_fmts) == 2 and len(add.in_fmts) == 2
    assert [op.kernel for op in q.ops if isinstance(op, IntAvgPool2d)] == [2, None]
    want = q.forward_int(q.quantize_input(x), get_multiplier("K3"))
    assert torch.equal(hardware_codes(hw_model, x, q), want)


def test_graph_network_save_load_and_formats_round_trip(tmp_path):
    torch.manual_seed(3)
    x = torch.randn(8, 1, 28, 28)
    model = settle_bn(mnist_resnet(channels=4), x)
    hw_model, _ = convert(model, HardwareConfig(mode="quantized"))
    calibrate_model(hw_model, x)
    q = to_quantized(hw_model, meta={"app": "resnet"})
    q.save(tmp_path / "q.pt")
    back = QuantizedNetwork.load(tmp_path / "q.pt")
    mul = get_multiplier("K2")
    assert torch.equal(back.forward_int(back.quantize_input(x), mul), q.forward_int(q.quantize_input(x), mul))
    assert back.op_inputs(6) == (6, 3) and back.meta == {"app": "resnet"}
    # formats by module path: a fresh conversion of the same network takes them and exports the same network
    fmts = hardware_formats(hw_model)
    assert set(fmts) == {"stem.0", "block.conv1", "block.conv2", "down.0", "head", "pool", "axhw_add"}
    again, _ = convert(model, HardwareConfig(mode="quantized"))
    load_hardware_formats(again, fmts)
    q2 = to_quantized(again)
    assert all(vars(a) == vars(b) for a, b in zip(q2.ops, q.ops, strict=True) if not hasattr(a, "weight"))
    assert all(torch.equal(a.weight, b.weight) and a.act_fmt == b.act_fmt and a.out_fmt == b.out_fmt
               for a, b in zip(q2.layers, q.layers, strict=True))
    assert torch.equal(q2.forward_int(q2.quantize_input(x), mul), q.forward_int(q.quantize_input(x), mul))
    with pytest.raises(ValueError, match=r"formats do not match the model: missing \['axhw_add'\]"):
        load_hardware_formats(again, {k: v for k, v in fmts.items() if k != "axhw_add"})


class MeanHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(2, 3, 3)
        self.l = nn.Linear(3, 2)

    def forward(self, x):
        return torch.sigmoid(self.l(F.relu(self.c(x)).mean([-1, -2])))


def test_mean_without_keepdim_and_final_sigmoid():
    torch.manual_seed(9)
    x = torch.randn(6, 2, 7, 7)
    hw_model, report = convert(MeanHead(), HardwareConfig(mode="hardware", multiplier="K2"))
    assert report.graph_ops == [("mean", "HardwareAvgPool2d")] and not report.float_ops
    calibrate_model(hw_model, x)
    q = to_quantized(hw_model.eval())
    assert [op.kind for op in q.ops] == ["conv2d", "relu", "avgpool2d", "flatten", "linear"]  # sigmoid: monotone
    want = q.forward_int(q.quantize_input(x), get_multiplier("K2"))
    assert torch.equal(hw_model(x), torch.sigmoid(q.output_fmt.dequantize(want)))


def test_chain_files_stay_what_they_were():
    """A chain writes no ``inputs`` and no new keys: the files of the Table 1 networks are unchanged."""
    torch.manual_seed(4)
    model, _ = convert(nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2), nn.Sigmoid()),
                       HardwareConfig(mode="quantized"))
    calibrate_model(model, torch.randn(10, 4))
    q = to_quantized(model)
    assert q.is_chain and all("inputs" not in d for d in q.state()["ops"])
    assert q.layers[0].out_fmt == q.layers[1].act_fmt and q.layers[1].out_fmt is None


# --------------------------------------------------------------------------- training (pas) with batch norm
def test_pas_freezes_batchnorm_statistics_and_trains_through_the_fold():
    torch.manual_seed(5)
    x = torch.randn(16, 1, 28, 28)
    model = settle_bn(mnist_resnet(channels=4), x)
    hw_model, _ = convert(model, HardwareConfig(mode="hardware", multiplier="K2", voltage_mv=660))
    calibrate_model(hw_model, x)
    hw_model.train()
    mean = hw_model.block.bn1.running_mean.clone()
    hw_model(x).sum().backward()
    assert torch.equal(hw_model.block.bn1.running_mean, mean)  # integer modes: frozen statistics
    for p in (hw_model.block.bn1.weight, hw_model.block.bn1.bias, hw_model.block.conv1.weight, hw_model.head.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    set_hardware(hw_model, HardwareConfig(mode="float"))
    hw_model(x)
    assert not torch.equal(hw_model.block.bn1.running_mean, mean)  # float mode: an ordinary batch norm


# --------------------------------------------------------------------------- errors
class BNFirst(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(1)
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return self.conv(self.bn(x))


class BNAfterRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x):
        return self.bn(F.relu(self.conv(x)))


class BNSharedOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)

    def forward(self, x):
        h = self.conv(x)
        return self.bn(h) + h


@pytest.mark.parametrize("model, why", [
    (BNFirst(), r"bn: BatchNorm2d cannot be folded \(it follows the network input, not a Linear/Conv2d layer\)"),
    (BNAfterRelu(), r"bn: BatchNorm2d cannot be folded \(it follows 'relu' \(torch\.nn\.functional\.relu\)"),
    (BNSharedOutput(), r"bn: BatchNorm2d cannot be folded \(the output of 'conv' is also used elsewhere"),
    (nn.Sequential(nn.Linear(3, 4), nn.BatchNorm2d(4)), r"1: BatchNorm2d cannot be folded \(a BatchNorm2d after a linear"),
])
def test_batchnorm_that_cannot_fold_is_a_one_line_error(model, why):
    with pytest.raises(ValueError, match=why) as exc:
        convert(model, HardwareConfig(), inplace=True)
    assert "\n" not in str(exc.value) and "keep_float" in str(exc.value)
    assert not any(isinstance(m, FoldedBatchNorm2d) for m in model.modules())  # nothing changed


class Gelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.b(F.gelu(self.a(x)))


def test_unsupported_operation_runs_float_but_is_refused_by_to_quantized():
    torch.manual_seed(6)
    hw_model, report = convert(Gelu(), HardwareConfig(mode="quantized"))
    # the one graph node, by the name keep_float takes and what it calls (F.gelu, not torch._C._nn.gelu)
    assert report.float_ops == ["gelu (F.gelu)"]
    assert "no integer export" in str(report)
    with pytest.warns(UserWarning, match=r"gelu \(F\.gelu\).*to_quantized refuses this model.*keep_float=\['gelu'\]"):
        calibrate_model(hw_model, torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"^gelu \(F\.gelu\) has no integer equivalent: .* supports linear") as exc:
        to_quantized(hw_model)
    assert "\n" not in str(exc.value)


class Floats(nn.Module):
    """Three float parts: a module (GELU), a function (tanh) and a sigmoid inside the network; one dead branch."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.act, self.b, self.c = nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        h = self.b(self.act(self.a(x)))
        _ = torch.cos(h)  # dead: the output does not depend on it, nothing exports it
        return self.c(torch.sigmoid(torch.tanh(h)))


def test_float_parts_are_what_the_export_refuses():
    """One classification: float_parts lists every live float node, the report names the same ones, and
    lower refuses all of them in one line; a sigmoid inside the network is float, at the output it is not."""
    model, report = convert(Floats(), HardwareConfig(mode="quantized"))
    parts = float_parts(model)
    assert [str(p) for p in parts] == ["act (nn.GELU)", "tanh (torch.tanh)", "sigmoid (torch.sigmoid)"]
    assert not any(p.kept for p in parts) and report.float_ops == [str(p) for p in parts]
    with pytest.warns(UserWarning, match="operations without an integer equivalent"):
        calibrate_model(model, torch.randn(8, 3))
    with pytest.raises(ValueError) as exc:
        to_quantized(model)
    assert str(exc.value).startswith("act (nn.GELU), tanh (torch.tanh), sigmoid (torch.sigmoid) have no integer "
                                     "equivalent: the integer network, and the RTL that runs it, has no float unit")


def test_keep_float_names_modules_and_operations():
    model, report = convert(Floats(), HardwareConfig(mode="quantized"), keep_float=["act", "tanh"])
    assert report.kept_float == ["act", "tanh"] and report.float_ops == ["sigmoid (torch.sigmoid)"]
    assert [p.kept for p in float_parts(model)] == [True, True, False]
    with pytest.warns(UserWarning, match=r"sigmoid \(torch\.sigmoid\) \(each layer"):  # kept parts: no warning
        calibrate_model(model, torch.randn(8, 3))
    model, report = convert(Floats(), HardwareConfig(mode="quantized"), keep_float=["act", "tanh", "sigmoid"])
    assert report.float_ops == [] and all(p.kept for p in float_parts(model))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        calibrate_model(model, torch.randn(8, 3))
    with pytest.raises(ValueError, match=r"^act \(nn\.GELU\), tanh \(torch\.tanh\), sigmoid \(torch\.sigmoid\) run in "
                                         r"float on purpose \(keep_float, axhw train --keep-float\): the integer network, and the RTL"):
        to_quantized(model)
    # a name that is no float operation (relu is not in the graph; 'b' is a hardware layer, kept float it
    # stays a plain Linear and becomes a float part itself)
    with pytest.raises(ValueError, match=r"^keep_float names no module or float operation of the model: 'relu' "
                                         r"\(its float operations: act \(nn\.GELU\)"):
        convert(Floats(), HardwareConfig(), keep_float=["relu"])
    model, _ = convert(Floats(), HardwareConfig(), keep_float=["b"])
    assert "b (nn.Linear)" in [str(p) for p in float_parts(model) if p.kept]


def test_kept_float_names_survive_inplace_and_refusals_change_nothing():
    model = Floats()
    with pytest.raises(ValueError, match="'cos'"):  # dead code is no float part of the model
        convert(model, HardwareConfig(), inplace=True, keep_float=["cos"])
    assert type(model.a) is nn.Linear  # nothing changed before the error
    out, _ = convert(model, HardwareConfig(), inplace=True, keep_float=["act", "tanh", "sigmoid"])
    assert all(p.kept for p in float_parts(out))


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(3, 3)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent: not traceable
            return self.a(x)
        return -self.a(x)


def test_untraceable_model_needs_graph_false_and_has_no_integer_export():
    with pytest.raises(ValueError, match=r"^model is not torch\.fx-traceable .*graph=False") as exc:
        convert(Branchy(), HardwareConfig())
    assert "\n" not in str(exc.value)
    hw_model, report = convert(Branchy(), HardwareConfig(mode="quantized"), graph=False)
    assert not report.traced and "not traced" in str(report)
    calibrate_model(hw_model, torch.rand(4, 3))  # each layer calibrates its own formats
    assert hw_model.a.act_fmt is not None and hw_model.a.out_fmt is not None
    with pytest.raises(ValueError, match="converted with graph=False"):
        to_quantized(hw_model)


def test_shared_layer_and_bad_reshape_are_errors():
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(3, 3)

        def forward(self, x):
            return self.a(F.relu(self.a(x)))

    hw_model, _ = convert(Twice(), HardwareConfig(mode="quantized"))
    with pytest.raises(ValueError, match="layer 'a' is called more than once"):
        calibrate_model(hw_model, torch.randn(4, 3))

    class Fold(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c = nn.Conv2d(1, 2, 1)
            self.l = nn.Linear(4, 2)

        def forward(self, x):
            return self.l(self.c(x).view(-1, 4))  # (N, 2, 2, 2) -> (2N, 4): mixes samples

    hw_model, _ = convert(Fold(), HardwareConfig(mode="quantized"))
    with pytest.raises(ValueError, match=r"reshapes \(3, 2, 2, 2\) to \(6, 4\): only a flatten"):
        calibrate_model(hw_model, torch.randn(3, 1, 2, 2))


def test_uncalibrated_graph_op_and_non_cpu_tensors_are_clear_errors():
    add = HardwareAdd(HardwareConfig(mode="quantized"))
    with pytest.raises(ValueError, match=r"HardwareAdd has no formats: run axhw\.nn\.calibrate_model"):
        add(torch.ones(2), torch.ones(2))
    assert add(3, 4) == 7  # sizes stay Python arithmetic
    assert torch.equal(HardwareCat(1)(torch.ones(1, 1), torch.zeros(1, 1)), torch.tensor([[1.0, 0.0]]))
    model, _ = convert(nn.Sequential(nn.Linear(3, 2)), HardwareConfig(mode="quantized"))
    calibrate_model(model, torch.randn(4, 3))
    with pytest.raises(RuntimeError, match=r"^ApproxLinear: the quantized and hardware modes run on the CPU, got a "
                                           r"tensor on meta: move the model and its inputs with \.cpu\(\)"):
        model.to("meta")(torch.empty(4, 3, device="meta"))


def test_layer_order_is_call_order():
    """sample_chip draws flips in approx_layers order and forward_int in call order: convert makes them agree."""

    class Reversed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.second = nn.Linear(4, 2)
            self.first = nn.Linear(3, 4)

        def forward(self, x):
            return self.second(F.relu(self.first(x)))

    torch.manual_seed(8)
    x = torch.randn(5, 3)
    hw_model, _ = convert(Reversed(), HardwareConfig(mode="hardware", multiplier="K2", voltage_mv=660))
    assert [layer.weight.shape[1] for layer in approx_layers(hw_model)] == [3, 4]
    calibrate_model(hw_model, x)
    sample_chip(hw_model.eval(), torch.Generator().manual_seed(1))
    q = to_quantized(hw_model)
    want = q.forward_int(q.quantize_input(x), get_multiplier("K2"), storage=NTVStorage(660),
                         generator=torch.Generator().manual_seed(1))
    assert torch.equal(hardware_codes(hw_model, x, q), want)
    # built by hand (not converted), the same model is refused rather than exported with mismatched flips
    plain = Reversed()
    plain.second, plain.first = (convert(m, HardwareConfig(mode="quantized"))[0] for m in (plain.second, plain.first))
    calibrate_model(plain, x)
    with pytest.raises(ValueError, match="calls its layers in another order than it registers them"):
        to_quantized(plain)


# --------------------------------------------------------------------------- the pattern table
class Fn(nn.Module):
    """A one-line model: ``forward(x)`` is ``fn(self, x)`` (traced through), with the given submodules
    (tensors: buffers)."""

    def __init__(self, fn, **modules: nn.Module | torch.Tensor) -> None:
        super().__init__()
        self.fn = fn
        for name, m in modules.items():
            if isinstance(m, torch.Tensor):
                self.register_buffer(name, m)
            else:
                setattr(self, name, m)

    def forward(self, x):
        return self.fn(self, x)


def kinds_of(model: nn.Module) -> dict[str, str]:
    """Node name -> kind, as the converted model's graph is classified."""
    hw_model, _ = convert(model, HardwareConfig(mode="quantized"))
    graph = trace(hw_model)
    mods, meta = modules_by_path(hw_model), meta_nodes(graph)
    return {n.name: classify(n, mods, meta) for n in graph.nodes}


def lin() -> nn.Linear:
    return nn.Linear(4, 4)


KIND_CASES = [  # (kind, forward, submodules, node name)
    ("input", lambda s, x: F.relu(x), {}, "x"),
    ("output", lambda s, x: F.relu(x), {}, "output"),
    ("layer", lambda s, x: s.l(x), {"l": lin()}, "l"),
    ("fold", lambda s, x: s.bn(s.c(x)), {"c": nn.Conv2d(1, 2, 1), "bn": nn.BatchNorm2d(2)}, "bn"),
    ("add", lambda s, x: s.l(x) + x, {"l": lin()}, "axhw_add"),
    ("cat", lambda s, x: torch.cat([s.l(x), x], 1), {"l": lin()}, "axhw_cat"),
    ("avgpool", lambda s, x: F.avg_pool2d(x, 2), {}, "axhw_avg_pool2d"),
    ("avgpool", lambda s, x: s.p(x), {"p": nn.AdaptiveAvgPool2d(1)}, "p"),
    ("relu", lambda s, x: s.r(x), {"r": nn.ReLU()}, "r"),
    ("relu", lambda s, x: x.relu(), {}, "relu"),
    ("maxpool", lambda s, x: s.p(x), {"p": nn.MaxPool2d(2)}, "p"),
    ("maxpool", lambda s, x: F.max_pool2d(x, 2, 2), {}, "max_pool2d"),
    ("flatten", lambda s, x: s.f(x), {"f": nn.Flatten()}, "f"),
    ("flatten", lambda s, x: torch.flatten(x, 1), {}, "flatten"),
    ("flatten", lambda s, x: x.view(x.size(0), -1), {}, "view"),
    ("identity", lambda s, x: s.d(x), {"d": nn.Dropout()}, "d"),
    ("identity", lambda s, x: x.contiguous(), {}, "contiguous"),
    ("monotone", lambda s, x: torch.softmax(x, 1), {}, "softmax"),
    ("monotone", lambda s, x: s.g(x), {"g": nn.Sigmoid()}, "g"),
    ("meta", lambda s, x: x.view(x.size(0), -1), {}, "size"),
    ("float", lambda s, x: F.gelu(x), {}, "gelu"),  # unknown operations: function, module, method, attribute
    ("float", lambda s, x: s.t(x), {"t": nn.Tanh()}, "t"),
    ("float", lambda s, x: x.tanh(), {}, "tanh"),
    ("float", lambda s, x: x * s.w, {"w": torch.ones(1)}, "w"),
    ("float", lambda s, x: F.max_pool2d(x, 3, padding=1), {}, "max_pool2d"),  # padding: no integer op
    ("float", lambda s, x: torch.flatten(x), {}, "flatten"),  # the batch too
]


@pytest.mark.parametrize("kind, fn, modules, name", KIND_CASES,
                         ids=[f"{k}-{n}-{i}" for i, (k, _, _, n) in enumerate(KIND_CASES)])
def test_pattern_table_classifies_each_kind(kind, fn, modules, name):
    assert kinds_of(Fn(fn, **modules))[name] == kind


def test_every_kind_has_a_row_and_a_case():
    assert {p.kind for p in patterns.PATTERNS} == set(KINDS) == {k for k, *_ in KIND_CASES}
    assert all(p.doc for p in patterns.PATTERNS)


def test_registered_pattern_is_honoured_and_removed_again():
    def model():
        return Fn(lambda s, x: s.b(F.alpha_dropout(F.relu(s.a(x)), 0.1, training=False)), a=nn.Linear(3, 4),
                  b=nn.Linear(4, 2))

    row = Pattern(IDENTITY, functions=[F.alpha_dropout], doc="alpha dropout: nothing at inference")
    assert row.functions == (F.alpha_dropout,)  # lists become tuples
    assert kinds_of(model())["alpha_dropout"] == FLOAT
    before = patterns.PATTERNS
    register_pattern(row)
    try:
        assert (*before, row) == patterns.PATTERNS  # appended: the built-in rows still win
        assert kinds_of(model())["alpha_dropout"] == IDENTITY
        hw_model, report = convert(model(), HardwareConfig(mode="quantized"))
        assert not report.float_ops
        calibrate_model(hw_model, torch.randn(8, 3))
        assert [op.kind for op in to_quantized(hw_model.eval()).ops] == ["linear", "relu", "linear"]
    finally:
        unregister_pattern(row)
    assert before == patterns.PATTERNS and kinds_of(model())["alpha_dropout"] == FLOAT


def test_registered_pattern_before_a_kind_overrides_it():
    model = Fn(lambda s, x: s.l(x).relu_().relu(), l=lin())
    row = Pattern(FLOAT, methods=("relu_",), doc="in-place ReLU stays float")
    register_pattern(row, before=RELU)
    try:
        assert patterns.PATTERNS.index(row) == next(i for i, p in enumerate(patterns.PATTERNS) if p.kind == RELU) - 1
        got = kinds_of(model)
        assert (got["relu_"], got["relu"]) == (FLOAT, RELU)
    finally:
        unregister_pattern(row)
    got = kinds_of(model)
    assert (got["relu_"], got["relu"]) == (RELU, RELU)


def test_pattern_errors():
    before = patterns.PATTERNS
    with pytest.raises(ValueError, match="pattern 'relu' names no modules, functions, methods or ops"):
        Pattern(RELU)
    with pytest.raises(ValueError, match="pattern kind 'gelu' is not one of input, output, layer"):
        register_pattern(Pattern("gelu", functions=(F.gelu,)))
    with pytest.raises(ValueError, match="no pattern of kind 'gelu' to register before"):
        register_pattern(Pattern(FLOAT, functions=(F.gelu,)), before="gelu")
    with pytest.raises(ValueError, match=r"pattern 'float' \(no doc\) is not in the table"):
        unregister_pattern(Pattern(FLOAT, functions=(F.gelu,)))
    assert before == patterns.PATTERNS  # nothing was added
