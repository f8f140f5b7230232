"""Imported library circuits inside the PE and the PE array (docs/rtl.md, "Your own multiplier in the array"):
the generated PE instantiates the user's Verilog (behind the port adapter, or inside the sign-magnitude
wrapper for an unsigned circuit), and a trained network runs bit for bit equal to ``forward_int`` on the
circuit's model: an unsigned multi-module circuit, a signed one with per-neuron modes, a 12-bit circuit
(gates, not a table). A reference on the exact multiplier must disagree (the circuit really is in the RTL);
``rtl verify --design array --multiplier NAME`` and the accelerator energy take the circuit by name."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from axhw.arith.multipliers import Exact
from axhw.golden.network import QuantizedNetwork
from axhw.rtl.imported import import_circuit, imported_config
from axhw.rtl.netverify import run_array, run_pe
from axhw.rtl.pe import ArrayConfig, generate_array

CIRCUITS = Path(__file__).parents[1] / "circuits"
sys.path.insert(0, str(CIRCUITS))

#: Breast-cancer MLP (30-64-64-2) geometry, as tests/rtl/test_rtl_pe_array.py's ``small``.
GEOMETRY = {"pes": 8, "max_fan_in": 64, "nbuf_depth": 256, "wbuf_depth": 2048, "bbuf_depth": 32, "obuf_depth": 16,
            "imem_depth": 8}


def _array(name: str, bits: int = 8, **kw: object) -> ArrayConfig:
    return ArrayConfig(imported_config(name, bits, signed=True), **{**GEOMETRY, **kw})  # type: ignore[arg-type]


@pytest.fixture
def bam8u(lib: Path, icarus: str) -> str:
    import_circuit([CIRCUITS / "bam8u.v"], "bam8u", 8, False, simulator=icarus)
    return "bam8u"


def test_the_array_instantiates_the_users_verilog(bam8u: str) -> None:
    acfg = _array(bam8u)
    files = generate_array(acfg)
    assert files["bam8u.v"] == (CIRCUITS / "bam8u.v").read_text()  # copied unchanged, helper modules and all
    (wrapper,) = [n for n in files if n.startswith("mul_import_bam8u_signed_")]
    assert "axhw_sm_bam8u u_core" in files[wrapper] and "axhw_sm_bam8u.v" in files
    assert f"{wrapper[:-2]} u_mul" in files["pe.v"]
    assert acfg.imported and acfg.config_id.startswith("array_import_bam8u_signed_")


def test_array_runs_a_network_on_an_unsigned_multi_module_circuit(bam8u: str, simulator: str,
                                                                  bc: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    qnet, x = bc
    r = run_array(_array(bam8u), simulator, qnet, x[:16], network="breast_cancer", tag="imported")
    assert r.ok and r.vectors == 16 * (64 + 64 + 2), r.describe()


def test_the_check_sees_the_circuit(bam8u: str, icarus: str, bc: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    """Negative control: the same run against the exact multiplier's reference disagrees."""
    qnet, x = bc
    r = run_array(_array(bam8u), icarus, qnet, x[:16], mul=Exact(8), network="bc", tag="imported_vs_exact")
    assert not r.ok and r.first_bad is not None, r.describe()


def test_pe_runs_dot_products_on_a_signed_circuit(lib: Path, icarus: str,
                                                  bc: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    import_circuit([CIRCUITS / "rtrunc8s.v"], "rtrunc8s", 8, True, "a=x,b=w,p=y", simulator=icarus)
    qnet, x = bc
    r = run_pe(_array("rtrunc8s"), icarus, qnet.layers[0], x[:3], network="breast_cancer")
    assert r.ok and r.vectors == 3 * 64, r.describe()


@pytest.mark.slow
def test_per_neuron_modes_with_an_imported_circuit(lib: Path, simulator: str,
                                                  bc: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    """ApproxAnn's per-neuron modes: the imported circuit or the exact multiplier, per output neuron."""
    import_circuit([CIRCUITS / "rtrunc8s.v"], "rtrunc8s", 8, True, "a=x,b=w,p=y", simulator="icarus")
    qnet, x = bc
    g = torch.Generator().manual_seed(1)
    modes = [torch.rand(layer.weight.shape[0], generator=g) < 0.5 for layer in qnet.layers]
    r = run_array(_array("rtrunc8s", dual=True), simulator, qnet, x[:16], modes=modes, network="bc")
    assert r.ok, r.describe()


def test_array_runs_a_12bit_network_on_a_wide_circuit(lib: Path, icarus: str, yosys: str, tmp_path: Path) -> None:
    """A 12-bit network on a 12-bit imported circuit: the RTL is the user's Verilog, the reference its gates."""
    from axhw import data
    from axhw.training.trainer import TrainConfig, load_checkpoint, quantized_from_checkpoint, train

    import_circuit([CIRCUITS / "rtrunc12s.v"], "rtrunc12s", 12, True, "a=x,b=w,p=y", simulator=icarus, pairs=2000)
    train(TrainConfig(dataset="breast_cancer", method="bp", epochs=2, bits=12, multiplier="rtrunc12s"), tmp_path,
          progress=False)
    qnet = quantized_from_checkpoint(load_checkpoint(tmp_path / "checkpoint.pt"))
    x = qnet.quantize_input(data.load("breast_cancer", seed=0).x_test)
    acfg = _array("rtrunc12s", 12, acc_bits=qnet.layers[0].acc_fmt.bits, bias_bits=qnet.layers[0].acc_fmt.bits)
    r = run_array(acfg, icarus, qnet, x[:8], network="bc12", tag="wide")
    assert r.ok and r.vectors == 8 * (64 + 64 + 2), r.describe()
    bad = run_array(acfg, icarus, qnet, x[:8], mul=Exact(12), network="bc12", tag="wide_vs_exact")
    assert not bad.ok


def test_cli_verifies_a_network_on_an_imported_circuit(bam8u: str, icarus: str, tmp_path: Path,
                                                       bc: tuple[QuantizedNetwork, torch.Tensor],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from axhw.apps.cli import main

    qnet, _ = bc
    qnet.save(tmp_path / "net.pt")
    rc = main(["rtl", "verify", "--design", "array", "--multiplier", "bam8u", "--network", str(tmp_path / "net.pt"),
               "--samples", "4", "--sim", "icarus", "--pes", "8"])
    out = capsys.readouterr().out
    assert rc == 0 and "array_import_bam8u_signed_" in out and "mismatches: 0" in out, out
    assert main(["rtl", "verify", "--design", "array", "--multiplier", "nosuch", "--network",
                 str(tmp_path / "net.pt"), "--sim", "icarus"]) == 2
    assert "unknown multiplier 'nosuch'" in capsys.readouterr().err


def test_cli_generates_an_array_of_an_imported_circuit(bam8u: str, tmp_path: Path,
                                                       bc: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    from axhw.apps.cli import main

    qnet, _ = bc
    qnet.save(tmp_path / "net.pt")
    assert main(["rtl", "generate", "--design", "array", "--multiplier", "bam8u", "--network",
                 str(tmp_path / "net.pt"), "--out", str(tmp_path / "rtl")]) == 0
    assert (tmp_path / "rtl" / "bam8u.v").read_text() == (CIRCUITS / "bam8u.v").read_text()
    assert (tmp_path / "rtl" / "array_wbuf.hex").is_file()
    assert main(["rtl", "generate", "--design", "pe", "--multiplier", "bam8u", "--bits", "12", "--out",
                 str(tmp_path / "pe")]) == 2  # an 8-bit circuit at 12 bits: one line, nothing written
    assert not (tmp_path / "pe").exists()
