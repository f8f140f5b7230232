"""Sweeps are cached, resumable and backend-independent; the figures run end to end in quick mode."""

import json
import os

import pytest

from axhw.apps.figures import ReproduceConfig, reproduce
from axhw.training.sweep import (
    EvalTask,
    Experiment,
    TrainTask,
    experiment_from_dict,
    load_experiment,
    run_tasks,
)
from axhw.training.trainer import TrainConfig, train


def small_experiment(**kw):
    base = {"datasets": ["breast_cancer"], "methods": ["bp", "axtrain"],
            "targets": [{"multiplier": "K2"}, {"voltage_mv": 660}], "seeds": [0],
            "train": {"epochs": 2, "pas_epochs": 1}, "runs": 2}
    return experiment_from_dict({**base, **kw})


def test_sweep_rerun_does_no_work_and_workers_do_not_change_results(tmp_path, monkeypatch):
    exp = small_experiment()
    first = run_tasks(exp.tasks(), tmp_path / "a", workers=1, progress=False)
    pooled = run_tasks(exp.tasks(), tmp_path / "b", workers=2, progress=False)
    assert first == pooled  # single-threaded workers: identical numbers whatever the pool
    import axhw.training.sweep as sweep

    def no_work(todo, *a, **k):
        assert not todo, f"re-run did work: {todo}"
        yield from ()

    monkeypatch.setattr(sweep, "_dispatch", no_work)
    assert run_tasks(exp.tasks(), tmp_path / "a", progress=False) == first


def test_killed_sweep_resumes_to_the_same_result(tmp_path):
    exp = small_experiment(methods=["bp"], targets=[{}])
    full = run_tasks(exp.tasks(), tmp_path / "full", workers=1, progress=False)
    task = exp.train_task("breast_cancer", "bp", 0)
    # A sweep killed after the first of two epochs leaves a checkpoint and no metrics.json.
    partial = TrainConfig(**{**task.config.__dict__, "epochs": 1})
    train(partial, tmp_path / "killed" / "runs" / task.key, progress=False)
    (tmp_path / "killed" / "runs" / task.key / "metrics.json").unlink()
    resumed = run_tasks(exp.tasks(), tmp_path / "killed", workers=1, progress=False)
    assert resumed == full


def test_ray_backend_matches_local(tmp_path):
    """The distributed path users take to a cluster, on a local Ray instance. CI installs the ``ray`` extra
    and sets ``AXHW_REQUIRE_RAY=1``, so there a missing Ray fails instead of skipping."""
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("AXHW_REQUIRE_RAY", "") not in ("", "0"):
            pytest.fail("Ray is not installed but AXHW_REQUIRE_RAY is set (pip install 'axhw[ray]')")
        pytest.skip("Ray is an optional extra (pip install 'axhw[ray]')")
    exp = small_experiment(methods=["bp"], targets=[{}, {"voltage_mv": 660}])
    local = run_tasks(exp.tasks(), tmp_path / "local", workers=1, progress=False)
    ray_res = run_tasks(exp.tasks(), tmp_path / "ray", backend="ray", progress=False)
    assert ray_res == local


def test_experiment_file_errors_name_the_key(tmp_path):
    bad = tmp_path / "exp.json"
    bad.write_text(json.dumps({"datasets": ["breast_cancer"], "epochz": 3}))
    with pytest.raises(ValueError, match="unknown key 'epochz': valid keys are"):
        load_experiment(bad)
    with pytest.raises(ValueError, match="unknown train key 'epoch'"):
        experiment_from_dict({"datasets": ["breast_cancer"], "train": {"epoch": 3}})
    with pytest.raises(ValueError, match="unknown target key 'volt'"):
        experiment_from_dict({"datasets": ["breast_cancer"], "targets": [{"volt": 660}]})
    with pytest.raises(ValueError, match="valid datasets"):
        Experiment(datasets=("cifar",))
    toml = tmp_path / "exp.toml"
    toml.write_text('datasets = ["ionosphere"]\nseeds = [0, 1]\n[train]\nepochs = 2\npas_epochs = 1\n')
    exp = load_experiment(toml)
    assert exp.seeds == (0, 1) and exp.train == {"epochs": 2, "pas_epochs": 1}
    assert isinstance(exp.tasks()[0], EvalTask) and isinstance(exp.tasks()[0].train, TrainTask)


