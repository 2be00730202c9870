"""loggrad.theory at its edges: the q -> 0 and q -> inf limits of its Gaussian averages,
the activations' conventions at their kinks (those of the engine), fixed points that
start at zero, and depth 0 and 1 of the growth and spectrum formulas.

References: one-sided limits taken by hand, the engine's own float64 activations and
derivatives (a one-unit network), and numpy's Gauss-Hermite rule for smooth averages.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import loggrad as lg
from loggrad import theory as T

TINY = np.finfo(np.float64).tiny


@pytest.mark.parametrize("method", ["split", "hermite"])
def test_expectation_at_q_zero_is_the_mean_of_the_one_sided_values(method):
    # sqrt(q) z -> 0 from z's side: a step (relu') averages its two sides; a smooth f gives f(0)
    step = lambda x: np.where(x > 0, 1.0, 0.0)  # noqa: E731
    assert T.gaussian_expectation(step, 0.0, method=method) == 0.5
    assert T.gaussian_expectation(lambda x: np.where(x > 0, 3.0, -1.0), 0.0, method=method) == 1.0
    assert T.gaussian_expectation(lambda x: np.cos(x) + 0 * x, 0.0, method=method) == 1.0
    # so chi1 of relu is sigma_w^2 / 2 at q = 0 by either rule, as the closed form says
    for act, half in (("relu", 0.5), ("leaky_relu", 0.5 * (1 + T.LEAKY_RELU_SLOPE**2))):
        assert T.chi1(act, 1.3, 0.0, q=0.0, method=method) == pytest.approx(1.69 * half, rel=1e-15)


def test_expectation_at_q_infinite_is_the_documented_limit():
    # "(f(+inf) + f(-inf))/2, evaluated at +-1e300"
    assert T.gaussian_expectation(np.tanh, math.inf) == 0.0
    assert T.gaussian_expectation(lambda x: np.tanh(x) ** 2, math.inf) == 1.0
    assert T.gaussian_expectation(lambda x: np.maximum(x, 0.0), math.inf) == 0.5e300
    assert T.gaussian_expectation(lambda x: np.where(x > 0, 1.0, 0.0), math.inf) == 0.5


@pytest.mark.parametrize("act", ["identity", "relu", "leaky_relu", "elu", "selu"])
def test_kink_conventions_are_the_engines(act):
    # piecewise activations: value and derivative at 0, -0, the smallest normals and a
    # few points each side, as the engine computes them in float64 (a one-unit network)
    x = np.array([0.0, -0.0, TINY, -TINY, 5e-324, -5e-324, 0.5, -0.5, 3.0, -3.0])
    net = lg.Network([np.array([[1.0]])], None, act)
    f = net.forward(x[:, None], precision="float64")[:, 0]
    df = net.backward(x[:, None], loss="sum", precision="float64").input[:, 0]
    np.testing.assert_allclose(T._PHI[act](x), f, rtol=4e-16, atol=0)
    np.testing.assert_allclose(T._DPHI[act](x), df, rtol=4e-16, atol=0)


def test_fixed_point_of_a_chaotic_homogeneous_map_from_zero():
    # relu at sigma_w^2 > 2, sigma_b = 0: q = 0 maps to 0 (a fixed point); any q > 0 grows without bound
    assert T.fixed_point("relu", 1.6, 0.0, q0=0.0) == 0.0
    assert T.length_map(0.0, "relu", 1.6, 0.0) == 0.0
    assert T.fixed_point("relu", 1.6, 0.0, q0=1e-300) == math.inf
    assert T.fixed_point("relu", 1.6, 0.0, q0=1.0) == math.inf
    assert T.fixed_point("relu", 1.6, 0.1, q0=0.0) == math.inf  # a bias moves q off 0


@pytest.mark.parametrize("act,sw,sb", [("tanh", 1.2, 0.1), ("relu", 1.3, 0.0), ("sigmoid", 2.0, 0.3)])
def test_growth_over_zero_one_and_more_layers(act, sw, sb):
    per = T.log10_gradient_growth_per_layer(act, sw, sb)
    assert T.log10_gradient_growth(act, sw, sb, 0) == 0.0
    assert T.log10_gradient_growth(act, sw, sb, 1) == per
    assert T.log10_gradient_growth(act, sw, sb, 7) == pytest.approx(7 * per, rel=1e-15)


def test_jacobian_moments_of_zero_and_one_layer():
    # one tanh layer at q*: mean = chi1 = sigma_w^2 E[phi'^2], variance = mean^2 E[phi'^4] / E[phi'^2]^2,
    # the averages by numpy's Gauss-Hermite rule (tanh' is smooth: 150 nodes are exact to rounding)
    sw, sb = 1.1, 0.2
    assert T.jacobian_spectrum_moments("tanh", sw, sb, 0) == (1.0, 0.0)
    q = T.fixed_point("tanh", sw, sb)
    z, w = np.polynomial.hermite_e.hermegauss(150)
    w = w / math.sqrt(2 * math.pi)
    d = 1.0 / np.cosh(math.sqrt(q) * z) ** 2
    mu1, mu2 = float(w @ d**2), float(w @ d**4)
    mean, var = T.jacobian_spectrum_moments("tanh", sw, sb, 1)
    assert mean == pytest.approx(sw * sw * mu1, rel=1e-12)
    assert var == pytest.approx((sw * sw * mu1) ** 2 * mu2 / mu1**2, rel=1e-12)
    mean3, var3 = T.jacobian_spectrum_moments("tanh", sw, sb, 3)
    assert mean3 == pytest.approx(mean**3, rel=1e-12) and var3 == pytest.approx(mean3**2 * 3 * mu2 / mu1**2, rel=1e-12)


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_correlation_map_takes_a_correlation_past_one_as_one(act):
    # a correlation formed with rounding can leave [-1, 1] by an ulp or more: the nearer end is meant
    sw, sb = 1.3, 0.2
    one, minus = T.correlation_map(1.0, act, sw, sb), T.correlation_map(-1.0, act, sw, sb)
    assert one == pytest.approx(1.0, rel=1e-6)
    for c in (1.0 + 2.0**-52, 1.0 + 1e-9, 1.5):
        assert T.correlation_map(c, act, sw, sb) == one
        assert T.correlation_map(-c, act, sw, sb) == minus


def test_scaled_identity_growth_over_zero_one_and_more_layers():
    assert T.scaled_identity_log10(0.5, 0) == 0.0
    assert T.scaled_identity_log10(0.5, 1) == math.log10(0.5)
    assert T.scaled_identity_log10(-2.0, 3) == pytest.approx(3 * math.log10(2.0), rel=1e-15)
    assert T.scaled_identity_log10(0.0, 0) == 0.0 and T.scaled_identity_log10(0.0, 1) == -math.inf
    # against the chain itself: one layer W = c I
    net = lg.Network([0.5 * np.eye(3)], None, "identity")
    y = net.forward(np.ones((1, 3)))
    assert float(y[0, 0].log10()) == T.scaled_identity_log10(0.5, 1)
