"""The accelerator's engines: Verilator at gate level (zero-delay), the action counts of the model engine, and
the model engine itself (axhw.power.accel.vbuild / sim / actions / model).

Small networks on 2-PE arrays keep the default suite fast; the validation on trained networks (MNIST-MLP,
LeNet-5, a small CNN) against Icarus with cell delays is ``bench/bench_accel_engines.py`` (docs/power.md,
"Engines").
"""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from axhw.arith.fixedpoint import FixedPoint
from axhw.golden.network import IntConv2d, IntFlatten, IntLinear, IntMaxPool2d, IntReLU, QuantizedNetwork
from axhw.power.accel.actions import action_counts, hamming
from axhw.power.accel.energy import UNITS, AccelConfig, accelerator_energy, fit_array, gate_level_activity
from axhw.power.accel.model import (
    FEATURES,
    calibrate,
    calibration_networks,
    model_energy,
    shared_array,
    unit_energies,
)
from axhw.power.accel.sim import clock_domains, leaf_cells, memory_instances, simulate_array
from axhw.power.accel.synth import synthesize_array
from axhw.power.accel.vbuild import verilator_build
from axhw.power.flow.synth import SynthConfig
from axhw.power.flow.tools import Toolchain
from axhw.rtl.generate import MultiplierConfig
from axhw.rtl.simulators import simulator_info


def _fp(frac: int) -> FixedPoint:
    return FixedPoint(8, frac)


def _linear(g: torch.Generator, fan_in: int, fan_out: int, last: bool) -> IntLinear:
    return IntLinear(weight=torch.randint(-128, 128, (fan_out, fan_in), generator=g),
                     bias=torch.randint(-2000, 2000, (fan_out,), generator=g), act_fmt=_fp(4), weight_fmt=_fp(6),
                     acc_fmt=FixedPoint(32, 10), out_fmt=None if last else _fp(4))


@pytest.fixture(scope="module")
def mlp() -> tuple[QuantizedNetwork, torch.Tensor]:
    """9-5-3: a hidden layer of 5 on 2 PEs leaves an idle lane in its last group."""
    g = torch.Generator().manual_seed(1)
    return (QuantizedNetwork([_linear(g, 9, 5, False), IntReLU(), _linear(g, 5, 3, True)]),
            torch.randint(-128, 128, (2, 9), generator=g))


@pytest.fixture(scope="module")
def cnn() -> tuple[QuantizedNetwork, torch.Tensor]:
    """Padding, stride, three output channels on 2 PEs (two groups, one lane idle), pooling, a last FC layer."""
    g = torch.Generator().manual_seed(2)
    conv = IntConv2d(weight=torch.randint(-128, 128, (3, 1, 3, 3), generator=g),
                     bias=torch.randint(-2000, 2000, (3,), generator=g), act_fmt=_fp(4), weight_fmt=_fp(6),
                     acc_fmt=FixedPoint(32, 10), out_fmt=_fp(4), stride=1, padding=1)
    conv2 = IntConv2d(weight=torch.randint(-128, 128, (2, 3, 2, 2), generator=g),
                      bias=torch.randint(-2000, 2000, (2,), generator=g), act_fmt=_fp(4), weight_fmt=_fp(6),
                      acc_fmt=FixedPoint(32, 10), out_fmt=_fp(4), stride=2)
    qnet = QuantizedNetwork([conv, IntReLU(), IntMaxPool2d(2, 2), conv2, IntReLU(), IntFlatten(),
                             _linear(g, 2 * 1 * 1, 3, True)])
    return qnet, torch.randint(0, 128, (2, 1, 6, 6), generator=g)


def test_hamming_counts_changed_bits() -> None:
    seq = torch.tensor([[0, 1, 3, -1, 0], [5, 5, 5, 5, 4]])
    want = sum(bin((a ^ b) & 0xFF).count("1") for row in seq.tolist() for a, b in itertools.pairwise(row))
    assert hamming(seq, 8) == want == (1 + 1 + 6 + 8) + 1
    assert hamming(torch.tensor([-1, 0]), 32) == 32 and hamming(torch.tensor([7]), 8) == 0


