"""loggrad.theory against published values, independent numerics and Monte Carlo with loggrad.

References used here (all computed independently in this file):
  * Gaussian averages: mpmath.quad with the activations written in mpmath;
  * fixed points: iterating the length map on a dense numpy grid (trapezoid);
  * the tanh critical point: a 2-equation mpmath.findroot;
  * Newman's exponents: closed forms of the digamma function at 1/2 and 1, and
    E ln|det W| by Monte Carlo (numpy slogdet);
  * growth rates: networks of i.i.d. Gaussian weights run through loggrad.
Monte Carlo tolerances are multiples of a standard error estimated from the
samples themselves (the quantity is a mean of independent replicates), plus
the stated O(1/n^2) bias of the formula where there is one.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

import loggrad as lg
from loggrad import theory as T

EULER_GAMMA = 0.57721566490153286061

# ---------------------------------------------------------------------------
# independent activations: mpmath (for quad) and numpy (for the dense grid)
# ---------------------------------------------------------------------------

MP = mpmath.mpf
SELU_L = MP("1.0507009873554804934193349852946")
SELU_A = MP("1.6732632423543772848170429916717")


def _mp_sig(x):
    return 1 / (1 + mpmath.exp(-x))


MP_PHI = {
    "identity": lambda x: x,
    "sigmoid": _mp_sig,
    "tanh": mpmath.tanh,
    "relu": lambda x: x if x > 0 else MP(0),
    "leaky_relu": lambda x: x if x > 0 else x / 100,
    "elu": lambda x: x if x > 0 else mpmath.expm1(x),
    "selu": lambda x: SELU_L * x if x > 0 else SELU_L * SELU_A * mpmath.expm1(x),
    "softplus": lambda x: mpmath.log1p(mpmath.exp(x)),
    "gelu": lambda x: x * mpmath.ncdf(x),
    "silu": lambda x: x * _mp_sig(x),
}
MP_DPHI = {
    "identity": lambda x: MP(1),
    "sigmoid": lambda x: _mp_sig(x) * (1 - _mp_sig(x)),
    "tanh": lambda x: 1 / mpmath.cosh(x) ** 2,
    "relu": lambda x: MP(1) if x > 0 else MP(0),
    "leaky_relu": lambda x: MP(1) if x > 0 else MP(1) / 100,
    "elu": lambda x: MP(1) if x > 0 else mpmath.exp(x),
    "selu": lambda x: SELU_L if x > 0 else SELU_L * SELU_A * mpmath.exp(x),
    "softplus": _mp_sig,
    "gelu": lambda x: mpmath.ncdf(x) + x * mpmath.npdf(x),
    "silu": lambda x: _mp_sig(x) * (1 + x * (1 - _mp_sig(x))),
}


def mp_gauss(f, q) -> mpmath.mpf:
    """E_z[f(sqrt(q) z)] by mpmath.quad, split at the kink z = 0 and at |x| = 1."""
    s = mpmath.sqrt(MP(q))
    g = lambda z: f(s * z) * mpmath.npdf(z)  # noqa: E731
    pts = [-mpmath.inf, -1 / s, 0, 1 / s, mpmath.inf] if s > 1 else [-mpmath.inf, 0, mpmath.inf]
    return mpmath.quad(g, pts)


_erf = np.frompyfunc(math.erf, 1, 1)


def _np_sig(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


NP_PHI = {
    "identity": lambda x: x,
    "sigmoid": _np_sig,
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "selu": lambda x: float(SELU_L) * np.where(x > 0, x, float(SELU_A) * np.expm1(np.minimum(x, 0.0))),
    "softplus": lambda x: np.logaddexp(0.0, x),
    "gelu": lambda x: x * 0.5 * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64)),
    "silu": lambda x: x * _np_sig(x),
}
Z = np.linspace(-12.0, 12.0, 48001)  # a node at z = 0 (the kink)
ZW = np.full(Z.size, Z[1] - Z[0]) * np.exp(-0.5 * Z * Z) / math.sqrt(2 * math.pi)
ZW[[0, -1]] *= 0.5


def grid_fixed_point(act: str, sw: float, sb: float, q0: float = 1.0) -> float:
    """Iterate q <- sw^2 E[phi(sqrt(q) z)^2] + sb^2 from q0 on the dense grid."""
    q = q0
    for _ in range(20000):
        qn = sw * sw * float(np.dot(ZW, NP_PHI[act](math.sqrt(q) * Z) ** 2)) + sb * sb
        if abs(qn - q) <= 1e-15 * qn:
            return qn
        q = qn
    raise AssertionError(f"no convergence for {act}, {sw}, {sb}")


# ---------------------------------------------------------------------------
# Gaussian averages: quadrature against mpmath.quad
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("act", T.ACTIVATIONS)
def test_gaussian_averages_match_mpmath_quad(act):
    mpmath.mp.dps = 25
    for q in (0.3, 4.0, 1e4):
        e2 = float(mp_gauss(lambda x: MP_PHI[act](x) ** 2, q))
        d2 = float(mp_gauss(lambda x: MP_DPHI[act](x) ** 2, q))
        d4 = float(mp_gauss(lambda x: MP_DPHI[act](x) ** 4, q))
        assert T.gaussian_expectation(lambda x: T.phi(act, x) ** 2, q) == pytest.approx(e2, rel=1e-12)
        assert T.gaussian_expectation(lambda x: T.phi_prime(act, x) ** 2, q) == pytest.approx(d2, rel=1e-12)
        for sw, sb in ((0.8, 0.0), (1.7, 0.4)):
            assert T.length_map(q, act, sw, sb) == pytest.approx(sw * sw * e2 + sb * sb, rel=1e-12)
            assert T.chi1(act, sw, sb, q) == pytest.approx(sw * sw * d2, rel=1e-12)
            # the large-width spectrum moments at this q, one layer
            mean, var = T.jacobian_spectrum_moments(act, sw, sb, 3, q=q)
            assert mean == pytest.approx((sw * sw * d2) ** 3, rel=1e-11)
            assert var == pytest.approx(mean**2 * 3 * d4 / d2**2, rel=1e-11)


def test_hermite_rule_agrees_for_smooth_activations():
    for act in ("tanh", "sigmoid", "softplus", "gelu", "silu"):
        a = T.chi1(act, 1.3, 0.2, 0.8, method="split")
        b = T.chi1(act, 1.3, 0.2, 0.8, method="hermite")
        assert a == pytest.approx(b, rel=1e-10)


# ---------------------------------------------------------------------------
# fixed points: dense-grid iteration and the mpmath residual
# ---------------------------------------------------------------------------

FIXED = [
    ("tanh", 1.0, 0.3), ("tanh", 1.5, 0.1), ("tanh", 2.5, 1.0), ("sigmoid", 1.0, 0.3), ("sigmoid", 2.5, 1.0),
    ("elu", 1.0, 0.3), ("selu", 0.7, 0.05), ("softplus", 1.0, 0.3), ("gelu", 1.0, 0.3), ("silu", 1.5, 0.1),
    ("relu", 1.0, 0.3), ("identity", 0.7, 0.05),
]


@pytest.mark.parametrize("act,sw,sb", FIXED)
def test_fixed_point_matches_iterated_length_map(act, sw, sb):
    mpmath.mp.dps = 25
    q = T.fixed_point(act, sw, sb)
    assert 0 < q < math.inf
    assert q == pytest.approx(grid_fixed_point(act, sw, sb), rel=1e-8)
    # and it is a root of the mpmath length map to double precision
    v = sw * sw * mp_gauss(lambda x: MP_PHI[act](x) ** 2, q) + sb * sb
    assert float(v) == pytest.approx(q, rel=1e-13)
    # the fixed point does not depend on where the iteration starts (on the same side)
    assert T.fixed_point(act, sw, sb, q0=1.5 * q) == pytest.approx(q, rel=1e-12)
    # chi1 and xi at it
    c = sw * sw * float(mp_gauss(lambda x: MP_DPHI[act](x) ** 2, q))
    assert T.chi1(act, sw, sb) == pytest.approx(c, rel=1e-11)
    assert T.depth_scale(act, sw, sb) == pytest.approx(-1.0 / math.log(c), rel=1e-9)
    assert T.log10_gradient_growth_per_layer(act, sw, sb) == pytest.approx(0.5 * math.log10(c), rel=1e-11)
    assert T.log10_gradient_growth(act, sw, sb, 250) == pytest.approx(125 * math.log10(c), rel=1e-11)


def test_closed_form_fixed_points_and_limits():
    # relu / leaky_relu / identity: V(q) = a q + sb^2
    assert T.fixed_point("relu", 1.0, 0.3) == pytest.approx(0.09 / 0.5, rel=1e-15)
    assert T.fixed_point("leaky_relu", 1.0, 0.3) == pytest.approx(0.09 / (1 - 0.5 * (1 + 1e-4)), rel=1e-15)
    assert T.fixed_point("relu", 1.5, 0.1) == math.inf  # chaotic relu: the variance diverges
    assert T.fixed_point("relu", math.sqrt(2), 0.0, q0=3.0) == 3.0  # marginal: every q is fixed
    # tanh with sb = 0 and sw <= 1: the variance collapses to 0 (the only fixed point)
    assert T.fixed_point("tanh", 0.9, 0.0) == 0.0
    # SELU's self-normalising fixed point (Klambauer et al. 2017): q* = 1 at sw = 1, sb = 0, from either side
    for q0 in (0.2, 5.0):
        assert T.fixed_point("selu", 1.0, 0.0, q0=q0) == pytest.approx(1.0, rel=1e-12)


# ---------------------------------------------------------------------------
# order-to-chaos line: published values and an independent root
# ---------------------------------------------------------------------------

def test_tanh_critical_point_published_value():
    # Schoenholz et al. 2017, Fig. 1 / Pennington et al. 2017: sigma_w^2 ~ 1.76 at sigma_b^2 = 0.05
    sw = T.critical_sigma_w("tanh", math.sqrt(0.05))
    assert sw * sw == pytest.approx(1.76, abs=0.01)
    # independent: solve q = sw2 E[tanh^2] + sb2 and 1 = sw2 E[sech^4] together with mpmath
    mpmath.mp.dps = 25
    sb2 = MP("0.05")

    def eqs(q, sw2):
        return (sw2 * mp_gauss(lambda x: mpmath.tanh(x) ** 2, q) + sb2 - q,
                sw2 * mp_gauss(lambda x: 1 / mpmath.cosh(x) ** 4, q) - 1)

    q_ref, sw2_ref = mpmath.findroot(eqs, (MP("0.5"), MP("1.7")))
    assert sw * sw == pytest.approx(float(sw2_ref), rel=1e-9)
    assert T.fixed_point("tanh", sw, math.sqrt(0.05)) == pytest.approx(float(q_ref), rel=1e-8)
    assert T.chi1("tanh", sw, math.sqrt(0.05)) == pytest.approx(1.0, abs=1e-9)
    assert abs(T.depth_scale("tanh", sw, math.sqrt(0.05))) > 1e6  # xi diverges on the line


def test_tanh_critical_line_shape():
    sbs = np.array([0.0, 0.1, math.sqrt(0.05), 0.5, 1.0])
    line = T.critical_line("tanh", sbs)
    assert line.shape == sbs.shape
    assert line[0] == 1.0  # sigma_w = 1, sigma_b = 0: critical with q* = 0 (Poole et al. 2016)
    assert np.all(np.diff(line) > 0)  # more bias needs larger weights to reach chaos
    for sb, sw in zip(sbs, line):
        assert T.chi1("tanh", 0.98 * sw, sb) < 1 < T.chi1("tanh", 1.02 * sw, sb)
    # at sigma_b = 0: q* = 0 and chi1 = sigma_w^2 exactly (tanh'(0) = 1)
    assert T.fixed_point("tanh", 1.0, 0.0) == 0.0 and T.chi1("tanh", 1.0, 0.0) == 1.0
    assert T.depth_scale("tanh", 1.0, 0.0) == math.inf
    assert T.depth_scale("tanh", 0.9, 0.0) == pytest.approx(-1.0 / math.log(0.81), rel=1e-12)


def test_critical_points_of_other_activations():
    # He et al. 2015: relu is critical at sigma_w^2 = 2, whatever the bias
    for sb in (0.0, 0.3):
        assert T.critical_sigma_w("relu", sb) == pytest.approx(math.sqrt(2), rel=1e-15)
    assert T.chi1("relu", math.sqrt(2), 0.0) == pytest.approx(1.0, rel=1e-15)
    assert T.depth_scale("relu", math.sqrt(2), 0.0) == math.inf
    assert T.critical_sigma_w("leaky_relu") == pytest.approx(math.sqrt(2 / (1 + 1e-4)), rel=1e-15)
    assert T.critical_sigma_w("identity") == 1.0
    # phi(0) = 0 with q* = 0 at sigma_b = 0: sigma_c = 1/|phi'(0+)| averaged over both sides
    assert T.critical_sigma_w("elu") == pytest.approx(1.0, rel=1e-9)
    selu_c = 1 / math.sqrt(float(SELU_L) ** 2 * (1 + float(SELU_A) ** 2) / 2)
    assert T.critical_sigma_w("selu") == pytest.approx(selu_c, rel=1e-12)
    # a root found by scanning: chi1 = 1 there, ordered below, chaotic above
    for act, sb in (("elu", 0.3), ("selu", 0.3), ("sigmoid", 0.3), ("tanh", 0.3)):
        sw = T.critical_sigma_w(act, sb)
        assert T.chi1(act, sw, sb) == pytest.approx(1.0, abs=1e-6), act
        assert T.chi1(act, 0.97 * sw, sb) < 1 < T.chi1(act, 1.03 * sw, sb), act


# ---------------------------------------------------------------------------
# Newman's exponents and exact linear-chain statistics
# ---------------------------------------------------------------------------

def test_newman_spectrum_closed_forms():
    # psi(1/2) = -gamma - 2 ln 2, psi(1) = -gamma: n = 1 is E ln|N(0, s^2)|, n = 2 two exponents
    s = 0.7
    assert T.lyapunov_spectrum_gaussian(1, s)[0] == pytest.approx(math.log(s) - (EULER_GAMMA + math.log(2)) / 2,
                                                                  rel=1e-14)
    l2 = T.lyapunov_spectrum_gaussian(2, s)
    np.testing.assert_allclose(l2, [math.log(s) - EULER_GAMMA / 2, math.log(s) - EULER_GAMMA / 2 - math.log(2)],
                               rtol=1e-14)
    # Cohen-Newman: lambda_i = (ln(2 s^2/n) + psi((n-i+1)/2))/2, descending
    n = 9
    ref = [0.5 * (math.log(2 * s * s / n) + float(mpmath.digamma((n - i + 1) / 2))) for i in range(1, n + 1)]
    lam = T.lyapunov_spectrum_gaussian(n, s)
    np.testing.assert_allclose(lam, ref, rtol=1e-14)
    assert np.all(np.diff(lam) < 0)
    # lambda_1 is the per-layer mean of ln ||J v||
    assert T.linear_chain_log_norm_stats(n, s, 1)[0] == pytest.approx(lam[0], rel=1e-14)


def test_newman_sum_is_mean_log_abs_det():
    # sum_i lambda_i = E ln|det W| per layer: Monte Carlo with numpy, independent of digamma
    n, s, N = 5, 1.3, 40000
    rng = np.random.default_rng(0)
    _, logdet = np.linalg.slogdet(rng.standard_normal((N, n, n)) * (s / math.sqrt(n)))
    se = logdet.std(ddof=1) / math.sqrt(N)
    assert abs(logdet.mean() - T.lyapunov_spectrum_gaussian(n, s).sum()) < 5 * se


def _chain_log_norms(n: int, sigma: float, depth: int, reps: int, seed: int) -> np.ndarray:
    """ln ||J^T u|| for unit u, through loggrad's backward pass of Gaussian linear chains."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(reps):
        ws = [rng.standard_normal((n, n)) * (sigma / math.sqrt(n)) for _ in range(depth)]
        g = lg.Network(ws, None, "identity").backward(np.zeros(n), loss="sum").input  # J^T (1,...,1)
        out.append(float(g.norm().log10()[()]) * math.log(10) - 0.5 * math.log(n))
    return np.array(out)


