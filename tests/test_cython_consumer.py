"""The Cython C-level API, used the way a downstream package would use it.

Two tiny consumer modules are compiled against the *installed* loggrad, in a
temporary folder:

- ``lg_consumer`` (C, not C++): ``from loggrad cimport _engine`` and calls the
  whole-chain passes without the GIL. Nothing is linked against loggrad: the
  functions come from loggrad._engine's capsule table at import. Its results
  must equal the Python API's bit for bit.
- ``lg_consumer_cpp`` (C++): ``from loggrad cimport engine``, the declarations
  of the C++ headers installed at ``loggrad.get_include()``; it uses the
  header-only extended-number functions.

Skipped only when no C/C++ compiler is available.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

import loggrad as lg
import loggrad._engine

pytest.importorskip("Cython", reason="the consumer build needs Cython (in the [test] extra)")
pytest.importorskip("setuptools", reason="the consumer build needs setuptools (in the [test] extra)")

CONSUMER_C = r"""
# cython: language_level=3, boundscheck=False, wraparound=False
# A downstream module: calls loggrad's passes through the capsule API.
from libc.stdint cimport int64_t
from loggrad cimport _engine

import numpy as np


def codes():
    return [_engine.ACT_IDENTITY, _engine.ACT_SIGMOID, _engine.ACT_TANH, _engine.ACT_RELU,
            _engine.ACT_LEAKY_RELU, _engine.ACT_ELU, _engine.ACT_SELU, _engine.ACT_SOFTPLUS,
            _engine.ACT_GELU, _engine.ACT_SILU], [_engine.LOSS_MSE, _engine.LOSS_SUM,
            _engine.LOSS_BCE, _engine.LOSS_CROSS_ENTROPY]


def param_count(widths):
    cdef size_t[::1] w = np.asarray(widths, dtype=np.uintp)
    return _engine.param_count(w.shape[0] - 1, &w[0])


def workspace_bytes(widths, size_t batch, bint extended):
    cdef size_t[::1] w = np.asarray(widths, dtype=np.uintp)
    return _engine.workspace_bytes(w.shape[0] - 1, &w[0], batch, extended)


def forward(widths, acts, params, x, bint extended):
    cdef size_t[::1] w = np.asarray(widths, dtype=np.uintp)
    cdef int[::1] a = np.asarray(acts, dtype=np.intc)
    cdef double[::1] p = np.ascontiguousarray(params, dtype=np.float64)
    cdef double[:, ::1] xv = np.ascontiguousarray(x, dtype=np.float64)
    cdef size_t depth = a.shape[0], batch = xv.shape[0]
    om = np.empty((batch, w[depth]))
    oe = np.empty((batch, w[depth]), dtype=np.int64)
    cdef double[:, ::1] omv = om
    cdef int64_t[:, ::1] oev = oe
    with nogil:
        if extended:
            _engine.forward_ext(depth, &w[0], &a[0], &p[0], &xv[0, 0], batch, &omv[0, 0], &oev[0, 0])
        else:
            _engine.forward_f64(depth, &w[0], &a[0], &p[0], &xv[0, 0], batch, &omv[0, 0])
    return (om, oe) if extended else om


