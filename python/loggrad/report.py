"""Gradient-health report of a network: forward and backward signal per layer, growth rate, verdict.

``report(net, x, y)`` runs one extended backward pass with the engine's
per-layer statistics (:func:`loggrad._core.backward_stats`, gathered during
the pass from values it already holds) and shows, layer by layer, the three
signals whose product is the weight gradient:

* forward: the root-mean-square of the layer's input ``a_l`` beside the
  length-map prediction (``q_l`` iterated from the data);
* backward: ``||delta_l||`` (``delta_l = dL/dz_l`` over the batch, the
  signal that ``0.5 log10 chi_1`` per layer predicts) beside the
  finite-width prediction anchored at the output layer;
* their product, ``||dW_l||`` (``dW_l = delta_l^T a_l``: equal to
  ``||delta_l|| ||a_l||`` for one sample, at most that for a batch),

plus the activation derivatives (mean log10 f', zero and saturated
fractions) and what float64, float32, bfloat16 and float16 would make of
each gradient entry. The growth rate is measured on ``log10 ||delta_l||``
(see :func:`growth_rate`), and the verdict looks at the backward change, the
forward change and the range of the gradient in float64 and float32.

The report computes no activation function: every per-layer figure comes
from the engine, vectorised over layers in numpy (no Python loop over layers
on the normal path; the theory iterates the length map over at most
``THEORY_TRANSIENT_LAYERS`` layers).

::

    rep = loggrad.report.report(net, x, y, lr=1e-3)
    print(rep)              # table (rich on a terminal when installed, else plain text)
    rep.records()           # one dict per layer (pandas.DataFrame(rep.records()))
    rep.to_json()           # and Report.from_json(...)
    rep.plot("grad.png")    # needs matplotlib
"""

from __future__ import annotations

import io
import json
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import _core
from ._json import from_lossless, lossless
from ._logarray import LogArray

if TYPE_CHECKING:
    from ._layout import Layout
    from .network import Network

__all__ = [
    "Report",
    "report",
    "growth_rate",
    "t_critical",
    "VERDICT_DECADES",
    "FORMATS",
    "FLOAT64_LOG10_RANGE",
    "FLOAT32_LOG10_RANGE",
    "SATURATED_DERIVATIVE",
]

_LOG10_2 = math.log10(2.0)
_LN10 = math.log(10.0)

#: A network whose backward signal ||delta|| (fitted growth rate times L - 1)
#: or forward signal (rms of the activations, first hidden layer to output)
#: changes by at least this many decades is "vanishing"/"exploding".
VERDICT_DECADES = 3.0

#: Formats whose range each value is checked against (engine order).
FORMATS = ("float64", "float32", "bfloat16", "float16")
_FMT_PREFIX = ("f64", "f32", "bf16", "f16")

#: log10 of the smallest subnormal and of the largest finite value.
FLOAT64_LOG10_RANGE = (-1074 * _LOG10_2, math.log10(np.finfo(np.float64).max))
FLOAT32_LOG10_RANGE = (-149 * _LOG10_2, math.log10(float(np.finfo(np.float32).max)))

#: A nonzero activation derivative below this is "saturated": the unit passes
#: less than 2^-10 ~ 1e-3 of its gradient back (the engine's
#: kSaturatedDerivative; sigmoid beyond |z| ~ 6.9, tanh beyond |z| ~ 3.8).
SATURATED_DERIVATIVE = 2.0**-10

# Residual chains whose backward pass the mean-field recursion describes: the
# "gradient independence" between the backward weights and the forward
# derivatives needs E[phi''(h)] = 0 (Stein's lemma gives E[W_ji phi'(h_j)] ~
# a_i E[phi''(h_j)]), true for identity and the odd-derivative tanh and
# sigmoid; for relu at depth 300 the prediction misses ||delta|| by 4 decades.
_RESIDUAL_THEORY_ACTS = ("identity", "tanh", "sigmoid")

#: Residual chains of activations without closed forms get theory up to this
#: depth (their profile needs quadratures in every layer).
THEORY_RESIDUAL_DEPTH = 1000

#: The theory iterates the length map layer by layer until q settles (relative
#: change below 1e-9) or for at most this many layers; q still moving after
#: that (slow convergence, e.g. tanh at sigma_b = 0) is reported in the notes
#: and the deeper layers get the last q.
THEORY_TRANSIENT_LAYERS = 100

# Per-layer fields: (record key, attribute, header, format).
LAYER_FIELDS: tuple[tuple[str, str, str, str], ...] = (
    ("log10_act_rms", "act_rms", "log10 rms a", "{:.3f}"),
    ("log10_act_norm", "act_norm", "log10|a|", "{:.3f}"),
    ("log10_delta_norm", "delta_norm", "log10|delta|", "{:.3f}"),
    ("log10_grad_norm_w", "grad_norm_w", "log10|dW|", "{:.3f}"),
    ("log10_grad_norm_b", "grad_norm_b", "log10|db|", "{:.3f}"),
    ("log10_grad_max", "grad_max", "log10 max|dw|", "{:.3f}"),
    ("log10_grad_min", "grad_min", "log10 min|dw|", "{:.3f}"),
    ("mean_log10_act_deriv", "act_deriv", "mean log10 f'", "{:.3f}"),
    ("act_deriv_zero_frac", "act_deriv_zero", "f'=0", "{:.2f}"),
    ("act_saturated_frac", "act_saturated", "f'<2^-10", "{:.2f}"),
    ("f64_underflow_frac", "f64_underflow", "f64 ->0", "{:.2f}"),
    ("f64_subnormal_frac", "f64_subnormal", "f64 sub", "{:.2f}"),
    ("f64_overflow_frac", "f64_overflow", "f64 ->inf", "{:.2f}"),
    ("f32_underflow_frac", "f32_underflow", "f32 ->0", "{:.2f}"),
    ("f32_subnormal_frac", "f32_subnormal", "f32 sub", "{:.2f}"),
    ("f32_overflow_frac", "f32_overflow", "f32 ->inf", "{:.2f}"),
    ("bf16_underflow_frac", "bf16_underflow", "bf16 ->0", "{:.2f}"),
    ("bf16_subnormal_frac", "bf16_subnormal", "bf16 sub", "{:.2f}"),
    ("bf16_overflow_frac", "bf16_overflow", "bf16 ->inf", "{:.2f}"),
    ("f16_underflow_frac", "f16_underflow", "f16 ->0", "{:.2f}"),
    ("f16_subnormal_frac", "f16_subnormal", "f16 sub", "{:.2f}"),
    ("f16_overflow_frac", "f16_overflow", "f16 ->inf", "{:.2f}"),
    ("lost_update_frac", "lost_update", "lost", "{:.2f}"),
)
# Fields that may be None (not computed).
_OPTIONAL_FIELDS = {"lost_update"}


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


