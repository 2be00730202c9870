"""Every threshold the API documents, tested at the threshold itself and one step
to either side, so that `<` and `<=` (or `>` and `>=`) give different results.

References are independent of loggrad: exact rational arithmetic (fractions,
whose float() rounds correctly, ties to even) and IEEE float64 itself.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

import loggrad as lg
from loggrad import _core

MAX_EXP = int(_core.max_exponent)  # loggrad's exponent range: |log2| <= 2^60


def _bits(a: object) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64)).view(np.uint64)


def _same(a: lg.LogArray, b: lg.LogArray) -> bool:
    """Bitwise the same values (mantissa bits and exponents)."""
    return bool(np.array_equal(_bits(a.mantissa), _bits(b.mantissa)) and np.array_equal(a.exponent, b.exponent))


def _exact_norm(values: np.ndarray) -> Fraction:
    """The Euclidean norm's square, exactly."""
    return sum((Fraction(float(v)) ** 2 for v in values.ravel()), Fraction(0))


# -- clip_grad_norm: "at most max_norm" -------------------------------------------------

# Gradients whose norm is exactly a float64 number: Pythagorean triples and their
# scalings by powers of two (exact in float64 and in loggrad's sqrt).
_EXACT_NORMS = [
    ([3.0, 4.0], 5.0),
    ([5.0, 12.0], 13.0),
    ([-8.0, 15.0], 17.0),
    ([3.0 * 2.0**-600, 4.0 * 2.0**-600], 5.0 * 2.0**-600),
    ([0.0, 3.0 * 2.0**900, 4.0 * 2.0**900], 5.0 * 2.0**900),
    ([2.0**-1074], 2.0**-1074),
]


@pytest.mark.parametrize("values,norm", _EXACT_NORMS)
def test_exact_norms_are_exact(values: list[float], norm: float) -> None:
    assert _exact_norm(np.array(values)) == Fraction(norm) ** 2  # the reference itself
    assert float(lg.LogArray(np.array(values)).norm().to_numpy()) == norm


@pytest.mark.parametrize("values,norm", _EXACT_NORMS)
def test_clip_grad_norm_leaves_a_norm_equal_to_max_norm_alone(values: list[float], norm: float) -> None:
    g = lg.LogArray(np.array(values))
    out, before = lg.clip_grad_norm(g, norm)
    assert out is g  # not clipped: the norm is at most max_norm
    assert float(before.to_numpy()) == norm


# clip_grad_norm (train.py) compares the norm with max_norm exactly (exponents, then
# mantissas). It used to compare float(norm.log2()) with np.log2(max_norm): a log2 resolves
# its argument only to about ulp(log2 x) * ln 2 relative (at 10^271 about 700 ulps), so a
# norm an ulp, or hundreds of ulps, above max_norm was returned unclipped.
@pytest.mark.parametrize("values,norm", _EXACT_NORMS[:5])
def test_clip_grad_norm_clips_just_below_the_norm(values: list[float], norm: float) -> None:
    g = lg.LogArray(np.array(values))
    max_norm = math.nextafter(norm, 0.0)
    out, before = lg.clip_grad_norm(g, max_norm)
    assert out is not g
    assert float(before.to_numpy()) == norm
    # scaled by max_norm / norm = 1 - 2^-53 (or so): a few roundings at most
    got = Fraction(float(out.norm().to_numpy()))
    assert abs(got / Fraction(max_norm) - 1) <= 4 * Fraction(2) ** -53
    for v, w in zip(out.to_numpy(), values):
        assert abs(Fraction(float(v)) - Fraction(w) * Fraction(max_norm) / Fraction(norm)) <= \
            abs(Fraction(w)) * 2 * Fraction(2) ** -53


@pytest.mark.parametrize("values,norm", _EXACT_NORMS[:5])
def test_clip_grad_norm_leaves_a_norm_just_below_max_norm_alone(values: list[float], norm: float) -> None:
    g = lg.LogArray(np.array(values))
    out, _ = lg.clip_grad_norm(g, math.nextafter(norm, math.inf))
    assert out is g


# Norms drawn at random, converted to float64 exactly (their mantissas are float64
# numbers, their exponents in range), so each can be passed as max_norm.
def _norms_equal_to_a_float(count: int) -> list[tuple[np.ndarray, float]]:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        a = rng.standard_normal(5) * 10.0 ** rng.uniform(-300, 300)
        out.append((a, float(lg.LogArray(a).norm().to_numpy())))
    return out


def test_clip_grad_norm_at_equality_for_any_norm() -> None:
    bad = []
    for a, n in _norms_equal_to_a_float(2000):
        g = lg.LogArray(a)
        if lg.clip_grad_norm(g, n)[0] is not g:
            bad.append(n)
    assert bad == [], f"norm == max_norm clipped for {bad}"


