"""``axhw power report --network CKPT ...``: the minimum-power search on checkpoints the user trained (docs/power.md,
"CLI": power report works on a ``--model`` checkpoint unchanged)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from axhw.apps.cli import main
from axhw.power.flow.tools import Toolchain

TESTS = str(Path(__file__).parents[1] / "training")  # user_models.py
USER = ["--model", "user_models:tiny_resnet", "--model-arg", "channels=4", "--data", "user_models:separable"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """BP and act networks of the tiny residual CNN of tests/training/user_models.py, trained by the CLI."""
    threads = torch.get_num_threads()
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(TESTS)
        for method in ("bp", "act"):
            d = tmp_path_factory.mktemp(method)
            assert main(["train", *USER, "--method", method, "--epochs", "2", "--lr", "0.01", "--batch-size", "16",
                         "--seed", "1", "--out", str(d), "--quiet", "--threads", "1"]) == 0
            out[method] = d / "checkpoint.pt"
        yield out
    torch.set_num_threads(threads)


def _report(cks: list[Path], tmp_path: Path, *extra: str) -> list[str]:
    return ["power", "report", "--network", *map(str, cks), "--quick", "--runs", "1", "--pairs", "128",
            "--modes", "exact", "K2", "--out", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"),
            "--quiet", *extra]


def test_report_on_user_checkpoints(toolchain: Toolchain, checkpoints: dict[str, Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(TESTS)  # the checkpoints rebuild their model from its factory
        assert main(_report([checkpoints["bp"], checkpoints["act"]], tmp_path, "--reference", "bp")) == 0
        d = json.loads((tmp_path / "out" / "power.json").read_text())
        assert d["source"] == "networks" and set(d["networks"]) == {"bp", "act"}
        from axhw.training.trainer import load_checkpoint

        assert d["config"]["dataset"] == load_checkpoint(checkpoints["bp"])["config"]["dataset"]
        bp, act = d["networks"]["bp"], d["networks"]["act"]
        assert act["model"] == "user_models:tiny_resnet"
        for net in (bp, act):
            assert {p["mode"] for p in net["points"]} == {"exact", "K2"}
            assert all(c["mismatches"] == 0 for c in net["compute"].values())
            assert net["compute"]["K2"]["measured"]["total_w"] < net["compute"]["exact"]["measured"]["total_w"]
            assert net["reference_accuracy"] == bp["exact_nominal_accuracy"]  # --reference bp
            assert set(net["chosen"]) == {"floor", "compute", "storage", "joint"}
        assert set(d["vs_bp_percent"]) == {"act"}
        text = (tmp_path / "out" / "power.md").read_text()
        assert "| act |" in text and "Power change against the BP network" in text
        assert d["cost"]["this_run"]["gate_level_simulations"] == 4
        # a re-run measures nothing again (cached by checkpoint digest)
        assert main(_report([checkpoints["bp"], checkpoints["act"]], tmp_path, "--reference", "bp")) == 0
        again = json.loads((tmp_path / "out" / "power.json").read_text())
        assert again["cost"]["this_run"]["gate_level_simulations"] == 0
        assert again["cost"]["this_run"]["evaluations_run"] == 0
        assert again["networks"] == d["networks"]
    capsys.readouterr()


@pytest.mark.parametrize(("extra", "message"), [
    ([], "give --dataset"),
    (["--dataset", "breast_cancer"], "not both"),
    (["--epochs", "3"], "--epochs train networks"),
    (["--reference", "bp", "--only-act"], "--reference bp needs exactly one checkpoint trained with --method bp"),
    (["--missing"], "does not exist"),
])
def test_bad_network_reports_are_one_line(checkpoints: dict[str, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    cks: list[Path] = [checkpoints["bp"], checkpoints["act"]]
    if "--only-act" in extra:
        extra, cks = [e for e in extra if e != "--only-act"], [checkpoints["act"]]
    if "--missing" in extra:
        extra, cks = [], [tmp_path / "nope.pt"]
    argv = ["power", "report", *(["--network", *map(str, cks)] if message != "give --dataset" else []),
            "--out", str(tmp_path / "o"), "--quiet", *extra]
    if message == "give --dataset":
        argv = ["power", "report", "--out", str(tmp_path / "o"), "--quiet"]
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(TESTS)
        assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "o" / "power.json").exists()


def test_report_with_the_logic_supply_searched(toolchain: Toolchain, checkpoints: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """sky130 at 1.8 V with the logic supply free over 1.8 and 1.2 V (issue 29, item 5), at a 50 MHz multiply
    rate: every mode's netlist is timed and measured in both libraries; the lower supply is slower (all 8-bit
    multipliers still meet 20 ns: 10.0-15.3 ns measured) and cheaper, so the search takes it, beside the SRAM-only
    choice."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(TESTS)
        assert main(_report([checkpoints["bp"], checkpoints["act"]], tmp_path, "--pdk", "sky130", "--clock-mhz", "50",
                            "--logic-supply-mv", "1800", "1200")) == 0
    d = json.loads((tmp_path / "out" / "power.json").read_text())
    assert d["library"] == "sky130 1.80 V" and d["node_scale_compute"] == 1.0 and d["config"]["clock_mhz"] == 50
    for net in d["networks"].values():
        ls = net["logic_supply"]
        assert ls["library_mv"] == 1800.0
        for mode in ("exact", "K2"):
            hi, lo = ls["supplies"][mode]["1800"], ls["supplies"][mode]["1200"]
            assert 2 * hi["critical_path_ns"] < lo["critical_path_ns"] < 20.0  # ~3.5-3.9x slower at 1.2 V
            assert hi["meets_clock"] and lo["meets_clock"]
            assert hi["compute_w"] == pytest.approx(net["compute"][mode]["measured"]["total_w"])  # same measurement
            assert lo["compute_w"] < 0.6 * hi["compute_w"]  # ~(1.2/1.8)^2 = 0.44 of the switching energy
            assert ls["best_supply_mv"][mode] == 1200.0
        for part in ("compute", "joint"):
            a, b = net["chosen"][part], ls["chosen"][part]
            assert b["accuracy"] >= ls["floor"] - 1e-12 and b["logic_mv"] == 1200.0
            assert b[f"{part}_w"] < a[f"{part}_w"]
    text = (tmp_path / "out" / "power.md").read_text()
    assert "## Logic supply as a knob (sky130 1.80 V; 50 MHz" in text
    assert "joint uW (sky130 1.80 V logic unscaled + 65 nm SRAM)" in text
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(TESTS)
        assert main(_report([checkpoints["bp"]], tmp_path, "--logic-supply-mv", "1200")) == 2  # osu018: 1.8 V only
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--logic-supply-mv 1200: osu018 has libraries at 1800 mV" in err[0]
        assert main(_report([checkpoints["bp"]], tmp_path, "--clock-mhz", "0")) == 2
        assert "give a positive multiply rate" in capsys.readouterr().err
