"""The hardware-verified noise-model registry: records of passing checks and :func:`coverage`."""

from __future__ import annotations

from pathlib import Path

import pytest

from axhw.rtl.generate import MultiplierConfig
from axhw.rtl.registry import coverage, record, records


def test_coverage_follows_records_and_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "reg.json"
    ok, msg = coverage("K3", 8, path=path)
    assert not ok and "axhw rtl verify --multiplier drum3 --bits 8" in msg and "--sim icarus" in msg
    cfg = MultiplierConfig("drum", 8, 3)
    record(cfg, "icarus", "Icarus 11", 1000, True, 0, path=path)
    assert not coverage("K3", 8, path=path)[0]  # not exhaustive
    record(cfg, "icarus", "Icarus 11", 65536, True, 0, path=path)
    ok, msg = coverage("drum3", 8, path=path)
    assert ok and "icarus" in msg
    record(cfg, "icarus", "Icarus 11", 65536, True, 0, path=path)
    assert len(records(path)) == 1  # one record per config, simulator and code version: the latest run
    monkeypatch.setattr("axhw.arith.verification.model_hash", lambda: "changed")
    ok, msg = coverage("K3", 8, path=path)
    assert not ok and "changed since" in msg
    assert not coverage("exact", 8, path=path)[0]


def test_passing_check_leaves_a_record(icarus: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from axhw.arith.multipliers import DRUM
    from axhw.rtl.verify import check, exhaustive_pairs

    monkeypatch.setenv("AXHW_RTL_REGISTRY", str(tmp_path / "reg.json"))
    cfg = MultiplierConfig("drum", 8, 3)
    assert not check(cfg, icarus, model=DRUM(4, 8)).ok  # a mutated reference certifies nothing
    assert not records()
    assert check(cfg, icarus, exhaustive_pairs(cfg)).ok
    (rec,) = records()
    assert rec["config_id"] == "drum_k3_s8" and rec["exhaustive"] and rec["simulator"] == "icarus"
    assert coverage("K3", 8)[0]


def test_corrupt_registry_is_reported_and_kept_aside_not_silently_reset(tmp_path: Path) -> None:
    from axhw.arith.verification import CorruptRegistryWarning

    path = tmp_path / "reg.json"
    path.write_text('{"records": [{"config_id": "drum_k3_s8", truncated')
    with pytest.warns(CorruptRegistryWarning, match=r"reg\.json is unreadable"):
        assert records(path) == []
    with pytest.warns(CorruptRegistryWarning, match=r"kept as .*reg\.json\.corrupt"):
        record(MultiplierConfig("drum", 8, 3), "icarus", "Icarus 11", 65536, True, 0, path=path)
    assert (tmp_path / "reg.json.corrupt").read_text().endswith("truncated")  # the old bytes, untouched
    assert [r["config_id"] for r in records(path)] == ["drum_k3_s8"]  # and a readable new registry
