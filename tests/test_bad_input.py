"""Bad input: a clear exception naming what is wrong, and the network bitwise unchanged.

Every test snapshots the parameter block's bits before the bad call and
compares them after it. Accepted-but-unusual layouts (non-contiguous, Fortran
order, big-endian, read-only, other numeric dtypes) must give results bitwise
equal to the C-contiguous float64 call, and those are checked against a plain
numpy forward pass.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import loggrad as lg

N_IN, N_HID, N_OUT = 4, 5, 3


@pytest.fixture
def net():
    rng = np.random.default_rng(0)
    return lg.Network(
        [rng.standard_normal((N_HID, N_IN)), rng.standard_normal((N_OUT, N_HID))],
        [rng.standard_normal(N_HID), rng.standard_normal(N_OUT)],
        "tanh",
    )


def bits(net):
    return net.params.view(np.uint64).copy()


def assert_unchanged(net, before):
    np.testing.assert_array_equal(net.params.view(np.uint64), before)
    assert net.params.shape == before.shape and net.params.dtype == np.float64


def numpy_forward(net, x):
    a = np.asarray(x, dtype=np.float64)
    for w, b in zip(net.weights, net.biases):
        a = np.tanh(a @ w.T + b)
    return a


def same(a, b):
    if isinstance(a, lg.LogArray):
        return np.array_equal(a.mantissa, b.mantissa) and np.array_equal(a.exponent, b.exponent)
    return np.array_equal(np.asarray(a), np.asarray(b))


X_GOOD = np.random.default_rng(1).standard_normal((3, N_IN))
Y_GOOD = np.random.default_rng(2).standard_normal((3, N_OUT))


def _nan_at(i, j, v=np.nan):
    x = X_GOOD.copy()
    x[i, j] = v
    return x


BAD_X = [
    (np.array([["a"] * N_IN]), TypeError, r"x must be numeric .*dtype <U1"),
    (np.zeros((2, N_IN), dtype=complex), TypeError, r"x must be numeric .*complex128"),
    (np.zeros((2, N_IN), dtype=object), TypeError, r"x must be numeric .*object"),
    (np.array([[object()] * N_IN]), TypeError, r"x must be numeric"),
    (np.zeros((2, N_IN), dtype="M8[s]"), TypeError, r"x must be numeric .*datetime64"),
    (None, TypeError, r"x must be numeric"),
    ("abcd", TypeError, r"x must be numeric"),
    ([[1.0, 2.0], [1.0, 2.0, 3.0]], ValueError, r"x is not a rectangular array"),
    (np.zeros((2, N_IN + 1)), ValueError, r"x has shape \(2, 5\); expected \(batch, 4\) or \(4,\)"),
    (np.zeros((2, 2, N_IN)), ValueError, r"x has shape \(2, 2, 4\)"),
    (np.float64(1.0), ValueError, r"x has shape \(\)"),
    (np.zeros((0, N_IN)), ValueError, r"x is empty"),
    (np.zeros((2, 0)), ValueError, r"x has shape \(2, 0\)"),
    (np.zeros(0), ValueError, r"x has shape \(0,\)"),
    (_nan_at(1, 2), ValueError, r"x has a non-finite value \(nan\) at \[1, 2\]"),
    (_nan_at(2, 0, np.inf), ValueError, r"x has a non-finite value \(inf\) at \[2, 0\]"),
    (_nan_at(0, 3, -np.inf), ValueError, r"x has a non-finite value \(-inf\) at \[0, 3\]"),
    (np.ma.masked_array(X_GOOD, mask=X_GOOD > 0), ValueError, r"x is a masked array with masked entries"),
    (lg.LogArray(X_GOOD), TypeError, r"x must be float64 values, not a LogArray"),
]


@pytest.mark.parametrize("precision", lg.PRECISIONS)
@pytest.mark.parametrize("x, exc, msg", BAD_X, ids=[f"x{i}" for i in range(len(BAD_X))])
def test_bad_inputs_forward_and_backward(net, x, exc, msg, precision):
    before = bits(net)
    with pytest.raises(exc, match=msg):
        net.forward(x, precision=precision)
    with pytest.raises(exc, match=msg):
        net.backward(x, Y_GOOD, precision=precision)  # x is checked before y
    assert_unchanged(net, before)


def test_long_double_beyond_float64_is_refused_not_turned_into_inf(net):
    x = X_GOOD.astype(np.longdouble)
    if np.finfo(np.longdouble).max <= np.finfo(np.float64).max:
        pytest.skip("long double is float64 on this platform")
    x[1, 1] = np.longdouble("1e400")
    with pytest.raises(ValueError, match=r"x has a value beyond float64's range .* at \[1, 1\]"):
        net.forward(x)
    # in range: converted exactly as numpy converts it
    ok = X_GOOD.astype(np.longdouble)
    assert same(net.forward(ok), net.forward(ok.astype(np.float64)))


BAD_Y = [
    (np.zeros((3, N_OUT), dtype=complex), TypeError, r"y must be numeric .*complex128"),
    (np.full((3, N_OUT), "a"), TypeError, r"y must be numeric"),
    (np.zeros((3, N_OUT + 1)), ValueError, r"y has shape \(3, 4\); expected \(3, 3\)"),
    (np.zeros((2, N_OUT)), ValueError, r"y has shape \(2, 3\); expected \(3, 3\)"),
    (np.zeros(N_OUT), ValueError, r"y has shape \(3,\); expected \(3, 3\)"),
    (np.full((3, N_OUT), np.nan), ValueError, r"y has a non-finite value \(nan\) at \[0, 0\]"),
    (np.where(np.eye(3, N_OUT) > 0, np.inf, 0.0), ValueError, r"y has a non-finite value \(inf\) at \[0, 0\]"),
    (None, ValueError, r"needs targets y"),
]


@pytest.mark.parametrize("loss", ["mse", "bce"])
@pytest.mark.parametrize("y, exc, msg", BAD_Y, ids=[f"y{i}" for i in range(len(BAD_Y))])
def test_bad_targets(net, y, exc, msg, loss):
    before = bits(net)
    for precision in lg.PRECISIONS:
        with pytest.raises(exc, match=msg):
            net.backward(X_GOOD, y, loss=loss, precision=precision)
    assert_unchanged(net, before)


BAD_LABELS = [
    (np.array([0, N_OUT, 1]), ValueError, r"label 3 at row 1 is out of range for 3 classes \(0..2\)"),
    (np.array([0, 1, -1]), ValueError, r"label -1 at row 2 is out of range"),
    (np.array([2**64 - 1, 0, 0], dtype=np.uint64), ValueError, r"label 18446744073709551615 at row 0"),
    (np.array([1e30, 0, 0]), ValueError, r"label 1e\+30 at row 0 is out of range"),
    (np.array([0.5, 1, 2]), TypeError, r"integer class indices"),
    (np.array([np.nan, 1, 2]), TypeError, r"integer class indices"),
    (np.array([True, False, True]), TypeError, r"integer class indices, got dtype bool"),
    (np.array(["0", "1", "2"]), TypeError, r"labels must be numeric"),
    (np.array([0, 1, 2], dtype=complex), TypeError, r"labels must be numeric"),
    (np.zeros((3, N_OUT), dtype=int), ValueError, r"labels have shape \(3, 3\); expected \(3,\)"),
    (np.array([0, 1]), ValueError, r"labels have shape \(2,\); expected \(3,\)"),
    (None, ValueError, r"needs targets y"),
]


@pytest.mark.parametrize("labels, exc, msg", BAD_LABELS, ids=[f"lab{i}" for i in range(len(BAD_LABELS))])
def test_bad_cross_entropy_labels(net, labels, exc, msg):
    before = bits(net)
    for precision in lg.PRECISIONS:
        with pytest.raises(exc, match=msg):
            net.backward(X_GOOD, labels, loss="cross_entropy", precision=precision)
    assert_unchanged(net, before)


def test_labels_of_any_integer_dtype_or_integral_floats_give_the_same_result(net):
    ref = net.backward(X_GOOD, np.array([0, 2, 1]), loss="cross_entropy")
    for lab in (np.array([0, 2, 1], dtype=np.uint8), np.array([0.0, 2.0, 1.0]), [0, 2, 1],
                np.array([0, 2, 1], dtype=">i4")):
        g = net.backward(X_GOOD, lab, loss="cross_entropy")
        assert same(g.params, ref.params) and same(g.loss, ref.loss)


@pytest.mark.parametrize("kw, exc, msg", [
    (dict(loss="l1"), ValueError, r"unknown loss 'l1'; valid: mse, sum, bce, cross_entropy"),
    (dict(loss=0), ValueError, r"unknown loss 0"),
    (dict(loss=["mse"]), ValueError, r"unknown loss \['mse'\]"),
    (dict(loss="MSE"), ValueError, r"unknown loss 'MSE'"),
    (dict(precision="float32"), ValueError, r"unknown precision 'float32'; valid: extended, float64"),
    (dict(precision=None), ValueError, r"unknown precision None"),
    (dict(checkpoint=0), ValueError, r"checkpoint must be None, 'auto' or a positive segment length, got 0"),
    (dict(checkpoint=2.0), ValueError, r"checkpoint must be"),
    (dict(checkpoint="sqrt"), ValueError, r"checkpoint must be"),
])
def test_unknown_names_and_options(net, kw, exc, msg):
    before = bits(net)
    with pytest.raises(exc, match=msg):
        net.backward(X_GOOD, Y_GOOD, **kw)
    assert_unchanged(net, before)


def test_checkpoint_longer_than_any_int64_is_no_checkpointing(net):
    ref = net.backward(X_GOOD, Y_GOOD)
    for cp in (10**30, 2**63, np.int64(2**62)):
        assert same(net.backward(X_GOOD, Y_GOOD, checkpoint=cp).params, ref.params)


@pytest.mark.parametrize("args, exc, msg", [
    ((None,), TypeError, r"weights must be a list of 2-D arrays .*NoneType"),
    ((5,), TypeError, r"weights must be a list of 2-D arrays .*int"),
    (("ab",), TypeError, r"weights must be a list of 2-D arrays .*str"),
    (([],), ValueError, r"at least one layer"),
    (([np.ones((2, 0))],), ValueError, r"weights\[0\] has shape \(2, 0\): every layer needs at least one unit"),
    (([np.ones((2, 2)), np.ones((0, 2))],), ValueError, r"weights\[1\] has shape \(0, 2\)"),
    (([np.ones((2, 2), dtype=complex)],), TypeError, r"weights\[0\] must be numeric .*complex128"),
    (([np.ones((2, 2), dtype=object)],), TypeError, r"weights\[0\] must be numeric .*object"),
    (([np.array([[1.0, np.inf], [0, 0]])],), ValueError, r"weights\[0\] has a non-finite value \(inf\) at \[0, 1\]"),
    (([np.eye(2)], 0.0), TypeError, r"biases must be None or a list of 1-D arrays .*float"),
    (([np.eye(2)], [np.array([0.0, np.nan])]), ValueError, r"biases\[0\] has a non-finite value \(nan\) at \[1\]"),
    (([np.eye(2)], [np.zeros(3)]), ValueError, r"biases\[0\] has shape \(3,\); expected \(2,\)"),
    (([np.eye(2)], None, None), TypeError, r"activations must be a name \(str\) or a list of names, got NoneType"),
    (([np.eye(2)], None, "Tanh"), ValueError, r"unknown activation 'Tanh'; valid: identity, sigmoid"),
    (([np.eye(2)], None, ""), ValueError, r"unknown activation ''"),
    (([np.eye(2)], None, [None]), TypeError, r"activations\[0\]: activation must be a name"),
])
def test_bad_construction(args, exc, msg):
    with pytest.raises(exc, match=msg):
        lg.Network(*args)


def test_core_validates_what_python_would_have(net):
    """The bindings check sizes themselves: a direct _core call cannot read out of bounds."""
    core = lg._core
    x = np.zeros((2, N_IN))
    with pytest.raises(ValueError, match=r"parameter block has 3 values, the architecture needs 43"):
        core.forward(net._arch, net.params[:3], x)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 4\)"):
        core.forward(net._arch, net.params, np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"label 7 at row 0 is out of range"):
        core.backward(net._arch, net.params, x, "cross_entropy", None, np.array([7, 0]))
    with pytest.raises(ValueError, match=r"cross_entropy needs integer labels of shape \(2,\)"):
        core.backward(net._arch, net.params, x, "cross_entropy", None, np.array([0]))
    with pytest.raises(ValueError, match=r"mse needs y of shape \(2, 3\)"):
        core.backward(net._arch, net.params, x, "mse", np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"unknown loss 'foo'"):
        core.backward(net._arch, net.params, x, "foo")
    with pytest.raises(ValueError, match=r"unknown precision 'half'"):
        core.forward(net._arch, net.params, x, "half")
    with pytest.raises(ValueError, match=r"width 1 is zero"):
        core.Architecture([2, 0, 2], ["tanh", "tanh"])
    with pytest.raises(ValueError, match=r"a network of 1 layers needs 2 widths, got 3"):
        core.Architecture([2, 2, 2], ["tanh"])
    with pytest.raises(ValueError, match=r"checkpoint must be -1 \(auto\), 0 \(off\)"):
        core.backward(net._arch, net.params, x, "sum", checkpoint=-5)


def test_core_refuses_sizes_whose_offsets_would_wrap():
    """Architectures whose parameter count overflows 64 bits would make the engine index out of bounds."""
    core = lg._core
    with pytest.raises(ValueError, match=r"widths 4294967296 -> 4294967296 at layer 0 are too large"):
        core.Architecture([2**32, 2**32], ["identity"])
    with pytest.raises(ValueError, match=r"width 0 \(18446744073709551615\) is too large"):
        core.Architecture([2**64 - 1, 2], ["identity"])
    with pytest.raises(ValueError, match=r"at layer 1 are too large"):
        core.Architecture([3, 2**31, 2**31], ["identity"] * 2)
    a = core.Architecture([4, 3, 2], ["tanh", "tanh"])
    # the largest representable counts still agree with exact integer arithmetic
    big = core.Architecture([2**20, 2**20, 7], ["identity"] * 2)
    assert big.param_count == 2**20 * (2**20 + 1) + 7 * (2**20 + 1)
    assert (a.weight_offset(1), a.bias_offset(1)) == (15, 15 + 6)
    with pytest.raises(IndexError, match="layer 2 out of range for 2 layers"):
        a.weight_offset(2)
    with pytest.raises(IndexError, match="layer 99 out of range"):
        a.bias_offset(99)
    with pytest.raises(OverflowError, match="more than 2\\^64 bytes"):
        a.workspace_bytes(2**62)


def test_thread_count_is_checked_and_left_unchanged_when_refused():
    core = lg._core
    n = core.num_threads()
    for bad in (0, -1, 10**6):
        with pytest.raises(ValueError, match=r"set_num_threads: n must be between 1 and 1024"):
            core.set_num_threads(bad)
        assert core.num_threads() == n


# -- accepted layouts and dtypes -----------------------------------------------

def _layouts(x):
    """x in layouts that numpy accepts as the same values."""
    f = np.asfortranarray(x)
    be = x.astype(">f8")
    ro = x.copy()
    ro.flags.writeable = False
    strided = np.zeros((x.shape[0], 2 * x.shape[1]))
    strided[:, ::2] = x
    rev = np.ascontiguousarray(x[::-1])[::-1]
    return {"fortran": f, "big-endian": be, "read-only": ro, "strided": strided[:, ::2], "negative-stride": rev,
            "list": x.tolist(), "big-endian-fortran": np.asfortranarray(be)}


@pytest.mark.parametrize("precision", lg.PRECISIONS)
def test_layouts_give_bitwise_the_contiguous_result(net, precision):
    x = np.random.default_rng(5).standard_normal((6, N_IN))
    y = np.random.default_rng(6).standard_normal((6, N_OUT))
    ref_f = net.forward(x, precision=precision)
    ref_b = net.backward(x, y, precision=precision)
    np.testing.assert_allclose(np.asarray(ref_f), numpy_forward(net, x), rtol=1e-13, atol=1e-15)
    xl, yl = _layouts(x), _layouts(y)
    for name in xl:
        assert same(net.forward(xl[name], precision=precision), ref_f), name
        g = net.backward(xl[name], yl[name], precision=precision)
        for field in ("loss", "output", "params", "input"):
            assert same(getattr(g, field), getattr(ref_b, field)), (name, field)


def test_other_numeric_dtypes_are_converted_like_numpy(net):
    x = np.array([[0, 1, -2, 3], [1, 1, 0, 0]])
    for dt in (np.int8, np.int32, np.uint16, np.float16, np.float32, bool):
        xd = x.astype(dt)
        assert same(net.forward(xd), net.forward(xd.astype(np.float64))), dt


def test_weights_in_any_layout_build_the_same_network():
    rng = np.random.default_rng(7)
    ws = [rng.standard_normal((5, 4)), rng.standard_normal((3, 5))]
    ref = lg.Network(ws, None, "tanh").params
    for name in ("fortran", "big-endian", "read-only", "strided", "negative-stride", "list"):
        layered = [_layouts(w)[name] for w in ws]
        np.testing.assert_array_equal(lg.Network(layered, None, "tanh").params, ref, err_msg=name)


# -- the user's handles on the network's arrays -----------------------------------

def test_assigning_a_layer_checks_shape_and_values(net):
    before = bits(net)
    with pytest.raises(ValueError, match=r"weights\[0\] has shape \(5, 4\); cannot assign an array of shape \(4, 5\)"):
        net.weights[0] = np.ones((4, 5))
    with pytest.raises(ValueError, match=r"biases\[1\] has shape \(3,\); cannot assign"):
        net.biases[1] = np.ones(4)
    with pytest.raises(ValueError, match=r"weights\[1\] has a non-finite value \(nan\) at \[2, 4\]"):
        w = np.ones((3, 5))
        w[2, 4] = np.nan
        net.weights[1] = w
    with pytest.raises(TypeError, match=r"weights\[0\] must be numeric"):
        net.weights[0] = np.full((5, 4), "x")
    with pytest.raises(IndexError, match="layer 2 out of range for 2 layers"):
        net.weights[2] = np.ones((3, 5))
    with pytest.raises(ValueError, match=r"weights\[1\] has shape \(3, 5\)"):  # slices: all checked first
        net.weights[:] = [np.zeros((5, 4)), np.zeros((5, 3))]
    assert_unchanged(net, before)
    net.weights[-1] = np.full((3, 5), 0.5)
    np.testing.assert_array_equal(net.weights[1], np.full((3, 5), 0.5))
    np.testing.assert_allclose(np.asarray(net.forward(X_GOOD)), numpy_forward(net, X_GOOD), rtol=1e-13)


def test_gradient_views_cannot_be_assigned(net):
    for precision in lg.PRECISIONS:
        g = net.backward(X_GOOD, Y_GOOD, precision=precision)
        with pytest.raises(TypeError, match="results of a pass"):
            g.weights[0] = np.zeros((5, 4))


def test_reshaping_the_params_handle_does_not_reshape_the_network(net):
    before = bits(net)
    ref = net.backward(X_GOOD, Y_GOOD)
    p = net.params
    p.shape = (1, -1)
    p2 = net.params
    p2.dtype = np.int64
    assert net.params.shape == before.shape and net.params.dtype == np.float64
    assert same(net.backward(X_GOOD, Y_GOOD).params, ref.params)
    assert_unchanged(net, before)


def test_batch_size_changing_between_calls_leaves_no_stale_state(net):
    rng = np.random.default_rng(8)
    xs = [rng.standard_normal((b, N_IN)) for b in (7, 1, 30, 2)]
    first = [net.backward(x, np.zeros((len(x), N_OUT))) for x in xs]
    again = [net.backward(x, np.zeros((len(x), N_OUT))) for x in reversed(xs)][::-1]
    for a, b, x in zip(first, again, xs):
        assert same(a.params, b.params) and same(a.output, b.output)
        np.testing.assert_allclose(a.output.to_numpy(), numpy_forward(net, x), rtol=1e-13, atol=1e-15)


def test_nan_written_through_a_view_is_caught_and_names_the_layer(net):
    net.biases[0][3] = np.inf
    before = bits(net)
    for precision in lg.PRECISIONS:
        with pytest.raises(ValueError, match=r"biases\[0\] has a non-finite value \(inf\)"):
            net.backward(X_GOOD, Y_GOOD, precision=precision)
        with pytest.raises(ValueError, match=r"biases\[0\] has a non-finite value"):
            net.forward(X_GOOD, precision=precision)
    assert_unchanged(net, before)


# A pass tests each layer's parameters as it reaches them. Where a layer's product is
# small and has fewer outputs than weights (batch < n_in: (8, 1), (8, 3)), the engine
# tests the products and the bias instead, and reads the weights only when an output is
# not finite; otherwise ((8, 40), and (200, 1), whose product goes to BLAS) it reads the
# weights first. Every bad value must be named either way, including where it could
# hide: an inf weight met only by zero inputs (inf * 0), an inf beside a -inf in a row,
# a bad bias, and a bad layer after the float64 pass has already overflowed to inf.
def _bad_parameter_cases(width):
    bad = 4

    def zero_input(ws, bs):  # unit 3 of layer bad-1 is relu(-1) = 0 for every row
        ws[bad - 1][3] = 0.0
        bs[bad - 1][3] = -1.0
        ws[bad][1, 3] = np.inf

    def row(ws, bs):
        ws[bad][0, :2] = [np.inf, -np.inf]

    def overflow(ws, bs):  # float64 activations are inf from layer 0 on
        ws[0] *= 1e300
        ws[bad][2, 5] = np.nan

    return bad, {
        "nan": (lambda ws, bs: ws[bad].__setitem__((2, 5), np.nan), rf"weights\[{bad}\] has a non-finite value \(nan\) at \[2, 5\]"),
        "inf-times-zero": (zero_input, rf"weights\[{bad}\] has a non-finite value \(inf\) at \[1, 3\]"),
        "inf-and-minus-inf": (row, rf"weights\[{bad}\] has a non-finite value \(inf\) at \[0, 0\]"),
        "bias": (lambda ws, bs: bs[bad].__setitem__(width - 2, -np.inf),
                 rf"biases\[{bad}\] has a non-finite value \(-inf\) at \[{width - 2}\]"),
        "after-overflow": (overflow, rf"weights\[{bad}\] has a non-finite value \(nan\) at \[2, 5\]"),
    }


@pytest.mark.parametrize("case", ["nan", "inf-times-zero", "inf-and-minus-inf", "bias", "after-overflow"])
@pytest.mark.parametrize("width,batch", [(8, 1), (8, 3), (8, 40), (200, 1)])
def test_a_bad_parameter_is_named_however_the_layer_is_tested(case, width, batch):
    rng = np.random.default_rng(width + batch)
    depth = 7
    ws = [rng.standard_normal((width, width)) / np.sqrt(width) for _ in range(depth)]
    bs = [np.zeros(width) for _ in range(depth)]
    bad, cases = _bad_parameter_cases(width)
    spoil, message = cases[case]
    x = rng.standard_normal((batch, width))
    y = np.zeros((batch, width))
    good = lg.Network(ws, bs, "relu")
    spoil(ws, bs)
    ok_ws = [w.copy() for w in ws]
    ok_bs = [b.copy() for b in bs]
    ok_ws[bad] = np.where(np.isfinite(ok_ws[bad]), ok_ws[bad], 0.0)
    ok_bs[bad] = np.where(np.isfinite(ok_bs[bad]), ok_bs[bad], 0.0)
    # The same network with the bad values made 0 passes (the float64 one with inf
    # and nan results after an overflow): the error comes from the parameters alone.
    for precision in lg.PRECISIONS:
        lg.Network(ok_ws, ok_bs, "relu").backward(x, y, precision=precision)
    net = good
    for l in range(depth):  # written through the views, as a user would
        net.weights[l][...] = ws[l]
        net.biases[l][...] = bs[l]
    before = bits(net)
    for precision in lg.PRECISIONS:
        with pytest.raises(ValueError, match=message):
            net.forward(x, precision=precision)
        for checkpoint in (None, 2):
            with pytest.raises(ValueError, match=message):
                net.backward(x, y, precision=precision, checkpoint=checkpoint)
    assert_unchanged(net, before)


# -- huge requests: MemoryError before anything is allocated ---------------------------

def _hwm_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def deep():
    return lg.Network([np.ones((1, 1))] * 10**5, None, "identity")


@pytest.mark.parametrize("case", ["stored-activations", "checkpointed", "broadcast-batch", "float64", "forward",
                                  "parameter-block"])
def test_huge_requests_raise_memory_error_before_allocating(deep, case):
    # 10^5 layers of width 1 (2*10^5 parameters); a batch of 10^7 rows would need
    # ~30 TB of stored activations (extended), 15 TB (float64), ~150 GB even checkpointed.
    tall = np.broadcast_to(np.ones((1, 1)), (10**7, 1))
    before = bits(deep)
    measured = _reset_hwm()
    start = _hwm_bytes()
    with pytest.raises(MemoryError, match=r"needs [\d,.]+ [GM]iB.*, but only [\d,.]+ [GM]iB of memory is available") as info:
        if case == "stored-activations":
            deep.backward(tall, loss="sum")
        elif case == "checkpointed":
            deep.backward(tall, loss="sum", checkpoint="auto")
        elif case == "float64":
            deep.backward(tall, loss="sum", precision="float64")
        elif case == "broadcast-batch":  # 10^13 rows of a 10-layer network; x itself is a broadcast view
            lg.Network([np.eye(4)] * 10).backward(np.broadcast_to(np.ones(4), (10**13, 4)), loss="sum")
        elif case == "forward":
            lg.Network([np.eye(4)] * 10).forward(np.broadcast_to(np.ones(4), (10**14, 4)))
        else:  # 10^6 x 10^6 weights given as broadcast views: the network's copy would need 15 TB
            w = np.broadcast_to(np.ones(1), (10**6, 10**6))
            lg.Network([w, w.T])
    if case == "stored-activations":
        assert "checkpoint='auto') would need" in str(info.value)
    if measured:
        assert _hwm_bytes() - start < 64 * 2**20, "memory was allocated before the refusal"
    assert_unchanged(deep, before)


def test_pass_bytes_is_exact_integer_arithmetic():
    net = lg.Network([np.ones((1, 1))] * 1000, None, "identity")
    # no int64 wrap-around for absurd sizes: grows linearly in the batch
    a, b = net.pass_bytes(2**62), net.pass_bytes(2**63)
    assert b > a > 2**62 and abs(b - 2 * a) < 10**6
    assert net.pass_bytes(4, checkpoint="auto") < net.pass_bytes(4)
    assert net.pass_bytes(4, precision="float64") < net.pass_bytes(4)


# -- failed training steps change nothing --------------------------------------------

def test_failed_sgd_step_leaves_weights_bitwise_unchanged(net):
    before = bits(net)
    with pytest.raises(ValueError, match="y has a non-finite value"):
        net.sgd_step(X_GOOD, np.full((3, N_OUT), np.nan), lr=0.1)
    with pytest.raises(ValueError, match=r"x has shape"):
        net.sgd_step(np.zeros((3, 7)), Y_GOOD, lr=0.1)
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        net.sgd_step(X_GOOD, Y_GOOD, lr=-1.0)
    # an update beyond float64 (gradient ~ 1e3, lr 1e308): refused, nothing changed
    with pytest.raises(FloatingPointError, match="nothing was changed"):
        net.sgd_step(X_GOOD, Y_GOOD * 1e3, lr=1e308)
    assert_unchanged(net, before)
    # and a good step does change them, by exactly -lr * grad rounded to float64
    g = net.backward(X_GOOD, Y_GOOD)
    expected = net.params - (g.params * 0.1).to_numpy()
    net.sgd_step(X_GOOD, Y_GOOD, lr=0.1)
    np.testing.assert_array_equal(net.params, expected)


def test_exponent_range_error_in_a_step_changes_nothing():
    # sigmoid'(1e600) = e^-1e600 is below the exponent range: flushed to zero with a
    # RuntimeWarning, which a caller may turn into an error; the failed step then changes nothing
    net = lg.Network([np.full((1, 1), 1e200)] * 3, None, ["identity", "identity", "sigmoid"])
    before = bits(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(RuntimeWarning, match="fell below loggrad's exponent range"):
            net.sgd_step(np.ones((1, 1)), np.ones((1, 1)), lr=0.1)
    assert_unchanged(net, before)


def test_failed_fit_restores_the_weights_of_before_the_call(net):
    x = np.random.default_rng(9).standard_normal((6, N_IN))
    y = np.random.default_rng(10).standard_normal((6, N_OUT))
    y[4, 1] = np.nan  # the fifth one-sample step fails, after four steps changed the weights
    before = bits(net)
    with pytest.raises(ValueError, match="y has a non-finite value"):
        net.fit(x, y, lr=0.1, epochs=1, batch_size=1, shuffle=False)
    assert_unchanged(net, before)
    # the same data without the bad row trains (the rollback did not hide a no-op)
    net.fit(x[:4], y[:4], lr=0.1, epochs=1, batch_size=1, shuffle=False)
    assert not np.array_equal(net.params.view(np.uint64), before)


# -- LogArray ------------------------------------------------------------------------

def test_logarray_bad_values():
    with pytest.raises(ValueError, match="LogArray values must be finite"):
        lg.LogArray([1.0, np.nan])
    with pytest.raises(TypeError, match="LogArray values must be numbers, got str"):
        lg.LogArray("1.0")
    with pytest.raises(TypeError, match="real numbers .*complex128"):
        lg.LogArray(np.ones(2, dtype=complex))
    with pytest.raises(TypeError, match="real numbers .*object"):
        lg.LogArray(np.array([object()]))
    with pytest.raises(TypeError, match="exponents must be integers"):
        lg.LogArray.from_parts([0.5], [1.5])
    with pytest.raises(ValueError, match="mantissas must be finite"):
        lg.LogArray.from_parts([np.inf], [1])
    with pytest.raises(TypeError, match="len\\(\\) of a 0-d LogArray"):
        len(lg.LogArray(1.0))


def test_logarray_scalars_are_0d_arrays():
    a = lg.LogArray(3.0)
    assert a.mantissa.shape == () and a.exponent.shape == () and not a.mantissa.flags.writeable
    assert float(a) == 3.0 and a.mantissa * 2.0**a.exponent == 3.0


def test_logarray_exponents_never_wrap_around():
    """Products of exponents near 2^60 raise ExponentRangeError instead of wrapping int64."""
    big = lg.LogArray.from_parts([0.5], [2**59])
    with pytest.raises(lg.ExponentRangeError, match="beyond loggrad's exponent range"):
        big * big * big
    with pytest.raises(lg.ExponentRangeError):
        lg.LogArray.from_parts([0.5], [2**62])
    with pytest.raises(lg.ExponentRangeError):
        lg.LogArray.from_parts([0.5], [-(2**63) + 1])
    with pytest.raises(lg.ExponentRangeError):
        lg.LogArray.from_parts([0.5], [-(2**59)]) / big / big
    with pytest.raises(lg.ExponentRangeError):
        lg.LogArray.from_parts([0.5], [2**40]) ** (2**30)
    # in range: exact against Python's unbounded integers. (0.5 * 2^(2^40+1))^(2^19) = 2^(2^59)
    p = lg.LogArray.from_parts([0.5], [2**40 + 1]) ** (2**19)
    assert p.mantissa[0] == 0.5 and int(p.exponent[0]) == 2**59 + 1
    q = big * big  # 2^(2^59 - 1) squared = 2^(2^60 - 2): 0.5 * 2^(2^60 - 1), the edge of the range
    assert q.mantissa[0] == 0.5 and int(q.exponent[0]) == 2**60 - 1
