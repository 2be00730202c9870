"""loggrad as a backend: upstream gradients, reused result buffers, pickling, Ctrl-C.

References: torch float64 autograd with the same upstream gradient (in range),
mpmath (unbounded exponent) beyond float64's range, and exact power-of-two
scaling identities of the extended path.
"""

from __future__ import annotations

import copy
import multiprocessing
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import loggrad as lg
from loggrad import LogArray

from reference import mismatches, mp_backward, np_backward

ACTS = ["tanh", "sigmoid", "relu", "gelu", "identity"]


def _net(widths, act, seed=0):
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((o, i)) / np.sqrt(i) for i, o in zip(widths[:-1], widths[1:])]
    bs = [0.1 * rng.standard_normal(o) for o in widths[1:]]
    return lg.Network(ws, bs, act)


def _f64(v):
    return v.to_numpy() if isinstance(v, LogArray) else np.asarray(v)


# -- grad_output against torch autograd (in range) ---------------------------------------
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("precision", ["float64", "extended"])
@pytest.mark.parametrize("checkpoint", [None, 2])
def test_grad_output_matches_torch(act, precision, checkpoint):
    torch = pytest.importorskip("torch")
    net = _net([5, 7, 6, 6, 3], act, seed=1)
    rng = np.random.default_rng(2)
    x, G = rng.standard_normal((4, 5)), rng.standard_normal((4, 3))
    g = net.backward(x, grad_output=G, precision=precision, checkpoint=checkpoint)
    assert g.loss is None
    model = net.to_torch()
    xt = torch.tensor(x, requires_grad=True)
    out = model(xt)
    out.backward(torch.tensor(G))
    tp = np.concatenate([p.grad.numpy().ravel() for p in model.parameters()])
    scale = np.abs(tp).max()
    np.testing.assert_allclose(_f64(g.params), tp, rtol=1e-12, atol=1e-14 * scale)
    np.testing.assert_allclose(_f64(g.input), xt.grad.numpy(), rtol=1e-12, atol=1e-14 * np.abs(xt.grad.numpy()).max())
    np.testing.assert_allclose(_f64(g.output), out.detach().numpy(), rtol=1e-13, atol=1e-15)


def test_grad_output_equals_sum_loss_when_ones():
    # dL/d(out) = 1 is the "sum" loss: the gradients must be bitwise the same.
    net = _net([4, 6, 6, 2], "tanh")
    x = np.random.default_rng(0).standard_normal((3, 4))
    for precision in ["float64", "extended"]:
        a = net.backward(x, loss="sum", precision=precision)
        b = net.backward(x, grad_output=np.ones((3, 2)), precision=precision)
        if precision == "extended":
            assert np.array_equal(a.params.mantissa, b.params.mantissa)
            assert np.array_equal(a.params.exponent, b.params.exponent)
        else:
            assert np.array_equal(a.params, b.params)


def test_grad_output_numpy_reference_with_layers_and_no_input_grad():
    net = _net([3, 5, 5, 5, 2], "sigmoid", seed=4)
    rng = np.random.default_rng(5)
    x, G = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    full = net.backward(x, grad_output=G, precision="float64")
    # the numpy backprop of L = sum(G * out) ("sum" loss through one more identity layer per row is the
    # same thing); here: dL/dW_l = delta_l^T a_l with delta_top = G * f'(z_top)
    a, zs, acts = x, [], [x]
    for W, b in zip(net.weights, net.biases):
        z = a @ W.T + b
        zs.append(z)
        a = 1 / (1 + np.exp(-z))
        acts.append(a)
    g = G
    for l in reversed(range(net.depth)):
        s = 1 / (1 + np.exp(-zs[l]))
        delta = g * s * (1 - s)
        np.testing.assert_allclose(full.weights[l], delta.T @ acts[l], rtol=1e-12, atol=1e-16)
        np.testing.assert_allclose(full.biases[l], delta.sum(0), rtol=1e-12, atol=1e-16)
        g = delta @ net.weights[l]
    np.testing.assert_allclose(full.input, g, rtol=1e-12, atol=1e-16)
    sel = net.backward(x, grad_output=G, precision="float64", layers=[1, 3], input_grad=False)
    assert sel.input is None
    for l in (1, 3):
        assert np.array_equal(sel.weights[l], full.weights[l])
        assert np.array_equal(sel.biases[l], full.biases[l])


