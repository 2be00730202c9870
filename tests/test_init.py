"""loggrad.init: every initializer against its formula, with bounds from the sampling distribution.

Moment checks use 6-sigma bounds: for N i.i.d. draws of standard deviation s
and kurtosis k, the sample mean has standard error s/sqrt(N) and the sample
variance s^2 sqrt((k - 1)/N). Kurtoses are those of the distribution drawn
(normal 3, uniform 9/5, the 2-sigma truncated normal from mpmath quadrature).
A false failure has probability ~1e-9 per check.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

import loggrad as lg
import loggrad.init as I

SIX = 6.0
SHAPE = (400, 2500)  # (n_out, n_in): fan_in 2500, fan_out 400, fan_avg 1450; 10^6 draws
FAN_IN, FAN_OUT = SHAPE[1], SHAPE[0]
FAN_AVG = 0.5 * (FAN_IN + FAN_OUT)


def _truncated_moments() -> tuple[float, float]:
    """Variance and kurtosis of N(0,1) truncated to [-2, 2], by quadrature."""
    with mpmath.workdps(40):
        pdf = lambda x: mpmath.exp(-x * x / 2) / mpmath.sqrt(2 * mpmath.pi)  # noqa: E731
        z = mpmath.quad(pdf, [-2, 2])
        m2 = mpmath.quad(lambda x: x**2 * pdf(x), [-2, 2]) / z
        m4 = mpmath.quad(lambda x: x**4 * pdf(x), [-2, 2]) / z
        return float(m2), float(m4 / m2**2)


TRUNC_VAR, TRUNC_KURT = _truncated_moments()
KURT = {"normal": 3.0, "uniform": 9.0 / 5.0, "truncated": TRUNC_KURT}


def check_moments(x: np.ndarray, mean: float, std: float, kurtosis: float) -> None:
    n = x.size
    assert abs(x.mean() - mean) <= SIX * std / math.sqrt(n), (x.mean(), mean)
    se_var = std**2 * math.sqrt((kurtosis - 1.0) / n)
    assert abs(x.var() - std**2) <= SIX * se_var, (x.var(), std**2, se_var)


def check_kurtosis(x: np.ndarray, kurtosis: float) -> None:
    """The sample kurtosis tells truncated (2.5), untruncated (3) and uniform (1.8) apart."""
    z = (x - x.mean()) / x.std()
    assert abs(np.mean(z**4) - kurtosis) < 0.05  # its standard error at 10^6 draws is < 0.005


def test_keras_truncation_constant_is_the_truncated_std():
    assert abs(math.sqrt(TRUNC_VAR) - I.TRUNCATED_STD_CORRECTION) < 1e-15


# (initializer, expected std, distribution family, truncation bound in units of the pre-truncation std)
CASES = [
    (I.Normal(), 1.0, "normal"),
    (I.Normal(mean=0.0, std=0.05), 0.05, "normal"),
    (I.Uniform(), 1 / math.sqrt(3), "uniform"),
    (I.Uniform(limit=0.3), 0.3 / math.sqrt(3), "uniform"),
    (I.TruncatedNormal(std=0.05), 0.05 * math.sqrt(TRUNC_VAR), "truncated"),
    (I.GlorotNormal(), math.sqrt(2 / (FAN_IN + FAN_OUT)), "truncated"),
    (I.GlorotUniform(), math.sqrt(6 / (FAN_IN + FAN_OUT)) / math.sqrt(3), "uniform"),
    (I.XavierNormal(), math.sqrt(2 / (FAN_IN + FAN_OUT)), "normal"),
    (I.XavierUniform(gain=5 / 3), 5 / 3 * math.sqrt(6 / (FAN_IN + FAN_OUT)) / math.sqrt(3), "uniform"),
    (I.HeNormal(), math.sqrt(2 / FAN_IN), "truncated"),
    (I.HeUniform(), math.sqrt(6 / FAN_IN) / math.sqrt(3), "uniform"),
    (I.KaimingNormal(), math.sqrt(2 / FAN_IN), "normal"),
    (I.KaimingNormal(mode="fan_out", nonlinearity="tanh"), 5 / 3 / math.sqrt(FAN_OUT), "normal"),
    (I.KaimingUniform(a=math.sqrt(5)), math.sqrt(2 / 6) * math.sqrt(3 / FAN_IN) / math.sqrt(3), "uniform"),
    (I.LecunNormal(), 1 / math.sqrt(FAN_IN), "truncated"),
    (I.LecunNormal(gain=1.3), 1.3 / math.sqrt(FAN_IN), "truncated"),
    (I.LecunUniform(), math.sqrt(3 / FAN_IN) / math.sqrt(3), "uniform"),
    (I.VarianceScaling(2.5, "fan_avg", "untruncated_normal"), math.sqrt(2.5 / FAN_AVG), "normal"),
    (I.VarianceScaling(0.7, "fan_out", "truncated_normal"), math.sqrt(0.7 / FAN_OUT), "truncated"),
    (I.VarianceScaling(3.0, "fan_in", "uniform"), math.sqrt(3.0 / FAN_IN), "uniform"),
]


@pytest.mark.parametrize("init,std,family", CASES, ids=lambda v: repr(v) if isinstance(v, I.Initializer) else "")
def test_moments_limits_and_shape_of_distribution(init, std, family):
    x = init(SHAPE, 7)
    assert x.shape == SHAPE and x.dtype == np.float64 and x.flags.c_contiguous
    check_moments(x, 0.0, std, KURT[family])
    check_kurtosis(x, KURT[family])
    if family == "uniform":
        lim = math.sqrt(3) * std
        assert np.all(np.abs(x) <= lim)
        # max within lim (1 - 40/N) of the limit: fails with probability e^-20
        assert x.max() > lim * (1 - 40 / x.size) and x.min() < -lim * (1 - 40 / x.size)
    elif family == "truncated":
        bound = 2 * std / math.sqrt(TRUNC_VAR)  # 2 pre-truncation standard deviations
        assert np.all(np.abs(x) <= bound)
        assert np.abs(x).max() > 0.99 * bound  # ~1100 expected draws beyond 0.99 * bound
    else:
        # an untruncated normal exceeds that bound: P(|z| > 2.274) = 2.3% of the draws
        assert np.mean(np.abs(x) > 2 * std / math.sqrt(TRUNC_VAR)) > 0.02
    assert init.std(SHAPE) == pytest.approx(std, rel=1e-14)


def test_nonzero_means_and_uniform_interval():
    x = I.Normal(mean=3.0, std=0.5)(SHAPE, 1)
    check_moments(x, 3.0, 0.5, 3.0)
    u = I.Uniform(a=-1.0, b=3.0)(SHAPE, 2)
    check_moments(u, 1.0, 4 / math.sqrt(12), 1.8)
    assert u.min() >= -1.0 and u.max() < 3.0
    t = I.TruncatedNormal(mean=-2.0, std=0.1)(SHAPE, 3)
    check_moments(t, -2.0, 0.1 * math.sqrt(TRUNC_VAR), TRUNC_KURT)
    assert np.all(np.abs(t + 2.0) <= 0.2)


def test_constants_and_identity():
    assert np.all(I.Zeros()((3, 4)) == 0)
    assert np.all(I.Ones()((5,)) == 1)
    assert np.all(I.Constant(0.25)((2, 3)) == 0.25)
    np.testing.assert_array_equal(I.Identity(1.2)((3, 3)), 1.2 * np.eye(3))
    np.testing.assert_array_equal(I.get("identity", scale=0.5)((4, 4)), 0.5 * np.eye(4))
    # non-square: ones on the main diagonal (torch eye_)
    np.testing.assert_array_equal(I.Identity()((2, 4)), [[1, 0, 0, 0], [0, 1, 0, 0]])
    np.testing.assert_array_equal(I.Identity(2.0)((3, 2)), [[2, 0], [0, 2], [0, 0]])


@pytest.mark.parametrize("shape", [(64, 64), (20, 50), (50, 20), (4, 3, 5)])
@pytest.mark.parametrize("gain", [1.0, 1.2])
def test_orthogonal(shape, gain):
    q = I.Orthogonal(gain)(shape, 3).reshape(shape[0], -1)
    rows, cols = q.shape
    if rows <= cols:
        np.testing.assert_allclose(q @ q.T, gain**2 * np.eye(rows), atol=1e-13)
    if rows >= cols:
        np.testing.assert_allclose(q.T @ q, gain**2 * np.eye(cols), atol=1e-13)


def test_orthogonal_is_haar_sign_fixed():
    # With the sign fix the first entry of a Haar 3x3 orthogonal matrix has mean 0 and
    # variance 1/3; LAPACK's QR without it makes Q[0, 0] = -|A00|/||A[:,0]|| < 0 always.
    m = 20000
    gen = np.random.default_rng(5)
    q00 = np.array([I.Orthogonal()((3, 3), gen)[0, 0] for _ in range(m)])
    # Haar: the first column is uniform on the sphere S^2, so Q00 ~ U(-1, 1) (Archimedes): var 1/3, kurtosis 9/5
    check_moments(q00, 0.0, 1 / math.sqrt(3), kurtosis=9 / 5)
    assert I.Orthogonal(2.0).std((50, 20)) == pytest.approx(2.0 / math.sqrt(50))


# --- gain ------------------------------------------------------------------

ZERO_MEAN = ["normal", "uniform", "truncated_normal", "glorot_normal", "glorot_uniform", "xavier_normal",
             "xavier_uniform", "he_normal", "he_uniform", "kaiming_normal", "kaiming_uniform", "lecun_normal",
             "lecun_uniform", "orthogonal", "identity", "variance_scaling", "ones", "constant"]


@pytest.mark.parametrize("name", ZERO_MEAN)
def test_gain_multiplies_the_draws_exactly(name):
    base = I.get(name) if name != "constant" else I.Constant(0.3)
    g = 1.7
    a = base((30, 20), 11)
    b = base.with_gain(g)((30, 20), 11)
    # the same draws, scaled (a uniform's a + (b - a) u rounds differently: a few ulp of the limit)
    tol = 4e-16 * g * np.abs(a).max()
    np.testing.assert_allclose(b, g * a, rtol=1e-15, atol=tol)
    ws1, _ = I.init_layers([20, 30, 30], base, seed=4)
    ws2, _ = I.init_layers([20, 30, 30], base, seed=4, gain=g)
    for w1, w2 in zip(ws1, ws2):
        np.testing.assert_allclose(w2, g * w1, rtol=1e-15, atol=4e-16 * g * np.abs(w1).max())


def test_gain_of_shifted_distributions_scales_about_the_mean():
    n = I.Normal(mean=2.0, std=0.5).with_gain(3.0)
    assert n == I.Normal(mean=2.0, std=1.5)
    u = I.Uniform(a=1.0, b=3.0).with_gain(2.0)
    assert u == I.Uniform(a=0.0, b=4.0)
    assert I.Zeros().with_gain(5.0) == I.Zeros()
    assert I.HeNormal(gain=2.0).with_gain(1.5) == I.HeNormal(gain=3.0)
    assert I.VarianceScaling(2.0).with_gain(3.0) == I.VarianceScaling(18.0)


def test_named_initializers_are_variance_scaling_cases():
    vs = I.VarianceScaling
    for named, (scale, mode, dist) in {
        I.GlorotNormal(1.5): (2.25, "fan_avg", "truncated_normal"),
        I.GlorotUniform(): (1.0, "fan_avg", "uniform"),
        I.HeNormal(): (2.0, "fan_in", "truncated_normal"),
        I.HeUniform(): (2.0, "fan_in", "uniform"),
        I.LecunNormal(): (1.0, "fan_in", "truncated_normal"),
        I.LecunUniform(): (1.0, "fan_in", "uniform"),
        I.XavierNormal(): (1.0, "fan_avg", "untruncated_normal"),
        I.KaimingNormal(): (2.0, "fan_in", "untruncated_normal"),
    }.items():
        ref = vs(scale, mode, dist)
        np.testing.assert_allclose(named((40, 30), 9), ref((40, 30), 9), rtol=1e-15)


# --- torch's conventions (variances compared, not values) --------------------

def _torch():
    return pytest.importorskip("torch")


def _two_sample(a: np.ndarray, b: np.ndarray, kurtosis: float) -> None:
    va, vb = a.var(), b.var()
    se = math.sqrt(va**2 * (kurtosis - 1) / a.size + vb**2 * (kurtosis - 1) / b.size)
    assert abs(va - vb) <= SIX * se, (va, vb, se)
    assert abs(a.mean() - b.mean()) <= SIX * math.sqrt(va / a.size + vb / b.size)


@pytest.mark.parametrize("ours,theirs,kurt", [
    (I.XavierNormal(), lambda t, nn: nn.xavier_normal_(t), 3.0),
    (I.XavierNormal(gain=2.0), lambda t, nn: nn.xavier_normal_(t, gain=2.0), 3.0),
    (I.XavierUniform(gain=0.5), lambda t, nn: nn.xavier_uniform_(t, gain=0.5), 1.8),
    (I.GlorotUniform(), lambda t, nn: nn.xavier_uniform_(t), 1.8),
    (I.KaimingNormal(), lambda t, nn: nn.kaiming_normal_(t), 3.0),
    (I.KaimingNormal(a=0.2, mode="fan_out"), lambda t, nn: nn.kaiming_normal_(t, a=0.2, mode="fan_out"), 3.0),
    (I.KaimingNormal(nonlinearity="relu"), lambda t, nn: nn.kaiming_normal_(t, nonlinearity="relu"), 3.0),
    (I.KaimingUniform(nonlinearity="tanh"), lambda t, nn: nn.kaiming_uniform_(t, nonlinearity="tanh"), 1.8),
    (I.KaimingUniform(a=math.sqrt(5)), lambda t, nn: nn.kaiming_uniform_(t, a=math.sqrt(5)), 1.8),
    (I.HeUniform(), lambda t, nn: nn.kaiming_uniform_(t, nonlinearity="relu"), 1.8),
    (I.Normal(std=0.3), lambda t, nn: nn.normal_(t, std=0.3), 3.0),
    (I.Uniform(a=-0.2, b=0.6), lambda t, nn: nn.uniform_(t, -0.2, 0.6), 1.8),
    (I.TruncatedNormal(std=0.7), lambda t, nn: nn.trunc_normal_(t, std=0.7, a=-1.4, b=1.4), TRUNC_KURT),
    (I.HeNormal(), lambda t, nn: nn.trunc_normal_(t, std=math.sqrt(2 / FAN_IN) / I.TRUNCATED_STD_CORRECTION,
                                                  a=-2 * math.sqrt(2 / FAN_IN) / I.TRUNCATED_STD_CORRECTION,
                                                  b=2 * math.sqrt(2 / FAN_IN) / I.TRUNCATED_STD_CORRECTION),
     TRUNC_KURT),
])
def test_matches_torch_nn_init(ours, theirs, kurt):
    torch = _torch()
    torch.manual_seed(0)
    t = torch.empty(SHAPE, dtype=torch.float64)
    theirs(t, torch.nn.init)
    _two_sample(ours(SHAPE, 3), t.numpy(), kurt)


def test_orthogonal_and_eye_match_torch():
    torch = _torch()
    torch.manual_seed(1)
    m = 4000
    ours = np.array([I.Orthogonal(1.5)((3, 3), np.random.default_rng(i))[0, 0] for i in range(m)])
    theirs = []
    for _ in range(m):
        t = torch.empty(3, 3, dtype=torch.float64)
        torch.nn.init.orthogonal_(t, gain=1.5)
        theirs.append(float(t[0, 0]))
    _two_sample(ours, np.array(theirs), 9 / 5)
    for shape in [(3, 3), (2, 5), (5, 2)]:
        t = torch.empty(*shape, dtype=torch.float64)
        torch.nn.init.eye_(t)
        np.testing.assert_array_equal(I.Identity()(shape), t.numpy())


@pytest.mark.parametrize("name,param", [("linear", None), ("sigmoid", None), ("tanh", None), ("relu", None),
                                        ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None),
                                        ("conv2d", None)])
def test_recommended_gain_matches_torch(name, param):
    torch = _torch()
    assert I.recommended_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param), rel=1e-15)


def test_recommended_gain_closed_forms():
    assert I.recommended_gain("relu") == math.sqrt(2)
    assert I.recommended_gain("tanh") == 5 / 3
    assert I.recommended_gain("leaky_relu") == math.sqrt(2 / (1 + 0.01**2))
    with pytest.raises(ValueError, match="no recommended gain for nonlinearity 'gelu'"):
        I.recommended_gain("gelu")


# --- seeding and per-layer streams ------------------------------------------


def test_seeded_reproducible_and_seeds_differ():
    a, ab = I.init_layers([8, 16, 16, 4], "he_normal", "normal", seed=123)
    b, bb = I.init_layers([8, 16, 16, 4], "he_normal", "normal", seed=123)
    c, _ = I.init_layers([8, 16, 16, 4], "he_normal", "normal", seed=124)
    for x, y, z in zip(a, b, c):
        np.testing.assert_array_equal(x, y)
        assert not np.any(x == z)  # continuous draws: a coincidence has probability 0
    for x, y in zip(ab, bb):
        np.testing.assert_array_equal(x, y)
    d, _ = I.init_layers([8, 16, 16, 4], "he_normal", seed=None)
    e, _ = I.init_layers([8, 16, 16, 4], "he_normal", seed=None)
    assert not np.array_equal(d[0], e[0])  # fresh entropy each time


def test_streams_follow_the_documented_recipe():
    # layer l's weights: Generator(PCG64(SeedSequence(seed).spawn(l + 1)[l].spawn(2)[0])); the same on
    # every machine, since numpy guarantees PCG64 / SeedSequence / standard_normal streams.
    seed, widths = 2024, [5, 7, 3, 6]
    ws, bs = I.init_layers(widths, "kaiming_normal", "normal", seed=seed)
    children = np.random.SeedSequence(seed).spawn(len(widths) - 1)
    for l, child in enumerate(children):
        sw, sb = child.spawn(2)
        n_in, n_out = widths[l], widths[l + 1]
        ref_w = math.sqrt(2 / n_in) * np.random.Generator(np.random.PCG64(sw)).standard_normal((n_out, n_in))
        ref_b = np.random.Generator(np.random.PCG64(sb)).standard_normal(n_out)
        np.testing.assert_array_equal(ws[l], ref_w)
        np.testing.assert_array_equal(bs[l], ref_b)


def test_layer_streams_do_not_depend_on_depth_or_bias_init():
    short, _ = I.init_layers([6] * 4, "glorot_uniform", seed=9)
    long, lb = I.init_layers([6] * 40, "glorot_uniform", bias_init="uniform", seed=9)
    for l in range(3):
        np.testing.assert_array_equal(short[l], long[l])
    # a different width elsewhere does not change layer 0 either
    other, _ = I.init_layers([6, 6, 11], "glorot_uniform", seed=9)
    np.testing.assert_array_equal(other[0], short[0])
    # weight and bias streams of one layer, and streams of different layers, are uncorrelated
    ws, bs = I.init_layers([1000, 1000, 1000], "normal", bias_init="normal", seed=3)
    n = ws[0].size
    assert abs(np.corrcoef(ws[0].ravel(), ws[1].ravel())[0, 1]) < SIX / math.sqrt(n)
    m = bs[0].size
    assert abs(np.corrcoef(ws[0][0], bs[0])[0, 1]) < SIX / math.sqrt(m)


def test_generator_int_and_seedsequence_arguments():
    a = I.HeNormal()((3, 4), 5)
    b = I.HeNormal()((3, 4), np.random.default_rng(5))
    c = I.HeNormal()((3, 4), np.random.SeedSequence(5))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    s1, _ = I.init_layers([3, 4], "he_normal", seed=np.random.SeedSequence(77))
    s2, _ = I.init_layers([3, 4], "he_normal", seed=77)
    np.testing.assert_array_equal(s1[0], s2[0])


# --- names, objects, callables, Network.build ----------------------------------


def test_names_and_aliases():
    for name in I.names():
        init = I.get(name)
        assert isinstance(init, I.Initializer)
        assert np.all(np.isfinite(init((5, 4), 0)))
    assert I.get("HeNormal") == I.get("he_normal") == I.HeNormal()
    assert I.get("Glorot-Uniform") == I.GlorotUniform()
    assert I.get({"name": "identity", "scale": 1.2}) == I.Identity(1.2)
    assert I.get("variance_scaling", scale=2.0, mode="fan_avg") == I.VarianceScaling(2.0, "fan_avg")
    assert I.get(0.1) == I.Constant(0.1)
    h = I.HeNormal(gain=2.0)
    assert I.get(h) is h
    assert repr(h) == "HeNormal(gain=2.0)"
    assert len({I.HeNormal(), I.HeNormal(), I.LecunNormal()}) == 2


def test_callable_initializer():
    def ones_plus_noise(shape, rng):
        return 1 + 0.01 * rng.standard_normal(shape)

    ws, bs = I.init_layers([3, 4, 2], ones_plus_noise, bias_init=lambda s, r: np.full(s, 0.5), seed=1)
    assert [w.shape for w in ws] == [(4, 3), (2, 4)]
    assert all(np.all(b == 0.5) for b in bs)
    assert np.all(np.abs(ws[0] - 1) < 0.1)
    ws2, _ = I.init_layers([3, 4, 2], ones_plus_noise, seed=1, gain=2.0)
    np.testing.assert_allclose(ws2[0], 2 * ws[0], rtol=1e-15)
    with pytest.raises(ValueError, match=r"returned shape \(4,\); expected \(4, 3\)"):
        I.init_layers([3, 4], lambda s, r: np.zeros(s[0]))
    with pytest.raises(ValueError, match="non-finite"):
        I.init_layers([3, 4], lambda s, r: np.full(s, np.inf))
    with pytest.raises(TypeError, match="real numbers"):
        I.init_layers([3, 4], lambda s, r: np.full(s, "a"))


def test_per_layer_lists():
    ws, bs = I.init_layers([2, 2, 2, 2], ["identity", I.Identity(0.5), 3.0], bias_init=[0.0, 1.0, "zeros"], seed=0)
    np.testing.assert_array_equal(ws[0], np.eye(2))
    np.testing.assert_array_equal(ws[1], 0.5 * np.eye(2))
    np.testing.assert_array_equal(ws[2], np.full((2, 2), 3.0))
    np.testing.assert_array_equal(bs[1], [1.0, 1.0])
    with pytest.raises(ValueError, match="init has 2 entries for 3 layers"):
        I.init_layers([2, 2, 2, 2], ["identity", "zeros"])


def test_network_build_uses_init_layers():
    net = lg.Network.build([4, 8, 8, 2], activation="relu", init="he_uniform", bias_init=0.1, seed=3, gain=1.1)
    ws, bs = I.init_layers([4, 8, 8, 2], "he_uniform", bias_init=0.1, seed=3, gain=1.1)
    for l in range(3):
        np.testing.assert_array_equal(net.weights[l], ws[l])
        np.testing.assert_array_equal(net.biases[l], bs[l])
    assert net.activations == ["relu"] * 3
    chain = lg.Network.build([2] * 11, "identity", init=I.Identity(1.2))
    out = chain.forward(np.ones((1, 2)), precision="float64")
    np.testing.assert_allclose(out, [[1.2**10, 1.2**10]], rtol=1e-14)
    big = lg.Network.build([3] * 51, "tanh", init="orthogonal", seed=0)
    np.testing.assert_allclose(big.weights[7] @ big.weights[7].T, np.eye(3), atol=1e-14)


# --- bad input -----------------------------------------------------------------


@pytest.mark.parametrize("call,exc,match", [
    (lambda: I.get("he_norml"), ValueError, "unknown initializer 'he_norml'; valid: .*he_normal"),
    (lambda: I.get(None), TypeError, "an initializer must be a name"),
    (lambda: I.get({"scale": 2}), ValueError, "needs a 'name' key"),
    (lambda: I.get("he_normal", scale=2), TypeError, "initializer 'he_normal'"),
    (lambda: I.get(I.HeNormal(), gain=2), TypeError, "only go with an initializer name"),
    (lambda: I.VarianceScaling(mode="fan_sum"), ValueError, "unknown mode 'fan_sum'; valid: fan_in, fan_out, fan_avg"),
    (lambda: I.VarianceScaling(distribution="cauchy"), ValueError, "unknown distribution 'cauchy'"),
    (lambda: I.VarianceScaling(distribution="normal"), ValueError, "ambiguous"),
    (lambda: I.VarianceScaling(scale=-1.0), ValueError, "scale must be positive"),
    (lambda: I.HeNormal(gain=-1.0), ValueError, "gain must be positive"),
    (lambda: I.HeNormal(gain=0.0), ValueError, "gain must be positive"),
    (lambda: I.Orthogonal(gain=float("nan")), ValueError, "gain must be finite"),
    (lambda: I.HeNormal(gain=True), TypeError, "gain must be a real number"),
    (lambda: I.HeNormal().with_gain(-2.0), ValueError, "gain must be positive"),
    (lambda: I.Normal(std=0.0), ValueError, "std must be positive"),
    (lambda: I.Uniform(a=1.0, b=1.0), ValueError, "a < b"),
    (lambda: I.Uniform(limit=1.0, a=0.0), ValueError, "either limit or"),
    (lambda: I.Uniform(a=0.0), ValueError, "both a and b"),
    (lambda: I.Identity()((3,)), ValueError, "identity needs a 2-D shape"),
    (lambda: I.Orthogonal()((3,)), ValueError, "at least 2 dimensions"),
    (lambda: I.HeNormal()((3, 0)), ValueError, "at least 1"),
    (lambda: I.HeNormal()((3, 2.5)), TypeError, "tuple of ints"),
    (lambda: I.HeNormal()((3, 4), -1), ValueError, "seed must be >= 0"),
    (lambda: I.HeNormal()((3, 4), "x"), TypeError, "rng must be"),
    (lambda: I.KaimingNormal(nonlinearity="swish"), ValueError, "no recommended gain"),
    (lambda: I.init_layers([3], "he_normal"), ValueError, "at least two entries"),
    (lambda: I.init_layers([3, 0], "he_normal"), ValueError, "at least 1"),
    (lambda: I.init_layers([3, 4.5], "he_normal"), TypeError, "widths must be ints"),
    (lambda: I.init_layers([3, 4], "he_normal", seed=-3), ValueError, "seed must be >= 0"),
    (lambda: I.init_layers([3, 4], "he_normal", seed=1.5), TypeError, "seed must be an int"),
    (lambda: I.init_layers([3, 4], "he_normal", gain=-1.0), ValueError, "gain must be positive"),
    (lambda: lg.Network.build([3, 4], init="nope"), ValueError, "unknown initializer 'nope'"),
    (lambda: lg.Network.build([3, 4], gain=0.0), ValueError, "gain must be positive"),
])
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
