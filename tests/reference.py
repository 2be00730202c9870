"""Independent references for loggrad's forward and backward passes.

Nothing here calls loggrad: the passes are written from the mathematical
definitions (the conventions of DESIGN.md / README.md: torch ``Linear``
layout ``z = a @ W.T + b``, batches are rows).

* :func:`mp_backward` -- mpmath at >= 120 bits (160 by default). mpmath
  numbers have an unbounded exponent, so this is the reference for the
  extended path in every range. Besides the values it returns a first-order
  **error bound** for each returned number: the absolute error that float64
  arithmetic with an unbounded exponent may commit on the given inputs
  (``plain=False``), or that the plain framework formulas of the float64 path
  may commit (``plain=True``).
* :func:`np_backward` -- a plain numpy float64 backprop (same semantics).
* :func:`central_difference` -- a central finite-difference gradient of any
  scalar function of a flat parameter vector (float64 or mpmath).
* :func:`sign_log10`, :func:`to_mpf`, :func:`mismatches` -- comparison helpers.

The error bound (what the tests' tolerances are)
-------------------------------------------------
u = 2^-53. Every input (weights, biases, x, y) is exact. A running first-order
error analysis propagates, next to each value v, a bound E(v) >= |computed v -
true v|:

    z = a W^T + b:       E(z) = |W| E(a) + (n_in + 1) u (|W||a| + |b|)
    a = f(z):            E(a) = |f'(z)| E(z) + e_f(z)
    d = f'(z):           E(d) = |f''(z)| E(z) + e_f'(z)
    delta = g * d:       E(delta) = E(g)|d| + |g| E(d) + u |delta|
    dW = delta^T a:      E(dW) = E(delta)^T |a| + |delta|^T E(a) + batch u |delta|^T |a|
    db = sum delta:      E(db) = sum E(delta) + batch u sum |delta|
    g' = delta W:        E(g') = E(delta) |W| + n_out u |delta| |W|

and at the loss the first derivative (value) and second derivative
(gradient) of the loss with respect to the output, plus the evaluation error
of the loss formulas (see ``_loss``). e_f, e_f' are evaluation errors of the
activation formulas: C_EVAL ulps of the value, or of the sum of the absolute
terms where a formula cancels (gelu', silu', and the plain float64 formulas
s(1-s), 1-tanh^2, 1+erf). The sums' terms |W||a|, |delta||W|... are what
make the bound honest where a sum cancels; the products over layers are what
make it grow with depth. The bound is first order (terms of order u^2
dropped), so tests allow a safety factor (SAFETY) on it. A result that is
truly zero (a closed relu gate) has bound 0: it must be exactly zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
from mpmath import mp, mpf

U = 2.0**-53  # unit roundoff of float64
C_EVAL = 4  # ulps allowed for one evaluation of an elementary formula
SAFETY = 4.0  # factor on the first-order bound in comparisons

LEAKY_SLOPE = "0.01"
ELU_ALPHA = "1"
SELU_LAMBDA = "1.0507009873554804934193349852946"
SELU_ALPHA = "1.6732632423543772848170429916717"

ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "softplus", "gelu", "silu")
LOSSES = ("mse", "sum", "bce", "cross_entropy")
_ALIASES = {"linear": "identity"}


# ---------------------------------------------------------------- mpmath --
def _sig_pair(z: Any) -> tuple[Any, Any, Any]:
    """sigmoid(z), sigmoid(-z) and sigmoid'(z), each without cancellation."""
    t = mpmath.exp(-abs(z))
    big, small = 1 / (1 + t), t / (1 + t)
    s, sm = (big, small) if z >= 0 else (small, big)
    return s, sm, t / (1 + t) ** 2


def _phi_Phi(z: Any) -> tuple[Any, Any]:
    """Standard normal density and distribution function at z."""
    phi = mpmath.exp(-z * z / 2) / mpmath.sqrt(2 * mpmath.pi)
    if abs(z) < 10**8:
        Phi = mpmath.erfc(-z / mpmath.sqrt(2)) / 2
    elif z > 0:
        Phi = 1 - phi / z  # 1 - Phi(z) < phi(z)/z, far below the working precision
    else:  # Mills ratio, asymptotic series: relative error < |z|^-12
        x2 = 1 / (z * z)
        Phi = phi / -z * (1 - x2 + 3 * x2**2 - 15 * x2**3 + 105 * x2**4 - 945 * x2**5)
    return phi, Phi


