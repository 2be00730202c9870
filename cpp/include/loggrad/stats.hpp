// loggrad/stats.hpp — per-layer statistics of a backward pass, gathered from
// values the pass already holds: f'(z_l) right after the forward computes it
// (before the chain overwrites it with delta_l), delta_l and the layer input
// a_l while the weight gradient is formed, and dW_l, db_l once formed.
//
// Every figure is exact in the extended range: a norm is kept as the largest
// binary exponent E and the float64 sum of squares of the values scaled by
// 2^-E (||x||^2 = s * 4^E), so it never overflows or underflows; counts are
// integer comparisons of normal-form exponents and mantissas.
// A sum of squares rescales when a larger exponent arrives. A layer's
// figures are formed by one thread in a fixed order, so they do not depend
// on the thread count.
#pragma once

#include <cstddef>
#include <cstdint>

#include "loggrad/ext.hpp"

namespace loggrad {

// The formats whose range a value is checked against, in this order.
enum class Format : int { float64 = 0, float32 = 1, bfloat16 = 2, float16 = 3 };
constexpr int kFormats = 4;

// Statistics of one tensor (a block of extended or float64 values).
struct TensorStats {
    double norm_s = 0.0;           // sum of (x * 2^-norm_e)^2
    exp_t norm_e = kZeroExp;       // largest normal-form exponent (|x| < 2^e); kZeroExp if all zero
    double max_m = 0.0;            // largest |x| = max_m * 2^max_e (max_m in [0.5, 1)); 0 if all zero
    exp_t max_e = kZeroExp;
    double min_m = 0.0;            // smallest nonzero |x| = min_m * 2^min_e
    exp_t min_e = kZeroExp;
    std::uint64_t count = 0;       // values seen
    std::uint64_t zeros = 0;       // exact zeros
    // Per format (Format order): nonzero values that round-to-nearest-even
    // would make 0 (|x| <= half the smallest subnormal), subnormal (below
    // the smallest normal, not flushed), or inf (|x| >= the overflow
    // threshold, half an ulp above the largest finite value).
    std::uint64_t flush[kFormats] = {0, 0, 0, 0};
    std::uint64_t subnormal[kFormats] = {0, 0, 0, 0};
    std::uint64_t overflow[kFormats] = {0, 0, 0, 0};
};

// Activation derivatives f'(z) of one layer.
// A unit is "saturated" when 0 < |f'(z)| < kSaturatedDerivative: its gradient
// is scaled down by more than 2^-10 ~ 1e-3 (sigmoid beyond |z| ~ 6.9, tanh
// beyond |z| ~ 3.8, softplus below z ~ -6.9, gelu/silu deep on the negative
// side). Closed relu gates (f' = 0 exactly) count as zeros, not as saturated.
constexpr double kSaturatedDerivative = 0x1p-10;
struct DerivativeStats {
    std::uint64_t count = 0;
    std::uint64_t zeros = 0;
    std::uint64_t saturated = 0;
    double sum_log2 = 0.0;  // sum of log2 |f'| over the nonzero derivatives
};

// What a backward pass gathers for each layer l (index l, depth entries).
struct LayerStats {
    TensorStats dW;     // dL/dW_l (n_out x n_in)
    TensorStats db;     // dL/db_l (n_out)
    TensorStats delta;  // delta_l = dL/dz_l (batch x n_out): the per-sample backward signal
    TensorStats a;      // a_l, the input of layer l (batch x n_in; a_0 = x)
    DerivativeStats der;  // f'(z_l) (batch x n_out)
};

// Adds n extended values (any mantissa form, zeros allowed) to st, in order.
void tensor_stats_ext(const double* m, const exp_t* e, std::size_t n, TensorStats& st);
// The same for n float64 values; inf and nan (a float64 pass that overflowed)
// count as overflow in every format and stay out of the norm and extremes.
void tensor_stats_f64(const double* x, std::size_t n, TensorStats& st);
// Adds n extended derivatives to st.
void derivative_stats_ext(const double* m, const exp_t* e, std::size_t n, DerivativeStats& st);
void derivative_stats_f64(const double* d, std::size_t n, DerivativeStats& st);

// Number of doubles and field order of one flattened LayerStats (see flatten_stats).
constexpr std::size_t kTensorStatsFields = 8 + 3 * kFormats;
constexpr std::size_t kLayerStatsFields = 4 * kTensorStatsFields + 4;
// Writes s as kLayerStatsFields doubles: for dW, db, delta, a in turn,
// [norm exponent, norm fraction, max exponent, max fraction, min exponent,
// min fraction, count, zeros, flush x4, subnormal x4, overflow x4], where a
// quantity is 2^(exponent + fraction) (fraction: a log2 in (-1, 1]; the
// exponent an integer, exact as a double below 2^53, -inf for an all-zero
// tensor); then f' [count, zeros, saturated, sum log2].
void flatten_stats(const LayerStats& s, double* out);

}  // namespace loggrad
