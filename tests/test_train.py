"""SGD steps with exact bookkeeping, clipping in extended range, and fit."""

import mpmath
import numpy as np
import pytest

import loggrad as lg
from loggrad import LogArray
from loggrad.train import clip_grad_norm, clip_grad_value, layer_norms

mpmath.mp.dps = 40


def mp_values(a: LogArray):
    return [mpmath.ldexp(mpmath.mpf(float(m)), int(e)) if m != 0 else mpmath.mpf(0)
            for m, e in zip(a.mantissa.ravel(), a.exponent.ravel())]


def one_weight_net(w=1.0):
    return lg.Network([np.array([[w]])], [np.array([0.0])], "identity")


def test_update_below_half_an_ulp_is_reported_lost():
    # loss = sum(w x + b) with x = 1: dL/dw = dL/db = 1, so the update is exactly lr.
    net = one_weight_net(1.0)
    rep = net.sgd_step(np.ones((1, 1)), None, lr=2.0**-54, loss="sum")  # half an ulp of 1 (below 1): a tie, stays 1
    assert net.weights[0][0, 0] == 1.0
    assert net.biases[0][0] == -(2.0**-54)  # the bias (0) takes any nonzero update
    assert rep.unchanged.tolist() == [1] and rep.nonzero_updates.tolist() == [2]
    np.testing.assert_allclose(rep.update_log10_max, [-54 * np.log10(2)], rtol=1e-15)
    rep = net.sgd_step(np.ones((1, 1)), None, lr=2.0**-52, loss="sum")  # a full ulp: applied
    assert net.weights[0][0, 0] == 1.0 - 2.0**-52
    assert rep.unchanged.tolist() == [0]


def test_vanishing_update_is_exact_below_float64():
    # 0.001 * (a gradient of 10^-400): float64 would call it 0; the step reports its true size.
    net = lg.Network([0.1 * np.eye(2)] * 400, None, "identity")
    before = net.params.copy()
    rep = net.sgd_step(np.ones((1, 2)), None, lr=1e-3, loss="sum")
    # dL/dW_0 = (0.1^399 * 1) x^T: log10 = -399; times lr: -402, below float64's range
    assert abs(rep.update_log10_max[0] - (-399 - 3)) < 1e-9
    assert rep.nonzero_updates[0] == 6 and rep.unchanged[0] == 6  # W_0 and b_0: every update lost
    assert rep.fraction_unchanged[0] == 1.0
    # last layer: dW = 1 * a^T with a = 0.1^399 (lost), db = 1 (applied: 0 - 1e-3)
    assert rep.unchanged[-1] == 4 and rep.nonzero_updates[-1] == 6
    np.testing.assert_array_equal(net.biases[-1], [-1e-3, -1e-3])
    np.testing.assert_array_equal(net.params[:6], before[:6])


def test_failed_step_changes_nothing():
    net = lg.Network([1.5 * np.eye(3)] * 2000, None, "identity")
    before = net.params.copy()
    with pytest.raises(FloatingPointError, match="overflows float64 weights; nothing was changed"):
        net.sgd_step(np.ones((1, 3)), np.zeros((1, 3)), 0.01)
    np.testing.assert_array_equal(net.params, before)
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        net.sgd_step(np.ones((1, 3)), np.zeros((1, 3)), -1.0)
    np.testing.assert_array_equal(net.params, before)


@pytest.mark.parametrize("scale,depth", [(1.5, 2000), (0.5, 1500)])
def test_clip_grad_norm_against_mpmath(scale, depth):
    net = lg.Network([scale * np.eye(3) + 0.01] * depth, None, "identity")
    g = net.backward(np.ones((2, 3)), np.zeros((2, 3)), loss="mse").params
    vals = mp_values(g)
    ref_norm = mpmath.sqrt(sum(v * v for v in vals))
    assert abs(float(g.norm().log10()) - float(mpmath.log10(ref_norm))) < 1e-12
    clipped, norm = clip_grad_norm(g, 1.0)
    if ref_norm > 1:
        assert float(mpmath.log10(ref_norm)) > 308  # the overflow case
        got = mp_values(clipped)
        for v, c in zip(vals, got):
            ref = v / ref_norm
            assert abs(c - ref) <= 1e-14 * abs(ref) + mpmath.mpf(10) ** -300
        assert abs(float(clipped.norm().log10())) < 1e-14
        assert np.all(np.isfinite(clipped.to_numpy()))
    else:
        assert float(mpmath.log10(ref_norm)) < -308  # nothing to clip: unchanged, exactly
        assert clipped is g
    with pytest.raises(ValueError):
        clip_grad_norm(g, 0.0)


def test_clip_grad_value():
    g = LogArray.from_log10([1, -1, 1, 0], [400, 2, -500, -np.inf])
    c = clip_grad_value(g, 5.0)
    np.testing.assert_array_equal(c.to_numpy()[[0, 1, 3]], [5.0, -5.0, 0.0])
    assert abs(float(c.log10()[2]) + 500) < 1e-12


def test_step_with_clipping_gives_finite_update():
    net = lg.Network([1.5 * np.eye(3)] * 2000, None, "identity")
    rep = net.sgd_step(np.ones((1, 3)), np.zeros((1, 3)), 0.01, clip_norm=1.0)
    assert rep.clipped and float(rep.grad_norm.log10()) > 700
    assert np.all(np.isfinite(net.params))
    # the global update norm is lr * 1
    total = np.sqrt(np.sum(rep.update_norm.to_numpy() ** 2))
    assert abs(total - 0.01) < 1e-15


def test_layer_norms_match_direct_computation():
    rng = np.random.default_rng(0)
    net = lg.Network([rng.standard_normal((4, 3)), rng.standard_normal((2, 4))], None, "tanh")
    g = net.backward(rng.standard_normal((5, 3)), rng.standard_normal((5, 2)))
    norms = layer_norms(g.params, net).to_numpy()
    direct = [np.sqrt(np.sum(np.asarray(g.weights[l]) ** 2) + np.sum(np.asarray(g.biases[l]) ** 2)) for l in range(2)]
    np.testing.assert_allclose(norms, direct, rtol=1e-14)


def test_fit_reduces_loss_on_regression():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 3))
    y = x @ np.array([[1.0], [-2.0], [0.5]]) + 0.3
    net = lg.Network([rng.standard_normal((1, 3)) * 0.1], None, "identity")
    h = net.fit(x, y, lr=0.1, epochs=30, batch_size=16)
    assert len(h.loss) == 30 and h.loss[-1] < 1e-3 * h.loss[0]
    assert len(h.grad_norm_log10[0]) == 1 and len(h.fraction_unchanged) == 30
    np.testing.assert_allclose(net.weights[0], [[1.0, -2.0, 0.5]], atol=1e-2)
    assert set(h.as_dict()) == {"loss", "loss_log10", "grad_norm_log10", "fraction_unchanged"}
