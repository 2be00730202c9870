"""Why not quad precision, or arbitrary precision? loggrad against numpy-quaddtype and mpmath.

The two ways to get past float64's range without loggrad, each as a user would write it:

    quad     the textbook numpy backprop with every array in numpy-quaddtype's QuadPrecDType
             (113-bit mantissa, range about 1e+-4932): numpy code that runs unchanged
    mpmath   the same backprop in mpmath at 53 bits (float64's precision, an unbounded
             exponent: the arithmetic loggrad's extended path keeps), one mpf per entry

against loggrad extended (``backward(input_grad=False)``) and the float64 numpy backprop, on
tanh chains of the benchmark grid's kind (mse loss). Each engine's dW_0 is checked against
loggrad's before it is timed. numpy-quaddtype 1.0.0's matmul gives wrong products when an
operand is a transposed view (an error of order one, silently), so the quad backprop makes
every transposed operand contiguous first.

Each timed row but loggrad's carries its median over loggrad's as
extra_info["ratio_to_loggrad"], printed at the end. ``test_range`` shows what the speed
buys nothing without: a 500-layer chain whose every weight gradient is near 10^-6000, where
float64 and quad give exact zeros and loggrad agrees with mpmath at 160 bits.

    pip install numpy-quaddtype mpmath
    python -m pytest benchmarks/test_bench_alternatives.py --benchmark-enable
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import loggrad as lg
from baselines import record_median
from loggrad.bench import make_problem, numpy_backward

# (depth, width, batch); mpmath at the first shape only (about a second a pass)
SHAPES = [(100, 16, 4), (1000, 16, 4), (100, 64, 16)]
MPMATH_SHAPES = {(100, 16, 4)}

_medians: dict[tuple[int, int, int], dict[str, float]] = {}


def quad_backward(ws, bs, x, y):
    """numpy_backward with every array in QuadPrecDType; returns dW_0 (quad)."""
    qd = pytest.importorskip("numpy_quaddtype")
    Q = qd.QuadPrecDType()
    return _quad_pass([w.astype(Q) for w in ws], [b.astype(Q) for b in bs], x.astype(Q), y.astype(Q))


def _quad_pass(ws, bs, x, y):
    acts, ders = [x], []
    a = x
    for w, b in zip(ws, bs):
        a = np.tanh(a @ np.ascontiguousarray(w.T) + b)  # never a transposed view (see above)
        acts.append(a)
        ders.append(1 - a * a)
    g = 2 * (acts[-1] - y) / acts[-1].size
    for layer in range(len(ws) - 1, -1, -1):
        d = g * ders[layer]
        dw = np.ascontiguousarray(d.T) @ acts[layer]
        if layer:
            g = d @ ws[layer]
    return dw


def mpmath_backward(ws, bs, x, y, prec=53):
    """The same backprop in mpmath at prec bits (inputs already mpf); returns dW_0 as rows of mpf."""
    import mpmath

    with mpmath.workprec(prec):
        fdot, tanh = mpmath.fdot, mpmath.tanh
        acts, ders = [x], []
        for w, b in zip(ws, bs):
            a = [[tanh(fdot(row, ar) + bj) for row, bj in zip(w, b)] for ar in acts[-1]]
            acts.append(a)
            ders.append([[1 - v * v for v in ar] for ar in a])
        n = len(x) * len(acts[-1][0])
        g = [[2 * (v - t) / n for v, t in zip(ar, yr)] for ar, yr in zip(acts[-1], y)]
        for layer in range(len(ws) - 1, -1, -1):
            d = [[gi * di for gi, di in zip(gr, dr)] for gr, dr in zip(g, ders[layer])]
            dT = list(zip(*d))
            aT = list(zip(*acts[layer]))
            dw = [[fdot(dj, ak) for ak in aT] for dj in dT]
            if layer:
                cols = list(zip(*ws[layer]))
                g = [[fdot(dr, c) for c in cols] for dr in d]
    return dw


def to_mp(ws, bs, x, y):
    import mpmath

    def conv(a):
        return [[mpmath.mpf(float(v)) for v in row] for row in np.atleast_2d(a)]

    return [conv(w) for w in ws], [conv(b)[0] for b in bs], conv(x), conv(y)


def _record(benchmark, shape, engine):
    benchmark.group = "alternatives {}x{}x{}".format(*shape)
    benchmark.extra_info.update(engine=engine, depth=shape[0], width=shape[1], batch=shape[2])


def _finish(benchmark, shape, engine):
    record_median(benchmark, _medians.setdefault(shape, {}), engine, "loggrad")


def _loggrad_dw0(shape):
    ws, bs, x, y = make_problem(*shape, "tanh")
    net = lg.Network(ws, bs, "tanh")
    return net, x, y, net.backward(x, y, input_grad=False).weights[0].to_numpy()


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_loggrad(benchmark, shape):
    net, x, y, _ = _loggrad_dw0(shape)
    _record(benchmark, shape, "loggrad")
    benchmark(lambda: net.backward(x, y, input_grad=False))
    _finish(benchmark, shape, "loggrad")


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_float64(benchmark, shape):
    ws, bs, x, y = make_problem(*shape, "tanh")
    _, _, _, ref = _loggrad_dw0(shape)
    np.testing.assert_allclose(numpy_backward(ws, bs, x, y, "tanh")[1][0], ref, rtol=1e-9, atol=1e-14)
    _record(benchmark, shape, "float64")
    benchmark(lambda: numpy_backward(ws, bs, x, y, "tanh"))
    _finish(benchmark, shape, "float64")


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_quad(benchmark, shape):
    qd = pytest.importorskip("numpy_quaddtype")
    Q = qd.QuadPrecDType()
    ws, bs, x, y = make_problem(*shape, "tanh")
    _, _, _, ref = _loggrad_dw0(shape)
    wq, bq, xq, yq = [w.astype(Q) for w in ws], [b.astype(Q) for b in bs], x.astype(Q), y.astype(Q)
    np.testing.assert_allclose(_quad_pass(wq, bq, xq, yq).astype(np.float64), ref, rtol=1e-9, atol=1e-14)
    _record(benchmark, shape, "quad")
    benchmark.pedantic(_quad_pass, args=(wq, bq, xq, yq), rounds=3, iterations=1, warmup_rounds=0)
    _finish(benchmark, shape, "quad")


@pytest.mark.parametrize("shape", sorted(MPMATH_SHAPES), ids=lambda s: "x".join(map(str, s)))
def test_mpmath(benchmark, shape):
    pytest.importorskip("mpmath")
    ws, bs, x, y = make_problem(*shape, "tanh")
    _, _, _, ref = _loggrad_dw0(shape)
    args = to_mp(ws, bs, x, y)
    dw = np.array([[float(v) for v in row] for row in mpmath_backward(*args)])
    np.testing.assert_allclose(dw, ref, rtol=1e-9, atol=1e-14)
    _record(benchmark, shape, "mpmath")
    benchmark.pedantic(mpmath_backward, args=args, rounds=2, iterations=1, warmup_rounds=0)
    _finish(benchmark, shape, "mpmath")


def test_range():
    """Where quad runs out: every dW of this chain is near 10^-6000 (not timed)."""
    mpmath = pytest.importorskip("mpmath")
    depth, width, batch = 500, 8, 2
    rng = np.random.default_rng(1)
    # weights of norm ~1e-12: each layer scales the forward signal and the backward
    # gradient by about 1e-12, so dW_l = delta_l a_l^T ~ 1e-12^depth for every l
    ws = [rng.standard_normal((width, width)) * (1e-12 / math.sqrt(width)) for _ in range(depth)]
    bs = [np.zeros(width) for _ in range(depth)]
    x, y = rng.standard_normal((batch, width)), rng.standard_normal((batch, width))
    net = lg.Network(ws, bs, "tanh")
    dw0 = net.backward(x, y, input_grad=False).weights[0]
    assert np.all(np.abs(numpy_backward(ws, bs, x, y, "tanh")[1][0]) == 0.0)  # float64: all zero
    ref = mpmath_backward(*to_mp(ws, bs, x, y), prec=160)
    logs = dw0.log10()
    # the chain's rounding, (2 width + 8) operations a layer each within 2^-53, plus
    # the rounding of log10 itself near 6000 (as tests/contract.py states it)
    rel = depth * (2 * width + 8) * 2.0**-53 / math.log(10)
    for i in range(width):
        for j in range(width):
            want = float(mpmath.log10(abs(ref[i][j])))
            assert abs(float(logs[i, j]) - want) <= rel + 4 * math.ulp(want), (i, j)
            assert (float(dw0.mantissa[i, j]) > 0) == (ref[i][j] > 0)
    assert -6100 < float(logs.max()) < -5800
    try:
        import numpy_quaddtype  # noqa: F401
    except ImportError:
        return
    assert np.all(quad_backward(ws, bs, x, y).astype(np.float64) == 0.0)  # quad: all zero too


def test_ratios_summary(request):
    """Prints each engine's median over loggrad's per shape (nothing when benchmarks are disabled)."""
    lines = []
    for shape, row in sorted(_medians.items()):
        if "loggrad" not in row:
            continue
        parts = [f"{k} {row[k] / row['loggrad']:.3g}x" for k in ("float64", "quad", "mpmath") if k in row]
        lines.append("{}x{}x{}: loggrad {:.3g} ms; ".format(*shape, row["loggrad"] * 1e3) + ", ".join(parts))
    if lines:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("\nengine / loggrad extended (medians): " + "; ".join(lines))
