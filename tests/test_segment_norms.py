"""The engine's per-segment norms (_core.segment_norms), which train.layer_norms and the demos use.

Checked against mpmath (exact sums of squares, unbounded exponent), against
numpy's np.add.reduceat formulation bitwise (the order the engine promises),
against a training step's own per-layer gradient norms bitwise, for any thread
count, and for clear errors on segments that do not fit.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

import loggrad as lg
from loggrad import _core
from loggrad.train import layer_norms
from contract import assert_log10_close


def _planes(rng: np.random.Generator, n: int, spread: int) -> tuple[np.ndarray, np.ndarray]:
    """n normal-form values with exponents spread over +-spread (far beyond float64's range)."""
    m = rng.uniform(0.5, 1.0, n) * rng.choice([-1.0, 1.0], n)
    e = rng.integers(-spread, spread, n).astype(np.int64)
    zero = rng.random(n) < 0.1
    m[zero] = 0.0
    e[zero] = lg.LogArray(0.0).exponent  # the engine's exponent of zero
    return m, e


def _numpy_norms(m: np.ndarray, e: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The formulation the engine promises to follow bit for bit (numpy reduceat over contiguous segments)."""
    ee = np.where(m == 0, np.iinfo(np.int64).min // 4, e)
    emax = np.maximum.reduceat(ee, starts)
    emax = np.where(emax < -(2**60), 0, emax)
    d = np.clip(ee - np.repeat(emax, sizes), -3000, 0).astype(np.int32)
    with np.errstate(under="ignore"):
        sc = np.ldexp(m, d)
    return emax, np.sqrt(np.add.reduceat(sc * sc, starts))


def _mp_log10_norm(m: np.ndarray, e: np.ndarray) -> float:
    with mpmath.workprec(200):
        tot = mpmath.fsum(mpmath.ldexp(mpmath.mpf(float(a)), 2 * int(b)) * float(a) for a, b in zip(m, e) if a != 0)
        return float(mpmath.log10(tot) / 2) if tot else -np.inf


@pytest.mark.parametrize("spread", [3, 200, 5000])
def test_against_mpmath_and_numpy(spread: int) -> None:
    rng = np.random.default_rng(spread)
    sizes = np.array([1, 2, 7, 8, 9, 127, 128, 129, 1025, 3000, 5])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    m, e = _planes(rng, int(sizes.sum()), spread)
    m[starts[-1]:] = 0.0  # an all-zero segment
    e[starts[-1]:] = lg.LogArray(0.0).exponent
    emax, s = _core.segment_norms(m, e, starts, sizes)
    wemax, ws = _numpy_norms(m, e, starts, sizes)
    assert np.array_equal(emax, wemax) and np.array_equal(s, ws)
    got = lg.LogArray.from_parts(s, emax).log10()
    want = [_mp_log10_norm(m[a:a + n], e[a:a + n]) for a, n in zip(starts, sizes)]
    # a sum of n squares: n + 2 roundings of the sum, one of the square root, one per square
    assert_log10_close(got, want, rel_units=2 * sizes.max() + 4, what=f"spread {spread}")
    assert got[-1] == -np.inf


def test_segments_need_not_cover_or_be_ordered() -> None:
    rng = np.random.default_rng(1)
    m, e = _planes(rng, 400, 900)
    starts, sizes = np.array([300, 0, 17]), np.array([100, 10, 1])
    emax, s = _core.segment_norms(m, e, starts, sizes)
    for k, (a, n) in enumerate(zip(starts, sizes)):
        e1, s1 = _core.segment_norms(m[a:a + n], e[a:a + n], np.array([0]), np.array([n]))
        assert emax[k] == e1[0] and s[k] == s1[0]


def test_layer_norms_bitwise_as_a_training_step_forms_them() -> None:
    net = lg.Network.build([6] + [20] * 40 + [3], activation="tanh", gain=0.25, seed=4)
    x, y = np.random.default_rng(0).standard_normal((5, 6)), np.zeros((5, 3))
    g = net.backward(x, y, loss="mse", input_grad=False)
    norms = layer_norms(g.params, net)
    rep = lg.train.sgd_step(net.copy(), x, y, lr=1e-3)
    assert np.array_equal(norms.mantissa, rep.grad_layer_norm.mantissa)
    assert np.array_equal(norms.exponent, rep.grad_layer_norm.exponent)
    m, e = np.ravel(g.params.mantissa), np.ravel(g.params.exponent)
    want = [_mp_log10_norm(m[a:a + n], e[a:a + n]) for a, n in zip(net.layout.starts, net.layout.sizes)]
    assert_log10_close(norms.log10(), want, rel_units=2 * 21 * 20 + 4, what="layer_norms")
    assert min(want) < -20  # gain 0.25: the early layers' gradients have vanished


def test_independent_of_thread_count() -> None:
    rng = np.random.default_rng(2)
    sizes = np.full(64, 5000)
    starts = np.arange(64) * 5000
    m, e = _planes(rng, int(sizes.sum()), 40)
    old = _core.num_threads()
    try:
        _core.set_num_threads(1)
        one = _core.segment_norms(m, e, starts, sizes)
        _core.set_num_threads(2)
        two = _core.segment_norms(m, e, starts, sizes)
    finally:
        _core.set_num_threads(old)
    assert np.array_equal(one[0], two[0]) and np.array_equal(one[1], two[1])


@pytest.mark.parametrize("starts, sizes, match", [
    ([0], [0], "segment 0"),
    ([5], [6], "outside"),
    ([-1], [2], "segment 0"),
    ([0, 2], [1], "one length"),
])
def test_bad_segments_are_refused(starts: list[int], sizes: list[int], match: str) -> None:
    m, e = np.full(10, 0.5), np.zeros(10, dtype=np.int64)
    with pytest.raises(ValueError, match=match):
        _core.segment_norms(m, e, np.array(starts), np.array(sizes))
    with pytest.raises(ValueError, match="one length"):
        _core.segment_norms(m, e[:9], np.array([0]), np.array([1]))
