"""Bias storage as a design choice (docs/hardware-models.md, "NTV SRAM storage"): the width of each layer's
stored bias word (``HardwareConfig.bias_word``: ``fit`` drops unused high-order bits, ``fixed`` keeps
``bias_bits``) and whether the bias words sit in the NTV memory (``ntv_biases``). Every path (eager, fused,
``forward_int``, the saved network, the power model) must store the same words and draw the same flips."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import cast

import pytest
import torch
from torch import nn

from axhw.arith.fixedpoint import FixedPoint, fit_width
from axhw.arith.kernels import fused as hwkernel
from axhw.arith.registry import get_multiplier
from axhw.arith.sram import NTVStorage, flip_probability
from axhw.common import taken
from axhw.golden.network import IntLinear, IntReLU, QuantizedNetwork
from axhw.nn import ApproxLinear, HardwareConfig, calibrate_model, sample_chip, set_hardware, to_quantized
from axhw.nn import fused as fastpath
from axhw.power.sram_energy import leakage_per_bit_w, storage_bits, storage_bits_split, storage_power

BIAS_OPTIONS = [("fit", True), ("fit", False), ("fixed", True), ("fixed", False)]


def _bias_fmt(layer: IntLinear) -> FixedPoint:
    assert layer.bias_fmt is not None
    return layer.bias_fmt


def _forward_int(qnet: QuantizedNetwork, x: torch.Tensor, mul: str, storage: NTVStorage | None = None,
                 seed: int = 0) -> torch.Tensor:
    """Output codes of ``qnet`` on real inputs ``x``, one chip drawn from ``seed``."""
    out = qnet.forward_int(qnet.quantize_input(x), get_multiplier(mul, 8), storage, torch.Generator().manual_seed(seed))
    assert isinstance(out, torch.Tensor)
    return out


# --------------------------------------------------------------------------- the width rule
def test_fit_width_exact() -> None:
    cases = {(-129, 5): 9, (0, 0): 2, (127,): 8, (-128,): 8, (128,): 9, (-1,): 2, (1,): 2, (2,): 3, (-2,): 2,
             (-3,): 3, (32767, -32768): 16, (): 2}
    for codes, bits in cases.items():
        assert fit_width(torch.tensor(codes, dtype=torch.int64), 16) == bits, codes
    assert fit_width(torch.tensor([5], dtype=torch.int32), 16) == 4  # int32 codes (the fused path's)
    with pytest.raises(ValueError, match="out of range"):
        fit_width(torch.tensor([128]), 8)  # needs 9 bits: to be saturated first
    with pytest.raises(ValueError, match="max_bits=1 out of range"):
        fit_width(torch.tensor([0]), 1)


def test_config_options_validated() -> None:
    hw = HardwareConfig()
    assert (hw.bias_word, hw.ntv_biases) == ("fit", True)  # the paper's storage: the defaults
    with pytest.raises(ValueError, match="unknown bias_word 'wide'"):
        HardwareConfig(bias_word="wide")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ntv_biases must be True or False"):
        HardwareConfig(ntv_biases=1)  # type: ignore[arg-type]
    codes = torch.tensor([-129, 5])
    assert HardwareConfig(bias_word="fit").bias_word_bits(codes) == 9
    assert HardwareConfig(bias_word="fixed").bias_word_bits(codes) == 16
    assert HardwareConfig(bias_word="fixed", bits=8, bias_bits=12).bias_word_bits(codes) == 12


# --------------------------------------------------------------------------- a layer with known formats
def _layer(hw: HardwareConfig, bias_values: list[float]) -> ApproxLinear:
    """A 3-in, len(bias_values)-out layer whose accumulator has 11 fractional bits: weights in [-0.9, 0.3]
    calibrate to fix<8,7>, the input format is set to fix<8,4>; the biases are ``bias_values`` codes."""
    layer = ApproxLinear(3, len(bias_values), hw=hw)
    with torch.no_grad():
        w = torch.linspace(-0.9, 0.3, 3 * len(bias_values)).reshape(len(bias_values), 3)
        layer.weight.copy_(w)
        assert layer.bias is not None
        layer.bias.copy_(torch.tensor(bias_values) / 2**11)
    layer.act_fmt = FixedPoint(8, 4)
    return layer


def test_fit_width_per_layer_lossless() -> None:
    codes = [-129.0, 5.0, 0.0, 100.0]
    fit = _layer(HardwareConfig(mode="quantized"), codes).int_layer()
    fixed = _layer(HardwareConfig(mode="quantized", bias_word="fixed"), codes).int_layer()
    assert fit.acc_fmt.frac == 11 and fit.weight_fmt == FixedPoint(8, 7)
    assert fit.bias_fmt == FixedPoint(9, 11) and fixed.bias_fmt == FixedPoint(16, 11)
    assert fit.bias.tolist() == fixed.bias.tolist() == [-129, 5, 0, 100]
    # saturated to bias_bits first: a bias beyond the widest word saturates, then fills it
    sat = _layer(HardwareConfig(mode="quantized", bias_bits=8), [-129.0, 300.0]).int_layer()
    assert sat.bias.tolist() == [-128, 127] and _bias_fmt(sat).bits == 8
    zero = _layer(HardwareConfig(mode="quantized"), [0.0, 0.0]).int_layer()
    assert _bias_fmt(zero).bits == 2


def _slot_read(clean: list[torch.Tensor], fmts: list[FixedPoint], slots: list[int], pos: torch.Tensor) -> list[torch.Tensor]:
    """Codes read back when the flat drawn trials ``pos`` flip, each word in a slot of ``slots[t]`` trials whose
    low ``fmt.bits`` are stored (tensor after tensor, word-major), by hand."""
    out, offset = [], 0
    for c, fmt, slot in zip(clean, fmts, slots, strict=True):
        words = fmt.to_words(c).flatten().clone()
        for p in pos.tolist():
            if offset <= p < offset + c.numel() * slot and (p - offset) % slot < fmt.bits:
                words[(p - offset) // slot] ^= 1 << ((p - offset) % slot)
        out.append(fmt.from_words(words).view(c.shape))
        offset += c.numel() * slot
    return out


@pytest.mark.parametrize("p", [0.05, 0.5, 0.999])
def test_flip_stream_gives_each_bias_an_accumulator_slot(p: float) -> None:
    """Under NTV the layer's draw covers n_w * wbits + n_b * acc_bits trials (one accumulator-wide slot per bias,
    whatever its stored width): the flips are those of that stream (by hand), a bias keeps only its slot's low
    fit-width trials (never leaves its word), and the generator consumed exactly that stream."""
    w = torch.tensor([[100, -3, 7], [-128, 127, 0]])
    b = torch.tensor([-129, 5])
    layer = IntLinear(w, b, FixedPoint(8, 4), FixedPoint(8, 7), FixedPoint(32, 11), None, FixedPoint(9, 11))
    st = NTVStorage(p=p)
    g = torch.Generator().manual_seed(3)
    got = layer.stored(st, g)
    ref = torch.Generator().manual_seed(3)
    pos = st.flip_positions(6 * 8 + 2 * 32, ref)
    assert torch.equal(g.get_state(), ref.get_state())  # the stream is n_w*8 + n_b*32 trials long, no more
    want = _slot_read([w, b], [FixedPoint(8, 7), FixedPoint(9, 11)], [8, 32], pos)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert int(got[1].min()) >= -256 and int(got[1].max()) <= 255  # no bit above the 9-bit word flips
    if p == 0.999:  # every stored bit of the fit word flips: word XOR clean word is all ones (0x1FF) where drawn
        flipped = FixedPoint(9, 11).to_words(got[1]) ^ FixedPoint(9, 11).to_words(b)
        drawn = set(pos.tolist())
        assert flipped.tolist() == [sum(1 << k for k in range(9) if 48 + 32 * i + k in drawn) for i in range(2)]
        assert flipped.tolist() == [0x1FF, 0x1FF]  # this seed draws all 18 stored bias bits: the whole 9-bit word


def test_bias_width_does_not_change_the_chip() -> None:
    """Common random numbers: the same seed gives the same weight flips, and the same flips of the bits both
    widths store, for a 9-bit and a 16-bit bias word (the stream does not depend on the bias width)."""
    w = torch.randint(-128, 128, (30, 20), generator=torch.Generator().manual_seed(0))
    b = torch.tensor(list(range(-150, 150, 10)))
    acc = FixedPoint(32, 11)
    narrow = IntLinear(w, b, FixedPoint(8, 4), FixedPoint(8, 7), acc, None, FixedPoint(9, 11))
    wide = IntLinear(w, b, FixedPoint(8, 4), FixedPoint(8, 7), acc, None, FixedPoint(16, 11))
    st = NTVStorage(p=0.05)
    wn, bn = narrow.stored(st, torch.Generator().manual_seed(4))
    ww, bw = wide.stored(st, torch.Generator().manual_seed(4))
    assert torch.equal(wn, ww) and int((wn != w).sum()) > 0
    low = (1 << 9) - 1
    assert torch.equal((FixedPoint(9, 11).to_words(bn) ^ FixedPoint(9, 11).to_words(b)),
                       (FixedPoint(16, 11).to_words(bw) ^ FixedPoint(16, 11).to_words(b)) & low)


def test_biases_outside_ntv_stay_clean() -> None:
    w = torch.randint(-128, 128, (20, 10), generator=torch.Generator().manual_seed(0))
    b = torch.tensor(list(range(-10, 10)))
    layer = IntLinear(w, b, FixedPoint(8, 4), FixedPoint(8, 7), FixedPoint(32, 11), None, FixedPoint(5, 11),
                      bias_in_ntv=False)
    st = NTVStorage(p=0.3)
    got_w, got_b = layer.stored(st, torch.Generator().manual_seed(1))
    assert torch.equal(got_b, b)  # exactly clean
    ref = torch.Generator().manual_seed(1)
    assert torch.equal(got_w, st.corrupt(w, FixedPoint(8, 7), ref))  # the weights' stream alone: n_w * 8 bits
    assert int((got_w != w).sum()) > 50  # and they did flip (p = 0.3 over 1600 bits)


# --------------------------------------------------------------------------- every path the same
def _mlp(hw: HardwareConfig, x: torch.Tensor) -> nn.Sequential:
    torch.manual_seed(11)
    model = nn.Sequential(ApproxLinear(30, 16), nn.ReLU(), ApproxLinear(16, 16), nn.ReLU(), ApproxLinear(16, 2))
    with torch.no_grad():
        for i, scale in ((0, 4.0), (4, 0.01)):  # biases of several magnitudes: the layers' fit widths differ
            bias = cast(ApproxLinear, model[i]).bias
            assert bias is not None
            bias.mul_(scale)
    set_hardware(model, hw)
    calibrate_model(model, x)
    return model


def _run(model: nn.Module, x: torch.Tensor, fused: bool, train: bool,
         monkeypatch: pytest.MonkeyPatch) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    monkeypatch.setattr(fastpath, "ENABLED", fused)
    layers = [m for m in model.modules() if isinstance(m, ApproxLinear)]
    for i, layer in enumerate(layers):
        layer.generator = torch.Generator().manual_seed(20 + i)
    model.train(train)
    model.zero_grad(set_to_none=True)
    xr = x.clone().requires_grad_(True)
    out = model(xr)
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(99))).sum().backward()
    assert xr.grad is not None
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None] + [xr.grad.clone()]
    return out.detach(), grads, [layer.generator.get_state() for layer in layers if layer.generator is not None]


@pytest.mark.skipif(not hwkernel.available(), reason="no C compiler: the fused kernels are not built")
@pytest.mark.parametrize(("bias_word", "ntv_biases"), BIAS_OPTIONS)
def test_fused_equals_eager_equals_forward_int(bias_word: str, ntv_biases: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Training-mode forwards (fresh flips) fused == eager (outputs, gradients, generator streams); eval with
    a held chip fused == eager == ``forward_int`` of the exported network with the same seed."""
    torch.manual_seed(4)
    x = torch.randn(32, 30)
    hw = HardwareConfig(mode="hardware", multiplier="K2", voltage_mv=530.0, bias_word=bias_word,  # type: ignore[arg-type]
                        ntv_biases=ntv_biases)
    model = _mlp(hw, x)
    qnet = to_quantized(model)
    widths = [_bias_fmt(layer).bits for layer in qnet.layers]
    assert all(layer.bias_in_ntv is ntv_biases for layer in qnet.layers)
    if bias_word == "fit":
        assert widths == [fit_width(layer.bias, 16) for layer in qnet.layers] and len(set(widths)) > 1
        assert max(widths) < 16
    else:
        assert widths == [16, 16, 16]
    for train in (True, False):
        a, b = copy.deepcopy(model), copy.deepcopy(model)
        if not train:
            sample_chip(a, torch.Generator().manual_seed(7))
            sample_chip(b, torch.Generator().manual_seed(7))
        with taken.counting() as fused_paths:
            out_f, grads_f, gens_f = _run(a, x, True, train, monkeypatch)
        with taken.counting() as eager_paths:
            out_e, grads_e, gens_e = _run(b, x, False, train, monkeypatch)
        assert fused_paths["nn.fused"] == 3  # the fused path really ran, in every layer
        assert not any(k.startswith("nn.fused") for k in eager_paths)
        assert torch.equal(out_f, out_e)
        assert all(torch.equal(u, v) for u, v in zip(grads_f, grads_e, strict=True))
        assert all(torch.equal(u, v) for u, v in zip(gens_f, gens_e, strict=True))
        if not train:
            want = _forward_int(qnet, x, "K2", NTVStorage(530.0), seed=7)
            assert torch.equal(out_f, qnet.output_fmt.dequantize(want))


