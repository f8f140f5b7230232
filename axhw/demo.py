"""``make demo``: the whole pipeline on the embedded default data (breast cancer, WDBC).

1. The hardware models: the multipliers' measured error statistics, what NTV storage does to 8-bit words.
2. Hardware-oriented training: BP vs AxTrain (trained for K2 and for 660 mV) evaluated on the integer golden
   model under every multiplier mode and NTV voltage.
3. Silicon: the K2 multiplier's generated RTL simulated exhaustively against the model (when a simulator
   is installed).
"""

from __future__ import annotations

import torch

from axhw.fixedpoint import calibrate
from axhw.multipliers import error_stats, get_multiplier
from axhw.report import markdown_table
from axhw.sram import NTVStorage

__all__ = ["hardware_tables", "run_demo", "training_table"]

#: The paper's approximate modes in order of aggressiveness, plus exact.
MODES = ("exact", "K4", "K3", "K2", "K1")
#: Supply points of the paper (nominal, conservative and aggressive NTV anchors).
VOLTAGES_MV = (1100, 850, 660, 400)


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


def training_table(out_dir: str, epochs: int = 15, runs: int = 20, progress: bool = False) -> str:
    """Train BP and AxTrain on breast cancer and tabulate integer-model accuracy per hardware mode."""
    from pathlib import Path

    from axhw.evaluate import evaluate
    from axhw.train import TrainConfig, train

    root = Path(out_dir)
    nets = {
        "BP": TrainConfig(method="bp", epochs=epochs),
        "AxTrain (K2)": TrainConfig(method="axtrain", epochs=epochs, pas_epochs=3, multiplier="K2"),
        "AxTrain (660 mV)": TrainConfig(method="axtrain", epochs=epochs, pas_epochs=3, voltage_mv=660),
    }
    cols = [("exact", 1100.0), ("K4", 1100.0), ("K3", 1100.0), ("K2", 1100.0), ("K1", 1100.0),
            ("exact", 660.0), ("exact", 400.0)]
    rows = []
    for label, cfg in nets.items():
        d = root / label.split()[0].lower() / cfg.multiplier / f"{cfg.voltage_mv:g}"
        if not (d / "metrics.json").exists():
            train(cfg, d, progress=progress)
        cells = [label]
        for mult, v in cols:
            r = evaluate(d / "checkpoint.pt", mult, v, runs=runs)
            cells.append(f"{r.accuracy_mean:.3f}" + (f" ± {r.accuracy_std:.3f}" if r.accuracy_std else ""))
        rows.append(cells)
    header = ["network", *[m if v == 1100.0 else f"NTV {v:g} mV" for m, v in cols]]
    return (f"Test accuracy on the integer hardware model ({epochs} epochs, NTV: {runs} chips):\n\n"
            + markdown_table(header, rows))


def rtl_check() -> str:
    """Exhaustive 8-bit check of the generated K2 multiplier against the model, if a simulator exists."""
    from axhw.rtl.generate import MultiplierConfig
    from axhw.rtl.simulators import available_simulators
    from axhw.rtl.verify import check

    usable = [name for name, info in available_simulators().items() if info.available]
    if not usable:
        return "RTL: no simulator installed (apt-get install iverilog); skipped."
    cfg = MultiplierConfig("drum", bits=8, k=2, signed=True)
    res = check(cfg, "icarus" if "icarus" in usable else usable[0])  # all 65,536 pairs for 8 bits
    return f"RTL: {res.describe()}"


def run_demo(out_dir: str = "build/demo", bits: int = 8, seed: int = 0) -> str:
    return "\n\n".join([hardware_tables(bits, seed), training_table(out_dir), rtl_check()])
