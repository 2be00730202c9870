"""SGD steps with exact bookkeeping, clipping in extended range, and fit."""

import math

import mpmath
from fractions import Fraction

import numpy as np
import pytest

import loggrad as lg
from loggrad import LogArray
from loggrad.train import clip_grad_norm, clip_grad_value, layer_norms

from contract import log10_tol

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
    # dL/dW_0 = (0.1^399 * 1) x^T: log10 = -399; times lr: -402, below float64's range.
    # Reference: mpmath on the float64 values of 0.1 and 1e-3. Bound: the backward chain's
    # 399 two-term dot products (2 u each), times x and times lr (1 u each).
    want = float(mpmath.log10(mpmath.mpf(0.1) ** 399 * mpmath.mpf(1e-3)))
    assert abs(rep.update_log10_max[0] - want) <= log10_tol(want, 2 * 399 + 2)
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


# --- the engine's step against the numpy formulation, bit for bit ---------------------
#
# reference_step is sgd_step as it was written in numpy and LogArray products
# before the engine took the step over: kept here, independent of the package's
# code path, as the definition of the results (parameters and every report field).

_REF_ZERO_EXP = int(lg._core.zero_exponent)


def _ref_aligned_norm(m, e):
    e = np.where(m == 0, _REF_ZERO_EXP, e)
    emax = np.max(e)
    emax = 0 if emax == _REF_ZERO_EXP else emax
    d = np.clip(e - emax, -2000, 0).astype(np.int32)
    with np.errstate(under="ignore"):
        scaled = np.ldexp(m, d)
    s = float(np.sqrt(np.sum(scaled * scaled)))
    fm, fe = np.frexp(np.asarray(s))
    return LogArray.from_parts(fm, np.int64(emax) + fe)


