"""LogArray as an array type: ufuncs, + and -, comparisons, reductions, repr; against mpmath."""

import math
import time

import mpmath
import numpy as np
import pytest

import loggrad as lg
from loggrad import LogArray

mpmath.mp.prec = 200
MAX_EXP = 2**60


def exact(a: LogArray) -> list:
    """Each element's exact value (mantissa * 2**exponent) as an mpmath number."""
    return [
        mpmath.mpf(0) if m == 0 else mpmath.ldexp(mpmath.mpf(float(m)), int(e))
        for m, e in zip(a.mantissa.ravel(), a.exponent.ravel())
    ]


def rounded(v: mpmath.mpf) -> tuple[float, int]:
    """v rounded to 53 bits (nearest, ties to even) with an unbounded exponent: (mantissa, exponent)."""
    if v == 0:
        return 0.0, 0
    m, e = mpmath.frexp(v)
    return float(m), int(e)  # float() rounds the 200-bit mantissa to nearest even


def assert_correctly_rounded(got: LogArray, ref: list) -> None:
    for (m, e), r in zip(zip(got.mantissa.ravel(), got.exponent.ravel()), ref):
        rm, re_ = rounded(r)
        if rm == 0:
            assert m == 0
        else:
            assert (float(m), int(e)) == (rm, re_), (float(m), int(e), rm, re_)


def ulps(got: float, ref: mpmath.mpf) -> float:
    """|got - ref| in units of the last place of float(ref)."""
    fr = float(ref)
    return float(abs(mpmath.mpf(got) - ref) / math.ulp(fr))


def random_wide(rng: np.random.Generator, n: int, spread: float = 2e4, close: bool = True) -> LogArray:
    """Signed values spread over 10^±spread, some zeros, some pairs that nearly cancel."""
    m = rng.uniform(0.5, 1.0, n) * rng.choice([-1.0, 1.0], n)
    e = rng.integers(-int(spread), int(spread), n)
    if close:  # exponents from a handful of values, so sums and differences cancel
        e = np.where(rng.random(n) < 0.5, rng.choice([-3000, -2999, 5, 6, 4000], n), e)
    m[rng.random(n) < 0.05] = 0.0
    return LogArray.from_parts(m, e)


# -- ufuncs ----------------------------------------------------------------


def test_log_ufuncs_are_exact_beyond_float64():
    a = LogArray.from_log10([1], [-400])
    assert np.log10(a)[0] == pytest.approx(-400, abs=1e-12)
    assert np.log2(a)[0] == pytest.approx(-400 / math.log10(2), rel=1e-15)
    rng = np.random.default_rng(3)
    m = rng.uniform(0.5, 1.0, 300)
    e = np.concatenate([rng.integers(-(2**60) + 1, 2**60, 100), rng.integers(-5000, 5000, 100), rng.integers(-3, 3, 100)])
    x = LogArray.from_parts(m, e)
    for fn, ref in ((np.log, mpmath.log), (np.log10, mpmath.log10), (np.log2, lambda v: mpmath.log(v, 2))):
        got = fn(x)
        assert isinstance(got, np.ndarray) and got.dtype == np.float64
        worst = max(ulps(float(g), ref(v)) for g, v in zip(got, exact(x)))
        assert worst <= 2.0, (fn.__name__, worst)
    # near 1, where m*2^e's pieces would cancel: the float64 function's own accuracy
    near1 = LogArray(1 + np.array([1e-12, -1e-12, 3e-16]))
    np.testing.assert_array_equal(np.log(near1), np.log(near1.to_numpy()))
    with pytest.warns(RuntimeWarning, match="log10"):
        out = np.log10(LogArray([0.0, -2.0, 100.0]))
    assert out[0] == -np.inf and np.isnan(out[1]) and out[2] == 2.0


def test_unsupported_ufuncs_raise_instead_of_flushing():
    a = LogArray.from_log10([1], [-400])
    for fn in (np.exp, np.sin, np.tanh, np.expm1, np.floor):
        with pytest.raises(TypeError, match=r"to_numpy\(\)"):
            fn(a)
    with pytest.raises(TypeError, match="not supported"):
        np.add.accumulate(a)
    with pytest.raises(TypeError):
        np.power(a, 2)
    with pytest.raises(TypeError, match="out="):
        np.multiply(a, a, out=np.zeros(1))