def t_critical(dof: int, level: float = 0.95) -> float:
    """Two-sided critical value of Student's t: P(|T| <= t) = level.

    Exact (bisection on the closed-form CDF) for dof <= 100; for larger dof
    the Cornish-Fisher expansion in 1/dof to fourth order (A&S 26.7.5) around
    the normal quantile (``statistics.NormalDist().inv_cdf``), whose error
    there is below 1e-9. NaN for dof < 1.
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
    x = statistics.NormalDist().inv_cdf(0.5 + 0.5 * level)
    g1 = (x**3 + x) / 4.0
    g2 = (5 * x**5 + 16 * x**3 + 3 * x) / 96.0
    g3 = (3 * x**7 + 19 * x**5 + 17 * x**3 - 15 * x) / 384.0
    g4 = (79 * x**9 + 776 * x**7 + 1482 * x**5 - 1920 * x**3 - 945 * x) / 92160.0
    return x + g1 / nu + g2 / nu**2 + g3 / nu**3 + g4 / nu**4


def growth_rate(y: npt.ArrayLike, level: float = 0.95) -> tuple[float, tuple[float, float], float, int]:
    """Growth rate of a per-layer log-norm toward the input, with an honest interval.

    y: log10 norms per layer (index 0 = input layer). Returns (rate, (lo, hi),
    standard error, blocks): rate is the mean per-layer increment
    ``y_l - y_{l+1}`` over the layers from the output down to the first
    non-finite value (an exactly zero signal), i.e. the change from the output
    to that layer divided by the number of steps.

    Why not least squares on y: y is a random walk in depth (each layer
    multiplies the signal by a random factor), so its residuals about a line
    are strongly correlated and the OLS interval is about 40x too narrow at
    depth 300. The increments, by contrast, are a stationary sequence with
    short memory for a network of i.i.d. layers (the direction of delta is a
    Markov chain that forgets its start within a few layers), and the growth
    rate that another draw of the same architecture would give is their
    expectation. The interval is that of their mean by batch means: the n
    increments are split into k = floor(sqrt(n)) contiguous blocks, and the
    standard error is the standard deviation of the block means over sqrt(k),
    with Student's t on k - 1 degrees of freedom. Blocks of ~sqrt(n) layers
    absorb the correlation between neighbouring layers that a plain standard
    error of the increments would ignore, and no resampling (hence no random
    numbers) is needed. Tested for coverage over many seeds.
    """
    yy = np.asarray(y, dtype=np.float64)
    L = yy.size
    fin = np.isfinite(yy)
    if L < 2 or not fin[-1]:
        return math.nan, (math.nan, math.nan), math.nan, 0
    bad = np.flatnonzero(~fin)
    lo_layer = int(bad[-1]) + 1 if bad.size else 0
    inc = yy[lo_layer:-1] - yy[lo_layer + 1 :]  # increments toward the input
    n = inc.size
    if n < 1:
        return math.nan, (math.nan, math.nan), math.nan, 0
    rate = float(np.mean(inc))
    k = int(math.isqrt(n))
    if k < 2:
        if n < 2:
            return rate, (math.nan, math.nan), math.nan, 0
        k = n
    means = np.array([b.mean() for b in np.array_split(inc, k)])
    se = float(np.std(means, ddof=1) / math.sqrt(k))
    t = t_critical(k - 1, level)
    return rate, (rate - t * se, rate + t * se), se, k


# ---------------------------------------------------------------------------
# Vectorised per-layer helpers on the parameter-layout planes
# ---------------------------------------------------------------------------


def _range_masks(m: np.ndarray, e: np.ndarray) -> dict[str, np.ndarray]:
    """Which extended values float64 / float32 would round to 0 or to inf.

    Round to nearest even of |x| = |m| 2^e (|m| in [0.5, 1)):
      float64: 0 iff |x| <= 2^-1075 (half the smallest subnormal; the tie goes to 0),
               inf iff |x| >= 2^1024;
      float32: 0 iff |x| <= 2^-150, inf iff |x| >= (1 - 2^-25) 2^128 (half-way
               between the largest float32 and 2^128).
    Exact zeros are in none of the masks. (The engine's statistics count the
    same way, cpp/src/stats.cpp; this vectorised form serves the tests and
    values outside a pass.)
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
# The engine's per-layer statistics (cpp/include/loggrad/stats.hpp)
# ---------------------------------------------------------------------------

_TENSORS = ("dW", "db", "delta", "a")
_TENSOR_FIELDS = 8 + 3 * len(FORMATS)


def _tensor(stats: np.ndarray, name: str) -> dict[str, np.ndarray]:
    """One tensor's columns of the engine's (L, fields) statistics array."""
    o = _TENSORS.index(name) * _TENSOR_FIELDS
    s = stats[:, o : o + _TENSOR_FIELDS]
    nf = len(FORMATS)
    with np.errstate(invalid="ignore"):
        return {
            "norm": (s[:, 0] + s[:, 1]) * _LOG10_2,  # -inf + 0 for an all-zero tensor
            "max": (s[:, 2] + s[:, 3]) * _LOG10_2,
            "min": (s[:, 4] + s[:, 5]) * _LOG10_2,
            "count": s[:, 6],
            "zeros": s[:, 7],
            "flush": s[:, 8 : 8 + nf],
            "subnormal": s[:, 8 + nf : 8 + 2 * nf],
            "overflow": s[:, 8 + 2 * nf : 8 + 3 * nf],
        }


def _derivatives(stats: np.ndarray) -> dict[str, np.ndarray]:
    s = stats[:, len(_TENSORS) * _TENSOR_FIELDS :]
    count, zeros, sat, sum_log2 = s[:, 0], s[:, 1], s[:, 2], s[:, 3]
    nz = count - zeros
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(nz > 0, sum_log2 * _LOG10_2 / np.maximum(nz, 1), np.nan)
    return {"mean": mean, "zero": zeros / count, "saturated": sat / count}


# ---------------------------------------------------------------------------
# Theory (optional): mean field with finite-width corrections, for i.i.d. Gaussian networks
# ---------------------------------------------------------------------------


def _iid_sigmas(net: Network, lay: Layout, residual_ok: bool = False) -> tuple[float, float] | None:
    """(sigma_w, sigma_b) when the net looks like one i.i.d. Gaussian draw; else None.

    sigma_w^2 is estimated per layer as n_in * mean(W^2) and sigma_b^2 as
    mean(b^2) (vectorised over layers); the network "looks i.i.d." when it has
    one activation, no exact zeros among the weights (identity-like or
    sparse matrices are not i.i.d. draws), zero-mean weights and per-layer
    sigma_w^2 that agree with their mean over the hidden layers. The last two
    allow for sampling noise, so that a genuinely i.i.d. network of many narrow
    layers is not refused because one layer's sample is off by 4 sigma: per
    layer of k weights, |mean W| < (0.05 + 6/sqrt(k)) std and
    |ln(sigma_w^2 / mean)| < ln 1.25 + 5 sqrt(2/k) (the log of the sample
    variance of k Gaussian draws has standard deviation about sqrt(2/k)).
    """
    if len(set(net.activations)) != 1 or net.depth < 2:
        return None
    if not residual_ok and any(s is not None for s in getattr(net, "residual", [])):
        return None  # the plain-layer maps do not describe residual layers
    p = net.params
    if np.all(lay.sizes == lay.sizes[0]):  # equal layers: one (L, block) view, no temporaries of p's size
        P = p.reshape(lay.sizes.size, int(lay.sizes[0]))
        W, b = P[:, : int(lay.weight_sizes[0])], P[:, int(lay.weight_sizes[0]) :]
        wsq, bsq = np.einsum("ij,ij->i", W, W), np.einsum("ij,ij->i", b, b)
        wlin = W.sum(axis=1)
        n_zero = int(W.size - np.count_nonzero(W))
    else:
        seg_starts = lay.segments[0]
        wsum = np.add.reduceat(p * p, seg_starts)
        wsq, bsq = wsum[0::2], wsum[1::2]
        wlin = np.add.reduceat(p, seg_starts)[0::2]
        n_zero = int(np.add.reduceat((p == 0.0).astype(np.int64), seg_starts)[0::2].sum())
    sw2 = wsq / lay.weight_sizes * lay.n_in
    sb2 = bsq / lay.n_out
    inner = slice(1, -1) if net.depth > 2 else slice(None)
    hidden = sw2[inner]
    mean_sw2 = float(np.mean(hidden))
    k = lay.weight_sizes.astype(float)
    if not (mean_sw2 > 0 and np.all(hidden > 0)):
        return None
    if np.any(np.abs(np.log(hidden / mean_sw2)) > math.log(1.25) + 5.0 * np.sqrt(2.0 / k[inner])):
        return None
    if n_zero > 0.01 * int(lay.weight_sizes.sum()):
        return None
    w_mean = wlin / lay.weight_sizes
    w_std = np.sqrt(np.maximum(wsq / lay.weight_sizes - w_mean**2, 0.0))
    if np.any(np.abs(w_mean) > (0.05 + 6.0 / np.sqrt(k)) * w_std):
        return None
    return math.sqrt(mean_sw2), math.sqrt(float(np.mean(sb2[inner])))


@dataclass
class _Theory:
    sigma_w: float
    sigma_b: float
    act_rms: np.ndarray  # predicted log10 rms of layer l's input a_l (a_0 = x: measured)
    delta_inc: np.ndarray  # predicted log10 ||delta_l|| - log10 ||delta_{l+1}|| (finite width), l < L-1
    slope: float  # finite-width per-layer growth of ||delta|| at q* (decades)
    slope_mean_field: float  # 0.5 log10 chi1 at q*
    chi1: float
    q_star: float
    c_star: float | None
    chi_c: float | None
    notes: list[str]


