"""The Liberty writer: its output parses (liberty-parser), Yosys maps a design onto it, OpenSTA times and
powers the result. Synthetic tables here (no ngspice); the committed libraries get the same checks in
test_libraries.py."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from liberty.parser import parse_liberty

from axhw.power.pdk.cells import CellSpec, combinational_arcs, spec_by_name
from axhw.power.pdk.characterize import default_grid, when
from axhw.power.pdk.liberty_out import corner_name, library_text

GRID = default_grid(3)


def _table(base: float) -> list[list[float]]:
    s, c = np.meshgrid(GRID.slews_ns, GRID.loads_pf, indexing="ij")
    return np.round(base + 0.3 * s + 4.0 * c, 6).tolist()


def fake_result(cell: CellSpec) -> dict[str, Any]:
    """A result shaped like characterize_comb's / characterize_sequential's, with monotonic tables."""
    slews, loads = list(GRID.slews_ns), list(GRID.loads_for(cell))
    inputs = {p: {"capacitance": 0.002, "rise_capacitance": 0.002, "fall_capacitance": 0.002} for p in cell.inputs}
    outputs: dict[str, Any] = {}
    kind = cell.kind
    if kind == "comb":
        for out in cell.output_pins:
            arcs: dict[str, Any] = {}
            for arc in combinational_arcs(cell):
                if arc.out == out:
                    arcs[arc.pin] = {"sense": "positive_unate" if arc.positive else "negative_unate",
                                     **{q: _table(0.02) for q in ("cell_rise", "rise_transition", "cell_fall",
                                                                  "fall_transition", "rise_power", "fall_power")}}
            outputs[out] = {"function": dict(cell.outputs)[out], "arcs": arcs}
    elif kind == "ff":
        outputs["Q"] = {"function": "IQ", "arcs": {"CLK": {
            "sense": "non_unate", "timing_type": "rising_edge",
            **{q: _table(0.2) for q in ("cell_rise", "rise_transition", "cell_fall", "fall_transition",
                                         "rise_power", "fall_power")}}}}
        inputs["CLK"]["clock"] = True
        inputs["CLK"]["internals"] = [{"rise_power": [0.003] * 3, "fall_power": [0.002] * 3}]
        axis = slews
        inputs["D"]["constraints"] = [{"related_pin": "CLK", "timing_type": f"{k}_rising", "axis": axis,
                                       "rise_constraint": [[0.1] * 3] * 3, "fall_constraint": [[0.1] * 3] * 3}
                                      for k in ("setup", "hold")]
    elif kind == "icg":
        outputs["GCLK"] = {"function": "CLK&IQ", "arcs": {"CLK": {
            "sense": "positive_unate",
            **{q: _table(0.06) for q in ("cell_rise", "rise_transition", "cell_fall", "fall_transition",
                                          "rise_power", "fall_power")}}}}
        inputs["CLK"]["clock"] = True
        inputs["CLK"]["internals"] = [{"rise_power": [0.003] * 3, "fall_power": [0.01] * 3}]
        inputs["GATE"]["constraints"] = [{"related_pin": "CLK", "timing_type": f"{k}_rising", "axis": slews,
                                          "rise_constraint": [[0.1] * 3] * 3, "fall_constraint": [[0.1] * 3] * 3}
                                         for k in ("setup", "hold")]
    else:
        outputs = {o: {"function": fn, "arcs": {}} for o, fn in cell.outputs}
    res = {"cell": cell.name, "kind": kind, "voltage": 1.8, "slews_ns": slews, "loads_pf": loads,
           "inputs": inputs, "outputs": outputs, "cell_leakage_nw": 0.01,
           "leakage": [{"when": when(()), "nw": 0.01}]}
    if kind == "ff":
        res.update(clock="CLK", data="D")
    if kind == "icg":
        res.update(enable="!CLK", data="GATE")
    return res


CELLS = ["inv_1", "buf_1", "nand2_1", "nor2_1", "xor2_1", "a21oi_1", "mux2_1", "fa_1", "dfxtp_1", "dlclkp_1",
         "conb_1"]


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = [fake_result(spec_by_name(c)) for c in CELLS]
    areas = {r["cell"]: 5.0 for r in results}
    path = tmp_path_factory.mktemp("lib") / "fake.lib"
    path.write_text(library_text("fake_" + corner_name(1.8), 1.8, results, areas, "synthetic test library"))
    return path


def test_corner_names():
    assert corner_name(1.8) == "tt_025C_1v80"
    assert corner_name(1.2) == "tt_025C_1v20"
    assert corner_name(0.9) == "tt_025C_0v90"


def test_parses_with_every_cell_pin_and_table(library):
    lib = parse_liberty(library.read_text())
    cells = {str(c.args[0]).strip('"'): c for c in lib.get_groups("cell")}
    assert set(cells) == {f"sky130_fd_sc_hd__{c}" for c in CELLS}
    nand = cells["sky130_fd_sc_hd__nand2_1"]
    y = next(p for p in nand.get_groups("pin") if str(p.args[0]) == "Y")
    timings = y.get_groups("timing")
    assert sorted(str(t["related_pin"]).strip('"') for t in timings) == ["A", "B"]
    values = timings[0].get_group("cell_rise").get_array("values")
    assert values.shape == (3, 3) and values[2, 2] == pytest.approx(0.02 + 0.3 * 1.5 + 4.0 * GRID.loads_pf[-1])
    assert str(lib["default_operating_conditions"]) == "tt_025C_1v80"
    icg = cells["sky130_fd_sc_hd__dlclkp_1"]
    assert str(icg["clock_gating_integrated_cell"]).strip('"') == "latch_posedge"
    assert str(icg.get_group("latch")["enable"]).strip('"') == "!CLK"


def test_yosys_maps_a_design_and_opensta_powers_it(library, tmp_path, toolchain):
    (tmp_path / "d.v").write_text(
        "module d(input clk, input [3:0] a, b, input s, output reg [4:0] q);\n"
        "  always @(posedge clk) q <= s ? a + b : {1'b0, a ^ b};\nendmodule\n")
    script = (f"read_verilog {tmp_path / 'd.v'}\nsynth -flatten -top d\ndfflibmap -liberty {library}\n"
              f"abc -liberty {library}\nopt_clean -purge\nhilomap -hicell sky130_fd_sc_hd__conb_1 HI "
              f"-locell sky130_fd_sc_hd__conb_1 LO\nstat -liberty {library}\n"
              f"write_verilog -noattr -noexpr {tmp_path / 'n.v'}\n")
    proc = subprocess.run([toolchain.yosys, "-q", "-p", script.replace("\n", "; ")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    net = (tmp_path / "n.v").read_text()
    assert net.count("sky130_fd_sc_hd__dfxtp_1") == 5  # every flip-flop mapped onto the characterized one
    assert "sky130_fd_sc_hd__" in net.replace("sky130_fd_sc_hd__dfxtp_1", "")  # and the logic too
    tcl = (f"read_liberty {library}\nread_verilog {tmp_path / 'n.v'}\nlink_design d\n"
           "create_clock -name clk -period 5 [get_ports clk]\nset_power_activity -input -activity 0.2\n"
           "set_input_delay 0 -clock clk [delete_from_list [all_inputs] [get_ports clk]]\n"
           "set_output_delay 0 -clock clk [all_outputs]\nreport_power\n"
           "report_checks -from [all_inputs] -format full\nreport_checks -to [all_outputs]\n")
    (tmp_path / "p.tcl").write_text(tcl)
    sta = subprocess.run([toolchain.sta, "-no_splash", "-exit", str(tmp_path / "p.tcl")], capture_output=True,
                         text=True)
    assert sta.returncode == 0 and "Error" not in sta.stdout + sta.stderr, sta.stdout + sta.stderr
    total = [line for line in sta.stdout.splitlines() if line.startswith("Total")]
    assert total and float(total[0].split()[-2]) > 0, sta.stdout
    # a path into a flip-flop (its setup check) and one out of it (its clock-to-Q arc) are both timed
    assert "library setup time" in sta.stdout and "sky130_fd_sc_hd__dfxtp_1" in sta.stdout, sta.stdout
    assert sta.stdout.count("slack (MET)") == 2, sta.stdout


def test_cell_table_reads_each_table_at_the_stated_point():
    from axhw.power.pdk.report import LOAD_PF, SLEW_NS, cell_table

    r = fake_result(spec_by_name("nand2_1"))
    text = cell_table({1.8: [r], 1.2: [r]})
    delay_ps = (0.02 + 0.3 * SLEW_NS + 4.0 * LOAD_PF) * 1e3  # the fake tables are linear: bilinear is exact
    row = next(line for line in text.splitlines() if line.startswith("| nand2_1"))
    assert row.count(f"{delay_ps:.1f}") == 2  # one per voltage
    assert f"{2 * delay_ps:.2f}" in row  # energy: rise + fall tables, same values
    assert "delay ps 1.8 V" in text and "delay ps 1.2 V" in text
