"""loggrad inside PyTorch and JAX graphs: loggrad.torch.Module and loggrad.jax.function.

References: the same graph built from to_torch() (torch float64 autograd),
torch.autograd.gradcheck (finite differences), and jax.grad of the same
network written in jax.numpy.
"""

from __future__ import annotations

import numpy as np
import pytest

import loggrad as lg


def _net(widths, act, seed=0):
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((o, i)) / np.sqrt(i) for i, o in zip(widths[:-1], widths[1:])]
    bs = [0.1 * rng.standard_normal(o) for o in widths[1:]]
    return lg.Network(ws, bs, act)


# ----------------------------------------------------------------------------- torch --
@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def test_module_shares_the_parameter_block(torch):
    from loggrad.torch import Module

    net = _net([4, 5, 3], "tanh")
    m = Module(net)
    assert [n for n, _ in m.named_parameters()] == ["params"]
    assert m.params.dtype == torch.float64 and m.params.shape == (net.param_count,)
    with torch.no_grad():
        m.params[0] = 1.25
    assert net.params[0] == 1.25
    net.params[1] = -3.5
    assert float(m.params.detach()[1]) == -3.5
    assert "params" in m.state_dict()


@pytest.mark.parametrize("precision", ["float64", "extended"])
def test_gradcheck(torch, precision):
    from loggrad.torch import Module

    net = _net([4, 5, 5, 3], "tanh", seed=3)
    m = Module(net, precision=precision)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, p: _apply(m, x, p), (x, m.params))


def _apply(module, x, params):
    from loggrad.torch import _Pass

    return _Pass.apply(x, params, module)


@pytest.mark.parametrize("act", ["tanh", "relu", "gelu", "sigmoid"])
@pytest.mark.parametrize("checkpoint", [None, 2])
def test_inside_a_larger_graph_matches_to_torch(torch, act, checkpoint):
    from loggrad.torch import Module

    torch.manual_seed(0)
    net = _net([6, 8, 8, 8, 4], act, seed=1)
    pre, post = torch.nn.Linear(5, 6).double(), torch.nn.Linear(4, 2).double()
    ours = torch.nn.Sequential(pre, torch.nn.Tanh(), Module(net, checkpoint=checkpoint), post)
    ref_mid = net.to_torch()
    x = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    y = torch.randn(7, 2, dtype=torch.float64)

    loss = torch.nn.functional.mse_loss(ours(x), y)
    loss.backward()
    got = {n: p.grad.clone() for n, p in ours.named_parameters()}
    got_x = x.grad.clone()
    for p in ours.parameters():
        p.grad = None
    x.grad = None

    ref = torch.nn.Sequential(pre, torch.nn.Tanh(), ref_mid, post)
    ref_loss = torch.nn.functional.mse_loss(ref(x), y)
    ref_loss.backward()
    assert torch.allclose(loss, ref_loss, rtol=1e-13, atol=0)
    mid = torch.cat([p.grad.ravel() for p in ref_mid.parameters()])
    tol = dict(rtol=1e-11, atol=1e-14)
    assert torch.allclose(got["2.params"], mid, **tol)
    for name in ("0.weight", "0.bias", "3.weight", "3.bias"):
        assert torch.allclose(got[name], dict(ref.named_parameters())[name].grad, **tol)
    assert torch.allclose(got_x, x.grad, **tol)


def test_training_loop_updates_the_network(torch):
    from loggrad.torch import Module

    net = _net([3, 6, 6, 1], "tanh")
    twin = net.to_torch()
    model = Module(net)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    opt_ref = torch.optim.SGD(twin.parameters(), lr=0.05)
    x = torch.randn(16, 3, dtype=torch.float64)
    y = torch.sin(x.sum(1, keepdim=True))
    for _ in range(5):
        for o, mod in ((opt, model), (opt_ref, twin)):
            o.zero_grad()
            torch.nn.functional.mse_loss(mod(x), y).backward()
            o.step()
    flat = torch.cat([p.detach().ravel() for p in twin.parameters()]).numpy()
    np.testing.assert_allclose(net.params, flat, rtol=1e-12, atol=1e-14)
    # the state_dict round trip restores the network
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.params.zero_()
    assert np.all(net.params == 0)
    model.load_state_dict(saved)
    np.testing.assert_array_equal(net.params, saved["params"].numpy())


