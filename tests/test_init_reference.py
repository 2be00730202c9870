"""Initializers against their published definitions, typed here from the Keras and
PyTorch documentation (not from loggrad's code): fans, standard deviations, limits,
gains and the distribution family, checked on 50,000 draws with bounds of five
standard errors (a correct initializer fails one of these checks with probability
below 1e-6; a wrong constant, fan or family fails by far more).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import loggrad.init as I

N_DRAWS = (200, 250)  # 50,000 entries
SHAPE_FANS = [((400, 500), 500, 400), ((7,), 7, 7), ((6, 4, 3, 5), 60, 90), ((3, 2, 4), 8, 12)]
TRUNC_STD = 0.87962566103423978  # std of N(0, 1) truncated to [-2, 2]
KURT = {"normal": 3.0, "uniform": 1.8, "truncated": 2.3672}  # kurtosis of each family


def _moments(w: np.ndarray) -> tuple[float, float, float]:
    x = w.ravel()
    mu = float(x.mean())
    sd = float(x.std())
    kurt = float(np.mean((x - mu) ** 4) / sd**4)
    return mu, sd, kurt


def _check_draws(w: np.ndarray, mean: float, std: float, family: str) -> None:
    n = w.size
    mu, sd, kurt = _moments(w)
    k = KURT[family]
    assert abs(mu - mean) <= 5 * std / math.sqrt(n), (mu, mean)
    assert abs(sd / std - 1) <= 5 * math.sqrt((k - 1) / (4 * n)), (sd, std)
    assert abs(kurt - k) <= 0.15, (kurt, family)
    if family == "uniform":
        lim = math.sqrt(3) * std
        assert np.all(np.abs(w - mean) <= lim) and np.max(np.abs(w - mean)) > 0.999 * lim
    if family == "truncated":
        cut = 2 * std / TRUNC_STD
        assert np.all(np.abs(w - mean) <= cut) and np.max(np.abs(w - mean)) > 0.99 * cut


@pytest.mark.parametrize("shape,fan_in,fan_out", SHAPE_FANS)
def test_fans_as_published(shape: tuple[int, ...], fan_in: int, fan_out: int) -> None:
    assert I.compute_fans(shape) == (fan_in, fan_out)


# name -> (variance as a function of (fan_in, fan_out), family), from the Keras and torch docs
_VARIANCE = {
    "glorot_normal": (lambda fi, fo: 2 / (fi + fo), "truncated"),
    "glorot_uniform": (lambda fi, fo: 2 / (fi + fo), "uniform"),
    "he_normal": (lambda fi, fo: 2 / fi, "truncated"),
    "he_uniform": (lambda fi, fo: 2 / fi, "uniform"),
    "lecun_normal": (lambda fi, fo: 1 / fi, "truncated"),
    "lecun_uniform": (lambda fi, fo: 1 / fi, "uniform"),
    "xavier_normal": (lambda fi, fo: 2 / (fi + fo), "normal"),
    "xavier_uniform": (lambda fi, fo: 2 / (fi + fo), "uniform"),
    "kaiming_normal": (lambda fi, fo: 2 / fi, "normal"),
    "kaiming_uniform": (lambda fi, fo: 2 / fi, "uniform"),
}


@pytest.mark.parametrize("name", sorted(_VARIANCE))
@pytest.mark.parametrize("gain", [1.0, 1.7])
def test_named_initializers_draw_their_published_variance(name: str, gain: float) -> None:
    var, family = _VARIANCE[name]
    init = I.get(name).with_gain(gain)
    fan_out, fan_in = N_DRAWS
    std = gain * math.sqrt(var(fan_in, fan_out))
    assert init.std(N_DRAWS) == pytest.approx(std, rel=1e-14)
    _check_draws(init(N_DRAWS, 11), 0.0, std, family)


@pytest.mark.parametrize("mode,fan", [("fan_in", 250), ("fan_out", 200), ("fan_avg", 225)])
@pytest.mark.parametrize("dist,family", [("truncated_normal", "truncated"), ("untruncated_normal", "normal"),
                                         ("uniform", "uniform")])
def test_variance_scaling_modes_and_distributions(mode: str, fan: int, dist: str, family: str) -> None:
    init = I.VarianceScaling(scale=3.0, mode=mode, distribution=dist)
    std = math.sqrt(3.0 / fan)
    assert init.std(N_DRAWS) == pytest.approx(std, rel=1e-14)
    _check_draws(init(N_DRAWS, 12), 0.0, std, family)
    assert init.with_gain(2.0).std(N_DRAWS) == pytest.approx(2 * std, rel=1e-14)  # gain scales the std


@pytest.mark.parametrize("nonlinearity,param,gain", [
    ("linear", None, 1.0), ("conv2d", None, 1.0), ("sigmoid", None, 1.0), ("tanh", None, 5 / 3),
    ("relu", None, math.sqrt(2)), ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))),
    ("leaky_relu", 0.2, math.sqrt(2 / 1.04)), ("selu", None, 0.75), ("Tanh", None, 5 / 3),
])
def test_recommended_gain_table(nonlinearity: str, param: float | None, gain: float) -> None:
    assert I.recommended_gain(nonlinearity, param) == pytest.approx(gain, rel=1e-15)


@pytest.mark.parametrize("nonlinearity,a,mode,fan", [("relu", 0.0, "fan_in", 250), ("tanh", 0.0, "fan_out", 200),
                                                     ("leaky_relu", 0.3, "fan_in", 250)])
def test_kaiming_with_its_published_arguments(nonlinearity: str, a: float, mode: str, fan: int) -> None:
    g = {"relu": math.sqrt(2), "tanh": 5 / 3, "leaky_relu": math.sqrt(2 / (1 + a * a))}[nonlinearity]
    for cls, family in ((I.KaimingNormal, "normal"), (I.KaimingUniform, "uniform")):
        init = cls(a=a, mode=mode, nonlinearity=nonlinearity)
        assert init.std(N_DRAWS) == pytest.approx(g / math.sqrt(fan), rel=1e-14)
        _check_draws(init(N_DRAWS, 13), 0.0, g / math.sqrt(fan), family)
        again = init.with_gain(0.5)
        assert again.std(N_DRAWS) == pytest.approx(0.5 * g / math.sqrt(fan), rel=1e-14)
        assert again.get_config() == {"a": a, "mode": mode, "nonlinearity": nonlinearity, "gain": 0.5}


def test_plain_distributions_with_their_parameters() -> None:
    _check_draws(I.Normal(0.5, 2.0)(N_DRAWS, 1), 0.5, 2.0, "normal")
    _check_draws(I.Uniform(a=-1.0, b=3.0)(N_DRAWS, 2), 1.0, 4 / math.sqrt(12), "uniform")
    _check_draws(I.Uniform(limit=0.25)(N_DRAWS, 3), 0.0, 0.5 / math.sqrt(12), "uniform")
    _check_draws(I.TruncatedNormal(-1.0, 0.5)(N_DRAWS, 4), -1.0, 0.5 * TRUNC_STD, "truncated")
    assert I.Normal(0.0, 2.0).std(N_DRAWS) == 2.0
    assert I.Uniform(limit=0.25).std(N_DRAWS) == pytest.approx(0.5 / math.sqrt(12), rel=1e-15)
    assert I.TruncatedNormal(0.0, 0.5).std(N_DRAWS) == pytest.approx(0.5 * TRUNC_STD, rel=1e-15)
    # the gain multiplies the spread about the mean
    _check_draws(I.Normal(0.5, 2.0).with_gain(3.0)(N_DRAWS, 5), 0.5, 6.0, "normal")
    _check_draws(I.Uniform(a=-1.0, b=3.0).with_gain(0.5)(N_DRAWS, 6), 1.0, 2 / math.sqrt(12), "uniform")
    _check_draws(I.TruncatedNormal(-1.0, 0.5).with_gain(2.0)(N_DRAWS, 7), -1.0, TRUNC_STD, "truncated")


def test_constants_identity_and_gains() -> None:
    np.testing.assert_array_equal(I.Constant(0.25)((2, 3)), np.full((2, 3), 0.25))
    np.testing.assert_array_equal(I.Constant(0.25).with_gain(4.0)((2,)), [1.0, 1.0])
    np.testing.assert_array_equal(I.Zeros()((3,)), np.zeros(3))
    np.testing.assert_array_equal(I.Ones()((2, 2)), np.ones((2, 2)))
    np.testing.assert_array_equal(I.Identity(1.5)((2, 3)), [[1.5, 0, 0], [0, 1.5, 0]])
    np.testing.assert_array_equal(I.Identity(1.5).with_gain(2.0)((3, 2)), [[3, 0], [0, 3], [0, 0]])
    np.testing.assert_array_equal(I.get("ones")((2,)), [1.0, 1.0])


@pytest.mark.parametrize("shape", [(5, 5), (3, 7), (7, 3), (4, 2, 3)])
@pytest.mark.parametrize("gain", [1.0, 2.5])
def test_orthogonal_rows_or_columns_are_orthonormal(shape: tuple[int, ...], gain: float) -> None:
    w = I.Orthogonal(gain)(shape, 8).reshape(shape[0], -1)
    small = min(w.shape)
    gram = w @ w.T if w.shape[0] == small else w.T @ w
    np.testing.assert_allclose(gram, gain**2 * np.eye(small), atol=1e-13 * gain**2)
    again = I.Orthogonal(gain).with_gain(2.0)(shape, 8).reshape(shape[0], -1)
    np.testing.assert_allclose(again, 2.0 * w, rtol=1e-15)


def test_configs_equality_and_repr() -> None:
    a, b = I.get("he_normal").with_gain(2.0), I.HeNormal(2.0)
    assert a == b and hash(a) == hash(b) and a != I.HeNormal(1.0) and a != I.HeUniform(2.0)
    assert repr(b) == "HeNormal(gain=2.0)"
    vs = I.VarianceScaling(2.0, "fan_out", "uniform")
    assert vs.get_config() == {"scale": 2.0, "mode": "fan_out", "distribution": "uniform"}
    assert vs.with_gain(3.0).get_config()["scale"] == pytest.approx(18.0)
    assert I.get(vs.get_config() | {"name": "variance_scaling"}) == vs
    assert "he_normal" in I.names() and "xavier_uniform" in I.names()


def test_seeds_reproduce_and_differ() -> None:
    init = I.get("glorot_uniform")
    np.testing.assert_array_equal(init((30, 20), 5), init((30, 20), 5))
    assert not np.array_equal(init((30, 20), 5), init((30, 20), 6))
    gen = np.random.default_rng(5)
    assert I.as_generator(gen) is gen
    np.testing.assert_array_equal(init((4, 4), np.random.SeedSequence(9)), init((4, 4), np.random.SeedSequence(9)))


@pytest.mark.parametrize("shape,want", [(5, (5,)), ([2, 3], (2, 3)), ((np.int64(2), 3), (2, 3)),
                                        (np.array([3, 1]), (3, 1)), ((4, 1), (4, 1))])
def test_shapes_as_ints_lists_and_arrays(shape: object, want: tuple[int, ...]) -> None:
    w = I.Normal()(shape, 0)
    assert w.shape == want and w.dtype == np.float64


@pytest.mark.parametrize("shape", ["3", b"3", 2.5, (2, 0), (-1,), (), None])
def test_bad_shapes_are_refused(shape: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        I.Normal()(shape, 0)


def test_registry_names_and_random_flags() -> None:
    """Each initializer carries its registry name, and says whether it draws random numbers."""
    for name in ("zeros", "ones", "constant", "normal", "uniform", "truncated_normal", "orthogonal", "identity",
                 "variance_scaling", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "lecun_normal",
                 "lecun_uniform", "xavier_normal", "xavier_uniform", "kaiming_normal", "kaiming_uniform"):
        assert I.get(name).name == name
    assert I.Initializer.name == "initializer"
    for init, random in ((I.Constant(0.5), False), (I.Zeros(), False), (I.Ones(), False), (I.Identity(), False),
                         (I.Normal(), True), (I.Uniform(), True), (I.Orthogonal(), True)):
        assert init.random is random
    np.testing.assert_array_equal(I.Constant()((3,)), np.zeros(3))  # the default constant is 0


def test_truncated_normal_follows_the_redraw_recipe() -> None:
    """mean + std z, z standard normals from PCG64(seed), each one beyond 2 drawn again
    (Keras' and torch's recipe), reproduced here independently of loggrad."""
    gen = np.random.Generator(np.random.PCG64(17))
    z = gen.standard_normal(500)
    out = z.copy()
    bad = np.flatnonzero(np.abs(out) > 2.0)
    while bad.size:
        out[bad] = gen.standard_normal(bad.size)
        bad = bad[np.abs(out[bad]) > 2.0]
    np.testing.assert_array_equal(I.TruncatedNormal(0.5, 3.0)((500,), 17), 0.5 + 3.0 * out)


def test_defaults_and_refused_limits() -> None:
    assert I.VarianceScaling().get_config() == {"scale": 1.0, "mode": "fan_in", "distribution": "truncated_normal"}
    assert I.VarianceScaling().std((10, 4)) == 0.5
    assert I.TruncatedNormal().get_config() == {"mean": 0.0, "std": 1.0}
    for bad in (0.0, -0.5):
        with pytest.raises(ValueError):
            I.TruncatedNormal(0.0, bad)
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError):
            I.Uniform(limit=bad)


@pytest.mark.parametrize("seed,layer", [(0, 0), (5, 3), (123, 40)])
def test_layer_generators_are_the_documented_spawned_streams(seed: int, layer: int) -> None:
    """SeedSequence(seed).spawn(layer + 1)[layer].spawn(2), built with numpy alone."""
    want = np.random.SeedSequence(seed).spawn(layer + 1)[layer].spawn(2)
    gw, gb = I.layer_generators(seed, layer)
    np.testing.assert_array_equal(gw.random(4), np.random.Generator(np.random.PCG64(want[0])).random(4))
    np.testing.assert_array_equal(gb.random(4), np.random.Generator(np.random.PCG64(want[1])).random(4))
    for bad in (-1, 1.5, "2"):
        with pytest.raises(ValueError):
            I.layer_generators(seed, bad)


def test_init_layers_takes_widths_of_one_and_refuses_strings() -> None:
    ws, bs = I.init_layers([3, 1, 2], "he_normal", seed=0)
    assert [w.shape for w in ws] == [(1, 3), (2, 1)] and [b.shape for b in bs] == [(1,), (2,)]
    for bad in ("32", b"\x03\x02", [3, 0, 2]):  # bytes would iterate as the widths 3, 2
        with pytest.raises((TypeError, ValueError)):
            I.init_layers(bad, "he_normal", seed=0)


@pytest.mark.parametrize("shape", [(3, 7), (7, 3), (5, 5)])
def test_orthogonal_std_is_the_rms_of_its_entries(shape: tuple[int, int]) -> None:
    """Orthonormal rows (or columns) of length n: every entry has mean square 1 / max(rows, cols)."""
    w = I.Orthogonal(2.0)(shape, 1)
    assert I.Orthogonal(2.0).std(shape) == pytest.approx(math.sqrt(np.mean(w * w)), rel=1e-13)


def test_callables_are_named_in_their_errors() -> None:
    def bad_shape(shape: tuple[int, ...], gen: np.random.Generator) -> np.ndarray:
        return np.zeros(3)

    init = I.get(bad_shape)
    assert init.name == "callable"
    with pytest.raises(ValueError, match="initializer bad_shape returned shape"):
        init((2, 2), 0)
