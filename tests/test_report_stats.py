"""The engine's per-layer statistics (loggrad._core.backward_stats) against independent references."""

from __future__ import annotations

import importlib
import math

import mpmath
import numpy as np
import pytest

import loggrad as lg
from loggrad import _core
from loggrad.report import report

from diag_reference import mp_layer_stats, numpy_layer_stats

R = importlib.import_module("loggrad.report")


def gaussian_net(depth, width, act, scale=1.0, bias=0.0, seed=0):
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((width, width)) * scale / math.sqrt(width) for _ in range(depth)]
    bs = [rng.standard_normal(width) * bias for _ in range(depth)]
    return lg.Network(ws, bs, act)


@pytest.mark.parametrize("act,scale,bias", [("relu", math.sqrt(2) * 1.25, 0.0), ("relu", math.sqrt(2) * 0.8, 0.05),
                                            ("tanh", 1.5, 0.1), ("sigmoid", 1.0, 0.0), ("gelu", 1.4, 0.1),
                                            ("leaky_relu", 1.3, 0.0), ("elu", 1.2, 0.2), ("softplus", 1.2, 0.1)])
def test_each_statistic_against_numpy_renormalised_backprop(act, scale, bias):
    # depth 120, width 16: the forward pass stays in float64, the backward signal may not
    net = gaussian_net(120, 16, act, scale=scale, bias=bias, seed=3)
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((5, 16)), rng.standard_normal((5, 16))
    rep = report(net, x, y)
    ref = numpy_layer_stats(net, x, y, "mse")
    tol = dict(rtol=0, atol=1e-9)
    np.testing.assert_allclose(rep.act_norm, ref["act_norm"], **tol)
    np.testing.assert_allclose(rep.act_rms, ref["act_rms"], **tol)
    np.testing.assert_allclose(rep.delta_norm, ref["delta"], **tol)
    np.testing.assert_allclose(rep.grad_norm_w, ref["dW"], **tol)
    np.testing.assert_allclose(rep.grad_norm_b, ref["db"], **tol)
    np.testing.assert_allclose(rep.grad_max, ref["gmax"], **tol)
    # the smallest entry is the most cancelled sum W^T delta: a rounding-level change of f' moves its
    # log10 by ~1e-9 (two tanh' kernels within 1 and 2.3 ulp differ there by 1.3e-9), so 10x looser
    np.testing.assert_allclose(rep.grad_min, ref["gmin"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(rep.act_deriv, ref["fmean"], rtol=0, atol=1e-8)
    np.testing.assert_array_equal(rep.act_deriv_zero, ref["fzero"])
    np.testing.assert_array_equal(rep.act_saturated, ref["fsat"])
    # one sample: ||dW|| = ||delta|| ||a|| exactly (up to rounding)
    r1 = report(net, x[:1], y[:1])
    np.testing.assert_allclose(r1.grad_norm_w, r1.delta_norm + r1.act_norm, rtol=0, atol=1e-12)


def test_short_deep_chain_beyond_float64_against_mpmath():
    # sigmoid, depth 700, width 3: delta goes far below 1e-308 (10^-370 and less)
    mpmath.mp.dps = 30
    net = gaussian_net(700, 3, "sigmoid", scale=math.sqrt(3.0), bias=0.2, seed=12)
    rng = np.random.default_rng(13)
    x, y = rng.standard_normal((2, 3)), np.zeros((2, 3))
    rep = report(net, x, y)
    ref = mp_layer_stats(net, x, y, "mse")
    assert min(ref["delta"]) < -360
    for key, got in (("delta", rep.delta_norm), ("act_norm", rep.act_norm), ("dW", rep.grad_norm_w),
                     ("db", rep.grad_norm_b), ("fmean", rep.act_deriv)):
        np.testing.assert_allclose(got, ref[key], rtol=0, atol=1e-9, err_msg=key)
    # the float64 flush counts: every gradient entry below 2^-1075 in absolute value
    assert rep.f64_underflow[0] == 1.0 and rep.verdict == "vanishing"


def _mask_counts(vals: np.ndarray, dtype) -> tuple[int, int, int]:
    """(flushed, subnormal, overflowed) nonzero float64 values when cast to dtype (round to nearest even)."""
    with np.errstate(under="ignore", over="ignore", invalid="ignore"):
        c = vals.astype(dtype)
    info = np.finfo(dtype)
    nz = vals != 0
    flushed = nz & (c == 0)
    over = np.isinf(c.astype(np.float64))
    sub = nz & ~flushed & (np.abs(vals) < float(info.tiny))
    return int(flushed.sum()), int(sub.sum()), int(over.sum())


def _dtypes():
    out = [("f32", np.float32), ("f16", np.float16)]
    try:
        import ml_dtypes

        out.append(("bf16", ml_dtypes.bfloat16))
    except ImportError:
        pass
    return out


def test_format_counts_against_numpy_casts():
    # one sample whose units span 1e-55 .. 1e44: layer 0's weight gradient delta_0 x^T spreads over
    # every format's flush, subnormal and overflow ranges; the deeper layers sit near 1e44
    rng = np.random.default_rng(10)
    ws = [np.diag(rng.uniform(0.5, 2.0, 6)) @ np.linalg.qr(rng.standard_normal((6, 6)))[0] for _ in range(8)]
    net = lg.Network(ws, [rng.standard_normal(6) * 1e-3 for _ in range(8)], "identity")
    x = rng.uniform(1, 2, (1, 6)) * 10.0 ** np.array([[-55.0, -42.0, -20.0, 0.0, 30.0, 44.0]])
    rep = report(net, x, loss="sum")
    g = net.backward(x, loss="sum", precision="float64").params
    assert np.all(np.isfinite(g)) and np.all(g != 0)
    sizes = 6 * 7
    for prefix, dt in _dtypes():
        for l in range(8):
            f, s, o = _mask_counts(g[l * sizes : (l + 1) * sizes], dt)
            got = [getattr(rep, f"{prefix}_{k}")[l] * sizes for k in ("underflow", "subnormal", "overflow")]
            assert got == [f, s, o], (prefix, l)
    assert rep.f32_underflow[0] > 0 and rep.f32_subnormal[0] > 0 and rep.f32_overflow[0] > 0
    assert rep.f16_underflow[0] > 0 and rep.f16_overflow.min() > 0


def test_float64_subnormal_counts_against_numpy():
    # dW entries around 2^-1060: float64 keeps them, subnormal (fewer digits)
    ws = [np.eye(2) * 2.0**-530, np.eye(2)]
    net = lg.Network(ws, None, "identity")
    x = np.array([[2.0**-530, 3.0 * 2.0**-531]])
    rep = report(net, x, loss="sum")
    g = net.backward(x, loss="sum", precision="float64").params
    # dW_1 = delta_1 a_1^T with a_1 = W_0 x ~ 2^-1060
    sub1 = np.sum((g[6:12] != 0) & (np.abs(g[6:12]) < np.finfo(np.float64).tiny))
    assert sub1 == 4 and rep.f64_subnormal[1] * 6 == sub1 and rep.f64_subnormal[0] == 0


def test_statistics_do_not_depend_on_the_thread_count():
    net = gaussian_net(60, 48, "tanh", scale=1.3, bias=0.1, seed=7)
    x = np.random.default_rng(8).standard_normal((64, 48))
    ya = np.zeros((64, 48))
    old = _core.num_threads()
    try:
        outs = []
        for n in (1, 2, 4):
            _core.set_num_threads(n)
            outs.append(_core.backward_stats(net._arch, net._params, x, "mse", ya, None)[3])
    finally:
        _core.set_num_threads(old)
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_stats_field_count_and_bad_input():
    net = gaussian_net(3, 4, "tanh")
    res = _core.backward_stats(net._arch, net._params, np.ones((2, 4)), "sum")
    assert res[3].shape == (3, _core.LAYER_STATS_FIELDS)
    assert _core.SATURATED_DERIVATIVE == R.SATURATED_DERIVATIVE
    with pytest.raises(ValueError, match="x must have shape"):
        _core.backward_stats(net._arch, net._params, np.ones((2, 5)), "sum")
    with pytest.raises(ValueError, match="needs y"):
        _core.backward_stats(net._arch, net._params, np.ones((2, 4)), "mse")
    with pytest.raises(ValueError, match="parameter block"):
        _core.backward_stats(net._arch, net._params[:-1], np.ones((2, 4)), "sum")


def test_residual_layers_gradients_and_no_theory():
    rng = np.random.default_rng(50)
    net = lg.Network([rng.standard_normal((16, 16)) / 4 for _ in range(50)], None, "tanh", residual=0.5)
    x = rng.standard_normal((3, 16))
    rep = report(net, x, np.zeros((3, 16)))
    g = net.backward(x, np.zeros((3, 16)))
    want = [float(np.log10(np.linalg.norm(g.weights[l].to_numpy()))) for l in range(50)]
    np.testing.assert_allclose(rep.grad_norm_w, want, rtol=0, atol=1e-12)
    # delta_l = dL/dz_l: the bias gradient is its column sum
    want_b = [float(np.log10(np.linalg.norm(g.biases[l].to_numpy()))) for l in range(50)]
    np.testing.assert_allclose(rep.grad_norm_b, want_b, rtol=0, atol=1e-12)
    assert any("residual layer(s)" in n for n in rep.notes)


@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_residual_theory_against_measurement(act):
    # s = 1/sqrt(L): the mean-field profile of residual chains predicts the forward rms within a
    # tenth of a decade and ||delta|| within half a decade over 300 layers of width 64
    L, n = 300, 64
    rng = np.random.default_rng(0)
    ws = [rng.standard_normal((n, n)) * math.sqrt(2 / n) for _ in range(L)]
    bs = [rng.standard_normal(n) * 0.1 for _ in range(L)]
    net = lg.Network(ws, bs, act, residual=1 / math.sqrt(L))
    x, y = rng.standard_normal((8, n)), rng.standard_normal((8, n))
    rep = report(net, x, y)
    assert np.max(np.abs(rep.act_rms - rep.theory_act_line())) < 0.1
    assert np.max(np.abs(rep.delta_norm - rep.theory_line())) < 0.5
    assert rep.theory_slope == pytest.approx(np.mean(rep.theory_delta_inc))
    assert any("mean-field theory of residual chains" in nt for nt in rep.notes)
    # relu: the backward weights correlate with the forward gates; no prediction is offered
    relu = report(lg.Network(ws, bs, "relu", residual=1 / math.sqrt(L)), x, y)
    assert relu.theory_slope is None and relu.theory_line() is None


def test_float64_pass_statistics_against_its_own_gradients():
    # deep sigmoid: a real float64 pass flushes the input side to 0 (the exact pass does not)
    net = gaussian_net(700, 8, "sigmoid", scale=1.0, bias=0.0, seed=60)
    rng = np.random.default_rng(61)
    x, y = rng.standard_normal((3, 8)), rng.standard_normal((3, 8))
    g = net.backward(x, y, precision="float64", input_grad=False)
    stats = _core.backward_stats(net._arch, net._params, x, "mse", y, None, "float64")[3]
    dW = _tensor_cols(stats, "dW")
    tiny = np.finfo(np.float64).tiny
    for l in (0, 300, 450, 500, 699):
        w = np.asarray(g.weights[l])
        assert dW["zeros"][l] == np.count_nonzero(w == 0), l
        assert dW["subnormal"][l] == np.count_nonzero((w != 0) & (np.abs(w) < tiny)), l
        if np.any(w):
            m = np.abs(w).max()  # scaled: the squares of subnormal entries would underflow
            assert dW["norm"][l] == pytest.approx(math.log10(m) + math.log10(np.linalg.norm(w / m)), abs=1e-9)
    rep = report(net, x, y, low_precision=True)
    lp = rep.low_precision["float64"]
    zeros = np.array([np.mean(np.asarray(g.weights[l]) == 0) for l in range(700)])
    np.testing.assert_array_equal(lp["zero_frac"], zeros)
    assert lp["first_zero_layer"] == int(np.flatnonzero(zeros == 1.0)[-1])
    assert np.all(np.isfinite(rep.grad_norm_w))  # the exact pass keeps every layer
    assert "a real float64 backward pass" in rep.table(rich=False)


def _tensor_cols(stats, name):
    t = R._tensor(np.asarray(stats), name)
    return {"zeros": t["zeros"], "subnormal": t["subnormal"][:, 0], "norm": t["norm"]}
