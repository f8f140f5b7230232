"""Convolution and max pooling on the PE array against the integer golden model (docs/rtl.md, "Mapping
convolutions onto the array").

Default suite: a tiny CNN (padding in both dimensions, asymmetric padding, stride 2, several input and output
channels, more output channels than PEs, max pooling, flatten, fully-connected layers) on the same small
geometry as the MLP tests (so the Verilator build is shared), under both simulators; per-channel multiplier
modes, the 16-bit datapath and a LeNet-5 image under Icarus; mutation tests (a transposed kernel, off-by-one
padding, a shifted window) that the comparison must catch; what does not fit. Exact PEs, Verilator on the
16-bit array and per-channel modes, and more LeNet-5 images are ``slow`` (``make rtl-verify`` runs 100
LeNet-5 images under Verilator).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from axhw.golden.network import IntConv2d, QuantizedNetwork
from axhw.nn import ApproxConv2d, ApproxLinear, HardwareConfig, calibrate_model, to_quantized
from axhw.rtl.generate import MultiplierConfig
from axhw.rtl.netverify import NetCheckResult, run_array, run_pe
from axhw.rtl.pe import DEFAULT_GEOMETRY, ArrayConfig
from axhw.rtl.program import (
    ArrayProgram,
    NetworkDoesNotFit,
    compile_network,
    encode,
    step_cycles,
)

#: Input maps of the tiny CNN.
SHAPE = (1, 6, 6)

#: Busy cycles of one LeNet-5 inference on the default geometry, counted by hand in test_lenet5_schedule.
LENET5_CYCLES = 57271


def small(k: int | None, bits: int = 8, **kw: object) -> ArrayConfig:
    """The MLP tests' geometry (tests/rtl/test_rtl_pe_array.py): the tiny CNN fits it, so builds are shared."""
    mul = MultiplierConfig("drum", bits, k) if k else MultiplierConfig("exact", bits)
    geo = {"pes": 8, "max_fan_in": 64, "nbuf_depth": 256, "wbuf_depth": 2048, "bbuf_depth": 32, "obuf_depth": 16,
           "imem_depth": 8}
    return ArrayConfig(mul, **{**geo, **kw})  # type: ignore[arg-type]


def tiny_cnn(hw: HardwareConfig) -> nn.Sequential:
    """1x6x6 -> conv 3x3 pad 1 (4 ch) -> ReLU -> max pool 2 -> conv 3x3 stride 2 pad (1, 0) (10 ch: two groups
    of 8 PEs) -> ReLU -> flatten -> 20 -> 6 -> 3."""
    return nn.Sequential(
        ApproxConv2d(1, 4, 3, padding=1, hw=hw), nn.ReLU(), nn.MaxPool2d(2),
        ApproxConv2d(4, 10, 3, stride=2, padding=(1, 0), hw=hw), nn.ReLU(),
        nn.Flatten(), ApproxLinear(20, 6, hw=hw), nn.ReLU(), ApproxLinear(6, 3, hw=hw),
    )


def quantized(bits: int, seed: int = 0) -> tuple[QuantizedNetwork, torch.Tensor]:
    torch.manual_seed(seed)
    hw = HardwareConfig(mode="quantized", bits=bits)
    model = tiny_cnn(hw).eval()
    x = torch.randn(8, *SHAPE)
    calibrate_model(model, x)
    qnet = to_quantized(model)
    return qnet, qnet.quantize_input(x)


@pytest.fixture(scope="session")
def cnn() -> tuple[QuantizedNetwork, torch.Tensor]:
    return quantized(8)


def _require(request: pytest.FixtureRequest, sim: str) -> None:
    """The conftest's skip-or-fail policy for one simulator chosen by a parameter."""
    request.getfixturevalue("icarus" if sim == "icarus" else "verilator_exe")


def assert_ok(r: NetCheckResult) -> None:
    assert r.ok, r.describe()


