"""The residual demo's numbers against an independent renormalised numpy backprop and mpmath."""

import math

import mpmath
import numpy as np
import pytest

import loggrad as lg
from loggrad import demos
from loggrad.init import init_layers

LOG10_2 = math.log10(2.0)
TINY = np.finfo(np.float64).tiny


def quiet(_line: str = "") -> None:
    pass


def _act(name, z):
    """f(z) and f'(z) = dm * 2^de per element (f' of a saturated unit is far below float64's range)."""
    if name == "relu":
        return np.maximum(z, 0.0), (z > 0).astype(np.float64), np.zeros(z.shape, dtype=np.int64)
    a = np.abs(z)
    if name == "tanh":  # tanh'(z) = 4 e^-2|z| / (1 + e^-2|z|)^2
        f, ln_d = np.tanh(z), math.log(4.0) - 2 * a - 2 * np.log1p(np.exp(-2 * a))
    elif name == "sigmoid":  # sigmoid'(z) = e^-|z| / (1 + e^-|z|)^2
        f, ln_d = 0.5 * (1.0 + np.tanh(0.5 * z)), -a - 2 * np.log1p(np.exp(-a))
    else:
        raise ValueError(name)
    de = np.floor(ln_d / math.log(2.0)).astype(np.int64)
    return f, np.exp(ln_d - de * math.log(2.0)), de


def _log10_norm(m, e):
    """log10 of the Euclidean norm of the rows m_j * 2^e_j."""
    nz = np.any(m != 0, axis=tuple(range(1, m.ndim)))
    if not nz.any():
        return -math.inf
    top = int(e[nz].max())
    v = np.linalg.norm(m[nz] * np.exp2((e[nz] - top).astype(np.float64)).reshape((-1,) + (1,) * (m.ndim - 1)))
    return math.log10(v) + top * LOG10_2


def _scaled(v):
    """v = s * 2^e with max |s| in [0.5, 1): (s, e)."""
    m = float(np.abs(v).max())
    e = math.frexp(m)[1] if m > 0 else 0
    return np.ldexp(v, -e), e


def reference_log10_norms(weights, act, x, y, scale):
    """log10 ||dL/dW_l|| and ||dL/db_l|| of a_{l+1} = a_l + s f(a_l W_l^T), mse, biases 0.

    s = None: the plain chain a_{l+1} = f(a_l W_l^T).

    Written from the definitions in numpy float64. The gradient is carried as a
    mantissa array times a power of two, so it neither under- nor overflows at
    any depth; relu's activations too (the recurrence is positively
    homogeneous: scaling a_0 scales every a_l), while tanh's and sigmoid's stay
    in range by themselves (asserted).
    """
    a, sa = np.asarray(x, dtype=np.float64), 0
    acts, ders = [(a, sa)], []
    for w in weights:
        z = a @ np.asarray(w).T
        f, dm, de = _act(act, z)
        a = f if scale is None else a + scale * f
        if act == "relu":
            a, e = _scaled(a)
            sa += e
        assert np.all(np.isfinite(a))
        acts.append((a, sa))
        ders.append((dm, de))
    out, so = acts[-1]
    e = max(so, 0)
    g, sg = 2.0 * (np.ldexp(out, so - e) - np.ldexp(np.asarray(y, dtype=np.float64), -e)) / out.size, e
    res_w, res_b = np.zeros(len(weights)), np.zeros(len(weights))
    for l in reversed(range(len(weights))):
        dm, de = ders[l]
        dm = g * dm * (1.0 if scale is None else scale)  # dL/dz_l = dm * 2^(sg + de), per element
        live = dm != 0
        col = np.where(live, de, np.iinfo(np.int64).min).max(axis=0)  # per unit j, over the batch
        col = np.where(live.any(axis=0), col, 0)
        dcol = dm * np.exp2((de - col).astype(np.float64))  # unit j's column at 2^(sg + col_j)
        a_prev, sp = acts[l]
        res_w[l] = _log10_norm(dcol.T @ a_prev, col + sg + sp)
        res_b[l] = _log10_norm(dcol.sum(axis=0), col + sg)
        # back-propagate at the layer's largest exponent (plain) or at g's own (residual: f' <= 1);
        # terms that far below the largest are below the rounding of the sum in any float64 pass
        top = int(de[live].max()) if live.any() and scale is None else 0
        back = (dm * np.exp2((de - top).astype(np.float64))) @ np.asarray(weights[l])
        g, e = _scaled(back if scale is None else g + back)
        sg += e + top
    return res_w, res_b


