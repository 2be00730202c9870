// loggrad/train.hpp — one SGD step on the parameter block, in a few sweeps.
//
// The step w -= round_to_float64(lr * g) takes an extended gradient g (planes
// of mantissas and int64 exponents, normal form) and gathers, per block of the
// parameter layout (one block per layer: W then b), what a training report
// needs: nonzero and lost updates, the largest update, the update's and the
// gradient's Euclidean norms; and the global gradient norm, with clipping by
// norm and by value applied in extended range.
//
// Every result is bitwise what the numpy formulation of the step gives
// (python/loggrad/train.py's reference in tests/test_train.py): sums of squares
// follow numpy's pairwise summation (np.sum over the whole array, np.add.reduceat
// per block), scaling is by powers of two, and the two decisions that numpy
// makes with log2 (clip or not) arrive as thresholds computed with numpy itself.
//
// The step is all-or-nothing: if some new parameter would not be finite or
// some extended value leave the exponent range, nothing is written.
#pragma once

#include <cstddef>
#include <cstdint>

#include "loggrad/ext.hpp"

namespace loggrad {

// "x > limit" as numpy decides it for a normal-form x = m * 2^e through
// e + log2|m| > log2(limit): true iff e > e_star, or e == e_star and
// |m| >= m_star (m_star may be 1.0: never at e_star). Zero is never over.
struct Log2Threshold {
    exp_t e_star = 0;
    double m_star = 1.0;
};

struct SgdConfig {
    double lr = 0.0;  // > 0, finite
    bool clip_norm = false;
    double max_norm = 0.0;  // > 0, finite
    Log2Threshold norm_over;  // the global norm exceeds max_norm
    bool clip_value = false;
    double clip_value_limit = 0.0;  // > 0, finite
    Log2Threshold value_over;  // |g| exceeds clip_value_limit
};

// Per-block results: arrays of nblocks entries, filled by sgd_step.
struct SgdBlockStats {
    std::int64_t* nonzero;    // updates with a nonzero exact value
    std::int64_t* unchanged;  // ... of which float64 left the weight as it was
    exp_t* update_emax;       // largest exponent of a nonzero update; kZeroExp if none
    double* update_top0;      // largest |mantissa| of the updates at update_emax (0 if none)
    double* update_top1;      // largest |mantissa| of the updates at update_emax - 1 (0 if none)
    double* update_norm;      // sqrt of the sum of squares of updates scaled by 2^-update_emax
    exp_t* grad_emax;         // largest exponent of a nonzero gradient entry; kZeroExp if none
    double* grad_norm;        // sqrt of the sum of squares of gradients scaled by 2^-grad_emax
};

struct SgdTotals {
    double grad_norm = 0.0;  // sqrt of the sum of squares scaled by 2^-grad_emax
    exp_t grad_emax = 0;     // largest nonzero exponent (0 if all zero)
    bool clipped = false;    // clipping changed the gradient
    // When some new parameter would not be finite: its index and the extended
    // update there; nothing was written. -1 otherwise.
    std::int64_t bad_index = -1;
    double bad_update_m = 0.0;
    exp_t bad_update_e = 0;
};

// One SGD step on params[0 .. bounds[nblocks]), with block b the range
// [bounds[b], bounds[b + 1]) (bounds[0] == 0, increasing). gm, ge: the
// gradient in normal form. Throws range_error (nothing written) when the
// clipped gradient or the update leaves the extended exponent range.
// Results are independent of the thread count.
void sgd_step(SgdBlockStats& stats, SgdTotals& totals, double* params, const double* gm, const exp_t* ge,
              const std::int64_t* bounds, std::size_t nblocks, const SgdConfig& cfg);

// Euclidean norm of each segment k, [starts[k], starts[k] + lengths[k]), of
// an extended array gm, ge (normal form, n values): ||x_k|| = norm[k] * 2^emax[k],
// with emax[k] the segment's largest nonzero exponent (0 for an all-zero
// segment, whose norm is 0) and norm[k] the square root of the sum of the
// squares of m * 2^(e - emax[k]). Bitwise as numpy forms it (np.ldexp, then
// np.add.reduceat's order: the first square plus the pairwise sum of the
// rest), which is also how sgd_step forms its per-block gradient norms.
// One task per segment, so results do not depend on the thread count.
// Throws invalid_argument for an empty segment or one outside [0, n).
void segment_norms(exp_t* emax, double* norm, const double* gm, const exp_t* ge, std::size_t n,
                   const std::int64_t* starts, const std::int64_t* lengths, std::size_t nseg);

}  // namespace loggrad
