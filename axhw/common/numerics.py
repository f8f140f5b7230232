"""The numerics stamp: which version of the code that decides axhw's numbers produced a result.

Why: committed results (``docs/results``) and cached measurements outlive the code that computed them. A
change to a multiplier model, the SRAM flip process, the training loop or the power flow changes the
numbers, but nothing in an old ``power.json`` says so. :func:`stamp` hashes exactly the files that decide
numbers, so a result carries ``{"numerics": describe()}`` and a test compares it with the code of today
(``tests/common/test_numerics.py``; stale results are listed, with why, in ``docs/results/STALE.md``).
Cached evaluations and power measurements are keyed by it too
(:class:`axhw.power.search.targets.ResultCache`), so changed numerics never read a stale entry.
(:func:`axhw.training.sweep.code_version` is the wider key of the sweeps: every ``.py`` file of the package.)

What decides a number (:data:`NUMERICS_SOURCES`, globs relative to the package root):

* ``arith/`` (fixed point, integer GEMM, the multiplier models, SRAM bit flips, imported product tables)
  and the compiled kernels' C sources and headers (``arith/kernels/*.c``, ``*.h``; their build flags live
  in ``arith/kernels/build.py``): every hardware-model product.
* ``golden/`` (the integer network everything is checked against), ``nn/`` (hardware-aware layers, the
  fused forward, quantisation and calibration, torch.fx lowering), ``training/`` (the trainer, AxTrain's
  phases and sensitivity, evaluation, the sweeps' experiment definitions).
* ``data/loaders.py``, ``data/readers.py`` (parsing, standardisation, the seeded stratified splits) and
  ``data/registry.py`` (Table 1: topologies and the NTV voltages the studies use).
* ``approxann/`` (the ApproxAnn baseline's switching and retraining).
* ``power/search/``, ``power/flow/``, ``power/multiplier/``, ``power/sram_energy.py``, ``power/accel/``:
  synthesis, simulation, activity, OpenSTA, the SRAM energy model and the minimum-power search. The report
  modules count as well: ``power/search/report.py`` averages power changes over data sets in its summary
  and ``per_target.py``'s sections average over seeds and data sets (numbers that appear nowhere else).
* ``common/reproducible.py``: the float-math settings (CPU dispatch, MKL and oneDNN paths, threads).
* ``rtl/generate.py``, ``rtl/pe.py``, ``rtl/imported.py``, ``rtl/program.py`` and the hardware-flow
  templates (``_hw/rtl/*.j2``, ``_hw/power/*.j2``): the Verilog that is synthesized, the Yosys and OpenSTA
  scripts, the testbench that produces activity, and the array program whose cycles price the accelerator.
* ``apps/figures.py``, ``apps/experiments.py``: the reproduction's normalisations and averages
  (``docs/results/summary.md``).

What only prints, schedules or checks, and is left out: command lines (``*/cli.py``, ``apps/cli.py``,
``__main__.py``: they build the configuration, which every result records itself), ``common/`` apart from
``reproducible.py`` (files, paths, tables, progress), ``data/acquire.py`` (downloads, checksum-verified:
the bytes are fixed by the registry's checksums), ``rtl/verify*.py``, ``rtl/netverify.py``,
``rtl/simulators.py``, ``rtl/registry.py`` (verification: they pass or fail, they compute no result), the
``sim/`` testbenches (verification, and the one-off import of a circuit, whose product table is then data that
every result using it identifies by hash),
``apps/demo.py`` (writes no committed result) and ``examples/``. Tool versions (Yosys, OpenSTA, Icarus)
and the cell library are not code: the synthesis cache keys them (:mod:`axhw.power.flow.synth`).

The hash reads file bytes with CRLF normalised to LF (a Windows checkout stamps alike) under their
path relative to the package root, the hardware-flow templates as ``_hw/<rtl|power>/<name>`` both in a
source checkout (top-level ``rtl/``, ``power/``) and in an installed wheel (``axhw/_hw/...``, see
``pyproject.toml``; the C kernels ship there too), so a checkout and its wheel give the same stamp.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["EXCLUDED", "NUMERICS_SOURCES", "committed_results_problems", "describe", "files", "stale_entries",
           "stamp"]

#: Globs (relative to the axhw package root) of the files that decide numbers; see the module docstring.
NUMERICS_SOURCES: tuple[str, ...] = (
    "arith/**/*.py", "arith/kernels/*.c", "arith/kernels/*.h",
    "golden/**/*.py", "nn/**/*.py", "training/**/*.py",
    "data/loaders.py", "data/readers.py", "data/registry.py",
    "approxann/**/*.py",
    "power/search/**/*.py", "power/flow/**/*.py", "power/multiplier/**/*.py", "power/sram_energy.py",
    "power/accel/**/*.py",
    "common/reproducible.py",
    "rtl/generate.py", "rtl/pe.py", "rtl/imported.py", "rtl/program.py",
    "apps/figures.py", "apps/experiments.py",
    "_hw/rtl/*.j2", "_hw/power/*.j2",
)
#: Files the globs above match that only print or parse options (matched against the relative path).
EXCLUDED: tuple[str, ...] = ("*/cli.py", "*/__main__.py")

_PACKAGE = Path(__file__).resolve().parent.parent  # the axhw package (this file is axhw/common/numerics.py)
_HW = "_hw/"


def _hw_dir(root: Path, name: str) -> Path:
    """Where ``_hw/<name>`` lives for the package at ``root``: the wheel's copy, else the checkout's top-level
    folder (as :func:`axhw.common.paths.resource_dir`, but for any root)."""
    wheel = root / "_hw" / name
    return wheel if wheel.is_dir() else root.parent / name


def files(root: str | Path | None = None) -> list[tuple[str, Path]]:
    """``(relative path, file)`` of every numerics source of the package at ``root`` (default: this axhw),
    sorted by relative path. A template folder that is missing contributes nothing (the stamp then differs,
    which the committed-results check reports; a training run must never fail over its stamp)."""
    base = Path(root).resolve() if root is not None else _PACKAGE
    found: dict[str, Path] = {}
    for pattern in NUMERICS_SOURCES:
        if pattern.startswith(_HW):
            name, glob = pattern[len(_HW):].split("/", 1)
            folder, prefix = _hw_dir(base, name), f"{_HW}{name}/"
        else:
            folder, glob, prefix = base, pattern, ""
        if not folder.is_dir():
            continue
        for path in folder.glob(glob):
            rel = prefix + path.relative_to(folder).as_posix()
            if path.is_file() and "__pycache__" not in rel and not any(Path(rel).match(x) for x in EXCLUDED):
                found[rel] = path
    return sorted(found.items())


def _digest(root: str | Path | None) -> tuple[str, int]:
    sources = files(root)
    if not sources:
        raise ValueError(f"no numerics sources under {root}: give the axhw package folder (the one with arith/)")
    h = hashlib.sha256()
    for rel, path in sources:
        data = path.read_bytes().replace(b"\r\n", b"\n")
        h.update(f"{rel}\n{len(data)}\n".encode())
        h.update(data)
    return h.hexdigest()[:16], len(sources)


@cache
def _this_package() -> tuple[str, int]:
    return _digest(None)


def stamp(root: str | Path | None = None) -> str:
    """First 16 hex digits of the SHA-256 over the numerics sources (:func:`files`): for each, in order of
    relative path, ``"<path>\\n<length>\\n"`` and its bytes (CRLF as LF). Cached per process for this axhw
    (``root`` None): an edit made while a process runs does not change what that process reports."""
    return _this_package()[0] if root is None else _digest(root)[0]


def describe(root: str | Path | None = None) -> dict[str, Any]:
    """What a result records: ``{"stamp", "files" (how many were hashed), "axhw_version"}``."""
    from importlib.metadata import PackageNotFoundError, version

    try:  # the installed distribution's version (the package root is a higher layer than this module)
        v = version("axhw")
    except PackageNotFoundError:
        v = "unknown"
    s, n = _this_package() if root is None else _digest(root)
    return {"stamp": s, "files": n, "axhw_version": v}


# --------------------------------------------------------------------------- committed results
#: An entry of ``STALE.md``: ``- `PATH`: why it is stale, and what regenerates it``.
_ENTRY = re.compile(r"^\s*[-*]\s+`([^`]+)`\s*:?\s*(.*)$")


def stale_entries(stale_md: str | Path) -> dict[str, str]:
    """``{path relative to the results folder: the entry's text}`` of every list entry of ``stale_md``, an
    entry's indented continuation lines joined to it (empty when the file does not exist)."""
    p = Path(stale_md)
    if not p.is_file():
        return {}
    out: dict[str, str] = {}
    current: str | None = None
    for line in p.read_text().splitlines():
        m = _ENTRY.match(line)
        if m:
            current = m.group(1)
            out[current] = m.group(2).strip()
        elif current is not None and line[:1].isspace() and line.strip():
            out[current] = f"{out[current]} {line.strip()}"
        else:
            current = None
    return out


def _result_stamp(path: Path) -> tuple[bool, str | None]:
    """``(is a stamped-kind result, its stamp)``: every ``power.json``, and any JSON object with a
    ``numerics`` key."""
    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return path.name == "power.json", None
    numerics = data.get("numerics") if isinstance(data, dict) else None
    if path.name != "power.json" and numerics is None:
        return False, None
    return True, numerics.get("stamp") if isinstance(numerics, dict) else None


def committed_results_problems(results: str | Path, current: str | None = None) -> list[str]:
    """Why the results under ``results`` do not match the numerics of today (empty: they do).

    Each ``power.json`` and each JSON with a ``numerics`` key must carry ``numerics.stamp == current``
    (default :func:`stamp`) or be listed in ``results/STALE.md`` with why it is stale and what regenerates
    it; an entry of ``STALE.md`` must name an existing file and must not name a result that is current.
    """
    root = Path(results)
    current = current if current is not None else stamp()
    stale = stale_entries(root / "STALE.md")
    problems = []
    for rel, text in stale.items():
        if not (root / rel).is_file():
            problems.append(f"STALE.md lists {rel}, which does not exist under {root}: remove the entry")
        elif "regenerat" not in text.lower():
            problems.append(f"STALE.md's entry of {rel} says neither why it is stale nor what regenerates it")
    for path in sorted(root.rglob("*.json")):
        rel = path.relative_to(root).as_posix()
        kind, found = _result_stamp(path)
        if not kind:
            continue
        if found == current and rel in stale:
            problems.append(f"{rel} carries the current numerics stamp {current} but STALE.md lists it: "
                            "remove its entry")
        elif found != current and rel not in stale:
            problems.append(f"{rel} was produced by numerics {found or '(no stamp)'}, not the current "
                            f"{current}: regenerate it or list it in STALE.md with the reason")
    return problems
