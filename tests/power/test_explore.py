"""`axhw power explore` (axhw.power.search.explore): a folder of circuits imported (signedness found, broken
files skipped in one line), BP and AxTrain fine-tuned per circuit, gate-level energy on each network's
operand stream, the Pareto fronts, the files written, and a cached re-run that measures nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from axhw.apps.cli import main
from axhw.power.flow.tools import Toolchain
from axhw.power.search.explore import pareto_front, top_module

CIRCUITS = Path(__file__).resolve().parents[1] / "circuits"


def test_pareto_front_keeps_the_non_dominated_points() -> None:
    def pt(mode: str, e: float, a: float) -> dict[str, object]:
        return {"mode": mode, "m": {"energy_pj": e, "val_accuracy": a}}

    pts = [pt("exact", 10.0, 0.95), pt("a", 2.0, 0.80), pt("b", 3.0, 0.80), pt("c", 4.0, 0.90), pt("d", 5.0, 0.90),
           pt("e", 4.0, 0.90)]
    # b is beaten by a (same accuracy, less energy), d by c; c and e tie exactly: both stay
    assert pareto_front(pts, "m") == ["a", "c", "e", "exact"]
    assert pareto_front([pt("x", 1.0, 0.5)], "m") == ["x"]
    # brute force over random points: a front point is beaten by none, every other point by some front point
    g = torch.Generator().manual_seed(0)
    rnd = [pt(str(i), float(torch.rand(1, generator=g)), float(torch.rand(1, generator=g))) for i in range(40)]
    front = set(pareto_front(rnd, "m"))
    for p in rnd:
        dominated = any(q["m"]["energy_pj"] <= p["m"]["energy_pj"] and q["m"]["val_accuracy"] >= p["m"]["val_accuracy"]
                        and q is not p for q in rnd)
        assert (p["mode"] in front) == (not dominated)


def test_top_module_is_the_one_nobody_instantiates(tmp_path: Path) -> None:
    assert top_module(CIRCUITS / "bam8u.v") == "bam8u"  # half/full-adder helpers below it
    f = tmp_path / "two.v"
    f.write_text("module x(input a, output b); assign b = a; endmodule\nmodule y(input a, output b); assign b = a; "
                 "endmodule\n")
    with pytest.raises(ValueError, match="2 candidate top modules"):
        top_module(f)


def test_explore_a_folder(toolchain: Toolchain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AXHW_MULTIPLIER_LIBRARY", str(tmp_path / "lib"))
    monkeypatch.setenv("AXHW_RTL_REGISTRY", str(tmp_path / "registry.json"))
    folder = tmp_path / "circuits"
    folder.mkdir()
    shutil.copy(CIRCUITS / "otrunc8u.v", folder)  # unsigned: found by the signedness check
    shutil.copy(CIRCUITS / "rtrunc8s.v", folder)  # signed, ports x/w/y: not the default names
    (folder / "broken.v").write_text("module broken (input a;\nendmodule\n")
    (folder / "mul4.v").write_text((CIRCUITS / "mul4s.v").read_text())  # a 4-bit circuit in an 8-bit folder
    args = ["power", "explore", "--dataset", "breast_cancer", "--circuits", str(folder), "--epochs", "3",
            "--pas-epochs", "1", "--pairs", "128", "--workers", "1", "--work-dir", str(tmp_path / "work"),
            "--out", str(tmp_path / "out"), "--quiet"]
    assert main(args) == 0
    d = json.loads((tmp_path / "out" / "explore.json").read_text())
    imports = {Path(r["file"]).name: r for r in d["imports"]}
    assert imports["otrunc8u.v"]["status"] == "imported" and imports["otrunc8u.v"]["signed"] is False
    assert imports["broken.v"]["status"] == "skipped" and "\n" not in imports["broken.v"]["reason"]
    assert imports["mul4.v"]["status"] == "skipped"
    # rtrunc8s's ports are x/w/y: the default port map cannot import it, and it says so
    assert imports["rtrunc8s.v"]["status"] == "skipped" and "--ports" in imports["rtrunc8s.v"]["reason"]
    points = {p["mode"]: p for p in d["points"]}
    assert set(points) == {"exact", "otrunc8u"}
    for p in points.values():
        for method in ("bp", "axtrain"):
            m = p[method]
            assert m["energy_pj"] > 0 and 0.0 <= m["val_accuracy"] <= 1.0 and 0.0 <= m["test_accuracy"] <= 1.0
    # each candidate's AxTrain network was fine-tuned for that circuit (pas phase), from the one act phase
    for mode, p in points.items():
        ck = torch.load(p["axtrain"]["checkpoint"], weights_only=True)
        assert ck["config"]["multiplier"] == mode and ck["config"]["method"] == "axtrain"
    # the truncated circuit costs less energy than exact on both streams
    assert points["otrunc8u"]["bp"]["energy_pj"] < points["exact"]["bp"]["energy_pj"]
    for method in ("bp", "axtrain"):
        assert d["pareto"][method] == pareto_front(d["points"], method) and "otrunc8u" in d["pareto"][method]
    assert (tmp_path / "out" / "explore.png").stat().st_size > 1000
    md = (tmp_path / "out" / "explore.md").read_text()
    assert "| otrunc8u" in md and "broken.v:" in md
    assert d["cost"]["candidates_measured"] == 2 and d["numerics"]["stamp"]
    # BP (3 epochs), act (3 - 1) and one pas phase (1 epoch) per candidate, exact included
    assert d["cost"]["trainings_run"] == 1 + 1 + 2 and "breast_cancer/s0/bp" in d["cost"]["trained"]
    assert d["cost"]["epochs_trained"] == 3 + 2 + 2 * 1
    capsys.readouterr()
    # a re-run measures and trains nothing, and finds the same points
    assert main(args) == 0
    again = json.loads((tmp_path / "out" / "explore.json").read_text())
    assert again["points"] == d["points"] and again["cost"]["candidates_measured"] == 0
    assert again["cost"]["trainings_run"] == 0 and again["cost"]["gate_level_simulations"] == 0
    (tmp_path / "empty").mkdir()
    assert main([*args[:5], str(tmp_path / "empty"), *args[6:]]) == 2
    assert "no Verilog files" in capsys.readouterr().err
