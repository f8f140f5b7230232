"""Shared test configuration: thread count, a synthetic MNIST, and the skip policy of CI.

Skip policy: a skipped check reads like a passed one in a summary, so where the environment promises every
tool (CI sets ``AXHW_STRICT_SKIPS=1``), a skip fails the run unless its reason matches :data:`ALLOWED_SKIPS`,
each entry with why it is acceptable. The run's last lines list the skips that were refused.
"""

from __future__ import annotations

import gzip
import os
import re
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

# Two cores on the reference machine; keep intra-op threads deterministic and bounded. `make mutate` sets
# AXHW_TEST_THREADS=1: mutmut forks one child per mutant from a process that already ran tests, and a child
# forked after libgomp started a team of 2 waits forever on the team's missing threads (seen as every
# mutant of a convolution-using function "timing out"); with one thread no team is ever started.
torch.set_num_threads(int(os.environ.get("AXHW_TEST_THREADS", "0")) or min(2, os.cpu_count() or 1))

#: Skip reasons CI accepts (regular expressions), and why each is not a hole in the checks.
ALLOWED_SKIPS: dict[str, str] = {
    r"no AVX-512BW on this CPU": "the AVX-512 table kernel depends on the CPU; its scalar twin runs on every "
    "CPU and is tested against the same reference",
    r"no AVX2 on this CPU": "the AVX2 table kernel (x86-64 only) depends on the CPU, like the AVX-512 one; its "
    "scalar twin runs on every CPU and is tested against the same reference",
    r"all tests skipped by \+SKIP option": "docstring examples of minutes-long synthesis or simulation, shown "
    "for reading; the same calls run in tests/power and tests/rtl",
}


def strict_skips() -> bool:
    """Whether a skip outside :data:`ALLOWED_SKIPS` fails the run (``AXHW_STRICT_SKIPS``, set by CI)."""
    return os.environ.get("AXHW_STRICT_SKIPS", "") not in ("", "0")


_refused: list[str] = []


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail") and strict_skips():
        reason = _skip_reason(report)
        if not any(re.search(pattern, reason) for pattern in ALLOWED_SKIPS):
            _refused.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _refused and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _refused:
        terminalreporter.section("skips refused (AXHW_STRICT_SKIPS: a skip is a failure unless allowed)", red=True)
        for line in _refused:
            terminalreporter.line(line)


def _idx(arr: np.ndarray) -> bytes:
    """An array in MNIST's IDX format."""
    return struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_synthetic_mnist(folder: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> Path:
    """Random 28x28 digits in MNIST's four gzipped IDX files (labels cycle 0..9), for ``$AXHW_MNIST_DIR``: tests
    that need MNIST's shapes, not its content, run where MNIST is not fetched."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        (folder / f"{stem}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(_idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))))
        (folder / f"{stem}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(_idx((np.arange(n) % 10).astype(np.uint8))))
    return folder


@pytest.fixture
def torch_threads() -> Iterator[Callable[[int], None]]:
    """``torch.set_num_threads`` for one test, the process's count restored after it (the C kernels split their
    work by torch's thread count). Under ``AXHW_TEST_THREADS=1`` (``make mutate``) a test asking for more than
    one thread is skipped: it would start an OpenMP team, and mutmut's forked children then hang (see above)."""
    saved = torch.get_num_threads()

    def set_threads(n: int) -> None:
        if n > 1 and os.environ.get("AXHW_TEST_THREADS") == "1":
            pytest.skip("AXHW_TEST_THREADS=1 (make mutate): an OpenMP team would hang mutmut's forked children")
        torch.set_num_threads(n)

    yield set_threads
    torch.set_num_threads(saved)


@pytest.fixture
def synthetic_mnist() -> Callable[..., Path]:
    """:func:`write_synthetic_mnist` (a fixture: test modules cannot import one of several ``conftest`` modules)."""
    return write_synthetic_mnist


@pytest.fixture(scope="session")
def mnist_or_synthetic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``"real"`` where MNIST is fetched, else ``"synthetic"`` with ``$AXHW_MNIST_DIR`` pointing at a synthetic
    MNIST (500 + 50 images) for the session."""
    from axhw import data

    if data.status()["mnist"]:
        yield "real"
        return
    mp = pytest.MonkeyPatch()
    mp.setenv("AXHW_MNIST_DIR", str(write_synthetic_mnist(tmp_path_factory.mktemp("mnist"), 500, 50)))
    yield "synthetic"
    mp.undo()


def conv_brute(m: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], a: torch.Tensor, w: torch.Tensor,
               stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
               dilation: int | tuple[int, int] = 1, groups: int = 1) -> torch.Tensor:
    """A convolution reference: each output by its window, product by product through the elementwise
    multiplier ``m`` (zero padding is code 0), independent of every conv path under test."""

    def pair(v: int | tuple[int, int]) -> tuple[int, int]:
        return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))

    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    ap = torch.nn.functional.pad(a, (pw, pw, ph, ph))
    n, _, h, wd = ap.shape
    o, cg, kh, kw = w.shape
    oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (wd - dw * (kw - 1) - 1) // sw + 1
    out = torch.zeros(n, o, oh, ow, dtype=torch.int64)
    for i in range(oh):
        for j in range(ow):
            win = ap[:, :, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]
            for ch in range(o):
                g = ch // (o // groups)
                out[:, ch, i, j] = m(win[:, g * cg:(g + 1) * cg], w[ch][None]).sum(dim=(1, 2, 3))
    return out


@pytest.fixture(name="conv_brute")
def conv_brute_fixture() -> Callable[..., torch.Tensor]:
    """:func:`conv_brute` (a fixture: test modules cannot import one of several ``conftest`` modules)."""
    return conv_brute