def act_mp(name: str, z: Any) -> tuple[Any, Any, Any]:
    """f(z), f'(z), f''(z) in mpmath, from the definitions (no cancellation)."""
    name = _ALIASES.get(name, name)
    one, zero = mpf(1), mpf(0)
    if name == "identity":
        return z, one, zero
    if name == "relu":
        return (z, one, zero) if z > 0 else (zero, zero, zero)
    if name == "leaky_relu":
        k = mpf(LEAKY_SLOPE)
        return (z, one, zero) if z > 0 else (k * z, k, zero)
    if name in ("elu", "selu"):
        lam, alpha = (mpf(SELU_LAMBDA), mpf(SELU_ALPHA)) if name == "selu" else (one, mpf(ELU_ALPHA))
        if z > 0:
            return lam * z, lam, zero
        e = mpmath.exp(z)
        return lam * alpha * mpmath.expm1(z), lam * alpha * e, lam * alpha * e
    if name == "sigmoid":
        s, sm, d = _sig_pair(z)
        return s, d, -d * mpmath.tanh(z / 2)  # sigmoid'' = sigmoid' (1 - 2 sigmoid)
    if name == "tanh":
        if abs(z) < 1:  # 1 - e^{-2|z|} would cancel
            a = mpmath.tanh(z)
            d = 1 - a * a
        else:
            t = mpmath.exp(-2 * abs(z))
            a = (1 - t) / (1 + t) * (1 if z >= 0 else -1)
            d = 4 * t / (1 + t) ** 2
        return a, d, -2 * a * d
    if name == "softplus":
        s, sm, d = _sig_pair(z)
        a = z + mpmath.log1p(mpmath.exp(-z)) if z > 0 else mpmath.log1p(mpmath.exp(z))
        return a, s, d
    if name == "gelu":
        phi, Phi = _phi_Phi(z)
        return z * Phi, Phi + z * phi, phi * (2 - z * z)
    if name == "silu":
        s, sm, d = _sig_pair(z)
        return z * s, s * (1 + z * sm), d * (2 - z * mpmath.tanh(z / 2))
    raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")


def act_eval_error(name: str, z: Any, a: Any, d: Any, plain: bool) -> tuple[Any, Any]:
    """Absolute evaluation errors (e_f, e_f') of f(z) and f'(z) at an exact z."""
    name = _ALIASES.get(name, name)
    c = C_EVAL * U
    ea, ed = c * abs(a), c * abs(d)
    if name == "gelu":
        phi, Phi = _phi_Phi(z)
        ed = c * (Phi + abs(z) * phi)  # Phi + z phi cancels near its root
        if plain:  # 0.5 (1 + erf(z/sqrt2)) has an absolute error of u
            ea, ed = c * (abs(a) + abs(z)), ed + c
    elif name == "silu":
        s, sm, _ = _sig_pair(z)
        ed = c * s * (1 + abs(z) * sm)  # 1 + z (1 - s) cancels near its root
        if plain:  # 1 - s of a rounded s
            ed = c * s * (1 + abs(z))
    elif plain and name == "sigmoid":
        ed = c * (abs(d) + abs(a))  # s (1 - s)
    elif plain and name == "tanh":
        ed = c * (abs(d) + a * a)  # 1 - tanh^2
    return ea, ed


def _mpf_array(a: Any) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    out = np.empty(arr.shape, dtype=object)
    for idx, v in np.ndenumerate(arr):
        out[idx] = mpf(float(v))
    return out


def _fill(shape: tuple[int, ...], v: Any) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    out.fill(v)
    return out


def _abs(a: np.ndarray) -> np.ndarray:
    return np.vectorize(abs, otypes=[object])(a) if a.size else a


