"""Bad input gets a clear exception naming what is wrong; nothing the user owns changes."""

import numpy as np
import pytest

import loggrad as lg


@pytest.fixture
def net():
    rng = np.random.default_rng(0)
    return lg.Network([rng.standard_normal((5, 4)), rng.standard_normal((3, 5))], None, "tanh")


def test_mismatched_weight_shapes_name_the_layer():
    with pytest.raises(ValueError, match=r"weights\[1\] has shape \(3, 6\).*weights\[0\] of shape \(5, 4\)"):
        lg.Network([np.ones((5, 4)), np.ones((3, 6))])
    with pytest.raises(ValueError, match=r"biases\[0\] has shape \(4,\); expected \(5,\)"):
        lg.Network([np.ones((5, 4))], [np.ones(4)])
    with pytest.raises(ValueError, match=r"weights\[0\] must be 2-D"):
        lg.Network([np.ones(4)])
    with pytest.raises(ValueError, match="at least one unit"):
        lg.Network([np.ones((0, 4))])
    with pytest.raises(ValueError, match="got 2 bias vectors for 1 layers"):
        lg.Network([np.ones((5, 4))], [np.ones(5), np.ones(5)])


def test_empty_network():
    with pytest.raises(ValueError, match="at least one layer"):
        lg.Network([])


def test_activation_names():
    with pytest.raises(ValueError, match=r"unknown activation 'swish'; valid: identity, sigmoid, tanh, relu"):
        lg.Network([np.ones((2, 2))], None, "swish")
    with pytest.raises(ValueError, match="got 1 activations for 2 layers"):
        lg.Network([np.ones((2, 2))] * 2, None, ["relu"])
    with pytest.raises(TypeError, match="activation must be a name"):
        lg.Network([np.ones((2, 2))], None, [3])
    assert lg.Network([np.ones((2, 2))], None, "linear").activations == ["identity"]


def test_unknown_loss_and_precision(net):
    x = np.zeros((2, 4))
    with pytest.raises(ValueError, match="unknown loss 'l1'; valid: mse, sum, bce, cross_entropy"):
        net.backward(x, np.zeros((2, 3)), loss="l1")
    with pytest.raises(ValueError, match="unknown precision 'float32'; valid: extended, float64"):
        net.forward(x, precision="float32")


def test_non_finite_values(net):
    w = [np.ones((2, 2)), np.array([[1.0, np.nan]])]
    with pytest.raises(ValueError, match=r"weights\[1\] has a non-finite value \(nan\) at \[0, 1\]"):
        lg.Network(w)
    with pytest.raises(ValueError, match=r"x has a non-finite value \(inf\) at \[1, 2\]"):
        x = np.zeros((2, 4))
        x[1, 2] = np.inf
        net.forward(x)
    with pytest.raises(ValueError, match=r"y has a non-finite value"):
        net.backward(np.zeros((2, 4)), np.full((2, 3), np.nan))


def test_parameters_changed_to_nan_through_views_are_caught_by_the_engine(net):
    net.weights[1][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"weights\[1\] has a non-finite value \(nan\) at \[0, 0\]"):
        net.backward(np.zeros((1, 4)), np.zeros((1, 3)))


def test_input_and_target_shapes(net):
    with pytest.raises(ValueError, match=r"x has shape \(2, 5\); expected \(batch, 4\)"):
        net.forward(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="x is empty"):
        net.forward(np.zeros((0, 4)))
    with pytest.raises(ValueError, match=r"y has shape \(2, 4\); expected \(2, 3\)"):
        net.backward(np.zeros((2, 4)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="needs targets y"):
        net.backward(np.zeros((2, 4)))


def test_dtypes(net):
    with pytest.raises(TypeError, match="x must be numeric"):
        net.forward(np.array([["a"] * 4]))
    with pytest.raises(TypeError, match="x must be numeric"):
        net.forward(np.zeros((1, 4), dtype=complex))
    with pytest.raises(TypeError, match="x must be numeric"):
        net.forward(np.array([[object()] * 4]))
    with pytest.raises(TypeError, match="weights\\[0\\] must be numeric"):
        lg.Network([np.array([["a"]])])


def test_labels(net):
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"label 3 at row 1 is out of range for 3 classes \(0..2\)"):
        net.backward(x, np.array([0, 3, 1]), loss="cross_entropy")
    with pytest.raises(ValueError, match=r"label -1 at row 0"):
        net.backward(x, np.array([-1, 0, 1]), loss="cross_entropy")
    with pytest.raises(TypeError, match="integer class indices"):
        net.backward(x, np.array([0.5, 1, 2]), loss="cross_entropy")
    with pytest.raises(ValueError, match=r"labels have shape \(2,\); expected \(3,\)"):
        net.backward(x, np.array([0, 1]), loss="cross_entropy")
    g = net.backward(x, np.array([0.0, 1.0, 2.0]), loss="cross_entropy")  # integral floats accepted
    assert g.loss.shape == ()


def test_conversions_and_layouts_are_accepted(net):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 8))[:, ::2]  # non-contiguous
    assert not x.flags.c_contiguous
    ref = net.forward(np.ascontiguousarray(x)).to_numpy()
    np.testing.assert_array_equal(net.forward(x).to_numpy(), ref)
    np.testing.assert_array_equal(net.forward(x.astype(np.float32)).to_numpy(),
                                  net.forward(x.astype(np.float32).astype(np.float64)).to_numpy())
    xi = np.arange(8).reshape(2, 4) - 3
    np.testing.assert_array_equal(net.forward(xi).to_numpy(), net.forward(xi.astype(float)).to_numpy())
    ro = np.ascontiguousarray(x)
    ro.flags.writeable = False
    np.testing.assert_array_equal(net.forward(ro).to_numpy(), ref)
    # a single sample (n_in,) gives an output of shape (n_out,)
    assert net.forward(x[0]).shape == (3,)
    g = net.backward(x[0], np.zeros(3))
    assert g.input.shape == (4,) and g.output.shape == (3,)


def test_user_arrays_are_never_changed():
    rng = np.random.default_rng(2)
    ws = [rng.standard_normal((3, 3)) for _ in range(3)]
    keep = [w.copy() for w in ws]
    net = lg.Network(ws, None, "relu")
    net.weights[0][...] = 0.0  # the network's copy, not the user's
    for w, k in zip(ws, keep):
        np.testing.assert_array_equal(w, k)
    params = net.params.copy()
    with pytest.raises(ValueError):
        net.backward(np.zeros((2, 3)), np.zeros((2, 5)))
    np.testing.assert_array_equal(net.params, params)


def test_exponent_range_error_is_clear():
    # sigmoid'(z) with z ~ 1e400 is e^-1e400: beyond even the extended range
    net = lg.Network([np.full((1, 1), 1e200)] * 3, None, ["identity", "identity", "sigmoid"])
    out = net.forward(np.ones((1, 1)))  # forward needs no derivative: sigmoid(1e400) = 1
    assert float(out.to_numpy()[0, 0]) == 1.0
    with pytest.raises(lg.ExponentRangeError,
                       match="layer 2 activation derivatives: .*sigmoid at a pre-activation of \\+10\\^600"):
        net.backward(np.ones((1, 1)), loss="sum", on_underflow="raise")
    assert issubclass(lg.ExponentRangeError, OverflowError)
