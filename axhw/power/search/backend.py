"""The minimum-power study's seeds on worker processes: a local pool or a Ray cluster.

Why: a study's seeds are independent (each trains and measures its own networks, paper section 5 averages
over them), and a full ``make power-report`` spends hours in them one after another. Here every seed runs
:func:`axhw.power.search.study._seed_study` in a worker with its own :class:`~axhw.power.search.targets.Ledger`
and :class:`~axhw.power.search.measure.Measurer`, through the sweep's dispatcher
(:func:`axhw.training.sweep.run_parallel`: spawned processes, or Ray tasks in the driver's reproducible
mode); results and ledgers are merged in seed order, so ``power.json`` equals the in-process run's except
for the cost fields (wall time, and which run trained what when a cache is shared).

What the workers share, and why that is safe:

* ``work_dir/<dataset>/s<seed>/``: networks, one folder per seed, so no two workers write the same network.
* ``work_dir/results/``: evaluations and power measurements, content-addressed (checkpoint SHA-256, settings,
  seed, numerics stamp) and written atomically (:func:`axhw.common.io.atomic_write_json`).
* the synthesis cache (:func:`axhw.power.flow.synth.default_cache`): shared by every seed, and its entries
  are folders published by rename (:func:`axhw.common.io.atomic_dir`), which replaces an entry that another
  process published meanwhile, under the feet of a simulation reading it. Each worker therefore synthesizes
  the study's multipliers first, holding a lock on the cache (:func:`_warm_synthesis`): the first worker
  does the work, the others find every entry and only read. Simulation and OpenSTA scratch are private
  temporary folders.

On a cluster, every node needs axhw and the toolchain installed, and ``work_dir`` should be a shared file
system (otherwise each node keeps its own networks and measurements; the results are the same).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from axhw.power.search.targets import Ledger

#: The study's per-seed function (:func:`axhw.power.search.study._seed_study`), passed in by ``run_study`` so this
#: module does not import the study (no import circle); a module-level function pickles by name for workers.
SeedStudy = Callable[..., dict[str, Any]]
#: A :class:`axhw.power.search.study.StudyConfig` (not imported here, for the same reason).
StudyConfig = Any

if TYPE_CHECKING:
    from axhw.power.search.measure import Measurer

__all__ = ["measurer", "merge_ledger", "run_seeds"]


def merge_ledger(into: Ledger, part: Ledger) -> None:
    """Add a worker's ledger to the driver's: counts summed, lists extended (``started`` stays the driver's,
    so ``wall_s`` is the wall time of the whole study)."""
    for f in fields(Ledger):
        if f.name == "started":
            continue
        mine, theirs = getattr(into, f.name), getattr(part, f.name)
        setattr(into, f.name, [*mine, *theirs] if isinstance(mine, list) else mine + theirs)


def measurer(cfg: StudyConfig, ledger: Ledger) -> Measurer:
    """The study's measurer, as :func:`axhw.power.search.study.run_study` builds it."""
    from axhw.power.search.measure import Measurer
    from axhw.power.search.targets import ResultCache

    return Measurer(ResultCache(Path(cfg.work_dir) / "results"), ledger, cfg.bits, cfg.n_pairs, cfg.clock_mhz,
                    cfg.timing, cfg.runs)


def _warm_synthesis(cfg: StudyConfig) -> None:
    """Synthesize (or find cached) every multiplier the study measures, as the measurer asks for it
    (``SynthConfig()`` at ``cfg.bits``), under an exclusive lock on the synthesis cache: concurrent workers
    never publish the same entry twice (see the module docstring)."""
    from axhw.common.io import locked
    from axhw.power.flow.synth import SynthConfig, synthesize
    from axhw.power.multiplier.compute import mode_config

    sc = SynthConfig()
    with locked(Path(sc.cache_dir) / ".study-workers.lock"):
        for mode in dict.fromkeys(("exact", *cfg.modes, *cfg.approxann_modes)):
            synthesize(mode_config(mode, cfg.bits), sc)


def _seed_job(cfg: StudyConfig, seed: int, seed_study: SeedStudy) -> tuple[dict[str, Any], Ledger]:
    """One seed of the study in a worker: its result and what it cost. Float math on one thread, as
    ``axhw power report`` and the sweep workers run it (reproducible mode needs it anyway)."""
    import torch

    from axhw.common.runtime import tune_allocator

    tune_allocator()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # a single job runs in the driver's process (run_parallel): leave its threads as they were
        _warm_synthesis(cfg)
        ledger = Ledger()
        return seed_study(cfg, seed, ledger, measurer(cfg, ledger), False), ledger
    finally:
        torch.set_num_threads(threads)


def run_seeds(cfg: StudyConfig, ledger: Ledger, backend: Literal["local", "ray"] = "local",
              address: str | None = None, workers: int | None = None,
              progress: bool = True, seed_study: SeedStudy | None = None) -> dict[int, dict[str, Any]]:
    """Every seed of ``cfg`` on ``backend`` (``local``: a pool of ``workers`` spawned processes, default the
    CPU count; ``ray``: Ray tasks on ``address``, at most ``workers`` at a time, default all); per-seed
    results in seed order, the workers' costs added to ``ledger``.

    Raises:
        ValueError: ``workers`` below 1, an unknown backend, or Ray missing (one line, with what to do).
    """
    from tqdm.auto import tqdm

    from axhw.training.sweep import run_parallel

    if seed_study is None:
        raise ValueError("run_seeds needs the study's per-seed function (run_study passes it)")
    if workers is not None and workers < 1:
        raise ValueError(f"workers={workers}: give 1 or more worker processes")
    if backend not in ("local", "ray"):
        raise ValueError(f"unknown backend {backend!r}: valid backends are 'local', 'ray'")
    seeds = list(cfg.seeds)
    done: dict[int, tuple[dict[str, Any], Ledger]] = {}
    with tqdm(total=len(seeds), desc=f"{cfg.dataset} seeds ({backend})", disable=not progress) as bar:
        for i, res in run_parallel(_seed_job, [(cfg, s, seed_study) for s in seeds], backend, workers, address):
            done[seeds[i]] = res
            bar.update(1)
    out: dict[int, dict[str, Any]] = {}
    for s in seeds:  # seed order: the merged result does not depend on which worker finished first
        out[s], part = done[s]
        merge_ledger(ledger, part)
    return out
