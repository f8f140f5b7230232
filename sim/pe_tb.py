"""cocotb test for the generated ``pe`` (top level, no wrapper): real dot products driven from Python.

Run through :func:`axhw.rtl.netverify.run_pe`. The job (JSON in ``AXHW_PE_TB_JOB``) holds, per input sample,
the activation codes and a list of (weight row, bias) pairs; the test loads the neuron local memory once
per sample and the weight local memory once per row, starts the PE, waits for ``done`` and records ``y``.
The driver compares the results with :func:`axhw.golden.network.linear_int` (saturated), computed by the model.
"""

from __future__ import annotations

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge, Timer


def _word(value: int, width: int) -> int:
    return value & ((1 << width) - 1)


async def _next_cycle(dut) -> None:
    """A quarter period after the next rising edge: inputs driven here are stable at the falling edge, where
    the PE's clock gate samples its enable (``start``), and at the rising edge, where the registers take them."""
    await RisingEdge(dut.clk)
    await Timer(500, unit="ps")


@cocotb.test()
async def pe_dot_products(dut) -> None:
    """Every (sample, row) dot product through the PE; results go to the summary file."""
    job = json.loads(os.environ["AXHW_PE_TB_JOB"])
    bits, acc, bias_bits = int(job["bits"]), int(job["acc"]), int(job["bias_bits"])
    clock = Clock(dut.clk, 2, unit="ns", impl="gpi")
    clock.start(start_high=False)
    for sig in ("n_we", "w_we", "start", "n_addr", "w_addr", "n_data", "w_data", "len", "bias"):
        getattr(dut, sig).value = 0
    if job["dual"]:
        dut.mode.value = 0
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    await _next_cycle(dut)
    dut.rst.value = 0
    results = []
    cycles = 0
    for sample in job["samples"]:
        acts = sample["a"]
        dut.n_we.value = 1
        for j, a in enumerate(acts):  # driven a quarter period after a rising edge
            dut.n_addr.value = j
            dut.n_data.value = _word(a, bits)
            await _next_cycle(dut)
        dut.n_we.value = 0
        out = []
        for row, bias, mode in sample["rows"]:
            dut.w_we.value = 1
            for j, w in enumerate(row):
                dut.w_addr.value = j
                dut.w_data.value = _word(w, bits)
                await _next_cycle(dut)
            dut.w_we.value = 0
            dut.len.value = len(row)
            dut.bias.value = _word(bias, bias_bits)
            if job["dual"]:
                dut.mode.value = int(mode)
            dut.start.value = 1
            await _next_cycle(dut)
            dut.start.value = 0
            n = 0
            while not int(dut.done.value):
                await _next_cycle(dut)
                n += 1
                assert n <= len(row) + 4, "PE did not finish"
            cycles += n + 1
            out.append(dut.y.value.to_signed() if acc else 0)
        results.append(out)
    clock.stop()
    with open(job["summary"], "w") as f:
        json.dump({"results": results, "compute_cycles": cycles}, f)
