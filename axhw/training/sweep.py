"""Declarative experiment sweeps: datasets x methods x hardware targets x seeds, cached and resumable.

Every task (a training run, or an evaluation of a trained network) is keyed by a SHA-256 of its full
configuration *and* of the axhw source code, so re-running a finished sweep does no work, changing the code
or a setting invalidates exactly what it affects, and an interrupted sweep (killed mid-training) finishes the
rest: training resumes from its last epoch checkpoint.

Backends: ``local`` (a process pool sized to the machine; each worker runs torch single-threaded, so results
do not depend on the pool size) and ``ray`` (an existing Ray cluster, ``--address``, or a local instance;
Ray is an optional extra and schedules the same task function — axhw has no scheduling code of its own).
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

from axhw.common import reproducible
from axhw.common.io import atomic_write_text
from axhw.data.registry import APPLICATIONS
from axhw.training.trainer import METHODS, Method, TrainConfig

__all__ = [
    "EvalTask",
    "Experiment",
    "TrainTask",
    "code_version",
    "load_experiment",
    "run_parallel",
    "run_tasks",
]

Backend = Literal["local", "ray"]
R = TypeVar("R")


@cache
def code_version() -> str:
    """SHA-256 over the axhw package sources: any code change gives new cache keys.

    ``AXHW_CODE_VERSION`` pins the version instead, to keep a cache across edits you know change no number
    (documentation, refactors, speed-ups tested bit-exact); the responsibility is then yours.
    """
    pinned = os.environ.get("AXHW_CODE_VERSION")
    if pinned:
        return pinned
    root = Path(__file__).resolve().parents[1]  # the axhw package (this file is axhw/training/sweep.py)
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _key(kind: str, payload: dict[str, Any]) -> str:
    blob = json.dumps({"kind": kind, "code": code_version(), **payload}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class TrainTask:
    """Train one network; its result is the run directory's ``metrics.json``."""

    config: TrainConfig

    @property
    def key(self) -> str:
        # Reproducible mode changes the float rounding, so its runs are other runs (the key of a run without
        # it is what it always was: existing caches stay valid).
        extra = {"reproducible": True} if reproducible.requested() else {}
        return _key("train", {"config": asdict(self.config), **extra})


@dataclass(frozen=True)
class EvalTask:
    """Evaluate a trained network (identified by its train task) on one hardware target."""

    train: TrainTask
    multiplier: str
    voltage_mv: float
    runs: int = 50
    seed: int = 0

    @property
    def key(self) -> str:
        return _key("eval", {"train": self.train.key, "multiplier": self.multiplier,
                             "voltage_mv": self.voltage_mv, "runs": self.runs, "seed": self.seed})


Task = TrainTask | EvalTask


def _result_path(root: Path, task: Task) -> Path:
    if isinstance(task, TrainTask):
        return root / "runs" / task.key / "metrics.json"
    return root / "evals" / f"{task.key}.json"


def _execute(task: Task, out: str, checkpoint: str | None) -> dict[str, Any]:
    """Run one task in a worker (single-threaded torch for reproducibility across backends).

    Paths come from the driver: keys are computed once there, so a worker never hashes a different
    code version (e.g. a source file edited while the sweep runs).
    """
    if reproducible.requested():  # inherited from the driver (spawned workers, Ray's runtime_env)
        reproducible.apply()
    import torch

    from axhw.common.runtime import tune_allocator

    tune_allocator()
    torch.set_num_threads(1)
    out_path = Path(out)
    if out_path.exists():
        return json.loads(out_path.read_text())
    if isinstance(task, TrainTask):
        from axhw.training.trainer import train

        return train(task.config, out_path.parent, resume=True, progress=False)
    from axhw.training.evaluate import evaluate

    assert checkpoint is not None
    r = evaluate(checkpoint, task.multiplier, task.voltage_mv, task.runs, task.seed,
                 task.train.config.data_dir).as_dict()
    atomic_write_text(json.dumps(r, indent=2), out_path)
    return r


def _job(root: Path, task: Task) -> tuple[Task, str, str | None]:
    ck = str(root / "runs" / task.train.key / "checkpoint.pt") if isinstance(task, EvalTask) else None
    return task, str(_result_path(root, task)), ck