@pytest.mark.skipif(not hwkernel.available(), reason="no C compiler: the fused kernels are not built")
def test_fused_draw_length(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fused training forward consumes the stream of n_w * 8 (+ n_b accumulator-wide slots under ntv_biases)
    trials, whatever the bias width."""
    torch.manual_seed(4)
    x = torch.randn(8, 30)
    for ntv_biases in (True, False):
        model = _mlp(HardwareConfig(mode="hardware", voltage_mv=400.0, ntv_biases=ntv_biases), x)
        layer = cast(ApproxLinear, model[0])
        assert _bias_fmt(layer.int_layer()).bits < 32  # a fit word: narrower than its slot
        n_bits = layer.weight.numel() * 8 + (16 * 32 if ntv_biases else 0)
        gen = layer.generator = torch.Generator().manual_seed(5)
        monkeypatch.setattr(fastpath, "ENABLED", True)
        with taken.counting() as paths:
            layer.train()(x)
        assert paths["nn.fused"] == 1
        ref = torch.Generator().manual_seed(5)
        NTVStorage(400.0).flip_positions(n_bits, ref)
        assert torch.equal(gen.get_state(), ref.get_state())


def test_clean_outputs_identical_fit_and_fixed() -> None:
    """Lossless: without flips every bias option computes the same outputs, the same integers."""
    torch.manual_seed(4)
    x = torch.randn(32, 30)
    outs, ints = [], []
    for bias_word, ntv_biases in BIAS_OPTIONS:
        hw = HardwareConfig(mode="hardware", multiplier="K2", bias_word=bias_word,  # type: ignore[arg-type]
                            ntv_biases=ntv_biases)
        model = _mlp(hw, x).eval()
        outs.append(model(x).detach())
        q = to_quantized(model)
        ints.append(_forward_int(q, x, "K2"))
    assert all(torch.equal(o, outs[0]) for o in outs) and all(torch.equal(i, ints[0]) for i in ints)


def test_saved_network_keeps_bias_storage(tmp_path: Path) -> None:
    torch.manual_seed(4)
    x = torch.randn(8, 30)
    for ntv_biases in (True, False):
        qnet = to_quantized(_mlp(HardwareConfig(mode="quantized", ntv_biases=ntv_biases), x))
        assert ("bias_in_ntv" in qnet.state()["ops"][0]) is (not ntv_biases)  # older files: the key absent
        qnet.save(tmp_path / "q.pt")
        back = QuantizedNetwork.load(tmp_path / "q.pt")
        assert [(op.bias_fmt, op.bias_in_ntv) for op in back.layers] == \
            [(op.bias_fmt, op.bias_in_ntv) for op in qnet.layers]
        st = NTVStorage(600.0)
        assert torch.equal(_forward_int(back, x, "exact", st, seed=1), _forward_int(qnet, x, "exact", st, seed=1))


def test_state_of_graph_layers_unchanged_by_the_field() -> None:
    """The bias_in_ntv entry leaves the other entries of a saved op as they were (graph ``inputs`` as a list)."""
    for ntv in (True, False):
        layer = IntLinear(torch.zeros(2, 3, dtype=torch.int64), torch.tensor([1, -2]), FixedPoint(8, 4),
                          FixedPoint(8, 7), FixedPoint(32, 11), None, FixedPoint(3, 11), inputs=(0,), bias_in_ntv=ntv)
        op = QuantizedNetwork([layer]).state()["ops"][0]
        assert op["inputs"] == [0] and op.get("bias_in_ntv", True) is ntv
        assert QuantizedNetwork.from_state(QuantizedNetwork([layer]).state()).layers[0].bias_in_ntv is ntv


# --------------------------------------------------------------------------- storage power
def test_storage_bits_split_exact() -> None:
    l1 = IntLinear(torch.zeros(3, 4, dtype=torch.int64), torch.tensor([-129, 5, 0]), FixedPoint(8, 4),
                   FixedPoint(8, 7), FixedPoint(32, 11), FixedPoint(8, 3), FixedPoint(9, 11))
    l2 = IntLinear(torch.zeros(2, 3, dtype=torch.int64), torch.tensor([-16, 15]), FixedPoint(8, 3),
                   FixedPoint(8, 7), FixedPoint(32, 10), None, FixedPoint(5, 10), bias_in_ntv=False)
    qnet = QuantizedNetwork([l1, IntReLU(), l2])
    # NTV: 12 * 8 + 3 * 9 (layer 1 weights, biases) + 6 * 8 (layer 2 weights); nominal: 2 * 5 (layer 2 biases)
    assert storage_bits_split(qnet) == (96 + 27 + 48, 10, 18)
    assert storage_bits(qnet) == (181, 18)  # the old shape: every bit, and the weight reads
    p = storage_power(660, 171, 8, 1e8, nominal_bits=10)
    assert p.leakage_w == pytest.approx(171 * leakage_per_bit_w(660) + 10 * leakage_per_bit_w(1100), rel=1e-12)
    assert p.dynamic_w == storage_power(660, 171, 8, 1e8).dynamic_w
    assert storage_power(660, 181, 8, 1e8).leakage_w < p.leakage_w  # nominal bits leak more
    with pytest.raises(ValueError, match="must be >= 0"):
        storage_power(660, 1, 8, 1e8, nominal_bits=-1)


# --------------------------------------------------------------------------- checkpoints and the CLI
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from axhw.training.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("bias_ck")
    train(TrainConfig(dataset="breast_cancer", method="bp", epochs=2, seed=0), out, progress=False)
    return out / "checkpoint.pt"


def test_old_checkpoint_reads_as_fixed_in_ntv(checkpoint: Path) -> None:
    from axhw.training.trainer import config_from_dict, load_checkpoint, quantized_from_checkpoint

    ck = load_checkpoint(checkpoint)
    assert (ck["config"]["bias_word"], ck["config"]["ntv_biases"]) == ("fit", True)
    fit = quantized_from_checkpoint(ck)
    old = copy.deepcopy(ck)
    del old["config"]["bias_word"], old["config"]["ntv_biases"]
    cfg = config_from_dict(old["config"])
    assert (cfg.bias_word, cfg.ntv_biases) == ("fixed", True)  # what it was trained and evaluated with
    legacy = quantized_from_checkpoint(old)
    assert [_bias_fmt(layer).bits for layer in legacy.layers] == [16, 16, 16]
    assert all(layer.bias_in_ntv for layer in legacy.layers)
    assert [_bias_fmt(layer).bits for layer in fit.layers] == [fit_width(layer.bias, 16) for layer in fit.layers]
    assert all(torch.equal(a.bias, b.bias) for a, b in zip(fit.layers, legacy.layers, strict=True))
    over = quantized_from_checkpoint(old, bias_word="fit", ntv_biases=False)
    assert [layer.bias_fmt for layer in over.layers] == [layer.bias_fmt for layer in fit.layers]
    assert not any(layer.bias_in_ntv for layer in over.layers)


def test_evaluate_overrides_and_cli(checkpoint: Path, tmp_path: Path) -> None:
    from axhw.apps.cli import main
    from axhw.training.evaluate import evaluate

    clean = {(w, n): evaluate(checkpoint, "exact", 1100, runs=1, bias_word=w, ntv_biases=n)  # type: ignore[arg-type]
             for w, n in BIAS_OPTIONS}
    assert len({r.accuracy_mean for r in clean.values()}) == 1  # lossless
    assert [(r.bias_word, r.ntv_biases) for r in clean.values()] == BIAS_OPTIONS
    # flips at 400 mV (p = 10%): weights-only equals an evaluation whose biases are exactly clean
    assert flip_probability(400) == 0.1
    weights_only = evaluate(checkpoint, "exact", 400, runs=2, seed=3, ntv_biases=False)
    fit = evaluate(checkpoint, "exact", 400, runs=2, seed=3)
    assert weights_only.accuracies != fit.accuracies
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--voltage", "400", "--runs", "2", "--seed", "3",
                 "--ntv-words", "weights", "--out", str(tmp_path), "--quiet"]) == 0
    saved = json.loads((tmp_path / "eval_exact_400mV.json").read_text())
    assert saved["accuracies"] == weights_only.accuracies and saved["ntv_biases"] is False
    assert saved["bias_word"] == "fit"  # as trained
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--voltage", "400", "--runs", "2", "--seed", "3",
                 "--bias-word", "fixed", "--out", str(tmp_path), "--quiet"]) == 0
    saved = json.loads((tmp_path / "eval_exact_400mV.json").read_text())
    fixed = evaluate(checkpoint, "exact", 400, runs=2, seed=3, bias_word="fixed")
    assert saved["accuracies"] == fixed.accuracies and (saved["bias_word"], saved["ntv_biases"]) == ("fixed", True)


def test_train_cli_flags(tmp_path: Path) -> None:
    from axhw.apps.cli import main
    from axhw.training.trainer import load_checkpoint

    assert main(["train", "--dataset", "breast_cancer", "--method", "bp", "--epochs", "1", "--limit", "60",
                 "--bias-word", "fixed", "--ntv-words", "weights", "--out", str(tmp_path), "--quiet"]) == 0
    cfg = load_checkpoint(tmp_path / "checkpoint.pt")["config"]
    assert (cfg["bias_word"], cfg["ntv_biases"]) == ("fixed", False)
