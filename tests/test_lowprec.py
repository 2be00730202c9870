"""The simulated low-precision backward pass against torch autograd in the same dtype."""

from __future__ import annotations

import math

import numpy as np
import pytest

import loggrad as lg
from loggrad.lowprec import low_precision_pass
from loggrad.report import report


def gaussian_net(depth, width, act, scale=1.0, bias=0.0, seed=0):
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((width, width)) * scale / math.sqrt(width) for _ in range(depth)]
    bs = [rng.standard_normal(width) * bias for _ in range(depth)]
    return lg.Network(ws, bs, act)


def torch_grads(net, x, y, dtype):
    torch = pytest.importorskip("torch")
    acts = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}
    Ws = [torch.tensor(np.asarray(w), dtype=dtype, requires_grad=True) for w in net.weights]
    bs = [torch.tensor(np.asarray(b), dtype=dtype, requires_grad=True) for b in net.biases]
    a = torch.tensor(x, dtype=dtype)
    for W, b, act in zip(Ws, bs, net.activations):
        a = acts[act](a @ W.T + b)
    loss = ((a - torch.tensor(y, dtype=dtype)) ** 2).mean()
    loss.backward()
    return [W.grad.double().numpy() for W in Ws]


def summarise(grads):
    tiny = float(np.finfo(np.float32).tiny)
    zero = np.array([np.mean(g == 0) for g in grads])
    sub = np.array([np.mean((g != 0) & (np.abs(g) < tiny)) for g in grads])
    return zero, sub


@pytest.mark.parametrize("fmt", ["float32", "bfloat16"])
def test_vanishing_sigmoid_chain_against_torch(fmt):
    torch = pytest.importorskip("torch")
    if fmt == "bfloat16":
        pytest.importorskip("ml_dtypes")
    dtype = torch.float32 if fmt == "float32" else torch.bfloat16
    net = gaussian_net(100, 16, "sigmoid", scale=1.0, bias=0.0, seed=1)
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((4, 16)), rng.standard_normal((4, 16))
    sim = low_precision_pass(net, x, y, "mse", fmt)
    zero_t, sub_t = summarise(torch_grads(net, x, y, dtype))
    # the exact gradient is nonzero everywhere; the format flushes the input side to zero
    exact = net.report(x, y)
    assert np.all(np.isfinite(exact.grad_norm_w))
    assert sim["first_zero_layer"] is not None and zero_t[0] == 1.0
    zl_t = int(np.flatnonzero(zero_t == 1.0)[-1])
    assert abs(sim["first_zero_layer"] - zl_t) <= 1
    assert np.mean(np.abs(sim["zero_frac"] - zero_t)) < 0.03
    assert np.mean(np.abs(sim["subnormal_frac"] - sub_t)) < 0.03
    # where both are in range, the norms agree to the format's precision
    g_t = torch_grads(net, x, y, dtype)
    ok = np.array([np.all(g != 0) for g in g_t]) & np.isfinite(sim["log10_norm"])
    ok &= np.array([np.all(np.abs(g) > 1e-30) for g in g_t])
    tol = 1e-4 if fmt == "float32" else 0.05
    norms_t = np.array([math.log10(np.linalg.norm(g)) if np.any(g) else -math.inf for g in g_t])
    assert ok.sum() > 5
    np.testing.assert_allclose(sim["log10_norm"][ok], norms_t[ok], atol=tol)
    # and the exact pass says float32 would flush: its range columns point the same way
    assert exact.f32_fail_layer is not None


def test_float32_overflow_of_an_exploding_relu_net():
    net = lg.Network.build([32] * 121, activation="relu", init="he_normal", seed=0, gain=2.0)
    x = np.random.default_rng(0).standard_normal((2, 32))
    sim = low_precision_pass(net, x, np.zeros((2, 32)), "mse", "float32")
    assert sim["forward_overflow"] or sim["first_nonfinite_layer"] is not None
    rep = report(net, x, low_precision=True)
    assert rep.low_precision["float32"]["first_nonfinite_layer"] == sim["first_nonfinite_layer"]
    assert "a real float32 backward pass" in rep.table(rich=False)


# Every loss and residual layers: the float32 simulation against PyTorch autograd
# in float32 (the same operations, so the same zeros), and against the engine's
# exact gradient where float32 holds it (norms to float32's precision).


