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
import re

import numpy as np
import pytest

import importlib

import loggrad as lg
from loggrad import theory as T

from contract import log10_tol

R = importlib.import_module("loggrad.report")  # the module (lg.report is the function)


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


def _exact_lost(w: float, um: float, ue: int) -> bool:
    """float64 w - um 2^ue rounds back to w: exact rationals, rounded once by float() (ties to even)."""
    from fractions import Fraction

    return float(Fraction(w) - Fraction(um) * Fraction(2) ** ue) == w


def test_lost_updates_at_the_binade_edges_against_exact_rounding():
    # powers of two (the gap below is half the ulp above, except at the smallest normal,
    # where the subnormals below have the same spacing), subnormals, zero, ordinary values
    tiny = 2.0**-1022
    ws = [tiny, -tiny, 2 * tiny, -2 * tiny, 0.5 * tiny, 2.0**-1074, 3 * 2.0**-1074, 0.0, 1.0, -1.0, 0.75,
          2.0**-1000, tiny + 2.0**-1074, 2.0**1000, 1.5]
    w_all, um_all, ue_all = [], [], []
    for w in ws:
        k = max(math.frexp(w)[1] - 53, -1074) if w != 0 else -1074
        for ue in range(k - 3, k + 3):
            for um in (0.5, -0.5, 0.75, -0.75, 0.999):
                w_all.append(w)
                um_all.append(um)
                ue_all.append(ue)
    w_a, um_a, ue_a = np.array(w_all), np.array(um_all), np.array(ue_all, dtype=np.int64)
    got = R._lost_updates(w_a, um_a, ue_a)
    want = np.array([_exact_lost(w, m, e) for w, m, e in zip(w_all, um_all, ue_all)])
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(w_all[i], um_all[i], ue_all[i], bool(want[i])) for i in bad[:5]]
    assert want.any() and not want.all()


def test_a_long_table_shows_the_ends_and_evenly_spaced_layers():
    net = lg.Network.build([8] * 101, seed=0)
    rep = lg.report(net, np.ones((2, 8)))
    rows = [int(line.split()[0]) for line in rep.table(rich=False, max_rows=16).splitlines()[1:]
            if line.split() and line.split()[0].isdigit()]
    # 100 layers in 16 rows: the first and last three, and every 9th layer (99 = 11 steps of 9)
    assert rows == [0, 1, 2, 9, 18, 27, 36, 45, 54, 63, 72, 81, 90, 97, 98, 99]
    assert len(rep.table(rich=False, max_rows=None).splitlines()) > 100


def test_table_headers_name_their_columns():
    # a relu net: closed gates (f'=0) and, at a small gain and depth, float32 flushing
    net = _gauss_net([16] * 41, "relu", 0.3, 0.0)
    rep = lg.report(net, np.random.default_rng(0).standard_normal((2, 16)))
    lines = rep.table(rich=False).splitlines()
    head = re.split(r"\s{2,}", lines[0].strip())
    cells = re.split(r"\s{2,}", lines[1].strip())  # layer 0
    assert head[:3] == ["layer", "act", "log10 rms a"] and len(head) == len(cells)
    for attr, name in (("act_deriv_zero", "f'=0"), ("f32_underflow", "f32 ->0"), ("f64_overflow", "f64 ->inf")):
        assert name in head, (name, head)
        assert float(cells[head.index(name)]) == pytest.approx(getattr(rep, attr)[0], abs=0.005)
    assert rep.act_deriv_zero[0] > 0.1  # a column whose value is not the default 0


@pytest.mark.parametrize("digits,shown", [(12.0, False), (np.nextafter(12.0, 0.0), True)])
def test_conditioning_is_shown_below_twelve_digits_only(digits, shown):
    net = lg.Network.build([8] * 6, seed=0)
    rep = lg.report(net, np.ones((2, 8)), conditioning=True)
    g = np.full(rep.depth, 15.95)
    g[3] = digits
    r = dataclasses.replace(rep, grad_digits=g)
    text = r.table(rich=False)
    assert ("digits" in text.splitlines()[0].split()) == shown
    assert any(line.startswith("conditioning:") for line in text.splitlines()) == shown


