# cython: language_level=3, boundscheck=False, wraparound=False
# distutils: language = c++
"""loggrad._engine: the engine's whole-chain passes as C functions for Cython.

Nothing here is for Python code (use loggrad.Network). Other Cython modules
``cimport loggrad._engine`` (declarations in loggrad/_engine.pxd) and call the
passes without Python in between and without linking against loggrad: Cython
takes the function pointers from this module's ``__pyx_capi__`` capsules.
"""

from libc.stdint cimport int64_t
from libcpp.memory cimport unique_ptr
from libcpp.vector cimport vector
from cpython.ref cimport PyObject

from loggrad cimport engine as eng
from loggrad.engine cimport Activation, Architecture, ExtOut, GradExt, GradF64, Loss, Target

from loggrad import _core

# Names of the ACT_* and LOSS_* codes, in code order.
ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "elu", "selu", "softplus",
               "gelu", "silu")
LOSSES = ("mse", "sum", "bce", "cross_entropy")

# The codes in _engine.pxd are the engine's enum values: refuse to load if
# the engine's order ever changes without this file following.
if tuple(_core.activation_names()) != ACTIVATIONS or tuple(_core.loss_names()) != LOSSES:
    raise ImportError("loggrad._engine is out of step with the engine's activation/loss codes")


# C++ exceptions from the passes become the exceptions loggrad._core raises:
# loggrad::range_error -> loggrad.ExponentRangeError, std::invalid_argument ->
# ValueError, std::bad_alloc -> MemoryError. Cython calls the handler inside
# the catch block with the GIL taken.
cdef extern from *:
    """
    #include <new>
    #include <stdexcept>
    #include "loggrad/ext.hpp"

    static PyObject* loggrad_range_error_type = NULL;

    static void loggrad_set_range_error_type(PyObject* t) {
        Py_XINCREF(t);
        loggrad_range_error_type = t;
    }

    static void loggrad_raise_py_error() {
        try {
            throw;
        } catch (const loggrad::range_error& e) {
            PyErr_SetString(loggrad_range_error_type ? loggrad_range_error_type : PyExc_OverflowError, e.what());
        } catch (const std::bad_alloc& e) {
            PyErr_SetString(PyExc_MemoryError, e.what());
        } catch (const std::invalid_argument& e) {
            PyErr_SetString(PyExc_ValueError, e.what());
        } catch (const std::domain_error& e) {
            PyErr_SetString(PyExc_ValueError, e.what());
        } catch (const std::out_of_range& e) {
            PyErr_SetString(PyExc_IndexError, e.what());
        } catch (const std::overflow_error& e) {
            PyErr_SetString(PyExc_OverflowError, e.what());
        } catch (const std::exception& e) {
            PyErr_SetString(PyExc_RuntimeError, e.what());
        } catch (...) {
            PyErr_SetString(PyExc_RuntimeError, "loggrad: unknown C++ exception");
        }
    }
    """
    void loggrad_set_range_error_type(PyObject* t)
    void loggrad_raise_py_error()

loggrad_set_range_error_type(<PyObject*>_core.ExponentRangeError)

# The passes of loggrad/network.hpp (declared in loggrad/engine.pxd), here
# with the translating handler.
cdef extern from "loggrad/network.hpp" namespace "loggrad" nogil:
    void _forward_ext "loggrad::forward_ext"(const Architecture& net, const double* params,
        const double* x, size_t batch, ExtOut out) except +loggrad_raise_py_error
    void _forward_f64 "loggrad::forward_f64"(const Architecture& net, const double* params,
        const double* x, size_t batch, double* out) except +loggrad_raise_py_error
    void _backward_ext "loggrad::backward_ext"(const Architecture& net, const double* params,
        const double* x, size_t batch, const Target& target,
        const GradExt& res) except +loggrad_raise_py_error
    void _backward_f64 "loggrad::backward_f64"(const Architecture& net, const double* params,
        const double* x, size_t batch, const Target& target,
        const GradF64& res) except +loggrad_raise_py_error


cdef int _fail(str msg) except -1 nogil:
    with gil:
        raise ValueError(msg)