@pytest.mark.parametrize("net", ["mlp", "cnn"])
def test_action_counts_equal_the_simulated_counts(toolchain: Toolchain, synth_cfg: SynthConfig, net: str,
                                                  request: pytest.FixtureRequest) -> None:
    """Cycles and every memory's reads and writes, derived from the program alone, are the gate-level run's."""
    qnet, x = request.getfixturevalue(net)
    shape = tuple(x.shape[1:]) if x.dim() == 4 else None
    acfg = fit_array(MultiplierConfig("drum", 8, 3), qnet, pes=2, input_shape=shape)
    synth = synthesize_array(acfg, synth_cfg)
    act = simulate_array(synth, acfg, qnet, x, timing=False)
    assert act.mismatches == 0
    a = action_counts(acfg, qnet, x)
    assert a.cycles * a.samples == act.cycles
    mems = memory_instances(synth)
    assert {m.path if m.module.startswith("pe_") else m.module for m in mems} == set(a.reads)
    for m in mems:
        reads, writes = a.accesses(m.path, m.module)
        assert reads * a.samples == act.reads[m.path], m.path
        assert writes * a.samples == act.writes[m.path], m.path
    assert a.features["products"] == sum(a.reads[f"u_pe{p}.u_nlm"] for p in range(acfg.pes))
    # clock gates: the cycles each lets through, from the schedule, are the gate-level run's (its AND's
    # output toggles / 2; a sample's window ends on the edge of the HALT fetch, whose pulse counts half);
    # the idle lane of each layer's last group (5 and 3 outputs on 2 PEs) is off
    enabled = clock_domains(synth).enabled_cycles(act.toggles)
    assert set(enabled) == set(a.gated) == {"u_pe0.u_cg", "u_pe1.u_cg", "u_seq.u_cg_fields", "u_seq.u_cg_pixel",
                                            "u_seq.u_cg_walk", "u_seq.u_cg_write", "u_seq.u_cg_pool",
                                            "u_seq.u_cg_waddr"}
    for g, cycles in enabled.items():
        assert a.gated[g] * a.samples == pytest.approx(cycles, abs=0.5 * a.samples), g
    assert a.gated["u_pe1.u_cg"] < a.gated["u_pe0.u_cg"]
    assert a.reads["u_pe1.u_nlm"] < a.reads["u_pe0.u_nlm"]
    assert a.reads["array_wbuf"] == a.features["products"]  # one lane of the weight store per product
    if net == "cnn":
        assert a.features["pool_reads"] == 3 * 3 * 3 * 4 and a.features["pool_outputs"] == 27


