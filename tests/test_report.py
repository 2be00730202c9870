"""loggrad.report: every figure against direct computation (numpy float64 and mpmath)."""

from __future__ import annotations

import importlib
import json
import math

import mpmath
import numpy as np
import pytest

import loggrad as lg
from loggrad.report import Report, report, t_critical

from contract import LOG10_ULPS, U, assert_log10_close, log10_tol
from reference import act_mp as ref_act

R = importlib.import_module("loggrad.report")  # the module (lg.report is the function)

LOG10_2 = math.log10(2.0)


# ---------------------------------------------------------------------------
# mpmath reference: forward, backward (mse / sum), per-layer figures
# ---------------------------------------------------------------------------

M = mpmath.mpf
SELU_L = M(lg.theory.SELU_LAMBDA)
SELU_A = M(lg.theory.SELU_ALPHA)


def mp_act(name: str, z: mpmath.mpf) -> tuple[mpmath.mpf, mpmath.mpf]:
    """Value and derivative, in forms that stay exact for any |z|."""
    if name == "identity":
        return z, M(1)
    if name == "relu":
        return (z, M(1)) if z > 0 else (M(0), M(0))
    if name == "leaky_relu":
        return (z, M(1)) if z > 0 else (M(0.01) * z, M(0.01))
    if name == "sigmoid":
        t = mpmath.exp(-abs(z))
        return (1 / (1 + t) if z >= 0 else t / (1 + t)), t / (1 + t) ** 2
    if name == "tanh":
        t = mpmath.exp(-2 * abs(z))
        return mpmath.tanh(z), 4 * t / (1 + t) ** 2
    if name == "elu":
        return (z, M(1)) if z > 0 else (mpmath.expm1(z), mpmath.exp(z))
    if name == "selu":
        return (SELU_L * z, SELU_L) if z > 0 else (SELU_L * SELU_A * mpmath.expm1(z), SELU_L * SELU_A * mpmath.exp(z))
    if name == "softplus":
        return mpmath.log1p(mpmath.exp(z)), 1 / (1 + mpmath.exp(-z))
    if name == "gelu":
        cdf = mpmath.erfc(-z / mpmath.sqrt(2)) / 2
        return z * cdf, cdf + z * mpmath.npdf(z)
    if name == "silu":
        s, sm = 1 / (1 + mpmath.exp(-z)), 1 / (1 + mpmath.exp(z))
        return z * s, s * (1 + z * sm)
    raise ValueError(name)


def mp_reference(net: lg.Network, x: np.ndarray, y: np.ndarray | None, loss: str) -> dict:
    """Exact gradients (dW, db per layer, summed over the batch) and the pre-activations."""
    L, B = net.depth, x.shape[0]
    Ws = [[[M(float(v)) for v in row] for row in w] for w in net.weights]
    bs = [[M(float(v)) for v in b] for b in net.biases]
    acts = net.activations
    n_out_total = B * net.n_out
    dW = [[[M(0)] * net.widths[l] for _ in range(net.widths[l + 1])] for l in range(L)]
    db = [[M(0)] * net.widths[l + 1] for l in range(L)]
    zs = [[None] * B for _ in range(L)]  # zs[l][s] = list of z
    ds = [[None] * B for _ in range(L)]
    # sens[l][s]: |f''(z) / f'(z)| (sum |w a| + |b|) per unit: a relative error of k u in the
    # terms of z changes f'(z) by a relative k u sens (0 where f' = 0)
    sens = [[None] * B for _ in range(L)]
    for s in range(B):
        a = [M(float(v)) for v in x[s]]
        inputs = []
        for l in range(L):
            inputs.append(a)
            z = [mpmath.fsum(w * v for w, v in zip(row, a)) + b for row, b in zip(Ws[l], bs[l])]
            fa = [mp_act(acts[l], zz) for zz in z]
            zs[l][s] = z
            terms = [mpmath.fsum(abs(w * v) for w, v in zip(row, a)) + abs(b) for row, b in zip(Ws[l], bs[l])]
            sens[l][s] = [float(abs(ref_act(acts[l], zz)[2] / d) * t) if d != 0 else 0.0
                          for zz, (_, d), t in zip(z, fa, terms)]
            ds[l][s] = [d for _, d in fa]
            a = [v for v, _ in fa]
        if loss == "mse":
            g = [2 * (o - M(float(t))) / n_out_total for o, t in zip(a, y[s])]
        else:
            g = [M(1)] * len(a)
        for l in range(L - 1, -1, -1):
            delta = [gi * di for gi, di in zip(g, ds[l][s])]
            for i, dv in enumerate(delta):
                db[l][i] += dv
                for j, av in enumerate(inputs[l]):
                    dW[l][i][j] += dv * av
            g = [mpmath.fsum(Ws[l][i][j] * delta[i] for i in range(len(delta))) for j in range(len(inputs[l]))]
    return {"dW": dW, "db": db, "deriv": ds, "sens": sens}


def chain_units(net: lg.Network, batch: int) -> int:
    """The contract's bound on the gradients' normwise relative error, in units of roundoff
    (as loggrad.bench.error_bound_units, once: mpmath commits none): per layer a forward
    and a backward dot product of `width` terms and the evaluations of f and f' (4 u
    each), then the batch sum of dW."""
    return net.depth * (2 * max(net.widths) + 8) + batch


def mp_log10(v: mpmath.mpf) -> float:
    return float(mpmath.log10(abs(v))) if v != 0 else -math.inf


