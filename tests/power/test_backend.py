"""The study's seeds on workers (axhw.power.search.backend): the Ray backend gives the in-process run's
power.json but for the cost fields; the shared dispatcher (axhw.training.sweep.run_parallel); the ledger merge;
the command line's one-line errors."""

from __future__ import annotations

import json
import operator
import os
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from axhw.power.search.backend import merge_ledger
from axhw.power.search.targets import Ledger
from axhw.training.sweep import run_parallel


def _ray() -> Any:
    """Ray, or a skip; CI installs the ``ray`` extra and sets ``AXHW_REQUIRE_RAY=1``: there it must run."""
    try:
        import ray
    except ImportError:
        if os.environ.get("AXHW_REQUIRE_RAY", "") not in ("", "0"):
            pytest.fail("Ray is not installed but AXHW_REQUIRE_RAY is set (pip install 'axhw[ray]')")
        pytest.skip("Ray is an optional extra (pip install 'axhw[ray]')")
    return ray


def test_run_parallel_indexes_results_by_job_in_process_and_in_a_pool() -> None:
    jobs = [(2, 3), (3, 2), (5, 1)]
    assert dict(run_parallel(operator.pow, jobs, "local", workers=1)) == {0: 8, 1: 9, 2: 5}
    assert dict(run_parallel(operator.pow, jobs, "local", workers=2)) == {0: 8, 1: 9, 2: 5}  # spawned processes
    assert list(run_parallel(operator.pow, [], "ray")) == []  # nothing to do starts no Ray
    with pytest.raises(ValueError, match="unknown backend 'slurm': valid backends are 'local', 'ray'"):
        list(run_parallel(operator.pow, jobs, "slurm"))  # type: ignore[arg-type]


def test_merge_ledger_adds_counts_and_keeps_seed_order() -> None:
    driver = Ledger(trained=["bc/s0/bp"], epochs_trained=4, simulations=1)
    merge_ledger(driver, Ledger(trained=["bc/s1/bp", "bc/s1/act"], reused=["bc/s1/x"], epochs_trained=7,
                                simulations=3, evaluations=5, started=0.0))
    merge_ledger(driver, Ledger(trained=["bc/s2/bp"], epochs_trained=1, evaluations=2, started=0.0))
    assert (driver.trained, driver.reused) == (["bc/s0/bp", "bc/s1/bp", "bc/s1/act", "bc/s2/bp"], ["bc/s1/x"])
    assert (driver.epochs_trained, driver.simulations, driver.evaluations) == (12, 4, 7)
    assert driver.started > 0.0  # the driver's clock: wall_s is the whole study's


def test_report_cli_refuses_backend_options_that_do_not_fit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from axhw.apps.cli import main

    base = ["power", "report", "--out", str(tmp_path / "o"), "--quiet"]
    for extra, message in (
            (["--dataset", "breast_cancer", "--address", "auto"], "--address names a Ray cluster: add --backend ray"),
            (["--dataset", "breast_cancer", "--workers", "0"], "--workers 0: give 1 or more"),
            (["--network", str(tmp_path / "ck.pt"), "--backend", "ray"],
             "--backend and --workers spread a study's seeds: they go with --dataset")):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"axhw power report: error: {message}", err


def _comparable(d: dict[str, Any], work_dir: Path) -> str:
    """power.json without its cost (wall time, invocation counts), the work folder's path made neutral."""
    return json.dumps({k: v for k, v in d.items() if k != "cost"}, sort_keys=True).replace(str(work_dir), "WORK")


@pytest.mark.slow
def test_ray_backend_study_equals_the_in_process_run(toolchain: object, tmp_path: Path) -> None:
    """Two seeds of the reduced study, in this process, as Ray tasks on a local instance (2 CPUs) and in two
    local processes, each in its own work folder (so each trains and measures everything): the same
    power.json except the cost, and the same ledger in seed order."""
    from axhw.power.search.aggregate import study_dict
    from axhw.power.search.study import StudyConfig, run_study

    ray = _ray()
    cfg = StudyConfig.quick(seeds=(0, 1), n_pairs=256, work_dir=tmp_path / "local")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the workers (and `axhw power report`) run float math
    try:
        t0 = time.monotonic()
        local = study_dict(run_study(cfg, progress=False))
        t_local = time.monotonic() - t0
    finally:
        torch.set_num_threads(threads)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        t0 = time.monotonic()
        distributed = study_dict(run_study(cfg.copy(work_dir=tmp_path / "ray"), progress=False, backend="ray"))
        t_ray = time.monotonic() - t0
    finally:
        if started:
            ray.shutdown()
    t0 = time.monotonic()
    pooled = study_dict(run_study(cfg.copy(work_dir=tmp_path / "pool"), progress=False, workers=2))
    t_pool = time.monotonic() - t0
    print(f"quick study, seeds 0 1: in process {t_local:.1f} s, ray (2 CPUs) {t_ray:.1f} s, "
          f"2 local processes {t_pool:.1f} s")
    assert _comparable(distributed, tmp_path / "ray") == _comparable(local, tmp_path / "local")
    assert _comparable(pooled, tmp_path / "pool") == _comparable(local, tmp_path / "local")
    assert sorted(local["per_seed_networks"]) == ["0", "1"]
    ran, ran_ray = local["cost"]["this_run"], distributed["cost"]["this_run"]
    assert {k: v for k, v in ran_ray.items() if k != "wall_s"} == {k: v for k, v in ran.items() if k != "wall_s"}
    assert ran["trainings_run"] > 0 and ran["trained"][0].startswith("breast_cancer/s0/")
    assert ran["trained"][-1].startswith("breast_cancer/s1/")
