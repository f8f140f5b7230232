"""The command line: verbs run, bad input is one clear line and a non-zero exit."""

import json

from axhw.apps.cli import main


def test_demo_prints_both_tables(capsys):
    assert main(["demo", "--models-only"]) == 0
    out = capsys.readouterr().out
    assert "| K1" in out and "drum1" in out and "| 400" in out and "breast-cancer" in out


def test_multipliers_json(capsys):
    assert main(["multipliers", "--bits", "8", "--names", "K2", "exact", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["drum2", "exact"]
    assert rows[0]["exhaustive"] and rows[0]["mre"] > 0.2 and rows[1]["mae"] == 0


def test_bad_input_is_one_line_and_exit_2(capsys):
    assert main(["multipliers", "--bits", "8", "--names", "drum9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "valid range is [1, bits=8]" in err
    assert main(["multipliers", "--bits", "40"]) == 2
    assert "valid range" in capsys.readouterr().err