def mp_figures(net: lg.Network, ref: dict, lr: float | None) -> dict:
    """The report's per-layer figures, computed from the mpmath reference."""
    out = {k: [] for k in ("wn", "bn", "gmax", "gmin", "act", "actzero", "u64", "o64", "u32", "o32", "lost",
                           "act_err", "act_errmax")}
    n = max(net.widths)
    params = net.params
    starts = np.concatenate([[0], np.cumsum([n_o * (n_i + 1) for n_i, n_o in zip(net.widths[:-1], net.widths[1:])])])
    tiny64, tiny32 = mpmath.ldexp(1, -1075), mpmath.ldexp(1, -150)
    huge64, huge32 = mpmath.ldexp(1, 1024), (1 - mpmath.ldexp(1, -25)) * mpmath.ldexp(1, 128)
    for l in range(net.depth):
        w = [v for row in ref["dW"][l] for v in row]
        b = ref["db"][l]
        out["wn"].append(mp_log10(mpmath.sqrt(mpmath.fsum(v * v for v in w))))
        out["bn"].append(mp_log10(mpmath.sqrt(mpmath.fsum(v * v for v in b))))
        nz = [abs(v) for v in w if v != 0]
        out["gmax"].append(mp_log10(max(nz)) if nz else math.nan)
        out["gmin"].append(mp_log10(min(nz)) if nz else math.nan)
        d = [v for per_s in ref["deriv"][l] for v in per_s]
        nzd = [mp_log10(v) for v in d if v != 0]
        out["act"].append(float(np.mean(nzd)) if nzd else math.nan)
        # bound on each log10 f'(z) of layer l: the terms of z carry the forward chain's
        # relative error, (l + 1) (2 width + 8) u, and f' is evaluated within 4 u
        kf = (l + 1) * (2 * n + 8)
        rel = [(kf * sv + 4) * U for sv, v in zip((sv for per_s in ref["sens"][l] for sv in per_s), d) if v != 0]
        out["act_err"].append(float(np.mean(rel)) / math.log(10) if rel else 0.0)
        out["act_errmax"].append(max(rel) if rel else 0.0)
        out["actzero"].append(sum(1 for v in d if v == 0) / len(d))
        allg = w + list(b)
        na = len(allg)
        out["u64"].append(sum(1 for v in allg if v != 0 and abs(v) <= tiny64) / na)
        out["o64"].append(sum(1 for v in allg if abs(v) >= huge64) / na)
        out["u32"].append(sum(1 for v in allg if v != 0 and abs(v) <= tiny32) / na)
        out["o32"].append(sum(1 for v in allg if abs(v) >= huge32) / na)
        if lr is not None:
            pw = params[starts[l] : starts[l + 1]]
            lost = nonzero = 0
            for wv, gv in zip(pw, allg):
                if gv == 0:
                    continue
                nonzero += 1
                u = M(lr) * gv
                if wv == 0:
                    lost += abs(u) <= mpmath.ldexp(1, -1075)
                else:
                    with mpmath.workprec(53):
                        new = +(M(float(wv)) - u)  # one rounding to 53 bits (ties to even)
                    lost += new == M(float(wv))
            out["lost"].append(lost / nonzero if nonzero else 0.0)
    return out


def assert_matches_mp(rep: Report, fig: dict, units: float) -> None:
    """The report's figures against mpmath's, within the contract's bounds.

    units: the gradients' normwise relative error bound (chain_units). Norms and the
    largest |dW| are within it; the smallest |dW| of a layer may have lost digits to
    cancellation, so its bound is the same absolute error, units u of the layer's largest
    |dW|; the mean log10 f' within the mean of its terms' bounds (act_err).
    """
    assert_log10_close(rep.grad_norm_w, fig["wn"], units, "grad_norm_w")
    assert_log10_close(rep.grad_norm_b, fig["bn"], units, "grad_norm_b")
    assert_log10_close(rep.grad_max, fig["gmax"], units, "grad_max")
    for l, (got, want, top) in enumerate(zip(rep.grad_min, fig["gmin"], fig["gmax"])):
        if math.isnan(want):
            assert math.isnan(got), f"grad_min[{l}]: {got} where mpmath has no nonzero gradient"
            continue
        assert_log10_close(got, want, units * 10 ** (top - want), f"grad_min[{l}]")
    for l, (got, want, err) in enumerate(zip(rep.act_deriv, fig["act"], fig["act_err"])):
        if math.isnan(want):
            assert math.isnan(got), f"act_deriv[{l}]: {got} where every f' is zero"
            continue
        tol = err + LOG10_ULPS * math.ulp(abs(want))
        assert abs(got - want) <= tol, f"act_deriv[{l}]: {got} != {want} (bound {tol:.3g})"
    for key, got in (("actzero", rep.act_deriv_zero), ("u64", rep.f64_underflow), ("o64", rep.f64_overflow),
                     ("u32", rep.f32_underflow), ("o32", rep.f32_overflow)):
        np.testing.assert_array_equal(got, fig[key], err_msg=key)
    if fig["lost"]:
        np.testing.assert_array_equal(rep.lost_update, fig["lost"])


def gaussian_net(depth, width, act, scale=1.0, bias=0.0, seed=0):
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((width, width)) * scale / math.sqrt(width) for _ in range(depth)]
    bs = [rng.standard_normal(width) * bias for _ in range(depth)]
    return lg.Network(ws, bs, act)


# ---------------------------------------------------------------------------
# small cases: every figure, every activation
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("act", list(lg.ACTIVATIONS))
def test_small_net_all_figures_match_mpmath(act):
    mpmath.mp.dps = 40
    net = gaussian_net(5, 3, act, scale=1.5, bias=0.3, seed=1)
    x = np.random.default_rng(2).standard_normal((3, 3))
    y = np.random.default_rng(3).standard_normal((3, 3))
    rep = report(net, x, y, loss="mse", lr=1e-15)
    assert_matches_mp(rep, mp_figures(net, mp_reference(net, x, y, "mse"), 1e-15), chain_units(net, 3))


def test_mixed_widths_and_activations_match_mpmath():
    mpmath.mp.dps = 40
    rng = np.random.default_rng(22)
    widths = [3, 5, 5, 4, 4, 2, 2]
    ws = [rng.standard_normal((o, i)) * 1.3 for i, o in zip(widths[:-1], widths[1:])]
    bs = [rng.standard_normal(o) * 0.2 for o in widths[1:]]
    acts = ["tanh", "relu", "gelu", "silu", "sigmoid", "identity"]
    net = lg.Network(ws, bs, acts)
    x, y = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    rep = report(net, x, y, lr=1e-15)
    assert_matches_mp(rep, mp_figures(net, mp_reference(net, x, y, "mse"), 1e-15), chain_units(net, 4))
    assert [r["n_in"] for r in rep.records()] == widths[:-1]


