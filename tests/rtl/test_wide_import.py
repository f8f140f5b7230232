"""Circuits wider than 8 bits (axhw.rtl.bitslice, axhw.rtl.wide_import): Yosys compiles a circuit into gates
that equal axhw's own multiplier models (generated DRUM and exact RTL, exhaustively at 8 bits, on corner and
random pairs at 16) and the exhaustive tables of imported 8-bit circuits; the wide import checks the gates
against the simulation of the Verilog, stores them, and gives a model equal to the tests' independent Python
models (tests/circuits); sequential circuits, loops and undriven bits are refused in one line; a tampered
netlist is caught; the verification registry and cocotb re-verification accept the result."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from axhw.arith import library
from axhw.arith.gates import GateMultiplier, GateNetlist
from axhw.arith.multipliers import DRUM, Exact
from axhw.arith.registry import get_multiplier
from axhw.arith.verification import coverage
from axhw.common import taken
from axhw.rtl.bitslice import compile_circuit
from axhw.rtl.generate import MultiplierConfig, generate
from axhw.rtl.imported import CircuitImportError, import_circuit
from axhw.rtl.wide_import import check_pairs, corner_words, verify_netlist

CIRCUITS = Path(__file__).parents[1] / "circuits"
sys.path.insert(0, str(CIRCUITS))
import models  # noqa: E402


def _generated(cfg: MultiplierConfig, tmp_path: Path, yosys: str) -> GateNetlist:
    files = generate(cfg)
    sources = [(name, text.encode()) for name, text in files.items()]
    return compile_circuit(sources, cfg.top, cfg.bits, {"a": "a", "b": "b", "p": "p"}, tmp_path)


def _values(words: torch.Tensor, bits: int) -> torch.Tensor:
    return torch.where(words >= 1 << (bits - 1), words - (1 << bits), words)


@pytest.mark.parametrize("design,k,signed", [("drum", 3, True), ("drum", 2, False), ("exact", None, True)])
def test_generated_8bit_rtl_compiles_to_gates_equal_to_the_model_exhaustively(design: str, k: int | None,
                                                                              signed: bool, tmp_path: Path,
                                                                              yosys: str) -> None:
    cfg = MultiplierConfig(design, bits=8, k=k, signed=signed)
    netlist = _generated(cfg, tmp_path, yosys)
    model = DRUM(k, 8, signed) if design == "drum" else Exact(8, signed)
    gates = GateMultiplier(netlist, signed=signed, core_signed=signed)
    lo, hi = model.operand_range
    v = torch.arange(lo, hi + 1)
    with taken.counting() as paths:
        got = gates(v[:, None], v[None, :])
    assert paths["arith.bitslice_kernel"] == 1
    assert torch.equal(got, model(v[:, None], v[None, :]))


def test_generated_16bit_drum_compiles_to_gates_equal_to_the_model(tmp_path: Path, yosys: str) -> None:
    cfg = MultiplierConfig("drum", bits=16, k=4, signed=True)
    netlist = _generated(cfg, tmp_path, yosys)
    aw, bw = check_pairs(16, 200_000, seed=5)
    a, b = _values(torch.from_numpy(aw), 16), _values(torch.from_numpy(bw), 16)
    gates = GateMultiplier(netlist, signed=True)
    assert torch.equal(gates(a, b), DRUM(4, 16)(a, b))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-(1 << 15), 1 << 15, (300, 64), generator=g)
    w = torch.randint(-(1 << 15), 1 << 15, (64, 7), generator=g)
    assert torch.equal(gates.matmul(x, w), DRUM(4, 16).matmul(x, w))


def test_corner_words_cover_the_extremes_and_powers_of_two() -> None:
    c = set(corner_words(12).tolist())
    assert {0, 1, 0xFFF, 0x800, 0x7FF, 0x801, 0xFFE} <= c
    assert all(1 << i in c and (-(1 << i)) & 0xFFF in c for i in range(12))
    aw, bw = check_pairs(12, 1000, seed=0)
    assert aw.shape == bw.shape == (len(c) ** 2 + 1000,) and int(aw.max()) < 4096 and int(aw.min()) >= 0
    aw2, _ = check_pairs(12, 1000, seed=0)
    assert np.array_equal(aw, aw2)  # seeded


def _import_wide(name: str, sim: str, **kw):
    files = {"rtrunc12s": ("rtrunc12s.v", "rtrunc12s", 12, True, "a=x,b=w,p=y"),
             "bam16u": ("bam16u.v", "bam16u", 16, False, "a=A,b=B,p=O")}
    f, top, bits, signed, ports = files[name]
    return import_circuit([CIRCUITS / f], top, bits, signed, ports, simulator=sim, pairs=kw.pop("pairs", 20_000), **kw)


def _check_against_python_model(name: str, bits: int, signed: bool) -> None:
    fn = getattr(models, name)
    aw, bw = check_pairs(bits, 2000, seed=7)
    if signed:
        a, b = _values(torch.from_numpy(aw), bits), _values(torch.from_numpy(bw), bits)
    else:
        a, b = torch.from_numpy(aw), torch.from_numpy(bw)
    m = get_multiplier(name, bits, signed)
    assert isinstance(m, library.WideImportedMultiplier)
    want = torch.tensor([fn(int(x), int(y)) for x, y in zip(a, b, strict=True)])
    assert torch.equal(m(a, b), want)
    if not signed:  # the signed use: through the sign-magnitude wrapper
        sa, sb = _values(torch.from_numpy(aw), bits), _values(torch.from_numpy(bw), bits)
        want_s = torch.tensor([models.sign_magnitude(fn, int(x), int(y), bits) for x, y in zip(sa, sb, strict=True)])
        assert torch.equal(get_multiplier(name, bits)(sa, sb), want_s)


def test_wide_import_signed_12bit(lib: Path, icarus: str, yosys: str, capsys: pytest.CaptureFixture[str]) -> None:
    from axhw.apps.cli import main

    assert main(["multipliers", "import", str(CIRCUITS / "rtrunc12s.v"), "--top", "rtrunc12s", "--bits", "12",
                 "--ports", "a=x,b=w,p=y", "--pairs", "20000", "--sim", "icarus"]) == 0
    out = capsys.readouterr().out
    pairs = len(corner_words(12)) ** 2 + 20_000
    assert f"equal to the simulation on {pairs} pairs with icarus" in out
    assert "95% confidence intervals" in out
    assert (lib / "rtrunc12s" / "gates.json").is_file() and not (lib / "rtrunc12s" / "table.npy").exists()
    info = library.circuit_info("rtrunc12s")
    assert info.bits == 12 and info.stats["check_pairs"] == pairs and not info.stats["exhaustive"]
    assert info.stats["ci95"]["mae"][0] < info.stats["mae"] < info.stats["ci95"]["mae"][1]
    # floor(p / 64) * 64: the error is -(p mod 64), and a, b mod 64 are uniform over uniform 12-bit words, so
    # the true mean error is -mean((a * b) mod 64) over a, b in 0..63; it lies in the sampled interval
    r = torch.arange(64)
    truth = -float(((r[:, None] * r[None, :]) % 64).double().mean())
    assert info.stats["ci95"]["mean_error"][0] < truth < info.stats["ci95"]["mean_error"][1]
    assert info.stats["wce"] <= 63
    _check_against_python_model("rtrunc12s", 12, True)
    ok, msg = coverage("rtrunc12s", 12)
    assert ok and f"simulated on {pairs} corner and random pairs" in msg and "compiled gates" in msg
    # an edited netlist is a different model: the registry stops vouching for it
    gates = lib / "rtrunc12s" / "gates.json"
    text = gates.read_text()
    op = next(o for o in ('["XOR"', '["AND"', '["OR"') if o in text)
    gates.write_text(text.replace(op, '["XNOR"', 1))
    ok, msg = coverage("rtrunc12s", 12)
    assert not ok and "changed since import" in msg
    gates.write_text(text.replace('"outputs":[', '"outputs":[0,', 1))  # 25 product bits: unreadable
    with pytest.raises(ValueError, match="re-import the circuit with --force"):
        library.load("rtrunc12s", 12)


@pytest.mark.slow
def test_wide_import_unsigned_16bit_multi_module_and_reverify(lib: Path, verilator_exe: str, yosys: str) -> None:
    res = _import_wide("bam16u", "verilator")
    assert res.info.bits == 16 and not res.info.signed and len(res.stats) == 2  # its own use and the wrapped one
    _check_against_python_model("bam16u", 16, False)
    from axhw.rtl.imported import verify_imported

    results = verify_imported("bam16u", "verilator")
    assert len(results) == 2 and all(r.ok and r.mismatches == 0 for r in results)
    ok, msg = coverage("bam16u", 16)
    assert ok and "cocotb re-verified on verilator" in msg


def test_wide_circuits_refused_in_one_line(lib: Path, icarus: str, yosys: str, tmp_path: Path) -> None:
    cases = [
        ("latch12s.v", "latch12s", "sequential cell"),
        ("loop12s.v", "loop12s", "combinational loop"),
        ("undriven12s.v", "undriven12s", r"product bit 0 \(p\[0\]\) of 'undriven12s' is undriven"),
    ]
    for f, top, pattern in cases:
        with pytest.raises(CircuitImportError, match=pattern) as err:
            import_circuit([CIRCUITS / f], top, 12, True, simulator=icarus, pairs=100)
        assert "\n" not in str(err.value)
    with pytest.raises(CircuitImportError, match="out of range"):
        import_circuit([CIRCUITS / "rtrunc12s.v"], "rtrunc12s", 17, True, "a=x,b=w,p=y", simulator=icarus)
    with pytest.raises(CircuitImportError, match="only circuits wider than 8 bits"):
        import_circuit([CIRCUITS / "rtrunc8s.v"], "rtrunc8s", 8, True, "a=x,b=w,p=y", simulator=icarus, pairs=10)
    assert not lib.exists() or not library.names()


def test_a_netlist_that_differs_from_the_verilog_is_caught(tmp_path: Path, icarus: str, yosys: str) -> None:
    src = [("rtrunc12s.v", (CIRCUITS / "rtrunc12s.v").read_bytes())]
    ports = {"a": "x", "b": "w", "p": "y"}
    good = compile_circuit(src, "rtrunc12s", 12, ports, tmp_path)
    checked, _ = verify_netlist(good, src, "rtrunc12s", True, ports, pairs=2000, simulator=icarus)
    assert checked == len(corner_words(12)) ** 2 + 2000
    outs = list(good.outputs)
    outs[10], outs[11] = outs[11], outs[10]  # two product bits swapped
    bad = GateNetlist(12, good.gates, tuple(outs))
    with pytest.raises(CircuitImportError, match=r"disagree with its simulation on \d+ of \d+ pairs \(first: words"):
        verify_netlist(bad, src, "rtrunc12s", True, ports, pairs=2000, simulator=icarus)


@pytest.mark.parametrize("name,f,top,signed,ports", [
    ("bam8u", "bam8u.v", "bam8u", False, None),
    ("rtrunc8s", "rtrunc8s.v", "rtrunc8s", True, "a=x,b=w,p=y"),
])
def test_gates_equal_the_exhaustive_table_of_imported_8bit_circuits(name: str, f: str, top: str, signed: bool,
                                                                   ports: str | None, lib: Path, icarus: str,
                                                                   yosys: str, tmp_path: Path) -> None:
    import_circuit([CIRCUITS / f], top, 8, signed, ports, simulator=icarus)
    table = library.load(name, 8, signed=signed).table
    info = library.circuit_info(name)
    check = info.stats["gates_check"]  # the import itself compared the gates with the table
    assert check["pairs"] == 65536 and check["mismatches"] == 0 and check["gates"] > 50
    netlist = compile_circuit([(f, (CIRCUITS / f).read_bytes())], top, 8, info.ports, tmp_path)
    gates = GateMultiplier(netlist, signed=signed, core_signed=signed)
    lo, hi = gates.operand_range
    v = torch.arange(lo, hi + 1)
    words = v & 0xFF
    order = torch.argsort(words)
    assert torch.equal(gates(v[order][:, None], v[order][None, :]), table)


def test_a_network_trains_and_evaluates_on_a_wide_circuit(lib: Path, icarus: str, yosys: str, tmp_path: Path) -> None:
    """``train`` and ``evaluate`` with a 12-bit imported circuit: 12-bit words, the bit-sliced kernel taken, the
    hardware accuracy reproduced by ``evaluate`` from the checkpoint."""
    import json

    from axhw.apps.cli import main

    _import_wide("rtrunc12s", icarus, pairs=2000)
    out = tmp_path / "run"
    with taken.counting() as paths:
        assert main(["train", "--dataset", "breast_cancer", "--method", "bp", "--bits", "12", "--multiplier",
                     "rtrunc12s", "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    assert paths["arith.bitslice_kernel"] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["bits"] == 12 and metrics["config"]["multiplier"] == "rtrunc12s"
    acc = metrics["test_accuracy_hardware"]
    assert 0.5 < acc <= 1.0
    with taken.counting() as paths:
        assert main(["evaluate", "--checkpoint", str(out / "checkpoint.pt"), "--multiplier", "rtrunc12s",
                     "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    assert paths["arith.bitslice_kernel"] > 0
    (result,) = [json.loads(f.read_text()) for f in (tmp_path / "eval").glob("eval_*.json")]
    assert result["accuracy_mean"] == pytest.approx(acc) and result["multiplier"] == "rtrunc12s"


def test_a_circuit_whose_simulation_and_synthesis_differ_is_refused(lib: Path, icarus: str, yosys: str,
                                                                     tmp_path: Path) -> None:
    """An incomplete sensitivity list: the simulator updates p only when a changes (the table then holds
    stale products), synthesis builds a * b. The 8-bit import's gate check catches it."""
    f = tmp_path / "sens8s.v"
    f.write_text("module sens8s (input signed [7:0] a, input signed [7:0] b, output reg signed [15:0] p);\n"
                 "    always @(a) p = a * b;\nendmodule\n")
    with pytest.raises(CircuitImportError, match=r"disagree with its simulation on \d+ of 65536 pairs") as err:
        import_circuit([f], "sens8s", 8, True, simulator=icarus, accept_error=True)
    assert "\n" not in str(err.value) and (not lib.exists() or not library.names())


def test_wide_imports_default_to_verilator(verilator_exe: str) -> None:
    """10**7 pairs of a 16-bit circuit take Verilator under a minute and Icarus about 23 (measured): without
    --sim, wide circuits go to Verilator where it is installed; 8-bit ones stay on Icarus (no build)."""
    from axhw.rtl.wide_import import default_simulator

    assert default_simulator(12) == default_simulator(16) == "verilator"
    assert default_simulator(8) == default_simulator(4) == "icarus"