def test_unary_and_binary_ufuncs_exact():
    rng = np.random.default_rng(4)
    a = random_wide(rng, 400)
    b = random_wide(rng, 400)
    va, vb = exact(a), exact(b)
    assert_correctly_rounded(np.multiply(a, b), [x * y for x, y in zip(va, vb)])
    zero = b.mantissa == 0
    nz = LogArray.from_parts(np.where(zero, 0.75, b.mantissa), np.where(zero, 0, b.exponent))
    assert_correctly_rounded(np.divide(a, nz), [x / y for x, y in zip(va, exact(nz))])
    assert_correctly_rounded(np.abs(a), [abs(x) for x in va])
    assert_correctly_rounded(np.negative(a), [-x for x in va])
    assert_correctly_rounded(np.square(a), [x * x for x in va])
    pos = abs(a)
    assert_correctly_rounded(np.sqrt(pos), [mpmath.sqrt(x) for x in exact(pos)])
    with pytest.raises(ValueError, match="negative"):
        np.sqrt(LogArray([-1.0]))
    # mixed with float64 arrays and scalars, on either side
    x = rng.standard_normal(5)
    la = LogArray(rng.standard_normal(5))
    np.testing.assert_array_equal((x * la).to_numpy(), x * la.to_numpy())
    assert isinstance(x * la, LogArray) and isinstance(2.0 / la, LogArray)
    np.testing.assert_array_equal((2.0 / la).to_numpy(), 2.0 / la.to_numpy())
    np.testing.assert_array_equal(np.sign(la), np.sign(la.to_numpy()))


def test_add_and_subtract_are_rounded_once_like_float64():
    rng = np.random.default_rng(5)
    a = random_wide(rng, 2000)
    b = random_wide(rng, 2000)
    va, vb = exact(a), exact(b)
    assert_correctly_rounded(a + b, [x + y for x, y in zip(va, vb)])
    assert_correctly_rounded(a - b, [x - y for x, y in zip(va, vb)])
    assert_correctly_rounded(np.add(a, b), [x + y for x, y in zip(va, vb)])
    assert_correctly_rounded(np.subtract(b, a), [y - x for x, y in zip(va, vb)])
    # in float64's range the result is float64's, bit for bit
    x, y = rng.standard_normal(1000), rng.standard_normal(1000) * 1e-10
    np.testing.assert_array_equal((LogArray(x) + LogArray(y)).to_numpy(), x + y)
    np.testing.assert_array_equal((LogArray(x) - y).to_numpy(), x - y)
    np.testing.assert_array_equal((1.5 - LogArray(x)).to_numpy(), 1.5 - x)
    np.testing.assert_array_equal((y + LogArray(x)).to_numpy(), y + x)
    # exact cancellation is an exact zero; broadcasting as numpy does
    assert ((a - a).sign() == 0).all()
    assert (LogArray(np.ones((3, 1))) + LogArray(np.ones(4))).shape == (3, 4)


def test_sum_overflowing_the_exponent_range_raises():
    big = LogArray.from_parts([0.75, 0.75], [MAX_EXP, MAX_EXP])  # 1.5 * 2^(2^60) each
    with pytest.raises(lg.ExponentRangeError):
        big.sum()
    with pytest.raises(lg.ExponentRangeError):
        big.norm()
    with pytest.raises(lg.ExponentRangeError):
        _ = big[0] + big[1]
    with pytest.raises(lg.ExponentRangeError):
        big.mean()
    assert float((big - big).sum().log10()) == -np.inf


def test_from_log10_out_of_range_raises_exponent_range_error():
    with pytest.raises(lg.ExponentRangeError, match="exponent range"):
        LogArray.from_log10([1], [4e17])
    with pytest.raises(lg.ExponentRangeError):
        LogArray.from_log10([-1], [-4e17])
    # just inside (float64 log10 values near 3.5e17 are 64 apart: about 212 binary exponents)
    ok = LogArray.from_log10([1], [(2**60 - 4096) * math.log10(2)])
    assert abs(int(ok.exponent[0]) - (2**60 - 4096)) <= 1024