def test_one_layer_net():
    net = lg.Network([np.array([[2.0, -1.0]])], [np.array([0.5])], "sigmoid")
    rep = report(net, np.array([[1.0, 3.0]]), np.array([[1.0]]))
    assert rep.depth == 1 and math.isnan(rep.slope) and rep.verdict == "healthy"
    assert "verdict: healthy" in rep.table(rich=False)
    Report.from_json(rep.to_json())


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "elu", "selu", "softplus", "gelu", "silu"])
def test_saturated_derivatives_match_mpmath(act):
    # pre-activations of several hundred: f'(z) ~ e^-|z|, far below float64 for most units
    mpmath.mp.dps = 40
    net = gaussian_net(3, 3, act, scale=400.0, bias=1.0, seed=4)
    x = np.random.default_rng(5).standard_normal((2, 3))
    rep = report(net, x, loss="sum")
    fig = mp_figures(net, mp_reference(net, x, None, "sum"), None)
    # log10 values up to -1e13 here (z^2/2 for gelu): an error of k u in z is one of k u z^2
    # in log f' (sens), and the gradients carry every layer's f' errors on top of the chain's
    for l, (got, want, err) in enumerate(zip(rep.act_deriv, fig["act"], fig["act_err"])):
        assert abs(got - want) <= err + LOG10_ULPS * math.ulp(abs(want)), (l, got, want, err)
    units = chain_units(net, 2) + sum(fig["act_errmax"]) / U
    assert_log10_close(rep.grad_norm_w, fig["wn"], units, "grad_norm_w")


def test_dead_relu_layers_match_mpmath():
    # layer 2 is closed for every input (bias -50): no gradient reaches layers 0..2,
    # the report still gives their f' statistics (float64 forward fallback)
    mpmath.mp.dps = 40
    net = gaussian_net(5, 3, "relu", seed=6)
    net.biases[2][:] = -50.0
    x = np.random.default_rng(7).standard_normal((3, 3))
    y = np.zeros((3, 3))
    rep = report(net, x, y, lr=1e-3)
    fig = mp_figures(net, mp_reference(net, x, y, "mse"), 1e-3)
    assert_matches_mp(rep, fig, chain_units(net, 3))
    assert rep.act_deriv_zero[2] == 1.0 and np.isnan(rep.act_deriv[2])
    assert np.all(np.isneginf(rep.grad_norm_w[:3]))
    assert rep.verdict == "vanishing"


def test_small_net_matches_numpy_float64_backprop():
    """Direct float64 backprop, one layer at a time (all values in range)."""
    rng = np.random.default_rng(8)
    L, n, B = 6, 4, 5
    net = gaussian_net(L, n, "tanh", scale=1.2, bias=0.1, seed=9)
    x, y = rng.standard_normal((B, n)), rng.standard_normal((B, n))
    lr = 1e-15
    rep = report(net, x, y, lr=lr)
    # forward
    a, zs = [x], []
    for l in range(L):
        z = a[-1] @ net.weights[l].T + net.biases[l]
        zs.append(z)
        a.append(np.tanh(z))
    g = 2.0 * (a[-1] - y) / y.size
    dW, db = [None] * L, [None] * L
    for l in range(L - 1, -1, -1):
        delta = g * (1.0 - np.tanh(zs[l]) ** 2)
        dW[l], db[l] = delta.T @ a[l], delta.sum(axis=0)
        g = delta @ net.weights[l]
    for l in range(L):
        assert abs(rep.grad_norm_w[l] - np.log10(np.linalg.norm(dW[l]))) < 1e-12
        assert abs(rep.grad_norm_b[l] - np.log10(np.linalg.norm(db[l]))) < 1e-12
        assert abs(rep.grad_max[l] - np.log10(np.abs(dW[l]).max())) < 1e-12
        assert abs(rep.grad_min[l] - np.log10(np.abs(dW[l]).min())) < 1e-12
        assert abs(rep.act_deriv[l] - np.mean(np.log10(1.0 - np.tanh(zs[l]) ** 2))) < 1e-12
        params = np.concatenate([net.weights[l].ravel(), net.biases[l]])
        grads = np.concatenate([dW[l].ravel(), db[l]])
        nz = grads != 0
        lost = ((params - lr * grads) == params) & nz
        assert rep.lost_update[l] == lost.sum() / nz.sum()
    # the same step through loggrad.train
    step = net.copy().sgd_step(x, y, lr)
    np.testing.assert_array_equal(rep.lost_update, step.fraction_unchanged)
    assert np.all(rep.f64_underflow == 0) and np.all(rep.f32_overflow == 0)


def test_float32_range_fractions_against_numpy_casts():
    # gradients spread over 1e-50 .. 1e-30 (identity chain, scaled input): float32 loses part of them
    rng = np.random.default_rng(10)
    ws = [np.diag(rng.uniform(0.5, 2.0, 4)) @ np.linalg.qr(rng.standard_normal((4, 4)))[0] for _ in range(8)]
    net = lg.Network(ws, None, "identity")
    x = rng.standard_normal((3, 4)) * 10.0 ** rng.uniform(-48, -38, (3, 1))
    rep = report(net, x, loss="sum")
    g = net.backward(x, loss="sum", precision="float64").params
    starts = np.arange(net.depth) * 20
    with np.errstate(under="ignore", over="ignore"):
        g32 = g.astype(np.float32)
    u = np.add.reduceat(((g32 == 0) & (g != 0)).astype(int), starts) / 20
    o = np.add.reduceat(np.isinf(g32).astype(int), starts) / 20
    np.testing.assert_array_equal(rep.f32_underflow, u)
    np.testing.assert_array_equal(rep.f32_overflow, o)
    assert 0 < rep.f32_underflow.max() and rep.f32_fail_layer is not None


def test_range_masks_round_like_ieee():
    ms = np.array([0.5, np.nextafter(0.5, 1), 0.75, 1 - 2.0**-53, 1 - 2.0**-25, np.nextafter(1 - 2.0**-25, 0)])
    for lo, hi in ((-1080, -1068), (1018, 1030), (-156, -144), (122, 134)):
        e = np.arange(lo, hi)
        mm, ee = np.meshgrid(np.concatenate([ms, -ms]), e)
        mk = R._range_masks(mm.ravel(), ee.ravel().astype(np.int64))
        with np.errstate(under="ignore", over="ignore"):
            v64 = np.ldexp(mm.ravel(), ee.ravel())
            v32 = v64.astype(np.float32)
        fin = np.isfinite(v64)
        np.testing.assert_array_equal(mk["f64_underflow"], v64 == 0)
        np.testing.assert_array_equal(mk["f64_overflow"], np.isinf(v64))
        np.testing.assert_array_equal(mk["f32_underflow"][fin], (v32 == 0)[fin])
        np.testing.assert_array_equal(mk["f32_overflow"][fin], np.isinf(v32)[fin])


