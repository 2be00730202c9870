// Per-layer statistics of a backward pass (see loggrad/stats.hpp).
#include "loggrad/stats.hpp"

#include <cmath>
#include <limits>

namespace loggrad {

namespace {

// A format's range in normal-form terms (|x| = m 2^e, m in [0.5, 1)), with
// 2^sub_k the smallest subnormal, 2^norm_k the smallest normal and
// T = over_m 2^over_e = (1 - 2^-(p+1)) 2^(emax+1) the overflow threshold
// (half an ulp above the largest finite value; p significand bits):
//   flush to 0: |x| <= 2^(sub_k - 1), i.e. e < sub_k, or e == sub_k and
//               |m| == 0.5 (the tie rounds to even, to 0);
//   subnormal:  not flushed and |x| < 2^norm_k, i.e. e <= norm_k;
//   overflow:   |x| >= T, i.e. e > over_e, or e == over_e and |m| >= over_m.
// For float64 over_m = 1 - 2^-54 rounds to 1.0, which no mantissa reaches:
// a 53-bit value at or above the largest double is above T only from 2^1024.
struct Range {
    exp_t sub_k, norm_k, over_e;
    double over_m;
};
constexpr Range kRanges[kFormats] = {
    {-1074, -1022, 1024, 1.0 - 0x1p-54},  // float64
    {-149, -126, 128, 1.0 - 0x1p-25},     // float32
    {-133, -126, 128, 1.0 - 0x1p-9},      // bfloat16
    {-24, -14, 16, 1.0 - 0x1p-12},        // float16
};

inline void classify(double am, exp_t e, TensorStats& st) {
    if (e > kRanges[3].norm_k && e < kRanges[3].over_e) return;  // a normal float16, so in range for all
    for (int f = 0; f < kFormats; ++f) {
        const Range& r = kRanges[f];
        const bool flush = e < r.sub_k || (e == r.sub_k && am == 0.5);
        st.flush[f] += flush;
        st.subnormal[f] += !flush && e <= r.norm_k;
        st.overflow[f] += e > r.over_e || (e == r.over_e && am >= r.over_m);
    }
}

// The engine keeps values in normal form; anything else is brought there.
inline Ext normal_form(double m, exp_t e) {
    const double am = std::fabs(m);
    return am >= 0.5 && am < 1.0 ? Ext{m, e} : normalize(m, e);
}

inline void track_extremes(double am, exp_t e, TensorStats& st) {
    if (e > st.max_e || (e == st.max_e && am > st.max_m)) {
        st.max_e = e;
        st.max_m = am;
    }
    if (st.min_m == 0.0 || e < st.min_e || (e == st.min_e && am < st.min_m)) {
        st.min_e = e;
        st.min_m = am;
    }
}

}  // namespace

namespace {

// Adds a nonzero normal-form value to st: extremes, range counts, and the sum
// of squares scaled by 2^-norm_e, rescaled when a larger exponent arrives (a
// few times per tensor; terms more than 2^-1100 below the largest are below
// the sum's rounding error, as in any float64 sum).
inline void add_value(const Ext& x, TensorStats& st) {
    const double am = std::fabs(x.m);
    track_extremes(am, x.e, st);
    classify(am, x.e, st);
    if (x.e > st.norm_e) {
        st.norm_s = st.norm_e == kZeroExp ? 0.0 : scale_down(scale_down(st.norm_s, st.norm_e - x.e), st.norm_e - x.e);
        st.norm_e = x.e;
    }
    const double v = x.e == st.norm_e ? x.m : scale_down(x.m, x.e - st.norm_e);
    st.norm_s += v * v;
}

// sum of log2 |x| over nonzero values, as the exponents' integer sum plus the
// log2 of the mantissas' product (renormalised before it can underflow):
// one log2 per 1000 values or so instead of one per value.
struct Log2Sum {
    double prod = 1.0;
    std::int64_t exps = 0;
    void add(double am, exp_t e) {
        exps += e;
        prod *= am;  // am in [0.5, 1): prod stays normal for a thousand factors
        if (prod < 0x1p-900) {
            int k = 0;
            prod = std::frexp(prod, &k);
            exps += k;
        }
    }
    double value() const { return static_cast<double>(exps) + std::log2(prod); }
};

}  // namespace

void tensor_stats_ext(const double* m, const exp_t* e, std::size_t n, TensorStats& st) {
    for (std::size_t i = 0; i < n; ++i) {
        if (m[i] == 0.0) {
            ++st.zeros;
            continue;
        }
        add_value(normal_form(m[i], e[i]), st);
    }
    st.count += n;
}

void tensor_stats_f64(const double* x, std::size_t n, TensorStats& st) {
    for (std::size_t i = 0; i < n; ++i) {
        if (x[i] == 0.0) {
            ++st.zeros;
            continue;
        }
        if (!std::isfinite(x[i])) {  // a float64 pass that overflowed: counted as overflow in every format
            for (int f = 0; f < kFormats; ++f) ++st.overflow[f];
            continue;
        }
        int k = 0;
        const double mm = std::frexp(x[i], &k);
        add_value(Ext{mm, static_cast<exp_t>(k)}, st);
    }
    st.count += n;
}

void derivative_stats_ext(const double* m, const exp_t* e, std::size_t n, DerivativeStats& st) {
    Log2Sum acc;
    for (std::size_t i = 0; i < n; ++i) {
        if (m[i] == 0.0) {
            ++st.zeros;
            continue;
        }
        const Ext x = normal_form(m[i], e[i]);
        // |f'| < 2^-10 iff e <= -10 (|f'| = |m| 2^e, |m| in [0.5, 1))
        st.saturated += x.e <= -10;
        acc.add(std::fabs(x.m), x.e);
    }
    st.count += n;
    st.sum_log2 += acc.value();
}

void derivative_stats_f64(const double* d, std::size_t n, DerivativeStats& st) {
    Log2Sum acc;
    for (std::size_t i = 0; i < n; ++i) {
        if (d[i] == 0.0) {
            ++st.zeros;
            continue;
        }
        if (!std::isfinite(d[i])) continue;  // left out of the mean log2
        int k = 0;
        const double mm = std::frexp(std::fabs(d[i]), &k);
        st.saturated += std::fabs(d[i]) < kSaturatedDerivative;
        acc.add(mm, k);
    }
    st.count += n;
    st.sum_log2 += acc.value();
}

namespace {

double* flatten_tensor(const TensorStats& t, double* o) {
    constexpr double kNegInf = -std::numeric_limits<double>::infinity();
    const bool zero = t.max_m == 0.0 || t.norm_s == 0.0;
    *o++ = zero ? kNegInf : static_cast<double>(t.norm_e);
    *o++ = zero ? 0.0 : 0.5 * std::log2(t.norm_s);
    *o++ = zero ? kNegInf : static_cast<double>(t.max_e);
    *o++ = zero ? 0.0 : std::log2(t.max_m);
    *o++ = zero ? kNegInf : static_cast<double>(t.min_e);
    *o++ = zero ? 0.0 : std::log2(t.min_m);
    *o++ = static_cast<double>(t.count);
    *o++ = static_cast<double>(t.zeros);
    for (int f = 0; f < kFormats; ++f) *o++ = static_cast<double>(t.flush[f]);
    for (int f = 0; f < kFormats; ++f) *o++ = static_cast<double>(t.subnormal[f]);
    for (int f = 0; f < kFormats; ++f) *o++ = static_cast<double>(t.overflow[f]);
    return o;
}

}  // namespace

void flatten_stats(const LayerStats& s, double* out) {
    double* o = out;
    o = flatten_tensor(s.dW, o);
    o = flatten_tensor(s.db, o);
    o = flatten_tensor(s.delta, o);
    o = flatten_tensor(s.a, o);
    *o++ = static_cast<double>(s.der.count);
    *o++ = static_cast<double>(s.der.zeros);
    *o++ = static_cast<double>(s.der.saturated);
    *o++ = s.der.sum_log2;
}

}  // namespace loggrad
