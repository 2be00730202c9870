"""Costs of the edge work, as ratios within one group:

- Network.build drawing into one block against the former way (init_layers, then
  Network() concatenating the lists): time; peak memory in extra_info;
- gelu on [-10, 0.5] (tabled Phi, phi) against gelu on [0.5, 3] (libm erfc) on the extended
  path, and the extended e^z beyond +-700 (elu') against within it;
- LogArray addition against float64 numpy addition.

    python -m pytest benchmarks/test_bench_edges.py --benchmark-enable
"""

import tracemalloc

import numpy as np
import pytest

import loggrad as lg
from loggrad.init import init_layers

WIDTHS = [256] * 41  # 40 layers, 21 MB of parameters


def _traced_peak(fn):
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("way", ["build-into-block", "init_layers+Network"])
def test_build(benchmark, way):
    if way == "build-into-block":
        def run():
            return lg.Network.build(WIDTHS, init="normal", seed=0)
    else:
        def run():
            ws, bs = init_layers(WIDTHS, init="normal", seed=0)
            return lg.Network(ws, bs, "tanh")
    net = benchmark(run)
    np.testing.assert_array_equal(net.params, lg.Network.build(WIDTHS, init="normal", seed=0).params)
    benchmark.group = "build 256x40"
    benchmark.extra_info.update(peak_over_block=_traced_peak(run) / net.params.nbytes)


UNIT = {act: lg.Network([np.array([[1.0]])], None, act) for act in ("gelu", "elu")}
ZS = {
    "gelu [-10,0.5] table": ("gelu", np.linspace(-10, 0.5, 20000)),
    "gelu [0.5,3] erfc": ("gelu", np.linspace(0.5, 3, 20000)),
    "exp beyond 700 (elu')": ("elu", -np.geomspace(701, 7e17, 20000)),
    "exp within 700 (elu')": ("elu", -np.linspace(1, 700, 20000)),
}


@pytest.mark.parametrize("case", list(ZS))
def test_kernels(benchmark, case):
    act, z = ZS[case]
    x = z.reshape(-1, 1)
    g = benchmark(UNIT[act].backward, x, None, loss="sum")
    assert g.input.shape == x.shape
    benchmark.group = "gelu kernels" if act == "gelu" else "exp kernel"


@pytest.mark.parametrize("engine", ["LogArray", "numpy float64"])
def test_add(benchmark, engine):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(10**6), rng.standard_normal(10**6)
    a, b = (lg.LogArray(x), lg.LogArray(y)) if engine == "LogArray" else (x, y)
    out = benchmark(lambda: a + b)
    np.testing.assert_array_equal(np.asarray(out), x + y)
    benchmark.group = "add 10^6"
