"""Where axhw reads its flow files and writes its caches (issue: installable from a wheel).

The wheel itself is built and run from a fresh virtual environment by ``.ci/wheel-smoke`` (CI); these tests
keep the cheap invariants that make that work: every package and every flow file is declared for the
wheel, and every default output location follows ``$AXHW_CACHE``, resolved when used (not at import).
"""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

import pytest

from axhw.common.paths import RESOURCES, cache_dir, resource_dir

ROOT = Path(__file__).resolve().parents[2]


def _setuptools_table() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


@pytest.mark.parametrize("name", sorted(RESOURCES))
def test_resource_dir_finds_the_flow_files(name):
    d = resource_dir(name)
    assert (d / RESOURCES[name]).is_file()


def test_resource_dir_rejects_unknown_names():
    with pytest.raises(ValueError, match="valid names are rtl, sim, power"):
        resource_dir("docs")  # type: ignore[arg-type]


def test_every_package_is_in_the_wheel():
    """``packages`` is an explicit list (find cannot see the mapped flow folders): a new subpackage must be
    added there, or the wheel silently lacks it."""
    declared = set(_setuptools_table()["packages"])
    # (no setuptools import here: it clashes with modules that imported the stdlib distutils first)
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "axhw").rglob("__init__.py")}
    assert found <= declared, f"packages missing from pyproject.toml: {sorted(found - declared)}"


@pytest.mark.parametrize("name", sorted(RESOURCES))
def test_every_flow_file_is_in_the_wheel(name):
    table = _setuptools_table()
    package = f"axhw._hw.{name}"
    assert table["package-dir"][package] == name
    patterns = table["package-data"][package]
    files = [p.name for p in (ROOT / name).iterdir() if p.is_file() and p.suffix not in (".pyc",)]
    assert files
    missing = [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert not missing, f"{name}/ files the wheel would leave out: {missing}"


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AXHW_CACHE", str(tmp_path / "c"))
    assert cache_dir("sim") == tmp_path / "c" / "sim"
    monkeypatch.delenv("AXHW_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "axhw"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("data") == tmp_path / "home" / ".cache" / "axhw" / "data"


def test_default_outputs_go_to_the_cache_not_the_installation(monkeypatch, tmp_path):
    """Each default location is resolved at use, so a user (or a test) setting $AXHW_CACHE after import
    still moves it; none of them points into the package."""
    from axhw.data.registry import default_data_dir
    from axhw.power.flow.synth import SynthConfig
    from axhw.rtl.registry import registry_path
    from axhw.rtl.verify import default_build_root

    for var in ("AXHW_SIM_BUILD", "AXHW_RTL_REGISTRY", "AXHW_DATA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AXHW_CACHE", str(tmp_path))
    for path in (default_build_root(), registry_path(), SynthConfig().cache_dir, default_data_dir()):
        assert tmp_path in Path(path).parents, path
