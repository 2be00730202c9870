"""Residual layers' cost: the same chain plain and with every layer residual (s = 1/sqrt(depth)).

relu with He initialisation keeps activations and gradients of order one in both forms, so
the two rows differ by the residual work, not by the values they meet (a plain tanh chain's
activations shrink towards 0 and its gradients underflow, and both change an activation
kernel's cost).

Groups ``residual-<shape>-<precision>``: compare the two rows of a group (the goal is a
residual pass within 1.1x the plain one). Each checks the residual pass against the float64
path's result in range before timing.

    python -m pytest benchmarks/test_bench_residual.py --benchmark-enable --benchmark-columns=median
"""

from __future__ import annotations

import numpy as np
import pytest

import loggrad as lg

SHAPES = [(1000, 4, 1), (1000, 32, 64), (100, 256, 64)]


@pytest.mark.parametrize("precision", ["extended", "float64"])
@pytest.mark.parametrize("kind", ["plain", "residual"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_residual_overhead(benchmark, shape, kind, precision):
    depth, width, batch = shape
    scale = 1 / np.sqrt(depth) if kind == "residual" else None
    net = lg.Network.build([width] * (depth + 1), activation="relu", init="he_normal", seed=0, residual=scale)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((batch, width)), rng.standard_normal((batch, width))
    benchmark.group = f"residual-{depth}x{width}x{batch}-{precision}"
    benchmark.extra_info.update(kind=kind, precision=precision)
    g = net.backward(x, y, precision=precision, input_grad=False)
    if precision == "extended":
        ref = net.backward(x, y, precision="float64", input_grad=False)
        scale_ref = np.abs(ref.params).max()
        np.testing.assert_allclose(g.params.to_numpy(), ref.params, rtol=1e-9, atol=1e-12 * scale_ref)
    benchmark(net.backward, x, y, precision=precision, input_grad=False)
