"""A loggrad network as a JAX function with a custom VJP: loggrad's engine inside JAX code.

::

    import jax, jax.numpy as jnp, loggrad as lg
    from loggrad.jax import function

    jax.config.update("jax_enable_x64", True)      # loggrad computes in float64
    net = lg.Network.build([8] * 51, activation="tanh", seed=0)
    f = function(net)                               # f(params, x) -> output
    params = jnp.asarray(net.params)
    loss = lambda p, x: jnp.mean(f(p, x) ** 2)
    g = jax.jit(jax.grad(loss))(params, x)          # dL/dparams by the engine

``f(params, x)`` takes the network's parameter block (shape
``(net.param_count,)``, the layout of ``net.params``) and a batch ``x`` of
shape ``(batch, n_in)``, and returns the output ``(batch, n_out)``. Its
vector-Jacobian product is one engine backward pass with the incoming
cotangent as ``grad_output``, giving the cotangents of both ``params`` and
``x``. The engine runs on the host through ``jax.pure_callback``, so ``jax.jit``,
``jax.grad`` and ``jax.value_and_grad`` of code around it work; ``vmap`` runs
the callback once per mapped element, and forward-mode (``jax.jvp``) is not
defined.

``precision="extended"`` computes on the extended path and hands JAX what
float64 can hold of the result (0 below its range, inf above).

The values are float64: with ``jax_enable_x64`` off, JAX keeps float32 arrays,
and the results are rounded to float32 (a warning says so once).
jax is an optional dependency: ``pip install jax``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .network import PRECISIONS, Network

__all__ = ["function"]

_warned_x64 = False


def _host(a: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64))


def function(net: Network, precision: str = "float64",
             checkpoint: int | str | None = None) -> Callable[[Any, Any], Any]:
    """``f(params, x)``: ``net``'s output for the parameter block ``params``, differentiable by ``jax.grad``.

    net: the architecture (widths and activations); its own parameters are
    not used (pass ``net.params`` for them). precision: "float64" or
    "extended". checkpoint: as for :meth:`loggrad.Network.backward`.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a loggrad.Network, got {type(net).__name__}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    net._checkpoint_arg(checkpoint)
    n_in, n_out, count = net.n_in, net.n_out, net.param_count

    def check(params: Any, x: Any) -> None:
        global _warned_x64
        if jnp.shape(params) != (count,):
            raise ValueError(f"params has shape {jnp.shape(params)}; the network needs ({count},) (net.params)")
        if jnp.ndim(x) != 2 or jnp.shape(x)[1] != n_in:
            raise ValueError(f"x has shape {jnp.shape(x)}; expected (batch, {n_in})")
        if not jax.config.read("jax_enable_x64") and not _warned_x64:  # type: ignore[no-untyped-call]
            _warned_x64 = True
            warnings.warn("jax_enable_x64 is off: loggrad's float64 results are rounded to float32 "
                          "(jax.config.update('jax_enable_x64', True) keeps them)", RuntimeWarning, stacklevel=3)

    def host_forward(params: Any, x: Any) -> np.ndarray:
        out = net._forward(_host(params), _host(x), precision)
        return _host(out if isinstance(out, np.ndarray) else out.to_numpy())

    def host_backward(params: Any, x: Any, g: Any) -> tuple[np.ndarray, np.ndarray]:
        r = net._backward(_host(params), _host(x), None, None, precision, checkpoint, None, True, _host(g), None)
        dp, dx = r.params, r.input
        assert dx is not None
        return (_host(dp if isinstance(dp, np.ndarray) else dp.to_numpy()),
                _host(dx if isinstance(dx, np.ndarray) else dx.to_numpy()))

    def out_type(params: Any, x: Any) -> jax.ShapeDtypeStruct:
        dtype = jnp.result_type(params, x)
        return jax.ShapeDtypeStruct((jnp.shape(x)[0], n_out), dtype)  # type: ignore[no-untyped-call]

    @jax.custom_vjp
    def f(params: Any, x: Any) -> Any:
        check(params, x)
        return jax.pure_callback(host_forward, out_type(params, x), params, x)

    def f_fwd(params: Any, x: Any) -> tuple[Any, tuple[Any, Any]]:
        return f(params, x), (params, x)

    def f_bwd(res: tuple[Any, Any], g: Any) -> tuple[Any, Any]:
        params, x = res
        shapes = (jax.ShapeDtypeStruct(jnp.shape(params), jnp.result_type(params)),  # type: ignore[no-untyped-call]
                  jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)))  # type: ignore[no-untyped-call]
        dp, dx = jax.pure_callback(host_backward, shapes, params, x, g)
        return dp, dx

    f.defvjp(f_fwd, f_bwd)
    return f