def _loss(name: str, out: np.ndarray, eout: np.ndarray, y: Any, plain: bool) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """Loss, its error bound, dL/dout and its error bound (mpmath)."""
    rows, cols = out.shape
    n = rows * cols
    c = C_EVAL * U
    g = _fill(out.shape, mpf(0))
    eg = _fill(out.shape, mpf(0))
    if name == "sum":
        L = sum(out.ravel(), mpf(0))
        EL = sum(eout.ravel(), mpf(0)) + n * U * sum(_abs(out).ravel(), mpf(0))
        g = _fill(out.shape, mpf(1))
        return L, EL, g, eg
    if name == "mse":
        yy = _mpf_array(y)
        diff = out - yy
        L = sum((diff * diff).ravel(), mpf(0)) / n
        g = diff * 2 / n
        ad = _abs(diff)
        eg = (eout + 2 * U * ad) * 2 / n + U * _abs(g)
        EL = sum((2 * ad * (eout + U * ad)).ravel(), mpf(0)) / n + (n + 2) * U * L
        return L, EL, g, eg
    if name == "bce":
        yy = _mpf_array(y)
        L, EL = mpf(0), mpf(0)
        for idx in np.ndindex(out.shape):
            x, t, ex = out[idx], yy[idx], eout[idx]
            sp_pos, _, _ = act_mp("softplus", x)  # log(1 + e^x)
            sp_neg, _, _ = act_mp("softplus", -x)
            s, sm, ds = _sig_pair(x)
            li = t * sp_neg + (1 - t) * sp_pos
            gi = (1 - t) * s - t * sm  # = sigmoid(x) - y, without cancellation at y in {0, 1}
            L += li
            g[idx] = gi / n
            if plain:  # (1-y) x + max(-x, 0) + log1p(e^-|x|);  sigmoid(x) - y
                el = c * (abs((1 - t) * x) + max(-x, 0) + mpmath.log1p(mpmath.exp(-abs(x))))
                egi = c * (s + abs(t))
            else:
                el = c * (abs(t) * sp_neg + abs(1 - t) * sp_pos)
                egi = c * (abs(1 - t) * s + abs(t) * sm)
            EL += abs(gi) * ex + el
            eg[idx] = (ds * ex + egi) / n + U * abs(g[idx])
        return L / n, EL / n + n * U * abs(L) / n, g, eg
    if name == "cross_entropy":
        labels = np.asarray(y).astype(np.int64).reshape(-1)
        L, EL = mpf(0), mpf(0)
        for r in range(rows):
            xr = out[r]
            c_r = int(labels[r])
            mx = max(xr)
            u = [mpmath.exp(v - mx) for v in xr]
            z = sum(u, mpf(0))
            rest = sum((u[j] for j in range(cols) if j != c_r), mpf(0))
            lr = (mx - xr[c_r]) + mpmath.log(z) if mx != xr[c_r] else mpmath.log1p(rest)
            p = [uj / z for uj in u]
            pe = sum((p[k] * eout[r, k] for k in range(cols)), mpf(0))
            L += lr
            if plain:
                EL += c * (abs(mx) + abs(xr[c_r]) + cols)
            else:
                EL += c * cols * lr
            for j in range(cols):
                gj = -rest / z if j == c_r else p[j]
                g[r, j] = gj / rows
                if plain:
                    lse = mx + mpmath.log(z)
                    ev = c * ((abs(mx) + cols + abs(xr[j] - lse)) * p[j] + 1)
                else:
                    ev = c * (cols + abs(xr[j] - mx)) * abs(gj)
                eg[r, j] = (p[j] * (eout[r, j] + pe) + ev) / rows + U * abs(g[r, j])
                EL += abs(gj) * eout[r, j]
        return L / rows, EL / rows + rows * U * abs(L) / rows, g, eg
    raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSSES)}")


@dataclass
class MPResult:
    """Values and first-order error bounds (mpmath numbers in object arrays)."""

    loss: Any
    output: np.ndarray
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    input: np.ndarray
    err_loss: Any
    err_output: np.ndarray
    err_weights: list[np.ndarray]
    err_biases: list[np.ndarray]
    err_input: np.ndarray
    pre_activations: list[np.ndarray]
    max_abs_log2: float  # the largest |log2| of any nonzero z, f(z), f'(z), loss, gradient (range checks)


def _log2_extreme(arrs: Sequence[np.ndarray]) -> float:
    m = 0.0
    for a in arrs:
        for v in a.ravel():
            if v != 0:
                m = max(m, abs(float(mpmath.log(abs(v), 2))))
    return m


