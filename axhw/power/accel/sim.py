"""Accelerator-level power, step 2: a trained network's inference on the gate-level array, and its activity.

The synthesized array (:mod:`axhw.power.accel.synth`) runs real test samples under Icarus with the osu018
cell models (``-gspecify``: cell delays, so glitches count, as in the multiplier-only flow) and the generated
memory modules as behavioural RTL. The testbench (``power/accel_tb.v.j2``) drives ``pe_array``'s host
protocol and reads every layer's results back, which are compared with
:func:`axhw.rtl.netverify.reference_outputs` (``forward_int``) bit for bit: the power comes with a proof that
the netlist computed the network.

Why the toggles are counted in the simulator and not read from a VCD: an MNIST-MLP inference is ~16,000
cycles of ~17,800 cells; its VCD would be gigabytes and take longer to parse than to simulate. The testbench
counts every transition between known values of every cell output (x/z skipped, as
:func:`axhw.power.flow.activity.vcd_activity` does); a test checks both counts agree cell by cell.

Memory accesses (for the SRAM model) are counted per memory instance from the same run: writes = cycles with
``we`` high at the clock edge; reads = cycles in which the memory's consumer takes the data
(:data:`READ_ENABLES`: the signal that loads a local memory or steps the accumulator, or the memory's own
read enable where it has one: the neuron buffer, read by the convolution gather and by max pooling), or, for a
memory the table does not know (a new buffer of the array), cycles in which the read address changed.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from axhw.arith.multipliers import Multiplier
from axhw.common.progress import note
from axhw.golden.network import QuantizedNetwork
from axhw.power.accel.synth import CLOCK_GATE, ArraySynth
from axhw.power.flow.liberty import read_library
from axhw.power.flow.templates import render
from axhw.power.flow.tools import find_toolchain
from axhw.rtl.pe import ArrayConfig, generate_array
from axhw.rtl.program import compile_network

__all__ = ["CLOCK_GATE", "ENGINES", "READ_ENABLES", "ArrayActivity", "ClockDomains", "LeafCell", "MemoryInstance",
           "clock_domains", "leaf_cells", "memory_instances",
           "memory_sources", "simulate_array", "testbench", "unit_of"]

#: memory module -> its read enable, relative to the memory's parent instance (``{parent}``) or to the top:
#: the consumer's signal that takes the read data in that cycle. ``{lane}``: a memory banked per PE lane (one
#: bank per PE, all at the same address: the weight and bias stores), read bank by bank: each PE's signal
#: counts one read of one lane's word.
READ_ENABLES: dict[str, str] = {
    "pe_nlm": "{parent}.u_acc.en",  # the accumulator adds nlm[cnt] * w[cnt]
    "pe_wlm": "{parent}.u_acc.en",  # the lone PE's weight local memory (the array's PEs have none)
    "array_wbuf": "u_pe{lane}.u_acc.en",  # each product: the PE's weight, from its lane of the weight store
    "array_nbuf": "u_seq.nbuf_re",  # its read enable: window elements inside the map (convolution gather, pooling)
    "array_bbuf": "u_pe{lane}.u_acc.clear",  # START: the PE's bias into its accumulator
}


def unit_of(module: str) -> str:
    """The energy-split unit of a synthesized module: ``multipliers``, ``adders`` (the PEs' accumulators),
    ``requantization`` or ``control`` (controllers, sequencer, the array's glue)."""
    if module.startswith("mul_"):
        return "multipliers"
    if module == "pe_acc":
        return "adders"
    if module == "array_requant":
        return "requantization"
    return "control"


@dataclass(frozen=True)
class LeafCell:
    """One standard cell of the flattened hierarchy: instance path (``u_pe0.u_mul._123_``), cell type, output
    pin, and the synthesized module it sits in."""

    path: str
    cell: str
    out_pin: str
    module: str

    @property
    def sta_name(self) -> str:
        """The name OpenSTA reports for the cell in the flat netlist (``u_pe0.u_mul._123_``)."""
        return self.path.replace("\\", "").replace(" ", "")


@dataclass(frozen=True)
class MemoryInstance:
    """One memory instance: path, module, its read enable (None: address-change counting), write port, and
    for a memory banked per lane its lanes' read enables (a read reads one lane: ``width / len(lanes)`` bits)."""

    path: str
    module: str
    read_enable: str | None
    write: bool
    aw: int
    lanes: tuple[str, ...] = ()

    def read_bits(self, width: int) -> int:
        """Bits one counted read reads of a ``width``-bit word."""
        return width // len(self.lanes) if self.lanes else width


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


def _esc(name: str) -> str:
    return name if _PLAIN.fullmatch(name) else f"\\{name} "


def _walk(synth: ArraySynth) -> tuple[list[LeafCell], list[tuple[str, str]], dict[str, Any]]:
    """The flattened hierarchy; parsed once per netlist file and process (the model engine asks several times
    per network, and parsing a 16-PE array's JSON takes ~0.4 s)."""
    path = Path(synth.netlist_json)
    return _walk_file(str(path), path.stat().st_mtime_ns, synth.top, tuple(sorted(synth.memories)))


@functools.lru_cache(maxsize=16)
def _walk_file(netlist_json: str, _mtime: int, top: str, memories: tuple[str, ...]
               ) -> tuple[list[LeafCell], list[tuple[str, str]], dict[str, Any]]:
    mods = json.loads(Path(netlist_json).read_text())["modules"]
    lib = read_library(find_toolchain().liberty)
    cells: list[LeafCell] = []
    mems: list[tuple[str, str]] = []

    def visit(module: str, prefix: str) -> None:
        for inst, c in mods[module]["cells"].items():
            path = f"{prefix}{_esc(inst)}"
            if c["type"] in memories:
                mems.append((path, c["type"]))
            elif c["type"] in lib.cells:
                outs = [p for p, d in c["port_directions"].items() if d == "output"]
                if len(outs) != 1:
                    raise RuntimeError(f"cell {path} ({c['type']}) has {len(outs)} outputs; the flow needs one")
                cells.append(LeafCell(path, c["type"], outs[0], module))
            elif c["type"] in mods:
                visit(c["type"], f"{path}.")
            else:
                raise RuntimeError(f"instance {path} of unknown module {c['type']}")

    visit(top, "")
    return cells, mems, mods


@dataclass(frozen=True)
class ClockDomains:
    """Which clock each leaf cell's clock pin sees (order of :func:`leaf_cells`).

    Attributes:
        gate_of: per cell, the path of the clock gate whose gated clock drives its ``CLK`` pin (``u_pe3.u_cg``),
            or None: the free-running clock (or no clock pin).
        gate_output: per clock gate path, the index of the leaf cell that drives its gated clock (the gate's
            AND): its output toggles twice per enabled cycle.
    """

    gate_of: tuple[str | None, ...]
    gate_output: dict[str, int]

    def enabled_cycles(self, toggles: list[int] | list[float]) -> dict[str, float]:
        """Per clock gate, the cycles it let through (its output's toggles / 2)."""
        return {g: toggles[i] / 2 for g, i in self.gate_output.items()}

    def active_cycles(self, cycles: float, enabled: dict[str, float]) -> list[float]:
        """Per cell, the clock cycles its clock pin saw: ``cycles`` unless a gate drives it (then the gate's
        ``enabled`` cycles)."""
        return [cycles if g is None else enabled[g] for g in self.gate_of]


def clock_domains(synth: ArraySynth) -> ClockDomains:
    """Trace every leaf cell's ``CLK`` pin through the hierarchy to a clock gate's output or the top clock.

    Why: a gated flip-flop's clock pin draws energy only in the cycles its gate lets through; OpenSTA's
    per-cycle clock energy of it (:func:`axhw.power.accel.energy.cell_energies`) is for a free-running clock."""
    path = Path(synth.netlist_json)
    return _domains_file(str(path), path.stat().st_mtime_ns, synth.top, tuple(sorted(synth.memories)))


@functools.lru_cache(maxsize=16)
def _domains_file(netlist_json: str, _mtime: int, top: str, memories: tuple[str, ...]) -> ClockDomains:
    cells, _, mods = _walk_file(netlist_json, _mtime, top, memories)
    index = {c.path: i for i, c in enumerate(cells)}
    lib = read_library(find_toolchain().liberty)
    clock_pin: dict[str, Any] = {}  # leaf path -> global net of its CLK pin
    driver: dict[Any, int] = {}  # global net -> leaf cell index driving it
    gate_net: dict[Any, str] = {}  # global net -> clock gate path whose gclk it is

    def visit(module: str, prefix: str, nets: dict[int, Any]) -> None:
        def net(bit: Any) -> Any:
            return bit if isinstance(bit, str) else nets.get(bit, (prefix, bit))

        for inst, c in mods[module]["cells"].items():
            path = f"{prefix}{_esc(inst)}"
            conns = c.get("connections", {})
            if c["type"] in memories:
                continue
            if c["type"] in lib.cells:
                for pin, d in c["port_directions"].items():
                    if d == "output" and conns.get(pin):
                        driver[net(conns[pin][0])] = index[path]
                if conns.get("CLK"):
                    clock_pin[path] = net(conns["CLK"][0])
                continue
            child = mods[c["type"]]
            inner = {}
            for port, spec in child["ports"].items():
                for b_child, b_parent in zip(spec["bits"], conns.get(port, []), strict=False):
                    if not isinstance(b_child, str):
                        inner[b_child] = net(b_parent)
            if c["type"] == CLOCK_GATE[0]:
                for b in child["ports"][CLOCK_GATE[1]]["bits"]:
                    gate_net[inner.get(b, (f"{path}.", b))] = path
            visit(c["type"], f"{path}.", inner)

    visit(top, "", {})
    gate_output = {}
    for n, g in gate_net.items():
        if n not in driver:
            raise RuntimeError(f"clock gate {g}: no cell drives its {CLOCK_GATE[1]} output in {netlist_json}")
        gate_output[g] = driver[n]
    gate_of = tuple(gate_net.get(clock_pin[c.path]) if c.path in clock_pin else None for c in cells)
    return ClockDomains(gate_of, gate_output)


def leaf_cells(synth: ArraySynth) -> list[LeafCell]:
    """Every standard cell of the array, hierarchy flattened, in a fixed order."""
    return list(_walk(synth)[0])


def _exists(mods: dict[str, Any], top: str, path: str, memories: set[str]) -> bool:
    """Whether ``path`` (``inst.inst.port``) names a port of an instance below ``top``."""
    *insts, port = path.split(".")
    module = top
    for inst in insts:
        cell = mods.get(module, {}).get("cells", {}).get(inst)
        if cell is None:
            return False
        module = cell["type"]
    if module in memories:
        return port in ("we", "re", "raddr", "waddr", "wdata", "rdata", "clk")
    return port in mods.get(module, {}).get("ports", {})


def memory_instances(synth: ArraySynth) -> list[MemoryInstance]:
    """Every memory instance of the array with its read-enable expression (see :data:`READ_ENABLES`)."""
    _, mems, mods = _walk(synth)
    out = []
    for path, module in mems:
        spec = synth.memories[module]
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        enable = READ_ENABLES.get(module)
        lanes: tuple[str, ...] = ()
        if enable is not None and "{lane}" in enable:
            n = sum(1 for inst in mods[synth.top]["cells"] if re.fullmatch(r"u_pe\d+", inst))
            lanes = tuple(enable.format(parent=parent, lane=p).lstrip(".") for p in range(n))
            if not lanes or spec.width % len(lanes) or not all(
                    _exists(mods, synth.top, e, set(synth.memories)) for e in lanes):
                lanes = ()
            enable = lanes[0] if lanes else None  # None: the array changed, fall back to address-change counting
        elif enable is not None:
            enable = enable.format(parent=parent).lstrip(".")
            if not _exists(mods, synth.top, enable, set(synth.memories)):
                enable = None  # the array changed: fall back to address-change counting
        out.append(MemoryInstance(path, module, enable, spec.write, max(1, (spec.depth - 1).bit_length()), lanes))
    return out


@dataclass
class ArrayActivity:
    """Outcome of one gate-level run of the array.

    Attributes:
        samples: test samples run; cycles: clock cycles counted (input loads to the last read-back);
        busy_cycles: cycles the array was busy (the inference proper).
        toggles: per leaf cell (order of :func:`leaf_cells`), output transitions over the run.
        reads, writes: per memory instance path, accesses over the run.
        outputs_compared, mismatches: every layer's results against ``forward_int``.
        sim_seconds, compile_seconds: wall times.
    """

    samples: int
    cycles: int
    busy_cycles: int
    toggles: list[int]
    reads: dict[str, int]
    writes: dict[str, int]
    outputs_compared: int
    mismatches: int
    first_bad: tuple[int, int, int, int, int] | None = None
    sim_seconds: float = 0.0
    compile_seconds: float = 0.0
    period_ns: float = 50.0
    timing: bool = True
    fallback_reads: list[str] = field(default_factory=list)
    engine: str = "icarus"


def _signed(word: int, width: int) -> int:
    return word - (1 << width) if word >> (width - 1) else word


#: Gate-level engines: ``icarus`` (cell delays with ``timing``, the reference: glitches counted) and ``verilator``
#: (zero-delay, compiled once per netlist: :mod:`axhw.power.accel.vbuild`).
ENGINES: tuple[str, ...] = ("icarus", "verilator")


def simulate_array(synth: ArraySynth, acfg: ArrayConfig, qnet: QuantizedNetwork, x_int: torch.Tensor,
                   mul: Multiplier | None = None, *, period_ns: float = 50.0, timing: bool = True,
                   work_dir: Path | None = None, vcd_scope: str | None = None,
                   engine: str = "icarus") -> ArrayActivity:
    """Run ``x_int`` (input codes, one row per sample) through ``qnet`` on the gate-level array.

    ``mul`` is the reference multiplier of the comparison (default: the array's own model). ``vcd_scope``
    (an instance path such as ``u_pe0.u_mul``; one sample, with ``work_dir``): also dump that scope's nets
    over the counted window to ``work_dir/dump.vcd``, to check the counters against a VCD. ``engine``: one of
    :data:`ENGINES`; Verilator is zero-delay (``timing`` must be False).

    Raises:
        ToolMissing: Icarus, Verilator or the cell models are missing.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: the gate-level engines are {', '.join(ENGINES)}")
    if engine == "verilator" and timing:
        raise ValueError("the verilator engine is zero-delay: pass timing=False (cell delays need --engine icarus)")
    if engine == "verilator" and vcd_scope is not None:
        raise ValueError("vcd_scope is an Icarus feature (the Verilator model is built without tracing)")
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
        return _simulate_in(work_dir, synth, acfg, qnet, x_int, mul, period_ns, timing, vcd_scope, engine)
    if vcd_scope is not None:
        raise ValueError("vcd_scope needs a work_dir to keep the VCD in")
    with tempfile.TemporaryDirectory(prefix="axhw-accel-sim-") as tmp:
        return _simulate_in(Path(tmp), synth, acfg, qnet, x_int, mul, period_ns, timing, None, engine)


def testbench(synth: ArraySynth, acfg: ArrayConfig, period_ns: float = 50.0, vcd_scope: str | None = None,
              two_state: bool = False) -> str:
    """The rendered testbench of ``synth``'s array: the same for every network that fits it (sizes and inputs
    are plusargs), so a compiled model is reused."""
    w = acfg.widths()
    return render("accel_tb.v.j2", cells=[f"{c.path}.{c.out_pin}" for c in leaf_cells(synth)],
                  memories=memory_instances(synth), naw=w["naw"], oaw=w["oaw"], bits=acfg.bits, acc=acfg.acc_bits,
                  half_period_ns=period_ns / 2, vcd_scope=vcd_scope, vcd="dump.vcd", two_state=two_state)


def memory_sources(synth: ArraySynth, acfg: ArrayConfig) -> dict[str, str]:
    """The generated RTL files of the array's memories (behavioural in simulation)."""
    return {name: text for name, text in generate_array(acfg).items()
            if any(re.search(rf"^\s*module\s+{m}\b", text, re.M) for m in synth.memories)}


def _simulate_in(work: Path, synth: ArraySynth, acfg: ArrayConfig, qnet: QuantizedNetwork, x_int: torch.Tensor,
                 mul: Multiplier | None, period_ns: float, timing: bool, vcd_scope: str | None,
                 engine: str) -> ArrayActivity:
    from axhw.rtl.netverify import reference_outputs

    tc = find_toolchain()
    program = compile_network(acfg, qnet, input_shape=tuple(x_int.shape[1:]) if x_int.dim() == 4 else None)
    # The golden model first (a bad input fails before a long simulation), on the inputs as shaped (a conv
    # network reads (N, C, H, W)); the host interface takes them flattened, one row per sample.
    expected = reference_outputs(qnet, x_int.to(torch.int64), mul or acfg.approx_model(), program=program)
    x_int = x_int.to(torch.int64).flatten(1)
    for name, text in program.images.items():
        (work / name).write_text(text)
    mems = memory_instances(synth)
    sources = memory_sources(synth, acfg)
    cells = leaf_cells(synth)
    bits, mask = acfg.bits, (1 << acfg.bits) - 1
    (work / "inputs.hex").write_text("".join(f"{v & mask:0{(bits + 3) // 4}x}\n" for v in x_int.flatten().tolist()))
    dlo, dhi = program.hidden_span
    plusargs = [f"+nin={program.n_inputs}", f"+nout={program.n_outputs}", f"+nsamp={x_int.shape[0]}",
                f"+dlo={dlo}", f"+dhi={dhi}", "+inputs=inputs.hex", "+dump=dump.hex", "+counts=counts.txt"]
    tb = testbench(synth, acfg, period_ns, vcd_scope, two_state=engine == "verilator")
    t0 = time.perf_counter()
    if engine == "verilator":
        from axhw.power.accel.vbuild import verilator_build

        exe, _ = verilator_build({"accel_tb.v": tb, **sources}, [Path(synth.netlist), Path(tc.cell_models)])
        cmd = [str(exe), *plusargs]
    else:  # a VCD scope is part of the testbench's text, hence of its build's key
        from axhw.power.accel.vbuild import icarus_build

        vvp, _ = icarus_build({"accel_tb.v": tb, **sources}, [Path(synth.netlist), Path(tc.cell_models)], timing)
        cmd = [tc.vvp, "-n", str(vvp), *plusargs]
    t1 = time.perf_counter()
    note(f"simulating the {acfg.config_id} gate-level netlist on {x_int.shape[0]} input(s) with {engine} "
         f"({'with' if timing else 'without'} cell delays"
         f"{'; minutes per image for LeNet-5' if engine == 'icarus' else ''}) ...")
    run = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    t2 = time.perf_counter()
    if run.returncode != 0 or "AXHW_ACCEL_DONE" not in run.stdout:
        raise RuntimeError(f"{engine} run failed in {work}: {(run.stdout + run.stderr).strip()[-2000:]}")
    counts = (work / "counts.txt").read_text().split("\n")
    head = dict(line.split() for line in counts[:2])
    toggles = [0] * len(cells)
    reads: dict[str, int] = {}
    writes: dict[str, int] = {}
    for line in counts[2:]:
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "mem":
            m = mems[int(parts[1])]
            reads[m.path], writes[m.path] = int(parts[2]), int(parts[3])
        elif parts[0] == "tog":
            toggles[int(parts[1])] = int(parts[2])
    # every layer's results against the golden model
    words = [int(t, 16) if re.fullmatch(r"[0-9a-fA-F]+", t) else None for t in (work / "dump.hex").read_text().split()]
    n = x_int.shape[0]
    per = (dhi - dlo) + program.n_outputs
    compared = mismatches = 0
    first_bad = None
    if len(words) != per * n:
        raise RuntimeError(f"the testbench read back {len(words)} words, expected {per * n}")
    for s in range(n):
        row = words[s * per:(s + 1) * per]
        for li, plan in enumerate(program.layers):
            exp = expected[li][s].flatten().tolist()
            if plan.last:
                got = [_signed(v, acfg.acc_bits) if v is not None else None for v in row[dhi - dlo:]]
            else:
                lo = plan.out_base - dlo
                got = [_signed(v, bits) if v is not None else None for v in row[lo:lo + len(exp)]]
            for j, (g, e) in enumerate(zip(got, exp, strict=True)):
                compared += 1
                if g != e:
                    mismatches += 1
                    if first_bad is None:
                        first_bad = (s, li, j, int(e), -1 if g is None else g)
    return ArrayActivity(
        samples=n, cycles=int(head["cycles"]), busy_cycles=int(head["busy_cycles"]), toggles=toggles, reads=reads,
        writes=writes, outputs_compared=compared, mismatches=mismatches, first_bad=first_bad,
        sim_seconds=t2 - t1, compile_seconds=t1 - t0, period_ns=period_ns, timing=timing,
        fallback_reads=[m.path for m in mems if m.read_enable is None], engine=engine)
