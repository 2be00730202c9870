"""Gradient-health report of a network: per-layer figures, growth rate, verdict.

``report(net, x, y)`` runs one extended backward pass and summarises, layer by
layer, what the gradient looks like and what float64 and float32 would make
of it; then fits the per-layer growth rate of the gradient norm and gives a
verdict ("vanishing", "exploding" or "healthy").

Every per-layer figure is vectorised over layers on the flat parameter-layout
planes of ``g.params`` (``np.add.reduceat`` / ``np.maximum.reduceat`` over the
layer blocks, as :func:`loggrad.train.layer_norms` does); there is no Python
loop over layers on the normal path.

::

    rep = loggrad.report.report(net, x, y, lr=1e-3)
    print(rep)              # table (rich if installed, else plain text)
    rep.records()           # one dict per layer (pandas.DataFrame(rep.records()))
    rep.to_json()           # and Report.from_json(...)
    rep.plot("grad.png")    # needs matplotlib
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._logarray import LogArray

if TYPE_CHECKING:
    from .network import Network

__all__ = [
    "Report",
    "report",
    "t_critical",
    "VERDICT_DECADES",
    "FLOAT64_LOG10_RANGE",
    "FLOAT32_LOG10_RANGE",
]

_LOG10_2 = math.log10(2.0)
_LN10 = math.log(10.0)
_NEG = np.iinfo(np.int64).min // 4  # exponent of a zero in max-reductions

#: A network whose fitted log10 gradient norm changes by at least this many
#: decades between the output and the input layer is "vanishing"/"exploding".
VERDICT_DECADES = 3.0

#: log10 of the smallest subnormal and of the largest finite value.
FLOAT64_LOG10_RANGE = (-1074 * _LOG10_2, math.log10(np.finfo(np.float64).max))
FLOAT32_LOG10_RANGE = (-149 * _LOG10_2, math.log10(float(np.finfo(np.float32).max)))

# Activation constants of the engine (cpp/include/loggrad/activations.hpp).
_LEAKY = 0.01
_SELU_L = 1.0507009873554804934193349852946
_SELU_A = 1.6732632423543772848170429916717
_LN_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT_PI_2 = math.sqrt(math.pi / 2.0)
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)

# Per-layer fields: (record key, attribute, header, format).
_LAYER_FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("log10_grad_norm_w", "grad_norm_w", "log10|dW|", "{:.3f}"),
    ("log10_grad_norm_b", "grad_norm_b", "log10|db|", "{:.3f}"),
    ("log10_grad_max", "grad_max", "log10 max|dw|", "{:.3f}"),
    ("log10_grad_min", "grad_min", "log10 min|dw|", "{:.3f}"),
    ("mean_log10_act_deriv", "act_deriv", "mean log10 f'", "{:.3f}"),
    ("act_deriv_zero_frac", "act_deriv_zero", "f'=0", "{:.2f}"),
    ("f64_underflow_frac", "f64_underflow", "f64 ->0", "{:.2f}"),
    ("f64_overflow_frac", "f64_overflow", "f64 ->inf", "{:.2f}"),
    ("f32_underflow_frac", "f32_underflow", "f32 ->0", "{:.2f}"),
    ("f32_overflow_frac", "f32_overflow", "f32 ->inf", "{:.2f}"),
    ("lost_update_frac", "lost_update", "lost", "{:.2f}"),
)


# ---------------------------------------------------------------------------
# Student-t critical values (numpy/math only; no scipy at run time)
# ---------------------------------------------------------------------------


def _t_two_sided_cdf(t: float, nu: int) -> float:
    """P(|T| <= t) for Student's t with integer nu degrees of freedom (closed form).

    Abramowitz & Stegun 26.7.3/26.7.4: with theta = atan(t / sqrt(nu)), a finite
    sum of powers of cos(theta) (nu/2 terms).
    """
    th = math.atan(t / math.sqrt(nu))
    s, c = math.sin(th), math.cos(th)
    c2 = c * c
    if nu % 2 == 1:
        if nu == 1:
            return 2.0 * th / math.pi
        term, acc = c, c
        for k in range(1, (nu - 3) // 2 + 1):  # terms cos^(2k+1) with factors 2k/(2k+1)
            term *= c2 * (2.0 * k) / (2.0 * k + 1.0)
            acc += term
        return 2.0 / math.pi * (th + s * acc)
    term, acc = 1.0, 1.0
    for k in range(1, (nu - 2) // 2 + 1):  # terms cos^(2k) with factors (2k-1)/(2k)
        term *= c2 * (2.0 * k - 1.0) / (2.0 * k)
        acc += term
    return s * acc


def _normal_quantile(p: float) -> float:
    """Inverse of the standard normal CDF by bisection on math.erfc (|error| < 1e-15)."""
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if 0.5 * math.erfc(-mid / math.sqrt(2.0)) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-16:
            break
    return 0.5 * (lo + hi)


def t_critical(dof: int, level: float = 0.95) -> float:
    """Two-sided critical value of Student's t: P(|T| <= t) = level.

    Exact (bisection on the closed-form CDF) for dof <= 100; for larger dof
    the Cornish-Fisher expansion in 1/dof to fourth order (A&S 26.7.5),
    whose error there is below 1e-9. NaN for dof < 1.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if dof < 1:
        return math.nan
    nu = int(dof)
    if nu <= 100:
        lo, hi = 0.0, 1.0
        while _t_two_sided_cdf(hi, nu) < level:
            hi *= 2.0
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if _t_two_sided_cdf(mid, nu) < level:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-15 * hi:
                break
        return 0.5 * (lo + hi)
    x = _normal_quantile(0.5 + 0.5 * level)
    g1 = (x**3 + x) / 4.0
    g2 = (5 * x**5 + 16 * x**3 + 3 * x) / 96.0
    g3 = (3 * x**7 + 19 * x**5 + 17 * x**3 - 15 * x) / 384.0
    g4 = (79 * x**9 + 776 * x**7 + 1482 * x**5 - 1920 * x**3 - 945 * x) / 92160.0
    return x + g1 / nu + g2 / nu**2 + g3 / nu**3 + g4 / nu**4


