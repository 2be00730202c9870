# cython: language_level=3
# loggrad/engine.pxd — Cython declarations of the engine's C++ headers
# (installed at loggrad.get_include()/loggrad/*.hpp).
#
#     from loggrad cimport engine
#     cdef engine.Ext a = engine.from_double(0.25)
#
# Compile with --cplus (language="c++", C++17) and include_dirs=[loggrad.get_include()].
#
# What can be called without linking anything: the inline functions of ext.hpp
# (the extended number: mul, add, normalize, to_double, log10abs, ...) and the
# inline accessors of Architecture. Everything else (Architecture's
# constructor, the passes, activations, losses, gemm) lives in the engine
# library, which the wheel does not ship: call the passes through
# `cimport loggrad._engine` instead (no linking, plain C types), or compile
# the engine sources into your extension.
#
# Errors are C++ exceptions (`except +`): std::invalid_argument becomes
# ValueError, loggrad::range_error (an std::overflow_error) OverflowError.

from libc.stdint cimport int64_t, uint64_t
from libcpp cimport bool
from libcpp.string cimport string
from libcpp.vector cimport vector


cdef extern from "loggrad/ext.hpp" namespace "loggrad" nogil:
    ctypedef int64_t exp_t

    const exp_t kMaxExp   # largest |binary exponent|: 2^60
    const exp_t kZeroExp  # exponent of an exact zero, below every valid one

    # x = m * 2^e; normal form |m| in [0.5, 1), or m == 0 with e == kZeroExp.
    cdef struct Ext:
        double m
        exp_t e

    const Ext kExtZero
    const Ext kExtOne

    # Inline (header-only): callable without linking the engine.
    Ext normalize(double m, exp_t e)
    Ext from_double(double x)
    void normalize_n(size_t n, const double* c, exp_t base, const exp_t* add, double* om, exp_t* oe)
    # In place, elementwise: a[i] += b[i] and b[i] = a[i] * b[i], the same bits as add() and mul().
    void add_n(size_t n, double* am, exp_t* ae, const double* bm, const exp_t* be)
    void mul_n(size_t n, const double* am, const exp_t* ae, double* bm, exp_t* be)
    bool is_zero(Ext a)
    Ext neg(Ext a)
    Ext mul(Ext a, Ext b)
    Ext mul(Ext a, double b)
    Ext div(Ext a, Ext b)
    Ext add(Ext a, Ext b)
    Ext add(Ext a, double b)
    Ext sub(Ext a, Ext b)
    double to_double(Ext a)
    double log10abs(Ext a)
    double logabs(Ext a)
    int sign(Ext a)
    bool in_range(exp_t e)

    # In the engine library.
    Ext exp_ext(double x) except +
    Ext exp_ext(Ext x) except +
    Ext log1p_ext(Ext a) except +
    Ext log_ext(Ext a) except +


cdef extern from "loggrad/activations.hpp" namespace "loggrad" nogil:
    cdef enum class Activation(int):
        identity
        sigmoid
        tanh
        relu
        leaky_relu
        elu
        selu
        softplus
        gelu
        silu

    const double kLeakySlope
    const double kEluAlpha
    const double kSeluLambda
    const double kSeluAlpha

    # In the engine library.
    const vector[string]& activation_names() except +
    string activation_name(Activation a) except +
    Activation activation_from_name(const string& name) except +
    void activate_ext(Activation act, Ext z, Ext* a, Ext* d) except +
    void activate_f64(Activation act, double z, double* a, double* d) except +
    void activate_ext_n(Activation act, size_t n, const double* zm, const exp_t* ze, double* am,
                        exp_t* ae, double* dm, exp_t* de) except +
    void activate_f64_n(Activation act, size_t n, const double* z, double* a, double* d) except +


cdef extern from "loggrad/losses.hpp" namespace "loggrad" nogil:
    cdef enum class Loss(int):
        mse
        sum
        bce
        cross_entropy

    # What the loss compares the output with: y (rows x cols) for mse and bce,
    # labels (rows) for cross_entropy, nothing for sum.
    cdef cppclass Target:
        Loss loss
        const double* y
        const int64_t* labels

    # In the engine library.
    const vector[string]& loss_names() except +
    string loss_name(Loss l) except +
    Loss loss_from_name(const string& name) except +
    void check_target(const Target& t, size_t rows, size_t cols) except +
    Ext loss_ext(const Target& t, size_t rows, size_t cols, const double* ym, const exp_t* ye,
                 double* gm, exp_t* ge) except +
    double loss_f64(const Target& t, size_t rows, size_t cols, const double* yhat, double* g) except +


