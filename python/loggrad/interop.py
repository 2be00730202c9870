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
    """Save to a ``.npz`` file (numpy adds the suffix when path lacks it): widths,
    activations and the parameter block, no pickled objects."""
    np.savez(path, widths=np.asarray(net.widths, dtype=np.int64), activations=np.asarray(net.activations),
             params=net.params, format=np.asarray(_FORMAT))


_FORMAT = "loggrad-network-1"
_KEYS = ("format", "widths", "activations", "params")


def load(path: str | os.PathLike[str]) -> Network:
    """Load a network saved with :func:`save`.

    ``load("x")`` finds ``x.npz`` as :func:`save` wrote it. Everything is
    checked against the layout (widths, one activation per layer, a
    parameter block of exactly the size the widths imply) and nothing is
    unpickled; a file that is not a loggrad network raises ValueError saying
    what is wrong.
    """
    name = os.fspath(path)
    if not os.path.exists(name) and os.path.exists(name + ".npz"):
        name += ".npz"
    try:
        f = np.load(name, allow_pickle=False)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # a pickle, a text file, a damaged archive: none is a network
        raise ValueError(f"{name} is not a loggrad network file (.npz written by Network.save): {exc}") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"{name} holds a single array (.npy), not a loggrad network (.npz written by Network.save)")
    with f:
        missing = [k for k in _KEYS if k not in f.files]
        if missing:
            raise ValueError(f"{name} is not a loggrad network file: missing {', '.join(missing)} "
                             f"(a network file holds {', '.join(_KEYS)})")
        try:
            fmt, widths, acts, params = (f[k] for k in _KEYS)
        except Exception as exc:  # object arrays (pickles) and damaged members
            raise ValueError(f"{name}: unreadable entry: {exc}") from None
    if fmt.shape != () or fmt.dtype.kind not in "US" or str(fmt) != _FORMAT:
        raise ValueError(f"{name}: format is {fmt!r}, expected {_FORMAT!r}")
    from .network import _ParamBlock

    w = _checked_widths(widths, name)
    names = _checked_activations(acts, len(w) - 1, name)
    # the freshly read array becomes the network's block: no second copy
    return Network(_ParamBlock(w, _checked_params(params, widths, name)), None, names)  # type: ignore[arg-type]


def _checked_widths(widths: np.ndarray, name: str) -> list[int]:
    if widths.ndim != 1 or widths.size < 2:
        raise ValueError(f"{name}: widths must be a 1-D list of at least two layer widths, got shape {widths.shape}")
    if widths.dtype.kind not in "iu":
        odd = [v for v in widths.ravel().tolist() if not (isinstance(v, (int, float)) and float(v).is_integer())]
        what = f"{odd[0]!r}" if odd else f"dtype {widths.dtype}"
        raise ValueError(f"{name}: widths must be integers, got {what}")
    w = [int(v) for v in widths]
    if min(w) < 1:
        raise ValueError(f"{name}: every width must be at least 1, got {w}")
    return w


def _checked_activations(acts: np.ndarray, depth: int, name: str) -> list[str]:
    if acts.dtype.kind not in "US" or acts.ndim != 1:
        raise ValueError(f"{name}: activations must be a 1-D array of names, got dtype {acts.dtype}, shape {acts.shape}")
    if acts.size != depth:
        raise ValueError(f"{name}: {acts.size} activations for {depth} layers")
    out = [a.decode() if isinstance(a, bytes) else str(a) for a in acts.tolist()]
    return out  # names are checked by Network


def _checked_params(params: np.ndarray, widths: np.ndarray, name: str) -> np.ndarray:
    w = [int(v) for v in widths]
    need = sum(w[l + 1] * (w[l] + 1) for l in range(len(w) - 1))
    if params.ndim != 1 or params.dtype.kind != "f":
        raise ValueError(f"{name}: params must be a 1-D float array, got dtype {params.dtype}, shape {params.shape}")
    if params.size != need:
        raise ValueError(f"{name}: params holds {params.size:,} values; widths {w} need {need:,}")
    if not np.isfinite(params).all():
        raise ValueError(f"{name}: params holds non-finite values (nan or inf)")
    return np.ascontiguousarray(params, dtype=np.float64)
