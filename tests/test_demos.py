"""Each demo of the seed notes runs and its key numbers are right (checked independently)."""

import math

import mpmath
import numpy as np
import pytest

from loggrad import demos

from contract import log10_tol

mpmath.mp.dps = 30


def quiet(_line: str = "") -> None:
    pass


def test_listing_and_unknown(capsys):
    assert demos.main([]) == 0
    listed = capsys.readouterr().out
    for name in demos.DEMOS:
        assert name in listed
    assert demos.main(["nope"]) == 2
    with pytest.raises(ValueError, match="unknown demo"):
        demos.run("nope")


def test_chain_rule():
    r = demos.run("chain_rule", quiet)
    ref = mpmath.fprod([mpmath.mpf(f) for f in [0.1, 0.001, 0.00025] * 50])
    want = float(mpmath.log10(ref))
    # 150 products, one rounding each; the update is one more product (lr = 1e-3 rounded: 1 u)
    assert abs(float(r["grad"].log10()) - want) <= log10_tol(want, 150)
    assert r["grad_float64"] == 0.0
    assert abs(r["update_log10"] - (want - 3)) <= log10_tol(want - 3, 152)
    assert r["unchanged"] == 2  # w_1 and its bias: both updates lost


def test_sigmoid_bound():
    r = demos.run("sigmoid_bound", quiet)
    for z, d in zip(r["z"], r["derivative_log10"]):
        t = mpmath.exp(-mpmath.mpf(z))
        want = float(mpmath.log10(t / (1 + t) ** 2))
        assert abs(d - want) <= log10_tol(want, 4)  # one evaluation of sigmoid' in log space
    assert max(r["derivative_log10"]) == pytest.approx(math.log10(0.25), abs=1e-15)
    for L, got, bound, f64 in r["chain"]:
        assert abs(got - bound) <= log10_tol(bound, 4 * L)  # L evaluations and products
        if bound < -324:
            assert f64 == 0.0


def test_exploding_factor():
    r = demos.run("exploding_factor", quiet)
    assert r["factor"] == 125.0 and r["product"] == 300 * 200 * 125 * 1001
    assert r["w_new"] < 0
    for L, got, expect, f64 in r["chain"]:
        assert abs(got - expect) <= log10_tol(expect, 4 * L)
        if expect > 308.26:
            assert f64 == math.inf
    # float64 overflows from L = 148, as the docstring says: 125^147 < the largest double < 125^148
    by_depth = {L: f64 for L, _, _, f64 in r["chain"]}
    assert math.isfinite(by_depth[147]) and by_depth[148] == math.inf
    assert 147 * math.log10(125) < math.log10(np.finfo(np.float64).max) < 148 * math.log10(125)
    assert "from L = 148" in demos.exploding_factor.__doc__


def test_linear_chain():
    r = demos.run("linear_chain", quiet, depths=(10, 1000, 4000))
    for c, rows in (("1.2", r["1.2"]), ("0.5", r["0.5"])):
        for L, yhat, dw, _y64, dw64 in rows:
            # c^L of the float64 c, one rounding per layer (mpmath: exact)
            want_y = float(L * mpmath.log10(mpmath.mpf(float(c))))
            want_dw = float((L - 1) * mpmath.log10(mpmath.mpf(float(c))))
            assert abs(yhat - want_y) <= log10_tol(want_y, L + 1)
            assert abs(dw - want_dw) <= log10_tol(want_dw, L + 1)
    assert r["0.5"][-1][4] == 0.0  # float64 underflows at 4000 layers of 0.5
    assert not np.isfinite(r["1.2"][-1][4])  # and overflows for 1.2


def test_learning_rate():
    r = demos.run("learning_rate", quiet)
    small, good, big = r[1e-20], r[0.1], r[3.0]
    assert all(f == 1.0 for f in small["fraction_unchanged"]) and small["w"] == 0.5
    assert good["loss_log10"][-1] < -3 and abs(good["w"] - 2) < 0.01
    assert big["overflow_at"] is not None and big["loss_beyond_float64_at"] is not None
    assert max(big["loss_log10"]) > 308
    # too small: every update is nonzero and lost, counted exactly; check each against half an ulp
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (64, 1))
    y = 2 * x - 1 + 0.01 * rng.standard_normal((64, 1))
    diff = 0.5 * x + 0.25 - y  # the unchanged w = 0.5, b = 0.25
    gw, gb = 2 * np.mean(diff * x), 2 * np.mean(diff)
    assert 0 < 1e-20 * abs(gw) < np.spacing(0.5) / 2 and 0 < 1e-20 * abs(gb) < np.spacing(0.25) / 2
    assert small["lost_updates"] == small["nonzero_updates"] == 2 * len(small["loss_log10"])
    assert small["b"] == 0.25
    # a good rate loses none of its updates at the start
    assert good["lost_updates"] < good["nonzero_updates"]
    # too large: gradient descent on (w, b) multiplies the error along each eigenvector of the mse
    # Hessian H = 2 [[E x^2, E x], [E x, 1]] by 1 - lr * lambda; the loss grows by the largest square
    h = 2 * np.array([[np.mean(x * x), np.mean(x)], [np.mean(x), 1.0]])
    factor = max(abs(1 - 3.0 * lam) for lam in np.linalg.eigvalsh(h))
    assert factor > 1
    growth = (big["loss_log10"][-1] - big["loss_log10"][-21]) / 20
    assert abs(growth - 2 * math.log10(factor)) < 0.05


