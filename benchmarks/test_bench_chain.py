"""Backward pass of a dense chain: loggrad extended and float64 against a numpy
backprop (and PyTorch float64 when installed), in the same run.

Run: python -m pytest benchmarks --benchmark-enable --benchmark-group-by=param
Each benchmarked result is also checked against the numpy baseline.
"""

import numpy as np
import pytest

import loggrad as lg
from baselines import make_problem, numpy_backward, torch_backward

CONFIGS = [
    # (depth, width, batch)
    (1000, 4, 1),
    (1000, 32, 1),
    (1000, 32, 64),
    (100, 256, 64),
    (10, 1024, 256),
]
IDS = [f"d{d}-w{w}-b{b}" for d, w, b in CONFIGS]


@pytest.fixture(scope="module", params=CONFIGS, ids=IDS)
def problem(request):
    depth, width, batch = request.param
    ws, bs, x, y = make_problem(depth, width, batch, "tanh")
    ref_loss, ref_dw, _ = numpy_backward(ws, bs, x, y, "tanh")
    return ws, bs, x, y, ref_loss, ref_dw[0]


@pytest.mark.parametrize("engine", ["loggrad-extended", "loggrad-float64", "numpy", "torch"])
def test_backward(benchmark, problem, engine):
    ws, bs, x, y, ref_loss, ref_dw0 = problem
    benchmark.group = f"backward {len(ws)}x{ws[0].shape[0]} batch {x.shape[0]}"
    if engine.startswith("loggrad"):
        net = lg.Network(ws, bs, "tanh")
        precision = engine.split("-")[1]
        g = benchmark(net.backward, x, y, "mse", precision)
        loss, dw0 = float(np.asarray(g.loss)), np.asarray(g.weights[0])
    elif engine == "numpy":
        loss, dws, _ = benchmark(numpy_backward, ws, bs, x, y, "tanh")
        dw0 = dws[0]
    else:
        run = torch_backward(ws, bs, "tanh")
        if run is None:
            pytest.skip("torch not installed")
        loss, dw0 = benchmark(run, x, y)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-9)
    np.testing.assert_allclose(dw0, ref_dw0, rtol=1e-6, atol=1e-12 * np.abs(ref_dw0).max())
