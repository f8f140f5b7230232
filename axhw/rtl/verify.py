"""Verify generated multipliers bit for bit against :mod:`axhw.arith.multipliers` under Icarus and Verilator.

How a check runs (overview: docs/rtl.md's introduction): the RTL for a
:class:`~axhw.rtl.generate.MultiplierConfig` is generated into a per-(simulator, config) build directory and compiled together with ``sim/mul_tb.v``, a
self-checking wrapper. The operand pairs and their expected products, computed here by the Python model,
go into a ``$readmemh`` file that the wrapper walks at one vector per clock, counting mismatches; the cocotb
test ``sim/mul_tb.py`` reads the counters and then drives a few pairs directly to compare the DUT against
the model's products without the wrapper in between. Builds are cached: a stamp of the sources and build
settings skips the (Verilator: ~10 s) rebuild when nothing changed, and one build serves any vector set.

Expected products always come from the model object (``cfg.model()``, or any multiplier passed in), never
from a re-derivation. The one exception to calling it elementwise is unsigned 32-bit operands, whose
products can reach 2**64 - 1 and make the int64 model raise ``OverflowError``: there the expectation is
``int(T(a)) * int(T(b))`` with the model's own operand transform ``T`` (``drum(a, b) = T(a) * T(b)``;
the saturation corner exists only for signed operands), computed in Python integers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from axhw.arith.multipliers import Multiplier, SeparableMultiplier
from axhw.common.io import locked
from axhw.common.paths import cache_dir, resource_dir
from axhw.common.progress import note
from axhw.rtl.generate import MultiplierConfig, write, write_files
from axhw.rtl.simulators import SIMULATORS, setup_verilator

__all__ = [
    "DEPTH",
    "SIM_DIR",
    "CheckResult",
    "CircuitConfig",
    "build",
    "build_stamp",
    "check",
    "corner_values",
    "default_build_root",
    "exhaustive_pairs",
    "expected_products",
    "on_sys_path",
    "random_pairs",
    "require_simulator",
    "run_vectors",
    "write_vectors",
]

#: ``sim/`` (the repository's, or the wheel's copy): the wrapper ``mul_tb.v`` and the cocotb module ``mul_tb.py``.
SIM_DIR = resource_dir("sim")
#: Vector memory depth of the wrapper: one build serves any vector set up to 65,536 (8-bit exhaustive).
DEPTH = 1 << 16
#: Clock period of the vector walk, in ns (the DUT is combinational; any period works).
CLOCK_NS = 2
#: Operand pairs the cocotb test drives directly (corners first, then the vector table's own pairs).
DIRECT_PAIRS = 48


class CircuitConfig(Protocol):
    """What a check reads of a circuit: a generated :class:`~axhw.rtl.generate.MultiplierConfig`, or an imported
    circuit (:class:`axhw.rtl.imported.ImportedConfig`, which also brings ``rtl_files()`` and ``build_args()``)."""

    @property
    def config_id(self) -> str: ...
    @property
    def top(self) -> str: ...
    @property
    def bits(self) -> int: ...
    @property
    def signed(self) -> bool: ...
    def model(self) -> Multiplier: ...


def default_build_root() -> Path:
    """Where builds are cached: ``$AXHW_SIM_BUILD``, else ``sim`` in the user cache (:func:`axhw.common.paths.cache_dir`)."""
    env = os.environ.get("AXHW_SIM_BUILD")
    return Path(env).expanduser() if env else cache_dir("sim")


# --- vectors -------------------------------------------------------------------------------------------------


def exhaustive_pairs(cfg: CircuitConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``4**bits`` operand pairs (``a`` outer, ``b`` inner); meant for ``bits <= 8``."""
    if 4**cfg.bits > DEPTH:
        raise ValueError(f"exhaustive check needs 4**bits <= {DEPTH} vectors: bits <= 8, got {cfg.bits}")
    lo, hi = cfg.model().operand_range
    v = torch.arange(lo, hi + 1, dtype=torch.int64)
    a, b = torch.meshgrid(v, v, indexing="ij")
    return a.flatten(), b.flatten()


