"""backward(layers=...) and backward(input_grad=False): only the results asked for, bitwise those of a full pass."""

import numpy as np
import pytest

import loggrad as lg
from loggrad import _core


def same(a, b, precision):
    if precision == "extended":
        return np.array_equal(a.mantissa, b.mantissa) and np.array_equal(a.exponent, b.exponent)
    return np.array_equal(np.asarray(a), np.asarray(b))


def mixed_net(seed=3, depth=40, act="tanh"):
    rng = np.random.default_rng(seed)
    widths = [5] + list(rng.integers(1, 9, depth - 1)) + [3]
    ws = [rng.standard_normal((widths[i + 1], widths[i])) for i in range(depth)]
    return lg.Network(ws, [rng.standard_normal(w) * 0.1 for w in widths[1:]], act), rng


def data(net, rng, loss, batch=4):
    x = rng.standard_normal((batch, net.n_in))
    if loss == "cross_entropy":
        return x, rng.integers(0, net.n_out, batch)
    if loss == "sum":
        return x, None
    return x, rng.standard_normal((batch, net.n_out))


@pytest.mark.parametrize("precision", lg.PRECISIONS)
@pytest.mark.parametrize("loss", lg.LOSSES)
@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid"])
def test_selected_gradients_are_bitwise_those_of_the_full_pass(act, loss, precision):
    net, rng = mixed_net(act=act)
    x, y = data(net, rng, loss)
    full = net.backward(x, y, loss=loss, precision=precision)
    for layers in ([0], [-1], [0, 39], [5, 17, 18, 30], list(range(0, 40, 3)), []):
        for cp in (None, "auto", 7):
            g = net.backward(x, y, loss=loss, precision=precision, checkpoint=cp, layers=layers)
            assert g.layers == tuple(sorted({l % 40 for l in layers}))
            for l in g.layers:
                assert same(g.weights[l], full.weights[l], precision), (layers, cp, l)
                assert same(g.biases[l], full.biases[l], precision), (layers, cp, l)
            for field in ("loss", "output", "input"):
                assert same(getattr(g, field), getattr(full, field), precision), (layers, cp, field)
            # params: the selected layers' blocks, in layer order
            blocks = [np.arange(int(net._w_off[l]), int(net._w_off[l]) + net.weights[l].size + net.biases[l].size)
                      for l in g.layers]
            idx = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int64)
            assert same(g.params, full.params[idx], precision), (layers, cp)


@pytest.mark.parametrize("precision", lg.PRECISIONS)
@pytest.mark.parametrize("loss", lg.LOSSES)
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_without_the_input_gradient_the_rest_is_bitwise_the_full_pass(act, loss, precision):
    net, rng = mixed_net(seed=5, act=act)
    x, y = data(net, rng, loss)
    full = net.backward(x, y, loss=loss, precision=precision)
    assert full.input is not None and np.shape(full.input) == x.shape
    for cp in (None, 7):
        for layers in (None, [0, 21]):
            g = net.backward(x, y, loss=loss, precision=precision, checkpoint=cp, layers=layers, input_grad=False)
            assert g.input is None
            ref = full if layers is None else net.backward(x, y, loss=loss, precision=precision, layers=layers)
            for field in ("loss", "output", "params"):
                assert same(getattr(g, field), getattr(ref, field), precision), (cp, layers, field)
    # one sample given as a vector: the output stays a vector
    y1 = None if y is None else y[0]
    g1 = net.backward(x[0], y1, loss=loss, precision=precision, input_grad=False)
    f1 = net.backward(x[0], y1, loss=loss, precision=precision)
    assert g1.input is None and np.shape(g1.output) == np.shape(f1.output) == (net.n_out,)
    assert same(g1.params, f1.params, precision)


@pytest.mark.parametrize("bad", ["no", 0, 1, None, np.array([True])])
def test_input_grad_must_be_a_bool(bad):
    net, rng = mixed_net(depth=3)
    before = net.params.copy()
    with pytest.raises(TypeError, match="input_grad"):
        net.backward(rng.standard_normal((2, net.n_in)), loss="sum", input_grad=bad)
    assert np.array_equal(net.params, before)


