"""The characterizer on real sky130 netlists (ngspice, small grids): the numbers have the physics' shape,
a wrong function is caught, and a build is cached and resumable."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from liberty.parser import parse_liberty

from axhw.power.pdk.build import build, library_file, models_file
from axhw.power.pdk.cells import spec_by_name
from axhw.power.pdk.characterize import CharacterizationFailed, characterize_comb, default_grid

GRID = default_grid(2)  # slews 0.01 / 1.5 ns, loads 0.5 / 100 fF


@pytest.fixture(scope="module")
def nand2(sky130):
    return characterize_comb(sky130, spec_by_name("nand2_1"), 1.8, GRID)


def test_nand2_tables_have_the_physics_shape(nand2):
    arc = nand2["outputs"]["Y"]["arcs"]["A"]
    assert arc["sense"] == "negative_unate"
    for q in ("cell_rise", "cell_fall", "rise_transition", "fall_transition"):
        t = np.array(arc[q])
        assert (np.diff(t, axis=1) > 0).all(), f"{q} grows with the load"
        assert (t[0] > 0).all(), f"{q} is positive for a sharp input"
        if "transition" in q:
            assert (t > 0).all() and (np.diff(t, axis=0) > 0).all(), f"{q} grows with the input transition"
    # a slow input on a light load can give a negative delay (the output crosses 50% before the input does)
    # 100 fF on a minimum NAND at 1.8 V: a rise of about a nanosecond (sky130's own table: 1.0-1.5 ns)
    assert 0.5 < arc["cell_rise"][0][1] < 2.5
    per_cycle = np.array(arc["rise_power"]) + np.array(arc["fall_power"])
    assert (per_cycle > 0).all()


def test_nand2_pins_and_leakage(nand2):
    for pin in ("A", "B"):
        cap = nand2["inputs"][pin]["capacitance"]
        assert 0.001 < cap < 0.004, cap  # pF: sky130's nand2_1 pins are 2.3-2.4 fF
    leak = {x["when"]: x["nw"] for x in nand2["leakage"]}
    assert set(leak) == {"!A&!B", "!A&B", "A&!B", "A&B"}
    assert all(v > 0 for v in leak.values())
    assert leak["A&B"] > 10 * leak["!A&!B"]  # output low: the PMOS pair leaks; a stacked NMOS hardly does
    # input-only toggles (the other input low) cost energy too, recorded with their condition
    assert nand2["inputs"]["A"]["internal"]["when"] == "(!B)"


def test_a_wrong_function_is_caught(sky130):
    wrong = dataclasses.replace(spec_by_name("nand2_1"), outputs=(("Y", "!(A|B)"),))
    with pytest.raises(CharacterizationFailed, match="function"):
        characterize_comb(sky130, wrong, 1.8, GRID)


def test_build_is_cached_and_writes_a_library(sky130, tmp_path, monkeypatch):
    monkeypatch.setenv("AXHW_CACHE", str(tmp_path / "cache"))
    cells = [spec_by_name("inv_1"), spec_by_name("dlxtp_1")]
    first = build(sky130, cells, [1.8], GRID, tmp_path / "out", jobs=1)
    assert (first.computed, first.cached) == (2, 0)
    assert first.failed[1.8] == {"sky130_fd_sc_hd__dlxtp_1": "sky130_fd_sc_hd__dlxtp_1: latch cells are not "
                                                               "characterized yet"}
    lib = library_file(tmp_path / "out", 1.8)
    assert first.libraries[1.8] == lib
    parsed = parse_liberty(lib.read_text())
    assert [str(c.args[0]).strip('"') for c in parsed.get_groups("cell")] == ["sky130_fd_sc_hd__inv_1"]
    assert "Not characterized here: sky130_fd_sc_hd__dlxtp_1" in lib.read_text()
    models = models_file(tmp_path / "out", 1.8).read_text()  # the simulation models of the same cells
    assert "module sky130_fd_sc_hd__inv_1 (A, Y);" in models and "dlxtp" not in models
    again = build(sky130, cells, [1.8], GRID, tmp_path / "out", jobs=1)
    assert (again.computed, again.cached) == (1, 1)  # the inverter from the cache; the latch is retried
    stored = list((tmp_path / "cache" / "pdk" / "sky130").glob("*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["ok"]


@pytest.mark.slow
def test_flip_flop(sky130):
    from axhw.power.pdk.sequential import characterize_sequential

    r = characterize_sequential(sky130, spec_by_name("dfxtp_1"), 1.8, GRID)
    q = r["outputs"]["Q"]["arcs"]["CLK"]
    assert q["timing_type"] == "rising_edge"
    assert (np.array(q["cell_rise"]) > 0.1).all() and (np.diff(np.array(q["cell_rise"]), axis=1) > 0).all()
    cons = {c["timing_type"]: c for c in r["inputs"]["D"]["constraints"]}
    # a slower D edge needs to arrive earlier (setup grows along the constrained-pin axis) and may leave earlier
    # (hold falls). Each is measured with the other edge far away, so no sign of setup + hold is a law: SkyWater's
    # own dfxtp_1 has setup rise 0.111 ns and hold fall -0.335 ns at 1.5 ns on both pins.
    for edge in ("rise_constraint", "fall_constraint"):
        setup, hold = np.array(cons["setup_rising"][edge]), np.array(cons["hold_rising"][edge])
        assert (np.diff(setup, axis=1) > 0).all() and (np.diff(hold, axis=1) < 0).all(), (edge, setup, hold)
    assert len(r["leakage"]) == 4 and all(x["nw"] > 0 for x in r["leakage"])
    clk = r["inputs"]["CLK"]["internals"][0]
    assert all(e > 0 for e in np.add(clk["rise_power"], clk["fall_power"]))


def test_netlist_introspection(sky130):
    from axhw.power.pdk.ngspice import DECK_TRANSISTORS, internal_nets, transistors

    ff = spec_by_name("dfxtp_1")
    assert transistors(sky130, ff) == 24 and transistors(sky130, spec_by_name("conb_1")) == 2  # two resistors
    nets = internal_nets(sky130, ff)
    assert nets and not set(nets) & {"CLK", "D", "Q", "VPWR", "VGND", "VPB", "VNB"}
    assert DECK_TRANSISTORS // transistors(sky130, spec_by_name("fa_1")) < 25  # big cells get small decks
    assert sky130.area_um2(spec_by_name("nand2_1")) == pytest.approx(1.38 * 2.72)


def test_overlapping_ramps_are_refused_not_garbled():
    """ngspice reads a PWL whose times fold back without complaint; the program builder must refuse it."""
    from axhw.power.pdk.sequential import _hold_room, _pwl

    assert _pwl([(5.0, 1.0, 1.5), (10.0, 0.0, 1.5)], 0.0, 1.8)[1:] == ((3.75, 0.0), (6.25, 1.8), (8.75, 1.8),
                                                                      (11.25, 0.0))
    with pytest.raises(ValueError, match="overlaps"):
        _pwl([(5.0, 1.0, 1.5), (6.0, 0.0, 1.5)], 0.0, 1.8)
    # the hold search's earliest D departure leaves room after the 1.5 ns ramp that brought D
    w = 9.0
    assert -_hold_room(w, [0.01, 1.5]) - 1.25 > -w / 2 + 1.25


@pytest.mark.slow
def test_clock_gate(sky130):
    from axhw.power.pdk.sequential import characterize_sequential

    r = characterize_sequential(sky130, spec_by_name("dlclkp_1"), 1.8, GRID)
    arc = r["outputs"]["GCLK"]["arcs"]["CLK"]
    assert arc["sense"] == "positive_unate"
    assert (np.diff(np.array(arc["cell_rise"]), axis=1) > 0).all() and (np.array(arc["cell_rise"])[0] > 0).all()
    clk = r["inputs"]["CLK"]["internals"][0]
    gated = np.add(clk["rise_power"], clk["fall_power"])  # a clock cycle with GATE low: GCLK stays put
    passed = np.array(arc["rise_power"]) + np.array(arc["fall_power"])  # what GCLK's pulse adds on top
    assert (gated > 0).all() and (passed > 0).all()
    cons = {c["timing_type"]: c for c in r["inputs"]["GATE"]["constraints"]}
    assert set(cons) == {"setup_rising", "hold_rising"}
    assert len(r["leakage"]) == 2 and all(x["nw"] > 0 for x in r["leakage"])


def test_a_corrupt_cache_entry_is_recomputed(sky130, tmp_path, monkeypatch):
    from axhw.power.pdk.build import cache_key

    monkeypatch.setenv("AXHW_CACHE", str(tmp_path / "cache"))
    inv = spec_by_name("inv_1")
    entry = tmp_path / "cache" / "pdk" / "sky130" / f"{cache_key(sky130, inv, 1.8, GRID)}.json"
    entry.parent.mkdir(parents=True)
    entry.write_text('{"ok": true, "resu')  # a truncated write from some other tool
    res = build(sky130, [inv], [1.8], GRID, tmp_path / "out", jobs=1)
    assert (res.computed, res.cached) == (1, 0) and json.loads(entry.read_text())["ok"]
