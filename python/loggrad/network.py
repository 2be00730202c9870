"""Network: a dense chain whose passes run in the C++ engine.

The parameters live in one contiguous float64 block owned by the Network
(``net.params``); ``net.weights[l]`` and ``net.biases[l]`` are views into it.
The arrays a user passes in are copied, so no call ever changes them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union, overload

import numpy as np
import numpy.typing as npt

from . import _core
from ._layout import Layout, param_count
from ._logarray import LogArray

__all__ = ["Network", "Gradients", "ACTIVATIONS", "LOSSES", "PRECISIONS"]

ACTIVATIONS: tuple[str, ...] = tuple(_core.activation_names())
LOSSES: tuple[str, ...] = tuple(_core.loss_names())
PRECISIONS: tuple[str, ...] = ("extended", "float64")
#: Other names the activations go by: name -> the engine's name.
ACTIVATION_ALIASES: dict[str, str] = {"linear": "identity"}

Values = Union[LogArray, np.ndarray]


def _canonical_activation(name: Any, where: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{where}: activation must be a name (str), got {type(name).__name__}")
    canon: str = ACTIVATION_ALIASES.get(name, name)
    if canon not in ACTIVATIONS:
        raise ValueError(
            f"{where}: unknown activation {canon!r}; valid: {', '.join(ACTIVATIONS)} (and 'linear' for identity)"
        )
    return canon


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    return precision


def _as_numeric(a: Any, what: str) -> np.ndarray:
    """``a`` as an ndarray of numbers (bool, int, float), not yet converted to float64."""
    if isinstance(a, LogArray):
        raise TypeError(f"{what} must be float64 values, not a LogArray (use .to_numpy())")
    if np.ma.isMaskedArray(a) and np.ma.is_masked(a):
        raise ValueError(f"{what} is a masked array with masked entries; fill or drop them first")
    try:
        arr = np.asarray(a)
    except ValueError as e:  # ragged nested lists
        raise ValueError(f"{what} is not a rectangular array of numbers: {e}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{what} must be numeric (float or int), got dtype {arr.dtype}")
    return arr


def _to_float64(arr: np.ndarray, what: str) -> np.ndarray:
    """float64 copy-free view where possible; values beyond float64's range are refused."""
    if arr.dtype.kind != "f" or arr.dtype.itemsize <= 8:
        return np.asarray(arr, dtype=np.float64)
    with np.errstate(over="ignore"):  # long double: may not fit float64, checked below
        out = np.asarray(arr, dtype=np.float64)
    big = np.isfinite(arr) & ~np.isfinite(out)
    if big.any():
        i = tuple(int(v) for v in np.argwhere(big)[0])
        raise ValueError(f"{what} has a value beyond float64's range ({arr[i]}) at {list(i)}")
    return out


def _as_float_array(a: Any, what: str) -> np.ndarray:
    """float64 copy-free view where possible; numbers only (bool, int, float)."""
    return _to_float64(_as_numeric(a, what), what)


#: Passes needing at most this much are not checked against the available
#: memory (a check costs ~0.3 ms of file reads; the engine still turns a failed
#: allocation into MemoryError).
_SMALL_PASS_BYTES = 256 << 20


def _available_bytes() -> int | None:
    """Memory a new allocation can still get without swapping out others or an OOM kill.

    Linux: MemAvailable + SwapFree, capped by the cgroup (container) limit;
    elsewhere the physical memory; None when unknown.
    """
    avail: int | None = None
    try:
        with open("/proc/meminfo") as f:
            info = {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in f if ":" in line)}
        if "MemAvailable" in info:
            avail = info["MemAvailable"] + info.get("SwapFree", 0)
    except (OSError, ValueError):
        pass
    for limit_f, usage_f in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                             ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                              "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_f) as f:
                lim = f.read().strip()
            with open(usage_f) as f:
                use = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if lim.isdigit() and int(lim) < 2**60:
            left = max(int(lim) - use, 0)
            avail = left if avail is None else min(avail, left)
    if avail is None:
        try:
            import os

            avail = int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):
            return None
    return avail


class _ParamBlock:
    """A finished parameter block (every layer's W row-major, then its b) and its widths."""

    __slots__ = ("widths", "params")

    def __init__(self, widths: list[int], params: np.ndarray) -> None:
        self.widths, self.params = widths, params


def _check_block_fits(widths: Sequence[int]) -> int:
    """The number of parameters of a chain of these widths; MemoryError if their block cannot fit."""
    return check_params_fit(sum(int(widths[l + 1]) * (int(widths[l]) + 1) for l in range(len(widths) - 1)))


def check_params_fit(n: int) -> int:
    """n; MemoryError if a block of n float64 parameters cannot fit in the available memory."""
    avail = _available_bytes()
    if avail is not None and 8 * n > avail:
        raise MemoryError(f"the parameter block of this network needs {_gib(8 * n)} "
                          f"({n:,} float64 values), but only {_gib(avail)} of memory is available")
    return n


def _activation_list(activations: Any, depth: int) -> list[str]:
    """One canonical activation name per layer."""
    if isinstance(activations, str):
        return [_canonical_activation(activations, "activations")] * depth
    if not isinstance(activations, Iterable):
        raise TypeError(f"activations must be a name (str) or a list of names, got {type(activations).__name__}")
    acts = [_canonical_activation(a, f"activations[{l}]") for l, a in enumerate(activations)]
    if len(acts) != depth:
        raise ValueError(f"got {len(acts)} activations for {depth} layers (give one name or one per layer)")
    return acts


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**28 else f"{n / 2**20:,.1f} MiB"