@pytest.fixture(scope="module")
def demo():
    return demos.run("residual", quiet)


def _inputs(r):
    rng = np.random.default_rng([r["seed"], 3])
    return rng.standard_normal((r["batch"], r["width"])), rng.standard_normal((r["batch"], r["width"]))


def test_listed_and_swept(demo):
    assert "residual" in demos.DEMOS
    L = demo["depth"]
    for act in ("sigmoid", "tanh", "relu"):
        scales = [c["scale"] for c in demo[act].values()]
        assert scales[0] is None
        assert scales[1:] == [1.0, pytest.approx(1 / math.sqrt(L), rel=1e-15), 0.1]


def test_matches_renormalised_numpy_backprop(demo):
    x, y = _inputs(demo)
    ws, _ = init_layers([demo["width"]] * (demo["depth"] + 1), demo["init"], seed=demo["seed"])
    compared, skipped = 0, []
    for act in ("sigmoid", "tanh", "relu"):
        for label, case in demo[act].items():
            ref_w, ref = reference_log10_norms(ws, act, x, y, case["scale"])
            got = case["log10"]
            growth = float(np.max(ref - ref[-1]))
            if growth > 8 and act != "relu":
                # the Jacobian that grows the gradient by 10^growth toward the input amplifies
                # perturbations of the forward pass as much: two correct float64 passes that round
                # differently part ways. Not for relu, whose homogeneous recurrence carries a
                # perturbation along with the signal it scales (checked here at 10^650).
                skipped.append((act, label))
                continue
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9, err_msg=f"{act} {label}")
            np.testing.assert_allclose(case["log10_weights"], ref_w, rtol=0, atol=1e-9, err_msg=f"{act} {label}")
            compared += 1
            f64 = case["float64"]
            assert np.all(f64[ref < -330] == 0.0)  # below the subnormals: float64 says 0
            big = ref > 310
            assert np.all(~np.isfinite(f64[big]) | (f64[big] == 0))  # beyond float64: inf, nan or 0
            normal = np.isfinite(f64) & (f64 >= TINY)
            with np.errstate(divide="ignore", invalid="ignore"):
                off = normal & (np.abs(np.log10(np.where(normal, f64, 1.0)) - ref) > demos.WRONG_DECADES)
            # float64 in range: the same digits as the reference (then a plain pass agrees to ~1e-13)
            fine = normal & ~off & (np.abs(ref) < 250)
            np.testing.assert_allclose(np.log10(f64[fine]), ref[fine], atol=1e-4)
            if act != "sigmoid":  # only sigmoid's saturated derivatives lose digits inside the range here
                assert not off.any()
            assert case["float64_wrong_layers"] == int((~normal | off).sum())
            assert (case["float64_failure"] == "none") == (case["float64_wrong_layers"] == 0)
    assert skipped == [("tanh", "s = 1")] and compared == 11


