"""Network.save / Network.load keep residual branch scales and bias-free layers.

A saved file must describe the same function: the residual scales (one per
layer, None for a plain layer) change what the network computes, and the
bias-free layers decide whether ``to_torch`` gives a Linear a bias.
"""

import numpy as np
import pytest

import loggrad as lg
from loggrad.network import Network


def residual_net():
    # input and output projections plain, three square residual layers with different scales,
    # then bias-free layers 0 and 3 (as from_torch makes them from Linear(..., bias=False))
    net = Network.build([3, 4, 4, 4, 4, 2], activation=["tanh", "relu", "tanh", "sigmoid", "identity"],
                        init="lecun_normal", bias_init={"name": "normal", "std": 0.3}, seed=7,
                        residual=[None, 0.5, -0.25, 1.0, None])
    p = np.array(net.params)
    w = np.asarray(net.widths)
    starts = np.concatenate([[0], np.cumsum(w[1:] * (w[:-1] + 1))[:-1]])
    for l in (0, 3):  # a bias-free layer's bias is zero
        b0 = starts[l] + w[l + 1] * w[l]
        p[b0 : b0 + w[l + 1]] = 0.0
    return Network._restore(net.widths, net.activations, p, bias_free=[0, 3], residual=net.residual)


def test_round_trip_keeps_residual_scales_params_and_bias_free(tmp_path):
    net = residual_net()
    assert net.residual == [None, 0.5, -0.25, 1.0, None] and net._bias_free == frozenset({0, 3})
    net.save(tmp_path / "res.npz")
    back = Network.load(tmp_path / "res.npz")
    assert back.residual == net.residual
    assert back.is_residual
    assert back.widths == net.widths and back.activations == net.activations
    assert np.array_equal(np.asarray(back.params).view(np.int64), np.asarray(net.params).view(np.int64))
    assert back._bias_free == net._bias_free
    # the same function: the passes agree bitwise
    x = np.random.default_rng(0).standard_normal((5, 3))
    y = np.random.default_rng(1).standard_normal((5, 2))
    g, h = net.backward(x, y, loss="mse"), back.backward(x, y, loss="mse")
    assert np.array_equal(g.params.mantissa, h.params.mantissa)
    assert np.array_equal(g.params.exponent, h.params.exponent)


def test_round_trip_of_a_built_residual_chain(tmp_path):
    net = Network.build([6] * 41, activation="tanh", init="xavier_normal", seed=3, residual=1 / np.sqrt(40))
    lg.Network.save(net, tmp_path / "chain")
    back = lg.Network.load(tmp_path / "chain")
    assert back.residual == net.residual == [1 / np.sqrt(40)] * 40
    assert np.array_equal(np.asarray(back.params), np.asarray(net.params))
    x = np.random.default_rng(2).standard_normal((2, 6))
    want = np.asarray(net.forward(x, precision="float64"))
    assert np.array_equal(np.asarray(back.forward(x, precision="float64")), want)


def test_plain_network_stays_plain(tmp_path):
    net = Network.build([3, 5, 2], activation="tanh", seed=1)
    net.save(tmp_path / "plain.npz")
    back = Network.load(tmp_path / "plain.npz")
    assert back.residual == [None, None] and not back.is_residual
    assert back._bias_free == frozenset()


def test_torch_round_trip_through_a_file(tmp_path):
    torch = pytest.importorskip("torch")
    from loggrad.torch import Residual

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), torch.nn.Tanh(),
                                Residual(torch.nn.Linear(4, 4), torch.nn.Tanh(), scale=0.3),
                                torch.nn.Linear(4, 2)).double()
    net = Network.from_torch(model)
    net.save(tmp_path / "t.npz")
    back = Network.load(tmp_path / "t.npz")
    assert back.residual == [None, 0.3, None]
    assert back._bias_free == frozenset({0})
    x = torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(np.asarray(back.forward(x.numpy(), precision="float64")), want, rtol=1e-13, atol=0)