def _theory_residual(T: Any, net: Network, lay: Layout, x: np.ndarray, scales: list[Any]) -> _Theory | None:
    """Mean-field theory of a chain of residual layers a_{l+1} = a_l + s phi(W a_l + b), one scale s.

    :func:`loggrad.theory.residual_profile` gives the mean square p_l of a_l
    (from the data's mean square and mean) and chi_l = 1 + s^2 sigma_w^2
    E[phi'(h_l)^2], the factor of ||dL/da||^2 per layer. delta_l = dL/da_{l+1}
    s phi'(h_l), so ||delta_l||^2 / ||delta_{l+1}||^2 = chi_{l+1} E[phi'^2]_l
    / E[phi'^2]_{l+1}. No fixed point and no finite-width correction: the
    theory slope is the mean of these increments. None unless every layer is
    residual with the same nonzero s and the activation is one of
    _RESIDUAL_THEORY_ACTS, or beyond THEORY_RESIDUAL_DEPTH layers (one
    quadrature set per layer) except for identity.
    """
    s0 = scales[0]
    if s0 is None or s0 == 0 or any(v != s0 for v in scales):
        return None
    act = net.activations[0]
    L = net.depth
    if len(set(net.activations)) != 1 or act not in _RESIDUAL_THEORY_ACTS or (act != "identity" and
                                                                             L > THEORY_RESIDUAL_DEPTH):
        return None
    sig = _iid_sigmas(net, lay, residual_ok=True)
    if sig is None:
        return None
    sw, sb = sig
    if sw == 0:
        return None
    prof = T.residual_profile(act, sw, sb, float(s0), L, p0=float(np.mean(x * x)), m0=float(np.mean(x)))
    with np.errstate(divide="ignore", invalid="ignore"):
        rms = 0.5 * np.log10(prof.p[:L])
        e2 = (prof.chi - 1.0) / (float(s0) ** 2 * sw * sw)  # E[phi'(h_l)^2]
        inc = 0.5 * np.log10(e2[:-1] / e2[1:] * prof.chi[1:])
    if not (np.all(np.isfinite(inc)) and np.all(np.isfinite(rms))):
        return None
    slope = float(np.mean(inc)) if inc.size else 0.0
    note = (f"residual layers (s = {s0:g}): mean-field theory of residual chains, no fixed point and no "
            "finite-width correction; the theory slope is the mean of the per-layer predictions")
    return _Theory(sw, sb, rms, inc, slope, slope, float(np.mean(prof.chi)), math.nan, None, None, [note])