def corner_values(cfg: CircuitConfig) -> list[int]:
    """Operand corners: 0, +-1, min, max, and +-2**i, 2**i +- 1 in range (DRUM's segment boundaries)."""
    lo, hi = cfg.model().operand_range
    vals = {0, 1, lo, hi, lo + 1, hi - 1}
    for i in range(cfg.bits):
        for v in (1 << i, (1 << i) - 1, (1 << i) + 1):
            vals.update((v, -v))
    return sorted(v for v in vals if lo <= v <= hi)


def random_pairs(cfg: CircuitConfig, n: int = 10_000, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` seeded uniform pairs plus all pairs of :func:`corner_values` (up to :data:`DEPTH` in all)."""
    lo, hi = cfg.model().operand_range
    g = torch.Generator().manual_seed(seed)
    # randint's `high` must fit int64 (unsigned 32-bit: 2**32); draw in a shifted range to be safe.
    a = torch.randint(0, hi - lo + 1, (n,), generator=g, dtype=torch.int64) + lo
    b = torch.randint(0, hi - lo + 1, (n,), generator=g, dtype=torch.int64) + lo
    c = torch.tensor(corner_values(cfg), dtype=torch.int64)
    ca, cb = torch.meshgrid(c, c, indexing="ij")
    a, b = torch.cat([ca.flatten(), a]), torch.cat([cb.flatten(), b])
    if a.numel() > DEPTH:
        raise ValueError(f"{a.numel()} vectors exceed the wrapper depth {DEPTH}; lower n")
    return a, b


def expected_products(model: Multiplier, a: torch.Tensor, b: torch.Tensor) -> list[int]:
    """The model's products of ``a`` and ``b`` as Python ints (see the module docstring for 32-bit)."""
    try:
        return model(a, b).tolist()
    except OverflowError:
        if not isinstance(model, SeparableMultiplier) or model.signed:
            raise
        ta, tb = model.transform(a).tolist(), model.transform(b).tolist()
        return [x * y for x, y in zip(ta, tb, strict=True)]


def write_vectors(path: Path, bits: int, a: Sequence[int], b: Sequence[int], p: Sequence[int]) -> None:
    """Write ``{a, b, p}`` two's-complement words, one ``4 * bits``-bit hex word per line (``$readmemh``)."""
    mask, pmask = (1 << bits) - 1, (1 << 2 * bits) - 1
    digits = bits  # 4 * bits bits = bits hex digits
    lines = [
        f"{((x & mask) << 3 * bits) | ((y & mask) << 2 * bits) | (z & pmask):0{digits}x}\n"
        for x, y, z in zip(a, b, p, strict=True)
    ]
    path.write_text("".join(lines))


# --- build and run -------------------------------------------------------------------------------------------


def build_stamp(sources: Sequence[Path], settings: dict[str, object]) -> str:
    """Hash of a simulator build's sources and settings: a build folder is reused only while it matches."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for src in sources:
        h.update(src.name.encode())
        h.update(src.read_bytes())
    return h.hexdigest()


def require_simulator(simulator: str) -> None:
    """A one-line error for an unknown or missing simulator, naming the package that installs it."""
    if simulator not in SIMULATORS:
        raise ValueError(f"unknown simulator {simulator!r}: valid simulators are {', '.join(SIMULATORS)}")
    if simulator == "verilator":
        setup_verilator()


def build(cfg: CircuitConfig, simulator: str, build_root: Path | None = None) -> Path:
    """Generate ``cfg``'s RTL and compile it with the wrapper for ``simulator``; return the build directory.

    A stamp of all source texts and settings skips the build when nothing changed (cocotb's Verilator flow
    would otherwise rerun Verilator and make every time).
    """
    from cocotb_tools.runner import get_runner

    require_simulator(simulator)
    bdir = (build_root or default_build_root()) / simulator / cfg.config_id
    bdir.mkdir(parents=True, exist_ok=True)
    # Imported circuits (axhw.rtl.imported.ImportedConfig) bring their own sources and build arguments.
    own_files = getattr(cfg, "rtl_files", None)
    if own_files is not None:
        rtl = write_files(own_files(), bdir / "rtl")
    else:
        assert isinstance(cfg, MultiplierConfig)  # a circuit without its own files is generated from its design
        rtl = write(cfg, bdir / "rtl")
    build_args: list[str] = getattr(cfg, "build_args", lambda sim: [])(simulator)
    sources = [*rtl, SIM_DIR / "mul_tb.v"]
    settings = {"simulator": simulator, "top": cfg.top, "bits": cfg.bits, "depth": DEPTH,
                **({"build_args": build_args} if build_args else {})}
    stamp_file = bdir / "axhw_build.stamp"
    stamp = build_stamp(sources, settings)
    with locked(bdir / ".lock"):  # parallel pytest workers may share a build directory
        if stamp_file.is_file() and stamp_file.read_text() == stamp:
            return bdir
        stamp_file.unlink(missing_ok=True)
        runner = get_runner(simulator)
        runner.log.setLevel(logging.WARNING)  # the build log goes to build.log
        try:
            note(f"building {cfg.config_id} for {simulator} (once per configuration, cached in {bdir}) ...")
            runner.build(
                sources=sources,
                hdl_toplevel="mul_tb",
                parameters={"BITS": cfg.bits, "DEPTH": DEPTH},
                defines={"DUT": cfg.top, **({"AXHW_SELF_CLOCK": 1} if simulator == "icarus" else {})},
                build_args=build_args,
                build_dir=bdir,
                timescale=("1ns", "1ps"),
                log_file=bdir / "build.log",
            )
        except (RuntimeError, SystemExit) as exc:
            log = (bdir / "build.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(
                f"{simulator} build of {cfg.config_id} failed ({exc}); build.log ends:\n{log}"
            ) from exc
        stamp_file.write_text(stamp)
    return bdir


@dataclass
class CheckResult:
    """Outcome of one simulation.

    Attributes:
        config_id, simulator: what ran.
        vectors: pairs in the table; checked: pairs the wrapper compared (must equal ``vectors``).
        mismatches: table pairs whose RTL product differs from the expectation.
        first_bad: ``(a, b, expected, rtl)`` of the first mismatch, if any.
        direct: pairs driven directly from cocotb; direct_failures: those that differed, as above.
        seconds: wall time of the simulation (without the build).
    """

    config_id: str
    simulator: str
    vectors: int
    checked: int = 0
    mismatches: int = -1
    first_bad: tuple[int, int, int, int] | None = None
    direct: int = 0
    direct_failures: list[tuple[int, int, int, int]] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        """Every table pair was checked and matched, and every direct pair matched."""
        return (
            not self.error
            and self.checked == self.vectors
            and self.mismatches == 0
            and not self.direct_failures
        )

    def describe(self) -> str:
        if self.ok:
            return f"{self.config_id} on {self.simulator}: {self.vectors} vectors + {self.direct} direct pairs match"
        return (
            f"{self.config_id} on {self.simulator}: checked {self.checked}/{self.vectors} vectors, "
            f"{self.mismatches} mismatches (first (a, b, expected, rtl) = {self.first_bad}), "
            f"{len(self.direct_failures)}/{self.direct} direct failures {self.direct_failures[:4]} {self.error}"
        )


@contextlib.contextmanager
def on_sys_path(path: Path) -> Iterator[None]:
    """``path`` on ``sys.path`` for the duration (where cocotb's runner finds the testbench modules)."""
    # cocotb's runner exports sys.path as the simulator's PYTHONPATH; that is how it finds sim/mul_tb.py.
    sys.path.insert(0, str(path))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(path))


def run_vectors(
    cfg: CircuitConfig,
    simulator: str,
    a: torch.Tensor,
    b: torch.Tensor,
    expected: Sequence[int],
    *,
    direct: Sequence[tuple[int, int, int]] = (),
    build_root: Path | None = None,
    tag: str = "run",
) -> CheckResult:
    """Simulate ``cfg`` on the pairs ``(a, b)`` against ``expected`` (from the model; see :func:`check`).

    Args:
        direct: ``(a, b, expected)`` triples the cocotb test drives itself after the table walk.
        tag: names the run directory inside the build directory (separate vector sets do not collide).
    """
    from cocotb_tools.runner import get_runner

    if not 0 < a.numel() <= DEPTH:
        raise ValueError(f"{a.numel()} vectors out of range: valid range is 1..{DEPTH}")
    bdir = build(cfg, simulator, build_root)
    run_dir = bdir / tag
    run_dir.mkdir(parents=True, exist_ok=True)
    av, bv = a.tolist(), b.tolist()
    vec_file = run_dir / "vectors.hex"
    write_vectors(vec_file, cfg.bits, av, bv, expected)
    summary = run_dir / "summary.json"
    summary.unlink(missing_ok=True)
    job = {
        "bits": cfg.bits,
        "signed": cfg.signed,
        "vectors": len(av),
        "clock_ns": CLOCK_NS,
        "self_clock": simulator == "icarus",
        "direct": [list(t) for t in direct],
        "summary": str(summary),
    }
    result = CheckResult(cfg.config_id, simulator, len(av))
    t0 = time.perf_counter()
    runner = get_runner(simulator)
    runner.log.setLevel(logging.WARNING)  # the simulation log goes to sim.log
    note(f"simulating {len(av)} vectors of {cfg.config_id} with {simulator} ...")
    with on_sys_path(SIM_DIR), contextlib.suppress(SystemExit):
        # Under pytest the runner calls sys.exit() when a cocotb test fails; the summary says why.
        runner.test(
            test_module="mul_tb",
            hdl_toplevel="mul_tb",
            hdl_toplevel_lang="verilog",
            build_dir=bdir,
            test_dir=run_dir,
            plusargs=[f"+vectors={vec_file}", f"+nvec={len(av)}"],
            extra_env={"AXHW_MUL_TB_JOB": json.dumps(job)},
            timescale=("1ns", "1ps"),
            results_xml=str(run_dir / "results.xml"),
            log_file=run_dir / "sim.log",
        )
    result.seconds = time.perf_counter() - t0
    if not summary.is_file():
        result.error = f"no summary written; see {run_dir / 'sim.log'}"
        return result
    data = json.loads(summary.read_text())
    result.checked, result.mismatches = data["checked"], data["mismatches"]
    result.direct = len(direct)
    result.direct_failures = [tuple(x) for x in data["direct_failures"]]
    if result.mismatches > 0:
        i = data["first_bad"]
        result.first_bad = (av[i], bv[i], int(expected[i]), _signed(data["first_bad_p"], cfg))
    return result


def _signed(word: int, cfg: CircuitConfig) -> int:
    width = 2 * cfg.bits
    return word - (1 << width) if cfg.signed and word >> (width - 1) else word


def check(
    cfg: CircuitConfig,
    simulator: str,
    pairs: tuple[torch.Tensor, torch.Tensor] | None = None,
    *,
    model: Multiplier | None = None,
    build_root: Path | None = None,
    tag: str = "run",
) -> CheckResult:
    """Check ``cfg``'s RTL against ``model`` (default ``cfg.model()``) on ``pairs``.

    ``pairs`` defaults to all pairs for ``bits <= 8`` and to :func:`random_pairs` otherwise. The cocotb test
    also drives :data:`DIRECT_PAIRS` pairs itself (corner pairs, then table pairs).

    >>> check(MultiplierConfig("drum", bits=8, k=3), "icarus").ok  # doctest: +SKIP
    True
    """
    own_model = model is None
    model = model or cfg.model()
    if pairs is None:
        pairs = exhaustive_pairs(cfg) if cfg.bits <= 8 else random_pairs(cfg)
    a, b = pairs
    expected = expected_products(model, a, b)
    corners = torch.tensor(corner_values(cfg), dtype=torch.int64)
    da = torch.cat([corners, a[: DIRECT_PAIRS // 2]])[:DIRECT_PAIRS]
    db = torch.cat([corners.flip(0), b[: DIRECT_PAIRS // 2]])[:DIRECT_PAIRS]
    dp = expected_products(model, da, db)
    direct = list(zip(da.tolist(), db.tolist(), dp, strict=True))
    result = run_vectors(cfg, simulator, a, b, expected, direct=direct, build_root=build_root, tag=tag)
    if own_model and result.ok and isinstance(cfg, MultiplierConfig):
        # Evidence for axhw.rtl.registry.coverage (generated designs; imported circuits record their own): only the configuration's own model counts (a mutated
        # reference passed as `model` must never certify anything).
        from axhw.rtl.registry import record
        from axhw.rtl.simulators import simulator_info

        record(cfg, simulator, simulator_info(simulator).version, result.vectors, result.ok,
               result.mismatches, result.seconds)
    return result
