// Extended-range transcendental helpers (see loggrad/ext.hpp).
#include "loggrad/ext.hpp"

#include <cmath>
#include <cstdio>
#include <string>

namespace loggrad {

namespace {
constexpr double kLog2e = 1.44269504088896340735992468100189214;
// ln 2 = kLn2[0] + kLn2[1] + kLn2[2] to 160 bits: k ln 2 for |k| up to 2^60
// then carries an error below 2^-90, far under an ulp of the reduced argument.
constexpr double kLn2Parts[3] = {0x1.62e42fefa39efp-1, 0x1.abc9e3b39803fp-56, 0x1.7b57a079a1934p-111};

// x for messages in six significant digits ("-8e+17"), as the engine's other
// messages print numbers: std::to_string's "%f" gives 300 digits for 1e300.
std::string short_number(double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", x);
    return buf;
}

// a + b = s + err exactly (Knuth's two-sum).
inline double two_sum(double a, double b, double& err) {
    const double s = a + b;
    const double bb = s - a;
    err = (a - (s - bb)) + (b - bb);
    return s;
}
}  // namespace

Ext exp_ext(double x) {
    if (std::isnan(x)) throw range_error("exp of nan");
    if (std::fabs(x) <= 700.0) return normalize(std::exp(x), 0);
    const double kd = std::nearbyint(x * kLog2e);
    if (!(std::fabs(kd) < static_cast<double>(kMaxExp - 4))) {
        throw range_error("exp(" + short_number(x) +
                          ") is beyond loggrad's exponent range (|log2| < 2^60)");
    }
    // r = x - k ln 2 as a double-double rh + rl. k has up to 61 bits, so k ln 2
    // needs ln 2 to ~115 bits plus the exact products k * part (fma): a two-part
    // reduction leaves errors of 2^-48 in r at |x| ~ 2^59, i.e. tens of ulps.
    // x - p1 is exact (Sterbenz: p1 is within a factor 2 of x); the other terms
    // are summed in double-double.
    const double p1 = kd * kLn2Parts[0];
    const double e1 = std::fma(kd, kLn2Parts[0], -p1);
    const double p2 = kd * kLn2Parts[1];
    const double e2 = std::fma(kd, kLn2Parts[1], -p2);
    const double p3 = kd * kLn2Parts[2];
    double err1 = 0.0, err2 = 0.0;
    double s = two_sum(x - p1, -e1, err1);
    s = two_sum(s, -p2, err2);
    const double lo = ((err1 + err2) - e2) - p3;
    const double rh = s + lo;
    const double rl = lo - (rh - s);
    // e^(rh + rl) = e^rh (1 + rl) to well below an ulp (|rl| < 2^-40)
    const double er = std::exp(rh);
    return normalize(std::fma(er, rl, er), static_cast<exp_t>(kd));
}

Ext exp_ext(Ext x) {
    if (x.e <= 1000) return exp_ext(to_double(x));
    throw range_error("exp of a value beyond float64 range (log10 " +
                      short_number(log10abs(x)) +
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
