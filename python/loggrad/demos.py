"""Demos of the seed notes on vanishing and exploding gradients, with exact numbers.

Each demo builds the networks the notes talk about, computes with loggrad's
extended path and with plain float64, prints both side by side and returns
the numbers it printed (so they can be tested).

Run ``python -m loggrad.demos`` to list them, ``python -m loggrad.demos NAME``
(or ``loggrad demo NAME``) to run one, ``... all`` to run every demo.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import _core
from ._logarray import LogArray
from .network import Network

__all__ = ["DEMOS", "run", "main"]

Result = dict[str, Any]


def _f(v: LogArray | float) -> str:
    """A value for a table: extended values as 1.2345e-503."""
    if isinstance(v, LogArray):
        return str(v)
    return f"{v:.4g}"


def _print(out: Callable[[str], None] | None, line: str = "") -> None:
    (out or print)(line)


def _input_grad(net: Network, x: np.ndarray, precision: str = "extended") -> Any:
    """dL/dx of the sum loss."""
    g = net.backward(x, loss="sum", precision=precision).input
    assert g is not None
    return g


def _unit_chain(weights: Sequence[float], biases: Sequence[float] | None, activation: str) -> Network:
    """A width-1 chain with the given scalar weights (and biases)."""
    ws = [np.array([[w]]) for w in weights]
    bs = None if biases is None else [np.array([b]) for b in biases]
    return Network(ws, bs, activation)


def chain_rule(out: Callable[[str], None] | None = None, layers: int = 150, lr: float = 0.001) -> Result:
    """Note 1: a product of small derivatives (0.1 · 0.001 · 0.00025 …) vanishes; α·∂L/∂w ≈ 0.

    A width-1 linear chain whose weights cycle through 0.1, 0.001, 0.00025:
    ∂L/∂w_1 is the product of all later factors. float64 rounds it to 0;
    loggrad gives it exactly, and the SGD step reports the update lost.
    """
    factors = [0.1, 0.001, 0.00025]
    ws = [factors[i % 3] for i in range(layers)]
    net = _unit_chain([1.0] + ws, None, "identity")  # w_1 = 1 in front of the chain
    x = np.ones((1, 1))
    g = net.backward(x, loss="sum")
    g64 = net.backward(x, loss="sum", precision="float64")
    exact = g.weights[0][0, 0]
    expected_log10 = sum(math.log10(f) for f in ws)
    step = net.copy().sgd_step(x, None, lr, loss="sum")
    upd = float(step.update_log10_max[0])
    _print(out, f"chain rule over {layers} layers with derivative factors 0.1, 0.001, 0.00025, ...")
    _print(out, f"  dL/dw_1  loggrad: {_f(exact)}   float64: {float(g64.weights[0][0, 0])!r}")
    _print(out, f"  log10 check: sum of log10 factors = {expected_log10:.4f}, loggrad = {float(exact.log10()):.4f}")
    _print(out, f"  update alpha*dL/dw_1 with alpha = {lr}: 10^{upd:.2f}; w_new == w_old: "
                f"{bool(step.unchanged[0] >= 1)} (the update is below half an ulp of w = 1)")
    return {"grad": exact, "grad_float64": float(g64.weights[0][0, 0]), "expected_log10": expected_log10,
            "update_log10": upd, "unchanged": int(step.unchanged[0])}


def sigmoid_bound(out: Callable[[str], None] | None = None,
                  depths: Sequence[int] = (1, 10, 100, 1000, 10000)) -> Result:
    """Note 1/2: 0 ≤ σ'(z) ≤ 0.25, so a sigmoid chain's gradient is at most 0.25^L.

    σ'(z) at several z (exact, from the pre-activation: σ'(1000) = e^-1000),
    then width-1 sigmoid chains held at z = 0 in every layer (w = 1,
    b = -0.5), where the bound is attained: dL/dx = 0.25^L.
    """
    zs = np.array([0.0, 1.0, 5.0, 20.0, 100.0, 1000.0])
    derivs = []
    _print(out, "sigmoid'(z), exact and as float64 s*(1-s):")
    for z in zs:
        net = _unit_chain([1.0], [0.0], "sigmoid")
        d = _input_grad(net, np.array([[z]]))[0, 0]
        d64 = float(_input_grad(net, np.array([[z]]), "float64")[0, 0])
        derivs.append(d)
        _print(out, f"  z = {z:>6g}: {_f(d):>12}  float64 {d64:.4g}   (log10 {float(d.log10()):.3f})")
    rows = []
    _print(out, "\nsigmoid chain at z = 0 in every layer: dL/dx = 0.25^L (the bound)")
    _print(out, f"  {'L':>6}  {'loggrad':>12}  {'L*log10(0.25)':>14}  {'float64':>10}")
    for L in depths:
        net = _unit_chain([1.0] * L, [0.0] + [-0.5] * (L - 1), "sigmoid")
        g64 = float(_input_grad(net, np.zeros((1, 1)), "float64")[0, 0])
        v = _input_grad(net, np.zeros((1, 1)))[0, 0]
        rows.append((L, float(v.log10()), L * math.log10(0.25), g64))
        _print(out, f"  {L:>6}  {_f(v):>12}  {L * math.log10(0.25):>14.3f}  {g64:>10.3g}")
    return {"z": zs, "derivative_log10": np.array([float(d.log10()) for d in derivs]), "chain": rows}


def exploding_factor(out: Callable[[str], None] | None = None, lr: float = 0.001,
                     depths: Sequence[int] = (1, 10, 100, 147, 148, 1000)) -> Result:
    """Note 1: σ'(z) = 0.25 with w = 500 gives a factor 125 per layer; 300·200·125·1001.

    The product of the note's example and the update that makes the weight
    jump sign, then width-1 sigmoid chains held at z = 0 with w = 500
    (b = -250): dL/dx = 125^L, which float64 reports as inf from L = 148
    (125^147 = 1.76e308 is still below the largest double, 1.80e308).
    """
    f = LogArray(0.25) * LogArray(500.0)
    prod = LogArray(300.0) * LogArray(200.0) * f * LogArray(1001.0)
    w_old = 1.0
    w_new = w_old - lr * float(prod.to_numpy())
    _print(out, f"0.25 * 500 = {float(f.to_numpy()):g};  300 * 200 * 125 * 1001 = {float(prod.to_numpy()):.6g}")
    _print(out, f"w_new = w_old - alpha*dL/dw = {w_old} - {lr} * {float(prod.to_numpy()):.4g} = {w_new:.6g}: "
                f"the weight jumps from positive to negative")
    rows = []
    _print(out, "\nsigmoid chain at z = 0 with w = 500: dL/dx = 125^L")
    _print(out, f"  {'L':>6}  {'loggrad':>14}  {'L*log10(125)':>13}  {'float64':>10}")
    for L in depths:
        net = _unit_chain([500.0] * L, [0.0] + [-250.0] * (L - 1), "sigmoid")
        g = _input_grad(net, np.zeros((1, 1)))[0, 0]
        g64 = float(_input_grad(net, np.zeros((1, 1)), "float64")[0, 0])
        rows.append((L, float(g.log10()), L * math.log10(125.0), g64))
        _print(out, f"  {L:>6}  {_f(g):>14}  {L * math.log10(125.0):>13.3f}  {g64:>10.3g}")
    return {"factor": float(f.to_numpy()), "product": float(prod.to_numpy()), "w_new": w_new, "chain": rows}


def linear_chain(out: Callable[[str], None] | None = None, width: int = 2,
                 depths: Sequence[int] = (10, 100, 1000, 4000, 10000)) -> Result:
    """Note 2: with W = 1.2·I the output and gradients grow like 1.2^L; with 0.5·I shrink like 0.5^L."""
    res: Result = {}
    for c in (1.2, 0.5):
        rows = []
        _print(out, f"linear chain W = {c}*I (width {width}), x = 1: yhat and dL/dW_1 (loss = sum)")
        _print(out, f"  {'L':>6}  {'yhat':>12}  {'dL/dW_1':>12}  {'log10 c^(L-1)':>15}  {'float64 yhat':>13}  {'float64 dW_1':>13}")
        for L in depths:
            net = Network([c * np.eye(width)] * L, None, "identity")
            x = np.ones((1, width))
            g = net.backward(x, loss="sum")
            g64 = net.backward(x, loss="sum", precision="float64")
            yhat, dw = g.output[0, 0], g.weights[0][0, 0]
            rows.append((L, float(yhat.log10()), float(dw.log10()), float(g64.output[0, 0]), float(g64.weights[0][0, 0])))
            _print(out, f"  {L:>6}  {_f(yhat):>12}  {_f(dw):>12}  {(L - 1) * math.log10(c):>15.3f}  "
                        f"{float(g64.output[0, 0]):>13.4g}  {float(g64.weights[0][0, 0]):>13.4g}")
        res[f"{c}"] = rows
        _print(out)
    return res


def learning_rate(out: Callable[[str], None] | None = None, epochs: int = 500) -> Result:
    """Note 3: a learning rate too small changes nothing; too large diverges.

    A small regression y = 2x - 1 + noise fitted by one linear unit with SGD
    at three learning rates. Too small: every update is below half an ulp
    (reported exactly). Too large: the loss grows geometrically until the
    float64 weights overflow, which the step refuses.
    """
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (64, 1))
    y = 2 * x - 1 + 0.01 * rng.standard_normal((64, 1))
    res: dict[Any, Any] = {}
    for lr in (1e-20, 0.1, 3.0):
        net = Network([np.array([[0.5]])], [np.array([0.25])], "identity")
        losses, lost = [], []
        n_lost = n_updates = 0
        stopped = None
        for epoch in range(epochs):
            try:
                rep = net.sgd_step(x, y, lr)
            except FloatingPointError:
                stopped = epoch
                break
            losses.append(float(rep.loss.log10()))
            lost.append(float(rep.fraction_unchanged[0]))
            n_lost += int(rep.unchanged.sum())
            n_updates += int(rep.nonzero_updates.sum())
        res[lr] = {"loss_log10": losses, "fraction_unchanged": lost, "overflow_at": stopped,
                   "w": float(net.weights[0][0, 0]), "b": float(net.biases[0][0]),
                   "lost_updates": n_lost, "nonzero_updates": n_updates}
        if lost and min(lost) == 1.0:
            verdict = "no change: every update lost below half an ulp"
        elif stopped is not None:
            verdict = f"diverged: at step {stopped} the update would overflow float64 weights (refused)"
        elif losses[-1] > losses[0]:
            verdict = "diverging"
        else:
            verdict = "converged"
        beyond = [i for i, v in enumerate(losses) if v > math.log10(np.finfo(float).max)]
        if beyond:
            verdict += f"; the loss left float64 range at step {beyond[0]} (float64: inf)"
        res[lr]["verdict"] = verdict
        res[lr]["loss_beyond_float64_at"] = beyond[0] if beyond else None
        _print(out, f"lr = {lr:<6g} log10 loss: first {losses[0]:8.3f}  last {losses[-1]:9.3f}   "
                    f"w = {float(net.weights[0][0, 0]):.4g}   updates lost below half an ulp: "
                    f"{n_lost} of {n_updates}   ({verdict})")
    return res


def _log10_norm64(a: np.ndarray) -> tuple[float, float]:
    """The norm of float64's gradient entries, and its log10 (-inf for 0, inf/nan kept).

    Scaled by the largest entry, so the norm itself neither under- nor overflows:
    what is shown is what float64's gradient holds, not an artefact of squaring it.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        m = float(np.max(np.abs(a)))
        v = m * float(np.sqrt(np.sum(np.square(a / m)))) if 0 < m < math.inf else m
    with np.errstate(divide="ignore", invalid="ignore"):
        return v, float(np.log10(v)) if v > 0 else (-math.inf if v == 0 else math.nan)