def test_lost_updates_exact_at_ties_and_powers_of_two():
    rng = np.random.default_rng(11)
    w = np.concatenate([
        rng.standard_normal(4000),
        2.0 ** rng.integers(-20, 20, 1000) * rng.choice([-1, 1], 1000),  # powers of two
        np.ldexp(rng.integers(1, 2**20, 500).astype(float), -1074),  # subnormals
        [2.0**-1022, -(2.0**-1022), 0.0, 0.0],
    ])
    k = rng.integers(50, 57, w.size)
    frac = rng.choice([0.5, 0.75, 1.0, 1.5, 1 + 2.0**-52, 1 - 2.0**-53], w.size)
    base = np.where(w == 0, 2.0**-1074, np.abs(w))
    u = np.ldexp(base * frac, -k) * rng.choice([-1, 1], w.size)
    # zero and subnormal weights: updates on the subnormal grid (never lost)
    grid = np.abs(w) < 2.0**-1000
    u = np.where(grid, rng.choice([2.0**-1074, -(2.0**-1074), 2.0**-1073], w.size), u)
    assert np.all(u != 0)
    um, ue = np.frexp(u)
    got = R._lost_updates(w, um, ue.astype(np.int64))
    np.testing.assert_array_equal(got, (w - u) == w)
    assert 0 < got.mean() < 1
    # exact ties, half an ulp either way: even significands stay, odd ones move
    w = rng.standard_normal(2000)
    u = np.abs(np.spacing(w)) / 2 * rng.choice([-1, 1], w.size)
    um, ue = np.frexp(u)
    got = R._lost_updates(w, um, ue.astype(np.int64))
    np.testing.assert_array_equal(got, (w - u) == w)
    assert 0.3 < got.mean() < 0.7


# ---------------------------------------------------------------------------
# a deep chain: far below float64, against mpmath
# ---------------------------------------------------------------------------

def test_deep_sigmoid_chain_matches_mpmath():
    mpmath.mp.dps = 30
    net = gaussian_net(1000, 3, "sigmoid", scale=math.sqrt(3.0), bias=0.2, seed=12)
    x = np.random.default_rng(13).standard_normal((2, 3))
    y = np.zeros((2, 3))
    rep = report(net, x, y, lr=1e-3)
    fig = mp_figures(net, mp_reference(net, x, y, "mse"), 1e-3)
    assert fig["wn"][0] < -320  # the first layer's norm is beyond float64 (< 1e-308)
    assert fig["wn"][0] == min(fig["wn"][:10])
    assert_matches_mp(rep, fig, chain_units(net, 2))  # 14,002 u: 7e-13 in log10
    # fail layers: the first layer, scanning from the output, with anything out of range
    u64 = np.array(fig["u64"])
    assert rep.f64_fail_layer == int(np.flatnonzero(u64 > 0)[-1])
    assert rep.f32_fail_layer == int(np.flatnonzero(np.array(fig["u32"]) > 0)[-1])
    assert rep.f64_fail_from_output == 999 - rep.f64_fail_layer
    assert rep.verdict == "vanishing" and rep.slope < 0


def test_exploding_leaky_relu_chain_matches_mpmath():
    # activations and gradients beyond float64 (10^400 and more): the pre-activations'
    # signs, hence f' in {1, 0.01}, and the overflow fractions, against mpmath
    mpmath.mp.dps = 30
    net = gaussian_net(400, 3, "leaky_relu", scale=40.0, bias=0.5, seed=20)
    x = np.random.default_rng(21).standard_normal((2, 3))
    rep = report(net, x, loss="sum", lr=1e-3)
    fig = mp_figures(net, mp_reference(net, x, None, "sum"), 1e-3)
    assert max(fig["wn"]) > 400
    assert_matches_mp(rep, fig, chain_units(net, 2))
    assert rep.verdict == "exploding" and rep.f64_overflow.max() > 0


# ---------------------------------------------------------------------------
# slope, confidence interval, t quantiles
# ---------------------------------------------------------------------------

def test_t_critical_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in list(range(1, 130)) + [150, 200, 500, 1000, 1998, 10**5]:
        for level in (0.95, 0.99, 0.5):
            # two computations of the same quantile (bisection on the closed-form CDF, or the
            # Cornish-Fisher series, against scipy), not a value the contract bounds; 1e-9 is the
            # series' documented error for dof > 100
            assert abs(t_critical(df, level) - stats.t.ppf(0.5 + level / 2, df)) < 1e-9, (df, level)
    assert math.isnan(t_critical(0))


def test_growth_rate_is_mean_increment_with_batch_means_interval():
    stats = pytest.importorskip("scipy.stats")
    net = gaussian_net(40, 6, "tanh", scale=0.8, seed=14)
    x = np.random.default_rng(15).standard_normal((4, 6))
    rep = report(net, x)
    y = rep.delta_norm
    inc = y[:-1] - y[1:]  # 39 increments toward the input
    assert rep.slope == pytest.approx((y[0] - y[-1]) / 39, abs=1e-12)
    # batch means: 6 blocks (floor(sqrt(39))) of 7 or 6 increments, t on 5 degrees of freedom
    blocks = np.array_split(inc, 6)
    means = np.array([b.mean() for b in blocks])
    se = means.std(ddof=1) / math.sqrt(6)
    t = stats.t.ppf(0.975, 5)
    assert rep.slope_blocks == 6 and rep.slope_stderr == pytest.approx(se, rel=1e-12)
    # t from scipy, the report's own t_critical: the same quantile computed twice (see above)
    np.testing.assert_allclose(rep.slope_ci, (rep.slope - t * se, rep.slope + t * se), rtol=1e-9)
    assert abs(rep.total_change - 39 * rep.slope) < 1e-10
    # ||dW|| of this net is flat (the two factors move oppositely): the slope is measured on delta
    assert abs(np.polyfit(39 - np.arange(40), rep.grad_norm_w, 1)[0]) < 0.02 and rep.slope < -0.05


