"""Fixtures for the power-flow tests: the toolchain, skipped (or failed under AXHW_REQUIRE_SIMULATORS)
when Yosys/OpenSTA/Icarus/osu018 are missing, and a test-private synthesis cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from axhw.power.flow.synth import SynthConfig
from axhw.power.flow.tools import Toolchain, ToolMissing, find_toolchain


@pytest.fixture(scope="session")
def toolchain() -> Toolchain:
    try:
        return find_toolchain()
    except ToolMissing as exc:
        if os.environ.get("AXHW_REQUIRE_SIMULATORS", "") not in ("", "0"):
            pytest.fail(f"{exc} (AXHW_REQUIRE_SIMULATORS is set)")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def synth_cfg(tmp_path_factory: pytest.TempPathFactory) -> SynthConfig:
    return SynthConfig(cache_dir=Path(tmp_path_factory.mktemp("synth-cache")))
