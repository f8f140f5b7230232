"""Importing Verilog multipliers (axhw.rtl.imported): exhaustive simulation into the library, agreement with
independent Python models of the tests' own circuits (tests/circuits), one-line errors on bad input, cocotb
re-verification on both simulators, a negative control, and coverage invalidation."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from axhw.arith import library
from axhw.arith.multipliers import error_stats
from axhw.arith.registry import get_multiplier
from axhw.arith.verification import coverage
from axhw.rtl.imported import CircuitImportError, import_circuit, verify_imported

CIRCUITS = Path(__file__).parents[1] / "circuits"
sys.path.insert(0, str(CIRCUITS))
import models  # noqa: E402

#: (file, top, signed, ports)
CASES = {
    "bam8u": ("bam8u.v", "bam8u", False, None),  # multi-module (half/full adders), not commutative
    "rtrunc8s": ("rtrunc8s.v", "rtrunc8s", True, "a=x,b=w,p=y"),  # signed, renamed ports, `timescale
    "trunc8u": ("trunc8u.v", "trunc8u", False, None),  # behavioural loops
}


@pytest.fixture
def lib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AXHW_MULTIPLIER_LIBRARY", str(tmp_path / "lib"))
    monkeypatch.setenv("AXHW_RTL_REGISTRY", str(tmp_path / "registry.json"))
    monkeypatch.setenv("AXHW_SIM_BUILD", str(tmp_path / "sim"))
    return tmp_path / "lib"


def _import(name: str, sim: str = "icarus", **kw):
    f, top, signed, ports = CASES[name]
    return import_circuit([CIRCUITS / f], top, 8, signed, ports, simulator=sim, **kw)


def _check_against_model(name: str) -> None:
    _, top, signed, _ = CASES[name]
    fn = getattr(models, top)
    vals = range(-128, 128) if signed else range(256)
    want = torch.tensor([[fn(a, b) for b in vals] for a in vals])
    m = get_multiplier(name, 8, signed)
    v = torch.tensor(list(vals))
    assert torch.equal(m(v[:, None], v[None, :]), want)
    if not signed:  # the signed use, through the sign-magnitude wrapper
        sv = range(-128, 128)
        want_s = torch.tensor([[models.sign_magnitude(fn, a, b) for b in sv] for a in sv])
        s = torch.tensor(list(sv))
        assert torch.equal(get_multiplier(name, 8)(s[:, None], s[None, :]), want_s)


@pytest.mark.parametrize("name", ["bam8u", "rtrunc8s", pytest.param("trunc8u", marks=pytest.mark.slow)])
def test_import_matches_python_model(name: str, lib: Path, icarus: str) -> None:
    res = _import(name, icarus)
    _check_against_model(name)
    info = library.circuit_info(name)
    assert info.source_hash == res.info.source_hash and info.simulator == "icarus" and info.bits == 8
    assert (lib / name / "src" / CASES[name][0]).read_bytes() == (CIRCUITS / CASES[name][0]).read_bytes()
    # Statistics: those of the independent Python model.
    st = res.stats[0]
    signed = CASES[name][2]
    vals = range(-128, 128) if signed else range(256)
    errs = [getattr(models, name)(a, b) - a * b for a in vals for b in vals]
    assert st.mae == pytest.approx(sum(map(abs, errs)) / len(errs)) and st.wce == max(map(abs, errs))
    assert st.ep == pytest.approx(sum(e != 0 for e in errs) / len(errs))
    assert st.as_dict() == error_stats(get_multiplier(name, 8, signed)).as_dict()
    assert len(res.stats) == (1 if signed else 2)
    ok, msg = coverage(name, 8)  # the import simulation is exhaustive RTL evidence on icarus
    assert ok and "icarus" in msg and "not yet re-verified through cocotb" in msg


def test_bam_is_not_commutative(lib: Path, icarus: str) -> None:
    _import("bam8u", icarus)
    m = get_multiplier("bam8u", 8, signed=False)
    assert bool((m.table != m.table.T).any())  # the order matters: a is the activation, b the weight
    assert m(torch.tensor([255]), torch.tensor([1])).item() == 0 and m(torch.tensor([1]), torch.tensor([255])).item() > 0


def test_import_with_verilator(lib: Path, verilator_exe: str) -> None:
    res = _import("rtrunc8s", "verilator")
    assert res.info.simulator == "verilator"
    _check_against_model("rtrunc8s")


@pytest.mark.slow
def test_import_unsigned_with_verilator(lib: Path, verilator_exe: str) -> None:
    _import("bam8u", "verilator")
    _check_against_model("bam8u")


def _write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


GOOD4 = "module m4 (input [3:0] a, input [3:0] b, output [7:0] p);\n  assign p = a * b;\nendmodule\n"


def test_bad_input_is_one_line_and_writes_nothing(lib: Path, tmp_path: Path, icarus: str) -> None:
    cases = [
        ([_write(tmp_path, "syntax.v", "module m4 (input [3:0] a, input [3:0] b, output [7:0] p)\n  assign p = ;\n")],
         "m4", 4, {}, "does not"),
        ([_write(tmp_path, "good.v", GOOD4)], "nothere", 4, {}, "no module 'nothere'"),
        ([tmp_path / "good.v"], "m4", 8, {}, r"needs input \[8 bits\]"),
        ([tmp_path / "good.v"], "m4", 4, {"ports": "a=a,b=q,p=p"}, "which m4 lacks"),
        ([_write(tmp_path, "oddports.v", "module m5 (input [3:0] x, input [3:0] y, output [7:0] z);\n"
                 "  assign z = x * y;\nendmodule\n")], "m5", 4, {}, "map it with --ports"),
        ([tmp_path / "good.v"], "m4", 4, {"name": "K3"}, "clashes with a built-in"),
        ([tmp_path / "good.v"], "m4", 9, {}, "out of range"),
        ([_write(tmp_path, "undef.v", "module m6 (input [3:0] a, input [3:0] b, output [7:0] p);\n"
                 "  missing_cell u (.a(a), .b(b), .p(p));\nendmodule\n")], "m6", 4, {}, "does not compile|failed"),
        ([_write(tmp_path, "xout.v", "module m7 (input [3:0] a, input [3:0] b, output [7:0] p);\n"
                 "  wire [7:0] q;\n  assign p = q;\nendmodule\n")], "m7", 4, {}, "unknown bits"),
    ]
    for files, top, bits, kw, pattern in cases:
        with pytest.raises(CircuitImportError, match=pattern) as err:
            import_circuit(files, top, bits, signed=False, ports=kw.get("ports"), name=kw.get("name"),
                           simulator=icarus)
        assert "\n" not in str(err.value), str(err.value)
        assert not lib.exists() or not library.names(), (top, pattern)
    import_circuit([tmp_path / "good.v"], "m4", 4, signed=False, simulator=icarus)
    with pytest.raises(CircuitImportError, match="already exists"):
        import_circuit([tmp_path / "good.v"], "m4", 4, signed=False, simulator=icarus)
    import_circuit([tmp_path / "good.v"], "m4", 4, signed=False, simulator=icarus, force=True)
    assert library.names() == ["m4"]
    assert torch.equal(get_multiplier("m4", 4, signed=False).table, torch.arange(16)[:, None] * torch.arange(16))


def test_cli_import_and_error_exit(lib: Path, tmp_path: Path, icarus: str, capsys: pytest.CaptureFixture[str]) -> None:
    from axhw.apps.cli import main

    good = _write(tmp_path, "good.v", GOOD4)
    assert main(["multipliers", "import", str(good), "--top", "m4", "--bits", "4", "--unsigned", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"nmed"' in out and '"name": "m4"' in out
    assert main(["multipliers", "import", str(good), "--top", "m4", "--bits", "5", "--unsigned", "--name", "m4b"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("axhw multipliers: error: port a (a) of m4 is input [4 bits]") and err.count("\n") == 1


def test_reverify_and_negative_control_icarus(lib: Path, icarus: str) -> None:
    _import("rtrunc8s", icarus)
    (res,) = verify_imported("rtrunc8s", icarus)
    assert res.ok and res.vectors == 65536, res.describe()
    ok, msg = coverage("rtrunc8s", 8)
    assert ok and "cocotb re-verified on icarus" in msg
    # Negative control: a table that disagrees with the circuit in one entry is caught, and not covered.
    path = lib / "rtrunc8s" / "table.npy"
    t = np.load(path)
    t[3, 200] += 16
    np.save(path, t)
    (bad,) = verify_imported("rtrunc8s", icarus)
    assert not bad.ok and bad.mismatches == 1, bad.describe()
    assert not coverage("rtrunc8s", 8)[0]
    # A changed source invalidates the record too.
    _import("rtrunc8s", icarus, force=True)
    assert coverage("rtrunc8s", 8)[0]
    src = lib / "rtrunc8s" / "src" / "rtrunc8s.v"
    src.write_text(src.read_text() + "\n// edited\n")
    ok, msg = coverage("rtrunc8s", 8)
    assert not ok and "changed since import" in msg


def test_rtl_verify_cli_lists_only_verifiable(lib: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from axhw.rtl.cli import main_verify, verifiable_designs

    assert verifiable_designs() == ["exact", "drum"]
    import argparse

    args = argparse.Namespace(design="pe", bits=None, k=None, unsigned=False, sim=["icarus"], build_root=None,
                              rtl_command="verify")
    assert main_verify(args) == 2
    assert "valid designs are exact, drum" in capsys.readouterr().err


@pytest.mark.slow
def test_reverify_on_both_simulators(lib: Path, simulator: str) -> None:
    """Unsigned multi-module circuit: raw core against its table, generated wrapper against the signed model."""
    _import("bam8u", "icarus")
    results = verify_imported("bam8u", simulator)
    assert [r.ok for r in results] == [True, True], [r.describe() for r in results]
    ok, msg = coverage("bam8u", 8)
    assert ok and f"cocotb re-verified on {simulator}" in msg