def _one_layer(w: np.ndarray, b: np.ndarray) -> lg.Network:
    return lg.Network([np.array(w, dtype=float)], [np.array(b, dtype=float)], "identity")


def test_sgd_step_reports_no_clipping_at_a_norm_equal_to_clip_norm() -> None:
    # One identity unit, loss "sum", x = [[2, 2]]: dL/dW = [[2, 2]], dL/db = [1], norm 3 exactly.
    x = np.array([[2.0, 2.0]])
    for clip, clipped in ((3.0, False), (math.nextafter(3.0, math.inf), False), (2.999, True)):
        net = _one_layer(np.array([[0.5, -0.25]]), np.array([0.125]))
        rep = net.sgd_step(x, None, lr=2.0**-10, loss="sum", clip_norm=clip)
        assert float(rep.grad_norm.to_numpy()) == 3.0
        assert rep.clipped is clipped, f"clip_norm {clip!r}"


def test_sgd_step_clips_a_norm_one_ulp_above_clip_norm() -> None:
    net = _one_layer(np.array([[0.5, -0.25]]), np.array([0.125]))
    rep = net.sgd_step(np.array([[2.0, 2.0]]), None, lr=2.0**-10, loss="sum", clip_norm=math.nextafter(3.0, 0.0))
    assert rep.clipped


# -- clip_grad_value: "clamp every entry to [-clip_value, clip_value]" -------------------


def test_clip_grad_value_at_and_around_the_bound() -> None:
    c = 0.75
    vals = np.array([c, -c, math.nextafter(c, 0), -math.nextafter(c, 0), math.nextafter(c, 2), -math.nextafter(c, 2),
                     1e300, -1e-300, 0.0])
    g = lg.LogArray(vals)
    out = lg.clip_grad_value(g, c)
    want = np.clip(vals, -c, c)  # IEEE float64 clamps exactly
    np.testing.assert_array_equal(_bits(out.to_numpy()), _bits(want))
    assert _same(out[:4], g[:4])  # entries at or inside the bound are the very same values
    # far beyond float64's range the clamp still applies
    big = lg.LogArray.from_log10([1, -1, 1], [400.0, 400.0, -400.0])
    np.testing.assert_array_equal(lg.clip_grad_value(big, c).to_numpy(), [c, -c, 0.0])
    assert lg.clip_grad_value(big, c)[2].log10() == big[2].log10()


# -- sgd_step: updates lost below half an ulp (ties round to even) ------------------------


def _float_minus(w: float, u: Fraction) -> float:
    """w - u rounded to nearest float64, ties to even (Fraction's float() rounds correctly)."""
    return float(Fraction(w) - u)


# Weights with an even and an odd last mantissa bit, at and away from a power of two
# (where the ulp below is half the ulp above).
_WEIGHTS = [1.0, math.nextafter(1.0, 2.0), 1.5, math.nextafter(1.5, 2.0), 0.75, -1.0, -math.nextafter(1.0, 2.0),
            2.0**-500, math.nextafter(2.0**-500, 1.0), 3.0 * 2.0**400, -(2.0**-900)]


@pytest.mark.parametrize("quarters", [1, 2, 3, 4, 6])
def test_lost_updates_at_and_around_half_an_ulp(quarters: int) -> None:
    """One step of an identity layer with loss "sum" and x = [[1]]: every parameter's
    gradient is exactly 1, so its update is exactly lr. lr is `quarters` quarters of the
    ulp above |w| (the spacing toward zero is half that at a power of two): 2 quarters
    is a tie at an ordinary weight, 1 quarter a tie at a power of two. A tie keeps the
    weight when its last mantissa bit is even and moves it when odd. The step must
    round as float64 does and count exactly the parameters it left unchanged."""
    ws = np.array(_WEIGHTS)
    n = ws.size
    # one lr per run cannot hit every weight's half ulp: run one step per weight
    for i, w in enumerate(ws):
        ulp = Fraction(math.ulp(w))
        u = ulp * quarters / 4
        lr = float(u)
        assert Fraction(lr) == u  # a power of two times 1 or 3: exact
        wcol = np.zeros((n, 1))
        wcol[i, 0] = w
        b = np.full(n, 0.5)
        net = _one_layer(wcol, b)
        rep = net.sgd_step(np.array([[1.0]]), None, lr=lr, loss="sum")
        new = net.weights[0][i, 0]
        want = _float_minus(w, u)
        assert _bits(new) == _bits(want), f"w={w!r}, update {quarters}/4 ulp: got {new!r}, want {want!r}"
        # the other rows' weights are 0, which any update changes; the n biases are 0.5
        kept = int(want == w) + n * int(_float_minus(0.5, u) == 0.5)
        assert rep.nonzero_updates[0] == 2 * n
        assert rep.unchanged[0] == kept, f"w={w!r}, {quarters}/4 ulp"
        assert rep.fraction_unchanged[0] == rep.unchanged[0] / (2 * n)


