"""Step 1 of the power flow: Yosys maps a generated design to osu018 standard cells (cached).

Inputs: the RTL from :func:`axhw.rtl.generate.generate`, the Yosys script ``power/synth.ys.j2``, the tool
versions and the library hash. Outputs: the gate-level netlist (Verilog and JSON with identical names), the
cell histogram, area (Yosys ``stat -liberty``) and leakage (the library's ``cell_leakage_power``, summed).
Every input is part of the cache key, so a template edit or a new Yosys invalidates the entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from axhw.common.io import atomic_dir
from axhw.common.paths import cache_dir
from axhw.power.flow.liberty import read_library
from axhw.power.flow.templates import render, template_text
from axhw.power.flow.tools import Toolchain, find_toolchain
from axhw.rtl.generate import MultiplierConfig, generate
from axhw.rtl.pe import ArrayConfig, generate_pe

if TYPE_CHECKING:
    from axhw.rtl.imported import ImportedConfig

__all__ = ["SynthConfig", "SynthResult", "default_cache", "synthesize"]


def default_cache() -> Path:
    """``power/synth`` in the user cache (:func:`axhw.common.paths.cache_dir`), never the installation."""
    return cache_dir("power", "synth")

#: Area-oriented ABC mapping. Measured: the default (delay-oriented) ``abc -liberty`` makes 8-bit DRUM area
#: non-monotone in k (k=4 > k=5) and leaves exact 8x8 at 13,225 um2; ``map -a`` is monotone for k = 1..6.
AREA_ABC_SCRIPT = "+strash;dch,-f;map,-a;topo;"


@dataclass(frozen=True)
class SynthConfig:
    """How to synthesize.

    Attributes:
        abc_script: ABC script passed to ``abc -liberty ... -script`` (area-oriented by default).
        cache_dir: cache root; one subdirectory per (design, parameters, tools, library, script) key.
        use_cache: reuse a cached result whose key matches.
        keep_nets: named nets of the top module kept through synthesis (Yosys ``keep``), so that their
            activity can be read from a gate-level simulation: measurement only
            (:mod:`axhw.power.multiplier.stages`). They stay nets of the netlist, but are no cut points:
            ABC may still duplicate logic across them, and a few more cells (+5 % at 8-bit DRUM-6) remain.
    """

    abc_script: str = AREA_ABC_SCRIPT
    cache_dir: Path = field(default_factory=default_cache)
    use_cache: bool = True
    keep_nets: tuple[str, ...] = ()


@dataclass(frozen=True)
class SynthResult:
    """A synthesized design.

    Attributes:
        design: the :class:`MultiplierConfig` fields.
        config_id: e.g. ``drum_k3_s8``.
        top: top module.
        cells: cell type -> count.
        n_cells: total cells.
        area_um2: Yosys ``stat -liberty`` chip area.
        leakage_nw: sum of the cells' ``cell_leakage_power`` (osu018 typical corner, 1.8 V).
        netlist: gate-level Verilog (osu018 cells).
        netlist_json: Yosys JSON of the same netlist (same names), for net -> driver-cell maps.
        key: cache key (SHA-256 of every input).
        versions: tool versions used.
    """

    design: dict[str, Any]
    config_id: str
    top: str
    cells: dict[str, int]
    n_cells: int
    area_um2: float
    leakage_nw: float
    netlist: Path
    netlist_json: Path
    key: str
    versions: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["netlist"], d["netlist_json"] = str(self.netlist), str(self.netlist_json)
        return d


def _cache_key(design: dict[str, Any], rtl: dict[str, str], sc: SynthConfig, tc: Toolchain) -> str:
    payload = {
        "design": design,
        "rtl": rtl,
        "templates": [template_text("synth.ys.j2"), template_text("netjson.ys.j2")],
        "abc_script": sc.abc_script,
        "versions": tc.versions,
        "library": tc.library_sha256,
    }
    if sc.keep_nets:  # only then: the keys of every ordinary synthesis stay what they were
        payload["keep_nets"] = {"nets": list(sc.keep_nets), "write_verilog": _KEEP_WRITE_FLAG}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def run_yosys(tc: Toolchain, script: Path, log: Path, cwd: Path) -> None:
    """Run a Yosys script; a failure is a ``RuntimeError`` with the end of Yosys's error output.

    Yosys writes ``$HOME/.yosys_history`` on every run, scripts included; axhw writes nothing outside its
    cache and ``--out``, so Yosys runs with a throw-away ``HOME``.
    """
    with tempfile.TemporaryDirectory(prefix="axhw-yosys-home-") as home:
        proc = subprocess.run([tc.yosys, "-q", "-l", str(log), "-s", str(script)], cwd=cwd, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, env={**os.environ, "HOME": home})
    if proc.returncode != 0:
        raise RuntimeError(f"yosys failed on {script}: {proc.stderr.strip()[-2000:]}")


def _load(entry: Path) -> SynthResult:
    d = json.loads((entry / "result.json").read_text())
    d["netlist"], d["netlist_json"] = entry / "netlist.v", entry / "netlist.json"
    return SynthResult(**d)


def synthesize_pe(acfg: ArrayConfig, sc: SynthConfig | None = None) -> SynthResult:
    """Synthesize a FlexFlow PE (multiplier, accumulator, local memories as flip-flops, controller).

    Local memories are register files here (osu018 has no SRAM macro), so keep ``max_fan_in`` small (e.g.
    64) to measure the datapath; storage energy comes from :mod:`axhw.power.sram_energy` instead.
    """
    return _synthesize(generate_pe(acfg), "pe", acfg.pe_id, {"pe": asdict(acfg)}, sc)


def synthesize(cfg: MultiplierConfig | ImportedConfig, sc: SynthConfig | None = None) -> SynthResult:
    """Synthesize ``cfg`` to osu018 cells, or return the cached result for identical inputs.

    ``cfg`` is a generated design (:class:`MultiplierConfig`) or an imported library circuit
    (:class:`axhw.rtl.imported.ImportedConfig`, see :func:`axhw.power.multiplier.compute.mode_config`): then the RTL is
    the user's stored sources plus the generated port adapter / sign-magnitude wrapper, and the design
    parameters in the cache key carry the circuit's name, variant and the sha256 of its sources.

    Raises:
        ToolMissing: Yosys or the library is not installed.

    >>> r = synthesize(MultiplierConfig("drum", bits=8, k=3))  # doctest: +SKIP
    >>> r.area_um2 < synthesize(MultiplierConfig("exact", bits=8)).area_um2  # doctest: +SKIP
    True
    """
    if isinstance(cfg, MultiplierConfig):
        return _synthesize(generate(cfg), cfg.top, cfg.config_id, asdict(cfg), sc)
    info = cfg.info
    design = {"design": "imported", "name": info.name, "variant": cfg.variant, "bits": cfg.bits,
              "signed": cfg.signed, "core_top": info.top, "core_signed": info.signed, "ports": dict(info.ports),
              "sources": list(info.sources), "source_hash": info.source_hash}
    return _synthesize(cfg.rtl_files(), cfg.top, cfg.config_id, design, sc)


#: The ``write_verilog`` flag of a synthesis with kept nets (see :func:`_keep_nets`; part of its cache key).
_KEEP_WRITE_FLAG = "-simple-lhs"


def _keep_nets(script: str, top: str, nets: tuple[str, ...]) -> str:
    """``script`` with ``setattr -set keep 1`` on ``nets`` of ``top`` right before ``synth``, the first pass
    that may merge or rename them (a net the design lacks selects nothing: Yosys only warns), and with
    ``write_verilog -simple-lhs``: a kept net that aliases a port or a constant is otherwise written as a
    concatenation assignment, which OpenSTA's Verilog reader rejects. Edits of the rendered script rather
    than of ``synth.ys.j2``, so the template, and with it every ordinary synthesis's cache key, stays."""
    if not nets:
        return script
    anchor = re.search(r"^synth\b", script, re.M)
    writer = re.search(r"^write_verilog\b", script, re.M)
    if anchor is None or writer is None:
        raise RuntimeError("synth.ys.j2 has no 'synth' or 'write_verilog' line to keep nets around")
    lines = "".join(f"setattr -set keep 1 {top}/w:{net}\n" for net in nets)
    return (script[:anchor.start()] + lines + script[anchor.start():writer.end()] + f" {_KEEP_WRITE_FLAG}"
            + script[writer.end():])


