"""The power flow on the selectable library (issue 29, item 4): the same synthesis, gate-level simulation and
OpenSTA steps map onto sky130 (axhw's characterized sky130_fd_sc_hd) as onto osu018, every product of the
sky130 netlist is checked against the model, results of the two libraries never share a cache entry, and
reports name the library they were measured on."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from axhw.apps.cli import main
from axhw.power.flow import tools
from axhw.power.flow.synth import SynthConfig, synthesize
from axhw.power.flow.tools import Toolchain, find_library, find_toolchain, use_library
from axhw.power.multiplier.compute import measure_stream
from axhw.power.multiplier.operands import uniform_operands
from axhw.rtl.generate import MultiplierConfig


def test_library_selection_and_its_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AXHW_PDK", raising=False)
    monkeypatch.delenv("AXHW_SUPPLY_MV", raising=False)
    sky = find_library("sky130")
    assert (sky.supply_mv, sky.node_nm, sky.node_scale, sky.label) == (1800, 130, 1.0, "sky130 1.80 V")
    osu = find_library("osu018")
    assert osu.node_scale == pytest.approx((65 / 180) * (1.1 / 1.8) ** 2)
    assert osu.label == tools.OSU018_LABEL  # the name results written before reports named a library default to
    with pytest.raises(ValueError, match="unknown PDK 'tsmc65'"):
        find_library("tsmc65")
    with pytest.raises(ValueError, match="no library at 1500 mV: choose --supply-mv from 1800, 1200, 900"):
        find_library("sky130", 1500)
    monkeypatch.setattr(tools, "SKY130_DIR", tmp_path)
    with pytest.raises(tools.ToolMissing, match=r"axhw power pdk build --voltages 1\.8"):
        find_library("sky130")
    monkeypatch.setenv("AXHW_SUPPLY_MV", "1.2")
    with pytest.raises(ValueError, match="give millivolts"):
        tools.selected_library()


def test_use_library_selects_and_restores(toolchain: Toolchain, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AXHW_PDK", raising=False)
    monkeypatch.delenv("AXHW_SUPPLY_MV", raising=False)
    assert find_toolchain().library.pdk == "osu018"
    with use_library("sky130") as lib:
        tc = find_toolchain()
        assert tc.liberty == lib.liberty and tc.cell_models == lib.cell_models and tc.library == lib
        assert os.environ["AXHW_PDK"] == "sky130" and os.environ["AXHW_SUPPLY_MV"] == "1800"
        assert tc.library_sha256 != toolchain.library_sha256
    assert "AXHW_PDK" not in os.environ and "AXHW_SUPPLY_MV" not in os.environ
    assert find_toolchain().library.pdk == "osu018"


def test_a_multiplier_on_sky130_is_checked_and_cached_apart(toolchain: Toolchain, synth_cfg: SynthConfig) -> None:
    """Every product of the sky130 netlist (all 256 operand pairs of a 4-bit multiplier, with cell delays) equals
    the model's, and the sky130 result is not osu018's cached one."""
    cfg = MultiplierConfig("drum", 4, k=2)
    stream = uniform_operands(4, 256, seed=0)
    osu = measure_stream("drum2", 4, stream, synth_cfg)
    with use_library("sky130"):
        syn = synthesize(cfg, synth_cfg)
        sky = measure_stream("drum2", 4, stream, synth_cfg)
    assert syn.key != synthesize(cfg, synth_cfg).key  # the library is part of the key
    cells = json.loads(syn.netlist_json.read_text())["modules"][syn.top]["cells"].values()
    assert cells and all(c["type"].startswith("sky130_fd_sc_hd__") for c in cells)
    assert (sky.vectors, sky.mismatches) == (256, 0)
    # 130 nm against 180 nm cells at the same 1.8 V: smaller, and far less energy per multiply
    assert sky.area_um2 < osu.area_um2 / 3
    assert sky.measured.energy_pj < osu.measured.energy_pj / 3
    assert sky.measured.mean_toggles > 0


def test_power_synth_cli_on_sky130(toolchain: Toolchain, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc = main(["power", "synth", "--pdk", "sky130", "--multiplier", "K2", "--compare", "exact", "--bits", "4",
               "--pairs", "100", "--quiet", "--out", str(out)])
    assert rc == 0
    text = (out / "synth_K2.md").read_text()
    assert text.startswith("sky130 1.80 V, uniform operands")
    rows = json.loads((out / "synth_K2.json").read_text())
    assert [r["mismatches"] for r in rows] == [0, 0]
    assert "AXHW_PDK" not in os.environ  # the CLI's selection ends with the command
    capsys.readouterr()
    assert main(["power", "synth", "--pdk", "sky130", "--supply-mv", "1000", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no library at 1000 mV" in err[0]


@pytest.mark.slow
def test_the_accelerator_on_sky130(toolchain: Toolchain, synth_cfg: SynthConfig, tmp_path: Path) -> None:
    """The whole PE array on sky130: both gate-level engines reproduce forward_int on every output, the energy
    is reported at sky130's own node (no scaling), and the record names the library."""
    from axhw.power.accel.energy import AccelConfig, accelerator_energy
    from axhw.power.accel.model import calibration_networks

    qnet, x = calibration_networks(2)["mlp_24_20_5"]
    res = {}
    with use_library("sky130"):
        for engine in ("icarus", "verilator"):
            cfg = AccelConfig(pes=2, samples=2, engine=engine, cache_root=tmp_path / engine)
            res[engine] = accelerator_energy(qnet, x, "K2", cfg, synth_cfg)
    osu = accelerator_energy(qnet, x, "K2", AccelConfig(pes=2, samples=2, cache_root=tmp_path / "osu"), synth_cfg)
    for e in res.values():
        assert e.activity["outputs_compared"] == 50 and e.activity["mismatches"] == 0
        assert (e.library, e.node_scale) == ("sky130 1.80 V", 1.0)
        assert e.activity["clock_mhz"] > osu.activity["clock_mhz"]  # sky130's cells are faster than osu018's
        assert sum(e.logic_j.values()) < sum(osu.logic_j.values()) / 3
    # without cell delays there are no glitches: Verilator's switching is below Icarus's
    assert sum(res["verilator"].logic_j.values()) < sum(res["icarus"].logic_j.values())
    assert osu.library == "osu018 1.80 V" and osu.node_scale < 0.2
