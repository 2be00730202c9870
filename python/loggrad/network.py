"""Network: a dense chain whose passes run in the C++ engine.

The parameters live in one contiguous float64 block owned by the Network
(``net.params``); ``net.weights[l]`` and ``net.biases[l]`` are views into it.
The arrays a user passes in are copied, so no call ever changes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from . import _core
from ._logarray import LogArray

__all__ = ["Network", "Gradients", "ACTIVATIONS", "LOSSES", "PRECISIONS"]

ACTIVATIONS: tuple[str, ...] = tuple(_core.activation_names())
LOSSES: tuple[str, ...] = tuple(_core.loss_names())
PRECISIONS: tuple[str, ...] = ("extended", "float64")
_ALIASES = {"linear": "identity"}

Values = Union[LogArray, np.ndarray]


def _canonical_activation(name: Any, where: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"{where}: activation must be a name (str), got {type(name).__name__}")
    canon: str = _ALIASES.get(name, name)
    if canon not in ACTIVATIONS:
        raise ValueError(
            f"{where}: unknown activation {canon!r}; valid: {', '.join(ACTIVATIONS)} (and 'linear' for identity)"
        )
    return canon


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    return precision


def _as_float_array(a: Any, what: str) -> np.ndarray:
    """float64 copy-free view where possible; numbers only (bool, int, float)."""
    if isinstance(a, LogArray):
        raise TypeError(f"{what} must be float64 values, not a LogArray (use .to_numpy())")
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{what} must be numeric (float or int), got dtype {arr.dtype}")
    return np.asarray(arr, dtype=np.float64)


def _check_finite(a: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(f"{what} has a non-finite value ({a[tuple(bad)]}) at {list(map(int, bad))}")


class LayerViews(Sequence[Any]):
    """Per-layer views into a flat parameter-layout array, made on access.

    ``kind`` is "weights" (shape (n_out, n_in)) or "biases" (shape (n_out,)).
    Creating a result costs O(1) in the depth; a view costs O(1) when indexed.
    """

    __slots__ = ("_flat", "_w_off", "_widths", "_kind")

    def __init__(self, flat: Any, w_off: np.ndarray, widths: np.ndarray, kind: str) -> None:
        self._flat, self._w_off, self._widths, self._kind = flat, w_off, widths, kind

    def __len__(self) -> int:
        return len(self._widths) - 1

    def _one(self, l: int) -> Any:
        n_in, n_out = int(self._widths[l]), int(self._widths[l + 1])
        wo = int(self._w_off[l])
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

    loss:    the loss value
    output:  the network output (batch, n_out)
    weights: dL/dW per layer, shapes of the weights
    biases:  dL/db per layer
    input:   dL/dx, shape of x
    params:  all parameter gradients in the parameter-block layout
    """

    loss: Values
    output: Values
    weights: Sequence[Values]
    biases: Sequence[Values]
    input: Values
    params: Values
    precision: str

    def __repr__(self) -> str:
        return (
            f"Gradients(precision={self.precision!r}, loss={self.loss!r}, "
            f"layers={len(self.weights)})"
        )


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
    """

    def __init__(
        self,
        weights: Sequence[npt.ArrayLike] | np.ndarray,
        biases: Sequence[npt.ArrayLike] | None = None,
        activations: str | Sequence[str] = "identity",
    ) -> None:
        if isinstance(weights, np.ndarray) and weights.ndim == 2:  # a single layer
            weights = [weights]
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
            _check_finite(w, f"weights[{l}]")
        depth = len(ws)
        if biases is None:
            bs = [np.zeros(w.shape[0]) for w in ws]
        else:
            if len(biases) != depth:
                raise ValueError(f"got {len(biases)} bias vectors for {depth} layers")
            bs = [_as_float_array(b, f"biases[{l}]") for l, b in enumerate(biases)]
            for l, b in enumerate(bs):
                if b.shape != (ws[l].shape[0],):
                    raise ValueError(f"biases[{l}] has shape {b.shape}; expected ({ws[l].shape[0]},)")
                _check_finite(b, f"biases[{l}]")
        if isinstance(activations, str):
            acts = [_canonical_activation(activations, "activations")] * depth
        else:
            acts = [_canonical_activation(a, f"activations[{l}]") for l, a in enumerate(activations)]
            if len(acts) != depth:
                raise ValueError(f"got {len(acts)} activations for {depth} layers (give one name or one per layer)")
        widths = [ws[0].shape[1]] + [w.shape[0] for w in ws]
        self._arch = _core.Architecture(widths, acts)
        self._widths = np.asarray(widths, dtype=np.int64)
        # weight offsets: layer l occupies n_{l+1} * (n_l + 1) values (W then b)
        self._w_off = np.concatenate([[0], np.cumsum(self._widths[1:] * (self._widths[:-1] + 1))])[:-1]
        parts = [p for w, b in zip(ws, bs) for p in (w.ravel(), b)]
        self._params = np.ascontiguousarray(np.concatenate(parts), dtype=np.float64)

    # -- construction helpers -----------------------------------------------
    @classmethod
    def _from_block(cls, widths: Sequence[int], activations: Sequence[str], params: np.ndarray) -> Network:
        w = np.asarray(widths, dtype=np.int64)
        w_off = np.concatenate([[0], np.cumsum(w[1:] * (w[:-1] + 1))])[:-1]
        return cls(LayerViews(params, w_off, w, "weights"), LayerViews(params, w_off, w, "biases"), list(activations))

    @classmethod
    def build(
        cls,
        widths: Sequence[int],
        activation: str | Sequence[str] = "tanh",
        init: Any = "lecun_normal",
        bias_init: Any = "zeros",
        seed: int | None = None,
        gain: float | None = None,
    ) -> Network:
        """A chain widths[0] -> ... -> widths[-1] with initialised parameters.

        activation: one name or one per layer. init / bias_init: an
        initializer name (see :mod:`loggrad.init`), an Initializer, a callable
        ``(shape, rng) -> array``, or a list with one per layer. seed: the
        draws are reproducible across runs and machines. gain: the gamma
        multiplying the initializer's standard deviation (or limit).
        """
        from .init import init_layers

        w = [int(v) for v in widths]
        if len(w) < 2:
            raise ValueError(f"widths needs at least two entries (inputs and outputs), got {list(widths)}")
        if min(w) < 1:
            raise ValueError(f"every width must be at least 1, got {w}")
        ws, bs = init_layers(w, init, bias_init=bias_init, seed=seed, gain=gain)
        return cls(ws, bs, activation)

    @classmethod
    def from_torch(cls, model: Any) -> Network:
        """From a torch ``nn.Sequential`` of Linear and activation modules; see :mod:`loggrad.interop`."""
        from .interop import from_torch

        return from_torch(model)

    def to_torch(self) -> Any:
        """As a float64 torch ``nn.Sequential``."""
        from .interop import to_torch

        return to_torch(self)

    def save(self, path: Any) -> None:
        """Save to a .npz file (widths, activations, parameters)."""
        from .interop import save

        save(self, path)

    @classmethod
    def load(cls, path: Any) -> Network:
        """Load a network saved with :meth:`save`."""
        from .interop import load

        return load(path)

    def copy(self) -> Network:
        """An independent network with the same parameters."""
        return Network._from_block(self.widths, self.activations, self._params.copy())

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
    def weights(self) -> LayerViews:
        """Weight matrices, views into the parameter block (writes change the network)."""
        return LayerViews(self._params, self._w_off, self._widths, "weights")

    @property
    def biases(self) -> LayerViews:
        """Bias vectors, views into the parameter block."""
        return LayerViews(self._params, self._w_off, self._widths, "biases")

    @property
    def params(self) -> np.ndarray:
        """All parameters in one contiguous block: W_0, b_0, W_1, b_1, ..."""
        return self._params

    @property
    def param_count(self) -> int:
        return int(self._arch.param_count)

    def __repr__(self) -> str:
        acts = set(self.activations)
        act = next(iter(acts)) if len(acts) == 1 else "mixed"
        w = self.widths
        shown: list[int | str] = [*w] if len(w) <= 8 else [*w[:3], "...", *w[-3:]]
        return f"Network(depth={self.depth}, widths={shown}, activation={act!r}, params={self.param_count})"

    # -- passes ---------------------------------------------------------------
    def _inputs(self, x: npt.ArrayLike) -> tuple[np.ndarray, bool]:
        xa = _as_float_array(x, "x")
        single = xa.ndim == 1
        if single:
            xa = xa[None, :]
        if xa.ndim != 2 or xa.shape[1] != self.n_in:
            raise ValueError(f"x has shape {np.shape(x)}; expected (batch, {self.n_in}) or ({self.n_in},)")
        if xa.shape[0] == 0:
            raise ValueError("x is empty: the batch needs at least one row")
        return np.ascontiguousarray(xa), single

    def forward(self, x: npt.ArrayLike, precision: str = "extended") -> Values:
        """Network output for x of shape (batch, n_in) or (n_in,).

        Returns a LogArray on the extended path (values beyond float64 range
        are carried exactly), an ndarray on the float64 path.
        """
        _check_precision(precision)
        xa, single = self._inputs(x)
        out: Values
        if precision == "extended":
            out = LogArray._wrap(*_core.forward(self._arch, self._params, xa, "extended"))
        else:
            out = _core.forward(self._arch, self._params, xa, "float64")
        return out[0] if single else out

    def sgd_step(self, x: npt.ArrayLike, y: npt.ArrayLike | None, lr: float, loss: str = "mse",
                 clip_norm: float | None = None, clip_value: float | None = None) -> Any:
        """One SGD step in place; see :func:`loggrad.train.sgd_step` (returns a StepReport)."""
        from .train import sgd_step

        return sgd_step(self, x, y, lr, loss, clip_norm, clip_value)

    def fit(self, x: npt.ArrayLike, y: npt.ArrayLike | None, lr: float, epochs: int = 10,
            batch_size: int | None = None, loss: str = "mse", **kwargs: Any) -> Any:
        """Minibatch SGD; see :func:`loggrad.train.fit` (returns a History)."""
        from .train import fit

        return fit(self, x, y, lr, epochs, batch_size, loss, **kwargs)

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
            lab = np.asarray(y)
            if lab.dtype.kind == "f":
                if not np.all(np.isfinite(lab)) or np.any(lab != np.round(lab)):
                    raise TypeError("cross_entropy labels must be integer class indices")
            elif lab.dtype.kind not in "iu":
                raise TypeError(f"cross_entropy labels must be integer class indices, got dtype {lab.dtype}")
            lab = lab.reshape(-1) if single and lab.ndim == 0 else lab
            if lab.shape != (batch,):
                raise ValueError(f"cross_entropy labels have shape {np.shape(y)}; expected ({batch},)")
            lab = lab.astype(np.int64)
            bad = (lab < 0) | (lab >= self.n_out)
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"label {int(lab[i])} at row {i} is out of range for {self.n_out} classes (0..{self.n_out - 1})")
            return None, lab
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
        loss: str = "mse",
        precision: str = "extended",
        checkpoint: int | str | None = None,
    ) -> Gradients:
        """Loss and gradients of every parameter (and of the input) in one engine call.

        x: (batch, n_in) or (n_in,). y: targets of the output's shape for mse
        and bce, integer labels (batch,) for cross_entropy, unused for sum.
        loss: mse, sum, bce (on logits), cross_entropy (on logits).
        precision: "extended" (LogArrays, unbounded exponent) or "float64"
        (plain IEEE arithmetic, which under- and overflows like other frameworks).
        checkpoint: None stores every layer's activations for the backward
        sweep; an int C stores every C-th and recomputes the rest (one more
        forward pass, memory ~ depth/C + C layers); "auto" takes C ~ sqrt(depth).
        The results are bitwise the same either way.
        """
        _check_precision(precision)
        xa, single = self._inputs(x)
        ya, labels = self._targets(loss, y, xa.shape[0], single)
        if checkpoint is None:
            cp = 0
        elif checkpoint == "auto":
            cp = -1
        elif isinstance(checkpoint, (int, np.integer)) and not isinstance(checkpoint, bool) and checkpoint >= 1:
            cp = int(checkpoint)
        else:
            raise ValueError(f"checkpoint must be None, 'auto' or a positive segment length, got {checkpoint!r}")
        res = _core.backward(self._arch, self._params, xa, loss, ya, labels, precision, True, cp)
        loss_v: Values
        out: Values
        grad: Values
        dx: Values
        if precision == "extended":
            loss_v, out, grad, dx = (LogArray._wrap(*r) for r in res)
        else:
            loss_v, out, grad, dx = res  # type: ignore[assignment]  # float64 overload: ndarrays
        ws = LayerViews(grad, self._w_off, self._widths, "weights")
        bs = LayerViews(grad, self._w_off, self._widths, "biases")
        if single:
            out, dx = out[0], dx[0]
        return Gradients(loss=loss_v, output=out, weights=ws, biases=bs, input=dx, params=grad, precision=precision)
