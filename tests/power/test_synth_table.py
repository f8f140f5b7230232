"""`axhw power synth`: any multiplier name alone (--multiplier, --design its hidden old name), cached rows,
progress that names each step, --zero-delay and the stage-boundary toggles (--stages)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from axhw.apps.cli import main
from axhw.power.flow.activity import SimConfig
from axhw.power.flow.synth import SynthConfig, synthesize
from axhw.power.flow.tools import Toolchain
from axhw.power.multiplier import compute, synth_table
from axhw.power.multiplier.compute import measure_stream, measurement_key, mode_config
from axhw.power.multiplier.operands import OperandStream, uniform_operands
from axhw.power.multiplier.stages import KEEP_NETS, stage_toggles


@pytest.fixture()
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh axhw cache (synthesis and measurements) for a CLI run."""
    monkeypatch.setenv("AXHW_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_names_resolve_as_train_spells_them(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [synth_table.canonical_name(n) for n in ("Exact", " k2", "DRUM04", "drum3", "myCircuit")] == [
        "exact", "K2", "drum4", "drum3", "myCircuit"]
    assert synth_table.resolve_names(["k2", "exact", "K2"], None) == [("K2", [8]), ("exact", [8])]
    assert synth_table.resolve_names(["drum3"], [4, 8]) == [("drum3", [4, 8])]
    with pytest.raises(ValueError, match="k=9 out of range"):
        synth_table.resolve_names(["drum9"], [8])
    with pytest.raises(ValueError, match=r"built-in names: exact, K1\.\.K4, drum<k>.*no imported circuit 'nosuch'"):
        synth_table.resolve_names(["nosuch"], None)

    class Info:  # an imported 8-bit circuit, without importing one
        bits = 8

    from axhw.arith import library

    monkeypatch.setattr(library, "circuit_info", lambda name: Info())
    monkeypatch.setattr(synth_table, "mode_config", lambda name, bits: None)
    assert synth_table.resolve_names(["mine"], None) == [("mine", [8])]
    assert synth_table.resolve_names(["mine"], [8, 16]) == [("mine", [8])]  # its own width only
    with pytest.raises(ValueError, match="8-bit circuit, which --bits 4 leaves out"):
        synth_table.resolve_names(["mine"], [4])


def test_named_table_puts_the_name_last_without_its_duplicate(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, list[str]]] = []
    monkeypatch.setattr(synth_table, "measure_rows", lambda bits, modes, run, desc: seen.append((bits, modes)) or [])
    run = synth_table.SynthRun()
    synth_table.named_rows("drum4", [4, 8], None, run)
    synth_table.named_rows("K2", [8], ["exact", "drum2", "k1"], run)  # drum2 is K2's configuration
    assert seen == [(4, ["exact", "drum3", "drum2", "drum1", "drum4"]),
                    (8, ["exact", "drum8", "drum7", "drum6", "drum5", "drum3", "drum2", "drum1", "drum4"]),
                    (8, ["exact", "K1", "K2"])]


