"""Accelerator-level energy (axhw.power.accel.energy*): the whole PE array at gate level on a real network run.

A hand-made 8-6-3 integer MLP on a 2-PE array keeps the default suite fast (two syntheses of ~10 s, simulations
of ~120 cycles); the MNIST-MLP numbers in docs/power.md ("Accelerator-level energy") are measured with the same code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from axhw.arith.fixedpoint import FixedPoint
from axhw.arith.registry import get_multiplier
from axhw.golden.network import IntLinear, IntReLU, QuantizedNetwork
from axhw.power.accel.energy import (
    UNITS,
    AccelConfig,
    accelerator_energy,
    cell_energies,
    clock_energies,
    fit_array,
)
from axhw.power.accel.report import markdown, section
from axhw.power.accel.sim import clock_domains, leaf_cells, memory_instances, simulate_array, unit_of
from axhw.power.accel.synth import _units, memory_specs, synthesize_array
from axhw.power.accel.timing import clock_mhz_for, timing_closure, worst_slack_ns
from axhw.power.flow.liberty import read_library
from axhw.power.flow.synth import SynthConfig
from axhw.power.flow.tools import Toolchain
from axhw.rtl.generate import MultiplierConfig
from axhw.rtl.pe import ArrayConfig, generate_array
from axhw.rtl.program import NetworkDoesNotFit, compile_network


def _linear(fan_in: int, fan_out: int, act_frac: int, last: bool, g: torch.Generator) -> IntLinear:
    return IntLinear(weight=torch.randint(-128, 128, (fan_out, fan_in), generator=g),
                     bias=torch.randint(-2000, 2000, (fan_out,), generator=g), act_fmt=FixedPoint(8, act_frac),
                     weight_fmt=FixedPoint(8, 6), acc_fmt=FixedPoint(32, 12),
                     out_fmt=None if last else FixedPoint(8, 4))


@pytest.fixture(scope="module")
def tiny() -> tuple[QuantizedNetwork, torch.Tensor]:
    """An 8-6-3 MLP with random 8-bit weights and three random input vectors."""
    g = torch.Generator().manual_seed(0)
    qnet = QuantizedNetwork([_linear(8, 6, 6, False, g), IntReLU(), _linear(6, 3, 4, True, g)])
    return qnet, torch.randint(-128, 128, (3, 8), generator=g)


@pytest.fixture(scope="module")
def accel_cfg(tmp_path_factory: pytest.TempPathFactory) -> AccelConfig:
    return AccelConfig(pes=2, samples=2, cache_root=tmp_path_factory.mktemp("accel-store"))


def test_memories_are_the_generators_and_multiplier_helpers_are_flattened() -> None:
    acfg = ArrayConfig(MultiplierConfig("drum", 8, 2), pes=2, max_fan_in=64)
    mems = memory_specs(acfg)
    assert {"array_wbuf", "array_nbuf", "pe_nlm"} <= set(mems) and "pe_wlm" not in mems  # weights stored once
    assert mems["array_wbuf"].width == 2 * 8 and mems["pe_nlm"].depth == 64 and not mems["array_wbuf"].write
    keep, mem_files = _units(generate_array(acfg), set(mems))
    assert "mul_drum_k2_s8" in keep and "pe_acc" in keep and "pe_array" in keep
    assert not any(m.startswith("drum_") for m in keep)  # DRUM's helper modules go inside the multiplier
    assert not set(mems) & set(keep) and len(mem_files) == len(mems)
    assert [unit_of(m) for m in ("mul_exact_s8", "pe_acc", "array_requant", "array_seq")] == \
        ["multipliers", "adders", "requantization", "control"]


def test_fit_array_sizes_memories_to_the_network(tiny: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    qnet, _ = tiny
    acfg = fit_array(MultiplierConfig("drum", 8, 1), qnet, pes=2)
    compile_network(acfg, qnet)
    assert acfg.max_fan_in == 8 and acfg.pes == 2
    with pytest.raises(NetworkDoesNotFit):
        compile_network(acfg.copy(max_fan_in=4), qnet)


def test_array_energy_per_inference(toolchain: Toolchain, synth_cfg: SynthConfig, accel_cfg: AccelConfig,
                                    tiny: tuple[QuantizedNetwork, torch.Tensor],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    qnet, x = tiny
    k1 = accelerator_energy(qnet, x, "K1", accel_cfg, synth_cfg)
    exact = accelerator_energy(qnet, x, "exact", accel_cfg, synth_cfg)
    for e in (k1, exact):
        a = e.activity
        assert a["mismatches"] == 0 and a["outputs_compared"] == 2 * (6 + 3)  # every layer, bit for bit
        assert e.multiplies_per_inference == 8 * 6 + 6 * 3
        # busy cycles counted by hand (rtl/array_seq.v.j2, 2 PEs, a FETCH per step; weights read from the
        # weight store, nothing loaded): 8->6 in groups of 2, 1 + (1 + 8 + 2 + 2) + 2 x (8 + 2 + 2) = 38 (later
        # groups RUN on the gathered window); 6->3, 1 + (1 + 6 + 2 + 2) + (6 + 2 + 1) = 21; the HALT fetch:
        # 38 + 21 + 1 = 60 per inference.
        assert a["busy_cycles"] == 2 * 60
        # the testbench counts from the first input load: 8 host writes and the start pulse, then the 60
        assert a["cycles_per_inference"] == 8 + 1 + 60
        assert all(e.logic_j[u] > 0 for u in UNITS) and sum(e.logic_clock_j.values()) < sum(e.logic_j.values())
        storage = [e.totals[f"{v:g}"]["storage_j"] for v in accel_cfg.voltages]
        assert storage == sorted(storage, reverse=True)  # lower SRAM voltage, less storage energy
        for t in e.totals.values():
            assert t["total_j"] == pytest.approx(t["multipliers_j"] + t["adders_requant_control_j"] + t["storage_j"])
            assert 0 < t["multiplier_share"] < 1
    # the approximate multiplier draws less than the exact one on the same network and inputs
    assert k1.logic_j["multipliers"] < exact.logic_j["multipliers"]

    # a second call reuses the stored activity: nothing is simulated
    def boom(*args: object, **kw: object) -> None:
        raise AssertionError("re-simulated")

    monkeypatch.setattr("axhw.power.accel.energy.simulate_array", boom)
    again = accelerator_energy(qnet, x, "K1", accel_cfg, synth_cfg)
    assert again.totals == k1.totals
    assert "## Accelerator-level energy per inference" in markdown({"networks": {"tiny": {"modes": {"K1": again.as_dict()}}}})


def test_access_counts_follow_the_program(toolchain: Toolchain, synth_cfg: SynthConfig,
                                          tiny: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    """Memory reads and writes counted in the simulation equal what the compiled program implies."""
    qnet, x = tiny
    acfg = fit_array(MultiplierConfig("drum", 8, 1), qnet, pes=2)
    synth = synthesize_array(acfg, synth_cfg)
    act = simulate_array(synth, acfg, qnet, x[:1], timing=False)
    assert act.mismatches == 0
    program = compile_network(acfg, qnet)
    # every PE's product reads its lane of the weight store (one lane: 8 of the word's 16 bits) and its neuron
    # local memory; a lane computes only in the groups it is on in (6 and 3 outputs on 2 PEs)
    products = [sum(len(range(p, q.fan_out, acfg.pes)) * q.fan_in for q in program.layers) for p in range(2)]
    assert products == [6 * 8 // 2 + 2 * 6, 6 * 8 // 2 + 1 * 6]
    for p, pe in enumerate(("u_pe0", "u_pe1")):
        assert act.reads[f"{pe}.u_nlm"] == products[p] and f"{pe}.u_wlm" not in act.reads
    assert act.reads["u_wbuf"] == sum(products)
    assert next(m for m in memory_instances(synth) if m.path == "u_wbuf").read_bits(16) == 8
    assert act.reads["u_bbuf"] == sum(q.fan_out for q in program.layers)  # one bias per output neuron
    assert act.writes["u_obuf"] == program.n_outputs
    assert act.writes["u_nbuf"] == program.n_inputs + 6  # the input vector, then the hidden layer
    assert {m.path for m in memory_instances(synth)} >= set(act.reads)
    cells = leaf_cells(synth)
    mul = [t for c, t in zip(cells, act.toggles, strict=True) if unit_of(c.module) == "multipliers"]
    assert sum(mul) > 0


def test_gated_flip_flops_are_priced_on_the_cycles_their_clock_ticks(
        toolchain: Toolchain, synth_cfg: SynthConfig, tiny: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    """Every PE flip-flop sits behind its PE's clock gate, the sequencer's counters on the free clock; OpenSTA
    prices a gated flip-flop's clock pin as an ungated one's (ideal clock: the STA netlist bypasses the gate's
    AND), and the energy charges it only in the cycles its gate let through."""
    qnet, x = tiny
    acfg = fit_array(MultiplierConfig("drum", 8, 1), qnet, pes=2)
    synth = synthesize_array(acfg, synth_cfg)
    act = simulate_array(synth, acfg, qnet, x[:1], timing=False)
    cells, dom = leaf_cells(synth), clock_domains(synth)
    ce = cell_energies(synth, 50.0)
    flops = [i for i, c in enumerate(cells) if c.cell == "DFFPOSX1"]
    gated = [i for i in flops if dom.gate_of[i] is not None]
    assert {cells[i].module for i in gated} == {"pe_acc", "pe_ctrl", "array_seq"}
    assert all(dom.gate_of[i] is not None for i in flops if cells[i].module in ("pe_acc", "pe_ctrl"))
    assert {dom.gate_of[i] for i in gated} == {"u_pe0.u_cg", "u_pe1.u_cg", "u_seq.u_cg_fields", "u_seq.u_cg_pixel",
                                               "u_seq.u_cg_walk", "u_seq.u_cg_write", "u_seq.u_cg_pool",
                                               "u_seq.u_cg_waddr"}
    assert any(cells[i].module == "array_seq" and dom.gate_of[i] is None for i in flops)  # state, counters
    free = [ce["clock_j"][i] for i in flops if dom.gate_of[i] is None]
    assert max(ce["clock_j"][i] for i in gated) == pytest.approx(min(free), rel=0.02)  # same slew, same energy
    enabled = dom.enabled_cycles(act.toggles)
    assert 0 < enabled["u_pe1.u_cg"] < enabled["u_pe0.u_cg"] < act.cycles  # PE 1's lane is off in the last group
    clk = clock_energies(synth, ce, act.cycles, enabled)
    for i in gated:
        assert clk[i] == pytest.approx(ce["clock_j"][i] * enabled[dom.gate_of[i]])
    with pytest.raises(KeyError, match=r"u_seq\.u_cg_fields"):
        clock_energies(synth, ce, act.cycles, {g: c for g, c in enabled.items() if g != "u_seq.u_cg_fields"})


def test_energy_is_charged_at_a_clock_the_array_meets(toolchain: Toolchain, synth_cfg: SynthConfig,
                                                      tiny: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    """The reported clock is the fastest with setup slack >= 0 (0.1 ns steps: 0.1 ns less fails), and a
    faster one is refused rather than priced."""
    qnet, _ = tiny
    synth = synthesize_array(fit_array(MultiplierConfig("drum", 8, 1), qnet, pes=2), synth_cfg)
    t = timing_closure(synth)
    assert t["slack_ns"] >= 0 and t["clock_mhz"] == pytest.approx(1e3 / t["period_ns"]) and t["sta_runs"] >= 2
    assert worst_slack_ns(synth, t["period_ns"])[0] == t["slack_ns"]
    assert worst_slack_ns(synth, round(t["period_ns"] - 0.1, 1))[0] < 0
    assert clock_mhz_for(synth, None) == t["clock_mhz"] and clock_mhz_for(synth, 1.0) == 1.0
    with pytest.raises(ValueError, match="the array meets"):
        clock_mhz_for(synth, t["clock_mhz"] * 1.5)


def test_array_netlist_is_buffered(toolchain: Toolchain, synth_cfg: SynthConfig,
                                   tiny: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    """No gate's output drives more than 8 cell inputs (``ARRAY_BUFFERING``): unbuffered, the sequencer's state
    decode drove ~360 pins of the LeNet-5 array from one inverter and set its clock. (ABC buffers the logic it
    maps; flip-flop outputs, the clock gates' outputs and module ports are outside its view.)"""
    qnet, _ = tiny
    synth = synthesize_array(fit_array(MultiplierConfig("drum", 8, 1), qnet, pes=2), synth_cfg)
    mods = json.loads(Path(synth.netlist_json).read_text())["modules"]
    gates = {c for c in read_library(toolchain.liberty).cells if not c.startswith(("DFF", "LATCH"))}
    fanout: dict[tuple[str, int], int] = {}
    gate_driven: set[tuple[str, int]] = set()
    for name, mod in mods.items():
        for c in mod.get("cells", {}).values():
            sequential = c["type"] not in gates  # flip-flops, clock gates, memories, submodules
            for pin, bits in c["connections"].items():
                out = c.get("port_directions", {}).get(pin) == "output"
                for b in bits:
                    if not isinstance(b, int):
                        continue
                    if out and not sequential:
                        gate_driven.add((name, b))
                    elif not out:
                        fanout[(name, b)] = fanout.get((name, b), 0) + 1
    worst = max(fanout.get(n, 0) for n in gate_driven)
    assert 4 <= worst <= 8, worst


def test_wrong_reference_is_caught(toolchain: Toolchain, synth_cfg: SynthConfig,
                                   tiny: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    """The comparison is real: a K1 array disagrees with exact products."""
    qnet, x = tiny
    acfg = fit_array(MultiplierConfig("drum", 8, 1), qnet, pes=2)
    act = simulate_array(synthesize_array(acfg, synth_cfg), acfg, qnet, x[:1], get_multiplier("exact", 8),
                         timing=False)
    # what the array computes (the K1 network) against what it is compared with (the exact one), per step:
    # the hidden layer after its ReLU (op 1), then the output accumulators (op 2)
    k1 = qnet.forward_int(x[:1], get_multiplier("K1", 8), return_all=True)
    ex = qnet.forward_int(x[:1], get_multiplier("exact", 8), return_all=True)
    assert isinstance(k1, list) and isinstance(ex, list)
    diff = [(k1[op] != ex[op]).flatten().tolist() for op in (1, 2)]
    assert act.mismatches == sum(sum(d) for d in diff) > 0
    step, neuron = next((s, d.index(True)) for s, d in enumerate(diff) if any(d))
    op = (1, 2)[step]
    assert act.first_bad == (0, step, neuron, int(ex[op][0, neuron]), int(k1[op][0, neuron]))


def test_section_without_results() -> None:
    assert "nothing measured" in section({})


def test_cli_accel_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from axhw.apps.cli import main

    assert main(["power", "accel", "--network", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint" in err[0]


def _fake_energy(ck: str, mode: str) -> dict[str, object]:
    """Accelerator energies shaped like AccelEnergy.as_dict(): K1 < K2 < exact, storage ~ V^2."""
    mul = {"exact": 3.0, "K2": 2.0, "K1": 1.0}[mode] * 1e-7
    totals = {}
    for v in (1100.0, 660.0):
        storage = 4e-7 * (v / 1100) ** 2
        totals[f"{v:g}"] = {"total_j": mul + 5e-7 + storage, "multipliers_j": mul, "adders_requant_control_j": 5e-7,
                            "storage_j": storage, "multiplier_share": mul / (mul + 5e-7 + storage)}
    return {"totals": totals, "logic_j": {"multipliers": mul},
            "activity": {"cycles_per_inference": 100.0, "clock_mhz": 128.2}, "settings": {"clock_mhz": None},
            "multiplies_per_inference": 48}


def _point(mode: str, v: float, acc: float) -> dict[str, object]:
    return {"mode": mode, "voltage_mv": v, "accuracy": acc, "accuracy_std": 0.0}


def test_study_accelerator_chosen_and_objective() -> None:
    """The chosen configurations get their accelerator energy, AxTrain its change against BP, and the
    accelerator-level objective picks the cheapest feasible (mode, voltage) of each evaluated grid."""
    from axhw.power.accel.report import study_accelerator, study_section

    modes, volts = ["exact", "K2", "K1"], [1100.0, 660.0]
    bp_acc = {("exact", 1100.0): 0.95, ("K2", 1100.0): 0.94, ("K1", 1100.0): 0.90}
    ax_acc = {("exact", 1100.0): 0.95, ("K2", 1100.0): 0.945, ("K1", 1100.0): 0.94}

    def net(ck: str, acc: dict[tuple[str, float], float], compute: str) -> dict[str, object]:
        points = [_point(m, v, acc.get((m, v), 0.5)) for m in modes for v in volts]
        return {"checkpoint": ck, "exact_nominal_accuracy": 0.95, "points": points,
                "chosen": {"compute": _point(compute, 1100.0, 0.94), "joint": _point(compute, 1100.0, 0.94)}}

    d = {"config": {"dataset": "toy", "modes": modes, "voltages": volts, "constraint_pp": 2.0, "reference": "own"},
         "seeds": [0], "per_seed_networks": {"0": {"bp": net("bp/checkpoint.pt", bp_acc, "K2"),
                                                   "axtrain": net("ax/checkpoint.pt", ax_acc, "K1")}},
         "per_target": {"per_seed": {"0": {"chosen": {"compute": {**_point("K1", 1100.0, 0.94),
                                                                  "checkpoint": "k1/checkpoint.pt"}}}}}}
    acc = study_accelerator(d, AccelConfig(), search=True, energy=_fake_energy)
    rows = acc["per_seed"]["0"]["chosen"]
    assert [(r["network"], r["part"]) for r in rows] == [("bp", "compute"), ("per_target", "compute"),
                                                         ("single", "compute"), ("bp", "joint"), ("single", "joint")]
    k1 = next(r for r in rows if r["network"] == "per_target")
    assert k1["vs_bp_percent"] == pytest.approx(100 * (_fake_energy("", "K1")["totals"]["1100"]["total_j"]  # type: ignore[index]
                                                      / _fake_energy("", "K2")["totals"]["1100"]["total_j"] - 1))  # type: ignore[index]
    search = acc["per_seed"]["0"]["search"]
    assert (search["bp"]["point"]["mode"], search["bp"]["point"]["voltage_mv"]) == ("K2", 1100.0)  # floor 0.93
    assert search["single"]["point"]["mode"] == "K1"
    assert [v["feasible"] for v in search["bp"]["visited"]][-1] and not search["bp"]["visited"][0]["feasible"]
    text = study_section(acc)
    assert "AxTrain (per target)" in text and "K1@1100mV" in text and "visited" in text


def test_toggle_counters_agree_with_the_vcd(toolchain: Toolchain, synth_cfg: SynthConfig, tmp_path: Path,
                                            tiny: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    """The in-simulator counters equal the transitions of a VCD of the same window (the multiplier-only flow's
    method, :func:`axhw.power.flow.activity.vcd_activity`), cell by cell, with cell delays (glitches) on."""
    import json

    from axhw.power.flow.activity import vcd_activity

    qnet, x = tiny
    acfg = fit_array(MultiplierConfig("drum", 8, 1), qnet, pes=2)
    synth = synthesize_array(acfg, synth_cfg)
    act = simulate_array(synth, acfg, qnet, x[:1], work_dir=tmp_path, vcd_scope="u_pe0.u_mul")
    vcd = vcd_activity(tmp_path / "dump.vcd", 1)
    mod = json.loads(synth.netlist_json.read_text())["modules"]["mul_drum_k1_s8"]
    name = {}
    for net, d in mod["netnames"].items():
        for i, bit in enumerate(d["bits"]):
            name.setdefault(bit, net if len(d["bits"]) == 1 else f"{net}[{d.get('offset', 0) + i}]")
    cells = leaf_cells(synth)
    compared = 0
    for c, t in zip(cells, act.toggles, strict=True):
        if c.path.startswith("u_pe0.u_mul."):
            inst = mod["cells"][c.path.rsplit(".", 1)[1]]
            net = name[inst["connections"][c.out_pin][0]]
            assert t == round(vcd[net].toggles_per_cycle), (c.path, net)
            compared += 1
    assert compared == synth.modules["mul_drum_k1_s8"]["n_cells"] and sum(act.toggles) > 0


def test_cli_accel_search_needs_accel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from axhw.apps.cli import main

    assert main(["power", "report", "--dataset", "breast_cancer", "--accel-search", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--accel-search needs --accel" in err[0]


def test_cli_engine_needs_accel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from axhw.apps.cli import main

    assert main(["power", "report", "--dataset", "breast_cancer", "--engine", "model", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--engine" in err[0] and "--accel" in err[0]


@pytest.mark.slow
def test_cli_accel_on_a_trained_checkpoint(toolchain: Toolchain, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``axhw power accel --network`` end to end: a 1-epoch breast-cancer MLP on a 2-PE array, one sample."""
    import json

    from axhw.apps.cli import main
    from axhw.training.trainer import TrainConfig, train

    monkeypatch.setenv("AXHW_CACHE", str(tmp_path / "cache"))
    train(TrainConfig(dataset="breast_cancer", method="bp", epochs=1), tmp_path / "bp", progress=False)
    out = tmp_path / "accel"
    assert main(["power", "accel", "--network", str(tmp_path / "bp" / "checkpoint.pt"), "--modes", "K2",
                 "--samples", "1", "--pes", "2", "--pairs", "64", "--voltages", "1100", "660", "--out", str(out),
                 "--quiet"]) == 0
    d = json.loads((out / "accel.json").read_text())["networks"]["bp"]["modes"]["K2"]
    assert d["activity"]["mismatches"] == 0 and d["multiplier_only"]["mismatches"] == 0
    assert set(d["totals"]) == {"1100", "660"}
    assert "multiplier-only flow" in (out / "accel.md").read_text()
    # the same network on the Verilator engine: the same schedule and accesses, zero-delay switching
    vout = tmp_path / "accel-vl"
    assert main(["power", "accel", "--network", str(tmp_path / "bp" / "checkpoint.pt"), "--multiplier", "K2",
                 "--samples", "1", "--pes", "2", "--pairs", "0", "--engine", "verilator", "--out", str(vout),
                 "--quiet"]) == 0
    v = json.loads((vout / "accel.json").read_text())["networks"]["bp"]["modes"]["K2"]
    assert v["activity"]["mismatches"] == 0 and v["settings"]["engine"] == "verilator"
    assert v["activity"]["cycles"] == d["activity"]["cycles"] and v["storage"]["1100"] == d["storage"]["1100"]
    assert 0 < v["logic_j"]["multipliers"] < d["logic_j"]["multipliers"]  # no glitches
    assert "Verilator, zero-delay" in (vout / "accel.md").read_text()


@pytest.fixture(scope="module")
def conv_tiny() -> tuple[QuantizedNetwork, torch.Tensor]:
    """conv 3x3 (1 -> 2 channels, padding 1) on a 6x6 map, ReLU, 2x2 max pooling, 18-3 fully connected."""
    from axhw.nn import ApproxConv2d, ApproxLinear, HardwareConfig, calibrate_model, to_quantized

    torch.manual_seed(0)
    hw = HardwareConfig(mode="quantized", bits=8)
    model = torch.nn.Sequential(ApproxConv2d(1, 2, 3, padding=1, hw=hw), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                torch.nn.Flatten(), ApproxLinear(18, 3, hw=hw)).eval()
    x = torch.randn(4, 1, 6, 6)
    calibrate_model(model, x)
    qnet = to_quantized(model)
    return qnet, qnet.quantize_input(x)


def _neuron_buffer_reads(acfg: ArrayConfig, qnet: QuantizedNetwork, shape: tuple[int, int, int]) -> int:
    """Neuron buffer words one inference reads, counted from the layer shapes alone (docs/rtl.md's mapping):
    every output pixel's window elements inside the map (padding reads nothing), per group of PEs for a
    convolution, per channel for a pooling; a fully-connected layer gathers its input once."""
    total = 0
    for p in compile_network(acfg, qnet, input_shape=shape).layers:
        _, h, w = p.in_shape
        _, ho, wo = p.out_shape
        inside = sum(
            1
            for oy in range(ho) for ox in range(wo) for ky in range(p.kernel[0]) for kx in range(p.kernel[1])
            if 0 <= oy * p.stride[0] - p.pad[0] + ky < h and 0 <= ox * p.stride[1] - p.pad[1] + kx < w
        ) * p.in_shape[0]
        if p.kind == "maxpool2d":
            total += inside  # one channel's window per output: in_shape[0] counts the channels here
        elif ho * wo == 1:
            total += inside
        else:
            total += inside * -(-p.fan_out // acfg.pes)
    return total


def test_neuron_buffer_reads_of_convolution_and_pooling(toolchain: Toolchain, synth_cfg: SynthConfig,
                                                        conv_tiny: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    """The neuron buffer's read enable counts exactly the reads the convolution gather and max pooling make
    (before it, pooling reads went uncounted and padding positions counted as reads)."""
    qnet, x_int = conv_tiny
    acfg = fit_array(MultiplierConfig("exact", 8), qnet, pes=2, input_shape=(1, 6, 6))
    synth = synthesize_array(acfg, synth_cfg)
    act = simulate_array(synth, acfg, qnet, x_int[:1], timing=False)
    # every element of every step's output map was compared
    program = compile_network(acfg, qnet, input_shape=(1, 6, 6))
    assert act.mismatches == 0 and act.outputs_compared == sum(math.prod(p.out_shape) for p in program.layers) > 0
    expected = _neuron_buffer_reads(acfg, qnet, (1, 6, 6))
    # 6x6 map, 3x3 window, padding 1: (2 + 3 + 3 + 3 + 3 + 2)^2 = 256 of the 36 x 9 window positions are
    # inside, for the one group of 2 channels on 2 PEs; pooling 2 x 9 windows x 4; the 18 FC inputs once
    assert expected == 256 + 72 + 18
    assert act.reads["u_nbuf"] == expected


def test_conv_network_reference_takes_shaped_inputs_before_simulating(
        toolchain: Toolchain, monkeypatch: pytest.MonkeyPatch, conv_tiny: tuple[QuantizedNetwork, torch.Tensor]) -> None:
    """A conv network's golden model reads (N, C, H, W) inputs, and it runs before the (long) simulation: a
    LeNet-5 run once simulated for 30 minutes and then failed on flattened inputs."""
    import axhw.rtl.netverify as netverify

    qnet, x_all = conv_tiny
    x_int = x_all[:1]
    seen: list[tuple[int, ...]] = []
    real = netverify.reference_outputs

    def spy(qnet_: QuantizedNetwork, xi: torch.Tensor, *a: object, **kw: object) -> list[torch.Tensor]:
        seen.append(tuple(xi.shape))
        real(qnet_, xi, *a, **kw)  # type: ignore[arg-type]
        raise RuntimeError("stop before simulating")

    monkeypatch.setattr(netverify, "reference_outputs", spy)
    acfg = fit_array(MultiplierConfig("exact", 8), qnet, pes=2, input_shape=(1, 6, 6))
    with pytest.raises(RuntimeError, match="stop before simulating"):
        simulate_array(None, acfg, qnet, x_int)  # type: ignore[arg-type]  # never reaches the netlist
    assert seen == [(1, 1, 6, 6)]