def test_linear_chain_log_norm_exact_moments_monte_carlo():
    n, sigma, depth, reps = 4, 0.5, 1500, 160
    ln = _chain_log_norms(n, sigma, depth, reps, seed=1)
    mean, var = T.linear_chain_log_norm_stats(n, sigma, depth)
    m10, v10 = T.linear_chain_log10_norm_stats(n, sigma, depth)
    assert m10 == pytest.approx(mean / math.log(10), rel=1e-15) and v10 == pytest.approx(var / math.log(10) ** 2)
    assert mean / math.log(10) < -500  # far below float64: loggrad measures what float64 reports as 0
    # mean: 5 standard errors; variance: the sample variance of a Gaussian sum (a sum of
    # 1500 i.i.d. log-chi terms) has relative standard error sqrt(2/(reps-1))
    assert abs(ln.mean() - mean) < 5 * math.sqrt(var / reps)
    assert abs(ln.var(ddof=1) / var - 1) < 5 * math.sqrt(2 / (reps - 1))
    # mean-field alone (chi1 = sigma^2) predicts depth*ln(sigma); the exact mean is lower by ~depth/(2n)
    assert mean < depth * math.log(sigma) - 0.9 * depth / (2 * n)


def test_finite_width_growth_expands_the_exact_linear_chain():
    for n in (16, 64, 256):
        m, v = T.log_gradient_growth_finite_width("identity", 1.3, 0.0, n)
        me, ve = T.linear_chain_log_norm_stats(n, 1.3, 1)
        assert abs(m - me) < 1.0 / n**2 and abs(v - ve) < 1.0 / n**2


