"""Explore a folder of multiplier circuits for one network: the accuracy-energy Pareto front of BP and of
per-target AxTrain (``axhw power explore``; docs/power.md, "Exploring a circuit library").

A designer with a library of approximate multipliers wants to know which ones their network can use, and
what AxTrain buys on each, without one ``power report`` per circuit. For every Verilog file of the folder:

1. **Import** it into the multiplier library (:func:`axhw.rtl.imported.import_circuit`: exhaustive table up
   to 8 bits, gates checked against simulation above). The top module is the file's module that no other
   instantiates (the file's stem where several qualify); the signedness is the one whose reading is sensible
   (signed first; a circuit the signed reading calls unsigned is imported ``--unsigned``; one whose readings are
   both worse than a zero multiplier is still a candidate, read as signed, with a note). A circuit already in
   the library with the same sources is reused; a file that cannot be imported is listed with its one-line
   reason and skipped, never fatal.
2. **Train** once: BP, and AxTrain's act phase (shared by every candidate).
3. **Per candidate** (a worker job: ``local`` processes or Ray tasks, :func:`axhw.training.sweep.run_parallel`):
   AxTrain's pas phase *for that circuit* (:class:`~axhw.power.search.targets.TargetNetworks`), the hardware
   accuracy of the BP and the AxTrain network on it (validation split, which the front is chosen on; test split,
   reported), and the circuit's gate-level energy per multiply on each network's own operand stream
   (:meth:`~axhw.power.search.measure.Measurer.compute`: synthesized to osu018, simulated with cell delays,
   OpenSTA with the real switching activity), at nominal voltage (compute only).
4. **Pareto front** per method: the candidates no other beats on both energy (lower) and validation accuracy
   (higher).

Everything is cached (networks, evaluations, power measurements, each candidate's point), so a killed run
resumes where it stopped and a finished one re-runs from the cache in seconds.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from axhw.arith.sram import NOMINAL_MV
from axhw.power.flow.tools import OSU018_LABEL, selected_library
from axhw.power.search.targets import Ledger, ResultCache, TargetNetworks, file_digest, is_finished

__all__ = ["ExploreConfig", "candidate_files", "import_candidates", "pareto_front", "run_explore", "top_module"]

_MODULE = re.compile(r"^\s*module\s+(\w+)", re.M)
_INSTANCE = re.compile(r"^\s*(\w+)\s+(?:#\s*\(.*?\)\s*)?\w+\s*\(", re.M)


@dataclass(frozen=True)
class ExploreConfig:
    """One exploration.

    Attributes:
        dataset: application of Table 1 whose network is trained (BP and AxTrain).
        circuits: the Verilog files of the candidate circuits (one circuit per file, helper modules allowed).
        bits: word length of the network and the circuits (8 for tables; 9..16 circuits become gates).
        epochs, pas_epochs: training budget (AxTrain: act for ``epochs - pas_epochs``, then pas per candidate).
        seed: training, evaluation and operand-sampling seed.
        limit: training-sample limit (e.g. 10,000 MNIST images).
        val_fraction: held-out share of the training samples the front is chosen on.
        n_pairs: operand pairs simulated per (network, circuit) for the gate-level energy.
        timing: simulate with cell delays (glitches counted).
        simulator: the import's simulator (``icarus`` or ``verilator``; None: Icarus up to 8 bits, Verilator
            above when installed, :func:`axhw.rtl.wide_import.default_simulator`).
        work_dir: networks, cached measurements and points.
    """

    dataset: str
    circuits: tuple[Path, ...]
    bits: int = 8
    epochs: int = 30
    pas_epochs: int = 5
    seed: int = 0
    limit: int | None = None
    val_fraction: float = 0.2
    n_pairs: int = 4096
    timing: bool = True
    simulator: str | None = None
    batch_size: int = 32
    work_dir: Path = Path("build/power/explore")

    def study(self, modes: tuple[str, ...]) -> Any:
        """The :class:`~axhw.power.search.study.StudyConfig` whose training and measurement settings this is."""
        from axhw.power.search.study import StudyConfig

        return StudyConfig(dataset=self.dataset, epochs=self.epochs, pas_epochs=self.pas_epochs, modes=modes,
                           voltages=(NOMINAL_MV,), runs=1, bits=self.bits, n_pairs=self.n_pairs, seeds=(self.seed,),
                           approxann_modes=(), joint_per_target=False, limit=self.limit,
                           val_fraction=self.val_fraction, timing=self.timing, batch_size=self.batch_size,
                           work_dir=Path(self.work_dir))


def candidate_files(folder: str | Path) -> tuple[Path, ...]:
    """The ``*.v`` files of ``folder``, sorted (ValueError when there are none)."""
    files = tuple(sorted(p for p in Path(folder).glob("*.v") if p.is_file()))
    if not files:
        raise ValueError(f"no Verilog files (*.v) in {folder}: give a folder of multiplier circuits")
    return files


def top_module(path: Path) -> str:
    """The file's top module: the one no other module of the file instantiates (the file's stem among
    several). ValueError when there is no module or no single top."""
    text = path.read_text(errors="replace")
    modules = _MODULE.findall(text)
    if not modules:
        raise ValueError(f"{path.name}: no module")
    used = {m for m in _INSTANCE.findall(text) if m in modules}
    tops = [m for m in modules if m not in used]
    if len(tops) == 1:
        return tops[0]
    if path.stem in tops:
        return path.stem
    raise ValueError(f"{path.name}: {len(tops)} candidate top modules ({', '.join(tops[:4])}): one circuit per file, "
                     "or name the file after its top module")


def import_candidates(files: tuple[Path, ...], bits: int, simulator: str | None = None
                      ) -> tuple[list[str], list[dict[str, Any]]]:
    """Import every file (see the module docstring); returns the library names of the usable circuits, in file
    order, and one record per file (name, top, signedness, ``imported``/``reused``/``skipped`` and why)."""
    from axhw.arith import library
    from axhw.rtl.imported import CircuitImportError, import_circuit
    from axhw.rtl.wide_import import default_simulator

    simulator = simulator or default_simulator(bits)
    names: list[str] = []
    records: list[dict[str, Any]] = []
    for f in files:
        rec: dict[str, Any] = {"file": str(f)}
        try:
            top = top_module(f)
            rec["name"] = rec["top"] = top
            digest = library.source_hash([(f.name, f.read_bytes())])
            if top in library.names():
                info = library.circuit_info(top)
                if info.source_hash != digest or info.bits != bits:
                    raise ValueError(f"the library already holds a different circuit named {top} "
                                     f"({info.bits}-bit, sources {info.source_hash[:12]}): rename the module or "
                                     "remove it from the library")
                rec.update(status="reused", signed=info.signed)
            else:
                try:
                    import_circuit([f], top, bits, signed=True, simulator=simulator)
                    rec["signed"] = True
                except CircuitImportError as exc:
                    if "import it with --unsigned" in str(exc):
                        import_circuit([f], top, bits, signed=False, simulator=simulator)
                        rec["signed"] = False
                    elif "--accept-error" in str(exc):  # neither reading beats a zero multiplier: a very
                        # aggressive circuit is still a candidate (its accuracy will say so), read as signed
                        import_circuit([f], top, bits, signed=True, simulator=simulator, accept_error=True)
                        rec.update(signed=True, note=str(exc).splitlines()[0][:200])
                    else:
                        raise
                rec["status"] = "imported"
            names.append(top)
        except (ValueError, OSError) as exc:  # CircuitImportError is a ValueError: one line, the file skipped
            rec.update(status="skipped", reason=str(exc).splitlines()[0])
        records.append(rec)
    return names, records


def pareto_front(points: list[dict[str, Any]], method: str) -> list[str]:
    """The modes of ``points`` on ``method``'s front: no other point has lower-or-equal energy and
    higher-or-equal validation accuracy with one of them strictly better. Sorted by energy.

    >>> pts = [{"mode": "a", "m": {"energy_pj": 1.0, "val_accuracy": 0.8}},
    ...        {"mode": "b", "m": {"energy_pj": 2.0, "val_accuracy": 0.9}},
    ...        {"mode": "c", "m": {"energy_pj": 3.0, "val_accuracy": 0.85}}]
    >>> pareto_front(pts, "m")
    ['a', 'b']
    """
    def beats(q: dict[str, Any], p: dict[str, Any]) -> bool:
        a, b = q[method], p[method]
        return (a["energy_pj"] <= b["energy_pj"] and a["val_accuracy"] >= b["val_accuracy"]
                and (a["energy_pj"] < b["energy_pj"] or a["val_accuracy"] > b["val_accuracy"]))

    front = [p for p in points if not any(beats(q, p) for q in points if q is not p)]
    return [p["mode"] for p in sorted(front, key=lambda p: (p[method]["energy_pj"], -p[method]["val_accuracy"]))]


def _point_payload(study: Any, mode: str, bp_ck: Path) -> dict[str, Any]:
    from axhw.arith.library import circuit_of
    from axhw.arith.registry import get_multiplier

    return {"mode": mode, "circuit": circuit_of(get_multiplier(mode, study.bits)), "bp": file_digest(bp_ck),
            "train": asdict(study.train_config("axtrain", study.seed)), "n_pairs": study.n_pairs,
            "timing": study.timing, "clock_mhz": study.clock_mhz}


def _candidate(study: Any, mode: str, bp_ck: Path) -> tuple[dict[str, Any], Ledger]:
    """One candidate in a worker: AxTrain's pas for ``mode``, accuracy and energy of both networks on it."""
    import torch

    from axhw.power.search.backend import measurer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ledger = Ledger()
        cache = ResultCache(Path(study.work_dir) / "results")
        payload = _point_payload(study, mode, bp_ck)
        hit = cache.get("explore-point", payload)
        if hit is not None:
            return hit, ledger
        meas = measurer(study, ledger)
        root = Path(study.work_dir) / study.dataset / f"s{study.seed}"
        nets = TargetNetworks(study.train_config("axtrain", study.seed), root, ledger)
        ax_ck = nets.checkpoint(mode, NOMINAL_MV)
        point: dict[str, Any] = {"mode": mode}
        try:
            for method, ck in (("bp", bp_ck), ("axtrain", ax_ck)):
                val = meas.accuracy(ck, mode, NOMINAL_MV, study.seed, study.selection_split)
                test = meas.accuracy(ck, mode, NOMINAL_MV, study.seed, "test")
                power = meas.compute(ck, mode, study.seed, f"{study.dataset}/{method}")
                point[method] = {"val_accuracy": val["accuracy_mean"], "test_accuracy": test["accuracy_mean"],
                                 "energy_pj": power["measured"]["energy_pj"], "area_um2": power["area_um2"],
                                 "checkpoint": str(ck)}
        except (RuntimeError, ValueError) as exc:  # a tool failing on one circuit: reported, not cached
            return {"mode": mode, "error": str(exc).splitlines()[0][:300]}, ledger
        return cache.put("explore-point", payload, point), ledger
    finally:
        torch.set_num_threads(threads)


