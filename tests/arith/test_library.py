"""The multiplier library (axhw.arith.library): storage, get_multiplier/HardwareConfig by name, the sign-magnitude
model, error statistics, and training/evaluation with imported circuits. Circuits are the tests' own
(tests/circuits), imported with Icarus."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from axhw.arith import library
from axhw.arith.multipliers import DRUM, LUTMultiplier, error_stats
from axhw.arith.registry import get_multiplier, multiplier_names
from axhw.nn import HardwareConfig

CIRCUITS = Path(__file__).parents[1] / "circuits"
sys.path.insert(0, str(CIRCUITS))
import models  # noqa: E402  (tests/circuits/models.py: Python models of the test circuits)


@pytest.fixture
def lib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty multiplier library and verification registry."""
    monkeypatch.setenv("AXHW_MULTIPLIER_LIBRARY", str(tmp_path / "lib"))
    monkeypatch.setenv("AXHW_RTL_REGISTRY", str(tmp_path / "registry.json"))
    return tmp_path / "lib"


def _table(fn, bits: int = 8, signed: bool = False) -> torch.Tensor:
    side = 1 << bits
    vals = [w - side if signed and w >= side // 2 else w for w in range(side)]
    return torch.tensor([[fn(a, b) for b in vals] for a in vals], dtype=torch.int64)


def _fake_import(name: str, fn, signed: bool = False) -> library.CircuitInfo:
    """Store a circuit without simulating it (library-level tests; the RTL path is tests/rtl/test_import.py)."""
    table = _table(fn, 8, signed)
    src = [(f"{name}.v", f"// {name}\n".encode())]
    info = library.CircuitInfo(name=name, top=name, bits=8, signed=signed, ports={"a": "a", "b": "b", "p": "p"},
                               sources=[s for s, _ in src], source_hash=library.source_hash(src),
                               table_hash=library.table_hash(table), simulator="icarus", simulator_version=None,
                               date="2026-01-01T00:00:00")
    library.save(info, table, src)
    return info


def test_sign_magnitude_table_is_drums_wrapper() -> None:
    for k in range(1, 9):
        core = DRUM(k, 8, signed=False).product_table()
        assert torch.equal(library.sign_magnitude_table(core, 8), DRUM(k, 8, signed=True).product_table()), k


def test_sign_magnitude_saturates_both_ways() -> None:
    core = torch.full((16, 16), 255, dtype=torch.int64)  # a 4-bit core that always says 255
    sm = library.sign_magnitude_table(core, 4)
    assert int(sm[1, 1]) == 127 and int(sm[1, 15]) == -128  # (1, 1) -> +255 saturates; (1, -1) -> -255 saturates
    assert int(sm[0, 3]) == 255 - 255 + 127  # 0 is positive: +255 -> 127


def test_library_by_name_everywhere(lib: Path) -> None:
    info = _fake_import("bam", models.bam8u)
    assert "bam" in multiplier_names() and "bam" not in multiplier_names(imported=False)
    m = get_multiplier("bam", 8)
    assert isinstance(m, LUTMultiplier) and m.signed and m.wrapped and m.circuit.source_hash == info.source_hash
    a = torch.tensor([100, -100, 7, -128, 0])
    b = torch.tensor([-3, -77, 120, -128, 5])
    want = [models.sign_magnitude(models.bam8u, x, y) for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    assert m(a, b).tolist() == want
    raw = get_multiplier("bam", 8, signed=False)
    assert raw(torch.tensor([200]), torch.tensor([3])).tolist() == [models.bam8u(200, 3)]
    hw = HardwareConfig(mode="hardware", multiplier="bam")
    assert hw.get_multiplier().name == "bam"
    with pytest.raises(ValueError, match="8-bit multiplier, got bits=16"):
        get_multiplier("bam", 16)
    with pytest.raises(ValueError, match="8-bit"):
        HardwareConfig(mode="hardware", multiplier="bam", bits=4)
    with pytest.raises(ValueError, match="imported circuits bam"):
        get_multiplier("nope", 8)


def test_multiplier_objects_are_accepted(lib: Path) -> None:
    lut = LUTMultiplier.from_multiplier(DRUM(3, 8), name="lut3")
    hw = HardwareConfig(mode="hardware", multiplier=lut)
    assert hw.get_multiplier() is lut
    assert get_multiplier(lut, 8) is lut
    with pytest.raises(ValueError, match="does not fit"):
        HardwareConfig(mode="hardware", multiplier=lut, bits=16)


def test_names_clash_and_force(lib: Path) -> None:
    _fake_import("bam", models.bam8u)
    for bad in ("exact", "drum3", "K2", "k4", "Exact"):
        with pytest.raises(ValueError, match="built-in"):
            library.check_new_name(bad)
    with pytest.raises(ValueError, match="already exists"):
        _fake_import("bam", models.trunc8u)
    assert get_multiplier("bam", 8, signed=False)(torch.tensor([255]), torch.tensor([255])).item() == models.bam8u(255, 255)
    info = library.circuit_info("bam")
    library.save(library.CircuitInfo(**{**info.__dict__, "top": "other"}), _table(models.trunc8u), [("bam.v", b"x")],
                 force=True)
    assert library.circuit_info("bam").top == "other"
    assert [p.name for p in lib.iterdir() if not p.name.startswith(".")] == ["bam"]  # no temporaries left


def test_error_stats_definitions(lib: Path) -> None:
    """Each field against a direct Python computation over all pairs (the unsigned broken array)."""
    _fake_import("bam", models.bam8u)
    st = error_stats(get_multiplier("bam", 8, signed=False))
    errs = [(models.bam8u(a, b) - a * b, a * b) for a in range(256) for b in range(256)]
    n = len(errs)
    rel = [abs(e) / p for e, p in errs if p]
    assert st.pairs == n and st.exhaustive and not st.signed and st.bits == 8
    assert st.mae == pytest.approx(sum(abs(e) for e, _ in errs) / n)
    assert st.wce == max(abs(e) for e, _ in errs)
    assert st.mse == pytest.approx(sum(e * e for e, _ in errs) / n)
    assert st.ep == pytest.approx(sum(e != 0 for e, _ in errs) / n)
    assert st.mean_error == pytest.approx(sum(e for e, _ in errs) / n)
    assert st.mre == pytest.approx(sum(rel) / len(rel)) and st.max_re == pytest.approx(max(rel))
    assert st.nmed == pytest.approx(st.mae / 255**2)
    assert st.mae_percent == pytest.approx(100 * st.mae / 2**16)
    d = st.as_dict()
    for key in ("name", "bits", "signed", "pairs", "exhaustive", "mae", "wce", "mse", "ep", "mre", "max_re",
                "mean_error", "nmed"):
        assert key in d


def test_cli_names_and_json(lib: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from axhw.apps.cli import _add_multipliers

    _fake_import("bam", models.bam8u)
    parser = argparse.ArgumentParser()
    _add_multipliers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["multipliers", "--names"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "K1" in out and "bam: imported 8-bit unsigned" in out
    args = parser.parse_args(["multipliers", "--bits", "8", "--json"])
    assert args.handler(args) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows][-1] == "bam" and rows[-1]["signed"]


def test_train_and_evaluate_with_imported_circuit(lib: Path, tmp_path: Path) -> None:
    from axhw.training.evaluate import evaluate
    from axhw.training.trainer import TrainConfig, load_checkpoint, train

    info = _fake_import("bam", models.bam8u)
    cfg = TrainConfig(method="axtrain", multiplier="bam", epochs=2, pas_epochs=1, limit=120, seed=0)
    m = train(cfg, tmp_path / "run", progress=False)
    ck = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ck["multiplier_circuit"]["name"] == "bam" and ck["multiplier_circuit"]["source_hash"] == info.source_hash
    assert ck["multiplier_circuit"]["sign_magnitude_wrapper"]
    assert m["rtl_coverage"]["circuit"]["source_hash"] == info.source_hash
    assert not m["rtl_coverage"]["covered"]  # nothing simulated it: no evidence on record
    r = evaluate(tmp_path / "run" / "checkpoint.pt", "bam", runs=1)
    assert r.multiplier == "bam" and 0.5 < r.accuracy_mean <= 1.0
    assert r.rtl_coverage["trained_for"]["source_hash"] == info.source_hash
    # The same table as a LUTMultiplier object evaluates identically.
    lut = LUTMultiplier(get_multiplier("bam", 8).table, 8, name="bam-object")
    assert evaluate(tmp_path / "run" / "checkpoint.pt", lut, runs=1).accuracy_mean == r.accuracy_mean


def test_replaced_circuit_of_the_same_name_is_refused_unless_allowed(lib: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from axhw.apps.cli import main
    from axhw.training.evaluate import evaluate
    from axhw.training.trainer import TrainConfig, train

    _fake_import("bam", models.bam8u)
    train(TrainConfig(method="axtrain", multiplier="bam", epochs=2, pas_epochs=1, limit=120, seed=0),
          tmp_path / "run", progress=False)
    ck = tmp_path / "run" / "checkpoint.pt"
    before = evaluate(ck, "bam", runs=1)
    other = _table(models.trunc8u)  # `multipliers import --force` of other Verilog under the same name
    library.save(library.CircuitInfo(**{**library.circuit_info("bam").__dict__,
                                        "table_hash": library.table_hash(other)}), other, [("bam.v", b"// t\n")],
                 force=True)
    with pytest.raises(library.CircuitChangedError, match=r"trained for circuit bam .* now a different circuit"):
        evaluate(ck, "bam", runs=1)
    assert main(["evaluate", "--checkpoint", str(ck), "--multiplier", "bam", "--runs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("axhw evaluate: error: ") and "--allow-circuit-change" in err
    assert main(["evaluate", "--checkpoint", str(ck), "--multiplier", "bam", "--runs", "1",
                 "--allow-circuit-change", "--quiet"]) == 0
    assert "is not the circuit this network was trained for" in capsys.readouterr().err
    assert evaluate(ck, "bam", runs=1, allow_circuit_change=True).accuracy_mean != before.accuracy_mean
    evaluate(ck, "K2", runs=1)  # another multiplier, asked for by name, is a deliberate choice
