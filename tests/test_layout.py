"""The one layout source (loggrad._layout): the engine's offsets, read by every module.

Checked against the parameter block itself (W_l and b_l of a network are views
of the block at the Layout's offsets) and against the engine's Architecture for
param_count, which the size checks use before an architecture exists.
"""

from __future__ import annotations

import numpy as np
import pytest

import loggrad as lg
from loggrad import _core
from loggrad._layout import param_count


@pytest.mark.parametrize("widths", [[3, 1], [1, 5, 2], [7, 7, 7, 7], [4, 30, 1, 9, 2]])
def test_layout_offsets_are_where_the_weights_live(widths: list[int]) -> None:
    net = lg.Network.build(widths, activation="tanh", seed=1)
    lay = net.layout
    p = net.params
    assert lay.offsets[0] == 0 and lay.offsets[-1] == p.size == param_count(widths)
    for l in range(net.depth):
        w0, b0 = lay.starts[l], lay.bias_offsets[l]
        assert np.array_equal(p[w0:b0], np.asarray(net.weights[l]).ravel())
        assert np.array_equal(p[b0:b0 + lay.n_out[l]], net.biases[l])
        assert lay.sizes[l] == lay.weight_sizes[l] + lay.n_out[l]
    starts, sizes = lay.segments
    assert np.array_equal(starts[0::2], lay.starts) and np.array_equal(starts[1::2], lay.bias_offsets)
    assert np.array_equal(sizes[0::2], lay.weight_sizes) and np.array_equal(sizes[1::2], lay.n_out)
    with pytest.raises(ValueError):
        lay.offsets[0] = 1  # read-only: no module can move another's view of the layout


def test_param_count_equals_the_engines_offsets() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        widths = [int(v) for v in rng.integers(1, 300, size=int(rng.integers(2, 12)))]
        arch = _core.Architecture(widths, ["relu"] * (len(widths) - 1))
        assert param_count(widths) == int(np.asarray(arch.offsets)[-1])
    assert param_count([10**12, 10**12]) == 10**24 + 10**12  # exact, beyond any integer dtype