# ---------------------------------------------------------------------------
# Monte Carlo with loggrad: nonlinear networks, measured vs predicted growth
# ---------------------------------------------------------------------------

def _measured_growth(act: str, sw: float, sb: float, n: int, depth: int, reps: int, seed: int) -> np.ndarray:
    """Per replicate: mean per-layer change of ln ||dE/dh^l|| going back, layers depth-1 .. 0.

    Weights N(0, sw^2/n), biases N(0, sb^2); the input's pre-activations start at q*;
    a random linear readout (1 x n) makes the back-propagated direction independent
    of the forward pass. ||dE/dh^l|| = ||dE/db_l|| (batch 1).
    """
    rng = np.random.default_rng(seed)
    q = T.fixed_point(act, sw, sb)
    out = []
    for _ in range(reps):
        ws = [rng.standard_normal((n, n)) * (sw / math.sqrt(n)) for _ in range(depth)]
        bs = [rng.standard_normal(n) * sb for _ in range(depth)]
        net = lg.Network(ws + [rng.standard_normal((1, n))], bs + [np.zeros(1)], [act] * depth + ["identity"])
        x = T.phi(act, rng.standard_normal(n) * math.sqrt(q))
        g = net.backward(x, loss="sum")
        first = float(g.biases[0].norm().log10()[()])
        last = float(g.biases[depth - 1].norm().log10()[()])
        out.append((first - last) * math.log(10) / (depth - 1))
    return np.array(out)


