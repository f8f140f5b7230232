"""scripts/mutation_report.py: verdicts, kill rate and the reasoned equivalence list (no mutmut run)."""

import importlib.util
import json
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "scripts" / "mutation_report.py"
_spec = importlib.util.spec_from_file_location("mutation_report", _PATH)
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)


def test_report_pairs_survivors_with_reasons_and_flags_the_rest(tmp_path):
    meta = tmp_path / "mutants" / "axhw" / "arith" / "m.py.meta"
    meta.parent.mkdir(parents=True)
    codes = {"m.f__mutmut_1": 1, "m.f__mutmut_2": 0, "m.f__mutmut_3": 0, "m.f__mutmut_4": 36, "m.f__mutmut_5": 33,
             "m.f__mutmut_6": None}
    meta.write_text(json.dumps({"exit_code_by_key": codes}))
    eq = tmp_path / "eq.toml"
    eq.write_text('[[group]]\nreason = "same numbers"\nmutants = ["m.f__mutmut_2", "m.f__mutmut_9"]\n')
    rep = report.explain(report.tally(tmp_path / "mutants"), report.load_equivalent(eq))
    assert rep["total"] == {"killed": 2, "survived": 2, "not_covered": 1, "not_run": 1}
    assert rep["kill_rate"] == pytest.approx(2 / 5)
    assert rep["equivalent"] == {"m.f__mutmut_2": "same numbers"}
    assert rep["unexplained"] == ["m.f__mutmut_3", "m.f__mutmut_5"]
    assert rep["stale_equivalent"] == ["m.f__mutmut_9"]
    assert rep["score_without_equivalent"] == pytest.approx(2 / 4)


def test_equivalence_list_refuses_a_mutant_listed_twice(tmp_path):
    eq = tmp_path / "eq.toml"
    eq.write_text('[[group]]\nreason = "a"\nmutants = ["x"]\n[[group]]\nreason = "b"\nmutants = ["x"]\n')
    with pytest.raises(ValueError, match="x listed twice"):
        report.load_equivalent(eq)
