"""Backward pass of a dense chain (mse loss): loggrad extended and float64 against a numpy
backprop, PyTorch float64 and JAX float64 (jit + lax.scan; compile time in extra_info) in
the same run. Every engine's result is checked against the numpy backprop before timing.

    python -m pytest benchmarks --benchmark-enable --bench-grid=full --benchmark-json=bench.json
    python benchmarks/ratios.py bench.json --plot ratios.png
"""

import os

import pytest

import loggrad as lg
from baselines import ACTIVATIONS, ENGINES, QUICK, Config, check_result, grid, installed, make_problem, \
    make_runner, numpy_runner


# With --benchmark-disable (CI: every benchmark runs once, as a correctness check) the
# quick grid shrinks to the same regimes at a fraction of the work.
SMOKE = ((100, 4, 1), (300, 32, 1), (100, 32, 64), (10, 256, 64), (3, 1024, 256))


def _configs(config):
    if config.getoption("--bench-grid") == "full":
        return grid()
    shapes = SMOKE if config.getoption("benchmark_disable", False) else QUICK
    return [Config(d, w, b, a) for a in ACTIVATIONS for d, w, b in shapes]


def pytest_generate_tests(metafunc):
    if "config" in metafunc.fixturenames:
        cfgs = _configs(metafunc.config)
        metafunc.parametrize("config", cfgs, ids=[c.label for c in cfgs], scope="module")
    if "cfg" in metafunc.fixturenames and metafunc.function.__name__ == "test_thread_scaling":
        cfgs = SCALING[:1] if metafunc.config.getoption("benchmark_disable", False) else SCALING
        metafunc.parametrize("cfg", cfgs, ids=[c.label for c in cfgs])


@pytest.fixture(scope="module")
def problem(config):
    prob = make_problem(config.depth, config.width, config.batch, config.activation)
    ws, bs, x, y = prob
    return prob, numpy_runner(ws, bs, x, y, config.activation)()


def _extra(benchmark, config, engine, threads):
    benchmark.group = config.label
    benchmark.extra_info.update(engine=engine, depth=config.depth, width=config.width, batch=config.batch,
                                activation=config.activation, threads=threads, flops=config.flops)


@pytest.mark.parametrize("engine", ENGINES)
def test_backward(benchmark, config, problem, engine):
    if not installed(engine):
        pytest.skip(f"{engine} not installed")
    prob, ref = problem
    runner, compile_s = make_runner(engine, config, prob, threads=lg._core.num_threads())
    _extra(benchmark, config, engine, lg._core.num_threads())
    if compile_s is not None:
        benchmark.extra_info["compile_s"] = compile_s
    got = benchmark(runner)
    check_result(engine, got, ref, config)


# Thread scaling: the wide configurations on 1 thread and on all cores (loggrad and torch;
# numpy's OpenBLAS and XLA fix their thread counts at start: `loggrad bench --threads 1`).
SCALING = [Config(10, 1024, 256, "tanh"), Config(100, 256, 64, "tanh"), Config(1000, 32, 64, "tanh")]



@pytest.mark.parametrize("threads", sorted({1, os.cpu_count() or 1}))
@pytest.mark.parametrize("engine", ["loggrad-extended", "loggrad-float64", "torch"])
def test_thread_scaling(benchmark, cfg, engine, threads):
    if not installed(engine):
        pytest.skip(f"{engine} not installed")
    prob = make_problem(cfg.depth, cfg.width, cfg.batch, cfg.activation)
    ws, bs, x, y = prob
    ref = numpy_runner(ws, bs, x, y, cfg.activation)()
    before = lg._core.num_threads()
    lg._core.set_num_threads(threads)
    try:
        runner, _ = make_runner(engine, cfg, prob, threads=threads)
        _extra(benchmark, cfg, engine, threads)
        benchmark.group = f"threads {cfg.label}"
        benchmark.extra_info["kind"] = "scaling"
        got = benchmark(runner)
    finally:
        lg._core.set_num_threads(before)
        if engine == "torch":
            import torch

            torch.set_num_threads(before)
    check_result(engine, got, ref, cfg)
