"""Minimum-power configuration per trained network (power flow, step 4; the paper's Fig. 9).

For BP and AxTrain networks of one data set, over {multiplier mode} x {SRAM voltage}: accuracy from the
hardware models (:func:`axhw.evaluate.evaluate`, NTV as the mean over runs), compute power from the
synthesized multiplier on the network's own operand stream, storage power from
:mod:`axhw.power.sram_energy`. The chosen configuration is the lowest-power one whose accuracy stays within
``constraint_pp`` percentage points of the reference (the network's own exact multiplier at nominal
voltage by default, or BP's), separately for compute (voltage fixed at nominal), for storage (exact
multiplier) and jointly. No feasible point is a result (``None``), never an error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from axhw.data.registry import APPLICATIONS
from axhw.power.activity import SimConfig
from axhw.power.compute import network_compute_power
from axhw.power.sram_energy import SRAMTechnology, storage_bits, storage_power
from axhw.power.sta import PowerConfig
from axhw.power.synth import SynthConfig
from axhw.sram import NOMINAL_MV

__all__ = ["StudyConfig", "check_modes", "choose", "run_study"]

#: Compute energy scaling osu018 (180 nm, 1.8 V) -> the SRAM model's 65 nm, 1.1 V, for the joint sum only:
#: E ~ C V^2 with C ~ feature size (classical scaling; stated, not measured): (65/180) * (1.1/1.8)^2.
NODE_SCALE_180_TO_65 = (65.0 / 180.0) * (1.1 / 1.8) ** 2


@dataclass(frozen=True)
class StudyConfig:
    """One minimum-power study.

    Attributes:
        dataset: application of Table 1.
        methods: training methods compared (``bp`` and ``axtrain`` as in Fig. 9).
        epochs, pas_epochs: training budget (AxTrain: act, then pas for ``pas_epochs``).
        target_multiplier, target_voltage_mv: AxTrain's pas-phase hardware (None voltage: the data set's
            conservative Table 1 voltage).
        modes: multiplier modes searched (the candidate circuits): ``exact``, ``K1``..``K4``, ``drum<k>`` and
            names of circuits imported into the multiplier library (:mod:`axhw.library`), which compete on the
            same footing (accuracy through :func:`~axhw.multipliers.get_multiplier`, power from their own
            synthesized netlist, sign-magnitude wrapped when unsigned); must include ``exact`` (the reference).
        voltages: SRAM supplies searched (mV).
        runs: NTV runs per evaluation (chip instances; the paper's 50).
        constraint_pp: allowed accuracy loss in percentage points.
        reference: ``own`` (each network's exact/nominal accuracy) or ``bp`` (BP's, for every network).
        bits: word length (multiplier width).
        n_pairs: operand pairs simulated per (network, mode).
        seed: training, evaluation and sampling seed.
        clock_mhz: multiply rate for power (one MAC per cycle; SRAM reads one weight word per MAC).
        timing: gate-level simulation with cell delays (glitches) or zero-delay.
        limit: training-sample limit (quick runs).
        work_dir: training checkpoints and simulation scratch.
    """

    dataset: str = "breast_cancer"
    methods: tuple[str, ...] = ("bp", "axtrain")
    epochs: int = 30
    pas_epochs: int = 5
    target_multiplier: str = "K2"
    target_voltage_mv: float | None = None
    modes: tuple[str, ...] = ("exact", "K4", "K3", "K2", "K1")
    voltages: tuple[float, ...] = (1100.0, 850.0, 660.0, 400.0)
    runs: int = 50
    constraint_pp: float = 2.0
    reference: Literal["own", "bp"] = "own"
    bits: int = 8
    n_pairs: int = 4096
    seed: int = 0
    clock_mhz: float = 100.0
    timing: bool = True
    limit: int | None = None
    work_dir: Path = Path("build/power/study")

    @classmethod
    def quick(cls, dataset: str = "breast_cancer", **kw: Any) -> StudyConfig:
        """Reduced study for tests and smoke runs: few epochs, 5 runs, 8-bit, a subset of modes/voltages."""
        base = cls(dataset=dataset, epochs=4, pas_epochs=1, runs=5, modes=("exact", "K4", "K2"),
                   voltages=(1100.0, 660.0), n_pairs=512, bits=8)
        return replace(base, **kw)

    def copy(self, **changes: Any) -> StudyConfig:
        return replace(self, **changes)


def _train(cfg: StudyConfig, method: str, progress: bool) -> Path:
    """Train (or reuse) the network of ``method``; returns its checkpoint."""
    from axhw.train import TrainConfig, train_cached

    app = APPLICATIONS[cfg.dataset]
    voltage = cfg.target_voltage_mv if cfg.target_voltage_mv is not None else app.con_voltage_mv
    tcfg = TrainConfig(dataset=cfg.dataset, method=method, epochs=cfg.epochs, seed=cfg.seed, bits=cfg.bits,  # type: ignore[arg-type]
                       limit=cfg.limit, pas_epochs=cfg.pas_epochs,
                       multiplier=cfg.target_multiplier if method in ("axtrain", "pas") else "exact",
                       voltage_mv=voltage if method in ("axtrain", "pas") else NOMINAL_MV)
    out = Path(cfg.work_dir) / cfg.dataset / f"{method}-e{cfg.epochs}-s{cfg.seed}-b{cfg.bits}"
    return train_cached(tcfg, out, progress=progress)


def choose(points: list[dict[str, Any]], power_key: str, floor: float) -> dict[str, Any] | None:
    """The lowest-``power_key`` point with ``accuracy >= floor``, or None when no point is feasible.

    >>> choose([{"accuracy": 0.9, "p": 2.0}, {"accuracy": 0.95, "p": 3.0}], "p", 0.92)["p"]
    3.0
    >>> choose([{"accuracy": 0.9, "p": 2.0}], "p", 0.99) is None
    True
    """
    feasible = [p for p in points if p["accuracy"] >= floor - 1e-12]
    return min(feasible, key=lambda p: (p[power_key], -p["accuracy"])) if feasible else None


def _network(cfg: StudyConfig, method: str, ck: Path, progress: bool) -> dict[str, Any]:
    import torch
    from tqdm.auto import tqdm

    from axhw.evaluate import evaluate
    from axhw.train import integer_test_inputs, load_checkpoint

    qnet, x_int = integer_test_inputs(load_checkpoint(ck))
    stored, reads = storage_bits(qnet)
    grid = [(m, v) for m in cfg.modes for v in cfg.voltages]
    acc: dict[tuple[str, float], tuple[float, float]] = {}
    for m, v in tqdm(grid, desc=f"{cfg.dataset} {method} accuracy", disable=not progress, leave=False):
        r = evaluate(ck, m, v, runs=cfg.runs, seed=cfg.seed)
        acc[(m, v)] = (r.accuracy_mean, r.accuracy_std)
    compute = {}
    pcfg = PowerConfig(clock_mhz=cfg.clock_mhz)
    scfg = SimConfig(timing=cfg.timing)
    for m in tqdm(cfg.modes, desc=f"{cfg.dataset} {method} gate-level power", disable=not progress, leave=False):
        with torch.no_grad():
            compute[m] = network_compute_power(qnet, x_int, m, cfg.bits, cfg.n_pairs, cfg.seed,
                                               f"{cfg.dataset}/{method}", synth_cfg=SynthConfig(),
                                               sim_cfg=scfg, power_cfg=pcfg)
        if compute[m].mismatches:
            lines = "; ".join(compute[m].extra.get("mismatch_lines", [])[:3])
            raise ValueError(f"mode {m}: the gate-level netlist disagrees with the model on {compute[m].mismatches} "
                               f"of {compute[m].vectors} operand pairs ({lines}): its power would be meaningless")
    tech = SRAMTechnology()
    storage = {v: storage_power(v, stored, cfg.bits, cfg.clock_mhz * 1e6, tech) for v in cfg.voltages}
    points = []
    for m, v in grid:
        c, s = compute[m].measured.total_w, storage[v].total_w
        points.append({"mode": m, "voltage_mv": v, "accuracy": acc[(m, v)][0], "accuracy_std": acc[(m, v)][1],
                       "compute_w": c, "storage_w": s, "joint_w": c * NODE_SCALE_180_TO_65 + s})
    return {
        "method": method, "checkpoint": str(ck), "stored_bits": stored, "multiplies_per_inference": reads,
        "exact_nominal_accuracy": acc[("exact", NOMINAL_MV)][0] if ("exact", NOMINAL_MV) in acc else None,
        "points": points,
        "compute": {m: c.as_dict() for m, c in compute.items()},
        "storage": {str(v): {"dynamic_w": s.dynamic_w, "leakage_w": s.leakage_w, "total_w": s.total_w}
                    for v, s in storage.items()},
    }


def _select(net: dict[str, Any], floor: float) -> dict[str, Any]:
    pts = net["points"]
    return {
        "floor": floor,
        "compute": choose([p for p in pts if p["voltage_mv"] == NOMINAL_MV], "compute_w", floor),
        "storage": choose([p for p in pts if p["mode"] == "exact"], "storage_w", floor),
        "joint": choose(pts, "joint_w", floor),
    }


def _reduction(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> float | None:
    """Relative power change of ``b`` (AxTrain) against ``a`` (BP), in percent (negative = saving)."""
    if a is None or b is None:
        return None
    return 100.0 * (b[key] / a[key] - 1.0)


@dataclass
class StudyResult:
    """Everything :func:`run_study` measured (``as_dict`` is what ``power.json`` holds)."""

    config: StudyConfig
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        cfg["work_dir"] = str(cfg["work_dir"])
        out: dict[str, Any] = {"config": cfg, "node_scale_compute_180_to_65": NODE_SCALE_180_TO_65,
                               "networks": self.networks}
        if "bp" in self.networks and "axtrain" in self.networks:
            bp, ax = self.networks["bp"]["chosen"], self.networks["axtrain"]["chosen"]
            out["axtrain_vs_bp_percent"] = {
                "compute": _reduction(bp["compute"], ax["compute"], "compute_w"),
                "storage": _reduction(bp["storage"], ax["storage"], "storage_w"),
                "joint": _reduction(bp["joint"], ax["joint"], "joint_w"),
            }
        return out


def check_modes(modes: tuple[str, ...] | list[str], bits: int) -> None:
    """Fail early (before any training) on a mode that names no multiplier, or a circuit of another width.

    Raises:
        ValueError: one line naming the mode and what is valid.
    """
    from axhw.multipliers import get_multiplier
    from axhw.power.compute import mode_config

    if not modes:
        raise ValueError("modes is empty: give at least 'exact'")
    dup = sorted({m for m in modes if list(modes).count(m) > 1})
    if dup:
        raise ValueError(f"modes lists {', '.join(dup)} more than once")
    for m in modes:
        mode_config(m, bits)  # ValueError for an unknown name or a circuit of another width
        get_multiplier(m, bits)


def run_study(cfg: StudyConfig, progress: bool = True) -> StudyResult:
    """Train the networks (reused when present), measure accuracy and power, choose minimum-power modes."""
    if cfg.dataset not in APPLICATIONS:
        raise ValueError(f"unknown dataset {cfg.dataset!r}: valid datasets are {', '.join(APPLICATIONS)}")
    if "exact" not in cfg.modes or NOMINAL_MV not in cfg.voltages:
        raise ValueError("modes must include 'exact' and voltages must include the nominal 1100 mV (the reference)")
    check_modes(cfg.modes, cfg.bits)
    result = StudyResult(cfg)
    for method in cfg.methods:
        ck = _train(cfg, method, progress)
        result.networks[method] = _network(cfg, method, ck, progress)
    for net in result.networks.values():
        ref_net = result.networks["bp"] if cfg.reference == "bp" and "bp" in result.networks else net
        floor = ref_net["exact_nominal_accuracy"] - cfg.constraint_pp / 100.0
        net["chosen"] = _select(net, floor)
    return result
