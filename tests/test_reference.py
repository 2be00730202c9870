"""loggrad's extended and float64 paths against independent references (tests/reference.py).

Tolerances (see tests/reference.py for the error analysis):

* shallow nets: componentwise, |loggrad - mpmath| <= SAFETY * E + 2u|ref|, E the
  first-order bound of float64 arithmetic (unbounded exponent for the extended
  path; the plain framework formulas for the float64 path). Each test also
  checks that E is small (relative bound < 1e-9), so the comparison can fail.
* deep chains (hundreds to thousands of layers): the componentwise bound
  grows like the product of |W| and says nothing there, so these compare
  normwise per layer: max|loggrad - mpmath| <= DEEP_ULPS * depth * u * max|ref|
  (with DEEP_ULPS = 1000; measured errors are up to ~100 depth u on chains
  whose sums cancel, and the float64 path and numpy show the same), plus sign
  and log10 agreement to 1e-12 relative where the brief asks for it.
"""

from __future__ import annotations

import math
import zlib

import mpmath
import numpy as np
import pytest

import loggrad as lg
from reference import (
    SAFETY,
    U,
    act_mp,
    central_difference,
    mismatches,
    mp_backward,
    mp_loss,
    np_backward,
    relative_bound,
    sign_log10,
    to_mpf,
)

DEEP_ULPS = 1000.0


def _rng(*key: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _targets(rng: np.random.Generator, loss: str, batch: int, n_out: int) -> np.ndarray | None:
    if loss == "sum":
        return None
    if loss == "cross_entropy":
        return rng.integers(0, n_out, batch)
    return rng.random((batch, n_out))


def _small_net(act: str, loss: str) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray | None]:
    rng = _rng(act, loss)
    widths = [3, 4, 3]
    ws = [rng.standard_normal((widths[i + 1], widths[i])) for i in range(2)]
    bs = [rng.standard_normal(widths[i + 1]) * 0.5 for i in range(2)]
    x = rng.standard_normal((2, 3))
    return ws, bs, x, _targets(rng, loss, 2, 3)


def _all_mismatches(g: lg.Gradients, ref, depth: int, factor: float = SAFETY) -> list[str]:
    bad = mismatches("loss", g.loss, ref.loss, ref.err_loss, factor)
    bad += mismatches("output", g.output, ref.output, ref.err_output, factor)
    bad += mismatches("dx", g.input, ref.input, ref.err_input, factor)
    for l in range(depth):
        bad += mismatches(f"dW[{l}]", g.weights[l], ref.weights[l], ref.err_weights[l], factor)
        bad += mismatches(f"db[{l}]", g.biases[l], ref.biases[l], ref.err_biases[l], factor)
    return bad


def _normwise_error(got, ref: np.ndarray) -> float:
    """max|got - ref| / max|ref| in exact arithmetic (0 when both are all zero)."""
    g = to_mpf(got)
    scale = max(abs(v) for v in ref.ravel())
    diff = max(abs(a - b) for a, b in zip(g.ravel(), ref.ravel()))
    if scale == 0:
        return 0.0 if diff == 0 else math.inf
    return float(diff / scale)


# ------------------------------------------------------------ small nets --
@pytest.mark.parametrize("loss", lg.LOSSES)
@pytest.mark.parametrize("act", lg.ACTIVATIONS)
def test_small_net_matches_mpmath_and_numpy(act: str, loss: str) -> None:
    ws, bs, x, y = _small_net(act, loss)
    net = lg.Network(ws, bs, act)
    ref = mp_backward(ws, bs, act, x, y, loss)
    assert relative_bound(ref.weights[0], ref.err_weights[0]) < 1e-9  # the comparison is not vacuous
    g = net.backward(x, y, loss=loss)
    assert _all_mismatches(g, ref, 2) == []

    ref64 = mp_backward(ws, bs, act, x, y, loss, plain=True)
    g64 = net.backward(x, y, loss=loss, precision="float64")
    assert _all_mismatches(g64, ref64, 2) == []
    # float64 path against the plain numpy backprop: both within the bound of mpmath
    nb = np_backward(ws, bs, act, x, y, loss)
    for l in range(2):
        assert mismatches("np dW", g64.weights[l], to_mpf(nb["weights"][l]), 2 * ref64.err_weights[l], 2 * SAFETY) == []
        assert mismatches("np db", g64.biases[l], to_mpf(nb["biases"][l]), 2 * ref64.err_biases[l], 2 * SAFETY) == []
    assert mismatches("np dx", g64.input, to_mpf(nb["input"]), 2 * ref64.err_input, 2 * SAFETY) == []
    assert mismatches("np loss", g64.loss, mpmath.mpf(nb["loss"]), 2 * ref64.err_loss, 2 * SAFETY) == []