def test_comparisons_are_exact_and_elementwise():
    a = LogArray.from_log10([1, -1, 0, 1], [-500, 300, 0, 2])
    assert (a == a.copy()).all() and not (a != a.copy()).any()
    assert np.array_equal(np.equal(a, a.copy()), [True] * 4)
    rng = np.random.default_rng(6)
    x = random_wide(rng, 3000, spread=50)
    y = random_wide(rng, 3000, spread=50)
    # include exact ties and neighbours one ulp apart
    xe = np.where(x.mantissa == 0, 0, x.exponent)
    ye = np.where(y.mantissa == 0, 0, y.exponent)
    y = LogArray.from_parts(
        np.where(rng.random(3000) < 0.2, x.mantissa, y.mantissa), np.where(rng.random(3000) < 0.4, xe, ye)
    )
    vx, vy = exact(x), exact(y)
    cmp_ref = np.array([(p > q) - (p < q) for p, q in zip(vx, vy)])
    assert (cmp_ref == 0).sum() > 50  # the ties are really there
    for op, ref in (
        (lambda p, q: p < q, cmp_ref < 0),
        (lambda p, q: p <= q, cmp_ref <= 0),
        (lambda p, q: p > q, cmp_ref > 0),
        (lambda p, q: p >= q, cmp_ref >= 0),
        (lambda p, q: p == q, cmp_ref == 0),
        (lambda p, q: p != q, cmp_ref != 0),
        (np.less, cmp_ref < 0),
        (np.greater_equal, cmp_ref >= 0),
    ):
        np.testing.assert_array_equal(op(x, y), ref)
    # maximum / minimum pick the exact larger / smaller element
    mx, mn = np.maximum(x, y), np.minimum(x, y)
    assert all(v == max(p, q) for v, p, q in zip(exact(mx), vx, vy))
    assert all(v == min(p, q) for v, p, q in zip(exact(mn), vx, vy))
    # against plain numbers too
    np.testing.assert_array_equal(LogArray([1.0, 2.0, 3.0]) > 2.0, [False, False, True])
    assert (LogArray([1.0]) == "x") is False
    with pytest.raises(ValueError, match="ambiguous"):
        bool(a == a)
    assert bool(LogArray(2.0) > 1.0)


# -- reductions --------------------------------------------------------------


def test_sum_mean_along_axes_against_mpmath():
    rng = np.random.default_rng(7)
    a = random_wide(rng, 4 * 5 * 6, spread=400).reshape(4, 5, 6)
    va = np.array(exact(a), dtype=object).reshape(4, 5, 6)
    for axis in (None, 0, 1, -1, (0, 2)):
        got_s = a.sum(axis=axis)
        got_m = a.mean(axis=axis)
        ref_s = np.sum(va, axis=axis)
        cnt = a.size // max(np.size(ref_s), 1)
        ref_s = np.atleast_1d(ref_s).ravel()
        assert got_s.shape == np.sum(np.zeros(a.shape), axis=axis).shape
        for g, r in zip(exact(got_s), ref_s):
            if r == 0:
                assert g == 0
                continue
            # float64 error bound for a sum of cnt terms: relative to the largest term's size
            assert abs(g - r) <= cnt * 2.0**-52 * max(abs(t) for t in va.ravel())
        for g, s_val in zip(exact(got_m), ref_s):
            r = s_val / cnt
            if r == 0:
                continue
            assert abs(g - r) <= (cnt + 1) * 2.0**-52 * max(abs(t) for t in va.ravel())
    # without cancellation: a few ulps, also far beyond float64's range
    pos = LogArray.from_log10(np.ones(1000), rng.uniform(-70000.5, -70000.0, 1000))
    ref = mpmath.fsum(exact(pos))
    assert ulps(float(pos.sum().mantissa), mpmath.ldexp(ref, -int(pos.sum().exponent))) <= 4
    refm = ref / 1000
    assert ulps(float(pos.mean().mantissa), mpmath.ldexp(refm, -int(pos.mean().exponent))) <= 4
    refn = mpmath.sqrt(mpmath.fsum(v * v for v in exact(pos)))
    n = pos.norm()
    assert ulps(float(n.mantissa), mpmath.ldexp(refn, -int(n.exponent))) <= 4
    # numpy's entry points reach the same methods
    assert np.sum(pos) == pos.sum() and np.mean(pos) == pos.mean()
    assert (np.add.reduce(a, axis=1) == a.sum(axis=1)).all()
    assert a.sum(axis=1, keepdims=True).shape == (4, 1, 6)
    assert LogArray(np.zeros((0, 3))).sum(axis=0).shape == (3,)
    with pytest.raises(ValueError, match="empty"):
        LogArray(np.zeros(0)).mean()