def run_tasks(tasks: Sequence[Task], root: str | Path, backend: Backend = "local", workers: int | None = None,
              address: str | None = None, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Run (or reuse) every task; training tasks first, then evaluations. Returns results by task key."""
    from tqdm.auto import tqdm

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    unique = list({t.key: t for t in tasks}.values())
    trains: list[Task] = [t for t in unique if isinstance(t, TrainTask)]
    evals = [t for t in unique if isinstance(t, EvalTask)]
    # Evaluations of networks not in the list still need their training.
    extra = {t.train.key: t.train for t in evals if t.train.key not in {s.key for s in trains}}
    trains.extend(extra.values())
    stages: list[Sequence[Task]] = [trains, evals]
    bar = tqdm(total=sum(len(s) for s in stages), desc="sweep", disable=not progress)
    for stage in stages:
        todo = []
        for t in stage:
            path = _result_path(root, t)
            if path.exists():
                results[t.key] = json.loads(path.read_text())
                bar.update(1)
            else:
                todo.append(t)
        for key, res in _dispatch(todo, root, backend, workers, address):
            results[key] = res
            bar.update(1)
    bar.close()
    return results


def _dispatch(todo: list[Task], root: Path, backend: Backend, workers: int | None,
              address: str | None) -> Iterable[tuple[str, dict[str, Any]]]:
    # Ray schedules every task at once (``workers`` sizes only the local pool, as it always has).
    jobs = [_job(root, t) for t in todo]
    for i, res in run_parallel(_execute, jobs, backend, workers if backend == "local" else None, address):
        yield todo[i].key, res


def _call(fn: Callable[..., R], *args: Any) -> R:
    """``fn(*args)`` in a worker, in the driver's reproducible mode (spawned workers inherit the variables,
    Ray workers get them through ``runtime_env``; applied before ``fn``'s work imports torch)."""
    if reproducible.requested():
        reproducible.apply()
    return fn(*args)


def run_parallel(fn: Callable[..., R], jobs: Sequence[tuple[Any, ...]], backend: Backend = "local",
                 workers: int | None = None, address: str | None = None) -> Iterator[tuple[int, R]]:
    """Run ``fn(*job)`` for every job; yield ``(index of the job, result)`` as each one finishes.

    ``fn`` and the jobs must be picklable (a module-level function, plain data). Backends: ``local`` runs
    in this process when ``workers`` (default: the CPU count) or the number of jobs is 1, else in a pool of
    spawned processes (fresh interpreters: nothing of the driver's torch state leaks in); ``ray`` submits
    to an existing Ray instance, or to ``ray.init(address=address)`` when none is running, at most
    ``workers`` jobs at a time (None: all). Workers run in the driver's reproducible mode. The order of
    completion varies: callers index results by the job's position, never by arrival.

    Raises:
        ValueError: an unknown backend, or the ray backend without Ray installed.
    """
    if not jobs:
        return
    if backend == "ray":
        try:
            import ray
        except ImportError as exc:
            raise ValueError("the ray backend needs Ray: pip install 'axhw[ray]' (or pip install ray)") from exc
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        remote = ray.remote(_call)
        if reproducible.requested():  # Ray workers do not inherit the driver's environment
            remote = remote.options(runtime_env={"env_vars": {**reproducible.ENV, reproducible.VARIABLE: "1"}})
        limit = len(jobs) if workers is None else max(1, workers)
        queue = list(enumerate(jobs))
        refs: dict[Any, int] = {}
        while queue or refs:
            while queue and len(refs) < limit:
                i, job = queue.pop(0)
                refs[remote.remote(fn, *job)] = i
            done, _ = ray.wait(list(refs), num_returns=1)
            yield refs.pop(done[0]), ray.get(done[0])
        return
    if backend != "local":
        raise ValueError(f"unknown backend {backend!r}: valid backends are 'local', 'ray'")
    n = workers or os.cpu_count() or 1
    if n == 1 or len(jobs) == 1:
        for i, job in enumerate(jobs):
            yield i, fn(*job)
        return
    import multiprocessing as mp

    with ProcessPoolExecutor(max_workers=min(n, len(jobs)), mp_context=mp.get_context("spawn")) as pool:
        futs = {pool.submit(_call, fn, *job): i for i, job in enumerate(jobs)}
        for f in as_completed(futs):
            yield futs[f], f.result()


# --------------------------------------------------------------------------- declarative experiments
@dataclass(frozen=True)
class Target:
    """A hardware target: multiplier mode and SRAM voltage."""

    multiplier: str = "exact"
    voltage_mv: float = 1100.0


@dataclass(frozen=True)
class Experiment:
    """Datasets x methods x targets x seeds. Hardware-agnostic methods (bp, act) train once per dataset and
    seed and are evaluated on every target; pas and axtrain train one network per target.

    Attributes:
        datasets, methods, seeds: what to cross.
        targets: hardware targets (evaluation, and training for pas/axtrain).
        train: extra TrainConfig fields (epochs, pas_epochs, lr, limit, ...).
        runs: NTV chip instances per evaluation.
        overrides: per-dataset TrainConfig fields on top of ``train`` (e.g. fewer epochs for MNIST).
    """

    datasets: tuple[str, ...]
    methods: tuple[Method, ...] = ("bp", "act", "axtrain")
    targets: tuple[Target, ...] = (Target(),)
    seeds: tuple[int, ...] = (0,)
    train: dict[str, Any] = field(default_factory=dict)
    runs: int = 50
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for d in self.datasets:
            if d not in APPLICATIONS:
                raise ValueError(f"unknown dataset {d!r}: valid datasets are {', '.join(APPLICATIONS)}")
        for m in self.methods:
            if m not in METHODS:
                raise ValueError(f"unknown method {m!r}: valid methods are {', '.join(METHODS)}")
        valid = {f.name for f in fields(TrainConfig)} - {"dataset", "method", "seed", "multiplier", "voltage_mv"}
        for where, settings in [("train", self.train), *[(f"overrides.{d}", o) for d, o in self.overrides.items()]]:
            for k in settings:
                if k not in valid:
                    raise ValueError(f"unknown {where} key {k!r}: valid keys are {', '.join(sorted(valid))}")
        for d in self.overrides:
            if d not in self.datasets:
                raise ValueError(f"overrides for {d!r}, which is not among the datasets {', '.join(self.datasets)}")

    def train_task(self, dataset: str, method: Method, seed: int, target: Target | None = None) -> TrainTask:
        hw: dict[str, Any] = {} if method in ("bp", "act") or target is None else {
            "multiplier": target.multiplier, "voltage_mv": target.voltage_mv}
        settings = {**self.train, **self.overrides.get(dataset, {})}
        return TrainTask(TrainConfig(dataset=dataset, method=method, seed=seed, **hw, **settings))

    def eval_task(self, dataset: str, method: Method, seed: int, target: Target, on: Target | None = None) -> EvalTask:
        """Evaluate the network trained for ``target`` (ignored by bp/act) on ``on`` (default: target)."""
        on = on or target
        return EvalTask(self.train_task(dataset, method, seed, target), on.multiplier, on.voltage_mv,
                        self.runs, seed)

    def tasks(self) -> list[Task]:
        out: list[Task] = []
        for d in self.datasets:
            for s in self.seeds:
                for m in self.methods:
                    for t in self.targets:
                        out.append(self.eval_task(d, m, s, t))
        return out


_EXPERIMENT_KEYS = {"datasets", "methods", "targets", "seeds", "train", "runs", "overrides"}
_TARGET_KEYS = {"multiplier", "voltage"}
#: Older spellings still accepted in experiment files (the CLI says ``--voltage``; files say ``voltage``).
_TARGET_ALIASES = {"voltage_mv": "voltage"}


def load_experiment(path: str | Path) -> Experiment:
    """Read an experiment from TOML or JSON; unknown keys are errors that name the valid ones.

    A target is ``{multiplier = "K2"}`` and/or ``{voltage = 660}`` (SRAM mV, as the CLI's ``--voltage``;
    the older key ``voltage_mv`` is accepted too).
    """
    path = Path(path)
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'} ({exc})") from exc
    return experiment_from_dict(data, str(path))


def experiment_from_dict(data: dict[str, Any], source: str = "experiment") -> Experiment:
    for k in data:
        if k not in _EXPERIMENT_KEYS:
            raise ValueError(f"{source}: unknown key {k!r}: valid keys are {', '.join(sorted(_EXPERIMENT_KEYS))}")
    if "datasets" not in data:
        raise ValueError(f"{source}: missing key 'datasets'")
    targets = []
    for t in data.get("targets", [{}]):
        given: dict[str, Any] = {}
        for k, v in t.items():
            name = _TARGET_ALIASES.get(k, k)
            if name not in _TARGET_KEYS:
                raise ValueError(f"{source}: unknown target key {k!r}: valid keys are {', '.join(sorted(_TARGET_KEYS))}")
            if name in given:
                raise ValueError(f"{source}: target gives the voltage twice ({', '.join(sorted(t))}): use 'voltage'")
            given[name] = v
        targets.append(Target(multiplier=given.get("multiplier", "exact"),
                              voltage_mv=given.get("voltage", 1100.0)))
    return Experiment(
        datasets=tuple(data["datasets"]),
        methods=tuple(data.get("methods", ("bp", "act", "axtrain"))),
        targets=tuple(targets),
        seeds=tuple(int(s) for s in data.get("seeds", (0,))),
        train=dict(data.get("train", {})),
        runs=int(data.get("runs", 50)),
        overrides={str(k): dict(v) for k, v in data.get("overrides", {}).items()},
    )


def run_experiment(exp: Experiment, root: str | Path, **kw: Any) -> dict[str, dict[str, Any]]:
    return run_tasks(exp.tasks(), root, **kw)


def results_table(exp: Experiment, results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Flat rows (dataset, seed, method, target, accuracy_mean, accuracy_std, loss_mean) for CSV/JSON."""
    rows = []
    for d in exp.datasets:
        for s in exp.seeds:
            for m in exp.methods:
                for t in exp.targets:
                    r = results[exp.eval_task(d, m, s, t).key]
                    rows.append({"dataset": d, "seed": s, "method": m, "multiplier": t.multiplier,
                                 "voltage_mv": t.voltage_mv, "accuracy_mean": r["accuracy_mean"],
                                 "accuracy_std": r["accuracy_std"], "loss_mean": r["loss_mean"]})
    return rows
