"""Networks from and to PyTorch, and saved files."""

import numpy as np
import pytest

import loggrad as lg


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    net = lg.Network([rng.standard_normal((3, 2)), rng.standard_normal((1, 3))], [np.ones(3), np.zeros(1)], ["gelu", "sigmoid"])
    p = tmp_path / "net.npz"
    net.save(p)
    back = lg.Network.load(p)
    assert back.widths == net.widths and back.activations == net.activations
    np.testing.assert_array_equal(back.params, net.params)
    with pytest.raises(ValueError, match="not a loggrad network file"):
        np.savez(tmp_path / "bad.npz", a=np.zeros(2))
        lg.Network.load(tmp_path / "bad.npz")


torch = pytest.importorskip("torch")


def test_from_torch_and_back_agree_with_torch():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 5, bias=False), torch.nn.GELU(),
        torch.nn.Linear(5, 5), torch.nn.Linear(5, 3), torch.nn.LeakyReLU(0.01),
    ).double()
    net = lg.Network.from_torch(model)
    assert net.activations == ["tanh", "gelu", "identity", "leaky_relu"]
    x = np.random.default_rng(1).standard_normal((7, 4))
    y = np.random.default_rng(2).standard_normal((7, 3))
    xt = torch.from_numpy(x).requires_grad_(True)
    loss = torch.nn.functional.mse_loss(model(xt), torch.from_numpy(y))
    loss.backward()
    g = net.backward(x, y)
    np.testing.assert_allclose(float(np.asarray(g.loss)), loss.item(), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(g.weights[1]), model[2].weight.grad.numpy(), rtol=1e-11, atol=1e-15)
    np.testing.assert_allclose(np.asarray(g.input), xt.grad.numpy(), rtol=1e-11, atol=1e-15)
    back = net.to_torch()
    np.testing.assert_allclose(back(torch.from_numpy(x)).detach().numpy(), np.asarray(net.forward(x)), rtol=1e-13)


def test_from_torch_refuses_what_it_cannot_represent():
    with pytest.raises(ValueError, match="LeakyReLU\\(negative_slope=0.2\\) is not supported"):
        lg.Network.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LeakyReLU(0.2)))
    with pytest.raises(ValueError, match="Conv1d.*not supported"):
        lg.Network.from_torch(torch.nn.Sequential(torch.nn.Conv1d(1, 1, 1)))
    with pytest.raises(ValueError, match="must directly follow a Linear"):
        lg.Network.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Tanh(), torch.nn.ReLU()))
    with pytest.raises(ValueError, match="approximate='tanh'"):
        lg.Network.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.GELU(approximate="tanh")))