def test_grad_output_single_sample():
    net = _net([4, 5, 3], "tanh")
    x, G = np.arange(4.0) / 4, np.array([1.0, -2.0, 0.5])
    a = net.backward(x, grad_output=G, precision="float64")
    b = net.backward(x[None], grad_output=G[None], precision="float64")
    assert a.input.shape == (4,) and np.array_equal(a.input, b.input[0])
    assert np.array_equal(a.params, b.params)


# -- beyond float64 ---------------------------------------------------------------------
def test_grad_output_beyond_float64_against_mpmath():
    # L = sum_j G_j out_j for one sample is the "sum" loss of the network with
    # one more layer W = G (1 x n_out): mpmath gives its exact gradients.
    depth, width = 1200, 4
    rng = np.random.default_rng(7)
    ws = [rng.standard_normal((width, width)) for _ in range(depth)]
    bs = [rng.standard_normal(width) * 0.1 for _ in range(depth)]
    net = lg.Network(ws, bs, "sigmoid")
    x = rng.standard_normal((1, width))
    G = rng.standard_normal((1, width))
    g = net.backward(x, grad_output=G)
    assert float(g.weights[0].log10().max()) < -330  # far beyond float64: the test is about range
    ref = mp_backward(ws + [G], bs + [np.zeros(1)], ["sigmoid"] * depth + ["identity"], x, loss="sum")
    for l in (0, 1, depth // 2, depth - 1):
        assert not mismatches(f"dW[{l}]", g.weights[l], ref.weights[l], ref.err_weights[l])
        assert not mismatches(f"db[{l}]", g.biases[l], ref.biases[l], ref.err_biases[l])
    assert not mismatches("dx", g.input, ref.input, ref.err_input)


def test_extended_grad_output_scales_by_powers_of_two_exactly():
    # Multiplying dL/d(out) by 2^k multiplies every gradient by 2^k: on the
    # extended path the mantissas are unchanged and the exponents move by k,
    # also where the values leave float64's range.
    net = _net([4, 6, 6, 3], "tanh")
    rng = np.random.default_rng(3)
    x, G = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    base = net.backward(x, grad_output=G)
    Gl = LogArray(G)
    for k in (-5000, -60, 3, 4000):
        shifted = LogArray.from_parts(Gl.mantissa, Gl.exponent + k)
        g = net.backward(x, grad_output=shifted)
        nz = base.params.mantissa != 0
        assert np.array_equal(g.params.mantissa, base.params.mantissa)
        assert np.array_equal(g.params.exponent[nz], base.params.exponent[nz] + k)
        assert np.array_equal(g.input.mantissa, base.input.mantissa)
    # on the float64 path a LogArray is rounded to float64 first: 2^-5000 G is 0
    g64 = net.backward(x, grad_output=LogArray.from_parts(Gl.mantissa, Gl.exponent - 5000), precision="float64")
    assert np.all(g64.params == 0)


def test_grad_output_errors_leave_nothing_changed():
    net = _net([3, 4, 2], "tanh")
    before = net.params.copy()
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="either grad_output"):
        net.backward(x, np.zeros((2, 2)), grad_output=np.ones((2, 2)))
    with pytest.raises(ValueError, match="either grad_output"):
        net.backward(x, loss="sum", grad_output=np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"grad_output has shape \(2, 3\); expected \(2, 2\)"):
        net.backward(x, grad_output=np.ones((2, 3)))
    with pytest.raises(ValueError, match="grad_output has a non-finite value"):
        net.backward(x, grad_output=np.array([[1.0, np.nan], [0, 0]]))
    with pytest.raises(TypeError, match="grad_output must be numeric"):
        net.backward(x, grad_output=np.array([["a", "b"], ["c", "d"]]))
    assert np.array_equal(net.params, before)


