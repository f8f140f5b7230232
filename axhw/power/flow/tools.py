"""Locate the EDA tools and the standard-cell library the power flow needs, with versions and hashes.

A missing tool must fail in one line that says what to install (the Debian package), not deep inside a
subprocess call; and every cache key needs the tool versions and the library hash so that a new Yosys or a
patched library invalidates old results (docs/power.md, "Caching").
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = [
    "LIBRARY_DIR",
    "ToolMissing",
    "Toolchain",
    "batch_args",
    "file_sha256",
    "find_toolchain",
    "has_read_vcd",
    "tool_version",
]

#: osu018 (Oklahoma State University 0.18 um) from Debian ``qflow-tech-osu018``; override with ``AXHW_OSU018_DIR``.
LIBRARY_DIR = Path(os.environ.get("AXHW_OSU018_DIR", "/usr/share/qflow/tech/osu018"))

#: tool -> Debian package that provides it (for the one-line error).
_PACKAGES = {"yosys": "yosys", "sta": "opensta", "iverilog": "iverilog", "vvp": "iverilog"}


class ToolMissing(RuntimeError):
    """A tool or the cell library is not installed; the message names the Debian package."""


@dataclass(frozen=True)
class Toolchain:
    """Paths and versions of everything the flow runs.

    Attributes:
        yosys, sta, iverilog, vvp: executables.
        liberty: osu018 Liberty file (timing, internal power tables, cell leakage).
        cell_models: osu018 Verilog cell models, for gate-level simulation of the synthesized netlist.
        openroad: an ``openroad`` binary on PATH, or None.
        vcd_reader: the executable whose OpenSTA has ``read_vcd`` (``openroad``, else a newer ``sta``), or
            None; where present, power is annotated from the gate-level VCD itself (docs/power.md).
        versions: tool -> version string (part of every cache key).
        library_sha256: hash of the Liberty and cell-model files (part of every cache key).
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


@cache
def find_toolchain() -> Toolchain:
    """Find Yosys, OpenSTA, Icarus and osu018, or raise :class:`ToolMissing` naming the package.

    >>> find_toolchain().liberty.name  # doctest: +SKIP
    'osu018_stdcells.lib'
    """
    yosys, sta, iverilog, vvp = (_which(t) for t in ("yosys", "sta", "iverilog", "vvp"))
    liberty = LIBRARY_DIR / "osu018_stdcells.lib"
    cell_models = LIBRARY_DIR / "osu018_stdcells.v"
    for f in (liberty, cell_models):
        if not f.is_file():
            raise ToolMissing(f"{f} not found: install the Debian package 'qflow-tech-osu018'")
    versions = {
        "yosys": tool_version(yosys),
        "sta": tool_version(sta, ("-version",)),
        "iverilog": tool_version(iverilog, ("-V",)),
    }
    openroad = shutil.which("openroad")
    vcd_reader = next((exe for exe in (openroad, sta) if exe is not None and has_read_vcd(exe)), None)
    return Toolchain(
        yosys=yosys, sta=sta, iverilog=iverilog, vvp=vvp, liberty=liberty, cell_models=cell_models,
        openroad=openroad, versions=versions, library_sha256=file_sha256(liberty, cell_models),
        vcd_reader=vcd_reader,
    )