def test_deep_chain_first_layer_gradient_far_below_float64():
    # dL/dW_0 of a 0.5*I chain of 20,000 layers, loss sum: 0.5^19999 * sum_batch x
    net = lg.Network([0.5 * np.eye(4)] * 20000, None, "identity")
    g = net.backward(np.ones((2, 4)), loss="sum", checkpoint="auto", layers=0)
    assert g.params.shape == (4 * 5,)
    np.testing.assert_allclose(g.weights[0].log10(), 19999 * np.log10(0.5) + np.log10(2), rtol=1e-13)
    assert np.all(g.weights[0].sign() == 1)
    assert same(g.weights[0], net.backward(np.ones((2, 4)), loss="sum").weights[0], "extended")


def test_selection_forms_are_equivalent():
    net, rng = mixed_net(depth=12)
    x, y = data(net, rng, "mse")
    want = (0, 3, 11)
    for layers in ([0, 3, 11], [11, 0, 3, 3, -1], (0, -9, -1), np.array([0, 3, 11]), np.array([3, 0, 11], np.uint8)):
        assert net.backward(x, y, layers=layers).layers == want
    assert net.backward(x, y, layers=slice(None, None, 4)).layers == (0, 4, 8)
    assert net.backward(x, y, layers=range(10, 12)).layers == (10, 11)
    assert net.backward(x, y, layers=np.int64(-2)).layers == (10,)
    assert net.backward(x, y).layers is None
    empty = net.backward(x, y, layers=[])
    assert empty.layers == () and empty.params.size == 0
    assert same(empty.input, net.backward(x, y).input, "extended")


def test_unselected_layers_raise_key_error_naming_the_layer():
    net, rng = mixed_net(depth=6)
    x, y = data(net, rng, "mse")
    g = net.backward(x, y, layers=[1, 4])
    assert len(g.weights) == len(g.biases) == 6
    with pytest.raises(KeyError, match="weight gradient of layer 0 was not computed"):
        g.weights[0]
    with pytest.raises(KeyError, match="bias gradient of layer 5 was not computed"):
        g.biases[-1]
    with pytest.raises(KeyError):
        list(g.weights)  # iteration does not silently stop at the first missing layer
    with pytest.raises(IndexError, match="layer 6 out of range for 6 layers"):
        g.weights[6]
    assert g.weights[4].shape == net.weights[4].shape


@pytest.mark.parametrize("bad, exc, msg", [
    (6, IndexError, "layer 6 out of range for 6 layers"),
    ([0, -7], IndexError, "layer -7 out of range for 6 layers"),
    (1.0, TypeError, "layers must be None, a layer index"),
    ([0.0, 1.0], TypeError, "integer layer indices"),
    ([[0, 1]], TypeError, "integer layer indices"),
    (True, TypeError, "got a bool"),
    ("0", TypeError, "got str"),
    ([True, False], TypeError, "integer layer indices"),
])
def test_bad_selections_are_refused_and_change_nothing(bad, exc, msg):
    net, rng = mixed_net(depth=6)
    before = net.params.copy()
    x, y = data(net, rng, "mse")
    with pytest.raises(exc, match=msg):
        net.backward(x, y, layers=bad)
    with pytest.raises(exc, match=msg):
        net.pass_bytes(4, layers=bad)
    assert np.array_equal(net.params, before)


def test_engine_refuses_unordered_or_out_of_range_layers():
    net, rng = mixed_net(depth=6)
    x = rng.standard_normal((2, net.n_in))
    for bad, msg in [([3, 1], "strictly increasing"), ([2, 2], "strictly increasing"), ([6], "out of range"),
                     ([-1], "out of range")]:
        with pytest.raises(ValueError, match=msg):
            _core.backward(net._arch, net.params, x, "sum", layers=np.array(bad, dtype=np.int64))


def test_pass_bytes_counts_only_the_selected_gradients():
    net = lg.Network([np.eye(64)] * 1000, None, "identity")
    full, first = net.pass_bytes(4, checkpoint="auto"), net.pass_bytes(4, checkpoint="auto", layers=0)
    assert full - first == 999 * 64 * 65 * 16
    assert net.pass_bytes(4, precision="float64", layers=[]) + 1000 * 64 * 65 * 8 == net.pass_bytes(4, "float64")
    # without dL/dx: 4 rows of 64 inputs fewer
    assert net.pass_bytes(4, input_grad=False) + 4 * 64 * 16 == net.pass_bytes(4)
    assert net.pass_bytes(4, "float64", input_grad=False) + 4 * 64 * 8 == net.pass_bytes(4, "float64")