def test_max_min_along_axes_are_exact():
    rng = np.random.default_rng(8)
    a = random_wide(rng, 3 * 4 * 50, spread=40).reshape(3, 4, 50)
    va = np.array(exact(a), dtype=object).reshape(a.shape)
    for axis in (None, 0, 1, 2, -1, (0, 2)):
        for name, f in (("max", np.max), ("min", np.min)):
            got = getattr(a, name)(axis=axis)
            ref = np.atleast_1d(f(va, axis=axis)).ravel()
            assert got.shape == f(np.zeros(a.shape), axis=axis).shape
            assert exact(got) == list(ref), (name, axis)
    assert np.max(a) == a.max() and np.min(a, axis=0).shape == (4, 50)
    assert np.maximum.reduce(a, axis=2).shape == (3, 4)
    assert a.max(axis=1, keepdims=True).shape == (3, 1, 50)
    assert exact(a.max_abs()) == [max(abs(v) for v in va.ravel())]
    with pytest.raises(ValueError, match="empty"):
        LogArray(np.zeros((0, 2))).max(axis=0)


# -- display and interop ---------------------------------------------------


def test_repr_summarised_and_fast():
    small = LogArray.from_log10(np.ones(1000), -np.arange(1000.0))
    assert "..." not in repr(small) and "1.0000e-999" in repr(small)
    big = LogArray.from_log10(np.ones(10**6), -np.arange(10**6) / 7.0)
    t0 = time.perf_counter()
    r = repr(big)
    dt = time.perf_counter() - t0
    assert dt < 0.1, dt
    assert r.startswith("LogArray([1.0000e+00,") and "..." in r and r.endswith("])")
    assert r.rstrip("])").endswith("1.0000e-142857")  # the last element, 10^(-999999/7)
    assert len(r) < 500
    # rows and columns elided as numpy elides them
    m = LogArray(np.arange(1.0, 2001.0).reshape(40, 50))
    lines = repr(m).splitlines()
    assert sum("..." in ln for ln in lines) >= 6 and len(lines) < 30
    assert "..." in str(m) and not str(m).startswith("LogArray")


def test_torch_as_tensor_points_to_to_numpy():
    torch = pytest.importorskip("torch")
    a = LogArray.from_log10([1, 1], [-400, 2])
    with pytest.raises(TypeError, match=r"to_numpy\(\)"):
        torch.as_tensor(a)
    with pytest.raises(TypeError, match=r"to_numpy\(\)"):
        torch.tensor(a)
    t = torch.as_tensor(a.to_numpy())
    assert t.dtype == torch.float64 and float(t[0]) == 0.0


def test_truth_value_as_numpy_gives_it() -> None:
    # one element: nonzero is True, an exact zero (at any scale) is False; more: ambiguous
    assert bool(lg.LogArray(np.array([3.0])))
    assert bool(lg.LogArray.from_log10(1.0, -5000.0))  # 10^-5000: zero in float64, not here
    assert not bool(lg.LogArray(np.array(0.0)))
    assert not bool(lg.LogArray(np.array([[-0.0]])))
    for n in (0, 2, 3):
        with pytest.raises(ValueError, match="ambiguous"):
            bool(lg.LogArray(np.ones(n)))
        with pytest.raises(ValueError):
            bool(np.ones(n))  # numpy's rule, which LogArray follows


def test_ufunc_reduce_defaults_to_axis_zero_as_numpy() -> None:
    v = np.arange(1.0, 7.0).reshape(2, 3)
    a = lg.LogArray(v)
    np.testing.assert_array_equal(np.add.reduce(a).to_numpy(), np.add.reduce(v))  # axis 0: shape (3,)
    np.testing.assert_array_equal(np.maximum.reduce(a).to_numpy(), np.maximum.reduce(v))
    np.testing.assert_array_equal(np.add.reduce(a, axis=1).to_numpy(), np.add.reduce(v, axis=1))


def test_unsupported_ufunc_methods_are_named() -> None:
    a = lg.LogArray(np.ones(3))
    with pytest.raises(TypeError, match=r"^np\.add\.accumulate is not supported on LogArray"):
        np.add.accumulate(a)
    with pytest.raises(TypeError, match=r"^np\.sin is not supported on LogArray"):
        np.sin(a)


