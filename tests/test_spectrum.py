"""Jacobian spectra: exact cases, Newman's formula for Gaussian chains, agreement with backward."""

import math
import sys

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
    # 400 products of 3-term dot products, renormalised by powers of two: (n + 1) u a layer
    assert abs(got - float(ref)) <= 4 * L * 2.0**-53 + 4 * math.ulp(abs(float(ref)))
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


# ---------------------------------------------------------------------------
# exact linear chains: c I, c * orthogonal; Newman at depth 10^4; depth 10^5 in constant memory
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("c", [1.3, 0.7, -2.0])
def test_scaled_identity_chain_all_exponents_ln_c(c):
    n, L = 5, 5000
    s = spectrum(lg.Network([c * np.eye(n)] * L, None, "identity"), per_layer=True)
    np.testing.assert_allclose(s.lyapunov, math.log(abs(c)), rtol=0, atol=1e-13)
    np.testing.assert_allclose(s.log_singular_values, L * math.log(abs(c)), rtol=1e-13)
    np.testing.assert_allclose(s.per_layer, math.log(abs(c)), rtol=0, atol=1e-13)
    assert abs(s.condition_log10) < 1e-9


def test_scaled_orthogonal_chain_all_exponents_ln_c():
    # J = c^L Q_L ... Q_1: every singular value is |c|^L, whatever the rotations
    rng = np.random.default_rng(4)
    n, L, c = 6, 3000, 0.8
    qs = [c * np.linalg.qr(rng.standard_normal((n, n)))[0] for _ in range(L)]
    s = spectrum(lg.Network(qs, None, "identity"))
    np.testing.assert_allclose(s.lyapunov, math.log(c), rtol=0, atol=1e-12)
    assert s.log10_singular_values[0] < -290 and abs(s.condition_log10) < 1e-8
    # every direction grows by exactly c^L too
    v = rng.standard_normal((n, 3))
    np.testing.assert_allclose(jvp_log_norm(lg.Network(qs, None, "identity"), None, v),
                               L * math.log(c) + np.log(np.linalg.norm(v, axis=0)), rtol=1e-12)


def test_gaussian_chain_depth_1e4_matches_newman_within_monte_carlo_error():
    # Bartlett: after re-orthonormalisation the per-layer ln R_ii are independent, with
    # 2 ln R_ii ~ ln((sigma^2/n) chi^2_{n-i+1}): mean lambda_i, variance psi_1((n-i+1)/2)/4
    n, sigma, L = 5, 0.9, 10_000
    rng = np.random.default_rng(8)
    net = lg.Network(list(rng.standard_normal((L, n, n)) * (sigma / math.sqrt(n))), None, "identity")
    s = spectrum(net, per_layer=True)
    dof = (n - np.arange(1, n + 1) + 1) / 2
    newman = np.array([math.log(sigma) + 0.5 * (math.log(2 / n) + float(mpmath.digamma(d))) for d in dof])
    var = np.array([float(mpmath.psi(1, d)) / 4 for d in dof])
    se = np.sqrt(var / L)
    assert np.all(np.abs(s.lyapunov - newman) < 5 * se), (s.lyapunov - newman) / se
    # the per-layer spread is the trigamma variance (sample variance of 10^4 terms: ~2-3% error)
    np.testing.assert_allclose(s.per_layer[100:].var(axis=0), var, rtol=0.1)
    assert s.log10_singular_values[-1] < -3000  # the smallest singular value is 10^-3000 and below


def _vm_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak-RSS reset needs Linux /proc")
def test_depth_1e5_peak_memory_independent_of_depth():
    n, L = 8, 100_000
    rng = np.random.default_rng(9)
    w = rng.standard_normal((n, n)) / math.sqrt(n)
    net = lg.Network([w] * L, None, "tanh")
    x = rng.standard_normal(n)
    try:
        with open("/proc/self/clear_refs", "w") as fh:  # reset the peak RSS (VmHWM) to the current RSS
            fh.write("5")
    except OSError:
        pytest.skip("cannot reset the peak RSS here")
    before = _vm_kib("VmRSS")
    s = spectrum(net, x)
    growth_kib = _vm_kib("VmHWM") - before
    # a per-layer store of the n x n basis would need L * n * n * 8 bytes = 51 MB here
    assert growth_kib < 12_000, growth_kib
    assert s.lyapunov.shape == (n,) and np.all(np.isfinite(s.lyapunov))
    assert np.all(np.diff(s.lyapunov) <= 0)


def test_cumulative_is_the_spectrum_of_each_prefix():
    # a diagonal chain with layers of different diagonals: the Jacobian of the first l+1 layers
    # is diagonal, its log singular values the sorted sums of ln|d| over those layers (numpy)
    rng = np.random.default_rng(11)
    # each layer's |d| in descending order, so that the exponents never change places
    ds = [np.sort(rng.uniform(0.2, 3.0, 3))[::-1] * rng.choice([-1, 1], 3) for _ in range(40)]
    net = lg.Network([np.diag(d) for d in ds], None, "identity")
    s = spectrum(net, per_layer=True)
    want = np.cumsum(np.log(np.abs(np.array(ds))), axis=0)  # (layers, 3), already descending
    np.testing.assert_allclose(s.cumulative(), want, rtol=0, atol=1e-13 * 40)
    np.testing.assert_allclose(s.cumulative()[-1], s.log_singular_values, rtol=0, atol=1e-13)


def test_spectrum_defaults_and_immutability():
    import dataclasses

    rng = np.random.default_rng(12)
    net = lg.Network([rng.standard_normal((4, 4)) for _ in range(30)], None, "tanh")
    x = rng.standard_normal(4)
    s = spectrum(net, x, k=2)  # k < n_in: random starting directions, from the default seed 0
    assert s.per_layer is None  # per_layer defaults to False
    with pytest.raises(ValueError, match="per_layer=True"):
        s.cumulative()
    np.testing.assert_array_equal(s.log_singular_values, spectrum(net, x, k=2, seed=0).log_singular_values)
    assert not np.array_equal(s.log_singular_values, spectrum(net, x, k=2, seed=1).log_singular_values)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.depth = 3  # type: ignore[misc]


def test_jvp_log_norm_single_direction_per_layer_and_shapes():
    rng = np.random.default_rng(13)
    net = lg.Network([rng.standard_normal((3, 3)) for _ in range(20)], None, "tanh")
    x = rng.standard_normal(3)
    v = rng.standard_normal(3)
    total, layers = jvp_log_norm(net, x, v, per_layer=True)
    total2, layers2 = jvp_log_norm(net, x, v[:, None], per_layer=True)
    assert np.ndim(total) == 0 and layers.shape == (20,)
    np.testing.assert_array_equal(layers, layers2[:, 0])
    assert total == total2[0]
    for bad in (rng.standard_normal((4, 2)), rng.standard_normal((3, 2, 1)), rng.standard_normal(4)):
        with pytest.raises(ValueError, match=r"directions must have shape \(3,\) or \(3, m\)"):
            jvp_log_norm(net, x, bad)