def _check_finite(a: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(f"{what} has a non-finite value ({a[tuple(bad)]}) at {list(map(int, bad))}")


def residual_scales(residual: Any, widths: Sequence[int]) -> list[float | None]:
    """Per-layer residual scales (None: a plain layer) from Network's ``residual`` argument."""
    depth = len(widths) - 1
    if residual is None:
        return []

    def scale(v: Any, where: str) -> float:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"{where} must be a real number (the branch scale s) or None, got {type(v).__name__}")
        if not math.isfinite(float(v)):
            raise ValueError(f"{where} must be finite, got {v}")
        return float(v)

    if isinstance(residual, (int, float, np.integer, np.floating)) and not isinstance(residual, (bool, np.bool_)):
        s = scale(residual, "residual")
        return [s if widths[l] == widths[l + 1] else None for l in range(depth)]
    if isinstance(residual, (str, bytes, bool, np.bool_)) or not isinstance(residual, Iterable):
        raise TypeError("residual must be None, a branch scale s for every square layer, or a list with one "
                        f"scale (or None) per layer, got {type(residual).__name__}")
    scales = list(residual)
    if len(scales) != depth:
        raise ValueError(f"got {len(scales)} residual scales for {depth} layers (give one number, or one per layer)")
    out: list[float | None] = []
    for l, v in enumerate(scales):
        if v is None:
            out.append(None)
            continue
        out.append(scale(v, f"residual[{l}]"))
        if widths[l] != widths[l + 1]:
            raise ValueError(f"layer {l} ({widths[l]} -> {widths[l + 1]}) cannot be residual: a residual layer "
                             "adds its input to its output, so it needs as many outputs as inputs (use None)")
    return out


class LayerViews(Sequence[Any]):
    """Per-layer views into a flat parameter-layout array, made on access.

    ``kind`` is "weights" (shape (n_out, n_in)) or "biases" (shape (n_out,)).
    Creating a result costs O(1) in the depth; a view costs O(1) when indexed.
    """

    __slots__ = ("_flat", "_w_off", "_widths", "_kind", "_results")

    def __init__(self, flat: Any, w_off: np.ndarray, widths: np.ndarray, kind: str, results: bool = False) -> None:
        self._flat, self._w_off, self._widths, self._kind = flat, w_off, widths, kind
        self._results = results  # gradients of a pass: not assignable

    def __len__(self) -> int:
        return len(self._widths) - 1

    def _one(self, l: int) -> Any:
        n_in, n_out = int(self._widths[l]), int(self._widths[l + 1])
        wo = int(self._w_off[l])
        if wo < 0:
            what = "weight" if self._kind == "weights" else "bias"
            raise KeyError(f"the {what} gradient of layer {l} was not computed: "
                           "this pass was run with backward(..., layers=...) selecting other layers")
        if self._kind == "weights":
            return self._flat[wo : wo + n_out * n_in].reshape(n_out, n_in)
        bo = wo + n_out * n_in
        return self._flat[bo : bo + n_out]

    def __getitem__(self, l: Any) -> Any:
        if isinstance(l, slice):
            return [self._one(i) for i in range(*l.indices(len(self)))]
        i = int(l)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"layer {l} out of range for {len(self)} layers")
        return self._one(i)

    def __setitem__(self, l: Any, value: Any) -> None:
        """``net.weights[l] = w`` copies w into the network (same shape, finite values)."""
        if self._results or not isinstance(self._flat, np.ndarray) or not self._flat.flags.writeable:
            raise TypeError(f"these {self._kind} are results of a pass and cannot be assigned to")
        if isinstance(l, slice):
            idx = range(*l.indices(len(self)))
            vals = list(value)
            if len(vals) != len(idx):
                raise ValueError(f"assigning {len(vals)} arrays to {len(idx)} layers")
            arrs = [self._checked(i, v) for i, v in zip(idx, vals)]  # all checked before any write
            for i, a in zip(idx, arrs):
                self._one(i)[...] = a
            return
        i = int(l)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"layer {l} out of range for {len(self)} layers")
        self._one(i)[...] = self._checked(i, value)

    def _checked(self, i: int, value: Any) -> np.ndarray:
        what = f"{self._kind}[{i}]"
        a = _as_float_array(value, what)
        shape = self._one(i).shape
        if a.shape != shape:
            raise ValueError(f"{what} has shape {shape}; cannot assign an array of shape {a.shape} "
                             "(the architecture is fixed: build a new Network to change it)")
        _check_finite(a, what)
        return a

    def __add__(self, other: Any) -> list[Any]:
        return list(self) + list(other)

    def __radd__(self, other: Any) -> list[Any]:
        return list(other) + list(self)

    def __repr__(self) -> str:
        return f"<{len(self)} {self._kind}>"


@dataclass(frozen=True)
class Gradients:
    """Result of ``Network.backward``.

    On the extended path every field is a :class:`LogArray`; on the float64
    path a numpy array (``loss`` a 0-d array).

    loss:    the loss value (None from ``backward(grad_output=...)``)
    output:  the network output (batch, n_out)
    weights: dL/dW per layer, shapes of the weights
    biases:  dL/db per layer
    input:   dL/dx, shape of x (None from ``backward(input_grad=False)``)
    params:  all parameter gradients in the parameter-block layout; with
             ``backward(layers=...)``, the selected layers' blocks only, in order
    layers:  the layers whose gradients were computed (None: all)
    flushed: how many values fell below loggrad's exponent range
             (|log2| < 2^60) and became exact zeros, as IEEE float64 does at
             its own range (``on_underflow="flush"``, the default; each
             activation, derivative, loss term, gradient entry counts once);
             always 0 on the float64 path
    """

    loss: Values | None
    output: Values
    weights: Sequence[Values]
    biases: Sequence[Values]
    input: Values | None
    params: Values
    precision: str
    layers: tuple[int, ...] | None = None
    flushed: int = 0

    def __repr__(self) -> str:
        flushed = f", flushed={self.flushed}" if self.flushed else ""
        return (
            f"Gradients(precision={self.precision!r}, loss={self.loss!r}, "
            f"layers={len(self.weights)}{flushed})"
        )


_ON_UNDERFLOW = ("flush", "raise")


