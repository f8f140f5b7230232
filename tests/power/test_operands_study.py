"""Operand capture, the feasibility choice, and the quick breast-cancer report end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from axhw.arith.registry import get_multiplier
from axhw.power.flow.tools import Toolchain
from axhw.power.multiplier.operands import capture_operands
from axhw.power.search.study import StudyConfig, choose


def _tiny_qnet():  # type: ignore[no-untyped-def]
    from axhw.arith.fixedpoint import FixedPoint
    from axhw.golden.network import IntLinear, IntReLU, QuantizedNetwork

    gen = torch.Generator().manual_seed(0)
    w1 = torch.randint(-128, 128, (5, 4), generator=gen)
    w2 = torch.randint(-128, 128, (3, 5), generator=gen)
    act, wf, acc = FixedPoint(8, 4), FixedPoint(8, 7), FixedPoint(32, 11)
    ops = [IntLinear(w1, torch.zeros(5, dtype=torch.int64), act, wf, acc, act), IntReLU(),
           IntLinear(w2, torch.zeros(3, dtype=torch.int64), act, wf, acc, None)]
    return QuantizedNetwork(ops)


def test_capture_replays_whole_dot_products_in_order() -> None:
    qnet = _tiny_qnet()
    x = torch.randint(-128, 128, (6, 4), generator=torch.Generator().manual_seed(1))
    s = capture_operands(qnet, x, get_multiplier("exact", 8), n_pairs=40, seed=0)
    assert len(s) == 40
    w_rows = {tuple(r) for layer in qnet.layers for r in layer.weight.tolist()}
    # The stream starts with a whole weight row of one layer, in input order.
    assert any(tuple(s.b[: len(r)].tolist()) == r for r in w_rows)
    assert int(s.a.min()) >= -128 and int(s.a.max()) <= 127
    again = capture_operands(qnet, x, get_multiplier("exact", 8), n_pairs=40, seed=0)
    assert torch.equal(s.a, again.a) and torch.equal(s.b, again.b)


def test_choose_reports_infeasible_as_none() -> None:
    pts = [{"accuracy": 0.5, "p": 1.0}]
    assert choose(pts, "p", 0.9) is None
    assert choose([*pts, {"accuracy": 0.95, "p": 4.0}], "p", 0.9)["p"] == 4.0


def test_quick_config_is_reduced() -> None:
    q = StudyConfig.quick()
    assert q.runs == 5 and q.bits == 8 and len(q.modes) < 5 and q.epochs < StudyConfig().epochs
    with pytest.raises(ValueError, match="nominal"):
        from axhw.power.search.study import run_study

        run_study(q.copy(voltages=(660.0,)), progress=False)


def test_quick_breast_cancer_report(toolchain: Toolchain, tmp_path: Path) -> None:
    from axhw.power.search.aggregate import study_dict
    from axhw.power.search.report import write_report
    from axhw.power.search.study import run_study

    # The single-network study (the per-target search end to end: tests/power/test_per_target.py, slow).
    cfg = StudyConfig.quick(work_dir=tmp_path / "work", n_pairs=256, search="single", approxann_modes=())
    d = study_dict(run_study(cfg, progress=False))
    assert "per_target" not in d and d["approxann"] == {"skipped": "approxann_modes is empty"}
    paths = write_report(d, tmp_path / "out")
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    for net in d["networks"].values():
        assert all(c["mismatches"] == 0 for c in net["compute"].values())
        assert net["compute"]["K2"]["measured"]["total_w"] < net["compute"]["exact"]["measured"]["total_w"]
        assert set(net["chosen"]) == {"floor", "compute", "storage", "joint"}
        # chosen on the validation split (a seeded 20% of the training samples), test accuracy carried beside
        assert net["chosen"]["floor"] == net["exact_nominal_accuracy"] - cfg.constraint_pp / 100.0
        assert all(len(p["accuracies"]) == cfg.runs and len(p["test_accuracies"]) == cfg.runs for p in net["points"])
        assert any(p["accuracy"] != p["test_accuracy"] for p in net["points"])  # two different sample sets
        for part, key in (("compute", "compute_w"), ("storage", "storage_w")):
            pool = [p for p in net["points"] if (p["voltage_mv"] == 1100.0 if part == "compute" else p["mode"] == "exact")]
            assert net["chosen"][part] == choose(pool, key, net["chosen"]["floor"])
    assert cfg.selection_split == "val" and d["config"]["val_fraction"] == 0.2
    # Operand streams of different networks give different power.
    bp, ax = d["networks"]["bp"]["compute"]["exact"], d["networks"]["axtrain"]["compute"]["exact"]
    assert bp["measured"]["total_w"] != ax["measured"]["total_w"]
    assert "axtrain_vs_bp_percent" in d and "Chosen configurations" in (tmp_path / "out" / "power.md").read_text()


def test_summary_table_over_reports_and_means_skip_infeasible(tmp_path: Path) -> None:
    import json

    from axhw.power.search.report import write_summary

    def point(mode: str, v: float) -> dict:
        return {"mode": mode, "voltage_mv": v, "accuracy": 0.9}

    def report(red: dict, ax_storage: dict | None) -> dict:
        chosen = {"compute": point("K3", 1100.0), "storage": point("exact", 850.0), "joint": point("K3", 850.0)}
        return {"config": {"runs": 50},
                "networks": {"bp": {"exact_nominal_accuracy": 0.95, "chosen": chosen},
                             "axtrain": {"exact_nominal_accuracy": 0.94,
                                         "chosen": {**chosen, "storage": ax_storage}}},
                "axtrain_vs_bp_percent": red}

    for name, rep in {"a": report({"compute": -10.0, "storage": -20.0, "joint": -5.0}, point("exact", 660.0)),
                      "b": report({"compute": -30.0, "storage": None, "joint": None}, None)}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "power.json").write_text(json.dumps(rep))
    text = write_summary(tmp_path).read_text()
    assert "| a | 50 | 95.00% / 94.00% | K3 -> K3 | -10.0% | 850 -> 660 | -20.0% | -5.0% |" in text
    assert "| b |" in text and "850 -> none | n/a" in text
    assert "compute -20.0% (paper -41.6%), storage -20.0% (paper -33.1%), joint -5.0%" in text
    with pytest.raises(ValueError, match="axhw power report"):
        write_summary(tmp_path / "a")


@pytest.mark.parametrize("options", [{"groups": 2}, {"dilation": 2}, {"padding_mode": "reflect"}])
def test_operand_sampling_refuses_conv_options_it_does_not_model(options):
    """Grouped, dilated or non-zero-padded convolutions would be sampled wrong: a clear error instead."""
    from axhw.arith.fixedpoint import FixedPoint
    from axhw.golden.network import IntConv2d
    from axhw.power.multiplier.operands import _dot_products

    f = FixedPoint(8, 4)
    layer = IntConv2d(weight=torch.zeros(4, 2 if options.get("groups") else 4, 3, 3, dtype=torch.int64),
                      bias=torch.zeros(4, dtype=torch.int64), act_fmt=f, weight_fmt=f, acc_fmt=FixedPoint(32, 8),
                      out_fmt=f, padding=1, **options)
    with pytest.raises(ValueError, match="plain convolutions only"):
        _dot_products(layer, torch.zeros(1, 4, 6, 6, dtype=torch.int64))