cdef extern from "loggrad/gemm.hpp" namespace "loggrad" nogil:
    const size_t kBlasMinWork  # products below this many multiply-adds skip BLAS
    const size_t kGemmBlock    # rows (or columns) of C per parallel BLAS block

    # Row-major extended matrices: separate mantissa and exponent planes.
    cdef struct ExtMat:
        double* m
        exp_t* e
    cdef struct ExtCMat:
        const double* m
        const exp_t* e

    # Scratch buffers reused across layers of one pass.
    cdef cppclass Workspace:
        Workspace()

    # In the engine library.
    void gemm(bool ta, bool tb, size_t M, size_t N, size_t K, const double* A, const double* B,
              double* C) except +
    void gemm_naive(bool ta, bool tb, size_t M, size_t N, size_t K, const double* A,
                    const double* B, double* C) except +
    # out[j] = sum_i A[i, j], each column in row order (bits independent of threads)
    void column_sums(size_t rows, size_t cols, const double* A, double* out) except +
    void ext_gemm_xw(Workspace& ws, size_t M, size_t N, size_t K, ExtCMat X, const double* W,
                     bool w_trans, ExtMat C) except +
    void ext_gemm_tn(Workspace& ws, size_t B, size_t N1, size_t N2, ExtCMat D, ExtCMat A, ExtMat C,
                     ExtMat colsum) except +
    int blas_threads() except +  # BLAS's own threads (kept at 1)
    string blas_config() except +


cdef extern from "loggrad/parallel.hpp" namespace "loggrad" nogil:
    # In the engine library. (parallel_for and parallel_chunks take
    # std::function callbacks and are left out: they are for C++ code.)
    int num_threads() except +
    void set_num_threads(int n) except +


cdef extern from "loggrad/interrupt.hpp" namespace "loggrad" nogil:
    # Stopping a long pass from outside (Ctrl-C): the engine polls between
    # layers, and a caller installs a poll function for the length of one
    # call (InterruptScope, for C++ callers). In the engine library.
    void check_interrupt() except +


cdef extern from "loggrad/memory.hpp" namespace "loggrad" nogil:
    # Uninitialised memory (huge-page backed from 1 MiB on Linux); raises
    # MemoryError when none can be had. Free with deallocate.
    void* allocate(size_t bytes) except +
    void deallocate(void* p)


cdef extern from "loggrad/stats.hpp" namespace "loggrad" nogil:
    # Per-layer statistics of a backward pass (GradExt.stats): norms kept as
    # (largest exponent, scaled sum of squares), extremes, zero counts and, per
    # format (float64, float32, bfloat16, float16), the values it would flush,
    # leave subnormal or overflow.
    const int kFormats
    const double kSaturatedDerivative
    const size_t kLayerStatsFields
    cdef cppclass TensorStats:
        double norm_s
        exp_t norm_e
        double max_m
        exp_t max_e
        double min_m
        exp_t min_e
        uint64_t count
        uint64_t zeros
        uint64_t flush[4]
        uint64_t subnormal[4]
        uint64_t overflow[4]
    cdef cppclass DerivativeStats:
        uint64_t count
        uint64_t zeros
        uint64_t saturated
        double sum_log2
    cdef cppclass LayerStats:
        TensorStats dW
        TensorStats db
        TensorStats delta
        TensorStats a
        DerivativeStats der
    # In the engine library.
    void tensor_stats_ext(const double* m, const exp_t* e, size_t n, TensorStats& st)
    void tensor_stats_f64(const double* x, size_t n, TensorStats& st)
    void derivative_stats_ext(const double* m, const exp_t* e, size_t n, DerivativeStats& st)
    void derivative_stats_f64(const double* d, size_t n, DerivativeStats& st)
    void flatten_stats(const LayerStats& s, double* out)

