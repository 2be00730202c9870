"""SGD steps with exact bookkeeping, clipping in extended range, and fit."""

import math

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


# --- exact updates at the half-ulp boundary ------------------------------------------


@pytest.mark.parametrize("w,lr,lost", [
    (1.0, 2.0**-54 * (1 - 2.0**-20), True),   # below half an ulp of 1 (going down, the ulp is 2^-53)
    (1.0, 2.0**-54, True),                    # exactly half: a tie, rounds to even (1)
    (1.0, 2.0**-54 * (1 + 2.0**-20), False),  # above half an ulp: applied, w = 1 - 2^-53
    (3.0, 2.0**-52 * (1 - 2.0**-20), True),   # half an ulp of 3 is 2^-52
    (3.0, 2.0**-52 * (1 + 2.0**-20), False),
    (1e300, 1e283, True),                     # relative 1e-17 < 2^-53
    (1e300, 1e285, False),
])
def test_update_lost_exactly_when_below_half_an_ulp(w, lr, lost):
    # loss = sum(w x + b), x = 1: dL/dw = 1, the update is exactly lr
    net = one_weight_net(w)
    rep = net.sgd_step(np.ones((1, 1)), None, lr=lr, loss="sum")
    half_ulp = mpmath.mpf(np.spacing(np.nextafter(w, 0.0))) / 2  # spacing just below w: the direction of the step
    assert (mpmath.mpf(lr) < half_ulp or (mpmath.mpf(lr) == half_ulp)) == lost  # the independent criterion
    assert (net.weights[0][0, 0] == w) == lost
    assert rep.unchanged[0] == (1 if lost else 0)  # the bias (0) always moves
    with mpmath.workprec(53):  # w - lr rounded once to 53 bits, to nearest even: IEEE subtraction
        expect = float(mpmath.mpf(w) - mpmath.mpf(lr))
    assert net.weights[0][0, 0] == expect
    assert close_log10(rep.update_log10_max[0], mpmath.log10(lr))


def test_updates_beyond_float64_range_are_counted_not_rounded_silently():
    # w = 0: any update representable in float64 (subnormals too) moves it; 10^-330 cannot be stored
    net = lg.Network([np.array([[0.0, 0.0]])], [np.array([0.0])], "identity")
    rep = net.sgd_step(np.array([[1e-300, 1.0]]), None, lr=1e-30, loss="sum")
    # dL/dw = x: updates 1e-330 (lost: below the smallest subnormal) and 1e-30 (applied); db = 1: applied
    assert net.weights[0][0, 0] == 0.0 and net.weights[0][0, 1] == -1e-30 and net.biases[0][0] == -1e-30
    assert rep.unchanged.tolist() == [1] and rep.nonzero_updates.tolist() == [3]
    assert abs(rep.update_log10_max[0] + 30) < 1e-12
    net2 = lg.Network([np.array([[0.0]])], [np.array([0.0])], "identity")
    rep2 = net2.sgd_step(np.array([[1e-300]]), None, lr=1e-20, loss="sum")  # update 1e-320: a subnormal
    assert net2.weights[0][0, 0] == -1e-320 and rep2.unchanged[0] == 0


# --- clipping against mpmath at norms beyond float64 ---------------------------------


def close_log10(got, ref, ulps=4):
    """log10 values equal to a few ulps of the value (its own rounding is one ulp)."""
    r = float(ref)
    return abs(float(got) - r) <= ulps * np.spacing(abs(r)) + 1e-15


def _mp_norm(vals):
    return mpmath.sqrt(mpmath.fsum(v * v for v in vals))


@pytest.mark.parametrize("lo,hi,max_norm", [(300, 420, 1.0), (-700, -330, 1e-300), (-450, 450, 5.0),
                                            (-800, -400, 1e-320), (-330, -300, 1e-318)])