# --- demos 5 and 6: an independent reference for per-layer gradient norms in any range ---------

LOG10_2 = math.log10(2.0)


def _act(name, z):
    if name == "relu":
        return np.maximum(z, 0.0), (z > 0).astype(np.float64)
    if name == "tanh":
        return np.tanh(z), 1.0 / np.cosh(z) ** 2
    if name == "sigmoid":
        t = np.exp(-np.abs(z))  # sigmoid'(z) = e^-|z| / (1 + e^-|z|)^2, no cancellation
        return 0.5 * (1.0 + np.tanh(0.5 * z)), t / (1.0 + t) ** 2
    raise ValueError(name)


def _scaled(v):
    """v = s * 2^e with max |s| in [0.5, 1): (s, e)."""
    m = float(np.abs(v).max())
    e = math.frexp(m)[1] if m > 0 else 0
    return np.ldexp(v, -e), e


def reference_log10_norms(weights, act, x, y, what):
    """log10 ||dL/dW_l|| ("weights") or ||dL/db_l|| ("biases") for mse and zero biases.

    Plain numpy float64, written from the definitions, with the back-propagated
    error (and relu's activations, positively homogeneous) kept as a mantissa
    array times a power of two: no under- or overflow at any depth.
    """
    a, sa = np.asarray(x, dtype=np.float64), 0
    acts, ders = [(a, sa)], []
    for w in weights:
        a, d = _act(act, a @ np.asarray(w).T)
        if act == "relu":
            a, e = _scaled(a)
            sa += e
        acts.append((a, sa))
        ders.append(d)
    out, so = acts[-1]
    e = max(so, 0)
    g, sg = 2.0 * (np.ldexp(out, so - e) - np.ldexp(np.asarray(y, dtype=np.float64), -e)) / out.size, e
    res = [0.0] * len(weights)
    for l in reversed(range(len(weights))):
        delta, e = _scaled(g * ders[l])
        sg += e
        a_prev, sp = acts[l]
        m, s = (delta.T @ a_prev, sg + sp) if what == "weights" else (delta.sum(axis=0), sg)
        n = np.linalg.norm(m)
        res[l] = math.log10(n) + s * LOG10_2 if n > 0 else -math.inf
        g = delta @ np.asarray(weights[l])
    return np.array(res)


def _chaotic(act, sigma_w, depth):
    """Whether the forward pass is chaotic enough to amplify rounding differences past 1e-10.

    In the chaotic phase (chi1 > 1) a perturbation of the activations grows by
    ~sqrt(chi1) per layer (Poole et al. 2016), so two correct float64 forward
    passes that round differently (loggrad's scaled kernels, this reference)
    end up on different trajectories: neither can reproduce the other's values.
    relu with zero biases is never chaotic (positively homogeneous: its
    correlation map keeps c* = 1 stable for every sigma_w, Poole et al. Sec. 3),
    which is also why chi1 there is no Lyapunov exponent of the forward pass.
    """
    from loggrad import theory

    if act == "relu":
        return False
    return 0.5 * depth * math.log10(theory.chi1(act, sigma_w, 0.0)) - 16 > -10


