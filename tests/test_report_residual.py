"""lg.report on residual networks: numbers against a numpy backprop, theory, text and JSON."""

import math

import numpy as np
import pytest

import loggrad as lg
from loggrad.init import init_layers
from loggrad.report import Report

from test_demo_residual import reference_log10_norms


@pytest.fixture(scope="module")
def tanh_case():
    L, n = 200, 16
    net = lg.Network.build([n] * (L + 1), "tanh", init="lecun_normal", seed=0, residual=1.0)
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((4, n)), rng.standard_normal((4, n))
    return net, x, y, lg.report(net, x, y, lr=1e-3)


def test_residual_tanh_report_numbers(tanh_case):
    net, x, y, rep = tanh_case
    ws, _ = init_layers(net.widths, "lecun_normal", seed=0)
    ref_w, _ = reference_log10_norms(ws, "tanh", x, y, 1.0)
    np.testing.assert_allclose(rep.grad_norm_w, ref_w, rtol=0, atol=1e-9)
    # residual gradients grow toward the input (the Jacobian I + s W^T diag(f') is never below one in
    # mean square): no vanishing verdict, float64 in range at this depth
    assert rep.delta_norm[0] > rep.delta_norm[-1]
    assert rep.slope > 0 and rep.verdict != "vanishing"
    assert rep.f64_fail_layer is None


def test_residual_tanh_report_theory(tanh_case):
    net, x, _, rep = tanh_case
    from loggrad import theory

    assert rep.theory_slope is not None
    lo, hi = rep.slope_ci
    assert lo <= rep.theory_slope <= hi
    # the theory is the mean-field residual profile at the network's own sigma_w and data
    w = np.array(net.params).reshape(net.depth, -1)[:, : 16 * 16]
    sw = math.sqrt(float(np.mean(w[1:-1] ** 2)) * 16)
    prof = theory.residual_profile("tanh", sw, 0.0, 1.0, net.depth, p0=float(np.mean(x * x)), m0=float(np.mean(x)))
    assert rep.chi1 == pytest.approx(float(np.mean(prof.chi)), rel=1e-9)


def test_residual_tanh_report_text_and_json(tanh_case):
    _, _, _, rep = tanh_case
    text = rep.table(max_rows=6, rich=False)
    assert "200 residual layer(s)" in text
    assert "q* nan" not in text and "theory (finite width)" not in text
    assert "theory (mean field, residual layers)" in text and "no fixed point" in text
    back = Report.from_json(rep.to_json())
    for k, v in rep.summary().items():
        w = back.summary()[k]
        assert (isinstance(v, float) and math.isnan(v) and math.isnan(w)) or w == v, k
    assert back.table(max_rows=6, rich=False) == text


def test_rezero_layers_explained():
    """s = 0: the residual net is the identity; its branch gradients are exactly zero, and the report says why."""
    net = lg.Network.build([8] * 21, "tanh", init="lecun_normal", seed=1, residual=0.0)
    x = np.random.default_rng(0).standard_normal((3, 8))
    rep = lg.report(net, x, np.zeros((3, 8)))
    assert np.all(np.isneginf(rep.grad_norm_w))
    assert any("s = 0" in n and "by construction" in n for n in rep.notes)
    g = net.backward(x, np.zeros((3, 8)), loss="mse", precision="float64")
    np.testing.assert_allclose(np.asarray(g.input), 2 * x / x.size, rtol=1e-15)  # dL/dx passes the skips


def test_residual_relu_report_has_no_theory_and_says_so():
    net = lg.Network.build([8] * 41, "relu", init="he_normal", seed=2, residual=0.5)
    rep = lg.report(net, np.random.default_rng(1).standard_normal((3, 8)), np.zeros((3, 8)))
    assert rep.theory_slope is None
    assert any("residual layer(s)" in n for n in rep.notes)