def test_reproduce_quick_writes_data_plots_and_summary(tmp_path):
    out = tmp_path / "figs"
    reproduce(["all"], out, ReproduceConfig(datasets=("breast_cancer",), quick=True, workers=2, progress=False))
    for name in ("fig4", "fig6", "fig7", "fig8"):
        assert (out / f"{name}.png").stat().st_size > 1000
        assert (out / f"{name}.json").exists()
    rows = json.loads((out / "fig6.json").read_text())
    assert {r["mode"] for r in rows} == {"K1", "K2", "K3", "K4"} and {r["method"] for r in rows} == {"bp", "act", "axtrain"}
    assert all(r["common_norm_loss_mean"] > 0 for r in rows)  # Fig. 6 with one normaliser per application too
    bp = [r for r in rows if r["method"] == "bp"]
    assert all(abs(r["common_norm_loss_mean"] - r["norm_loss_mean"]) < 1e-12 for r in bp)  # BP: both are BP at exact
    summary = (out / "summary.md").read_text()
    assert "paper" in summary and "75.6" in summary and "32.1" in summary and "Common normaliser" in summary
    with pytest.raises(ValueError, match="valid figures"):
        reproduce(["fig5"], out, ReproduceConfig(quick=True))


def test_accuracy_matrix_cli(tmp_path, capsys):
    from axhw.apps.cli import main

    assert main(["accuracy", "--dataset", "breast_cancer", "--epochs", "2", "--pas-epochs", "1", "--runs", "2",
                 "--workers", "1", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| axtrain" in out and "NTV agg 400mV" in out
    data = json.loads((tmp_path / "accuracy.json").read_text())
    assert set(data["accuracy"]) == {"bp", "act", "pas", "axtrain"}
    assert main(["reproduce", "fig9", "--quick", "--out", str(tmp_path / "r")]) == 2
    assert "valid figures" in capsys.readouterr().err


def test_sweep_cli_runs_an_experiment_file(tmp_path, capsys):
    from axhw.apps.cli import main

    exp = tmp_path / "exp.toml"
    exp.write_text('datasets = ["breast_cancer"]\nmethods = ["bp"]\nruns = 2\n'
                   '[[targets]]\nmultiplier = "K3"\n[[targets]]\nvoltage_mv = 850\n[train]\nepochs = 1\n')
    assert main(["sweep", str(exp), "--workers", "1", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    rows = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [(r["multiplier"], r["voltage_mv"]) for r in rows] == [("K3", 1100.0), ("exact", 850.0)]
    assert (tmp_path / "o" / "results.csv").read_text().startswith("dataset,seed,method")
    bad = tmp_path / "bad.toml"
    bad.write_text('datasets = ["breast_cancer"]\nmethod = ["bp"]\n')
    assert main(["sweep", str(bad), "--out", str(tmp_path / "b")]) == 2
    assert "unknown key 'method'" in capsys.readouterr().err


def test_code_version_hashes_sources_unless_pinned(monkeypatch):
    from axhw.training import sweep
    sweep.code_version.cache_clear()
    natural = sweep.code_version()
    assert len(natural) == 16
    monkeypatch.setenv("AXHW_CODE_VERSION", "pinned")
    sweep.code_version.cache_clear()
    assert sweep.code_version() == "pinned"
    monkeypatch.delenv("AXHW_CODE_VERSION")
    sweep.code_version.cache_clear()
    assert sweep.code_version() == natural
