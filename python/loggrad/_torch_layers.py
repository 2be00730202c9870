"""torch modules that loggrad networks are built from (torch is imported here, at the top).

Kept apart from :mod:`loggrad.torch` (the Module adapter, which needs the
Network class) so that the file and torch formats of :mod:`loggrad._formats`
can build and recognise them without importing :mod:`loggrad.network`.
"""

from __future__ import annotations

import torch

__all__ = ["Residual"]


class Residual(torch.nn.Module):
    """A residual layer as torch layers: ``x + scale * activation(linear(x))``.

    What :func:`loggrad.interop.to_torch` builds for a residual layer of a
    loggrad network, and what :func:`loggrad.interop.from_torch` reads back.
    linear: a square ``nn.Linear``; activation: an activation module (or
    ``nn.Identity``); scale: the branch scale s (a float).
    """

    def __init__(self, linear: torch.nn.Linear, activation: torch.nn.Module, scale: float) -> None:
        super().__init__()
        if linear.in_features != linear.out_features:
            raise ValueError(f"a residual layer must be square, got Linear({linear.in_features}, "
                             f"{linear.out_features})")
        self.linear = linear
        self.activation = activation
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x + self.scale * self.activation(self.linear(x))
        return out

    def extra_repr(self) -> str:
        return f"scale={self.scale}"

