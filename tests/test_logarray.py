"""LogArray: construction, conversions, display and exact arithmetic, against mpmath."""

import math

import mpmath
import numpy as np
import pytest

import loggrad as lg
from loggrad import LogArray

mpmath.mp.dps = 40


def mp_value(a: LogArray) -> list:
    """Exact values of the elements as mpmath numbers."""
    return [mpmath.ldexp(mpmath.mpf(float(m)), int(e)) for m, e in zip(a.mantissa.ravel(), a.exponent.ravel())]


def test_from_float_is_exact_and_round_trips():
    x = np.array([[1.5, -3e-310, 0.0], [1e308, -2.0**-1074, 7.0]])
    a = LogArray(x)
    assert a.shape == (2, 3) and a.ndim == 2 and a.size == 6
    np.testing.assert_array_equal(a.to_numpy(), x)
    np.testing.assert_array_equal(np.asarray(a), x)
    np.testing.assert_array_equal(a.sign(), np.sign(x))
    m = a.mantissa
    assert np.all((np.abs(m) >= 0.5) & (np.abs(m) < 1) | (m == 0))
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(a.log10(), np.log10(np.abs(x)), rtol=1e-15)
    assert a.log10()[0, 2] == -np.inf


def test_from_log10_beyond_float64():
    a = LogArray.from_log10([1, -1, 0, 1], [-4217.25, 600.5, 3.0, -np.inf])
    np.testing.assert_allclose(a.log10()[:2], [-4217.25, 600.5], rtol=0, atol=1e-11)
    np.testing.assert_array_equal(a.sign(), [1, -1, 0, 0])
    v = a.to_numpy()
    assert v[0] == 0.0 and v[1] == -np.inf and v[2] == 0 and v[3] == 0
    assert not a.in_float64_range()[0]
    with pytest.raises(ValueError):
        LogArray.from_log10(2, 1.0)
    with pytest.raises(ValueError):
        LogArray.from_log10(1, np.nan)


def test_indexing_slicing_and_views():
    a = LogArray.from_log10(np.ones((3, 4)), np.arange(12.0).reshape(3, 4) * -100)
    row = a[1]
    assert isinstance(row, LogArray) and row.shape == (4,)
    np.testing.assert_allclose(row.log10(), [-400, -500, -600, -700], rtol=4 * 2.0**-53, atol=0)
    assert a[2, 3].shape == ()
    np.testing.assert_allclose(float(a[2, 3].log10()), -1100, rtol=4 * 2.0**-53, atol=0)
    assert a[:, 1:3].shape == (3, 2)
    assert a.T.shape == (4, 3)
    assert a.reshape(12).shape == (12,)
    assert len(a) == 3
    assert [x.shape for x in a] == [(4,)] * 3


def test_repr_shows_magnitudes_beyond_float64():
    a = LogArray.from_log10([1, -1], [math.log10(1.2) - 503, math.log10(5.03) + 2])
    r = repr(a)
    assert r.startswith("LogArray(")
    assert "1.2000e-503" in r and "-5.0300e+02" in r
    assert str(LogArray(0.0)) == "0."
    assert "..." not in repr(LogArray(np.ones(1000)))  # numpy's threshold: summarised past 1000
    assert "..." in repr(LogArray(np.ones(1001)))


def test_products_are_exact_like_float64_with_unbounded_exponent():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(50)
    y = rng.standard_normal(50)
    a, b = LogArray(x), LogArray(y)
    np.testing.assert_array_equal((a * b).to_numpy(), x * y)  # same rounding in range
    # 10,000 factors of 0.25: 10^-6020.6, not 0.0
    p = LogArray(0.25) ** 10000
    # 0.25 is a power of two: every product is exact, so only log10 rounds (a few ulps)
    want = float(10000 * mpmath.log10(mpmath.mpf(0.25)))
    assert abs(float(p.log10()) - want) <= 4 * math.ulp(abs(want))
    assert float(p.to_numpy()) == 0.0
    q = LogArray(np.full(3, 1e300)) * LogArray(np.full(3, 1e300)) / LogArray(1e-300)
    np.testing.assert_allclose(q.log10(), 900, atol=1e-12)
    with pytest.raises(ZeroDivisionError):
        _ = a / LogArray(0.0)


def test_sum_and_norm_against_mpmath():
    l10 = np.array([-500.0, -500.3, -499.9, -2000.0, 700.0, 699.0])
    s = np.array([1, -1, 1, 1, -1, 1])
    a = LogArray.from_log10(s, l10)
    vals = mp_value(a)
    total = sum(vals)
    got = a.sum()
    assert abs(float(got.log10()) - float(mpmath.log10(abs(total)))) < 1e-12
    assert int(got.sign()) == int(mpmath.sign(total))
    n = a.norm()
    ref = mpmath.sqrt(sum(v * v for v in vals))
    assert abs(float(n.log10()) - float(mpmath.log10(ref))) < 1e-12
    assert abs(float(a.max_abs().log10()) - 700.0) <= 4 * math.ulp(700.0)  # from_log10(700), rounded twice
    col = LogArray.from_log10(np.ones((2, 2)), [[-400, -401], [-402, -403]]).sum(axis=0)
    ref0 = mpmath.mpf(10) ** -400 + mpmath.mpf(10) ** -402
    assert col.shape == (2,) and abs(float(col.log10()[0]) - float(mpmath.log10(ref0))) < 1e-12


def test_bad_construction():
    with pytest.raises(ValueError):
        LogArray([1.0, np.inf])
    with pytest.raises(TypeError):
        LogArray.from_parts([0.5], [1.5])
    with pytest.raises(TypeError):
        float(LogArray([1.0, 2.0]))
    assert float(LogArray(2.5)) == 2.5


def test_package_metadata():
    assert lg.__version__ != "0+unknown"
    cfg = lg.show_config()
    assert "OpenBLAS" in str(cfg["blas"])
