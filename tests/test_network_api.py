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


def test_flush_count_is_zero_where_nothing_can_flush():
    net = lg.Network([np.eye(2) * 0.5] * 3, None, "sigmoid")
    x = np.ones((2, 2))
    for kwargs in ({"precision": "float64"}, {"on_underflow": "raise"}, {}):
        out, flushed = net.forward(x, return_flushed=True, **kwargs)
        assert flushed == 0, kwargs


def test_network_fit_runs_ten_epochs_by_default():
    net = lg.Network.build([3, 4, 2], activation="tanh", seed=0)
    rng = np.random.default_rng(1)
    h = net.fit(rng.standard_normal((6, 3)), rng.standard_normal((6, 2)), 0.01)
    assert len(h.loss) == 10 and len(h.grad_norm_log10) == 10


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


@pytest.mark.parametrize("precision,article", [("extended", "an"), ("float64", "a")])
def test_memory_error_message_names_the_pass_and_the_cheaper_ways(monkeypatch, precision, article):
    import loggrad.network as lgn

    net = lg.Network([np.eye(8)] * 200, None, "tanh")
    batch = 64
    need = net.pass_bytes(batch, precision)
    auto = net.pass_bytes(batch, precision, checkpoint="auto")
    few = net.pass_bytes(batch, precision, checkpoint="auto", layers=[])
    assert few < auto < need < 2**28  # printed in MiB
    monkeypatch.setattr(lgn, "_SMALL_PASS_BYTES", 0)  # check this small pass too
    monkeypatch.setattr(lgn, "_available_bytes", lambda: few - 1)
    x = np.ones((batch, 8))
    with pytest.raises(MemoryError) as info:
        net.backward(x, np.zeros((batch, 8)), precision=precision)
    msg = str(info.value)
    assert msg.startswith(f"{article} {precision} backward pass of this network (200 layers, 14,400 parameters) "
                          f"for a batch of 64 needs {_mib(need)}, but only {_mib(few - 1)} of memory is available")
    assert f"backward(..., checkpoint='auto') would need {_mib(auto)}" in msg
    assert f"computes only the chosen layers' gradients, from {_mib(few)}" in msg
    assert msg.endswith("; or use a smaller batch")
    # a forward pass has no backward alternatives to offer
    monkeypatch.setattr(lgn, "_available_bytes", lambda: 1)
    with pytest.raises(MemoryError) as info:
        net.forward(x, precision=precision)
    assert "checkpoint" not in str(info.value) and "layers=" not in str(info.value)


def test_flush_warnings_point_at_the_callers_line():
    # gelu(-2e9) = -2e9 Phi(-2e9), about e^-2e18: below even loggrad's exponent range, flushed
    net = lg.Network([np.array([[1e9]])], None, "gelu")
    x = np.array([[-2.0]])
    for call in (lambda: net.forward(x), lambda: net.backward(x, np.zeros((1, 1)))):
        with pytest.warns(RuntimeWarning) as rec:
            call()
        assert rec[0].filename == __file__, rec[0].filename


def test_memory_check_counts_only_the_selected_layers_gradients(monkeypatch):
    import loggrad.network as lgn

    net = lg.Network([np.eye(8)] * 200, None, "tanh")
    need = net.pass_bytes(64, layers=[0])
    assert need < net.pass_bytes(64)
    monkeypatch.setattr(lgn, "_SMALL_PASS_BYTES", 0)
    monkeypatch.setattr(lgn, "_available_bytes", lambda: need - 1)
    with pytest.raises(MemoryError, match=f"needs {_mib(need)}, but only {_mib(need - 1)}"):
        net.backward(np.ones((64, 8)), np.zeros((64, 8)), layers=[0])
    monkeypatch.setattr(lgn, "_available_bytes", lambda: need)
    net.backward(np.ones((64, 8)), np.zeros((64, 8)), layers=[0])  # exactly enough: it runs


@pytest.mark.parametrize("widths,batch", [
    ([1000, 1000], 1),          # one wide layer: the engine's workspace is most of the pass
    ([3, 700, 2], 1),           # uneven widths
    ([8] * 60, 300),            # deep and narrow: the stored activations are
    ([40, 40, 40], 2000),       # a large batch: the chain buffers are
])
@pytest.mark.parametrize("precision", ["extended", "float64"])
def test_every_pass_above_the_small_pass_threshold_is_checked(monkeypatch, widths, batch, precision):
    # the quick bound that lets small passes skip the memory check must never fall below
    # what the pass needs: with the threshold just under a pass's need and the memory just
    # under it too, every kind of pass must be refused before it runs
    import loggrad.network as lgn

    net = lg.Network.build(widths, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, widths[0]))
    y = np.zeros((batch, widths[-1]))
    strided = np.repeat(x, 2, axis=1)[:, ::2]  # not contiguous: the pass copies it (8 bytes a value)
    cases = [
        (lambda: net.forward(x, precision=precision), net.pass_bytes(batch, precision, backward=False)),
        (lambda: net.backward(x, y, precision=precision), net.pass_bytes(batch, precision)),
        (lambda: net.backward(x, y, precision=precision, input_grad=False),
         net.pass_bytes(batch, precision, input_grad=False)),
        (lambda: net.backward(x, y, precision=precision, layers=[0]), net.pass_bytes(batch, precision, layers=[0])),
        (lambda: net.backward(x, y, precision=precision, checkpoint="auto"),
         net.pass_bytes(batch, precision, checkpoint="auto")),
        (lambda: net.backward(strided, y, precision=precision), net.pass_bytes(batch, precision) + 8 * x.size),
    ]
    for i, (call, need) in enumerate(cases):
        monkeypatch.setattr(lgn, "_SMALL_PASS_BYTES", need - 1)
        monkeypatch.setattr(lgn, "_available_bytes", lambda: need - 1)
        with pytest.raises(MemoryError, match=f"needs {_mib(need)}"):
            call()
        monkeypatch.setattr(lgn, "_available_bytes", lambda: need)  # exactly enough: it runs
        call()