@pytest.mark.parametrize("act,sw,sb,depth", [
    ("relu", math.sqrt(2), 0.0, 120),  # He: critical in mean field, drifts down by 5/(4n) per layer
    ("tanh", 1.5, 0.1, 120),  # chaotic: exploding
    ("tanh", 1.0, 0.3, 120),  # ordered: vanishing
    ("sigmoid", 1.0, 0.3, 500),  # vanishing far below float64 (about 10^-320 at the input)
])
def test_growth_per_layer_monte_carlo(act, sw, sb, depth):
    n, reps = 128, 10
    got = _measured_growth(act, sw, sb, n, depth, reps, seed=11)
    mean, var = T.log_gradient_growth_finite_width(act, sw, sb, n)
    # standard error of the replicate mean from the replicates. Bias of the formula:
    # O(1/n^2) from the delta method, plus the O(1/n) term it leaves out (forward and
    # backward share W: one direction of n, the input's, is not independent); at
    # n = 64..512 that term measured below 0.35/n for these activations: allow 0.5/n.
    se = got.std(ddof=1) / math.sqrt(reps)
    assert abs(got.mean() - mean) < 5 * se + 0.5 / n, (got.mean(), mean, se)
    # the spread matches the predicted per-layer variance (sum of depth-1 independent terms)
    sd_pred = math.sqrt(var / (depth - 1))
    assert 0.4 < got.std(ddof=1) / sd_pred < 1.8  # chi-square with 9 dof: 99.9% interval [0.37, 1.77]
    # mean field (infinite width) is the n -> inf limit: within k/(4n) + noise of the measurement
    mf = T.log10_gradient_growth_per_layer(act, sw, sb) * math.log(10)
    assert abs(got.mean() - mf) < var + 5 * se + 0.5 / n
    if act == "sigmoid":
        assert mean * (depth - 1) / math.log(10) < -308