# -- LogArray: float64 range and loggrad's exponent range ------------------------------


def test_in_float64_range_at_its_edges() -> None:
    """True exactly where the value is a nonzero normal float64 (or zero)."""
    tiny, huge = 2.0**-1022, np.finfo(np.float64).max
    vals = [tiny, math.nextafter(tiny, 0), huge, 0.0, -tiny, 2.0**-1074]
    a = lg.LogArray(np.array(vals))
    want = [v == 0 or (abs(v) >= tiny and math.isfinite(v)) for v in vals]
    np.testing.assert_array_equal(a.in_float64_range(), want)
    over = lg.LogArray(np.array([huge])) * lg.LogArray(np.array([2.0]))
    assert not over.in_float64_range()[0] and over.to_numpy()[0] == math.inf


@pytest.mark.parametrize("k2", [-1076, -1075, -1074, -1073])
@pytest.mark.parametrize("odd", [1, 3, 5])
def test_to_numpy_rounds_subnormals_like_float64(k2: int, odd: int) -> None:
    """odd * 2^k2 around the smallest subnormal: ties (half of 2^-1074) go to even."""
    exact = Fraction(odd) * Fraction(2) ** k2
    a = lg.LogArray.from_parts(np.array([float(odd)]), np.array([k2]))
    assert a.to_numpy()[0] == float(exact)  # float(Fraction) rounds correctly, ties to even


def test_exponent_range_edge_is_inclusive() -> None:
    top = lg.LogArray.from_parts(np.array([0.5]), np.array([MAX_EXP]))
    assert int(top.exponent[0]) == MAX_EXP and float(top.mantissa[0]) == 0.5
    bottom = lg.LogArray.from_parts(np.array([0.5]), np.array([-MAX_EXP]))
    assert int(bottom.exponent[0]) == -MAX_EXP and float(bottom.mantissa[0]) == 0.5
    with pytest.raises(lg.ExponentRangeError):
        lg.LogArray.from_parts(np.array([0.5]), np.array([MAX_EXP + 1]))
    with pytest.raises(lg.ExponentRangeError):
        top * lg.LogArray(np.array([2.0]))
    # one step below the range: either refused or flushed to an exact zero (IEEE-style),
    # never kept as a wrong nonzero value
    try:
        under = lg.LogArray.from_parts(np.array([0.5]), np.array([-MAX_EXP - 1]))
    except lg.ExponentRangeError:
        return
    assert under.sign()[0] == 0 and under.log10()[0] == -math.inf


# -- indices and counts the API bounds --------------------------------------------------


def test_layer_indices_from_minus_depth_to_depth_minus_one() -> None:
    rng = np.random.default_rng(3)
    net = lg.Network([rng.standard_normal((3, 3)) for _ in range(4)], None, "tanh")
    x = rng.standard_normal((2, 3))
    full = net.backward(x, loss="sum")
    for i in (-4, 3):
        g = net.backward(x, loss="sum", layers=[i])
        assert _same(g.weights[i], full.weights[i])
    for i in (-5, 4):
        with pytest.raises((ValueError, IndexError), match="layer"):
            net.backward(x, loss="sum", layers=[i])


def test_spectrum_k_from_one_to_the_narrowest_width() -> None:
    rng = np.random.default_rng(4)
    net = lg.Network([rng.standard_normal((5, 4)), rng.standard_normal((3, 5))], None, "tanh")
    assert len(lg.spectrum(net, np.ones(4), k=1).lyapunov) == 1
    assert len(lg.spectrum(net, np.ones(4), k=3).lyapunov) == 3
    for k in (0, 4):
        with pytest.raises(ValueError, match="k"):
            lg.spectrum(net, np.ones(4), k=k)


def test_truncated_normal_is_cut_at_two_standard_deviations() -> None:
    """Keras' TruncatedNormal: draws more than 2 std from the mean are drawn again, so
    every value lies within [mean - 2 std, mean + 2 std] and, over 200,000 draws, the
    extremes come within 0.5% of both ends."""
    mean, std = 0.25, 0.5
    w = np.asarray(lg.init.TruncatedNormal(mean, std)((400, 500), 1))
    assert np.all(np.abs(w - mean) <= 2 * std)
    assert w.max() > mean + 1.99 * std and w.min() < mean - 1.99 * std


def test_from_log10_at_the_top_of_the_exponent_range() -> None:
    l10 = MAX_EXP * math.log10(2.0)  # floor(l10 / log10 2) == 2^60 exactly
    try:
        a = lg.LogArray.from_log10([1], [l10])
    except (OverflowError, lg.ExponentRangeError):
        return
    assert int(a.exponent[0]) <= MAX_EXP