def backward(widths, acts, params, x, int loss, y, labels, bint extended):
    cdef size_t[::1] w = np.asarray(widths, dtype=np.uintp)
    cdef int[::1] a = np.asarray(acts, dtype=np.intc)
    cdef double[::1] p = np.ascontiguousarray(params, dtype=np.float64)
    cdef double[:, ::1] xv = np.ascontiguousarray(x, dtype=np.float64)
    cdef double[:, ::1] yv
    cdef int64_t[::1] lv
    cdef const double* yp = NULL
    cdef const int64_t* lp = NULL
    cdef size_t depth = a.shape[0], batch = xv.shape[0]
    cdef size_t n = _engine.param_count(depth, &w[0])
    if y is not None:
        yv = np.ascontiguousarray(y, dtype=np.float64)
        yp = &yv[0, 0]
    if labels is not None:
        lv = np.ascontiguousarray(labels, dtype=np.int64)
        lp = &lv[0]
    res = [np.empty(()), np.empty((batch, w[depth])), np.empty(n), np.empty((batch, w[0]))]
    exps = [np.empty(r.shape, dtype=np.int64) for r in res]
    cdef double[::1] loss_m = res[0].reshape(1), grad_m = res[2]
    cdef double[:, ::1] out_m = res[1], dx_m = res[3]
    cdef int64_t[::1] loss_e = exps[0].reshape(1), grad_e = exps[2]
    cdef int64_t[:, ::1] out_e = exps[1], dx_e = exps[3]
    with nogil:
        if extended:
            _engine.backward_ext(depth, &w[0], &a[0], &p[0], &xv[0, 0], batch, loss, yp, lp,
                                 &loss_m[0], &loss_e[0], &out_m[0, 0], &out_e[0, 0],
                                 &grad_m[0], &grad_e[0], &dx_m[0, 0], &dx_e[0, 0])
        else:
            _engine.backward_f64(depth, &w[0], &a[0], &p[0], &xv[0, 0], batch, loss, yp, lp,
                                 &loss_m[0], &out_m[0, 0], &grad_m[0], &dx_m[0, 0])
    return list(zip(res, exps)) if extended else res
"""

CONSUMER_CPP = r"""
# cython: language_level=3
# distutils: language = c++
# A downstream module using the C++ header declarations (header-only parts).
from libc.stdint cimport int64_t
from loggrad cimport engine

import numpy as np


def product(values):
    # Exact product of float64 values in the extended range: (mantissa, exponent, log10).
    cdef engine.Ext acc = engine.kExtOne
    cdef double v
    for v in values:
        acc = engine.mul(acc, engine.from_double(v))
    return acc.m, acc.e, engine.log10abs(acc)


def constants():
    return engine.kMaxExp, engine.kZeroExp, <int>engine.Activation.silu, <int>engine.Loss.cross_entropy


def add_mul(double[::1] am, int64_t[::1] ae, double[::1] bm, int64_t[::1] be):
    # Elementwise a + b and a * b, by the scalar functions and by the array forms.
    cdef size_t i, n = am.shape[0]
    out = {k: (np.empty(n), np.empty(n, dtype=np.int64)) for k in ("add", "mul", "add_n", "mul_n")}
    cdef double[::1] sm = out["add"][0], pm = out["mul"][0], vm = out["add_n"][0], wm = out["mul_n"][0]
    cdef int64_t[::1] se = out["add"][1], pe = out["mul"][1], ve = out["add_n"][1], we = out["mul_n"][1]
    cdef engine.Ext r
    for i in range(n):
        r = engine.add(engine.Ext(am[i], ae[i]), engine.Ext(bm[i], be[i]))
        sm[i], se[i] = r.m, r.e
        r = engine.mul(engine.Ext(am[i], ae[i]), engine.Ext(bm[i], be[i]))
        pm[i], pe[i] = r.m, r.e
        vm[i], ve[i], wm[i], we[i] = am[i], ae[i], bm[i], be[i]
    engine.add_n(n, &vm[0], &ve[0], &bm[0], &be[0])
    engine.mul_n(n, &am[0], &ae[0], &wm[0], &we[0])
    return out
"""

SETUP = r"""
import sys
from Cython.Build import cythonize
from setuptools import Extension, setup

include = sys.argv.pop(1)
cxx17 = ["/std:c++17"] if sys.platform == "win32" else ["-std=c++17"]
exts = [
    Extension("lg_consumer", ["lg_consumer.pyx"]),
    Extension("lg_consumer_cpp", ["lg_consumer_cpp.pyx"], language="c++",
              include_dirs=[include], extra_compile_args=cxx17),
]
setup(name="lg-consumer", ext_modules=cythonize(exts, quiet=True),
      script_args=["build_ext", "--inplace"])
