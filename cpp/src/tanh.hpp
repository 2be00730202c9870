// tanh.hpp — the engine's tanh kernels (private to the engine): the float64
// path's tanh, and tanh with its derivative for the extended path.
//
// Branch-free, so that loops over them vectorise (SSE2 and AVX2), and the same
// bits from every build (no FMA, one order of operations). Selects are masks
// from the borrow of a subtraction of bit patterns, which order non-negative
// doubles as their values: no compare or branch.
#pragma once

#include <cstdint>

#include "loggrad/ext.hpp"

namespace loggrad::tanh_kernel {

// c[0] + x (c[1] + x (c[2] + ...)), unrolled (a loop here would keep the
// caller's loop from vectorising).
template <int kN, int kI = 0>
inline double horner(const double (&c)[kN], double x) {
    if constexpr (kI == kN - 1) return c[kI];
    else return horner<kN, kI + 1>(c, x) * x + c[kI];
}

// All ones iff the bit pattern u is below v (both below 2^63).
inline std::uint64_t below(std::uint64_t u, std::uint64_t v) { return std::uint64_t(0) - ((u - v) >> 63); }

// tanh(a) for 0 <= a < 0.7: a + a^3 P(a^2), P fitted by scripts/fit_tanh.py.
inline double tanh_small(double a) {
    constexpr double kTanhP[13] = {
        -0x1.5555555555555p-2, 0x1.11111111110dcp-3,  -0x1.ba1ba1ba15b65p-5, 0x1.664f4880a7db6p-6,
        -0x1.226e34fb46470p-7, 0x1.d6d3bb0a0a880p-9,  -0x1.7da1d77b469afp-10, 0x1.354529535a974p-11,
        -0x1.f43c81bb13e1ap-13, 0x1.8f1c266091017p-14, -0x1.2b618dc230261p-15, 0x1.6f70e4a3a7fa3p-17,
        -0x1.0447ad51c2c6dp-19};
    const double s = a * a;
    return a + a * (s * horner<13>(kTanhP, s));
}

// e^y for 0 <= y <= 709: e^y = 2^k e^r with k = round(y / ln 2), r = y - k ln 2
// in two parts (|r| <= ln2/2) and e^r by its Taylor polynomial of degree 14
// (remainder below 2^-60).
inline double exp_nonneg(double y) {
    constexpr double kExpT[15] = {1.0,          1.0,           1.0 / 2,        1.0 / 6,         1.0 / 24,
                                  1.0 / 120,    1.0 / 720,     1.0 / 5040,     1.0 / 40320,     1.0 / 362880,
                                  1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600, 1.0 / 6227020800,
                                  1.0 / 87178291200};
    constexpr double kInvLn2 = 0x1.71547652b82fep+0;
    constexpr double kLn2Hi = 0x1.62e42p-1;  // ln 2 to 21 bits: k * kLn2Hi is exact for k < 2^32
    constexpr double kLn2Lo = 0x1.fdf473de6af28p-22;
    constexpr double kShift = 0x1.8p52;  // adding it rounds to an integer, kept in the low bits
    const double kd = y * kInvLn2 + kShift;
    const double kf = kd - kShift;
    const double r = (y - kf * kLn2Hi) - kf * kLn2Lo;
    const std::uint64_t k = detail::bits(kd) - detail::bits(kShift);
    return horner<15>(kExpT, r) * detail::from_bits((k + 1023) << 52);
}

// a * a = hi + lo exactly, without FMA (Dekker's product with Veltkamp's
// split): the same bits from every build, and it vectorises.
inline void square_parts(double a, double& hi, double& lo) {
    const double c = 134217729.0 * a;  // 2^27 + 1
    const double ah = c - (c - a), al = a - ah;
    hi = a * a;
    lo = ((ah * ah - hi) + 2.0 * (ah * al)) + al * al;
}

// a * b = hi + lo exactly, as square_parts.
inline void product_parts(double a, double b, double& hi, double& lo) {
    const double ca = 134217729.0 * a, cb = 134217729.0 * b;
    const double ah = ca - (ca - a), al = a - ah, bh = cb - (cb - b), bl = b - bh;
    hi = a * b;
    lo = ((ah * bh - hi) + ah * bl + al * bh) + al * bl;
}

// The reduction of exp_parts and exp_pm_parts: y = k ln 2 + rh + rl, with k
// in the low bits of kd (kd - kShiftLn2 is k as a double) and rh + rl exact:
// y - k kLn2Hi is exact (Sterbenz), k kLn2Lo rounds by less than 2^-64, and
// the difference of the two is split by a two-difference.
constexpr double kShiftLn2 = 0x1.8p52;  // adding it rounds to an integer, kept in the low bits
inline void reduce_ln2(double y, double& kd, double& rh, double& rl) {
    constexpr double kInvLn2 = 0x1.71547652b82fep+0;
    constexpr double kLn2Hi = 0x1.62e42p-1;
    constexpr double kLn2Lo = 0x1.fdf473de6af28p-22;
    kd = y * kInvLn2 + kShiftLn2;
    const double kf = kd - kShiftLn2;
    const double a = y - kf * kLn2Hi, b = kf * kLn2Lo;
    rh = a - b;
    const double bb = a - rh;
    rl = (a - (rh + bb)) + (bb - b);
}

// e^y = hi + lo for -600 <= y <= 709 with a relative error below 2^-55.5
// (measured 2^-55.65; exp_nonneg rounds to about an ulp, 2^-52). As there,
// e^y = 2^k e^r, r = y - k ln 2, but r is kept as rh + rl (y - k kLn2Hi is
// exact, Sterbenz; k kLn2Lo rounds by less than 2^-64) and e^r = (1 + rh) +
// rh^2 P(rh) + rl e^rh with 1 + rh a Fast2Sum: only rh^2 P(rh) < 0.069 rounds,
// by a few 2^-53 of itself, and the series' remainder past r^14/14! is below
// 2^-57.8. Lower than -600, lo grows subnormal. (2^k is built as in
// exp_nonneg; for k < 0 the subtraction wraps around and the addition of 1023
// wraps back.)
inline void exp_parts(double y, double& hi, double& lo) {
    constexpr double kExpP[13] = {1.0 / 2,         1.0 / 6,          1.0 / 24,         1.0 / 120,
                                  1.0 / 720,       1.0 / 5040,       1.0 / 40320,      1.0 / 362880,
                                  1.0 / 3628800,   1.0 / 39916800,   1.0 / 479001600,  1.0 / 6227020800,
                                  1.0 / 87178291200};
    double kd, rh, rl;
    reduce_ln2(y, kd, rh, rl);
    const double h1 = 1.0 + rh, l1 = rh - (h1 - 1.0);  // exact: |rh| < 1
    const double l = (l1 + (rh * rh) * horner<13>(kExpP, rh)) + rl * h1;
    const double scale = detail::from_bits((detail::bits(kd) - detail::bits(kShiftLn2) + 1023) << 52);
    const double h = h1 + l;
    hi = h * scale;
    lo = (l - (h - h1)) * scale;
}

// e^y = hi + lo as exp_parts (same reduction, same terms, relative error below
// 2^-55.5: 2^-55.70 measured against mpmath over 0 <= y <= 512, as for
// exp_parts), and inv ~ e^-y to about 2^-51 (2^-52.06 measured), for
// 0 <= y <= 709: the series of e^rh is summed as its even and odd parts, so
// e^-rh = (1 - rh) + (even - odd) costs a subtraction (rl, at most 2^-53 |rh|,
// is left out there). inv's terms do not cancel (e^-rh > 0.7, odd part
// < 0.36) and each rounds by a few 2^-53 of itself. 2^-k is a normal double
// for y <= 709 (k <= 1023).
inline void exp_pm_parts(double y, double& hi, double& lo, double& inv) {
    constexpr double kEven[6] = {1.0 / 24,      1.0 / 720,       1.0 / 40320,
                                 1.0 / 3628800, 1.0 / 479001600, 1.0 / 87178291200};
    constexpr double kOdd[6] = {1.0 / 6,        1.0 / 120,        1.0 / 5040,
                                1.0 / 362880,   1.0 / 39916800,   1.0 / 6227020800};
    double kd, rh, rl;
    reduce_ln2(y, kd, rh, rl);
    const double r2 = rh * rh;
    // even part r2 (1/2 + he), odd part r2 ho: 1/2 stays out of the small
    // sums, so the bracket rounds once at its own size
    const double he = r2 * horner<6>(kEven, r2), ho = rh * horner<6>(kOdd, r2);
    const double h1 = 1.0 + rh, l1 = rh - (h1 - 1.0);
    const double l = (l1 + r2 * (0.5 + (he + ho))) + rl * h1;
    const std::uint64_t k = detail::bits(kd) - detail::bits(kShiftLn2);
    const double scale = detail::from_bits((k + 1023) << 52);
    const double h = h1 + l;
    hi = h * scale;
    lo = (l - (h - h1)) * scale;
    inv = ((1.0 - rh) + r2 * (0.5 + (he - ho))) * detail::from_bits((std::uint64_t(1023) - k) << 52);
}

// |x| clamped to cap (a nan |x| becomes cap too), as a bit pattern.
inline std::uint64_t clamp_abs(std::uint64_t ab, double cap) {
    const std::uint64_t big = below(detail::bits(cap), ab);
    return (ab & ~big) | (detail::bits(cap) & big);
}

// tanh(x) without libm. Measured against mpmath (tests/test_reference.py):
// within 1.1 ulp (glibc's, as numpy calls it: 1.2 ulp).
//   |x| < 0.7: tanh_small;
//   else:      1 - 2 / (E + 1), E = e^{2a} rounded from exp_pm_parts (within
//              0.5 ulp + 2^-55.5 of itself), a = |x|;
//   a > 20 is taken as 20, whose tanh rounds to 1. nan stays nan, the sign of
//   x (and of -0) is kept.
// exp_pm_parts rather than exp_nonneg so that tanh_parts, which needs e^{2a} as
// an exact pair for the derivative, shares this exponential and these bits.
inline double tanh_f64(double x) {
    const std::uint64_t sign = detail::bits(x) & (std::uint64_t(1) << 63);
    const std::uint64_t ab = detail::bits(x) ^ sign;  // |x|; below 2^63, so differences do not wrap
    const double small = tanh_small(detail::from_bits(ab));
    const double ac = detail::from_bits(clamp_abs(ab, 20.0));
    double eh, el, ei;
    exp_pm_parts(ac + ac, eh, el, ei);
    const double large = 1.0 - 2.0 / (eh + 1.0);
    const std::uint64_t use_small = below(ab, detail::bits(0.7));
    const std::uint64_t nan = below(std::uint64_t(0x7ff) << 52, ab);
    const std::uint64_t t = (detail::bits(small) & use_small) | (detail::bits(large) & ~use_small);
    return detail::from_bits(((t & ~nan) | (ab & nan)) | sign);
}

// Above this |x| tanh_parts does not apply (e^{2|x|} must stay a double).
constexpr double kTanhPartsMax = 256.0;

// tanh(x) and tanh'(x) = 1 - tanh(x)^2 for a finite |x| < kTanhPartsMax, as the
// extended path takes them: v has tanh_f64's bits; d is 1 - v^2 for |x| < 0.7
// and, above, 4 / D with D = E + 2 + 1/E, E = e^{2|x|} = eh + el and
// 1/E ~ ei from the value's exp_pm_parts: it keeps its relative accuracy where
// tanh saturates (1 - v^2 would round to 0 beyond |x| ~ 19). Within 1.2 ulp
// there (2 ulp is what tests/test_activation_ulp.py holds):
//  - D's sensitivity to E is (E - 1/E)/D < 1 and E is good to 2^-55.5: 0.18 ulp;
//  - eh + 2 = h2 + l2 exactly (Fast2Sum, eh > 4); ei (< 1/4 = D/25 at most, to
//    2^-51) and the sum of the small terms add below 2^-56 D;
//  - D = dr + de exactly (Fast2Sum), d0 = 4/dr rounds (0.5 ulp), and
//    4/(dr + de) = d0 (1 - de/dr) to 2^-106, with de/dr taken as d0 de/4 (its
//    error is second order): the subtraction rounds once more (0.5 ulp).
//    The correction is formed as d0 ((d0/4) de), every factor and product
//    normal: d0 d0 first would fall below 2^-1022 where |x| > 177.
// One division more than the value's, no second exponential, no exact
// products. (The float 4q(1 - q) of the value's q = 1/(E + 1) rounds E, its
// sum with 1, q, 1 - q and the product: 2.3 ulp measured near |x| = 18.4.)
inline void tanh_parts(double x, double& v, double& d) {
    const std::uint64_t sign = detail::bits(x) & (std::uint64_t(1) << 63);
    const std::uint64_t ab = detail::bits(x) ^ sign;
    const double small = tanh_small(detail::from_bits(ab));
    const double ac = detail::from_bits(clamp_abs(ab, kTanhPartsMax));
    double eh, el, ei;
    exp_pm_parts(ac + ac, eh, el, ei);
    const double q = 1.0 / (eh + 1.0);
    // 1 - 2q: tanh_f64's 1 - 2 / (E + 1) to the bit (scaling by 2 commutes
    // with rounding), and 1 for any a > 20, as there.
    const double large = 1.0 - 2.0 * q;
    const std::uint64_t use_small = below(ab, detail::bits(0.7));
    v = detail::from_bits(((detail::bits(small) & use_small) | (detail::bits(large) & ~use_small)) | sign);
    const double h2 = eh + 2.0, l2 = (2.0 - (h2 - eh)) + el;
    const double dl = l2 + ei;
    const double dr = h2 + dl, de = (h2 - dr) + dl;
    const double d0 = 4.0 / dr;
    const double d_large = d0 - d0 * ((0.25 * d0) * de);
    const double d_small = 1.0 - small * small;
    d = detail::from_bits((detail::bits(d_small) & use_small) | (detail::bits(d_large) & ~use_small));
}

}  // namespace loggrad::tanh_kernel
