"""The PE and the PE array against the integer golden model on a trained breast-cancer MLP (docs/rtl.md,
"Running a trained network").

Default suite (under both simulators): the DRUM-K2 PE on real first-layer dot products and the DRUM-K2 array
on real test samples (K2 has the multiplier's saturation corner), plus generation, lint, fit errors and a
deliberately broken reference (wrong re-quantization rounding) that the array check must catch. Exact PEs,
the full test set and per-neuron modes are ``slow``. The network trains once per session (~3 s).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import axhw.golden.network
from axhw.golden.network import QuantizedNetwork
from axhw.rtl.generate import MultiplierConfig
from axhw.rtl.netverify import NetCheckResult, run_array, run_pe
from axhw.rtl.pe import ArrayConfig, generate_array, generate_pe
from axhw.rtl.program import NetworkDoesNotFit, compile_network, write_array


def small(k: int | None, **kw: object) -> ArrayConfig:
    """A geometry that fits the breast-cancer MLP (30-64-64-2) and builds fast: 8 PEs, 64-deep local memories."""
    mul = MultiplierConfig("drum", 8, k) if k else MultiplierConfig("exact", 8)
    geo = {"pes": 8, "max_fan_in": 64, "nbuf_depth": 256, "wbuf_depth": 2048, "bbuf_depth": 32, "obuf_depth": 16,
           "imem_depth": 8}
    return ArrayConfig(mul, **{**geo, **kw})  # type: ignore[arg-type]


def assert_ok(r: NetCheckResult) -> None:
    assert r.ok, r.describe()


# --- simulation ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, pytest.param(None, marks=pytest.mark.slow)], ids=["K2", "exact"])
def test_pe_real_dot_products(k: int | None, simulator: str, bc: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    qnet, x = bc
    r = run_pe(small(k), simulator, qnet.layers[0], x[:3], network="breast_cancer")
    assert_ok(r)
    assert r.vectors == 3 * 64


@pytest.mark.parametrize("k", [2, pytest.param(None, marks=pytest.mark.slow)], ids=["K2", "exact"])
def test_array_runs_trained_mlp(k: int | None, simulator: str, bc: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    qnet, x = bc
    r = run_array(small(k), simulator, qnet, x[:24], network="breast_cancer")
    assert_ok(r)
    assert r.vectors == 24 * (64 + 64 + 2) and r.mismatches == [0, 0, 0]


@pytest.mark.slow
@pytest.mark.parametrize("k", [2, None], ids=["K2", "exact"])
def test_array_full_test_set(k: int | None, simulator: str, bc: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    qnet, x = bc
    assert_ok(run_array(small(k), simulator, qnet, x, network="breast_cancer", tag="full"))


@pytest.mark.slow
def test_array_per_neuron_modes(simulator: str, bc: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    """ApproxAnn hook: random exact/approximate modes per output neuron, against the per-neuron reference."""
    qnet, x = bc
    g = torch.Generator().manual_seed(1)
    modes = [torch.rand(layer.weight.shape[0], generator=g) < 0.5 for layer in qnet.layers]
    assert_ok(run_array(small(1, dual=True), simulator, qnet, x[:24], modes=modes, network="bc"))


def _round_half_down(acc: torch.Tensor, acc_frac: int, fmt: object) -> torch.Tensor:
    s = acc_frac - fmt.frac  # type: ignore[attr-defined]
    out = (acc + (1 << (s - 1)) - 1) >> s if s > 0 else acc
    return out.clamp(fmt.qmin, fmt.qmax)  # type: ignore[attr-defined]


def test_broken_requantization_is_caught(
    icarus: str, bc: tuple[QuantizedNetwork, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reference with round-half-down re-quantization must disagree with the RTL (the check can fail)."""
    qnet, x = bc
    monkeypatch.setattr(axhw.golden.network, "requantize", _round_half_down)
    r = run_array(small(2), icarus, qnet, x[:24], network="bc", tag="mutant")
    assert not r.ok and r.mismatches[0] > 0, r.describe()


