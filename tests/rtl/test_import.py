"""Importing Verilog multipliers (axhw.rtl.imported): exhaustive simulation into the library, agreement with
independent Python models of the tests' own circuits (tests/circuits), one-line errors on bad input, cocotb
re-verification on both simulators, a negative control, and coverage invalidation; the refusal of an absurd
signedness, of combinational loops and of hung simulations, and clean-up on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from axhw.arith import library
from axhw.arith.multipliers import error_stats
from axhw.arith.registry import get_multiplier
from axhw.arith.verification import coverage
from axhw.rtl import import_steps
from axhw.rtl.imported import (
    CircuitImportError,
    ImportTerminated,
    check_signedness,
    import_circuit,
    simulate_table,
    verify_imported,
)

CIRCUITS = Path(__file__).parents[1] / "circuits"
sys.path.insert(0, str(CIRCUITS))
import models  # noqa: E402

#: (file, top, signed, ports)
CASES = {
    "bam8u": ("bam8u.v", "bam8u", False, None),  # multi-module (half/full adders), not commutative
    "rtrunc8s": ("rtrunc8s.v", "rtrunc8s", True, "a=x,b=w,p=y"),  # signed, renamed ports, `timescale
    "trunc8u": ("trunc8u.v", "trunc8u", False, None),  # behavioural loops
}


def _import(name: str, sim: str = "icarus", **kw):
    f, top, signed, ports = CASES[name]
    return import_circuit([CIRCUITS / f], top, 8, signed, ports, simulator=sim, **kw)


def _check_against_model(name: str) -> None:
    _, top, signed, _ = CASES[name]
    fn = getattr(models, top)
    vals = range(-128, 128) if signed else range(256)
    want = torch.tensor([[fn(a, b) for b in vals] for a in vals])
    m = get_multiplier(name, 8, signed)
    v = torch.tensor(list(vals))
    assert torch.equal(m(v[:, None], v[None, :]), want)
    if not signed:  # the signed use, through the sign-magnitude wrapper
        sv = range(-128, 128)
        want_s = torch.tensor([[models.sign_magnitude(fn, a, b) for b in sv] for a in sv])
        s = torch.tensor(list(sv))
        assert torch.equal(get_multiplier(name, 8)(s[:, None], s[None, :]), want_s)


@pytest.mark.parametrize("name", ["bam8u", "rtrunc8s", pytest.param("trunc8u", marks=pytest.mark.slow)])
def test_import_matches_python_model(name: str, lib: Path, icarus: str) -> None:
    res = _import(name, icarus)
    _check_against_model(name)
    info = library.circuit_info(name)
    assert info.source_hash == res.info.source_hash and info.simulator == "icarus" and info.bits == 8
    assert (lib / name / "src" / CASES[name][0]).read_bytes() == (CIRCUITS / CASES[name][0]).read_bytes()
    # Statistics: those of the independent Python model.
    st = res.stats[0]
    signed = CASES[name][2]
    vals = range(-128, 128) if signed else range(256)
    errs = [getattr(models, name)(a, b) - a * b for a in vals for b in vals]
    assert st.mae == pytest.approx(sum(map(abs, errs)) / len(errs)) and st.wce == max(map(abs, errs))
    assert st.ep == pytest.approx(sum(e != 0 for e in errs) / len(errs))
    assert st.as_dict() == error_stats(get_multiplier(name, 8, signed)).as_dict()
    assert len(res.stats) == (1 if signed else 2)
    ok, msg = coverage(name, 8)  # the import simulation is exhaustive RTL evidence on icarus
    assert ok and "icarus" in msg and "not yet re-verified through cocotb" in msg


def test_bam_is_not_commutative(lib: Path, icarus: str) -> None:
    _import("bam8u", icarus)
    m = get_multiplier("bam8u", 8, signed=False)
    assert bool((m.table != m.table.T).any())  # the order matters: a is the activation, b the weight
    assert m(torch.tensor([255]), torch.tensor([1])).item() == 0 and m(torch.tensor([1]), torch.tensor([255])).item() > 0


def test_import_with_verilator(lib: Path, verilator_exe: str) -> None:
    res = _import("rtrunc8s", "verilator")
    assert res.info.simulator == "verilator"
    _check_against_model("rtrunc8s")


@pytest.mark.slow
def test_import_unsigned_with_verilator(lib: Path, verilator_exe: str) -> None:
    _import("bam8u", "verilator")
    _check_against_model("bam8u")


def _write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


GOOD4 = "module m4 (input [3:0] a, input [3:0] b, output [7:0] p);\n  assign p = a * b;\nendmodule\n"


def test_bad_input_is_one_line_and_writes_nothing(lib: Path, tmp_path: Path, icarus: str) -> None:
    cases = [
        ([_write(tmp_path, "syntax.v", "module m4 (input [3:0] a, input [3:0] b, output [7:0] p)\n  assign p = ;\n")],
         "m4", 4, {}, "does not"),
        ([_write(tmp_path, "good.v", GOOD4)], "nothere", 4, {}, "no module 'nothere'"),
        ([tmp_path / "good.v"], "m4", 8, {}, r"needs input \[8 bits\]"),
        ([tmp_path / "good.v"], "m4", 4, {"ports": "a=a,b=q,p=p"}, "which m4 lacks"),
        ([_write(tmp_path, "oddports.v", "module m5 (input [3:0] x, input [3:0] y, output [7:0] z);\n"
                 "  assign z = x * y;\nendmodule\n")], "m5", 4, {}, "map it with --ports"),
        ([tmp_path / "good.v"], "m4", 4, {"name": "K3"}, "clashes with a built-in"),
        ([tmp_path / "good.v"], "m4", 17, {}, "out of range"),
        ([_write(tmp_path, "undef.v", "module m6 (input [3:0] a, input [3:0] b, output [7:0] p);\n"
                 "  missing_cell u (.a(a), .b(b), .p(p));\nendmodule\n")], "m6", 4, {}, "does not compile|failed"),
        ([_write(tmp_path, "xout.v", "module m7 (input [3:0] a, input [3:0] b, output [7:0] p);\n"
                 "  wire [7:0] q;\n  assign p = q;\nendmodule\n")], "m7", 4, {}, "unknown bits"),
    ]
    for files, top, bits, kw, pattern in cases:
        with pytest.raises(CircuitImportError, match=pattern) as err:
            import_circuit(files, top, bits, signed=False, ports=kw.get("ports"), name=kw.get("name"),
                           simulator=icarus)
        assert "\n" not in str(err.value), str(err.value)
        assert not lib.exists() or not library.names(), (top, pattern)
    import_circuit([tmp_path / "good.v"], "m4", 4, signed=False, simulator=icarus)
    with pytest.raises(CircuitImportError, match="already exists"):
        import_circuit([tmp_path / "good.v"], "m4", 4, signed=False, simulator=icarus)
    import_circuit([tmp_path / "good.v"], "m4", 4, signed=False, simulator=icarus, force=True)
    assert library.names() == ["m4"]
    assert torch.equal(get_multiplier("m4", 4, signed=False).table, torch.arange(16)[:, None] * torch.arange(16))


def test_cli_import_and_error_exit(lib: Path, tmp_path: Path, icarus: str, capsys: pytest.CaptureFixture[str]) -> None:
    from axhw.apps.cli import main

    good = _write(tmp_path, "good.v", GOOD4)
    assert main(["multipliers", "import", str(good), "--top", "m4", "--bits", "4", "--unsigned", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"nmed"' in out and '"name": "m4"' in out
    assert main(["multipliers", "import", str(good), "--top", "m4", "--bits", "5", "--unsigned", "--name", "m4b"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("axhw multipliers: error: port a (a) of m4 is input [4 bits]") and err.count("\n") == 1


def test_reverify_and_negative_control_icarus(lib: Path, icarus: str) -> None:
    _import("rtrunc8s", icarus)
    (res,) = verify_imported("rtrunc8s", icarus)
    assert res.ok and res.vectors == 65536, res.describe()
    ok, msg = coverage("rtrunc8s", 8)
    assert ok and "cocotb re-verified on icarus" in msg
    # Negative control: a table that disagrees with the circuit in one entry is caught, and not covered.
    path = lib / "rtrunc8s" / "table.npy"
    t = np.load(path)
    t[3, 200] += 16
    np.save(path, t)
    (bad,) = verify_imported("rtrunc8s", icarus)
    assert not bad.ok and bad.mismatches == 1, bad.describe()
    assert not coverage("rtrunc8s", 8)[0]
    # A changed source invalidates the record too.
    _import("rtrunc8s", icarus, force=True)
    assert coverage("rtrunc8s", 8)[0]
    src = lib / "rtrunc8s" / "src" / "rtrunc8s.v"
    src.write_text(src.read_text() + "\n// edited\n")
    ok, msg = coverage("rtrunc8s", 8)
    assert not ok and "changed since import" in msg


def test_rtl_verify_cli_lists_only_verifiable(lib: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from axhw.rtl.cli import main_verify, verifiable_designs

    assert verifiable_designs() == ["exact", "drum"]
    import argparse

    args = argparse.Namespace(design="pe", multiplier=None, bits=None, k=None, unsigned=False, sim=["icarus"], build_root=None,
                              rtl_command="verify")
    assert main_verify(args) == 2
    assert "valid designs are exact, drum" in capsys.readouterr().err


@pytest.mark.slow
def test_reverify_on_both_simulators(lib: Path, simulator: str) -> None:
    """Unsigned multi-module circuit: raw core against its table, generated wrapper against the signed model."""
    _import("bam8u", "icarus")
    results = verify_imported("bam8u", simulator)
    assert [r.ok for r in results] == [True, True], [r.describe() for r in results]
    ok, msg = coverage("bam8u", 8)
    assert ok and f"cocotb re-verified on {simulator}" in msg


# --- signedness, loops, hangs, SIGTERM -------------------------------------------------------------------------


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tempfile``'s folder for this test only, to see what an import leaves behind."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def test_check_signedness_criterion() -> None:
    """Both readings come from one table; the bar is the constant-zero multiplier (MRE exactly 100 %)."""
    words = torch.arange(16)
    unsigned = words[:, None] * words[None, :]
    check_signedness(unsigned, 4, False, "u")
    with pytest.raises(CircuitImportError, match=r"u read as signed has mean relative error 529\.0 % .*read as "
                                                 r"unsigned it has 0\.00 %: it is an unsigned circuit, so import it "
                                                 r"with --unsigned, or pass --accept-error"):
        check_signedness(unsigned, 4, True, "u")
    values = torch.where(words >= 8, words - 16, words)
    signed = values[:, None] * values[None, :]
    check_signedness(signed, 4, True, "s")
    with pytest.raises(CircuitImportError, match=r"s read as unsigned has mean relative error 378\.4 %.*it is a signed "
                                                 r"circuit, so import it with --signed"):
        check_signedness(signed, 4, False, "s")
    zero = torch.zeros(16, 16, dtype=torch.int64)  # MRE exactly ABSURD_MRE in both readings: accepted
    check_signedness(zero, 4, True, "z")
    check_signedness(zero, 4, False, "z")
    zero[1, 1] = 3  # and 1 * 1 = 3: just worse than constant zero, in both readings
    with pytest.raises(CircuitImportError, match=r"^z read as unsigned has mean relative error 100\.4 % \(max 200 %\), "
                                                 r"worse than .*, and read as signed 100\.4 %: check the port map"):
        check_signedness(zero, 4, False, "z")


def test_absurd_signedness_is_refused(lib: Path, icarus: str) -> None:
    mul4u, mul4s, rev4 = CIRCUITS / "mul4u.v", CIRCUITS / "mul4s.v", CIRCUITS / "rev4.v"
    with pytest.raises(CircuitImportError, match=r"mul4u read as signed has mean relative error 529\.0 %.*--unsigned"):
        import_circuit([mul4u], "mul4u", 4, signed=True, simulator=icarus)  # a forgotten --unsigned
    with pytest.raises(CircuitImportError, match=r"mul4s read as unsigned has mean relative error 378\.4 %.*--signed"):
        import_circuit([mul4s], "mul4s", 4, signed=False, simulator=icarus)  # a stray --unsigned
    with pytest.raises(CircuitImportError) as err:  # absurd either way: no signedness to suggest
        import_circuit([rev4], "rev4", 4, signed=False, simulator=icarus)
    msg = str(err.value)
    assert "read as unsigned has mean relative error 431.7 % (max 12700 %), worse than" in msg and "read as signed 856.1 %" in msg
    assert "check the port map" in msg and "--unsigned" not in msg and "--signed" not in msg and "\n" not in msg
    assert library.names() == []
    assert import_circuit([mul4u], "mul4u", 4, signed=False, simulator=icarus).stats[0].mre == 0
    assert import_circuit([mul4s], "mul4s", 4, signed=True, simulator=icarus).stats[0].mre == 0
    res = import_circuit([mul4u], "mul4u", 4, signed=True, name="mul4u_signed", simulator=icarus, accept_error=True)
    assert res.stats[0].mre == pytest.approx(5.2904, abs=1e-4)  # on request, the absurd reading is kept
    assert library.names() == ["mul4s", "mul4u", "mul4u_signed"]


def test_cli_signedness_flags(lib: Path, icarus: str, capsys: pytest.CaptureFixture[str]) -> None:
    from axhw.apps.cli import main

    base = ["multipliers", "import", str(CIRCUITS / "mul4u.v"), "--top", "mul4u", "--bits", "4"]
    for flags in ([], ["--signed"]):
        assert main([*base, *flags]) == 2
        err = capsys.readouterr().err
        assert err.startswith("axhw multipliers: error: mul4u read as signed") and err.count("\n") == 1
        assert "import it with --unsigned" in err
    assert main([*base, "--signed", "--accept-error", "--json"]) == 0
    assert '"signed": true' in capsys.readouterr().out
    assert main([*base, "--unsigned", "--name", "m4u", "--json"]) == 0
    assert '"signed": false' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*base, "--signed", "--unsigned"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_combinational_loop_is_refused_before_simulating(lib: Path, icarus: str, yosys: str, private_tmp: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(import_steps, "STALL_SECONDS", 20.0)  # the refusal must not come from the watchdog
    started: list[list[str]] = []  # commands run through subprocess.Popen (by the import or by version probes)
    real_popen = subprocess.Popen

    def spy(cmd: list[str], *args: object, **kw: object) -> subprocess.Popen:
        started.append(cmd)
        return real_popen(cmd, *args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(import_steps.subprocess, "Popen", spy)
    t0 = time.monotonic()
    with pytest.raises(CircuitImportError, match=r"^loop4 has a combinational loop through t, u_inv\.x "
                                                 r"\(loop4\.v:11, loop4\.v:5\), found by Yosys"):
        import_circuit([CIRCUITS / "loop4.v"], "loop4", 4, signed=False, simulator=icarus)
    assert time.monotonic() - t0 < 30
    assert [Path(c[0]).name for c in started if "tb.vvp" in c or Path(c[0]).name == "yosys"] == ["yosys"], started
    assert library.names() == [] and not list(private_tmp.glob("axhw-import*"))
    # A loop only in a word-level netlist (bit 7 feeds bit 0, nothing feeds bit 7) is no loop: imported.
    import_circuit([CIRCUITS / "xorfb4.v"], "xorfb4", 4, signed=False, simulator=icarus)
    q = torch.arange(16)[:, None] * torch.arange(16)
    assert torch.equal(get_multiplier("xorfb4", 4, signed=False).table, q ^ (q >> 7))


def test_watchdog_stops_a_simulation_that_never_finishes(lib: Path, icarus: str, private_tmp: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(import_steps, "STALL_SECONDS", 1.0)
    monkeypatch.setattr(import_steps, "STEP_TIMEOUT_S", 20.0)  # the cap, should the watchdog fail
    procs: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def spy(*args: object, **kw: object) -> subprocess.Popen:
        procs.append(real_popen(*args, **kw))  # type: ignore[call-overload]
        return procs[-1]

    monkeypatch.setattr(import_steps.subprocess, "Popen", spy)
    t0 = time.monotonic()
    try:
        # A behavioural loop that never ends (Yosys cannot read it, so only the watchdog can stop it).
        with pytest.raises(CircuitImportError, match=r"^vvp simulation of spin4 made no progress for 1 s \(0 "
                                                     r"products written\) and was stopped"):
            import_circuit([CIRCUITS / "spin4.v"], "spin4", 4, signed=False, simulator=icarus)
        # An oscillating combinational loop, with the Yosys check skipped.
        data = (CIRCUITS / "loop4.v").read_bytes()
        with pytest.raises(CircuitImportError, match=r"^vvp simulation of loop4 made no progress for 1 s"):
            simulate_table([("loop4.v", data)], "loop4", 4, False, {"a": "a", "b": "b", "p": "p"}, icarus,
                           check_loops=False)
        assert time.monotonic() - t0 < 30
        vvp = [p for p in procs if Path(str(p.args[0])).name == "vvp"]
        assert len(vvp) == 2 and all(p.returncode is not None for p in vvp)  # stopped and reaped (vvp exits 0
        # on SIGTERM)
        assert library.names() == [] and not list(private_tmp.glob("axhw-import*"))
    finally:
        for p in procs:  # started by this test; never left running, whatever the outcome
            if p.poll() is None:
                p.kill()
                p.wait()


def test_sigterm_during_a_held_step_is_raised_after_it() -> None:
    from axhw.rtl.import_steps import SIGNALS as _SIGNALS

    # The guard installs itself only over Python's defaults (an application's own handler wins); another
    # test of this session may have left one (Ray installs a SIGTERM handler), so start from the default.
    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        reached = False
        with pytest.raises(ImportTerminated), _SIGNALS.active():
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # else the kill below ends pytest
            with _SIGNALS.deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                reached = True  # held: the block finishes (a folder is created or removed whole)
        assert reached and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, before)


def _vvp_pids(under: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if proc.name.isdigit() and cmd and Path(cmd[0].decode()).name == "vvp" and str(under).encode() in b" ".join(cmd):
            pids.append(int(proc.name))
    return pids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] not in ("Z", "X")
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the simulator process through /proc")
def test_sigterm_mid_simulation_removes_temporaries_and_kills_the_simulator(tmp_path: Path, icarus: str) -> None:
    """A real ``axhw multipliers import`` process, sent SIGTERM while its simulation runs (spin4 never ends)."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "AXHW_MULTIPLIER_LIBRARY": str(tmp_path / "lib"),
           "AXHW_RTL_REGISTRY": str(tmp_path / "registry.json")}
    proc = subprocess.Popen([sys.executable, "-m", "axhw.apps.cli", "multipliers", "import", str(CIRCUITS / "spin4.v"),
                             "--top", "spin4", "--bits", "4", "--unsigned"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    vvp: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not vvp and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            vvp = _vvp_pids(tmp)
        assert vvp, f"no simulation started: {proc.poll()} {proc.stderr.read() if proc.poll() is not None else ''}"
        assert list(tmp.glob("axhw-import-*"))  # the simulation's folder exists now
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 143, err
        assert err.strip().endswith("terminated by SIGTERM; nothing imported, temporary files removed"), err
        assert not [p.name for p in tmp.iterdir() if p.name.startswith("axhw-")]
        assert not [pid for pid in vvp if _alive(pid)]
        assert not (tmp_path / "lib").exists() or not list((tmp_path / "lib").iterdir())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in vvp:  # started by this test (through axhw); never left running, whatever the outcome
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
