"""Property-based tests (hypothesis): random chains with extreme parameters.

Random depth (1-40), widths (1-12), batch (1-5), activations (per layer),
loss, and extreme values: weights up to +-1e300, exact zeros, subnormals,
inputs scaled so that pre-activations reach +-1e5 and far beyond float64.

Properties:
* every extended result is finite or an exact zero: no nan, log10 finite or
  -inf, sign 0 exactly where log10 is -inf;
* a value beyond loggrad's exponent range (|log2| > 2^61, from the mpmath
  reference) raises ExponentRangeError, and nothing raises when every value
  and every e^-|z| the formulas need is within 2^59;
* where the case is small enough for mpmath (depth * batch * width^2 <= 3000),
  the extended path agrees with tests/reference.py's mp_backward within its
  first-order error bound (the tolerance argument of tests/test_reference.py),
  and the float64 path agrees with the plain-formula bound wherever every
  value along the way is in float64's normal range (|log2| < 1000, read from
  the reference).

Profiles, chosen by the environment variable HYPOTHESIS_PROFILE:
  ci (default)  50 examples, no deadline: the file runs in well under a minute
  thorough      1000 examples, no deadline
e.g. ``HYPOTHESIS_PROFILE=thorough python -m pytest tests/test_properties.py``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import loggrad as lg  # noqa: E402
from reference import mismatches, mp_backward  # noqa: E402

settings.register_profile("ci", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

MP_BUDGET = 3000  # depth * batch * width^2 up to which mpmath runs
SMOOTH = {"sigmoid", "tanh", "elu", "selu", "softplus", "gelu", "silu"}

# value scales: ordinary, tiny, huge, subnormal, zero
_SCALES = [1.0, 1.0, 1.0, 1e-3, 1e3, 1e5, 1e-150, 1e150, 1e300, 1e-300, 5e-324, 0.0]


@st.composite
def cases(draw: Any) -> dict[str, Any]:
    depth = draw(st.integers(1, 40))
    max_width = draw(st.integers(1, 12))
    widths = draw(st.lists(st.integers(1, max_width), min_size=depth + 1, max_size=depth + 1))
    batch = draw(st.integers(1, 5))
    if draw(st.booleans()):
        acts: Any = draw(st.sampled_from(lg.ACTIVATIONS))
    else:
        acts = draw(st.lists(st.sampled_from(lg.ACTIVATIONS), min_size=depth, max_size=depth))
    loss = draw(st.sampled_from(lg.LOSSES))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    ws, bs = [], []
    for l in range(depth):
        w = rng.standard_normal((widths[l + 1], widths[l])) / np.sqrt(widths[l])
        w *= draw(st.sampled_from(_SCALES[:6] if draw(st.integers(0, 7)) else _SCALES))
        if draw(st.integers(0, 4)) == 0:  # some exact zeros and subnormals
            mask = rng.random(w.shape)
            w = np.where(mask < 0.2, 0.0, np.where(mask > 0.9, 5e-324 * rng.integers(1, 100, w.shape), w))
        ws.append(w)
        bs.append(rng.standard_normal(widths[l + 1]) * draw(st.sampled_from([0.0, 0.1, 1.0, 1e5])))
    x = rng.standard_normal((batch, widths[0])) * draw(st.sampled_from(_SCALES[:6] if draw(st.integers(0, 3)) else _SCALES))
    if loss == "cross_entropy":
        y: Any = rng.integers(0, widths[-1], batch)
    elif loss == "sum":
        y = None
    else:
        y = draw(st.sampled_from([rng.random((batch, widths[-1])),
                                  rng.integers(0, 2, (batch, widths[-1])).astype(float)]))
    return {"ws": ws, "bs": bs, "acts": acts, "loss": loss, "x": x, "y": y}


def _check_extended(g: lg.Gradients) -> None:
    for name, arr in [("loss", g.loss), ("output", g.output), ("input", g.input), ("params", g.params)]:
        l10 = np.asarray(arr.log10())
        sgn = np.asarray(arr.sign())
        assert not np.any(np.isnan(l10)), f"{name}: nan in log10"
        assert np.all(np.isfinite(l10) | (l10 == -np.inf)), f"{name}: +inf in log10"
        np.testing.assert_array_equal(sgn == 0, l10 == -np.inf, err_msg=f"{name}: sign 0 iff log10 -inf")
        assert np.all(np.isfinite(arr.mantissa)), f"{name}: non-finite mantissa"


def _mp_compare(g: lg.Gradients, ref: Any, depth: int) -> list[str]:
    bad = mismatches("loss", g.loss, ref.loss, ref.err_loss)
    bad += mismatches("output", g.output, ref.output, ref.err_output)
    bad += mismatches("dx", g.input, ref.input, ref.err_input)
    for l in range(depth):
        bad += mismatches(f"dW[{l}]", g.weights[l], ref.weights[l], ref.err_weights[l])
        bad += mismatches(f"db[{l}]", g.biases[l], ref.biases[l], ref.err_biases[l])
    return bad


def _needs_exp_of_huge(case: dict[str, Any], ref: Any) -> bool:
    """Whether the engine may need e^-|z| beyond its range (|z| >= 2^59) for a smooth unit or logit."""
    depth = len(case["ws"])
    acts = [case["acts"]] * depth if isinstance(case["acts"], str) else case["acts"]
    lim = 2.0**59
    for act, z in zip(acts, ref.pre_activations):
        if act in SMOOTH and any(abs(v) >= lim for v in z.ravel()):
            return True
    return case["loss"] in ("bce", "cross_entropy") and any(abs(v) >= lim / 2 for v in ref.output.ravel())


@given(cases())
def test_extended_path_properties(case: dict[str, Any]) -> None:
    depth = len(case["ws"])
    net = lg.Network(case["ws"], case["bs"], case["acts"])
    small = depth * len(case["x"]) * max(w.shape[0] * w.shape[1] for w in case["ws"]) <= MP_BUDGET
    ref = mp_backward(case["ws"], case["bs"], case["acts"], case["x"], case["y"], case["loss"]) if small else None
    try:
        g = net.backward(case["x"], case["y"], loss=case["loss"], on_underflow="raise")
    except lg.ExponentRangeError:
        event("ExponentRangeError")
        if ref is None:
            return  # no reference to say whether it was right: the message was clear, nothing returned
        assert ref.max_abs_log2 > 2.0**59 or _needs_exp_of_huge(case, ref), "ExponentRangeError for a case in range"
        return
    _check_extended(g)
    if ref is None:
        event("too large for mpmath")
        return
    assert ref.max_abs_log2 <= 2.0**61, "a value beyond the exponent range came back instead of an error"
    assert _mp_compare(g, ref, depth) == []
    event("extended vs mpmath")
    if ref.max_abs_log2 < 1000:
        event("float64 vs mpmath")  # everything along the way is a normal float64: the float64 path must agree
        ref64 = mp_backward(case["ws"], case["bs"], case["acts"], case["x"], case["y"], case["loss"], plain=True)
        g64 = net.backward(case["x"], case["y"], loss=case["loss"], precision="float64")
        assert _mp_compare(g64, ref64, depth) == []


@given(cases())
def test_forward_agrees_with_backward_output(case: dict[str, Any]) -> None:
    net = lg.Network(case["ws"], case["bs"], case["acts"])
    try:
        out = net.forward(case["x"])
    except lg.ExponentRangeError:
        return
    l10 = out.log10()
    assert not np.any(np.isnan(l10)) and not np.any(l10 == np.inf)
    try:
        g = net.backward(case["x"], case["y"], loss=case["loss"])
    except lg.ExponentRangeError:
        return  # derivatives can leave the range where values do not
    np.testing.assert_array_equal(g.output.mantissa, out.mantissa)
    np.testing.assert_array_equal(g.output.exponent, out.exponent)
