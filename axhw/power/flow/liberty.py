"""Cell areas and leakage from the Liberty file, read once with ``liberty-parser``.

Yosys's ``stat -liberty`` gives the area; leakage is summed here from ``cell_leakage_power`` so the synthesis
record says how much of the multiplier's power is static before any activity is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = ["CellInfo", "LibraryInfo", "read_library"]


@dataclass(frozen=True)
class CellInfo:
    """One standard cell: ``area_um2`` and ``leakage_nw`` (the library's ``cell_leakage_power``)."""

    name: str
    area_um2: float
    leakage_nw: float


@dataclass(frozen=True)
class LibraryInfo:
    """Library name, nominal voltage (V), leakage unit scale to nW, and its cells by name."""

    name: str
    nom_voltage: float
    cells: dict[str, CellInfo]


_LEAK_UNITS_NW = {"1nW": 1.0, "1pW": 1e-3, "1uW": 1e3, "1mW": 1e6, "1W": 1e9}


@cache
def read_library(path: Path) -> LibraryInfo:
    """Parse ``path`` (Liberty) into :class:`LibraryInfo`.

    >>> from axhw.power.flow.tools import LIBRARY_DIR
    >>> read_library(LIBRARY_DIR / "osu018_stdcells.lib").cells["INVX1"].area_um2  # doctest: +SKIP
    16.0
    """
    from liberty.parser import parse_liberty

    lib = parse_liberty(Path(path).read_text())
    unit = str(lib["leakage_power_unit"]).strip('"') if lib["leakage_power_unit"] is not None else "1nW"
    scale = _LEAK_UNITS_NW.get(unit)
    if scale is None:
        raise ValueError(f"{path}: unsupported leakage_power_unit {unit!r}")
    cells = {}
    for group in lib.get_groups("cell"):
        name = str(group.args[0]).strip('"')
        leak = group["cell_leakage_power"]
        cells[name] = CellInfo(name, float(group["area"] or 0.0), float(leak or 0.0) * scale)
    return LibraryInfo(str(lib.args[0]).strip('"'), float(lib["nom_voltage"] or 0.0), cells)