def _theory_homogeneous(T: Any, act: str, sw: float, sb: float, q0: float, lay: Layout, x: np.ndarray) -> _Theory:
    """The theory of identity, relu and leaky_relu networks in closed form.

    Their length map is linear, V(q) = a q + sigma_b^2 with a = chi1 =
    sigma_w^2 E[phi'^2] (the same constant as E[phi^2] / q), so q_l = a^l
    (q_0 - q*) + q* with q* = sigma_b^2 / (1 - a): taken in log10, vectorised
    over layers, in any range, with the finite-width drift of the typical
    log-norm added (below). The per-layer growth of ||delta|| does not
    depend on q.
    """
    L = lay.n_in.size
    a = float(T.chi1(act, sw, sb))
    ls = np.arange(L, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        if a > 1.0:
            c = sb * sb / (a - 1.0)
            lq = ls * math.log10(a) + math.log10(q0 + c) + np.log10(-np.expm1(np.log(c / (q0 + c)) - ls * math.log(a))
                                                               if c > 0 else np.ones(L))
        elif a == 1.0:
            lq = np.log10(q0 + ls * sb * sb)
        else:
            qs = sb * sb / (1.0 - a)
            lq = np.log10(a**ls * (q0 - qs) + qs)
    h = a / (sw * sw) if sw > 0 else 0.0  # E[phi^2] / q
    n_units = lay.n_out.astype(np.int64)
    # finite width, forward: given a_l, the n units of z_l are i.i.d. Gaussian, so ||a_{l+1}||^2 is n
    # times a mean of phi(z)^2 with relative variance kappa_f / n, kappa_f = E[phi^4] / E[phi^2]^2 - 1
    # (relu 5, identity 2); the delta method gives -kappa_f / (4 n) per layer in ln ||a||, and for these
    # scale-free maps the layers' terms add up (with sigma_b = 0 exactly; approximately otherwise)
    al = T.LEAKY_RELU_SLOPE
    kappa_f = {"identity": 2.0, "relu": 5.0, "leaky_relu": 6.0 * (1 + al**4) / (1 + al**2) ** 2 - 1.0}[act]
    drift = np.concatenate([[0.0], np.cumsum(-kappa_f / (4.0 * n_units[: L - 1]))]) / _LN10
    rms = np.empty(L)
    rms[0] = 0.5 * math.log10(float(np.mean(x * x))) if np.any(x != 0) else -math.inf
    rms[1:] = 0.5 * (math.log10(h) + lq[:-1]) + drift[1:] if h > 0 else -math.inf
    inc = np.empty(max(L - 1, 0))
    for u in np.unique(n_units[: L - 1]):
        inc[n_units[: L - 1] == u] = T.log_gradient_growth_finite_width(act, sw, sb, int(u))[0] / _LN10
    n_typ = int(np.median(n_units[1:])) if L > 1 else int(n_units[0])
    fw = T.log_gradient_growth_finite_width(act, sw, sb, n_typ)[0] / _LN10
    q_star = math.inf if a >= 1.0 and (a > 1.0 or sb > 0) else (q0 if a == 1.0 else sb * sb / (1.0 - a))
    c_star = chi_c = None
    if math.isfinite(q_star) and q_star > 0:
        c_star, chi_c = T.correlation_fixed_point(act, sw, sb, q=q_star)
    return _Theory(sw, sb, rms, inc, fw, 0.5 * math.log10(a), a, q_star, c_star, chi_c,
                   [])


def _theory(net: Network, lay: Layout, x: np.ndarray) -> _Theory | None:
    """Length map from the data, chi_1 and its finite-width correction per layer.

    q_0 = sigma_w^2 mean(x^2) + sigma_b^2, q_l = V(q_{l-1}) (the length map of
    :func:`loggrad.theory.length_map`); the predicted rms of a_l (l >= 1) is
    sqrt(E[phi(sqrt(q_{l-1}) z)^2]) = sqrt((V(q_{l-1}) - sigma_b^2) / sigma_w^2). Going back from delta_{l+1} to delta_l multiplies the norm by a
    random factor whose log has mean 0.5 ln chi1(q_l) - kappa/(4 n) with n =
    n_{l+1} (:func:`loggrad.theory.log_gradient_growth_finite_width`): the
    typical, not the root-mean-square, growth, which is what the measured
    log-norm follows. The iteration runs until q settles or for
    THEORY_TRANSIENT_LAYERS layers; None when loggrad.theory refuses.
    """
    try:
        from . import theory as T
    except ImportError:  # pragma: no cover - part of the package
        return None
    scales = list(getattr(net, "residual", []))
    if any(v is not None for v in scales):
        return _theory_residual(T, net, lay, x, scales)
    sig = _iid_sigmas(net, lay)
    if sig is None:
        return None
    sw, sb = sig
    act = net.activations[0]
    L = net.depth
    notes: list[str] = []
    try:
        q0 = sw * sw * float(np.mean(x * x)) + sb * sb
        if act in ("identity", "relu", "leaky_relu"):
            return _theory_homogeneous(T, act, sw, sb, q0, lay, x)
        qs = [q0]
        settled = False
        for _ in range(min(L, THEORY_TRANSIENT_LAYERS) - 1):
            qn = T.length_map(qs[-1], act, sw, sb)
            if not (math.isfinite(qn) and qn > 0):
                break
            qs.append(qn)
            if abs(qn - qs[-2]) <= 1e-9 * qn:
                settled = True
                break
        n_q = len(qs)
        if not settled and n_q < L:
            notes.append(
                f"the pre-activation variance q has not settled after {n_q} layers (q = {qs[-1]:.3g}, "
                f"from {q0:.3g}; slow convergence, e.g. at sigma_b = 0): the fixed-point theory does not "
                "apply there, and the theory columns use the last q for the deeper layers"
            )
        q = np.concatenate([np.asarray(qs), np.full(L - n_q, qs[-1])])
        # rms of a_l = phi(z_{l-1}): E[phi^2](q) = (V(q) - sigma_b^2) / sigma_w^2
        v_next = qs[1:] + [T.length_map(qs[-1], act, sw, sb)]
        ephi2 = (np.asarray(v_next) - sb * sb) / (sw * sw) if sw > 0 else np.zeros(n_q)
        ephi2 = np.concatenate([ephi2, np.full(L - n_q, ephi2[-1])])
        rms = np.empty(L)
        rms[0] = 0.5 * math.log10(float(np.mean(x * x))) if np.any(x != 0) else -math.inf
        with np.errstate(divide="ignore"):
            rms[1:] = 0.5 * np.log10(np.maximum(ephi2[:-1], 0.0))
        # delta increments: one per transient layer, then one per width at the settled q
        n_units = lay.n_out.astype(np.int64)

        def fw(qq: float, n: int) -> float:
            return float(T.log_gradient_growth_finite_width(act, sw, sb, int(n), q=qq)[0]) / _LN10

        inc = np.empty(max(L - 1, 0))
        head = min(n_q, L - 1)
        inc[:head] = [fw(float(q[l]), int(n_units[l])) for l in range(head)]
        tail = n_units[head : L - 1]
        for u in np.unique(tail):
            inc[head:][tail == u] = fw(qs[-1], int(u))
        q_star = float(T.fixed_point(act, sw, sb, q0))
        chi1 = float(T.chi1(act, sw, sb, q_star if math.isfinite(q_star) else None, q0=q0))
        n_typ = int(np.median(n_units[1:])) if L > 1 else int(n_units[0])
        mf = 0.5 * math.log10(chi1) if chi1 > 0 else -math.inf
        fw_ln, _ = T.log_gradient_growth_finite_width(act, sw, sb, n_typ, q=q_star if math.isfinite(q_star) else None,
                                                      q0=q0)
        c_star = chi_c = None
        corr = getattr(T, "correlation_fixed_point", None)
        if corr is not None and math.isfinite(q_star) and q_star > 0:
            c_star, chi_c = corr(act, sw, sb, q=q_star)
    except (ValueError, ArithmeticError):
        return None
    if not all(math.isfinite(v) for v in (mf, fw_ln)):
        return None
    return _Theory(sw, sb, rms, inc, fw_ln / _LN10, mf, chi1, q_star, c_star, chi_c, notes)


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------


def _fmt(v: Any, f: str) -> str:
    if v is None:
        return "-"
    x = float(v)
    if math.isnan(x):
        return "-"
    if math.isinf(x):
        return "-inf" if x < 0 else "inf"
    return f.format(x)




_ARRAY_FIELDS = {attr for _, attr, _, _ in LAYER_FIELDS} | {"theory_act_rms", "theory_delta_inc", "grad_digits"}


@dataclass
class Report:
    """Gradient-health report of one network on one batch (see :func:`report`).

    Per-layer arrays (index l = 0 is the input layer; all log10 are exact, in
    any range):

    act_rms, act_norm:   log10 of the root-mean-square and of the norm (over
        batch and units) of a_l, the input of layer l (a_0 = x): the forward signal
    delta_norm:          log10 ||delta_l||, delta_l = dL/dz_l (batch x n_out):
        the backward signal, whose growth per layer 0.5 log10 chi_1 predicts
    grad_norm_w, grad_norm_b: log10 of the Euclidean norms of dL/dW_l and dL/db_l
        (-inf for an exactly zero gradient); dL/dW_l = delta_l^T a_l, so
        ||dW_l|| = ||delta_l|| ||a_l|| for one sample and at most that for a batch
    grad_max, grad_min:  log10 of the largest and smallest nonzero |dL/dW_l[i, j]|
        (nan if the whole block is zero)
    act_deriv:           mean over batch and units of log10 |f'(z_l)|, over the
        nonzero derivatives (nan if all are zero)
    act_deriv_zero:      fraction of f'(z_l) that are exactly zero (closed relu gates)
    act_saturated:       fraction with 0 < |f'(z_l)| < SATURATED_DERIVATIVE (2^-10)
    {f64,f32,bf16,f16}_{underflow,subnormal,overflow}: fraction of the layer's
        gradient entries (W and b) that the format would round to 0 (a nonzero
        value at most half its smallest subnormal), leave subnormal (below its
        smallest normal: fewer significant bits), or round to inf
    lost_update:         (when lr is given) fraction of the layer's parameters
        (W and b) with a nonzero gradient whose SGD update w - lr*g rounds back
        to w in float64 (the update is within half an ulp of w), as
        :class:`loggrad.train.StepReport.fraction_unchanged` counts it; None
        without lr. A zero bias with a nonzero gradient is never lost (any
        nonzero update moves 0), so in a network whose biases are zero and
        whose weight updates are all lost this is n_in / (n_in + 1) -- 0.98
        for 50 inputs, 0.985 for 64 -- not 1
    grad_digits:         (with conditioning=True) decimal digits of ||dW_l|| that
        survive a relative perturbation of the inputs by 2^-52, shown when
        below CONDITIONING_DIGITS (12) somewhere (15.95 = all of
        float64's); None otherwise

    Network level:

    slope:      growth rate of log10 ||delta_l|| per layer toward the input
        (:func:`growth_rate`: the mean per-layer increment). Negative:
        vanishing; positive: exploding.
    slope_ci:   95% interval for the growth rate that another draw of the same
        architecture would give (batch means of the increments, see
        :func:`growth_rate`); slope_stderr its standard error, slope_blocks the
        number of blocks
    total_change: slope * (L - 1): change of log10 ||delta|| from the output
        layer to the input layer
    forward_change: log10 rms of the output minus that of layer 1's input (the
        first hidden activations); 0 for a one-layer network
    output_rms:  log10 rms of the network output
    f64_fail_layer, f32_fail_layer: scanning from the output, the first layer
        l with any gradient entry that the format rounds to 0 or inf (None: none)
    f64_fail_from_output, f32_fail_from_output: the same as L-1-l
    verdict:    "exploding" or "vanishing" when any of these holds (the
        larger in decades wins when both directions do): float64 or float32
        overflows a gradient entry; float64 flushes one to 0, or the input
        layer's gradient is exactly zero; the backward signal's change
        (total_change) or the forward signal's (forward_change) is at least
        `decades` away from zero over its whole interval (the growth rate's
        interval times the number of steps; >=, so a change of exactly
        `decades` counts); else "healthy". verdict_reasons says which held.
        decades = VERDICT_DECADES = 3 by default. Requiring the interval
        keeps one lucky or unlucky draw from deciding: relu at He
        initialisation, width 64, depth 300, moves |delta| and the forward
        rms by -1 to -4 decades from finite width alone.
    theory_slope: predicted growth rate of log10 ||delta|| per layer at the
        fixed point q*, with the finite-width correction (the typical growth:
        0.5 log10 chi_1 - kappa / (4 n ln 10), see
        :func:`loggrad.theory.log_gradient_growth_finite_width`), for i.i.d.
        Gaussian networks; None otherwise. theory_slope_mean_field is 0.5
        log10 chi_1 (infinite width).
    theory_act_rms, theory_delta_inc: the per-layer predictions behind
        :meth:`theory_act_line` and :meth:`theory_line`
    chi1, q_star, c_star, chi_c, sigma_w, sigma_b: the mean-field figures
        (c_star: the correlation map's stable fixed point; chi_c its slope
        there, the growth per layer of a small difference between two inputs)
    jacobian_log10_cond: (with spectrum=True) log10 of the condition number
        sigma_1/sigma_n of the input-output Jacobian at the first sample
    low_precision: (with low_precision=True) what a float64 (the engine's),
        float32 and (with ml_dtypes) bfloat16 backward pass of the same network
        produces, per format: first_zero_layer, zero_frac, subnormal_frac per
        layer (see :func:`loggrad.lowprec.low_precision_pass`)
    """

    depth: int
    widths: list[int]
    activations: list[str]
    loss: str
    batch: int
    lr: float | None
    loss_log10: float
    act_rms: np.ndarray
    act_norm: np.ndarray
    delta_norm: np.ndarray
    grad_norm_w: np.ndarray
    grad_norm_b: np.ndarray
    grad_max: np.ndarray
    grad_min: np.ndarray
    act_deriv: np.ndarray
    act_deriv_zero: np.ndarray
    act_saturated: np.ndarray
    f64_underflow: np.ndarray
    f64_subnormal: np.ndarray
    f64_overflow: np.ndarray
    f32_underflow: np.ndarray
    f32_subnormal: np.ndarray
    f32_overflow: np.ndarray
    bf16_underflow: np.ndarray
    bf16_subnormal: np.ndarray
    bf16_overflow: np.ndarray
    f16_underflow: np.ndarray
    f16_subnormal: np.ndarray
    f16_overflow: np.ndarray
    lost_update: np.ndarray | None
    slope: float
    slope_ci: tuple[float, float]
    slope_stderr: float
    total_change: float
    f64_fail_layer: int | None
    f32_fail_layer: int | None
    verdict: str
    decades: float = VERDICT_DECADES
    slope_blocks: int = 0
    forward_change: float = 0.0
    output_rms: float = math.nan
    verdict_reasons: list[str] = field(default_factory=list)
    theory_slope: float | None = None
    theory_slope_mean_field: float | None = None
    theory_act_rms: np.ndarray | None = None
    theory_delta_inc: np.ndarray | None = None
    chi1: float | None = None
    q_star: float | None = None
    c_star: float | None = None
    chi_c: float | None = None
    sigma_w: float | None = None
    sigma_b: float | None = None
    grad_digits: np.ndarray | None = None
    jacobian_log10_cond: float | None = None
    low_precision: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    # -- derived --------------------------------------------------------------
    @property
    def f64_fail_from_output(self) -> int | None:
        return None if self.f64_fail_layer is None else self.depth - 1 - self.f64_fail_layer

    @property
    def f32_fail_from_output(self) -> int | None:
        return None if self.f32_fail_layer is None else self.depth - 1 - self.f32_fail_layer

    def _dist(self) -> np.ndarray:
        return (self.depth - 1 - np.arange(self.depth)).astype(np.float64)

    def fit_line(self) -> np.ndarray | None:
        """log10 ||delta_l|| along the fitted growth rate (through the mean of the
        layers it was measured on); None without a slope."""
        ok = np.isfinite(self.delta_norm)
        if not (math.isfinite(self.slope) and ok.sum() >= 2):
            return None
        d = self._dist()
        centre = float(np.mean(self.delta_norm[ok])) - self.slope * float(np.mean(d[ok]))
        out: np.ndarray = centre + self.slope * d
        return out

    def theory_line(self) -> np.ndarray | None:
        """Predicted log10 ||delta_l|| per layer: the measured output layer's
        value plus the predicted per-layer increments (finite width, at each
        layer's q) toward the input; None without theory or when the output
        layer's delta is zero."""
        if self.theory_delta_inc is None or not math.isfinite(float(self.delta_norm[-1])):
            return None
        inc = np.asarray(self.theory_delta_inc, dtype=np.float64)
        out: np.ndarray = float(self.delta_norm[-1]) + np.concatenate([np.cumsum(inc[::-1])[::-1], [0.0]])
        return out

    def theory_act_line(self) -> np.ndarray | None:
        """Predicted log10 rms of a_l per layer (the length map from the data); None without theory."""
        return None if self.theory_act_rms is None else np.asarray(self.theory_act_rms, dtype=np.float64)

    @property
    def theory_delta(self) -> np.ndarray | None:
        """:meth:`theory_line` as an attribute (the table's theory column beside log10|delta|)."""
        return self.theory_line()

    @property
    def theory_act(self) -> np.ndarray | None:
        return self.theory_act_line()

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
            "forward_change": self.forward_change,
            "theory_slope": self.theory_slope,
            "theory_slope_mean_field": self.theory_slope_mean_field,
            "theory_change": None if self.theory_slope is None else self.theory_slope * (self.depth - 1),
            "chi1": self.chi1,
            "chi_c": self.chi_c,
            "log10_delta_norm_first": float(self.delta_norm[0]),
            "log10_delta_norm_last": float(self.delta_norm[-1]),
            "log10_grad_norm_first": float(self.grad_norm_w[0]),
            "log10_grad_norm_last": float(self.grad_norm_w[-1]),
            "log10_grad_norm_max": float(np.max(self.grad_norm_w)),
            "f64_fail_layer": self.f64_fail_layer,
            "f64_fail_from_output": self.f64_fail_from_output,
            "f32_fail_layer": self.f32_fail_layer,
            "f32_fail_from_output": self.f32_fail_from_output,
            "verdict": self.verdict,
            "verdict_reasons": "; ".join(self.verdict_reasons),
        }

    def records(self) -> list[dict[str, Any]]:
        """One dict per layer (``pandas.DataFrame(report.records())``)."""
        cols = {key: getattr(self, attr) for key, attr, _, _ in LAYER_FIELDS}
        cols = {k: (v.tolist() if v is not None else [None] * self.depth) for k, v in cols.items()}
        theory, theory_a = self.theory_line(), self.theory_act_line()
        digits = None if self.grad_digits is None else self.grad_digits.tolist()
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
            rec["log10_delta_norm_theory"] = None if theory is None else float(theory[l])
            rec["log10_act_rms_theory"] = None if theory_a is None else float(theory_a[l])
            rec["grad_digits"] = None if digits is None else digits[l]
            out.append(rec)
        return out

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain Python values (per-layer arrays under "layers")."""
        from dataclasses import fields

        d: dict[str, Any] = {}
        layers: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in _ARRAY_FIELDS:
                layers[f.name] = None if v is None else np.asarray(v).tolist()
            elif isinstance(v, tuple):
                d[f.name] = list(v)
            else:
                d[f.name] = v
        d["layers"] = layers
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        d = from_lossless(d)
        layers = d["layers"]
        kw = {k: v for k, v in d.items() if k != "layers"}
        # strict JSON writes nan as null: back to nan where the field is a number, not an optional one
        for k in ("loss_log10", "slope", "slope_stderr", "total_change", "forward_change", "output_rms"):
            if k in kw and kw[k] is None:
                kw[k] = math.nan
        kw["slope_ci"] = tuple(math.nan if v is None else v for v in kw["slope_ci"])
        for attr, v in layers.items():
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
        """(attribute, header, format) of the table's columns: the three signals
        with their predictions, f', and what float64/float32 make of the gradient;
        columns that are all zero (bfloat16/float16 flags, saturation, ...) are left out."""
        cols: list[tuple[str, str, str]] = [("act_rms", "log10 rms a", "{:.3f}")]
        if self.theory_act_line() is not None:
            cols.append(("theory_act", "theory", "{:.3f}"))
        cols.append(("delta_norm", "log10|delta|", "{:.3f}"))
        if self.theory_line() is not None:
            cols.append(("theory_delta", "theory", "{:.3f}"))
        cols += [("grad_norm_w", "log10|dW|", "{:.3f}"), ("act_deriv", "mean log10 f'", "{:.3f}")]
        always = {"f64_underflow", "f64_overflow", "f32_underflow", "f32_overflow"}
        for attr in ("act_deriv_zero", "act_saturated", "f64_underflow", "f64_subnormal", "f64_overflow",
                     "f32_underflow", "f32_subnormal", "f32_overflow", "bf16_underflow", "bf16_overflow"):
            v = getattr(self, attr)
            if attr in always or np.any(v):
                head = next(h for _, a, h, _ in LAYER_FIELDS if a == attr)
                cols.append((attr, head, "{:.2f}"))
        if self.lost_update is not None:
            cols.append(("lost_update", "lost", "{:.2f}"))
        if self.grad_digits is not None and np.any(self.grad_digits < CONDITIONING_DIGITS):
            cols.append(("grad_digits", "digits", "{:.1f}"))
        return cols

    def _cells(self, rows: list[int]) -> tuple[list[str], list[list[str]]]:
        cols = self._columns()
        head = ["layer", "act"] + [h for _, h, _ in cols]
        vals = [getattr(self, a) for a, _, _ in cols]
        body = []
        for l in rows:
            body.append([str(l), self.activations[l]] + [_fmt(v[l], f) for v, (_, _, f) in zip(vals, cols)])
        return head, body

    def _summary_lines(self) -> list[str]:
        L = self.depth
        lo, hi = self.slope_ci
        lines = [
            f"loggrad report: {L} layers, widths {_short(self.widths)}, {_act_summary(self.activations)}, "
            f"{self.loss} loss, batch {self.batch}" + (f", lr {self.lr:g}" if self.lr is not None else ""),
        ]
        s = (
            f"backward: log10|delta| grows {_fmt(self.slope, '{:+.5f}')} decades per layer toward the input "
            f"(95% interval over draws {_fmt(lo, '{:+.5f}')} .. {_fmt(hi, '{:+.5f}')})"
        )
        # residual chains have no fixed point (q* nan; None once read back from strict JSON) and no
        # finite-width correction: one theory figure
        no_fixed_point = self.chi1 is not None and (self.q_star is None or math.isnan(self.q_star))
        if self.theory_slope is not None and no_fixed_point:
            s += f"; theory (mean field, residual layers) {self.theory_slope:+.5f}"
        elif self.theory_slope is not None:
            s += (f"; theory (finite width) {self.theory_slope:+.5f}, "
                  f"mean field 0.5 log10 chi1 {self.theory_slope_mean_field:+.5f}")
        lines.append(s)
        th_change = "" if self.theory_slope is None else f" (theory {self.theory_slope * (L - 1):+.2f})"
        lines.append(
            f"change output -> input: {_fmt(self.total_change, '{:+.2f}')} decades in |delta|{th_change}; "
            f"forward: {_fmt(self.forward_change, '{:+.2f}')} decades in rms a (layer 1 -> output)"
        )
        lines.append(
            f"log10|dW| = log10|delta| + log10|a| (one sample; at most that for a batch): "
            f"from {_fmt(self.grad_norm_w[-1], '{:.2f}')} (layer {L - 1}) to {_fmt(self.grad_norm_w[0], '{:.2f}')} "
            f"(layer 0), largest {_fmt(np.max(self.grad_norm_w), '{:.2f}')}"
        )
        if self.chi1 is not None and no_fixed_point:
            lines.append(f"mean field: sigma_w {self.sigma_w:.4f}, sigma_b {self.sigma_b:.4f}, no fixed point, "
                         f"mean chi over the layers {self.chi1:.4f}")
        elif self.chi1 is not None:
            extra = ""
            if self.c_star is not None and self.chi_c is not None:
                extra = f", c* {self.c_star:.4f}, chi_c {self.chi_c:.4f}"
            lines.append(f"mean field: sigma_w {self.sigma_w:.4f}, sigma_b {self.sigma_b:.4f}, q* {self.q_star:.4g}, "
                         f"chi1 {self.chi1:.4f}{extra}")
        if self.jacobian_log10_cond is not None:
            lines.append(f"input-output Jacobian: condition number sigma_1/sigma_n = 10^{self.jacobian_log10_cond:.2f}")
        for name, fl in (("float64", self.f64_fail_layer), ("float32", self.f32_fail_layer)):
            if fl is None:
                lines.append(f"{name}: every gradient entry in range")
            else:
                lines.append(
                    f"{name} fails from layer {fl} ({L - 1 - fl} layers from the output) toward the input"
                )
        if self.low_precision:
            for fmt, lp in self.low_precision.items():
                fz, fn = lp.get("first_zero_layer"), lp.get("first_nonfinite_layer")
                where = "no layer's dW all zero" if fz is None else f"dW all zero from layer {fz} toward the input"
                sub = np.asarray(lp.get("subnormal_frac", [0.0]), dtype=np.float64)
                what = [where]
                if fn is not None or lp.get("forward_overflow"):
                    what.append("inf/nan" + (f" from layer {fn}" if fn is not None else " in the forward pass"))
                if np.any(sub > 0):
                    what.append(f"subnormal (imprecise) entries in {int(np.sum(sub > 0))} layer(s)")
                lines.append(f"a real {fmt} backward pass: " + "; ".join(what))
        if self.grad_digits is not None and np.any(self.grad_digits < CONDITIONING_DIGITS):
            worst = int(np.argmin(self.grad_digits))
            lines.append(f"conditioning: a 2^-52 change of the inputs leaves {self.grad_digits[worst]:.1f} digits "
                         f"of |dW| at layer {worst}")
        v = f"verdict: {self.verdict}"
        if self.verdict_reasons:
            v += " (" + "; ".join(self.verdict_reasons) + ")"
        lines.append(v)
        lines.extend(f"note: {n}" for n in self.notes)
        return lines

    def table(self, max_rows: int | None = 16, rich: bool | None = None) -> str:
        """The report as text: a per-layer table (at most max_rows rows; None or 0 for all) and a summary.

        A deeper network's table shows the first and last three layers, the
        layers where float64 and float32 first fail, and layers evenly spaced
        from 0 to L - 1 (``numpy.linspace``, rounded) up to max_rows in all;
        "..." marks the layers left out.

        rich=None uses rich when it is installed and stdout is a terminal
        (box characters do not belong in pipes and files); True requires it,
        False gives plain text.
        """
        rows = self._rows_shown(max_rows)
        head, body = self._cells(rows)
        use_rich = rich
        if use_rich is None:
            use_rich = _stdout_is_terminal()
            if use_rich:
                try:
                    import rich as _rich  # noqa: F401
                except ImportError:
                    use_rich = False
        if use_rich:
            from rich.console import Console

            buf = io.StringIO()
            console = Console(file=buf, width=250, color_system=None, force_terminal=False)
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
                t.add_row("...")  # rich leaves the row's other cells empty
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
        """The three signals against layer, with theory, fit and format limits; residuals below.

        Top panel: log10 ||delta_l||, log10 rms a_l, log10 ||dW_l|| (with the
        min..max band of |dL/dw|), the fitted growth line, the theory lines and
        the float64/float32 range limits. Bottom panel (when there is theory):
        measured minus theory for delta and a, where curves hundreds of
        decades tall would hide a disagreement of a few.

        ax: a matplotlib Axes (top panel only) or a pair of Axes (top,
        bottom); None makes a new figure. Saves to path when given. Returns
        the top Axes. Needs matplotlib (``pip install matplotlib`` or
        ``pip install "loggrad[plot]"``).
        """
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "Report.plot needs matplotlib: pip install matplotlib (or pip install 'loggrad[plot]')"
            ) from exc
        fig = None
        th, tha = self.theory_line(), self.theory_act_line()
        want_resid = th is not None or tha is not None
        ax_res = None
        if ax is None:
            kw: dict[str, Any] = {"figsize": (8, 6.5 if want_resid else 4.5), "sharex": True}
            if want_resid:
                kw["gridspec_kw"] = {"height_ratios": [3, 1]}
            if path is not None:
                from matplotlib.figure import Figure

                fig = Figure(figsize=kw.pop("figsize"))
                axes = fig.subplots(2 if want_resid else 1, 1, **kw)
            else:
                import matplotlib.pyplot as plt

                fig, axes = plt.subplots(2 if want_resid else 1, 1, **kw)
            ax, ax_res = (axes[0], axes[1]) if want_resid else (axes, None)
        elif isinstance(ax, (list, tuple, np.ndarray)):
            ax, ax_res = ax[0], (ax[1] if len(ax) > 1 and want_resid else None)
        layers = np.arange(self.depth)
        ax.plot(layers, self.delta_norm, lw=1.5, color="C0", label=r"$\log_{10}\|\delta_l\|$ (backward)")
        ax.plot(layers, self.act_rms, lw=1.5, color="C4", label=r"$\log_{10}$ rms $a_l$ (forward)")
        ax.plot(layers, self.grad_norm_w, lw=1.0, color="C1", label=r"$\log_{10}\|\partial L/\partial W_l\|$")
        fin = np.isfinite(self.grad_max) & np.isfinite(self.grad_min)
        if fin.any():
            ax.fill_between(layers, np.where(fin, self.grad_min, np.nan), np.where(fin, self.grad_max, np.nan),
                            alpha=0.12, color="C1", label="min..max |dL/dw|")
        fit = self.fit_line()
        if fit is not None:
            ax.plot(layers, fit, lw=1.0, ls="-.", color="0.4", label=f"fit: {self.slope:+.4f} decades/layer")
        if th is not None:
            ax.plot(layers, th, lw=1.2, ls="--", color="C2",
                    label=f"theory (finite width): {self.theory_slope:+.4f} decades/layer")
        if tha is not None:
            ax.plot(layers, tha, lw=1.2, ls=":", color="C2", label="theory: length map")
        for (lo, hi), name, color in ((FLOAT64_LOG10_RANGE, "float64", "C3"), (FLOAT32_LOG10_RANGE, "float32", "C1")):
            ax.axhline(lo, color=color, lw=1, ls=":", label=f"{name} range")
            ax.axhline(hi, color=color, lw=1, ls=":")
        ax.set_ylabel("log10")
        title = f"{self.depth} layers, {_act_summary(self.activations)}: {self.verdict}"
        if math.isfinite(self.slope):
            title += f", {self.slope:+.4f} decades/layer toward the input"
        ax.set_title(title)
        ax.legend(loc="best", fontsize="small")
        if ax_res is not None:
            if th is not None:
                ax_res.plot(layers, self.delta_norm - th, lw=1.0, color="C0", label="delta: measured - theory")
            if tha is not None:
                ax_res.plot(layers, self.act_rms - tha, lw=1.0, color="C4", label="rms a: measured - theory")
            ax_res.axhline(0.0, color="0.5", lw=0.8)
            ax_res.set_ylabel("residual (decades)")
            ax_res.set_xlabel("layer")
            ax_res.legend(loc="best", fontsize="small")
        else:
            ax.set_xlabel("layer")
        if path is not None:
            (fig if fig is not None else ax.figure).savefig(path, bbox_inches="tight")
        return ax


def _stdout_is_terminal() -> bool:
    try:
        return bool(sys.stdout.isatty())
    except (AttributeError, ValueError):
        return False


def _short(widths: Sequence[int]) -> str:
    w = list(widths)
    if len(set(w)) == 1:
        return f"{w[0]} (all layers)"
    return str(w) if len(w) <= 8 else f"[{w[0]}, {w[1]}, ..., {w[-2]}, {w[-1]}]"


def _act_summary(acts: Sequence[str]) -> str:
    s = set(acts)
    return next(iter(s)) if len(s) == 1 else "mixed activations"


def _verdict(back: tuple[float, float, float], fwd: tuple[float, float, float], f64_over: bool, f32_over: bool,
             f64_flush: bool, input_zero: bool, decades: float) -> tuple[str, list[str]]:
    """The verdict and the reasons behind it (see :class:`Report`).

    back, fwd: (change, low, high) in decades over the network: the fitted
    change and its interval (the growth rate's interval times the number of
    steps). A signal counts as vanishing or exploding when its whole interval
    is at least `decades` away from no change (>=), so that a network whose
    draw-to-draw spread straddles the threshold -- relu at He initialisation,
    where finite width alone moves the log-norms by a few decades over
    hundreds of layers -- is not called unhealthy on one draw's luck. Without
    an interval (too few layers) the change itself is compared.
    """
    up: list[tuple[float, str]] = []
    down: list[tuple[float, str]] = []
    if f64_over:
        up.append((math.inf, "float64 overflows a gradient entry"))
    if f32_over:
        up.append((math.inf, "float32 overflows a gradient entry"))
    if f64_flush:
        down.append((math.inf, "float64 flushes a gradient entry to 0"))
    if input_zero:
        down.append((math.inf, "the input layer's gradient is exactly zero"))
    for (change, lo, hi), what in ((back, "|delta| toward the input"), (fwd, "the forward signal (rms a)")):
        if not math.isfinite(change):
            continue
        if not (math.isfinite(lo) and math.isfinite(hi)):
            lo = hi = change
        if lo >= decades:
            up.append((lo, f"{what} grows {change:+.1f} decades (interval {lo:+.1f} .. {hi:+.1f})"))
        elif hi <= -decades:
            down.append((-hi, f"{what} shrinks {change:+.1f} decades (interval {lo:+.1f} .. {hi:+.1f})"))
    if not up and not down:
        return "healthy", []
    big_up = max((v for v, _ in up), default=-math.inf)
    big_down = max((v for v, _ in down), default=-math.inf)
    if big_up >= big_down:
        return "exploding", [r for _, r in up] + [r for _, r in down]
    return "vanishing", [r for _, r in down] + [r for _, r in up]


def _default_targets(net: Network, loss: str, batch: int) -> Any:
    if loss == "sum":
        return None
    if loss == "cross_entropy":
        return np.zeros(batch, dtype=np.int64)
    return np.zeros((batch, net.n_out))


def _check_decades(decades: Any) -> float:
    if isinstance(decades, (str, bytes, bool, np.bool_)):
        raise TypeError(f"decades must be a positive number, got {decades!r}")
    try:
        d = float(decades)
    except (TypeError, ValueError):
        raise TypeError(f"decades must be a positive number, got {decades!r}") from None
    if not (math.isfinite(d) and d > 0):
        raise ValueError(f"decades must be a positive finite number, got {decades!r}")
    return d


def _engine_pass(net: Network, xa: np.ndarray, y: Any, loss: str, single: bool) -> tuple[LogArray, LogArray,
                                                                                          LogArray, np.ndarray]:
    """Loss, output, gradients (parameter layout) and the (L, fields) statistics array of one engine pass."""
    ya, labels = net._targets(loss, y, xa.shape[0], single)
    res = _core.backward_stats(net._arch, net._params, xa, loss, ya, labels)
    (lm, le), (om, oe), (gm, ge), stats = res
    return LogArray._wrap(lm, le), LogArray._wrap(om, oe), LogArray._wrap(gm, ge), np.asarray(stats)


def _rms_log10(a: LogArray) -> float:
    """log10 of the rms of every value of an extended array (exact range)."""
    m = np.asarray(a.mantissa).ravel()
    e = np.asarray(a.exponent).ravel()
    if m.size == 0 or not np.any(m != 0):
        return -math.inf
    nz = m != 0
    emax = int(np.max(e[nz]))
    with np.errstate(under="ignore"):
        s = float(np.sum(np.ldexp(m[nz], np.clip(e[nz] - emax, -3000, 0).astype(np.int32)) ** 2))
    return 0.5 * math.log10(s / m.size) + emax * _LOG10_2


def _float64_pass(net: Network, xa: np.ndarray, y: Any, loss: str, single: bool) -> dict[str, Any]:
    """The engine's real float64 pass, summarised as :func:`loggrad.lowprec.low_precision_pass` does."""
    ya, labels = net._targets(loss, y, xa.shape[0], single)
    stats = np.asarray(_core.backward_stats(net._arch, net._params, xa, loss, ya, labels, "float64")[3])
    tw = _tensor(stats, "dW")
    n = tw["count"]
    zero = tw["zeros"] / n
    nonfin = tw["overflow"][:, 0] / n
    zl = np.flatnonzero(zero == 1.0)
    nf = np.flatnonzero(nonfin > 0)
    ta = _tensor(stats, "a")
    return {
        "format": "float64",
        "zero_frac": zero,
        "subnormal_frac": tw["subnormal"][:, 0] / n,
        "nonfinite_frac": nonfin,
        "log10_norm": np.where(nonfin > 0, np.nan, tw["norm"]),
        "first_zero_layer": int(zl[-1]) if zl.size else None,
        "first_nonfinite_layer": int(nf[-1]) if nf.size else None,
        "forward_overflow": bool(np.any(ta["overflow"][:, 0] > 0)),
    }


