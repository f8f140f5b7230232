"""``make demo``: what AxTrain buys, measured on the embedded default data (breast cancer, WDBC).

1. The hardware models: the multipliers' measured error statistics, what NTV storage does to 8-bit words.
2. BP against AxTrain trained for the data set's aggressive NTV voltage (Table 1: 400 mV, 10 % bit flips),
   several seeds, evaluated on the integer golden model (``axhw evaluate``'s numbers) under K1 and NTV.
3. Minimum-power SRAM voltage: accuracy against supply (mean over seeds and chips), the SRAM power of each
   voltage from :mod:`axhw.power.sram_energy`, and the lowest-power voltage whose accuracy stays within
   2 points of the network's own exact 1.1 V accuracy (:func:`axhw.power.search.study.choose`, as in Fig. 9).
4. Minimum-power multiplier at gate level (when Yosys, Icarus, OpenSTA and osu018 are installed): every
   mode synthesized, simulated on the first seed's networks' own operand streams and priced by OpenSTA
   (:func:`axhw.power.multiplier.compute.network_compute_power`, synthesis cached), the lowest-power mode within
   2 points of the network's exact 1.1 V accuracy chosen.
5. Silicon: the K2 multiplier's generated RTL simulated exhaustively against the model (when a simulator
   is installed).

It ends with one line stating the measured gain; every number in it comes from the tables above it.

Why this target, measured (30 epochs, 50 chips, seeds 0-9, ``exact`` multiplier): at 400 mV BP keeps
0.61-0.69 accuracy and AxTrain 0.80-0.85, AxTrain ahead on 10 of 10 seeds. At K1 (8-bit) the demo's BP
network already matches its exact accuracy (0.97), so there is nothing for AxTrain to recover there; the
K1 column shows it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from axhw.arith.fixedpoint import calibrate
from axhw.arith.multipliers import error_stats
from axhw.arith.registry import get_multiplier
from axhw.arith.sram import NOMINAL_MV, NTVStorage, flip_probability
from axhw.common.tables import markdown_table

__all__ = ["DemoConfig", "DemoResult", "gain_line", "hardware_tables", "measure_compute", "rtl_check", "run_demo",
           "train_and_measure"]

#: The paper's approximate modes in order of aggressiveness, plus exact.
MODES = ("exact", "K4", "K3", "K2", "K1")
#: Supply points of the paper (nominal, conservative and aggressive NTV anchors).
VOLTAGES_MV = (1100, 850, 660, 400)
#: The demo's application (embedded in scikit-learn, so the demo needs no download).
DATASET = "breast_cancer"
#: SRAM supplies searched for the minimum-power voltage (the paper's anchors and 50 mV steps between).
SWEEP_MV = (1100.0, 1000.0, 950.0, 900.0, 850.0, 800.0, 750.0, 700.0, 660.0, 600.0, 550.0, 500.0, 450.0, 400.0)
#: Multiply (and weight-read) rate of the power model, as in ``axhw power report``.
CLOCK_MHZ = 100.0


def _default_data() -> torch.Tensor:
    from sklearn.datasets import load_breast_cancer

    x = torch.tensor(load_breast_cancer().data, dtype=torch.float64)
    return (x - x.mean(0)) / x.std(0)


def hardware_tables(bits: int = 8, seed: int = 0) -> str:
    """Two Markdown tables: multiplier modes (error statistics and the error of real dot products) and
    NTV storage (flip probability, measured flip rate, value error) on the standardized WDBC features."""
    x = _default_data()
    fmt = calibrate(x, bits)
    codes = fmt.quantize(x)
    # A real dot-product workload: the 30 features of each sample against a seeded random weight matrix.
    g = torch.Generator().manual_seed(seed)
    w_float = torch.randn(x.shape[1], 16, generator=g, dtype=torch.float64) * 0.3
    w = calibrate(w_float, bits).quantize(w_float)
    exact = get_multiplier("exact", bits).matmul(codes, w).to(torch.float64)
    mult_rows = []
    for mode in MODES:
        m = get_multiplier(mode, bits)
        s = error_stats(m)
        approx = m.matmul(codes, w).to(torch.float64)
        rel = ((approx - exact).abs().sum() / exact.abs().sum()).item()
        mult_rows.append([mode, m.name, f"{100 * s.mre:.2f}", f"{100 * s.max_re:.1f}",
                          f"{100 * s.mean_rel_error:+.3f}", f"{s.nmed:.1e}", f"{100 * rel:.2f}"])
    ntv_rows = []
    for v in VOLTAGES_MV:
        st = NTVStorage(v)
        out = st.corrupt(codes, fmt, torch.Generator().manual_seed(seed))
        flipped = fmt.to_words(out) ^ fmt.to_words(codes)
        rate = sum(((flipped >> b) & 1).sum().item() for b in range(bits)) / (flipped.numel() * bits)
        err = (fmt.dequantize(out, torch.float64) - fmt.dequantize(codes, torch.float64)).abs().mean().item()
        ntv_rows.append([v, f"{st.flip_p:.2e}", f"{rate:.2e}", f"{err:.4f}"])
    return "\n".join([
        f"axhw hardware models on the breast-cancer features ({x.shape[0]} x {x.shape[1]}, {fmt}):",
        "",
        markdown_table(["mode", "model", "MRE %", "max RE %", "bias %", "NMED", "dot-product error %"], mult_rows),
        "",
        markdown_table(["SRAM mV", "p(flip)", "measured flip rate", "mean abs value error"], ntv_rows),
    ])


@dataclass(frozen=True)
class DemoConfig:
    """The demo's training and evaluation budget.

    Attributes:
        seeds: trained pairs (BP, AxTrain) with training seeds ``seed .. seed + seeds - 1``.
        seed: first training seed; NTV chips are seeded ``seed + run`` (as ``axhw evaluate``).
        epochs, pas_epochs: training budget (AxTrain: act, then pas for ``pas_epochs`` at the target).
        runs: NTV chip instances per evaluation.
        bits: word length of weights, activations and the multiplier.
        target_mv: AxTrain's pas-phase SRAM voltage (None: the data set's aggressive Table 1 voltage).
        constraint_pp: allowed accuracy loss (points) for the minimum-power voltage.
        sweep_mv: SRAM supplies searched (must include the nominal 1100 mV: the reference).
        n_pairs: operand pairs simulated at gate level per (network, mode).
        val_fraction: training samples held out as the validation split the two choices (minimum-power
            voltage and mode) are made on; the tables report the test split (docs/power.md, "Selection on
            validation data").
    """

    seeds: int = 5
    seed: int = 0
    epochs: int = 30
    pas_epochs: int = 5
    runs: int = 50
    bits: int = 8
    target_mv: float | None = None
    constraint_pp: float = 2.0
    sweep_mv: tuple[float, ...] = SWEEP_MV
    n_pairs: int = 1024
    val_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.seeds < 1 or self.runs < 1:
            raise ValueError(f"seeds={self.seeds}, runs={self.runs} out of range: both must be >= 1")
        if NOMINAL_MV not in self.sweep_mv:
            raise ValueError(f"sweep_mv must include the nominal {NOMINAL_MV:g} mV (the reference)")

    @property
    def target(self) -> float:
        from axhw.data.registry import APPLICATIONS

        return float(self.target_mv if self.target_mv is not None else APPLICATIONS[DATASET].agg_voltage_mv)

    @property
    def voltages(self) -> tuple[float, ...]:
        """Every voltage evaluated: the sweep plus the target (sorted high to low)."""
        return tuple(sorted({*self.sweep_mv, self.target}, reverse=True))


#: The two networks compared: label -> training method.
NETWORKS = {"BP": "bp", "AxTrain": "axtrain"}


@dataclass
class DemoResult:
    """Every measured number of steps 2 to 4.

    ``accuracy[label][seed][(mode, mV)]`` is the mean test accuracy over ``runs`` chips of one trained
    network, ``val_accuracy`` the same on its validation split (what the choices read); ``storage_w[mV]`` is the
    SRAM power of the (shared) network topology at that supply.
    """

    config: DemoConfig
    accuracy: dict[str, dict[int, dict[tuple[str, float], float]]] = field(default_factory=dict)
    val_accuracy: dict[str, dict[int, dict[tuple[str, float], float]]] = field(default_factory=dict)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    stored_bits: int = 0
    storage_w: dict[float, float] = field(default_factory=dict)
    checkpoints: dict[tuple[str, int], Path] = field(default_factory=dict)
    #: label -> mode -> multiplier power (W) at gate level on the first seed's network; empty if not measured.
    compute_w: dict[str, dict[str, float]] = field(default_factory=dict)
    compute_seconds: float = 0.0

    def mean(self, label: str, mode: str, mv: float, split: str = "test") -> float:
        """Mean over seeds of the chip-mean accuracy on the ``test`` or ``val`` split."""
        acc = self.accuracy if split == "test" else self.val_accuracy
        return statistics.fmean(a[(mode, mv)] for a in acc[label].values())

    @property
    def selection_split(self) -> str:
        """``val`` where the networks hold a validation split out, else ``test`` (the earlier behaviour)."""
        return "val" if self.val_accuracy else "test"

    def wins(self, mode: str, mv: float) -> int:
        """Seeds on which AxTrain is more accurate than BP at (mode, mV)."""
        return sum(self.accuracy["AxTrain"][s][(mode, mv)] > self.accuracy["BP"][s][(mode, mv)]
                   for s in self.accuracy["BP"])

    def min_power(self, label: str) -> dict[str, float] | None:
        """The lowest-SRAM-power supply (exact multiplier) whose seed-mean accuracy is within
        ``constraint_pp`` points of the same network's seed-mean exact 1.1 V accuracy, both on the validation
        split; None if none is. ``accuracy`` is the chosen point's test accuracy."""
        from axhw.power.search.study import choose

        sel = self.selection_split
        floor = self.mean(label, "exact", NOMINAL_MV, sel) - self.config.constraint_pp / 100.0
        points = [{"voltage_mv": v, "accuracy": self.mean(label, "exact", v, sel), "storage_w": self.storage_w[v],
                   "test_accuracy": self.mean(label, "exact", v)} for v in self.config.voltages]
        c = choose(points, "storage_w", floor)
        return None if c is None else {**c, "accuracy": c["test_accuracy"], "val_accuracy": c["accuracy"]}

    def min_compute(self, label: str) -> dict[str, float | str] | None:
        """The lowest-power multiplier mode (1.1 V; gate-level power of the first seed's network) whose
        seed-mean accuracy is within ``constraint_pp`` points of the network's exact accuracy (validation split;
        ``accuracy`` is the chosen point's test accuracy)."""
        from axhw.power.search.study import choose

        if label not in self.compute_w:
            return None
        sel = self.selection_split
        floor = self.mean(label, "exact", NOMINAL_MV, sel) - self.config.constraint_pp / 100.0
        points = [{"mode": m, "accuracy": self.mean(label, m, NOMINAL_MV, sel), "compute_w": w,
                   "test_accuracy": self.mean(label, m, NOMINAL_MV)} for m, w in self.compute_w[label].items()]
        c = choose(points, "compute_w", floor)
        return None if c is None else {**c, "accuracy": c["test_accuracy"], "val_accuracy": c["accuracy"]}


def train_and_measure(out_dir: str | Path, cfg: DemoConfig, emit: Callable[[str], None] | None = None) -> DemoResult:
    """Train (or reuse) BP and AxTrain for every seed, evaluate them on the integer model, price the SRAM."""
    from axhw.power.sram_energy import storage_bits_split, storage_power
    from axhw.training.evaluate import evaluate
    from axhw.training.trainer import TrainConfig, load_checkpoint, quantized_from_checkpoint, train_cached

    root = Path(out_dir)
    res = DemoResult(cfg)
    seeds = range(cfg.seed, cfg.seed + cfg.seeds)
    t0 = time.perf_counter()
    checkpoints: dict[tuple[str, int], Path] = {}
    for s in seeds:
        for label, method in NETWORKS.items():
            if method == "bp":
                tcfg = TrainConfig(dataset=DATASET, method="bp", epochs=cfg.epochs, seed=s, bits=cfg.bits,
                                   val_fraction=cfg.val_fraction)
            else:
                tcfg = TrainConfig(dataset=DATASET, method="axtrain", epochs=cfg.epochs, pas_epochs=cfg.pas_epochs,
                                   voltage_mv=cfg.target, seed=s, bits=cfg.bits, val_fraction=cfg.val_fraction)
            val = f"-v{cfg.val_fraction:g}" if cfg.val_fraction else ""
            out = root / f"{method}-{tcfg.multiplier}-{tcfg.voltage_mv:g}mV-e{cfg.epochs}-s{s}-b{cfg.bits}{val}"
            train_cached(tcfg, out)
            checkpoints[(label, s)] = out / "checkpoint.pt"
    res.checkpoints = checkpoints
    res.train_seconds = time.perf_counter() - t0
    if emit:
        emit(f"Trained {len(checkpoints)} networks ({cfg.seeds} seeds x BP, AxTrain; {cfg.epochs} epochs) "
             f"in {res.train_seconds:.1f} s, kept in {root}")
    t0 = time.perf_counter()
    points = [*((m, NOMINAL_MV) for m in MODES), *(("exact", v) for v in cfg.voltages if v != NOMINAL_MV)]
    for (label, s), ck in checkpoints.items():
        res.accuracy.setdefault(label, {})[s] = {
            (m, v): evaluate(ck, m, v, runs=cfg.runs, seed=cfg.seed).accuracy_mean for m, v in points
        }
        if cfg.val_fraction:
            res.val_accuracy.setdefault(label, {})[s] = {
                (m, v): evaluate(ck, m, v, runs=cfg.runs, seed=cfg.seed, split="val").accuracy_mean for m, v in points
            }
    res.eval_seconds = time.perf_counter() - t0
    stored, nominal, _ = storage_bits_split(quantized_from_checkpoint(load_checkpoint(checkpoints[("BP", cfg.seed)])))
    res.stored_bits = stored
    res.storage_w = {v: storage_power(v, stored, cfg.bits, CLOCK_MHZ * 1e6, nominal_bits=nominal).total_w
                     for v in cfg.voltages}
    return res


def _acc(x: float) -> str:
    return f"{x:.3f}"


def accuracy_table(res: DemoResult) -> str:
    """Step 2: per seed and network, accuracy at exact/K1 (1.1 V) and at the NTV anchors and the target."""
    cfg = res.config
    ntv = sorted({float(v) for v in (*VOLTAGES_MV, cfg.target) if v != NOMINAL_MV and v in cfg.voltages}, reverse=True)
    cols = [("exact", NOMINAL_MV), ("K1", NOMINAL_MV), *(("exact", float(v)) for v in ntv)]
    header = ["seed", "network", "exact 1.1 V", "K1 1.1 V",
              *[f"NTV {v:g} mV" + (" (target)" if v == cfg.target else "") for v in ntv]]
    rows = []
    for s in res.accuracy["BP"]:
        for label in NETWORKS:
            rows.append([s, label, *(_acc(res.accuracy[label][s][c]) for c in cols)])
    for label in NETWORKS:
        rows.append(["mean", label, *(_acc(res.mean(label, *c)) for c in cols)])
    rows.append(["", "AxTrain ahead on", *(f"{res.wins(*c)}/{cfg.seeds} seeds" for c in cols)])
    return (f"Test accuracy on the integer hardware model: BP vs AxTrain trained for {cfg.target:g} mV "
            f"(breast cancer's aggressive NTV voltage, Table 1); {cfg.epochs} epochs, NTV: mean over "
            f"{cfg.runs} chips (evaluated in {res.eval_seconds:.1f} s):\n\n" + markdown_table(header, rows))


def power_table(res: DemoResult) -> str:
    """Step 3: seed-mean accuracy against SRAM voltage with the SRAM power; each network's choice marked."""
    cfg = res.config
    chosen = {label: res.min_power(label) for label in NETWORKS}
    rows = []
    for v in cfg.voltages:
        cells = [f"{v:g}", f"{flip_probability(v):.1e}", f"{1e6 * res.storage_w[v]:.1f}"]
        for label in NETWORKS:
            c = chosen[label]
            mark = " <- min power" if c is not None and c["voltage_mv"] == v else ""
            cells.append(_acc(res.mean(label, "exact", v)) + mark)
        rows.append(cells)
    sel = res.selection_split
    floors = ", ".join(f"{label} {res.mean(label, 'exact', NOMINAL_MV, sel) - cfg.constraint_pp / 100:.3f}"
                       for label in NETWORKS)
    on = ("chosen on the validation split (held out of training), test accuracy shown" if sel == "val"
          else "chosen on the test split")
    return (f"Minimum-power SRAM voltage (exact multiplier; accuracy = mean over {cfg.seeds} seeds x {cfg.runs} "
            f"chips; {on}; allowed: {cfg.constraint_pp:g} points below the network's own exact 1.1 V "
            f"{sel} accuracy, i.e. {floors}). SRAM power from the 65 nm voltage model (axhw.power.sram_energy: {res.stored_bits} "
            f"stored bits, one {cfg.bits}-bit weight read per multiply at {CLOCK_MHZ:g} MHz):\n\n"
            + markdown_table(["SRAM mV", "p(flip)", "SRAM power uW", *[f"{lb} accuracy" for lb in NETWORKS]],
                             rows))


def measure_compute(res: DemoResult) -> str | None:
    """Gate-level multiplier power of every mode on the first seed's BP and AxTrain operand streams, into
    ``res.compute_w``; returns why it was skipped (tools missing), or None."""
    from axhw.power.flow.tools import ToolMissing, find_toolchain

    try:
        find_toolchain()
    except ToolMissing as exc:
        return f"Gate-level multiplier power: skipped ({exc})."
    t0 = time.perf_counter()
    try:
        _measure_compute(res)
    except (RuntimeError, OSError) as exc:  # a tool that fails must not hide the measured gain
        res.compute_w.clear()
        return f"Gate-level multiplier power: failed ({str(exc).splitlines()[0]})."
    res.compute_seconds = time.perf_counter() - t0
    return None


def _measure_compute(res: DemoResult) -> None:
    from axhw.power.multiplier.compute import network_compute_power
    from axhw.training.trainer import integer_test_inputs, load_checkpoint

    cfg = res.config
    for label in NETWORKS:
        qnet, x_int = integer_test_inputs(load_checkpoint(res.checkpoints[(label, cfg.seed)]))
        res.compute_w[label] = {}
        for mode in MODES:
            with torch.no_grad():
                r = network_compute_power(qnet, x_int, mode, cfg.bits, cfg.n_pairs, cfg.seed, f"demo/{label}")
            if r.mismatches:
                raise RuntimeError(f"gate-level {mode} netlist disagrees with the model on {r.mismatches} pairs")
            res.compute_w[label][mode] = r.measured.total_w


def compute_table(res: DemoResult) -> str:
    """Step 4: accuracy (1.1 V, mean over seeds) and gate-level power per multiplier mode, choice marked."""
    cfg = res.config
    chosen = {label: res.min_compute(label) for label in NETWORKS}
    rows = []
    for mode in MODES:
        cells = [mode]
        for label in NETWORKS:
            c = chosen[label]
            mark = " <- min power" if c is not None and c["mode"] == mode else ""
            cells += [_acc(res.mean(label, mode, NOMINAL_MV)), f"{1e6 * res.compute_w[label][mode]:.0f}{mark}"]
        rows.append(cells)
    header = ["mode", *[f"{lb} {what}" for lb in NETWORKS for what in ("accuracy", "power uW")]]
    from axhw.power.flow.tools import selected_library

    return (f"Minimum-power multiplier at 1.1 V (gate level: {selected_library().label} netlists simulated on {cfg.n_pairs} operand "
            f"pairs of the seed-{cfg.seed} networks' own test streams, OpenSTA, {CLOCK_MHZ:g} MHz; measured in "
            f"{res.compute_seconds:.1f} s; test accuracy = mean over {cfg.seeds} seeds; the choice is made on "
            f"the {res.selection_split} split):\n\n"
            + markdown_table(header, rows))


def gain_line(res: DemoResult) -> str:
    """One line with the measured gain, computed from ``res`` only (nothing in it is a constant)."""
    cfg = res.config
    t = cfg.target
    bp, ax = res.mean("BP", "exact", t), res.mean("AxTrain", "exact", t)
    parts = [f"Measured gain, AxTrain vs BP (breast cancer, {t:g} mV SRAM = {100 * flip_probability(t):.2g}% bit "
             f"flips): accuracy {ax:.3f} vs {bp:.3f} ({100 * (ax - bp):+.1f} points, AxTrain ahead on "
             f"{res.wins('exact', t)}/{cfg.seeds} seeds; {cfg.seeds} seed{'s' * (cfg.seeds != 1)} x {cfg.runs} NTV chips)"]
    cb, ca = res.min_power("BP"), res.min_power("AxTrain")
    if cb is not None and ca is not None:
        change = 100.0 * (ca["storage_w"] / cb["storage_w"] - 1.0)
        parts.append(f"minimum-power configuration within {cfg.constraint_pp:g} points of each network's 1.1 V "
                     f"accuracy: SRAM {ca['voltage_mv']:g} vs {cb['voltage_mv']:g} mV, {1e6 * ca['storage_w']:.1f} "
                     f"vs {1e6 * cb['storage_w']:.1f} uW ({change:+.0f}%)")
    else:
        missing = " and ".join(lb for lb, c in (("BP", cb), ("AxTrain", ca)) if c is None)
        parts.append(f"no SRAM voltage keeps {missing} within {cfg.constraint_pp:g} points")
    mb, ma = res.min_compute("BP"), res.min_compute("AxTrain")
    if mb is not None and ma is not None:
        change = 100.0 * (float(ma["compute_w"]) / float(mb["compute_w"]) - 1.0)
        parts.append(f"multiplier {ma['mode']} vs {mb['mode']}, {1e6 * float(ma['compute_w']):.0f} vs "
                     f"{1e6 * float(mb['compute_w']):.0f} uW ({change:+.0f}%, gate level)")
    parts.append(f"cost at 1.1 V: {res.mean('AxTrain', 'exact', NOMINAL_MV):.3f} vs "
                 f"{res.mean('BP', 'exact', NOMINAL_MV):.3f}")
    return "; ".join(parts) + "."


def rtl_check() -> str:
    """Exhaustive 8-bit check of the generated K2 multiplier against the model, if a simulator exists."""
    from axhw.rtl.generate import MultiplierConfig
    from axhw.rtl.simulators import available_simulators
    from axhw.rtl.verify import check

    usable = [name for name, info in available_simulators().items() if info.available]
    if not usable:
        return "RTL: no simulator installed (apt-get install iverilog); skipped."
    cfg = MultiplierConfig("drum", bits=8, k=2, signed=True)
    sim = "icarus" if "icarus" in usable else usable[0]
    try:
        res = check(cfg, sim)  # all 65,536 pairs for 8 bits
    except (RuntimeError, OSError) as exc:  # a broken tool install must not hide the measured gain
        return f"RTL: {sim} could not run the check: {str(exc).splitlines()[0]}"
    return f"RTL: {res.describe()}"


def _print(text: str) -> None:
    print(text, flush=True)


def run_demo(out_dir: str | Path | None = None, bits: int = 8, seed: int = 0, config: DemoConfig | None = None,
             emit: Callable[[str], None] | None = _print, rtl: bool = True, gate_level: bool = True) -> str:
    """Run the demo's steps, handing each block of text to ``emit`` as soon as its step finishes.

    ``out_dir`` holds the trained networks (default ``cache_dir("demo")``; networks trained with the same
    configuration are reused). Returns the whole text; its last line is :func:`gain_line`.
    """
    from axhw.common.paths import cache_dir

    cfg = config or DemoConfig(bits=bits, seed=seed)
    root = Path(out_dir) if out_dir is not None else cache_dir("demo")
    blocks: list[str] = []

    def step(text: str) -> None:
        blocks.append(text)
        if emit:
            emit(text + "\n")

    step(hardware_tables(cfg.bits, cfg.seed))
    res = train_and_measure(root, cfg, emit=step)
    step(accuracy_table(res))
    step(power_table(res))
    if gate_level:
        skipped = measure_compute(res)
        step(skipped or compute_table(res))
    if rtl:
        step(rtl_check())
    line = gain_line(res)
    blocks.append(line)
    if emit:
        emit(line)
    return "\n\n".join(blocks)

