// Extended-range transcendental helpers (see loggrad/ext.hpp).
#include "loggrad/ext.hpp"

#include <cmath>
#include <string>

namespace loggrad {

namespace {
constexpr double kLog2e = 1.44269504088896340735992468100189214;
// ln 2 split so that k * kLn2Hi is exact inside fma and the remainder is tiny.
constexpr double kLn2Hi = 6.93147180559945286227e-01;
constexpr double kLn2Lo = 2.31904681384629955842e-17;
}  // namespace

Ext exp_ext(double x) {
    if (std::isnan(x)) throw range_error("exp of nan");
    if (std::fabs(x) <= 700.0) return normalize(std::exp(x), 0);
    const double kd = std::nearbyint(x * kLog2e);
    if (!(std::fabs(kd) < static_cast<double>(kMaxExp - 4))) {
        throw range_error("exp(" + std::to_string(x) +
                          ") is beyond loggrad's exponent range (|log2| < 2^60)");
    }
    // Cody-Waite reduction with fused multiply-adds: r = x - k ln2, |r| <= ln2/2.
    double r = std::fma(-kd, kLn2Hi, x);
    r = std::fma(-kd, kLn2Lo, r);
    return normalize(std::exp(r), static_cast<exp_t>(kd));
}

Ext exp_ext(Ext x) {
    if (x.e <= 1000) return exp_ext(to_double(x));
    throw range_error("exp of a value beyond float64 range (log10 " +
                      std::to_string(log10abs(x)) +
                      ") is beyond loggrad's exponent range (|log2| < 2^60)");
}

Ext log1p_ext(Ext a) {
    if (a.m == 0.0) return kExtZero;
    if (a.e < -60) return a;  // log1p(a) = a(1 - a/2 + ...) rounds to a
    if (a.e <= 1000) return from_double(std::log1p(to_double(a)));
    return from_double(logabs(a));  // log(a) + log1p(1/a): the second term is below an ulp
}

Ext log_ext(Ext a) { return from_double(logabs(a)); }

}  // namespace loggrad