def test_what_the_demo_shows(demo):
    L = demo["depth"]
    # the plain sigmoid and relu chains vanish past float64's range toward the input
    for act in ("sigmoid", "relu"):
        plain = demo[act]["plain"]
        assert plain["log10"][0] < -330 and plain["float64"][0] == 0.0
        assert "underflow" in plain["float64_failure"]
    # residual layers never vanish: ||dL/dW|| does not fall toward the input
    for act in ("sigmoid", "tanh", "relu"):
        for label, case in demo[act].items():
            if case["scale"] is not None:
                assert case["log10"][0] >= case["log10"][-1] - 1, (act, label)
    # s = 1 relu grows past float64's largest value; s = 1/sqrt(L) keeps sigmoid and tanh within a few
    # decades, and relu far below s = 1 (mean-field theory, which predicts bounded growth, fails for relu)
    grow = demo["relu"]["s = 1"]
    assert grow["log10"][0] > 310 and "overflow" in grow["float64_failure"]
    for act in ("sigmoid", "tanh", "relu"):
        case = demo[act]["s = 1/sqrt(L)"]
        v = case["log10"]
        assert abs(v[0] - v[-1]) < (5 if act != "relu" else 0.1 * (grow["log10"][0] - grow["log10"][-1]))
        assert case["float64_wrong_layers"] == 0
    assert L >= 1000


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu"])
def test_short_case_against_mpmath(act):
    """Depth 6, width 3, s = 0.7: every per-layer norm against a 40-digit backprop."""
    mpmath.mp.dps = 40
    r = demos.residual_nets(quiet, depth=6, width=3, batch=2, activations=(act,), scales=(0.7,), seed=4)
    x, y = _inputs(r)
    ws, _ = init_layers([3] * 7, r["init"], seed=4)
    f = {"relu": lambda z: max(z, 0), "tanh": mpmath.tanh, "sigmoid": lambda z: 1 / (1 + mpmath.exp(-z))}[act]
    df = {"relu": lambda z: mpmath.mpf(z > 0), "tanh": lambda z: 1 - mpmath.tanh(z) ** 2,
          "sigmoid": lambda z: mpmath.exp(-z) / (1 + mpmath.exp(-z)) ** 2}[act]
    W = [mpmath.matrix(w.tolist()) for w in ws]
    for label, case in r[act].items():
        s = case["scale"]
        a = [mpmath.matrix(x.tolist())]
        zs = []
        for w in W:
            z = a[-1] * w.T
            zs.append(z)
            fz = z.apply(f)
            a.append(fz if s is None else a[-1] + s * fz)
        g = 2 * (a[-1] - mpmath.matrix(y.tolist())) / y.size
        want, want_w = [None] * 6, [None] * 6
        for l in reversed(range(6)):
            d = mpmath.matrix(g.rows, g.cols)
            for i in range(g.rows):
                for j in range(g.cols):
                    d[i, j] = g[i, j] * df(zs[l][i, j]) * (1 if s is None else s)
            want[l] = float(mpmath.log10(mpmath.norm(sum((d[i, :] for i in range(d.rows)), mpmath.zeros(1, 3)), 2)))
            want_w[l] = float(mpmath.log10(mpmath.mnorm(d.T * a[l], "f")))
            g = d * W[l] if s is None else g + d * W[l]
        np.testing.assert_allclose(case["log10"], want, rtol=0, atol=1e-13, err_msg=label)
        np.testing.assert_allclose(case["log10_weights"], want_w, rtol=0, atol=1e-13, err_msg=label)


def test_layer_norms_equal_per_layer_norms():
    """The vectorised per-layer norms against each layer's own norm, zero layers, inf and nan included."""
    net = lg.Network.build([5, 7, 7, 3, 3], activation=["relu", "tanh", "sigmoid", "identity"], seed=2,
                           residual=[None, 0.5, None, 2.0])
    net.weights[2] = np.zeros((3, 7))  # nothing flows back past layer 2: dW_0 = dW_1 = 0 exactly
    x, y = np.random.default_rng(0).standard_normal((3, 5)), np.ones((3, 3))
    g = net.backward(x, y, loss="mse")
    g64 = net.backward(x, y, loss="mse", precision="float64")
    for what in ("weights", "biases"):
        got = demos._layer_norms(g.params, net, what)
        want = [float(v.norm().log10()) for v in getattr(g, what)]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
        assert np.isneginf(got[0]) and np.isneginf(got[1]) and np.all(np.isfinite(got[2:]))
        got64 = demos._layer_norms(g64.params, net, what)
        np.testing.assert_allclose(got64, [np.linalg.norm(v) for v in getattr(g64, what)], rtol=1e-15, atol=0)
    p = np.array(g64.params)
    p[3] = np.inf  # in W_0
    p[-1] = np.nan  # b_3's last entry
    assert demos._layer_norms(p, net, "weights")[0] == np.inf
    assert np.isnan(demos._layer_norms(p, net, "biases")[3])
    tiny = np.zeros_like(p)
    tiny[0] = 5e-324  # a norm of the smallest subnormal is not flushed by squaring it
    assert demos._layer_norms(tiny, net, "weights")[0] == 5e-324