def test_init_demo_matches_reference():
    r = demos.run("init", quiet)
    depth, width, batch, seed = r["depth"], r["width"], r["batch"], r["seed"]
    rng = np.random.default_rng([seed, 1])
    x, y = rng.standard_normal((batch, width)), rng.standard_normal((batch, width))
    from loggrad.init import init_layers

    from loggrad import theory

    sigma_w = {"normal": math.sqrt(width), "lecun_normal": 1.0, "xavier_normal": 1.0, "he_normal": math.sqrt(2)}
    for act in ("sigmoid", "tanh", "relu"):
        for name, _label in demos.INIT_SCHEMES:
            got = r[act][name]
            ws, _ = init_layers([width] * (depth + 1), name, seed=seed)
            ref = reference_log10_norms(ws, act, x, y, "weights")
            if _chaotic(act, sigma_w[name], depth):
                # any two float64 forward passes part ways here (see _chaotic): compare the growth per layer
                # going back with mean-field theory at finite width, 6 standard deviations
                mean, var = theory.log_gradient_growth_finite_width(act, sigma_w[name], 0.0, width)
                n = depth - 51
                for v in (got["log10"], ref):
                    slope = (v[50] - v[-1]) / n
                    assert abs(slope - mean / math.log(10)) < 6 * math.sqrt(var / n) / math.log(10) + 1e-3
                continue
            np.testing.assert_allclose(got["log10"], ref, rtol=0, atol=1e-9)
            f64 = got["float64"]
            assert np.all(f64[ref < -330] == 0.0)  # below the subnormals: float64 says 0
            big = ref > 310
            assert np.all(~np.isfinite(f64[big]) | (f64[big] == 0))  # beyond float64: inf, nan or 0
            ok = np.isfinite(f64) & (f64 > 0) & (np.abs(ref) < 250)
            np.testing.assert_allclose(np.log10(f64[ok]), ref[ok], atol=1e-4)
            wrong = ~(np.isfinite(f64) & (f64 >= np.finfo(np.float64).tiny))
            assert got["float64_wrong_layers"] == int(wrong.sum())
    # what the notes say, made exact: sigmoid vanishes toward the input under every scheme, N(0,1) relu
    # overflows float64 in every layer, He keeps relu's gradient norms level
    for name, _ in demos.INIT_SCHEMES:
        s = r["sigmoid"][name]["log10"]
        assert s[0] < s[-1] - 100
    assert r["relu"]["normal"]["float64_wrong_layers"] == depth
    he = r["relu"]["he_normal"]["log10"]
    assert he.max() - he.min() < 5


def test_gain_demo_matches_reference_and_theory():
    from loggrad import theory
    from loggrad.init import init_layers

    r = demos.run("gain", quiet)
    depth, width, skip, seed = r["depth"], r["width"], r["skip"], r["seed"]
    rng = np.random.default_rng([seed, 2])
    x, y = rng.standard_normal((1, width)), rng.standard_normal((1, width))
    for act in ("tanh", "relu"):
        case = r[act]
        for row in case["rows"]:
            ws, _ = init_layers([width] * (depth + 1), case["init"], seed=seed, gain=row["gain"])
            sw = row["gain"] * (math.sqrt(2) if act == "relu" else 1.0)
            if not _chaotic(act, sw, depth):
                ref = reference_log10_norms(ws, act, x, y, "biases")
                np.testing.assert_allclose(row["log10"], ref, rtol=0, atol=1e-9)
            got = row["log10"]
            assert abs(row["slope"] - (got[skip] - got[-1]) / (depth - skip - 1)) < 1e-12
            assert row["theory"] == pytest.approx(0.5 * math.log10(theory.chi1(act, sw, 0.0)), abs=1e-15)
            # the measured slope against the finite-width mean: the per-layer log changes are independent
            # with variance theory_sd^2, so over n layers the slope has sd theory_sd / sqrt(n). tanh near
            # gamma = 1 is left out: there q relaxes to q* only algebraically (no fixed point reached).
            n = depth - skip - 1
            if act == "relu" or abs(row["gain"] - 1) >= 0.5:
                assert abs(row["slope"] - row["theory_finite"]) < 6 * row["theory_sd"] / math.sqrt(n) + 1e-3
        # gains below 1 vanish and above 1.5 explode, with float64 at 0 / not finite at the extremes
        rows = case["rows"]
        assert rows[0]["slope"] < 0 < rows[-1]["slope"]
        assert rows[0]["float64"][0] == 0.0 and rows[0]["log10"][0] < -330
    # relu: the typical gradient is level where ln(gamma) = k/(4n), k = 5 (Hanin & Nica's drift)
    cross, pred = r["relu"]["crossing"], math.exp(5 / (4 * width))
    sd = r["relu"]["rows"][3]["theory_sd"] / math.sqrt(depth - skip - 1) * math.log(10) * pred
    # 4 standard deviations of the crossing: the demo's seed is fixed, and a wrong rule is far outside,
    # the infinite-width rule gamma = 1 included (the test has power against it)
    assert abs(cross - pred) < 4 * sd
    assert abs(1.0 - pred) > 4 * sd and abs(1.0 - cross) > 4 * sd