def test_growth_rate_edge_cases():
    assert math.isnan(R.growth_rate([1.0])[0])
    r, ci, se, k = R.growth_rate([3.0, 1.0])
    assert r == 2.0 and math.isnan(ci[0]) and k == 0
    # exactly zero signal below layer 2: measured above it
    r, _, _, _ = R.growth_rate([-math.inf, -math.inf, 5.0, 4.0, 3.0, 2.0, 1.0])
    assert r == pytest.approx(1.0)
    # uneven increments: the mean runs from the first layer with signal (9) on, not from the next
    r, _, _, _ = R.growth_rate([-math.inf, 9.0, 5.0, 4.0, 3.0])
    assert r == pytest.approx((9.0 - 3.0) / 3)
    # a straight line: zero-width interval
    r, ci, se, k = R.growth_rate(np.arange(100, dtype=float))
    assert r == pytest.approx(-1.0) and se == pytest.approx(0.0, abs=1e-14) and k == 9


def _binomial_lower(n: int, p: float, alpha: float) -> int:
    """Largest k with P(X < k) <= alpha for X ~ Binomial(n, p)."""
    cdf, k = 0.0, 0
    while True:
        nxt = cdf + math.comb(n, k) * p**k * (1 - p) ** (n - k)
        if nxt > alpha:
            return k
        cdf, k = nxt, k + 1


def test_interval_covers_the_seed_mean_over_40_draws():
    # sigmoid/LeCun, depth 300, width 64: 40 draws of weights and inputs
    n = 40
    slopes, cis = [], []
    for seed in range(n):
        net = lg.Network.build([64] * 301, activation="sigmoid", init="lecun_normal", seed=seed)
        x = np.random.default_rng(1000 + seed).standard_normal((4, 64))
        rep = report(net, x, theory=False)
        slopes.append(rep.slope)
        cis.append(rep.slope_ci)
    mean = float(np.mean(slopes))
    cis = np.array(cis)
    covered = int(np.sum((cis[:, 0] <= mean) & (mean <= cis[:, 1])))
    # nominal 95%: fewer than k_min of 40 happens with probability below 1e-3 (computed, not guessed);
    # the OLS interval on the log-norm itself covered none of 16
    k_min = _binomial_lower(n, 0.95, 1e-3)
    assert 30 <= k_min <= 36
    assert covered >= k_min, (covered, k_min)
    # and the interval is not uselessly wide: its half-width is within a factor 3 of 1.96 x the seed spread
    half = float(np.mean(cis[:, 1] - cis[:, 0]) / 2)
    assert 1.96 * np.std(slopes) / 3 < half < 3 * 1.96 * np.std(slopes)


# ---------------------------------------------------------------------------
# verdicts
# ---------------------------------------------------------------------------

def test_verdicts():
    rng = np.random.default_rng(16)
    x = rng.standard_normal((4, 16))
    # vanishing: a sigmoid chain, 200 layers
    assert report(gaussian_net(200, 16, "sigmoid", scale=1.0, seed=1), x).verdict == "vanishing"
    # vanishing: ordered tanh (sigma_w = 0.5), 200 layers: |delta| and the forward signal both collapse
    rep = report(gaussian_net(200, 16, "tanh", scale=0.5, seed=4), x)
    assert rep.verdict == "vanishing" and rep.slope_ci[1] < 0 and rep.forward_change < -3
    # exploding: chaotic tanh (sigma_w = 3): the gradient grows toward the input
    rep = report(gaussian_net(200, 16, "tanh", scale=3.0, seed=2), x)
    assert rep.verdict == "exploding" and rep.slope > 0 and rep.slope_ci[0] > 0
    # exploding by overflow: a linear chain 1.2 I (README), every weight gradient 10^316
    rep = report(lg.Network([1.2 * np.eye(2)] * 4000, None, "identity"), np.ones((1, 2)), loss="sum")
    assert rep.verdict == "exploding" and rep.f64_fail_layer == 3999 and rep.f64_overflow.min() > 0
    # healthy: orthogonal linear layers keep every gradient norm the same
    qs = [np.linalg.qr(rng.standard_normal((16, 16)))[0] for _ in range(300)]
    rep = report(lg.Network(qs, None, "identity"), x)
    assert rep.verdict == "healthy" and abs(rep.total_change) < 1 and rep.f64_fail_layer is None
    # healthy: tanh at the edge of chaos, 50 layers
    assert report(gaussian_net(50, 64, "tanh", scale=1.0, seed=3), rng.standard_normal((8, 64))).verdict == "healthy"


@pytest.mark.parametrize("gain,verdict", [(0.8, "vanishing"), (1.0, "healthy"), (1.25, "exploding")])
def test_relu_he_verdicts_look_at_forward_backward_and_float32(gain, verdict):
    # depth 300, width 64: ||dW|| is about the same in every layer whatever the gain (delta and a
    # move oppositely), so the verdict must come from delta, the forward signal and the range
    for seed in range(3):
        net = lg.Network.build([64] * 301, activation="relu", init="he_normal", seed=seed, gain=gain)
        x = np.random.default_rng(seed).standard_normal((8, 64))
        rep = report(net, x)
        assert rep.verdict == verdict, (seed, rep.verdict_reasons)
        spread = np.ptp(rep.grad_norm_w)
        assert spread < 6  # flat |dW|: a fit on it would say "healthy" every time
        if gain == 1.25:
            assert rep.grad_norm_w.min() > 45 and rep.f32_overflow.max() > 0  # |dW| ~ 10^53
            assert rep.forward_change > 20 and rep.total_change > 20
            assert any("float32 overflows" in r for r in rep.verdict_reasons)
        if gain == 0.8:
            assert rep.forward_change < -20 and rep.total_change < -20
        if gain == 1.0:
            assert rep.verdict_reasons == [] and abs(rep.total_change) < 5
        # theory: finite-width chi1 of relu, sigma_w^2 = 2 gain^2
        assert rep.theory_slope_mean_field == pytest.approx(0.5 * math.log10(gain**2), abs=0.01)
        assert abs(rep.slope - rep.theory_slope) < 4 * rep.slope_stderr + 0.005