# --- simulation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, pytest.param(None, marks=pytest.mark.slow)], ids=["K2", "exact"])
def test_array_runs_cnn(k: int | None, simulator: str, cnn: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    qnet, x = cnn
    r = run_array(small(k), simulator, qnet, x[:4], network="tiny_cnn", tag="cnn")
    assert_ok(r)
    # conv (ReLU), pool, conv (ReLU), fc (ReLU), fc: every element of every step
    assert r.mismatches == [0] * 5 and r.vectors == 4 * (4 * 36 + 4 * 9 + 10 * 2 + 6 + 3)
    # Cycles per step, counted by hand from the sequencer's states (rtl/array_seq.v.j2; one FETCH per step,
    # 8 PEs; the PEs read their weights from the weight store, nothing is loaded). conv1: 36 pixels x
    # (WSTART 1 + LOADN 9 + WAIT 2 + WRITE 4 lanes) = 1 + 576. pool: 4 channels x 9 outputs x (WSTART 1 +
    # window 4 + PWRITE 1) = 1 + 216. conv2 (2 pixels, 10 channels = groups of 8 and 2 lanes):
    # 1 + 2 x (1 + 36 + 2 + 8) + 2 x (1 + 36 + 2 + 2) = 177. fc 20->6: 1 + (1 + 20 + 2 + 6) = 30.
    # fc 6->3: 1 + (1 + 6 + 2 + 3) = 13. Total: their sum and the HALT fetch, 1014 + 1 = 1015 per inference.
    assert [row["cycles"] for row in r.layers] == [577, 217, 177, 30, 13, 1015]
    assert r.cycles == 4 * 1015  # the simulation's busy cycles for the 4 inputs


@pytest.mark.parametrize("sim", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)])
def test_array_cnn_per_channel_modes(sim: str, cnn: tuple[QuantizedNetwork, torch.Tensor],
                                     request: pytest.FixtureRequest) -> None:
    """ApproxAnn modes per output channel of each convolution (per neuron of each fully-connected layer)."""
    _require(request, sim)
    qnet, x = cnn
    g = torch.Generator().manual_seed(2)
    modes = [torch.rand(layer.weight.shape[0], generator=g) < 0.5 for layer in qnet.layers]
    assert all(0 < int(m.sum()) < len(m) for m in modes[:2])
    assert_ok(run_array(small(1, dual=True), sim, qnet, x[:4], modes=modes, network="tiny_cnn", tag="cnn_dual"))


@pytest.mark.parametrize("sim", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)])
def test_array_16_bit(sim: str, request: pytest.FixtureRequest) -> None:
    """FlexFlow's word length: the same CNN quantized to 16 bits on a 16-bit DRUM-6 array (48-bit accumulators)."""
    _require(request, sim)
    qnet, x = quantized(16, seed=1)
    acc = qnet.layers[0].acc_fmt.bits
    acfg = small(6, bits=16, acc_bits=acc, bias_bits=acc)
    assert_ok(run_array(acfg, sim, qnet, x[:3], network="tiny_cnn16", tag="cnn16"))


def test_pe_16_bit(icarus: str) -> None:
    qnet, x = quantized(16, seed=1)
    layer = qnet.layers[2]  # the first fully-connected layer: its inputs are the flattened conv outputs
    outs = qnet.forward_int(x[:3], small(6, bits=16).approx_model(), return_all=True)
    assert isinstance(outs, list)
    acc = layer.acc_fmt.bits
    r = run_pe(small(6, bits=16, acc_bits=acc, bias_bits=acc), icarus, layer, outs[5][:3], network="tiny_cnn16")
    assert_ok(r)


# --- mutation tests: a wrong mapping must be caught ----------------------------------------------------------


def _reencode(program: ArrayProgram, step: int, **changes: object) -> ArrayProgram:
    """``program`` with one step's plan changed and the instruction memory re-encoded (a broken compiler)."""
    plans = list(program.layers)
    plans[step] = replace(plans[step], **changes)  # type: ignore[arg-type]
    acfg = program.config
    instrs = [f"{encode(acfg, p):0{(acfg.instr_bits + 3) // 4}x}" for p in plans] + ["0"]
    return ArrayProgram(acfg, plans, {**program.images, "array_imem.hex": "\n".join(instrs) + "\n"},
                        program.input_shape)


