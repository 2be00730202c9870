"""Training steps with exact bookkeeping, and gradient clipping in extended range.

``w_new = w_old - lr * dL/dw`` is applied in float64 (the weights are
float64), but the update ``lr * dL/dw`` is formed exactly: the step reports,
per layer, how many weights it left unchanged because the update was below
half an ulp of the weight — the "w_new ≈ w_old" of the vanishing-gradient
problem made exact — and the exact log10 size of the update.

Clipping works on extended gradients, so a gradient whose norm is 10^400
is scaled to a finite update instead of turning into inf/nan (as
``torch.nn.utils.clip_grad_norm_`` does once the norm overflows).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._logarray import LogArray

if TYPE_CHECKING:
    from .network import Gradients, Network

__all__ = ["StepReport", "History", "clip_grad_norm", "clip_grad_value", "layer_norms", "sgd_step", "fit"]

_LOG10_2 = float(np.log10(2.0))


def _layer_bounds(net: Network) -> tuple[np.ndarray, np.ndarray]:
    """Start offset of each layer's block (W then b) and its size."""
    w = np.asarray(net.widths, dtype=np.int64)
    sizes = w[1:] * (w[:-1] + 1)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return starts, sizes


def layer_norms(g: LogArray, net: Network) -> LogArray:
    """Euclidean norm of each layer's gradient block (weights and bias), exact in range.

    Vectorised over layers: each block is scaled by its own largest exponent.
    """
    starts, sizes = _layer_bounds(net)
    m = g.mantissa
    e = np.where(m == 0, np.iinfo(np.int64).min // 4, g.exponent)
    emax = np.maximum.reduceat(e, starts)
    emax = np.where(emax < -(2**60), 0, emax)
    d = np.clip(e - np.repeat(emax, sizes), -3000, 0).astype(np.int32)
    with np.errstate(under="ignore"):
        scaled = np.ldexp(m, d)
    s = np.sqrt(np.add.reduceat(scaled * scaled, starts))
    return LogArray.from_parts(s, emax)


def clip_grad_norm(g: LogArray, max_norm: float) -> tuple[LogArray, LogArray]:
    """Scale g so that its global Euclidean norm is at most max_norm.

    Returns (clipped gradient, norm before clipping). Works for any norm,
    10^400 or 10^-400 alike; the scale factor is formed in extended range.
    """
    if not (np.isfinite(max_norm) and max_norm > 0):
        raise ValueError(f"max_norm must be a positive finite number, got {max_norm}")
    norm = g.norm()
    if float(norm.log2()) <= np.log2(max_norm):
        return g, norm
    return g * (LogArray(max_norm) / norm), norm


def clip_grad_value(g: LogArray, clip_value: float) -> LogArray:
    """Clamp every gradient entry to [-clip_value, clip_value]."""
    if not (np.isfinite(clip_value) and clip_value > 0):
        raise ValueError(f"clip_value must be a positive finite number, got {clip_value}")
    over = g.log2() > np.log2(clip_value)
    m = np.where(over, np.sign(g.mantissa) * clip_value, g.mantissa)
    e = np.where(over, 0, g.exponent)
    return LogArray.from_parts(m, e)


@dataclass(frozen=True)
class StepReport:
    """What one SGD step did, per layer (index l) and in total.

    loss:            loss before the step
    unchanged:       weights (and biases) whose update was nonzero but below
                     half an ulp, so float64 left them exactly as they were
    nonzero_updates: entries whose exact update was nonzero
    update_log10_max: log10 of the largest |lr * dL/dw| in each layer (exact)
    update_norm:     Euclidean norm of each layer's update (LogArray)
    grad_layer_norm: Euclidean norm of each layer's gradient before clipping (LogArray)
    grad_norm:       global gradient norm before clipping (LogArray)
    clipped:         whether clipping changed the gradient
    """

    loss: LogArray
    unchanged: np.ndarray
    nonzero_updates: np.ndarray
    update_log10_max: np.ndarray
    update_norm: LogArray
    grad_layer_norm: LogArray
    grad_norm: LogArray
    clipped: bool

    @property
    def fraction_unchanged(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.nonzero_updates > 0, self.unchanged / np.maximum(self.nonzero_updates, 1), 0.0)


def _positive_real(name: str, v: Any) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    if not (math.isfinite(float(v)) and float(v) > 0):
        raise ValueError(f"{name} must be a positive finite number, got {v}")
    return float(v)


def _positive_int(name: str, v: Any) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(v).__name__}")
    if v < 1:
        raise ValueError(f"{name} must be >= 1, got {v}")
    return int(v)