# Builds the Architecture on the heap (it has no default constructor);
# raises ValueError for a zero width or an unknown activation code.
cdef int _architecture(size_t depth, const size_t* widths, const int* activations,
                       unique_ptr[Architecture]& net) except -1 nogil:
    cdef size_t l
    cdef vector[size_t] w
    cdef vector[Activation] a
    if depth == 0:
        _fail("a network needs at least one layer (depth is 0)")
    if widths == NULL or activations == NULL:
        _fail("widths and activations must not be NULL")
    w.assign(widths, widths + depth + 1)
    a.reserve(depth)
    for l in range(depth):
        if activations[l] < ACT_IDENTITY or activations[l] > ACT_SILU:
            with gil:
                raise ValueError(f"activations[{l}] = {activations[l]} is not an activation code "
                                 f"(0..{<int>ACT_SILU})")
        a.push_back(<Activation>activations[l])
    net.reset(new Architecture(w, a))
    return 0


cdef int _target(int loss, const double* y, const int64_t* labels, Target* t) except -1 nogil:
    if loss < LOSS_MSE or loss > LOSS_CROSS_ENTROPY:
        with gil:
            raise ValueError(f"loss = {loss} is not a loss code (0..{LOSS_CROSS_ENTROPY})")
    t.loss = <Loss>loss
    if loss == LOSS_CROSS_ENTROPY:
        if labels == NULL:
            _fail("cross_entropy needs labels (got NULL)")
        t.labels = labels
    elif loss != LOSS_SUM:
        if y == NULL:
            _fail("mse and bce need y (got NULL)")
        t.y = y
    return 0


cdef size_t param_count(size_t depth, const size_t* widths) noexcept nogil:
    cdef size_t l, n = 0
    for l in range(depth):
        n += widths[l + 1] * (widths[l] + 1)
    return n


cdef int forward_f64(size_t depth, const size_t* widths, const int* activations,
                     const double* params, const double* x, size_t batch,
                     double* out) except -1 nogil:
    cdef unique_ptr[Architecture] net
    if params == NULL or x == NULL or out == NULL or batch == 0:
        _fail("forward_f64: params, x and out must not be NULL, batch must be >= 1")
    _architecture(depth, widths, activations, net)
    _forward_f64(net.get()[0], params, x, batch, out)
    return 0


cdef int forward_ext(size_t depth, const size_t* widths, const int* activations,
                     const double* params, const double* x, size_t batch,
                     double* out_m, exp_t* out_e) except -1 nogil:
    cdef unique_ptr[Architecture] net
    cdef ExtOut o
    if params == NULL or x == NULL or out_m == NULL or out_e == NULL or batch == 0:
        _fail("forward_ext: params, x, out_m and out_e must not be NULL, batch must be >= 1")
    _architecture(depth, widths, activations, net)
    o.m = out_m
    o.e = out_e
    _forward_ext(net.get()[0], params, x, batch, o)
    return 0


cdef int backward_f64(size_t depth, const size_t* widths, const int* activations,
                      const double* params, const double* x, size_t batch,
                      int loss, const double* y, const int64_t* labels,
                      double* loss_value, double* out, double* grad, double* dx) except -1 nogil:
    cdef unique_ptr[Architecture] net
    cdef Target t
    cdef GradF64 r
    if params == NULL or x == NULL or loss_value == NULL or grad == NULL or batch == 0:
        _fail("backward_f64: params, x, loss_value and grad must not be NULL, batch must be >= 1")
    _architecture(depth, widths, activations, net)
    _target(loss, y, labels, &t)
    r.loss = loss_value
    r.out = out
    r.grad = grad
    r.dx = dx
    _backward_f64(net.get()[0], params, x, batch, t, r)
    return 0


cdef int backward_ext(size_t depth, const size_t* widths, const int* activations,
                      const double* params, const double* x, size_t batch,
                      int loss, const double* y, const int64_t* labels,
                      double* loss_m, exp_t* loss_e, double* out_m, exp_t* out_e,
                      double* grad_m, exp_t* grad_e, double* dx_m, exp_t* dx_e) except -1 nogil:
    cdef unique_ptr[Architecture] net
    cdef Target t
    cdef GradExt r
    if (params == NULL or x == NULL or loss_m == NULL or loss_e == NULL or grad_m == NULL
            or grad_e == NULL or batch == 0):
        _fail("backward_ext: params, x, loss_m/_e and grad_m/_e must not be NULL, batch must be >= 1")
    if (out_m == NULL) != (out_e == NULL) or (dx_m == NULL) != (dx_e == NULL):
        _fail("backward_ext: give both planes (mantissa and exponent) of out and dx, or neither")
    _architecture(depth, widths, activations, net)
    _target(loss, y, labels, &t)
    r.loss.m = loss_m
    r.loss.e = loss_e
    r.out.m = out_m
    r.out.e = out_e
    r.grad.m = grad_m
    r.grad.e = grad_e
    r.dx.m = dx_m
    r.dx.e = dx_e
    _backward_ext(net.get()[0], params, x, batch, t, r)
    return 0


