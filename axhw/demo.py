"""``make demo``: the hardware models at work on the embedded default data (breast cancer, WDBC).

Shows what each approximate mode costs in accuracy terms before any training: the multipliers' measured
error statistics, and what NTV storage does to 8-bit words of real data.
"""

from __future__ import annotations

import torch

from axhw.fixedpoint import calibrate
from axhw.multipliers import error_stats, get_multiplier
from axhw.report import markdown_table
from axhw.sram import NTVStorage

__all__ = ["hardware_tables"]

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
