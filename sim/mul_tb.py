"""cocotb test for ``sim/mul_tb.v``: one generated multiplier against golden vectors from the Python model.

Run through :func:`axhw.rtl.verify.run_vectors` (the pytest entry points are in ``tests/rtl``), which writes
the vector table from :mod:`axhw.arith.multipliers` and passes the job as JSON in ``AXHW_MUL_TB_JOB``. This module
deliberately does not import torch or the model: that import costs 1-2 s per simulator start and the sweep
starts dozens; the expected products it compares against were computed by the model in the driver.

The test (1) clocks the wrapper through the table and reads its mismatch counters, then (2) switches the
wrapper to ``ext`` mode and drives the ``direct`` pairs (corners and table pairs) itself, reading ``p`` back
from the DUT, so the check does not rest on the wrapper's comparator alone.
"""

from __future__ import annotations

import contextlib
import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, SimTimeoutError, Timer, with_timeout


def _word(value: int, width: int) -> int:
    return value & ((1 << width) - 1)


@cocotb.test()
async def multiplier_matches_model(dut) -> None:
    """Table walk plus direct pairs; fails with the first mismatching pair."""
    job = json.loads(os.environ["AXHW_MUL_TB_JOB"])
    bits, nvec, period = int(job["bits"]), int(job["vectors"]), int(job["clock_ns"])
    pbits = 2 * bits

    dut.ext.value = 0
    dut.ext_a.value = 0
    dut.ext_b.value = 0
    dut.clk.value = 0
    dut.go.value = 0
    await Timer(1, unit="ns")  # let $readmemh and the initial blocks run before the walk starts
    # Built with AXHW_SELF_CLOCK (Icarus), the wrapper clocks itself once `go` is set; otherwise cocotb's
    # C-level (GPI) clock drives it.
    clock = None if job["self_clock"] else Clock(dut.clk, period, unit="ns", impl="gpi")
    if clock is not None:
        clock.start(start_high=False)
    dut.go.value = 1
    # The self clock has a 2 ns period; allow the slower of the two plus slack.
    with contextlib.suppress(SimTimeoutError):
        await with_timeout(RisingEdge(dut.done), max(period, 2) * (nvec + 8), "ns")
    if clock is not None:
        clock.stop()
    dut.go.value = 0

    done = int(dut.done.value)
    checked = int(dut.checked.value)
    mismatches = int(dut.mismatches.value)
    first_bad = int(dut.first_bad.value)
    first_bad_p = dut.first_bad_p.value.to_unsigned()

    dut.ext.value = 1
    failures = []
    for a, b, expected in job["direct"]:
        dut.ext_a.value = _word(a, bits)
        dut.ext_b.value = _word(b, bits)
        await Timer(1, unit="ns")
        got = dut.p.value.to_unsigned()
        if got != _word(expected, pbits):
            signed_got = got - (1 << pbits) if job["signed"] and got >> (pbits - 1) else got
            failures.append([a, b, expected, signed_got])

    with open(job["summary"], "w") as f:
        json.dump(
            {
                "done": done,
                "checked": checked,
                "mismatches": mismatches,
                "first_bad": first_bad,
                "first_bad_p": first_bad_p,
                "direct_failures": failures,
            },
            f,
        )
    assert done == 1 and checked == nvec, f"wrapper checked {checked} of {nvec} vectors (done={done})"
    assert mismatches == 0, f"{mismatches} of {nvec} vectors mismatch; first at index {first_bad}"
    assert not failures, f"direct pairs (a, b, expected, rtl) mismatch: {failures[:8]}"