def _ref_layer_norms(g, starts, sizes):
    m = g.mantissa
    e = np.where(m == 0, np.iinfo(np.int64).min // 4, g.exponent)
    emax = np.maximum.reduceat(e, starts)
    emax = np.where(emax < -(2**60), 0, emax)
    d = np.clip(e - np.repeat(emax, sizes), -3000, 0).astype(np.int32)
    with np.errstate(under="ignore"):
        scaled = np.ldexp(m, d)
    s = np.sqrt(np.add.reduceat(scaled * scaled, starts))
    return LogArray.from_parts(s, emax)


def _exact_over(m, e, limit):
    """|m 2^e| > limit, by exact rational arithmetic (independent of train._exceeds)."""
    lim = Fraction(float(limit))
    _, le = math.frexp(float(limit))
    m, e = np.atleast_1d(m), np.atleast_1d(e)
    out = []
    for mi, ei in zip(m.tolist(), e.tolist()):
        if mi == 0:
            out.append(False)
            continue
        mm, de = math.frexp(abs(mi))  # |m 2^e| = mm 2^(e + de), mm in [0.5, 1)
        ee = int(ei) + de
        if ee != le:  # a binade apart: the exponents decide
            out.append(ee > le)
        else:
            out.append(Fraction(mm) * Fraction(2) ** ee > lim)
    return np.array(out, dtype=bool)


def _ref_clip_norm(g, max_norm):
    norm = _ref_aligned_norm(g.mantissa, g.exponent)
    if not _exact_over(norm.mantissa, norm.exponent, max_norm)[0]:
        return g
    return g * (LogArray(max_norm) / norm)


def _ref_clip_value(g, clip_value):
    over = _exact_over(g.mantissa, g.exponent, clip_value).reshape(g.shape)
    m = np.where(over, np.sign(g.mantissa) * clip_value, g.mantissa)
    e = np.where(over, 0, g.exponent)
    return LogArray.from_parts(m, e)


def reference_step(params, gp, widths, lr, clip_norm=None, clip_value=None):
    """(new parameters, report fields) of one step with gradient gp; raises as the step must."""
    w = np.asarray(widths, dtype=np.int64)
    sizes = w[1:] * (w[:-1] + 1)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    grad = gp
    norm = _ref_aligned_norm(gp.mantissa, gp.exponent)
    clipped = False
    if clip_norm is not None:
        grad = _ref_clip_norm(grad, clip_norm)
        clipped = grad is not gp
    if clip_value is not None:
        before = grad
        grad = _ref_clip_value(grad, clip_value)
        clipped = clipped or not np.array_equal(before.mantissa, grad.mantissa)
    update = grad * lr
    u = update.to_numpy()
    with np.errstate(over="ignore", invalid="ignore"):
        new = params - u
    if not np.all(np.isfinite(new)):
        raise FloatingPointError("overflows float64 weights; nothing was changed")
    nonzero = update.mantissa != 0
    unchanged = nonzero & (new == params)
    return new, dict(
        unchanged=np.add.reduceat(unchanged.astype(np.int64), starts),
        nonzero_updates=np.add.reduceat(nonzero.astype(np.int64), starts),
        update_log10_max=np.maximum.reduceat(update.log10(), starts),
        update_norm=_ref_layer_norms(update, starts, sizes),
        grad_layer_norm=_ref_layer_norms(gp, starts, sizes),
        grad_norm=norm,
        clipped=clipped,
    )


def _bits(a):
    a = np.ascontiguousarray(np.asarray(a, dtype=np.float64))
    return a.view(np.uint64)


def assert_same_step(net_params, rep, ref_params, ref):
    np.testing.assert_array_equal(_bits(net_params), _bits(ref_params))  # -0.0 and 0.0 apart too
    for k in ("unchanged", "nonzero_updates"):
        np.testing.assert_array_equal(getattr(rep, k), ref[k], err_msg=k)
    np.testing.assert_array_equal(_bits(rep.update_log10_max), _bits(ref["update_log10_max"]))
    for k in ("update_norm", "grad_layer_norm", "grad_norm"):
        got, want = getattr(rep, k), ref[k]
        np.testing.assert_array_equal(_bits(got.mantissa), _bits(want.mantissa), err_msg=k)
        np.testing.assert_array_equal(got.exponent, want.exponent, err_msg=k)
    assert rep.clipped == ref["clipped"]


class _Grad:
    """What the step takes from Network.backward's result: params and loss."""

    def __init__(self, params):
        self.params = params
        self.loss = LogArray(0.0)


def _engine_step(net, gp, lr, clip_norm=None, clip_value=None):
    from loggrad import train

    return train._apply(net, _Grad(gp), lr, train._clip_arg("max_norm", clip_norm),
                        train._clip_arg("clip_value", clip_value), net.layout.offsets)


def _random_gradient(rng, n, lo, hi, zeros=0.1):
    m = rng.uniform(0.5, 1.0, n) * rng.choice([-1.0, 1.0], n)
    m[rng.random(n) < zeros] = 0.0
    e = rng.integers(lo, hi, n)
    return LogArray.from_parts(m, e)


CLIPS = [(None, None), (1.0, None), (1e300, None), (None, 0.5), (None, 1e-320), (2.0**-1000, 1e-310), (3.0, 0.01)]


@pytest.mark.parametrize("clip_norm,clip_value", CLIPS)
@pytest.mark.parametrize("lo,hi", [(-40, 3), (-5000, 5000), (-1100, -1000), (1000, 1020)])
def test_engine_step_equals_numpy_formulation_bitwise(clip_norm, clip_value, lo, hi):
    # Exponents far beyond float64's range both ways, zeros, widths that make
    # blocks of 1 to 21,000 entries (numpy's pairwise sums recurse) and enough
    # entries for several engine tasks.
    rng = np.random.default_rng(abs(lo) + hi)
    widths = [3, 1, 140, 150, 2, 7]
    net = lg.Network.build(widths, activation="tanh", seed=1)
    gp = _random_gradient(rng, net.param_count, lo, hi)
    before = net.params.copy()
    try:
        want_params, want = reference_step(before, gp, widths, 1e-3, clip_norm, clip_value)
    except FloatingPointError:
        with pytest.raises(FloatingPointError, match="nothing was changed"):
            _engine_step(net, gp, 1e-3, clip_norm, clip_value)
        np.testing.assert_array_equal(_bits(net.params), _bits(before))
        return
    rep = _engine_step(net, gp, 1e-3, clip_norm, clip_value)
    assert_same_step(net.params, rep, want_params, want)


def test_engine_step_large_layers_and_thread_counts():
    # 66,000-entry layers span several engine tasks and numpy's multi-level
    # pairwise tree; the results may not depend on the thread count.
    rng = np.random.default_rng(5)
    widths = [256, 256, 256, 3]
    nets = [lg.Network.build(widths, activation="tanh", seed=2) for _ in range(2)]
    gp = _random_gradient(rng, nets[0].param_count, -1200, 40)
    want_params, want = reference_step(nets[0].params.copy(), gp, widths, 0.25, clip_norm=1e-5)
    before = lg._core.num_threads()
    try:
        for net, threads in zip(nets, (1, max(2, before))):
            lg._core.set_num_threads(threads)
            rep = _engine_step(net, gp, 0.25, clip_norm=1e-5)
            assert_same_step(net.params, rep, want_params, want)
    finally:
        lg._core.set_num_threads(before)


@pytest.mark.parametrize("loss", ["mse", "sum"])
@pytest.mark.parametrize("clip_norm,clip_value", [(None, None), (1e-3, None), (None, 1e-4), (0.5, 1e-3)])
def test_sgd_step_on_a_deep_network_equals_numpy_formulation(loss, clip_norm, clip_value):
    # Gradients from a real pass: vanishing through 900 sigmoid layers (far below
    # float64 in the first layers), so most early updates are lost.
    rng = np.random.default_rng(3)
    widths = [6] * 901
    net = lg.Network.build(widths, activation="sigmoid", init="normal", seed=4)
    x, y = rng.standard_normal((5, 6)), rng.standard_normal((5, 6))
    g = net.backward(x, y, loss=loss, input_grad=False)
    assert float(g.params.log10().max()) > -10 and float(g.params[:36].log10().max()) < -308
    want_params, want = reference_step(net.params.copy(), g.params, widths, 0.1, clip_norm, clip_value)
    rep = net.sgd_step(x, y, 0.1, loss=loss, clip_norm=clip_norm, clip_value=clip_value)
    assert_same_step(net.params, rep, want_params, want)
    assert rep.unchanged.sum() > 0 and rep.loss.mantissa == g.loss.mantissa


def test_lost_updates_counted_as_numpy_counts_them():
    # Updates around half an ulp of their weights: about half are lost.
    rng = np.random.default_rng(6)
    widths = [20, 30, 10]
    net = lg.Network.build(widths, activation="tanh", seed=0)
    w = net.params
    w[:] = rng.uniform(1.0, 2.0, w.size) * rng.choice([-1, 1], w.size)
    w[::7] = 0.0
    w[1::7] = -0.0
    gp = LogArray.from_parts(rng.uniform(0.5, 1.0, w.size) * rng.choice([-1, 1], w.size),
                             rng.integers(-55, -50, w.size))
    want_params, want = reference_step(w.copy(), gp, widths, 1.0)
    rep = _engine_step(net, gp, 1.0)
    assert_same_step(net.params, rep, want_params, want)
    assert 0 < rep.unchanged.sum() < rep.nonzero_updates.sum()


def test_clipping_thresholds_exactly_as_numpy_decides():
    # Entries at clip_value and one ulp around it, and a gradient whose norm is
    # max_norm within an ulp: the engine clips exactly the entries numpy clips.
    widths = [4, 5]
    net = lg.Network.build(widths, activation="tanh", seed=0)
    n = net.param_count
    for cv in (0.1, 1.0, 3.0, 2.0**-1070, 1e300):
        vals = np.array([cv, np.nextafter(cv, 0), np.nextafter(cv, np.inf), -cv, 2 * cv, cv / 2])
        m, e = np.frexp(np.resize(vals, n))
        gp = LogArray.from_parts(m, e.astype(np.int64))
        before = net.params.copy()
        want_params, want = reference_step(before, gp, widths, 1e-3, clip_value=cv)
        rep = _engine_step(net, gp, 1e-3, clip_value=cv)
        assert_same_step(net.params, rep, want_params, want)
    gp = _random_gradient(np.random.default_rng(7), n, -3, 3, zeros=0.0)
    norm = float(_ref_aligned_norm(gp.mantissa, gp.exponent).to_numpy())
    for mn in (norm, np.nextafter(norm, 0), np.nextafter(norm, np.inf)):
        before = net.params.copy()
        want_params, want = reference_step(before, gp, widths, 1e-3, clip_norm=mn)
        rep = _engine_step(net, gp, 1e-3, clip_norm=mn)
        assert_same_step(net.params, rep, want_params, want)


def test_engine_threshold_is_the_exact_comparison_around_it():
    # The engine's test (e > e_star, or e == e_star and |m| >= m_star) is |m 2^e| > limit,
    # exactly, for the 600 mantissas around m_star and the exponents either side.
    from loggrad import train

    rng = np.random.default_rng(8)
    for limit in np.concatenate([rng.uniform(0.01, 100, 20), [1.0, 0.5, 3.0, 2.0**-1074, 1e-310, 1e308,
                                                               np.nextafter(1.0, 0.0)]]):
        _, e_star, m_star = train._threshold(float(limit))
        bits = int(np.array([min(m_star, np.nextafter(1.0, 0.0))]).view(np.uint64)[0])
        cand = np.array(np.arange(bits - 300, bits + 300), dtype=np.uint64).view(np.float64)
        cand = cand[(cand >= 0.5) & (cand < 1.0)]
        for e in (e_star - 1, e_star, e_star + 1):
            engine = (e > e_star) | ((e == e_star) & (cand >= m_star))
            np.testing.assert_array_equal(engine, _exact_over(cand, np.full(cand.shape, e), limit))


def test_clip_norm_equal_to_the_norm_decided_as_numpy_decides():
    # 400 gradients whose norm is exactly max_norm, over 600 decades: the
    # engine's clipped flag and update are those of the numpy formulation.
    rng = np.random.default_rng(13)
    widths = [2, 1]
    net = lg.Network.build(widths, activation="tanh", seed=0)
    for _ in range(400):
        a = rng.standard_normal(3) * 10.0 ** rng.uniform(-300, 300)
        gp = LogArray(a)
        mn = float(_ref_aligned_norm(gp.mantissa, gp.exponent).to_numpy())
        want_params, want = reference_step(net.params.copy(), gp, widths, 1e-3, clip_norm=mn)
        rep = _engine_step(net, gp, 1e-3, clip_norm=mn)
        assert_same_step(net.params, rep, want_params, want)


@pytest.mark.parametrize("case", ["update", "weights", "nan"])
def test_failed_engine_step_changes_nothing(case):
    # An update beyond float64's range, weights near its limit or a nan weight:
    # FloatingPointError, and not one parameter changed (whichever part of the
    # block the bad value is in).
    rng = np.random.default_rng(9)
    widths = [50, 60, 70]
    net = lg.Network.build(widths, activation="tanh", seed=0)
    n = net.param_count
    gp = _random_gradient(rng, n, -10, 0)
    if case == "update":
        m, e = gp.mantissa.copy(), gp.exponent.copy()
        m[n - 5], e[n - 5] = 0.75, 1045
        gp = LogArray.from_parts(m, e)
    elif case == "weights":
        net.params[n // 2] = 1.7e308
        gp = LogArray.from_parts(np.full(n, -0.99), np.full(n, 1023 + 10, dtype=np.int64))
    else:
        net.params[n - 1] = np.nan
    before = net.params.copy()
    with pytest.raises(FloatingPointError):
        reference_step(before.copy(), gp, widths, 1e-3 if case != "weights" else 2.0**-10)
    with pytest.raises(FloatingPointError, match="nothing was changed"):
        _engine_step(net, gp, 1e-3 if case != "weights" else 2.0**-10)
    np.testing.assert_array_equal(_bits(net.params), _bits(before))


def test_update_beyond_exponent_range_raises_and_changes_nothing():
    widths = [3, 3]
    net = lg.Network.build(widths, activation="tanh", seed=0)
    n = net.param_count
    gp = LogArray.from_parts(np.full(n, 0.75), np.full(n, 2**60 - 2, dtype=np.int64))
    before = net.params.copy()
    with pytest.raises(lg._core.ExponentRangeError):
        gp * 16.0  # the numpy formulation's product raises too
    with pytest.raises(lg._core.ExponentRangeError, match="nothing was changed"):
        _engine_step(net, gp, 16.0)
    np.testing.assert_array_equal(_bits(net.params), _bits(before))


def test_failed_step_from_backward_changes_nothing_bitwise():
    net = lg.Network([1.5 * np.eye(3)] * 2000, None, "identity")
    before = net.params.copy()
    g = net.backward(np.ones((1, 3)), np.zeros((1, 3)), input_grad=False)
    with pytest.raises(FloatingPointError):
        reference_step(before.copy(), g.params, net.widths, 0.01)
    with pytest.raises(FloatingPointError, match=r"the update of parameter \d+ \(10\^\d+\.\d\) overflows"):
        net.sgd_step(np.ones((1, 3)), np.zeros((1, 3)), 0.01)
    np.testing.assert_array_equal(_bits(net.params), _bits(before))


# --- fit: the same steps, and Ctrl-C -------------------------------------------------


def _reference_fit(net, x, y, lr, epochs, bs, seed, clip_norm=None, clip_value=None):
    """fit's loop with reference_step; net's parameters take each step's result."""
    rng = np.random.default_rng(seed)
    n = x.shape[0]
    grad_norms = []
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            g = net.backward(x[idx], y[idx], input_grad=False)
            new, rep = reference_step(net.params.copy(), g.params, net.widths, lr, clip_norm, clip_value)
            net.params[:] = new
        grad_norms.append(rep["grad_layer_norm"].log10())
    return net.params.copy(), grad_norms


def test_fit_steps_equal_the_numpy_formulation_bitwise():
    rng = np.random.default_rng(10)
    x, y = rng.standard_normal((40, 5)), rng.standard_normal((40, 2))
    widths = [5, 8, 8, 2]
    ref_net = lg.Network.build(widths, activation="tanh", seed=3)
    net = lg.Network.build(widths, activation="tanh", seed=3)
    want_params, want_norms = _reference_fit(ref_net, x, y, 0.05, 3, 16, 0, clip_norm=0.5)
    h = net.fit(x, y, lr=0.05, epochs=3, batch_size=16, seed=0, clip_norm=0.5)
    np.testing.assert_array_equal(_bits(net.params), _bits(want_params))
    for got, want in zip(h.grad_norm_log10, want_norms):
        np.testing.assert_array_equal(_bits(got), _bits(want))


def test_fit_clip_value_equals_the_numpy_formulation_bitwise():
    rng = np.random.default_rng(14)
    x, y = 3 * rng.standard_normal((30, 4)), rng.standard_normal((30, 2))
    widths = [4, 6, 2]
    ref_net = lg.Network.build(widths, activation="tanh", seed=4)
    net = lg.Network.build(widths, activation="tanh", seed=4)
    want_params, _ = _reference_fit(ref_net, x, y, 0.1, 2, 10, 0, clip_value=0.05)
    net.fit(x, y, lr=0.1, epochs=2, batch_size=10, seed=0, clip_value=0.05)
    np.testing.assert_array_equal(_bits(net.params), _bits(want_params))
    unclipped = lg.Network.build(widths, activation="tanh", seed=4)
    unclipped.fit(x, y, lr=0.1, epochs=2, batch_size=10, seed=0)
    assert not np.array_equal(unclipped.params, want_params)  # the clip mattered


def test_fit_refuses_empty_or_mismatched_data():
    net = lg.Network([np.eye(2)], None, "identity")
    before = net.params.copy()
    for bs in (None, 2):
        with pytest.raises(ValueError, match="x has no samples"):
            net.fit(np.zeros((0, 2)), np.zeros((0, 2)), 0.1, batch_size=bs)
    with pytest.raises(ValueError, match="x has 3 samples but y has 2$"):
        net.fit(np.zeros((3, 2)), np.zeros((2, 5)), 0.1)
    np.testing.assert_array_equal(net.params, before)


@pytest.fixture
def default_sigint():
    """Python's default SIGINT handler, as in an interactive session (a background job starts
    with SIGINT ignored, and Python then installs none); the previous one afterwards."""
    import signal

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def test_ctrl_c_during_a_step_is_held_until_the_step_is_recorded(monkeypatch, default_sigint):
    import os
    import signal

    import loggrad.train as T

    rng = np.random.default_rng(15)
    x, y = rng.standard_normal((24, 4)), rng.standard_normal((24, 3))
    widths = [4, 5, 3]
    net = lg.Network.build(widths, activation="tanh", seed=6)
    ref = lg.Network.build(widths, activation="tanh", seed=6)
    T.fit(ref, x, y, 0.1, epochs=1, batch_size=8, seed=0)  # the same 3 steps, uninterrupted
    real_apply = T._apply
    calls = {"n": 0}

    def apply_then_ctrl_c(*args, **kwargs):
        out = real_apply(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # the last step of the first epoch: Ctrl-C arrives as it returns
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(T, "_apply", apply_then_ctrl_c)
    with pytest.raises(T.FitInterrupted) as info:
        T.fit(net, x, y, 0.1, epochs=4, batch_size=8, seed=0)
    # the step was applied and counted; the interrupt came after it, before the epoch's record
    assert info.value.steps == 3 and len(info.value.epoch_losses) == 3
    np.testing.assert_array_equal(_bits(net.params), _bits(ref.params))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_fit_leaves_a_user_sigint_handler_in_place():
    import signal

    seen = []

    def handler(signum, frame):
        seen.append(signum)

    old = signal.signal(signal.SIGINT, handler)
    try:
        net = lg.Network.build([3, 4, 2], activation="tanh", seed=7)
        rng = np.random.default_rng(16)
        net.fit(rng.standard_normal((8, 3)), rng.standard_normal((8, 2)), 0.1, epochs=2, batch_size=4)
        assert signal.getsignal(signal.SIGINT) is handler
    finally:
        signal.signal(signal.SIGINT, old)


@pytest.mark.parametrize("stop_at", [1, 4, 7])
def test_fit_interrupted_leaves_the_last_completed_step(monkeypatch, stop_at):
    from loggrad.train import FitInterrupted, fit

    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((24, 4)), rng.standard_normal((24, 3))
    widths = [4, 6, 3]
    net = lg.Network.build(widths, activation="tanh", seed=5)
    ref = lg.Network.build(widths, activation="tanh", seed=5)
    # the same steps, uninterrupted: stop_at - 1 of them complete (3 per epoch)
    done = stop_at - 1
    full_epochs = done // 3
    if full_epochs:
        fit(ref, x, y, 0.1, epochs=full_epochs, batch_size=8, seed=0)
    rng_ref = np.random.default_rng(0)
    for _ in range(full_epochs):
        rng_ref.permutation(24)
    order = rng_ref.permutation(24)
    for k in range(done % 3):
        idx = order[8 * k:8 * k + 8]
        ref.sgd_step(x[idx], y[idx], 0.1)

    calls = {"n": 0}
    real_backward = net.backward

    def backward(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == stop_at:
            raise KeyboardInterrupt
        return real_backward(*args, **kwargs)

    monkeypatch.setattr(net, "backward", backward)
    with pytest.raises(FitInterrupted) as info:
        fit(net, x, y, 0.1, epochs=5, batch_size=8, seed=0)
    exc = info.value
    assert isinstance(exc, KeyboardInterrupt)
    assert exc.steps == done and len(exc.history.loss) == full_epochs
    assert len(exc.epoch_losses) == done % 3
    np.testing.assert_array_equal(_bits(net.params), _bits(ref.params))


def test_step_near_float64_limit_succeeds_bitwise():
    # A weight beyond 2^1022 sends the step through the engine's copy (the
    # in-place bound no longer holds); it still succeeds when every value is finite.
    rng = np.random.default_rng(12)
    widths = [30, 40, 5]
    net = lg.Network.build(widths, activation="tanh", seed=0)
    net.params[7] = 1.7e308
    net.params[8] = -1.7e308
    gp = _random_gradient(rng, net.param_count, -60, 2)
    want_params, want = reference_step(net.params.copy(), gp, widths, 0.5, clip_value=3.0)
    rep = _engine_step(net, gp, 0.5, clip_value=3.0)
    assert_same_step(net.params, rep, want_params, want)


def test_step_report_of_layers_without_gradient_and_lr_at_zero():
    import dataclasses

    # relu layer 2 closed for every input (bias -50): layers 0..2 get an exactly zero gradient,
    # so no update at all, and none lost (the report's lost_update counts the same way)
    rng = np.random.default_rng(6)
    ws = [rng.standard_normal((3, 3)) for _ in range(5)]
    bs = [np.zeros(3) for _ in range(5)]
    bs[2][:] = -50.0
    net = lg.Network(ws, bs, "relu")
    x = rng.standard_normal((3, 3))
    before = net.params.copy()
    # the smallest positive lr is a valid one; 0 is not, and changes nothing
    with pytest.raises(ValueError, match="lr must be a positive finite number, got 0"):
        net.sgd_step(x, np.zeros((3, 3)), 0.0)
    np.testing.assert_array_equal(net.params, before)
    rep = net.sgd_step(x, np.zeros((3, 3)), 5e-324)
    np.testing.assert_array_equal(rep.nonzero_updates[:3], 0)
    np.testing.assert_array_equal(rep.fraction_unchanged[:3], 0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rep.clipped = True  # type: ignore[misc]


def test_step_report_repr_is_a_bounded_summary():
    # 2,000 layers: the dataclass's own repr printed every per-layer array in full
    net = lg.Network.build([4] * 2001, activation="tanh", seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    rep = net.copy().sgd_step(x, y, 1e-30)
    text = repr(rep)
    assert len(text) < 400 and text.startswith("StepReport(2000 layers")
    lost, nz = int(rep.unchanged.sum()), int(rep.nonzero_updates.sum())
    assert lost > 0 and f"{lost} of {nz}" in text
    worst = int(np.argmax(rep.fraction_unchanged))
    assert f"layer {worst}: {rep.fraction_unchanged[worst]:.1%}" in text
    um = rep.update_log10_max[np.isfinite(rep.update_log10_max)]
    assert f"{um.min():.2f} .. {um.max():.2f}" in text