def test_verdict_threshold_boundary_and_decades_argument():
    # a deterministic chain 0.9 I: every increment of log10|delta| is log10 0.9, so the interval
    # has zero width and the change over 100 steps is known
    f = 0.9
    net = lg.Network([f * np.eye(3)] * 101, None, "identity")
    x = np.ones((1, 3))
    rep = report(net, x, loss="sum")
    change = rep.total_change
    assert change == pytest.approx(100 * math.log10(f), rel=1e-12) and rep.slope_ci[0] == pytest.approx(rep.slope)
    # forward: the activations shrink by the same factor
    # 100 products by 0.9 in float64, each rounding once: within 100 u of 0.9^100, then two log10s
    assert abs(rep.forward_change - 100 * math.log10(f)) <= 2 * log10_tol(100 * math.log10(f), 100)
    d = abs(change)
    # at the boundary (>=): a change of exactly `decades` counts, a hair less does not
    lo, hi = rep.slope_ci[0] * 100, rep.slope_ci[1] * 100
    assert report(net, x, loss="sum", decades=-hi).verdict == "vanishing"
    assert report(net, x, loss="sum", decades=np.nextafter(-lo, np.inf) + 1e-12).verdict == "healthy"
    assert report(net, x, loss="sum", decades=d / 2).verdict == "vanishing"
    assert report(net, x, loss="sum", decades=2 * d).verdict == "healthy"
    assert report(net, x, loss="sum", decades=2 * d).decades == 2 * d
    for bad in (0, -1, math.inf, math.nan):
        with pytest.raises(ValueError, match="decades"):
            report(net, x, loss="sum", decades=bad)
    with pytest.raises(TypeError, match="decades"):
        report(net, x, loss="sum", decades="3")


# ---------------------------------------------------------------------------
# output: table, records, JSON, plot
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def deep_report():
    net = gaussian_net(300, 4, "sigmoid", scale=2.0, seed=17)
    return report(net, np.random.default_rng(18).standard_normal((3, 4)), lr=1e-3)


