"""Residual networks: a_{l+1} = a_l + s f(W_l a_l + b_l).

References: torch float64 autograd of the same recurrence (in range), a
renormalised numpy backprop of the recurrence (depth 2,500, values beyond
float64), mpmath on a short case; and the bitwise guarantees of plain networks
(threads, checkpointing, layer selection, extended = float64 forward in range).
"""

from __future__ import annotations

import math
import pickle

import mpmath
import numpy as np
import pytest

import loggrad as lg

ACTS = ["tanh", "relu", "sigmoid", "gelu", "identity"]


def _net(widths, act, residual, seed=0, bias=0.1):
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((o, i)) / np.sqrt(i) for i, o in zip(widths[:-1], widths[1:])]
    bs = [bias * rng.standard_normal(o) for o in widths[1:]]
    return lg.Network(ws, bs, act, residual=residual)


def _f64(v):
    return v.to_numpy() if isinstance(v, lg.LogArray) else np.asarray(v)


def _same(a, b):
    if isinstance(a, lg.LogArray):
        return np.array_equal(a.mantissa, b.mantissa) and np.array_equal(a.exponent, b.exponent)
    return np.array_equal(np.asarray(a).view(np.uint64), np.asarray(b).view(np.uint64))


# -- the API ---------------------------------------------------------------------------------
def test_scales_per_layer_and_validation():
    net = _net([4, 6, 6, 6, 2], "tanh", 0.5)
    assert net.residual == [None, 0.5, 0.5, None]  # a number: every square layer
    assert net.is_residual and "residual=0.5" in repr(net)
    net = _net([4, 6, 6, 2], "tanh", [None, 0.0, None])
    assert net.residual == [None, 0.0, None]  # s = 0 is a residual layer (identity at initialisation)
    assert not _net([4, 6, 2], "tanh", None).is_residual
    with pytest.raises(ValueError, match=r"layer 0 \(4 -> 6\) cannot be residual"):
        _net([4, 6, 6, 2], "tanh", [1.0, None, None])
    with pytest.raises(ValueError, match="got 2 residual scales for 3 layers"):
        _net([4, 6, 6, 2], "tanh", [None, 1.0])
    with pytest.raises(ValueError, match="must be finite"):
        _net([4, 4], "tanh", math.inf)
    with pytest.raises(TypeError, match="real number"):
        _net([4, 4], "tanh", ["a"])
    with pytest.raises(TypeError, match="residual must be"):
        _net([4, 4], "tanh", True)
    with pytest.raises(ValueError, match="cannot be residual"):
        lg.Network.build([3, 5, 5], residual=[1.0, 1.0])


def test_copy_and_pickle_keep_the_scales():
    net = _net([4, 4, 4, 2], "relu", [0.25, 1.5, None])
    for other in (net.copy(), pickle.loads(pickle.dumps(net))):
        assert other.residual == net.residual
        x = np.ones((2, 4))
        assert _same(other.forward(x), net.forward(x))


