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


# -- the order the model runs its layers, not the order it registers them ------------------
class _Reordered(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.out = torch.nn.Linear(6, 2)  # registered first, called last
        self.hidden = torch.nn.Linear(5, 6)
        self.first = torch.nn.Linear(3, 5, bias=False)

    def forward(self, x):
        x = torch.tanh(self.first(x))
        x = torch.nn.functional.gelu(self.hidden(x))
        return self.out(x)


def _agree(model, net, n_in, seed=0):
    x = np.random.default_rng(seed).standard_normal((5, n_in))
    xt = torch.from_numpy(x).requires_grad_(True)
    model(xt).sum().backward()
    g = net.backward(x, loss="sum", precision="float64")
    with torch.no_grad():
        np.testing.assert_allclose(np.asarray(net.forward(x, precision="float64")), model(torch.from_numpy(x)).numpy(),
                                   rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(g.input, xt.grad.numpy(), rtol=1e-12, atol=1e-15)


def test_from_torch_follows_the_forward_order():
    torch.manual_seed(0)
    model = _Reordered().double()
    net = lg.Network.from_torch(model)
    assert net.widths == [3, 5, 6, 2]
    assert net.activations == ["tanh", "gelu", "identity"]
    _agree(model, net, 3)


def test_nested_sequentials_are_flattened():
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU()),
        torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(5, 5), torch.nn.Sigmoid()), torch.nn.Dropout(0.5)),
        torch.nn.Linear(5, 2),
    ).double().eval()
    net = lg.Network.from_torch(model)
    assert net.activations == ["relu", "sigmoid", "identity"]
    _agree(model, net, 4)


def test_from_torch_refuses_what_is_not_one_chain():
    class Residual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(3, 3)

        def forward(self, x):
            return x + torch.tanh(self.a(x))

    class Shared(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(3, 3)

        def forward(self, x):
            return self.a(torch.tanh(self.a(x)))

    class Branchy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(3, 3)

        def forward(self, x):
            if x.sum() > 0:
                return self.a(x)
            return x

    with pytest.raises(ValueError, match="not one chain"):
        lg.Network.from_torch(Residual())
    with pytest.raises(ValueError, match="called twice"):
        lg.Network.from_torch(Shared())
    with pytest.raises(ValueError, match="cannot trace"):
        lg.Network.from_torch(Branchy())
    with pytest.raises(ValueError, match="Dropout in training mode"):
        lg.Network.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1)))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        lg.Network.from_torch([torch.nn.Linear(2, 2)])


def test_functional_settings_are_checked():
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(3, 3)

        def forward(self, x):
            return torch.nn.functional.leaky_relu(self.a(x), 0.2)

    with pytest.raises(ValueError, match="negative_slope=0.2"):
        lg.Network.from_torch(M())


def test_bias_free_layers_round_trip_through_state_dict():
    torch.manual_seed(2)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4, bias=False), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    net = lg.Network.from_torch(model)
    back = net.to_torch()
    assert back[0].bias is None and back[2].bias is not None
    model.load_state_dict(back.state_dict())  # strict: the same keys
    # and through copy and pickle
    import pickle

    for other in (net.copy(), pickle.loads(pickle.dumps(net))):
        assert other.to_torch()[0].bias is None
