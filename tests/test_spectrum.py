"""Jacobian spectra: exact cases, Newman's formula for Gaussian chains, agreement with backward."""

import math

import mpmath
import numpy as np
import pytest

import loggrad as lg
from loggrad.spectrum import jvp_log_norm, spectrum


def test_diagonal_linear_chain_is_exact():
    d = np.array([1.2, 0.5, -3.0, 0.9])
    net = lg.Network([np.diag(d)] * 5000, None, "identity")
    s = spectrum(net, per_layer=True)
    np.testing.assert_allclose(s.lyapunov, np.sort(np.log(np.abs(d)))[::-1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.log10_singular_values, 5000 * np.sort(np.log10(np.abs(d)))[::-1], rtol=1e-13)
    assert s.cumulative().shape == (5000, 4)
    assert s.condition_log10 == pytest.approx(5000 * math.log10(3.0 / 0.5), rel=1e-13)


def test_gaussian_linear_chain_matches_newman():
    n, sigma, L = 5, 1.3, 4000
    rng = np.random.default_rng(7)
    net = lg.Network([rng.standard_normal((n, n)) * sigma / np.sqrt(n) for _ in range(L)], None, "identity")
    s = spectrum(net)
    newman = [math.log(sigma) + 0.5 * (math.log(2 / n) + float(mpmath.digamma((n - i + 1) / 2))) for i in range(1, n + 1)]
    # per-layer log growth has variance ~ trigamma/4 < 0.5: the mean over L layers is within 5 sd
    np.testing.assert_allclose(s.lyapunov, newman, atol=5 * math.sqrt(0.5 / L))


def test_jvp_log_norm_against_mpmath():
    rng = np.random.default_rng(1)
    n, L = 3, 400
    ws = [rng.standard_normal((n, n)) * 0.1 for _ in range(L)]  # shrinks far below 1e-308
    net = lg.Network(ws, None, "identity")
    v = rng.standard_normal(n)
    got = jvp_log_norm(net, None, v)
    mpmath.mp.dps = 30
    vec = mpmath.matrix([mpmath.mpf(float(t)) for t in v])
    for w in ws:
        vec = mpmath.matrix(w.tolist()) * vec
    ref = mpmath.log(mpmath.sqrt(sum(t * t for t in vec)))
    assert got < -708  # ||J v|| < 1e-308
    assert abs(got - float(ref)) < 1e-9
    tot, per = jvp_log_norm(net, None, np.stack([v, 2 * v], axis=1), per_layer=True)
    np.testing.assert_allclose(tot, [got, got + math.log(2)], rtol=1e-13)
    np.testing.assert_allclose(per.sum(axis=0), tot - np.log(np.linalg.norm(v) * np.array([1, 2])), rtol=1e-12)


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "softplus"])
def test_nonlinear_jvp_matches_backward(act):
    # With one output, J v = (dL/dx) . v for loss = sum: the forward-mode growth
    # along the trajectory must equal the reverse-mode gradient, both extended.
    rng = np.random.default_rng(3)
    widths = [4] + [4] * 600 + [1]
    ws = [rng.standard_normal((widths[i + 1], widths[i])) * 0.9 for i in range(len(widths) - 1)]
    net = lg.Network(ws, None, act)
    x = rng.standard_normal(4)
    v = rng.standard_normal(4)
    got = jvp_log_norm(net, x, v) * math.log10(math.e)
    g = net.backward(x, loss="sum").input
    ref = float((g * lg.LogArray(v)).sum().log10())
    assert abs(got - ref) < 1e-9 * max(1.0, abs(ref))
    # the spectrum's single exponent is the growth of a (seeded) direction of the same chain
    s = spectrum(net, x, k=1)
    assert s.log10_singular_values[0] < 0


def test_very_deep_chain_runs_in_constant_memory():
    n = 4
    rng = np.random.default_rng(0)
    w = rng.standard_normal((n, n)) / 2
    net = lg.Network([w] * 100_000, None, "identity")
    s = spectrum(net, k=2)
    # the same matrix every layer: exponents are ln|eigenvalues| of w
    ev = np.sort(np.log(np.abs(np.linalg.eigvals(w))))[::-1][:2]
    np.testing.assert_allclose(s.lyapunov, ev, atol=1e-3)


def test_bad_arguments():
    net = lg.Network([np.eye(3), np.ones((2, 3))], None, "tanh")
    with pytest.raises(ValueError, match="min\\(widths\\) = 2"):
        spectrum(net, k=3)
    with pytest.raises(ValueError, match="x must have shape \\(3,\\)"):
        spectrum(net, np.zeros(4))
    with pytest.raises(ValueError, match="nonzero"):
        jvp_log_norm(net, None, np.zeros(3))
