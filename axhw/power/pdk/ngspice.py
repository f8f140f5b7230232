"""Batched ngspice runs: many copies of one cell, each with its own stimulus, load and supply, in one deck.

Why batched: loading the sky130 models costs ~2.5 s per ngspice start, and lctime starts one simulation per
table point. Here every point of a 7x7 table (and every arc) is its own copy of the cell in one transient, so
the models load once per deck. Each copy has its own supply source, so its energy is measured alone; the
waveforms come back through ``wrdata`` (plain columns, read with numpy) and are analysed in
:mod:`.waveform`, which is tested without ngspice.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from axhw.power.pdk.cells import CellSpec
from axhw.power.pdk.source import PdkSource

__all__ = ["DECK_TRANSISTORS", "NgspiceMissing", "Probe", "SimulationFailed", "Traces", "find_ngspice",
           "internal_nets", "operating_point", "simulate", "transistors"]

#: leakage is picoamps and below: the default gmin (1e-12 S at every junction, 1.8 pA per node at 1.8 V) and
#: abstol (1 pA) would be the whole answer
_LEAKAGE_OPTIONS = "gmin=1e-18 abstol=1e-18"

_SUPPLY_PINS = {"VPWR": "vdd", "VPB": "vdd", "VGND": "0", "VNB": "0"}


class NgspiceMissing(RuntimeError):
    """ngspice is not installed."""


class SimulationFailed(RuntimeError):
    """ngspice stopped without results (no convergence); the message carries its last lines."""


def find_ngspice() -> str:
    path = shutil.which("ngspice")
    if path is None:
        raise NgspiceMissing("ngspice not found: install the Debian package 'ngspice' (apt-get install ngspice)")
    return path


@dataclass(frozen=True)
class Probe:
    """One copy of the cell.

    Attributes:
        pins: input pin -> a constant (V) or a piecewise-linear waveform ``((t_ns, V), ...)``.
        loads: output pin -> load capacitance (pF).
        currents: input pins whose source current is recorded (input capacitance).
    """

    pins: dict[str, float | tuple[tuple[float, float], ...]]
    loads: dict[str, float]
    currents: tuple[str, ...] = ()
    internals: tuple[str, ...] = ()
    nodeset: tuple[tuple[str, float], ...] = ()


@dataclass
class Traces:
    """Waveforms of one deck: ``time`` (s) and per probe its pins' voltages, supply and input currents (A)."""

    time: np.ndarray
    columns: dict[str, np.ndarray] = field(repr=False)

    def v(self, probe: int, pin: str) -> np.ndarray:
        return self.columns[f"v(p{probe}_{pin.lower()})"]

    def i_supply(self, probe: int) -> np.ndarray:
        """Current into the supply source's + terminal: negative while the supply delivers charge."""
        return self.columns[f"i(vdd{probe})"]

    def i_input(self, probe: int, pin: str) -> np.ndarray:
        return self.columns[f"i(v{probe}_{pin.lower()})"]

    def internal(self, probe: int, net: str) -> np.ndarray:
        return self.columns[f"v(x{probe}.{net.lower()})"]


def internal_nets(src: PdkSource, cell: CellSpec) -> list[str]:
    """The subcircuit's own nets (not its pins), e.g. a flip-flop's storage nodes."""
    text = src.netlist(cell).read_text()
    body = text[text.index(f".subckt {cell.name}"):]
    body = body[:body.index(".ends")]
    pins = set(src.subckt_pins(cell))
    nets: set[str] = set()
    for line in body.splitlines()[1:]:
        tok = line.split()
        if tok and tok[0][0].lower() == "x":
            nets |= {n for n in tok[1:5] if n not in pins}
    return sorted(nets)


def _source(value: float | tuple[tuple[float, float], ...]) -> str:
    if isinstance(value, (int, float)):
        return f"dc {value:.6g}"
    return "pwl(" + " ".join(f"{t:.6g}n {v:.6g}" for t, v in value) + ")"


