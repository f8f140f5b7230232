"""Readings of the bound and intervals in power.json, power.md and the summary (issue #25; docs/power.md,
"Statistics and readings of the bound"), on hand-made study results: no training, no simulation.

The grid (powers in uW; storage power depends on the voltage only, so it is the same for both networks):

    mode@mV      compute  BP acc  AxTrain acc
    exact@1100   3        0.95    0.90        <- the accurate implementations
    K4@1100      2        0.94    0.9305
    K2@1100      k2       0.90    0.881       (k2: BP 1.0; AxTrain per seed, e.g. 1.0, 1.2, 0.8)
    exact@660    -        0.94    0.89

AxTrain's compute choice under the four readings (bound 2):
    own-pp        floor 0.88              -> K2
    own-relative  floor 0.90 x 0.98 = 0.882  -> K4 (K2's 0.881 is below)
    bp-pp         floor 0.93              -> K4
    bp-relative   floor 0.95 x 0.98 = 0.931  -> none (K4's 0.9305 is below, exact 0.90 too)
BP chooses K4 under every reading (its own reference is BP's).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from axhw.power.search.aggregate import readings_block, rescore, study_dict
from axhw.power.search.report import markdown
from axhw.power.search.study import NODE_SCALE_180_TO_65, StudyConfig, StudyResult, choose_configurations

UW = 1e-6
STORAGE = {1100.0: 1.0, 660.0: 0.4}


def _net(method: str, acc: dict[tuple[str, float], float], compute: dict[str, float]) -> dict[str, Any]:
    points = []
    for (mode, mv), a in acc.items():
        c, s = compute[mode] * UW, STORAGE[mv] * UW
        points.append({"mode": mode, "voltage_mv": mv, "accuracy": a, "accuracy_std": 0.0,
                       "test_accuracy": a - 0.005, "compute_w": c, "storage_w": s, "joint_w": c * NODE_SCALE_180_TO_65 + s})
    return {"method": method, "exact_nominal_accuracy": acc[("exact", 1100.0)], "points": points,
            "compute": {m: {"n_cells": 100, "area_um2": 1000.0, "vectors": 64, "mismatches": 0,
                            "measured": {"total_w": w * UW, "energy_pj": w, "mean_toggles": 0.1},
                            "vectorless": {"energy_pj": w}} for m, w in compute.items()},
            "storage": {str(v): {"total_w": w * UW} for v, w in STORAGE.items()}}


BP_ACC = {("exact", 1100.0): 0.95, ("K4", 1100.0): 0.94, ("K2", 1100.0): 0.90,
          ("exact", 660.0): 0.94, ("K4", 660.0): 0.93, ("K2", 660.0): 0.89}
AX_ACC = {("exact", 1100.0): 0.90, ("K4", 1100.0): 0.9305, ("K2", 1100.0): 0.881,
          ("exact", 660.0): 0.89, ("K4", 660.0): 0.92, ("K2", 660.0): 0.87}


def _result(k2_by_seed: tuple[float, ...] = (1.0, 1.2, 0.8), reference: str = "own", per_target: bool = False,
            per_target_readings: bool = False, approxann_w: tuple[float, ...] = ()) -> StudyResult:
    cfg = StudyConfig(dataset="breast_cancer", modes=("exact", "K4", "K2"), voltages=(1100.0, 660.0),
                      seeds=tuple(range(len(k2_by_seed))), bounds=(2.0,), reference=reference,  # type: ignore[arg-type]
                      search="per_target" if per_target else "single", approxann_modes=("K2",) if approxann_w else ())
    res = StudyResult(cfg)
    for s, k2 in enumerate(k2_by_seed):
        nets = {"bp": _net("bp", BP_ACC, {"exact": 3.0, "K4": 2.0, "K2": 1.0}),
                "axtrain": _net("axtrain", AX_ACC, {"exact": 3.0, "K4": 2.0, "K2": k2})}
        choose_configurations(nets, cfg, nets["bp"]["exact_nominal_accuracy"])
        seed: dict[str, Any] = {"seed": s, "networks": nets}
        if per_target:
            row: dict[str, Any] = {"floor": 0.88}
            for part in ("compute", "storage", "joint"):
                pt = next(p for p in nets["axtrain"]["points"] if (p["mode"], p["voltage_mv"]) == ("K2", 1100.0))
                row[part] = {"visited": [{"mode": "K2", "voltage_mv": 1100.0, "accuracy": 0.881, "feasible": True}],
                             "point": {**pt, "compute_w": 0.5 * UW}}
            seed["per_target"] = {"reference_accuracy": 0.90, "bounds": {"2.0": row}}
            if per_target_readings:  # as the study writes them: compute and storage only
                seed["per_target"]["readings"] = {
                    "bp-relative": {"floor": 0.931, "compute": {"visited": [], "point": None},
                                    "storage": {"visited": [], "point": None}},
                    "own-pp": {"floor": 0.88, "compute": row["compute"], "storage": row["storage"]}}
        if approxann_w:  # ApproxAnn on BP's network: a K2 mix of the stated power
            seed["approxann"] = {"bp": {"2.0": {"best": "K2", "power_w": approxann_w[s] * UW,
                                                "modes": {"K2": {"fraction": 0.5, "power_w": approxann_w[s] * UW}}}}}
        res.per_seed[s] = seed
    return res


def test_readings_rescore_each_reading_exactly() -> None:
    d = study_dict(_result())
    r = d["readings"]
    assert r["study_reading"] == "own-pp" and r["bound_pp"] == 2.0 and r["readings"] == [
        "own-pp", "own-relative", "bp-pp", "bp-relative"]
    by = r["by_reading"]

    def modes(name: str, who: str, part: str) -> list[str | None]:
        per = by[name][who]["per_seed"]
        return [None if v["chosen"][part] is None else v["chosen"][part]["mode"] for v in per.values()]

    assert modes("own-pp", "single_network", "compute") == ["K2"] * 3
    assert modes("own-relative", "single_network", "compute") == ["K4"] * 3
    assert modes("bp-pp", "single_network", "compute") == ["K4"] * 3
    assert modes("bp-relative", "single_network", "compute") == [None] * 3
    for name in r["readings"]:
        assert modes(name, "bp", "compute") == ["K4"] * 3
    sn = by["own-pp"]["single_network"]
    assert sn["per_seed"]["0"]["floor"] == pytest.approx(0.88) and sn["per_seed"]["0"]["reference_accuracy"] == 0.90
    assert by["bp-relative"]["single_network"]["per_seed"]["1"]["floor"] == pytest.approx(0.931)
    # Changes vs BP (K4, 2 uW): K2 at 1.0 / 1.2 / 0.8 uW -> -50 / -40 / -60%; mean -50, 3 seeds -> [min, max].
    assert sn["vs_bp_percent_values"]["compute"] == pytest.approx([-50.0, -40.0, -60.0])
    assert sn["mean_vs_bp_percent"]["compute"] == pytest.approx(-50.0)
    assert sn["ci95_vs_bp_percent"]["compute"] == pytest.approx([-60.0, -40.0])
    assert by["own-relative"]["single_network"]["mean_vs_bp_percent"]["compute"] == 0.0
    bpr = by["bp-relative"]["single_network"]
    assert bpr["mean_vs_bp_percent"]["compute"] is None and bpr["seeds_with_both_feasible"]["compute"] == 0
    assert bpr["ci95_vs_bp_percent"]["compute"] is None
    # Storage: AxTrain's exact@660 (0.89) meets its own floor 0.88, not BP's 0.93 (nor its own 1100 mV point).
    volts = [v["chosen"]["storage"] and v["chosen"]["storage"]["voltage_mv"] for v in sn["per_seed"].values()]
    assert volts == [660.0] * 3 and sn["mean_vs_bp_percent"]["storage"] == 0.0
    assert all(v["chosen"]["storage"] is None for v in by["bp-pp"]["single_network"]["per_seed"].values())
    # The study's own reading re-scored equals the study's choices (one floor rule).
    for s in ("0", "1", "2"):
        assert by["own-pp"]["single_network"]["per_seed"][s]["chosen"] == d["single_network"]["per_seed"][s]["chosen"]
        assert by["own-pp"]["bp"]["per_seed"][s]["chosen"] == {p: d["bp"]["per_seed"][s]["chosen"][p]
                                                              for p in ("compute", "storage", "joint")}
    assert by["own-pp"]["per_target"] == {"not_searched": "no per-target search in this report (--single-network)"}


def test_study_reference_bp_matches_bp_pp_reading() -> None:
    d = study_dict(_result(reference="bp"))
    assert d["readings"]["study_reading"] == "bp-pp"
    for s, v in d["readings"]["by_reading"]["bp-pp"]["single_network"]["per_seed"].items():
        assert v["chosen"] == d["single_network"]["per_seed"][s]["chosen"]


def test_ci_keys_in_blocks_and_pareto() -> None:
    d = study_dict(_result())
    sn = d["single_network"]
    assert set(sn["ci95_vs_bp_percent"]) == {"compute", "storage", "joint"}
    assert sn["ci95_vs_bp_percent"]["compute"] == pytest.approx([-60.0, -40.0])
    assert sn["ci95_vs_bp_percent"]["storage"] == [0.0, 0.0]
    assert sn["vs_bp_percent_values"]["compute"] == pytest.approx([-50.0, -40.0, -60.0])
    assert sn["mean_vs_bp_percent"]["compute"] == pytest.approx(-50.0)  # the earlier keys stay
    curve = d["pareto"]["compute"]["single_network"][0]
    # % of BP's exact 3 uW: K2 at 1.0 / 1.2 / 0.8 uW.
    assert curve["relative_percent_values"] == pytest.approx([100 / 3, 40.0, 80 / 3])
    assert curve["relative_percent_ci95"] == pytest.approx([80 / 3, 40.0])
    assert curve["power_w_ci95"] == pytest.approx([0.8 * UW, 1.2 * UW])
    one = study_dict(_result(k2_by_seed=(1.0,)))
    assert one["single_network"]["ci95_vs_bp_percent"]["compute"] is None  # one seed: no interval


def test_per_target_readings_from_the_study_or_not_searched() -> None:
    d = study_dict(_result(per_target=True))
    by = d["readings"]["by_reading"]
    pt = by["own-pp"]["per_target"]  # the study's own reading: its bounds row
    assert pt["mean_vs_bp_percent"]["compute"] == pytest.approx(-75.0)  # 0.5 uW vs BP's K4 2 uW
    assert pt["mean_vs_bp_percent"] == d["per_target"]["mean_vs_bp_percent"]
    assert "not_searched" in by["bp-relative"]["per_target"] and "own-pp" in by["bp-relative"]["per_target"]["not_searched"]
    d2 = study_dict(_result(per_target=True, per_target_readings=True))
    ptr = d2["readings"]["by_reading"]["bp-relative"]["per_target"]
    assert ptr["seeds_with_both_feasible"] == {"compute": 0, "storage": 0, "joint": 0}
    assert ptr["per_seed"]["0"]["searched_parts"] == ["compute", "storage"]
    # The study's own reading: its readings row, the joint part from its bounds row.
    own = d2["readings"]["by_reading"]["own-pp"]["per_target"]
    assert own["mean_vs_bp_percent"] == d2["per_target"]["mean_vs_bp_percent"]
    assert own["per_seed"]["0"]["searched_parts"] == ["compute", "storage", "joint"]
    assert ptr["searched_parts"] == ["compute", "storage"]
    text = markdown(d2)
    assert "Per-target AxTrain not searched under own-relative, bp-pp:" in text
    assert "| bp-relative | BP's accurate accuracy x (1 - 2%) | per target | n/a (0/3) | n/a (0/3) | not searched |" in text


def test_power_md_readings_table_and_intervals() -> None:
    text = markdown(study_dict(_result()))
    assert "## Readings of the bound (bound 2; the study chose under own-pp)" in text
    assert "| own-pp | own accurate accuracy - 2 pp | single network | -50.0% [-60.0, -40.0] (3/3) | " \
           "+0.0% [+0.0, +0.0] (3/3) |" in text
    assert "| bp-relative | BP's accurate accuracy x (1 - 2%) | single network | n/a (0/3) | n/a (0/3) |" in text
    assert "| own-relative | AxTrain single | 88.20/88.20/88.20 | K4/K4/K4 |" in text
    assert "| compute | K4/K4/K4 | - | - | K2/K2/K2 | -50.0% [-60.0, -40.0] |" in text
    # The chosen point's accuracy shown is the test accuracy when the point carries one.
    assert "(test acc 87.60%)" in text and "test accuracy %" in text


def test_rescore_margins_when_sample_count_known() -> None:
    net = _net("axtrain", AX_ACC, {"exact": 3.0, "K4": 2.0, "K2": 1.0})
    for p in net["points"]:
        p["n_samples"] = 1000
    out = rescore(net, 0.90, 2.0, "relative")  # floor 0.882: K4 (0.9305) chosen, K2 (0.881) one sample short
    assert out["chosen"]["compute"]["mode"] == "K4"
    assert out["margins_samples"]["compute"] == {"chosen": 48, "best_cheaper": -1, "hinges": True}
    assert "margins_samples" not in rescore(_net("bp", BP_ACC, {"exact": 3.0, "K4": 2.0, "K2": 1.0}), 0.95, 2.0, "pp")


def test_readings_block_rescores_an_older_report_and_refuses_nothing() -> None:
    d = study_dict(_result())
    old = {k: v for k, v in d.items() if k != "readings"}
    assert readings_block(json.loads(json.dumps(old))) == json.loads(json.dumps(d["readings"]))
    assert readings_block({"config": d["config"], "networks": {"bp": d["networks"]["bp"]}}) is None


def test_summary_fidelity_verdicts_and_summary_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from axhw.apps.cli import main

    # Data set a: compute -50 / -40 / -60%; b: -30 / -35 / -40% (K2 at 1.4 / 1.3 / 1.2 uW). Mean over data
    # sets -42.5%, the paper's -41.57% inside its interval; storage: 0% every seed, interval [0, 0]: outside.
    for name, k2 in (("a", (1.0, 1.2, 0.8)), ("b", (1.4, 1.3, 1.2))):
        (tmp_path / name).mkdir()
        d = study_dict(_result(k2_by_seed=k2))
        if name == "b":  # a report written before readings: re-scored from its stored grids
            del d["readings"]
        (tmp_path / name / "power.json").write_text(json.dumps(d))
    assert main(["power", "summary", "--reports", str(tmp_path)]) == 0
    assert "## Fidelity to the paper" in capsys.readouterr().out
    text = (tmp_path / "summary.md").read_text()
    fid = json.loads((tmp_path / "summary.json").read_text())
    assert fid["datasets"] == ["a", "b"] and fid["paper"] == {"compute": -41.57, "storage": -33.14}
    over = fid["readings"]["own-pp"]["single_network"]["over_datasets"]
    assert over["compute"]["mean"] == pytest.approx(-42.5) and over["compute"]["datasets"] == 2
    lo, hi = over["compute"]["ci95"]
    assert lo < -42.5 < hi and lo > -50.0 and hi < -35.0  # narrower than either data set's [min, max]
    assert over["compute"]["verdict"] == "inside"
    assert over["storage"]["ci95"] == [0.0, 0.0] and over["storage"]["verdict"] == "outside"
    assert over["joint"]["verdict"] is None
    per_a = fid["readings"]["own-pp"]["single_network"]["per_dataset"]["a"]
    assert per_a["compute"]["ci95"] == pytest.approx([-60.0, -40.0]) and per_a["seeds"] == 3
    per_b = fid["readings"]["own-pp"]["single_network"]["per_dataset"]["b"]
    assert per_b["compute"]["values"] == pytest.approx([-30.0, -35.0, -40.0])
    assert fid["readings"]["bp-relative"]["single_network"]["over_datasets"]["compute"]["verdict"] == "no interval"
    assert fid["readings"]["own-pp"]["per_target"]["per_dataset"]["a"] == {
        "not_searched": "no per-target search in this report (--single-network)"}
    assert "## Fidelity to the paper: readings of the bound" in text
    assert f"| own-pp | single network | {_pct_ci(over['compute'])} | inside | +0.0% [+0.0, +0.0] | outside |" in text
    assert "| a | own-pp | single network | -50.0% [-60.0, -40.0] (3/3) |" in text
    assert "per target" not in text.split("## Fidelity")[1].split("##")[0]  # never searched: no rows


def _pct_ci(c: dict[str, Any]) -> str:
    return f"{c['mean']:+.1f}% [{c['ci95'][0]:+.1f}, {c['ci95'][1]:+.1f}]"


def test_approxann_means_get_intervals() -> None:
    d = study_dict(_result(per_target=True, approxann_w=(1.0, 2.0, 0.5)))
    aa = d["approxann"]
    # Per-target AxTrain 0.5 uW against ApproxAnn-BP 1.0 / 2.0 / 0.5 uW: -50 / -75 / 0%.
    assert [r["per_target_vs_approxann_bp_percent"] for r in aa["per_seed"].values()] == [-50.0, -75.0, 0.0]
    assert aa["ci95"]["per_target_vs_approxann_bp_percent"] == [-75.0, 0.0]
    assert "vs ApproxAnn-BP -41.7% [-75.0, +0.0]" in markdown(d)
    curve = d["pareto"]["compute"]["approxann_bp"][0]
    assert curve["relative_percent_ci95"] == pytest.approx([50 / 3, 200 / 3])
