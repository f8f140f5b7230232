"""Benchmark: time per training step of AxTrain-act and AxTrain-pas relative to BP.

Timed with :mod:`harness` (bench/harness.py): per network, one sample of each method is interleaved in a
shuffled order per round (each method trains its own model copy; a sample is as many consecutive steps as
BP runs in ``--sample-seconds``, reported per step); reported are the median step times and the median and
spread of the per-round ratios act/BP and pas/BP, with thread count and load.

Methods: ``bp``, ``act``, ``pas`` (the fused hardware forward of :mod:`axhw.nn.fused`) and ``pas_eager``
(the same step on the eager integer path, ``axhw.nn.fused.ENABLED = False``: the before of issue 15, in
the same run). Networks: the Table 1 ones (breast cancer, MNIST-MLP, LeNet-5) and issue 15's larger two,
an MLP 784-1024-1024-10 (batch 256) and a CIFAR-shaped CNN (3x32x32, conv 32-64-128 with 3x3 kernels,
ReLU and 2x2 max-pooling, then a linear layer to 10 classes; batch 128), timed for BP and pas only.

Goals: act <= 3x BP for the MLPs and <= 6x for LeNet-5 (issue 3); pas/BP <= 2x on MNIST-MLP and <= 1.5x on
the MLP-1024 and the CIFAR CNN (issue 15), judged on the median per-round ratio. Synthetic inputs of the
right shapes: step time does not depend on the values.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from harness import act_macs, header, interleaved_times, summarize
from torch import nn

from axhw.common.io import atomic_write_json
from axhw.common.runtime import tune_allocator
from axhw.nn import ApproxConv2d, ApproxLinear, HardwareConfig, approx_layers, calibrate_model, set_hardware
from axhw.nn import fused as fastpath
from axhw.training.models import build_mlp, build_model
from axhw.training.trainer import train_step

#: name -> (input shape, classes, batch)
CASES = {"breast_cancer": ((30,), 2, 32), "mnist_mlp": ((784,), 10, 128), "mnist_cnn": ((1, 28, 28), 10, 64),
         "mlp_1024": ((784,), 10, 256), "cifar_cnn": ((3, 32, 32), 10, 128)}
#: methods timed per case (act on the two larger networks is not what issue 15 measures)
METHODS = {"breast_cancer": ("bp", "act", "pas", "pas_eager"), "mnist_mlp": ("bp", "act", "pas", "pas_eager"),
           "mnist_cnn": ("bp", "act", "pas", "pas_eager"), "mlp_1024": ("bp", "pas", "pas_eager"),
           "cifar_cnn": ("bp", "pas", "pas_eager")}
GOALS = {"act_over_bp_mlp": 3.0, "act_over_bp_lenet": 6.0, "pas_over_bp_mnist_mlp": 2.0,
         "pas_over_bp_mlp_1024": 1.5, "pas_over_bp_cifar_cnn": 1.5}


def build(app: str) -> nn.Module:
    """The network of a bench case (Table 1 applications through :func:`axhw.training.models.build_model`)."""
    if app == "mlp_1024":
        return build_mlp((784, 1024, 1024, 10))
    if app == "cifar_cnn":
        return nn.Sequential(
            ApproxConv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            ApproxConv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            ApproxConv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), ApproxLinear(128 * 4 * 4, 10), nn.Sigmoid(),
        )
    return build_model(app)


def layer_macs(app: str) -> list[tuple[str, int]]:
    """(kind, multiply-accumulates per sample) of each Linear/Conv2d layer in forward order."""
    shape, _, _ = CASES[app]
    model = build(app)
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
    bp, act = act_macs(layer_macs(app), k)
    return {"bp_macs_per_sample": bp, "act_macs_per_sample": act, "act_over_bp_floor": act / bp}


def make_step(app: str, method: str, multiplier: str, voltage: float) -> Callable[[], None]:
    """One training step of ``method`` (bp, act, pas or pas_eager) on its own model and optimizer, warmed up."""
    shape, classes, batch = CASES[app]
    torch.manual_seed(0)
    x = torch.randn(batch, *shape)
    y = torch.randint(0, classes, (batch,))
    model = build(app)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    if method.startswith("pas"):
        set_hardware(model, HardwareConfig(mode="hardware", multiplier=multiplier, voltage_mv=voltage))
        calibrate_model(model, x)
        for i, layer in enumerate(approx_layers(model)):
            layer.generator = torch.Generator().manual_seed(i)
    model.train()
    gamma = 0.01 if method == "act" else 0.0
    fused = method != "pas_eager"

    def step() -> None:
        fastpath.ENABLED = fused
        try:
            train_step(model, opt, x, y, gamma)
        finally:
            fastpath.ENABLED = True

    for _ in range(2):
        step()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/results/train.json"))
    ap.add_argument("--rounds", "--repeats", dest="rounds", type=int, default=31)
    ap.add_argument("--multiplier", default="K2")
    ap.add_argument("--voltage", type=float, default=660.0)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--sample-seconds", type=float, default=0.02,
                    help="each timed sample runs consecutive steps for about this long (BP's step time)")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {', '.join(CASES)}")
    args = ap.parse_args()
    cases = args.cases.split(",")
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        ap.error(f"unknown cases {unknown}: valid are {sorted(CASES)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    tuned = tune_allocator()
    results = {}
    load_before = os.getloadavg()
    for app in cases:
        methods = METHODS[app]
        steps = {m: make_step(app, m, args.multiplier, args.voltage) for m in methods}
        # A sample is `inner` consecutive steps, ~20 ms at least: on a loaded machine a 1 ms step is mostly
        # scheduler noise; the interleaving per round is unchanged.
        once = []
        for _ in range(3):
            t0 = time.perf_counter()
            steps["bp"]()
            once.append(time.perf_counter() - t0)
        inner = max(1, min(50, round(args.sample_seconds / min(once))))
        fns = {m: (lambda f=f, n=inner: [f() for _ in range(n)]) for m, f in steps.items()}
        pairs = [(m, "bp") for m in methods if m != "bp"] + [("pas_eager", "pas")]
        case_load = os.getloadavg()
        times = {m: [t / inner for t in ts] for m, ts in interleaved_times(fns, args.rounds).items()}
        summary = summarize(times, pairs)
        med = summary["ratio_medians"]
        results[app] = {"batch": CASES[app][2], "steps_per_sample": inner, **summary, **med,
                        "loadavg_before": list(case_load), "loadavg_after": list(os.getloadavg())}
        if "act" in methods:
            results[app]["arithmetic"] = act_mac_floor(app)
    out = {**header("training step", load_before, allocator_tuned=tuned),
           "multiplier": args.multiplier, "voltage_mv": args.voltage,
           "rounds": args.rounds, "results": results, "goals": GOALS}
    atomic_write_json(out, args.out)
    print(json.dumps({app: {"seconds_median": r["seconds_median"], "ratios": r["ratios"]}
                      for app, r in results.items()}, indent=2))
    print(json.dumps({"loadavg": [out["machine"]["loadavg_before"], out["machine"]["loadavg_after"]]}))


if __name__ == "__main__":
    main()
