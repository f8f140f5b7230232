"""The committed sky130 libraries (power/pdk/sky130, built by `axhw power pdk build`): they parse, their
tables are sane, Yosys maps onto them and OpenSTA times and powers the result."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from liberty.parser import parse_liberty

from axhw.common.paths import resource_dir
from axhw.power.pdk.build import SUPPORTED_KINDS
from axhw.power.pdk.cells import SKY130_HD

LIB_DIR = resource_dir("power") / "pdk" / "sky130"
LIBS = sorted(LIB_DIR.glob("*.lib"))


def test_the_nominal_library_is_committed():
    assert LIB_DIR / "axhw_sky130_fd_sc_hd__tt_025C_1v80.lib" in LIBS


@pytest.fixture(scope="module", params=LIBS, ids=lambda p: p.stem)
def library(request):
    return request.param, parse_liberty(request.param.read_text())


def _cells(lib):
    return {str(c.args[0]).strip('"'): c for c in lib.get_groups("cell")}


def test_cells_and_the_build_record_agree(library):
    path, lib = library
    record = json.loads((LIB_DIR / "build.json").read_text())
    volts = f"{float(lib['nom_voltage']):g}"
    entry = record["voltages"][volts]
    assert sorted(_cells(lib)) == sorted(entry["cells"])
    assert not set(entry["cells"]) & set(entry["failed"])
    # every cell the build characterizes by default (the plain latch, which no netlist uses, only when named)
    assert set(entry["cells"]) | set(entry["failed"]) == {c.name for c in SKY130_HD if c.kind in SUPPORTED_KINDS}
    for name in entry["failed"]:  # a cell left out is said so in the file itself
        assert name in path.read_text().split("Not characterized here:", 1)[1].split('"', 1)[0]


def test_tables_are_sane(library):
    _, lib = library
    checked = 0
    for name, cell in _cells(lib).items():
        assert float(cell["area"]) > 0 and float(cell["cell_leakage_power"]) >= 0, name
        for pin in cell.get_groups("pin"):
            if str(pin["direction"]) == "input":
                assert 0.0002 < float(pin["capacitance"]) < 0.02, (name, pin.args[0])
                continue
            for t in pin.get_groups("timing"):
                for q in ("cell_rise", "cell_fall", "rise_transition", "fall_transition"):
                    tab = t.get_group(q)
                    if tab is None:
                        continue
                    v = tab.get_array("values")
                    assert (np.diff(v, axis=1) > 0).all(), f"{name} {q} grows with the load"
                    if "transition" in q:
                        assert (v > 0).all(), (name, q)
                    checked += 1
            for p in pin.get_groups("internal_power"):
                per_cycle = p.get_group("rise_power").get_array("values") + p.get_group("fall_power").get_array("values")
                assert (per_cycle > 0).all(), f"{name}: energy per output cycle must be positive"
    assert checked > 50


def test_yosys_and_opensta_use_it(library, tmp_path, toolchain):
    path, _ = library
    (tmp_path / "d.v").write_text(
        "module d(input clk, input [3:0] a, b, input s, output reg [4:0] q);\n"
        "  always @(posedge clk) q <= s ? a + b : {1'b0, a ^ b};\nendmodule\n")
    script = (f"read_verilog {tmp_path / 'd.v'}; synth -flatten -top d; dfflibmap -liberty {path}; "
              f"abc -liberty {path}; opt_clean -purge; stat -liberty {path}; "
              f"write_verilog -noattr -noexpr {tmp_path / 'n.v'}")
    proc = subprocess.run([toolchain.yosys, "-q", "-p", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    net = (tmp_path / "n.v").read_text()
    assert net.count("sky130_fd_sc_hd__dfxtp_1") == 5
    (tmp_path / "p.tcl").write_text(
        f"read_liberty {path}\nread_verilog {tmp_path / 'n.v'}\nlink_design d\n"
        "create_clock -name clk -period 20 [get_ports clk]\nset_power_activity -input -activity 0.2\n"
        "set_input_delay 0 -clock clk [delete_from_list [all_inputs] [get_ports clk]]\n"
        "report_power\nreport_checks -from [all_inputs]\n")
    sta = subprocess.run([toolchain.sta, "-no_splash", "-exit", str(tmp_path / "p.tcl")], capture_output=True,
                         text=True)
    out = sta.stdout + sta.stderr
    assert sta.returncode == 0 and "Error" not in out and "Warning" not in out, out
    total = next(line for line in sta.stdout.splitlines() if line.startswith("Total"))
    assert float(total.split()[-2]) > 0
    assert "library setup time" in sta.stdout and "slack (MET)" in sta.stdout


def test_every_library_is_in_the_wheel():
    import fnmatch
    import tomllib

    root = Path(__file__).resolve().parents[3]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["axhw._hw.power"]
    for f in LIB_DIR.iterdir():
        assert any(fnmatch.fnmatch(f"pdk/sky130/{f.name}", p) for p in patterns), f.name
