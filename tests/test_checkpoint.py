"""Checkpointed backward passes (recomputing activations) give bitwise the same results."""

import numpy as np
import pytest

import loggrad as lg


def same(a, b, precision):
    if precision == "extended":
        return np.array_equal(a.mantissa, b.mantissa) and np.array_equal(a.exponent, b.exponent)
    return np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("precision", lg.PRECISIONS)
@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu", "gelu"])
def test_checkpointing_is_bitwise_identical(act, precision):
    rng = np.random.default_rng(11)
    widths = [5] + list(rng.integers(2, 9, 60)) + [3]
    ws = [rng.standard_normal((widths[i + 1], widths[i])) for i in range(len(widths) - 1)]
    net = lg.Network(ws, [rng.standard_normal(w) * 0.1 for w in widths[1:]], act)
    x = rng.standard_normal((4, 5))
    y = rng.standard_normal((4, 3))
    ref = net.backward(x, y, precision=precision)
    for cp in ["auto", 1, 2, 7, 59, 61, 1000]:
        g = net.backward(x, y, precision=precision, checkpoint=cp)
        for field in ("loss", "output", "params", "input"):
            assert same(getattr(g, field), getattr(ref, field), precision), (cp, field)


def test_checkpoint_argument_is_checked():
    net = lg.Network([np.eye(2)] * 3)
    for bad in [0, -1, "sqrt", 1.5, True]:
        with pytest.raises(ValueError, match="checkpoint must be None, 'auto' or a positive segment length"):
            net.backward(np.ones((1, 2)), loss="sum", checkpoint=bad)


def test_deep_chain_with_checkpoints_far_below_float64():
    net = lg.Network([0.5 * np.eye(4)] * 20000, None, "identity")
    g = net.backward(np.ones((2, 4)), loss="sum", checkpoint="auto")
    # dL/dW_0 = 0.5^19999 * (sum over batch of x) : log10 = 19999 log10(0.5) + log10(2)
    np.testing.assert_allclose(g.weights[0].log10()[0, 0], 19999 * np.log10(0.5) + np.log10(2), rtol=1e-13)
