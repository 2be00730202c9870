# cython: language_level=3
# loggrad/_engine.pxd — the engine's whole-chain passes for other Cython code
# (the scipy.linalg.cython_blas pattern).
#
#     from loggrad cimport _engine
#     _engine.backward_ext(depth, widths, acts, params, x, batch, _engine.LOSS_MSE, y, NULL, ...)
#
# A cimport of this module imports loggrad._engine at run time and takes these
# functions from its capsule table: nothing to link, no loggrad headers or
# C++ needed (plain C types; a C extension can call them). Every call runs
# without the GIL; it takes the GIL only to raise.
#
# Shapes and layout are those of loggrad/network.hpp:
#   widths:      depth + 1 entries n_0 .. n_L, every one >= 1
#   activations: depth codes ACT_*, one per layer
#   params:      param_count(depth, widths) float64 values, layer by layer
#                [W_0 (n_1 x n_0, row-major), b_0 (n_1), W_1, b_1, ...]
#                (torch Linear: z = a W^T + b)
#   x:           batch x n_0 row-major;   out: batch x n_L;   dx: batch x n_0
#   grad:        the parameter layout (param_count values)
#   extended values are two planes of the same shape: mantissa (float64,
#   |m| in [0.5, 1) or 0) and binary exponent (int64), value = m * 2^e
#
# Errors: the pass functions return 0, or -1 with a Python exception set:
# ValueError for bad arguments or non-finite inputs, loggrad.ExponentRangeError
# (an OverflowError) when a value leaves even the extended range,
# MemoryError when the pass cannot allocate.

from libc.stdint cimport int64_t

ctypedef int64_t exp_t

# Activation codes (the engine's order; loggrad._engine.ACTIVATIONS names them).
cdef enum:
    ACT_IDENTITY = 0
    ACT_SIGMOID = 1
    ACT_TANH = 2
    ACT_RELU = 3
    ACT_LEAKY_RELU = 4
    ACT_ELU = 5
    ACT_SELU = 6
    ACT_SOFTPLUS = 7
    ACT_GELU = 8
    ACT_SILU = 9

# Loss codes: mse (mean over elements, needs y), sum (no target: the raw chain
# product), bce (on logits, needs y), cross_entropy (on logits, needs labels).
cdef enum:
    LOSS_MSE = 0
    LOSS_SUM = 1
    LOSS_BCE = 2
    LOSS_CROSS_ENTROPY = 3

# Values in the parameter block of this architecture (0 if a width is 0).
cdef size_t param_count(size_t depth, const size_t* widths) noexcept nogil

# Forward pass: out (batch x n_L) in float64, or as mantissa/exponent planes.
cdef int forward_f64(size_t depth, const size_t* widths, const int* activations,
                     const double* params, const double* x, size_t batch,
                     double* out) except -1 nogil
cdef int forward_ext(size_t depth, const size_t* widths, const int* activations,
                     const double* params, const double* x, size_t batch,
                     double* out_m, exp_t* out_e) except -1 nogil

# Backward pass of the whole chain in one call. y (batch x n_L) is read for
# LOSS_MSE and LOSS_BCE, labels (batch) for LOSS_CROSS_ENTROPY; pass NULL for
# the other. loss (1 value) and grad are written; out and dx when not NULL.
cdef int backward_f64(size_t depth, const size_t* widths, const int* activations,
                      const double* params, const double* x, size_t batch,
                      int loss, const double* y, const int64_t* labels,
                      double* loss_value, double* out, double* grad, double* dx) except -1 nogil
cdef int backward_ext(size_t depth, const size_t* widths, const int* activations,
                      const double* params, const double* x, size_t batch,
                      int loss, const double* y, const int64_t* labels,
                      double* loss_m, exp_t* loss_e, double* out_m, exp_t* out_e,
                      double* grad_m, exp_t* grad_e, double* dx_m, exp_t* dx_e) except -1 nogil

# Bytes a backward pass allocates (stored activations and scratch); -1 on error.
cdef Py_ssize_t workspace_bytes(size_t depth, const size_t* widths, size_t batch,
                                bint extended) except -1 nogil