"""


def _header_dir() -> str:
    """loggrad.get_include(); in an editable (scikit-build-core redirect) install
    the headers sit in the install tree beside the compiled modules instead."""
    inc = lg.get_include()
    if os.path.isfile(os.path.join(inc, "loggrad", "network.hpp")):
        return inc
    return os.path.join(os.path.dirname(lg._core.__file__), "include")


def _compiler_missing() -> str | None:
    """Why no compiler can be used, or None when one can."""
    if sys.platform == "win32":
        try:
            from setuptools._distutils import ccompiler

            cc: Any = ccompiler.new_compiler()
            cc.initialize()
        except Exception as exc:  # DistutilsPlatformError: no MSVC
            if "Microsoft Visual C++" in str(exc) or type(exc).__name__.endswith("PlatformError"):
                return f"no C++ compiler: {exc}"
        return None
    for var in ("CC", "CXX"):
        cmd = (os.environ.get(var) or sysconfig.get_config_var(var) or "").split()
        if not cmd or shutil.which(cmd[0]) is None:
            return f"no {var} compiler found ({' '.join(cmd) or 'unset'})"
    return None


@pytest.fixture(scope="module")
def consumers(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, ModuleType]:
    why = _compiler_missing()
    if why:
        pytest.skip(why)
    d: Path = tmp_path_factory.mktemp("cython_consumer")
    (d / "lg_consumer.pyx").write_text(textwrap.dedent(CONSUMER_C))
    (d / "lg_consumer_cpp.pyx").write_text(textwrap.dedent(CONSUMER_CPP))
    (d / "setup.py").write_text(SETUP)
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    # A fresh interpreter: Cython finds loggrad/_engine.pxd on its sys.path, as a user's would.
    r = subprocess.run([sys.executable, "setup.py", _header_dir()], cwd=d, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"consumer build failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    sys.path.insert(0, str(d))
    try:
        return importlib.import_module("lg_consumer"), importlib.import_module("lg_consumer_cpp")
    finally:
        sys.path.remove(str(d))


def _bits(a: Any) -> np.ndarray:
    """float64 or int64 array as raw bits, so that -0.0 != 0.0 and equality is bitwise."""
    a = np.ascontiguousarray(a)
    return np.asarray(a.view(np.uint64 if a.dtype == np.float64 else np.int64))


def _same(a: Any, b: Any) -> None:
    assert np.shape(a) == np.shape(b)
    np.testing.assert_array_equal(_bits(a), _bits(b))


def _same_ext(parts: tuple[np.ndarray, np.ndarray], arr: lg.LogArray) -> None:
    m, e = parts
    _same(m, arr.mantissa)
    _same(e, arr.exponent)


CASES = [
    # depth, width, activation(s), loss
    (1500, 4, "sigmoid", "mse"),      # far below float64's range
    (400, 3, "identity", "sum"),      # weights ~3: far above it
    (60, 5, ["tanh", "relu", "gelu", "silu", "softplus", "elu"] * 10, "bce"),
    (40, 6, ["selu", "leaky_relu", "sigmoid", "identity"] * 10, "cross_entropy"),
]


def _case(depth: int, width: int, acts: Any, loss: str, seed: int) -> tuple[lg.Network, np.ndarray, Any]:
    rng = np.random.default_rng(seed)
    scale = 3.0 if loss == "sum" else 1.0
    ws = [scale * rng.standard_normal((width, width)) for _ in range(depth)]
    bs = [0.1 * rng.standard_normal(width) for _ in range(depth)]
    net = lg.Network(ws, bs, acts)
    x = rng.standard_normal((3, width))
    if loss == "cross_entropy":
        y: Any = rng.integers(0, width, size=3)
    elif loss == "sum":
        y = None
    else:
        y = rng.random((3, width))
    return net, x, y


def _codes(net: lg.Network) -> list[int]:
    return [list(lg._engine.ACTIVATIONS).index(a) for a in net.activations]


@pytest.mark.parametrize("depth,width,acts,loss", CASES)
def test_backward_matches_python_api_bitwise(consumers: Any, depth: int, width: int, acts: Any, loss: str) -> None:
    c, _ = consumers
    net, x, y = _case(depth, width, acts, loss, seed=depth)
    code = lg.LOSSES.index(loss)
    ya = y if loss in ("mse", "bce") else None
    labels = y if loss == "cross_entropy" else None

    g = net.backward(x, y, loss=loss)
    (lm, le), out, grad, dx = c.backward(net.widths, _codes(net), net.params, x, code, ya, labels, True)
    assert isinstance(g.loss, lg.LogArray) and isinstance(g.params, lg.LogArray)
    _same_ext((lm, le), g.loss)
    _same_ext(out, g.output)  # type: ignore[arg-type]
    _same_ext(grad, g.params)
    _same_ext(dx, g.input)  # type: ignore[arg-type]
    # per-layer views agree too (the layout is the engine's parameter layout)
    _same_ext((grad[0][: width * width].reshape(width, width), grad[1][: width * width].reshape(width, width)),
              g.weights[0])  # type: ignore[arg-type]

    g64 = net.backward(x, y, loss=loss, precision="float64")
    l64, out64, grad64, dx64 = c.backward(net.widths, _codes(net), net.params, x, code, ya, labels, False)
    for a, b in ((l64, g64.loss), (out64, g64.output), (grad64, g64.params), (dx64, g64.input)):
        _same(a, b)


def test_deep_gradient_is_beyond_float64(consumers: Any) -> None:
    """The first case really exercises the extended range (not a vacuous match)."""
    c, _ = consumers
    net, x, y = _case(*CASES[0], seed=CASES[0][0])
    _, _, (gm, ge), _ = c.backward(net.widths, _codes(net), net.params, x, 0, y, None, True)
    w0 = slice(0, net.widths[0] * net.widths[1])
    assert np.all(ge[w0] < -1075) and np.all(gm[w0] != 0)


@pytest.mark.parametrize("extended", [True, False])
def test_forward_matches_python_api_bitwise(consumers: Any, extended: bool) -> None:
    c, _ = consumers
    net, x, _ = _case(50, 4, ["tanh", "softplus"] * 25, "mse", seed=7)
    res = c.forward(net.widths, _codes(net), net.params, x, extended)
    if extended:
        _same_ext(res, net.forward(x))  # type: ignore[arg-type]
    else:
        _same(res, net.forward(x, precision="float64"))


def test_codes_and_sizes(consumers: Any) -> None:
    c, _ = consumers
    acts, losses = c.codes()
    assert acts == list(range(len(lg.ACTIVATIONS))) and losses == list(range(len(lg.LOSSES)))
    assert lg._engine.ACTIVATIONS == lg.ACTIVATIONS and lg._engine.LOSSES == lg.LOSSES
    net = lg.Network([np.ones((3, 2)), np.ones((5, 3))], None, "relu")
    assert c.param_count(net.widths) == net.param_count == 3 * 3 + 5 * 4
    for ext in (True, False):
        assert c.workspace_bytes(net.widths, 7, ext) == net._arch.workspace_bytes(7, ext)


def test_errors_become_python_exceptions(consumers: Any) -> None:
    c, _ = consumers
    w = [2, 2]
    p = np.ones(6)
    x = np.ones((1, 2))
    with pytest.raises(ValueError, match="activation code"):
        c.backward(w, [99], p, x, 1, None, None, True)
    with pytest.raises(ValueError, match="loss code"):
        c.backward(w, [0], p, x, 17, None, None, True)
    with pytest.raises(ValueError, match="need y"):
        c.backward(w, [0], p, x, 0, None, None, True)
    with pytest.raises(ValueError, match="non-finite"):
        c.backward(w, [0], np.array([1, np.nan, 0, 0, 0, 0]), x, 1, None, None, False)
    with pytest.raises(ValueError, match="zero"):
        c.backward([2, 0], [0], p, x, 1, None, None, True)
    # sigmoid'(1e18) = e^-1e18 is beyond even the extended range: the same
    # exception class as the Python API raises
    big = lg.Network([np.full((1, 1), 1e18)], None, "sigmoid")
    with pytest.raises(lg.ExponentRangeError):
        big.backward(np.ones((1, 1)), loss="sum", on_underflow="raise")
    with pytest.raises(lg.ExponentRangeError):
        c.backward(big.widths, [1], big.params, np.ones((1, 1)), 1, None, None, True)


def test_cpp_header_declarations(consumers: Any) -> None:
    _, cpp = consumers
    m, e, l10 = cpp.product([0.25] * 10_000)  # 2^-20000: exact, 0.0 in float64
    assert (m, e) == (0.5, -19_999)
    assert l10 == pytest.approx(-20_000 * np.log10(2.0), rel=1e-15)
    rng = np.random.default_rng(1)
    vals = rng.standard_normal(2_000)
    m, e, _ = cpp.product(vals)
    ref = lg.LogArray(vals)
    acc = ref[0:1]
    for i in range(1, len(vals)):
        acc = acc * ref[i : i + 1]
    assert (m, e) == (float(acc.mantissa[0]), int(acc.exponent[0]))
    assert cpp.constants() == (lg._core.max_exponent, lg._core.zero_exponent,
                               lg.ACTIVATIONS.index("silu"), lg.LOSSES.index("cross_entropy"))


def test_array_add_and_mul_match_the_scalar_ones_bitwise(consumers: Any) -> None:
    """add_n / mul_n (the vectorised forms the passes use) give add() / mul()'s bits, also
    where add() takes its shortcuts: zeros, exponent gaps around 64 and beyond, cancellation."""
    _, cpp = consumers
    rng = np.random.default_rng(7)
    n = 200_000
    zero_e = lg._core.zero_exponent
    mant = lambda: rng.uniform(0.5, 1.0, n) * rng.choice([-1.0, 1.0], n)  # noqa: E731
    am, bm = mant(), mant()
    ae = rng.integers(-3000, 3000, n)
    gap = rng.choice([0, 1, 52, 53, 54, 63, 64, 65, 99, 100, 101, 2000], n) * rng.choice([-1, 1], n)
    be = ae + np.where(rng.random(n) < 0.5, gap, rng.integers(-200, 200, n))
    half = rng.random(n) < 0.2  # |a| = 0.5: below it the float64 grid is twice as fine
    am[half] = np.copysign(0.5, am[half])
    cancel = rng.random(n) < 0.05  # b = -a: an exact zero sum
    bm[cancel], be[cancel] = -am[cancel], ae[cancel]
    near = (rng.random(n) < 0.05) & (np.abs(am) > 0.5)  # b = -a one ulp nearer 0: one bit left
    bm[near], be[near] = -np.nextafter(am[near], 0.0), ae[near]
    big = rng.random(n) < 0.01  # exponents near the range's ends
    ae[big] = rng.choice([lg._core.max_exponent, -lg._core.max_exponent], big.sum())
    be[big] = ae[big] - rng.integers(0, 70, big.sum())
    for arr_m, arr_e in ((am, ae), (bm, be)):  # zeros, in normal form
        z = rng.random(n) < 0.1
        arr_m[z], arr_e[z] = 0.0, zero_e
    for arr_m in (am, bm):  # normal form: |m| in [0.5, 1) or an exact zero
        assert np.all((arr_m == 0) | ((np.abs(arr_m) >= 0.5) & (np.abs(arr_m) < 1)))
    out = cpp.add_mul(am, ae, bm, be)
    for scalar, arr in (("add", "add_n"), ("mul", "mul_n")):
        _same(out[arr][0], out[scalar][0])
        _same(out[arr][1], out[scalar][1])
    assert (out["add"][0] == 0).sum() > 5_000 and (out["mul"][0] == 0).sum() > 20_000  # the cases were met


def test_headers_and_pxd_installed() -> None:
    inc = Path(_header_dir())
    for h in ("ext.hpp", "activations.hpp", "losses.hpp", "gemm.hpp", "network.hpp"):
        assert (inc / "loggrad" / h).is_file(), h
    pkg = Path(lg._engine.__file__).parent
    assert (pkg / "_engine.pxd").is_file() and (pkg / "engine.pxd").is_file()
