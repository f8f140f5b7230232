"""bench/harness.py: the pure logic of the benchmark harness (no real timing)."""

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

_PATH = Path(__file__).resolve().parents[1] / "bench" / "harness.py"
_spec = importlib.util.spec_from_file_location("bench_harness", _PATH)
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)


def test_every_variant_runs_once_per_round_in_shuffled_orders():
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abcde"}
    log: list[list[str]] = []
    times = harness.interleaved_times(fns, rounds=40, seed=3, warmup=2, order_log=log)
    assert calls[:10] == list("abcde") * 2  # warm-up: every variant, untimed
    timed = calls[10:]
    assert len(log) == 40 and all(sorted(order) == list("abcde") for order in log)
    assert timed == [name for order in log for name in order]  # ran exactly in the logged orders
    assert len({tuple(order) for order in log}) > 10  # shuffled, not one fixed order
    assert {order[0] for order in log} == set("abcde")  # every variant gets to go first
    assert all(len(ts) == 40 for ts in times.values())
    # the same seed repeats the same orders
    log2: list[list[str]] = []
    harness.interleaved_times(fns, rounds=40, seed=3, warmup=0, order_log=log2)
    assert log2 == log


def test_per_round_ratios_cancel_drifting_load():
    """A fake clock: each call costs its variant's work times the load of its round (1x or 5x, drifting)."""
    clock = {"now": 0.0, "calls": 0}
    cost = {"fast": 1.0, "slow": 3.0}
    load = [1.0, 1.0, 5.0, 5.0, 1.0] * 4

    def run(name: str) -> None:
        clock["now"] += cost[name] * load[clock["calls"] // len(cost)]
        clock["calls"] += 1

    fns = {name: (lambda name=name: run(name)) for name in cost}
    times = harness.interleaved_times(fns, rounds=len(load), warmup=0, clock=lambda: clock["now"])
    s = harness.summarize(times, [("slow", "fast")])
    r = s["ratios"]["slow_over_fast"]
    assert s["ratio_medians"] == {"slow_over_fast": pytest.approx(3.0)}
    assert r["min"] == pytest.approx(3.0) and r["max"] == pytest.approx(3.0)  # load cancels in every round
    assert set(s["seconds_median"]) == {"fast", "slow"}
    assert set(s["seconds_spread"]["slow"]) == {"median", "min", "p25", "p75", "max"}
    assert s["seconds_spread"]["slow"]["min"] == pytest.approx(3.0)
    assert s["seconds_spread"]["slow"]["max"] == pytest.approx(15.0)


def test_summarize_ratio_spread_from_given_times():
    times = {"a": [2.0, 4.0, 9.0, 1.0], "b": [1.0, 1.0, 3.0, 1.0]}
    s = harness.summarize(times, [("a", "b"), ("b", "a")])
    ratios = s["ratios"]["a_over_b"]
    assert ratios["median"] == pytest.approx(2.5)  # per-round ratios 2, 4, 3, 1
    assert ratios["min"] == 1.0 and ratios["max"] == 4.0
    assert ratios["p25"] <= ratios["median"] <= ratios["p75"]
    assert s["ratio_medians"]["a_over_b"] == pytest.approx(2.5)
    assert s["seconds_median"] == {"a": pytest.approx(3.0), "b": pytest.approx(1.0)}
    assert harness.spread([7.0]) == {"median": 7.0, "min": 7.0, "p25": 7.0, "p75": 7.0, "max": 7.0}


def test_bad_arguments():
    with pytest.raises(ValueError, match="rounds"):
        harness.interleaved_times({"a": lambda: None}, rounds=0)
    with pytest.raises(ValueError, match="no variants"):
        harness.interleaved_times({}, rounds=3)
    with pytest.raises(ValueError):
        harness.spread([])
    with pytest.raises(ValueError):  # mismatched round counts are a bug, not a ratio
        harness.summarize({"a": [1.0, 2.0], "b": [1.0]}, [("a", "b")])


def test_header_records_threads_load_versions_and_is_json():
    before = os.getloadavg()
    h = harness.header("demo", before, (9.0, 8.0, 7.0), allocator_tuned=True)
    assert h["benchmark"] == "demo" and "shuffled" in h["method"]
    m = h["machine"]
    assert m["threads"] == torch.get_num_threads()
    assert m["torch"] == torch.__version__
    assert m["loadavg_before"] == list(before) and m["loadavg_after"] == [9.0, 8.0, 7.0]
    assert m["cpus"] == os.cpu_count() and m["platform"] and m["python"]
    assert m["allocator_tuned"] is True
    assert len(harness.header("x", before)["machine"]["loadavg_after"]) == 3  # defaults to now
    json.dumps(h)


def test_benchmarks_use_the_harness():
    bench = _PATH.parent
    for script in ("bench_matmul.py", "bench_sram.py", "bench_train.py", "bench_reproducible.py",
                   "bench_bitslice.py"):
        text = (bench / script).read_text()
        assert "from harness import" in text and "interleaved_times(" in text and "header(" in text, script
