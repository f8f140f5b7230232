"""Verify the PE and the PE array on real trained networks against the integer golden model (docs/rtl.md,
"Running a trained network").

* :func:`run_pe`: the generated ``pe`` computes real dot products (rows of a trained layer against quantized
  test samples), compared with :func:`axhw.golden.network.linear_int` saturated to the accumulator word.
* :func:`run_array`: the generated ``pe_array`` runs a trained MLP on real test samples (``sim/array_tb.v``
  walks the samples); every layer's integer outputs are compared with
  :meth:`axhw.golden.network.QuantizedNetwork.forward_int` (``return_all=True``), and the predicted classes too.

Expected values always come from the model (``forward_int``, ``linear_int``, ``requantize``), never from a
re-derivation; with per-neuron modes (``dual`` arrays) the reference composes the same functions per layer,
choosing the exact or the approximate accumulator per output neuron. Builds are cached like the multiplier
builds (:func:`axhw.rtl.verify.build`): one build serves any network that fits, the images are read at run
time from the run directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypedDict

import torch

from axhw.arith.multipliers import Multiplier
from axhw.common.io import locked
from axhw.common.progress import note
from axhw.golden.network import IntLinear, IntReLU, QuantizedNetwork, linear_int
from axhw.rtl.generate import write_files
from axhw.rtl.pe import ArrayConfig, generate_array, generate_pe
from axhw.rtl.program import ArrayProgram, compile_network
from axhw.rtl.verify import SIM_DIR, build_stamp, default_build_root, on_sys_path, require_simulator

__all__ = ["LayerRow", "NetCheckResult", "build_design", "layer_report", "reference_outputs", "run_array", "run_pe"]

#: Input table depth of ``array_tb.v`` (MNIST: 668 samples of 784 inputs).
INDEPTH = 1 << 19
CLOCK_NS = 2


@dataclass
class NetCheckResult:
    """Outcome of one PE or array simulation.

    Attributes:
        design, config_id, simulator, network: what ran.
        samples: input samples; vectors: integer outputs compared (all layers).
        mismatches: outputs differing from the model, per layer.
        class_mismatches: samples whose predicted class differs (array only).
        first_bad: ``(sample, layer, neuron, expected, rtl)`` of the first mismatch.
        cycles: array busy cycles (array, all samples) or PE compute cycles (PE).
        layers: array only: per step cycles per inference and PE utilisation (:func:`layer_report`).
        seconds: simulation wall time (without the build); build_seconds: build time (0 when cached).
    """

    design: str
    config_id: str
    simulator: str
    network: str
    samples: int = 0
    vectors: int = 0
    mismatches: list[int] = field(default_factory=list)
    class_mismatches: int = 0
    first_bad: tuple[int, int, int, int, int] | None = None
    cycles: int = 0
    seconds: float = 0.0
    build_seconds: float = 0.0
    error: str = ""
    layers: list[LayerRow] = field(default_factory=list)

    @property
    def total_mismatches(self) -> int:
        return sum(self.mismatches) + self.class_mismatches

    @property
    def ok(self) -> bool:
        return not self.error and self.vectors > 0 and self.total_mismatches == 0

    def describe(self) -> str:
        head = f"{self.design} {self.config_id} [{self.network}] on {self.simulator}"
        if self.ok:
            return f"{head}: {self.samples} samples, {self.vectors} outputs match ({self.cycles} cycles)"
        return (
            f"{head}: {self.total_mismatches} mismatches (per layer {self.mismatches}, classes "
            f"{self.class_mismatches}); first (sample, layer, neuron, expected, rtl) = {self.first_bad} {self.error}"
        )


def build_design(
    files: dict[str, str],
    config_id: str,
    simulator: str,
    toplevel: str,
    parameters: dict[str, int],
    extra_sources: tuple[Path, ...] = (),
    build_root: Path | None = None,
    waves: bool = False,
    lenient: bool = False,
) -> tuple[Path, float]:
    """Write ``files`` and compile them (plus ``extra_sources``) for ``simulator``; cached by a source stamp.

    Args:
        waves: Verilator only: a ``--trace`` build, in which the testbench's ``$dumpvars`` works (Icarus needs
            none: its VCD is switched on at run time).
        lenient: Verilator only: lint warnings are not errors (a design holding a user's imported circuit,
            whose style is not ours: unused helper outputs, implicit widths).

    Returns:
        The build directory and the build time (0.0 when the cached build was reused).
    """
    from cocotb_tools.runner import get_runner

    require_simulator(simulator)
    bdir = (build_root or default_build_root()) / simulator / config_id
    bdir.mkdir(parents=True, exist_ok=True)
    rtl = [p for p in write_files(files, bdir / "rtl") if p.suffix == ".v"]
    sources = [*rtl, *extra_sources]
    settings: dict[str, object] = {"simulator": simulator, "top": toplevel, **parameters, "split": 0,
                                   **({"lenient": True} if lenient else {})}
    if waves:
        settings["waves"] = True
    stamp_file = bdir / "axhw_build.stamp"
    stamp = build_stamp(sources, settings)
    t0 = time.perf_counter()
    with locked(bdir / ".lock"):
        if stamp_file.is_file() and stamp_file.read_text() == stamp:
            return bdir, 0.0
        stamp_file.unlink(missing_ok=True)
        runner = get_runner(simulator)
        runner.log.setLevel(logging.WARNING)
        try:
            note(f"building {config_id} for {simulator} (once per design, cached in {bdir}; the 16-bit array "
                 "takes about a minute with Verilator) ...")
            runner.build(
                sources=sources,
                hdl_toplevel=toplevel,
                parameters=parameters,
                defines={"AXHW_SELF_CLOCK": 1} if simulator == "icarus" else ({"AXHW_VCD": 1} if waves else {}),
                build_dir=bdir,
                # Verilator: a --trace build (cocotb's main then allows the testbench's $dumpvars)
                waves=waves and simulator == "verilator",
                # Verilator: one translation unit. Large designs (the 16-bit array) are otherwise split into
                # parallel builds whose precompiled-header rule the PyPI wheel breaks (empty
                # CFG_CXXFLAGS_PCH_I: "c++: error: Vtop__pch.h.fast: linker input file not found").
                build_args=(["--output-split", "0", *(["-Wno-fatal", "-Wno-lint", "-Wno-style"] if lenient else [])]
                            if simulator == "verilator" else []),
                timescale=("1ns", "1ps"),
                log_file=bdir / "build.log",
            )
        except (RuntimeError, SystemExit) as exc:
            log = (bdir / "build.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{simulator} build of {config_id} failed ({exc}); build.log ends:\n{log}") from exc
        stamp_file.write_text(stamp)
    return bdir, time.perf_counter() - t0


def _run(simulator: str, bdir: Path, run_dir: Path, module: str, toplevel: str, env_key: str,
         job: dict[str, object], plusargs: list[str] | None = None) -> float:
    from cocotb_tools.runner import get_runner

    runner = get_runner(simulator)
    runner.log.setLevel(logging.WARNING)
    if simulator == "icarus" and any(a.startswith("+vcd=") for a in plusargs or []):
        # cocotb's Icarus runner passes vvp `-none` (no waves) or `-fst`; the testbench's $dumpfile wants VCD,
        # which power analysis reads. Swap the flag in the runner's command (cocotb has no option for it).
        test_command = runner._test_command
        runner._test_command = lambda: [["-vcd" if a == "-none" else a for a in cmd]  # type: ignore[method-assign]
                                        for cmd in test_command()]
    note(f"simulating {toplevel} with {simulator} ...")
    t0 = time.perf_counter()
    with on_sys_path(SIM_DIR), contextlib.suppress(SystemExit):
        runner.test(
            test_module=module,
            hdl_toplevel=toplevel,
            hdl_toplevel_lang="verilog",
            build_dir=bdir,
            test_dir=run_dir,
            plusargs=plusargs or [],
            extra_env={env_key: json.dumps(job)},
            timescale=("1ns", "1ps"),
            results_xml=str(run_dir / "results.xml"),
            log_file=run_dir / "sim.log",
        )
    return time.perf_counter() - t0


# --- reference -----------------------------------------------------------------------------------------------


def reference_outputs(
    qnet: QuantizedNetwork,
    x_int: torch.Tensor,
    mul: Multiplier,
    modes: list[torch.Tensor] | None = None,
    exact: Multiplier | None = None,
    program: ArrayProgram | None = None,
) -> list[torch.Tensor]:
    """Per array step, what the array leaves behind, flattened per sample: ``forward_int(...,
    return_all=True)`` picked at the op each step's output equals (:attr:`LayerPlan.op`: a layer's or pool's
    output, or the ReLU's after it); the output layer's saturated accumulators last. Without ``program``:
    per layer, the layer's output or the ReLU's after it (the MLP view).

    With ``modes`` (per layer, True = approximate ``mul``, False = ``exact``) the masks go into the layers'
    ``approx_neurons`` and ``forward_int`` runs with ``exact`` and ``approx=mul`` -- the same per-neuron
    semantics the training model uses, not a re-derivation.
    """
    ops = qnet.ops
    if modes is not None:
        if exact is None:
            raise ValueError("per-neuron modes need the exact multiplier too")
        masks = iter(modes)
        ops = [replace(op, approx_neurons=next(masks).to(torch.bool)) if isinstance(op, IntLinear) else op
               for op in ops]
        outs = QuantizedNetwork(ops, qnet.meta).forward_int(x_int, exact, return_all=True, approx=mul)
    else:
        outs = qnet.forward_int(x_int, mul, return_all=True)
    assert isinstance(outs, list)
    if program is not None:
        return [outs[p.op].flatten(1) for p in program.layers]
    picked = []
    for i, op in enumerate(ops):
        if isinstance(op, IntLinear):
            nxt = i + 1 if i + 1 < len(ops) and isinstance(ops[i + 1], IntReLU) else i
            picked.append(outs[nxt].flatten(1))
    return picked


def _signed(word: int, width: int) -> int:
    return word - (1 << width) if word >> (width - 1) else word


# --- PE ------------------------------------------------------------------------------------------------------


def run_pe(
    acfg: ArrayConfig,
    simulator: str,
    layer: IntLinear,
    x_int: torch.Tensor,
    rows: int | None = None,
    *,
    network: str = "network",
    mul: Multiplier | None = None,
    build_root: Path | None = None,
    tag: str = "run",
) -> NetCheckResult:
    """The generated PE on real dot products: ``rows`` rows of ``layer`` against every sample of ``x_int``
    (codes in ``layer.act_fmt``), compared with ``linear_int`` saturated to ``acc_fmt``."""
    mul = mul or acfg.approx_model()
    nrows = layer.weight.shape[0] if rows is None else min(rows, layer.weight.shape[0])
    w, b = layer.weight[:nrows].to(torch.int64), layer.bias[:nrows].to(torch.int64)
    expected = linear_int(x_int.to(torch.int64), w, b, mul).clamp(layer.acc_fmt.qmin, layer.acc_fmt.qmax)
    result = NetCheckResult("pe", acfg.pe_id, simulator, network, samples=x_int.shape[0])
    if layer.weight.shape[1] > acfg.max_fan_in:
        result.error = f"fan-in {layer.weight.shape[1]} exceeds max_fan_in={acfg.max_fan_in}"
        return result
    bdir, result.build_seconds = build_design(generate_pe(acfg), acfg.pe_id, simulator, "pe", {},
                                              build_root=build_root, lenient=acfg.imported)
    run_dir = bdir / tag
    run_dir.mkdir(parents=True, exist_ok=True)
    summary = run_dir / "summary.json"
    summary.unlink(missing_ok=True)
    wl, bl = w.tolist(), b.tolist()
    job = {
        "bits": acfg.bits, "acc": acfg.acc_bits, "bias_bits": acfg.bias_bits, "dual": acfg.dual,
        "samples": [{"a": a, "rows": [[wl[r], bl[r], 1] for r in range(nrows)]} for a in x_int.tolist()],
        "summary": str(summary),
    }
    result.seconds = _run(simulator, bdir, run_dir, "pe_tb", "pe", "AXHW_PE_TB_JOB", job)
    if not summary.is_file():
        result.error = f"no summary written; see {run_dir / 'sim.log'}"
        return result
    data = json.loads(summary.read_text())
    got = torch.tensor(data["results"], dtype=torch.int64)
    result.cycles = int(data["compute_cycles"])
    result.vectors = got.numel()
    bad = (got != expected).nonzero().tolist()
    result.mismatches = [len(bad)]
    if bad:
        s, r = bad[0]
        result.first_bad = (s, 0, r, int(expected[s, r]), int(got[s, r]))
    return result


# --- array ---------------------------------------------------------------------------------------------------


def _write_inputs(path: Path, x_int: torch.Tensor, bits: int) -> None:
    mask, digits = (1 << bits) - 1, (bits + 3) // 4
    path.write_text("".join(f"{v & mask:0{digits}x}\n" for v in x_int.flatten().tolist()))


def run_array(
    acfg: ArrayConfig,
    simulator: str,
    qnet: QuantizedNetwork,
    x_int: torch.Tensor,
    *,
    network: str = "network",
    mul: Multiplier | None = None,
    modes: list[torch.Tensor] | None = None,
    build_root: Path | None = None,
    tag: str = "run",
    program: ArrayProgram | None = None,
    vcd: Path | None = None,
) -> NetCheckResult:
    """Run ``qnet`` on the generated array for every sample of ``x_int`` (input codes, ``(N, features)`` or
    ``(N, C, H, W)``) and compare every step's outputs and the predicted classes with the golden model.

    Args:
        mul: the reference multiplier (default: the array's own model; a different one is a mutation test).
        modes: per-neuron multiplier modes (``acfg.dual``), see :func:`axhw.rtl.program.compile_network`.
        program: a compiled program (default: :func:`compile_network` of ``qnet``); a different one is a
            mutation test.
        vcd: also dump every signal of ``pe_array`` to this VCD file (switching activity for power analysis;
            Verilator gets a separate ``--trace`` build). Large: use few samples.
    """
    mul = mul or acfg.approx_model()
    x_int = x_int.to(torch.int64)
    result = NetCheckResult("array", acfg.config_id, simulator, network, samples=x_int.shape[0])
    program = program or compile_network(acfg, qnet, modes, tuple(x_int.shape[1:]))
    if x_int.numel() > INDEPTH:
        raise ValueError(f"{x_int.numel()} input codes exceed the testbench table ({INDEPTH}); use fewer samples")
    w = acfg.widths()
    params = {"BITS": acfg.bits, "ACC": acfg.acc_bits, "NAW": w["naw"], "OAW": w["oaw"], "INDEPTH": INDEPTH}
    trace = vcd is not None and simulator == "verilator"
    bdir, result.build_seconds = build_design(generate_array(acfg), acfg.config_id + ("_trace" if trace else ""),
                                              simulator, "array_tb", params, (SIM_DIR / "array_tb.v",), build_root,
                                              waves=trace, lenient=acfg.imported)
    run_dir = bdir / tag
    run_dir.mkdir(parents=True, exist_ok=True)
    for name, text in program.images.items():
        (run_dir / name).write_text(text)
    _write_inputs(run_dir / "inputs.hex", x_int, acfg.bits)
    dump, summary = run_dir / "dump.hex", run_dir / "summary.json"
    dump.unlink(missing_ok=True)
    summary.unlink(missing_ok=True)
    dlo, dhi = program.hidden_span
    n, nout = x_int.shape[0], program.n_outputs
    per_sample = program.cycles_per_inference + program.n_inputs + (dhi - dlo) + nout + 16
    job = {"clock_ns": CLOCK_NS, "self_clock": simulator == "icarus", "samples": n,
           "max_cycles": per_sample * n + 64, "summary": str(summary)}
    plusargs = [f"+inputs={run_dir / 'inputs.hex'}", f"+nsamp={n}", f"+nin={program.n_inputs}", f"+dlo={dlo}",
                f"+dhi={dhi}", f"+nout={nout}", f"+dump={dump}"]
    if vcd is not None:
        Path(vcd).parent.mkdir(parents=True, exist_ok=True)
        plusargs.append(f"+vcd={Path(vcd).resolve()}")
    result.seconds = _run(simulator, bdir, run_dir, "array_tb", "array_tb", "AXHW_ARRAY_TB_JOB", job, plusargs)
    if not summary.is_file() or not dump.is_file():
        result.error = f"no summary/dump written; see {run_dir / 'sim.log'}"
        return result
    data = json.loads(summary.read_text())
    result.cycles = int(data["busy_cycles"])
    result.layers = layer_report(program)
    words = [int(t, 16) if all(c in "0123456789abcdefABCDEF" for c in t) else None
             for t in dump.read_text().split()]
    per = (dhi - dlo) + nout
    if len(words) != per * n:
        result.error = f"dump holds {len(words)} words, expected {per * n} (samples finished: {data['samples']})"
        return result
    expected = reference_outputs(qnet, x_int, mul, modes, acfg.exact_model() if modes is not None else None,
                                 program)
    got_layers: list[torch.Tensor] = []
    rows = [words[s * per:(s + 1) * per] for s in range(n)]
    for plan in program.layers:
        if plan.last:
            cols = [[_signed(v, acfg.acc_bits) if v is not None else 1 << 62 for v in r[dhi - dlo:]] for r in rows]
        else:
            lo = plan.out_base - dlo
            cols = [[_signed(v, acfg.bits) if v is not None else 1 << 62 for v in r[lo:lo + plan.out_size]]
                    for r in rows]
        got_layers.append(torch.tensor(cols, dtype=torch.int64))
    result.vectors = sum(g.numel() for g in got_layers)
    for li, (g, e) in enumerate(zip(got_layers, expected, strict=True)):
        if g.shape != e.shape:
            result.error = f"step {li}: the array wrote {tuple(g.shape)} values, the model has {tuple(e.shape)}"
            result.mismatches.append(g.numel())
            continue
        bad = (g != e).nonzero().tolist()
        result.mismatches.append(len(bad))
        if bad and result.first_bad is None:
            s, r = bad[0]
            result.first_bad = (s, li, r, int(e[s, r]), int(g[s, r]))
    result.class_mismatches = int((got_layers[-1].argmax(1) != expected[-1].argmax(1)).sum())
    if result.cycles != program.cycles_per_inference * n:
        result.error += (f" simulated {result.cycles} busy cycles, the schedule says "
                         f"{program.cycles_per_inference} x {n}")
    return result


class LayerRow(TypedDict):
    """One row of :func:`layer_report` (lists, not tuples: it goes to JSON as it is)."""

    step: int | str  # "total" on the last row
    kind: str
    in_shape: list[int]
    out_shape: list[int]
    kernel: list[int]
    macs: int
    cycles: int
    utilisation: float


def layer_report(program: ArrayProgram) -> list[LayerRow]:
    """Per step: kind, shapes, cycles per inference and PE utilisation (useful products over PE-cycles).

    The cycles are the sequencer's schedule (:func:`axhw.rtl.program.step_cycles`); :func:`run_array` checks
    that their sum equals the simulated busy cycles.
    """
    pes = program.config.pes
    rows: list[LayerRow] = []
    for i, (plan, cyc) in enumerate(zip(program.layers, program.cycles(), strict=True)):
        rows.append({
            "step": i, "kind": plan.kind, "in_shape": list(plan.in_shape), "out_shape": list(plan.out_shape),
            "kernel": list(plan.kernel), "macs": plan.macs, "cycles": cyc,
            "utilisation": round(plan.macs / (pes * cyc), 4) if cyc else 0.0,
        })
    total = program.cycles_per_inference
    macs = sum(p.macs for p in program.layers)
    rows.append({"step": "total", "kind": "", "in_shape": list(program.input_shape), "out_shape": [],
                 "kernel": [], "macs": macs, "cycles": total, "utilisation": round(macs / (pes * total), 4)})
    return rows