def _unflatten(p: np.ndarray, shapes: list[tuple[int, int]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    ws, bs, i = [], [], 0
    for n_out, n_in in shapes:
        ws.append(p[i : i + n_out * n_in].reshape(n_out, n_in))
        i += n_out * n_in
        bs.append(p[i : i + n_out])
        i += n_out
    return ws, bs


@pytest.mark.parametrize("loss", lg.LOSSES)
@pytest.mark.parametrize("act", lg.ACTIVATIONS)
def test_mpmath_reference_matches_its_finite_differences(act: str, loss: str) -> None:
    """The reference's analytic derivatives against central differences of its own loss (200 bits, h = 2^-80)."""
    rng = _rng("fd", act, loss)
    shapes = [(3, 2), (2, 3)]
    ws = [rng.standard_normal(s) for s in shapes]
    bs = [rng.standard_normal(s[0]) * 0.5 for s in shapes]
    x = rng.standard_normal((2, 2))
    y = _targets(rng, loss, 2, 2)
    ref = mp_backward(ws, bs, act, x, y, loss)
    analytic = np.concatenate([np.concatenate([w.ravel(), b]) for w, b in zip(ref.weights, ref.biases)])
    with mpmath.workprec(200):
        p = np.array([mpmath.mpf(float(v)) for w, b in zip(ws, bs) for v in (*w.ravel(), *b)], dtype=object)
        fd = central_difference(lambda q: mp_loss(*_unflatten(q, shapes), act, x, y, loss), p, mpmath.mpf(2) ** -80)
        scale = max(abs(v) for v in analytic)
        assert max(abs(a - b) for a, b in zip(fd, analytic)) < scale * mpmath.mpf(10) ** -30


@pytest.mark.parametrize("act,loss", [("tanh", "mse"), ("gelu", "bce"), ("silu", "cross_entropy"), ("elu", "sum")])
def test_loggrad_gradient_matches_finite_differences_of_its_loss(act: str, loss: str) -> None:
    rng = _rng("fd64", act, loss)
    net = lg.Network([rng.standard_normal((4, 3)), rng.standard_normal((3, 4))],
                     [rng.standard_normal(4), rng.standard_normal(3)], act)
    x = rng.standard_normal((3, 3))
    y = _targets(rng, loss, 3, 3)
    p0 = net.params.copy()

    def f(p: np.ndarray) -> float:
        net.params[:] = p
        return float(net.backward(x, y, loss=loss).loss.to_numpy())

    fd = central_difference(f, p0, 1e-6)
    net.params[:] = p0
    grad = np.asarray(net.backward(x, y, loss=loss).params.to_numpy())
    # truncation h^2 |f'''| and rounding u |f| / h: about 1e-10 of the scale here
    np.testing.assert_allclose(grad, fd, rtol=0, atol=1e-7 * np.max(np.abs(grad)))


# ----------------------------------------------------- saturated units --
def _single(act: str, z: float, loss: str = "sum", y: np.ndarray | None = None) -> lg.Gradients:
    return lg.Network([np.array([[1.0]])], [np.zeros(1)], act).backward(np.array([[z]]), y, loss=loss)


def test_sigmoid_derivative_at_1000_is_exp_minus_1000() -> None:
    g = _single("sigmoid", 1000.0)
    with mpmath.workprec(160):
        expect = 1000 * mpmath.exp(-1000) / (1 + mpmath.exp(-1000)) ** 2  # dL/dW = sigmoid'(1000) * x
        got = to_mpf(g.weights[0])[0, 0]
        assert abs(got / expect - 1) < 8 * U  # z is exact: a few ulps of evaluation only
    assert g.weights[0].log10()[0, 0] == pytest.approx(3 - 1000 / math.log(10), rel=1e-15)
    assert g.weights[0].sign()[0, 0] == 1
    assert lg.Network([np.array([[1.0]])], None, "sigmoid").backward(
        np.array([[1000.0]]), loss="sum", precision="float64").weights[0][0, 0] == 0.0


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "softplus", "silu", "gelu", "elu", "selu"])
@pytest.mark.parametrize("z", [1000.0, -1000.0, 30.0, -30.0, 1e-300, -2e-320])
def test_saturated_single_unit_matches_mpmath(act: str, z: float) -> None:
    g = _single(act, z)
    with mpmath.workprec(160):
        a, d, _ = act_mp(act, mpmath.mpf(z))
        for got, expect in ((g.output[0, 0], a), (g.weights[0][0, 0], d * z), (g.biases[0][0], d)):
            gv = to_mpf(got)[()]
            if expect == 0:
                assert gv == 0
            else:
                assert abs(gv / expect - 1) < 16 * U, (act, z, gv, expect)