def test_transposed_kernel_is_caught(icarus: str, cnn: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    """Weights laid out (ky, kx)-transposed: the first convolution's outputs must disagree with the model."""
    qnet, x = cnn
    ops = [replace(op, weight=op.weight.transpose(2, 3).contiguous()) if isinstance(op, IntConv2d) else op
           for op in qnet.ops]
    mutant = compile_network(small(2), QuantizedNetwork(ops, qnet.meta), input_shape=SHAPE)
    r = run_array(small(2), icarus, qnet, x[:4], program=mutant, network="tiny_cnn", tag="mutant_transposed")
    assert not r.ok and r.mismatches[0] > 0, r.describe()


@pytest.mark.parametrize(("step", "change"), [(0, {"pad": (2, 1, 1, 1)}), (0, {"pad": (1, 0, 1, 1)}),
                                              (2, {"pad": (0, 0, 1, 0)}), (2, {"stride": (1, 2)})],
                         ids=["pad_top+1", "pad_left-1", "pad_top-1", "stride_h-1"])
def test_wrong_window_is_caught(step: int, change: dict[str, object], icarus: str,
                                cnn: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    """Off-by-one padding (or stride) in the window walk: that step's outputs must disagree with the model."""
    qnet, x = cnn
    program = compile_network(small(2), qnet, input_shape=SHAPE)
    assert program.layers[step].pad == ((1, 1, 1, 1) if step == 0 else (1, 0, 1, 0))
    mutant = _reencode(program, step, **change)
    r = run_array(small(2), icarus, qnet, x[:4], program=mutant, network="tiny_cnn", tag="mutant_window")
    assert not r.ok and r.mismatches[step] > 0, r.describe()


# --- LeNet-5 -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def lenet(tmp_path_factory: pytest.TempPathFactory, mnist_or_synthetic: str) -> tuple[Path, QuantizedNetwork, torch.Tensor]:
    """LeNet-5 trained briefly on MNIST (BP, 1 epoch, 500 samples; a few seconds) and its test inputs; a
    synthetic MNIST where the real one is not fetched (the RTL check needs the shapes, not the digits)."""
    from axhw.training.trainer import TrainConfig, integer_test_inputs, load_checkpoint, train

    out = tmp_path_factory.mktemp("lenet")
    train(TrainConfig(dataset="mnist_cnn", method="bp", epochs=1, limit=500), out, progress=False)
    qnet, x = integer_test_inputs(load_checkpoint(out / "checkpoint.pt"))
    return out / "checkpoint.pt", qnet, x[:8]


def test_lenet5_on_icarus(icarus: str, lenet: tuple[Path, QuantizedNetwork, torch.Tensor]) -> None:
    """The reduced LeNet-5 case: one MNIST image, DRUM-K2, the default geometry, every layer bit for bit."""
    _, qnet, x = lenet
    acfg = ArrayConfig(MultiplierConfig("drum", 8, 2), **DEFAULT_GEOMETRY)
    r = run_array(acfg, icarus, qnet, x[:1], network="lenet5", tag="lenet5")
    assert_ok(r)
    assert len(r.mismatches) == 7 and r.vectors == 6 * 784 + 6 * 196 + 1600 + 400 + 120 + 84 + 10
    assert r.cycles == LENET5_CYCLES  # simulated busy cycles = the hand count of test_lenet5_schedule


@pytest.mark.slow
@pytest.mark.parametrize("k", [2, None], ids=["K2", "exact"])
def test_lenet5_more_images(k: int | None, simulator: str, lenet: tuple[Path, QuantizedNetwork, torch.Tensor]) -> None:
    _, qnet, x = lenet
    mul = MultiplierConfig("drum", 8, k) if k else MultiplierConfig("exact", 8)
    n = 8 if simulator == "verilator" else 2
    assert_ok(run_array(ArrayConfig(mul, **DEFAULT_GEOMETRY), simulator, qnet, x[:n], network="lenet5",
                        tag="lenet5_more"))


def test_lenet5_schedule() -> None:
    """Cycles per layer from the sequencer's schedule (no simulation; the simulations check it): conv1 has 6 of
    16 lanes busy, so its utilisation is at most 6/16 of the PE time spent computing."""
    from axhw.training.models import lenet5

    torch.manual_seed(0)
    model = lenet5(HardwareConfig(mode="quantized", bits=8)).eval()
    calibrate_model(model, torch.randn(2, 1, 28, 28))
    program = compile_network(ArrayConfig(MultiplierConfig("exact", 8), **DEFAULT_GEOMETRY), to_quantized(model),
                              input_shape=(1, 28, 28))
    assert [p.kind for p in program.layers] == ["conv2d", "maxpool2d", "conv2d", "maxpool2d", "linear", "linear",
                                                "linear"]
    conv1 = program.layers[0]
    assert conv1.relu and conv1.pad == (2, 2, 2, 2) and conv1.out_shape == (6, 28, 28)
    # Counted by hand from the sequencer's states (rtl/array_seq.v.j2; 16 PEs; each step starts with a FETCH;
    # the PEs read their weights from the weight store, nothing is loaded). conv1: per pixel WSTART, 25 loads
    # (the PEs computing one behind), 2 waiting, 6 lanes written: 1 + 784 x 34 = 26657. pool1: 6 x 196 outputs
    # x (WSTART + 4 + PWRITE) = 1 + 7056. conv2 (16 lanes, one group): 1 + 100 x (1 + 150 + 2 + 16) = 16901.
    # pool2: 1 + 16 x 25 x 6 = 2401. fc1 400->120 (8 groups: 7 x 16 + 8): the first group gathers, the others
    # RUN: 1 + (1 + 400 + 2 + 16) + 6 x (400 + 2 + 16) + (400 + 2 + 8) = 3338. fc2 120->84 (5 x 16 + 4):
    # 1 + (1 + 120 + 2 + 16) + 4 x (120 + 2 + 16) + (120 + 2 + 4) = 818. fc3 84->10: 1 + (1 + 84 + 2 + 10) = 98.
    assert step_cycles(program.config, conv1) == 26657
    assert program.cycles() == [26657, 7057, 16901, 2401, 3338, 818, 98]
    assert program.cycles_per_inference == LENET5_CYCLES  # the steps and the HALT fetch: 57270 + 1


# --- what does not fit ---------------------------------------------------------------------------------------


def test_residual_network_gets_one_line_error() -> None:
    from axhw import convert
    from axhw.examples.residual import mnist_resnet

    model, _ = convert(mnist_resnet(), HardwareConfig(mode="quantized", bits=8))
    model.eval()
    calibrate_model(model, torch.randn(2, 1, 28, 28))
    with pytest.raises(NetworkDoesNotFit, match=r"^op 6 \(add: residual addition\) does not fit") as info:
        compile_network(small(2, nbuf_depth=16384, max_fan_in=256), to_quantized(model), input_shape=(1, 28, 28))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("change", "match"),
    [({"max_fan_in": 32}, "--max-fan-in 64"), ({"nbuf_depth": 128}, "--nbuf-depth 256"),
     ({"imem_depth": 4}, "--imem-depth 8")],
)
def test_cnn_that_does_not_fit(change: dict[str, int], match: str, cnn: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    qnet, _ = cnn
    with pytest.raises(NetworkDoesNotFit, match=match):
        compile_network(small(2, **change), qnet, input_shape=SHAPE)


def test_conv_needs_input_shape(cnn: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    qnet, _ = cnn
    with pytest.raises(ValueError, match="input shape"):
        compile_network(small(2), qnet)


# --- command line --------------------------------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    from axhw.rtl.cli import add_parser

    parser = argparse.ArgumentParser(prog="axhw")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_verify_network(icarus: str, lenet: tuple[Path, QuantizedNetwork, torch.Tensor], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    import json

    path, _, _ = lenet  # exact PEs (no --k): with test_lenet5_on_icarus (K2) the reduced LeNet-5 case
    assert _cli(["rtl", "verify", "--design", "array", "--network", str(path), "--samples", "1",
                 "--sim", "icarus", "--report", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "outputs compared: 8094, mismatches: 0" in out and "conv2d" in out and "maxpool2d" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report[0]["ok"] and report[0]["cycles_per_inference"] == report[0]["layers"][-1]["cycles"] == LENET5_CYCLES


def test_cli_verify_network_that_does_not_fit(lenet: tuple[Path, QuantizedNetwork, torch.Tensor],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path, _, _ = lenet
    assert _cli(["rtl", "verify", "--design", "array", "--network", str(path), "--max-fan-in", "256"]) == 2
    err = capsys.readouterr().err
    assert "does not fit the array" in err and "--max-fan-in 512" in err and err.count("\n") == 1


# --- switching activity for the power flow -------------------------------------------------------------------


@pytest.mark.parametrize("sim", ["icarus", pytest.param("verilator", marks=pytest.mark.slow)])
def test_vcd_dump(sim: str, tmp_path: Path, cnn: tuple[QuantizedNetwork, torch.Tensor],
                  request: pytest.FixtureRequest) -> None:
    """``run_array(..., vcd=...)``: a VCD of the whole ``pe_array`` hierarchy, and the check still passes."""
    _require(request, sim)
    qnet, x = cnn
    vcd = tmp_path / "run.vcd"
    assert_ok(run_array(small(2), sim, qnet, x[:1], network="tiny_cnn", tag="cnn_vcd", vcd=vcd))
    text = vcd.read_text()
    assert "$enddefinitions" in text and "u_pe0" in text and "u_seq" in text


def test_cli_generate_lenet(lenet: tuple[Path, QuantizedNetwork, torch.Tensor], tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    """``rtl generate --network`` on a CNN checkpoint: MNIST's input shape is known, one instruction per step."""
    import json

    path, _, _ = lenet
    assert _cli(["rtl", "generate", "--design", "array", "--k", "2", "--network", str(path), "--out",
                 str(tmp_path / "rtl")]) == 0
    assert len((tmp_path / "rtl" / "array_imem.hex").read_text().split()) == 8  # 7 steps + HALT
    layout = json.loads((tmp_path / "rtl" / "array_program.json").read_text())
    assert layout["input_shape"] == [1, 28, 28] and layout["layers"][1]["kind"] == "maxpool2d"
    # 32x32 maps leave 16x6x6 values for the 400-input layer
    assert _cli(["rtl", "generate", "--design", "array", "--network", str(path), "--input-shape", "1,32,32",
                 "--out", str(tmp_path / "rtl32")]) == 2
    assert not (tmp_path / "rtl32").exists() and "linear expecting 400 inputs on 576 values" in capsys.readouterr().err