def _synthesize_all(modes: list[str], bits: int) -> dict[str, str]:
    """Synthesize (or find cached) every candidate before the workers start, under the study's lock on the
    synthesis cache (:func:`axhw.power.search.backend._warm_synthesis`: concurrent workers never publish one
    entry twice); returns the candidates whose synthesis failed, with the first line of why (skipped, not
    fatal: one odd circuit does not stop the exploration)."""
    from axhw.common.io import locked
    from axhw.power.flow.synth import SynthConfig, synthesize
    from axhw.power.multiplier.compute import mode_config

    sc = SynthConfig()
    failed: dict[str, str] = {}
    with locked(Path(sc.cache_dir) / ".study-workers.lock"):
        for mode in dict.fromkeys(("exact", *modes)):
            try:
                synthesize(mode_config(mode, bits), sc)
            except (RuntimeError, ValueError) as exc:
                failed[mode] = str(exc).splitlines()[0][:300]
    return failed


@dataclass
class ExploreResult:
    """What :func:`run_explore` found (``explore.json``)."""

    config: ExploreConfig
    imports: list[dict[str, Any]] = field(default_factory=list)
    points: list[dict[str, Any]] = field(default_factory=list)
    fronts: dict[str, list[str]] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)
    #: the cell library the energies were measured in (:attr:`axhw.power.flow.tools.CellLibrary.label`)
    library: str = OSU018_LABEL

    def as_dict(self) -> dict[str, Any]:
        cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.config).items()}
        cfg["circuits"] = [str(p) for p in self.config.circuits]
        from axhw.common.numerics import describe

        return {"config": cfg, "library": self.library, "imports": self.imports, "points": self.points,
                "pareto": self.fronts, "cost": self.cost, "numerics": describe()}  # which numerics code produced it


