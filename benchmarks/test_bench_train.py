"""A training step against one backward pass, in the same group per size.

    backward  net.backward(x, y, input_grad=False), extended: the pass a step needs
    sgd_step  that pass plus the step (clipping, update, report) in the engine
    fit       one step of fit (one batch per epoch), its bookkeeping included
    update    the engine's step alone, from a gradient already computed

The target (issue 23): sgd_step and a fit step at most 1.25x one backward pass at
3,000 x 64 x 64 and 100 x 256 x 64 (depth x width x batch). Each timed row but the
first carries its median over backward's as extra_info["ratio_to_backward"], printed
at the end of the run. Every step's parameters are checked against the numpy
formulation of the update.

    python -m pytest benchmarks/test_bench_train.py --benchmark-enable
"""

import numpy as np
import pytest

import loggrad as lg
from baselines import record_median
from loggrad import train

SIZES = [(3000, 64, 64), (100, 256, 64)]
# With --benchmark-disable (CI: one call each, as a correctness check) smaller nets.
SMOKE = [(300, 64, 64), (10, 256, 64)]
LR = 1e-6

_medians: dict[tuple[int, int, int], dict[str, float]] = {}


def pytest_generate_tests(metafunc):
    if "size" in metafunc.fixturenames:
        cfg = metafunc.config
        disabled = cfg.getoption("benchmark_disable", False) and not cfg.getoption("benchmark_enable", False)
        sizes = SMOKE if disabled else SIZES
        metafunc.parametrize("size", sizes, ids=[f"{d}x{w}x{b}" for d, w, b in sizes], scope="module")


@pytest.fixture(scope="module")
def problem(size):
    depth, width, batch = size
    net = lg.Network.build([width] * (depth + 1), activation="tanh", seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, width))
    y = 0.1 * rng.standard_normal((batch, width))
    return net, x, y


def _record(benchmark, size, kind):
    depth, width, batch = size
    benchmark.group = f"train {depth}x{width}x{batch}"
    benchmark.extra_info.update(kind=kind, depth=depth, width=width, batch=batch)


def _finish(benchmark, size, kind):
    record_median(benchmark, _medians.setdefault(size, {}), kind, "backward")


def _check_step(net, x, y, step):
    """One more step, its parameters against the numpy formulation of the update."""
    before = net.params.copy()
    g = net.backward(x, y, input_grad=False)
    step()
    want = before - (g.params * LR).to_numpy()
    np.testing.assert_array_equal(net.params.view(np.uint64), want.view(np.uint64))


def test_backward(benchmark, problem, size):
    net, x, y = problem
    _record(benchmark, size, "backward")
    g = benchmark(lambda: net.backward(x, y, input_grad=False))
    assert np.isfinite(float(g.loss.log10())) and g.params.size == net.param_count
    _finish(benchmark, size, "backward")


def test_sgd_step(benchmark, problem, size):
    net, x, y = problem
    _record(benchmark, size, "sgd_step")
    rep = benchmark(lambda: train.sgd_step(net, x, y, LR))
    assert rep.nonzero_updates.sum() > 0
    _finish(benchmark, size, "sgd_step")
    _check_step(net, x, y, lambda: train.sgd_step(net, x, y, LR))


def test_fit_step(benchmark, problem, size):
    net, x, y = problem
    _record(benchmark, size, "fit")
    hist = benchmark(lambda: train.fit(net, x, y, LR, epochs=1, shuffle=False))
    assert len(hist.loss) == 1
    _finish(benchmark, size, "fit")
    _check_step(net, x, y, lambda: train.fit(net, x, y, LR, epochs=1, shuffle=False))


def test_update(benchmark, problem, size):
    net, x, y = problem
    g = net.backward(x, y, input_grad=False)
    bounds = net.layout.offsets
    _record(benchmark, size, "update")
    benchmark(lambda: train._apply(net, g, LR, None, None, bounds))
    _finish(benchmark, size, "update")


def test_ratios_summary(request):
    """Prints sgd_step, fit and update over backward per size (nothing when benchmarks are disabled)."""
    lines = []
    for (d, w, b), row in sorted(_medians.items()):
        if "backward" not in row:
            continue
        parts = [f"{k} {row[k] / row['backward']:.2f}x" for k in ("sgd_step", "fit", "update") if k in row]
        lines.append(f"{d}x{w}x{b}: backward {row['backward'] * 1e3:.1f} ms; " + ", ".join(parts))
    if lines:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("\nsgd_step / backward (medians): " + "; ".join(lines))
