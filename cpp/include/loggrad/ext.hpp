// loggrad/ext.hpp — the extended-range number: a float64 mantissa and an int64
// binary exponent, x = m * 2^e.
//
// The numerical contract (DESIGN.md §1): every operation here returns what IEEE
// float64 would return if float64 had an unbounded exponent. Multiplying
// mantissas of [0.5, 1) gives a product in [0.25, 1) that is always a normal
// double, so it rounds exactly as the unbounded product would; adding aligns
// the smaller operand by a power of two (exact) and rounds once.
//
// Normal form: |m| in [0.5, 1) and e in [-kMaxExp, kMaxExp], or the exact
// zero m == 0, e == kZeroExp. kZeroExp sits below every valid exponent so a
// plain max over exponents ignores zeros.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstddef>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

namespace loggrad {

using exp_t = std::int64_t;

// Largest |binary exponent| loggrad represents: 2^(2^60) ~ 10^(3.5e17).
constexpr exp_t kMaxExp = exp_t(1) << 60;
// Exponent of an exact zero: below every valid exponent; sums of a few of
// them (and of valid exponents) still fit in int64.
constexpr exp_t kZeroExp = -(exp_t(1) << 61);

// Raised when a value leaves even the extended range (|log2| > 2^60): always
// for an overflow; for an underflow (e.g. sigmoid'(z) = e^-|z| for |z| > 8e17)
// only where no UnderflowSink is installed (see below).
class range_error : public std::overflow_error {
public:
    explicit range_error(const std::string& what) : std::overflow_error(what) {}
};

// What an elementwise kernel throws for a value below the range when no sink
// is installed: which output (the value or the derivative) and why, so that
// callers can name the layer and quantity in their own message.
class underflow_error : public range_error {
public:
    underflow_error(bool derivative, const std::string& detail)
        : range_error((derivative ? "derivative below loggrad's exponent range (|log2| < 2^60): "
                                  : "value below loggrad's exponent range (|log2| < 2^60): ") + detail),
          derivative_(derivative), detail_(detail) {}
    bool derivative() const { return derivative_; }
    const std::string& detail() const { return detail_; }

private:
    bool derivative_;
    std::string detail_;
};

// Past the range on the small side the contract behaves as IEEE float64 does
// at its own (DESIGN.md section 1): a value that underflows becomes an exact
// zero and is counted. The elementwise kernels (activations, losses) flush and
// count into the sink installed on the calling thread; with none they throw
// range_error, as before the sink existed. Counts are per value: an
// activation and its derivative count once each.
struct UnderflowSink {
    std::atomic<std::uint64_t> values{0};       // activations, loss terms
    std::atomic<std::uint64_t> derivatives{0};  // activation derivatives, loss gradients
};

namespace detail {
inline thread_local UnderflowSink* tl_underflow_sink = nullptr;
}  // namespace detail

inline UnderflowSink* underflow_sink() { return detail::tl_underflow_sink; }

// Installs sink (null: underflow throws) on this thread for the scope's life.
class UnderflowScope {
public:
    explicit UnderflowScope(UnderflowSink* sink) : saved_(detail::tl_underflow_sink) {
        detail::tl_underflow_sink = sink;
    }
    ~UnderflowScope() { detail::tl_underflow_sink = saved_; }
    UnderflowScope(const UnderflowScope&) = delete;
    UnderflowScope& operator=(const UnderflowScope&) = delete;

private:
    UnderflowSink* saved_;
};

struct Ext {
    double m;  // mantissa: |m| in [0.5, 1), or 0
    exp_t e;   // binary exponent (kZeroExp for zero)
};

constexpr Ext kExtZero{0.0, kZeroExp};
constexpr Ext kExtOne{0.5, 1};

namespace detail {
inline std::uint64_t bits(double x) {
    std::uint64_t b;
    std::memcpy(&b, &x, sizeof b);
    return b;
}
inline double from_bits(std::uint64_t b) {
    double x;
    std::memcpy(&x, &b, sizeof x);
    return x;
}
}  // namespace detail

// 2^k for k in [-1022, 1023], built from bits (exact, no libm call).
inline double pow2(int k) {
    return detail::from_bits(static_cast<std::uint64_t>(k + 1023) << 52);
}

// m * 2^d for d <= 0 with |m| <= 1: exact unless the result is subnormal,
// where it rounds as IEEE multiplication does.
inline double scale_down(double m, exp_t d) {
    if (d >= -1022) return m * pow2(static_cast<int>(d));
    if (d < -1100) return 0.0 * m;  // keeps the sign of m
    return std::ldexp(m, static_cast<int>(d));
}

// Brings (m, e) to normal form. m must be finite.
inline Ext normalize(double m, exp_t e) {
    std::uint64_t b = detail::bits(m);
    int be = static_cast<int>((b >> 52) & 0x7ff);
    if (be == 0) {  // zero or subnormal
        if (m == 0.0) return kExtZero;
        int k = 0;
        double f = std::frexp(m, &k);
        return Ext{f, e + k};
    }
    b = (b & ~(std::uint64_t(0x7ff) << 52)) | (std::uint64_t(1022) << 52);
    return Ext{detail::from_bits(b), e + (be - 1022)};
}

inline Ext from_double(double x) { return normalize(x, 0); }

namespace detail {
// All ones iff the 64-bit pattern x is nonzero, else 0 (branch-free).
inline std::uint64_t nonzero_mask(std::uint64_t x) {
    return std::uint64_t(0) - ((x | (std::uint64_t(0) - x)) >> 63);
}

// (m, e) of c * 2^base for a normal or zero c: the mantissa bits of c with
// exponent field 2^-1, or kExtZero for +-0 (relu nets are half zeros).
// Branch-free integer operations only (SSE2 has no 64-bit compare, so
// zero/subnormal detection uses the borrow of a subtraction instead), so that
// loops over it vectorise. Returns a value whose bit 63 is set iff c was
// subnormal (its result is then wrong, and must be redone).
inline std::uint64_t normal_parts(double c, exp_t base, double& om, exp_t& oe) {
    constexpr std::uint64_t kExpMask = std::uint64_t(0x7ff) << 52;
    constexpr std::uint64_t kHalf = std::uint64_t(1022) << 52;
    const std::uint64_t b = bits(c);
    const std::uint64_t field = b & kExpMask;
    const std::uint64_t nz = nonzero_mask(b << 1);  // << 1: +-0 alike
    om = from_bits(((b & ~kExpMask) | kHalf) & nz);
    const std::uint64_t e = static_cast<std::uint64_t>(base + static_cast<exp_t>(field >> 52) - 1022);
    oe = static_cast<exp_t>((e & nz) | (static_cast<std::uint64_t>(kZeroExp) & ~nz));
    return (field - (std::uint64_t(1) << 52)) & nz;  // borrows into bit 63 iff field == 0
}

// Main loop of normalize_n; true when some c[i] was subnormal.
template <bool kAdd>
inline bool normalize_main(std::size_t n, const double* c, exp_t base, const exp_t* add, double* om,
                           exp_t* oe) {
    std::uint64_t rare = 0;
    for (std::size_t i = 0; i < n; ++i) rare |= normal_parts(c[i], base + (kAdd ? add[i] : 0), om[i], oe[i]);
    return (rare >> 63) != 0;
}
}  // namespace detail

// Normalises n values c[i] * 2^(base + add[i]) (add may be null) into (om, oe).
// The main loop vectorises; the rare zeros and subnormals are redone after.
inline void normalize_n(std::size_t n, const double* c, exp_t base, const exp_t* add, double* om,
                        exp_t* oe) {
    const bool rare = add ? detail::normalize_main<true>(n, c, base, add, om, oe)
                          : detail::normalize_main<false>(n, c, base, add, om, oe);
    if (!rare) return;
    for (std::size_t i = 0; i < n; ++i) {
        if (c[i] != 0.0 && std::fabs(c[i]) < 2.2250738585072014e-308) {  // subnormal
            const Ext r = normalize(c[i], base + (add ? add[i] : 0));
            om[i] = r.m;
            oe[i] = r.e;
        }
    }
}

namespace detail {
// max(a, b) of two exponents, branch-free (a - b must not overflow).
inline exp_t max_exp(exp_t a, exp_t b) {
    const auto ua = static_cast<std::uint64_t>(a), ub = static_cast<std::uint64_t>(b);
    const std::uint64_t lt = std::uint64_t(0) - (static_cast<std::uint64_t>(a - b) >> 63);  // all ones iff a < b
    return static_cast<exp_t>(ua ^ ((ua ^ ub) & lt));
}

// One element of add_n (below): (om, oe) = (am, ae) + (bm, be).
inline void add_parts(double am, exp_t ae, double bm, exp_t be, double& om, exp_t& oe) {
    const exp_t E = max_exp(ae, be);
    const exp_t da = max_exp(ae - E, -100), db = max_exp(be - E, -100);
    const double s = am * pow2(static_cast<int>(da)) + bm * pow2(static_cast<int>(db));
    normal_parts(s, E, om, oe);
}
}  // namespace detail

// a[i] += b[i] in place, rounded exactly as add() rounds: branch-free, so it
// vectorises. The larger exponent E scales its own mantissa by 1 and the other
// by 2^max(d, -100): a term below 2^-64 of the larger rounds away either way
// (as add()'s d < -64 shortcut says), and a zero (exponent kZeroExp) scales to
// 0. The sum is 0 or at least 2^-153: a normal double.
inline void add_n(std::size_t n, double* am, exp_t* ae, const double* bm, const exp_t* be) {
    for (std::size_t i = 0; i < n; ++i) detail::add_parts(am[i], ae[i], bm[i], be[i], am[i], ae[i]);
}

// b[i] = a[i] * b[i] in place, as mul() gives it: the product of two
// mantissas in [0.5, 1) lies in [0.25, 1), always a normal double, and a zero
// factor gives a zero product. Branch-free, so it vectorises.
inline void mul_n(std::size_t n, const double* am, const exp_t* ae, double* bm, exp_t* be) {
    for (std::size_t i = 0; i < n; ++i) detail::normal_parts(am[i] * bm[i], ae[i] + be[i], bm[i], be[i]);
}

inline bool is_zero(Ext a) { return a.m == 0.0; }

inline Ext neg(Ext a) { return Ext{-a.m, a.e}; }

inline Ext mul(Ext a, Ext b) {
    if (a.m == 0.0 || b.m == 0.0) return kExtZero;
    return normalize(a.m * b.m, a.e + b.e);
}

inline Ext mul(Ext a, double b) { return mul(a, from_double(b)); }

inline Ext div(Ext a, Ext b) {
    if (a.m == 0.0) return kExtZero;
    return normalize(a.m / b.m, a.e - b.e);
}

// Correctly rounded a + b (as unbounded-exponent float64).
inline Ext add(Ext a, Ext b) {
    if (a.m == 0.0) return b;
    if (b.m == 0.0) return a;
    if (a.e < b.e) std::swap(a, b);
    const exp_t d = b.e - a.e;  // <= 0
    // |b| < 2^-61 |a| is below half an ulp of a: a + b rounds to a, as in float64.
    if (d < -64) return a;
    return normalize(a.m + b.m * pow2(static_cast<int>(d)), a.e);
}

inline Ext sub(Ext a, Ext b) { return add(a, neg(b)); }

inline Ext add(Ext a, double b) { return add(a, from_double(b)); }

// float64 value: 0 or +-inf where out of range, as float64 would give.
inline double to_double(Ext a) {
    if (a.m == 0.0) return a.m;
    if (a.e > 1024) return std::copysign(std::numeric_limits<double>::infinity(), a.m);
    if (a.e < -1080) return 0.0 * a.m;
    return std::ldexp(a.m, static_cast<int>(a.e));
}

constexpr double kLog10_2 = 0.301029995663981195213738894724493027;
constexpr double kLn2 = 0.693147180559945309417232121458176568;

// log10|a| (-inf for an exact zero).
inline double log10abs(Ext a) {
    if (a.m == 0.0) return -std::numeric_limits<double>::infinity();
    return static_cast<double>(a.e) * kLog10_2 + std::log10(std::fabs(a.m));
}

// ln|a| (-inf for an exact zero).
inline double logabs(Ext a) {
    if (a.m == 0.0) return -std::numeric_limits<double>::infinity();
    return static_cast<double>(a.e) * kLn2 + std::log(std::fabs(a.m));
}

inline int sign(Ext a) { return (a.m > 0) - (a.m < 0); }

inline bool in_range(exp_t e) { return e >= -kMaxExp && e <= kMaxExp; }

// e^x for any finite double x, in extended range. Throws range_error when the
// result's exponent would exceed kMaxExp (|x| > ~8e17).
Ext exp_ext(double x);

// Whether e^x for x < 0 falls below the extended range: exactly where
// exp_ext(x) would throw for such an x.
inline bool exp_underflows(double x) {
    constexpr double kLog2e = 1.44269504088896340735992468100189214;
    return x < -700.0 && !(std::fabs(std::nearbyint(x * kLog2e)) < static_cast<double>(kMaxExp - 4));
}

// e^x for an extended x (x beyond float64 range throws range_error unless
// the result is exactly representable: it never is, so it always throws).
Ext exp_ext(Ext x);

// ln(1 + a) for a >= 0 in extended range; result in extended range.
Ext log1p_ext(Ext a);

// Natural log of a positive extended value, as an extended value.
Ext log_ext(Ext a);

}  // namespace loggrad