cdef Py_ssize_t workspace_bytes(size_t depth, const size_t* widths, size_t batch,
                                bint extended) except -1 nogil:
    cdef unique_ptr[Architecture] net
    cdef vector[int] acts
    acts.resize(depth, ACT_IDENTITY)
    _architecture(depth, widths, acts.data(), net)
    return <Py_ssize_t>eng.backward_workspace_bytes(net.get()[0], batch, extended)


# Never called: makes the C++ compiler check every function declared in
# loggrad/engine.pxd against the installed headers (a wrong declaration there
# is a build error here, not a surprise for a downstream user).
cdef int _check_engine_pxd() except -1 nogil:
    cdef eng.Ext a = eng.from_double(1.0)
    cdef eng.exp_t e = eng.kMaxExp + eng.kZeroExp
    cdef double d = 0.0
    cdef int i = 0
    cdef size_t n = eng.kBlasMinWork + eng.kGemmBlock
    cdef eng.ExtMat em
    cdef eng.ExtCMat ec
    cdef eng.Workspace ws
    cdef Target t
    cdef unique_ptr[Architecture] net
    a = eng.normalize(d, e)
    eng.normalize_n(n, &d, e, &e, &d, &e)
    i = eng.is_zero(a) + eng.in_range(e) + eng.sign(a)
    a = eng.add(eng.sub(eng.mul(eng.neg(a), a), eng.div(a, a)), eng.mul(eng.add(a, d), d))
    d = eng.to_double(a) + eng.log10abs(a) + eng.logabs(a)
    a = eng.exp_ext(eng.exp_ext(d))
    a = eng.log1p_ext(eng.log_ext(a))
    d = eng.kLeakySlope + eng.kEluAlpha + eng.kSeluLambda + eng.kSeluAlpha
    n = eng.activation_names().size() + eng.activation_name(eng.activation_from_name(b"relu")).size()
    eng.activate_ext(Activation.sigmoid, a, &a, &a)
    eng.activate_f64(Activation.tanh, d, &d, &d)
    eng.activate_ext_n(Activation.gelu, n, &d, &e, &d, &e, &d, &e)
    eng.activate_f64_n(Activation.silu, n, &d, &d, &d)
    n = eng.loss_names().size() + eng.loss_name(eng.loss_from_name(b"mse")).size()
    eng.check_target(t, n, n)
    a = eng.loss_ext(t, n, n, &d, &e, &d, &e)
    d = eng.loss_f64(t, n, n, &d, &d)
    eng.gemm(True, False, n, n, n, &d, &d, &d)
    eng.gemm_naive(False, True, n, n, n, &d, &d, &d)
    eng.ext_gemm_xw(ws, n, n, n, ec, &d, True, em)
    eng.ext_gemm_tn(ws, n, n, n, ec, ec, em, em)
    i = eng.blas_threads() + eng.num_threads() + <int>eng.blas_config().size()
    eng.set_num_threads(i)
    _architecture(0, NULL, NULL, net)
    n = (net.get().depth() + net.get().width(0) + net.get().n_in() + net.get().n_out()
         + net.get().widths().size() + net.get().weight_offset(0) + net.get().bias_offset(0)
         + net.get().param_count() + net.get().unit_count() + <size_t>net.get().activation(0))
    net.get().check_params(&d)
    eng.check_inputs(&d, n, n)
    eng.forward_layer_ext(net.get()[0], &d, n, n, ec, em, em, em, ws)
    n = eng.backward_workspace_bytes(net.get()[0], n, True)
    eng.jacobian_log_growth(net.get()[0], &d, &d, &d, n, True, &d, &d)
    return i + <int>n
