"""loggrad bench: backward passes of dense chains, loggrad against other engines.

Engines, each only when installed: loggrad extended and float64, a plain numpy
backprop, PyTorch float64 on the CPU (same thread count) and JAX float64
(the faster of ``jit`` of a ``lax.scan`` over the stacked layers and, for
nets up to JAX_UNROLL_MAX_DEPTH layers, ``jit`` of a Python loop over them;
its compile time is reported separately and not counted in the pass time). Every result is
checked against the numpy backprop (loss and first-layer weight gradient)
before it is timed: all problems here stay in float64 range.

For each configuration the suite reports the median pass time, the achieved
GFLOP/s ((6 * depth - 2) * batch * width^2 per backward pass) and its fraction of
the machine's float64 matmul peak (numpy dgemm at 1024 and 2048, measured in
the same run), and optionally the peak memory of a pass against its minimum.

    python -m loggrad.bench                       # a quick representative subset
    python -m loggrad.bench --grid full --json bench.json --plot ratios.png
    python -m loggrad.bench --threads 1           # re-runs itself with every engine on 1 thread

``main(argv)`` is what ``loggrad bench`` calls. The JSON it writes has the
layout of pytest-benchmark's (``benchmarks[i].stats``, ``extra_info``), so
``benchmarks/ratios.py`` reads both.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
# What an engine returns for one pass: (loss, dL/dW_0 as float64).
Result = tuple[float, Array]
Runner = Callable[[], Result]

DEPTHS = (10, 100, 1000, 10000)
WIDTHS = (4, 32, 256, 1024)
BATCHES = (1, 64, 256)
ACTIVATIONS = ("tanh", "relu")
ENGINES = ("loggrad-extended", "loggrad-float64", "numpy", "torch", "jax")
# Work of one pass above which a configuration is skipped ("a few seconds").
MAX_FLOPS = 1.2e11
# Memory of one pass above which a configuration is skipped.
MAX_BYTES = 24 << 30

# The default subset: the corners of the grid that decide the targets.
QUICK = (
    (1000, 4, 1), (1000, 32, 1), (10000, 4, 1), (1000, 32, 64), (100, 256, 64),
    (10, 1024, 256), (100, 1024, 256),
)


@dataclass(frozen=True)
class Config:
    depth: int
    width: int
    batch: int
    activation: str

    @property
    def flops(self) -> float:
        """Multiply-adds x 2 of a backward pass: the forward, dW and dL/da products
        (no engine is asked for dL/dx, the first layer's input product)."""
        return (6.0 * self.depth - 2.0) * self.batch * self.width * self.width

    @property
    def label(self) -> str:
        return f"d{self.depth}-w{self.width}-b{self.batch}-{self.activation}"

    def min_bytes(self, extended: bool) -> int:
        """Weights + gradients + stored activations and activation derivatives."""
        v = 16 if extended else 8
        params = self.depth * self.width * (self.width + 1)
        stored = self.batch * self.width * (2 * self.depth + 1)
        return 8 * params + v * params + v * stored


def skip_reason(cfg: Config, max_flops: float = MAX_FLOPS, max_bytes: int = MAX_BYTES) -> str | None:
    """Why a configuration is left out of the grid, or None."""
    if cfg.flops > max_flops:
        return f"{cfg.flops:.2g} flops per pass (> {max_flops:.2g}: more than a few seconds)"
    # The largest footprint of all engines: numpy keeps a, f'(z) and the gradients.
    need = cfg.min_bytes(True) + 8 * cfg.depth * cfg.width * (cfg.width + 1)
    if need > max_bytes:
        return f"{need / 2**30:.1f} GiB per pass (> {max_bytes / 2**30:.0f} GiB)"
    return None


def grid(depths: Iterable[int] = DEPTHS, widths: Iterable[int] = WIDTHS, batches: Iterable[int] = BATCHES,
         activations: Iterable[str] = ACTIVATIONS, max_flops: float = MAX_FLOPS,
         max_bytes: int = MAX_BYTES) -> list[Config]:
    """Configurations of the grid that fit the limits."""
    out = []
    for act in activations:
        for d in depths:
            for w in widths:
                for b in batches:
                    c = Config(d, w, b, act)
                    if skip_reason(c, max_flops, max_bytes) is None:
                        out.append(c)
    return out


# --------------------------------------------------------------------------- problems and engines


def make_problem(depth: int, width: int, batch: int, activation: str,
                 seed: int = 0) -> tuple[list[Array], list[Array], Array, Array]:
    """A chain with variance-preserving weights (tanh: N(0, 1/n), relu: N(0, 2/n)) and
    small random biases, so every engine's gradients stay in float64 range."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")
    for name, v in (("depth", depth), ("width", width), ("batch", batch)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    rng = np.random.default_rng(seed)
    gain = math.sqrt(2.0) if activation == "relu" else 1.0
    ws = [rng.standard_normal((width, width)) * (gain / math.sqrt(width)) for _ in range(depth)]
    bs = [0.01 * rng.standard_normal(width) for _ in range(depth)]
    x = rng.standard_normal((batch, width))
    y = 0.5 * rng.standard_normal((batch, width))
    return ws, bs, x, y


def numpy_forward(ws: Sequence[Array], bs: Sequence[Array], x: Array,
                  activation: str) -> tuple[list[Array], list[Array]]:
    """Textbook float64 forward pass: every layer's activations (x first) and derivatives f'(z)."""
    acts, ders = [x], []
    a = x
    for w, b in zip(ws, bs):
        z = a @ w.T + b
        if activation == "tanh":
            a = np.tanh(z)
            ders.append(1.0 - a * a)
        elif activation == "relu":
            a = np.maximum(z, 0.0)
            ders.append((z > 0).astype(np.float64))
        else:
            raise ValueError(f"unsupported activation {activation!r} (the baselines have tanh and relu)")
        acts.append(a)
    return acts, ders


def numpy_backward(ws: Sequence[Array], bs: Sequence[Array], x: Array, y: Array,
                   activation: str) -> tuple[float, list[Array], list[Array]]:
    """Textbook float64 backprop, mse loss (mean over all elements); returns (loss, [dW], [db])."""
    acts, ders = numpy_forward(ws, bs, x, activation)
    a = acts[-1]
    n = a.size
    loss = float(np.sum((a - y) ** 2) / n)
    g = 2.0 * (a - y) / n
    dws, dbs = [], []
    for layer in range(len(ws) - 1, -1, -1):
        d = g * ders[layer]
        dws.append(d.T @ acts[layer])
        dbs.append(d.sum(axis=0))
        if layer:  # dL/dx is not asked of any engine
            g = d @ ws[layer]
    return loss, dws[::-1], dbs[::-1]


def numpy_runner(ws: Sequence[Array], bs: Sequence[Array], x: Array, y: Array, activation: str) -> Runner:
    def run() -> Result:
        loss, dws, _ = numpy_backward(ws, bs, x, y, activation)
        return loss, dws[0]

    return run


def loggrad_runner(ws: Sequence[Array], bs: Sequence[Array], x: Array, y: Array, activation: str,
                   precision: str) -> Runner:
    from .network import Network

    net = Network(list(ws), list(bs), activation)

    def run() -> Result:
        g = net.backward(x, y, loss="mse", precision=precision, input_grad=False)
        w0 = g.weights[0]
        dw0 = np.asarray(w0.to_numpy() if hasattr(w0, "to_numpy") else w0, dtype=np.float64)
        loss = g.loss if isinstance(g.loss, np.ndarray) else g.loss.to_numpy() if g.loss is not None else math.nan
        return float(np.asarray(loss)), dw0

    return run


def torch_runner(ws: Sequence[Array], bs: Sequence[Array], x: Array, y: Array, activation: str,
                 threads: int | None = None) -> Runner | None:
    """PyTorch float64 on the CPU (nn.Sequential of Linear layers); None without torch."""
    try:
        torch: Any = importlib.import_module("torch")
    except ImportError:
        return None
    if threads:
        torch.set_num_threads(threads)
    layers: list[Any] = []
    for w, b in zip(ws, bs):
        lin = torch.nn.Linear(w.shape[1], w.shape[0]).double()
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        layers += [lin, torch.nn.Tanh() if activation == "tanh" else torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def run() -> Result:
        model.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model(xt), yt)
        loss.backward()
        return float(loss.item()), model[0].weight.grad.numpy()

    return run


# Deepest net for which JAX's unrolled form is built: its compile time grows with
# the depth (one traced layer each), and deep narrow nets are scan's regime anyway.
JAX_UNROLL_MAX_DEPTH = 200


def jax_runner(ws: Sequence[Array], bs: Sequence[Array], x: Array, y: Array,
               activation: str) -> tuple[Runner, float] | None:
    """JAX float64, the faster of its two forms: jit(value_and_grad) of a lax.scan over
    the stacked layers (all widths equal), and, up to JAX_UNROLL_MAX_DEPTH layers, jit of
    a Python loop over the layers (unrolled: the faster form when the net is shallow and
    wide). Each is compiled and timed (median of 3 calls after a warm-up); the runner of
    the faster is returned with its compile seconds, its form in ``runner.form``.
    None without jax."""
    try:
        jax: Any = importlib.import_module("jax")
        jnp: Any = importlib.import_module("jax.numpy")
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    act = jnp.tanh if activation == "tanh" else jax.nn.relu

    def scan_loss(params: Any, xx: Any, yy: Any) -> Any:
        def step(a: Any, wb: Any) -> tuple[Any, None]:
            w, b = wb
            return act(a @ w.T + b), None

        out, _ = jax.lax.scan(step, xx, params)
        return jnp.mean((out - yy) ** 2)

    def unrolled_loss(params: Any, xx: Any, yy: Any) -> Any:
        a = xx
        for w, b in zip(*params):
            a = act(a @ w.T + b)
        return jnp.mean((a - yy) ** 2)

    xj, yj = jnp.asarray(x), jnp.asarray(y)
    forms: list[tuple[str, Any, Any]] = [("scan", scan_loss, (jnp.asarray(np.stack(ws)), jnp.asarray(np.stack(bs))))]
    if len(ws) <= JAX_UNROLL_MAX_DEPTH:
        forms.append(("unrolled", unrolled_loss, ([jnp.asarray(w) for w in ws], [jnp.asarray(b) for b in bs])))

    def runner_of(form: str, compiled: Any, params: Any) -> Runner:
        def run() -> Result:
            loss, (gw, _) = compiled(params, xj, yj)
            jax.block_until_ready(gw)
            return float(loss), np.asarray(gw[0])

        run.form = form  # type: ignore[attr-defined]
        return run

    best: tuple[float, Runner, float] | None = None
    for form, fn, params in forms:
        t0 = time.perf_counter()
        compiled = jax.jit(jax.value_and_grad(fn)).lower(params, xj, yj).compile()
        compile_s = time.perf_counter() - t0
        run = runner_of(form, compiled, params)
        run()
        t = statistics.median(_timed(run) for _ in range(3))
        if best is None or t < best[0]:
            best = (t, run, compile_s)
    assert best is not None
    return best[1], best[2]


def installed(engine: str) -> bool:
    if engine.startswith("loggrad") or engine == "numpy":
        return True
    try:
        __import__(engine)
    except ImportError:
        return False
    return True


def make_runner(engine: str, cfg: Config, problem: tuple[list[Array], list[Array], Array, Array],
                threads: int | None = None) -> tuple[Runner, float | None] | None:
    """(runner, compile seconds or None) for an engine, or None when it is not installed."""
    ws, bs, x, y = problem
    if engine in ("loggrad-extended", "loggrad-float64"):
        return loggrad_runner(ws, bs, x, y, cfg.activation, engine.split("-")[1]), None
    if engine == "numpy":
        return numpy_runner(ws, bs, x, y, cfg.activation), None
    if engine == "torch":
        r = torch_runner(ws, bs, x, y, cfg.activation, threads)
        return None if r is None else (r, None)
    if engine == "jax":
        return jax_runner(ws, bs, x, y, cfg.activation)
    raise ValueError(f"unknown engine {engine!r}; valid: {', '.join(ENGINES)}")


# The correctness check every benchmarked result passes: each engine against a
# renormalised numpy backprop, the textbook float64 backprop with the backward
# delta rescaled by a power of two after every layer (exact), so it is what
# float64 would compute with an unbounded exponent and stays a reference where
# the gradients leave float64's range.

U = 2.0**-53  # float64 unit roundoff


def renormalised_backward(ws: Sequence[Array], bs: Sequence[Array], x: Array, y: Array,
                          activation: str) -> tuple[float, Array, int]:
    """mse loss, dL/dW_0 as (mantissas, exponent): dL/dW_0 = mantissas * 2**exponent.

    The forward pass (numpy_forward) and every product are numpy_backward's; only the delta is
    rescaled (by powers of two, which round nothing) so that it never under- or
    overflows. Activations of tanh and relu chains with variance-preserving
    weights stay in range on their own.
    """
    acts, ders = numpy_forward(ws, bs, x, activation)
    a = acts[-1]
    loss = float(np.sum((a - y) ** 2) / a.size)
    g = 2.0 * (a - y) / a.size
    exp = 0
    for layer in range(len(ws) - 1, 0, -1):
        g = (g * ders[layer]) @ ws[layer]
        top = float(np.abs(g).max())
        if top == 0.0:
            break  # every later delta is exactly zero too
        s = math.frexp(top)[1]
        g = np.ldexp(g, -s)
        exp += s
    dw0 = (g * ders[0]).T @ acts[0]
    return loss, dw0, exp


@functools.lru_cache(maxsize=4)
def _reference(cfg: Config) -> tuple[float, Array, int]:
    ws, bs, x, y = make_problem(cfg.depth, cfg.width, cfg.batch, cfg.activation)
    return renormalised_backward(ws, bs, x, y, cfg.activation)


def error_bound_units(cfg: Config) -> int:
    """Normwise relative error, in units of roundoff, that float64 arithmetic (unbounded
    exponent) may commit on dL/dW_0 of a chain: per layer, the forward and the
    backward product (a width-term dot product each) and the activation and its
    derivative (4 u each), plus the batch sum of the weight gradient; twice that,
    since the engine and the reference each commit it."""
    return 2 * (cfg.depth * (2 * cfg.width + 8) + cfg.batch)


def _extended_dw0(engine: str, cfg: Config) -> Any:
    """loggrad-extended's dL/dW_0 as a LogArray (its runner hands back float64 values, which
    flush to 0 out of range: the benchmark times the pass, not that conversion)."""
    from .network import Network

    ws, bs, x, y = make_problem(cfg.depth, cfg.width, cfg.batch, cfg.activation)
    g = Network(list(ws), list(bs), cfg.activation).backward(x, y, loss="mse", input_grad=False,
                                                             layers=[0])
    return g.weights[0]


def check_result(engine: str, got: Result, ref: Result | None, cfg: Config) -> None:
    """Raises AssertionError when an engine's loss or dL/dW_0 differs from the renormalised
    numpy backprop by more than float64 rounding allows (error_bound_units).

    `ref` (the plain numpy backprop's result) is not needed: the reference is rebuilt
    from the configuration, renormalised. Float64 engines are compared with the
    reference rounded to float64 (where it underflows, they must too, up to the
    bound); loggrad-extended is also compared in extended range, and must be exactly
    zero where the reference is.
    """
    del ref
    rloss, rm, rexp = _reference(cfg)
    units = error_bound_units(cfg)
    loss, dw0 = got
    if not abs(loss - rloss) <= units * U * abs(rloss):
        raise AssertionError(f"{engine} {cfg.label}: loss {loss!r} != the reference's {rloss!r} "
                             f"(bound {units} u)")
    scale = float(np.abs(rm).max())
    with np.errstate(under="ignore", over="ignore"):
        want = np.ldexp(rm, rexp)
        tol = units * U * math.ldexp(scale, rexp) + 2.0**-1074 * cfg.batch
    err = float(np.abs(np.asarray(dw0, dtype=np.float64) - want).max())
    if not err <= tol:
        raise AssertionError(f"{engine} {cfg.label}: dL/dW_0 differs from the reference by {err:.3g} "
                             f"(bound {tol:.3g}: {units} u of the largest |dL/dW_0|)")
    if engine != "loggrad-extended":
        return
    w0 = _extended_dw0(engine, cfg)
    if scale == 0:
        # the reference is exactly zero (a closed relu layer): so must the extended result be,
        # in every range, not only where float64 can see it
        nonzero = int(np.count_nonzero(np.asarray(w0.mantissa)))
        if nonzero:
            raise AssertionError(f"{engine} {cfg.label}: extended dL/dW_0 has {nonzero} nonzero entries "
                                 "where the reference is exactly zero")
    else:
        # both sides as mantissas of the reference's scale: exact powers of two apart
        e = np.clip(np.asarray(w0.exponent, dtype=np.int64) - rexp, -3000, 3000).astype(np.int32)
        with np.errstate(under="ignore", over="ignore"):
            m = np.ldexp(np.asarray(w0.mantissa, dtype=np.float64), e)
        err = float(np.abs(m - rm).max()) / scale
        if not err <= units * U:
            raise AssertionError(f"{engine} {cfg.label}: extended dL/dW_0 differs from the reference by "
                                 f"{err / U:.3g} u of its largest entry (bound {units} u); "
                                 f"largest |dL/dW_0| = 2^{rexp} x {scale:.6g}")


# --------------------------------------------------------------------------- measurement


SETTLE_S = 0.3  # seconds of quiet before each engine's measurement


def time_call(fn: Callable[[], object], min_time: float = 0.3, max_rounds: int = 200,
              min_rounds: int = 3) -> dict[str, Any]:
    """Statistics of repeated calls (one warm-up call first), as pytest-benchmark forms
    them (its ``Stats``), so `loggrad bench` and the pytest suite report alike."""
    try:
        from pytest_benchmark.stats import Stats
    except ImportError as exc:
        raise ImportError("timing needs pytest-benchmark's statistics: pip install 'loggrad[bench]'") from exc
    fn()
    st = Stats()
    start = time.perf_counter()
    ts: list[float] = []
    while len(ts) < min_rounds or (len(ts) < max_rounds and time.perf_counter() - start < min_time):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    for t in ts:  # Stats caches its figures when first read: fill it first
        st.update(t)
    out: dict[str, Any] = st.as_dict()
    out["iterations"] = 1
    return out


def matmul_peak(sizes: Sequence[int] = (1024, 2048), repeats: int = 5) -> dict[str, float]:
    """float64 GFLOP/s of numpy's dgemm (best of `repeats`) at each size, and their max as "peak"."""
    rng = np.random.default_rng(0)
    out: dict[str, float] = {}
    for n in sizes:
        a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
        a @ b
        best = min(_timed(lambda: a @ b) for _ in range(repeats))
        out[f"dgemm{n}"] = 2.0 * n**3 / best / 1e9
    out["peak"] = max(out.values())
    return out


def fresh_memory_rate(nbytes: int = 128 << 20, repeats: int = 2) -> dict[str, float]:
    """GB/s of writing memory just mapped ("first_touch": the kernel maps and zeroes each
    page on its first write) and of writing it again ("mapped"), best of `repeats`.

    A pass's first call writes all its result and work memory fresh (later calls reuse
    it through the engines' allocators), so its first call costs more than a later one
    by about its bytes at the first-touch rate. The rate is measured on a block small
    enough to be cheap; on a virtual machine whose memory the host backs lazily, memory
    the guest has not touched since it started is slower still (docs/performance.md:
    3.2 GB ran at 0.9 GB/s where 1 GB ran at 7.8)."""
    first = again = math.inf
    for _ in range(max(1, repeats)):
        a = np.empty(nbytes // 8)  # large: its own mapping, returned to the system when freed
        first = min(first, _timed(lambda: a.fill(1.0)))
        again = min(again, _timed(lambda: a.fill(2.0)))
        del a
    return {"first_touch": nbytes / first / 1e9, "mapped": nbytes / again / 1e9}


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_memory(fn: Callable[[], object]) -> int | None:
    """Bytes the process's resident set grew to above its level before fn() (Linux:
    the peak is reset through /proc/self/clear_refs); None where that is not available.
    Memory that earlier calls freed but the allocator kept is not counted: measure in a
    fresh process (pass_memory) for a pass's true footprint."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    before = _status_kib("VmRSS")
    fn()
    hwm = _status_kib("VmHWM")
    if before is None or hwm is None:
        return None
    return max(0, hwm - before) * 1024


def _memory_child(depth: int, width: int, batch: int, activation: str, engine: str) -> None:
    cfg = Config(depth, width, batch, activation)
    prob = make_problem(depth, width, batch, activation)
    made = make_runner(engine, cfg, prob)
    assert made is not None
    peak = peak_memory(made[0])
    print(json.dumps({"peak_bytes": peak}))


def pass_memory(cfg: Config, engine: str) -> int | None:
    """Peak memory of one backward pass in a fresh process: the resident-set growth during
    the pass plus the weights it reads (8 bytes per parameter); None where not measurable."""
    code = (f"from loggrad.bench import _memory_child; "
            f"_memory_child({cfg.depth}, {cfg.width}, {cfg.batch}, {cfg.activation!r}, {engine!r})")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"memory measurement of {engine} {cfg.label} failed: {r.stderr.strip()[-500:]}")
    grown = json.loads(r.stdout.strip().splitlines()[-1])["peak_bytes"]
    if grown is None:
        return None
    return int(grown) + 8 * cfg.depth * cfg.width * (cfg.width + 1)


# --------------------------------------------------------------------------- the suite


def run_suite(configs: Sequence[Config], engines: Sequence[str] = ENGINES, threads: int | None = None,
              min_time: float = 0.3, memory: bool = False, peak: dict[str, float] | None = None,
              log: Callable[[str], None] | None = None, rounds: int = 1) -> dict[str, Any]:
    """Benchmarks every engine on every configuration; returns pytest-benchmark-style JSON data.

    rounds > 1 measures the engines of a configuration in turn that many times
    and keeps each engine's round with the lowest median: on a shared machine
    a slow spell of a few seconds then lands on every engine's rounds alike
    instead of on whichever engine it happened to meet."""
    from . import _core

    if threads:
        _core.set_num_threads(threads)
    nthreads = _core.num_threads()
    measured = peak is None
    peak = peak if peak is not None else matmul_peak()
    if log:
        log(f"float64 matmul peak: {peak['peak']:.1f} GFLOP/s "
            + ", ".join(f"{k} {v:.1f}" for k, v in peak.items() if k != "peak"))
    fresh = fresh_memory_rate()
    if log:
        log(f"fresh memory: written at {fresh['first_touch']:.2f} GB/s on first touch, "
            f"{fresh['mapped']:.2f} GB/s once mapped")
    benches: list[dict[str, Any]] = []
    for cfg in configs:
        problem = make_problem(cfg.depth, cfg.width, cfg.batch, cfg.activation)
        ws, bs, x, y = problem
        ref = numpy_runner(ws, bs, x, y, cfg.activation)()
        runners: dict[str, tuple[Runner, float | None]] = {}
        first: dict[str, float] = {}  # the first call's time: fresh memory, caches and pools cold
        for engine in engines:
            made = make_runner(engine, cfg, problem, threads)
            if made is None:
                continue
            t0 = time.perf_counter()
            got = made[0]()
            first[engine] = time.perf_counter() - t0
            check_result(engine, got, ref, cfg)
            runners[engine] = made
        best: dict[str, dict[str, float]] = {}
        for _ in range(max(1, rounds)):
            for engine, (runner, _c) in runners.items():
                # The engine measured before may leave threads spinning for a while
                # (OpenMP's wait policy in PyTorch, XLA's pool): on 2 cores they take
                # one from whoever runs next. Let them go idle first.
                time.sleep(SETTLE_S)
                st = time_call(runner, min_time=min_time)
                if engine not in best or st["median"] < best[engine]["median"]:
                    best[engine] = st
        for engine, (runner, compile_s) in runners.items():
            stats = best[engine]
            extra: dict[str, Any] = {
                "engine": engine, "depth": cfg.depth, "width": cfg.width, "batch": cfg.batch,
                "activation": cfg.activation, "threads": nthreads, "flops": cfg.flops,
                "gflops": cfg.flops / stats["median"] / 1e9, "peak_gflops": peak["peak"],
            }
            extra["fraction_of_peak"] = extra["gflops"] / peak["peak"]
            extra["first_call_ratio"] = first[engine] / stats["median"]
            if compile_s is not None:
                extra["compile_s"] = compile_s
            if hasattr(runner, "form"):  # JAX: the faster of its scan and unrolled forms
                extra["form"] = runner.form
            if memory:
                extra["peak_bytes"] = pass_memory(cfg, engine) if engine.startswith("loggrad") else None
                extra["min_bytes"] = cfg.min_bytes(engine == "loggrad-extended")
            benches.append({
                "group": cfg.label, "name": f"test_backward[{cfg.label}-{engine}]",
                "fullname": f"loggrad.bench::{cfg.label}::{engine}", "params": {"engine": engine},
                "param": engine, "extra_info": extra, "stats": stats,
            })
            if log:
                c = f" (compile {compile_s:.2f} s)" if compile_s is not None else ""
                c += f" [{runner.form}]" if hasattr(runner, "form") else ""
                log(f"{cfg.label:24s} {engine:17s} {stats['median'] * 1e3:10.3f} ms  "
                    f"{extra['gflops']:7.2f} GFLOP/s  first call {extra['first_call_ratio']:.2f}x "
                    f"(+{first[engine] - stats['median']:.3g} s){c}")
        del runners
    if measured:
        # Measured again at the end, the best kept: a slow spell of a shared machine during
        # the first measurement would otherwise lower the peak and raise every fraction.
        again = matmul_peak()
        peak = {k: max(v, again.get(k, v)) for k, v in peak.items()}
        for b in benches:
            b["extra_info"]["peak_gflops"] = peak["peak"]
            b["extra_info"]["fraction_of_peak"] = b["extra_info"]["gflops"] / peak["peak"]
        if log:
            log(f"float64 matmul peak, measured again: {again['peak']:.1f} GFLOP/s; kept {peak['peak']:.1f}")
    return {
        "machine_info": {"node": platform.node(), "processor": platform.processor(),
                         "machine": platform.machine(), "python_version": platform.python_version(),
                         "cpu_count": os.cpu_count(), "cpu_model": _cpu_model(),
                         "cpus_used": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                         "matmul": peak, "fresh_memory_gbs": fresh,
                         # what ran: the engine's kernels (AVX2 or baseline build) and BLAS
                         "loggrad_simd_kernels": _core.kernel_isa(), "loggrad_blas": _core.blas_config()},
        "commit_info": {}, "benchmarks": benches,
        "datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(), "version": "loggrad.bench",
    }


def _cpu_model() -> str | None:
    """The CPU's model name and whether it has AVX-512 (Linux /proc/cpuinfo; None elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            info = f.read()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in info.splitlines()[:40] if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    name = fields.get("model name")
    if not name:
        return None
    if "cpu family" in fields:  # x86: the generation that the marketing name may leave out
        name += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    return name + (", AVX-512" if " avx512f" in fields.get("flags", "") else "")


# --------------------------------------------------------------------------- tables and plots

_KEY = ("depth", "width", "batch", "activation", "threads")


def _peak(data: dict[str, Any]) -> float | None:
    """The float64 matmul peak (GFLOP/s) recorded in the JSON: loggrad.bench's machine_info,
    or the best of pytest-benchmark's matmul entries (extra_info matmul_n and flops)."""
    mm = (data.get("machine_info") or {}).get("matmul") or {}
    best = float(mm["peak"]) if "peak" in mm else None
    for b in data.get("benchmarks", []):
        ex = b.get("extra_info") or {}
        if "matmul_n" in ex and ex.get("flops"):
            g = ex["flops"] / b["stats"]["median"] / 1e9
            best = g if best is None else max(best, g)
    return best


def _rows(data: dict[str, Any], kind: str = "pass") -> dict[tuple[Any, ...], dict[str, dict[str, Any]]]:
    """{config key: {engine: {"median": s, "gflops", "fraction_of_peak", **extra_info}}} from
    benchmark JSON; kind: "pass" (the grid), "scaling" or "memory" entries."""
    peak = _peak(data)
    rows: dict[tuple[Any, ...], dict[str, dict[str, Any]]] = {}
    for b in data.get("benchmarks", []):
        ex = b.get("extra_info") or {}
        if "engine" not in ex or ex.get("kind", "pass") != kind:
            continue
        key = tuple(ex.get(k) for k in _KEY)
        med = float(b["stats"]["median"])
        row = {"median": med, **ex}
        if ex.get("flops"):
            row.setdefault("gflops", ex["flops"] / med / 1e9)
            if peak:
                row.setdefault("fraction_of_peak", row["gflops"] / peak)
        rows.setdefault(key, {})[ex["engine"]] = row
    return rows


def _fmt_time(s: float) -> str:
    return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"


def _machine_line(data: dict[str, Any]) -> str | None:
    """Where the numbers come from: CPU, core count, BLAS and the float64 matmul peak."""
    mi = data.get("machine_info") or {}
    parts = []
    if mi.get("cpu_model"):
        parts.append(str(mi["cpu_model"]))
    if mi.get("cpu_count"):
        used = mi.get("cpus_used")
        parts.append(f"{mi['cpu_count']} CPUs" + (f" ({used} used)" if used and used < mi["cpu_count"] else ""))
    if mi.get("loggrad_blas"):
        parts.append(str(mi["loggrad_blas"]))
    peak = _peak(data)
    if peak:
        parts.append(f"float64 matmul peak {peak:.1f} GFLOP/s")
    return "machine: " + "; ".join(parts) if parts else None


def ratio_table(data: dict[str, Any]) -> str:
    """Markdown: per configuration loggrad's times and how many times faster loggrad
    extended (and float64) is than each other engine (> 1: loggrad wins)."""
    rows = _rows(data)
    others = [e for e in ("numpy", "torch", "jax") if any(e in r for r in rows.values())]
    head = ["depth", "width", "batch", "act", "thr", "loggrad ext", "loggrad f64", "ext/f64"]
    head += [f"{e}÷ext" for e in others] + [f"{e}÷f64" for e in others]
    head += ["f64 GFLOP/s", "% peak"]
    if any("compile_s" in v for r in rows.values() for v in r.values()):
        head.append("jax compile (form)")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    machine = _machine_line(data)
    if machine:
        lines[:0] = [machine, ""]
    for key in sorted(rows, key=lambda k: tuple(str(v).zfill(8) for v in (k[3], k[4], k[0], k[1], k[2]))):
        r = rows[key]
        ext, f64 = r.get("loggrad-extended"), r.get("loggrad-float64")
        cells = [str(v) for v in key[:5]]
        cells.append(_fmt_time(ext["median"]) if ext else "–")
        cells.append(_fmt_time(f64["median"]) if f64 else "–")
        cells.append(f"{ext['median'] / f64['median']:.2f}" if ext and f64 else "–")
        for base in (ext, f64):
            for e in others:
                cells.append(f"{r[e]['median'] / base['median']:.3g}" if base and e in r else "–")
        cells.append(f"{f64['gflops']:.2f}" if f64 else "–")
        cells.append(f"{100 * f64['fraction_of_peak']:.0f}%" if f64 and "fraction_of_peak" in f64 else "–")
        if "jax compile (form)" in head:
            form = f" ({r['jax']['form']})" if "jax" in r and "form" in r["jax"] else ""
            cells.append(f"{r['jax']['compile_s']:.2f} s{form}" if "jax" in r else "–")
        lines.append("| " + " | ".join(cells) + " |")
    mem = [(k, e, v) for kind in ("pass", "memory") for k, r in _rows(data, kind).items()
           for e, v in r.items() if v.get("peak_bytes") and v.get("min_bytes")]
    if mem:
        lines += ["", "| config | engine | peak MiB | minimum MiB | peak/min |", "|---|---|---|---|---|"]
        for k, e, v in sorted(mem, key=lambda t: (str(t[0]), t[1])):
            if e.startswith("loggrad"):
                lines.append(f"| d{k[0]}-w{k[1]}-b{k[2]}-{k[3]} | {e} | {v['peak_bytes'] / 2**20:.1f} | "
                             f"{v['min_bytes'] / 2**20:.1f} | {v['peak_bytes'] / v['min_bytes']:.2f} |")
    scal = _rows(data, "scaling")
    if scal:
        by: dict[tuple[Any, ...], dict[int, float]] = {}
        for k, r in scal.items():
            for e, v in r.items():
                by.setdefault((k[0], k[1], k[2], k[3], e), {})[int(k[4])] = v["median"]
        lines += ["", "| config | engine | threads: time | speed-up |", "|---|---|---|---|"]
        for (d, w, bt, a, e), t in sorted(by.items(), key=lambda kv: str(kv[0])):
            lo, hi = min(t), max(t)
            lines.append(f"| d{d}-w{w}-b{bt}-{a} | {e} | " + ", ".join(f"{n}: {_fmt_time(t[n])}" for n in sorted(t))
                         + f" | {t[lo] / t[hi]:.2f}x on {hi} |")
    return "\n".join(lines)


def plot_ratios(data: dict[str, Any], path: str) -> None:
    """Speed-up of loggrad extended over each engine per configuration (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(data)
    if not rows:
        raise ValueError("no backward-pass benchmarks in the data")
    keys = sorted((k for k in rows if "loggrad-extended" in rows[k]),
                  key=lambda k: (str(k[3]), k[4] or 0, k[1], k[2], k[0]))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(keys) + 2), 4.5))
    xs = np.arange(len(keys))
    for e, marker in (("loggrad-float64", "s"), ("numpy", "o"), ("torch", "^"), ("jax", "D")):
        pts = [(i, rows[k][e]["median"] / rows[k]["loggrad-extended"]["median"])
               for i, k in enumerate(keys) if e in rows[k]]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker, label=f"{e} time ÷ loggrad extended")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"d{k[0]} w{k[1]} b{k[2]} {k[3]}" + (f" t{k[4]}" if k[4] else "") for k in keys],
                       rotation=70, ha="right", fontsize=7)
    ax.set_ylabel("other engine's time ÷ loggrad extended\n(>1: loggrad faster)", fontsize=9)
    # beside the axes, so that no point hides under it
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    ax.grid(True, which="both", axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


# --------------------------------------------------------------------------- command line


def _ints(s: str) -> list[int]:
    try:
        out = [int(v) for v in s.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {s!r}")
    return out


def _names(valid: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(s: str) -> list[str]:
        out = [v.strip() for v in s.split(",") if v.strip()]
        bad = [v for v in out if v not in valid]
        if bad or not out:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(bad) or 'empty list'}; valid: {', '.join(valid)}")
        return out

    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="loggrad bench", description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--grid", choices=("quick", "full"), default="quick",
                   help="quick: the corners that decide the targets (default); full: the whole grid "
                        "depth {10..10000} x width {4..1024} x batch {1,64,256} within the limits")
    p.add_argument("--depth", type=_ints, help="depths (comma-separated); with --width/--batch replaces --grid")
    p.add_argument("--width", type=_ints, help="widths (comma-separated)")
    p.add_argument("--batch", type=_ints, help="batch sizes (comma-separated)")
    p.add_argument("--activation", type=_names(ACTIVATIONS), default=["tanh"],
                   help="activations: tanh, relu or tanh,relu (default tanh)")
    p.add_argument("--engines", type=_names(ENGINES), default=list(ENGINES),
                   help=f"engines to run (default all installed: {','.join(ENGINES)})")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for every engine (re-runs in a fresh process so numpy's OpenBLAS and "
                        "JAX take it too, kept on that many CPUs on Linux); default: all cores")
    p.add_argument("--max-flops", type=float, default=MAX_FLOPS, help="skip configurations above this work")
    p.add_argument("--min-time", type=float, default=0.3, help="seconds of repeats per measurement")
    p.add_argument("--rounds", type=int, default=3,
                   help="measure the engines in turn this many times and keep each one's best median "
                        "(default 3; evens out slow spells of a shared machine)")
    p.add_argument("--memory", action="store_true", help="also measure the peak memory of a pass (Linux)")
    p.add_argument("--json", metavar="FILE", help="write the results (pytest-benchmark layout)")
    p.add_argument("--plot", metavar="FILE", help="write the ratio plot (matplotlib)")
    p.add_argument("--quiet", action="store_true", help="only the ratio table")
    return p


def _thread_env(n: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"LOGGRAD_NUM_THREADS": str(n), "OPENBLAS_NUM_THREADS": str(n), "OMP_NUM_THREADS": str(n),
                "MKL_NUM_THREADS": str(n),
                "XLA_FLAGS": (env.get("XLA_FLAGS", "") + f" --xla_cpu_multi_thread_eigen={'true' if n > 1 else 'false'}"
                              f" intra_op_parallelism_threads={n}").strip()})
    return env


def _cpu_pinning(n: int) -> Callable[[], None] | None:
    """For the child process of --threads n: keeps it, and every thread it starts, on n
    of this process's CPUs (Linux). The thread settings are requests that not every
    engine honours in full: JAX's CPU client runs a pool of its own beside
    intra_op_parallelism_threads (measured: about 1.9 cores busy at "one thread")."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if n >= len(cpus):
        return None
    return lambda: os.sched_setaffinity(0, cpus[:n])


def main(argv: list[str]) -> int:
    """`loggrad bench`: runs the chosen part of the grid, prints the ratio table; 0 on
    success, 1 when an engine's result disagrees with the numpy backprop, 2 on bad usage."""
    p = _parser()
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if args.rounds < 1:
        print("loggrad bench: --rounds must be >= 1", file=sys.stderr)
        return 2
    if args.threads is not None:
        if args.threads < 1:
            print("loggrad bench: --threads must be >= 1", file=sys.stderr)
            return 2
        if os.environ.get("LOGGRAD_BENCH_CHILD") != "1":
            env = _thread_env(args.threads)
            env["LOGGRAD_BENCH_CHILD"] = "1"
            return subprocess.call([sys.executable, "-m", "loggrad.bench", *argv], env=env,
                                   preexec_fn=_cpu_pinning(args.threads))
    if args.depth or args.width or args.batch:
        configs = grid(args.depth or [1000], args.width or [32], args.batch or [1], args.activation,
                       args.max_flops)
    elif args.grid == "full":
        configs = grid(activations=args.activation, max_flops=args.max_flops)
    else:
        configs = [Config(d, w, b, a) for a in args.activation for d, w, b in QUICK
                   if skip_reason(Config(d, w, b, a), args.max_flops) is None]
    if not configs:
        print("loggrad bench: no configuration within the limits (see --max-flops)", file=sys.stderr)
        return 2
    engines = [e for e in args.engines if installed(e)]
    missing = [e for e in args.engines if e not in engines]
    log = None if args.quiet else (lambda s: print(s, flush=True))
    if log and missing:
        log(f"not installed, skipped: {', '.join(missing)}")
    try:
        data = run_suite(configs, engines, args.threads, args.min_time, args.memory, log=log,
                         rounds=args.rounds)
    except AssertionError as e:
        print(f"loggrad bench: result check failed: {e}", file=sys.stderr)
        return 1
    print()
    print(ratio_table(data))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
    if args.plot:
        try:
            plot_ratios(data, args.plot)
        except ImportError:
            print("loggrad bench: --plot needs matplotlib (pip install matplotlib)", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
