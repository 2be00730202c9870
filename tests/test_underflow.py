"""Underflow past loggrad's exponent range (|log2| < 2^60) behaves as IEEE
underflow does at float64's: the value becomes an exact zero, the pass goes on,
and the result says how many values were flushed (``Gradients.flushed``,
``forward(return_flushed=True)``, one RuntimeWarning per call).
``on_underflow="raise"`` raises ExponentRangeError instead; overflow past the
range always raises.

References: mpmath (unbounded exponent) for the values, and loggrad's own
float64 path where everything that matters is in float64 range (there the
same values underflow to 0 too).
"""

from __future__ import annotations

import warnings

import mpmath
import numpy as np
import pytest

import loggrad as lg
from loggrad import _core

mpmath.mp.prec = 120
LIMIT = mpmath.mpf(2) ** 60  # |log2| bound of the extended range


def quiet(fn, *args, **kwargs):
    """Calls fn and returns (result, the RuntimeWarnings it raised)."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = fn(*args, **kwargs)
    return res, [w for w in rec if issubclass(w.category, RuntimeWarning)]


def mp_gelu(z):
    return z * mpmath.ncdf(z)


def mp_gelu_d(z):
    return mpmath.ncdf(z) + z * mpmath.npdf(z)


def mp_sigmoid(z):
    return 1 / (1 + mpmath.exp(-z))


def close(value: float, ref, rel: float = 4e-16) -> bool:
    ref = mpmath.mpf(ref)
    if ref == 0:
        return value == 0
    return abs(mpmath.mpf(value) - ref) <= rel * abs(ref)


# -- the gelu unit at z = -2e9 with an outgoing weight of 0 ---------------------------


def gelu_net() -> lg.Network:
    # z = [-2e9, 1]; gelu(-2e9) ~ -e^-2e18, below 2^-2^60; the output reads only unit 1
    return lg.Network([np.array([[-2e9], [1.0]]), np.array([[0.0, 1.0]])], None, ["gelu", "identity"])


def test_gelu_forward_flushes_and_agrees_with_float64_and_mpmath():
    net = gelu_net()
    x = np.ones((1, 1))
    with pytest.warns(RuntimeWarning, match=r"^1 value fell below .* first in layer 0 activations"):
        out, flushed = net.forward(x, return_flushed=True)
    assert flushed == 1
    f64 = net.forward(x, precision="float64")
    assert float(out.to_numpy()[0, 0]) == f64[0, 0]  # the float64 path's gelu(-2e9) is -0.0 too
    assert close(float(out.to_numpy()[0, 0]), mp_gelu(mpmath.mpf(1)))
    # the plain call warns as well, and says nothing when nothing is flushed
    _, w = quiet(net.forward, x)
    assert len(w) == 1
    _, w = quiet(net.forward, -x)  # z = [2e9, -1]: gelu(2e9) = 2e9, nothing below the range
    assert w == []


def test_gelu_backward_flushes_value_and_derivative():
    net = gelu_net()
    x = np.ones((1, 1))
    (g, w) = quiet(net.backward, x, loss="sum")
    assert g.flushed == 2  # gelu(-2e9) and gelu'(-2e9)
    assert len(w) == 1 and "2 values" in str(w[0].message) and "layer 0 activations" in str(w[0].message)
    g64 = net.backward(x, loss="sum", precision="float64")
    one = mpmath.mpf(1)
    # dW1 = a_1 = [gelu(-2e9), gelu(1)]; dW0 = [W1[0,0] gelu'(-2e9), gelu'(1)] x
    dw1 = g.weights[1].to_numpy()
    assert dw1[0, 0] == 0.0 and g64.weights[1][0, 0] == 0.0
    assert close(dw1[0, 1], mp_gelu(one))
    dw0 = g.weights[0].to_numpy()
    assert dw0[0, 0] == 0.0 and g64.weights[0][0, 0] == 0.0
    assert close(dw0[1, 0], mp_gelu_d(one), 1e-15)
    np.testing.assert_allclose(g.params.to_numpy(), g64.params, rtol=1e-14, atol=0)
    assert g64.flushed == 0


@pytest.mark.parametrize("checkpoint", [1, "auto"])
def test_gelu_counts_with_checkpointing(checkpoint):
    # with checkpointing the forward pass stores no derivatives: gelu(-2e9) is counted
    # there, gelu'(-2e9) when the segment is recomputed, each once
    net = gelu_net()
    x = np.ones((1, 1))
    g0, w0 = quiet(net.backward, x, loss="sum")
    g, w = quiet(net.backward, x, loss="sum", checkpoint=checkpoint)
    assert g.flushed == g0.flushed == 2
    assert [str(m.message) for m in w] == [str(m.message) for m in w0]
    np.testing.assert_array_equal(g.params.mantissa, g0.params.mantissa)
    np.testing.assert_array_equal(g.params.exponent, g0.params.exponent)


def test_gelu_raise_keeps_the_old_error():
    net = gelu_net()
    x = np.ones((1, 1))
    with pytest.raises(lg.ExponentRangeError, match=r"^layer 0 activations: a value below loggrad's exponent range"):
        net.forward(x, on_underflow="raise")
    with pytest.raises(lg.ExponentRangeError, match=r"^layer 0 activations: a value below .*gelu at a pre-activation"):
        net.backward(x, loss="sum", on_underflow="raise")
    with pytest.raises(ValueError, match="on_underflow must be 'flush' or 'raise'"):
        net.forward(x, on_underflow="ignore")
    with pytest.raises(ValueError, match="on_underflow must be 'flush' or 'raise'"):
        net.backward(x, loss="sum", on_underflow=None)


# -- a confident logit in bce and cross_entropy --------------------------------------


def test_bce_confident_logit():
    # output = x: logits [1e19, 0.5], both labelled 1. softplus(-1e19) and sigmoid(-1e19) are e^-1e19
    net = lg.Network([np.ones((1, 1))], None, "identity")
    x = np.array([[1e19], [0.5]])
    y = np.ones((2, 1))
    g, w = quiet(net.backward, x, y, loss="bce")
    assert g.flushed == 2 and len(w) == 1 and "first in the loss" in str(w[0].message)
    X = [mpmath.mpf(1e19), mpmath.mpf(0.5)]
    loss = sum(mpmath.log1p(mpmath.exp(-v)) for v in X) / 2
    assert close(float(g.loss.to_numpy()), loss)
    # dL/dW = sum_i -sigmoid(-x_i) / 2 * x_i: the 1e19 term is e^-1e19 * 1e19, below the range
    dw = sum(-mp_sigmoid(-v) / 2 * v for v in X)
    assert close(float(g.weights[0].to_numpy()[0, 0]), dw, 1e-15)
    g64 = net.backward(x, y, loss="bce", precision="float64")
    np.testing.assert_allclose(g.params.to_numpy(), g64.params, rtol=1e-15)
    with pytest.raises(lg.ExponentRangeError, match=r"^the loss: a value below loggrad's exponent range"):
        net.backward(x, y, loss="bce", on_underflow="raise")


def test_cross_entropy_confident_logit():
    # row 0: logits [1e19, 0] -> e^-1e19 for class 1; row 1 ordinary logits
    net = lg.Network([np.array([[1.0, 0.0], [0.0, 1.0]])], None, "identity")
    x = np.array([[1e19, 0.0], [0.25, -1.5]])
    labels = np.array([0, 1])
    g, w = quiet(net.backward, x, labels, loss="cross_entropy")
    assert g.flushed == 1 and len(w) == 1 and "the loss" in str(w[0].message)
    X = [[mpmath.mpf(v) for v in row] for row in x]
    loss = mpmath.mpf(0)
    grad_out = []
    for row, c in zip(X, labels):
        lse = mpmath.log(sum(mpmath.exp(v) for v in row))
        loss += lse - row[c]
        grad_out.append([(mpmath.exp(v - lse) - (1 if j == c else 0)) / 2 for j, v in enumerate(row)])
    assert close(float(g.loss.to_numpy()), loss / 2, 1e-15)
    dw = g.weights[0].to_numpy()
    for i in range(2):
        for j in range(2):
            ref = sum(grad_out[b][i] * X[b][j] for b in range(2))
            if abs(ref) > 0 and abs(mpmath.log(abs(ref), 2)) > LIMIT:
                assert dw[i, j] == 0.0
            else:
                assert close(dw[i, j], ref, 1e-14), (i, j, dw[i, j], ref)
    g64 = net.backward(x, labels, loss="cross_entropy", precision="float64")
    np.testing.assert_allclose(g.params.to_numpy(), g64.params, rtol=1e-14)
    with pytest.raises(lg.ExponentRangeError, match=r"^the loss: a value below .*e\^x at x = -10\^19"):
        net.backward(x, labels, loss="cross_entropy", on_underflow="raise")


# -- a saturated sigmoid unit whose weight toward the output is 0 --------------------


def test_saturated_sigmoid_with_zero_weight():
    # z = [1e19, 1]: sigmoid(1e19) = 1 is fine, sigmoid'(1e19) = e^-1e19 is below the range
    net = lg.Network([np.array([[1e19], [1.0]]), np.array([[0.0, 1.0]])], None, ["sigmoid", "identity"])
    x = np.ones((1, 1))
    (out, flushed), w = quiet(net.forward, x, return_flushed=True)
    assert flushed == 0 and w == []  # forward needs no derivative
    g, w = quiet(net.backward, x, loss="sum")
    assert g.flushed == 1 and "layer 0 activation derivatives" in str(w[0].message)
    g64 = net.backward(x, loss="sum", precision="float64")
    np.testing.assert_allclose(g.params.to_numpy(), g64.params, rtol=1e-15, atol=0)  # zeros exactly
    one = mpmath.mpf(1)
    assert close(g.weights[0].to_numpy()[1, 0], mp_sigmoid(one) * (1 - mp_sigmoid(one)), 1e-15)
    with pytest.raises(lg.ExponentRangeError, match=r"^layer 0 activation derivatives: a value below"):
        net.backward(x, loss="sum", on_underflow="raise")


# -- deep: the backward chain itself leaves the range ---------------------------------


def chain_net(depth: int, width: int) -> lg.Network:
    """sigmoid layers whose units sit at z ~ -7e17, where sigmoid' ~ 2^-1.01e18: in range alone,
    below it as the product of two layers' derivatives (dW and dL/da two layers down)."""
    rng = np.random.default_rng(5)
    ws = [rng.uniform(0.5, 1.0, (width, width)) for _ in range(depth)]
    bs = [np.full(width, -7e17) for _ in range(depth)]
    bs[0][:] = 0.0  # the first layer ordinary
    return lg.Network(ws, bs, "sigmoid")


