"""Interop: networks from and to PyTorch models and numpy arrays, and files.

``from_torch(model)`` reads a chain of ``Linear`` layers each followed by at
most one supported activation (or none: identity), or residual layers
(:class:`loggrad.torch.Residual`), in the order the model runs them;
``to_torch(net)`` builds the same chain back as a float64 ``nn.Sequential``.
``save``/``load`` write and read ``.npz`` files. These are the same as the
Network methods of the same names; the formats themselves are in
:mod:`loggrad._formats`. torch is imported only when a torch model is read or
built.
"""

from __future__ import annotations

import os
from typing import Any

from .network import Network

__all__ = ["from_torch", "to_torch", "from_arrays", "save", "load"]


def from_torch(model: Any) -> Network:
    """Same as :meth:`Network.from_torch`."""
    return Network.from_torch(model)


def to_torch(net: Network) -> Any:
    """Same as :meth:`Network.to_torch`."""
    return net.to_torch()


def from_arrays(weights: list[Any], biases: list[Any] | None = None, activations: str | list[str] = "identity",
                residual: Any = None) -> Network:
    """Same as ``Network(weights, biases, activations, residual)``."""
    return Network(weights, biases, activations, residual)


def save(net: Network, path: str | os.PathLike[str]) -> None:
    """Same as :meth:`Network.save`."""
    net.save(path)


def load(path: str | os.PathLike[str]) -> Network:
    """Same as :meth:`Network.load`."""
    return Network.load(path)
