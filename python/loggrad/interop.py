"""Interop: networks from and to PyTorch ``nn.Sequential`` and numpy arrays, and files.

``from_torch(model)`` reads a ``Sequential`` of ``Linear`` layers each
followed by at most one supported activation module (or none: identity);
``to_torch(net)`` builds the same ``Sequential`` back in float64. torch is
imported only inside these functions.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .network import Network

__all__ = ["from_torch", "to_torch", "from_arrays", "save", "load"]

# torch module class name -> (loggrad activation, check of its settings)
_TORCH_ACTS: dict[str, str] = {
    "Identity": "identity",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "ReLU": "relu",
    "LeakyReLU": "leaky_relu",
    "ELU": "elu",
    "SELU": "selu",
    "Softplus": "softplus",
    "GELU": "gelu",
    "SiLU": "silu",
}


def _check_settings(mod: Any, name: str) -> None:
    """Refuse activation modules whose parameters differ from loggrad's definitions."""
    cls = type(mod).__name__
    if cls == "LeakyReLU" and abs(float(mod.negative_slope) - 0.01) > 0:
        raise ValueError(f"{name}: LeakyReLU(negative_slope={mod.negative_slope}) is not supported (loggrad uses 0.01)")
    if cls == "ELU" and float(mod.alpha) != 1.0:
        raise ValueError(f"{name}: ELU(alpha={mod.alpha}) is not supported (loggrad uses alpha = 1)")
    if cls == "GELU" and getattr(mod, "approximate", "none") != "none":
        raise ValueError(f"{name}: GELU(approximate={mod.approximate!r}) is not supported (loggrad uses the erf form)")
    if cls == "Softplus" and float(getattr(mod, "beta", 1.0)) != 1.0:
        raise ValueError(f"{name}: Softplus(beta={mod.beta}) is not supported (loggrad uses beta = 1)")


def from_torch(model: Any) -> Network:
    """A loggrad Network with the parameters of a torch ``nn.Sequential`` (copied, as float64).

    Supported: ``Linear`` (with or without bias) each followed by at most one
    of Identity, Sigmoid, Tanh, ReLU, LeakyReLU(0.01), ELU(1), SELU,
    Softplus(beta=1), GELU (erf form), SiLU; ``Flatten`` and ``Dropout`` (a
    no-op in evaluation) are skipped. Anything else raises ValueError naming
    the module. Softplus's ``threshold`` shortcut is not reproduced: loggrad
    computes log(1 + e^z) exactly.
    """
    import torch  # noqa: F401  (the model's own package)

    mods = list(model.children()) if hasattr(model, "children") else list(model)
    if not mods and type(model).__name__ == "Linear":
        mods = [model]
    ws: list[np.ndarray] = []
    bs: list[np.ndarray] = []
    acts: list[str] = []
    for i, mod in enumerate(mods):
        cls = type(mod).__name__
        name = f"module {i} ({cls})"
        if cls == "Linear":
            ws.append(mod.weight.detach().cpu().double().numpy().copy())
            b = mod.bias
            bs.append(np.zeros(ws[-1].shape[0]) if b is None else b.detach().cpu().double().numpy().copy())
            acts.append("identity")
        elif cls in _TORCH_ACTS:
            if not ws or acts[-1] != "identity" or (i > 0 and type(mods[i - 1]).__name__ != "Linear"):
                raise ValueError(f"{name}: an activation must directly follow a Linear layer")
            _check_settings(mod, name)
            acts[-1] = _TORCH_ACTS[cls]
        elif cls in ("Flatten", "Dropout"):
            continue
        else:
            raise ValueError(f"{name}: not supported (Linear and the activations {', '.join(_TORCH_ACTS)})")
    if not ws:
        raise ValueError("the model has no Linear layer")
    return Network(ws, bs, acts)


_TO_TORCH = {v: k for k, v in _TORCH_ACTS.items()}


def to_torch(net: Network) -> Any:
    """The network as a float64 torch ``nn.Sequential`` (parameters copied)."""
    import torch

    layers: list[Any] = []
    for l, act in enumerate(net.activations):
        w = net.weights[l]
        lin = torch.nn.Linear(w.shape[1], w.shape[0]).double()
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.array(w)))
            lin.bias.copy_(torch.from_numpy(np.array(net.biases[l])))
        layers.append(lin)
        if act == "leaky_relu":
            layers.append(torch.nn.LeakyReLU(0.01))
        elif act == "gelu":
            layers.append(torch.nn.GELU(approximate="none"))
        elif act != "identity":
            layers.append(getattr(torch.nn, _TO_TORCH[act])())
    return torch.nn.Sequential(*layers)


def from_arrays(weights: list[Any], biases: list[Any] | None = None, activations: str | list[str] = "identity") -> Network:
    """Same as ``Network(weights, biases, activations)``."""
    return Network(weights, biases, activations)


def save(net: Network, path: str | os.PathLike[str]) -> None:
    """Save to a ``.npz`` file: widths, activations and the parameter block."""
    np.savez(path, widths=np.asarray(net.widths, dtype=np.int64), activations=np.asarray(net.activations),
             params=net.params, format=np.asarray("loggrad-network-1"))


def load(path: str | os.PathLike[str]) -> Network:
    """Load a network saved with :func:`save`."""
    with np.load(path, allow_pickle=False) as f:
        if "format" not in f or str(f["format"]) != "loggrad-network-1":
            raise ValueError(f"{path} is not a loggrad network file")
        return Network._from_block(f["widths"].tolist(), [str(a) for a in f["activations"]], f["params"].copy())