def test_wrong_multiplier_model_is_caught(icarus: str, bc: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    from axhw.arith.multipliers import DRUM

    qnet, x = bc
    r = run_array(small(2), icarus, qnet, x[:24], mul=DRUM(3, 8), network="bc", tag="mutant_mul")
    assert not r.ok and r.first_bad is not None, r.describe()


# --- generation ----------------------------------------------------------------------------------------------


def test_lint_clean(tmp_path: Path, verilator_exe: str) -> None:
    problems = []
    for acfg in (small(2), small(None, pes=1), small(3, dual=True, bias_bits=16), ArrayConfig(MultiplierConfig(
            "drum", 16, 4), pes=4, max_fan_in=128, dual=True)):
        for top, files in (("pe", generate_pe(acfg)), ("pe_array", generate_array(acfg))):
            d = tmp_path / f"{acfg.config_id}_{top}"
            paths = [str(p) for p in write_array(acfg, d)] if top == "pe_array" else []
            if top == "pe":
                d.mkdir()
                for name, text in files.items():
                    (d / name).write_text(text)
                    paths.append(str(d / name))
            lint = subprocess.run([verilator_exe, "--lint-only", "-Wall", "--top-module", top, *paths],
                                  capture_output=True, text=True)
            if lint.returncode or "%Warning" in lint.stderr:
                problems.append(f"{acfg.config_id} {top}: {lint.stderr[:1500]}")
            if shutil.which("iverilog"):
                iv = subprocess.run(["iverilog", "-g2005", "-Wall", "-o", "/dev/null", "-s", top, *paths],
                                    capture_output=True, text=True)
                if iv.returncode or iv.stdout or iv.stderr:
                    problems.append(f"{acfg.config_id} {top} (iverilog): {iv.stdout}{iv.stderr}")
    assert not problems, "\n".join(problems[:4])


def test_one_module_per_file_and_literal_parameters() -> None:
    files = generate_array(small(2, dual=True))
    assert {"pe_array.v", "array_seq.v", "pe.v", "pe_nlm.v", "mul_drum_k2_s8.v", "mul_exact_s8.v"} <= set(files)
    # weights stored once: the array's PEs read the weight store, no weight local memory (the lone PE keeps one)
    assert "pe_wlm.v" not in files and "pe_wlm.v" in generate_pe(small(2))
    for name, text in files.items():
        assert text.count("\nmodule ") == 1 and "parameter" not in text and "{{" not in text, name


def test_yosys_synthesizes_pe(tmp_path: Path, state_cells) -> None:
    """The PE synthesizes with registers (its accumulator and pipeline) and not a single latch."""
    files = generate_pe(small(2))
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    cells = state_cells([str(tmp_path / n) for n in files], "pe", flatten=False)
    assert cells["latches"] == 0 and cells["flipflops"] > 0, cells


def test_images_and_atomic_write(tmp_path: Path, bc: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    qnet, _ = bc
    out = tmp_path / "out"
    paths = write_array(small(2), out, qnet)
    names = {p.name for p in paths}
    assert {"array_imem.hex", "array_wbuf.hex", "array_bbuf.hex", "array_program.json", "pe_array.v"} <= names
    assert len((out / "array_imem.hex").read_text().split()) == 4  # 3 layers + HALT
    prog = compile_network(small(2), qnet)
    assert [p.fan_in for p in prog.layers] == [30, 64, 64] and prog.layers[-1].last


@pytest.mark.parametrize(
    ("change", "match"),
    [({"max_fan_in": 16}, "--max-fan-in 32"), ({"wbuf_depth": 512}, "--wbuf-depth 1024"),
     ({"nbuf_depth": 128}, "--nbuf-depth 256"), ({"bbuf_depth": 8}, "--bbuf-depth 32")],
)
def test_network_that_does_not_fit_writes_nothing(
    change: dict[str, int], match: str, tmp_path: Path, bc: tuple[QuantizedNetwork, torch.Tensor]
) -> None:
    qnet, _ = bc
    with pytest.raises(NetworkDoesNotFit, match=match):
        write_array(small(2, **change), tmp_path / "out", qnet)
    assert not (tmp_path / "out").exists()


def test_cli_generate_array_with_network(tmp_path: Path, bc: tuple[QuantizedNetwork, torch.Tensor],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from axhw.rtl.cli import add_parser

    qnet, _ = bc
    qnet.save(tmp_path / "net.pt")
    parser = argparse.ArgumentParser(prog="axhw")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["rtl", "generate", "--design", "array", "--k", "2", "--network",
                              str(tmp_path / "net.pt"), "--out", str(tmp_path / "rtl")])
    assert args.func(args) == 0
    assert (tmp_path / "rtl" / "array_wbuf.hex").is_file()
    args = parser.parse_args(["rtl", "generate", "--design", "array", "--multiplier", "K2", "--network",
                              str(tmp_path / "net.pt"), "--out", str(tmp_path / "rtl_k2")])
    assert args.func(args) == 0  # the name train takes (it was resolved twice and refused as '--k and --multiplier')
    assert "mul_drum_k2_s8" in (tmp_path / "rtl_k2" / "pe.v").read_text()
    args = parser.parse_args(["rtl", "generate", "--design", "array", "--max-fan-in", "16", "--network",
                              str(tmp_path / "net.pt"), "--out", str(tmp_path / "bad")])
    assert args.func(args) == 2
    assert "--max-fan-in 32" in capsys.readouterr().err and not (tmp_path / "bad").exists()
