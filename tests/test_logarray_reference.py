"""LogArray against independent references: mpmath (unbounded exponent, 120 bits)
for values, logarithms, sums and norms; Python's own float64 arithmetic for the
single roundings that products, quotients and conversions must reproduce.

Values are drawn over the whole exponent range (|log2| up to 10^15), with
exact zeros and both signs.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

import loggrad as lg
from contract import U, log10_tol

mpmath.mp.prec = 120


def _draw(rng: np.random.Generator, n: int, emax: int = 10**15, zeros: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Mantissas in +-[0.5, 1) and exponents over a wide range, some exact zeros."""
    m = rng.uniform(0.5, 1.0, n) * rng.choice([-1.0, 1.0], n)
    e = rng.integers(-emax, emax, n)
    if zeros:
        m[rng.random(n) < 0.1] = 0.0
    return m, e


def _mp(m: float, e: int) -> mpmath.mpf:
    return mpmath.ldexp(mpmath.mpf(float(m)), int(e))


@pytest.mark.parametrize("emax", [10, 1100, 10**6, 10**15])
def test_log10_log2_and_sign_against_mpmath(emax: int) -> None:
    rng = np.random.default_rng(emax)
    m, e = _draw(rng, 300, emax)
    a = lg.LogArray.from_parts(m, e)
    l10, l2, sg = a.log10(), a.log2(), a.sign()
    assert sg.dtype == np.int8
    for i in range(m.size):
        if m[i] == 0:
            assert l10[i] == -math.inf and l2[i] == -math.inf and sg[i] == 0
            continue
        v = abs(_mp(m[i], e[i]))
        want10, want2 = float(mpmath.log10(v)), float(mpmath.log(v, 2))
        # the value is exact: only the evaluation of e log10(2) + log10|m| rounds
        assert abs(l10[i] - want10) <= log10_tol(want10, 2), (m[i], e[i])
        assert abs(l2[i] - want2) <= 2 * math.ulp(abs(want2)) + 2 * U, (m[i], e[i])
        assert sg[i] == (1 if m[i] > 0 else -1)


def test_from_parts_normalises_and_keeps_the_value() -> None:
    rng = np.random.default_rng(1)
    m = rng.uniform(-1e6, 1e6, 200)
    m[:5] = [0.0, 1.0, -3.0, 2.0**-1074, 0.5]
    e = rng.integers(-5000, 5000, 200)
    a = lg.LogArray.from_parts(m, e)
    am, ae = a.mantissa, a.exponent
    nz = am != 0
    assert np.all((np.abs(am[nz]) >= 0.5) & (np.abs(am[nz]) < 1.0))
    for i in range(m.size):
        assert _mp(am[i], ae[i]) == _mp(m[i], e[i])  # exact: scaling by powers of two
    assert a.sign()[0] == 0 and a.log10()[0] == -math.inf


def test_to_numpy_rounds_once_like_float64() -> None:
    rng = np.random.default_rng(2)
    m, _ = _draw(rng, 400, zeros=True)
    e = rng.integers(-1130, 1030, 400)
    got = lg.LogArray.from_parts(m, e).to_numpy()
    for i in range(m.size):
        want = float(_mp(m[i], e[i])) if abs(_mp(m[i], e[i])) < mpmath.mpf(2) ** 1024 else math.copysign(math.inf, m[i])
        assert got[i] == want or (math.isnan(want) and math.isnan(got[i])), (m[i], e[i], got[i], want)
    assert np.asarray(lg.LogArray.from_parts(m, e)).tolist() == got.tolist()  # __array__
    one = lg.LogArray.from_parts(np.array([0.75]), np.array([3]))
    assert float(one.reshape(())) == 6.0
    with pytest.raises(TypeError):
        float(lg.LogArray(np.ones(2)))


def test_constructor_takes_floats_ints_and_bools_exactly() -> None:
    vals = [0, 1, -7, 2**52 + 1, True, 0.1, -1e-310, 1.7e308]
    a = lg.LogArray(vals)
    np.testing.assert_array_equal(a.to_numpy(), np.asarray(vals, dtype=np.float64))
    assert a.shape == (8,) and a.ndim == 1 and a.size == 8 and len(a) == 8
    b = lg.LogArray(a)
    assert np.array_equal(b.mantissa, a.mantissa) and np.array_equal(b.exponent, a.exponent)
    for bad in ([math.nan], [math.inf], "1.0"):
        with pytest.raises((TypeError, ValueError)):
            lg.LogArray(bad)
    with pytest.raises(TypeError):
        lg.LogArray(np.array([1 + 2j]))


