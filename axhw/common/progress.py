"""Progress notes of long steps (a build, a synthesis), on stderr, for the command line.

Why: a step that runs for tens of seconds without a word looks hung (a first Verilator build of the PE
array takes 37-64 s). Library code says what it starts with :func:`note`; nothing prints unless a
caller switched notes on (the ``axhw`` command line does, unless ``--quiet``), so Python users and tests
see no output they did not ask for.

>>> with notes(False):
...     note("building")  # silent
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

__all__ = ["enabled", "note", "notes", "step"]

_state = {"on": False}


def enabled() -> bool:
    """Whether notes print."""
    return _state["on"]


@contextlib.contextmanager
def notes(on: bool = True) -> Iterator[None]:
    """Switch notes on (or off) for the block."""
    before = _state["on"]
    _state["on"] = on
    try:
        yield
    finally:
        _state["on"] = before


def note(message: str) -> None:
    """Print ``message`` on its own stderr line (after any progress bar) when notes are on."""
    if _state["on"]:
        print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def step(message: str) -> Iterator[None]:
    """Note ``message...`` when the step starts and ``message: done in S s`` when it ends."""
    note(f"{message} ...")
    t0 = time.perf_counter()
    yield
    note(f"{message}: done in {time.perf_counter() - t0:.1f} s")