# ---------------------------------------------------------------------------
# Vectorised per-layer reductions on the parameter-layout planes
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layout:
    widths: np.ndarray  # n_0 .. n_L
    n_in: np.ndarray
    n_out: np.ndarray
    starts: np.ndarray  # start of layer l's block (W then b)
    sizes: np.ndarray  # n_out * (n_in + 1)
    wsizes: np.ndarray  # n_out * n_in
    seg_starts: np.ndarray  # W_0, b_0, W_1, b_1, ... starts (2L segments)
    seg_sizes: np.ndarray

    @classmethod
    def of(cls, net: Network) -> _Layout:
        w = np.asarray(net.widths, dtype=np.int64)
        n_in, n_out = w[:-1], w[1:]
        wsizes = n_in * n_out
        sizes = wsizes + n_out
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        seg_starts = np.stack([starts, starts + wsizes], axis=1).ravel()
        seg_sizes = np.stack([wsizes, n_out], axis=1).ravel()
        return cls(w, n_in, n_out, starts, sizes, wsizes, seg_starts, seg_sizes)

    def runs(self) -> list[tuple[int, int]]:
        """[l0, l1) ranges of consecutive layers with equal (n_out, n_in)."""
        L = len(self.n_in)
        change = np.flatnonzero((np.diff(self.n_in) != 0) | (np.diff(self.n_out) != 0)) + 1
        bounds = np.concatenate([[0], change, [L]]).tolist()
        return list(zip(bounds[:-1], bounds[1:]))


