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
        d = net.backward(np.array([[z]]), loss="sum").input[0, 0]
        d64 = float(net.backward(np.array([[z]]), loss="sum", precision="float64").input[0, 0])
        derivs.append(d)
        _print(out, f"  z = {z:>6g}: {_f(d):>12}  float64 {d64:.4g}   (log10 {float(d.log10()):.3f})")
    rows = []
    _print(out, "\nsigmoid chain at z = 0 in every layer: dL/dx = 0.25^L (the bound)")
    _print(out, f"  {'L':>6}  {'loggrad':>12}  {'L*log10(0.25)':>14}  {'float64':>10}")
    for L in depths:
        net = _unit_chain([1.0] * L, [0.0] + [-0.5] * (L - 1), "sigmoid")
        g = net.backward(np.zeros((1, 1)), loss="sum")
        g64 = float(net.backward(np.zeros((1, 1)), loss="sum", precision="float64").input[0, 0])
        v = g.input[0, 0]
        rows.append((L, float(v.log10()), L * math.log10(0.25), g64))
        _print(out, f"  {L:>6}  {_f(v):>12}  {L * math.log10(0.25):>14.3f}  {g64:>10.3g}")
    return {"z": zs, "derivative_log10": np.array([float(d.log10()) for d in derivs]), "chain": rows}


def exploding_factor(out: Callable[[str], None] | None = None, lr: float = 0.001,
                     depths: Sequence[int] = (1, 10, 100, 147, 1000)) -> Result:
    """Note 1: σ'(z) = 0.25 with w = 500 gives a factor 125 per layer; 300·200·125·1001.

    The product of the note's example and the update that makes the weight
    jump sign, then width-1 sigmoid chains held at z = 0 with w = 500
    (b = -250): dL/dx = 125^L, which float64 reports as inf from L = 147.
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
        g = net.backward(np.zeros((1, 1)), loss="sum").input[0, 0]
        g64 = float(net.backward(np.zeros((1, 1)), loss="sum", precision="float64").input[0, 0])
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
        stopped = None
        for epoch in range(epochs):
            try:
                rep = net.sgd_step(x, y, lr)
            except FloatingPointError:
                stopped = epoch
                break
            losses.append(float(rep.loss.log10()))
            lost.append(float(rep.fraction_unchanged[0]))
        res[lr] = {"loss_log10": losses, "fraction_unchanged": lost, "overflow_at": stopped, "w": float(net.weights[0][0, 0])}
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
                    f"w = {float(net.weights[0][0, 0]):.4g}   ({verdict})")
    return res


DEMOS: dict[str, Callable[..., Result]] = {
    "chain_rule": chain_rule,
    "sigmoid_bound": sigmoid_bound,
    "exploding_factor": exploding_factor,
    "linear_chain": linear_chain,
    "learning_rate": learning_rate,
}


def run(name: str, out: Callable[[str], None] | None = None, **kwargs: Any) -> Result:
    """Run the demo called name (see DEMOS); returns its numbers."""
    if name not in DEMOS:
        raise ValueError(f"unknown demo {name!r}; available: {', '.join(DEMOS)}")
    return DEMOS[name](out, **kwargs)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
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