# -- out= ---------------------------------------------------------------------------------
@pytest.mark.parametrize("precision", ["float64", "extended"])
def test_out_reuses_the_arrays_and_gives_the_same_bits(precision):
    net = _net([4, 8, 8, 2], "tanh")
    rng = np.random.default_rng(0)
    x1, x2, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), rng.standard_normal((3, 2))
    g1 = net.backward(x1, y, precision=precision)
    fresh = net.backward(x2, y, precision=precision)
    g2 = net.backward(x2, y, precision=precision, out=g1)
    if precision == "extended":
        assert g2.params is g1.params
        assert np.array_equal(g2.params.mantissa, fresh.params.mantissa)
        assert np.array_equal(g2.params.exponent, fresh.params.exponent)
        assert np.array_equal(g1.weights[1].mantissa, fresh.weights[1].mantissa)  # the earlier views see it
    else:
        assert np.shares_memory(g2.params, g1.params)
        assert np.array_equal(g2.params, fresh.params)
        assert np.array_equal(g1.weights[1], fresh.weights[1])


def test_out_must_match():
    net = _net([4, 8, 2], "tanh")
    x, y = np.ones((2, 4)), np.zeros((2, 2))
    g = net.backward(x, y)
    with pytest.raises(ValueError, match="precision='extended'"):
        net.backward(x, y, precision="float64", out=g)
    with pytest.raises(ValueError, match="layers"):
        net.backward(x, y, layers=[0], out=g)
    with pytest.raises(TypeError, match="out must be the Gradients"):
        net.backward(x, y, out=np.zeros(net.param_count))
    other = _net([4, 9, 2], "tanh").backward(x, y)
    with pytest.raises(ValueError, match="does not match"):
        net.backward(x, y, out=other)


# -- pickling -----------------------------------------------------------------------------
def _bits_equal(a, b):
    return a.widths == b.widths and a.activations == b.activations and \
        np.array_equal(a.params.view(np.uint64), b.params.view(np.uint64))


def test_pickle_and_deepcopy_are_bitwise():
    net = _net([3, 5, 5, 2], ["tanh", "relu", "gelu"])
    net.params[0] = -0.0  # the sign of zero too
    for proto in range(2, pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(net, protocol=proto))
        assert _bits_equal(back, net)
        back.params[1] += 1  # independent
        assert not _bits_equal(back, net)
    dc = copy.deepcopy(net)
    assert _bits_equal(dc, net) and not np.shares_memory(dc.params, net.params)


def _grads_in_child(net):
    g = net.backward(np.ones((2, net.n_in)), np.zeros((2, net.n_out))).params
    return g.mantissa.copy(), g.exponent.copy()


def test_multiprocessing_round_trip():
    net = lg.Network.build([4] * 1001, activation="sigmoid", init="normal", seed=0)
    m, e = _grads_in_child(net)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        cm, ce = pool.map(_grads_in_child, [net])[0]
    assert np.array_equal(m, cm) and np.array_equal(e, ce)
    first = net.backward(np.ones((2, 4)), np.zeros((2, 4))).weights[0]
    assert float(first.log10().max()) < -300  # gradients beyond float64 survive the trip


def test_gradients_pickle():
    net = _net([3, 4, 2], "tanh")
    g = net.backward(np.ones((2, 3)), np.zeros((2, 2)))
    back = pickle.loads(pickle.dumps(g))
    assert np.array_equal(back.params.mantissa, g.params.mantissa)
    assert np.array_equal(back.weights[1].exponent, g.weights[1].exponent)


# -- layers= with any slice ---------------------------------------------------------------
def test_reversed_slice_selects_layers():
    net = _net([3, 4, 4, 2], "tanh")
    x, y = np.ones((2, 3)), np.zeros((2, 2))
    a = net.backward(x, y, layers=slice(None, None, -1))
    assert a.layers == (0, 1, 2)
    assert net.backward(x, y, layers=slice(2, 0, -1)).layers == (1, 2)