@pytest.mark.parametrize("act", ["softplus", "silu"])
def test_large_positive_preactivation_is_in_range(act: str) -> None:
    g = _single(act, 1e18)  # the value is 1e18, the derivative 1 to float64 precision
    assert g.output.to_numpy()[0, 0] == 1e18 and g.biases[0].to_numpy()[0] == 1.0


@pytest.mark.parametrize("z", [788.0, 710.0, 40.0, 1e300, -788.0, -40.0, 0.0, 1e-300])
def test_float64_softplus_is_finite_where_its_value_is(z: float) -> None:
    """The float64 path's softplus is numpy's logaddexp(0, z): log1p(exp(z)) overflowed to inf
    for z > 709, where the value (about z) is an ordinary float64 (and PyTorch's is finite)."""
    g = lg.Network([np.array([[1.0]])], None, "softplus").backward(np.array([[z]]), loss="sum", precision="float64")
    with mpmath.workprec(160):
        a, d, _ = act_mp("softplus", mpmath.mpf(z))
        for got, expect in ((g.output[0, 0], a), (g.biases[0][0], d)):
            assert np.isfinite(got)
            if expect < mpmath.mpf(2) ** -1022:  # below float64's normal range: underflows, as in numpy
                continue
            assert abs(mpmath.mpf(float(got)) / expect - 1) < 4 * U, (z, got, expect)
    assert g.output[0, 0] == np.logaddexp(0.0, z)


def test_float64_tanh_is_within_about_one_ulp() -> None:
    """The float64 path's tanh is the engine's own vectorised kernel (a fitted polynomial
    below 0.7, 1 - 2/(e^2a + 1) above): measured here in ulps of the exact value, over
    both pieces, the seam between them and the saturation at 20, and at its fixed points."""
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.uniform(-1.5, 1.5, 12_000), rng.uniform(-22.0, 22.0, 4_000),
                        np.linspace(0.69, 0.71, 1_001), -np.linspace(19.0, 21.0, 201),
                        10.0 ** rng.uniform(-300, 0, 1_000), [0.0, 5e-324, 1e-300, 0.7, np.nextafter(0.7, 0.0)]])
    net = lg.Network([np.array([[1.0]])], None, "tanh")  # z = x exactly: a column of inputs
    got = np.asarray(net.forward(x[:, None], precision="float64"))[:, 0]
    with mpmath.workprec(120):
        err = []
        for xi, gi in zip(x, got):
            t = mpmath.tanh(mpmath.mpf(xi))
            err.append(0.0 if t == 0 else float(abs(mpmath.mpf(gi) - t) / np.spacing(abs(float(t)))))
    err = np.array(err)
    assert err.max() <= 1.1, (x[err.argmax()], err.max())
    assert (err > 0.5).mean() < 0.1  # most values correctly rounded
    assert np.all(np.abs(got) <= 1.0) and np.all(np.sign(got) == np.sign(x))
    assert got[x == 0.0][0] == 0.0 and np.all(got[np.abs(x) >= 20.0] == np.sign(x[np.abs(x) >= 20.0]))
    # a pre-activation that overflowed: tanh(+-inf) = +-1; the derivative there is 0
    g = lg.Network([np.array([[1e308], [-1e308]])], None, "tanh").backward(
        np.array([[10.0]]), loss="sum", precision="float64")
    np.testing.assert_array_equal(g.output, [[1.0, -1.0]])
    np.testing.assert_array_equal(g.biases[0], [0.0, 0.0])