def _synthesize(rtl: dict[str, str], top: str, config_id: str, design: dict[str, Any],
                sc: SynthConfig | None) -> SynthResult:
    sc = sc or SynthConfig()
    tc = find_toolchain()
    key = _cache_key(design, rtl, sc, tc)
    root = Path(sc.cache_dir).resolve()
    entry = root / f"{config_id}-{key[:16]}"
    if sc.use_cache and (entry / "result.json").is_file():
        return _load(entry)
    root.mkdir(parents=True, exist_ok=True)
    with atomic_dir(entry) as tmp:
        src = tmp / "rtl"
        src.mkdir()
        for name, text in rtl.items():
            (src / name).write_text(text)
        (tmp / "synth.ys").write_text(_keep_nets(render(
            "synth.ys.j2", sources=[f"rtl/{n}" for n in sorted(rtl)], top=top, liberty=tc.liberty,
            abc_script=sc.abc_script, netlist="netlist.v"), top, sc.keep_nets))
        run_yosys(tc, tmp / "synth.ys", tmp / "synth.log", tmp)
        (tmp / "netjson.ys").write_text(render(
            "netjson.ys.j2", liberty=tc.liberty, netlist="netlist.v", top=top, json="netlist.json"))
        run_yosys(tc, tmp / "netjson.ys", tmp / "netjson.log", tmp)
        log = (tmp / "synth.log").read_text()
        areas = re.findall(r"Chip area for module .*?: ([0-9.]+)", log)
        if not areas:
            raise RuntimeError(f"yosys log {tmp / 'synth.log'} has no chip area (stat -liberty failed?)")
        netlist = json.loads((tmp / "netlist.json").read_text())
        cells = Counter(c["type"] for c in netlist["modules"][top]["cells"].values())
        lib = read_library(tc.liberty)
        unknown = sorted(set(cells) - set(lib.cells))
        if unknown:
            raise RuntimeError(f"netlist of {config_id} has cells missing from the library: {unknown}")
        result = {
            "design": design, "config_id": config_id, "top": top, "cells": dict(sorted(cells.items())),
            "n_cells": sum(cells.values()), "area_um2": float(areas[-1]),
            "leakage_nw": sum(n * lib.cells[c].leakage_nw for c, n in cells.items()), "key": key,
            "versions": tc.versions,
        }
        (tmp / "result.json").write_text(json.dumps(result, indent=2))
    return _load(entry)
