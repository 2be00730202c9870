"""Independent references for the report's per-layer statistics.

``numpy_layer_stats``: a plain numpy float64 forward pass and a renormalised
backward pass. Backprop is linear in delta, so each sample's delta row is kept
as a float64 vector times 2^s (s an integer per sample, rescaled every layer
by a power of two: exact); norms and sums are then taken in log space. The
forward pass must stay in float64 range (choose the cases so); the backward
signal may go anywhere.

``mp_layer_stats``: the same quantities in mpmath (unbounded exponent), for
small deep cases beyond float64.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np

from loggrad import theory as T

LOG10_2 = math.log10(2.0)
SATURATED = 2.0**-10


def _log10_norm_rows(v: np.ndarray, s: np.ndarray) -> float:
    """log10 of the Frobenius norm of the rows v[i] * 2^s[i]."""
    n2 = np.sum(v * v, axis=1)
    ok = n2 > 0
    if not ok.any():
        return -math.inf
    lg = 0.5 * np.log10(n2[ok]) + s[ok] * LOG10_2
    mx = lg.max()
    return float(mx + 0.5 * np.log10(np.sum(10.0 ** (2 * (lg - mx)))))


def _log10_sum_outer(d: np.ndarray, s: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, int]:
    """sum_i 2^s[i] d[i] a[i]^T as (float64 matrix, exponent): the matrix times 2^exponent."""
    smax = int(s.max())
    w = np.ldexp(1.0, (s - smax).clip(-1074, 0).astype(int))
    return (d * w[:, None]).T @ a, smax


def numpy_layer_stats(net, x: np.ndarray, y: np.ndarray | None, loss: str) -> dict[str, np.ndarray]:
    """Per layer: log10 ||a_l|| (input of layer l), rms, ||delta_l||, ||dW_l||, ||db_l||,
    max/min |dW_l|, mean log10 |f'|, zero and saturated fractions of f'."""
    L, B = net.depth, x.shape[0]
    acts = net.activations
    a, zs = [x], []
    for l in range(L):
        z = a[-1] @ np.asarray(net.weights[l]).T + np.asarray(net.biases[l])
        zs.append(z)
        a.append(T.phi(acts[l], z))
    assert all(np.all(np.isfinite(v)) for v in a), "the forward pass left float64 range"
    out = a[-1]
    if loss == "mse":
        g = 2.0 * (out - y) / out.size
    elif loss == "sum":
        g = np.ones_like(out)
    else:
        raise ValueError(loss)
    s = np.zeros(B, dtype=np.int64)
    res = {k: np.empty(L) for k in ("act_norm", "act_rms", "delta", "dW", "db", "gmax", "gmin", "fmean", "fzero",
                                    "fsat")}
    for l in range(L - 1, -1, -1):
        fp = T.phi_prime(acts[l], zs[l])
        nz = fp != 0
        res["fmean"][l] = np.mean(np.log10(np.abs(fp[nz]))) if nz.any() else math.nan
        res["fzero"][l] = np.mean(~nz)
        res["fsat"][l] = np.mean(nz & (np.abs(fp) < SATURATED))
        d = g * fp
        # renormalise each row by a power of two (exact)
        mx = np.max(np.abs(d), axis=1)
        _, k = np.frexp(np.where(mx > 0, mx, 1.0))
        d = np.ldexp(d, -k[:, None])
        s = s + k
        res["delta"][l] = _log10_norm_rows(d, s)
        res["act_norm"][l] = _log10_norm_rows(a[l], np.zeros(B, dtype=np.int64))
        res["act_rms"][l] = res["act_norm"][l] - 0.5 * math.log10(a[l].size)
        dW, e = _log10_sum_outer(d, s, a[l])
        db, eb = _log10_sum_outer(d, s, np.ones((B, 1)))
        with np.errstate(divide="ignore"):
            res["dW"][l] = np.log10(np.linalg.norm(dW)) + e * LOG10_2
            res["db"][l] = np.log10(np.linalg.norm(db)) + eb * LOG10_2
            absw = np.abs(dW)[np.abs(dW) > 0]
            res["gmax"][l] = np.log10(absw.max()) + e * LOG10_2 if absw.size else math.nan
            res["gmin"][l] = np.log10(absw.min()) + e * LOG10_2 if absw.size else math.nan
        g = d @ np.asarray(net.weights[l])
    return res


M = mpmath.mpf


def _mp_act(name: str, z):
    if name == "sigmoid":
        t = mpmath.exp(-abs(z))
        return (1 / (1 + t) if z >= 0 else t / (1 + t)), t / (1 + t) ** 2
    if name == "tanh":
        t = mpmath.exp(-2 * abs(z))
        return mpmath.tanh(z), 4 * t / (1 + t) ** 2
    if name == "identity":
        return z, M(1)
    if name == "relu":
        return (z, M(1)) if z > 0 else (M(0), M(0))
    raise ValueError(name)


def _l10(v) -> float:
    return float(mpmath.log10(v)) if v > 0 else -math.inf


def mp_layer_stats(net, x: np.ndarray, y: np.ndarray | None, loss: str) -> dict[str, list[float]]:
    """log10 ||a_l||, ||delta_l||, ||dW_l||, ||db_l|| and mean log10 |f'| per layer, in mpmath."""
    L, B = net.depth, x.shape[0]
    Ws = [[[M(float(v)) for v in row] for row in np.asarray(w)] for w in net.weights]
    bs = [[M(float(v)) for v in np.asarray(b)] for b in net.biases]
    acts = net.activations
    ins = [[None] * B for _ in range(L)]
    ders = [[None] * B for _ in range(L)]
    outs = []
    for i in range(B):
        a = [M(float(v)) for v in x[i]]
        for l in range(L):
            ins[l][i] = a
            z = [mpmath.fsum(w * v for w, v in zip(row, a)) + b for row, b in zip(Ws[l], bs[l])]
            fa = [_mp_act(acts[l], zz) for zz in z]
            ders[l][i] = [d for _, d in fa]
            a = [v for v, _ in fa]
        outs.append(a)
    n_total = B * net.n_out
    gs = [[2 * (o - M(float(t))) / n_total for o, t in zip(outs[i], y[i])] if loss == "mse" else [M(1)] * len(outs[i])
          for i in range(B)]
    res: dict[str, list[float]] = {k: [0.0] * L for k in ("act_norm", "delta", "dW", "db", "fmean")}
    for l in range(L - 1, -1, -1):
        deltas = [[gi * di for gi, di in zip(gs[i], ders[l][i])] for i in range(B)]
        res["delta"][l] = _l10(mpmath.sqrt(mpmath.fsum(v * v for d in deltas for v in d)))
        res["act_norm"][l] = _l10(mpmath.sqrt(mpmath.fsum(v * v for a in ins[l] for v in a)))
        n_out, n_in = len(deltas[0]), len(ins[l][0])
        dW = [[mpmath.fsum(deltas[i][o] * ins[l][i][j] for i in range(B)) for j in range(n_in)] for o in range(n_out)]
        db = [mpmath.fsum(deltas[i][o] for i in range(B)) for o in range(n_out)]
        res["dW"][l] = _l10(mpmath.sqrt(mpmath.fsum(v * v for row in dW for v in row)))
        res["db"][l] = _l10(mpmath.sqrt(mpmath.fsum(v * v for v in db)))
        nzd = [_l10(abs(v)) for d in ders[l] for v in d if v != 0]
        res["fmean"][l] = float(np.mean(nzd)) if nzd else math.nan
        gs = [[mpmath.fsum(Ws[l][o][j] * deltas[i][o] for o in range(n_out)) for j in range(n_in)] for i in range(B)]
    return res
