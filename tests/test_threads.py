"""Threads and determinism.

- Backward passes running in several Python threads at once (on different
  networks and on one shared network) give results bitwise equal to serial runs.
- The engine releases the GIL: Python code runs while a pass is in progress,
  and passes in two threads overlap in time.
- A pass at n engine threads runs tasks on n distinct threads (the engine
  counts them: _core.threads_used), which holds on a loaded machine too,
  where timing cannot show parallel work.
- The same inputs give bitwise-identical results on every run and for every
  engine thread count (wide layers, where the engine calls BLAS).
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import loggrad as lg
from loggrad import _core


# -- helpers -------------------------------------------------------------------


def _bits(a: np.ndarray) -> np.ndarray:
    """Bit patterns of a float64 array (distinguishes -0.0 from 0.0)."""
    return np.ascontiguousarray(a, dtype=np.float64).view(np.uint64)


def _planes(v) -> list[np.ndarray]:
    """Arrays that determine a result exactly: mantissa bits and exponents, or float64 bits."""
    if isinstance(v, lg.LogArray):
        return [_bits(v.mantissa), np.asarray(v.exponent).copy()]
    return [_bits(np.asarray(v))]


def _result_planes(g: lg.Gradients) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for v in (g.loss, g.output, g.params, g.input):
        out += _planes(v)
    return out


def _assert_bitwise_equal(a: list[np.ndarray], b: list[np.ndarray], what: str) -> None:
    assert len(a) == len(b)
    for i, (u, v) in enumerate(zip(a, b)):
        assert u.shape == v.shape, f"{what}: plane {i} shape {u.shape} != {v.shape}"
        assert np.array_equal(u, v), f"{what}: plane {i} differs in {int(np.sum(u != v))} entries"


def _chain(rng, widths, act, scale=1.0):
    ws = [scale * rng.standard_normal((widths[l + 1], widths[l])) / np.sqrt(widths[l]) for l in range(len(widths) - 1)]
    bs = [0.1 * rng.standard_normal(widths[l + 1]) for l in range(len(widths) - 1)]
    return lg.Network(ws, bs, act)


def _targets(rng, net, batch, loss):
    if loss == "cross_entropy":
        return rng.integers(0, net.n_out, batch)
    if loss == "bce":
        return rng.integers(0, 2, (batch, net.n_out)).astype(float)
    if loss == "sum":
        return None
    return rng.standard_normal((batch, net.n_out))


@pytest.fixture(scope="module")
def jobs():
    """A mix of passes: narrow-deep (range-stressing), mixed activations, wide (BLAS)."""
    rng = np.random.default_rng(1234)
    specs = [
        ([8] * 401, "sigmoid", 1.0, 4, "mse", "extended"),  # gradients far below float64 range
        ([4] * 301, "identity", 3.0, 3, "sum", "extended"),  # far above float64 range
        ([6, 12, 12, 12, 5], ["tanh", "relu", "gelu", "silu"], 2.0, 7, "cross_entropy", "extended"),
        ([5, 9, 9, 3], ["softplus", "elu", "selu"], 1.5, 6, "bce", "extended"),
        ([16] * 101, "leaky_relu", 1.2, 5, "mse", "float64"),
        ([256, 256, 256, 10], "tanh", 1.0, 64, "cross_entropy", "extended"),  # BLAS path
        ([300, 260, 270], "relu", 1.0, 80, "mse", "float64"),  # BLAS path, float64
    ]
    out = []
    for widths, act, scale, batch, loss, precision in specs:
        net = _chain(rng, widths, act, scale)
        x = rng.standard_normal((batch, net.n_in))
        y = _targets(rng, net, batch, loss)
        out.append((net, x, y, loss, precision))
    return out


def _run(job) -> list[np.ndarray]:
    net, x, y, loss, precision = job
    return _result_planes(net.backward(x, y, loss=loss, precision=precision))


# -- concurrent calls give serial results ------------------------------------------


def test_concurrent_backward_on_different_networks_matches_serial(jobs):
    serial = [_run(j) for j in jobs]
    order = [i for i in range(len(jobs)) for _ in range(4)]
    random.Random(7).shuffle(order)
    with ThreadPoolExecutor(max_workers=6) as ex:
        results = list(ex.map(lambda i: (i, _run(jobs[i])), order))
    for i, planes in results:
        _assert_bitwise_equal(planes, serial[i], f"job {i} in a thread")


def test_concurrent_calls_on_one_network_match_serial():
    rng = np.random.default_rng(5)
    net = _chain(rng, [12] * 61, ["tanh", "sigmoid", "relu"] * 20, 1.5)
    xs = [rng.standard_normal((b, 12)) for b in (1, 3, 4, 7, 4, 2, 9, 5)]
    ys = [rng.standard_normal((x.shape[0], 12)) for x in xs]

    def job(i):
        x, y = xs[i % len(xs)], ys[i % len(xs)]
        if i % 3 == 0:
            return _planes(net.forward(x))
        if i % 3 == 1:
            return _result_planes(net.backward(x, y, loss="mse"))
        return _result_planes(net.backward(x, y, loss="mse", precision="float64"))

    n = 3 * len(xs)
    serial = [job(i) for i in range(n)]
    params = net.params.copy()
    with ThreadPoolExecutor(max_workers=8) as ex:
        for rep in range(3):
            idx = list(range(n))
            random.Random(rep).shuffle(idx)
            for i, planes in zip(idx, ex.map(job, idx)):
                _assert_bitwise_equal(planes, serial[i], f"call {i}, round {rep}")
    np.testing.assert_array_equal(_bits(net.params), _bits(params))  # passes never write parameters


# -- the GIL is released -------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_pass():
    """A narrow deep backward pass (no BLAS) calibrated to take at least ~0.2 s."""
    rng = np.random.default_rng(11)
    net = _chain(rng, [16] * 1001, "tanh", 1.0)
    batch = 4
    while True:
        x = rng.standard_normal((batch, 16))
        t = time.perf_counter()
        net.backward(x, loss="sum")
        dt = time.perf_counter() - t
        if dt >= 0.2 or batch >= 4096:
            break
        batch = int(batch * min(8.0, max(1.5, 0.25 / dt)))
    return net, x, dt


def _probe_samples(call, min_duration=0.1):
    """Run call() while a pure-Python probe thread takes timestamps every ~1 ms.

    Returns (duration, samples in the middle half of the call). If the call
    held the GIL, the probe could not run at all while it was in the engine.
    """
    stop = threading.Event()
    stamps: list[float] = []

    def probe():
        while not stop.is_set():
            stamps.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=probe)
    t.start()
    time.sleep(0.02)
    t0 = time.perf_counter()
    call()
    t1 = time.perf_counter()
    stop.set()
    t.join()
    d = t1 - t0
    s = np.asarray(stamps)
    mid = int(np.sum((s > t0 + 0.25 * d) & (s < t1 - 0.25 * d)))
    return d, mid


@pytest.mark.parametrize("kind", ["backward-extended", "backward-float64", "forward-extended"])
def test_gil_is_released_during_a_pass(slow_pass, kind):
    net, x, _ = slow_pass
    if kind == "backward-extended":
        call = lambda: net.backward(x, loss="sum")  # noqa: E731
    elif kind == "backward-float64":
        xx = np.concatenate([x] * 3)  # the float64 path is faster: keep the call long
        call = lambda: net.backward(xx, loss="sum", precision="float64")  # noqa: E731
    else:
        xx = np.concatenate([x] * 3)
        call = lambda: net.forward(xx)  # noqa: E731
    d, mid = _probe_samples(call)
    print(f"{kind}: call {d * 1e3:.0f} ms, probe ran {mid} times in its middle half")
    if d < 0.05:
        pytest.skip(f"the call took only {d * 1e3:.0f} ms, too short to probe")
    # Held GIL: 0 samples there. Released: ~d/2 ms worth (sleep granularity ~1 ms);
    # a handful is proof enough even on a loaded machine.
    assert mid >= 3, f"a Python thread ran only {mid} times during the middle half of a {d:.3f} s engine call"


def test_engine_calls_in_two_threads_overlap_in_time(slow_pass):
    """Per-call start/end times of two threads overlap; their CPU times prove parallel work.

    Each thread records perf_counter and its own CPU time (thread_time) around
    one pass. If the engine held the GIL, at most one thread would compute at
    a time, so the two CPU times could not add up to more than the wall time
    spanned by both calls. With the GIL released on >= 2 cores they add up to
    nearly twice that. Retried a few times, since other processes may occupy
    the cores; a held GIL can never pass.
    """
    net, x, _ = slow_pass
    n_threads = 2
    attempts = []
    for attempt in range(5):
        barrier = threading.Barrier(n_threads)
        rec: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)] * n_threads

        def worker(i):
            barrier.wait()
            c0, t0 = time.thread_time(), time.perf_counter()
            net.backward(x, loss="sum")
            t1, c1 = time.perf_counter(), time.thread_time()
            rec[i] = (t0, t1, c1 - c0)

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        starts, ends, cpus = zip(*rec)
        overlap = min(ends) - max(starts)
        span = max(ends) - min(starts)
        attempts.append((overlap, span, sum(cpus), list(cpus)))
        print(
            f"attempt {attempt}: calls {[f'{e - s:.3f}' for s, e, _ in rec]} s, overlap {overlap:.3f} s, "
            f"span {span:.3f} s, cpu {sum(cpus):.3f} s"
        )
        assert overlap > 0, f"the two calls did not overlap in time: {rec}"
        if sum(cpus) > 1.25 * span:
            return
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: calls overlap but cannot run in parallel")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > (os.cpu_count() or 1) - 1:
        pytest.skip(f"machine busy (load {load:.1f}): could not show parallel execution; attempts {attempts}")
    pytest.fail(f"the two engine calls never computed in parallel: {attempts}")


# -- the engine's threads share one pass ------------------------------------------------


@pytest.fixture(scope="module")
def wide_pass():
    """A pass whose products are split into many tasks (blocks of 128 rows or columns)."""
    rng = np.random.default_rng(21)
    net = _chain(rng, [512] * 7, "tanh", 1.0)
    x = rng.standard_normal((256, 512))
    assert 256 * 512 * 512 >= _core.blas_min_work  # BLAS blocks spread over the pool
    return net, x


def _threads_of_one_pass(net, x, precision="extended"):
    _core.reset_threads_used()
    g = net.backward(x, loss="sum", precision=precision)
    return _core.threads_used(), g


def test_threads_used_counts_nothing_after_a_reset():
    _core.reset_threads_used()
    assert _core.threads_used() == 0


@pytest.mark.parametrize("precision", ["extended", "float64"])
def test_one_engine_thread_runs_a_pass_on_the_caller_alone(restore_threads, wide_pass, precision):
    _core.set_num_threads(1)
    used, _ = _threads_of_one_pass(*wide_pass, precision=precision)
    assert used == 1


@pytest.mark.parametrize("precision", ["extended", "float64"])
@pytest.mark.parametrize("n", [2, 4])
def test_a_pass_at_n_engine_threads_runs_tasks_on_n_threads(restore_threads, wide_pass, precision, n):
    """Counted, not timed: each of the n threads (the caller and n - 1 pool workers)
    ran at least one task of the pass. On a busy machine a worker may be scheduled
    too late for one pass's tasks, so a few passes are tried; a pool that never
    hands out work fails every one. The results stay bitwise those of one thread."""
    net, x = wide_pass
    _core.set_num_threads(1)
    serial = _result_planes(net.backward(x, loss="sum", precision=precision))
    _core.set_num_threads(n)
    seen = []
    for _ in range(20):
        used, g = _threads_of_one_pass(net, x, precision)
        _assert_bitwise_equal(_result_planes(g), serial, f"{n} engine threads")
        assert 1 <= used <= n, f"{used} threads ran tasks of a pass at {n} engine threads"
        seen.append(used)
        if used == n:
            return
    pytest.fail(f"no pass at {n} engine threads ran tasks on {n} threads: {seen}")


def test_concurrent_callers_fall_back_to_their_own_thread(restore_threads, wide_pass):
    """While one Python thread's pass holds the pool, another's runs on its own
    thread: every caller together counts as one thread, so the count stays <= n."""
    net, x = wide_pass
    _core.set_num_threads(2)
    _core.reset_threads_used()
    with ThreadPoolExecutor(max_workers=3) as ex:
        list(ex.map(lambda _: net.backward(x, loss="sum"), range(3)))
    assert 1 <= _core.threads_used() <= 2


# -- determinism ----------------------------------------------------------------------


@pytest.fixture
def restore_threads():
    n = _core.num_threads()
    yield
    _core.set_num_threads(n)


def test_repeated_runs_are_bitwise_identical(jobs):
    for i, job in enumerate(jobs):
        first = _run(job)
        for _ in range(2):
            _assert_bitwise_equal(_run(job), first, f"job {i}, repeated")


def _wide_case(width, batch):
    rng = np.random.default_rng(width + batch)
    net = _chain(rng, [width, width, width // 2, width, 10], ["relu", "tanh", "gelu", "identity"], 1.3)
    assert batch * width * width >= _core.blas_min_work  # these layers go through BLAS
    x = rng.standard_normal((batch, width))
    # Wide range of magnitudes across rows: the extended path's scaling matters.
    x *= np.exp2(rng.integers(-400, 40, (batch, 1)).astype(float))
    y = rng.integers(0, 10, batch)
    return net, x, y


# (1024, 64): weight-gradient products of 2^26 multiply-adds, split over the threads
# (smaller ones are one task each, beside the chain).
_WIDE = [(256, 64), (512, 96), (1024, 64)]
_THREADS = (1, 2, 3, 4)


@pytest.mark.parametrize("precision", ["extended", "float64"])
@pytest.mark.parametrize("width,batch", _WIDE)
def test_wide_passes_repeat_bitwise_for_every_thread_count(restore_threads, precision, width, batch):
    net, x, y = _wide_case(width, batch)
    for n in _THREADS:
        _core.set_num_threads(n)
        assert _core.num_threads() == n
        first = _result_planes(net.backward(x, y, loss="cross_entropy", precision=precision))
        for _ in range(2):
            again = _result_planes(net.backward(x, y, loss="cross_entropy", precision=precision))
            _assert_bitwise_equal(again, first, f"{n} engine threads, rerun")


# OpenBLAS partitions a threaded dgemm by thread count and its edge kernels round
# differently, so a threaded BLAS call would change results with the thread
# count. The engine runs BLAS single-threaded on fixed blocks and spreads the
# blocks over its own pool: the block boundaries never depend on the count.
@pytest.mark.parametrize("precision", ["extended", "float64"])
@pytest.mark.parametrize("width,batch", _WIDE)
def test_results_do_not_depend_on_engine_threads(restore_threads, precision, width, batch):
    net, x, y = _wide_case(width, batch)
    results = {}
    for n in _THREADS:
        _core.set_num_threads(n)
        results[n] = _result_planes(net.backward(x, y, loss="cross_entropy", precision=precision))
    for n in _THREADS[1:]:
        _assert_bitwise_equal(results[n], results[1], f"{n} engine threads vs 1")


@pytest.mark.parametrize("precision", ["extended", "float64"])
def test_one_layer_weight_gradient_does_not_depend_on_engine_threads(restore_threads, precision):
    """Minimal reproducer: one identity layer (300 x 100), batch 50, mse."""
    rng = np.random.default_rng(0)
    net = lg.Network([rng.standard_normal((300, 100))])
    x, y = rng.standard_normal((50, 100)), rng.standard_normal((50, 300))
    _core.set_num_threads(1)
    ref = _planes(net.backward(x, y, precision=precision).params)
    _core.set_num_threads(2)
    _assert_bitwise_equal(_planes(net.backward(x, y, precision=precision).params), ref, "2 engine threads vs 1")


# Products of >= 2^22 multiply-adds per block go to BLAS as one call per thread over a
# run of whole 128-blocks, where a once-per-process check found that exact (the mode is
# in blas_config); the partial last block is always a call of its own. Widths that leave
# a partial block (421 = 3 * 128 + 37, 300 = 2 * 128 + 44), a batch large enough for the
# merged path in every product of >= 256 columns (forward, dL/da, weight gradients) or
# rows (the weight gradient of the 200 -> 421 layer), thread counts below, at and above
# the number of whole blocks; values checked against a plain numpy backprop.
def test_merged_blas_calls_match_numpy_and_do_not_depend_on_engine_threads(restore_threads):
    from reference import np_backward

    rng = np.random.default_rng(421)
    widths, acts = [421, 300, 200, 421, 300], ["tanh", "relu", "identity", "tanh"]
    net = _chain(rng, widths, acts, 1.2)
    batch = 192
    assert batch * 128 * 200 >= 2**22  # each block of each product split into blocks
    assert "block" in _core.blas_config()
    x, y = rng.standard_normal((batch, 421)), rng.standard_normal((batch, 300))
    ref = np_backward(net.weights, net.biases, acts, x, y, "mse")
    got = {}
    for n in (1, 2, 3, 4):
        _core.set_num_threads(n)
        for precision in ("extended", "float64"):
            got[n, precision] = _result_planes(net.backward(x, y, precision=precision))
        if n == 1:
            g = net.backward(x, y, precision="float64")
            for l in range(net.depth):
                np.testing.assert_allclose(g.weights[l], ref["weights"][l], rtol=1e-10, atol=1e-13)
            np.testing.assert_allclose(g.input, ref["input"], rtol=1e-10, atol=1e-13)
    for n in (2, 3, 4):
        for precision in ("extended", "float64"):
            _assert_bitwise_equal(got[n, precision], got[1, precision], f"{precision}, {n} engine threads vs 1")


def test_concurrent_wide_passes_with_engine_threads_match_serial(restore_threads):
    """Python threads each calling a BLAS-backed pass while BLAS itself is threaded."""
    _core.set_num_threads(2)
    rng = np.random.default_rng(3)
    nets = [_chain(rng, [256, 300, 256, 8], "tanh", 1.0) for _ in range(3)]
    xs = [rng.standard_normal((64, 256)) for _ in range(3)]
    serial = [_result_planes(n.backward(x, loss="sum")) for n, x in zip(nets, xs)]
    with ThreadPoolExecutor(max_workers=3) as ex:
        for rep in range(3):
            res = list(ex.map(lambda i: _result_planes(nets[i].backward(xs[i], loss="sum")), range(3)))
            for i in range(3):
                _assert_bitwise_equal(res[i], serial[i], f"wide net {i}, round {rep}")


# -- narrow chains: weight gradients one layer per task ----------------------------
# Once a segment's deltas are known, the weight gradients of small layers are
# computed one layer per task on the engine's threads. Which thread takes which
# layer must change nothing: not the bits, and not the error a failing pass reports.


def _narrow_case(rng):
    widths = [6] + [8] * 40 + [5]
    acts = ["tanh", "relu", "tanh", "identity"] * 10 + ["sigmoid"]
    net = _chain(rng, widths, acts, 1.4)
    # rows from 2^-900 to 1 and no biases on the way: values far below float64's range
    for b in net.biases:
        b[...] = 0.0
    x = rng.standard_normal((3, 6)) * np.exp2(rng.integers(-900, 0, (3, 1)).astype(float))
    return net, x, rng.standard_normal((3, 5))


def _selected_planes(g: lg.Gradients, layers) -> list[np.ndarray]:
    out = _planes(g.loss) + _planes(g.input)
    for l in layers:
        out += _planes(g.weights[l]) + _planes(g.biases[l])
    return out


@pytest.mark.parametrize("precision", ["extended", "float64"])
@pytest.mark.parametrize("checkpoint", [None, 7])
@pytest.mark.parametrize("layers", [None, [0, 13, 40]])
def test_narrow_deep_passes_do_not_depend_on_engine_threads(restore_threads, precision, checkpoint, layers):
    net, x, y = _narrow_case(np.random.default_rng(77))
    picked = range(net.depth) if layers is None else layers
    results = {}
    for n in _THREADS:
        _core.set_num_threads(n)
        g = net.backward(x, y, precision=precision, checkpoint=checkpoint, layers=layers)
        results[n] = _selected_planes(g, picked)
    for n in _THREADS[1:]:
        _assert_bitwise_equal(results[n], results[1], f"{n} engine threads vs 1")


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("checkpoint", [None, 4])
def test_a_failing_pass_names_the_same_layer_for_every_thread_count(restore_threads, checkpoint, batch):
    # Layer 0: a_1 = sigmoid(-7.6e17) ~ 2^-1.1e18, carried up by identity layers;
    # the top sigmoid (bias -6.9e16) makes every delta ~ 2^-1e17, so the weight
    # gradient delta_l a_l of every layer is beyond 2^-(2^60). A
    # layer-by-layer backward sweep meets the top layer's first.
    depth = 12
    ws = [np.array([[-7.6e17]])] + [np.ones((1, 1))] * (depth - 1)
    bs = [np.zeros(1)] * (depth - 1) + [np.array([-6.9e16])]
    net = lg.Network(ws, bs, ["sigmoid"] + ["identity"] * (depth - 2) + ["sigmoid"])
    x, y = np.ones((batch, 1)), np.ones((batch, 1))  # batch 1 and the general weight-gradient product
    for n in _THREADS:
        _core.set_num_threads(n)
        for _ in range(3):
            with pytest.raises(lg.ExponentRangeError, match=rf"^layer {depth - 1} gradients: a value below"):
                net.backward(x, y, checkpoint=checkpoint, on_underflow="raise")
        # with no weight gradients asked for, the chain meets the input gradient
        # delta_0 W_0 ~ 2^-1.2e18 first
        with pytest.raises(lg.ExponentRangeError, match=r"^layer 0 input gradients: a value below"):
            net.backward(x, y, checkpoint=checkpoint, layers=[], on_underflow="raise")
    # the lower layers fail too (layer 0: delta_0 = delta_1 sigmoid'(-7.6e17)),
    # and with the top ones left out, the highest selected is named
    _core.set_num_threads(2)
    for layers, named in (([0], 0), ([0, 5], 5), ([2, 3, 4], 4)):
        with pytest.raises(lg.ExponentRangeError, match=rf"^layer {named} gradients: a value below"):
            net.backward(x, y, checkpoint=checkpoint, layers=layers, on_underflow="raise")


@pytest.mark.parametrize("batch", [127, 130])
def test_a_weight_gradient_beyond_range_from_the_last_rows_is_reported(restore_threads, batch):
    """Where a layer's operands are smaller than its weight gradient (batch < width / 2),
    the gradient's range test starts from a bound on their exponents, which the product
    takes (from 128 rows on, in blocks of 64 rows). Here only the last row has nonzero
    deltas (the others' outputs equal their targets exactly) and tiny activations
    (sigmoid(-7.6e17) ~ 2^-1.1e18): every weight gradient is beyond 2^-(2^60), and the top
    layer's must be the one named."""
    width, depth = 512, 4
    ws = [np.eye(width) * -7.6e17] + [np.eye(width)] * (depth - 2) + [np.eye(width) * 2.8e17]
    bs = [np.zeros(width)] * (depth - 1) + [np.full(width, -6.9e16)]
    net = lg.Network(ws, bs, ["sigmoid"] + ["identity"] * (depth - 2) + ["sigmoid"])
    x = np.zeros((batch, width))
    x[-1] = 1.0
    y = np.ones((batch, width))  # rows of x = 0: outputs sigmoid(7.1e16), exactly 1.0
    y[-1] = 0.0
    for n in _THREADS:
        _core.set_num_threads(n)
        with pytest.raises(lg.ExponentRangeError, match=rf"^layer {depth - 1} gradients: a value below"):
            net.backward(x, y, on_underflow="raise")


def test_a_failing_wide_layer_reports_the_same_element_for_every_thread_count(restore_threads):
    """Many elements of a wide layer leave the range at once, in several chunks of rows
    that run on different threads: the message (which names the value) is the one
    the first failing chunk gives, whatever the timing."""
    rng = np.random.default_rng(3)
    width, batch = 256, 96
    net = lg.Network([rng.standard_normal((width, width)) * 1e9], None, "gelu")
    x = rng.standard_normal((batch, width)) * np.exp(rng.uniform(0, 25, (batch, width)))
    messages = set()
    for n in _THREADS:
        _core.set_num_threads(n)
        for _ in range(5):
            for call in (lambda: net.forward(x, on_underflow="raise"),
                         lambda: net.backward(x, np.zeros((batch, width)), on_underflow="raise")):
                with pytest.raises(lg.ExponentRangeError, match=r"^layer 0 activations: a value below") as err:
                    call()
                messages.add(str(err.value))
    assert len(messages) == 1, messages


# -- batches in blocks of rows ------------------------------------------------------
# In narrow networks, blocks of 32 rows each go through the whole forward pass
# and backward chain on their own. Batches of 64 and 70 rows (blocks 32+32 and
# 32+32+6) with every output compared with a plain numpy backprop, the input
# gradient included, and the bits with any number of engine threads.


@pytest.mark.parametrize("batch", [31, 64, 70])
@pytest.mark.parametrize("checkpoint", [None, 3])
@pytest.mark.parametrize("widest", [24, 130])  # 130: too wide for blocks, the whole batch at once
def test_row_blocks_match_numpy_and_do_not_depend_on_threads(restore_threads, batch, checkpoint, widest):
    from reference import np_backward

    rng = np.random.default_rng(batch)
    widths, acts = [7, 24, widest, 16, 24, 24, 5], ["tanh", "relu", "sigmoid", "tanh", "relu", "identity"]
    net = _chain(rng, widths, acts, 1.2)
    x, y = rng.standard_normal((batch, 7)), rng.standard_normal((batch, 5))
    ref = np_backward(net.weights, net.biases, acts, x, y, "mse")
    got = {}
    for n in _THREADS:
        _core.set_num_threads(n)
        for precision in ("extended", "float64"):
            g = net.backward(x, y, precision=precision, checkpoint=checkpoint)
            got[n, precision] = _result_planes(g)
            if n > 1:
                continue
            out = net.forward(x, precision=precision)
            out = out.to_numpy() if isinstance(out, lg.LogArray) else out
            np.testing.assert_allclose(out, ref["output"], rtol=1e-12, atol=1e-14)
            grads = [(g.input, ref["input"])]
            grads += [(g.weights[l], ref["weights"][l]) for l in range(net.depth)]
            grads += [(g.biases[l], ref["biases"][l]) for l in range(net.depth)]
            for mine, theirs in grads:
                mine = mine.to_numpy() if isinstance(mine, lg.LogArray) else np.asarray(mine)
                np.testing.assert_allclose(mine, theirs, rtol=1e-10, atol=1e-15)
    for n in _THREADS[1:]:
        for precision in ("extended", "float64"):
            _assert_bitwise_equal(got[n, precision], got[1, precision], f"{precision}, {n} engine threads vs 1")


# -- instruction sets ------------------------------------------------------------
# The elementwise kernels run as AVX-512 builds where the CPU has AVX-512 (F, VL,
# DQ, BW), AVX2 builds where it has AVX2 (or with LOGGRAD_SIMD=avx2) and baseline
# (SSE2) builds elsewhere, or with LOGGRAD_SIMD=baseline. All must give
# the same bits: every activation, both precisions, narrow (row blocks) and wide
# layers, one-row chains (the narrow runs), inputs over many binades, zeros and a
# checkpointed pass.

_ISA_SCRIPT = r"""
import hashlib, sys
import numpy as np
import loggrad as lg
from loggrad import _core
h = hashlib.sha256()
# (scale: weights times it, so that relu and identity layers leave float64 range)
cases = [(30, 32, 64, a, 1.0) for a in lg.ACTIVATIONS] + [(6, 160, 40, "relu", 1.0), (6, 160, 40, "tanh", 1.0),
         (200, 4, 3, "sigmoid", 1.0), (12, 24, 1, "gelu", 1.0), (8, 16, 5, "relu", 2.0**200),
         (8, 16, 5, "identity", 2.0**300),
         # one-row passes: the narrow runs (forward, chain and weight-gradient kernels of up to
         # 16 layers a call), one of them with values far below float64's range
         (40, 4, 1, "tanh", 1.0), (40, 4, 1, "relu", 1.0), (40, 16, 1, "identity", 1.0),
         (1200, 4, 1, "tanh", 0.3)]
for i, (depth, width, batch, act, scale) in enumerate(cases):
    rng = np.random.default_rng(i)
    ws = rng.standard_normal((depth, width, width)) / np.sqrt(width) * rng.uniform(0.6, 1.6) * scale
    ws[rng.random(ws.shape) < 0.05] = 0.0
    net = lg.Network(ws, rng.standard_normal((depth, width)) * 0.1, act)
    x = rng.standard_normal((batch, width)) * np.exp(rng.uniform(-20, 20, (batch, width)))
    x[rng.random(x.shape) < 0.05] = 0.0
    y = rng.standard_normal((batch, width))
    for precision in ("extended", "float64"):
        for cp in (None, 4):
            g = net.backward(x, y, precision=precision, checkpoint=cp)
            for v in (g.params, g.input, g.output, g.loss):
                if precision == "extended":
                    h.update(np.ascontiguousarray(v.mantissa).tobytes())
                    h.update(np.ascontiguousarray(v.exponent).tobytes())
                else:
                    h.update(np.ascontiguousarray(v).tobytes())
print(_core.kernel_isa(), h.hexdigest())
"""


def test_baseline_avx2_and_avx512_kernels_give_the_same_bits():
    import subprocess
    import sys

    out = {}
    for setting in ("auto", "avx2", "baseline"):
        env = dict(os.environ)
        env.pop("LOGGRAD_SIMD", None)
        if setting != "auto":
            env["LOGGRAD_SIMD"] = setting
        r = subprocess.run([sys.executable, "-c", _ISA_SCRIPT], capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        out[setting] = r.stdout.split()
    assert out["baseline"][0] == "baseline"
    if out["auto"][0] == "baseline":
        pytest.skip("this CPU has no AVX2: only the baseline kernels run here")
    assert out["avx2"][0] == "avx2"
    assert out["avx2"][1] == out["baseline"][1]
    assert out["auto"][1] == out["baseline"][1], f"the {out['auto'][0]} build differs"
    if out["auto"][0] != "avx512":
        pytest.skip("this CPU has no AVX-512: the AVX2 and baseline kernels agree")


def _gemm_in_documented_order(ta: bool, tb: bool, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemm_naive's order, one numpy operation at a time (no FMA, no reordering): with op(B)
    transposed four partial sums by k mod 4 combined as (s0 + s1) + (s2 + s3), otherwise the
    outputs accumulated in k order from 0.0 + the k = 0 term."""
    A, B = (a.T if ta else a), (b.T if tb else b)  # op(A): M x K, op(B): K x N
    K = A.shape[1]
    if not ta and tb:
        s = np.zeros((4, A.shape[0], B.shape[1]))
        for k in range(K):
            s[k % 4] += A[:, k : k + 1] * B[k]
        return (s[0] + s[1]) + (s[2] + s[3])
    c = 0.0 + A[:, 0:1] * B[0]
    for k in range(1, K):
        c += A[:, k : k + 1] * B[k]
    return c


def test_small_gemm_keeps_its_documented_summation_order() -> None:
    """The small-product kernel (register tiles, AVX2 or SSE2 build) sums in the order its
    header documents, for all four transposes and shapes around the tile sizes: a kernel that
    reorders a sum (or fuses a multiply-add) would differ in the last bits."""
    rng = np.random.default_rng(3)
    for ta in (False, True):
        for tb in (False, True):
            for M, N, K in [(1, 32, 32), (32, 32, 1), (3, 37, 11), (5, 16, 33), (2, 4, 3), (1, 1, 1), (7, 49, 6)]:
                a = rng.standard_normal((K, M) if ta else (M, K)) * 10.0 ** rng.integers(-3, 4, (K, M) if ta else (M, K))
                b = rng.standard_normal((N, K) if tb else (K, N))
                want = _gemm_in_documented_order(ta, tb, a, b)
                got = lg._core.gemm_fixed_order(a, b, ta, tb)
                np.testing.assert_array_equal(got.view(np.int64), want.view(np.int64))