def torch_float32_grads(net, x, y, loss):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    acts = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}
    Ws = [torch.tensor(np.asarray(w), dtype=torch.float32, requires_grad=True) for w in net.weights]
    bs = [torch.tensor(np.asarray(b), dtype=torch.float32) for b in net.biases]
    a = torch.tensor(x, dtype=torch.float32)
    for W, b, act, s in zip(Ws, bs, net.activations, net.residual):
        f = acts[act](a @ W.T + b)
        a = f if s is None else a + f * torch.tensor(s, dtype=torch.float32)
    if loss == "mse":
        L = F.mse_loss(a, torch.tensor(y, dtype=torch.float32))
    elif loss == "bce":
        L = F.binary_cross_entropy_with_logits(a, torch.tensor(y, dtype=torch.float32))
    elif loss == "cross_entropy":
        L = F.cross_entropy(a, torch.tensor(y, dtype=torch.int64))
    else:
        L = a.sum()
    L.backward()
    return [W.grad.double().numpy() for W in Ws]


def targets(loss, rng, batch, width):
    if loss == "cross_entropy":
        return rng.integers(0, width, batch)
    if loss == "bce":
        return rng.uniform(0.0, 1.0, (batch, width))
    if loss == "mse":
        return rng.standard_normal((batch, width))
    return None


@pytest.mark.parametrize("loss", ["mse", "sum", "bce", "cross_entropy"])
@pytest.mark.parametrize("residual", [None, 0.5])
def test_every_loss_and_residual_layers_against_the_exact_gradient(loss, residual):
    net = lg.Network.build([12] * 7, activation="tanh", residual=residual, seed=3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 12))
    y = targets(loss, rng, 5, 12)
    sim = low_precision_pass(net, x, y, loss, "float32")
    g = net.backward(x, y, loss=loss)
    exact = np.array([float(g.weights[l].norm().log10()) for l in range(net.depth)])
    # float32 rounding of a few dozen operations a layer: relative 1e-5 at most here
    np.testing.assert_allclose(sim["log10_norm"], exact, atol=1e-5)
    assert sim["first_zero_layer"] is None and sim["first_nonfinite_layer"] is None


@pytest.mark.parametrize("loss", ["mse", "bce", "cross_entropy"])
def test_a_deep_residual_net_whose_branches_are_subnormal_in_float32(loss):
    # branches scaled by 1e-37: every dW lies near float32's smallest normal,
    # most of it subnormal, layer after layer, because the skips carry the
    # gradient down; a pass without the skips flushes it to zero within two
    # layers. Zeros, subnormals and norms as PyTorch's float32 autograd has them.
    net = lg.Network.build([10] * 41, activation="sigmoid", residual=1e-37, seed=5)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 10))
    y = targets(loss, rng, 3, 10)
    sim = low_precision_pass(net, x, y, loss, "float32")
    grads = torch_float32_grads(net, x, y, loss)
    tiny = float(np.finfo(np.float32).tiny)
    zero_t = np.array([np.mean(gw == 0) for gw in grads])
    sub_t = np.array([np.mean((gw != 0) & (np.abs(gw) < tiny)) for gw in grads])
    assert np.mean(sub_t) > 0.5 and sim["first_zero_layer"] is None  # the case described above
    np.testing.assert_allclose(sim["zero_frac"], zero_t, atol=0.02)
    np.testing.assert_allclose(sim["subnormal_frac"], sub_t, atol=0.02)
    norms_t = np.array([math.log10(np.linalg.norm(gw)) for gw in grads])
    np.testing.assert_allclose(sim["log10_norm"], norms_t, atol=1e-3)


def test_targets_are_checked_as_the_engine_checks_them():
    net = lg.Network.build([6] * 4, activation="tanh", seed=0)
    x = np.ones((2, 6))
    with pytest.raises(ValueError, match="needs targets"):
        low_precision_pass(net, x, None, "bce")
    with pytest.raises(ValueError, match="out of range"):
        low_precision_pass(net, x, np.array([0, 6]), "cross_entropy")
    with pytest.raises(ValueError, match="unknown loss"):
        low_precision_pass(net, x, None, "hinge")
    with pytest.raises(ValueError, match="x has shape"):
        low_precision_pass(net, np.ones((2, 5)), None, "sum")
    # one sample as a vector, its label as a number
    one = low_precision_pass(net, x[0], 3, "cross_entropy")
    two = low_precision_pass(net, x[:1], np.array([3]), "cross_entropy")
    np.testing.assert_array_equal(one["log10_norm"], two["log10_norm"])


def test_report_simulates_every_loss():
    net = lg.Network.build([8] * 5, activation="tanh", seed=1)
    rep = report(net, np.ones(8), 2, loss="cross_entropy", low_precision=True)
    assert set(rep.low_precision) >= {"float64", "float32"}
    assert not any("low_precision" in n for n in rep.notes)
