"""The minimum-power search over candidate configurations, cheapest first (paper section 5, Fig. 9).

A candidate is a (multiplier mode, SRAM voltage) pair. Compute is searched over the modes at the nominal
voltage, storage over the voltages with the exact multiplier (the two bars of Fig. 9), joint over the whole
grid. Candidates are visited in increasing power; the first one whose accuracy meets the floor is the
minimum, so a search that trains a network per candidate (per-target AxTrain, :mod:`axhw.power.search.targets`)
trains only the candidates cheaper than the answer, plus the answer.

The order needs each candidate's power before its network exists. Storage power depends on the voltage
and the number of stored bits only (:mod:`axhw.power.sram_energy`), so its order is exact. Compute power
depends on the operand stream, which changes with the weights; the order uses the power each mode draws
on the operand stream of an AxTrain network of the same data set and seed (the single-network AxTrain of
the study), and the chosen candidate's power is then measured on its own network's stream. The modes'
power gaps (K1 < K2 < K3 < K4 < exact, tens of percent) are far wider than the few percent one network's
stream differs from another's, so the order is the same on either stream.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from axhw.arith.sram import NOMINAL_MV

__all__ = ["PARTS", "Candidate", "SearchOutcome", "candidates", "choose", "first_feasible"]

Part = Literal["compute", "storage", "joint"]
PARTS: tuple[Part, ...] = ("compute", "storage", "joint")


@dataclass(frozen=True)
class Candidate:
    """One configuration of the search and the power that orders it.

    Attributes:
        mode: multiplier mode (``exact``, ``K1``..``K4``, ...).
        voltage_mv: SRAM supply.
        order_w: the power the visiting order uses (W; see the module docstring).
    """

    mode: str
    voltage_mv: float
    order_w: float


def candidates(part: Part, modes: Sequence[str], voltages: Sequence[float], compute_w: Mapping[str, float],
               storage_w: Mapping[float, float], joint_scale: float) -> list[Candidate]:
    """The candidates of ``part``, cheapest first (ties: the order of ``modes``, then of ``voltages``).

    >>> cs = candidates("compute", ["exact", "K2"], [1100.0, 660.0], {"exact": 2.0, "K2": 1.0},
    ...                 {1100.0: 1.0, 660.0: 0.4}, 0.1)
    >>> [c.mode for c in cs]
    ['K2', 'exact']
    >>> [(c.mode, c.voltage_mv) for c in candidates("joint", ["exact", "K2"], [1100.0, 660.0],
    ...   {"exact": 2.0, "K2": 1.0}, {1100.0: 1.0, 660.0: 0.4}, 0.1)][:2]
    [('K2', 660.0), ('exact', 660.0)]
    """
    if part == "compute":
        grid = [(m, NOMINAL_MV) for m in modes]
    elif part == "storage":
        grid = [("exact", v) for v in voltages]
    elif part == "joint":
        grid = [(m, v) for m in modes for v in voltages]
    else:
        raise ValueError(f"unknown part {part!r}: valid parts are {', '.join(PARTS)}")

    def power(m: str, v: float) -> float:
        if part == "compute":
            return compute_w[m]
        if part == "storage":
            return storage_w[v]
        return compute_w[m] * joint_scale + storage_w[v]

    rank = {(m, v): i for i, (m, v) in enumerate(grid)}
    return sorted((Candidate(m, float(v), power(m, v)) for m, v in grid), key=lambda c: (c.order_w, rank[(c.mode, c.voltage_mv)]))


@dataclass
class SearchOutcome:
    """Result of one search: the chosen candidate (None: no candidate meets the floor) and every visit.

    Attributes:
        part: ``compute``, ``storage`` or ``joint``.
        bound_pp: allowed accuracy loss (percentage points).
        floor: accuracy a candidate had to reach.
        chosen: the first feasible candidate, or None.
        visited: per visited candidate: mode, voltage, order power, accuracy (mean, std), feasible.
    """

    part: str
    bound_pp: float
    floor: float
    chosen: Candidate | None
    visited: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"part": self.part, "bound_pp": self.bound_pp, "floor": self.floor,
                "chosen": asdict(self.chosen) if self.chosen is not None else None, "visited": self.visited}


def first_feasible(cands: Sequence[Candidate], accuracy: Callable[[Candidate], tuple[float, float]], floor: float,
                   part: str = "compute", bound_pp: float = 0.0) -> SearchOutcome:
    """Visit ``cands`` in order and stop at the first with mean accuracy >= ``floor``.

    ``accuracy(c)`` returns (mean, std) and may train a network (it is only called for visited candidates).
    No feasible candidate is an outcome with ``chosen=None``, never an error.

    >>> cs = [Candidate("K1", 1100.0, 1.0), Candidate("K2", 1100.0, 2.0), Candidate("exact", 1100.0, 3.0)]
    >>> acc = {"K1": 0.80, "K2": 0.95, "exact": 0.96}
    >>> out = first_feasible(cs, lambda c: (acc[c.mode], 0.0), 0.94)
    >>> out.chosen.mode, [v["mode"] for v in out.visited]
    ('K2', ['K1', 'K2'])
    >>> first_feasible(cs, lambda c: (acc[c.mode], 0.0), 0.99).chosen is None
    True
    """
    out = SearchOutcome(part, bound_pp, floor, None)
    for c in cands:
        mean, std = accuracy(c)
        ok = mean >= floor - 1e-12
        out.visited.append({"mode": c.mode, "voltage_mv": c.voltage_mv, "order_w": c.order_w, "accuracy": mean,
                            "accuracy_std": std, "feasible": ok})
        if ok:
            out.chosen = c
            break
    return out


def choose(points: list[dict[str, Any]], power_key: str, floor: float) -> dict[str, Any] | None:
    """The lowest-``power_key`` point with ``accuracy >= floor``, or None when no point is feasible.

    >>> choose([{"accuracy": 0.9, "p": 2.0}, {"accuracy": 0.95, "p": 3.0}], "p", 0.92)["p"]
    3.0
    >>> choose([{"accuracy": 0.9, "p": 2.0}], "p", 0.99) is None
    True
    """
    feasible = [p for p in points if p["accuracy"] >= floor - 1e-12]
    return min(feasible, key=lambda p: (p[power_key], -p["accuracy"])) if feasible else None