def _segment_norm_log10(m: np.ndarray, e: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """log10 of the Euclidean norm of each segment of the extended array (m, e)."""
    e2 = np.where(m == 0, _NEG, e)
    emax = np.maximum.reduceat(e2, starts)
    emax = np.where(emax < -(2**60), 0, emax)
    d = np.clip(e2 - np.repeat(emax, sizes), -3000, 0).astype(np.int32)
    with np.errstate(under="ignore"):
        scaled = np.ldexp(m, d)
        s = np.sqrt(np.add.reduceat(scaled * scaled, starts))
    with np.errstate(divide="ignore"):
        out = np.log10(s) + emax * _LOG10_2
    return np.where(s == 0, -np.inf, out)


def _range_masks(m: np.ndarray, e: np.ndarray) -> dict[str, np.ndarray]:
    """Which extended values float64 / float32 would round to 0 or to inf.

    Round to nearest even of |x| = |m| 2^e (|m| in [0.5, 1)):
      float64: 0 iff |x| <= 2^-1075 (half the smallest subnormal; the tie goes to 0),
               inf iff |x| >= 2^1024;
      float32: 0 iff |x| <= 2^-150, inf iff |x| >= (1 - 2^-25) 2^128 (half-way
               between the largest float32 and 2^128).
    Exact zeros are in none of the masks.
    """
    am = np.abs(m)
    nz = m != 0
    return {
        "f64_underflow": nz & ((e < -1074) | ((e == -1074) & (am == 0.5))),
        "f64_overflow": nz & (e >= 1025),
        "f32_underflow": nz & ((e < -149) | ((e == -149) & (am == 0.5))),
        "f32_overflow": nz & ((e >= 129) | ((e == 128) & (am >= 1.0 - 2.0**-25))),
    }


def _lost_updates(w: np.ndarray, um: np.ndarray, ue: np.ndarray) -> np.ndarray:
    """Where float64 ``w - u`` rounds back to ``w`` (u = um 2^ue exact; False where u = 0).

    The gap to the neighbour of w in the direction of the step is 2^k (k from
    frexp: the ulp, halved when w is a power of two and the step goes toward
    zero; 2^-1074 for subnormals and zero). w - u rounds to w iff |u| < 2^(k-1),
    or |u| = 2^(k-1) and w's last mantissa bit is 0 (ties to even). Integer
    exponent comparisons only: exact in any range. Flat (1-D) arrays.
    """
    fw, ew = np.frexp(w)
    k_away = np.maximum(ew.astype(np.int64) - 53, -1074)
    k_away[w == 0] = -1074
    k = k_away.copy()
    pow2 = np.flatnonzero((np.abs(fw) == 0.5) & (ew - 54 >= -1074))  # the gap below is half the ulp
    if pow2.size:
        toward = np.sign(um[pow2]) == np.sign(w[pow2])
        k[pow2[toward]] -= 1
    lost: np.ndarray = (ue < k) & (um != 0)
    tie = np.flatnonzero((ue == k) & (np.abs(um) == 0.5))
    if tie.size:
        intm = np.ldexp(np.abs(w[tie]), (-k_away[tie]).astype(np.int32))  # the integer significand
        lost[tie] = (intm.astype(np.int64) & 1) == 0
    return lost


# ---------------------------------------------------------------------------
# Activation derivatives: pre-activations recovered exactly, f' in log space
# ---------------------------------------------------------------------------

_erfc_obj = np.frompyfunc(math.erfc, 1, 1)


def _erfc(x: np.ndarray) -> np.ndarray:
    """Elementwise math.erfc (numpy has no erfc; scipy is not a dependency)."""
    return np.asarray(_erfc_obj(x), dtype=np.float64)


def _erfcx_large(x: np.ndarray) -> np.ndarray:
    """e^{x^2} erfc(x) for x >= 3.5 (as the engine computes it)."""
    out = np.empty_like(x)
    small = x < 26.0
    xs = x[small]
    if xs.size:
        h = xs * xs
        lo = np.fma(xs, xs, -h) if hasattr(np, "fma") else np.zeros_like(xs)
        with np.errstate(over="ignore"):
            out[small] = np.exp(h) * _erfc(xs) * (1.0 + lo)
    xb = x[~small]
    if xb.size:
        w = 1.0 / (2.0 * xb * xb)
        term = np.ones_like(xb)
        acc = np.ones_like(xb)
        for n in range(1, 13):
            term = term * (-(2.0 * n - 1.0) * w)
            acc = acc + term
        out[~small] = acc * _INV_SQRT_PI / xb
    return out


def _ln_sigmoid(z: np.ndarray) -> np.ndarray:
    """ln sigmoid(z), stable for any float64 z (-inf at z = -inf)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out: np.ndarray = np.where(z >= 0, -np.log1p(np.exp(-np.abs(z))), z - np.log1p(np.exp(-np.abs(z))))
    return out


def _ln_abs_derivative(act: str, zm: np.ndarray, ze: np.ndarray) -> np.ndarray:
    """ln |f'(z)| for extended pre-activations z = zm 2^ze (-inf where f' = 0).

    The same branches as the engine (cpp/src/activations.cpp): z is taken as a
    double where |z| is in [2^-900, 2^1000]; below, f'(0) (or the sign for
    piecewise forms); above, the saturated limit (0 for identity-like sides,
    -inf for the e^{-|z|} side, which the engine itself refuses).
    """
    pos = zm > 0
    tiny = (zm == 0) | (ze < -900)
    huge = ze > 1000
    with np.errstate(over="ignore", under="ignore"):
        zd = np.ldexp(zm, np.clip(ze, -1100, 1100).astype(np.int32))
    z = np.where(tiny, 0.0, np.where(huge, np.copysign(np.inf, zm), zd))
    az = np.abs(z)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        if act == "identity":
            return np.zeros_like(z)
        if act == "relu":
            return np.where(pos, 0.0, -np.inf)
        if act == "leaky_relu":
            return np.where(pos, 0.0, math.log(_LEAKY))
        if act == "sigmoid":
            return -az - 2.0 * np.log1p(np.exp(-az))
        if act == "tanh":
            return math.log(4.0) - 2.0 * az - 2.0 * np.log1p(np.exp(-2.0 * az))
        if act == "elu":
            return np.where(pos, 0.0, z)
        if act == "selu":
            return np.where(pos, math.log(_SELU_L), math.log(_SELU_L * _SELU_A) + z)
        if act == "softplus":
            return _ln_sigmoid(z)
        if act == "silu":
            zz = np.where(np.isfinite(z), z, 0.0)
            sm = np.exp(_ln_sigmoid(-zz))  # sigmoid(-z)
            out = _ln_sigmoid(z) + np.log(np.abs(1.0 + zz * sm))
            return np.where(np.isposinf(z), 0.0, np.where(np.isneginf(z), -np.inf, out))
        if act == "gelu":
            out = np.empty_like(z)
            mid = z >= -5.0
            zm_ = z[mid]
            zfin = np.where(np.isfinite(zm_), zm_, 0.0)
            cdf = 0.5 * _erfc(-zfin / math.sqrt(2.0))
            d = cdf + zfin * np.exp(-0.5 * zfin * zfin - _LN_SQRT_2PI)
            out[mid] = np.where(np.isposinf(zm_), 0.0, np.log(np.abs(d)))
            zl = z[~mid]
            fin = np.isfinite(zl)
            zf = np.where(fin, zl, -10.0)
            r = _SQRT_PI_2 * _erfcx_large(-zf / math.sqrt(2.0))
            # a' = phi (R + z), phi = e^{-z^2/2} / sqrt(2 pi), in log space
            val = -0.5 * zf * zf - _LN_SQRT_2PI + np.log(np.abs(r + zf))
            out[~mid] = np.where(fin, val, -np.inf)
            return out
    raise ValueError(f"unknown activation {act!r}")


def _f64_activation(act: str, z: np.ndarray) -> np.ndarray:
    """float64 activation values (fallback forward for layers with no gradient signal)."""
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        if act == "identity":
            return z
        if act == "relu":
            return np.where(z > 0, z, 0.0)
        if act == "leaky_relu":
            return np.where(z > 0, z, _LEAKY * z)
        if act == "sigmoid":
            return np.asarray(np.exp(_ln_sigmoid(z)))
        if act == "tanh":
            return np.asarray(np.tanh(z))
        if act == "elu":
            return np.where(z > 0, z, np.expm1(np.minimum(z, 0.0)))
        if act == "selu":
            return _SELU_L * np.where(z > 0, z, _SELU_A * np.expm1(np.minimum(z, 0.0)))
        if act == "softplus":
            return np.asarray(np.logaddexp(0.0, z))
        if act == "silu":
            return np.asarray(z * np.exp(_ln_sigmoid(z)))
        if act == "gelu":
            return np.asarray(z * 0.5 * _erfc(-z / math.sqrt(2.0)))
    raise ValueError(f"unknown activation {act!r}")


def _strided(a: np.ndarray, offset: int, shape: tuple[int, ...], strides: tuple[int, ...]) -> np.ndarray:
    base = a[offset:]
    return np.lib.stride_tricks.as_strided(base, shape=shape, strides=strides, writeable=False)


def _derivative_stats(net: Network, x: np.ndarray, lay: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """Per layer: mean log10 |f'(z_l)| over the nonzero derivatives, and the fraction f' = 0.

    The pre-activations are recovered from the engine, exactly: one batch-1
    backward pass per sample with loss "sum" gives dL/dW_l = delta_l a_l^T and
    dL/db_l = delta_l as exact (single-rounding) products, so for the row i
    with the largest |delta_l[i]|, a_l = dL/dW_l[i, :] / dL/db_l[i] to two
    rounding errors, in any range. Then z_l = W_l a_l + b_l (one scaled float64
    matrix product per run of equal-shape layers, exponents carried), and
    ln |f'(z_l)| in log space as the engine does. Only where a layer has no
    gradient signal at all (every delta_l[i] exactly 0: dead relu layers)
    is a_l taken from a float64 forward pass instead.
    """
    L = net.depth
    B = x.shape[0]
    acts = net.activations
    params = net.params
    runs = lay.runs()
    fp_sum = np.zeros(L)
    fp_cnt = np.zeros(L)
    fp_zero = np.zeros(L)
    # inputs of every layer, per run: (B, G, n_in) mantissa/exponent planes
    run_am = [np.empty((B, l1 - l0, int(lay.n_in[l0]))) for l0, l1 in runs]
    run_ae = [np.empty((B, l1 - l0, int(lay.n_in[l0])), dtype=np.int64) for l0, l1 in runs]
    dead: dict[int, list[int]] = {}
    for s in range(B):
        gs = net.backward(x[s : s + 1], loss="sum", input_grad=False).params
        assert isinstance(gs, LogArray)
        gm, ge = gs.mantissa, gs.exponent
        for r, (l0, l1) in enumerate(runs):
            G, no, ni = l1 - l0, int(lay.n_out[l0]), int(lay.n_in[l0])
            st, sz = int(lay.starts[l0]), int(lay.sizes[l0])
            mW = _strided(gm, st, (G, no, ni), (sz * 8, ni * 8, 8))
            eW = _strided(ge, st, (G, no, ni), (sz * 8, ni * 8, 8))
            mb = _strided(gm, st + no * ni, (G, no), (sz * 8, 8))
            eb = _strided(ge, st + no * ni, (G, no), (sz * 8, 8))
            with np.errstate(divide="ignore"):
                key = np.where(mb == 0, -np.inf, eb + np.log2(np.abs(mb)))
            i = np.argmax(key, axis=1)
            rm = np.take_along_axis(mW, i[:, None, None], axis=1)[:, 0, :]
            re = np.take_along_axis(eW, i[:, None, None], axis=1)[:, 0, :]
            bm = np.take_along_axis(mb, i[:, None], axis=1)[:, 0]
            be = np.take_along_axis(eb, i[:, None], axis=1)[:, 0]
            ok = bm != 0
            with np.errstate(divide="ignore", invalid="ignore"):
                am, ae_ = np.frexp(np.where(ok[:, None], rm / np.where(ok, bm, 1.0)[:, None], 0.0))
            ae = np.where(am == 0, 0, ae_.astype(np.int64) + re - be[:, None])
            run_am[r][s], run_ae[r][s] = am, ae
            for g_ in np.flatnonzero(~ok):
                if l0 + int(g_) > 0:
                    dead.setdefault(s, []).append(l0 + int(g_))
        if runs[0][0] == 0:  # layer 0's input is x itself
            xm, xe = np.frexp(x[s])
            run_am[0][s, 0], run_ae[0][s, 0] = xm, xe.astype(np.int64)
    if dead:  # rare path: a float64 forward through the layers without gradient signal
        run_of = np.repeat(np.arange(len(runs)), [l1 - l0 for l0, l1 in runs])
        for s, layers in dead.items():
            want = set(layers)
            a = x[s].copy()
            for l in range(max(want)):
                a = _f64_activation(acts[l], net.weights[l] @ a + net.biases[l])
                if l + 1 in want:
                    r = int(run_of[l + 1])
                    am, ae_ = np.frexp(a)
                    run_am[r][s, l + 1 - runs[r][0]] = am
                    run_ae[r][s, l + 1 - runs[r][0]] = np.where(am == 0, 0, ae_.astype(np.int64))
    for r, (l0, l1) in enumerate(runs):
        G, no, ni = l1 - l0, int(lay.n_out[l0]), int(lay.n_in[l0])
        st, sz = int(lay.starts[l0]), int(lay.sizes[l0])
        W = _strided(params, st, (G, no, ni), (sz * 8, ni * 8, 8))
        b = _strided(params, st + no * ni, (G, no), (sz * 8, 8))
        am, ae = run_am[r], run_ae[r]
        emax = np.max(np.where(am == 0, _NEG, ae), axis=2, keepdims=True)
        emax = np.where(emax < -(2**60), 0, emax)
        with np.errstate(under="ignore"):
            scaled = np.ldexp(am, np.clip(ae - emax, -3000, 0).astype(np.int32))
        with np.errstate(over="ignore", invalid="ignore"):
            y = np.matmul(W[None], scaled[..., None])[..., 0]  # (B, G, no) times 2^emax
        ym, ye = np.frexp(y)
        ye = np.where(ym == 0, _NEG, ye.astype(np.int64) + emax)
        bm_, be_ = np.frexp(np.broadcast_to(b[None], y.shape))
        be_ = np.where(bm_ == 0, _NEG, be_.astype(np.int64))
        E = np.maximum(ye, be_)
        E = np.where(E < -(2**60), 0, E)
        with np.errstate(under="ignore"):
            zsum = np.ldexp(ym, np.clip(ye - E, -3000, 0).astype(np.int32)) + np.ldexp(
                bm_, np.clip(be_ - E, -3000, 0).astype(np.int32)
            )
        zm, ze_ = np.frexp(zsum)
        ze = np.where(zm == 0, 0, ze_.astype(np.int64) + E)
        lnd = np.empty(zm.shape)
        layer_acts = np.asarray(acts[l0:l1])
        for act in np.unique(layer_acts):
            sel = layer_acts == act
            lnd[:, sel] = _ln_abs_derivative(str(act), zm[:, sel], ze[:, sel])
        zero = np.isneginf(lnd)
        fp_zero[l0:l1] = zero.sum(axis=(0, 2))
        fp_cnt[l0:l1] = (~zero).sum(axis=(0, 2))
        fp_sum[l0:l1] = np.where(zero, 0.0, lnd).sum(axis=(0, 2)) / _LN10
    total = B * lay.n_out.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(fp_cnt > 0, fp_sum / np.maximum(fp_cnt, 1), np.nan)
    return mean, fp_zero / total


# ---------------------------------------------------------------------------
# Theory (optional): mean-field chi_1 for i.i.d. Gaussian networks
# ---------------------------------------------------------------------------


def _theory_slope(net: Network, lay: _Layout) -> float | None:
    """0.5 log10 chi_1 from loggrad.theory when the net looks i.i.d. Gaussian; else None.

    sigma_w^2 is estimated per layer as n_in * mean(W^2) and sigma_b^2 as
    mean(b^2) (vectorised over layers); the network "looks i.i.d." when it has
    one activation, no exact zeros among the weights (identity-like or
    sparse matrices are not i.i.d. draws), zero-mean weights and per-layer
    sigma_w^2 that agree with their mean over the hidden layers. The last two
    allow for sampling noise, so that a genuinely i.i.d. network of many narrow
    layers is not refused because one layer's sample is off by 4 sigma: per
    layer of k weights, |mean W| < (0.05 + 6/sqrt(k)) std and
    |ln(sigma_w^2 / mean)| < ln 1.25 + 5 sqrt(2/k) (the log of the sample
    variance of k Gaussian draws has standard deviation about sqrt(2/k)). The
    prediction is :func:`loggrad.theory.log10_gradient_growth_per_layer` at the
    fixed point q* (same sign convention as :attr:`Report.slope`). None when
    loggrad.theory is missing or refuses the parameters.
    """
    try:
        from . import theory
    except ImportError:
        return None
    if len(set(net.activations)) != 1 or net.depth < 2:
        return None
    p = net.params
    wsum = np.add.reduceat(p * p, lay.seg_starts)
    wlin = np.add.reduceat(p, lay.seg_starts)[0::2]
    sw2 = wsum[0::2] / lay.wsizes * lay.n_in
    sb2 = wsum[1::2] / lay.n_out
    inner = slice(1, -1) if net.depth > 2 else slice(None)
    hidden = sw2[inner]
    mean_sw2 = float(np.mean(hidden))
    k = lay.wsizes.astype(float)
    if not (mean_sw2 > 0 and np.all(hidden > 0)):
        return None
    if np.any(np.abs(np.log(hidden / mean_sw2)) > math.log(1.25) + 5.0 * np.sqrt(2.0 / k[inner])):
        return None
    n_zero = int(np.add.reduceat((p == 0.0).astype(np.int64), lay.seg_starts)[0::2].sum())
    if n_zero > 0.01 * int(lay.wsizes.sum()):
        return None
    w_mean = wlin / lay.wsizes
    w_std = np.sqrt(np.maximum(wsum[0::2] / lay.wsizes - w_mean**2, 0.0))
    if np.any(np.abs(w_mean) > (0.05 + 6.0 / np.sqrt(k)) * w_std):
        return None
    sigma_w = math.sqrt(mean_sw2)
    sigma_b = math.sqrt(float(np.mean(sb2[inner])))
    act = net.activations[0]
    try:
        growth = getattr(theory, "log10_gradient_growth_per_layer", None)
        if growth is not None:
            v = float(growth(act, sigma_w, sigma_b))
        else:
            c = float(theory.chi1(act, sigma_w, sigma_b))
            v = 0.5 * math.log10(c) if c > 0 else -math.inf
    except Exception:  # noqa: BLE001 - the prediction is optional
        return None
    return v if math.isfinite(v) else None


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------


def _enc(v: Any) -> Any:
    """Strict-JSON value: non-finite floats as the strings "inf", "-inf", "nan";
    a LogArray as its sign and log10; numpy scalars and arrays as Python ones."""
    if isinstance(v, LogArray):
        return {"sign": _enc(np.asarray(v.sign())), "log10": _enc(np.asarray(v.log10()))}
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return f
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.ndarray):
        return _enc(v.tolist())
    if isinstance(v, (list, tuple)):
        return [_enc(u) for u in v]
    if isinstance(v, dict):
        return {str(k): _enc(u) for k, u in v.items()}
    return v


_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _dec(v: Any) -> Any:
    if isinstance(v, str) and v in _NONFINITE:
        return _NONFINITE[v]
    if isinstance(v, list):
        return [_dec(u) for u in v]
    if isinstance(v, dict):
        return {k: _dec(u) for k, u in v.items()}
    return v


def _fmt(v: Any, f: str) -> str:
    if v is None:
        return "-"
    x = float(v)
    if math.isnan(x):
        return "-"
    if math.isinf(x):
        return "-inf" if x < 0 else "inf"
    return f.format(x)


@dataclass
class Report:
    """Gradient-health report of one network on one batch (see :func:`report`).

    Per-layer arrays (index l = 0 is the input layer; all log10 are exact):

    grad_norm_w, grad_norm_b: log10 of the Euclidean norms of dL/dW_l and dL/db_l
        (-inf for an exactly zero gradient)
    grad_max, grad_min:  log10 of the largest and smallest nonzero |dL/dW_l[i, j]|
        (nan if the whole block is zero)
    act_deriv:           mean over batch and units of log10 |f'(z_l)|, over the
        nonzero derivatives (nan if all are zero)
    act_deriv_zero:      fraction of f'(z_l) that are exactly zero (closed relu gates)
    f64_underflow, f64_overflow, f32_underflow, f32_overflow: fraction of the
        layer's gradient entries (W and b) that float64 / float32 would round
        to 0 (a nonzero value) or to inf
    lost_update:         (when lr is given) fraction of the layer's parameters
        (W and b) with a nonzero gradient whose SGD update w - lr*g rounds back
        to w in float64 (the update is within half an ulp of w), as
        :class:`loggrad.train.StepReport.fraction_unchanged` counts it; None
        without lr

    Network level:

    slope:      least-squares slope of grad_norm_w against the distance from the
        output (L-1-l): the change in log10 |dL/dW| per layer as the gradient
        travels back toward the input. Negative: vanishing; positive: exploding.
        Layers with an exactly zero gradient are left out of the fit.
    slope_ci:   95% confidence interval (t distribution, n-2 degrees of freedom)
    slope_stderr: standard error of the slope
    total_change: slope * (L - 1): fitted change in decades from the output
        layer to the input layer
    f64_fail_layer, f32_fail_layer: scanning from the output, the first layer
        l with any gradient entry that the format rounds to 0 or inf (None: none)
    f64_fail_from_output, f32_fail_from_output: the same as L-1-l
    verdict:    "exploding" if float64 overflows anywhere or total_change >=
        +decades; else "vanishing" if float64 flushes a gradient entry to 0, the
        input layer's gradient is exactly zero, or total_change <= -decades;
        else "healthy" (decades = VERDICT_DECADES = 3 by default)
    theory_slope: 0.5 log10 chi_1 from loggrad.theory (mean-field prediction of
        slope for i.i.d. Gaussian weights), when available; else None
    """

    depth: int
    widths: list[int]
    activations: list[str]
    loss: str
    batch: int
    lr: float | None
    loss_log10: float
    grad_norm_w: np.ndarray
    grad_norm_b: np.ndarray
    grad_max: np.ndarray
    grad_min: np.ndarray
    act_deriv: np.ndarray
    act_deriv_zero: np.ndarray
    f64_underflow: np.ndarray
    f64_overflow: np.ndarray
    f32_underflow: np.ndarray
    f32_overflow: np.ndarray
    lost_update: np.ndarray | None
    slope: float
    slope_ci: tuple[float, float]
    slope_stderr: float
    total_change: float
    f64_fail_layer: int | None
    f32_fail_layer: int | None
    verdict: str
    decades: float = VERDICT_DECADES
    theory_slope: float | None = None
    notes: list[str] = field(default_factory=list)

    # -- derived --------------------------------------------------------------
    @property
    def f64_fail_from_output(self) -> int | None:
        return None if self.f64_fail_layer is None else self.depth - 1 - self.f64_fail_layer

    @property
    def f32_fail_from_output(self) -> int | None:
        return None if self.f32_fail_layer is None else self.depth - 1 - self.f32_fail_layer

    def fit_line(self) -> np.ndarray | None:
        """The fitted log10 |dL/dW_l| per layer (least squares, see :attr:`slope`); None without a slope."""
        ok = np.isfinite(self.grad_norm_w)
        if not (math.isfinite(self.slope) and ok.sum() >= 2):
            return None
        d = (self.depth - 1 - np.arange(self.depth)).astype(np.float64)
        centre = float(np.mean(self.grad_norm_w[ok])) - self.slope * float(np.mean(d[ok]))
        out: np.ndarray = centre + self.slope * d
        return out

    def theory_line(self) -> np.ndarray | None:
        """Predicted log10 |dL/dW_l| per layer: the measured output-layer value plus
        theory_slope per layer toward the input; None without a theory slope or
        when the output layer's gradient is zero."""
        if self.theory_slope is None or not math.isfinite(float(self.grad_norm_w[-1])):
            return None
        d = (self.depth - 1 - np.arange(self.depth)).astype(np.float64)
        out: np.ndarray = float(self.grad_norm_w[-1]) + self.theory_slope * d
        return out

    def summary(self) -> dict[str, Any]:
        """Network-level figures as a flat dict (one sweep row)."""
        return {
            "depth": self.depth,
            "loss": self.loss,
            "batch": self.batch,
            "lr": self.lr,
            "loss_log10": self.loss_log10,
            "slope": self.slope,
            "slope_ci_low": self.slope_ci[0],
            "slope_ci_high": self.slope_ci[1],
            "slope_stderr": self.slope_stderr,
            "total_change": self.total_change,
            "theory_slope": self.theory_slope,
            "theory_change": None if self.theory_slope is None else self.theory_slope * (self.depth - 1),
            "log10_grad_norm_first": float(self.grad_norm_w[0]),
            "log10_grad_norm_last": float(self.grad_norm_w[-1]),
            "f64_fail_layer": self.f64_fail_layer,
            "f64_fail_from_output": self.f64_fail_from_output,
            "f32_fail_layer": self.f32_fail_layer,
            "f32_fail_from_output": self.f32_fail_from_output,
            "verdict": self.verdict,
        }

    def records(self) -> list[dict[str, Any]]:
        """One dict per layer (``pandas.DataFrame(report.records())``)."""
        cols = {key: getattr(self, attr) for key, attr, _, _ in _LAYER_FIELDS}
        cols = {k: (v.tolist() if v is not None else [None] * self.depth) for k, v in cols.items()}
        theory = self.theory_line()
        out = []
        for l in range(self.depth):
            rec: dict[str, Any] = {
                "layer": l,
                "from_output": self.depth - 1 - l,
                "activation": self.activations[l],
                "n_in": self.widths[l],
                "n_out": self.widths[l + 1],
            }
            rec.update({k: v[l] for k, v in cols.items()})
            rec["log10_grad_norm_w_theory"] = None if theory is None else float(theory[l])
            out.append(rec)
        return out

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain Python values (per-layer arrays as lists)."""
        d: dict[str, Any] = {
            "depth": self.depth,
            "widths": list(self.widths),
            "activations": list(self.activations),
            "loss": self.loss,
            "batch": self.batch,
            "lr": self.lr,
            "loss_log10": self.loss_log10,
            "slope": self.slope,
            "slope_ci": list(self.slope_ci),
            "slope_stderr": self.slope_stderr,
            "total_change": self.total_change,
            "f64_fail_layer": self.f64_fail_layer,
            "f32_fail_layer": self.f32_fail_layer,
            "verdict": self.verdict,
            "decades": self.decades,
            "theory_slope": self.theory_slope,
            "notes": list(self.notes),
        }
        d["layers"] = {
            attr: (None if getattr(self, attr) is None else getattr(self, attr).tolist())
            for _, attr, _, _ in _LAYER_FIELDS
        }
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        d = _dec(d)
        layers = d["layers"]
        kw = {k: v for k, v in d.items() if k != "layers"}
        kw["slope_ci"] = tuple(kw["slope_ci"])
        for _, attr, _, _ in _LAYER_FIELDS:
            v = layers.get(attr)
            kw[attr] = None if v is None else np.asarray(v, dtype=np.float64)
        return cls(**kw)

    def to_json(self, **kwargs: Any) -> str:
        """Strict JSON: non-finite numbers as null (see loggrad._json); :meth:`from_json`
        reads a null in a per-layer array as nan."""
        from ._json import dumps

        return dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, s: str) -> Report:
        return cls.from_dict(json.loads(s))

    # -- display --------------------------------------------------------------
    def _rows_shown(self, max_rows: int | None) -> list[int]:
        L = self.depth
        if max_rows is None or max_rows <= 0 or L <= max_rows:
            return list(range(L))
        keep = {0, 1, 2, L - 3, L - 2, L - 1}
        for f in (self.f64_fail_layer, self.f32_fail_layer):
            if f is not None:
                keep.add(f)
        n_more = max(max_rows - len(keep), 0)
        keep.update(np.linspace(0, L - 1, n_more + 2).round().astype(int).tolist())
        return sorted(keep)

    def _columns(self) -> list[tuple[str, str, str]]:
        cols = [(attr, head, f) for _, attr, head, f in _LAYER_FIELDS]
        if self.lost_update is None:
            cols = [c for c in cols if c[0] != "lost_update"]
        if not np.any(self.act_deriv_zero):
            cols = [c for c in cols if c[0] != "act_deriv_zero"]
        if self.theory_line() is not None:  # prediction beside the measurement
            cols.insert(1, ("theory_norm_w", "theory", "{:.3f}"))
        return cols

    @property
    def theory_norm_w(self) -> np.ndarray | None:
        """:meth:`theory_line` as an attribute (the table's "theory" column)."""
        return self.theory_line()

    def _cells(self, rows: list[int]) -> tuple[list[str], list[list[str]]]:
        cols = self._columns()
        head = ["layer", "act"] + [h for _, h, _ in cols]
        body = []
        for l in rows:
            body.append(
                [str(l), self.activations[l]] + [_fmt(getattr(self, a)[l], f) for a, _, f in cols]
            )
        return head, body

    def _summary_lines(self) -> list[str]:
        L = self.depth
        lo, hi = self.slope_ci
        lines = [
            f"loggrad report: {L} layers, widths {_short(self.widths)}, {_act_summary(self.activations)}, "
            f"{self.loss} loss, batch {self.batch}" + (f", lr {self.lr:g}" if self.lr is not None else ""),
        ]
        s = (
            f"growth per layer toward the input: {_fmt(self.slope, '{:+.5f}')} decades "
            f"(95% CI {_fmt(lo, '{:+.5f}')} .. {_fmt(hi, '{:+.5f}')})"
        )
        if self.theory_slope is not None:
            s += f"; theory (mean field, 0.5 log10 chi1) {self.theory_slope:+.5f}"
        lines.append(s)
        th_change = "" if self.theory_slope is None else f" (theory {self.theory_slope * (L - 1):+.2f})"
        lines.append(
            f"fitted change output -> input: {_fmt(self.total_change, '{:+.2f}')} decades{th_change}; "
            f"log10|dW| from {_fmt(self.grad_norm_w[-1], '{:.2f}')} (layer {L - 1}) "
            f"to {_fmt(self.grad_norm_w[0], '{:.2f}')} (layer 0)"
        )
        for name, fl in (("float64", self.f64_fail_layer), ("float32", self.f32_fail_layer)):
            if fl is None:
                lines.append(f"{name}: every gradient entry in range")
            else:
                lines.append(
                    f"{name} fails from layer {fl} ({L - 1 - fl} layers from the output) toward the input"
                )
        lines.append(f"verdict: {self.verdict}")
        lines.extend(f"note: {n}" for n in self.notes)
        return lines

    def table(self, max_rows: int | None = 16, rich: bool | None = None) -> str:
        """The report as text: a per-layer table (at most max_rows rows; None or 0 for all) and a summary.

        rich=None uses rich when installed, True requires it, False gives plain text.
        """
        rows = self._rows_shown(max_rows)
        head, body = self._cells(rows)
        use_rich = rich
        if use_rich is None:
            try:
                import rich as _rich  # noqa: F401

                use_rich = True
            except ImportError:
                use_rich = False
        if use_rich:
            from rich.console import Console

            buf = io.StringIO()
            console = Console(file=buf, width=200, color_system=None, force_terminal=False)
            console.print(self._rich_table(rows, head, body))
            for line in self._summary_lines():
                console.print(line, highlight=False, markup=False)
            return buf.getvalue().rstrip("\n")
        widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(head)]
        out = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
        prev = None
        for l, r in zip(rows, body):
            if prev is not None and l != prev + 1:
                out.append("  ".join("...".rjust(w) for w in widths[:1]))
            out.append("  ".join(c.rjust(w) for c, w in zip(r, widths)))
            prev = l
        return "\n".join(out + [""] + self._summary_lines())

    def _rich_table(self, rows: list[int], head: list[str], body: list[list[str]]) -> Any:
        from rich.table import Table

        t = Table(title=None, show_lines=False)
        for h in head:
            t.add_column(h, justify="right")
        prev = None
        for l, r in zip(rows, body):
            if prev is not None and l != prev + 1:
                t.add_row(*(["..."] + [""] * (len(head) - 1)))
            t.add_row(*r)
            prev = l
        return t

    def __rich_console__(self, console: Any, options: Any) -> Any:  # pragma: no cover - interactive
        rows = self._rows_shown(16)
        head, body = self._cells(rows)
        yield self._rich_table(rows, head, body)
        for line in self._summary_lines():
            yield line

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return (
            f"Report(depth={self.depth}, verdict={self.verdict!r}, slope={self.slope:+.4g}, "
            f"f64_fail_layer={self.f64_fail_layer}, f32_fail_layer={self.f32_fail_layer})"
        )

    # -- plot -----------------------------------------------------------------
    def plot(self, path: str | None = None, ax: Any = None) -> Any:
        """log10 gradient norm against layer, with float64 and float32 range limits.

        Draws on ax (a matplotlib Axes) or a new figure; saves to path when
        given. Returns the Axes. Needs matplotlib (``pip install matplotlib``
        or ``pip install "loggrad[plot]"``).
        """
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "Report.plot needs matplotlib: pip install matplotlib (or pip install 'loggrad[plot]')"
            ) from exc
        fig = None
        if ax is None:
            if path is not None:
                from matplotlib.figure import Figure

                fig = Figure(figsize=(8, 4.5))
                ax = fig.add_subplot()
            else:
                import matplotlib.pyplot as plt

                fig, ax = plt.subplots(figsize=(8, 4.5))
        layers = np.arange(self.depth)
        ax.plot(layers, self.grad_norm_w, lw=1.5, label=r"$\log_{10}\|\partial L/\partial W_l\|$")
        if np.any(np.isfinite(self.grad_norm_b)):
            ax.plot(layers, self.grad_norm_b, lw=1.0, ls="--", label=r"$\log_{10}\|\partial L/\partial b_l\|$")
        fin = np.isfinite(self.grad_max) & np.isfinite(self.grad_min)
        if fin.any():
            ax.fill_between(layers, np.where(fin, self.grad_min, np.nan), np.where(fin, self.grad_max, np.nan),
                            alpha=0.15, label="min..max |dL/dw|")
        fit = self.fit_line()
        if fit is not None:
            ax.plot(layers, fit, lw=1.0, ls="-.", color="0.4",
                    label=f"fit: {self.slope:+.4f} decades/layer")
        th = self.theory_line()
        if th is not None:
            ax.plot(layers, th, lw=1.2, ls="--", color="C2",
                    label=f"theory (mean field): {self.theory_slope:+.4f} decades/layer")
        for (lo, hi), name, color in ((FLOAT64_LOG10_RANGE, "float64", "C3"), (FLOAT32_LOG10_RANGE, "float32", "C1")):
            ax.axhline(lo, color=color, lw=1, ls=":", label=f"{name} range")
            ax.axhline(hi, color=color, lw=1, ls=":")
        ax.set_xlabel("layer")
        ax.set_ylabel("log10 gradient")
        title = f"{self.depth} layers, {_act_summary(self.activations)}: {self.verdict}"
        if math.isfinite(self.slope):
            title += f", {self.slope:+.4f} decades/layer toward the input"
        ax.set_title(title)
        ax.legend(loc="best", fontsize="small")
        if path is not None:
            (fig if fig is not None else ax.figure).savefig(path, bbox_inches="tight")
        return ax


