"""Settings that depend on which pytest plugins are installed.

Benchmarks run once each, untimed, as correctness checks unless
`--benchmark-enable` is given. `--benchmark-disable` cannot sit in
pyproject's `addopts`: without pytest-benchmark installed, pytest would stop
with "unrecognized arguments" before running a single test. Without the
plugin, benchmarks/ (whose tests need its `benchmark` fixture) is not
collected and the tests run alone.
"""

from __future__ import annotations

import importlib.util

import pytest

HAVE_BENCHMARK = importlib.util.find_spec("pytest_benchmark") is not None

collect_ignore = [] if HAVE_BENCHMARK else ["benchmarks"]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # pytest-benchmark reads this option in its own pytest_configure (trylast),
    # so setting it here is the same as passing --benchmark-disable; an explicit
    # --benchmark-enable still wins. The option exists only with the plugin
    # (and not under -p no:benchmark).
    if hasattr(config.option, "benchmark_disable"):
        config.option.benchmark_disable = True


def pytest_report_header(config: pytest.Config) -> str | None:
    if HAVE_BENCHMARK:
        return None
    return "pytest-benchmark not installed: benchmarks/ not collected"