@pytest.mark.parametrize("emax", [50, 10**12])
def test_products_and_quotients_round_once(emax: int) -> None:
    """x * y and x / y: the mantissas' product or quotient rounded once (as Python's
    float arithmetic rounds it), the exponents added or subtracted exactly."""
    rng = np.random.default_rng(emax + 3)
    m1, e1 = _draw(rng, 300, emax)
    m2, e2 = _draw(rng, 300, emax, zeros=False)
    x, y = lg.LogArray.from_parts(m1, e1), lg.LogArray.from_parts(m2, e2)
    for op, got in (("mul", x * y), ("div", x / y)):
        gm, ge = got.mantissa, got.exponent
        for i in range(m1.size):
            if m1[i] == 0:
                assert gm[i] == 0 and got.sign()[i] == 0
                continue
            ref_m = m1[i] * m2[i] if op == "mul" else m1[i] / m2[i]
            ref_e = e1[i] + e2[i] if op == "mul" else e1[i] - e2[i]
            fm, fe = math.frexp(ref_m)
            assert (gm[i], int(ge[i])) == (fm, int(ref_e) + fe), (op, m1[i], e1[i], m2[i], e2[i])
    # scalars and float64 arrays on either side
    nz = m1 != 0
    for y2, de in ((2.0 * x, 1), (x * 0.5, -1), (x * np.full(300, 4.0), 2)):
        np.testing.assert_array_equal(y2.mantissa, x.mantissa)
        np.testing.assert_array_equal(y2.exponent[nz], x.exponent[nz] + de)
    with pytest.raises(ZeroDivisionError):
        x / lg.LogArray(np.zeros(300))


def test_negation_and_abs() -> None:
    rng = np.random.default_rng(4)
    m, e = _draw(rng, 50)
    x = lg.LogArray.from_parts(m, e)
    np.testing.assert_array_equal((-x).mantissa, -x.mantissa)
    np.testing.assert_array_equal((-x).exponent, x.exponent)
    np.testing.assert_array_equal(abs(x).mantissa, np.abs(x.mantissa))
    np.testing.assert_array_equal(abs(x).exponent, x.exponent)


