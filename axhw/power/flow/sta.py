"""OpenSTA power of a synthesized netlist: vectorless, and annotated with measured activity (step 2).

Measured fact about Debian's OpenSTA (2019 snapshot, ``sta`` 2.0.17): ``sta::set_power_pin_activity`` is
accepted, but ``report_power``'s activity propagation overwrites every cell pin that is reachable from the
inputs (setting all pins to 0.1, 0.5 or 1e8 toggles per cycle gives the same power). So by default the
flow annotates **per instance**: with a global activity of 1 toggle per cycle OpenSTA reports each
instance's internal + switching power per output toggle (its tables at the real slews and loads, and its
leakage); every osu018 cell ABC maps to has one output, so the measured toggle rate of that output scales
it exactly (the split of internal energy between input arcs stays OpenSTA's vectorless weighting).
:func:`pin_annotation_honored` probes the installed ``sta``; where it honours pin activities (newer
builds) the per-pin Tcl is used instead. Where an OpenSTA with ``read_vcd`` exists (an ``openroad`` binary,
or a newer ``sta``; :attr:`Toolchain.vcd_reader`), ``auto`` annotation reads the simulation's VCD directly,
as the flow in docs/power.md specifies; the per-net activity from pyvcd is still computed and reported.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from axhw.power.flow.activity import NetActivity
from axhw.power.flow.synth import SynthResult
from axhw.power.flow.templates import render
from axhw.power.flow.tools import batch_args, find_toolchain

__all__ = ["PowerConfig", "PowerResult", "activity_power", "critical_path_ns", "net_drivers", "pin_annotation_honored",
           "resolve_annotation", "run_sta", "vectorless_power"]


@dataclass(frozen=True)
class PowerConfig:
    """Power analysis settings.

    Attributes:
        clock_mhz: multiply rate (one multiply per cycle); 100 MHz by default, a clock every osu018
            multiplier here meets (documented in docs/power.md).
        input_activity: vectorless default input toggles per cycle (OpenSTA's own default, 0.1).
        annotation: ``auto`` (``vcd`` where a ``read_vcd`` tool exists, else ``pin`` if the installed sta
            honours pin activities, else ``instance``), ``vcd``, ``pin`` or ``instance``.
        vcd_scope: hierarchy of the netlist instance in the testbench VCD (``power/tb.v.j2``).
    """

    clock_mhz: float = 100.0
    input_activity: float = 0.1
    annotation: Literal["auto", "vcd", "pin", "instance"] = "auto"
    vcd_scope: str = "tb/dut"

    @property
    def period_ns(self) -> float:
        return 1e3 / self.clock_mhz


@dataclass(frozen=True)
class PowerResult:
    """Power at ``clock_mhz`` in W, and energy per multiply in pJ (total power / multiply rate).

    Attributes:
        method: ``vectorless``, ``pin`` or ``instance``.
        internal_w, switching_w, leakage_w, total_w: OpenSTA's groups.
        energy_pj: ``total_w / clock`` (one multiply per cycle).
        mean_toggles: mean measured toggles per cycle over cell outputs (nan when vectorless).
    """

    method: str
    clock_mhz: float
    internal_w: float
    switching_w: float
    leakage_w: float
    total_w: float
    energy_pj: float
    mean_toggles: float = float("nan")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_sta(script: str, exe: str | None = None) -> str:
    """Run a Tcl script in OpenSTA (``exe``: another STA binary, e.g. ``openroad``; default ``sta``) and return
    its output.

    Raises:
        RuntimeError: the tool failed or reported an error (the output's tail in the message).
    """
    exe = exe or find_toolchain().sta
    with tempfile.TemporaryDirectory(prefix="axhw-sta-") as tmp:
        path = Path(tmp) / "script.tcl"
        path.write_text(script)
        proc = subprocess.run([exe, *batch_args(exe), str(path)], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 or "Error" in out:
        raise RuntimeError(f"{Path(exe).name} failed: {out.strip()[-2000:]}")
    return out


def critical_path_ns(synth: SynthResult) -> float:
    """The longest input-to-output delay (ns) of ``synth``'s combinational netlist in its library (OpenSTA:
    ideal input edges, unloaded outputs): the clock a multiplier allows is at most ``1000 / critical_path_ns``
    MHz (:mod:`axhw.power.search.logic_voltage`)."""
    tc = find_toolchain()
    out = run_sta(render("mult_timing.tcl.j2", liberty=tc.liberty, netlist=synth.netlist, top=synth.top))
    arrival = re.search(r"(-?[0-9.]+)\s+data arrival time", out.split("AXHW_TIMING", 1)[-1])
    if arrival is None:
        raise RuntimeError(f"sta reported no path through {synth.netlist}: {out.strip()[-1000:]}")
    return float(arrival.group(1))


def resolve_annotation(cfg: PowerConfig) -> str:
    """The annotation ``cfg`` asks for, with ``auto`` resolved against the installed tools."""
    if cfg.annotation != "auto":
        return cfg.annotation
    if find_toolchain().vcd_reader is not None:
        return "vcd"
    return "pin" if pin_annotation_honored() else "instance"


def _total(out: str) -> tuple[float, float, float, float]:
    m = re.search(r"^Total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out.split("AXHW_TOTAL", 1)[-1], re.M)
    if m is None:
        raise RuntimeError(f"no Total line in report_power output: {out[-1000:]}")
    internal, switching, leakage, total = (float(x) for x in m.groups())
    return internal, switching, leakage, total


def _script(synth: SynthResult, cfg: PowerConfig, mode: str, pins: list[tuple[str, float, float]],
            vcd: Path | None = None) -> str:
    tc = find_toolchain()
    return render("power.tcl.j2", liberty=tc.liberty, netlist=synth.netlist, top=synth.top,
                  period_ns=cfg.period_ns, mode=mode, input_activity=cfg.input_activity, pins=pins,
                  vcd=vcd, vcd_scope=cfg.vcd_scope)


def _result(method: str, cfg: PowerConfig, internal: float, switching: float, leakage: float,
            mean_toggles: float = float("nan")) -> PowerResult:
    total = internal + switching + leakage
    return PowerResult(method, cfg.clock_mhz, internal, switching, leakage, total,
                       total / (cfg.clock_mhz * 1e6) * 1e12, mean_toggles)


def vectorless_power(synth: SynthResult, cfg: PowerConfig | None = None) -> PowerResult:
    """OpenSTA's vectorless estimate: default input activity propagated through the cell functions."""
    cfg = cfg or PowerConfig()
    internal, switching, leakage, _ = _total(run_sta(_script(synth, cfg, "vectorless", [])))
    return _result("vectorless", cfg, internal, switching, leakage)


def net_drivers(synth: SynthResult) -> tuple[dict[str, str], dict[str, list[str]]]:
    """From the netlist JSON: (cell -> VCD name of its output net bit, cell pin ``inst/PIN`` -> net names).

    The second map lists, for every cell pin, the VCD name of the net it connects to (one entry).
    """
    mod = json.loads(Path(synth.netlist_json).read_text())["modules"][synth.top]
    bit_name: dict[int, str] = {}
    for name, net in mod["netnames"].items():
        bits = net["bits"]
        offset = int(net.get("offset", 0))
        for i, bit in enumerate(bits):
            if isinstance(bit, int) and (bit not in bit_name or not net.get("hide_name", 0)):
                bit_name.setdefault(bit, name if len(bits) == 1 else f"{name}[{offset + i}]")
    out_net: dict[str, str] = {}
    pin_net: dict[str, list[str]] = {}
    for inst, cell in mod["cells"].items():
        for port, bits in cell["connections"].items():
            bit = bits[0]
            if not isinstance(bit, int):
                continue
            name = bit_name[bit]
            pin_net[f"{inst}/{port}"] = [name]
            if cell["port_directions"][port] == "output":
                out_net[inst] = name
    return out_net, pin_net


@cache
def pin_annotation_honored() -> bool:
    """Whether the installed ``sta`` keeps ``set_power_pin_activity`` values through ``report_power``.

    Probed on a 2-bit exact multiplier: all cell pins at 0.05 and then at 0.2 toggles per cycle must give
    dynamic power in the ratio 4.
    """
    from axhw.power.flow.synth import synthesize
    from axhw.rtl.generate import MultiplierConfig

    synth = synthesize(MultiplierConfig("exact", bits=2))
    _, pin_net = net_drivers(synth)
    cfg = PowerConfig()
    dyn = []
    for act in (0.05, 0.2):
        internal, switching, _, _ = _total(run_sta(_script(synth, cfg, "pin", [(p, act, 0.5) for p in pin_net])))
        dyn.append(internal + switching)
    return dyn[0] > 0 and abs(dyn[1] / dyn[0] - 4.0) < 0.1


def instance_rows(out: str, marker: str = "AXHW_INSTANCES") -> dict[str, tuple[float, float, float]]:
    """Per-instance ``(internal, switching, leakage)`` power (W) of OpenSTA's ``report_power -instances``
    table printed after ``marker`` in ``out``."""
    body = out.split(marker, 1)[-1]
    rows = {}
    for m in re.finditer(r"^\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s*$", body, re.M):
        try:
            internal, switching, leakage = float(m.group(1)), float(m.group(2)), float(m.group(3))
        except ValueError:
            continue
        rows[m.group(5)] = (internal, switching, leakage)
    return rows


def activity_power(synth: SynthResult, activity: dict[str, NetActivity],
                   cfg: PowerConfig | None = None, vcd: Path | None = None) -> PowerResult:
    """Power with measured per-net activity (``activity`` from :func:`axhw.power.flow.activity.simulate`).

    ``vcd``: the simulation's VCD, read by OpenSTA's ``read_vcd`` in ``vcd`` annotation (required there).
    """
    cfg = cfg or PowerConfig()
    out_net, pin_net = net_drivers(synth)
    missing = sorted({n for names in pin_net.values() for n in names} - set(activity))
    if missing:
        raise RuntimeError(f"VCD has no activity for nets {missing[:5]} (netlist/VCD name mismatch)")
    mean = sum(activity[n].toggles_per_cycle for n in out_net.values()) / max(len(out_net), 1)
    mode = resolve_annotation(cfg)
    if mode == "vcd":
        reader = find_toolchain().vcd_reader
        if reader is None:
            raise ValueError("vcd annotation needs OpenSTA with read_vcd: put an 'openroad' binary on PATH "
                             "or use annotation='pin'/'instance'")
        if vcd is None or not Path(vcd).is_file():
            raise ValueError("vcd annotation needs the simulation's VCD: simulate with keep_vcd=True")
        internal, switching, leakage, _ = _total(run_sta(_script(synth, cfg, "vcd", [], Path(vcd)), reader))
        return _result("vcd", cfg, internal, switching, leakage, mean)
    if mode == "pin":
        pins = [(p, activity[n[0]].toggles_per_cycle, activity[n[0]].duty) for p, n in sorted(pin_net.items())]
        internal, switching, leakage, _ = _total(run_sta(_script(synth, cfg, "pin", pins)))
        return _result("pin", cfg, internal, switching, leakage, mean)
    rows = instance_rows(run_sta(_script(synth, cfg, "unit", [])))
    if set(rows) != set(out_net):
        raise RuntimeError(f"report_power -instances lists {len(rows)} instances, netlist has {len(out_net)}")
    internal = switching = leakage = 0.0
    for inst, (i_w, s_w, l_w) in rows.items():
        alpha = activity[out_net[inst]].toggles_per_cycle
        internal += i_w * alpha
        switching += s_w * alpha
        leakage += l_w
    return _result("instance", cfg, internal, switching, leakage, mean)