def test_json_round_trip(deep_report):
    s = deep_report.to_json()
    json.loads(s, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    back = Report.from_json(s)
    assert back.to_json() == s
    for _, attr, _, _ in R.LAYER_FIELDS:
        np.testing.assert_array_equal(getattr(back, attr), getattr(deep_report, attr))
    assert back.verdict == deep_report.verdict and back.slope_ci == deep_report.slope_ci


def test_records_and_dict(deep_report):
    recs = deep_report.records()
    assert len(recs) == 300 and recs[0]["layer"] == 0 and recs[-1]["from_output"] == 0
    assert recs[5]["log10_grad_norm_w"] == deep_report.grad_norm_w[5]
    assert set(recs[0]) >= {"activation", "n_in", "n_out", "lost_update_frac", "f64_underflow_frac"}
    d = deep_report.to_dict()
    assert d["layers"]["grad_norm_w"][7] == deep_report.grad_norm_w[7]
    assert deep_report.summary()["verdict"] == deep_report.verdict


def test_table_plain_and_rich(deep_report):
    plain = deep_report.table(rich=False)
    assert "verdict: vanishing" in plain and "decades per layer toward the input" in plain
    lines = plain.splitlines()
    assert lines[0].split()[:2] == ["layer", "act"]
    assert sum(1 for ln in lines if ln.strip().startswith("...")) >= 1
    full = deep_report.table(max_rows=None, rich=False)
    assert sum(1 for ln in full.splitlines() if ln.strip().split(" ")[0].isdigit()) == 300
    assert "verdict: vanishing" in str(deep_report)
    pytest.importorskip("rich")
    boxed = deep_report.table(rich=True)
    assert "verdict: vanishing" in boxed and "\u2503" in boxed or "\u2502" in boxed
    # not a terminal (pytest captures stdout): plain text, no box characters, by default
    assert deep_report.table() == plain and "\u2502" not in str(deep_report)


def test_plot_file(deep_report, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "grad.png"
    ax = deep_report.plot(str(path))
    assert path.stat().st_size > 1000
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "float64 range" in labels and "float32 range" in labels
    ys = {round(ln.get_ydata()[0], 3) for ln in ax.get_lines() if len(set(ln.get_ydata())) == 1}
    assert round(R.FLOAT64_LOG10_RANGE[0], 3) in ys and round(R.FLOAT32_LOG10_RANGE[1], 3) in ys


def test_single_sample_and_other_losses():
    net = gaussian_net(4, 3, "tanh", seed=19)
    r1 = report(net, np.ones(3))
    r2 = report(net, np.ones((1, 3)), np.zeros((1, 3)))
    np.testing.assert_array_equal(r1.grad_norm_w, r2.grad_norm_w)
    r_ce = report(net, np.ones((2, 3)), np.array([0, 2]), loss="cross_entropy")
    assert r_ce.loss == "cross_entropy" and np.all(np.isfinite(r_ce.grad_norm_w))
    with pytest.raises(ValueError, match="lr must be"):
        report(net, np.ones(3), lr=-1.0)


# ---------------------------------------------------------------------------
# theory beside measurement: table, records, dict/JSON, plot
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def theory_report():
    net = gaussian_net(80, 64, "tanh", scale=1.5, bias=0.1, seed=23)
    return net, report(net, np.random.default_rng(24).standard_normal((4, 64)))


def test_theory_slope_is_finite_width_chi1_of_the_estimated_sigmas(theory_report):
    from loggrad import theory as T

    net, rep = theory_report
    # sigma_w^2 = n_in * mean(W^2), sigma_b^2 = mean(b^2) over the hidden layers, computed directly
    sw = math.sqrt(np.mean([64 * np.mean(np.asarray(w) ** 2) for w in list(net.weights)[1:-1]]))
    sb = math.sqrt(np.mean([np.mean(np.asarray(b) ** 2) for b in list(net.biases)[1:-1]]))
    want_mf = T.log10_gradient_growth_per_layer("tanh", sw, sb)
    want_fw = T.log_gradient_growth_finite_width("tanh", sw, sb, 64)[0] / math.log(10)
    assert rep.theory_slope_mean_field == pytest.approx(want_mf, rel=1e-9)
    assert rep.theory_slope == pytest.approx(want_fw, rel=1e-9)
    assert 0.02 < rep.theory_slope_mean_field < 0.035  # chaotic tanh: 0.5 log10 chi1 ~ +0.026 at sigma_w = 1.5
    assert rep.theory_slope < rep.theory_slope_mean_field  # the typical log-norm grows more slowly
    # the measured growth of delta agrees with the finite-width prediction within its interval (and a margin)
    assert rep.slope_ci[0] - 0.005 < rep.theory_slope < rep.slope_ci[1] + 0.005
    # chi_c and c* beside chi1 (chaotic: c* < 1)
    assert rep.chi1 == pytest.approx(T.chi1("tanh", sw, sb), rel=1e-9)
    c, chi_c = T.correlation_fixed_point("tanh", sw, sb)
    assert rep.c_star == pytest.approx(c, abs=1e-6) and rep.chi_c == pytest.approx(chi_c, rel=1e-6) and c < 1
    # measured and predicted side by side in the summary, the dict and JSON
    summ = rep.summary()
    assert summ["theory_slope"] == rep.theory_slope and summ["slope"] == rep.slope
    assert summ["theory_change"] == pytest.approx(79 * rep.theory_slope)
    back = Report.from_json(rep.to_json())
    assert back.theory_slope == rep.theory_slope and back.slope == rep.slope
    np.testing.assert_array_equal(back.theory_act_rms, rep.theory_act_rms)


def test_theory_columns_in_table_and_records(theory_report):
    from loggrad import theory as T

    net, rep = theory_report
    line = rep.theory_line()
    # delta: anchored at the output layer, then the predicted increments (at the settled q) toward the input
    inc = rep.theory_delta_inc
    assert line[-1] == rep.delta_norm[-1]
    np.testing.assert_allclose(np.diff(line), -inc, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(inc[-10:], rep.theory_slope, rtol=1e-6)  # q within 1e-9 of q*
    # forward: the length map from the data, q_0 = sigma_w^2 mean(x^2) + sigma_b^2
    x = np.random.default_rng(24).standard_normal((4, 64))
    q = rep.sigma_w**2 * np.mean(x**2) + rep.sigma_b**2
    want = [0.5 * math.log10(np.mean(x**2))]
    for _ in range(79):
        q_next = T.length_map(q, "tanh", rep.sigma_w, rep.sigma_b)
        want.append(0.5 * math.log10((q_next - rep.sigma_b**2) / rep.sigma_w**2))
        q = q_next
    np.testing.assert_allclose(rep.theory_act_line(), want, rtol=1e-7, atol=1e-9)
    # and it predicts the measured rms within a few hundredths of a decade at width 64
    assert np.max(np.abs(rep.act_rms[1:] - rep.theory_act_line()[1:])) < 0.1
    recs = rep.records()
    assert [r["log10_delta_norm_theory"] for r in recs] == line.tolist()
    assert [r["log10_act_rms_theory"] for r in recs] == rep.theory_act_line().tolist()
    text = rep.table(max_rows=None, rich=False)
    lines = text.splitlines()
    head = lines[0].split()
    assert head[:6] == ["layer", "act", "log10", "rms", "a", "theory"]
    assert "log10|delta|" in head and head[head.index("log10|delta|") + 1] == "theory"
    row5 = next(ln.split() for ln in lines if ln.split()[:1] == ["5"])
    assert float(row5[2]) == pytest.approx(rep.act_rms[5], abs=6e-4)
    assert float(row5[3]) == pytest.approx(rep.theory_act_line()[5], abs=6e-4)
    assert float(row5[4]) == pytest.approx(rep.delta_norm[5], abs=6e-4)
    assert float(row5[5]) == pytest.approx(line[5], abs=6e-4)
    assert f"theory (finite width) {rep.theory_slope:+.5f}" in text
    assert f"(theory {79 * rep.theory_slope:+.2f})" in text


def test_theory_notes_slow_convergence_at_zero_bias():
    # tanh at sigma_w = 1, sigma_b = 0: q decays like 1/(2l), never settling within the transient
    net = gaussian_net(300, 32, "tanh", scale=1.0, bias=0.0, seed=5)
    rep = report(net, np.random.default_rng(6).standard_normal((4, 32)))
    assert any("has not settled" in n and "does not apply" in n for n in rep.notes)


def test_no_theory_without_iid_gaussian_layers():
    rng = np.random.default_rng(25)
    mixed = lg.Network([rng.standard_normal((4, 4)) for _ in range(6)], None, ["tanh", "relu"] * 3)
    rep = report(mixed, rng.standard_normal((2, 4)))
    assert rep.theory_slope is None and rep.theory_line() is None and rep.summary()["theory_change"] is None
    assert "theory" not in rep.table(rich=False).splitlines()[0]
    # per-layer scales differing by a factor 4: not one i.i.d. ensemble
    ws = [rng.standard_normal((4, 4)) * (0.5 if l % 2 else 2.0) for l in range(6)]
    assert report(lg.Network(ws, None, "tanh"), rng.standard_normal((2, 4))).theory_slope is None
    assert report(gaussian_net(6, 4, "tanh"), rng.standard_normal((2, 4)), theory=False).theory_slope is None


def test_plot_draws_signals_fit_theory_limits_and_residuals(theory_report, tmp_path):
    pytest.importorskip("matplotlib")
    _, rep = theory_report
    path = tmp_path / "theory.png"
    ax = rep.plot(str(path))
    assert path.stat().st_size > 1000
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    meas = next(ln for lab, ln in lines.items() if "delta_l" in lab)
    np.testing.assert_array_equal(meas.get_xdata(), np.arange(80))
    np.testing.assert_array_equal(meas.get_ydata(), rep.delta_norm)
    fwd = next(ln for lab, ln in lines.items() if "rms" in lab and "forward" in lab)
    np.testing.assert_array_equal(fwd.get_ydata(), rep.act_rms)
    th = next(ln for lab, ln in lines.items() if lab.startswith("theory (finite width)"))
    np.testing.assert_allclose(th.get_ydata(), rep.theory_line(), rtol=1e-14)
    fit = next(ln for lab, ln in lines.items() if lab.startswith("fit"))
    slope = np.polyfit(79 - np.arange(80), fit.get_ydata(), 1)[0]
    assert slope == pytest.approx(rep.slope, rel=1e-9)
    ys = {round(float(ln.get_ydata()[0]), 6) for ln in ax.get_lines() if len(set(ln.get_ydata())) == 1}
    for lo, hi in (R.FLOAT64_LOG10_RANGE, R.FLOAT32_LOG10_RANGE):
        assert round(lo, 6) in ys and round(hi, 6) in ys
    # the residual panel below: measured - theory
    res_ax = next(a for a in ax.figure.axes if a is not ax)
    res = {ln.get_label(): ln for ln in res_ax.get_lines()}
    np.testing.assert_allclose(res["delta: measured - theory"].get_ydata(), rep.delta_norm - rep.theory_line())
    np.testing.assert_allclose(res["rms a: measured - theory"].get_ydata(), rep.act_rms - rep.theory_act_line())


def test_lost_fraction_of_zero_bias_layers_is_n_in_over_n_in_plus_1():
    # every weight update far below half an ulp; the zero biases still move: 50/51 = 0.98
    net = gaussian_net(4, 50, "tanh", scale=1.0, bias=0.0, seed=30)
    rep = report(net, np.random.default_rng(31).standard_normal((2, 50)), lr=1e-30)
    np.testing.assert_allclose(rep.lost_update, 50 / 51)
    assert any("n_in/(n_in+1)" in n for n in rep.notes)


def test_conditioning_flags_chaotic_networks():
    # tanh with N(0, 1) weights at width 16 (sigma_w = 4), 200 layers: the forward pass amplifies a
    # rounding-level change of x until the exact gradient of this input is a different number
    L = 200
    rng = np.random.default_rng(40)
    net = lg.Network([rng.standard_normal((16, 16)) for _ in range(L)], None, "tanh")
    x = rng.standard_normal((2, 16))
    rep = report(net, x, conditioning=True)
    # the same perturbation, done directly: x (1 + 2^-52 u), u from default_rng(0)
    u = np.random.default_rng(0).uniform(-1.0, 1.0, x.shape)
    g0 = net.backward(x, np.zeros((2, 16)), input_grad=False)
    g1 = net.backward(x * (1.0 + u * 2.0**-52), np.zeros((2, 16)), input_grad=False)
    # log10 ||dW_l||, the quantity the report's digits are of (a single entry can move
    # less than the norm at a chaotic layer), summed from mantissas and exponents
    def log10_norm(a):
        m, e = np.asarray(a.mantissa, dtype=float).ravel(), np.asarray(a.exponent, dtype=float).ravel()
        m, e = m[m != 0], e[m != 0]
        e_max = e.max()
        return e_max * math.log10(2.0) + 0.5 * math.log10(float(np.sum(m**2 * 4.0 ** (e - e_max))))

    n0 = np.array([log10_norm(g0.weights[l]) for l in range(L)])
    n1 = np.array([log10_norm(g1.weights[l]) for l in range(L)])
    moved = np.abs(n1 - n0)
    assert moved.max() > 1  # the largest entry moves by more than a factor 10 somewhere
    assert rep.grad_digits.min() < 1 and np.argmin(rep.grad_digits) in np.flatnonzero(moved > 0.3)
    assert any("ill-conditioned" in n for n in rep.notes)
    assert "digits" in rep.table(rich=False).splitlines()[0]
    # a well-conditioned network keeps nearly all of float64's digits
    calm = report(gaussian_net(40, 16, "tanh", scale=1.0, bias=0.1, seed=41), x, conditioning=True)
    assert calm.grad_digits.min() > 12 and "digits" not in calm.table(rich=False).splitlines()[0]


def test_jacobian_condition_number_in_the_report():
    # J = diag(2, 1)^L: condition number 2^L exactly
    net = lg.Network([np.diag([2.0, 1.0])] * 30, None, "identity")
    rep = report(net, np.ones((1, 2)), loss="sum", spectrum=True)
    # a sum of 30 per-layer log terms, each add rounding by at most half an ulp of the running
    # sum (<= 9.03), and each term's own rounding: 31 ulp of the result bound the error
    want = 30 * math.log10(2.0)
    assert abs(rep.jacobian_log10_cond - want) <= 31 * math.ulp(want)
    assert "condition number" in rep.table(rich=False)


@pytest.mark.parametrize("act,sw,sb,n", [("tanh", 1.5, 0.1, 16), ("sigmoid", 3.0, 0.3, 32)])
def test_theory_slope_against_finite_width_monte_carlo(act, sw, sb, n):
    # 24 draws of a depth-200 i.i.d. network (one sample, random target): the seed mean of the
    # measured growth of delta is the finite-width prediction, not the mean-field 0.5 log10 chi1
    slopes = []
    for seed in range(24):
        rng = np.random.default_rng(seed)
        ws = [rng.standard_normal((n, n)) * sw / math.sqrt(n) for _ in range(200)]
        bs = [rng.standard_normal(n) * sb for _ in range(200)]
        rep = report(lg.Network(ws, bs, act), rng.standard_normal((1, n)), rng.standard_normal((1, n)))
        slopes.append(rep.slope)
    mean, se = float(np.mean(slopes)), float(np.std(slopes, ddof=1) / math.sqrt(24))
    # O(1/n^2) terms beyond the delta method: a margin of 2% of the rate
    assert abs(mean - rep.theory_slope) < 4 * se + 0.02 * abs(rep.theory_slope_mean_field)
    assert abs(mean - rep.theory_slope) < abs(mean - rep.theory_slope_mean_field)


def test_lost_update_fraction_of_a_layer_with_one_nonzero_gradient():
    # x = 0: dL/dW = 0, only the bias has a gradient; lr * g is far below half an ulp of the bias 1.0
    net = lg.Network([np.array([[2.0]])], [np.array([1.0])], "identity")
    x, y = np.zeros((1, 1)), np.array([[5.0]])
    rep = report(net, x, y, lr=1e-20)
    fig = mp_figures(net, mp_reference(net, x, y, "mse"), 1e-20)
    assert fig["lost"] == [1.0]
    np.testing.assert_array_equal(rep.lost_update, fig["lost"])


def test_stdout_that_cannot_say_is_not_a_terminal(monkeypatch):
    # an object standing in for stdout without isatty (some notebook and embedding setups):
    # plain text, not rich's terminal output
    import sys

    monkeypatch.setattr(sys, "stdout", object())
    assert R._stdout_is_terminal() is False
