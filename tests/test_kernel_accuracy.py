"""Kernel accuracy against mpmath on dense grids: gelu on [-10, 5] and e^z up to the range edge.

Errors are in ulps of the exact value rounded to 53 bits with an unbounded
exponent. The extended results come from one-unit networks (weight 1, bias 0):
the forward pass gives f(z), dL/dx of the "sum" loss gives f'(z), both exact
products of the kernel's output with 1.
"""

import math

import mpmath
import numpy as np
import pytest

import loggrad as lg

mpmath.mp.prec = 200


def ulp_errors(got: lg.LogArray, ref: list) -> np.ndarray:
    out = []
    for m, e, r in zip(got.mantissa.ravel(), got.exponent.ravel(), ref):
        _, re_ = mpmath.frexp(r)
        ulp = mpmath.ldexp(1, int(re_) - 53)
        out.append(float(abs(mpmath.ldexp(mpmath.mpf(float(m)), int(e)) - r) / ulp))
    return np.array(out)


def unit_pass(act: str, z: np.ndarray) -> tuple[lg.LogArray, lg.LogArray]:
    net = lg.Network([np.array([[1.0]])], None, act)
    x = z.reshape(-1, 1)
    return net.forward(x), net.backward(x, None, loss="sum").input


def gelu_grid(lo: float, hi: float, n: int) -> np.ndarray:
    rng = np.random.default_rng(int(abs(lo) * 1000))
    nodes = np.arange(-10.0, 0.5 + 1e-9, 1 / 16)  # the engine's table nodes
    return np.unique(np.concatenate([
        np.linspace(lo, hi, n),
        rng.uniform(lo, hi, n // 4),
        # each side of the table nodes and of the half-way points, where |h| is largest
        np.clip(np.concatenate([nodes + 1 / 32, nodes - 1 / 32, np.nextafter(nodes + 1 / 32, 0)]), lo, hi),
    ]))


@pytest.mark.parametrize("lo, hi", [(-10.0, -5.0), (-5.0, -2.0), (-2.0, 0.5), (0.5, 5.0)])
def test_gelu_value_within_2_ulp(lo, hi):
    z = gelu_grid(lo, hi, 3000)
    a, _ = unit_pass("gelu", z)
    ref = [mpmath.mpf(float(v)) * mpmath.ncdf(mpmath.mpf(float(v))) for v in z]
    err = ulp_errors(a, ref)
    assert err.max() <= 2.0, (err.max(), z[err.argmax()])


@pytest.mark.parametrize("lo, hi", [(-10.0, -5.0), (-5.0, -2.0), (-2.0, 0.5), (0.5, 5.0)])
def test_gelu_derivative_within_2_ulp(lo, hi):
    z = gelu_grid(lo, hi, 3000)
    _, d = unit_pass("gelu", z)
    zm = [mpmath.mpf(float(v)) for v in z]
    ref = [mpmath.ncdf(v) + v * mpmath.npdf(v) for v in zm]
    err = ulp_errors(d, ref)
    # gelu' has a root near z = -0.7518: there the relative error of any float64
    # evaluation is unbounded; what stays bounded is the error relative to Phi(z)
    root = float(mpmath.findroot(lambda v: mpmath.ncdf(v) + v * mpmath.npdf(v), -0.75))
    near = np.abs(z - root) < 0.02
    assert err[~near].max(initial=0.0) <= 2.0, z[~near][err[~near].argmax()] if (~near).any() else None
    got = d.to_numpy().ravel()
    for i in np.flatnonzero(near):
        assert abs(mpmath.mpf(float(got[i])) - ref[i]) <= 2 * 2.0**-53 * mpmath.ncdf(zm[i])


def test_exp_within_1_ulp_up_to_the_range_edge():
    """elu'(z) = e^z for z < 0 (alpha = 1): the extended exp kernel itself."""
    # the engine refuses k = round(z log2 e) beyond 2^60 - 4; float64 values of k there are
    # 128 apart, so the last z it takes lies within a few hundred ln 2 of -2^60 ln 2
    edge = float(-(2**60 - 512) * mpmath.log(2))
    rng = np.random.default_rng(7)
    z = np.unique(np.concatenate([
        np.linspace(edge, 0.98 * edge, 2000),
        -np.geomspace(701.0, -edge, 2000),
        rng.uniform(edge, 0.0, 1000),
        [edge, -7.85e17, -2.0**59, -(2.0**40) - 0.5, -701.0, -700.5],
    ]))
    _, d = unit_pass("elu", z)
    err = ulp_errors(d, [mpmath.exp(mpmath.mpf(float(v))) for v in z])
    assert err.max() <= 1.0, (err.max(), z[err.argmax()])
    assert math.isclose(float(d.log10().min()), edge / math.log(10), rel_tol=1e-15)