#: The report shows the conditioning column and a note when fewer than this many
#: digits of some layer's ||dW|| survive a 2^-52 relative change of the inputs
#: (float64 carries 15.95; rounding alone costs about one).
CONDITIONING_DIGITS = 12.0


def _surviving_digits(net: Network, xa: np.ndarray, y: Any, loss: str, single: bool,
                      wn: np.ndarray) -> np.ndarray:
    """Digits of log10 ||dW_l|| that survive x -> x (1 + 2^-52 u), u uniform in [-1, 1] (seed 0).

    A second extended pass; per layer -log10 |Δ||dW|| / ||dW|||, at most
    15.95 (float64's digits), 0 when the norm changes by a factor 2 or more,
    and 15.95 where both are exactly zero.
    """
    u = np.random.default_rng(0).uniform(-1.0, 1.0, xa.shape)
    xp = xa * (1.0 + u * 2.0**-52)
    _, _, _, stats = _engine_pass(net, np.ascontiguousarray(xp), y, loss, single)
    wp = _tensor(stats, "dW")["norm"]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        rel = np.abs(np.expm1((wp - wn) * _LN10))
        digits = np.where(rel > 0, -np.log10(rel), 15.95)
    both_zero = np.isneginf(wn) & np.isneginf(wp)
    digits = np.where(both_zero, 15.95, np.where(np.isfinite(digits), digits, 0.0))
    out: np.ndarray = np.clip(digits, 0.0, 15.95)
    return out


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
    conditioning: bool = False,
    low_precision: bool = False,
    spectrum: bool = False,
) -> Report:
    """Gradient-health report of net on the batch x (targets y, loss) -- see :class:`Report`.

    One extended backward pass with the engine's per-layer statistics gives
    every figure, exactly: the forward signal (rms of each layer's input),
    the backward signal (||delta_l||), the weight and bias gradient norms and
    extremes, the activation derivatives (taken in the forward pass before
    the backward overwrites them), and what float64/float32/bfloat16/float16
    would flush, leave subnormal or overflow. With lr, which SGD updates
    float64 would lose. y=None uses zeros (label 0 for cross_entropy), as an
    untrained-network probe.

    derivatives: kept for compatibility; the derivative statistics come with
        the pass at no extra cost.
    decades: threshold of the verdict (positive; see :class:`Report`).
    theory: add the mean-field and finite-width predictions from
        loggrad.theory for i.i.d. Gaussian networks.
    conditioning: a second pass on x (1 + 2^-52 u), u uniform in [-1, 1],
        gives how many digits of each layer's ||dW|| survive a rounding-level
        change of the inputs (see :attr:`Report.grad_digits`).
    low_precision: what real low-precision backward passes of the same
        network produce: float64 (the engine's own float64 pass, with the same
        statistics), float32 and, with ml_dtypes, bfloat16 (simulated, see
        :func:`loggrad.lowprec.low_precision_pass`).
    spectrum: the condition number of the input-output Jacobian at the first
        sample (:func:`loggrad.spectrum.spectrum`, full spectrum: costs
        n_in backward passes).
    """
    xa, single = net._inputs(x, "extended", True)
    batch = xa.shape[0]
    if y is None:
        yd = _default_targets(net, loss, batch)
        y = yd[0] if single and yd is not None else yd
    if lr is not None and not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr}")
    decades = _check_decades(decades)
    loss_v, out, grad, stats = _engine_pass(net, xa, y, loss, single)
    lay = net.layout
    L = net.depth

    tw, tb, td, ta = (_tensor(stats, k) for k in _TENSORS)
    der = _derivatives(stats)
    n_entries = tw["count"] + tb["count"]
    frac: dict[str, Any] = {}
    for i, p in enumerate(_FMT_PREFIX):
        for kind, key in (("underflow", "flush"), ("subnormal", "subnormal"), ("overflow", "overflow")):
            frac[f"{p}_{kind}"] = (tw[key][:, i] + tb[key][:, i]) / n_entries
    act_norm = ta["norm"]
    act_rms = act_norm - 0.5 * np.log10(batch * lay.n_in.astype(np.float64))
    gmax = np.where(np.isneginf(tw["max"]), np.nan, tw["max"])
    gmin = np.where(np.isneginf(tw["min"]), np.nan, tw["min"])

    lost = None
    if lr is not None:
        u = grad * lr
        lm = _lost_updates(net.params, u.mantissa, u.exponent)
        nz = np.add.reduceat((u.mantissa != 0).astype(np.int64), lay.starts)
        nlost = np.add.reduceat(lm.astype(np.int64), lay.starts)
        lost = np.where(nz > 0, nlost / np.maximum(nz, 1), 0.0)

    delta = td["norm"]
    slope, ci, se, blocks = growth_rate(delta)
    total = slope * (L - 1) if math.isfinite(slope) else 0.0
    output_rms = _rms_log10(out)
    # forward: the rms of a_1 .. a_{L-1} and of the output, its growth toward the output
    fslope, fci, _, _ = growth_rate(np.concatenate([act_rms[1:], [output_rms]]))
    forward = output_rms - float(act_rms[1]) if L >= 2 else 0.0
    fwd = (forward, -fci[1] * (L - 1), -fci[0] * (L - 1)) if L >= 2 else (0.0, 0.0, 0.0)
    back = (total, ci[0] * (L - 1), ci[1] * (L - 1))

    def first_fail(under: np.ndarray, over: np.ndarray) -> int | None:
        bad = np.flatnonzero((under > 0) | (over > 0))
        return int(bad[-1]) if bad.size else None

    f64_fail = first_fail(frac["f64_underflow"], frac["f64_overflow"])
    f32_fail = first_fail(frac["f32_underflow"], frac["f32_overflow"])
    wn = tw["norm"]
    verdict, reasons = _verdict(back, fwd, bool(np.any(frac["f64_overflow"] > 0)),
                                bool(np.any(frac["f32_overflow"] > 0)), bool(np.any(frac["f64_underflow"] > 0)),
                                bool(np.isneginf(wn[0]) and np.isneginf(tb["norm"][0])), decades)

    notes = []
    scales = [s for s in getattr(net, "residual", []) if s is not None]
    if scales:
        notes.append(f"{len(scales)} residual layer(s): their f' columns are those of s f'(z) (the branch scale s "
                     "included), and delta_l is dL/dz_l of the branch")
    n_rezero = sum(s == 0 for s in scales)
    if n_rezero:
        notes.append(f"{n_rezero} residual layer(s) with s = 0: their branch gradients (delta, dW, db) are exactly "
                     "zero by construction, not vanished (the layer is the identity; ReZero/SkipInit learn s first)")
    n_zero = int(np.sum(np.isneginf(delta)))
    if n_zero:
        notes.append(f"{n_zero} layer(s) pass back an exactly zero delta (the growth rate is measured above them)")
    if lost is not None and np.any(lost > 0.5):
        notes.append(
            "lost: fraction of a layer's parameters (W and b) with a nonzero gradient whose float64 SGD update "
            "w - lr*g rounds back to w; a zero bias always moves (any nonzero step changes 0), so a layer whose "
            "every weight update is lost shows n_in/(n_in+1) -- 0.98 at 50 inputs -- not 1"
        )
    th = _theory(net, lay, xa) if theory else None
    if th is not None:
        notes.extend(th.notes)
    loss_l10 = float(np.asarray(loss_v.log10()).reshape(()))
    rep = Report(
        depth=L,
        widths=net.widths,
        activations=net.activations,
        loss=loss,
        batch=batch,
        lr=None if lr is None else float(lr),
        loss_log10=loss_l10,
        act_rms=act_rms,
        act_norm=act_norm,
        delta_norm=delta,
        grad_norm_w=wn,
        grad_norm_b=tb["norm"],
        grad_max=gmax,
        grad_min=gmin,
        act_deriv=der["mean"],
        act_deriv_zero=der["zero"],
        act_saturated=der["saturated"],
        lost_update=lost,
        slope=slope,
        slope_ci=ci,
        slope_stderr=se,
        slope_blocks=blocks,
        total_change=float(total),
        forward_change=float(forward),
        output_rms=output_rms,
        f64_fail_layer=f64_fail,
        f32_fail_layer=f32_fail,
        verdict=verdict,
        verdict_reasons=reasons,
        decades=decades,
        notes=notes,
        **frac,
    )
    if conditioning:
        rep.grad_digits = _surviving_digits(net, xa, y, loss, single, wn)
        worst = float(np.min(rep.grad_digits))
        if worst < CONDITIONING_DIGITS:
            notes.append(
                f"ill-conditioned: a relative change of 2^-52 in the inputs changes |dW| of layer "
                f"{int(np.argmin(rep.grad_digits))} in its {worst:.1f}th digit; the exact gradient of this "
                "input is not a stable property of the network (e.g. chaotic tanh)"
            )
    if spectrum:
        from .spectrum import spectrum as _spectrum

        s = _spectrum(net, xa[0])
        v = s.log10_singular_values
        rep.jacobian_log10_cond = float(v[0] - v[-1]) if np.isfinite(v[0]) else math.inf
    if low_precision:
        from .lowprec import low_precision_pass

        ylp = None if loss == "sum" else y
        xlp = xa[0] if single else xa  # as given: the targets' shapes follow it
        rep.low_precision = {"float64": _float64_pass(net, xa, y, loss, single)}
        rep.low_precision["float32"] = low_precision_pass(net, xlp, ylp, loss, "float32")
        try:
            rep.low_precision["bfloat16"] = low_precision_pass(net, xlp, ylp, loss, "bfloat16")
        except ImportError:
            pass
    if th is not None:
        rep.theory_slope = th.slope
        rep.theory_slope_mean_field = th.slope_mean_field
        rep.theory_act_rms = th.act_rms
        rep.theory_delta_inc = th.delta_inc
        rep.chi1, rep.q_star, rep.c_star, rep.chi_c = th.chi1, th.q_star, th.c_star, th.chi_c
        rep.sigma_w, rep.sigma_b = th.sigma_w, th.sigma_b
    return rep