def mp_backward(
    weights: Sequence[Any],
    biases: Sequence[Any] | None,
    activations: str | Sequence[str],
    x: Any,
    y: Any = None,
    loss: str = "mse",
    *,
    prec: int = 160,
    plain: bool = False,
) -> MPResult:
    """Loss, output and dL/dW, dL/db, dL/dx of a dense chain, in mpmath.

    weights[l] of shape (n_out, n_in), biases[l] (n_out,) or None, x (batch,
    n_in), y as for loggrad (targets, integer labels, or None for "sum").
    plain=True gives the error bounds of the float64 path's formulas.
    """
    if prec < 120:
        raise ValueError(f"prec must be at least 120 bits, got {prec}")
    depth = len(weights)
    acts = [activations] * depth if isinstance(activations, str) else list(activations)
    if len(acts) != depth:
        raise ValueError(f"{len(acts)} activations for {depth} layers")
    with mp.workprec(prec):
        W = [_mpf_array(w) for w in weights]
        B = [_mpf_array(np.zeros(w.shape[0]) if biases is None else b) for w, b in zip(W, biases or [None] * depth)]
        AW = [_abs(w) for w in W]
        a = _mpf_array(np.atleast_2d(x))
        ea = _fill(a.shape, mpf(0))
        A, EA, Z, D, ED = [a], [ea], [], [], []
        for l in range(depth):
            n_in = W[l].shape[1]
            z = a.dot(W[l].T) + B[l]
            sz = _abs(a).dot(AW[l].T) + _abs(B[l])
            ez = ea.dot(AW[l].T) + (n_in + 1) * U * sz
            an, d, ean, ed = (np.empty(z.shape, dtype=object) for _ in range(4))
            for idx in np.ndindex(z.shape):
                fa, fd, fdd = act_mp(acts[l], z[idx])
                eva, evd = act_eval_error(acts[l], z[idx], fa, fd, plain)
                an[idx], d[idx] = fa, fd
                ean[idx] = abs(fd) * ez[idx] + eva
                ed[idx] = abs(fdd) * ez[idx] + evd
            a, ea = an, ean
            Z.append(z)
            A.append(a)
            EA.append(ea)
            D.append(d)
            ED.append(ed)
        L, EL, g, eg = _loss(loss, a, ea, y, plain)
        g_out = g
        dW: list[np.ndarray] = [None] * depth  # type: ignore[list-item]
        db: list[np.ndarray] = [None] * depth  # type: ignore[list-item]
        edW: list[np.ndarray] = [None] * depth  # type: ignore[list-item]
        edb: list[np.ndarray] = [None] * depth  # type: ignore[list-item]
        batch = a.shape[0]
        for l in reversed(range(depth)):
            delta = g * D[l]
            adelta = _abs(delta)
            edelta = eg * _abs(D[l]) + _abs(g) * ED[l] + U * adelta
            aA = _abs(A[l])
            dW[l] = delta.T.dot(A[l])
            edW[l] = edelta.T.dot(aA) + adelta.T.dot(EA[l]) + batch * U * adelta.T.dot(aA)
            db[l] = delta.sum(axis=0)
            edb[l] = edelta.sum(axis=0) + batch * U * adelta.sum(axis=0)
            n_out = W[l].shape[0]
            g = delta.dot(W[l])
            eg = edelta.dot(AW[l]) + n_out * U * adelta.dot(AW[l])
        ext = _log2_extreme([*Z, *A[1:], *D, *dW, *db, g, g_out, np.array([L])])
        return MPResult(L, a, dW, db, g, EL, ea, edW, edb, eg, Z, ext)