def test_extended_tanh_derivative_is_within_a_few_ulp() -> None:
    """The extended path's tanh'(z) for |z| < 256 is 1 - tanh(z)^2 below 0.7 and 4q(1 - q),
    q = 1/(e^2|z| + 1), above (the vectorised kernel of tanh.hpp): measured here in ulps of
    sech(z)^2, through saturation (tanh rounds to 1 beyond 19, its derivative does not) and
    past 256, where the general path takes over."""
    rng = np.random.default_rng(12)
    z = np.concatenate([rng.uniform(-1.5, 1.5, 2_000), rng.uniform(-30.0, 30.0, 2_000), rng.uniform(30.0, 300.0, 600),
                        np.linspace(0.69, 0.71, 201), 10.0 ** rng.uniform(-300, 0, 300), [0.0, 255.9, 256.0, 256.1]])
    net = lg.Network([np.array([[1.0]])], None, "tanh")  # z = x exactly; loss "sum": dL/dx = tanh'(z)
    d = net.backward(z[:, None], loss="sum").input
    with mpmath.workprec(120):
        err = []
        for zi, m, e in zip(z, d.mantissa[:, 0], d.exponent[:, 0]):
            want = mpmath.sech(mpmath.mpf(zi)) ** 2
            ulp = mpmath.mpf(2) ** (int(mpmath.floor(mpmath.log(want, 2))) - 52)
            err.append(float(abs(mpmath.ldexp(mpmath.mpf(float(m)), int(e)) - want) / ulp))
    err = np.array(err)
    assert err.max() <= 3.0, (z[err.argmax()], err.max())
    assert np.median(err) <= 0.5


@pytest.mark.parametrize("x,y", [(1000.0, 1.0), (-1000.0, 0.0), (1000.0, 0.0), (-1000.0, 1.0), (1000.0, 0.25)])
def test_bce_on_saturated_logits(x: float, y: float) -> None:
    g = lg.Network([np.array([[1.0]])], None, "identity").backward(np.array([[x]]), np.array([[y]]), loss="bce")
    with mpmath.workprec(160):
        xm, ym = mpmath.mpf(x), mpmath.mpf(y)
        loss = ym * mpmath.log1p(mpmath.exp(-xm)) + (1 - ym) * mpmath.log1p(mpmath.exp(xm)) if x < 0 else (
            ym * mpmath.log1p(mpmath.exp(-xm)) + (1 - ym) * (xm + mpmath.log1p(mpmath.exp(-xm))))
        t = mpmath.exp(-abs(xm))
        s, sm = (1 / (1 + t), t / (1 + t)) if x > 0 else (t / (1 + t), 1 / (1 + t))
        grad = (1 - ym) * s - ym * sm  # dL/dx; dL/dW = grad * 1... the input is x, W = 1
        for got, expect in ((g.loss, loss), (g.input[0, 0], grad), (g.biases[0][0], grad)):
            gv = to_mpf(got)[()]
            assert abs(gv / expect - 1) < 2000 * U, (got, expect)  # the logit's value x enters with |x| u
    if (x > 0) == (y == 1.0):  # right class, saturated: the loss is e^-1000, far below float64
        assert g.loss.log10()[()] == pytest.approx(-1000 / math.log(10), rel=1e-13)


