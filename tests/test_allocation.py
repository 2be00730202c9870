"""Result and scratch memory: huge-page blocks and the cache of freed ones.

Large blocks (results of a pass, stored activations) that are freed are kept
for the next pass of the same size: up to 512 MiB in all, or, for a pass
larger than that, up to a quarter of physical memory, given back as soon as a
pass of another shape misses. These tests check that a reused block never shows
through in a result and that the cache stays bounded.
"""

import os
import sys

import numpy as np
import pytest

import loggrad as lg
from loggrad import _core

CAP = 512 * 2**20


def same(a, b):
    return np.array_equal(a.mantissa, b.mantissa) and np.array_equal(a.exponent, b.exponent)


def net_of(depth, width, act="tanh", seed=0):
    rng = np.random.default_rng(seed)
    ws = rng.standard_normal((depth, width, width)) / np.sqrt(width)
    return lg.Network(ws, [rng.standard_normal(width) * 0.1 for _ in range(depth)], act), rng


@pytest.mark.parametrize("precision", lg.PRECISIONS)
def test_results_alive_are_never_reused_and_reused_memory_never_shows(precision):
    net, rng = net_of(300, 32)  # gradients of 2.5 MiB (extended: 2 planes): large blocks
    x, y = rng.standard_normal((4, 32)), rng.standard_normal((4, 32))
    g1 = net.backward(x, y, precision=precision)
    keep = np.array(g1.params, copy=True) if precision == "float64" else g1.params.copy()
    g2 = net.backward(2 * x, y, precision=precision)  # g1 is alive: its blocks are not handed out
    if precision == "float64":
        assert np.array_equal(g1.params, keep)
        assert not np.array_equal(g2.params, keep)
    else:
        assert same(g1.params, keep) and not same(g2.params, keep)
    del g1, g2
    # fresh blocks or reused ones: every value is written by the pass
    for layers in (None, [0, 299], []):
        g3 = net.backward(x, y, precision=precision, layers=layers)
        ref = net.backward(x, y, precision=precision, layers=layers)
        if precision == "float64":
            assert np.array_equal(g3.params, ref.params)
        else:
            assert same(g3.params, ref.params)


def test_the_cache_is_bounded_and_can_be_released():
    _core.release_memory()
    assert _core.cached_memory_bytes() == 0
    for depth in (100, 200, 400, 800, 1600, 3200):  # a different size each time
        net, rng = net_of(depth, 32)
        net.backward(rng.standard_normal((2, 32)), loss="sum")
        assert _core.cached_memory_bytes() <= CAP
    if sys.platform.startswith("linux") and os.environ.get("LOGGRAD_SANITIZED") != "1":
        assert _core.cached_memory_bytes() > 0  # blocks were kept (not under AddressSanitizer)
    _core.release_memory()
    assert _core.cached_memory_bytes() == 0


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.environ.get("LOGGRAD_SANITIZED") == "1",
                    reason="blocks are kept on Linux, and not under AddressSanitizer")
@pytest.mark.parametrize("precision", lg.PRECISIONS)
def test_mid_size_blocks_are_kept_and_reused_memory_never_shows(precision):
    # 1,000 x 8 x 1: gradient planes of 1000 * 72 * 8 bytes = 562 KiB, below the 1 MiB of the
    # huge-page blocks; such blocks are kept too (malloc mapped them afresh on every pass).
    net, rng = net_of(1000, 8)
    x, y = rng.standard_normal((1, 8)), rng.standard_normal((1, 8))
    _core.release_memory()
    g1 = net.backward(x, y, precision=precision)
    keep = np.array(g1.params, copy=True) if precision == "float64" else g1.params.copy()
    del g1
    kept = _core.cached_memory_bytes()
    assert kept >= 1000 * 72 * 8  # at least the gradient's block(s)
    g2 = net.backward(2 * x, y, precision=precision)  # reuses them: every value is written again
    g3 = net.backward(x, y, precision=precision)
    if precision == "float64":
        assert np.array_equal(g3.params, keep) and not np.array_equal(g2.params, keep)
    else:
        assert same(g3.params, keep) and not same(g2.params, keep)
    del g2, g3
    both = _core.cached_memory_bytes()  # two passes' blocks (g2 and g3 were alive together)
    assert both >= kept
    del keep
    net.backward(x, y, precision=precision)
    assert _core.cached_memory_bytes() == both  # blocks handed out again and kept again, none new
    _core.release_memory()
    assert _core.cached_memory_bytes() == 0


def _available_bytes():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.environ.get("LOGGRAD_SANITIZED") == "1",
                    reason="blocks are kept on Linux, and not under AddressSanitizer")
@pytest.mark.skipif(_available_bytes() < 6 * 2**30, reason="needs 6 GiB of available memory")
def test_a_pass_beyond_512_mib_is_kept_for_its_shape_and_given_back_for_another():
    _core.release_memory()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 512))
    net = lg.Network.build([512] * 141, activation="tanh", seed=1)  # extended gradient alone: 589 MB
    ref = net.backward(x, loss="sum")
    g = net.backward(x, loss="sum")
    assert same(g.params, ref.params)
    del g
    kept = _core.cached_memory_bytes()
    assert kept > CAP  # the pass's blocks are kept beyond 512 MiB
    g = net.backward(x, loss="sum")  # the same shape: served from what was kept
    assert same(g.params, ref.params)
    assert _core.cached_memory_bytes() < kept
    del g, ref
    other = lg.Network.build([512] * 121, activation="tanh", seed=2)  # another shape: every block misses
    other.backward(x, loss="sum")
    after = _core.cached_memory_bytes()
    assert CAP < after < kept  # the first shape's blocks were given back, not kept beside the second's
    _core.release_memory()
    assert _core.cached_memory_bytes() == 0
