"""Baseline engines for the benchmarks, and the correctness check every benchmarked result passes.

The engines live in the package (loggrad.bench) so that `loggrad bench` works from an
installed wheel; this module re-exports them. `check_result` here compares each engine
with a renormalised numpy backprop: the textbook float64 backprop with the backward
delta rescaled by a power of two after every layer (exact), so it is what float64
would compute with an unbounded exponent and stays a reference where the gradients
leave float64's range (width 4 at depth 10,000 reaches about 10^-600).
"""

import functools
import math

import numpy as np

from loggrad.bench import (  # noqa: F401
    ACTIVATIONS,
    ENGINES,
    QUICK,
    Config,
    grid,
    installed,
    jax_runner,
    loggrad_runner,
    make_problem,
    make_runner,
    numpy_backward,
    numpy_runner,
    torch_runner,
)

U = 2.0**-53  # float64 unit roundoff


def renormalised_backward(ws, bs, x, y, activation):
    """mse loss, dL/dW_0 as (mantissas, exponent): dL/dW_0 = mantissas * 2**exponent.

    The forward pass and every product are numpy_backward's; only the delta is
    rescaled (by powers of two, which round nothing) so that it never under- or
    overflows. Activations of tanh and relu chains with variance-preserving
    weights stay in range on their own.
    """
    acts, ders = [x], []
    a = x
    for w, b in zip(ws, bs):
        z = a @ w.T + b
        if activation == "tanh":
            a = np.tanh(z)
            ders.append(1.0 - a * a)
        elif activation == "relu":
            a = np.maximum(z, 0.0)
            ders.append((z > 0).astype(np.float64))
        else:
            raise ValueError(f"renormalised_backward: unsupported activation {activation!r}")
        acts.append(a)
    loss = float(np.sum((a - y) ** 2) / a.size)
    g = 2.0 * (a - y) / a.size
    exp = 0
    for layer in range(len(ws) - 1, 0, -1):
        g = (g * ders[layer]) @ ws[layer]
        top = float(np.abs(g).max())
        if top == 0.0:
            break  # every later delta is exactly zero too
        s = math.frexp(top)[1]
        g = np.ldexp(g, -s)
        exp += s
    dw0 = (g * ders[0]).T @ acts[0]
    return loss, dw0, exp


@functools.lru_cache(maxsize=4)
def _reference(cfg):
    ws, bs, x, y = make_problem(cfg.depth, cfg.width, cfg.batch, cfg.activation)
    return renormalised_backward(ws, bs, x, y, cfg.activation)


def error_bound_units(cfg):
    """Normwise relative error, in units of roundoff, that float64 arithmetic (unbounded
    exponent) may commit on dL/dW_0 of a chain: per layer, the forward and the
    backward product (a width-term dot product each) and the activation and its
    derivative (4 u each), plus the batch sum of the weight gradient; twice that,
    since the engine and the reference each commit it."""
    return 2 * (cfg.depth * (2 * cfg.width + 8) + cfg.batch)


def _extended_dw0(engine, cfg):
    """loggrad-extended's dL/dW_0 as a LogArray (its runner hands back float64 values, which
    flush to 0 out of range: the benchmark times the pass, not that conversion)."""
    from loggrad import Network

    ws, bs, x, y = make_problem(cfg.depth, cfg.width, cfg.batch, cfg.activation)
    g = Network(list(ws), list(bs), cfg.activation).backward(x, y, loss="mse", input_grad=False,
                                                             layers=[0])
    return g.weights[0]


def check_result(engine, got, ref, cfg):
    """Raises AssertionError when an engine's loss or dL/dW_0 differs from the renormalised
    numpy backprop by more than float64 rounding allows (error_bound_units).

    `ref` (the plain numpy backprop's result) is not needed: the reference is rebuilt
    from the configuration, renormalised. Float64 engines are compared with the
    reference rounded to float64 (where it underflows, they must too, up to the
    bound); loggrad-extended is also compared in extended range.
    """
    del ref
    rloss, rm, rexp = _reference(cfg)
    units = error_bound_units(cfg)
    loss, dw0 = got
    if not abs(loss - rloss) <= units * U * abs(rloss):
        raise AssertionError(f"{engine} {cfg.label}: loss {loss!r} != the reference's {rloss!r} "
                             f"(bound {units} u)")
    scale = float(np.abs(rm).max())
    with np.errstate(under="ignore", over="ignore"):
        want = np.ldexp(rm, rexp)
        tol = units * U * math.ldexp(scale, rexp) + 2.0**-1074 * cfg.batch
    err = float(np.abs(np.asarray(dw0, dtype=np.float64) - want).max())
    if not err <= tol:
        raise AssertionError(f"{engine} {cfg.label}: dL/dW_0 differs from the reference by {err:.3g} "
                             f"(bound {tol:.3g}: {units} u of the largest |dL/dW_0|)")
    if engine == "loggrad-extended" and scale > 0:
        w0 = _extended_dw0(engine, cfg)
        # both sides as mantissas of the reference's scale: exact powers of two apart
        e = np.clip(np.asarray(w0.exponent, dtype=np.int64) - rexp, -3000, 3000).astype(np.int32)
        with np.errstate(under="ignore"):
            m = np.ldexp(np.asarray(w0.mantissa, dtype=np.float64), e)
        err = float(np.abs(m - rm).max()) / scale
        if not err <= units * U:
            raise AssertionError(f"{engine} {cfg.label}: extended dL/dW_0 differs from the reference by "
                                 f"{err / U:.3g} u of its largest entry (bound {units} u); "
                                 f"largest |dL/dW_0| = 2^{rexp} x {scale:.6g}")
