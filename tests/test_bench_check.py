"""`loggrad bench`'s correctness check (loggrad.bench.check_result) and its reference.

The reference is a numpy backprop whose delta is rescaled by powers of two after
each layer (renormalised_backward), so that it stays a reference where float64
underflows; check_result allows error_bound_units(cfg) units of roundoff. Here
the reference is compared with mpmath beyond float64's range, and the check is
shown to pass the engine's true result and to refuse results off by more than
the bound, in float64 range and beyond it, never returning silently.
"""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

import loggrad.bench as B
from loggrad import LogArray

from reference import mp_backward

DEEP = B.Config(depth=3000, width=2, batch=1, activation="tanh")  # dL/dW_0 ~ 10^-362
SHALLOW = B.Config(depth=20, width=4, batch=3, activation="tanh")  # everything in float64 range
DEAD = B.Config(depth=2000, width=4, batch=1, activation="relu")  # a closed layer: dL/dW_0 is exactly 0


def engine_result(cfg: B.Config, engine: str = "loggrad-extended") -> tuple[float, np.ndarray]:
    """What the engine's benchmark runner hands to check_result: the loss and dL/dW_0 as float64."""
    ws, bs, x, y = B.make_problem(cfg.depth, cfg.width, cfg.batch, cfg.activation)
    if engine == "numpy":
        return B.numpy_runner(ws, bs, x, y, cfg.activation)()
    return B.loggrad_runner(ws, bs, x, y, cfg.activation, engine.split("-")[1])()


def test_renormalised_reference_matches_mpmath_beyond_float64():
    ws, bs, x, y = B.make_problem(DEEP.depth, DEEP.width, DEEP.batch, DEEP.activation)
    loss, m, e = B.renormalised_backward(ws, bs, x, y, DEEP.activation)
    ref = mp_backward(ws, bs, DEEP.activation, x, y, "mse")
    want = ref.weights[0]
    top = max(abs(v) for v in want.ravel())
    assert mpmath.log10(top) < -320  # beyond float64: np.ldexp(m, e) is 0 here
    assert np.all(np.ldexp(m, e) == 0)
    got = [mpmath.ldexp(mpmath.mpf(float(v)), e) for v in m.ravel()]
    err = max(abs(g - w) for g, w in zip(got, want.ravel())) / top
    # the reference commits at most half of the bound that check_result allows (the other
    # half is the engine's)
    assert err <= B.error_bound_units(DEEP) / 2 * B.U
    assert abs(loss - ref.loss) <= B.error_bound_units(DEEP) / 2 * B.U * abs(ref.loss)


@pytest.mark.parametrize("cfg", [SHALLOW, DEEP, DEAD], ids=lambda c: c.label)
def test_check_result_passes_the_true_result(cfg):
    B.check_result("loggrad-extended", engine_result(cfg), None, cfg)
    B.check_result("loggrad-float64", engine_result(cfg, "loggrad-float64"), None, cfg)
    B.check_result("numpy", engine_result(cfg, "numpy"), None, cfg)


def test_check_result_refuses_a_wrong_loss_or_float64_gradient():
    loss, dw0 = engine_result(SHALLOW, "numpy")
    bound = B.error_bound_units(SHALLOW) * B.U
    with pytest.raises(AssertionError, match="loss"):
        B.check_result("numpy", (loss * (1 + 4 * bound), dw0), None, SHALLOW)
    bad = dw0.copy()
    bad[0, 0] += 4 * bound * np.abs(dw0).max()
    with pytest.raises(AssertionError, match="dL/dW_0 differs"):
        B.check_result("numpy", (loss, bad), None, SHALLOW)
    with pytest.raises(AssertionError, match="dL/dW_0 differs"):
        B.check_result("numpy", (loss, np.zeros_like(dw0)), None, SHALLOW)  # a flushed gradient
    with pytest.raises(AssertionError, match="dL/dW_0 differs"):
        B.check_result("numpy", (loss, np.full_like(dw0, np.nan)), None, SHALLOW)


def _planted(monkeypatch, cfg: B.Config, change) -> None:
    """Make check_result see loggrad-extended's dL/dW_0 changed by `change` (LogArray -> LogArray)."""
    true = B._extended_dw0

    def wrong(engine: str, c: B.Config) -> LogArray:
        return change(true(engine, c))

    monkeypatch.setattr(B, "_extended_dw0", wrong)


@pytest.mark.parametrize("cfg", [SHALLOW, DEEP], ids=lambda c: c.label)
def test_check_result_refuses_a_wrong_extended_gradient(monkeypatch, cfg):
    # a relative error four times the bound: the contract forbids it, in every range
    rel = 4 * B.error_bound_units(cfg) * B.U
    _planted(monkeypatch, cfg, lambda w: w * (1 + rel))
    with pytest.raises(AssertionError, match="extended dL/dW_0 differs"):
        B.check_result("loggrad-extended", engine_result(cfg), None, cfg)


@pytest.mark.parametrize("shift", [-3000, 3000])
def test_check_result_refuses_an_extended_gradient_out_by_a_huge_power_of_two(monkeypatch, shift):
    # 2^-3000 or 2^+3000 away: beyond float64 even as mantissas of the reference's scale
    _planted(monkeypatch, DEEP, lambda w: LogArray.from_parts(w.mantissa, w.exponent + shift))
    with pytest.raises(AssertionError, match="extended dL/dW_0 differs"):
        B.check_result("loggrad-extended", engine_result(DEEP), None, DEEP)


def test_check_result_refuses_a_nonzero_extended_gradient_where_the_reference_is_zero(monkeypatch):
    ws, bs, x, y = B.make_problem(DEAD.depth, DEAD.width, DEAD.batch, DEAD.activation)
    _, m, _ = B.renormalised_backward(ws, bs, x, y, DEAD.activation)
    assert np.all(m == 0)
    # far below float64, so that the float64 comparison cannot see it
    _planted(monkeypatch, DEAD, lambda w: LogArray.from_parts(np.full(w.shape, 0.5), np.full(w.shape, -5000)))
    with pytest.raises(AssertionError, match="extended dL/dW_0"):
        B.check_result("loggrad-extended", engine_result(DEAD), None, DEAD)