def mp_loss(weights: Sequence[Any], biases: Sequence[Any] | None, activations: str | Sequence[str],
            x: Any, y: Any = None, loss: str = "mse", prec: int = 200) -> Any:
    """The loss alone in mpmath (inputs may be mpmath numbers: for finite differences)."""
    depth = len(weights)
    acts = [activations] * depth if isinstance(activations, str) else list(activations)
    with mp.workprec(prec):
        def obj(v: Any) -> np.ndarray:
            arr = np.array(v, dtype=object)
            return np.vectorize(mpf, otypes=[object])(arr) if arr.size else arr

        a = obj(np.atleast_2d(np.asarray(x, dtype=object)))
        for l in range(depth):
            w = obj(weights[l])
            b = obj(np.zeros(w.shape[0])) if biases is None else obj(biases[l])
            z = a.dot(w.T) + b
            a = np.vectorize(lambda v, n=acts[l]: act_mp(n, v)[0], otypes=[object])(z)
        if loss == "cross_entropy":
            return _loss(loss, a, _fill(a.shape, mpf(0)), y, False)[0]
        yy = None if y is None else np.asarray(y, dtype=np.float64)
        return _loss(loss, a, _fill(a.shape, mpf(0)), yy, False)[0]


# ------------------------------------------------------------- helpers ---
def to_mpf(values: Any) -> np.ndarray:
    """Exact mpmath values of a loggrad LogArray (m * 2^e) or of float64 values."""
    if hasattr(values, "mantissa") and hasattr(values, "exponent"):
        m = np.asarray(values.mantissa, dtype=np.float64)
        e = np.asarray(values.exponent, dtype=np.int64)
        out = np.empty(m.shape, dtype=object)
        for idx in np.ndindex(m.shape):
            out[idx] = mpmath.ldexp(mpf(float(m[idx])), int(e[idx])) if m[idx] != 0 else mpf(0)
        return out
    return _mpf_array(values)