def _short(widths: Sequence[int]) -> str:
    w = list(widths)
    if len(set(w)) == 1:
        return f"{w[0]} (all layers)"
    return str(w) if len(w) <= 8 else f"[{w[0]}, {w[1]}, ..., {w[-2]}, {w[-1]}]"


def _act_summary(acts: Sequence[str]) -> str:
    s = set(acts)
    return next(iter(s)) if len(s) == 1 else "mixed activations"


def _fit_slope(y: np.ndarray) -> tuple[float, tuple[float, float], float]:
    """Slope of y against the distance from the output, its 95% CI and standard error."""
    L = len(y)
    d = (L - 1 - np.arange(L)).astype(np.float64)
    ok = np.isfinite(y)
    n = int(ok.sum())
    if n < 2:
        return math.nan, (math.nan, math.nan), math.nan
    dx, yy = d[ok], y[ok]
    xm, ym = dx.mean(), yy.mean()
    sxx = float(np.sum((dx - xm) ** 2))
    slope = float(np.sum((dx - xm) * (yy - ym)) / sxx)
    if n < 3:
        return slope, (math.nan, math.nan), math.nan
    resid = yy - (ym + slope * (dx - xm))
    se = math.sqrt(float(np.sum(resid**2)) / (n - 2) / sxx)
    t = t_critical(n - 2, 0.95)
    return slope, (slope - t * se, slope + t * se), se


