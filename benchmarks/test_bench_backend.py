"""loggrad as a backend: the adapters' overhead over the bare engine pass, and a torch
training step with loggrad's Module against the same model in plain torch.

Groups (compare within a group; ratios, not times, are the result):

    backend-1000x32x64-<precision>   bare ``net.backward(x, grad_output=G)`` / the torch
                                     Module's forward + backward / the JAX function's
                                     jit(grad) (recomputes the forward: pure_callback keeps no
                                     tape)
    torch-step-<shape>               one SGD step of Linear -> loggrad Module -> Linear, and of
                                     the same model as plain torch layers (to_torch)

    python -m pytest benchmarks/test_bench_backend.py --benchmark-enable --benchmark-columns=median

Every benchmark checks its result against the bare pass (or plain torch) before timing.
"""

from __future__ import annotations

import numpy as np
import pytest

import loggrad as lg

SHAPE = (1000, 32, 64)  # depth x width x batch: a narrow deep chain where call overhead shows


def _problem(depth, width, batch, seed=0):
    net = lg.Network.build([width] * (depth + 1), activation="tanh", seed=seed)
    rng = np.random.default_rng(seed)
    return net, rng.standard_normal((batch, width)), rng.standard_normal((batch, width))


def _f64(v):
    return v if isinstance(v, np.ndarray) else v.to_numpy()


@pytest.mark.parametrize("precision", ["float64", "extended"])
@pytest.mark.parametrize("adapter", ["bare", "torch", "jax"])
def test_adapter_overhead(benchmark, precision, adapter):
    depth, width, batch = SHAPE
    net, x, G = _problem(depth, width, batch)
    benchmark.group = f"backend-{depth}x{width}x{batch}-{precision}"
    benchmark.extra_info.update(adapter=adapter, precision=precision)
    ref = net.backward(x, grad_output=G, precision=precision)
    if adapter == "bare":
        def run():
            g = net.backward(x, grad_output=G, precision=precision)
            return _f64(g.params), _f64(g.input)
    elif adapter == "torch":
        torch = pytest.importorskip("torch")
        from loggrad.torch import Module

        m = Module(net, precision=precision)
        xt = torch.tensor(x, requires_grad=True)
        Gt = torch.from_numpy(G)

        def run():
            m.params.grad = None
            xt.grad = None
            m(xt).backward(Gt)
            return m.params.grad.numpy(), xt.grad.numpy()
    else:
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        from loggrad.jax import function

        f = function(net, precision=precision)
        Gj = jnp.asarray(G)
        vjp = jax.jit(jax.grad(lambda p, x: jnp.sum(f(p, x) * Gj), argnums=(0, 1)))
        p, xj = jnp.asarray(net.params), jnp.asarray(x)

        def run():
            dp, dx = vjp(p, xj)
            return np.asarray(dp), np.asarray(dx)

    dp, dx = run()
    np.testing.assert_array_equal(dp, _f64(ref.params))
    np.testing.assert_array_equal(dx, _f64(ref.input))
    benchmark(run)


@pytest.mark.parametrize("model", ["loggrad", "torch"])
@pytest.mark.parametrize("shape", [(100, 32, 64), (1000, 16, 32)], ids=lambda s: "x".join(map(str, s)))
def test_torch_training_step(benchmark, model, shape):
    torch = pytest.importorskip("torch")
    from loggrad.torch import Module

    depth, width, batch = shape
    net, _, _ = _problem(depth, width, batch)
    torch.manual_seed(0)
    pre, post = torch.nn.Linear(8, width).double(), torch.nn.Linear(width, 1).double()
    middle = Module(net) if model == "loggrad" else net.to_torch()
    seq = torch.nn.Sequential(pre, middle, post)
    opt = torch.optim.SGD(seq.parameters(), lr=1e-3)
    x = torch.randn(batch, 8, dtype=torch.float64)
    y = torch.randn(batch, 1, dtype=torch.float64)
    benchmark.group = f"torch-step-{depth}x{width}x{batch}"
    benchmark.extra_info.update(model=model)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(seq(x), y)
        loss.backward()
        opt.step()
        return loss

    # correctness: the first step's loss and gradients match the plain torch model's
    twin = torch.nn.Sequential(pre, net.to_torch(), post)
    ref_loss = torch.nn.functional.mse_loss(twin(x), y)
    ref_loss.backward()
    ref_pre = pre.weight.grad.clone()
    pre.weight.grad = None
    loss = torch.nn.functional.mse_loss(seq(x), y)
    loss.backward()
    assert torch.allclose(loss, ref_loss, rtol=1e-12)
    assert torch.allclose(pre.weight.grad, ref_pre, rtol=1e-9, atol=1e-15)
    benchmark(step)