cdef extern from "loggrad/network.hpp" namespace "loggrad" nogil:
    # Widths n_0 .. n_L and one activation per layer. The accessors are
    # inline; the constructor and check_params are in the engine library.
    cdef cppclass Architecture:
        Architecture(vector[size_t] widths, vector[Activation] activations) except +
        size_t depth()
        size_t width(size_t i)
        size_t n_in()
        size_t n_out()
        const vector[size_t]& widths()
        Activation activation(size_t l)
        size_t weight_offset(size_t l)
        size_t bias_offset(size_t l)
        size_t param_count()
        size_t unit_count() except +
        void check_params(const double* params) except +

    # Extended outputs: mantissa and exponent planes of the same shape.
    cdef cppclass ExtOut:
        double* m
        exp_t* e

    # Where a backward pass writes; out and dx may be left null. grad_offset:
    # NULL (every layer, parameter layout) or depth offsets into grad, with
    # kNoGradient for a layer whose parameter gradients are skipped
    # (see gradient_offsets).
    cdef cppclass GradExt:
        ExtOut loss   # 1 value
        ExtOut out    # batch x n_out
        ExtOut grad   # param_count values, parameter layout
        ExtOut dx     # batch x n_in
        const size_t* grad_offset
        LayerStats* stats  # NULL, or depth entries filled by the pass

    cdef cppclass GradF64:
        double* loss
        double* out
        double* grad
        double* dx
        const size_t* grad_offset
        LayerStats* stats  # NULL, or depth entries filled by the pass

    const size_t kNoGradient
    vector[size_t] gradient_offsets(const Architecture& net, const vector[size_t]& layers,
                                    size_t* total) except +

    # In the engine library.
    void check_inputs(const double* x, size_t rows, size_t cols) except +
    void forward_ext(const Architecture& net, const double* params, const double* x,
                     size_t batch, ExtOut out) except +
    void forward_f64(const Architecture& net, const double* params, const double* x,
                     size_t batch, double* out) except +
    void backward_ext(const Architecture& net, const double* params, const double* x,
                      size_t batch, const Target& target, const GradExt& res) except +
    void backward_f64(const Architecture& net, const double* params, const double* x,
                      size_t batch, const Target& target, const GradF64& res) except +
    # One layer of the extended forward pass: z = in W_l^T + b_l, out = f(z),
    # der = f'(z) when der.m is not NULL.
    void forward_layer_ext(const Architecture& net, const double* params, size_t l, size_t batch,
                           ExtCMat in_, ExtMat out, ExtMat der, ExtMat z, Workspace& ws) except +
    size_t backward_workspace_bytes(const Architecture& net, size_t batch, bool extended) except +


cdef extern from "loggrad/spectrum.hpp" namespace "loggrad" nogil:
    # In the engine library. Natural-log growth of k directions V (n_in x k)
    # through the input-output Jacobian at x: total (k), per_layer (depth x k,
    # may be NULL).
    void jacobian_log_growth(const Architecture& net, const double* params, const double* x,
                             const double* V, size_t k, bool orthonormalize, double* total,
                             double* per_layer) except +


cdef extern from "loggrad/train.hpp" namespace "loggrad" nogil:
    # In the engine library. One SGD step in place on a parameter block (see
    # the header): per-block statistics into SgdBlockStats' arrays.
    cdef cppclass Log2Threshold:
        int64_t e_star
        double m_star

    cdef cppclass SgdConfig:
        double lr
        bool clip_norm
        double max_norm
        Log2Threshold norm_over
        bool clip_value
        double clip_value_limit
        Log2Threshold value_over

    cdef cppclass SgdBlockStats:
        int64_t* nonzero
        int64_t* unchanged
        int64_t* update_emax
        double* update_top0
        double* update_top1
        double* update_norm
        int64_t* grad_emax
        double* grad_norm

    cdef cppclass SgdTotals:
        double grad_norm
        int64_t grad_emax
        bool clipped
        int64_t bad_index
        double bad_update_m
        int64_t bad_update_e

    void sgd_step(SgdBlockStats& stats, SgdTotals& totals, double* params, const double* gm,
                  const int64_t* ge, const int64_t* bounds, size_t nblocks, const SgdConfig& cfg) except +