def run_explore(cfg: ExploreConfig, progress: bool = True, backend: Literal["local", "ray"] = "local",
                address: str | None = None, workers: int | None = None) -> ExploreResult:
    """Import, train, measure every candidate and find the fronts (see the module docstring)."""
    from tqdm.auto import tqdm

    from axhw.power.search.backend import merge_ledger
    from axhw.power.search.study import check_modes
    from axhw.training.sweep import run_parallel
    from axhw.training.trainer import train_cached

    t0 = time.monotonic()
    names, imports = import_candidates(cfg.circuits, cfg.bits, cfg.simulator)
    if not names:
        raise ValueError(f"none of the {len(cfg.circuits)} circuits could be imported "
                         f"(first: {imports[0].get('reason') if imports else 'no files'})")
    modes = ("exact", *[n for n in names if n != "exact"])
    study = cfg.study(modes)
    check_modes(modes, cfg.bits)
    ledger = Ledger()
    root = Path(cfg.work_dir) / cfg.dataset / f"s{cfg.seed}"
    bp_cfg = study.train_config("bp", cfg.seed)
    bp_dir = root / f"bp-e{cfg.epochs}-b{cfg.bits}"
    bp_trained = not is_finished(bp_dir, bp_cfg)
    bp_ck = train_cached(bp_cfg, bp_dir, resume=True, progress=progress)
    ledger.note(f"{cfg.dataset}/s{cfg.seed}/bp", trained=bp_trained)
    ledger.epochs_trained += cfg.epochs if bp_trained else 0
    cache = ResultCache(Path(cfg.work_dir) / "results")
    todo = [m for m in modes if cache.get("explore-point", _point_payload(study, m, bp_ck)) is None]
    if todo:  # shared work before the candidates fan out: the act phase and the synthesized netlists
        TargetNetworks(study.train_config("axtrain", cfg.seed), root, ledger, progress=progress).act()
        failed = _synthesize_all(todo, cfg.bits)
        if "exact" in failed:
            raise ValueError(f"the exact multiplier does not synthesize: {failed['exact']}")
        for rec in imports:
            if rec.get("name") in failed:
                rec.update(status="skipped", reason=f"synthesis failed: {failed[rec['name']]}")
        modes = tuple(m for m in modes if m not in failed)
        study = cfg.study(modes)
    points: dict[str, dict[str, Any]] = {}
    jobs = [(study, m, bp_ck) for m in modes]
    with tqdm(total=len(jobs), desc=f"{cfg.dataset} candidates ({backend})", disable=not progress) as bar:
        for i, (point, part) in run_parallel(_candidate, jobs, backend, workers if todo else 1, address):
            points[modes[i]] = point
            merge_ledger(ledger, part)
            bar.update(1)
    ordered = [points[m] for m in modes if "error" not in points[m]]
    for m in modes:
        if "error" in points[m]:
            for rec in imports:
                if rec.get("name") == m:
                    rec.update(status="skipped", reason=f"measurement failed: {points[m]['error']}")
    fronts = {method: pareto_front(ordered, method) for method in ("bp", "axtrain")}
    cost = {**ledger.as_dict(), "wall_s": round(time.monotonic() - t0, 1), "candidates": len(modes),
            "candidates_measured": len(todo)}
    return ExploreResult(cfg, imports, ordered, fronts, cost, selected_library().label)