def _layer_norms(params: Any, net: Network, what: str) -> np.ndarray:
    """Per-layer Euclidean norms of a gradient in the parameter-block layout, vectorised over layers.

    Extended gradients (a LogArray): exact log10 norms, formed by the engine
    (``segment_norms``) from the mantissa and exponent planes, each layer
    scaled by its largest exponent (-inf for an all-zero layer). float64
    gradients: the norm of the values float64 holds, scaled by each layer's
    largest entry so that squaring adds no under- or overflow of its own (0,
    inf and nan are kept as float64 gave them).
    """
    starts, sizes = net.layout.segments
    k = 0 if what == "weights" else 1  # segments alternate W_0, b_0, W_1, b_1, ...
    starts, sizes = starts[k::2], sizes[k::2]
    if isinstance(params, LogArray):
        emax, s = _core.segment_norms(np.ravel(params.mantissa), np.ravel(params.exponent), starts, sizes)
        return np.asarray(LogArray.from_parts(s, emax).log10(), dtype=np.float64)
    seg = np.repeat(np.arange(starts.size), sizes)
    first = np.cumsum(sizes) - sizes
    # the selected entries, layer after layer: a gather over one index array, no loop over layers
    take = np.arange(int(sizes.sum())) - np.repeat(first, sizes) + np.repeat(starts, sizes)
    a = np.asarray(params, dtype=np.float64).ravel()[take]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        big = np.maximum.reduceat(np.abs(a), first)
        ok = (big > 0) & (big < math.inf)
        scale = np.where(ok, big, 1.0)
        v = scale * np.sqrt(np.add.reduceat(np.square(a / scale[seg]), first))
    res: np.ndarray = np.where(ok, v, big)
    return res


