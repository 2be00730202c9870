"""Requests too big for memory fail before any work; building draws straight into one block."""

import tracemalloc

import numpy as np
import pytest

import loggrad as lg
import loggrad.init as lgi
import loggrad.network as lgn
from loggrad.__main__ import main


@pytest.fixture
def no_draws(monkeypatch):
    """Fail the test if any initializer draws."""

    def boom(self, s, gen):
        raise AssertionError(f"drew a {s} weight before checking the memory")

    monkeypatch.setattr(lgi.Initializer, "_make", boom)


def test_build_too_big_raises_before_drawing(no_draws, monkeypatch):
    monkeypatch.setattr(lgn, "_available_bytes", lambda: 1 << 30)
    with pytest.raises(MemoryError, match=r"needs 2\.0 GiB .* only 1\.0 GiB"):
        lg.Network.build([8192, 8191, 8192, 8191, 8192])  # 268,468,224 values: 2.0 GiB


def test_build_240_gb_raises_before_drawing(no_draws):
    need = 8 * 30000 * 1000 * 1001
    avail = lgn._available_bytes()
    if avail is None or avail >= need:
        pytest.skip("this machine could hold 240 GB of parameters")
    with pytest.raises(MemoryError, match="parameter block"):
        lg.Network.build([1000] * 30001)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"init": "normal", "bias_init": "normal", "gain": 1.7},
        {"init": "orthogonal", "activation": "relu"},
        {"init": ["he_uniform", "xavier_normal", "truncated_normal"], "bias_init": ["zeros", "uniform", 0.25]},
        {"init": lambda shape, rng: rng.standard_normal(shape) * 0.1, "bias_init": "ones"},
        {"init": "identity", "seed": np.random.SeedSequence(4)},
    ],
)
def test_build_draws_the_same_bits_as_init_layers(kw):
    kw = dict(kw)
    act = kw.pop("activation", "tanh")
    seed = kw.pop("seed", 11)
    widths = [7, 9, 4, 9]
    ws, bs = lgi.init_layers(widths, seed=seed, **kw)
    ref = lg.Network(ws, bs, act)
    net = lg.Network.build(widths, act, seed=seed, **kw)
    assert net.params.dtype == np.float64 and net.params.flags.c_contiguous
    np.testing.assert_array_equal(net.params, ref.params)
    for l in range(3):
        np.testing.assert_array_equal(net.weights[l], ws[l])
        np.testing.assert_array_equal(net.biases[l], bs[l])


def test_build_rejects_non_finite_initializer():
    with pytest.raises(ValueError, match="non-finite"):
        lg.Network.build([3, 3], init=lambda s, r: np.full(s, np.nan))


def test_build_peak_memory_is_one_block_plus_a_layer():
    widths = [1000] * 11  # 10 layers, 80 MB of parameters
    block = 8 * 10 * 1000 * 1001
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        net = lg.Network.build(widths, init="normal", seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert net.params.nbytes == block
    # one layer's draw and its temporaries (8 MB each) besides the block; 2x before
    assert peak < block + 4 * 8 * 1000 * 1000, peak / block


def test_cli_checks_sizes_before_listing_widths(capsys, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("built the network")

    monkeypatch.setattr("loggrad.__main__._build", boom)
    tracemalloc.start()
    try:
        rc = main(["report", "--depth", "100000000", "--width", "32", "--plain"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    err = capsys.readouterr().err
    assert rc == 1 and "out of memory" in err and "parameter block" in err
    assert peak < 100 << 20  # a list of 10^8 widths alone is 800 MB
    monkeypatch.setattr(lgn, "_available_bytes", lambda: 1 << 20)
    assert main(["report", "--widths", "300,300,300", "--plain"]) == 1
    assert "parameter block" in capsys.readouterr().err
