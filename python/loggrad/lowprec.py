"""What a low-precision backward pass of a network actually produces.

:func:`low_precision_pass` runs the forward and backward pass of a loggrad
network in float32 (or bfloat16, through ``ml_dtypes``, optional), the way a
framework would: every matrix product, bias, activation, derivative and
elementwise product rounded to the format, so that underflow, subnormal
precision loss and overflow happen where they would in practice -- unlike
the range check of each exact value against the format (the report's
``f32_underflow`` columns), which says nothing about values that a real pass
has already flushed upstream.

bfloat16 is simulated as mixed-precision hardware computes it: products
accumulated in float32, each result rounded to bfloat16.

It is a simulation in numpy, one vectorised step per layer; the activation
functions and derivatives are :func:`loggrad.theory.phi` and
:func:`loggrad.theory.phi_prime` (float64, the engine's float64 formulas),
rounded to the format.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .network import Network

__all__ = ["low_precision_pass", "FORMATS"]

FORMATS = ("float32", "bfloat16")


def _dtype(fmt: str) -> Any:
    if fmt == "float32":
        return np.float32
    if fmt == "bfloat16":
        try:
            import ml_dtypes
        except ImportError as exc:
            raise ImportError("bfloat16 needs ml_dtypes: pip install ml_dtypes (jax installs it)") from exc
        return ml_dtypes.bfloat16
    raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")


def low_precision_pass(net: Network, x: npt.ArrayLike, y: npt.ArrayLike | None = None, loss: str = "mse",
                       fmt: str = "float32") -> dict[str, Any]:
    """Backward pass of net in fmt ("float32" or "bfloat16"), summarised per layer.

    loss: any of the engine's losses, with its targets as
    :meth:`Network.backward` takes them: "mse" (mean over every output) and
    "bce" (on logits, mean over every output) with targets y, "cross_entropy"
    (softmax over each row, mean over rows) with integer class labels y, and
    "sum" without targets. Each loss gradient is formed as a framework forms
    it, in float32 (for bfloat16 too), and rounded to fmt. Residual layers
    (``a_{l+1} = a_l + s f(z_l)``) are simulated with their skip connections:
    the branch scaled by s, the sum rounded, and the skip's gradient added to
    the branch's in the backward pass.

    Returns a dict with, per layer (index 0 = input layer, arrays of depth
    entries): ``zero_frac`` (fraction of dW_l's entries that are exactly 0),
    ``subnormal_frac`` (nonzero but below the format's smallest normal: fewer
    significant bits), ``nonfinite_frac`` (inf or nan), ``log10_norm``
    (log10 ||dW_l|| as the format computes it; -inf if all zero, nan if not
    finite); and ``first_zero_layer`` (scanning from the output, the first
    layer whose whole dW is zero; None), ``first_nonfinite_layer``,
    ``forward_overflow`` (the forward pass reached inf or nan).
    """
    dt = _dtype(fmt)
    acc = np.float32  # accumulation type of the products (float32 for both formats)
    from . import theory

    xa = np.asarray(x, dtype=np.float64)
    single = xa.ndim == 1
    if single:
        xa = xa[None, :]
    if xa.ndim != 2 or xa.shape[1] != net.n_in:
        raise ValueError(f"x has shape {np.shape(x)}; expected (batch, {net.n_in}) or ({net.n_in},)")
    L, B = net.depth, xa.shape[0]
    ya, labels = net._targets(loss, y, B, single)  # the engine's checks and messages
    acts = net.activations
    scales = net.residual
    Ws = [np.asarray(w).astype(dt) for w in net.weights]
    bs = [np.asarray(b).astype(dt) for b in net.biases]

    def rnd(v: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            return np.asarray(v).astype(dt)

    def mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            return rnd(a.astype(acc) @ b.astype(acc))

    a = [rnd(xa)]
    ders = []
    for l in range(L):
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            z = rnd(mm(a[-1], Ws[l].T).astype(acc) + bs[l].astype(acc))
            zf = z.astype(np.float64)
            branch = rnd(theory.phi(acts[l], zf))
            s = scales[l]
            if s is not None:  # a_{l+1} = a_l + s f(z_l), each operation rounded
                branch = rnd(a[-1].astype(acc) + rnd(branch.astype(acc) * acc(s)).astype(acc))
            a.append(branch)
            ders.append(rnd(theory.phi_prime(acts[l], zf)))
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        g = rnd(_loss_gradient(loss, a[-1].astype(acc), ya, labels))
    tiny = float(np.finfo(np.float32).tiny)  # float32 and bfloat16 share the exponent range
    zero = np.zeros(L)
    sub = np.zeros(L)
    nonfin = np.zeros(L)
    norm = np.zeros(L)
    for l in range(L - 1, -1, -1):
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            s = scales[l]
            gb = g if s is None else rnd(g.astype(acc) * acc(s))  # through the branch's scale
            delta = rnd(gb.astype(acc) * ders[l].astype(acc))
            dW = mm(delta.T, a[l]).astype(np.float64)
            g_in = mm(delta, Ws[l])
            g = g_in if s is None else rnd(g_in.astype(acc) + g.astype(acc))  # plus the skip's
            n = dW.size
            zero[l] = np.count_nonzero(dW == 0) / n
            fin = np.isfinite(dW)
            nonfin[l] = 1.0 - np.count_nonzero(fin) / n
            sub[l] = np.count_nonzero(fin & (dW != 0) & (np.abs(dW) < tiny)) / n
            sq = float(np.sqrt(np.sum(np.square(dW, dtype=np.float64))))
            norm[l] = math.log10(sq) if sq > 0 and math.isfinite(sq) else (-math.inf if sq == 0 else math.nan)
    zl = np.flatnonzero(zero == 1.0)
    nf = np.flatnonzero(nonfin > 0)
    fwd = not all(np.all(np.isfinite(v.astype(np.float64))) for v in a)
    return {
        "format": fmt,
        "zero_frac": zero,
        "subnormal_frac": sub,
        "nonfinite_frac": nonfin,
        "log10_norm": norm,
        "first_zero_layer": int(zl[-1]) if zl.size else None,
        "first_nonfinite_layer": int(nf[-1]) if nf.size else None,
        "forward_overflow": bool(fwd),
    }


def _loss_gradient(loss: str, out: np.ndarray, ya: np.ndarray | None, labels: np.ndarray | None) -> np.ndarray:
    """dL/d(output) as a framework forms it in out's dtype (float32), before rounding to the format."""
    t = out.dtype.type
    if loss == "mse":
        return (out - ya.astype(t)) * t(2.0 / out.size)
    if loss == "sum":
        return np.ones_like(out)
    if loss == "bce":  # on logits: (sigmoid(x) - y) / n, as BCEWithLogits' gradient
        return (t(1.0) / (t(1.0) + np.exp(-out)) - ya.astype(t)) * t(1.0 / out.size)
    # cross_entropy (Network._targets has refused any other name): (softmax(x) - onehot) / rows
    e = np.exp(out - out.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    p[np.arange(out.shape[0]), labels] -= t(1.0)
    return p * t(1.0 / out.shape[0])