def test_mean_field_line_without_a_correlation_fixed_point():
    # relu, sigma_b = 0, sigma_w < sqrt 2: q* = 0, so there is no correlation map to report
    rep = lg.report(_gauss_net([64] * 8, "relu", 1.2, 0.0), np.random.default_rng(0).standard_normal((4, 64)))
    assert rep.q_star == 0.0 and rep.c_star is None and rep.chi1 is not None
    line = next(s for s in rep.table(rich=False).splitlines() if s.startswith("mean field:"))
    assert line == (f"mean field: sigma_w {rep.sigma_w:.4f}, sigma_b {rep.sigma_b:.4f}, q* {rep.q_star:.4g}, "
                    f"chi1 {rep.chi1:.4f}")


def test_summary_names_where_a_low_precision_pass_overflows():
    # relu at twice the He gain: activations and gradients grow by ~4 per layer, past float32's 3e38
    net = lg.Network.build([16] * 81, activation="relu", init="he_normal", seed=0, gain=2.0)
    rep = lg.report(net, np.random.default_rng(0).standard_normal((2, 16)), low_precision=True)
    lines = rep.table(rich=False).splitlines()
    seen = 0
    for fmt, lp in rep.low_precision.items():
        line = next(s for s in lines if s.startswith(f"a real {fmt} backward pass: "))
        fn = lp["first_nonfinite_layer"]
        if fn is not None:
            assert f"inf/nan from layer {fn}" in line
            seen += 1
        elif lp["forward_overflow"]:
            assert "inf/nan in the forward pass" in line
            seen += 1
        else:
            assert "inf/nan" not in line
    assert seen >= 1


def test_plot_residual_panel_with_one_theory_line(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    # the output layer's relu gates all closed (bias -1e3): no delta theory line, the act one stays
    net = _gauss_net([32] * 10, "relu", 1.3, 0.0)
    b = net.biases[-1]
    b[...] = -1e3
    rep = lg.report(net, np.random.default_rng(0).standard_normal((4, 32)))
    assert rep.theory_line() is None and rep.theory_act_line() is not None
    ax = rep.plot(path=tmp_path / "a.png")
    assert len(ax.figure.axes) == 2 and (tmp_path / "a.png").stat().st_size > 0
    labels = [line.get_label() for line in ax.figure.axes[1].get_lines()]
    assert "rms a: measured - theory" in labels


def test_plot_into_the_callers_axes_saves_the_callers_figure(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    rep = lg.report(lg.Network.build([8] * 6, seed=0), np.ones((2, 8)))
    fig = Figure()
    ax = fig.subplots()
    assert rep.plot(ax=ax, path=tmp_path / "mine.png") is ax
    assert (tmp_path / "mine.png").stat().st_size > 0


def test_verdict_reasons_give_each_signals_interval():
    # tanh at a small gain: both signals shrink by many decades, with draw-to-draw spread
    L = 60
    net = _gauss_net([16] * (L + 1), "tanh", 0.6, 0.0, seed=4)
    rep = lg.report(net, np.random.default_rng(5).standard_normal((3, 16)))
    assert rep.verdict == "vanishing"
    _, (lo, hi), _, _ = R.growth_rate(rep.delta_norm)
    back = next(r for r in rep.verdict_reasons if r.startswith("|delta| toward the input"))
    assert f"(interval {lo * (L - 1):+.1f} .. {hi * (L - 1):+.1f})" in back
    _, (flo, fhi), _, _ = R.growth_rate(np.concatenate([rep.act_rms[1:], [rep.output_rms]]))
    fwd = next(r for r in rep.verdict_reasons if r.startswith("the forward signal"))
    assert f"(interval {-fhi * (L - 1):+.1f} .. {-flo * (L - 1):+.1f})" in fwd
    assert hi < lo + 10 and (hi - lo) * (L - 1) > 0.5  # an interval of some width: its ends can be told apart