# -- against torch autograd -----------------------------------------------------------------
def _torch_grads(torch, net, x, y):
    W = [torch.tensor(np.array(w), requires_grad=True) for w in net.weights]
    B = [torch.tensor(np.array(b), requires_grad=True) for b in net.biases]
    act = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid,
           "gelu": torch.nn.functional.gelu, "identity": lambda z: z}
    xt = torch.tensor(x, requires_grad=True)
    a = xt
    for l, s in enumerate(net.residual):
        h = act[net.activations[l]](a @ W[l].T + B[l])
        a = h if s is None else a + s * h
    loss = ((a - torch.tensor(y)) ** 2).mean()
    loss.backward()
    return loss.item(), a.detach().numpy(), [w.grad.numpy() for w in W], [b.grad.numpy() for b in B], xt.grad.numpy()


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("precision", ["float64", "extended"])
@pytest.mark.parametrize("checkpoint", [None, 2])
def test_matches_torch(act, precision, checkpoint):
    torch = pytest.importorskip("torch")
    net = _net([5, 7, 7, 7, 7, 3], act, [None, 0.8, -0.3, 1.5, None], seed=2)
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((6, 5)), rng.standard_normal((6, 3))
    g = net.backward(x, y, precision=precision, checkpoint=checkpoint)
    loss, out, dW, db, dx = _torch_grads(torch, net, x, y)
    tol = dict(rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(float(_f64(g.loss)), loss, rtol=1e-13)
    np.testing.assert_allclose(_f64(g.output), out, **tol)
    for l in range(net.depth):
        np.testing.assert_allclose(_f64(g.weights[l]), dW[l], **tol)
        np.testing.assert_allclose(_f64(g.biases[l]), db[l], **tol)
    np.testing.assert_allclose(_f64(g.input), dx, **tol)


def test_first_layer_residual_input_gradient():
    torch = pytest.importorskip("torch")
    net = _net([4, 4, 4], "tanh", 0.7)  # the input layer itself adds its input back
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    *_, dx = _torch_grads(torch, net, x, y)
    for precision in ("float64", "extended"):
        np.testing.assert_allclose(_f64(net.backward(x, y, precision=precision).input), dx, rtol=1e-12, atol=1e-15)


# -- beyond float64: a renormalised numpy backprop of the recurrence --------------------------
def _renormalised_reference(net, x, y_grad):
    """log10 |dW_l| of a residual relu net with zero biases, batch 1.

    relu is positively homogeneous and the biases are zero, so a_l = 2^k_l * A_l
    with A_l of norm ~1 follows A_{l+1} = A_l + s relu(W A_l) exactly up to
    rounding; the backward recurrence g_l = g_{l+1} + (s g_{l+1} [z > 0]) W is
    linear. Both are renormalised after every layer.
    """
    s = net.residual
    A, ka = [x[0].copy()], [0]
    masks = []
    for l in range(net.depth):
        z = net.weights[l] @ A[-1]
        masks.append(z > 0)
        a = A[-1] + s[l] * np.maximum(z, 0)
        e = int(np.frexp(np.abs(a).max())[1])
        A.append(np.ldexp(a, -e))
        ka.append(ka[-1] + e)
    g, kg = y_grad[0].copy(), 0
    out = [None] * net.depth
    for l in reversed(range(net.depth)):
        delta = s[l] * g * masks[l]
        with np.errstate(divide="ignore"):  # exact zeros (closed relu gates): -inf, as loggrad says
            out[l] = (kg + ka[l]) * math.log10(2) + np.log10(np.abs(np.outer(delta, A[l])))
        g = g + delta @ net.weights[l]
        e = int(np.frexp(np.abs(g).max())[1])
        g = np.ldexp(g, -e)
        kg += e
    return out


def test_deep_residual_relu_beyond_float64():
    depth, width = 2500, 8
    net = lg.Network.build([width] * (depth + 1), activation="relu", init="he_normal", seed=4, residual=1.0)
    x = np.random.default_rng(5).standard_normal((1, width))
    G = np.random.default_rng(6).standard_normal((1, width))
    g = net.backward(x, grad_output=G)
    ref = _renormalised_reference(net, x, G)
    top = float(g.weights[0].log10().max())
    assert top > 330  # beyond float64: where torch and numpy give inf
    assert np.isinf(net.backward(x, grad_output=G, precision="float64").weights[0]).any() or \
        not np.isfinite(net.forward(x, precision="float64")).all()
    for l in (0, 1, depth // 3, depth // 2, depth - 2, depth - 1):
        got = g.weights[l].log10()
        finite = np.isfinite(ref[l])
        assert np.array_equal(np.isfinite(got), finite)
        # relative error of a product of ~2,500 rounded layers: well below 1e-10
        assert np.max(np.abs(got[finite] - ref[l][finite])) < 1e-10 / math.log(10)


# -- mpmath on a short case ---------------------------------------------------------------------
def test_short_case_against_mpmath():
    net = _net([3, 3, 3, 3, 2], "sigmoid", [0.5, -1.25, 2.0, None], seed=7)
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((2, 3)), rng.standard_normal((2, 2))
    g = net.backward(x, y)
    mpmath.mp.prec = 200
    W = [mpmath.matrix(np.array(w).tolist()) for w in net.weights]
    B = [mpmath.matrix(np.array(b).tolist()) for b in net.biases]
    sig = lambda z: 1 / (1 + mpmath.exp(-z))  # noqa: E731
    n = y.size
    dW = [mpmath.zeros(*np.array(w).shape) for w in net.weights]
    for r in range(2):
        a = [mpmath.matrix(x[r].tolist())]
        zs = []
        for l, s in enumerate(net.residual):
            z = W[l] * a[-1] + B[l]
            zs.append(z)
            h = z.apply(sig)
            a.append(h if s is None else a[-1] + s * h)
        gl = (a[-1] - mpmath.matrix(y[r].tolist())) * (mpmath.mpf(2) / n)
        for l in reversed(range(net.depth)):
            s = net.residual[l]
            d = zs[l].apply(lambda z: sig(z) * (1 - sig(z)))
            delta = mpmath.matrix([gl[i] * d[i] * (1 if s is None else s) for i in range(len(d))])
            dW[l] += delta * a[l].T
            back = W[l].T * delta
            gl = back if s is None else gl + back
    for l in range(net.depth):
        ref = np.array(dW[l].tolist(), dtype=object)
        got = g.weights[l]
        for idx in np.ndindex(ref.shape):
            want = ref[idx]
            have = mpmath.mpf(float(got.mantissa[idx])) * mpmath.mpf(2) ** int(got.exponent[idx])
            assert abs(have - want) <= 1e-13 * abs(want) + 1e-300, (l, idx)


# -- the bitwise guarantees ----------------------------------------------------------------------
def _residual_problem(batch):
    net = lg.Network.build([8] + [16] * 40 + [3], activation=["tanh", "relu", "gelu", "sigmoid"] * 10 + ["identity"],
                           seed=9, residual=[None] + ([0.5, None, -1.0, 2.0] * 10)[:39] + [None])
    rng = np.random.default_rng(10)
    return net, rng.standard_normal((batch, 8)), rng.standard_normal((batch, 3))


@pytest.mark.parametrize("precision", ["float64", "extended"])
@pytest.mark.parametrize("batch", [1, 70])
def test_checkpointing_threads_and_layers_are_bitwise(precision, batch):
    net, x, y = _residual_problem(batch)
    ref = net.backward(x, y, precision=precision)
    threads = lg._core.num_threads()
    try:
        for n in (1, 2, 3):
            lg._core.set_num_threads(n)
            for cp in (None, 3, "auto"):
                g = net.backward(x, y, precision=precision, checkpoint=cp)
                assert _same(g.params, ref.params) and _same(g.input, ref.input)
    finally:
        lg._core.set_num_threads(threads)
    sel = net.backward(x, y, precision=precision, layers=[0, 7, 20, 40])
    for l in (0, 7, 20, 40):
        assert _same(sel.weights[l], ref.weights[l]) and _same(sel.biases[l], ref.biases[l])
    up = net.backward(x, grad_output=np.ones((batch, 3)), precision=precision)
    assert _same(up.params, net.backward(x, loss="sum", precision=precision).params)


@pytest.mark.parametrize("act", ["relu", "identity", "tanh"])
def test_extended_forward_is_the_float64_one_in_range(act):
    net = _net([6] * 30, act, 0.6, seed=11)
    x = np.random.default_rng(12).standard_normal((40, 6))
    assert np.array_equal(net.forward(x).to_numpy(), net.forward(x, precision="float64"))


# -- to_torch / from_torch ----------------------------------------------------------------------
def test_torch_round_trip():
    torch = pytest.importorskip("torch")
    from loggrad.torch import Residual

    net = _net([4, 6, 6, 6, 2], "gelu", [None, 0.5, -2.0, None], seed=13)
    model = net.to_torch()
    assert sum(isinstance(m, Residual) for m in model) == 2
    x = np.random.default_rng(14).standard_normal((5, 4))
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.from_numpy(x)).numpy(), net.forward(x, precision="float64"),
                                   rtol=1e-14, atol=1e-15)
    back = lg.Network.from_torch(model)
    assert back.residual == net.residual and back.activations == net.activations
    assert np.array_equal(back.params, net.params)

    class Wrapped(torch.nn.Module):  # traced with torch.fx: the Residual stays one layer
        def __init__(self):
            super().__init__()
            self.body = model

        def forward(self, x):
            return self.body(x)

    assert lg.Network.from_torch(Wrapped()).residual == net.residual


def test_save_and_load_keep_scales_and_bias_free_layers(tmp_path):
    net = _net([4, 6, 6, 6, 2], "tanh", [None, 0.5, -1.5, None], seed=15)
    net._bias_free = frozenset({0})
    net.biases[0] = np.zeros(6)
    path = tmp_path / "res.npz"
    net.save(path)
    back = lg.Network.load(path)
    assert back.residual == net.residual and back._bias_free == {0}
    assert np.array_equal(back.params.view(np.uint64), net.params.view(np.uint64))
    plain = _net([4, 6, 2], "tanh", None)
    plain.save(tmp_path / "plain")
    assert not lg.Network.load(tmp_path / "plain").is_residual
    np.savez(tmp_path / "bad.npz", widths=np.array([4, 4]), activations=np.array(["tanh"]), params=np.zeros(20),
             format=np.asarray("loggrad-network-1"), residual=np.array([np.inf]))
    with pytest.raises(ValueError, match="infinite scale"):
        lg.Network.load(tmp_path / "bad.npz")
