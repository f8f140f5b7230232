"""cocotb test for ``sim/array_tb.v``: the generated PE array on a table of input samples.

Run through :func:`axhw.rtl.netverify.run_array`, which writes the memory images, the input table and the
job (JSON in ``AXHW_ARRAY_TB_JOB``), and afterwards compares the dumped layer outputs with the golden model
(:meth:`axhw.golden.network.QuantizedNetwork.forward_int`). Like ``mul_tb.py`` this module does not import torch or
the model: the comparison needs the model's outputs, which the driver already holds.
"""

from __future__ import annotations

import contextlib
import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, SimTimeoutError, Timer, with_timeout


@cocotb.test()
async def array_runs_samples(dut) -> None:
    """Start the wrapper's sample walk, wait for it, report the cycle counts."""
    job = json.loads(os.environ["AXHW_ARRAY_TB_JOB"])
    period = int(job["clock_ns"])
    dut.clk.value = 0
    dut.go.value = 0
    await Timer(1, unit="ns")  # $readmemh and the initial blocks first
    clock = None if job["self_clock"] else Clock(dut.clk, period, unit="ns", impl="gpi")
    if clock is not None:
        clock.start(start_high=False)
    dut.go.value = 1
    with contextlib.suppress(SimTimeoutError):
        await with_timeout(RisingEdge(dut.finished), max(period, 2) * int(job["max_cycles"]), "ns")
    if clock is not None:
        clock.stop()
    finished, samples = int(dut.finished.value), int(dut.samples.value)
    with open(job["summary"], "w") as f:
        json.dump({"finished": finished, "samples": samples, "busy_cycles": int(dut.busy_cycles.value)}, f)
    assert finished == 1 and samples == int(job["samples"]), f"ran {samples} of {job['samples']} samples"