@pytest.mark.parametrize("k", [0, 1, 2, 3, 7, 10, 64, 1001])
def test_integer_powers_against_mpmath(k: int) -> None:
    rng = np.random.default_rng(k)
    m, e = _draw(rng, 20, 10**9 // max(k, 1), zeros=True)
    x = lg.LogArray.from_parts(m, e)
    p = x**k
    for i in range(m.size):
        want = _mp(m[i], e[i]) ** k
        got = _mp(p.mantissa[i], p.exponent[i])
        if want == 0:
            assert got == 0
        else:
            # square-and-multiply: a squaring doubles the relative error before it,
            # so the k - 1 products of x^k commit at most (k - 1) u to first order
            assert abs(got / want - 1) <= max(k - 1, 0) * 1.01 * U, (k, m[i], e[i])
    if k == 1:
        assert np.array_equal(p.mantissa, x.mantissa) and np.array_equal(p.exponent, x.exponent)
    for bad in (-1, 1.5, True):
        with pytest.raises(TypeError):
            x**bad  # type: ignore[operator]


def test_a_power_that_only_an_unneeded_square_would_overflow() -> None:
    x = lg.LogArray.from_parts(np.array([0.75]), np.array([2**59 + 1]))
    assert int((x**1).exponent[0]) == 2**59 + 1  # squaring x would leave the range
    with pytest.raises(lg.ExponentRangeError):
        x**2


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_sum_against_mpmath(axis: int | None) -> None:
    """A float64 sum's error bound, (n - 1) u of the sum of magnitudes, over
    exponents far beyond float64 (terms within 2^1000 of each other per row)."""
    rng = np.random.default_rng(5 + (axis or 0))
    m = rng.uniform(-1, 1, (7, 9))
    m[2, 3] = 0.0
    base = rng.integers(-10**12, 10**12, (7, 1))
    e = base + rng.integers(-30, 30, (7, 9))
    if axis == 0:
        e = rng.integers(-10**12, 10**12, (1, 9)) + rng.integers(-30, 30, (7, 9))
    x = lg.LogArray.from_parts(m, e)
    s = x.sum(axis=axis)
    vals = np.array([[_mp(m[i, j], e[i, j]) for j in range(9)] for i in range(7)], dtype=object)
    if axis is None:
        groups = [vals.ravel()]
        got = [s]
    elif axis == 0:
        groups = [vals[:, j] for j in range(9)]
        got = [s[j] for j in range(9)]
        assert s.shape == (9,)
    else:
        groups = [vals[i, :] for i in range(7)]
        got = [s[i] for i in range(7)]
        assert s.shape == (7,)
    for g, v in zip(groups, got):
        want = mpmath.fsum(g)
        mag = mpmath.fsum(abs(t) for t in g)
        gv = _mp(v.mantissa.reshape(()), v.exponent.reshape(()))
        assert abs(gv - want) <= (len(g) - 1) * U * mag, (gv, want)


def test_sum_loses_only_terms_below_the_rounding_of_the_largest() -> None:
    x = lg.LogArray.from_parts(np.array([0.5, 0.5, 0.5]), np.array([10**9, 10**9 - 60, 10**9 - 52]))
    s = x.sum()
    # 2^(e-1) (1 + 2^-52 + 2^-60): the 2^-60 term is below half an ulp and lost, the 2^-52 kept
    assert int(s.exponent) == 10**9 and float(s.mantissa) == 0.5 * (1 + 2.0**-52)
    z = lg.LogArray.from_parts(np.array([0.5, -0.5]), np.array([7, 7])).sum()
    assert z.sign() == 0 and z.log10() == -math.inf
    assert lg.LogArray(np.zeros((2, 0))).sum(axis=1).shape == (2,)


def test_norm_against_mpmath() -> None:
    rng = np.random.default_rng(6)
    for scale in (-10**15, -2000, 0, 1500, 10**15):
        m = rng.uniform(-1, 1, 40)
        e = scale + rng.integers(-200, 1, 40)
        x = lg.LogArray.from_parts(m, e)
        n = x.norm()
        want = mpmath.sqrt(mpmath.fsum(_mp(a, b) ** 2 for a, b in zip(m, e)))
        got = _mp(n.mantissa.reshape(()), n.exponent.reshape(()))
        assert abs(got / want - 1) <= (40 + 2) * U, scale
    assert lg.LogArray(np.zeros(3)).norm().sign() == 0


def test_max_abs_is_the_largest_magnitude() -> None:
    rng = np.random.default_rng(7)
    m, e = _draw(rng, 100)
    x = lg.LogArray.from_parts(m, e)
    mx = x.max_abs() * 1.0  # see test_max_abs_gives_a_full_logarray
    vals = [abs(_mp(a, b)) for a, b in zip(m, e)]
    assert _mp(mx.mantissa.reshape(()), mx.exponent.reshape(())) == max(vals)
    assert lg.LogArray(np.array([0.0, -0.0])).max_abs().sign() == 0
    with pytest.raises(ValueError):
        lg.LogArray(np.zeros(0)).max_abs()


def test_max_abs_gives_a_full_logarray() -> None:
    mx = lg.LogArray(np.array([1.0, -3.0])).max_abs()
    assert float(mx.mantissa) == 0.75 and int(mx.exponent) == 2


def test_from_log10_against_mpmath() -> None:
    rng = np.random.default_rng(8)
    l10 = np.concatenate([rng.uniform(-3e17, 3e17, 100), rng.uniform(-400, 400, 100), [0.0, -math.inf]])
    sg = rng.choice([-1, 1], l10.size)
    sg[5] = 0
    a = lg.LogArray.from_log10(sg, l10)
    for i in range(l10.size):
        if sg[i] == 0 or l10[i] == -math.inf:
            assert a.sign()[i] == 0
            continue
        want = mpmath.mpf(10) ** mpmath.mpf(float(l10[i]))
        got = abs(_mp(a.mantissa[i], a.exponent[i]))
        assert a.sign()[i] == sg[i]
        # l10 / log10(2) rounds to ~|l2| ulp, exp2 of the fraction adds a few u
        err_log2 = abs(mpmath.log(got / want, 2))
        assert err_log2 <= 4 * math.ulp(abs(float(l10[i])) / math.log10(2)) + 8 * U, (l10[i],)
    with pytest.raises((OverflowError, lg.ExponentRangeError)):
        lg.LogArray.from_log10([1], [4e17])
    for sign, v in (([2], [1.0]), ([1], [math.nan]), ([1], [math.inf])):
        with pytest.raises(ValueError):
            lg.LogArray.from_log10(sign, v)


def test_views_follow_numpy() -> None:
    rng = np.random.default_rng(9)
    vals = rng.standard_normal((3, 4))
    x = lg.LogArray(vals)
    np.testing.assert_array_equal(x.T.to_numpy(), vals.T)
    np.testing.assert_array_equal(x.reshape(4, 3).to_numpy(), vals.reshape(4, 3))
    np.testing.assert_array_equal(x.ravel().to_numpy(), vals.ravel())
    np.testing.assert_array_equal(x[1].to_numpy(), vals[1])
    np.testing.assert_array_equal(x[:, 2].to_numpy(), vals[:, 2])
    assert [r.to_numpy().tolist() for r in x] == vals.tolist()
    c = x.copy()
    assert c.mantissa is not x.mantissa and np.array_equal(c.to_numpy(), vals)
    assert not x.mantissa.flags.writeable and not x.exponent.flags.writeable
    assert x[0, 0].shape == ()
    with pytest.raises(TypeError):
        len(x[0, 0])


@pytest.mark.parametrize("value", [9.99996e5, 9.99994e5, 1e-5, -2.5e-300, 1.23456e123, 9.99999e-1, 5e-324, 1.0])
def test_printed_values_round_like_python(value: float) -> None:
    """str of a 0-d LogArray: 4 decimals of the mantissa and an exponent of at least two
    digits, rounded from the value as Python's own '.4e' format rounds it
    (9.99996e5 prints as 1.0000e+06)."""
    x = lg.LogArray(value)
    expect = f"{value:.4e}"
    assert str(x) == expect
    assert repr(x) == f"LogArray({expect})"


def test_printed_arrays_beyond_float64() -> None:
    assert str(lg.LogArray(0.0)) == "0."
    a = lg.LogArray.from_log10([1, -1, 0], [400.5, 2.0, 0.0])
    assert str(a) == "[3.1623e+400 -1.0000e+02 0.]"
    assert repr(a) == "LogArray([3.1623e+400, -1.0000e+02, 0.])"
    assert repr(lg.LogArray.from_log10([1], [-12345.25])) == "LogArray([5.6234e-12346])"


def test_a_numpy_array_on_the_left_keeps_the_extended_range() -> None:
    """ndarray * LogArray must defer to LogArray (no silent flush through float64)."""
    x = lg.LogArray.from_log10([1, -1], [400.0, -400.0])
    r = np.array([2.0, 4.0]) * x
    assert isinstance(r, lg.LogArray)
    want = [400 + math.log10(2.0), -400 + math.log10(4.0)]
    assert all(abs(g - w) <= log10_tol(w, 2) for g, w in zip(r.log10(), want))
    np.testing.assert_array_equal(r.sign(), [1, -1])


def test_the_default_is_an_exact_zero() -> None:
    z = lg.LogArray()
    assert z.shape == () and z.sign() == 0 and z.log10() == -math.inf and float(z) == 0.0


def test_from_parts_exponent_arguments_within_two_to_the_62() -> None:
    """Exponent arguments up to +-2^62 are taken (a zero mantissa gives an exact zero
    whatever its exponent); beyond, where e + frexp's exponent could wrap around
    int64, they are refused even for a zero mantissa."""
    for e in (2**62, -(2**62)):
        z = lg.LogArray.from_parts(np.array([0.0]), np.array([e]))
        assert z.sign()[0] == 0 and z.log10()[0] == -math.inf
    for e in (2**62 + 1, -(2**62) - 1, 2**63 - 1, -(2**63)):
        with pytest.raises(lg.ExponentRangeError):
            lg.LogArray.from_parts(np.array([0.0]), np.array([e]))
    with pytest.raises(TypeError):
        lg.LogArray.from_parts(np.array([0.5]), np.array([1.0]))  # exponents must be integers


def test_from_float_is_exact() -> None:
    vals = np.array([0.1, -3.0, 5e-324, 1.7976931348623157e308])
    a = lg.LogArray.from_float(vals)
    np.testing.assert_array_equal(a.to_numpy(), vals)


def test_max_abs_of_one_element_and_printing_zeros_first() -> None:
    one = lg.LogArray.from_log10([-1], [-500.0])
    assert (one.max_abs() * 1.0).sign() == 1 and abs(float(one.max_abs().log10()) + 500.0) <= 4 * math.ulp(500.0)
    assert str(lg.LogArray(np.array([0.0, -2.0, 0.0, 3.0]))) == "[0. -2.0000e+00 0. 3.0000e+00]"
