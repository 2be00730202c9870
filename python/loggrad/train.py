"""Training steps with exact bookkeeping, and gradient clipping in extended range.

``w_new = w_old - lr * dL/dw`` is applied in float64 (the weights are
float64), but the update ``lr * dL/dw`` is formed exactly: the step reports,
per layer, how many weights it left unchanged because the update was below
half an ulp of the weight — the "w_new ≈ w_old" of the vanishing-gradient
problem made exact — and the exact log10 size of the update.

Clipping works on extended gradients, so a gradient whose norm is 10^400
is scaled to a finite update instead of turning into inf/nan (as
``torch.nn.utils.clip_grad_norm_`` does once the norm overflows).

``sgd_step`` and ``fit`` hand the step to the engine (``_core.sgd_step``):
clipping, the update and every figure of the report in a few sweeps over the
parameters, bitwise what the numpy formulation (``clip_grad_norm``,
``clip_grad_value``, ``layer_norms`` and LogArray products) gives.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import _core
from ._logarray import LogArray, _normalize

if TYPE_CHECKING:
    from .network import Gradients, Network

__all__ = [
    "StepReport",
    "History",
    "FitInterrupted",
    "clip_grad_norm",
    "clip_grad_value",
    "layer_norms",
    "sgd_step",
    "fit",
]


def layer_norms(g: LogArray, net: Network) -> LogArray:
    """Euclidean norm of each layer's gradient block (weights and bias), exact in range.

    One engine call over all layers: each block is scaled by its own largest
    exponent, and its sum of squares is formed as numpy's ``np.add.reduceat``
    forms it (so the norms are bitwise those of a training step's
    ``grad_layer_norm``).
    """
    lay = net.layout
    emax, s = _core.segment_norms(np.ravel(g.mantissa), np.ravel(g.exponent), lay.starts, lay.sizes)
    return LogArray.from_parts(s, emax)


def _exceeds(m: Any, e: Any, limit: float) -> Any:
    """Whether |m 2^e| > limit, exactly, for a LogArray's parts (|m| in [0.5, 1), or 0) and a
    positive finite float limit = fm 2^fe (frexp): the exponents decide, then the mantissas."""
    fm, fe = math.frexp(float(limit))
    am = np.abs(m)
    return (am != 0) & ((e > fe) | ((e == fe) & (am > fm)))


def clip_grad_norm(g: LogArray, max_norm: float) -> tuple[LogArray, LogArray]:
    """Scale g so that its global Euclidean norm is at most max_norm.

    Returns (clipped gradient, norm before clipping). Works for any norm,
    10^400 or 10^-400 alike; the scale factor is formed in extended range.
    """
    if not (np.isfinite(max_norm) and max_norm > 0):
        raise ValueError(f"max_norm must be a positive finite number, got {max_norm}")
    norm = g.norm()
    if not _exceeds(norm.mantissa, norm.exponent, max_norm):
        return g, norm
    return g * (LogArray(max_norm) / norm), norm


def clip_grad_value(g: LogArray, clip_value: float) -> LogArray:
    """Clamp every gradient entry to [-clip_value, clip_value]."""
    if not (np.isfinite(clip_value) and clip_value > 0):
        raise ValueError(f"clip_value must be a positive finite number, got {clip_value}")
    over = _exceeds(g.mantissa, g.exponent, clip_value)
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

    def __repr__(self) -> str:
        """A summary of bounded size; the per-layer arrays are the attributes."""
        lost, nz = int(np.sum(self.unchanged)), int(np.sum(self.nonzero_updates))
        frac = self.fraction_unchanged
        worst = int(np.argmax(frac)) if frac.size else 0
        um = np.asarray(self.update_log10_max, dtype=np.float64)
        fin = um[np.isfinite(um)]
        span = f"{fin.min():.2f} .. {fin.max():.2f}" if fin.size else "none (all updates zero)"
        parts = [
            f"{len(self.unchanged)} layers",
            f"loss={self.loss!r}",
            f"grad_norm={self.grad_norm!r}",
            f"clipped={self.clipped}",
            f"log10 max |update| per layer {span}",
            f"updates lost below half an ulp: {lost} of {nz}"
            + (f" (most in layer {worst}: {frac[worst]:.1%})" if lost else ""),
        ]
        return f"StepReport({', '.join(parts)})"


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
    cn = _clip_arg("max_norm", clip_norm)
    cv = _clip_arg("clip_value", clip_value)
    g = net.backward(x, y, loss=loss, input_grad=False)
    return _apply(net, g, lr, cn, cv, net.layout.offsets)


def _threshold(limit: float) -> tuple[float, int, float]:
    """``limit`` as the engine's test for |m 2^e| > limit: e > e_star, or e == e_star and |m| >= m_star.

    For a normal-form value (|m| in [0.5, 1)) and limit = fm 2^fe (frexp):
    e_star = fe and m_star the smallest float64 above fm (1.0, which no
    mantissa reaches, when fm is the largest below 1). Exact, as
    :func:`_exceeds` is: the engine clips what clip_grad_norm and
    clip_grad_value clip.
    """
    fm, fe = math.frexp(float(limit))
    return float(limit), fe, math.nextafter(fm, math.inf)


def _clip_arg(name: str, v: Any) -> tuple[float, int, float] | None:
    if v is None:
        return None
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number, got {v}")
    return _threshold(v)


def _from_block_norms(s: np.ndarray, emax: np.ndarray) -> LogArray:
    """Block norms as layer_norms forms them: an all-zero block has the reference exponent 0."""
    return LogArray.from_parts(s, np.where(emax < -(2**60), 0, emax))


def _apply(
    net: Network,
    g: Gradients,
    lr: float,
    clip_norm: tuple[float, int, float] | None,
    clip_value: tuple[float, int, float] | None,
    bounds: np.ndarray,
) -> StepReport:
    """The update of one step from its gradient, in one engine call; the report."""
    grad = g.params
    assert isinstance(grad, LogArray)  # extended path
    r: dict[str, Any] = _core.sgd_step(net.params, grad.mantissa, grad.exponent, bounds, lr, clip_norm, clip_value)
    if r["bad_index"] >= 0:
        bad = int(r["bad_index"])
        um, ue = r["bad_update"]
        l10 = float(LogArray._wrap(np.asarray(um), np.asarray(ue, dtype=np.int64)).log10())
        raise FloatingPointError(
            f"the update of parameter {bad} (10^{l10:.1f}) overflows float64 weights; "
            "nothing was changed (use clip_norm= or clip_value=)"
        )
    top = r["update_emax"]
    # The largest float64 log10 of a block's updates is that of its largest
    # mantissa at the top exponent or, by rounding, at the one below.
    log10_max = np.maximum(
        LogArray._wrap(r["update_top0"], top).log10(), LogArray._wrap(r["update_top1"], top - 1).log10()
    )
    norm = LogArray._wrap(*_normalize(np.asarray(r["total_norm"]), np.asarray(r["total_emax"], dtype=np.int64)))
    return StepReport(
        loss=g.loss if isinstance(g.loss, LogArray) else LogArray(np.asarray(g.loss)),
        unchanged=r["unchanged"],
        nonzero_updates=r["nonzero"],
        update_log10_max=log10_max,
        update_norm=_from_block_norms(r["update_norm"], top),
        grad_layer_norm=_from_block_norms(r["grad_norm"], r["grad_emax"]),
        grad_norm=norm,
        clipped=bool(r["clipped"]),
    )


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


class FitInterrupted(KeyboardInterrupt):
    """Ctrl-C (KeyboardInterrupt) during ``fit``.

    The network is as after the last completed step, never half-updated.
    ``history`` holds the completed epochs, ``steps`` the number of completed
    steps, ``epoch_losses`` the losses of the steps of the unfinished epoch.
    """

    def __init__(self, history: History, steps: int, epoch_losses: list[float]) -> None:
        super().__init__(
            f"fit interrupted after {steps} steps ({len(history.loss)} complete epochs); "
            "the network is as after the last completed step"
        )
        self.history = history
        self.steps = steps
        self.epoch_losses = epoch_losses


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[None]:
    """Holds Ctrl-C back until the block is done, then raises it.

    An update and its record must happen together: a KeyboardInterrupt raised
    between the engine's return and the bookkeeping would leave a completed
    step unrecorded. Only the main thread receives SIGINT, and only Python's
    default handler is replaced, briefly.
    """
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    pending: list[Any] = []
    signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if pending:
        raise KeyboardInterrupt


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
    updates lost below half an ulp. Every step is ``sgd_step``'s, bitwise.

    Ctrl-C raises :class:`FitInterrupted` (a KeyboardInterrupt) with the
    history so far; the network is left as after the last completed step.
    """
    lr = _positive_real("lr", lr)
    epochs = _positive_int("epochs", epochs)
    if batch_size is not None:
        batch_size = _positive_int("batch_size", batch_size)
    cn = _clip_arg("max_norm", clip_norm)
    cv = _clip_arg("clip_value", clip_value)
    xa = np.asarray(x, dtype=np.float64)
    if xa.ndim != 2:
        raise ValueError(f"x must be 2-D (samples, n_in), got shape {xa.shape}")
    n = xa.shape[0]
    if n == 0:
        raise ValueError(f"x has no samples (shape {xa.shape})")
    ya = None if y is None else np.asarray(y)
    if ya is not None and ya.shape[0] != n:
        raise ValueError(f"x has {n} samples but y has {ya.shape[0]}")
    bs = n if batch_size is None else batch_size
    bounds = net.layout.offsets
    rng = np.random.default_rng(seed)
    hist = History()
    steps = 0
    losses: list[LogArray] = []
    g: Gradients | None = None  # the previous step's gradient: its memory takes the next one
    try:
        for _ in range(epochs):
            order = rng.permutation(n) if shuffle else np.arange(n)
            losses = []
            rep = None
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                g = net.backward(xa[idx], None if ya is None else ya[idx], loss=loss, input_grad=False, out=g)
                with _deferred_interrupt():
                    rep = _apply(net, g, lr, cn, cv, bounds)
                    losses.append(rep.loss)
                    steps += 1
            assert rep is not None
            mean_loss = _mean(losses)
            with _deferred_interrupt():
                hist.loss.append(float(mean_loss.to_numpy()))
                hist.loss_log10.append(float(mean_loss.log10()))
                hist.grad_norm_log10.append(rep.grad_layer_norm.log10())
                hist.fraction_unchanged.append(rep.fraction_unchanged)
                losses = []
    except KeyboardInterrupt as exc:
        raise FitInterrupted(hist, steps, [float(v.to_numpy()) for v in losses]) from exc
    return hist


def _mean(values: Sequence[LogArray]) -> LogArray:
    stacked = LogArray.from_parts(np.array([v.mantissa for v in values]), np.array([v.exponent for v in values]))
    return stacked.sum() / LogArray(float(len(values)))