def _profile(net: Network, x: np.ndarray, y: np.ndarray, what: str = "weights") -> tuple[np.ndarray, np.ndarray]:
    """Per-layer gradient norms: exact log10 (extended path) and float64's values (float64 path)."""
    g = net.backward(x, y, loss="mse")
    g64 = net.backward(x, y, loss="mse", precision="float64")
    return _layer_norms(g.params, net, what), _layer_norms(g64.params, net, what)


_TINY = float(np.finfo(np.float64).tiny)  # smallest normal float64: below it, precision is lost


def _f64(v: float) -> str:
    return f"{v:.3g}" if v != 0 else "0.0"


INIT_SCHEMES: tuple[tuple[str, str], ...] = (
    ("normal", "N(0,1)"), ("lecun_normal", "LeCun"), ("xavier_normal", "Xavier"), ("he_normal", "He"))


def init_schemes(out: Callable[[str], None] | None = None, depth: int = 1000, width: int = 16, batch: int = 4,
                 activations: Sequence[str] = ("sigmoid", "tanh", "relu"), seed: int = 0,
                 schemes: Sequence[tuple[str, str]] = INIT_SCHEMES) -> Result:
    """Notes 2/3: the same deep network initialised N(0,1), LeCun, Xavier, He: per-layer ||dL/dW_l||.

    For each activation, one chain of ``depth`` layers of ``width`` units
    (biases 0) is initialised with each scheme from the same seed, and one
    batch (x ~ N(0,1), targets y ~ N(0,1), mse) is back-propagated. The table
    shows log10 ||dL/dW_l|| exactly and, in brackets, what float64 computes
    (0.0 or a subnormal of few digits when it underflows, inf or nan when it
    overflows). With constant widths fan_avg = fan_in, so Xavier has LeCun's variance 1/n (the two
    differ only in the truncation of the normal: Keras LeCun, torch Xavier).
    Returns ``res[activation][init]`` = {"log10", "float64", "float64_wrong_layers"}.
    """
    rng = np.random.default_rng([seed, 1])
    x = rng.standard_normal((batch, width))
    y = rng.standard_normal((batch, width))
    show = sorted({0, depth // 4, depth // 2, (3 * depth) // 4, depth - 1})
    res: Result = {"layers": show, "depth": depth, "width": width, "batch": batch, "seed": seed}
    for act in activations:
        _print(out, f"{act}: log10 ||dL/dW_l|| exact [float64], depth {depth}, width {width}")
        _print(out, f"  {'layer':>6}" + "".join(f"  {label:>22}" for _, label in schemes))
        cols = {}
        for name, label in schemes:
            net = Network.build([width] * (depth + 1), act, init=name, seed=seed)
            cols[name] = _profile(net, x, y)
        for l in show:
            cells = "".join(f"  {cols[n][0][l]:>9.2f} [{_f64(cols[n][1][l]):>10}]" for n, _ in schemes)
            _print(out, f"  {l + 1:>6}{cells}")
        res[act] = {}
        for name, label in schemes:
            exact, shown = cols[name]
            bad = int(np.sum(~(np.isfinite(shown) & (shown >= _TINY)) & np.isfinite(exact)))
            res[act][name] = {"log10": exact, "float64": shown, "float64_wrong_layers": bad}
        wrong = ", ".join(f"{lab} {res[act][n]['float64_wrong_layers']}" for n, lab in schemes)
        _print(out, f"  layers where float64 gives 0, inf, nan or a subnormal (< 53 bits): {wrong}")
        _print(out)
    return res


def gain_sweep(out: Callable[[str], None] | None = None, depth: int = 1200, width: int = 32,
               gains: Sequence[float] = (0.5, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0),
               cases: Sequence[tuple[str, str]] = (("tanh", "xavier_normal"), ("relu", "kaiming_normal")),
               seed: int = 0, skip: int | None = None) -> Result:
    """Notes 2: the gain gamma swept around 1 (W ~ gamma * base): where gradients stop vanishing or exploding.

    For tanh with Xavier (sigma_w = gamma) and relu with Kaiming/He
    (sigma_w = gamma * sqrt(2)), both torch-convention Gaussians, one chain per
    gamma from the same seed; the back-propagated error delta_l = dL/db_l
    (batch 1, mse) is measured exactly in every layer. ``slope``: the change
    of log10 ||delta_l|| per layer going back, over the layers after the
    first ``skip`` (default depth/10, the transient). It is compared with
    mean-field theory, ``log10(chi1)/2`` at infinite width
    (:func:`loggrad.theory.log10_gradient_growth_per_layer`) and with its
    finite-width mean (:func:`loggrad.theory.log_gradient_growth_finite_width`),
    and the gamma where the measured slope crosses 0 is interpolated.
    """
    from . import theory

    first = depth // 10 if skip is None else int(skip)
    rng = np.random.default_rng([seed, 2])
    x = rng.standard_normal((1, width))
    y = rng.standard_normal((1, width))
    res: Result = {"depth": depth, "width": width, "skip": first, "seed": seed}
    for act, init in cases:
        base = 1.0 if act != "relu" else math.sqrt(2.0)
        _print(out, f"{act}, {init} x gamma: log10 ||dL/db_l|| (the error sent back), depth {depth}, width {width}")
        _print(out, f"  {'gamma':>6}  {'layer 1 exact':>14}  {'float64':>10}  {'slope/layer':>11}  "
                    f"{'theory n=inf':>12}  {'theory n=' + str(width):>12}")
        rows: list[dict[str, Any]] = []
        for gm in gains:
            net = Network.build([width] * (depth + 1), act, init=init, seed=seed, gain=gm)
            exact, shown = _profile(net, x, y, "biases")
            tail = exact[first:]
            slope = float(tail[0] - tail[-1]) / (len(tail) - 1)  # per layer, going back
            sw = gm * base
            inf_w = theory.log10_gradient_growth_per_layer(act, sw, 0.0)
            mean, var = theory.log_gradient_growth_finite_width(act, sw, 0.0, width)
            fin = mean / math.log(10.0)
            rows.append({"gain": gm, "log10": exact, "float64": shown, "slope": slope, "theory": inf_w,
                         "theory_finite": fin, "theory_sd": math.sqrt(var) / math.log(10.0)})
            _print(out, f"  {gm:>6.3g}  {exact[0]:>14.2f}  {_f64(shown[0]):>10}  {slope:>11.4f}  "
                        f"{inf_w:>12.4f}  {fin:>12.4f}")
        s = [float(r["slope"]) for r in rows]
        cross = math.nan
        for i in range(len(rows) - 1):
            if s[i] < 0 <= s[i + 1]:
                g0, g1 = float(rows[i]["gain"]), float(rows[i + 1]["gain"])
                cross = g0 + (g1 - g0) * (-s[i]) / (s[i + 1] - s[i])
                break
        _print(out, f"  measured slope crosses 0 at gamma ~ {cross:.3g} (infinite-width theory: gamma = 1; "
                    "finite width drifts the typical gradient down by ~k/(4n) per layer)")
        _print(out)
        res[act] = {"init": init, "rows": rows, "crossing": cross}
    return res


#: A float64 norm further than this from the exact one (in decades, 0.023%) has fewer than 4 correct digits.
WRONG_DECADES = 1e-4


def _float64_failure(exact: np.ndarray, shown: np.ndarray) -> tuple[np.ndarray, str]:
    """Where float64's per-layer norm is wrong, and how.

    Wrong: 0 or a subnormal (underflow), inf or nan (overflow), or a normal
    value more than WRONG_DECADES from the exact norm (lost digits, e.g. the
    derivatives of saturated units rounded to 0 inside float64's range).
    """
    fin = np.isfinite(exact)
    normal = np.isfinite(shown) & (shown >= _TINY)
    with np.errstate(divide="ignore", invalid="ignore"):
        off = normal & fin & (np.abs(np.log10(np.where(normal, shown, 1.0)) - exact) > WRONG_DECADES)
    under = fin & ~normal & (shown < _TINY)
    over = fin & ~normal & ~(shown < _TINY)  # inf or nan
    kinds = [k for k, m in (("overflow (inf/nan)", over), ("underflow", under), ("lost digits", off)) if np.any(m)]
    return under | over | off, " and ".join(kinds) if kinds else "none"


def residual_nets(out: Callable[[str], None] | None = None, depth: int = 4000, width: int = 16, batch: int = 4,
                  activations: Sequence[str] = ("sigmoid", "tanh", "relu"), scales: Sequence[float] | None = None,
                  init: str = "lecun_normal", seed: int = 0) -> Result:
    """Residual connections a_{l+1} = a_l + s·f(W a_l): gradients stop vanishing and start to grow.

    The same deep network (``depth`` layers of ``width`` units, ``init``
    weights from one seed, biases 0), plain and residual with the branch scale
    s swept over 1, 1/sqrt(L) and 0.1. One batch (x, y ~ N(0,1), mse) is
    back-propagated; the table shows log10 ||dL/db_l|| (the error sent back
    to layer l, summed over the batch) exactly and, in brackets, what float64
    computes. A residual layer's Jacobian is I + s·W^T diag(f'), never below
    one in mean square: the plain sigmoid and relu chains vanish toward the
    input (float64: 0.0), the residual ones grow instead, the relu chain with
    s = 1 past float64's largest value (inf, nan). s = 1/sqrt(L) keeps the
    end-to-end change of sigmoid and tanh within a few decades at any depth;
    for relu the growth is larger than mean-field theory predicts (see
    :func:`loggrad.theory.residual_chi`), still far below that of s = 1.
    Returns ``res[activation][label]`` = {"scale", "log10", "float64",
    "float64_wrong_layers", "float64_failure", "first_wrong_from_output",
    "log10_weights", "float64_weights"}: per-layer norms of dL/db_l, then
    those of dL/dW_l (the same passes).
    """
    if scales is None:
        scales = (1.0, 1.0 / math.sqrt(depth), 0.1)
    rng = np.random.default_rng([seed, 3])
    x = rng.standard_normal((batch, width))
    y = rng.standard_normal((batch, width))
    show = sorted({0, depth // 2, depth - 1})
    cases: list[tuple[str, float | None]] = [("plain", None)]
    cases += [(("s = 1/sqrt(L)" if abs(sc * math.sqrt(depth) - 1) < 1e-12 else f"s = {sc:g}"), float(sc))
              for sc in scales]
    res: Result = {"layers": show, "depth": depth, "width": width, "batch": batch, "seed": seed, "init": init}
    for act in activations:
        _print(out, f"{act}: log10 ||dL/db_l|| exact [float64], depth {depth}, width {width}, {init}, biases 0")
        _print(out, f"  {'network':>16}" + "".join(f"  {'layer ' + str(l + 1):>22}" for l in show)
                    + f"  {'float64 wrong in':>17}  float64 fails by")
        res[act] = {}
        for label, sc in cases:
            net = Network.build([width] * (depth + 1), act, init=init, seed=seed, residual=sc)
            g = net.backward(x, y, loss="mse")
            g64 = net.backward(x, y, loss="mse", precision="float64")
            exact, shown = _layer_norms(g.params, net, "biases"), _layer_norms(g64.params, net, "biases")
            wrong, kind = _float64_failure(exact, shown)
            bad = np.flatnonzero(wrong)
            res[act][label] = {"scale": sc, "log10": exact, "float64": shown, "float64_wrong_layers": int(bad.size),
                               "float64_failure": kind,
                               "first_wrong_from_output": int(depth - 1 - bad[-1]) if bad.size else None,
                               "log10_weights": _layer_norms(g.params, net, "weights"),
                               "float64_weights": _layer_norms(g64.params, net, "weights")}
            cells = "".join(f"  {exact[l]:>9.2f} [{_f64(shown[l]):>10}]" for l in show)
            _print(out, f"  {label:>16}{cells}  {str(bad.size) + ' layers':>17}  {kind}")
        _print(out)
    return res


DEMOS: dict[str, Callable[..., Result]] = {
    "chain_rule": chain_rule,
    "sigmoid_bound": sigmoid_bound,
    "exploding_factor": exploding_factor,
    "linear_chain": linear_chain,
    "init": init_schemes,
    "gain": gain_sweep,
    "learning_rate": learning_rate,
    "residual": residual_nets,
}


def run(name: str, out: Callable[[str], None] | None = None, **kwargs: Any) -> Result:
    """Run the demo called name (see DEMOS); returns its numbers."""
    if name not in DEMOS:
        raise ValueError(f"unknown demo {name!r}; available: {', '.join(DEMOS)}")
    return DEMOS[name](out, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "list"):
        print("loggrad demos (run one with: python -m loggrad.demos NAME, or 'all'):\n")
        for name, fn in DEMOS.items():
            doc = (fn.__doc__ or "").strip().splitlines()[0]
            print(f"  {name:<18} {doc}")
        return 0
    names = list(DEMOS) if args == ["all"] else args
    for n in names:
        if n not in DEMOS:
            print(f"unknown demo {n!r}; available: {', '.join(DEMOS)}", file=sys.stderr)
            return 2
    for n in names:
        print(f"== {n} ==")
        run(n)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