# -- Ctrl-C ---------------------------------------------------------------------------------
_LONG_PASS = textwrap.dedent("""
    import signal, sys, time, numpy as np, loggrad as lg
    # Python's default handler, as in an interactive session: a process started from a
    # background job inherits SIGINT ignored, and Python then installs none
    signal.signal(signal.SIGINT, signal.default_int_handler)
    kind = sys.argv[1]
    net = lg.Network.build([32] * 20001, activation="tanh", seed=0)  # a pass takes seconds
    x, y = np.ones((256, 32)), np.zeros((256, 32))
    small = lg.Network.build([3, 4, 2], seed=1)
    ref = small.backward(np.ones((2, 3)), np.zeros((2, 2))).params.mantissa.copy()
    before = net.params.copy()
    print("ready", flush=True)
    t = time.perf_counter()
    try:
        if kind == "backward":
            net.backward(x, y)
        else:
            for _ in range(100):
                net.forward(x, precision="float64")
        print("finished", flush=True)
    except KeyboardInterrupt:
        # the network is as before, and the next pass runs normally (the stop does not stick)
        again = small.backward(np.ones((2, 3)), np.zeros((2, 2))).params.mantissa
        print("interrupted", time.perf_counter() - t, np.array_equal(before, net.params),
              np.array_equal(ref, again), flush=True)
""")


@pytest.mark.parametrize("kind", ["backward", "forward"])
def test_ctrl_c_stops_a_long_pass(tmp_path, kind):
    script = tmp_path / "long_pass.py"
    script.write_text(_LONG_PASS)
    p = subprocess.Popen([sys.executable, str(script), kind], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        time.sleep(1.0)
        sent = time.perf_counter()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        took = time.perf_counter() - sent
    finally:
        p.kill()
    words = out.split()
    assert words and words[0] == "interrupted", (out, err)
    assert words[2:] == ["True", "True"], out
    # the whole pass takes many seconds; the process stopped and exited within a second of the signal
    assert took < 1.0, took


# -- the tape: forward now, backward later (what the torch Module uses) ---------------------
@pytest.mark.parametrize("precision", ["float64", "extended"])
@pytest.mark.parametrize("checkpoint", [None, 3, "auto"])
@pytest.mark.parametrize("batch", [1, 70])  # 70 rows: several row blocks
def test_tape_gives_the_bits_of_one_backward_call(precision, checkpoint, batch):
    net = lg.Network.build([8] * 12 + [3], activation=["tanh", "relu", "gelu"] * 4, seed=3)
    rng = np.random.default_rng(1)
    x, G = rng.standard_normal((batch, 8)), rng.standard_normal((batch, 3))
    ref = net.backward(x, grad_output=G, precision=precision, checkpoint=checkpoint)
    out, tape = net._forward_tape(net.params, x, precision, checkpoint)
    assert tape.ready and tape.batch == batch
    np.testing.assert_array_equal(_f64(out), _f64(ref.output))
    g = net._backward_tape(net.params, tape, G, precision)
    assert not tape.ready  # consumed
    for a, b in ((g.params, ref.params), (g.input, ref.input)):
        if precision == "extended":
            assert np.array_equal(a.mantissa, b.mantissa) and np.array_equal(a.exponent, b.exponent)
        else:
            assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="holds no forward pass"):
        net._backward_tape(net.params, tape, G, precision)


def test_tape_refuses_another_precision_or_network():
    net = lg.Network.build([4, 5, 2], seed=0)
    x, G = np.ones((3, 4)), np.ones((3, 2))
    _, tape = net._forward_tape(net.params, x, "float64")
    with pytest.raises(ValueError, match="holds a float64 forward pass"):
        net._backward_tape(net.params, tape, G, "extended")
    other = lg.Network.build([4, 5, 5, 2], seed=0)
    _, tape = net._forward_tape(net.params, x, "float64")
    with pytest.raises(ValueError, match="another network|parameter block"):
        other._backward_tape(other.params, tape, G, "float64")
    with pytest.raises(ValueError, match=r"grad_output has shape \(2, 2\)"):
        net._backward_tape(net.params, tape, np.ones((2, 2)), "float64")
    same_depth = lg.Network.build([4, 6, 2], seed=0)  # another layout of the store: refused, never read
    _, tape = net._forward_tape(net.params, x, "float64")
    with pytest.raises(ValueError, match="another network"):
        same_depth._backward_tape(same_depth.params, tape, G, "float64")


