"""The formats a network is read from and written to: torch models and ``.npz`` files.

Nothing here knows the Network class: readers return a network's parts
(weights, biases, activations, residual scales, bias-free layers) and writers
take them, so that :mod:`loggrad.network` can use this module without an
import cycle. The public functions are :meth:`loggrad.Network.from_torch`,
``to_torch``, ``save`` and ``load`` (and their aliases in
:mod:`loggrad.interop`). torch is imported only inside the torch functions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._layout import param_count

__all__ = ["TorchParts", "read_torch", "build_torch", "write_file", "read_file"]

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


# torch.nn.functional / torch functions and tensor methods -> loggrad activation
_FUNCTIONAL_ACTS: dict[str, str] = {
    "tanh": "tanh", "sigmoid": "sigmoid", "relu": "relu", "gelu": "gelu", "silu": "silu", "elu": "elu",
    "selu": "selu", "softplus": "softplus", "leaky_relu": "leaky_relu",
}


def _flatten_sequential(model: Any, prefix: str) -> list[tuple[str, Any]]:
    """(name, module) of a Sequential's children in call order, nested Sequentials flattened."""
    import torch

    out: list[tuple[str, Any]] = []
    for name, mod in model.named_children():
        full = f"{prefix}{name}"
        if isinstance(mod, torch.nn.Sequential):
            out.extend(_flatten_sequential(mod, full + "."))
        else:
            out.append((full, mod))
    return out


