"""Cost of a gradient-health report against one extended backward pass of the same network.

    python -m pytest benchmarks/test_bench_report.py --benchmark-enable

Target: a report (with theory) costs at most 2.5x one backward pass. The two
share a benchmark group; the ratio is read from the group (benchmarks/ratios.py
or the table pytest-benchmark prints), never asserted as a time. Each benchmark
still checks its result.
"""

import numpy as np
import pytest

import loggrad as lg
from loggrad.report import report

# (depth, width, batch): the 3,000 x 64 x 64, and a narrow deep chain
SHAPES = ((3000, 64, 64), (3000, 8, 4))


@pytest.fixture(scope="module", params=SHAPES, ids=[f"d{d}-w{w}-b{b}" for d, w, b in SHAPES])
def problem(request):
    d, w, b = request.param
    net = lg.Network.build([w] * (d + 1), activation="tanh", init="lecun_normal", seed=0)
    rng = np.random.default_rng(0)
    return request.param, net, rng.standard_normal((b, w)), np.zeros((b, w))


@pytest.mark.parametrize("what", ["backward", "report", "report_no_theory"])
def test_report_cost(benchmark, problem, what):
    shape, net, x, y = problem
    benchmark.group = "report d{}-w{}-b{}".format(*shape)
    benchmark.extra_info.update(depth=shape[0], width=shape[1], batch=shape[2], what=what)
    if what == "backward":
        g = benchmark(net.backward, x, y, input_grad=False)
        assert np.all(np.isfinite(g.params.log10()))
    else:
        rep = benchmark(report, net, x, y, theory=what == "report")
        assert rep.depth == shape[0] and np.all(np.isfinite(rep.delta_norm))
