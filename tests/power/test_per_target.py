"""Per-target AxTrain in the minimum-power search (docs/power.md, "Minimum-power search"): the shared act
phase equals training from scratch, the search visits candidates cheapest first and stops at the first
feasible one, a cached re-run trains nothing, an infeasible bound is a result; ApproxAnn's mixed power."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from axhw.power.search.approxann import mixed_power
from axhw.power.search.grid import Candidate, candidates, first_feasible
from axhw.power.search.targets import Ledger, TargetNetworks
from axhw.training.trainer import TrainConfig, load_checkpoint, train

BASE = TrainConfig(dataset="breast_cancer", method="axtrain", epochs=5, pas_epochs=2, limit=120)


@pytest.mark.parametrize("converge_tol", [0.01, 0.9])  # act to its budget / act stopping early on convergence
def test_shared_act_phase_equals_axtrain_trained_from_scratch(tmp_path: Path, converge_tol: float) -> None:
    base = TrainConfig(**{**BASE.__dict__, "converge_tol": converge_tol})
    nets = TargetNetworks(base, tmp_path / "nets", Ledger())
    for mode, mv in (("K2", 1100.0), ("exact", 660.0)):
        shared = load_checkpoint(nets.checkpoint(mode, mv))
        train(nets.target_config(mode, mv), tmp_path / f"scratch-{mode}-{mv:g}", progress=False)
        scratch = load_checkpoint(tmp_path / f"scratch-{mode}-{mv:g}" / "checkpoint.pt")
        assert shared["config"] == scratch["config"] and shared["history"] == scratch["history"]
        assert all(torch.equal(shared["model"][k], scratch["model"][k]) for k in scratch["model"])
        assert shared["act_fmts"] == scratch["act_fmts"]
        assert "pas" in [h["phase"] for h in shared["history"]]
    assert nets.ledger.trained[0].endswith("/act") and len(nets.ledger.trained) == 3  # act once, then two pas phases
    act_epochs = load_checkpoint(nets.act())["epoch"]
    budget = base.epochs - base.pas_epochs
    assert act_epochs == budget if converge_tol == 0.01 else act_epochs < budget


def test_candidates_are_ordered_by_power_per_part() -> None:
    comp = {"exact": 5.0, "K4": 4.0, "K2": 2.0}
    stor = {1100.0: 3.0, 660.0: 1.0}
    assert [c.mode for c in candidates("compute", ["exact", "K4", "K2"], [1100.0, 660.0], comp, stor, 0.5)] == \
        ["K2", "K4", "exact"]
    assert [c.voltage_mv for c in candidates("storage", ["exact", "K4", "K2"], [1100.0, 660.0], comp, stor, 0.5)] == \
        [660.0, 1100.0]
    joint = candidates("joint", ["exact", "K4", "K2"], [1100.0, 660.0], comp, stor, 0.5)
    assert [c.order_w for c in joint] == sorted(c.order_w for c in joint) and len(joint) == 6
    with pytest.raises(ValueError, match="valid parts"):
        candidates("area", ["exact"], [1100.0], comp, stor, 0.5)  # type: ignore[arg-type]


def test_search_trains_cheapest_first_stops_at_first_feasible_and_reruns_from_cache(tmp_path: Path) -> None:
    """Real per-target networks (reduced breast cancer); the visiting order uses stated powers."""
    from axhw.training.evaluate import evaluate

    ledger = Ledger()
    nets = TargetNetworks(BASE, tmp_path / "nets", ledger)
    comp = {"exact": 3.0, "K4": 2.0, "K1": 1.0}
    cands = candidates("compute", ["exact", "K4", "K1"], [1100.0], comp, {1100.0: 1.0}, 0.1)
    calls: list[str] = []

    def accuracy(c: Candidate) -> tuple[float, float]:
        calls.append(c.mode)
        r = evaluate(nets.checkpoint(c.mode, c.voltage_mv), c.mode, c.voltage_mv, runs=1)
        return r.accuracy_mean, r.accuracy_std

    k4 = evaluate(nets.checkpoint("K4", 1100.0), "K4", 1100.0, runs=1).accuracy_mean
    k1 = evaluate(nets.checkpoint("K1", 1100.0), "K1", 1100.0, runs=1).accuracy_mean
    if k1 >= k4:  # make K1 infeasible and K4 the first feasible candidate, whatever the accuracies are
        pytest.skip(f"reduced K1 network as accurate as K4 ({k1} vs {k4}): no floor separates them")
    floor = k4
    out = first_feasible(cands, accuracy, floor, "compute", 1.0)
    assert calls == ["K1", "K4"] and out.chosen is not None and out.chosen.mode == "K4"
    assert [v["feasible"] for v in out.visited] == [False, True]
    assert [v["order_w"] for v in out.visited] == sorted(v["order_w"] for v in out.visited)
    trained = len(ledger.trained)
    assert trained == 3 and not any("exact" in t for t in ledger.trained)  # the dearer candidate never trained

    again = Ledger()
    nets2 = TargetNetworks(BASE, tmp_path / "nets", again)
    out2 = first_feasible(cands, lambda c: (evaluate(nets2.checkpoint(c.mode, c.voltage_mv), c.mode,
                                                      c.voltage_mv, runs=1).accuracy_mean, 0.0), floor)
    assert out2.chosen == out.chosen and again.trained == [] and again.epochs_trained == 0

    none = first_feasible(cands, accuracy, 1.01, "compute", 0.0)  # no network reaches 101%
    assert none.chosen is None and len(none.visited) == 3 and none.as_dict()["chosen"] is None


def test_mixed_power_weights_modes_by_their_share() -> None:
    assert mixed_power(0.0, 1.0, 3.0) == 3.0 and mixed_power(1.0, 1.0, 3.0) == 1.0
    with pytest.raises(ValueError, match="fraction"):
        mixed_power(1.5, 1.0, 3.0)


@pytest.mark.slow
def test_quick_per_target_study_end_to_end_and_cached_rerun(toolchain: object, tmp_path: Path) -> None:
    """The whole reduced study twice: power.json's new keys, reports, and a re-run that trains nothing."""
    from axhw.power.search.aggregate import study_dict
    from axhw.power.search.report import markdown, write_report, write_summary
    from axhw.power.search.study import StudyConfig, run_study

    cfg = StudyConfig.quick(work_dir=tmp_path / "work", n_pairs=256, bounds=(0.0, 2.0, 6.0))
    d = study_dict(run_study(cfg, progress=False))
    for key in ("networks", "axtrain_vs_bp_percent", "per_target", "single_network", "approxann", "pareto"):
        assert key in d
    search = d["per_target"]["search"]["0"]["bounds"]["2.0"]
    for part in ("compute", "storage", "joint"):
        vis = search[part]["visited"]
        assert [v["order_w"] for v in vis] == sorted(v["order_w"] for v in vis)
        assert all(not v["feasible"] for v in vis[:-1]) and vis[-1]["feasible"] == (search[part]["point"] is not None)
    assert len(d["pareto"]["compute"]["per_target"]) == 3
    # every reading of the bound searched per target, each floor from its own reference and rule
    seed0 = d["per_target"]["search"]["0"]
    own, bp = seed0["accurate_implementation_accuracy"], d["per_seed_networks"]["0"]["bp"]["exact_nominal_accuracy"]
    rd = seed0["readings"]
    assert sorted(rd) == ["bp-pp", "bp-relative", "own-pp", "own-relative"]
    assert rd["own-pp"]["floor"] == pytest.approx(own - 0.02) and rd["own-relative"]["floor"] == pytest.approx(own * 0.98)
    assert rd["bp-pp"]["floor"] == pytest.approx(bp - 0.02) and rd["bp-relative"]["floor"] == pytest.approx(bp * 0.98)
    assert rd["own-pp"]["compute"]["point"] == search["compute"]["point"]  # the study's own reading: the same search
    for name, row in rd.items():
        pt = row["storage"]["point"]
        assert pt is None or (pt["accuracy"] >= row["floor"] - 1e-12 and pt["test_accuracy"] is not None), name
    assert d["readings"]["by_reading"]["bp-relative"]["per_target"]["searched_parts"] == ["compute", "storage"]
    assert d["cost"]["this_run"]["trainings_run"] > 0
    paths = write_report(d, tmp_path / "out")
    assert (tmp_path / "out" / "pareto.png") in paths and "Per-target search" in markdown(d)
    assert "Pareto" in write_summary(tmp_path / "out" / "..").read_text()
    again = study_dict(run_study(cfg, progress=False))
    assert again["cost"]["this_run"]["trainings_run"] == 0 and again["cost"]["this_run"]["gate_level_simulations"] == 0
    assert again["per_target"]["mean_vs_bp_percent"] == d["per_target"]["mean_vs_bp_percent"]
    assert again["cost"]["cumulative"]["invocations"] == 2