def _traced_steps(model: Any) -> list[tuple[str, Any]]:
    """The chain of operations a module's forward runs, from torch.fx tracing.

    Each step is (name, module) for a submodule call or (name, activation
    name) for a functional activation. Anything that is not one straight
    chain from the input to the output is refused: the network built from it
    would be a different function.
    """
    import torch
    import torch.fx

    from ._torch_layers import Residual

    class _Tracer(torch.fx.Tracer):  # loggrad's residual layers stay whole
        def is_leaf_module(self, m: Any, qualname: str) -> bool:
            return isinstance(m, Residual) or bool(super().is_leaf_module(m, qualname))

    try:
        graph = _Tracer().trace(model)
        gm = torch.fx.GraphModule(model, graph)
    except Exception as e:  # data-dependent control flow and the like
        raise ValueError(f"from_torch: cannot trace {type(model).__name__}.forward with torch.fx ({e}); "
                         "give an nn.Sequential of Linear and activation modules") from None
    nodes = list(gm.graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise ValueError(f"from_torch: {type(model).__name__}.forward takes {len(inputs)} inputs; "
                         "a dense chain takes one")
    steps: list[tuple[str, Any]] = []
    seen: set[str] = set()
    cur = inputs[0]
    for n in nodes:
        if n.op == "placeholder":
            continue
        if n.op == "output":
            if n.args[0] is not cur:
                raise ValueError("from_torch: the output is not the end of one chain of layers "
                                 f"({type(model).__name__}.forward combines values or returns several)")
            break
        others = [a for a in list(n.args[1:]) + list(n.kwargs.values()) if isinstance(a, torch.fx.Node)]
        if not n.args or n.args[0] is not cur or others or len(cur.users) != 1:
            raise ValueError(f"from_torch: {type(model).__name__}.forward is not one chain of layers: "
                             f"operation {n.format_node()} takes other values than the previous layer's output "
                             "(residual connections, concatenations and branches are not dense chains)")
        if n.op == "call_module":
            if n.target in seen:
                raise ValueError(f"from_torch: module {n.target!r} is called twice (shared weights); "
                                 "a loggrad network has its own parameters in every layer")
            seen.add(str(n.target))
            steps.append((str(n.target), gm.get_submodule(str(n.target))))
        elif n.op in ("call_function", "call_method"):
            name = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", str(n.target))
            act = _FUNCTIONAL_ACTS.get(str(name).rstrip("_"))
            if act is None:
                raise ValueError(f"from_torch: operation {n.format_node()} is not supported "
                                 f"(Linear and the activations {', '.join(_TORCH_ACTS)})")
            _check_functional(act, n)
            steps.append((f"{name}()", act))
        else:
            raise ValueError(f"from_torch: operation {n.format_node()} is not supported")
        cur = n
    return steps


def _check_functional(act: str, node: Any) -> None:
    """Refuse functional activations whose settings differ from loggrad's definitions."""
    kw = dict(node.kwargs)
    extra = list(node.args[1:])
    where = f"from_torch: {node.format_node()}"
    if act == "leaky_relu":
        slope = kw.get("negative_slope", extra[0] if extra else 0.01)
        if float(slope) != 0.01:
            raise ValueError(f"{where}: negative_slope={slope} is not supported (loggrad uses 0.01)")
    elif act == "elu":
        alpha = kw.get("alpha", extra[0] if extra else 1.0)
        if float(alpha) != 1.0:
            raise ValueError(f"{where}: alpha={alpha} is not supported (loggrad uses alpha = 1)")
    elif act == "gelu":
        approx = kw.get("approximate", extra[0] if extra else "none")
        if approx != "none":
            raise ValueError(f"{where}: approximate={approx!r} is not supported (loggrad uses the erf form)")
    elif act == "softplus":
        beta = kw.get("beta", extra[0] if extra else 1.0)
        if float(beta) != 1.0:
            raise ValueError(f"{where}: beta={beta} is not supported (loggrad uses beta = 1)")
    elif extra or any(k != "inplace" for k in kw):
        raise ValueError(f"{where}: arguments {extra or kw} are not supported")


@dataclass
class TorchParts:
    """A chain read from a torch model: per layer W (n_out, n_in), b (n_out,), activation,
    residual scale (None: plain; the list is None when no layer is residual) and the
    layers that had no bias."""

    weights: list[np.ndarray] = field(default_factory=list)
    biases: list[np.ndarray] = field(default_factory=list)
    activations: list[str] = field(default_factory=list)
    residual: list[float | None] | None = None
    bias_free: list[int] = field(default_factory=list)


def read_torch(model: Any) -> TorchParts:
    """The parts of a loggrad network with the parameters of a torch model (copied, as float64).

    The layers are read in the order the model runs them: an ``nn.Sequential``
    (nested ones flattened) in its order, any other module through its
    ``forward``, traced with ``torch.fx``. The model must be one chain:
    ``Linear`` layers (with or without bias) each followed by at most one of
    Identity, Sigmoid, Tanh, ReLU, LeakyReLU(0.01), ELU(1), SELU,
    Softplus(beta=1), GELU (erf form), SiLU (as modules or as
    ``torch.*``/``torch.nn.functional`` calls), or a residual layer
    :class:`loggrad.torch.Residual`; ``Flatten`` and ``Dropout`` in
    evaluation mode are skipped. Anything else (another layer type, a
    residual connection, a module called twice, ``Dropout`` in training mode)
    raises ValueError naming it — never a silently different network.
    Softplus's ``threshold`` shortcut is not reproduced: loggrad computes
    log(1 + e^z) exactly. Layers without a bias are remembered, so that
    :func:`build_torch` builds them without one.
    """
    import torch

    if isinstance(model, torch.nn.Linear):
        steps: list[tuple[str, Any]] = [("0", model)]
    elif isinstance(model, torch.nn.Sequential):
        steps = _flatten_sequential(model, "")
    elif isinstance(model, torch.nn.Module):
        steps = _traced_steps(model)
    else:
        raise TypeError(f"from_torch takes a torch.nn.Module, got {type(model).__name__}")
    ws: list[np.ndarray] = []
    bs: list[np.ndarray] = []
    acts: list[str] = []
    bias_free: list[int] = []
    scales: list[float | None] = []  # residual branch scales (loggrad.torch.Residual modules)
    after_linear = False  # the previous step was a Linear (an activation may follow)
    for i, (where, mod) in enumerate(steps):
        if isinstance(mod, str):  # a functional activation
            cls, act = mod, mod
        else:
            cls = type(mod).__name__
            act = _TORCH_ACTS.get(cls, "")
        name = f"module {where} ({cls})" if not isinstance(mod, str) else f"{where}"
        if _is_residual_module(mod):
            lin, f = mod.linear, mod.activation
            fcls = type(f).__name__
            if fcls not in _TORCH_ACTS:
                raise ValueError(f"{name}: activation {fcls} is not supported")
            _check_settings(f, name)
            ws.append(lin.weight.detach().cpu().double().numpy().copy())
            if lin.bias is None:
                bias_free.append(len(ws) - 1)
            bs.append(np.zeros(ws[-1].shape[0]) if lin.bias is None else lin.bias.detach().cpu().double().numpy().copy())
            acts.append(_TORCH_ACTS[fcls])
            scales.append(float(mod.scale))
            after_linear = False
            continue
        if cls == "Linear":
            ws.append(mod.weight.detach().cpu().double().numpy().copy())
            b = mod.bias
            if b is None:
                bias_free.append(len(ws) - 1)
            bs.append(np.zeros(ws[-1].shape[0]) if b is None else b.detach().cpu().double().numpy().copy())
            acts.append("identity")
            scales.append(None)
            after_linear = True
        elif act:
            if not after_linear:
                raise ValueError(f"{name}: an activation must directly follow a Linear layer")
            if not isinstance(mod, str):
                _check_settings(mod, name)
            acts[-1] = act
            after_linear = False
        elif cls == "Dropout":
            if mod.training and float(mod.p) > 0:
                raise ValueError(f"{name}: Dropout in training mode changes the function at every call; "
                                 "call model.eval() first")
        elif cls == "Flatten":
            continue
        else:
            raise ValueError(f"{name}: not supported (Linear and the activations {', '.join(_TORCH_ACTS)})")
    if not ws:
        raise ValueError("the model has no Linear layer")
    return TorchParts(ws, bs, acts, scales if any(v is not None for v in scales) else None, bias_free)


def _is_residual_module(mod: Any) -> bool:
    # loggrad.torch imports torch at its top: only look when torch is loaded anyway
    if isinstance(mod, str):
        return False
    from ._torch_layers import Residual

    return isinstance(mod, Residual)


_TO_TORCH = {v: k for k, v in _TORCH_ACTS.items()}


def build_torch(weights: Sequence[Any], biases: Sequence[Any], activations: Sequence[str],
                residual: Sequence[float | None], bias_free: Collection[int]) -> Any:
    """The network as a float64 torch ``nn.Sequential`` (parameters copied).

    A residual layer becomes a :class:`loggrad.torch.Residual` module
    (``x + s * f(linear(x))``).

    Layers that came without a bias (from :func:`from_torch`) are built
    without one while their biases are still zero, so that the state_dict of
    ``to_torch(from_torch(model))`` loads back into ``model``.
    """
    import torch

    layers: list[Any] = []
    for l, act in enumerate(activations):
        w = weights[l]
        b = np.array(biases[l])
        has_bias = l not in bias_free or bool(np.any(b != 0))
        lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=has_bias).double()
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.array(w)))
            if has_bias:
                lin.bias.copy_(torch.from_numpy(b))
        f: Any
        if act == "leaky_relu":
            f = torch.nn.LeakyReLU(0.01)
        elif act == "gelu":
            f = torch.nn.GELU(approximate="none")
        elif act == "identity":
            f = torch.nn.Identity()
        else:
            f = getattr(torch.nn, _TO_TORCH[act])()
        scale = residual[l]
        if scale is not None:
            from ._torch_layers import Residual

            layers.append(Residual(lin, f, scale))
        else:
            layers.append(lin)
            if act != "identity":
                layers.append(f)
    return torch.nn.Sequential(*layers)


