// Forward-mode growth of directions through the Jacobian (see loggrad/spectrum.hpp).
#include "loggrad/interrupt.hpp"
#include "loggrad/spectrum.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <lapacke.h>  // from scipy-openblas32 (scipy_ prefix)

namespace loggrad {

namespace {

// In-place thin QR of the row-major m x k matrix A (m >= k): A becomes Q,
// the diagonal of R is written to rdiag.
void thin_qr(std::size_t m, std::size_t k, double* A, double* rdiag) {
    std::vector<double> tau(k);
    const auto mi = static_cast<lapack_int>(m), ki = static_cast<lapack_int>(k);
    if (scipy_LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, mi, ki, A, ki, tau.data()) != 0)
        throw std::runtime_error("QR factorisation failed");
    for (std::size_t j = 0; j < k; ++j) rdiag[j] = A[j * k + j];
    if (scipy_LAPACKE_dorgqr(LAPACK_ROW_MAJOR, mi, ki, ki, A, ki, tau.data()) != 0)
        throw std::runtime_error("forming Q failed");
}

}  // namespace

void jacobian_log_growth(const Architecture& net, const double* params, const double* x,
                         const double* V, std::size_t k, bool orthonormalize, double* total,
                         double* per_layer) {
    net.check_params(params);
    check_inputs(x, 1, net.n_in());
    if (k == 0) throw std::invalid_argument("at least one direction is needed");
    if (orthonormalize) {
        const std::size_t minw = *std::min_element(net.widths().begin(), net.widths().end());
        if (k > minw)
            throw std::invalid_argument("the spectrum has at most min(widths) = " + std::to_string(minw) +
                                        " exponents; asked for " + std::to_string(k));
    }
    for (std::size_t i = 0; i < net.n_in() * k; ++i)
        if (!std::isfinite(V[i])) throw std::invalid_argument("directions must be finite");

    std::size_t maxw = 0;
    for (std::size_t w : net.widths()) maxw = std::max(maxw, w);
    std::vector<double> am(maxw), am2(maxw), dm(maxw), zm(maxw), Q(maxw * k), C(maxw * k), rd(k);
    std::vector<exp_t> ae(maxw), ae2(maxw), de(maxw), ze(maxw);
    Workspace ws;
    for (std::size_t i = 0; i < net.n_in(); ++i) {
        const Ext v = from_double(x[i]);
        am[i] = v.m;
        ae[i] = v.e;
    }
    std::copy(V, V + net.n_in() * k, Q.begin());
    std::fill(total, total + k, 0.0);

    auto renormalise = [&](std::size_t rows, double* M, double* logs) {
        if (orthonormalize) {
            thin_qr(rows, k, M, rd.data());
            for (std::size_t j = 0; j < k; ++j) logs[j] = std::log(std::fabs(rd[j]));
        } else {
            for (std::size_t j = 0; j < k; ++j) {
                double mx = 0.0;  // scaled 2-norm of column j
                for (std::size_t i = 0; i < rows; ++i) mx = std::max(mx, std::fabs(M[i * k + j]));
                double s = 0.0;
                if (mx > 0)
                    for (std::size_t i = 0; i < rows; ++i) s += (M[i * k + j] / mx) * (M[i * k + j] / mx);
                const double nrm = mx * std::sqrt(s);
                logs[j] = std::log(mx) + 0.5 * std::log(s);
                if (nrm > 0)
                    for (std::size_t i = 0; i < rows; ++i) M[i * k + j] /= nrm;
            }
        }
    };
    std::vector<double> logs(k);
    if (orthonormalize) renormalise(net.n_in(), Q.data(), logs.data());  // start orthonormal, no growth

    for (std::size_t l = 0; l < net.depth(); ++l) {
        check_interrupt();
        const std::size_t n_in = net.width(l), n_out = net.width(l + 1);
        forward_layer_ext(net, params, l, 1, ExtCMat{am.data(), ae.data()}, ExtMat{am2.data(), ae2.data()},
                          ExtMat{dm.data(), de.data()}, ExtMat{zm.data(), ze.data()}, ws);
        // C = D_l W_l Q, with D_l scaled to its largest factor 2^E (E carried into the logs).
        gemm(false, false, n_out, k, n_in, params + net.weight_offset(l), Q.data(), C.data());
        exp_t E = kZeroExp;
        for (std::size_t i = 0; i < n_out; ++i) E = std::max(E, de[i]);
        double shift = E == kZeroExp ? 0.0 : static_cast<double>(E) * kLn2;
        for (std::size_t i = 0; i < n_out; ++i) {
            const double d = E == kZeroExp ? 0.0 : scale_down(dm[i], de[i] - E);
            for (std::size_t j = 0; j < k; ++j) C[i * k + j] *= d;
        }
        if (net.residual(l)) {
            // A residual layer's Jacobian is I + D_l W_l (D_l = s f'(z_l), as the
            // forward pass leaves it): C = 2^E (scaled D W Q) + Q, formed at the
            // scale 2^max(E, 0) so that neither term overflows.
            if (E != kZeroExp && E > 0) {
                for (std::size_t i = 0; i < n_out * k; ++i) C[i] += scale_down(Q[i], -E);
            } else {
                for (std::size_t i = 0; i < n_out * k; ++i)
                    C[i] = Q[i] + (E == kZeroExp ? 0.0 : scale_down(C[i], E));
                shift = 0.0;
            }
        }
        renormalise(n_out, C.data(), logs.data());
        for (std::size_t j = 0; j < k; ++j) {
            const double g = E == kZeroExp && !net.residual(l) ? -std::numeric_limits<double>::infinity()
                                                              : logs[j] + shift;
            total[j] += g;
            if (per_layer) per_layer[l * k + j] = g;
        }
        std::swap(Q, C);
        std::swap(am, am2);
        std::swap(ae, ae2);
    }
}

}  // namespace loggrad