def test_relu_gives_exact_zeros() -> None:
    rng = _rng("relu0")
    w0 = np.array([[1.0, 2.0], [-1.0, -3.0], [0.5, -0.25]])
    ws = [w0, rng.standard_normal((2, 3))]
    x = np.array([[1.0, 1.0], [2.0, 0.5]])  # unit 1 of layer 0 is closed for both rows
    y = rng.random((2, 2))
    g = lg.Network(ws, None, "relu").backward(x, y, loss="mse")
    ref = mp_backward(ws, None, "relu", x, y, "mse")
    assert _all_mismatches(g, ref, 2) == []
    assert np.all(g.weights[0].sign()[1] == 0) and np.all(g.weights[0].log10()[1] == -np.inf)
    assert np.all(g.weights[1].sign()[:, 1] == 0)  # the closed unit's output is an exact 0
    s, _ = sign_log10(ref.weights[0])
    np.testing.assert_array_equal(g.weights[0].sign(), s)


@pytest.mark.parametrize("act", ["relu", "identity", "tanh"])
def test_extended_forward_is_bitwise_the_float64_one_in_range(act: str) -> None:
    """Where every value is a normal float64, the extended path's products, bias sums and
    activations (tanh: the same kernel) round exactly as the float64 path's do: the same
    bits. Rows of inputs from
    2^-900 to 2^900, biases from 1e-5 to 100, a unit whose products are all zero (outputs
    the extended product must recompute) and a subnormal bias (which the one-pass float64
    shortcut for a row's bias sum must refuse) take each way through the layer."""
    rng = _rng("ext-is-f64", act)
    for trial in range(24):
        depth, width, batch = int(rng.integers(1, 5)), int(rng.integers(1, 70)), int(rng.integers(1, 70))
        ws = [rng.standard_normal((width, width)) * np.sqrt(2 / width) for _ in range(depth)]
        bs = [rng.standard_normal(width) * 10.0 ** float(rng.integers(-5, 3)) for _ in range(depth)]
        if trial % 4 == 0:
            ws[0][0] = 0.0
        if trial % 3 == 0:
            bs[-1][0] = 5e-320
        x = rng.standard_normal((batch, width)) * 2.0 ** rng.integers(-900, 900, (batch, 1)).astype(float)
        net = lg.Network(ws, bs, act)
        ext, f64 = net.forward(x).to_numpy(), net.forward(x, precision="float64")
        assert np.all(np.isfinite(f64))
        np.testing.assert_array_equal(ext.view(np.int64), f64.view(np.int64), err_msg=f"trial {trial}")


@pytest.mark.parametrize(("k", "reps"), [(1000, 3), (-1000, 3), (1023, 3), (-1022, 3), (1000, 100)])
def test_relu_layers_beyond_float64_scale_exactly(k: int, reps: int) -> None:
    """relu and identity commute with powers of two, and so does extended arithmetic while
    nothing leaves its range: `reps` identity layers of weight 2^k I before relu layers (no
    biases) must give 2^(k reps) times the outputs of the same net with I, bit for bit.
    Rows then sit beyond float64 range (up to 2^100000), where the layer's one-pass float64
    shortcut does not apply."""
    rng = _rng("scale-relu", str(k), str(reps))
    acts = ["identity"] * reps + ["relu", "identity", "relu", "relu"]
    for _ in range(4):
        width, batch = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        rs = [rng.standard_normal((width, width)) * np.sqrt(2 / width) for _ in range(4)]
        x = rng.standard_normal((batch, width)) * 2.0 ** rng.integers(-20, 20, (batch, 1)).astype(float)
        big = lg.Network([np.eye(width) * 2.0**k] * reps + rs, None, acts).forward(x)
        one = lg.Network([np.eye(width)] * reps + rs, None, acts).forward(x)
        nz = one.mantissa != 0
        assert nz.any()
        np.testing.assert_array_equal(big.mantissa, one.mantissa)
        np.testing.assert_array_equal(big.exponent[nz] - k * reps, one.exponent[nz])


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "softplus", "silu"])
def test_mixed_saturated_and_unsaturated_units_in_one_layer(act: str) -> None:
    rng = _rng("mixed", act)
    w0 = np.diag([1000.0, 0.5, -1000.0])
    ws = [w0, rng.standard_normal((3, 3)), rng.standard_normal((2, 3))]
    bs = [np.zeros(3), rng.standard_normal(3) * 0.1, np.zeros(2)]
    x = np.array([[1.0, 1.0, 1.0], [0.5, 0.25, 0.75]])  # unit 2 at -1000, -750: saturated low
    y = rng.random((2, 2))
    g = lg.Network(ws, bs, act).backward(x, y, loss="mse")
    ref = mp_backward(ws, bs, act, x, y, "mse")
    assert _all_mismatches(g, ref, 3) == []
    # the saturated row of dW_0 is ~e^-1000 next to an O(1) row: per-element exponents
    l10 = g.weights[0].log10()
    assert l10[2].max() < -300 and l10[2].max() < l10[1].max() - 250
    _, rl = sign_log10(ref.weights[0])
    np.testing.assert_allclose(l10[np.isfinite(rl)], rl[np.isfinite(rl)], rtol=1e-13)


