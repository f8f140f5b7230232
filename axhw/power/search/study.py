"""Minimum-power configuration per data set (power flow, step 4; the paper's Fig. 9 and section 5).

For each seed of one data set, over {multiplier mode} x {SRAM voltage}: accuracy from the hardware models
(:func:`axhw.training.evaluate.evaluate`, NTV as the mean over chip instances), compute power from the synthesized
multiplier on the network's own operand stream, storage power from :mod:`axhw.power.sram_energy`. The
chosen configuration is the lowest-power one whose accuracy stays within a bound (percentage points) of the
reference accuracy (the accurate implementation: exact multiplier, nominal voltage), separately for compute
(voltage fixed at nominal), for storage (exact multiplier) and jointly, as in Fig. 9. No feasible point is
a result (``None``), never an error. Three kinds of network are compared:

* **BP** (hardware-agnostic): one network per seed, its whole grid evaluated.
* **Per-target AxTrain** (the default; docs/power.md, "Minimum-power search"): AxTrain-pas is fine-tuning
  *for* a target, so every visited candidate gets its own AxTrain network (act once, pas for that mode and voltage,
  :mod:`axhw.power.search.targets`), candidates visited cheapest first (:mod:`axhw.power.search.grid`); the reference
  is the AxTrain network trained for the accurate implementation.
* **Single-network AxTrain** (the earlier behaviour, reported beside): one AxTrain network trained for
  ``target_multiplier`` and the conservative voltage, evaluated on every candidate.

Beside them, ApproxAnn's mixed-mode networks (:mod:`axhw.power.search.approxann`) and, for every bound of
``bounds``, the minimum power of each method (the power-accuracy Pareto curves).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from axhw.arith.sram import NOMINAL_MV
from axhw.data.registry import APPLICATIONS
from axhw.power.flow.tools import NODE_SCALE_180_TO_65, selected_library
from axhw.power.search.approxann import approxann_cached
from axhw.power.search.bound import READINGS, parse_reading
from axhw.power.search.bound import floor as bound_floor
from axhw.power.search.grid import Part, candidates, choose, first_feasible
from axhw.power.search.measure import Measurer
from axhw.power.search.stats import paired_test
from axhw.power.search.targets import Ledger, ResultCache, TargetNetworks, is_finished
from axhw.power.sram_energy import SRAMTechnology, storage_bits_split, storage_power

if TYPE_CHECKING:
    from axhw.training.trainer import Method, TrainConfig

__all__ = ["NODE_SCALE_180_TO_65", "StudyConfig", "StudyResult", "check_grid", "check_modes", "choose",
           "choose_configurations",
           "logic_supplies", "measure_network",
           "power_change", "run_study"]

#: Networks of ApproxAnn's comparison: pretrained by BP (the paper's ApproxANN) and by AxTrain-act (Fig. 8).
APPROXANN_PRETRAINED = ("bp", "act")


@dataclass(frozen=True)
class StudyConfig:
    """One minimum-power study.

    Attributes:
        dataset: application of Table 1.
        methods: training methods compared (``bp`` and ``axtrain`` as in Fig. 9).
        epochs, pas_epochs: training budget (AxTrain: act, then pas for ``pas_epochs``).
        target_multiplier, target_voltage_mv: the single-network AxTrain's pas-phase hardware (None voltage:
            the data set's conservative Table 1 voltage).
        modes: multiplier modes searched (the candidate circuits): ``exact``, ``K1``..``K4``, ``drum<k>`` and
            names of circuits imported into the multiplier library (:mod:`axhw.arith.library`), which compete on the
            same footing (accuracy through :func:`~axhw.arith.registry.get_multiplier`, power from their own
            synthesized netlist, sign-magnitude wrapped when unsigned); must include ``exact`` (the reference).
        voltages: SRAM supplies searched (mV).
        runs: NTV runs per evaluation (chip instances; the paper's 50). Chip ``r`` is seeded ``seed + r`` for every
            network, so BP and AxTrain meet the same chips (common random numbers: their difference is not
            blurred by chip-to-chip luck). 200 by default (the paper's 50 is cheap to exceed on Table 1's small
            networks); every chip's accuracy is kept in ``power.json`` (``accuracies``), so the spread of the
            chip mean can be read off.
        constraint_pp: allowed accuracy loss in percentage points (the paper's 2) of the headline tables.
        reference: ``own`` (each method's accurate implementation) or ``bp`` (BP's, for every network).
        bits: word length (multiplier width).
        n_pairs: operand pairs simulated per (network, mode).
        seeds: training, evaluation and sampling seeds (results per seed, changes averaged over seeds with a
            bootstrap 95% interval); BP and AxTrain of one seed share the data split and the chips (paired). 10 by
            default: with 3, a data set's mean change had a standard error of ~20 points.
        search: ``per_target`` (AxTrain trained for every visited candidate; single-network beside it) or
            ``single`` (only the single network: the earlier, cheaper behaviour).
        bounds: allowed accuracy losses (pp) of the Pareto curves; ``constraint_pp`` is always added.
        joint_per_target: also search the joint (mode, voltage) grid with per-target AxTrain (at
            ``constraint_pp`` only; it can train up to ``len(modes) * len(voltages)`` networks).
        approxann_modes: approximate modes of ApproxAnn's per-neuron mix (empty: no ApproxAnn; the paper's
            Fig. 8 uses K2 and K1); skipped for convolutional networks (FC-only, as Fig. 8).
        approxann_retrain_epochs: ApproxAnn's retraining epochs per round.
        batch_size: training mini-batch.
        clock_mhz: multiply rate for power (one MAC per cycle; SRAM reads one weight word per MAC).
        timing: gate-level simulation with cell delays (glitches) or zero-delay.
        limit: training-sample limit (quick runs, MNIST subsets).
        val_fraction: share of the training samples held out (seeded, stratified) as the validation split on
            which every choice is made: feasibility against the floor, the reference accuracy the floor is
            computed from, the per-target search's stopping point, ApproxAnn's switches. The test split only
            scores what was chosen (each point's ``test_accuracy``). 0: the earlier behaviour, choosing on the
            test split (labelled ``selection_split: test`` in power.json).
        bias_word, ntv_biases: how biases are stored (:class:`axhw.nn.HardwareConfig`; docs/hardware-models.md,
            "Bias words"): in their layer's narrowest word (``fit``, the default) or in ``bias_bits`` words, and in
            the NTV memory with the weights (default) or at nominal voltage. Every network of the study is trained
            and evaluated so; the storage power charges bias bits outside the NTV memory at nominal voltage.
        logic_supplies_mv: logic supplies (mV) the search may lower each multiplier to, where its netlist still
            meets ``clock_mhz`` (libraries of the selected PDK: sky130's 1800, 1200, 900); empty (default): the
            logic at the selected library's one supply, as the paper (:mod:`axhw.power.search.logic_voltage`).
        work_dir: training checkpoints, cached measurements and simulation scratch.
    """

    dataset: str = "breast_cancer"
    methods: tuple[Method, ...] = ("bp", "axtrain")
    epochs: int = 30
    pas_epochs: int = 5
    target_multiplier: str = "K2"
    target_voltage_mv: float | None = None
    modes: tuple[str, ...] = ("exact", "K4", "K3", "K2", "K1")
    voltages: tuple[float, ...] = (1100.0, 850.0, 660.0, 400.0)
    runs: int = 200
    constraint_pp: float = 2.0
    reference: Literal["own", "bp"] = "own"
    bits: int = 8
    n_pairs: int = 4096
    seeds: tuple[int, ...] = tuple(range(10))
    search: Literal["per_target", "single"] = "per_target"
    bounds: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 6.0)
    joint_per_target: bool = True
    approxann_modes: tuple[str, ...] = ("K2", "K1")
    approxann_retrain_epochs: int = 3
    batch_size: int = 32
    clock_mhz: float = 100.0
    timing: bool = True
    limit: int | None = None
    val_fraction: float = 0.2
    bias_word: Literal["fit", "fixed"] = "fit"
    ntv_biases: bool = True
    logic_supplies_mv: tuple[int, ...] = ()
    work_dir: Path = Path("build/power/study")

    @classmethod
    def quick(cls, dataset: str = "breast_cancer", **kw: Any) -> StudyConfig:
        """Reduced study for tests and smoke runs: few epochs, 5 runs, one seed, a subset of modes/voltages."""
        base = cls(dataset=dataset, epochs=4, pas_epochs=1, runs=5, modes=("exact", "K4", "K2"),
                   voltages=(1100.0, 660.0), n_pairs=512, bits=8, seeds=(0,), bounds=(2.0, 6.0),
                   approxann_modes=("K2",), approxann_retrain_epochs=1)
        return replace(base, **kw)

    def copy(self, **changes: Any) -> StudyConfig:
        return replace(self, **changes)

    @property
    def seed(self) -> int:
        """The first seed: the one whose networks fill ``power.json``'s ``networks`` (the earlier content)."""
        return self.seeds[0]

    @property
    def selection_split(self) -> Literal["val", "test"]:
        """The split every choice is made on: ``val`` with a validation split, else ``test``."""
        return "val" if self.val_fraction else "test"

    @property
    def all_bounds(self) -> tuple[float, ...]:
        return tuple(sorted({*self.bounds, self.constraint_pp}))

    def train_config(self, method: Method, seed: int) -> TrainConfig:
        from axhw.training.trainer import TrainConfig

        return TrainConfig(dataset=self.dataset, method=method, epochs=self.epochs, seed=seed, bits=self.bits,
                           limit=self.limit, pas_epochs=self.pas_epochs, batch_size=self.batch_size,
                           val_fraction=self.val_fraction, bias_word=self.bias_word, ntv_biases=self.ntv_biases)


def measure_network(cfg: StudyConfig, seed: int, method: str, ck: Path, meas: Measurer, progress: bool) -> dict[str, Any]:
    """One network's whole grid: accuracy per (mode, voltage) on the selection split (``accuracy``, what choices
    read) and on the test split (``test_accuracy``, what is reported), compute power per mode, storage per
    voltage."""
    from tqdm.auto import tqdm

    from axhw.training.trainer import integer_test_inputs, load_checkpoint

    qnet, x_int = integer_test_inputs(load_checkpoint(ck))
    stored, nominal, _ = storage_bits_split(qnet)  # biases outside the NTV memory leak at nominal voltage
    multiplies = qnet.multiplies_per_inference(x_int)  # convolutions: once per output pixel
    grid = [(m, v) for m in cfg.modes for v in cfg.voltages]
    acc, test = {}, {}
    for m, v in tqdm(grid, desc=f"{cfg.dataset} s{seed} {method} accuracy", disable=not progress, leave=False):
        acc[(m, v)] = meas.accuracy(ck, m, v, seed, cfg.selection_split)
        test[(m, v)] = meas.accuracy(ck, m, v, seed) if cfg.selection_split != "test" else acc[(m, v)]
    compute = {m: meas.compute(ck, m, seed, f"{cfg.dataset}/{method}")
               for m in tqdm(cfg.modes, desc=f"{cfg.dataset} s{seed} {method} gate-level power",
                             disable=not progress, leave=False)}
    tech = SRAMTechnology()
    storage = {v: storage_power(v, stored, cfg.bits, cfg.clock_mhz * 1e6, tech, nominal_bits=nominal)
               for v in cfg.voltages}
    points = []
    for m, v in grid:
        c, s = compute[m]["measured"]["total_w"], storage[v].total_w
        points.append({"mode": m, "voltage_mv": v, **_accuracies(acc[(m, v)], test[(m, v)], acc[("exact", NOMINAL_MV)],
                                                                 cfg.runs), "compute_w": c,
                       "storage_w": s, "joint_w": c * selected_library().node_scale + s})
    return {
        "method": method, "checkpoint": str(ck), "stored_bits": stored, "nominal_bits": nominal, "multiplies_per_inference": multiplies,
        "exact_nominal_accuracy": acc[("exact", NOMINAL_MV)]["accuracy_mean"],
        "exact_nominal_test_accuracy": test[("exact", NOMINAL_MV)]["accuracy_mean"],
        "points": points, "compute": compute,
        "storage": {str(v): {"dynamic_w": s.dynamic_w, "leakage_w": s.leakage_w, "total_w": s.total_w}
                    for v, s in storage.items()},
    }


def _accuracies(sel: dict[str, Any], test: dict[str, Any], ref: dict[str, Any], runs: int) -> dict[str, Any]:
    """A point's accuracies: ``accuracy`` (mean over chips on the selection split, what :func:`choose` reads)
    with its std, per-chip values and sample count, and the same on the test split (``test_*``, what is
    reported); ``vs_reference``: the paired test of this point against the reference (the accurate
    implementation ``ref``) on the selection split's samples and chips (:func:`axhw.power.search.stats.paired_test`),
    for choices that hinge on a few samples."""
    counts, ref_counts = sel.get("correct_counts"), ref.get("correct_counts")
    paired = paired_test(ref_counts, counts, runs) if counts is not None and ref_counts is not None else None
    return {"accuracy": sel["accuracy_mean"], "accuracy_std": sel["accuracy_std"],
            "accuracies": sel.get("accuracies"), "n_samples": None if counts is None else len(counts),
            "vs_reference": paired, "test_accuracy": test["accuracy_mean"],
            "test_accuracy_std": test["accuracy_std"], "test_accuracies": test.get("accuracies")}


def _select(net: dict[str, Any], floor: float, parts: tuple[str, ...] = ("compute", "storage", "joint")) -> dict[str, Any]:
    pts = net["points"]
    pools = {"compute": ([p for p in pts if p["voltage_mv"] == NOMINAL_MV], "compute_w"),
             "storage": ([p for p in pts if p["mode"] == "exact"], "storage_w"), "joint": (pts, "joint_w")}
    return {"floor": floor, **{part: choose(pools[part][0], pools[part][1], floor) for part in parts}}


def choose_configurations(networks: dict[str, dict[str, Any]], cfg: StudyConfig, bp_ref: float | None) -> None:
    """Fill each measured network's ``reference_accuracy``, ``chosen`` (at ``constraint_pp``) and ``by_bound``
    (every bound of the Pareto curves); the reference is its own exact-nominal accuracy, or ``bp_ref`` when
    ``cfg.reference == "bp"`` and one is given."""
    for net in networks.values():
        ref = bp_ref if cfg.reference == "bp" and bp_ref is not None else net["exact_nominal_accuracy"]
        net["reference_accuracy"] = ref
        net["chosen"] = _select(net, bound_floor(ref, cfg.constraint_pp))
        net["by_bound"] = {str(b): _select(net, bound_floor(ref, b), ("compute", "storage")) for b in cfg.all_bounds}


def power_change(a: dict[str, Any] | None, b: dict[str, Any] | None, key: str) -> float | None:
    """Relative power change of ``b`` (AxTrain) against ``a`` (BP), in percent (negative = saving)."""
    if a is None or b is None or a.get(key) is None or b.get(key) is None:
        return None
    return 100.0 * (b[key] / a[key] - 1.0)


def _per_target(cfg: StudyConfig, seed: int, nets: TargetNetworks, single: dict[str, Any], bp_ref: float,
                meas: Measurer) -> dict[str, Any]:
    """Per-target AxTrain: for every bound, each part searched cheapest first, training what it visits."""
    ref_ck = nets.checkpoint("exact", NOMINAL_MV)
    split = cfg.selection_split
    ref = meas.accuracy(ref_ck, "exact", NOMINAL_MV, seed, split)
    reference = ref["accuracy_mean"] if cfg.reference == "own" else bp_ref
    order_c = {m: single["compute"][m]["measured"]["total_w"] for m in cfg.modes}
    storage_w = {float(v): s["total_w"] for v, s in single["storage"].items()}

    def accuracy(c: Any) -> tuple[float, float]:
        r = meas.accuracy(nets.checkpoint(c.mode, c.voltage_mv), c.mode, c.voltage_mv, seed, split)
        return r["accuracy_mean"], r["accuracy_std"]

    def point(c: Any, part: str) -> dict[str, Any]:
        ck = nets.checkpoint(c.mode, c.voltage_mv)
        acc = meas.accuracy(ck, c.mode, c.voltage_mv, seed, split)
        test = meas.accuracy(ck, c.mode, c.voltage_mv, seed) if split != "test" else acc
        comp = meas.compute(ck, c.mode, seed, f"{cfg.dataset}/axtrain-{c.mode}-{c.voltage_mv:g}mV")["measured"]["total_w"] \
            if part != "storage" else None
        s = storage_w[c.voltage_mv]
        return {"mode": c.mode, "voltage_mv": c.voltage_mv, **_accuracies(acc, test, ref, cfg.runs), "compute_w": comp,
                "storage_w": s,
                "joint_w": None if comp is None else comp * selected_library().node_scale + s, "checkpoint": str(ck)}

    def search(floor: float, b: float, parts: tuple[Part, ...]) -> dict[str, Any]:
        row: dict[str, Any] = {"floor": floor}
        for part in parts:
            out = first_feasible(candidates(part, cfg.modes, cfg.voltages, order_c, storage_w,
                                            selected_library().node_scale), accuracy, floor, part, b)
            row[part] = {**out.as_dict(), "point": point(out.chosen, part) if out.chosen is not None else None}
        return row

    bounds: dict[str, Any] = {}
    for b in cfg.all_bounds:
        parts: tuple[Part, ...] = ("compute", "storage", "joint") if b == cfg.constraint_pp and cfg.joint_per_target else \
            ("compute", "storage")
        bounds[str(b)] = search(bound_floor(reference, b), b, parts)
    # Every reading of the paper's "maximum 2% degradation to accurate implementation" at constraint_pp
    # (docs/power.md, "Readings of the bound"): whose accurate implementation (AxTrain's own, or BP's) and points
    # or relative. Candidates already trained for another bound are reused (TargetNetworks caches per target).
    refs = {"own": ref["accuracy_mean"], "bp": bp_ref}
    readings: dict[str, Any] = {}
    for name in READINGS:
        whose, kind = parse_reading(name)
        if refs[whose] != refs[whose]:  # NaN: no BP network in this study
            continue
        floor = bound_floor(refs[whose], cfg.constraint_pp, kind)
        readings[name] = {"reference_accuracy": refs[whose], **search(floor, cfg.constraint_pp, ("compute", "storage"))}
    ref_test = meas.accuracy(ref_ck, "exact", NOMINAL_MV, seed) if split != "test" else ref
    return {"reference_accuracy": reference, "reference_network": str(ref_ck),
            "accurate_implementation_accuracy": ref["accuracy_mean"],
            "accurate_implementation_test_accuracy": ref_test["accuracy_mean"], "bounds": bounds,
            "readings": readings}


def _approxann(cfg: StudyConfig, seed: int, pretrained: dict[str, Path], meas: Measurer) -> dict[str, Any]:
    """ApproxAnn per pretrained network and mode (BP at every bound, act at ``constraint_pp``); best = lowest power."""
    out: dict[str, Any] = {}
    for pre, ck in pretrained.items():
        by_bound: dict[str, Any] = {}
        for b in (cfg.all_bounds if pre == "bp" else (cfg.constraint_pp,)):
            runs = {m: approxann_cached(ck, m, b, seed, cfg.approxann_retrain_epochs, meas.cache, meas,
                                        f"{cfg.dataset}/{pre}", cfg.selection_split) for m in cfg.approxann_modes}
            best = min(runs, key=lambda m: runs[m]["power_w"])
            by_bound[str(b)] = {"modes": runs, "best": best, "power_w": runs[best]["power_w"]}
        out[pre] = by_bound
    return out


def check_modes(modes: tuple[str, ...] | list[str], bits: int) -> None:
    """Fail early (before any training) on a mode that names no multiplier, or a circuit of another width.

    Raises:
        ValueError: one line naming the mode and what is valid.
    """
    from axhw.arith.registry import get_multiplier
    from axhw.power.multiplier.compute import mode_config

    if not modes:
        raise ValueError("modes is empty: give at least 'exact'")
    dup = sorted({m for m in modes if list(modes).count(m) > 1})
    if dup:
        raise ValueError(f"modes lists {', '.join(dup)} more than once")
    for m in modes:
        mode_config(m, bits)  # ValueError for an unknown name or a circuit of another width
        get_multiplier(m, bits)


def check_grid(cfg: StudyConfig) -> None:
    """The checks every search shares (a study here, ``power report --network`` in
    :mod:`axhw.power.search.networks`): the reference point in the grid (``exact`` at the nominal voltage),
    the accuracy bounds, the modes at the word length, the clock and the logic supplies.

    Raises:
        ValueError: one line naming the setting and what is valid.
    """
    if "exact" not in cfg.modes or NOMINAL_MV not in cfg.voltages:
        raise ValueError("modes must include 'exact' and voltages must include the nominal 1100 mV (the reference)")
    if cfg.constraint_pp < 0 or any(b < 0 for b in cfg.bounds):
        raise ValueError(f"accuracy bounds must be >= 0 percentage points, got {cfg.constraint_pp} and {list(cfg.bounds)}")
    check_modes(cfg.modes, cfg.bits)
    if not cfg.clock_mhz > 0:
        raise ValueError(f"clock_mhz={cfg.clock_mhz}: give a positive multiply rate in MHz")
    if cfg.logic_supplies_mv:
        from axhw.power.search.logic_voltage import check_supplies

        check_supplies(cfg.logic_supplies_mv)


def _check(cfg: StudyConfig) -> None:
    if cfg.dataset not in APPLICATIONS:
        raise ValueError(f"unknown dataset {cfg.dataset!r}: valid datasets are {', '.join(APPLICATIONS)}")
    check_grid(cfg)
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise ValueError(f"seeds={list(cfg.seeds)}: give one or more distinct seeds")
    if not 0.0 <= cfg.val_fraction <= 0.5:
        raise ValueError(f"val_fraction={cfg.val_fraction} out of range: valid range is [0, 0.5] (0: choose on the "
                         "test split, the earlier behaviour)")
    if cfg.search not in ("per_target", "single"):
        raise ValueError(f"unknown search {cfg.search!r}: valid searches are 'per_target', 'single'")
    if cfg.reference == "bp" and "bp" not in cfg.methods:
        raise ValueError("reference 'bp' reads BP's accurate implementation: methods must include 'bp'")
    if cfg.search == "per_target" and "axtrain" not in cfg.methods:
        raise ValueError("search 'per_target' trains AxTrain: methods must include 'axtrain'")
    check_modes(("exact", *cfg.approxann_modes), cfg.bits)


def _seed_study(cfg: StudyConfig, seed: int, ledger: Ledger, meas: Measurer, progress: bool) -> dict[str, Any]:
    from axhw.training.trainer import train_cached

    app = APPLICATIONS[cfg.dataset]
    root = Path(cfg.work_dir) / cfg.dataset / f"s{seed}"
    networks: dict[str, dict[str, Any]] = {}
    cks: dict[str, Path] = {}
    nets = TargetNetworks(cfg.train_config("axtrain", seed), root, ledger, progress=False)
    for method in cfg.methods:
        if method == "axtrain":  # one of the per-target networks: act (shared), then pas for the target
            v = cfg.target_voltage_mv if cfg.target_voltage_mv is not None else app.con_voltage_mv
            cks[method] = nets.checkpoint(cfg.target_multiplier, v)
        else:
            tcfg = cfg.train_config(method, seed)
            run_dir = root / f"{method}-e{cfg.epochs}-b{cfg.bits}"
            ledger.note(f"{cfg.dataset}/s{seed}/{method}", trained=not is_finished(run_dir, tcfg))
            cks[method] = train_cached(tcfg, run_dir, resume=True, progress=False)
        networks[method] = measure_network(cfg, seed, method, cks[method], meas, progress)
    bp_ref = networks["bp"]["exact_nominal_accuracy"] if "bp" in networks else None
    choose_configurations(networks, cfg, bp_ref)
    if cfg.logic_supplies_mv:
        logic_supplies(cfg, seed, networks, cks, meas)
    out: dict[str, Any] = {"seed": seed, "networks": networks}
    if cfg.search == "per_target":
        out["per_target"] = _per_target(cfg, seed, nets, networks["axtrain"],
                                        bp_ref if bp_ref is not None else float("nan"), meas)
    if cfg.approxann_modes and cfg.dataset != "mnist_cnn" and "bp" in cks:
        pre = {"bp": cks["bp"], **({"act": nets.act()} if "axtrain" in cfg.methods else {})}
        out["approxann"] = _approxann(cfg, seed, pre, meas)
    return out


def logic_supplies(cfg: StudyConfig, seed: int, networks: dict[str, dict[str, Any]], cks: dict[str, Path],
                    meas: Measurer) -> None:
    """Each network's choices with the logic supply free as well (:mod:`axhw.power.search.logic_voltage`), at
    the headline bound, as ``logic_supply`` beside its SRAM-only ``chosen``."""
    from axhw.power.search.logic_voltage import logic_supply_search, supply_grid

    scale = selected_library().node_scale
    for method, net in networks.items():
        grid = supply_grid(meas, cks[method], cfg.modes, seed, f"{cfg.dataset}/{method}", cfg.logic_supplies_mv,
                           cfg.clock_mhz)
        net["logic_supply"] = {**logic_supply_search(net, grid, bound_floor(net["reference_accuracy"], cfg.constraint_pp),
                                                     scale), "library_mv": float(selected_library().supply_mv)}


@dataclass
class StudyResult:
    """Everything :func:`run_study` measured (:func:`axhw.power.search.aggregate.study_dict` makes it the
    content of ``power.json``)."""

    config: StudyConfig
    per_seed: dict[int, dict[str, Any]] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=dict)

    @property
    def networks(self) -> dict[str, dict[str, Any]]:
        """BP and single-network AxTrain of the first seed (the earlier content of ``power.json``)."""
        return self.per_seed[self.config.seed]["networks"]



def run_study(cfg: StudyConfig, progress: bool = True, backend: Literal["local", "ray"] = "local",
              address: str | None = None, workers: int | None = None) -> StudyResult:
    """Train the networks (reused when present), measure accuracy and power, search minimum-power modes.

    By default the seeds run one after another in this process. ``backend="ray"`` (Ray at ``address``) or
    ``workers`` > 1 spread them over worker processes (:mod:`axhw.power.search.backend`): the same results,
    merged in seed order; only the cost fields differ."""
    _check(cfg)
    ledger = Ledger()
    meas = Measurer(ResultCache(Path(cfg.work_dir) / "results"), ledger, cfg.bits, cfg.n_pairs, cfg.clock_mhz,
                    cfg.timing, cfg.runs)
    result = StudyResult(cfg)
    if backend == "local" and workers in (None, 1):
        for seed in cfg.seeds:
            result.per_seed[seed] = _seed_study(cfg, seed, ledger, meas, progress)
    else:
        from axhw.power.search.backend import run_seeds

        result.per_seed = run_seeds(cfg, ledger, backend, address, workers, progress, seed_study=_seed_study)
    result.cost = _cumulative_cost(cfg, ledger.as_dict())
    return result


def _cumulative_cost(cfg: StudyConfig, this_run: dict[str, Any]) -> dict[str, Any]:
    """This invocation's cost and the sum over every invocation of the same study (a killed report and its
    resumption add up; a cached re-run adds nothing but its few seconds), kept in the work folder."""
    import hashlib
    import json

    from axhw.common.io import atomic_write_json

    ident = {k: v for k, v in config_dict(cfg).items() if k != "work_dir"}
    path = Path(cfg.work_dir) / cfg.dataset / f"cost-{hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:10]}.json"
    keys = ("trainings_run", "epochs_trained", "gate_level_simulations", "evaluations_run", "wall_s")
    prev = json.loads(path.read_text()) if path.is_file() else {"invocations": 0, **{k: 0 for k in keys}}
    cum = {"invocations": prev["invocations"] + 1, **{k: prev[k] + this_run[k] for k in keys}}
    atomic_write_json(cum, path)
    return {"this_run": this_run, "cumulative": cum}


def mean_or_none(xs: list[float | None]) -> float | None:
    """Mean of the values that are not None (None when there are none)."""
    vals = [x for x in xs if x is not None]
    return statistics.fmean(vals) if vals else None


def config_dict(cfg: StudyConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d["work_dir"] = str(d["work_dir"])
    return d