def mp_chain(net: lg.Network, x: np.ndarray):
    """mpmath backward pass of a sigmoid chain, loss = sum of the outputs: (dW per layer, dx)."""
    ws = [[[mpmath.mpf(v) for v in row] for row in w] for w in net.weights]
    bs = [[mpmath.mpf(v) for v in b] for b in net.biases]
    dws = [np.zeros(np.shape(w), dtype=object) for w in net.weights]
    dxs = []
    for row in x:
        a = [mpmath.mpf(v) for v in row]
        acts, ders = [a], []
        for W, b in zip(ws, bs):
            z = [sum(W[i][k] * a[k] for k in range(len(a))) + b[i] for i in range(len(W))]
            a = [mp_sigmoid(v) for v in z]
            ders.append([mp_sigmoid(v) * mp_sigmoid(-v) for v in z])
            acts.append(a)
        g = [mpmath.mpf(1)] * len(a)
        for l in reversed(range(len(ws))):
            d = [g[i] * ders[l][i] for i in range(len(g))]
            for i in range(len(d)):
                for k in range(len(acts[l])):
                    dws[l][i, k] = dws[l][i, k] + d[i] * acts[l][k]
            g = [sum(d[i] * ws[l][i][k] for i in range(len(d))) for k in range(len(acts[l]))]
        dxs.append(g)
    return dws, dxs


