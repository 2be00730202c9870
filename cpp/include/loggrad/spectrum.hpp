// loggrad/spectrum.hpp — growth of directions through the input-output Jacobian.
//
// The Jacobian of a deep chain is the product J = D_{L-1} W_{L-1} ... D_0 W_0
// with D_l = diag(f'(z_l)) along the trajectory of one input x. Directions are
// pushed through it layer by layer (forward mode), renormalised after every
// layer and their log growth accumulated, so memory is O(width * k) whatever
// the depth. With re-orthonormalisation (QR, accumulating ln|R_jj|) the
// accumulated logs are the Lyapunov exponents (log singular values) of J
// (Benettin et al. 1980); without it, ln ||J v|| of each given direction.
#pragma once

#include <cstddef>

#include "loggrad/network.hpp"

namespace loggrad {

// x: one input (n_in). V: n_in x k directions (row-major). When
// orthonormalize, V's columns are first orthonormalised and k must not exceed
// any width. total (k): accumulated natural-log growth per direction.
// per_layer (depth x k) may be null: the growth contributed by each layer.
// The f'(z_l) factors are extended; a layer's rows are scaled to its largest
// factor before the float64 QR, so directions that shrink by more than
// 2^-1000 relative to the leading one within a single layer are resolved
// only to float64 resolution (they may come out as -inf).
void jacobian_log_growth(const Architecture& net, const double* params, const double* x,
                         const double* V, std::size_t k, bool orthonormalize, double* total,
                         double* per_layer);

}  // namespace loggrad
