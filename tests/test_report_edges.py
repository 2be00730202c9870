"""loggrad.report at the edges of its figures: fixed points with a bias, a q that settles
or does not, a two-layer net's forward change, residual layers with s = 0, the summary's
low-precision lines, nets with exactly zero weights, and a report without a growth rate.

References: the length map iterated to its fixed point (loggrad.theory, a separate
computation from the report's closed forms), a plain numpy forward pass, and the
report's own documented fields.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import loggrad as lg
from loggrad import theory as T

from contract import log10_tol


def _gauss_net(widths, act, sw, sb, seed=0):
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((o, i)) * sw / math.sqrt(i) for i, o in zip(widths[:-1], widths[1:])]
    bs = [rng.standard_normal(o) * sb for o in widths[1:]]
    return lg.Network(ws, bs, act)


def _iterated_fixed_point(act, sw, sb, q=1.0, n=20000):
    for _ in range(n):
        q = T.length_map(q, act, sw, sb)
    return q


@pytest.mark.parametrize("act,sw", [("relu", 1.2), ("identity", 0.8), ("leaky_relu", 1.1)])
def test_q_star_of_a_contracting_homogeneous_map_with_a_bias(act, sw):
    # sigma_w below criticality and sigma_b > 0: the length map q -> a q + sigma_b^2 (a < 1)
    # has the finite fixed point sigma_b^2 / (1 - a), which iterating the map reaches
    net = _gauss_net([64] * 6, act, sw, 0.3)
    rep = lg.report(net, np.random.default_rng(1).standard_normal((8, 64)))
    assert rep.q_star is not None and math.isfinite(rep.q_star)
    ref = _iterated_fixed_point(act, rep.sigma_w, rep.sigma_b)
    assert rep.q_star == pytest.approx(ref, rel=1e-10)


def test_q_star_is_infinite_where_the_map_does_not_contract():
    rep = lg.report(_gauss_net([64] * 6, "relu", 1.6, 0.3), np.ones((4, 64)))
    assert rep.q_star == math.inf  # a = sigma_w^2 / 2 > 1: q grows without bound


def _settle_notes(rep):
    return [n for n in rep.notes if "has not settled" in n]


def test_a_q_that_settles_gets_no_note_and_flat_predictions_past_it():
    # tanh with sigma_b = 0.3: q reaches its fixed point within a few dozen layers
    L = 120
    net = _gauss_net([48] * (L + 1), "tanh", 1.3, 0.3)
    rep = lg.report(net, np.random.default_rng(2).standard_normal((4, 48)))
    assert _settle_notes(rep) == []
    q_star = T.fixed_point("tanh", rep.sigma_w, rep.sigma_b)
    # past the transient the predicted rms of a_l is that of phi at q*, for every layer
    e_phi2 = (T.length_map(q_star, "tanh", rep.sigma_w, rep.sigma_b) - rep.sigma_b**2) / rep.sigma_w**2
    np.testing.assert_allclose(rep.theory_act_rms[-20:], 0.5 * math.log10(e_phi2), rtol=0, atol=1e-8)


def test_a_q_that_does_not_settle_gets_the_note():
    # tanh at sigma_w = 1, sigma_b = 0 (the critical point): q decays like 1/l, never settles
    net = _gauss_net([48] * 401, "tanh", 1.0, 0.0)
    rep = lg.report(net, np.random.default_rng(2).standard_normal((4, 48)))
    assert len(_settle_notes(rep)) == 1


def test_forward_change_of_a_two_layer_net_against_numpy():
    rng = np.random.default_rng(3)
    ws = [rng.standard_normal((30, 20)) * 3.0, rng.standard_normal((10, 30)) * 0.01]
    bs = [np.zeros(30), np.zeros(10)]
    net = lg.Network(ws, bs, "tanh")
    x = rng.standard_normal((5, 20))
    rep = lg.report(net, x)
    a1 = np.tanh(x @ ws[0].T)
    out = np.tanh(a1 @ ws[1].T)
    want = 0.5 * math.log10(np.mean(out**2)) - 0.5 * math.log10(np.mean(a1**2))
    assert abs(want) > 1.0  # a change worth seeing: the second layer shrinks the signal
    # both log10 rms within 200 u (the products, the tanh, the mean and the log of each side)
    tol = log10_tol(rep.output_rms, 200) + log10_tol(rep.act_rms[1], 200)
    assert rep.forward_change == pytest.approx(want, abs=tol)
    assert rep.output_rms - rep.act_rms[1] == pytest.approx(rep.forward_change, abs=0)


def test_one_layer_net_has_no_forward_change():
    rep = lg.report(lg.Network.build([5, 3], seed=0), np.ones((2, 5)))
    assert rep.forward_change == 0.0


def test_the_note_counts_residual_layers_with_s_zero():
    net = lg.Network.build([16] * 6, seed=0, residual=[0.0, 0.5, 0.0, None, 0.0])
    rep = lg.report(net, np.random.default_rng(0).standard_normal((3, 16)))
    rezero = [n for n in rep.notes if "with s = 0" in n]
    assert len(rezero) == 1 and rezero[0].startswith("3 residual layer(s) with s = 0")
    assert any(n.startswith("4 residual layer(s):") for n in rep.notes)
    # their branch gradients are exactly zero, as the note says
    for l in (0, 2, 4):
        assert rep.grad_norm_w[l] == -math.inf and rep.grad_norm_b[l] == -math.inf
    rep1 = lg.report(lg.Network.build([16] * 3, seed=0, residual=0.5), np.ones((2, 16)))
    assert not any("with s = 0" in n for n in rep1.notes)


@pytest.mark.parametrize("depth,gain,zero,subnormal", [(20, 0.3, False, False), (35, 0.3, False, True),
                                                      (60, 0.1, True, False)])
def test_summary_names_what_a_real_low_precision_pass_produced(depth, gain, zero, subnormal):
    # tanh at a small gain: the deeper the net, the more float32's backward pass loses
    net = lg.Network.build([16] * (depth + 1), seed=0, gain=gain)
    rep = lg.report(net, np.random.default_rng(0).standard_normal((2, 16)), low_precision=True)
    lines = rep.table().splitlines()
    for fmt, lp in rep.low_precision.items():
        line = next(s for s in lines if s.startswith(f"a real {fmt} backward pass: "))
        fz = lp["first_zero_layer"]
        if fz is None:
            assert "no layer's dW all zero" in line
        else:
            assert f"dW all zero from layer {fz} toward the input" in line
        n_sub = int(np.sum(np.asarray(lp["subnormal_frac"]) > 0))
        assert (f"subnormal (imprecise) entries in {n_sub} layer(s)" in line) == (n_sub > 0)
    f32 = rep.low_precision["float32"]  # the case each row is about
    assert (f32["first_zero_layer"] is not None) == zero
    assert bool(np.any(np.asarray(f32["subnormal_frac"]) > 0)) == subnormal


@pytest.mark.parametrize("widths", [[24] * 8, [24, 30, 20, 26, 24, 24, 30, 24]])  # equal and uneven layers
def test_theory_refuses_nets_with_more_than_one_percent_zero_weights(widths):
    x = np.random.default_rng(0).standard_normal((4, widths[0]))
    base = _gauss_net(widths, "tanh", 1.2, 0.0)  # zero biases: not zero weights
    assert lg.report(base, x).theory_slope is not None
    n_w = sum(o * i for i, o in zip(widths[:-1], widths[1:]))
    for frac, ok in ((0.009, True), (0.011, False)):
        p = base.params.copy()
        lay = base.layout
        w_idx = np.concatenate([np.arange(s, s + n) for s, n in zip(lay.starts, lay.weight_sizes)])
        zero = np.random.default_rng(1).choice(w_idx, int(frac * n_w), replace=False)
        p[zero] = 0.0
        net = lg.Network._from_block(widths, ["tanh"] * (len(widths) - 1), p)
        assert (lg.report(net, x).theory_slope is not None) == ok, frac


def test_fit_line_needs_a_growth_rate_and_two_measured_layers():
    net = lg.Network.build([16] * 12, seed=0)
    rep = lg.report(net, np.random.default_rng(0).standard_normal((2, 16)))
    line = rep.fit_line()
    assert line is not None and np.all(np.isfinite(line))
    assert dataclasses.replace(rep, slope=math.nan).fit_line() is None
    one = np.full(rep.depth, -math.inf)
    one[3] = rep.delta_norm[3]
    assert dataclasses.replace(rep, delta_norm=one).fit_line() is None
