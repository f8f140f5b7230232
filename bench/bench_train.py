"""Benchmark: time per training step of AxTrain-act and AxTrain-pas relative to BP.

Timed with :mod:`harness` (bench/harness.py): per network, one BP, one act and one pas step are interleaved
in a shuffled order per round (each method trains its own model copy); reported are the median step times
and the median and spread of the per-round ratios act/BP and pas/BP, with thread count and load.

Goals (issue 3): act <= 3x BP for the MLPs and <= 6x for LeNet-5; pas with DRUM <= 1.5x BP, judged on the
median per-round ratio. Synthetic inputs of the right shapes: step time does not depend on the values.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from harness import header, interleaved_times, summarize

from axhw.io import atomic_write_json
from axhw.models import build_model
from axhw.nn import HardwareConfig, approx_layers, calibrate_model, set_hardware
from axhw.runtime import tune_allocator
from axhw.train import train_step

CASES = {"breast_cancer": ((30,), 2, 32), "mnist_mlp": ((784,), 10, 128), "mnist_cnn": ((1, 28, 28), 10, 64)}


def layer_macs(app: str) -> list[tuple[str, int]]:
    """(kind, multiply-accumulates per sample) of each Linear/Conv2d layer in forward order."""
    shape, _, _ = CASES[app]
    model = build_model(app)
    out: list[tuple[str, int]] = []

    def hook(m: torch.nn.Module, _inp: tuple[torch.Tensor, ...], res: torch.Tensor) -> None:
        out.append(("linear" if isinstance(m, torch.nn.Linear) else "conv", res[0].numel() * m.weight[0].numel()))

    handles = [m.register_forward_hook(hook) for m in approx_layers(model)]  # type: ignore[attr-defined]
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    for h in handles:
        h.remove()
    return out


def act_mac_floor(app: str) -> dict[str, float]:
    """Arithmetic lower bound of act/BP: multiply-accumulates per sample of one step, counted analytically.

    BP: forward F, weight gradients F, input gradients F - F_1 (no gradient into the data). Exact S (eq. 5)
    adds, for K outputs: the K deltas through every layer but the first (K (F - F_1)) and their backward
    (2x); per-sample gradients of every convolution (K F_l, backward 2x, 1x for the first layer); the linear
    closed form ``|a| |W|`` (F_l, backward 2x, 1x for the first). Any exact method pays these (the paper's
    R-operator included); BP kernels at peak speed would make act/BP at least this ratio.
    """
    k = CASES[app][1]
    layers = layer_macs(app)
    f = sum(m for _, m in layers)
    f1 = layers[0][1]
    bp = 3 * f - f1
    extra = 3 * k * (f - f1)
    for i, (kind, m) in enumerate(layers):
        reps = 2 if i == 0 else 3
        extra += reps * (k * m if kind == "conv" else m)
    return {"bp_macs_per_sample": bp, "act_macs_per_sample": bp + extra, "act_over_bp_floor": (bp + extra) / bp}


def make_step(app: str, method: str, multiplier: str, voltage: float) -> Callable[[], None]:
    """One training step of ``method`` (bp, act or pas) on its own model and optimizer, warmed up."""
    shape, classes, batch = CASES[app]
    torch.manual_seed(0)
    x = torch.randn(batch, *shape)
    y = torch.randint(0, classes, (batch,))
    model = build_model(app)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    if method == "pas":
        set_hardware(model, HardwareConfig(mode="hardware", multiplier=multiplier, voltage_mv=voltage))
        calibrate_model(model, x)
        for i, layer in enumerate(approx_layers(model)):
            layer.generator = torch.Generator().manual_seed(i)
    model.train()
    gamma = 0.01 if method == "act" else 0.0
    for _ in range(2):
        train_step(model, opt, x, y, gamma)
    return lambda: train_step(model, opt, x, y, gamma)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/train.json"))
    ap.add_argument("--rounds", "--repeats", dest="rounds", type=int, default=31)
    ap.add_argument("--multiplier", default="K2")
    ap.add_argument("--voltage", type=float, default=660.0)
    args = ap.parse_args()
    tuned = tune_allocator()
    results = {}
    load_before = os.getloadavg()
    for app in CASES:
        fns = {m: make_step(app, m, args.multiplier, args.voltage) for m in ("bp", "act", "pas")}
        summary = summarize(interleaved_times(fns, args.rounds), [("act", "bp"), ("pas", "bp")])
        med = summary["ratio_medians"]
        results[app] = {"batch": CASES[app][2], **summary,
                        "act_over_bp": med["act_over_bp"], "pas_over_bp": med["pas_over_bp"],
                        "arithmetic": act_mac_floor(app)}
    out = {**header("training step", load_before, allocator_tuned=tuned),
           "multiplier": args.multiplier, "voltage_mv": args.voltage,
           "rounds": args.rounds, "results": results,
           "goals": {"act_over_bp_mlp": 3.0, "act_over_bp_lenet": 6.0, "pas_over_bp": 1.5}}
    atomic_write_json(out, args.out)
    print(json.dumps({app: {"seconds_median": r["seconds_median"], "ratios": r["ratios"]}
                      for app, r in results.items()}, indent=2))
    print(json.dumps({"loadavg": [out["machine"]["loadavg_before"], out["machine"]["loadavg_after"]]}))


if __name__ == "__main__":
    main()
