"""The numerics stamp (axhw.common.numerics): which files it covers, that it moves with them and only with
them, that cached measurements and written results carry it, and that the committed results match today's
numerics or are listed in docs/results/STALE.md."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

import axhw
from axhw.common import numerics

REPO = Path(__file__).resolve().parents[2]
PACKAGE = Path(axhw.__file__).resolve().parent


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def test_stamp_is_the_documented_hash_of_the_numerics_sources_only(tmp_path: Path) -> None:
    """A tiny package: the stamp is sha256 over (path, length, bytes with CRLF as LF) of the covered files,
    in path order; command lines and uncovered modules are left out; templates count as _hw/<folder>/."""
    pkg = _tree(tmp_path / "src" / "axhw", {
        "arith/a.py": b"x = 1\r\n", "arith/kernels/k.c": b"int f;\n", "arith/kernels/__main__.py": b"main()\n",
        "apps/cli.py": b"print()\n", "approxann/cli.py": b"print()\n", "common/io.py": b"io\n",
        "arith/__pycache__/a.cpython-311.pyc": b"\0"})
    _tree(tmp_path / "src", {"rtl/t.v.j2": b"module t;\n", "sim/tb.v": b"tb\n", "power/s.ys.j2": b"synth\n"})
    h = hashlib.sha256()
    for rel, data in (("_hw/power/s.ys.j2", b"synth\n"), ("_hw/rtl/t.v.j2", b"module t;\n"),
                      ("arith/a.py", b"x = 1\n"), ("arith/kernels/k.c", b"int f;\n")):
        h.update(f"{rel}\n{len(data)}\n".encode() + data)
    assert [rel for rel, _ in numerics.files(pkg)] == ["_hw/power/s.ys.j2", "_hw/rtl/t.v.j2", "arith/a.py",
                                                        "arith/kernels/k.c"]
    assert numerics.stamp(pkg) == h.hexdigest()[:16]
    assert numerics.describe(pkg) == {"stamp": h.hexdigest()[:16], "files": 4, "axhw_version": axhw.__version__}
    with pytest.raises(ValueError, match="no numerics sources under"):
        numerics.stamp(tmp_path / "src" / "axhw" / "common")  # not a package root: nothing it covers


def test_stamp_moves_with_a_numerics_source_not_with_the_cli_and_is_the_same_in_a_wheel(tmp_path: Path) -> None:
    """A copy of this checkout's sources: same stamp anywhere, another one after any edit of a numerics
    source or template, the same after an edit of apps/cli.py or a CRLF checkout, and in the wheel's layout."""
    real = numerics.stamp(PACKAGE)  # uncached: the files as they are now
    assert numerics.stamp() == numerics._this_package()[0] and len(real) == 16
    co = tmp_path / "co"
    shutil.copytree(PACKAGE, co / "axhw", ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("rtl", "power"):
        shutil.copytree(REPO / folder, co / folder)
    pkg = co / "axhw"
    assert numerics.stamp(pkg) == real

    def edited(rel: str, change: bytes) -> str:
        path = pkg / rel if not rel.startswith("../") else co / rel[3:]
        before = path.read_bytes()
        path.write_bytes(before + change)
        try:
            return numerics.stamp(pkg)
        finally:
            path.write_bytes(before)

    for rel in ("arith/fixedpoint.py", "arith/kernels/lut.c", "power/search/report.py", "../rtl/drum_mul.v.j2",
                "../power/synth.ys.j2", "training/trainer.py"):
        assert edited(rel, b"\n// edit\n") != real, rel
    assert edited("apps/cli.py", b"\n# edit\n") == real
    assert edited("power/cli.py", b"\n# edit\n") == real
    crlf = pkg / "nn" / "layers.py"
    crlf.write_bytes(crlf.read_bytes().replace(b"\n", b"\r\n"))
    assert numerics.stamp(pkg) == real
    (pkg / "_hw").mkdir()  # the wheel: templates at axhw/_hw/<folder>, nothing beside the package
    for folder in ("rtl", "power"):
        shutil.move(co / folder, pkg / "_hw" / folder)
    assert numerics.stamp(pkg) == real


def test_result_cache_keys_include_the_numerics_stamp(tmp_path: Path) -> None:
    from axhw.power.search.targets import ResultCache

    payload = {"checkpoint": "ab" * 32, "mode": "K2", "seed": 0}
    assert ResultCache(tmp_path).numerics == numerics.stamp()
    old, new = ResultCache(tmp_path, numerics="0" * 16), ResultCache(tmp_path, numerics="1" * 16)
    old.put("eval", payload, {"accuracy_mean": 0.5})
    assert old.get("eval", payload) == {"accuracy_mean": 0.5}
    assert new.get("eval", payload) is None and new.path("eval", payload) != old.path("eval", payload)
    saved = json.loads(old.path("eval", payload).read_text())
    assert saved["payload"] == {**payload, "numerics": "0" * 16}


def test_written_power_json_and_metrics_json_carry_the_stamp(tmp_path: Path) -> None:
    from axhw.power.search.report import write_report
    from axhw.training.trainer import TrainConfig, train

    d = {"config": {"dataset": "breast_cancer", "constraint_pp": 2.0, "reference": "own", "bits": 8,
                    "clock_mhz": 100.0, "runs": 5, "n_pairs": 512, "timing": True}, "networks": {}}
    write_report(d, tmp_path / "fresh")
    assert json.loads((tmp_path / "fresh" / "power.json").read_text())["numerics"] == numerics.describe()
    kept = {**d, "numerics": {"stamp": "0" * 16, "files": 1, "axhw_version": "0"}}  # a re-rendered old result
    write_report(kept, tmp_path / "old")
    assert json.loads((tmp_path / "old" / "power.json").read_text())["numerics"] == kept["numerics"]
    metrics = train(TrainConfig(dataset="breast_cancer", method="bp", epochs=1, limit=40), tmp_path / "run",
                    progress=False)
    assert metrics["numerics"] == numerics.describe()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["numerics"]["stamp"] == numerics.stamp()


def test_committed_results_carry_todays_stamp_or_are_listed_as_stale() -> None:
    """Fails when numerics changed under a committed result: regenerate it, or list it in STALE.md."""
    results = REPO / "docs" / "results"
    assert numerics.committed_results_problems(results) == []
    assert numerics.stale_entries(results / "STALE.md")  # today every committed result predates the stamp


def test_committed_results_check_names_every_kind_of_problem(tmp_path: Path) -> None:
    now, old = "a" * 16, "b" * 16

    def result(rel: str, stamp: str | None, name: str = "power.json") -> None:
        body: dict[str, object] = {"config": {}} if stamp is None else {"numerics": {"stamp": stamp}}
        (tmp_path / rel).mkdir(parents=True, exist_ok=True)
        (tmp_path / rel / name).write_text(json.dumps(body))

    result("current", now)
    result("listed", old)
    result("unlisted", old)
    result("unstamped", None)
    result("both", now)
    result("other", old, "fig.json")  # any JSON with a numerics key
    result("plain", None, "rows.json")  # a JSON without one is no stamped result
    (tmp_path / "rows.json").write_text("[1, 2]")
    (tmp_path / "STALE.md").write_text(
        "# Stale\n\nIntro text.\n\n"
        "- `listed/power.json`: old numerics;\n  regenerated by `make power-report`.\n"
        "- `both/power.json`: old; regenerated by `make power-report`.\n"
        "- `gone/power.json`: old; regenerated by `make power-report`.\n"
        "- `unstamped/power.json`: no reason given\n")
    assert numerics.committed_results_problems(tmp_path, now) == [
        "STALE.md lists gone/power.json, which does not exist under " + str(tmp_path) + ": remove the entry",
        "STALE.md's entry of unstamped/power.json says neither why it is stale nor what regenerates it",
        f"both/power.json carries the current numerics stamp {now} but STALE.md lists it: remove its entry",
        f"other/fig.json was produced by numerics {old}, not the current {now}: regenerate it or list it in "
        "STALE.md with the reason",
        f"unlisted/power.json was produced by numerics {old}, not the current {now}: regenerate it or list it "
        "in STALE.md with the reason",
    ]
    assert numerics.stale_entries(tmp_path / "STALE.md")["listed/power.json"] == \
        "old numerics; regenerated by `make power-report`."