def test_jacobian_spectrum_moments_monte_carlo():
    # mean and variance of the eigenvalues of J J^T (free probability, width -> inf) at n = 400
    rng = np.random.default_rng(5)
    n, L = 300, 3
    for act, sw, sb in (("identity", 1.0, 0.0), ("tanh", 1.2, 0.2)):
        q = T.fixed_point(act, sw, sb) if act != "identity" else 1.0
        mean, var = T.jacobian_spectrum_moments(act, sw, sb, L)
        ms, vs = [], []
        for _ in range(4):
            a = T.phi(act, rng.standard_normal(n) * math.sqrt(q))
            J = np.eye(n)
            for _ in range(L):
                W = rng.standard_normal((n, n)) * (sw / math.sqrt(n))
                h = W @ a + rng.standard_normal(n) * sb
                J = (T.phi_prime(act, h)[:, None] * W) @ J
                a = T.phi(act, h)
            ev = np.linalg.eigvalsh(J @ J.T)
            ms.append(ev.mean())
            vs.append(ev.var())
        # finite-width corrections are O(L/n) relative (here < 1%); sampling error a few %
        assert np.mean(ms) == pytest.approx(mean, rel=0.05), act
        assert np.mean(vs) == pytest.approx(var, rel=0.15), act
    assert T.jacobian_spectrum_moments("identity", 1.0, 0.0, 7) == (1.0, 7.0)  # Fuss-Catalan: variance L
    assert T.jacobian_spectrum_moments("relu", math.sqrt(2), 0.0, 5) == pytest.approx((1.0, 10.0))