def below_range(v) -> bool:
    return v != 0 and mpmath.log(abs(v), 2) < -LIMIT


def test_chain_underflow_against_mpmath():
    net = chain_net(4, 2)
    x = np.array([[0.5, -0.25]])
    g, w = quiet(net.backward, x, loss="sum")
    assert g.flushed > 0 and len(w) == 1
    dws, dxs = mp_chain(net, x)
    flushed_refs = 0
    for l in range(net.depth):
        got = g.weights[l]
        for i in range(dws[l].shape[0]):
            for k in range(dws[l].shape[1]):
                ref = dws[l][i, k]
                if below_range(ref):
                    assert got.mantissa[i, k] == 0.0
                    flushed_refs += 1
                else:
                    # log10 agrees to float64 rounding: |log2| up to 2^60 leaves ~4 digits of a double's 16
                    assert abs(float(got.log10()[i, k]) - float(mpmath.log10(abs(ref)))) <= 1e-16 * abs(
                        float(mpmath.log10(abs(ref)))) + 1e-12
    assert flushed_refs > 0
    for k, ref in enumerate(dxs[0]):
        if below_range(ref):
            assert g.input.mantissa[0, k] == 0.0


@pytest.mark.parametrize("checkpoint", [None, 1, 2, "auto"])
def test_counts_and_bits_independent_of_threads_and_checkpointing(checkpoint):
    net = chain_net(6, 3)
    x = np.random.default_rng(1).standard_normal((80, 3))  # several row blocks
    results = {}
    try:
        for threads in (1, 2):
            _core.set_num_threads(threads)
            for cp in (None, checkpoint):
                g, w = quiet(net.backward, x, loss="sum", checkpoint=cp)
                results[threads, cp] = (g, [str(m.message) for m in w])
    finally:
        _core.set_num_threads(lg_default_threads())
    (g0, w0) = results[1, None]
    assert g0.flushed > 0 and len(w0) == 1
    for g, w in results.values():
        assert g.flushed == g0.flushed and w == w0
        np.testing.assert_array_equal(g.params.mantissa, g0.params.mantissa)
        np.testing.assert_array_equal(g.params.exponent, g0.params.exponent)
        np.testing.assert_array_equal(g.input.mantissa, g0.input.mantissa)
        np.testing.assert_array_equal(g.input.exponent, g0.input.exponent)


