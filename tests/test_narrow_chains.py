"""Narrow deep chains of one row: the extended path runs them in runs of
layers (one kernel call for many layers, forward and back), falling back to
the layer-by-layer steps wherever a layer needs more (a row with terms far
below its largest, a value beyond the fast tanh's range or past float64's,
a residual layer, another width or activation).

Checked against mpmath, in and far out of float64's range, and against the
same row passed inside a larger batch, which takes the layer-by-layer steps:
rows are independent, so the output and the input gradient must agree to
the bit.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import loggrad as lg
from reference import mismatches, mp_backward, relative_bound

# The extreme cases flush values below loggrad's own range on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:.*fell below loggrad's exponent range:RuntimeWarning")


def _rng(*key: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def _chain(widths: list[int], acts: list[str], gain: float, key: object,
           residual: list[float | None] | None = None,
           positive: bool = False) -> tuple[list[np.ndarray], list[np.ndarray], lg.Network]:
    """A chain of these widths and activations; positive: every parameter > 0 (sums without cancellation)."""
    rng = _rng(key)
    ws = [rng.standard_normal((widths[l + 1], widths[l])) * gain / np.sqrt(widths[l]) for l in range(len(acts))]
    bs = [rng.standard_normal(widths[l + 1]) * 0.1 for l in range(len(acts))]
    if positive:
        ws, bs = [np.abs(w) for w in ws], [np.abs(b) for b in bs]
    return ws, bs, lg.Network(ws, bs, acts, residual=residual)


# Depths past a run's 16 layers; gains that keep the values in float64's
# range, and ones that take them far below it (tanh, relu: gradients) or far
# above it (identity: everything). Every parameter, input and dL/d(output)
# is positive (loss "sum"), so that no sum cancels and the error bound of
# the reference stays tight however deep the chain.
CASES = [
    ("tanh", 4, 40, 0.3),
    ("tanh", 4, 300, 3.0),
    ("tanh", 2, 60, 3.0),
    ("relu", 4, 40, 1.3),
    ("relu", 7, 200, 0.3),
    ("identity", 4, 150, 300.0),
    ("identity", 3, 200, 1e-3),
    ("identity", 5, 60, 1e200),
    ("tanh", 32, 20, 0.2),
]


@pytest.mark.parametrize(("act", "width", "depth", "gain"), CASES)
def test_one_row_chain_matches_mpmath(act: str, width: int, depth: int, gain: float) -> None:
    ws, bs, net = _chain([width] * (depth + 1), [act] * depth, gain, (act, width, depth, gain), positive=True)
    x = np.abs(_rng("x", act, width, depth).standard_normal((1, width)))
    ref = mp_backward(ws, bs, act, x, None, "sum", prec=200)
    g = net.backward(x, loss="sum")
    bad = mismatches("output", g.output, ref.output, ref.err_output)
    bad += mismatches("dx", g.input, ref.input, ref.err_input)
    for l in range(depth):
        bad += mismatches(f"dW[{l}]", g.weights[l], ref.weights[l], ref.err_weights[l])
        bad += mismatches(f"db[{l}]", g.biases[l], ref.biases[l], ref.err_biases[l])
    assert bad == []
    for l in (0, depth - 1):  # not vacuous: compared to a small part of their size
        assert relative_bound(ref.weights[l], ref.err_weights[l]) < 1e-9


def test_one_row_chain_leaves_float64_range() -> None:
    """The cases above do reach beyond float64 where they mean to."""
    for act, width, depth, gain, beyond in (("identity", 4, 150, 300.0, 308), ("tanh", 4, 300, 3.0, -308),
                                           ("identity", 3, 200, 1e-3, -308)):
        _, _, net = _chain([width] * (depth + 1), [act] * depth, gain, (act, width, depth, gain), positive=True)
        x = np.abs(_rng("x", act, width, depth).standard_normal((1, width)))
        top = net.backward(x, loss="sum").weights[0].log10().max()
        assert top > beyond if beyond > 0 else top < beyond


def _mixed(depth: int, key: object) -> tuple[list[int], list[str], list[float | None]]:
    """Widths, activations and residual scales that start and stop runs often."""
    rng = _rng(key)
    widths, acts, res = [4], [], []
    for _ in range(depth):
        w = widths[-1] if rng.random() < 0.8 else int(rng.choice([1, 2, 4, 5, 33, 64, 65]))
        widths.append(w)
        acts.append(str(rng.choice(["tanh", "tanh", "relu", "identity", "sigmoid", "elu"])))
        res.append(0.5 if w == widths[-2] and rng.random() < 0.1 else None)
    return widths, acts, res


@pytest.mark.parametrize("gain", [1.0, 0.02, 40.0, 1e100])
@pytest.mark.parametrize("kind", ["plain", "mixed", "vanishing"])
def test_one_row_equals_its_row_in_a_batch(kind: str, gain: float) -> None:
    depth = 240 if kind == "vanishing" else 120
    if kind == "mixed":
        widths, acts, res = _mixed(depth, (gain, "mixed"))
    else:
        widths, acts, res = [4] * (depth + 1), ["tanh"] * depth, None
    _, _, net = _chain(widths, acts, gain, (kind, gain), residual=res)
    if kind == "vanishing":  # no biases: with small weights, activations fall below float64's range
        net.biases[:] = [np.zeros(w) for w in widths[1:]]
    rng = _rng("rows", kind, gain)
    x = rng.standard_normal((3, widths[0]))
    x[1, 0] = 1e-250  # a term far below its row's largest: that row's product needs exact terms
    x[2] *= 1e200
    gout = rng.standard_normal((3, widths[-1]))
    if kind == "vanishing" and gain < 0.1:
        assert net.forward(x[:1]).log10().max() < -308
    for checkpoint in (None, 7):
        batch = net.backward(x, grad_output=gout, checkpoint=checkpoint)
        for i in range(3):
            one = net.backward(x[i : i + 1], grad_output=gout[i : i + 1], checkpoint=checkpoint)
            for name, got, want in (("output", one.output, batch.output), ("dx", one.input, batch.input)):
                np.testing.assert_array_equal(got.mantissa[0], want.mantissa[i], err_msg=f"{name} row {i}")
                np.testing.assert_array_equal(got.exponent[0], want.exponent[i], err_msg=f"{name} row {i}")


def test_one_row_flushes_as_a_batch_row() -> None:
    """Values below even loggrad's range flush alike in a run and layer by layer."""
    depth = 40
    _, _, net = _chain([4] * (depth + 1), ["identity"] * 20 + ["tanh"] * 20, 1.0, "flush")
    w = net.weights[25].copy()
    w[:, 0] *= 1e300  # a product past float64's range in the chain
    net.weights[25] = w
    x = _rng("flush x").standard_normal((2, 4))
    gout = np.ones((2, 4))
    big = lg.LogArray.from_parts(np.full((2, 4), 0.75), np.full((2, 4), -(2**60) + 3000))
    for g in (gout, big):
        both = net.backward(x, grad_output=g, checkpoint=None)
        assert both.flushed > 0  # the case flushes
        for i in range(2):
            gi = g[i : i + 1] if isinstance(g, np.ndarray) else lg.LogArray.from_parts(
                g.mantissa[i : i + 1], g.exponent[i : i + 1])
            one = net.backward(x[i : i + 1], grad_output=gi)
            np.testing.assert_array_equal(one.input.mantissa[0], both.input.mantissa[i])
            np.testing.assert_array_equal(one.input.exponent[0], both.input.exponent[i])
