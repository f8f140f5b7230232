"""The command line: verbs run, bad input is one clear line and a non-zero exit."""

import json

import pytest
import torch

from axhw.apps.cli import main
from axhw.arith.multipliers import DRUM


def test_demo_prints_both_tables(capsys):
    assert main(["demo", "--models-only"]) == 0
    out = capsys.readouterr().out
    assert "| K1" in out and "drum1" in out and "| 400" in out and "breast-cancer" in out


def test_multipliers_json(capsys):
    assert main(["multipliers", "--bits", "8", "--names", "K2", "exact", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["drum2", "exact"]
    assert rows[0]["exhaustive"] and rows[1]["mae"] == 0
    # DRUM-2's error over all 2**16 signed operand pairs, computed here from the model against a * b
    v = torch.arange(-128, 128)
    a, b = (t.flatten() for t in torch.meshgrid(v, v, indexing="ij"))
    err, exact = (DRUM(2, 8)(a, b) - a * b).double(), (a * b).double()
    nz = exact != 0
    assert rows[0]["pairs"] == 2**16 and rows[0]["wce"] == float(err.abs().max())
    assert rows[0]["mre"] == pytest.approx(float((err[nz] / exact[nz]).abs().mean()), rel=1e-12)
    assert rows[0]["mae"] == pytest.approx(float(err.abs().mean()), rel=1e-12)


def test_bad_input_is_one_line_and_exit_2(capsys):
    assert main(["multipliers", "--bits", "8", "--names", "drum9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "valid range is [1, bits=8]" in err
    assert main(["multipliers", "--bits", "40"]) == 2
    assert "valid range" in capsys.readouterr().err
