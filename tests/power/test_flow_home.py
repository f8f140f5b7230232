"""The synthesis flow writes nothing outside the axhw cache and ``--out``: Yosys's history file included."""

from __future__ import annotations

import shutil

import pytest

from axhw.power.flow.synth import run_yosys
from axhw.power.flow.tools import find_toolchain


@pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed")
def test_yosys_leaves_no_history_in_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    (work / "m.v").write_text("module m(input a, output y); assign y = ~a; endmodule\n")
    (work / "s.ys").write_text("read_verilog m.v\nsynth -top m\n")
    run_yosys(find_toolchain(), work / "s.ys", work / "yosys.log", work)
    assert (work / "yosys.log").is_file()  # Yosys ran
    assert list(home.iterdir()) == []  # and ~/.yosys_history was not written


@pytest.mark.skipif(shutil.which("yosys") is None, reason="yosys not installed")
def test_import_loop_check_leaves_no_history_in_home(tmp_path, monkeypatch):
    from pathlib import Path

    from axhw.rtl.imported import combinational_loop

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    circuit = Path(__file__).resolve().parents[1] / "circuits" / "loop4.v"
    assert combinational_loop([circuit], "loop4", work) is not None  # Yosys ran and found the loop
    assert list(home.iterdir()) == []
