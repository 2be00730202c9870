"""A loggrad network as a PyTorch module: loggrad's engine inside a torch graph.

::

    import torch, loggrad as lg
    from loggrad.torch import Module

    net = lg.Network.build([32] * 101, activation="tanh", seed=0)
    model = torch.nn.Sequential(torch.nn.Linear(10, 32).double(), Module(net), torch.nn.Linear(32, 1).double())
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    loss = model(x).square().mean()
    loss.backward()          # loggrad's engine computes the middle part's gradients
    opt.step()               # and updates the network's parameters in place

The module has one parameter, ``params``: a float64 ``torch.nn.Parameter``
that shares memory with the network's parameter block (``net.params``), so
optimizers, ``state_dict``, ``zero_grad`` and hooks work as for any module, and
every update is seen by the network (and the other way round) without a copy.
Forward and backward run in loggrad's C++ engine through a
``torch.autograd.Function``; gradients flow to the input and to ``params``.

``precision="extended"`` computes on the extended path: the ``.grad`` torch
sees is what float64 can hold of the exact gradient (0 below its range, inf
above), and the exact gradients of the last backward are kept on the module as
a :class:`loggrad.Gradients` (``module.last_gradients``).

torch is an optional dependency: ``pip install loggrad[torch]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ._torch_layers import Residual
from .network import PRECISIONS, Gradients, Network

__all__ = ["Module", "Residual"]


def _as_numpy(t: torch.Tensor, what: str) -> np.ndarray:
    """A float64 CPU tensor's values as a numpy array (no copy when already so)."""
    if t.device.type != "cpu":
        raise ValueError(f"{what} is on {t.device}: loggrad computes on the CPU (move it with .cpu())")
    if t.is_complex():
        raise TypeError(f"{what} is complex ({t.dtype}); loggrad takes real values")
    a = t.detach()
    if a.dtype != torch.float64:
        a = a.to(torch.float64)
    return np.ascontiguousarray(a.numpy())


class _Pass(torch.autograd.Function):
    """out = net(x) with the parameter block ``params``; backward by the engine.

    When a gradient will be wanted, the forward pass keeps what the backward
    pass needs (a tape: the stored activations, or checkpoints), so forward
    and backward together cost one engine pass. A second backward through the
    same graph (``retain_graph=True``) runs the whole pass again.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, params: torch.Tensor, module: Module) -> torch.Tensor:
        xa = _as_numpy(x, "the input")
        pa = _as_numpy(params, "params")
        net, precision = module.net, module.precision
        ctx.tape = None
        if any(ctx.needs_input_grad[:2]):
            out, ctx.tape = net._forward_tape(pa, xa, precision, module.checkpoint)
        else:
            out = net._forward(pa, xa, precision)
        ctx.module = module
        ctx.x_dtype = x.dtype
        ctx.save_for_backward(x, params)
        values = out if isinstance(out, np.ndarray) else out.to_numpy()
        return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float64))

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        x, params = ctx.saved_tensors
        module: Module = ctx.module
        need_x, need_p = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_x or need_p):
            return None, None, None
        net, precision = module.net, module.precision
        pa = _as_numpy(params, "params")
        g_out = _as_numpy(grad_out, "grad_output")
        layers: list[int] | None = None if need_p else []
        if ctx.tape is not None and ctx.tape.ready:
            g = net._backward_tape(pa, ctx.tape, g_out, precision, layers, bool(need_x))
        else:
            g = net._backward(pa, _as_numpy(x, "the input"), None, None, precision, module.checkpoint, layers,
                              bool(need_x), g_out, None)
        if precision == "extended":
            module.last_gradients = g
        dx = dp = None
        if need_x:
            assert g.input is not None
            v = g.input if isinstance(g.input, np.ndarray) else g.input.to_numpy()
            dx = torch.from_numpy(np.ascontiguousarray(v)).to(ctx.x_dtype)
        if need_p:
            v = g.params if isinstance(g.params, np.ndarray) else g.params.to_numpy()
            dp = torch.from_numpy(np.ascontiguousarray(v))
        return dx, dp, None


class Module(torch.nn.Module):
    """``net`` as a ``torch.nn.Module`` whose passes run in loggrad's engine.

    net: the :class:`loggrad.Network`; its parameter block becomes the
    module's ``params`` (shared memory: an optimizer step changes ``net``).
    precision: "float64" (default) or "extended".
    checkpoint: as for :meth:`loggrad.Network.backward` (None, an int or "auto").

    Input: a tensor of shape (batch, n_in) (float64; other real dtypes are
    converted, and the input's gradient is returned in its own dtype). Output:
    float64, shape (batch, n_out). CPU only.
    """

    def __init__(self, net: Network, precision: str = "float64", checkpoint: int | str | None = None) -> None:
        super().__init__()
        if not isinstance(net, Network):
            raise TypeError(f"net must be a loggrad.Network, got {type(net).__name__}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
        net._checkpoint_arg(checkpoint)  # refused here, not at the first backward
        self.net = net
        self.precision = precision
        self.checkpoint = checkpoint
        #: the exact gradients of the last backward (precision="extended" only)
        self.last_gradients: Gradients | None = None
        # Shares net's memory: torch.from_numpy keeps the block alive and writes through.
        self.params = torch.nn.Parameter(torch.from_numpy(net._params))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"the input must be a torch.Tensor, got {type(x).__name__}")
        single = x.dim() == 1
        if single:
            x = x.unsqueeze(0)
        if x.dim() != 2 or x.shape[1] != self.net.n_in:
            raise ValueError(f"the input has shape {tuple(x.shape)}; expected (batch, {self.net.n_in})")
        if self.params.shape != (self.net.param_count,):
            raise ValueError(f"params has shape {tuple(self.params.shape)}; the network needs "
                             f"({self.net.param_count},)")
        out: torch.Tensor = _Pass.apply(x, self.params, self)  # type: ignore[no-untyped-call]
        return out[0] if single else out

    def extra_repr(self) -> str:
        return f"{self.net!r}, precision={self.precision!r}"
