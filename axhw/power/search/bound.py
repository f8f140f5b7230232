"""Readings of the paper's accuracy bound (docs/power.md, "Statistics and readings of the bound").

The paper (section 5, Fig. 9) chooses the lowest-power configuration with "maximum 2% degradation to accurate
implementation". Two things are unsaid, and each moves single data sets' results by tens of points:

* whose accurate implementation: each method's own (its exact multiplier at the nominal 1.1 V: ``own``), or
  BP's for every network (``bp``; a method whose own accurate accuracy is below BP's then has less room);
* "2%": percentage points (``pp``: floor = reference - b/100) or relative (``relative``: floor =
  reference * (1 - b/100), 0.1 pp stricter at 95% accuracy, 0.8 pp at 60%).

The four combinations are the *readings*: ``own-pp`` (the study's default), ``own-relative``, ``bp-pp``,
``bp-relative``. :func:`floor` is the one place the floor rule lives; the re-scoring of the stored grids
(:mod:`axhw.power.search.aggregate`) uses it, and the study can.

This module imports nothing of the study, so the study may import it.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

__all__ = ["READINGS", "BoundKind", "Reference", "floor", "parse_reading", "reading_name", "rule_text"]

BoundKind = Literal["pp", "relative"]
Reference = Literal["own", "bp"]
#: Every reading, the study's default first.
READINGS: tuple[str, ...] = ("own-pp", "own-relative", "bp-pp", "bp-relative")


def floor(reference: float, bound: float, kind: BoundKind = "pp") -> float:
    """The accuracy a configuration must reach: ``bound`` (in percent) below ``reference`` (a fraction).

    >>> round(floor(0.95, 2.0, "pp"), 12), round(floor(0.95, 2.0, "relative"), 12)
    (0.93, 0.931)

    Raises:
        ValueError: an unknown ``kind``, a negative or non-finite ``bound``, a non-finite ``reference``.
    """
    if kind not in get_args(BoundKind):
        raise ValueError(f"unknown bound kind {kind!r}: valid kinds are 'pp' (points) and 'relative'")
    if not math.isfinite(bound) or bound < 0:
        raise ValueError(f"bound={bound}: give an allowed accuracy loss >= 0 (percent)")
    if not math.isfinite(reference):
        raise ValueError(f"reference accuracy {reference} is not a number: measure the accurate implementation first")
    return reference - bound / 100.0 if kind == "pp" else reference * (1.0 - bound / 100.0)


def parse_reading(name: str) -> tuple[Reference, BoundKind]:
    """``"own-pp"`` -> ``("own", "pp")``.

    Raises:
        ValueError: a name not in :data:`READINGS`.
    """
    if name not in READINGS:
        raise ValueError(f"unknown reading {name!r}: valid readings are {', '.join(READINGS)}")
    ref, kind = name.split("-")
    return ref, kind  # type: ignore[return-value]


def reading_name(reference: str, kind: str = "pp") -> str:
    """``("own", "pp")`` -> ``"own-pp"`` (the study's ``reference`` setting with its points bound).

    Raises:
        ValueError: a combination that is not a reading.
    """
    name = f"{reference}-{kind}"
    parse_reading(name)
    return name


def rule_text(name: str, bound: float) -> str:
    """One line stating a reading's floor, e.g. ``floor = own accurate accuracy - 2 pp``."""
    ref, kind = parse_reading(name)
    who = "own accurate accuracy" if ref == "own" else "BP's accurate accuracy"
    return f"floor = {who} - {bound:g} pp" if kind == "pp" else f"floor = {who} x (1 - {bound:g}%)"
