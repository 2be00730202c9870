"""Baseline engines for the benchmarks: the same dense chain's backward pass in
a plain numpy backprop (and PyTorch / JAX float64 when installed)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import loggrad as lg


def make_problem(depth: int, width: int, batch: int, activation: str, seed: int = 0):
    """A chain with variance-preserving N(0, 1/n) weights (gradients stay in float64 range)."""
    rng = np.random.default_rng(seed)
    gain = np.sqrt(2.0) if activation == "relu" else 1.0
    ws = [rng.standard_normal((width, width)) * (gain / np.sqrt(width)) for _ in range(depth)]
    bs = [np.zeros(width) for _ in range(depth)]
    x = rng.standard_normal((batch, width))
    y = np.zeros((batch, width))
    return ws, bs, x, y


def numpy_backward(ws, bs, x, y, activation: str):
    """Textbook float64 backprop, mse loss; returns (loss, [dW], [db])."""
    acts, ders = [x], []
    a = x
    for w, b in zip(ws, bs):
        z = a @ w.T + b
        if activation == "tanh":
            a = np.tanh(z)
            ders.append(1.0 - a * a)
        elif activation == "relu":
            a = np.maximum(z, 0.0)
            ders.append((z > 0).astype(np.float64))
        else:
            raise ValueError(activation)
        acts.append(a)
    n = a.size
    loss = float(np.sum((a - y) ** 2) / n)
    g = 2.0 * (a - y) / n
    dws, dbs = [], []
    for l in range(len(ws) - 1, -1, -1):
        d = g * ders[l]
        dws.append(d.T @ acts[l])
        dbs.append(d.sum(axis=0))
        g = d @ ws[l]
    return loss, dws[::-1], dbs[::-1]


def loggrad_backward(net: lg.Network, precision: str) -> Callable[[np.ndarray, np.ndarray], lg.Gradients]:
    return lambda x, y: net.backward(x, y, loss="mse", precision=precision)


def torch_backward(ws, bs, activation: str):
    """PyTorch float64 on the CPU; None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    layers = []
    for w, b in zip(ws, bs):
        lin = torch.nn.Linear(w.shape[1], w.shape[0]).double()
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        layers += [lin, torch.nn.Tanh() if activation == "tanh" else torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers)

    def run(x, y):
        model.zero_grad(set_to_none=True)
        out = model(torch.from_numpy(x))
        loss = torch.nn.functional.mse_loss(out, torch.from_numpy(y))
        loss.backward()
        return loss.item(), model[0].weight.grad.numpy()

    return run