def write_file(path: str | os.PathLike[str], widths: Sequence[int], activations: Sequence[str], params: np.ndarray,
               residual: Sequence[float | None], bias_free: Collection[int]) -> None:
    """Write a ``.npz`` file (numpy adds the suffix when path lacks it): widths,
    activations, the parameter block and, where the network has them, the
    residual scales (NaN for a plain layer) and the bias-free layers; no
    pickled objects."""
    extra: dict[str, np.ndarray] = {}
    if any(s is not None for s in residual):
        extra["residual"] = np.array([np.nan if s is None else float(s) for s in residual], dtype=np.float64)
    if bias_free:
        extra["bias_free"] = np.array(sorted(int(l) for l in bias_free), dtype=np.int64)
    np.savez(path, widths=np.asarray(widths, dtype=np.int64), activations=np.asarray(activations),
             params=params, format=np.asarray(_FORMAT), **extra)  # type: ignore[arg-type]


_FORMAT = "loggrad-network-1"
_KEYS = ("format", "widths", "activations", "params")


@dataclass
class FileParts:
    """A network read from a file: widths, activations, parameter block, residual scales, bias-free layers."""

    widths: list[int]
    activations: list[str]
    params: np.ndarray
    residual: list[float | None] | None
    bias_free: list[int]