def test_clip_grad_norm_random_exponents_against_mpmath(lo, hi, max_norm):
    rng = np.random.default_rng(lo + 1000)
    n = 200
    g = LogArray.from_log10(rng.choice([-1.0, 1.0], n), rng.uniform(lo, hi, n))
    vals = mp_values(g)
    ref = _mp_norm(vals)
    clipped, norm = clip_grad_norm(g, max_norm)
    assert close_log10(norm.log10(), mpmath.log10(ref))
    if ref <= max_norm:
        assert clipped is g
        return
    scale = mpmath.mpf(max_norm) / ref
    for c, v in zip(mp_values(clipped), vals):
        r = v * scale
        assert abs(c - r) <= 4e-16 * abs(r)
    assert close_log10(clipped.norm().log10(), mpmath.log10(max_norm), ulps=8)


def test_clip_grad_value_against_mpmath():
    rng = np.random.default_rng(5)
    n = 300
    g = LogArray.from_log10(rng.choice([-1.0, 1.0], n), rng.uniform(-500, 500, n))
    for clip in (1e-300, 1.0, 1e300):
        c = clip_grad_value(g, clip)
        for got, v in zip(mp_values(c), mp_values(g)):
            ref = v if abs(v) <= clip else mpmath.sign(v) * mpmath.mpf(clip)
            assert got == ref  # clamping is exact: kept entries unchanged, others +-clip


def test_clip_grad_norm_where_torch_overflows_or_underflows():
    torch = pytest.importorskip("torch")
    for v, max_norm in ((1e200, 1.0), (1e-200, 1e-250)):
        vals = np.array([v, v, -v])
        p = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        p.grad = torch.tensor(vals)
        tnorm = float(torch.nn.utils.clip_grad_norm_([p], max_norm))
        clipped, norm = clip_grad_norm(LogArray(vals), max_norm)
        ref = mpmath.sqrt(3) * mpmath.mpf(v)
        assert close_log10(norm.log10(), mpmath.log10(ref))
        assert tnorm in (0.0, math.inf)  # torch's norm leaves float64: inf, or 0 (squares underflow)
        assert np.all(p.grad.numpy() == 0)  # and its clipped gradient is all zeros
        expect = [float(mpmath.mpf(x) * max_norm / ref) for x in vals]
        np.testing.assert_allclose(clipped.to_numpy(), expect, rtol=1e-15)


def test_bad_clip_arguments():
    g = LogArray(np.array([1.0, 2.0]))
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="max_norm must be a positive finite number"):
            clip_grad_norm(g, bad)
        with pytest.raises(ValueError, match="clip_value must be a positive finite number"):
            clip_grad_value(g, bad)


@pytest.mark.parametrize("lr", ["0.1", None, np.ones(2), True, 0.0, -1.0, float("nan"), float("inf")])
def test_bad_learning_rate_names_the_parameter_and_leaves_weights(lr):
    net = lg.Network.build([3, 4, 2], "tanh", seed=1)
    before = net.params.copy()
    x, y = np.ones((2, 3)), np.zeros((2, 2))
    with pytest.raises((TypeError, ValueError), match="lr"):
        net.sgd_step(x, y, lr)
    with pytest.raises((TypeError, ValueError), match="lr"):
        net.fit(x, y, lr, epochs=1)
    np.testing.assert_array_equal(net.params, before)


@pytest.mark.parametrize("kw,name", [({"epochs": 0}, "epochs"), ({"epochs": 1.5}, "epochs"),
                                     ({"batch_size": "a"}, "batch_size"), ({"batch_size": 0}, "batch_size")])
def test_bad_fit_counts_name_the_parameter(kw, name):
    net = lg.Network.build([3, 2], "tanh", seed=1)
    with pytest.raises((TypeError, ValueError), match=name):
        net.fit(np.ones((2, 3)), np.zeros((2, 2)), 0.1, **kw)


def test_network_report_and_spectrum_methods_equal_the_functions():
    net = lg.Network.build([5] * 9, "tanh", seed=2)
    x = np.random.default_rng(0).standard_normal((3, 5))
    y = np.zeros((3, 5))
    a, b = net.report(x, y, lr=1e-3), lg.report(net, x, y, lr=1e-3)
    np.testing.assert_array_equal(a.records()[0]["log10_grad_norm_w"], b.records()[0]["log10_grad_norm_w"])
    assert a.slope == b.slope and a.verdict == b.verdict
    np.testing.assert_array_equal(net.spectrum(x[0]).lyapunov, lg.spectrum(net, x[0]).lyapunov)