def sgd_step(
    net: Network,
    x: npt.ArrayLike,
    y: npt.ArrayLike | None,
    lr: float,
    loss: str = "mse",
    clip_norm: float | None = None,
    clip_value: float | None = None,
) -> StepReport:
    """One step ``w -= lr * dL/dw`` on every parameter, with exact bookkeeping.

    The gradient is computed on the extended path; clipping (by global norm
    and/or by value) is applied to it in extended range; the update is then
    rounded to float64 and subtracted. If the new parameters would not be
    finite (an update beyond float64 range), nothing is changed and
    FloatingPointError is raised: clip the gradient. A failed step leaves the
    network exactly as it was.
    """
    lr = _positive_real("lr", lr)
    g = net.backward(x, y, loss=loss, input_grad=False)
    grad = g.params
    assert isinstance(grad, LogArray)
    norm = grad.norm()
    clipped = False
    if clip_norm is not None:
        grad, _ = clip_grad_norm(grad, clip_norm)
        clipped = grad is not g.params
    if clip_value is not None:
        before = grad
        grad = clip_grad_value(grad, clip_value)
        clipped = clipped or not np.array_equal(before.mantissa, grad.mantissa)
    update = grad * lr  # exact product, extended
    u = update.to_numpy()  # rounded to float64: 0 below float64 range
    old = net.params
    with np.errstate(over="ignore", invalid="ignore"):
        new = old - u
    if not np.all(np.isfinite(new)):
        bad = int(np.argmax(~np.isfinite(new)))
        raise FloatingPointError(
            f"the update of parameter {bad} (10^{float(update.log10()[bad]):.1f}) overflows float64 weights; "
            "nothing was changed (use clip_norm= or clip_value=)"
        )
    nonzero = update.mantissa != 0
    unchanged = nonzero & (new == old)
    starts, _ = _layer_bounds(net)
    report = StepReport(
        loss=g.loss if isinstance(g.loss, LogArray) else LogArray(g.loss),
        unchanged=np.add.reduceat(unchanged.astype(np.int64), starts),
        nonzero_updates=np.add.reduceat(nonzero.astype(np.int64), starts),
        update_log10_max=np.maximum.reduceat(update.log10(), starts),
        update_norm=layer_norms(update, net),
        grad_layer_norm=layer_norms(g.params, net),  # type: ignore[arg-type]  # extended path
        grad_norm=norm,
        clipped=clipped,
    )
    old[...] = new
    return report


@dataclass
class History:
    """Per-epoch record of ``fit``: loss, per-layer gradient norms (log10), lost updates."""

    loss: list[float] = field(default_factory=list)
    loss_log10: list[float] = field(default_factory=list)
    grad_norm_log10: list[np.ndarray] = field(default_factory=list)
    fraction_unchanged: list[np.ndarray] = field(default_factory=list)

    def __repr__(self) -> str:
        """A summary of bounded size (the per-layer arrays of a deep network run to megabytes)."""

        def seq(v: Any) -> str:
            return np.array2string(np.asarray(v, dtype=np.float64), precision=4, threshold=6, edgeitems=3,
                                   separator=", ", max_line_width=10**6)

        parts = [f"epochs={len(self.loss)}", f"loss={seq(self.loss)}"]
        if self.loss_log10:
            parts.append(f"loss_log10={seq(self.loss_log10)}")
        if self.grad_norm_log10:
            last = np.asarray(self.grad_norm_log10[-1], dtype=np.float64)
            parts.append(f"grad_norm_log10[-1]={seq(last)} ({last.size} layers)")
        if self.fraction_unchanged:
            parts.append(f"fraction_unchanged[-1]={seq(self.fraction_unchanged[-1])}")
        return f"History({', '.join(parts)})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "loss": list(self.loss),
            "loss_log10": list(self.loss_log10),
            "grad_norm_log10": [g.tolist() for g in self.grad_norm_log10],
            "fraction_unchanged": [f.tolist() for f in self.fraction_unchanged],
        }


def fit(
    net: Network,
    x: npt.ArrayLike,
    y: npt.ArrayLike | None,
    lr: float,
    epochs: int = 10,
    batch_size: int | None = None,
    loss: str = "mse",
    shuffle: bool = True,
    seed: int | None = 0,
    clip_norm: float | None = None,
    clip_value: float | None = None,
) -> History:
    """Minibatch SGD on numpy data; returns the per-epoch History.

    Each epoch records the mean loss over its batches and, from its last
    step, the per-layer gradient norms (log10, exact) and the fraction of
    updates lost below half an ulp.
    """
    lr = _positive_real("lr", lr)
    epochs = _positive_int("epochs", epochs)
    if batch_size is not None:
        batch_size = _positive_int("batch_size", batch_size)
    xa = np.asarray(x, dtype=np.float64)
    if xa.ndim != 2:
        raise ValueError(f"x must be 2-D (samples, n_in), got shape {xa.shape}")
    n = xa.shape[0]
    ya = None if y is None else np.asarray(y)
    if ya is not None and ya.shape[0] != n:
        raise ValueError(f"x has {n} samples but y has {ya.shape[0]}")
    bs = n if batch_size is None else batch_size
    rng = np.random.default_rng(seed)
    hist = History()
    for _ in range(epochs):
        order = rng.permutation(n) if shuffle else np.arange(n)
        losses: list[LogArray] = []
        rep = None
        for start in range(0, n, bs):
            idx = order[start : start + bs]
            rep = sgd_step(net, xa[idx], None if ya is None else ya[idx], lr, loss, clip_norm, clip_value)
            losses.append(rep.loss)
        assert rep is not None
        mean_loss = _mean(losses)
        hist.loss.append(float(mean_loss.to_numpy()))
        hist.loss_log10.append(float(mean_loss.log10()))
        hist.grad_norm_log10.append(rep.grad_layer_norm.log10())
        hist.fraction_unchanged.append(rep.fraction_unchanged)
    return hist


def _mean(values: Sequence[LogArray]) -> LogArray:
    stacked = LogArray.from_parts(np.array([v.mantissa for v in values]), np.array([v.exponent for v in values]))
    return stacked.sum() / LogArray(float(len(values)))

