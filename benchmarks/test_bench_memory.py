"""Peak memory of one backward pass (measured in a fresh process) against the minimum:
weights + gradients + stored activations and activation derivatives. Recorded in
extra_info for ratios.py. Linux only (VmHWM, reset through /proc/self/clear_refs)."""

import pytest

import loggrad as lg
from baselines import Config
from loggrad.bench import pass_memory

CASES = [Config(1000, 32, 64, "tanh"), Config(100, 256, 64, "tanh"), Config(10000, 32, 1, "tanh")]


@pytest.mark.parametrize("engine", ["loggrad-extended", "loggrad-float64"])
@pytest.mark.parametrize("cfg", CASES, ids=[c.label for c in CASES])
def test_peak_memory(benchmark, cfg, engine):
    peak = benchmark.pedantic(pass_memory, args=(cfg, engine), rounds=1, iterations=1)
    if peak is None:
        pytest.skip("peak memory needs Linux /proc/self/clear_refs")
    minimum = cfg.min_bytes(engine == "loggrad-extended")
    # The pass must at least hold its gradients and stored activations.
    assert peak >= minimum - 8 * cfg.depth * cfg.width * (cfg.width + 1), (peak, minimum)
    benchmark.group = f"memory {cfg.label}"
    benchmark.extra_info.update(engine=engine, depth=cfg.depth, width=cfg.width, batch=cfg.batch,
                                activation=cfg.activation, threads=lg._core.num_threads(),
                                flops=cfg.flops, peak_bytes=peak, min_bytes=minimum, kind="memory")