# ---------------------------------------------------------------------------
# closed forms, checked with loggrad on chains beyond float64
# ---------------------------------------------------------------------------

def test_sigmoid_bound_is_attained_at_zero_preactivations():
    # W = I, x = 0, biases -1/2 after the first layer: every pre-activation is exactly 0,
    # every sigmoid' is 1/4, and dL/dx = 4^-L per unit
    L, n = 3000, 2
    bs = [np.zeros(n)] + [np.full(n, -0.5)] * (L - 1)
    g = lg.Network([np.eye(n)] * L, bs, "sigmoid").backward(np.zeros(n), loss="sum").input
    np.testing.assert_allclose(g.log10(), T.sigmoid_bound_log10(L), rtol=1e-13)
    assert T.sigmoid_bound_log10(L) == pytest.approx(-L * math.log10(4), rel=1e-15)
    assert T.sigmoid_bound_log10(0) == 0.0


def test_scaled_identity_chain():
    for c in (1.2, 0.8, -3.0):
        g = lg.Network([c * np.eye(2)] * 2000, None, "identity").backward(np.ones(2), loss="sum").input
        np.testing.assert_allclose(g.log10(), T.scaled_identity_log10(c, 2000), rtol=1e-13)
    assert T.scaled_identity_log10(0.0, 5) == -math.inf


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------

def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown activation 'swish'.*tanh"):
        T.chi1("swish", 1.0, 0.0)
    with pytest.raises(TypeError, match="activation must be a name"):
        T.chi1(3, 1.0, 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigma_w must be"):
        T.fixed_point("tanh", -1.0, 0.0)
    with pytest.raises(ValueError, match="sigma_b must be"):
        T.chi1("tanh", 1.0, math.nan)
    with pytest.raises(ValueError, match="q must be >= 0"):
        T.chi1("tanh", 1.0, 0.0, q=-1.0)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        T.lyapunov_spectrum_gaussian(0)
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        T.log_gradient_growth_finite_width("tanh", 1.0, 0.0, 2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="depth must be >= 0"):
        T.linear_chain_log_norm_stats(3, 1.0, -1)
    with pytest.raises(ValueError, match="unknown method"):
        T.gaussian_expectation(np.tanh, 1.0, method="simpson")  # type: ignore[arg-type]
    assert T.chi1("linear", 0.9, 0.0) == pytest.approx(0.81)  # alias


# ---------------------------------------------------------------------------
# correlation map: against Monte Carlo of two correlated Gaussian inputs
# ---------------------------------------------------------------------------

def _mc_pair(act, q, c, n=400_000, seed=0):
    rng = np.random.default_rng(seed)
    z1, z2 = rng.standard_normal((2, n))
    u1 = math.sqrt(q) * z1
    u2 = math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2)
    return u1, u2