def _default_targets(net: Network, loss: str, batch: int) -> Any:
    if loss == "sum":
        return None
    if loss == "cross_entropy":
        return np.zeros(batch, dtype=np.int64)
    return np.zeros((batch, net.n_out))


def report(
    net: Network,
    x: npt.ArrayLike,
    y: npt.ArrayLike | None = None,
    loss: str = "mse",
    lr: float | None = None,
    *,
    derivatives: bool | int = True,
    decades: float = VERDICT_DECADES,
    theory: bool = True,
) -> Report:
    """Gradient-health report of net on the batch x (targets y, loss) — see :class:`Report`.

    One extended backward pass gives every gradient figure, exactly (log10 of
    norms and of the largest/smallest entries, what float64 and float32 would
    round to 0 or inf, and, with lr, which SGD updates float64 would lose).
    y=None uses zeros (label 0 for cross_entropy), as an untrained-network probe.

    derivatives: compute the mean log10 f'(z_l) per layer. This costs one
        extra batch-1 backward pass per sample (the pre-activations are
        recovered from them exactly; see ``_derivative_stats``); an int k
        uses only the first k samples (for wide layers and large batches);
        False skips it (the column is nan).
    decades: threshold of the verdict (see :class:`Report`).
    theory: add theory_slope from loggrad.theory when available.
    """
    xa, single = net._inputs(x)
    batch = xa.shape[0]
    if y is None:
        yd = _default_targets(net, loss, batch)
        y = yd[0] if single and yd is not None else yd
    if lr is not None and not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr}")
    g = net.backward(x, y, loss=loss, precision="extended", input_grad=False)
    grad = g.params
    assert isinstance(grad, LogArray)
    m, e = grad.mantissa, grad.exponent
    lay = _Layout.of(net)
    L = net.depth

    norms = _segment_norm_log10(m, e, lay.seg_starts, lay.seg_sizes)
    l10 = grad.log10()
    gmax = np.maximum.reduceat(l10, lay.seg_starts)[0::2]
    gmin = np.minimum.reduceat(np.where(np.isneginf(l10), np.inf, l10), lay.seg_starts)[0::2]
    gmax = np.where(np.isneginf(gmax), np.nan, gmax)
    gmin = np.where(np.isposinf(gmin), np.nan, gmin)

    masks = _range_masks(m, e)
    frac = {k: np.add.reduceat(v.astype(np.int64), lay.starts) / lay.sizes for k, v in masks.items()}

    lost = None
    if lr is not None:
        u = grad * lr
        lm = _lost_updates(net.params, u.mantissa, u.exponent)
        nz = np.add.reduceat((u.mantissa != 0).astype(np.int64), lay.starts)
        nlost = np.add.reduceat(lm.astype(np.int64), lay.starts)
        lost = np.where(nz > 0, nlost / np.maximum(nz, 1), 0.0)

    if derivatives is not False and int(derivatives) > 0:
        k = batch if derivatives is True else min(int(derivatives), batch)
        act_mean, act_zero = _derivative_stats(net, xa[:k], lay)
    else:
        act_mean, act_zero = np.full(L, np.nan), np.zeros(L)

    wn = norms[0::2]
    slope, ci, se = _fit_slope(wn)
    total = slope * (L - 1) if math.isfinite(slope) else 0.0

    def first_fail(under: np.ndarray, over: np.ndarray) -> int | None:
        bad = np.flatnonzero((under > 0) | (over > 0))
        return int(bad[-1]) if bad.size else None

    f64_fail = first_fail(frac["f64_underflow"], frac["f64_overflow"])
    f32_fail = first_fail(frac["f32_underflow"], frac["f32_overflow"])
    if np.any(frac["f64_overflow"] > 0) or total >= decades:
        verdict = "exploding"
    elif np.any(frac["f64_underflow"] > 0) or np.isneginf(wn[0]) or total <= -decades:
        verdict = "vanishing"
    else:
        verdict = "healthy"

    notes = []
    n_zero = int(np.sum(np.isneginf(wn)))
    if n_zero:
        notes.append(f"{n_zero} layer(s) have an exactly zero weight gradient (left out of the fit)")
    th = _theory_slope(net, lay) if theory else None
    loss_l10 = float(np.asarray(g.loss.log10()).reshape(())) if isinstance(g.loss, LogArray) else math.nan
    return Report(
        depth=L,
        widths=net.widths,
        activations=net.activations,
        loss=loss,
        batch=batch,
        lr=None if lr is None else float(lr),
        loss_log10=loss_l10,
        grad_norm_w=wn,
        grad_norm_b=norms[1::2],
        grad_max=gmax,
        grad_min=gmin,
        act_deriv=act_mean,
        act_deriv_zero=act_zero,
        f64_underflow=frac["f64_underflow"],
        f64_overflow=frac["f64_overflow"],
        f32_underflow=frac["f32_underflow"],
        f32_overflow=frac["f32_overflow"],
        lost_update=lost,
        slope=slope,
        slope_ci=ci,
        slope_stderr=se,
        total_change=float(total),
        f64_fail_layer=f64_fail,
        f32_fail_layer=f32_fail,
        verdict=verdict,
        decades=float(decades),
        theory_slope=th,
        notes=notes,
    )