def test_a_number_on_the_left_of_plus() -> None:
    a = lg.LogArray(np.array([1.0, -2.5]))
    r = 3.0 + a
    assert isinstance(r, lg.LogArray)
    np.testing.assert_array_equal(r.to_numpy(), [4.0, 0.5])
    np.testing.assert_array_equal((np.array([1.0, 1.0]) + a).to_numpy(), [2.0, -1.5])


def test_sqrt_halves_huge_exponents_exactly() -> None:
    # 2^(2^58 + 2) has the square root 2^(2^57 + 1): an exponent float64 cannot hold exactly
    for e, want_e in ((2**58 + 2, 2**57 + 2), (2**58 + 3, 2**57 + 2), (-(2**58) - 6, -(2**57) - 2)):
        r = lg.LogArray.from_parts(np.array([0.5]), np.array([e], dtype=np.int64)).sqrt()
        # sqrt(0.5 2^e): e even -> sqrt(0.5) 2^(e/2) = 0.7071 2^(e/2); e odd -> sqrt(1) 2^((e-1)/2) = 0.5 2^((e+1)/2)
        assert int(r.exponent[0]) == want_e - (1 if e % 2 == 0 else 0), (e, int(r.exponent[0]))


def test_sum_of_one_element() -> None:
    for v in (5.0, -0.25, 0.0):
        assert float(lg.LogArray(np.array([v])).sum()) == v
        assert float(lg.LogArray(np.array([[v]])).sum(axis=0)[0]) == v


def test_any_and_all_look_at_exact_zeros() -> None:
    tiny = lg.LogArray.from_log10(1.0, -5000.0)  # 0 in float64, not here
    z = lg.LogArray(np.array([0.0, 0.0]))
    mixed = lg.LogArray.from_parts(np.array([0.0, tiny.mantissa[()]]), np.array([0, tiny.exponent[()]]))
    assert mixed.any() and not mixed.all()
    assert not z.any() and not z.all()
    assert lg.LogArray(np.array([0.5, -3.0])).all() and lg.LogArray(np.array([0.5, -3.0])).any()
    assert lg.LogArray(np.array([0.75])).all()


def test_reduction_axes_as_numpy_takes_them() -> None:
    v = np.arange(1.0, 7.0).reshape(2, 3)
    a = lg.LogArray(v)
    for axis in (-2, -1, 0, 1):
        np.testing.assert_array_equal(a.sum(axis=axis).to_numpy(), v.sum(axis=axis))
        np.testing.assert_array_equal(a.max(axis=axis).to_numpy(), v.max(axis=axis))
        np.testing.assert_array_equal(a.min(axis=axis).to_numpy(), v.min(axis=axis))
    for axis in (2, -3):
        with pytest.raises((ValueError, IndexError)):
            v.sum(axis=axis)  # numpy refuses these
        for f in (a.sum, a.max, a.min):
            with pytest.raises((ValueError, IndexError)):
                f(axis=axis)


def test_summarised_printout_keeps_numpys_rows() -> None:
    # past 1000 elements numpy shows 3 items at each edge of an axis longer than 6, all of a shorter one
    for shape in ((6, 200), (7, 200), (2000,)):
        ours, theirs = str(lg.LogArray(np.ones(shape))), str(np.ones(shape))
        assert ours.count("\n") == theirs.count("\n"), shape
        assert [line.count("...") for line in ours.splitlines()] == [line.count("...") for line in theirs.splitlines()]
    rows = str(lg.LogArray(np.arange(1400.0).reshape(7, 200)))  # axis 0 of 7: rows 3 is left out
    assert "6.0000e+02" not in rows and "4.0000e+02" in rows and "8.0000e+02" in rows
    s = str(lg.LogArray(np.arange(1.0, 2001.0)))
    for shown in ("1.0000e+00", "3.0000e+00", "1.9980e+03", "2.0000e+03"):
        assert shown in s
    assert "4.0000e+00" not in s and "1.9970e+03" not in s


def test_log_warns_of_negative_values_only_at_the_callers_line() -> None:
    with pytest.warns(RuntimeWarning, match="negative LogArray value") as rec:
        np.log(lg.LogArray(np.array([-1.0, 2.0])))
    assert rec[0].filename == __file__
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = np.log(lg.LogArray(np.array([0.0, 2.0])))  # log 0 = -inf: no warning about negatives
    assert np.asarray(out)[0] == -np.inf