def markdown(result: ExploreResult) -> str:
    """``explore.md``: the candidates by energy, each method's front marked, the imports, the cost."""
    from axhw.common.tables import markdown_table

    cfg = result.config
    rows = []
    for p in sorted(result.points, key=lambda p: p["bp"]["energy_pj"]):
        row = [p["mode"]]
        for method in ("bp", "axtrain"):
            m = p[method]
            star = " *" if p["mode"] in result.fronts.get(method, []) else ""
            row += [f"{m['energy_pj']:.2f}", f"{100 * m['val_accuracy']:.2f}{star}", f"{100 * m['test_accuracy']:.2f}"]
        rows.append(row)
    lines = [f"# Circuit exploration: {cfg.dataset}", "",
             f"{len(result.points)} candidates ({cfg.bits}-bit), seed {cfg.seed}, {cfg.epochs} epochs "
             f"(AxTrain: pas {cfg.pas_epochs} per circuit), training limit {cfg.limit or 'none'}; energy per multiply "
             f"at {result.library} on each network's own operand stream ({cfg.n_pairs} pairs, "
             f"{'cell delays' if cfg.timing else 'zero delay'}), nominal voltage. * = on the method's Pareto front "
             "(energy vs validation accuracy).", "",
             markdown_table(["circuit", "BP pJ/mul", "BP val %", "BP test %", "AxTrain pJ/mul", "AxTrain val %",
                             "AxTrain test %"], rows), ""]
    for method, label in (("bp", "BP"), ("axtrain", "AxTrain")):
        lines.append(f"{label} front: {', '.join(result.fronts.get(method, [])) or 'none'}")
    skipped = [r for r in result.imports if r.get("status") == "skipped"]
    lines += ["", f"Imports: {sum(r.get('status') == 'imported' for r in result.imports)} imported, "
              f"{sum(r.get('status') == 'reused' for r in result.imports)} reused, {len(skipped)} skipped."]
    lines += [f"- {Path(r['file']).name}: {r['reason']}" for r in skipped]
    c = result.cost
    lines += ["", f"Cost: {c.get('wall_s')} s wall, {c.get('trainings_run')} trainings run "
              f"({c.get('epochs_trained')} epochs), {c.get('gate_level_simulations')} gate-level simulations, "
              f"{c.get('evaluations_run')} evaluations; {c.get('candidates_measured')} of {c.get('candidates')} "
              "candidates measured in this run (the rest from the cache)."]
    return "\n".join(lines) + "\n"


def plot(result: ExploreResult, path: str | Path) -> None:
    """``explore.png``: validation accuracy against energy per multiply, both methods, fronts as steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, label, color in (("bp", "BP", "tab:gray"), ("axtrain", "AxTrain (per circuit)", "tab:red")):
        xs = [p[method]["energy_pj"] for p in result.points]
        ys = [100 * p[method]["val_accuracy"] for p in result.points]
        ax.scatter(xs, ys, s=14, color=color, alpha=0.6, label=label)
        front = {p["mode"]: p for p in result.points}
        fx = [front[m][method]["energy_pj"] for m in result.fronts.get(method, [])]
        fy = [100 * front[m][method]["val_accuracy"] for m in result.fronts.get(method, [])]
        ax.step(fx, fy, where="post", color=color, linewidth=1.5)
    ax.set_xlabel(f"energy per multiply (pJ, {result.library}, own operand stream)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{result.config.dataset}: {len(result.points)} circuits, Pareto fronts")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