def test_report_cli_refuses_negative_bounds_in_one_line(toolchain: object, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from axhw.apps.cli import main

    assert main(["power", "report", "--dataset", "breast_cancer", "--quick", "--bounds", "-1", "--work-dir",
                 str(tmp_path / "w"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bounds must be >= 0" in err


def test_logic_supply_search_reprices_the_grid_at_the_same_floor() -> None:
    """Synthetic grid: a supply that misses the clock is never chosen, a mode with no supply left drops out,
    and the accuracy floor is the SRAM-only search's."""
    from axhw.power.search.logic_voltage import logic_supply_search, markdown_section

    def pt(mode: str, v: float, acc: float, c: float, s: float) -> dict[str, object]:
        return {"mode": mode, "voltage_mv": v, "accuracy": acc, "compute_w": c, "storage_w": s, "joint_w": c + s}

    net = {"points": [pt("exact", 1100, 0.95, 10.0, 5.0), pt("exact", 660, 0.94, 10.0, 2.0),
                      pt("K2", 1100, 0.93, 6.0, 5.0), pt("K1", 1100, 0.80, 3.0, 5.0)],
           "chosen": {"compute": pt("K2", 1100, 0.93, 6.0, 5.0), "joint": pt("exact", 660, 0.94, 10.0, 2.0)}}
    grid = {"exact": {"1800": {"compute_w": 10.0, "meets_clock": True, "critical_path_ns": 3, "energy_pj": 1},
                      "1200": {"compute_w": 4.0, "meets_clock": True, "critical_path_ns": 8, "energy_pj": 0.4}},
            "K2": {"1800": {"compute_w": 6.0, "meets_clock": True, "critical_path_ns": 4, "energy_pj": 0.6},
                   "1200": {"compute_w": None, "meets_clock": False, "critical_path_ns": 11, "energy_pj": None}},
            "K1": {"1800": {"compute_w": None, "meets_clock": False, "critical_path_ns": 12, "energy_pj": None}}}
    out = logic_supply_search(net, grid, floor=0.92, node_scale=1.0)
    assert out["best_supply_mv"] == {"exact": 1200.0, "K2": 1800.0}  # K1 meets the clock nowhere
    # exact at 1.2 V (4 W) now beats K2, which cannot go below 1.8 V (6 W)
    assert (out["chosen"]["compute"]["mode"], out["chosen"]["compute"]["compute_w"]) == ("exact", 4.0)
    assert (out["chosen"]["joint"]["voltage_mv"], out["chosen"]["joint"]["joint_w"]) == (660, 6.0)
    assert out["chosen"]["joint"]["logic_mv"] == 1200.0
    assert logic_supply_search(net, grid, floor=0.99, node_scale=1.0)["chosen"]["compute"] is None
    d = {"config": {"logic_supplies_mv": [1800, 1200], "clock_mhz": 100.0, "constraint_pp": 2.0},
         "library": "sky130 1.80 V", "networks": {"bp": {**net, "logic_supply": {**out, "library_mv": 1800.0}}}}
    text = "\n".join(markdown_section(d))
    row = next(line for line in text.splitlines() if "| compute" in line)
    assert "K2 @ SRAM 1100 mV, logic 1800 mV" in row and "exact @ SRAM 1100 mV, logic 1200 mV" in row
    assert "-33.3%" in row  # compute: 6 W -> 4 W
    assert markdown_section({"config": {}, "networks": {"bp": net}}) == []
