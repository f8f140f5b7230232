"""The generated sky130 cell models: each committed model file is what its library generates today, every
combinational model computes its cell's function on every input (Icarus, exhaustively), the flip-flop and
the clock gate behave as their cells, and the path delays are the library's at the stated point."""

from __future__ import annotations

import shutil
import subprocess
from itertools import product
from pathlib import Path

import pytest

from axhw.common.paths import resource_dir
from axhw.power.pdk.cells import SKY130_HD
from axhw.power.pdk.report import LOAD_PF, SLEW_NS, at
from axhw.power.pdk.verilog_out import arc_delays, cell_models_text, verilog_expr

LIB_DIR = resource_dir("power") / "pdk" / "sky130"
LIBS = sorted(LIB_DIR.glob("*.lib"))
NOMINAL = LIB_DIR / "axhw_sky130_fd_sc_hd__tt_025C_1v80.lib"


def test_verilog_expr():
    assert verilog_expr("!(A&B)|C^D") == "~(A&B)|C^D"
    assert (verilog_expr("1"), verilog_expr("0")) == ("1'b1", "1'b0")


@pytest.mark.parametrize("lib", LIBS, ids=lambda p: p.stem)
def test_committed_models_are_regenerated_exactly(lib: Path):
    models = lib.with_suffix(".v")
    assert models.is_file(), f"{models.name} missing: axhw power pdk build writes it beside {lib.name}"
    assert models.read_text() == cell_models_text(lib), f"{models.name} is stale: rebuild the library"


def test_delays_are_the_library_tables_at_the_stated_point():
    from liberty.parser import parse_liberty

    delays = arc_delays(NOMINAL)
    lib = parse_liberty(NOMINAL.read_text())
    cell = next(c for c in lib.get_groups("cell") if str(c.args[0]).strip('"') == "sky130_fd_sc_hd__nand2_1")
    pin = next(p for p in cell.get_groups("pin") if str(p.args[0]).strip('"') == "Y")
    timing = next(t for t in pin.get_groups("timing") if str(t["related_pin"]).strip('"') == "B")
    tpl = next(t for t in lib.get_groups("lu_table_template") if str(t.args[0]).strip('"') == "delay_template")
    ind1, ind2 = tpl.get_array("index_1").ravel(), tpl.get_array("index_2").ravel()
    rise = at(ind1, ind2, timing.get_groups("cell_rise")[0].get_array("values"), SLEW_NS, LOAD_PF)
    fall = at(ind1, ind2, timing.get_groups("cell_fall")[0].get_array("values"), SLEW_NS, LOAD_PF)
    assert delays["sky130_fd_sc_hd__nand2_1"][("B", "Y")] == pytest.approx((rise, fall))
    assert 0.005 < fall < rise < 0.5  # ns: the NAND2_1 output rises through one 1.0 um PMOS (weaker than its NMOS stack) more slowly than it falls
    text = cell_models_text(NOMINAL)
    assert f"(B *> Y) = ({rise:.3f}, {fall:.3f});" in text
    assert "sky130_fd_sc_hd__dlxtp_1" not in text  # not in the library: no model either


def _run(tmp_path: Path, tb: str) -> str:
    iverilog = shutil.which("iverilog")
    if iverilog is None:
        pytest.skip("iverilog missing")
    (tmp_path / "tb.v").write_text(tb)
    (tmp_path / "cells.v").write_text(cell_models_text(NOMINAL))
    subprocess.run([iverilog, "-g2005", "-gspecify", "-o", "sim", "tb.v", "cells.v"], cwd=tmp_path, check=True,
                   capture_output=True)
    return subprocess.run(["vvp", "-n", "sim"], cwd=tmp_path, check=True, capture_output=True, text=True).stdout


def test_every_combinational_model_computes_its_function(tmp_path: Path):
    cells = [c for c in SKY130_HD if c.kind in ("comb", "tie") and c.name in arc_delays(NOMINAL)]
    lines, expect = ["`timescale 1ns/1ps", "module tb;"], []
    for i, cell in enumerate(cells):
        ins = ", ".join(f".{p}(i{i}[{j}])" for j, p in enumerate(cell.inputs))
        outs = ", ".join(f".{p}(o{i}[{j}])" for j, (p, _) in enumerate(cell.outputs))
        lines += [f"  reg [{max(len(cell.inputs), 1) - 1}:0] i{i}; wire [{len(cell.outputs) - 1}:0] o{i};",
                  f"  {cell.name} u{i} ({', '.join(x for x in (ins, outs) if x)});"]
    lines.append("  initial begin")
    for i, cell in enumerate(cells):
        for values in product((0, 1), repeat=len(cell.inputs)):
            word = sum(v << j for j, v in enumerate(values))
            lines += [f"    i{i} = {word}; #5 $display(\"{cell.name} {word} %b\", o{i});"]
            got = "".join(str(int(cell.value(p, dict(zip(cell.inputs, values, strict=True)))))
                          for p, _ in reversed(cell.outputs))
            expect.append(f"{cell.name} {word} {got}")
    lines += ["  end", "endmodule"]
    out = _run(tmp_path, "\n".join(lines) + "\n").split("\n")
    assert [line for line in out if line] == expect
    assert len(expect) > 60  # every cell, every input combination


def test_flip_flop_and_clock_gate_models(tmp_path: Path):
    tb = """`timescale 1ns/1ps
module tb;
  reg clk = 0, d = 0, en = 0;
  wire q, gclk;
  sky130_fd_sc_hd__dfxtp_1 ff (.CLK(clk), .D(d), .Q(q));
  sky130_fd_sc_hd__dlclkp_1 cg (.CLK(clk), .GATE(en), .GCLK(gclk));
  always #5 clk = ~clk;
  integer pulses = 0;
  always @(posedge gclk) pulses = pulses + 1;
  initial begin
    d = 1; #7 $display("q after first edge %b", q);      // rising edge at 5 ns captured d = 1
    d = 0; #2 $display("q between edges %b", q);         // no edge: q holds
    #10 $display("q after second edge %b", q);
    en = 1; #30 en = 0; #30 $display("gated pulses %0d", pulses);
    $finish;
  end
endmodule
"""
    out = _run(tmp_path, tb)
    assert "q after first edge 1" in out and "q between edges 1" in out and "q after second edge 0" in out
    assert "gated pulses 3" in out  # enable high over three rising edges, low over the next three