def test_extended_keeps_exact_gradients(torch):
    from loggrad.torch import Module

    net = lg.Network.build([4] * 1501, activation="sigmoid", init="normal", seed=0)
    m = Module(net, precision="extended")
    x = torch.ones(2, 4, dtype=torch.float64)
    m(x).sum().backward()
    g = m.last_gradients
    assert isinstance(g, lg.Gradients) and g.loss is None
    first = g.weights[0]
    assert float(first.log10().max()) < -330  # exact, beyond float64
    n0 = net.widths[1] * net.widths[0]
    assert np.all(m.params.grad[:n0].numpy() == 0)  # what float64 can hold of it
    ref = net.backward(np.ones((2, 4)), loss="sum")
    assert np.array_equal(g.params.mantissa, ref.params.mantissa)
    assert np.array_equal(g.params.exponent, ref.params.exponent)


def test_input_gradient_only_and_dtypes(torch):
    from loggrad.torch import Module

    net = _net([3, 4, 2], "tanh")
    m = Module(net)
    m.params.requires_grad_(False)
    x = torch.randn(5, 3, dtype=torch.float32, requires_grad=True)
    out = m(x)
    assert out.dtype == torch.float64
    out.sum().backward()
    assert x.grad.dtype == torch.float32
    ref = net.backward(x.detach().double().numpy(), loss="sum", precision="float64")
    np.testing.assert_allclose(x.grad.numpy(), ref.input, rtol=1e-6)


def test_module_refuses_bad_input(torch):
    from loggrad.torch import Module

    net = _net([3, 4, 2], "tanh")
    with pytest.raises(TypeError, match="loggrad.Network"):
        Module("net")
    with pytest.raises(ValueError, match="unknown precision"):
        Module(net, precision="float32")
    m = Module(net)
    with pytest.raises(ValueError, match=r"expected \(batch, 3\)"):
        m(torch.ones(2, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        m(np.ones((2, 3)))


# ------------------------------------------------------------------------------- jax --
@pytest.fixture
def jax():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    return jax


def _jnp_forward(jnp, net, p, x):
    a, off = x, 0
    acts = {"tanh": jnp.tanh, "relu": lambda z: jnp.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + jnp.exp(-z))}
    for l, act in enumerate(net.activations):
        no, ni = net.widths[l + 1], net.widths[l]
        W = p[off:off + no * ni].reshape(no, ni)
        off += no * ni
        b = p[off:off + no]
        off += no
        a = acts[act](a @ W.T + b)
    return a


@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("precision", ["float64", "extended"])
def test_jax_grad_matches_jax_numpy(jax, act, precision):
    import jax.numpy as jnp

    from loggrad.jax import function

    net = _net([5, 6, 6, 3], act, seed=2)
    f = function(net, precision=precision)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 5)))
    p = jnp.asarray(net.params)

    def loss_of(fn):
        return lambda p, x: jnp.sum(jnp.sin(fn(p, x)) * jnp.arange(3.0))

    got = jax.jit(jax.grad(loss_of(f), argnums=(0, 1)))(p, x)
    ref = jax.grad(loss_of(lambda p, x: _jnp_forward(jnp, net, p, x)), argnums=(0, 1))(p, x)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-11, atol=1e-14)
    val, _ = jax.value_and_grad(loss_of(f))(p, x)
    assert abs(float(val) - float(loss_of(lambda p, x: _jnp_forward(jnp, net, p, x))(p, x))) < 1e-12


def test_jax_uses_the_params_it_is_given(jax):
    import jax.numpy as jnp

    from loggrad.jax import function

    net = _net([3, 4, 2], "tanh")
    f = function(net)
    p = jnp.asarray(net.params) * 0.5
    x = jnp.ones((2, 3))
    np.testing.assert_allclose(np.asarray(f(p, x)), np.asarray(_jnp_forward(jnp, net, p, x)), rtol=1e-13)
    with pytest.raises(ValueError, match="params has shape"):
        f(p[:-1], x)
    with pytest.raises(ValueError, match="x has shape"):
        f(p, jnp.ones((2, 4)))