def sign_log10(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """(sign in {-1, 0, 1} as int8, log10|v| as float64; -inf for 0) of mpmath numbers."""
    arr = np.asarray(values, dtype=object)
    sign = np.zeros(arr.shape, dtype=np.int8)
    lg = np.full(arr.shape, -np.inf)
    for idx in np.ndindex(arr.shape):
        v = arr[idx]
        if v != 0:
            sign[idx] = 1 if v > 0 else -1
            lg[idx] = float(mpmath.log10(abs(v)))
    return sign, lg


def mismatches(name: str, got: Any, ref: Any, err: Any, safety: float = SAFETY, floor_ulps: float = 2.0,
               max_rel: float = 1e-3) -> list[str]:
    """Where |got - ref| > safety * err + floor_ulps * u * |ref| (exact arithmetic on mpmath values).

    got: a LogArray, float64 array or number; ref, err: mpmath values of the
    same shape. Also a nan/inf in got is a mismatch. Entries whose bound
    exceeds max_rel * |ref| are skipped: there the problem is so ill
    conditioned (e.g. e^{-z^2/2} at |z| = 1e9, where one ulp of z is a
    factor e^100) that a first-order bound says nothing. Tests that need every
    entry compared check relative_bound() first. Returns readable lines.
    """
    g = to_mpf(got) if hasattr(got, "mantissa") else None
    if g is None:
        ga = np.asarray(got, dtype=np.float64)
        if not np.all(np.isfinite(ga)):
            return [f"{name}: non-finite values {ga[~np.isfinite(ga)][:3]}"]
        g = _mpf_array(ga)
    r = np.asarray(ref, dtype=object).reshape(g.shape)
    e = np.asarray(err, dtype=object).reshape(g.shape)
    bad = []
    with mp.workprec(160):
        for idx in np.ndindex(g.shape):
            if r[idx] != 0 and e[idx] > max_rel * abs(r[idx]):
                continue
            tol = safety * e[idx] + floor_ulps * U * abs(r[idx])
            if abs(g[idx] - r[idx]) > tol:
                bad.append(
                    f"{name}{list(idx)}: got {mpmath.nstr(g[idx], 17)}, reference {mpmath.nstr(r[idx], 17)}, "
                    f"allowed error {mpmath.nstr(tol, 3)}"
                )
    return bad


def relative_bound(ref: Any, err: Any) -> float:
    """The largest err/|ref| over nonzero reference values (how tight a comparison is)."""
    r = np.asarray(ref, dtype=object).ravel()
    e = np.asarray(err, dtype=object).ravel()
    out = 0.0
    for rv, ev in zip(r, e):
        if rv != 0:
            out = max(out, float(ev / abs(rv)))
    return out


# --------------------------------------------------------- numpy float64 --
_erf = np.vectorize(math.erf, otypes=[np.float64])


def act_np(name: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f(z), f'(z) in float64 numpy."""
    name = _ALIASES.get(name, name)
    if name == "identity":
        return z.copy(), np.ones_like(z)
    if name == "relu":
        return np.where(z > 0, z, 0.0), (z > 0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(z > 0, z, 0.01 * z), np.where(z > 0, 1.0, 0.01)
    if name in ("elu", "selu"):
        lam, alpha = (float(SELU_LAMBDA), float(SELU_ALPHA)) if name == "selu" else (1.0, 1.0)
        zn = np.minimum(z, 0.0)
        return np.where(z > 0, lam * z, lam * alpha * np.expm1(zn)), np.where(z > 0, lam, lam * alpha * np.exp(zn))
    s = 0.5 * (1.0 + np.tanh(0.5 * z))  # sigmoid, another formula than the engine's
    if name == "sigmoid":
        return s, s * (1.0 - s)
    if name == "tanh":
        t = np.tanh(z)
        return t, 1.0 - t * t
    if name == "softplus":
        return np.logaddexp(0.0, z), s
    if name == "gelu":
        cdf = 0.5 * (1.0 + _erf(z / math.sqrt(2.0)))
        return z * cdf, cdf + z * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    if name == "silu":
        return z * s, s + z * s * (1.0 - s)
    raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")


def np_backward(weights: Sequence[Any], biases: Sequence[Any] | None, activations: str | Sequence[str],
                x: Any, y: Any = None, loss: str = "mse") -> dict[str, Any]:
    """Plain float64 backprop: {"loss", "output", "weights", "biases", "input"}."""
    depth = len(weights)
    acts = [activations] * depth if isinstance(activations, str) else list(activations)
    Ws = [np.asarray(w, dtype=np.float64) for w in weights]
    Bs = [np.zeros(w.shape[0]) if biases is None else np.asarray(b, dtype=np.float64) for w, b in zip(Ws, biases or Ws)]
    a = np.atleast_2d(np.asarray(x, dtype=np.float64))
    As, Ds = [a], []
    for w, b, f in zip(Ws, Bs, acts):
        a, d = act_np(f, a @ w.T + b)
        As.append(a)
        Ds.append(d)
    rows, cols = a.shape
    if loss == "sum":
        L, g = a.sum(), np.ones_like(a)
    elif loss == "mse":
        diff = a - np.asarray(y, dtype=np.float64)
        L, g = np.mean(diff * diff), 2.0 * diff / a.size
    elif loss == "bce":
        t = np.asarray(y, dtype=np.float64)
        L = np.mean(t * np.logaddexp(0.0, -a) + (1.0 - t) * np.logaddexp(0.0, a))
        g = (0.5 * (1.0 + np.tanh(0.5 * a)) - t) / a.size
    elif loss == "cross_entropy":
        lab = np.asarray(y).astype(np.int64)
        sh = a - a.max(axis=1, keepdims=True)
        lse = np.log(np.exp(sh).sum(axis=1, keepdims=True))
        L = np.mean(lse[:, 0] - sh[np.arange(rows), lab])
        g = np.exp(sh - lse)
        g[np.arange(rows), lab] -= 1.0
        g /= rows
    else:
        raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
    dW, db = [None] * depth, [None] * depth
    for l in reversed(range(depth)):
        delta = g * Ds[l]
        dW[l] = delta.T @ As[l]
        db[l] = delta.sum(axis=0)
        g = delta @ Ws[l]
    return {"loss": float(L), "output": a, "weights": dW, "biases": db, "input": g}


# ------------------------------------------------------ finite differences --
def central_difference(f: Callable[[np.ndarray], Any], p: np.ndarray, h: Any) -> np.ndarray:
    """Central differences (f(p + h e_i) - f(p - h e_i)) / 2h for each entry of the flat vector p.

    p may be a float64 array (h a float) or an object array of mpmath numbers
    (h an mpf: then the truncation error h^2 f'''/6 can be made negligible).
    """
    grad = np.empty(p.shape, dtype=p.dtype)
    for i in range(p.size):
        hi, lo = p.copy(), p.copy()
        hi[i] = p[i] + h
        lo[i] = p[i] - h
        grad[i] = (f(hi) - f(lo)) / (2 * h)
    return grad
