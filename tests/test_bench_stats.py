"""`loggrad bench` times with pytest-benchmark's own statistics (no figures formed by hand)."""

from __future__ import annotations

import statistics

import pytest

pytest.importorskip("pytest_benchmark")
from loggrad import bench  # noqa: E402


def test_time_call_reports_pytest_benchmark_statistics(monkeypatch: pytest.MonkeyPatch) -> None:
    durations = iter([8.0] + [0.5, 0.125, 0.375, 0.25, 0.0625] + [0.0] * 10)  # warm-up first; dyadic: exact sums
    clock = [0.0]
    calls: list[float] = []

    def fn() -> None:
        d = next(durations)
        calls.append(d)
        clock[0] += d

    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    st = bench.time_call(fn, min_time=1.5, max_rounds=5, min_rounds=3)
    ts = calls[1:]
    assert st["rounds"] == 5 == len(ts)
    assert st["min"] == 0.0625 and st["max"] == 0.5
    assert st["median"] == statistics.median(ts)
    assert st["mean"] == pytest.approx(statistics.fmean(ts), rel=1e-15)
    assert st["stddev"] == pytest.approx(statistics.stdev(ts), rel=1e-15)
    assert st["q1"] <= st["median"] <= st["q3"] and st["iqr"] == pytest.approx(st["q3"] - st["q1"])
    assert {"outliers", "ld15iqr", "hd15iqr", "ops", "total"} <= set(st)


def test_fresh_memory_rate_is_the_best_of_its_repeats(monkeypatch: pytest.MonkeyPatch) -> None:
    # first touch, then a rewrite of the same mapping, per repeat; each rate from the best time
    times = iter([0.5, 0.0625, 0.25, 0.125, 1.0, 0.03125])
    filled: list[int] = []

    def timed(fn) -> float:
        fn()  # the write happens
        filled.append(1)
        return next(times)

    monkeypatch.setattr(bench, "_timed", timed)
    r = bench.fresh_memory_rate(nbytes=1 << 20, repeats=3)
    assert len(filled) == 6
    assert r["first_touch"] == (1 << 20) / 0.25 / 1e9
    assert r["mapped"] == (1 << 20) / 0.03125 / 1e9
    monkeypatch.undo()
    real = bench.fresh_memory_rate(nbytes=8 << 20, repeats=1)  # on this machine: finite, positive
    assert all(0 < v < float("inf") for v in real.values())
