"""Imported circuits in the power flow: synthesis as the PE instantiates them, the gate-level bit-for-bit
check against the library table (and a table that disagrees with the netlist), `power synth --design` and a
quick `power report --modes` in which an imported circuit competes with exact and DRUM."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from axhw.apps.cli import main
from axhw.arith.multipliers import LUTMultiplier
from axhw.power.flow.activity import SimConfig, simulate
from axhw.power.flow.liberty import read_library
from axhw.power.flow.sta import PowerConfig, resolve_annotation
from axhw.power.flow.synth import synthesize
from axhw.power.flow.tools import Toolchain, find_toolchain
from axhw.power.multiplier.compute import measure_stream, mode_config
from axhw.power.multiplier.operands import OperandStream, uniform_operands

CIRCUITS = Path(__file__).resolve().parents[1] / "circuits"
ENV = ("AXHW_MULTIPLIER_LIBRARY", "AXHW_RTL_REGISTRY", "AXHW_CACHE")


def otrunc8u(a: int, b: int) -> int:
    """Model of tests/circuits/otrunc8u.v, written independently: operands truncated to their 5 high bits."""
    return (a >> 3 << 3) * (b >> 3 << 3)


def signed_use(core, a: int, b: int, bits: int = 8) -> int:  # type: ignore[no-untyped-def]
    """An unsigned core through the DRUM-style sign-magnitude wrapper (independent re-statement)."""
    p = core(abs(a), abs(b))
    r = -p if (a < 0) != (b < 0) else p
    return max(-(1 << (2 * bits - 1)), min((1 << (2 * bits - 1)) - 1, r))


@pytest.fixture(scope="module")
def library(toolchain: Toolchain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private library (and cache, and verification registry) holding otrunc8u (unsigned, ours) and
    rtrunc8s (signed, ports x/w/y)."""
    from axhw.rtl.imported import import_circuit

    root = tmp_path_factory.mktemp("imported-power")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AXHW_MULTIPLIER_LIBRARY", str(root / "lib"))
        mp.setenv("AXHW_RTL_REGISTRY", str(root / "registry.json"))
        mp.setenv("AXHW_CACHE", str(root / "cache"))
        import_circuit([CIRCUITS / "otrunc8u.v"], "otrunc8u", 8, signed=False)
        import_circuit([CIRCUITS / "rtrunc8s.v"], "rtrunc8s", 8, signed=True, ports="a=x,b=w,p=y")
        yield root / "lib"


def _corners_and_uniform(n: int, seed: int) -> OperandStream:
    corners = torch.tensor([-128, -127, -9, -8, -7, -1, 0, 1, 7, 8, 9, 64, 127])
    a, b = torch.cartesian_prod(corners, corners).T
    rnd = uniform_operands(8, n, seed=seed)
    return OperandStream(torch.cat([a, rnd.a]), torch.cat([b, rnd.b]), "corners+uniform")


def test_unsigned_circuit_is_synthesized_in_its_wrapper_and_matches_bit_for_bit(library: Path) -> None:
    cfg = mode_config("otrunc8u", 8)
    assert cfg.variant == "signed" and cfg.top == "axhw_sm_otrunc8u" and cfg.signed
    model = cfg.model()
    for a, b in [(-128, -128), (-128, 127), (-9, 15), (100, -3), (0, -128), (77, 91)]:
        assert int(model(torch.tensor([a]), torch.tensor([b]))[0]) == signed_use(otrunc8u, a, b)
    synth = synthesize(cfg)
    assert synth.top == "axhw_sm_otrunc8u" and synth.design["source_hash"] == cfg.info.source_hash
    assert cfg.info.source_hash[:12] in synth.config_id
    assert synth.n_cells == sum(synth.cells.values()) > 20
    # Yosys's area against the Liberty file's cell areas (liberty-parser), cell by cell; the leakage is checked
    # against OpenSTA's below
    lib = read_library(find_toolchain().liberty)
    assert synth.area_um2 == pytest.approx(sum(n * lib.cells[c].area_um2 for c, n in synth.cells.items()), rel=1e-6)
    assert synthesize(cfg).key == synth.key  # cached
    res = simulate(synth, cfg, _corners_and_uniform(300, seed=4), SimConfig(timing=False))
    assert res.vectors == 169 + 300 and res.mismatches == 0, res.mismatch_lines
    # Same footing as DRUM: the wrapped 5x5 core is smaller than the exact 8x8 multiplier.
    assert synth.area_um2 < synthesize(mode_config("exact", 8)).area_um2
    power = measure_stream("otrunc8u", 8, uniform_operands(8, 300, seed=1))
    assert power.mismatches == 0 and power.area_um2 == synth.area_um2
    # energy per multiply: the measured total power over the 100 MHz multiply rate; OpenSTA's leakage total is
    # the synthesis result's sum over the netlist's cells
    assert power.measured.energy_pj == pytest.approx(power.measured.total_w / 100e6 * 1e12, rel=1e-12)
    assert power.measured.leakage_w == pytest.approx(synth.leakage_nw * 1e-9, rel=1e-6)
    assert power.measured.method == resolve_annotation(PowerConfig())
    assert power.as_dict()["circuit"] == {"name": "otrunc8u", "top": "otrunc8u", "variant": "signed",
                                          "core_signed": False, "source_hash": cfg.info.source_hash,
                                          "table_hash": cfg.info.table_hash}