# ----------------------------------------------------------- deep chains --
def test_deep_sigmoid_chain_below_1e_minus_500() -> None:
    rng = _rng("deep-sigmoid")
    depth, n = 800, 2
    ws = [rng.standard_normal((n, n)) for _ in range(depth)]
    bs = [rng.standard_normal(n) * 0.1 for _ in range(depth)]
    x, y = rng.standard_normal((1, n)), rng.random((1, n))
    net = lg.Network(ws, bs, "sigmoid")
    ref = mp_backward(ws, bs, "sigmoid", x, y, "mse")
    rs, rl = sign_log10(ref.weights[0])
    assert rl.max() < -500  # the case is what it claims
    g = net.backward(x, y, loss="mse")
    np.testing.assert_array_equal(g.weights[0].sign(), rs)
    np.testing.assert_allclose(g.weights[0].log10(), rl, rtol=1e-12)
    for l in (0, 1, depth // 2, depth - 1):
        assert _normwise_error(g.weights[l], ref.weights[l]) <= DEEP_ULPS * depth * U
        assert _normwise_error(g.biases[l], ref.biases[l]) <= DEEP_ULPS * depth * U
    assert _normwise_error(g.input, ref.input) <= DEEP_ULPS * depth * U
    g64 = net.backward(x, y, loss="mse", precision="float64")
    assert np.all(g64.weights[0] == 0.0)  # float64 underflows to exactly 0 here


@pytest.mark.parametrize("c", [1.2, 0.5])
def test_linear_chain_closed_form(c: float) -> None:
    """W = c I, identity, sum loss: a_l = c^l x, dW_l = c^(L-1) 1 x^T, db_l = c^(L-1-l), dx = c^L."""
    depth, n = 4000, 2
    x = np.array([[1.5, -0.75]])
    net = lg.Network([c * np.eye(n)] * depth, None, "identity")
    g = net.backward(x, loss="sum")
    tol = 4 * depth * U  # one rounding per layer on each path
    with mpmath.workprec(160):
        cm = mpmath.mpf(c)
        ck = {k: cm**k for k in (depth, depth - 1, depth // 2 - 1)}

        def close(got, expect) -> bool:
            return bool(abs(to_mpf(got)[()] - expect) <= tol * abs(expect))

        for j in range(n):
            assert close(g.output[0, j], ck[depth] * mpmath.mpf(x[0, j]))
            assert close(g.input[0, j], ck[depth])
            for l in (0, depth - 1):
                for i in range(n):
                    assert close(g.weights[l][i, j], ck[depth - 1] * mpmath.mpf(x[0, j]))
            assert close(g.biases[depth // 2][j], ck[depth // 2 - 1])
    if c == 0.5:  # powers of two are exact: no rounding at all
        assert g.input.log2()[0, 0] == -depth and g.input.mantissa[0, 0] == 0.5
    out64 = net.forward(x, precision="float64")
    if c == 1.2:  # 1.2^4000 = 10^316.7: float64 overflows (inf, then inf * 0 = nan in the next product)
        assert not np.any(np.isfinite(out64)) and abs(g.output.log10()[0, 0] - (depth * math.log10(1.2) + math.log10(1.5))) < 1e-9
    else:  # 0.5^4000: float64 flushes to zero
        assert np.all(out64 == 0.0) and g.output.log10()[0, 0] < -1200


@pytest.mark.parametrize("c", [1.2, 0.5])
def test_linear_chain_against_mpmath(c: float) -> None:
    depth = 2500
    rng = _rng("linear", c)
    ws = [c * np.eye(2) + rng.standard_normal((2, 2)) * 1e-3 for _ in range(depth)]
    bs = None  # so that the activations leave float64 range: 10^+-190 and beyond
    x, y = rng.standard_normal((2, 2)), rng.random((2, 2))
    ref = mp_backward(ws, bs, "identity", x, y, "mse")
    g = lg.Network(ws, bs, "identity").backward(x, y, loss="mse")
    assert abs(sign_log10(ref.output)[1]).max() > 190  # outside float64 range somewhere along the chain
    for l in (0, depth // 2, depth - 1):
        assert _normwise_error(g.weights[l], ref.weights[l]) <= DEEP_ULPS * depth * U
    assert _normwise_error(g.output, ref.output) <= DEEP_ULPS * depth * U
    assert _normwise_error(g.loss, np.array(ref.loss)) <= DEEP_ULPS * depth * U


_GAIN = {"relu": 1.4, "leaky_relu": 1.4, "elu": 1.3, "selu": 1.0, "gelu": 1.5, "silu": 1.6}


@pytest.mark.parametrize("act", lg.ACTIVATIONS)
def test_every_activation_in_a_300_layer_chain(act: str) -> None:
    rng = _rng("deep", act)
    depth, n, batch = 300, 3, 2
    loss = lg.LOSSES[zlib.crc32(act.encode()) % len(lg.LOSSES)]
    ws = [rng.standard_normal((n, n)) * _GAIN.get(act, 1.0) / math.sqrt(n) for _ in range(depth)]
    bs = [rng.standard_normal(n) * 0.05 for _ in range(depth)]
    x = rng.standard_normal((batch, n))
    y = _targets(rng, loss, batch, n)
    ref = mp_backward(ws, bs, act, x, y, loss)
    g = lg.Network(ws, bs, act).backward(x, y, loss=loss)
    for l in (0, 1, depth // 2, depth - 1):
        assert _normwise_error(g.weights[l], ref.weights[l]) <= DEEP_ULPS * depth * U, l
        assert _normwise_error(g.biases[l], ref.biases[l]) <= DEEP_ULPS * depth * U, l
        # signs agree wherever the entry is larger than the tolerance
        rs, rl = sign_log10(ref.weights[l])
        far = rl > rl.max() + math.log10(DEEP_ULPS * depth * U)
        np.testing.assert_array_equal(g.weights[l].sign()[far], rs[far])
    assert _normwise_error(g.input, ref.input) <= DEEP_ULPS * depth * U
    assert _normwise_error(g.output, ref.output) <= DEEP_ULPS * depth * U


def test_float64_path_propagates_overflow_like_frameworks() -> None:
    """A relu chain whose float64 forward pass overflows: inf - inf gives nan, and
    relu keeps the nan (as np.maximum and torch.relu do) instead of turning it
    into a silent 0. The extended path carries the true values."""
    rng = np.random.default_rng(11)
    ws = [rng.standard_normal((16, 16)) for _ in range(1000)]  # |a| grows ~ sqrt(16/2) per layer
    x, y = rng.standard_normal((3, 16)), rng.standard_normal((3, 16))
    net = lg.Network(ws, None, "relu")
    with np.errstate(all="ignore"):
        ref = np_backward(ws, None, "relu", x, y, "mse")
        g64 = net.backward(x, y, loss="mse", precision="float64")
    assert not np.all(np.isfinite(ref["output"]))  # the case overflows float64
    np.testing.assert_array_equal(np.isnan(g64.output), np.isnan(ref["output"]))
    np.testing.assert_array_equal(np.isnan(np.asarray(g64.weights[0])), np.isnan(ref["weights"][0]))
    assert math.isnan(g64.loss) and math.isnan(ref["loss"])
    g = net.backward(x, y, loss="mse")
    assert np.all(np.isfinite(g.weights[0].log10()) | (g.weights[0].sign() == 0))
    assert float(g.weights[0].max_abs().log10()) > 308  # beyond float64, carried exactly