def read_file(path: str | os.PathLike[str]) -> FileParts:
    """Read a network written by :func:`write_file`.

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
            residual = f["residual"] if "residual" in f.files else None
            bias_free = f["bias_free"] if "bias_free" in f.files else None
        except Exception as exc:  # object arrays (pickles) and damaged members
            raise ValueError(f"{name}: unreadable entry: {exc}") from None
    if fmt.shape != () or fmt.dtype.kind not in "US" or str(fmt) != _FORMAT:
        raise ValueError(f"{name}: format is {fmt!r}, expected {_FORMAT!r}")
    w = _checked_widths(widths, name)
    names = _checked_activations(acts, len(w) - 1, name)
    return FileParts(w, names, _checked_params(params, widths, name), _checked_residual(residual, len(w) - 1, name),
                     _checked_bias_free(bias_free, len(w) - 1, name))


def _checked_residual(residual: np.ndarray | None, depth: int, name: str) -> list[float | None] | None:
    if residual is None:
        return None
    if residual.ndim != 1 or residual.dtype.kind != "f" or residual.size != depth:
        raise ValueError(f"{name}: residual must be {depth} floats (NaN for a plain layer), "
                         f"got dtype {residual.dtype}, shape {residual.shape}")
    if np.isinf(residual).any():
        raise ValueError(f"{name}: residual holds an infinite scale")
    return [None if math.isnan(v) else float(v) for v in residual.tolist()]


def _checked_bias_free(bias_free: np.ndarray | None, depth: int, name: str) -> list[int]:
    if bias_free is None:
        return []
    if bias_free.ndim != 1 or bias_free.dtype.kind not in "iu":
        raise ValueError(f"{name}: bias_free must be a 1-D list of layer indices, got dtype {bias_free.dtype}")
    out = [int(v) for v in bias_free.tolist()]
    if any(not 0 <= v < depth for v in out):
        raise ValueError(f"{name}: bias_free names a layer out of range for {depth} layers: {out}")
    return out


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
    need = param_count(w)
    if params.ndim != 1 or params.dtype.kind != "f":
        raise ValueError(f"{name}: params must be a 1-D float array, got dtype {params.dtype}, shape {params.shape}")
    if params.size != need:
        raise ValueError(f"{name}: params holds {params.size:,} values; widths {w} need {need:,}")
    if not np.isfinite(params).all():
        raise ValueError(f"{name}: params holds non-finite values (nan or inf)")
    return np.ascontiguousarray(params, dtype=np.float64)