def _check_on_underflow(on_underflow: Any) -> None:
    if not isinstance(on_underflow, str) or on_underflow not in _ON_UNDERFLOW:
        raise ValueError(f"on_underflow must be 'flush' or 'raise', got {on_underflow!r}")


def _warn_flushed(info: tuple[int, int | None, str], stacklevel: int) -> int:
    """One RuntimeWarning for the engine's (count, first layer, first quantity); returns the count."""
    count, layer, quantity = int(info[0]), info[1], str(info[2])
    if count:
        where = quantity if layer is None else f"layer {layer} {quantity}"
        warnings.warn(
            f"{count} value{'s' if count != 1 else ''} fell below loggrad's exponent range (|log2| < 2^60) "
            f"and became zero, first in {where} (on_underflow='raise' raises instead)",
            RuntimeWarning,
            stacklevel=stacklevel + 1,
        )
    return count


class Network:
    """A dense feed-forward chain ``z_l = a_l @ W_l.T + b_l``, ``a_{l+1} = f_l(z_l)``.

    Parameters
    ----------
    weights:
        one array per layer, shape ``(n_out, n_in)`` (torch ``Linear`` convention).
    biases:
        one array per layer, shape ``(n_out,)``; ``None`` for zero biases.
    activations:
        one name for every layer, or a list with one name per layer. Valid:
        identity (linear), sigmoid, tanh, relu, leaky_relu, elu, selu,
        softplus, gelu, silu.
    residual:
        residual connections, ``a_{l+1} = a_l + s * f_l(z_l)``: a branch scale
        s for every square layer (n_out == n_in; the others stay plain), or a
        list with one entry per layer, a scale or None for a plain layer. A
        layer that is not square cannot be residual. Default: no residual
        connections. s = 0 gives the identity at initialisation (ReZero/SkipInit);
        s ~ 1/sqrt(depth) keeps the end-to-end gradient growth bounded.
    """

    def __init__(
        self,
        weights: Sequence[npt.ArrayLike] | np.ndarray,
        biases: Sequence[npt.ArrayLike] | None = None,
        activations: str | Sequence[str] = "identity",
        residual: float | Sequence[float | None] | None = None,
    ) -> None:
        if isinstance(weights, _ParamBlock):  # Network.build's draws: adopted, not copied
            self._set_layout(weights.widths, _activation_list(activations, len(weights.widths) - 1),
                             residual_scales(residual, weights.widths))
            self._params = weights.params
            return
        if isinstance(weights, np.ndarray) and weights.ndim == 2:  # a single layer
            weights = [weights]
        if isinstance(weights, (str, bytes)) or not isinstance(weights, Iterable):
            raise TypeError(f"weights must be a list of 2-D arrays (n_out, n_in), got {type(weights).__name__}")
        ws = [_as_float_array(w, f"weights[{l}]") for l, w in enumerate(weights)]
        if not ws:
            raise ValueError("a network needs at least one layer (weights is empty)")
        for l, w in enumerate(ws):
            if w.ndim != 2:
                raise ValueError(f"weights[{l}] must be 2-D (n_out, n_in), got shape {w.shape}")
            if 0 in w.shape:
                raise ValueError(f"weights[{l}] has shape {w.shape}: every layer needs at least one unit")
            if l > 0 and w.shape[1] != ws[l - 1].shape[0]:
                raise ValueError(
                    f"weights[{l}] has shape {w.shape}; expected ({w.shape[0]}, {ws[l - 1].shape[0]}) "
                    f"or any (n_out, {ws[l - 1].shape[0]}) to follow weights[{l - 1}] of shape {ws[l - 1].shape}"
                )
        depth = len(ws)
        if biases is None:
            bs = [np.zeros(w.shape[0]) for w in ws]
        else:
            if isinstance(biases, (str, bytes)) or not isinstance(biases, (Sequence, np.ndarray)):
                raise TypeError(f"biases must be None or a list of 1-D arrays (n_out,), got {type(biases).__name__}")
            if len(biases) != depth:
                raise ValueError(f"got {len(biases)} bias vectors for {depth} layers")
            bs = [_as_float_array(b, f"biases[{l}]") for l, b in enumerate(biases)]
            for l, b in enumerate(bs):
                if b.shape != (ws[l].shape[0],):
                    raise ValueError(f"biases[{l}] has shape {b.shape}; expected ({ws[l].shape[0]},)")
        acts = _activation_list(activations, depth)
        widths = [ws[0].shape[1]] + [w.shape[0] for w in ws]
        self._set_layout(widths, acts, residual_scales(residual, widths))
        _check_block_fits(widths)
        parts = [p for w, b in zip(ws, bs) for p in (w.ravel(), b)]
        self._params = np.ascontiguousarray(np.concatenate(parts), dtype=np.float64)
        if not np.isfinite(self._params).all():  # one pass over the block; name the first bad layer
            for l, (w, b) in enumerate(zip(ws, bs)):
                _check_finite(w, f"weights[{l}]")
                _check_finite(b, f"biases[{l}]")

    def _set_layout(self, widths: list[int], acts: list[str], scales: list[float | None]) -> None:
        # Layers that came without a bias (from_torch of Linear(bias=False)); to_torch keeps them so.
        self._bias_free: frozenset[int] = frozenset()
        self._arch = _core.Architecture(widths, acts, scales)
        self._layout = Layout(self._arch)
        self._widths = self._layout.widths
        self._blocks = self._layout.sizes  # layer l's block: n_{l+1} * (n_l + 1) values (W then b)
        self._w_off = self._layout.starts  # at this offset

    # -- construction helpers -----------------------------------------------
    @classmethod
    def _from_block(cls, widths: Sequence[int], activations: Sequence[str], params: np.ndarray,
                    residual: Sequence[float | None] | None = None) -> Network:
        """A network that adopts ``params`` (a parameter block of these widths) as its own."""
        w = [int(v) for v in widths]
        block = np.ascontiguousarray(params, dtype=np.float64)
        need = param_count(w)
        if block.shape != (need,):
            raise ValueError(f"a parameter block of shape {block.shape} for widths {w}, which need ({need},)")
        if not np.isfinite(block).all():
            bad = int(np.argmax(~np.isfinite(block)))
            raise ValueError(f"the parameter block has a non-finite value ({block[bad]}) at {bad}")
        return cls(_ParamBlock(w, block), None, list(activations), residual=residual)  # type: ignore[arg-type]

    @property
    def layout(self) -> Layout:
        """Offsets and sizes of the parameter blocks (see :class:`loggrad._layout.Layout`)."""
        return self._layout

    @classmethod
    def build(
        cls,
        widths: Sequence[int],
        activation: str | Sequence[str] = "tanh",
        init: Any = "lecun_normal",
        bias_init: Any = "zeros",
        seed: int | None = None,
        gain: float | None = None,
        residual: float | Sequence[float | None] | None = None,
    ) -> Network:
        """A chain widths[0] -> ... -> widths[-1] with initialised parameters.

        activation: one name or one per layer. init / bias_init: an
        initializer name (see :mod:`loggrad.init`), an Initializer, a callable
        ``(shape, rng) -> array``, or a list with one per layer. seed: the
        draws are reproducible across runs and machines. gain: the gamma
        multiplying the initializer's standard deviation (or limit).
        residual: residual connections, as for :class:`Network`.
        """
        from .init import fill_block, is_int

        if isinstance(widths, (str, bytes)) or not isinstance(widths, Iterable):
            raise TypeError(f"widths must be a sequence of ints, got {type(widths).__name__}")
        widths = list(widths)
        bad = [v for v in widths if not is_int(v)]
        if bad:
            raise TypeError(f"widths must be ints, got {bad[0]!r} in {widths}")
        w = [int(v) for v in widths]
        if len(w) < 2:
            raise ValueError(f"widths needs at least two entries (inputs and outputs), got {list(widths)}")
        if min(w) < 1:
            raise ValueError(f"every width must be at least 1, got {w}")
        acts = _activation_list(activation, len(w) - 1)
        residual_scales(residual, w)  # refused before any weight is drawn
        # before any draw: a request that cannot fit fails at once, not after minutes of drawing
        n_params = _check_block_fits(w)
        params = np.empty(n_params, dtype=np.float64)
        fill_block(w, params, init, bias_init=bias_init, seed=seed, gain=gain)
        return cls(_ParamBlock(w, params), None, acts, residual=residual)  # type: ignore[arg-type]

    @classmethod
    def from_torch(cls, model: Any) -> Network:
        """A network with the parameters of a torch model (copied, as float64).

        The layers are read in the order the model runs them: an
        ``nn.Sequential`` (nested ones flattened) in its order, any other
        module through its ``forward``, traced with ``torch.fx``. The model
        must be one chain: ``Linear`` layers (with or without bias) each
        followed by at most one of Identity, Sigmoid, Tanh, ReLU,
        LeakyReLU(0.01), ELU(1), SELU, Softplus(beta=1), GELU (erf form),
        SiLU (as modules or as ``torch.*``/``torch.nn.functional`` calls), or
        residual layers :class:`loggrad.torch.Residual`; ``Flatten`` and
        ``Dropout`` in evaluation mode are skipped. Anything else (another
        layer type, a residual addition written out, a module called twice,
        ``Dropout`` in training mode) raises ValueError naming it — never a
        silently different network. Layers without a bias are remembered, so
        that :meth:`to_torch` builds them without one.
        """
        from ._formats import read_torch

        parts = read_torch(model)
        net = cls(parts.weights, parts.biases, parts.activations, residual=parts.residual)
        net._bias_free = frozenset(parts.bias_free)
        return net

    def to_torch(self) -> Any:
        """The network as a float64 torch ``nn.Sequential`` (parameters copied).

        A residual layer becomes a :class:`loggrad.torch.Residual` module
        (``x + s * f(linear(x))``); layers that came without a bias (from
        :meth:`from_torch`) are built without one while their biases are
        zero, so that ``to_torch(from_torch(model))``'s state_dict loads back
        into ``model``.
        """
        from ._formats import build_torch

        return build_torch(self.weights, self.biases, self.activations, self.residual, self._bias_free)

    def save(self, path: Any) -> None:
        """Save to a ``.npz`` file (numpy adds the suffix when path lacks it): widths,
        activations, the parameter block, residual scales and bias-free layers;
        no pickled objects."""
        from ._formats import write_file

        write_file(path, self.widths, self.activations, self._params, self.residual, self._bias_free)

    @classmethod
    def load(cls, path: Any) -> Network:
        """Load a network saved with :meth:`save`.

        ``load("x")`` finds ``x.npz`` as :meth:`save` wrote it. Everything is
        checked against the layout (widths, one activation per layer, a
        parameter block of exactly the size the widths imply, residual scales
        and bias-free layers where present) and nothing is unpickled; a file
        that is not a loggrad network raises ValueError saying what is wrong.
        """
        from ._formats import read_file

        parts = read_file(path)
        # the freshly read array becomes the network's block: no second copy
        net = cls(_ParamBlock(parts.widths, parts.params), None, parts.activations,  # type: ignore[arg-type]
                  residual=parts.residual)
        net._bias_free = frozenset(parts.bias_free)
        return net

    def copy(self) -> Network:
        """An independent network with the same parameters."""
        return Network._restore(self.widths, self.activations, self._params.copy(), sorted(self._bias_free),
                                self.residual)

    @classmethod
    def _restore(cls, widths: Sequence[int], activations: Sequence[str], params: np.ndarray,
                 bias_free: Sequence[int] = (), residual: Sequence[float | None] | None = None) -> Network:
        net = cls._from_block(widths, activations, params, residual)
        net._bias_free = frozenset(int(l) for l in bias_free)
        return net

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle, copy.deepcopy, multiprocessing: the architecture and the
        # parameter block, restored bitwise (through the same checks as a new
        # network).
        return (Network._restore, (self.widths, self.activations, self._params, sorted(self._bias_free),
                                   self.residual))

    # -- properties ---------------------------------------------------------
    @property
    def depth(self) -> int:
        """Number of layers."""
        return int(self._arch.depth)

    def __len__(self) -> int:
        return self.depth

    @property
    def widths(self) -> list[int]:
        """n_0 (inputs) .. n_L (outputs)."""
        return [int(w) for w in self._widths]

    @property
    def n_in(self) -> int:
        return int(self._widths[0])

    @property
    def n_out(self) -> int:
        return int(self._widths[-1])

    @property
    def activations(self) -> list[str]:
        return list(self._arch.activations)

    @property
    def residual(self) -> list[float | None]:
        """Each layer's residual branch scale s (``a_{l+1} = a_l + s f(z_l)``), or None for a plain layer."""
        return list(self._arch.residual)

    @property
    def is_residual(self) -> bool:
        """Whether some layer has a residual connection."""
        return any(s is not None for s in self._arch.residual)

    @property
    def weights(self) -> LayerViews:
        """Weight matrices, views into the parameter block (writes change the network)."""
        return LayerViews(self._params, self._w_off, self._widths, "weights")

    @property
    def biases(self) -> LayerViews:
        """Bias vectors, views into the parameter block."""
        return LayerViews(self._params, self._w_off, self._widths, "biases")

    @property
    def params(self) -> np.ndarray:
        """All parameters in one contiguous block: W_0, b_0, W_1, b_1, ...

        A view: writes change the network; its shape and dtype cannot be changed.
        """
        v: np.ndarray = self._params.view()
        return v

    @property
    def param_count(self) -> int:
        return int(self._arch.param_count)

    def __repr__(self) -> str:
        acts = set(self.activations)
        act = next(iter(acts)) if len(acts) == 1 else "mixed"
        w = self.widths
        shown: list[int | str] = [*w] if len(w) <= 8 else [*w[:3], "...", *w[-3:]]
        res = ""
        if self.is_residual:
            scales = {s for s in self.residual if s is not None}
            n = sum(s is not None for s in self.residual)
            res = f", residual={next(iter(scales)) if len(scales) == 1 else 'mixed'} ({n} layers)"
        return f"Network(depth={self.depth}, widths={shown}, activation={act!r}{res}, params={self.param_count})"

    # -- passes ---------------------------------------------------------------
    def _inputs(self, x: npt.ArrayLike, precision: str = "extended", backward: bool = False,
                checkpoint: int = 0, grads: int | None = None, dx: bool = True) -> tuple[np.ndarray, bool]:
        xa = _as_numeric(x, "x")
        single = xa.ndim == 1
        if single:
            xa = xa[None, :]
        if xa.ndim != 2 or xa.shape[1] != self.n_in:
            raise ValueError(f"x has shape {np.shape(x)}; expected (batch, {self.n_in}) or ({self.n_in},)")
        if xa.shape[0] == 0:
            raise ValueError("x is empty: the batch needs at least one row")
        copy = 0 if xa.dtype == np.float64 and xa.flags.c_contiguous else 8 * xa.size
        self._check_memory(xa.shape[0], precision, backward, checkpoint, copy, grads, dx)
        return np.ascontiguousarray(_to_float64(xa, "x")), single

    def pass_bytes(self, batch: int, precision: str = "extended", backward: bool = True,
                   checkpoint: int | str | None = None, layers: Any = None, input_grad: bool = True) -> int:
        """Bytes one pass allocates (result arrays and the engine's buffers), computed before it runs.

        A backward pass stores every layer's activations and activation
        derivatives for ``batch`` rows (``checkpoint=None``) or, with
        checkpointing, every C-th layer's plus one segment; the gradient
        result holds one value per parameter of the layers selected by
        ``layers`` (all by default; 16 bytes each on the extended path:
        mantissa and exponent), and dL/dx unless ``input_grad=False``. The
        weights themselves are not counted.
        """
        _check_precision(precision)
        sel = self._layer_selection(layers)
        grads = None if sel is None else int(self._blocks[sel].sum())
        return self._pass_bytes(int(batch), precision, backward, self._checkpoint_arg(checkpoint), grads,
                                bool(input_grad))

    def _pass_bytes(self, batch: int, precision: str, backward: bool, cp: int, grads: int | None = None,
                    dx: bool = True) -> int:
        return self._layout.pass_bytes(batch, precision == "extended", backward, cp, grads, dx)

    def _check_memory(self, batch: int, precision: str, backward: bool, cp: int, extra: int = 0,
                      grads: int | None = None, dx: bool = True) -> None:
        """MemoryError, before anything is allocated, for a pass that cannot fit."""
        # A bound from two sums first: a small pass is not worth the per-layer
        # size computation nor the /proc and cgroup reads (~0.3 ms together).
        total_w, max_w = int(self._widths.sum()), int(self._widths.max())
        bound = 16 * (self.param_count + batch * (3 * total_w + 6 * max_w) + max_w * (max_w + 4)) + extra
        if bound <= _SMALL_PASS_BYTES:
            return
        need = self._pass_bytes(batch, precision, backward, cp, grads, dx) + extra
        avail = _available_bytes()
        if avail is None or need <= avail:
            return
        what = "backward" if backward else "forward"
        msg = (f"{'an' if precision == 'extended' else 'a'} {precision} {what} pass of this network ({self.depth} layers, {self.param_count:,} parameters) "
               f"for a batch of {batch:,} needs {_gib(need)}, but only {_gib(avail)} of memory is available")
        if backward and cp != -1:
            auto = self._pass_bytes(batch, precision, True, -1, grads, dx) + extra
            if auto < need:
                msg += f"; backward(..., checkpoint='auto') would need {_gib(auto)}"
        if backward and (grads is None or grads > 0):
            few = self._pass_bytes(batch, precision, True, -1, 0, dx) + extra
            if few < need:
                msg += (f"; backward(..., checkpoint='auto', layers=[...]) computes only the chosen layers' "
                        f"gradients, from {_gib(few)}")
        raise MemoryError(msg + "; or use a smaller batch")

    def _layer_selection(self, layers: Any) -> np.ndarray | None:
        """Sorted distinct layer indices (int64) of ``layers``, or None for every layer."""
        if layers is None:
            return None
        depth = self.depth
        if isinstance(layers, slice):  # any step, reversed ones too: the layers it names, in order
            return np.unique(np.arange(depth, dtype=np.int64)[layers])
        if isinstance(layers, (bool, np.bool_)):
            raise TypeError("layers must be None, a layer index, a slice or a sequence of layer indices, got a bool")
        if isinstance(layers, (int, np.integer)):
            layers = [layers]
        if isinstance(layers, (str, bytes)) or not isinstance(layers, Iterable):
            raise TypeError("layers must be None, a layer index, a slice or a sequence of layer indices, "
                            f"got {type(layers).__name__}")
        arr = np.asarray(list(layers) if not isinstance(layers, np.ndarray) else layers)
        if arr.size == 0:
            return np.zeros(0, dtype=np.int64)
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise TypeError(f"layers must hold integer layer indices, got {arr.dtype} values of shape {arr.shape}")
        bad = (arr < -depth) | (arr >= depth)
        if bad.any():
            raise IndexError(f"layer {arr[bad][0]} out of range for {depth} layers")
        return np.unique(np.where(arr < 0, arr + depth, arr).astype(np.int64))

    @staticmethod
    def _checkpoint_arg(checkpoint: Any) -> int:
        if checkpoint is None:
            return 0
        if isinstance(checkpoint, str) and checkpoint == "auto":
            return -1
        if isinstance(checkpoint, (int, np.integer)) and not isinstance(checkpoint, bool) and checkpoint >= 1:
            return min(int(checkpoint), 2**62)  # longer than the network = no checkpointing
        raise ValueError(f"checkpoint must be None, 'auto' or a positive segment length, got {checkpoint!r}")

    @overload
    def forward(self, x: npt.ArrayLike, precision: str = "extended", *, on_underflow: str = "flush",
                return_flushed: Literal[False] = False) -> Values: ...
    @overload
    def forward(self, x: npt.ArrayLike, precision: str = "extended", *, on_underflow: str = "flush",
                return_flushed: Literal[True]) -> tuple[Values, int]: ...

    def forward(self, x: npt.ArrayLike, precision: str = "extended", *, on_underflow: str = "flush",
                return_flushed: bool = False) -> Values | tuple[Values, int]:
        """Network output for x of shape (batch, n_in) or (n_in,).

        Returns a LogArray on the extended path (values beyond float64 range
        are carried exactly), an ndarray on the float64 path.

        on_underflow: what happens to a value below even loggrad's exponent
        range (|log2| < 2^60, e.g. gelu(-2e9) = -e^-2e18 in size): "flush"
        makes it an exact zero, as IEEE float64 does at its own range, and
        the pass goes on, with one RuntimeWarning per call saying how many
        values and where the first was; "raise" raises ExponentRangeError.
        A value above the range always raises ExponentRangeError.
        return_flushed: True returns ``(output, flushed)``, flushed being the
        number of values made zero (always 0 on the float64 path).
        """
        res: Values | tuple[Values, int] = self._forward(self._params, x, precision, on_underflow=on_underflow,
                                                         return_flushed=return_flushed, stacklevel=2)
        return res

    def _forward(self, params: np.ndarray, x: npt.ArrayLike, precision: str, *, on_underflow: str = "flush",
                 return_flushed: bool = False, stacklevel: int = 1) -> Any:
        """forward with the parameter block ``params`` (this architecture's layout) in place of the network's."""
        _check_precision(precision)
        _check_on_underflow(on_underflow)
        xa, single = self._inputs(x, precision)
        out: Values
        flushed = 0
        if precision == "extended":
            if on_underflow == "flush":
                m, e, info = _core.forward(self._arch, params, xa, "extended", "flush")
                flushed = _warn_flushed(info, stacklevel + 1)
            else:
                m, e = _core.forward(self._arch, params, xa, "extended", "raise")
            out = LogArray._wrap(m, e)
        else:
            out = _core.forward(self._arch, params, xa, "float64")
        out = out[0] if single else out
        return (out, flushed) if return_flushed else out

    def sgd_step(self, x: npt.ArrayLike, y: npt.ArrayLike | None, lr: float, loss: str = "mse",
                 clip_norm: float | None = None, clip_value: float | None = None) -> Any:
        """One SGD step in place; see :func:`loggrad.train.sgd_step` (returns a StepReport)."""
        from .train import sgd_step

        return sgd_step(self, x, y, lr, loss, clip_norm, clip_value)

    def report(self, x: npt.ArrayLike, y: npt.ArrayLike | None = None, loss: str = "mse",
               lr: float | None = None, **kwargs: Any) -> Any:
        """Gradient-health report on the batch x; see :func:`loggrad.report` (returns a Report)."""
        from .report import report

        return report(self, x, y, loss, lr, **kwargs)

    def spectrum(self, x: npt.ArrayLike | None = None, k: int | None = None, **kwargs: Any) -> Any:
        """Log singular values of the input-output Jacobian; see :func:`loggrad.spectrum`."""
        from .spectrum import spectrum

        return spectrum(self, x, k, **kwargs)

    def fit(self, x: npt.ArrayLike, y: npt.ArrayLike | None, lr: float, epochs: int = 10,
            batch_size: int | None = None, loss: str = "mse", **kwargs: Any) -> Any:
        """Minibatch SGD; see :func:`loggrad.train.fit` (returns a History).

        All or nothing: if any step raises (bad input, an update beyond float64,
        an exponent-range error), the parameters are restored exactly to what
        they were before the call and the exception propagates.
        """
        from .train import fit

        saved = self._params.copy()
        try:
            return fit(self, x, y, lr, epochs, batch_size, loss, **kwargs)
        except Exception:
            self._params[...] = saved
            raise

    def __call__(self, x: npt.ArrayLike, precision: str = "extended") -> Values:
        return self.forward(x, precision)

    def _targets(self, loss: str, y: Any, batch: int, single: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
        if loss == "sum":
            return None, None
        if y is None:
            raise ValueError(f"loss {loss!r} needs targets y")
        if loss == "cross_entropy":
            lab = _as_numeric(y, "cross_entropy labels")
            if lab.dtype.kind == "f":
                if not np.all(np.isfinite(lab)) or np.any(lab != np.round(lab)):
                    raise TypeError("cross_entropy labels must be integer class indices")
            elif lab.dtype.kind not in "iu":
                raise TypeError(f"cross_entropy labels must be integer class indices, got dtype {lab.dtype}")
            lab = lab.reshape(-1) if single and lab.ndim == 0 else lab
            if lab.shape != (batch,):
                raise ValueError(f"cross_entropy labels have shape {np.shape(y)}; expected ({batch},)")
            bad = (lab < 0) | (lab >= self.n_out)  # in the labels' own dtype: no wrap-around
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"label {lab[i]} at row {i} is out of range for {self.n_out} classes (0..{self.n_out - 1})")
            return None, lab.astype(np.int64)
        ya = _as_float_array(y, "y")
        if single and ya.ndim == 1:
            ya = ya[None, :]
        if ya.shape != (batch, self.n_out):
            raise ValueError(f"y has shape {np.shape(y)}; expected ({batch}, {self.n_out}) to match the output")
        _check_finite(ya, "y")
        return np.ascontiguousarray(ya), None

    def backward(
        self,
        x: npt.ArrayLike,
        y: npt.ArrayLike | None = None,
        loss: str | None = None,
        precision: str = "extended",
        checkpoint: int | str | None = None,
        layers: Any = None,
        input_grad: bool = True,
        *,
        grad_output: npt.ArrayLike | LogArray | None = None,
        out: Gradients | None = None,
        on_underflow: str = "flush",
    ) -> Gradients:
        """Loss and gradients of every parameter (and of the input) in one engine call.

        x: (batch, n_in) or (n_in,). y: targets of the output's shape for mse
        and bce, integer labels (batch,) for cross_entropy, unused for sum.
        loss: mse (the default), sum, bce (on logits), cross_entropy (on logits).
        grad_output: instead of a loss, dL/d(output) from a larger computation
        (shape of the output: (batch, n_out), or (n_out,) for a single x), a
        float64 array or a LogArray; the pass carries it back through the
        network (vector-Jacobian product) and ``g.loss`` is None. Give either
        grad_output or y/loss, not both. On the float64 path a LogArray is
        rounded to float64 first.
        precision: "extended" (LogArrays, unbounded exponent) or "float64"
        (plain IEEE arithmetic, which under- and overflows like other frameworks).
        checkpoint: None stores every layer's activations for the backward
        sweep; an int C stores every C-th and recomputes the rest (one more
        forward pass, memory ~ depth/C + C layers); "auto" takes C ~ sqrt(depth).
        The results are bitwise the same either way.
        layers: None computes every layer's weight and bias gradients; a layer
        index, a slice or a sequence of indices (negative ones count from the
        end) computes only those, and ``g.weights[l]`` of another layer raises
        KeyError. The pass still carries dL/da back through every layer, but
        skips the others' weight-gradient products and their 16 bytes per
        parameter: with ``checkpoint="auto"`` a depth-100,000 network needs
        little beyond its weights. The selected gradients are bitwise those of
        a full pass.
        input_grad: False skips dL/dx (``g.input`` is then None) and the first
        layer's input product with it, as a training step needs; the other
        results are bitwise those of a full pass.
        out: the result of an earlier call with the same precision, layers and
        network shape: its parameter-gradient arrays are written again instead
        of allocating new ones (a training loop then reuses its memory). The
        earlier result's ``params``, ``weights`` and ``biases`` then hold the
        new values; if this call fails their contents are unspecified.

        on_underflow: "flush" (the default) makes a value below even
        loggrad's exponent range (|log2| < 2^60: e.g. sigmoid'(-1e19) =
        e^-1e19, or a confident logit's e^-1e19 in bce) an exact zero, as IEEE
        float64 does at its own range; the pass goes on, ``g.flushed`` says how
        many values were flushed and one RuntimeWarning per call where the
        first was. Counts and results are the same for any thread count and
        checkpointing. "raise" raises ExponentRangeError instead. A value
        above the range always raises ExponentRangeError.

        Ctrl-C stops a long pass within a fraction of a second with
        KeyboardInterrupt; nothing the caller owns has been changed.
        """
        return self._backward(self._params, x, y, loss, precision, checkpoint, layers, input_grad, grad_output, out,
                              on_underflow=on_underflow, stacklevel=2)

    def _backward(self, params: np.ndarray, x: npt.ArrayLike, y: Any, loss: str | None, precision: str,
                  checkpoint: Any, layers: Any, input_grad: bool, grad_output: Any, out: Gradients | None,
                  *, on_underflow: str = "flush", stacklevel: int = 1) -> Gradients:
        """backward with the parameter block ``params`` (this architecture's layout) in place of the network's."""
        _check_precision(precision)
        _check_on_underflow(on_underflow)
        if not isinstance(input_grad, (bool, np.bool_)):
            raise TypeError(f"input_grad must be True or False, got {input_grad!r}")
        if grad_output is not None:
            if y is not None or loss is not None:
                raise ValueError("backward: give either grad_output (dL/d(output)) or a loss with its targets y, "
                                 "not both")
            loss = "sum"  # not used: the engine takes grad_output in place of a loss
        elif loss is None:
            loss = "mse"
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
        cp = self._checkpoint_arg(checkpoint)
        sel = self._layer_selection(layers)
        grads = None if sel is None else int(self._blocks[sel].sum())
        reuse_m, reuse_e = self._reused(out, precision, sel)
        xa, single = self._inputs(x, precision, True, cp, 0 if reuse_m is not None else grads, bool(input_grad))
        gm = ge = None
        ya, labels = None, None
        if grad_output is not None:
            gm, ge = self._grad_output(grad_output, xa.shape[0], single, precision)
        else:
            ya, labels = self._targets(loss, y, xa.shape[0], single)
        res = _core.backward(self._arch, params, xa, loss, ya, labels, precision, bool(input_grad), cp, sel,
                             gm, ge, reuse_m, reuse_e, on_underflow)
        flushed = 0
        if len(res) == 5:  # extended, on_underflow="flush": what the pass flushed
            flushed = _warn_flushed(res[4], stacklevel + 1)
            res = res[:4]
        return self._gradients(res, precision, sel, bool(input_grad), grad_output is not None, single, out, flushed)

    def _gradients(self, res: Any, precision: str, sel: np.ndarray | None, input_grad: bool, upstream: bool,
                   single: bool, out: Gradients | None, flushed: int = 0) -> Gradients:
        """The Gradients of the engine's (loss, out, grad, dx) result."""
        off, _ = self._layout.gradient_offsets(sel)  # as the engine packs the selected layers' blocks
        loss_v: Values | None
        out_v: Values
        grad: Values
        dx: Values | None
        if precision == "extended":
            loss_v, out_v, grad, dx = (LogArray._wrap(*r) for r in res)
            if out is not None:
                grad = out.params  # the same arrays, written again
        else:
            loss_v, out_v, grad, dx = res
        ws = LayerViews(grad, off, self._widths, "weights", results=True)
        bs = LayerViews(grad, off, self._widths, "biases", results=True)
        if not input_grad:
            dx = None  # the engine returned an empty (0, n_in) array
        if upstream:
            loss_v = None
        if single:
            out_v = out_v[0]
            dx = None if dx is None else dx[0]
        return Gradients(loss=loss_v, output=out_v, weights=ws, biases=bs, input=dx, params=grad, precision=precision,
                         layers=None if sel is None else tuple(int(l) for l in sel), flushed=flushed)

    def _forward_tape(self, params: np.ndarray, x: np.ndarray, precision: str, checkpoint: Any = None, *,
                      on_underflow: str = "flush", stacklevel: int = 1) -> tuple[Values, Any]:
        """The forward half of a backward pass: (output, tape) for :meth:`_backward_tape`.

        x: (batch, n_in). The tape keeps the stored activations (as much memory
        as the backward pass's store) until the backward pass or its deletion.
        Values flushed below the exponent range warn as :meth:`forward`'s do.
        """
        _check_precision(precision)
        _check_on_underflow(on_underflow)
        cp = self._checkpoint_arg(checkpoint)
        xa, _ = self._inputs(x, precision, True, cp)
        tape = _core.Tape()
        res = _core.forward_tape(self._arch, params, xa, precision, cp, tape, on_underflow)
        out: Values
        if precision == "extended":
            if len(res) == 3:
                _warn_flushed(res[2], stacklevel + 1)
            out = LogArray._wrap(res[0], res[1])
        else:
            out = res
        return out, tape

    def _backward_tape(self, params: np.ndarray, tape: Any, grad_output: Any, precision: str,
                       layers: Any = None, input_grad: bool = True, *, on_underflow: str = "flush",
                       stacklevel: int = 1) -> Gradients:
        """The backward pass of a :meth:`_forward_tape` pass (same params) with dL/d(output) = grad_output.

        ``g.flushed`` counts what this half flushed (the forward half's count was reported by it)."""
        _check_on_underflow(on_underflow)
        sel = self._layer_selection(layers)
        gm, ge = self._grad_output(grad_output, int(tape.batch), False, precision)
        res = _core.backward_tape(self._arch, params, tape, precision, bool(input_grad), sel, gm, ge, None, None,
                                  on_underflow)
        flushed = 0
        if len(res) == 5:
            flushed = _warn_flushed(res[4], stacklevel + 1)
            res = res[:4]
        return self._gradients(res, precision, sel, bool(input_grad), True, False, None, flushed)

    def _reused(self, out: Any, precision: str, sel: np.ndarray | None) -> tuple[Any, Any]:
        """The gradient arrays of an earlier result to write into (backward(out=)), or (None, None)."""
        if out is None:
            return None, None
        if not isinstance(out, Gradients):
            raise TypeError(f"out must be the Gradients of an earlier backward call, got {type(out).__name__}")
        layers = None if sel is None else tuple(int(l) for l in sel)
        if out.precision != precision or out.layers != layers:
            raise ValueError(f"out was computed with precision={out.precision!r}, layers={out.layers}; "
                             f"this call has precision={precision!r}, layers={layers}")
        if isinstance(out.params, LogArray):
            return out.params._m, out.params._e
        return out.params, None

    def _grad_output(self, g: Any, batch: int, single: bool,
                     precision: str) -> tuple[np.ndarray, np.ndarray | None]:
        """dL/d(output) as C-contiguous planes for the engine: float64 values, or mantissas and exponents."""
        shape = (batch, self.n_out)
        if isinstance(g, LogArray):
            if single and g.shape == (self.n_out,):
                g = g[None, :]
            if g.shape != shape:
                raise ValueError(f"grad_output has shape {g.shape}; expected {shape} (the output's shape)")
            if precision == "float64":
                return np.ascontiguousarray(g.to_numpy()), None
            return np.ascontiguousarray(g.mantissa), np.ascontiguousarray(g.exponent, dtype=np.int64)
        ga = _as_float_array(g, "grad_output")
        if single and ga.shape == (self.n_out,):
            ga = ga[None, :]
        if ga.shape != shape:
            raise ValueError(f"grad_output has shape {np.shape(g)}; expected {shape} (the output's shape)")
        _check_finite(ga, "grad_output")
        return np.ascontiguousarray(ga), None
