"""Agreement with PyTorch float64 where values are in float64 range (skipped without torch)."""

import zlib

import numpy as np
import pytest

import loggrad as lg

torch = pytest.importorskip("torch")

TORCH_ACT = {
    "identity": lambda: torch.nn.Identity(),
    "sigmoid": lambda: torch.nn.Sigmoid(),
    "tanh": lambda: torch.nn.Tanh(),
    "relu": lambda: torch.nn.ReLU(),
    "leaky_relu": lambda: torch.nn.LeakyReLU(0.01),
    "elu": lambda: torch.nn.ELU(1.0),
    "selu": lambda: torch.nn.SELU(),
    "softplus": lambda: torch.nn.Softplus(),
    "gelu": lambda: torch.nn.GELU(approximate="none"),
    "silu": lambda: torch.nn.SiLU(),
}


def torch_grads(ws, bs, acts, x, y, loss):
    layers = []
    for w, b, a in zip(ws, bs, acts):
        lin = torch.nn.Linear(w.shape[1], w.shape[0]).double()
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        layers += [lin, TORCH_ACT[a]()]
    model = torch.nn.Sequential(*layers)
    xt = torch.from_numpy(x).requires_grad_(True)
    out = model(xt)
    if loss == "mse":
        L = torch.nn.functional.mse_loss(out, torch.from_numpy(y))
    elif loss == "sum":
        L = out.sum()
    elif loss == "bce":
        L = torch.nn.functional.binary_cross_entropy_with_logits(out, torch.from_numpy(y))
    else:
        L = torch.nn.functional.cross_entropy(out, torch.from_numpy(y))
    L.backward()
    lins = [m for m in model if isinstance(m, torch.nn.Linear)]
    return (L.item(), out.detach().numpy(), [m.weight.grad.numpy() for m in lins],
            [m.bias.grad.numpy() for m in lins], xt.grad.numpy())


@pytest.mark.parametrize("loss", lg.LOSSES)
@pytest.mark.parametrize("act", lg.ACTIVATIONS)
def test_matches_torch_float64(act, loss):
    rng = np.random.default_rng(zlib.crc32(f"{act}-{loss}".encode()))  # stable across PYTHONHASHSEED
    widths = [5, 7, 6, 4]
    ws = [rng.standard_normal((widths[i + 1], widths[i])) * 0.8 for i in range(3)]
    bs = [rng.standard_normal(widths[i + 1]) * 0.3 for i in range(3)]
    x = rng.standard_normal((6, 5))
    y = rng.integers(0, 4, 6) if loss == "cross_entropy" else rng.random((6, 4))
    L, out, gw, gb, gx = torch_grads(ws, bs, [act] * 3, x, y, loss)
    net = lg.Network(ws, bs, act)
    for precision in lg.PRECISIONS:
        g = net.backward(x, y, loss=loss, precision=precision)
        np.testing.assert_allclose(float(np.asarray(g.loss)), L, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(g.output), out, rtol=1e-12, atol=1e-14)
        for l in range(3):
            np.testing.assert_allclose(np.asarray(g.weights[l]), gw[l], rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(np.asarray(g.biases[l]), gb[l], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(np.asarray(g.input), gx, rtol=1e-10, atol=1e-14)


def test_torch_underflows_where_loggrad_does_not():
    rng = np.random.default_rng(5)
    ws = [rng.standard_normal((4, 4)) * 4 for _ in range(1500)]  # saturating sigmoids
    bs = [np.zeros(4) for _ in ws]
    x = rng.standard_normal((2, 4))
    y = np.zeros((2, 4))
    _, _, gw, _, _ = torch_grads(ws, bs, ["sigmoid"] * 1500, x, y, "mse")
    g = lg.Network(ws, bs, "sigmoid").backward(x, y)
    assert np.all(gw[0] == 0.0)
    assert np.all(g.weights[0].log10() < -308) and np.all(g.weights[0].sign() != 0)
