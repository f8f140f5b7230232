"""Accelerator-level power, step 1: Yosys maps the whole PE array to osu018 cells, memories excluded (cached).

The array's local memories and buffers (every module rendered from ``rtl/mem.v.j2``) are black boxes here:
osu018 has no SRAM macro, and as flip-flops they would be register files, not the SRAMs an accelerator
uses; their energy comes from the SRAM voltage-energy model (:mod:`axhw.power.sram_energy`) with the access
counts of the simulation instead (:mod:`axhw.power.accel.sim`). Everything else -- PEs (multiplier,
accumulator, controller), sequencer, re-quantizer, the array's glue -- is synthesized as in
``power/synth.ys.j2`` (area-oriented ABC, no multi-output cells), with the hierarchy kept at those units so
that every cell's energy can be charged to one of them. The multiplier's helper modules (DRUM's leading-one
detector, encoder, ...) are flattened into it, as in the multiplier-only flow.

Inputs: :func:`axhw.rtl.pe.array_files` (whatever the array generator renders, so new units and memories of
the array are picked up), ``power/accel_synth.ys.j2``, ``power/accel_netjson.ys.j2``. Outputs: the
hierarchical gate-level netlist (memories as instances of undefined modules), Verilog stubs of the memory
modules (for OpenSTA), the netlist as Yosys JSON (same names), area and leakage per module. Cache key: the
rendered RTL, the templates, the ABC script, tool versions and the library hash, as :mod:`axhw.power.flow.synth`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from axhw.common.io import atomic_dir, locked
from axhw.common.progress import step
from axhw.power.flow.liberty import read_library
from axhw.power.flow.synth import SynthConfig, run_yosys
from axhw.power.flow.templates import render, template_text
from axhw.power.flow.tools import Toolchain, find_toolchain
from axhw.rtl.pe import ArrayConfig, array_files, generate_array

__all__ = ["ARRAY_BUFFERING", "CLOCK_GATE", "ArraySynth", "MemorySpec", "array_abc_script", "memory_specs", "synthesize_array"]

#: ABC commands appended to the synthesis script of the array: buffer every net to a fanout of at most 8.
#: Why: the area-oriented mapping (``map -a``, kept for the multiplier tables) inserts no buffers, so the
#: sequencer's state decode drove ~360 pins from one INVX1 (6.3 pF, 49 ns slew): the 16-PE LeNet-5 array
#: met only 100.8 ns at osu018 (measured), and those slow edges also burn short-circuit energy in every load.
ARRAY_BUFFERING = "buffer,-N,8;topo;"


def array_abc_script(sc: SynthConfig) -> str:
    """The ABC script of the array's synthesis: the flow's (area-oriented by default), then buffering."""
    return sc.abc_script + ARRAY_BUFFERING


#: The generated clock gate's module and its gated-clock port (``rtl/clock_gate.v.j2``).
CLOCK_GATE = ("clock_gate", "gclk")

#: The template every array memory is rendered from (``axhw.rtl.pe``): such modules become SRAMs.
MEMORY_TEMPLATE = "mem.v.j2"
TOP = "pe_array"


@dataclass(frozen=True)
class MemorySpec:
    """One memory module of the array: ``depth`` words of ``width`` bits, written (``write``) or read-only."""

    module: str
    width: int
    depth: int
    write: bool

    @property
    def bits(self) -> int:
        return self.width * self.depth


@dataclass(frozen=True)
class ArraySynth:
    """A synthesized array.

    Attributes:
        config_id: the array's :attr:`ArrayConfig.config_id`.
        top: ``pe_array``.
        memories: memory module -> :class:`MemorySpec` (black boxes in the netlist).
        modules: synthesized module -> ``{"cells": {type: n}, "n_cells", "area_um2", "leakage_nw"}`` (one copy).
        area_um2: whole array without memories (Yosys ``stat -liberty`` of the top, hierarchy included).
        netlist: gate-level Verilog (hierarchical; memory instances refer to modules it does not define).
        stubs: Verilog of the memory modules' ports only.
        netlist_json: Yosys JSON of netlist + stubs, names as in the Verilog.
        sta_netlist: the flat netlist OpenSTA reads (``power/accel_stanet.ys.j2``).
        key: cache key.
    """

    config_id: str
    top: str
    memories: dict[str, MemorySpec]
    modules: dict[str, dict[str, Any]]
    area_um2: float
    netlist: Path
    stubs: Path
    netlist_json: Path
    sta_netlist: Path
    key: str
    versions: dict[str, str] = field(default_factory=dict)


def memory_specs(acfg: ArrayConfig) -> dict[str, MemorySpec]:
    """The array's memory modules, from the generator's own file list (template ``mem.v.j2``).

    >>> from axhw.rtl.generate import MultiplierConfig
    >>> sorted(memory_specs(ArrayConfig(MultiplierConfig("exact", 8), pes=2, max_fan_in=64)))[:2]
    ['array_bbuf', 'array_imem']
    """
    out = {}
    for _name, template, ctx in array_files(acfg):
        if template == MEMORY_TEMPLATE:
            m, width, depth = str(ctx["module"]), ctx["width"], ctx["depth"]
            assert isinstance(width, int) and isinstance(depth, int)  # _mem's (a template context holds any value)
            out[m] = MemorySpec(m, width, depth, bool(ctx["write"]))
    return out


_MODULE_RE = re.compile(r"^\s*module\s+(\w+)", re.M)
_INST_RE = re.compile(r"^\s*(\w+)\s+(?:#\s*\(.*?\)\s*)?(\w+)\s*\(", re.M)


def _units(files: dict[str, str], memories: set[str]) -> tuple[list[str], list[str]]:
    """(modules whose hierarchy is kept, memory files): every module but the memories and the multipliers'
    helpers (modules instantiated, transitively, only below a ``mul_*`` module)."""
    defined: dict[str, str] = {}
    for text in files.values():
        for m in _MODULE_RE.findall(text):
            defined[m] = text
    children = {m: {c for c, _ in _INST_RE.findall(text) if c in defined and c != m} for m, text in defined.items()}
    helpers: set[str] = set()
    stack = [c for m in defined if m.startswith("mul_") for c in children[m]]
    while stack:
        c = stack.pop()
        if c not in helpers:
            helpers.add(c)
            stack.extend(children[c])
    keep = sorted(m for m in defined if m not in memories and m not in helpers)
    mem_files = sorted(n for n, text in files.items() if set(_MODULE_RE.findall(text)) & memories)
    return keep, mem_files


def _load(entry: Path) -> ArraySynth:
    d = json.loads((entry / "result.json").read_text())
    d["memories"] = {k: MemorySpec(**v) for k, v in d["memories"].items()}
    d["netlist"], d["stubs"], d["netlist_json"] = entry / "netlist.v", entry / "stubs.v", entry / "netlist.json"
    d["sta_netlist"] = entry / "sta_netlist.v"
    return ArraySynth(**d)


def synthesize_array(acfg: ArrayConfig, sc: SynthConfig | None = None) -> ArraySynth:
    """Synthesize ``acfg``'s array without its memories, or return the cached result for identical inputs.

    Raises:
        ToolMissing: Yosys or the library is not installed.

    >>> from axhw.rtl.generate import MultiplierConfig
    >>> s = synthesize_array(ArrayConfig(MultiplierConfig("drum", 8, 2), pes=2, max_fan_in=64))  # doctest: +SKIP
    >>> sorted(s.memories)[-2:], s.modules["mul_drum_k2_s8"]["n_cells"] > 100  # doctest: +SKIP
    (['array_wbuf', 'pe_nlm'], True)
    """
    sc = sc or SynthConfig()
    tc = find_toolchain()
    files = generate_array(acfg)
    memories = memory_specs(acfg)
    keep, mem_files = _units(files, set(memories))
    payload = {"array": acfg.config_id, "rtl": files, "keep": keep,
               "templates": [template_text(t) for t in ("accel_synth.ys.j2", "accel_netjson.ys.j2", "accel_stanet.ys.j2")],
               "abc_script": array_abc_script(sc), "versions": tc.versions, "library": tc.library_sha256}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    root = Path(sc.cache_dir).resolve()
    entry = root / f"{acfg.config_id}-{key[:16]}"
    if sc.use_cache and (entry / "result.json").is_file():
        return _load(entry)
    root.mkdir(parents=True, exist_ok=True)
    with locked(root / f".{acfg.config_id}.lock"):
        if sc.use_cache and (entry / "result.json").is_file():
            return _load(entry)
        with step(f"synthesizing the {acfg.config_id} array with Yosys (once per design, cached in {root})"), \
                atomic_dir(entry) as tmp:
            _build(tmp, files, keep, mem_files, memories, acfg, sc, tc, key)
    return _load(entry)


def _build(tmp: Path, files: dict[str, str], keep: list[str], mem_files: list[str],
           memories: dict[str, MemorySpec], acfg: ArrayConfig, sc: SynthConfig, tc: Toolchain, key: str) -> None:
    src = tmp / "rtl"
    src.mkdir()
    for name, text in files.items():
        (src / name).write_text(text)
        # The memories' $readmemh images: Yosys opens them even for black boxes; their contents do not matter.
        for image in re.findall(r'\$readmemh\("([^"]+)"', text):
            (tmp / image).write_text("0\n")
    sources = [f"rtl/{n}" for n in sorted(files) if n not in mem_files]
    (tmp / "synth.ys").write_text(render(
        "accel_synth.ys.j2", memories=[f"rtl/{n}" for n in mem_files], sources=sources, top=TOP, keep=keep,
        liberty=tc.liberty, abc_script=array_abc_script(sc), netlist="netlist.v", stubs="stubs.v"))
    run_yosys(tc, tmp / "synth.ys", tmp / "synth.log", tmp)
    (tmp / "netjson.ys").write_text(render("accel_netjson.ys.j2", liberty=tc.liberty, stubs="stubs.v",
                                           netlist="netlist.v", top=TOP, json="netlist.json"))
    run_yosys(tc, tmp / "netjson.ys", tmp / "netjson.log", tmp)
    gate = CLOCK_GATE if any(re.search(rf"^\s*module\s+{CLOCK_GATE[0]}\b", t, re.M) for t in files.values()) else None
    (tmp / "stanet.ys").write_text(render("accel_stanet.ys.j2", liberty=tc.liberty, stubs="stubs.v",
                                          netlist="netlist.v", top=TOP, memories=sorted(memories),
                                          sta_netlist="sta_netlist.v", clock_gate=gate))
    run_yosys(tc, tmp / "stanet.ys", tmp / "stanet.log", tmp)
    log = (tmp / "synth.log").read_text()
    top_area = re.findall(r"Chip area for top module '\\?" + TOP + r"': ([0-9.]+)", log)
    if not top_area:
        raise RuntimeError(f"yosys log {tmp / 'synth.log'} has no chip area of the top (stat -liberty failed?)")
    lib = read_library(tc.liberty)
    mods = json.loads((tmp / "netlist.json").read_text())["modules"]
    modules: dict[str, dict[str, Any]] = {}
    for name, mod in mods.items():
        if name in memories or name in lib.cells:
            continue
        cells = Counter(c["type"] for c in mod["cells"].values() if c["type"] in lib.cells)
        modules[name] = {"cells": dict(sorted(cells.items())), "n_cells": sum(cells.values()),
                         "area_um2": sum(n * lib.cells[c].area_um2 for c, n in cells.items()),
                         "leakage_nw": sum(n * lib.cells[c].leakage_nw for c, n in cells.items())}
        unknown = sorted({c["type"] for c in mod["cells"].values()} - set(lib.cells) - set(mods))
        if unknown:
            raise RuntimeError(f"netlist of {acfg.config_id} has cells missing from the library: {unknown}")
    result = {"config_id": acfg.config_id, "top": TOP, "memories": {k: asdict(v) for k, v in memories.items()},
              "modules": modules, "area_um2": float(top_area[-1]), "key": key, "versions": tc.versions}
    (tmp / "result.json").write_text(json.dumps(result, indent=2))
