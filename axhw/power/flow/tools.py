"""Locate the EDA tools and the standard-cell library the power flow needs, with versions and hashes.

A missing tool must fail in one line that says what to install (the Debian package), not deep inside a
subprocess call; and every cache key needs the tool versions and the library hash so that a new Yosys or a
patched library invalidates old results (docs/power.md, "Caching").

The library is selectable (issue 29): ``osu018`` (180 nm, 1.8 V, Debian ``qflow-tech-osu018``), or ``sky130``
(sky130_fd_sc_hd characterized by axhw, committed under ``power/pdk/sky130`` at 1.8, 1.2 and 0.9 V;
docs/pdk.md). The choice is read from ``AXHW_PDK`` and ``AXHW_SUPPLY_MV`` when :func:`find_toolchain` is
called, so it reaches every step of a run, worker processes included, without threading a parameter through
each; the CLI's ``--pdk``/``--supply-mv`` and :func:`use_library` set them. The library hash is in every
cache key, so results of different libraries never mix.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from axhw.common.paths import resource_dir

__all__ = [
    "LIBRARY_DIR",
    "NODE_SCALE_180_TO_65",
    "OSU018_LABEL",
    "PDKS",
    "SKY130_DIR",
    "CellLibrary",
    "ToolMissing",
    "Toolchain",
    "batch_args",
    "clear_cache",
    "file_sha256",
    "find_library",
    "find_toolchain",
    "has_read_vcd",
    "selected_library",
    "tool_version",
    "use_library",
]

#: osu018 (Oklahoma State University 0.18 um) from Debian ``qflow-tech-osu018``; override with ``AXHW_OSU018_DIR``.
LIBRARY_DIR = Path(os.environ.get("AXHW_OSU018_DIR", "/usr/share/qflow/tech/osu018"))

#: the libraries the flow maps to and the supplies (mV) each is committed at; the first is the default.
PDKS: dict[str, tuple[int, ...]] = {"osu018": (1800,), "sky130": (1800, 1200, 900)}

#: How reports name osu018 at its one supply (:attr:`CellLibrary.label`). Every result written before reports
#: named their library (issue 29) was made with it, so readers of those results default to it.
OSU018_LABEL = "osu018 1.80 V"

#: sky130_fd_sc_hd as characterized by ``axhw power pdk build`` (the repository's, or the wheel's copy).
SKY130_DIR = resource_dir("power") / "pdk" / "sky130"

#: Compute energy scaling osu018 (180 nm, 1.8 V) -> the SRAM model's 65 nm, 1.1 V, for joint sums only:
#: E ~ C V^2 with C ~ feature size (classical scaling; stated, not measured): (65/180) * (1.1/1.8)^2.
NODE_SCALE_180_TO_65 = (65.0 / 180.0) * (1.1 / 1.8) ** 2


@dataclass(frozen=True)
class CellLibrary:
    """One standard-cell library at one supply.

    Attributes:
        pdk: ``osu018`` or ``sky130``.
        supply_mv: the logic supply the library was characterized at.
        node_nm: the process node.
        liberty: Liberty file (timing, internal power tables, cell leakage).
        cell_models: Verilog cell models with path delays, for gate-level simulation.
        node_scale: factor that takes this library's logic energy to the SRAM model's 65 nm / 1.1 V node in a
            joint sum: osu018's first-order C V^2 factor (:data:`NODE_SCALE_180_TO_65`, stated wherever it
            enters); 1 for sky130, which is reported at its own node, unscaled.
    """

    pdk: str
    supply_mv: int
    node_nm: int
    liberty: Path
    cell_models: Path
    node_scale: float

    @property
    def label(self) -> str:
        """``osu018 1.80 V`` / ``sky130 1.20 V``: how reports name it."""
        return f"{self.pdk} {self.supply_mv / 1000:.2f} V"


def _sky130_corner(supply_mv: int) -> str:
    return f"tt_025C_{supply_mv // 1000}v{supply_mv % 1000 // 10:02d}"


def find_library(pdk: str = "osu018", supply_mv: int | None = None) -> CellLibrary:
    """The library ``pdk`` at ``supply_mv`` (default: the PDK's first, 1.8 V), with its files checked.

    Raises:
        ValueError: unknown PDK or a supply it has no library at (the message lists those it has).
        ToolMissing: the library's files are not installed (osu018: the Debian package to install).

    >>> find_library("sky130", 1200).liberty.name
    'axhw_sky130_fd_sc_hd__tt_025C_1v20.lib'
    """
    if pdk not in PDKS:
        raise ValueError(f"unknown PDK {pdk!r}: choose one of {', '.join(PDKS)}")
    mv = PDKS[pdk][0] if supply_mv is None else int(supply_mv)
    if mv not in PDKS[pdk]:
        raise ValueError(f"{pdk} has no library at {mv} mV: choose --supply-mv from "
                         f"{', '.join(str(v) for v in PDKS[pdk])}")
    if pdk == "osu018":
        lib = CellLibrary("osu018", mv, 180, LIBRARY_DIR / "osu018_stdcells.lib", LIBRARY_DIR / "osu018_stdcells.v",
                          NODE_SCALE_180_TO_65)
        hint = "install the Debian package 'qflow-tech-osu018'"
    else:
        stem = SKY130_DIR / f"axhw_sky130_fd_sc_hd__{_sky130_corner(mv)}"
        lib = CellLibrary("sky130", mv, 130, stem.with_suffix(".lib"), stem.with_suffix(".v"), 1.0)
        hint = f"build it with 'axhw power pdk build --voltages {mv / 1000:g} --out {SKY130_DIR}' (docs/pdk.md)"
    for f in (lib.liberty, lib.cell_models):
        if not f.is_file():
            raise ToolMissing(f"{f} not found: {hint}")
    return lib


def selected_library() -> CellLibrary:
    """The library the flow maps to now: ``AXHW_PDK`` (default ``osu018``) at ``AXHW_SUPPLY_MV`` (default its
    first supply)."""
    mv = os.environ.get("AXHW_SUPPLY_MV")
    try:
        supply = int(mv) if mv else None
    except ValueError:
        raise ValueError(f"AXHW_SUPPLY_MV={mv!r}: give millivolts, e.g. 1200") from None
    return find_library(os.environ.get("AXHW_PDK") or "osu018", supply)


@contextmanager
def use_library(pdk: str, supply_mv: int | None = None) -> Iterator[CellLibrary]:
    """Run the flow on ``pdk`` at ``supply_mv`` inside the ``with`` block (sets and restores ``AXHW_PDK`` /
    ``AXHW_SUPPLY_MV``, which worker processes started inside inherit).

    >>> with use_library("sky130", 1200) as lib:
    ...     find_toolchain().liberty == lib.liberty  # doctest: +SKIP
    True
    """
    lib = find_library(pdk, supply_mv)
    saved = {k: os.environ.get(k) for k in ("AXHW_PDK", "AXHW_SUPPLY_MV")}
    os.environ["AXHW_PDK"], os.environ["AXHW_SUPPLY_MV"] = lib.pdk, str(lib.supply_mv)
    try:
        yield lib
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


#: tool -> Debian package that provides it (for the one-line error).
_PACKAGES = {"yosys": "yosys", "sta": "opensta", "iverilog": "iverilog", "vvp": "iverilog"}


class ToolMissing(RuntimeError):
    """A tool or the cell library is not installed; the message names the Debian package."""


@dataclass(frozen=True)
class Toolchain:
    """Paths and versions of everything the flow runs.

    Attributes:
        yosys, sta, iverilog, vvp: executables.
        liberty: the selected library's Liberty file (timing, internal power tables, cell leakage).
        cell_models: its Verilog cell models, for gate-level simulation of the synthesized netlist.
        openroad: an ``openroad`` binary on PATH, or None.
        vcd_reader: the executable whose OpenSTA has ``read_vcd`` (``openroad``, else a newer ``sta``), or
            None; where present, power is annotated from the gate-level VCD itself (docs/power.md).
        versions: tool -> version string (part of every cache key).
        library_sha256: hash of the Liberty and cell-model files (part of every cache key).
        library: the selected library (PDK, supply, node, its scale to the SRAM model's node).
    """

    yosys: str
    sta: str
    iverilog: str
    vvp: str
    liberty: Path
    cell_models: Path
    openroad: str | None
    versions: dict[str, str]
    library_sha256: str
    library: CellLibrary
    vcd_reader: str | None = None


def has_read_vcd(exe: str) -> bool:
    """Whether ``exe`` (``sta`` or ``openroad``) defines the ``read_vcd`` command (probed, not assumed)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="axhw-probe-") as tmp:
        script = Path(tmp) / "probe.tcl"
        script.write_text('puts "AXHW_READ_VCD=[llength [info commands read_vcd]]"\n')
        try:
            out = subprocess.run([exe, *batch_args(exe), str(script)], capture_output=True, text=True,
                                 timeout=60, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return False
    return "AXHW_READ_VCD=1" in out.stdout + out.stderr


def batch_args(exe: str) -> list[str]:
    """Command-line flags that run a Tcl script and exit, for OpenROAD or OpenSTA."""
    return ["-no_init", "-exit"] if Path(exe).name.startswith("openroad") else ["-no_splash", "-exit"]


def file_sha256(*paths: Path) -> str:
    """SHA-256 over the contents of ``paths`` in order."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()


def tool_version(exe: str, args: tuple[str, ...] = ("-V",)) -> str:
    """First non-empty output line of ``exe args`` (stdout or stderr)."""
    out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    for line in (out.stdout + out.stderr).splitlines():
        if line.strip():
            return line.strip()
    return "unknown"


def _which(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolMissing(f"{tool} not found on PATH: install the Debian package '{_PACKAGES[tool]}'")
    return path


def find_toolchain() -> Toolchain:
    """Find Yosys, OpenSTA, Icarus and the selected library (:func:`selected_library`), or raise
    :class:`ToolMissing` naming the package.

    >>> find_toolchain().liberty.name  # doctest: +SKIP
    'osu018_stdcells.lib'
    """
    return _toolchain(selected_library())


def clear_cache() -> None:
    """Forget the tools and libraries found so far (after PATH or a library changed, e.g. in tests)."""
    _tools.cache_clear()
    _toolchain.cache_clear()


@cache
def _tools() -> tuple[str, str, str, str, dict[str, str], str | None, str | None]:
    yosys, sta, iverilog, vvp = (_which(t) for t in ("yosys", "sta", "iverilog", "vvp"))
    versions = {
        "yosys": tool_version(yosys),
        "sta": tool_version(sta, ("-version",)),
        "iverilog": tool_version(iverilog, ("-V",)),
    }
    openroad = shutil.which("openroad")
    vcd_reader = next((exe for exe in (openroad, sta) if exe is not None and has_read_vcd(exe)), None)
    return yosys, sta, iverilog, vvp, versions, openroad, vcd_reader


@cache
def _toolchain(lib: CellLibrary) -> Toolchain:
    yosys, sta, iverilog, vvp, versions, openroad, vcd_reader = _tools()
    return Toolchain(
        yosys=yosys, sta=sta, iverilog=iverilog, vvp=vvp, liberty=lib.liberty, cell_models=lib.cell_models,
        openroad=openroad, versions=versions, library_sha256=file_sha256(lib.liberty, lib.cell_models),
        vcd_reader=vcd_reader, library=lib,
    )