def deck(src: PdkSource, cell: CellSpec, probes: Sequence[Probe], supply: float, stop_ns: float,
         step_ns: float, temp_c: float = 25.0, options: str = "") -> tuple[str, list[str]]:
    """The deck's text and the vectors it writes."""
    order = src.subckt_pins(cell)
    lines = [f"* axhw batched characterization: {cell.name}, {len(probes)} copies",
             f".lib {src.models} tt", *(f".include {m}" for m in src.extra_models(cell)),
             src.netlist_text(cell), f".temp {temp_c:g}",
             ".option noinit" + (f" {options}" if options else "")]
    vectors: list[str] = []
    for i, p in enumerate(probes):
        lines.append(f"vdd{i} vdd{i} 0 dc {supply:.6g}")
        nodes = []
        for pin in order:
            if pin in _SUPPLY_PINS:
                nodes.append("0" if _SUPPLY_PINS[pin] == "0" else f"vdd{i}")
            else:
                nodes.append(f"p{i}_{pin.lower()}")
        lines.append(f"x{i} {' '.join(nodes)} {cell.name}")
        for pin, value in p.pins.items():
            lines.append(f"v{i}_{pin.lower()} p{i}_{pin.lower()} 0 {_source(value)}")
            if not isinstance(value, (int, float)):
                vectors.append(f"v(p{i}_{pin.lower()})")
        for pin, cap in p.loads.items():
            lines.append(f"c{i}_{pin.lower()} p{i}_{pin.lower()} 0 {cap:.6g}p")
            vectors.append(f"v(p{i}_{pin.lower()})")
        vectors.append(f"i(vdd{i})")
        vectors += [f"i(v{i}_{pin.lower()})" for pin in p.currents]
        vectors += [f"v(x{i}.{net.lower()})" for net in p.internals]
        for node, volts in p.nodeset:
            name = f"p{i}_{node.lower()}" if node in p.loads or node in p.pins else f"x{i}.{node.lower()}"
            lines.append(f".nodeset v({name})={volts:.6g}")
    analysis = "op" if stop_ns <= 0 else f"tran {step_ns:.6g}n {stop_ns:.6g}n 0 {step_ns:.6g}n"
    lines += [".control", "set wr_singlescale", "set wr_vecnames", "set numdgt=12", analysis,
              "wrdata out.txt " + " ".join(vectors), "quit", ".endc", ".end"]
    return "\n".join(lines) + "\n", vectors


def _run_one(src: PdkSource, text: str, stop_ns: float) -> Traces:
    with tempfile.TemporaryDirectory(prefix="axhw-ngspice-") as tmp:
        work = Path(tmp)
        # one OpenMP thread per ngspice: with its default two, two decks side by side on two cores ran 15x slower
        # each (spin-waiting threads; 100 s instead of 6 s for a 10-copy flip-flop deck, measured)
        (work / ".spiceinit").write_text(src.spinit.read_text() + "\nset num_threads=1\n")
        (work / "deck.sp").write_text(text)
        proc = subprocess.run([find_ngspice(), "-b", "deck.sp"], cwd=work, capture_output=True, text=True)
        out = work / "out.txt"
        if proc.returncode != 0 or not out.is_file():
            tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-4:])
            raise SimulationFailed(f"ngspice failed (exit {proc.returncode}): {tail}")
        with out.open() as f:
            header = f.readline().split()
            data = np.loadtxt(f, ndmin=2)
    if header and header[0].lower() != "time":  # an operating point: one row, no time column
        header, data = ["time", *header], np.hstack([np.zeros((data.shape[0], 1)), data])
    cols = {name.lower(): data[:, k] for k, name in enumerate(header)}
    traces = Traces(cols.pop("time"), cols)
    if stop_ns > 0 and traces.time[-1] < stop_ns * 1e-9 * (1 - 1e-6):
        # ngspice writes what it has when a transient gives up (time step too small): never analyse a stub
        raise SimulationFailed(f"ngspice stopped at {traces.time[-1] * 1e9:.4g} ns of {stop_ns:.4g} ns")
    return traces


#: transistors per deck: a deck's cost grows faster than its size beyond a few hundred (a 100-copy flip-flop
#: deck, 2,400 transistors, took over 240 s where four of 25 copies take ~40 s; 100 NAND2s, 400, take 5 s)
DECK_TRANSISTORS = 600


def transistors(src: PdkSource, cell: CellSpec) -> int:
    """How many devices (``X`` and ``R`` lines) the cell's subcircuit instantiates."""
    text = src.netlist(cell).read_text()
    body = text[text.index(f".subckt {cell.name}"):]
    return sum(1 for line in body[:body.index(".ends")].splitlines()[1:] if line[:1].lower() in ("x", "r"))


def simulate(src: PdkSource, cell: CellSpec, probes: Sequence[Probe], supply: float, stop_ns: float,
             step_ns: float, jobs: int = 1, chunk: int | None = None, options: str = "") -> list[tuple[Traces, int]]:
    """Run ``probes`` in decks of at most ``chunk`` copies (default: :data:`DECK_TRANSISTORS` worth),
    ``jobs`` ngspice processes at a time.

    Returns, per probe in order, its deck's traces and its index inside that deck.
    """
    if chunk is None:
        chunk = max(4, DECK_TRANSISTORS // max(1, transistors(src, cell)))
    groups = [list(probes[k:k + chunk]) for k in range(0, len(probes), chunk)]
    texts = [deck(src, cell, g, supply, stop_ns, step_ns, options=options)[0] for g in groups]
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        results = list(pool.map(lambda t: _run_one(src, t, stop_ns), texts))
    return [(tr, i) for tr, g in zip(results, groups, strict=True) for i in range(len(g))]


def operating_point(src: PdkSource, cell: CellSpec, probes: Sequence[Probe], supply: float,
                    jobs: int = 1) -> list[tuple[Traces, int]]:
    """A DC operating point per probe (constant pins; ``nodeset`` picks a stored state), with the small gmin
    and abstol that leakage currents need. Each returned trace has one sample."""
    return simulate(src, cell, probes, supply, 0.0, 1.0, jobs=jobs, options=_LEAKAGE_OPTIONS)