def test_action_features_follow_the_data(mlp: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    """Identical inputs switch nothing between samples; zero weights leave the multiplier outputs still."""
    qnet, x = mlp
    acfg = fit_array(MultiplierConfig("exact", 8), qnet, pes=2)
    same = action_counts(acfg, qnet, x[:1].expand(2, -1))
    one = action_counts(acfg, qnet, x[:1])
    assert same.cycles == one.cycles and same.reads == one.reads
    assert one.features["mul_in_hd"] > 0 and one.features["acc_hd"] > 0
    zero = QuantizedNetwork([replace(op, weight=torch.zeros_like(op.weight)) if isinstance(op, IntLinear) else op
                             for op in qnet.ops])
    z = action_counts(acfg, zero, x[:1])
    assert z.features["mul_out_hd"] == 0 < z.features["mul_in_hd"]


@pytest.fixture(scope="module")
def verilator() -> str:
    info = simulator_info("verilator")
    if not info.available:
        import os

        if os.environ.get("AXHW_REQUIRE_SIMULATORS", "") not in ("", "0"):
            pytest.fail(f"verilator: {info.reason} (AXHW_REQUIRE_SIMULATORS is set)")
        pytest.skip(info.reason)
    assert info.path is not None
    return info.path


def test_verilator_engine_matches_forward_int_and_icarus(toolchain: Toolchain, synth_cfg: SynthConfig, verilator: str,
                                                         cnn: tuple[QuantizedNetwork, torch.Tensor],
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every layer bit for bit; the same cycles and memory accesses as Icarus; flip-flops (glitch-free) toggle
    as under Icarus, but for the one x -> value change Icarus does not count (a register never reset)."""
    monkeypatch.setenv("AXHW_CACHE", str(tmp_path / "cache"))
    qnet, x = cnn
    acfg = fit_array(MultiplierConfig("drum", 8, 2), qnet, pes=2, input_shape=(1, 6, 6))
    synth = synthesize_array(acfg, synth_cfg)
    vl = simulate_array(synth, acfg, qnet, x, timing=False, engine="verilator")
    ic = simulate_array(synth, acfg, qnet, x, timing=True)
    assert vl.mismatches == 0 and vl.outputs_compared == ic.outputs_compared > 0 and vl.engine == "verilator"
    assert (vl.cycles, vl.busy_cycles, vl.reads, vl.writes) == (ic.cycles, ic.busy_cycles, ic.reads, ic.writes)
    cells = leaf_cells(synth)
    ffs = [i for i, c in enumerate(cells) if c.cell.startswith("DFF")]
    assert len(ffs) > 100
    diffs = [vl.toggles[i] - ic.toggles[i] for i in ffs]
    assert set(diffs) <= {0, 1} and sum(diffs) < 0.1 * sum(ic.toggles[i] for i in ffs)
    # zero-delay sees no glitches: fewer toggles than with cell delays, but the same order of magnitude
    assert 0.3 * sum(ic.toggles) < sum(vl.toggles) < sum(ic.toggles)
    # the build is cached: a second run compiles nothing
    from axhw.power.accel.sim import memory_sources, testbench

    tc = toolchain
    _, seconds = verilator_build({"accel_tb.v": testbench(synth, acfg, two_state=True), **memory_sources(synth, acfg)},
                                 [Path(synth.netlist), Path(tc.cell_models)])
    assert seconds == 0.0


def test_verilator_engine_refuses_delays_and_vcd(synth_cfg: SynthConfig, mlp: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    qnet, x = mlp
    acfg = fit_array(MultiplierConfig("exact", 8), qnet, pes=2)
    with pytest.raises(ValueError, match="zero-delay"):
        simulate_array(None, acfg, qnet, x, engine="verilator")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown engine"):
        simulate_array(None, acfg, qnet, x, engine="xcelium")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not simulate"):
        gate_level_activity(qnet, x, "exact", AccelConfig(engine="model"))


def test_calibration_networks_cover_every_feature() -> None:
    """Every feature the model prices varies across the calibration set (a constant one could not be fitted)."""
    nets = calibration_networks(1)
    assert len(nets) == 6
    rows = []
    for qnet, x in nets.values():
        shape = tuple(x.shape[1:]) if x.dim() == 4 else None
        acfg = fit_array(MultiplierConfig("exact", 8), qnet, pes=16, input_shape=shape)
        a = action_counts(acfg, qnet, x)
        rows.append({**a.features, "cycles": a.cycles})
    for feats in FEATURES.values():
        for f in feats:
            assert len({round(r[f], 6) for r in rows}) >= 3, f
    # seeded: the same set every time
    again = calibration_networks(1)
    assert all(torch.equal(nets[k][1], again[k][1]) for k in nets)


#: Regression bounds of the model against Icarus with cell delays on the held-out networks below. They are
#: what the model reaches today, not the engine's goal (3% total, 5% per unit: issue #26, open); a change that
#: makes the model worse fails here, one that makes it better should tighten them.
TOTAL_BOUND = 0.10
UNIT_BOUND = 0.45


@pytest.mark.slow
def test_model_engine_against_icarus_with_delays(toolchain: Toolchain, synth_cfg: SynthConfig, tmp_path: Path,
                                                 mlp: tuple[QuantizedNetwork, torch.Tensor],
                                                 cnn: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    """Calibrated on the calibration networks (2-PE array, Icarus with cell delays), the model prices two
    networks it never saw within :data:`TOTAL_BOUND` / :data:`UNIT_BOUND`; storage and cycles exactly."""
    cfg = AccelConfig(pes=2, samples=2, cache_root=tmp_path / "store")
    cal = calibrate(("K2",), cfg, synth_cfg, samples=2, root=tmp_path / "model")
    assert set(cal.coef["multipliers"]) == {"K2"} and len(cal.runs) == 6
    again = calibrate(("K2",), cfg, synth_cfg, samples=2, root=tmp_path / "model")  # stored
    assert again.coef == cal.coef
    for qnet, x in (mlp, cnn):
        ref = accelerator_energy(qnet, x, "K2", cfg, synth_cfg)
        mod = model_energy(qnet, x, "K2", replace(cfg, engine="model"), synth_cfg, calibration=cal)
        assert mod.activity["engine"] == "model" and mod.activity["cycles_per_inference"] == \
            ref.activity["cycles_per_inference"]
        for v in ref.storage:  # storage from the counted accesses: exact
            assert mod.storage[v]["total_j"] == pytest.approx(ref.storage[v]["total_j"], rel=1e-12)
        for u in UNITS:
            assert mod.logic_j[u] == pytest.approx(ref.logic_j[u], rel=UNIT_BOUND), u
        assert mod.totals["1100"]["total_j"] == pytest.approx(ref.totals["1100"]["total_j"], rel=TOTAL_BOUND)
    # the gate-level switching the fit saw, recomputed from a stored run, is the calibration's
    # (on the calibration's shared array: with cell delays, another array's address logic changes when the
    # weights reach the multipliers, hence their glitches)
    nets = calibration_networks(2)
    qnet, x = nets["mlp_24_20_5"]
    syn, _, act, _ = gate_level_activity(qnet, x, "K2", cfg, synth_cfg, synth=shared_array(nets, "K2", cfg, synth_cfg))
    run = next(r for r in cal.runs if r["network"] == "mlp_24_20_5")
    assert run["switching"]["multipliers"] == pytest.approx(unit_energies(syn, act)["multipliers"]["switching"])
    json.dumps(cal.coef)  # serializable as stored


def test_energy_per_inference_dispatches_on_the_engine(monkeypatch: pytest.MonkeyPatch,
                                                       mlp: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    from axhw.power.accel import engines

    calls: list[str] = []
    monkeypatch.setattr(engines, "model_energy", lambda *a, **k: calls.append("model"))
    monkeypatch.setattr(engines, "accelerator_energy", lambda *a, **k: calls.append(a[3].engine))
    qnet, x = mlp
    for engine in ("model", "verilator", "icarus"):
        engines.energy_per_inference(qnet, x, "K2", AccelConfig(engine=engine))
    assert calls == ["model", "verilator", "icarus"]
    with pytest.raises(ValueError, match="model engine"):
        accelerator_energy(qnet, x, "K2", AccelConfig(engine="model"))
