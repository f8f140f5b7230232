"""Missing tools fail in one line that names the Debian package."""

from __future__ import annotations

import pytest

from axhw.power.flow import tools


def test_missing_tool_names_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    tools.clear_cache()
    monkeypatch.setattr(tools.shutil, "which", lambda name: None if name == "sta" else f"/usr/bin/{name}")
    with pytest.raises(tools.ToolMissing, match="'opensta'"):
        tools.find_toolchain()
    tools.clear_cache()


def test_missing_library_names_debian_package(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tools.clear_cache()
    monkeypatch.setattr(tools.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(tools, "LIBRARY_DIR", tmp_path)
    with pytest.raises(tools.ToolMissing, match="qflow-tech-osu018"):
        tools.find_toolchain()
    tools.clear_cache()


def test_cli_reports_missing_tool(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    import argparse

    from axhw.power.cli import add_parser

    tools.clear_cache()
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["power", "synth", "--bits", "8", "--out", str(tmp_path)])
    assert args.func(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "yosys" in err[0] and "install the Debian package" in err[0]
    tools.clear_cache()