@pytest.mark.parametrize("act,sw,sb", [("tanh", 2.5, 0.1), ("relu", math.sqrt(2.0), 0.2),
                                       ("leaky_relu", 1.3, 0.0), ("sigmoid", 3.0, 0.5), ("elu", 1.5, 0.3)])
def test_correlation_map_against_monte_carlo(act, sw, sb):
    q = T.fixed_point(act, sw, sb) if act in ("tanh", "sigmoid") else 1.7
    for c in (-0.5, 0.2, 0.9):
        u1, u2 = _mc_pair(act, q, c)
        mc = (sw * sw * np.mean(T.phi(act, u1) * T.phi(act, u2)) + sb * sb) / q
        got = T.correlation_map(c, act, sw, sb, q=q)
        # Monte Carlo error of a mean of 4e5 products: a few 1e-3 relative
        assert got == pytest.approx(mc, rel=1e-2, abs=1e-2), (act, c)
    assert T.correlation_map(1.0, act, sw, sb, q=q) == pytest.approx(
        T.length_map(q, act, sw, sb) / q, rel=1e-3)  # the product rule at a kink (elu): ~1e-4


def test_correlation_fixed_point_ordered_and_chaotic():
    # ordered tanh: every pair of inputs converges, c* = 1 and chi_c = chi1 < 1
    c, chi_c = T.correlation_fixed_point("tanh", 1.0, 0.3)
    assert c == 1.0 and chi_c == pytest.approx(T.chi1("tanh", 1.0, 0.3)) and chi_c < 1
    # chaotic tanh: c* < 1 is a fixed point of the map, and chi_c (Monte Carlo) < 1 < chi1
    c, chi_c = T.correlation_fixed_point("tanh", 2.5, 0.1)
    q = T.fixed_point("tanh", 2.5, 0.1)
    assert 0 < c < 0.5 and T.correlation_map(c, "tanh", 2.5, 0.1) == pytest.approx(c, abs=1e-9)
    u1, u2 = _mc_pair("tanh", q, c, seed=1)
    mc = 2.5**2 * np.mean(T.phi_prime("tanh", u1) * T.phi_prime("tanh", u2))
    assert chi_c == pytest.approx(mc, rel=2e-2)
    assert chi_c < 1 < T.chi1("tanh", 2.5, 0.1)


def test_finite_width_formula_at_width_one_and_its_boundary():
    # linear chains (k = 2): mean ln(sigma_w) - 1/(2n), variance 1/(2n), documented closed form;
    # n = 1 is the smallest width, 0 is refused
    from loggrad.theory import log_gradient_growth_finite_width

    for sw in (0.5, 1.0, 2.0):
        mean, var = log_gradient_growth_finite_width("identity", sw, 0.0, 1)
        assert abs(mean - (math.log(sw) - 0.5)) <= 1e-15 and abs(var - 0.5) <= 1e-15
    with pytest.raises(ValueError, match="width must be an integer >= 1, got 0"):
        log_gradient_growth_finite_width("identity", 1.0, 0.0, 0)


@pytest.mark.parametrize("act,slope", [("relu", 0.0), ("leaky_relu", 0.01)])
def test_chi_c_of_piecewise_linear_activations_from_orthant_probabilities(act, slope):
    # one step from c0 = 0 (max_iter=1 stops there, short of c* = 1): chi_c = sigma_w^2 E[phi'(u1) phi'(u2)]
    # with phi' = 1 or slope, from the orthant probabilities of a bivariate normal (Sheppard):
    # P(u1 > 0, u2 > 0) = P(u1 < 0, u2 < 0) = (pi - arccos c) / (2 pi)
    sw, sb = 1.5, 0.2
    c, chi_c = T.correlation_fixed_point(act, sw, sb, q=1.0, c0=0.0, max_iter=1)
    assert 0.0 < c < 0.99
    p = (math.pi - math.acos(c)) / (2 * math.pi)
    want = sw * sw * (p * 1.0 + (1 - 2 * p) * slope + p * slope * slope)
    assert abs(chi_c - want) <= 1e-14 * want