def test_design_is_a_hidden_alias_and_compare_needs_a_name(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["power", "synth", "--help"])
    help_text = capsys.readouterr().out
    assert "--multiplier NAME" in help_text and "--zero-delay" in help_text and "--stages" in help_text
    assert "--design" not in help_text
    assert main(["power", "synth", "--compare", "K2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["axhw power synth: error: --compare needs --multiplier NAME (it picks the rows shown beside the "
                   "named multipliers)"]
    assert main(["power", "synth", "--design", "drum9", "--bits", "8", "--out", str(tmp_path)]) == 2
    assert "k=9 out of range" in capsys.readouterr().err
    assert main(["power", "synth", "--bits", "0", "--out", str(tmp_path)]) == 2
    assert "bits=0 out of range" in capsys.readouterr().err  # before any work, not from deep inside


def test_one_builtin_multiplier_alone_then_from_the_cache(
    toolchain: Toolchain, private_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["power", "synth", "--multiplier", "k2", "--bits", "4", "--compare", "exact", "--pairs", "120", "--out",
            str(out)]
    assert main(args) == 0
    rows = json.loads((out / "synth_K2.json").read_text())
    assert [(r["mode"], r["config_id"]) for r in rows] == [("exact", "exact_s4"), ("K2", "drum_k2_s4")]
    assert all(r["mismatches"] == 0 and r["vectors"] == 120 for r in rows)
    assert not (out / "pe_8bit.md").exists() and not (out / "synth_4bit.json").exists()
    err = capsys.readouterr().err
    for step in ("exact: synthesis", "exact: simulation", "exact: power", "K2: simulation"):
        assert step in err  # the progress bar says what each second goes to
    assert len(list((private_cache / "power" / "measure").glob("*.json"))) == 2

    def no_simulation(*a: Any, **k: Any) -> None:
        raise AssertionError("a cached row was simulated again")

    monkeypatch.setattr(compute, "simulate", no_simulation)
    again = tmp_path / "again"
    assert main([*args[:-1], str(again), "--quiet"]) == 0
    assert json.loads((again / "synth_K2.json").read_text()) == rows
    assert capsys.readouterr().err == ""  # --quiet: no progress
    with pytest.raises(AssertionError, match="simulated again"):  # another stream is another measurement
        main([*args[:-3], "121", "--out", str(again), "--quiet"])


def test_measurement_key_covers_what_the_numbers_depend_on(toolchain: Toolchain, synth_cfg: SynthConfig,
                                                           tmp_path: Path) -> None:
    cfg = mode_config("K2", 4)
    synth = synthesize(cfg, synth_cfg)
    s = uniform_operands(4, 50, seed=1)
    base = compute.PowerConfig()

    def key(stream: OperandStream = s, sim: SimConfig | None = None, mode: str = "K2", c: Any = cfg) -> str:
        return measurement_key(mode, synth, c, stream, sim or SimConfig(), base)

    assert key() == key(sim=SimConfig(work_dir=tmp_path, keep_vcd=True))  # where files go changes nothing
    other_order = OperandStream(s.a.flip(0), s.b.flip(0), s.source)
    variants = {key(other_order), key(sim=SimConfig(timing=False)), key(sim=SimConfig(period_ns=60)),
                key(mode="drum2"), key(c=mode_config("K3", 4)),  # the model's products are in the vectors
                key(OperandStream(s.a, s.b, "other"))}
    assert key() not in variants and len(variants) == 6
    exact = synthesize(mode_config("exact", 4), synth_cfg)
    assert measurement_key("K2", exact, cfg, s, SimConfig(), base) != key()  # another netlist


def test_zero_delay_and_stage_toggles(toolchain: Toolchain, synth_cfg: SynthConfig, tmp_path: Path) -> None:
    stream = uniform_operands(4, 150, seed=2)
    timed = measure_stream("drum2", 4, stream, synth_cfg, SimConfig(timing=True), cache=tmp_path)
    zero = measure_stream("drum2", 4, stream, synth_cfg, SimConfig(timing=False), cache=tmp_path)
    assert timed.mismatches == zero.mismatches == 0
    assert zero.measured.energy_pj < timed.measured.energy_pj  # glitches cost energy
    assert zero.measured.leakage_w == timed.measured.leakage_w
    assert "net_toggles" not in timed.extra  # an ordinary synthesis keeps no nets
    st = stage_toggles("drum2", 4, stream, synth_cfg, cache=tmp_path)
    by = {s["stage"]: s for s in st["stages"]}
    assert list(by) == ["operands", "sign-magnitude in", "leading-one detector + encoder", "segment mux",
                        "k x k multiplier", "shift amount", "magnitude product", "product (sign out)"]
    assert by["operands"]["bits"] == 8 and by["product (sign out)"]["bits"] == 8 and by["k x k multiplier"]["bits"] == 4
    # operands are driven by the testbench: no glitches; functional output toggles do not depend on the netlist
    assert by["operands"]["delays"] == pytest.approx(by["operands"]["zero_delay"])
    assert by["product (sign out)"]["delays"] > by["product (sign out)"]["zero_delay"]
    assert st["mismatches"] == 0 and st["cells"] >= timed.n_cells
    assert st["energy_pj"]["zero_delay"] < st["energy_pj"]["delays"]
    kept = synthesize(mode_config("drum2", 4), SynthConfig(cache_dir=synth_cfg.cache_dir, keep_nets=KEEP_NETS))
    names = json.loads(kept.netlist_json.read_text())["modules"]["drum_mul"]["netnames"]
    assert {"oh_a", "seg_b", "prod_k", "sh", "mag_p"} <= set(names)
    assert kept.key != synthesize(mode_config("drum2", 4), synth_cfg).key
    exact = stage_toggles("exact", 4, stream, synth_cfg, cache=tmp_path)  # no internal stages named
    assert [s["stage"] for s in exact["stages"]] == ["operands", "product (sign out)"]


def test_cli_zero_delay_writes_beside_and_pe_table_progress(
    toolchain: Toolchain, private_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["power", "synth", "--multiplier", "drum2", "--bits", "4", "--compare", "--pairs", "100",
                 "--zero-delay", "--out", str(out), "--quiet"]) == 0
    assert "zero delay (functional toggles only" in (out / "synth_drum2_zero_delay.md").read_text()
    assert not (out / "synth_drum2.json").exists()
    assert main(["power", "synth", "--multiplier", "drum2", "--bits", "4", "--compare", "--pairs", "100",
                 "--out", str(out), "--quiet"]) == 0
    zero, timed = (json.loads((out / f"synth_drum2{s}.json").read_text())[0]["measured"] for s in ("_zero_delay", ""))
    assert zero["energy_pj"] < 0.9 * timed["energy_pj"] and zero["leakage_w"] == timed["leakage_w"]
    capsys.readouterr()

    class PE:  # synthesize_pe stands in: the PE table's progress, not its (slow) synthesis, is tested here
        config_id, n_cells, area_um2, leakage_nw = "pe_x", 10, 100.0, 1.0

    from axhw.power.flow import synth

    monkeypatch.setattr(synth, "synthesize_pe", lambda cfg, sc=None: PE())
    text = synth_table.pe_table(out, progress=True)
    assert "| K1    | pe_x" in text and (out / "pe_8bit.md").read_text() == text
    err = capsys.readouterr().err
    assert "PE 8-bit" in err and "K3: synthesis" in err