@pytest.mark.parametrize("precision", ["float64", "extended"])
@pytest.mark.parametrize("on_underflow", ["flush", "raise"])
def test_tape_gradients_match_backward_in_every_field(precision, on_underflow):
    # not only the arrays: the fields a caller reads (flushed, loss, layers, per-layer views)
    net = lg.Network.build([6, 7, 7, 3], activation="tanh", seed=5)
    rng = np.random.default_rng(2)
    x, G = rng.standard_normal((4, 6)), rng.standard_normal((4, 3))
    for layers in (None, [0, 2]):
        ref = net.backward(x, grad_output=G, precision=precision, layers=layers, on_underflow=on_underflow)
        _, tape = net._forward_tape(net.params, x, precision, on_underflow=on_underflow)
        g = net._backward_tape(net.params, tape, G, precision, layers, on_underflow=on_underflow)
        assert g.flushed == ref.flushed == 0
        assert g.loss is None and ref.loss is None
        assert g.layers == ref.layers and g.precision == ref.precision == precision
        for l in (range(3) if layers is None else layers):
            np.testing.assert_array_equal(_f64(g.weights[l]), _f64(ref.weights[l]))
            np.testing.assert_array_equal(_f64(g.biases[l]), _f64(ref.biases[l]))


def test_a_batch_of_one_row_takes_grad_output_of_the_outputs_shape():
    # x of shape (1, n_in) has output (1, n_out): a 1-D grad_output is the shape of a
    # single-sample call's output, not of this one, and is refused (as a LogArray is)
    net = lg.Network.build([5, 4, 3], seed=1)
    x2, x1 = np.ones((1, 5)), np.ones(5)
    g1 = np.array([1.0, -2.0, 0.5])
    for G in (g1, LogArray(g1)):
        with pytest.raises(ValueError, match=r"grad_output has shape \(3,\); expected \(1, 3\)"):
            net.backward(x2, grad_output=G)
        _, tape = net._forward_tape(net.params, x2, "extended")
        with pytest.raises(ValueError, match=r"grad_output has shape \(3,\); expected \(1, 3\)"):
            net._backward_tape(net.params, tape, G, "extended")
    # the single-sample call takes it, and agrees with the one-row batch given (1, 3)
    one = net.backward(x1, grad_output=g1, precision="float64")
    two = net.backward(x2, grad_output=g1[None, :], precision="float64")
    assert one.input.shape == (5,) and two.input.shape == (1, 5)
    np.testing.assert_array_equal(one.params, two.params)
    np.testing.assert_array_equal(one.input, two.input[0])


def test_torch_adapter_flush_warnings_are_attributed_to_loggrad():
    # the warning's frame is loggrad's adapter, not torch's autograd machinery, so that
    # warnings.filterwarnings(..., module="loggrad") reaches it on every path of the adapter
    torch = pytest.importorskip("torch")
    import warnings

    from loggrad.torch import Module

    # gelu(-2e9) = -2e9 Phi(-2e9), about e^-2e18: below loggrad's range, flushed in the forward pass
    net = lg.Network([np.array([[1e9]])], None, "gelu")
    m = Module(net, precision="extended")
    x = torch.tensor([[-2.0]], dtype=torch.float64, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="fell below") as rec:
        out = m(x)
    assert all(r.filename.endswith(("loggrad/torch.py", "loggrad\\torch.py")) for r in rec), [r.filename for r in rec]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out.sum().backward(retain_graph=True)  # the tape's backward: the forward half counted the flush
    # a second backward through the graph runs the whole pass again, and flushes again
    with pytest.warns(RuntimeWarning, match="fell below") as rec:
        out.sum().backward(retain_graph=True)
    assert all(r.filename.endswith(("loggrad/torch.py", "loggrad\\torch.py")) for r in rec), [r.filename for r in rec]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*fell below", module=r"loggrad\.")
        out.sum().backward(retain_graph=True)  # filtered by module: no error
    # a net whose forward pass stays in range and whose backward pass flushes: gelu'(-1e9) is about
    # 2^-(7.2e17), in range, and two of them in one product are not
    net = lg.Network([np.array([[1e9]]), np.array([[1.0]])], [np.zeros(1), np.array([-1e9])], "gelu")
    m = Module(net, precision="extended")
    x = torch.tensor([[-1.0]], dtype=torch.float64, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = m(x)
    for path in ("the tape", "the whole pass again"):
        with pytest.warns(RuntimeWarning, match="fell below") as rec:
            out.sum().backward(retain_graph=True)
        assert m.last_gradients.flushed > 0
        assert all(r.filename.endswith(("loggrad/torch.py", "loggrad\\torch.py")) for r in rec), \
            (path, [r.filename for r in rec])