def test_signed_circuit_is_synthesized_raw(library: Path) -> None:
    cfg = mode_config("rtrunc8s", 8)
    assert cfg.variant == "raw" and cfg.top == "axhw_adapt_rtrunc8s"
    synth = synthesize(cfg)
    res = simulate(synth, cfg, _corners_and_uniform(200, seed=5), SimConfig(timing=False))
    assert res.mismatches == 0, res.mismatch_lines
    with pytest.raises(ValueError, match="8-bit multiplier"):
        mode_config("rtrunc8s", 4)
    with pytest.raises(ValueError, match=r"unknown mode 'nosuch'.*otrunc8u, rtrunc8s"):
        mode_config("nosuch", 8)


def test_cache_key_follows_the_sources(library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-importing the same name from changed sources (same function) is a new synthesis entry."""
    from axhw.rtl.imported import import_circuit

    first = synthesize(mode_config("otrunc8u", 8))
    lib = tmp_path / "lib"
    shutil.copytree(library, lib)
    monkeypatch.setenv("AXHW_MULTIPLIER_LIBRARY", str(lib))
    changed = tmp_path / "otrunc8u.v"
    changed.write_text((CIRCUITS / "otrunc8u.v").read_text() + "// edited\n")
    import_circuit([changed], "otrunc8u", 8, signed=False, force=True)
    again = synthesize(mode_config("otrunc8u", 8))
    assert again.key != first.key and again.netlist != first.netlist
    assert again.design["source_hash"] != first.design["source_hash"]


def test_table_that_disagrees_with_the_netlist_is_reported(
    library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Negative control: the testbench compares against the table, not against the netlist itself."""
    cfg = mode_config("otrunc8u", 8)
    synth = synthesize(cfg)
    stream = _corners_and_uniform(100, seed=6)
    table = cfg.model().table.clone()
    table[table != 0] += 64  # every nonzero product off by 64 (no saturation: |products| <= 2**14)
    bad = dataclasses.replace(cfg, multiplier=LUTMultiplier(table, 8, True, name="bad"))
    expected = int((cfg.model()(stream.a, stream.b) != 0).sum())
    res = simulate(synth, bad, stream, SimConfig(timing=False))
    assert expected > 50 and res.mismatches == expected and len(res.mismatch_lines) == 10

    # The same through the library: a stored table edited after import fails `power synth --design`.
    lib = tmp_path / "lib"
    shutil.copytree(library, lib)
    monkeypatch.setenv("AXHW_MULTIPLIER_LIBRARY", str(lib))
    core = np.load(lib / "otrunc8u" / "table.npy")
    core[core != 0] += 64
    np.save(lib / "otrunc8u" / "table.npy", core)
    out = tmp_path / "out"
    rc = main(["power", "synth", "--design", "otrunc8u", "--compare", "--pairs", "100", "--out", str(out), "--quiet"])
    assert rc == 1
    assert "disagrees with the table" in capsys.readouterr().err
    rows = json.loads((out / "synth_otrunc8u.json").read_text())
    assert len(rows) == 1 and rows[0]["mismatches"] > 0


def test_power_synth_design_cli(library: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc = main(["power", "synth", "--design", "otrunc8u", "rtrunc8s", "--compare", "exact", "K2", "--pairs", "200",
               "--out", str(out), "--quiet"])
    assert rc == 0
    for name, variant in (("otrunc8u", "signed"), ("rtrunc8s", "raw")):
        rows = json.loads((out / f"synth_{name}.json").read_text())
        assert [r["mode"] for r in rows] == ["exact", "K2", name]
        assert all(r["mismatches"] == 0 and r["vectors"] == 200 and r["area_um2"] > 0 for r in rows)
        assert rows[-1]["circuit"]["variant"] == variant
        assert rows[-1]["config_id"] in (out / f"synth_{name}.md").read_text()
    assert not (out / "pe_8bit.md").exists()  # --design alone makes only the circuits' tables
    capsys.readouterr()
    assert main(["power", "synth", "--design", "nosuch", "--out", str(out)]) == 2
    assert "no imported circuit 'nosuch'" in capsys.readouterr().err
    assert main(["power", "synth", "--design", "otrunc8u", "--compare", "K9", "--out", str(out)]) == 2
    assert "unknown mode 'K9'" in capsys.readouterr().err
    assert main(["power", "synth", "--compare", "K2", "--out", str(out)]) == 2
    assert "--compare needs --multiplier" in capsys.readouterr().err


def test_report_modes_are_checked_before_training(library: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from axhw.power.search.study import StudyConfig, run_study

    with pytest.raises(ValueError, match="unknown mode 'nosuch'"):
        run_study(StudyConfig.quick(modes=("exact", "nosuch"), work_dir=tmp_path / "work"), progress=False)
    with pytest.raises(ValueError, match="more than once"):
        run_study(StudyConfig.quick(modes=("exact", "K2", "K2"), work_dir=tmp_path / "work"), progress=False)
    rc = main(["power", "report", "--dataset", "breast_cancer", "--quick", "--modes", "exact", "rtrunc8s", "nosuch",
               "--epochs", "2", "--out", str(tmp_path / "o"), "--work-dir", str(tmp_path / "work"), "--quiet"])
    assert rc == 2 and "unknown mode 'nosuch'" in capsys.readouterr().err
    assert not (tmp_path / "work" / "breast_cancer").exists()  # nothing trained


def test_quick_report_with_an_imported_mode(library: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc = main(["power", "report", "--dataset", "breast_cancer", "--quick", "--modes", "exact", "K2", "otrunc8u",
               "--pairs", "128", "--epochs", "2", "--runs", "2", "--work-dir", str(tmp_path / "work"), "--out", str(out), "--quiet"])
    assert rc == 0
    d = json.loads((out / "power.json").read_text())
    assert d["config"]["modes"] == ["exact", "K2", "otrunc8u"]
    for net in d["networks"].values():
        c = net["compute"]["otrunc8u"]
        assert c["mismatches"] == 0 and c["vectors"] == 128 and c["circuit"]["variant"] == "signed"
        assert c["measured"]["energy_pj"] > 0 and c["area_um2"] > 0
        assert {p["mode"] for p in net["points"]} == {"exact", "K2", "otrunc8u"}
        pts = [p for p in net["points"] if p["mode"] == "otrunc8u"]
        assert all(p["compute_w"] == c["measured"]["total_w"] for p in pts)
    assert "| otrunc8u |" in (out / "power.md").read_text()


@pytest.mark.slow
def test_accelerator_energy_of_an_array_of_imported_circuits(library: Path, tmp_path: Path) -> None:
    """The whole array with otrunc8u (inside its sign-magnitude wrapper) in every PE: synthesized, run at gate
    level (Verilator) bit for bit against forward_int, and its multipliers' cells (the user's modules
    flattened into the PE's mul_import_* module) priced as the multipliers unit."""
    from axhw.arith.fixedpoint import FixedPoint
    from axhw.golden.network import IntLinear, IntReLU, QuantizedNetwork
    from axhw.power.accel.energy import AccelConfig, accelerator_energy, array_for
    from axhw.power.accel.sim import leaf_cells, unit_of

    g = torch.Generator().manual_seed(0)

    def lin(i: int, o: int, last: bool) -> IntLinear:
        return IntLinear(weight=torch.randint(-128, 128, (o, i), generator=g),
                         bias=torch.randint(-2000, 2000, (o,), generator=g), act_fmt=FixedPoint(8, 6),
                         weight_fmt=FixedPoint(8, 6), acc_fmt=FixedPoint(32, 12),
                         out_fmt=None if last else FixedPoint(8, 6))

    qnet = QuantizedNetwork([lin(8, 6, False), IntReLU(), lin(6, 3, True)])
    x = torch.randint(-128, 128, (2, 8), generator=g)
    cfg = AccelConfig(pes=2, samples=2, engine="verilator", cache_root=tmp_path / "store")
    e = accelerator_energy(qnet, x, "otrunc8u", cfg)
    assert e.activity["mismatches"] == 0 and e.activity["outputs_compared"] == 2 * (6 + 3)
    synth, acfg = array_for(qnet, x, "otrunc8u", cfg)
    assert acfg.imported and acfg.approx_model().name == "otrunc8u"
    mods = {c.module for c in leaf_cells(synth)}
    (mul,) = [m for m in mods if m.startswith("mul_import_otrunc8u_signed_")]
    assert unit_of(mul) == "multipliers" and not any(m.startswith(("otrunc8u", "axhw_sm_")) for m in mods)
    assert e.logic_j["multipliers"] > 0
    k2 = accelerator_energy(qnet, x, "K2", cfg)
    assert k2.activity["mismatches"] == 0 and k2.logic_j["multipliers"] != e.logic_j["multipliers"]
