"""Mean-field theory of residual chains against Monte Carlo with loggrad itself.

The identity activation's recursions are exact in expectation at any width, so
their test is a plain statistical one (sample mean against the prediction, with
its standard error). For tanh and relu the comparison is at large width, where
the mean-field limit applies up to O(1/width).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import loggrad as lg
from loggrad import theory


def _grad_input_sq(net, x, G):
    g = net.backward(x, grad_output=G, precision="float64")
    return float(np.sum(g.input ** 2))


def _gaussian_net(width, depth, act, sw, sb, s, seed):
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((width, width)) * sw / math.sqrt(width) for _ in range(depth)]
    bs = [rng.standard_normal(width) * sb for _ in range(depth)]
    return lg.Network(ws, bs, act, residual=s)


def test_identity_gradient_factor_is_exact_in_expectation():
    width, depth, s, sw, seeds = 32, 30, 0.5, 1.0, 300
    G = np.zeros((1, width))
    G[0, 0] = 1.0
    x = np.ones((1, width))
    vals = np.array([_grad_input_sq(_gaussian_net(width, depth, "identity", sw, 0.0, s, seed=k), x, G)
                     for k in range(seeds)])
    predicted = 10 ** (2 * theory.residual_log10_gradient_growth("identity", sw, 0.0, s, depth))
    assert predicted == pytest.approx((1 + s * s * sw * sw) ** depth, rel=1e-12)
    se = vals.std(ddof=1) / math.sqrt(seeds)
    assert abs(vals.mean() - predicted) < 4 * se, (vals.mean(), predicted, se)
    # and the test has power: a factor 1 + s^2 sigma_w^2 / 2 (relu's) or no growth is far outside
    assert abs(vals.mean() - (1 + s * s * sw * sw / 2) ** depth) > 8 * se
    assert predicted / vals.mean() < 1.2


@pytest.mark.parametrize("act, sw, sb, s", [("tanh", 1.5, 0.1, 0.7), ("relu", math.sqrt(2), 0.0, 0.5)])
def test_forward_length_profile(act, sw, sb, s):
    # Per network, the units share their weights across rows: independent networks are the samples.
    width, depth, batch, seeds = 512, 10, 8, 12
    x = np.random.default_rng(2).standard_normal((batch, width))
    prof = theory.residual_profile(act, sw, sb, s, depth, p0=float(np.mean(x ** 2)), m0=float(np.mean(x)))
    p = np.empty((seeds, depth))
    for k in range(seeds):
        net = _gaussian_net(width, depth, act, sw, sb, s, seed=100 + k)
        a = x
        for l in range(depth):  # the network's own pass, layer by layer (a test, not a hot path)
            one = lg.Network([np.asarray(net.weights[l])], [np.asarray(net.biases[l])], act, residual=s)
            a = one.forward(a, precision="float64")
            p[k, l] = np.mean(a ** 2)
    mean, se = p.mean(0), p.std(0, ddof=1) / math.sqrt(seeds)
    # within 4 standard errors, plus 1% for O(1/width) effects
    assert np.all(np.abs(mean - prof.p[1:]) < 4 * se + 0.01 * prof.p[1:]), (mean, prof.p[1:], se)
    # power: the length of a plain (non-residual) chain is far off
    assert abs(mean[-1] - prof.p[1]) > 10 * se[-1]


@pytest.mark.parametrize("act, sw, sb, s", [("tanh", 1.2, 0.0, 0.8), ("tanh", 2.0, 0.3, 0.5), ("sigmoid", 1.0, 0.0, 1.0)])
def test_gradient_growth_against_monte_carlo(act, sw, sb, s):
    # An isotropic upstream gradient per network (the mean-field average is over it too).
    width, depth, seeds = 256, 16, 32
    x = np.random.default_rng(3).standard_normal((1, width))
    vals = []
    for k in range(seeds):
        G = np.random.default_rng(1000 + k).standard_normal((1, width))
        vals.append(_grad_input_sq(_gaussian_net(width, depth, act, sw, sb, s, seed=10 + k), x, G / np.linalg.norm(G)))
    pred = 2 * theory.residual_log10_gradient_growth(act, sw, sb, s, depth, p0=float(np.mean(x ** 2)))
    got = math.log10(np.mean(vals))
    # plain mean-field of a non-residual chain predicts something else entirely: the test tells them apart
    plain = depth * math.log10(theory.chi1(act, sw, sb, q=sw * sw * float(np.mean(x ** 2)) + sb * sb))
    assert abs(got - pred) < 0.05 * abs(pred) + 0.02, (got, pred)
    assert abs(got - plain) > 0.3 * abs(pred)


def test_scale_one_over_sqrt_depth_keeps_growth_bounded():
    for act, sw in (("relu", math.sqrt(2)), ("tanh", 1.0)):
        fixed = [theory.residual_log10_gradient_growth(act, sw, 0.0, 1.0, L) for L in (10, 100, 1000)]
        shrinking = [theory.residual_log10_gradient_growth(act, sw, 0.0, 1 / math.sqrt(L), L) for L in (10, 100, 1000)]
        assert fixed[2] > 50 * fixed[0] / 10  # s = 1: grows at least linearly in depth
        assert max(shrinking) < 1.0  # s = 1/sqrt(L): under one decade at any depth
        assert theory.residual_log10_gradient_growth(act, sw, 0.0, 0.0, 1000) == 0.0
        assert theory.residual_chi(act, sw, 0.3, 1.0) > 1.0


def test_validation():
    with pytest.raises(ValueError, match="depth"):
        theory.residual_profile("tanh", 1.0, 0.0, 0.5, -1)
    with pytest.raises(ValueError, match="scale must be finite"):
        theory.residual_chi("tanh", 1.0, math.nan, 1.0)
    with pytest.raises(ValueError):
        theory.residual_profile("nope", 1.0, 0.0, 0.5, 3)