def lg_default_threads() -> int:
    import os

    return os.cpu_count() or 1


@pytest.mark.parametrize("net_x", ["gelu", "sigmoid", "chain"])
def test_raise_messages_same_with_and_without_checkpointing(net_x):
    if net_x == "gelu":
        net, x = gelu_net(), np.ones((1, 1))
    elif net_x == "sigmoid":
        net = lg.Network([np.full((1, 1), 1e200)] * 3, None, ["identity", "identity", "sigmoid"])
        x = np.ones((1, 1))
    else:
        net, x = chain_net(6, 3), np.random.default_rng(1).standard_normal((80, 3))
    messages = set()
    for cp in (None, 1, 2, "auto"):
        with pytest.raises(lg.ExponentRangeError) as err:
            net.backward(x, loss="sum", checkpoint=cp, on_underflow="raise")
        messages.add(str(err.value))
    assert len(messages) == 1
    (msg,) = messages
    assert msg.startswith("layer ") and len(msg) < 200  # the layer, the quantity, and short numbers


def test_sigmoid_at_1e400_message_is_short():
    # sigmoid'(1e600) = e^-1e600: the message prints 10^600, not a 600-digit number
    net = lg.Network([np.full((1, 1), 1e200)] * 3, None, ["identity", "identity", "sigmoid"])
    with pytest.raises(lg.ExponentRangeError,
                       match=r"^layer 2 activation derivatives: a value below .*sigmoid at a pre-activation of "
                             r"\+10\^600$"):
        net.backward(np.ones((1, 1)), loss="sum", on_underflow="raise")
    g, w = quiet(net.backward, np.ones((1, 1)), loss="sum")
    assert g.flushed == 1 and g.params.mantissa[-2] == 0.0  # dW_2 = sigmoid'(1e600) a_2 = 0


# -- overflow still raises --------------------------------------------------------------


@pytest.mark.parametrize("on_underflow", ["flush", "raise"])
def test_overflow_still_raises(on_underflow):
    # dL/d(output) = 2^(2^60 - 1500) back through two layers of weight 2^1000:
    # dL/dx = 2^(2^60 + 500), above the range
    net = lg.Network([np.full((1, 1), 2.0**1000)] * 2, None, ["identity", "identity"])
    big = lg.LogArray.from_parts(np.array([[0.5]]), np.array([[2**60 - 1500]]))
    with pytest.raises(lg.ExponentRangeError, match=r"^layer 0 input gradients: a value above loggrad's exponent"):
        net.backward(np.ones((1, 1)), grad_output=big, on_underflow=on_underflow)
    # one layer less: everything in range, nothing flushed, no warning
    one = lg.Network([np.full((1, 1), 2.0**1000)], None, "identity")
    g, w = quiet(one.backward, np.ones((1, 1)), grad_output=big, on_underflow=on_underflow)
    assert g.flushed == 0 and w == []
    assert int(g.input.exponent[0, 0]) == 2**60 - 1500 + 1000
