"""Network's assignment of layer slices, the Gradients printout and shape messages."""

import numpy as np
import pytest

import loggrad as lg


def test_assigning_a_slice_of_layers_copies_every_array():
    rng = np.random.default_rng(0)
    net = lg.Network([rng.standard_normal((3, 3)) for _ in range(4)], None, "tanh")
    new = [rng.standard_normal((3, 3)) for _ in range(2)]
    nb = [rng.standard_normal(3) for _ in range(2)]
    net.weights[1:3] = new
    net.biases[1:3] = nb
    for got, want in zip(net.weights[1:3], new):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(net.biases[1:3], nb):
        np.testing.assert_array_equal(got, want)
    # the pass sees them: its output against a numpy forward pass
    x = rng.standard_normal((2, 3))
    a = x
    for w, b in zip(net.weights, net.biases):
        a = np.tanh(a @ np.asarray(w).T + np.asarray(b))
    np.testing.assert_allclose(net.forward(x, precision="float64"), a, rtol=1e-14, atol=1e-15)


def test_gradients_repr_names_flushes_only_when_there_are_some():
    net = lg.Network([np.eye(2)] * 3, None, "identity")
    g = net.backward(np.ones((1, 2)), np.zeros((1, 2)))
    assert repr(g) == f"Gradients(precision='extended', loss={g.loss!r}, layers=3)"


@pytest.mark.parametrize("second,want", [((4, 5), r"expected \(4, 3\) or any \(n_out, 3\)"),
                                          ((1, 2), r"expected \(1, 3\) or any \(n_out, 3\)")])
def test_mismatched_weights_message_gives_the_expected_shape(second, want):
    with pytest.raises(ValueError, match=rf"weights\[1\] has shape \({second[0]}, {second[1]}\); {want}"):
        lg.Network([np.ones((3, 2)), np.ones(second)])
