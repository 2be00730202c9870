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
