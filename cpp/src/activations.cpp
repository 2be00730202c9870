// Activation functions: extended path (exact, log space where it matters) and
// float64 path (framework formulas). Each function's derivative sits next to it.
#include "loggrad/activations.hpp"

#include "loggrad/parallel.hpp"
#include "simd.hpp"
#include "tanh.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <type_traits>

namespace loggrad {

const std::vector<std::string>& activation_names() {
    static const std::vector<std::string> names{"identity", "sigmoid", "tanh",     "relu",
                                                "leaky_relu", "elu",   "selu",     "softplus",
                                                "gelu",       "silu"};
    return names;
}

std::string activation_name(Activation a) {
    return activation_names().at(static_cast<std::size_t>(a));
}

Activation activation_from_name(const std::string& name) {
    const auto& names = activation_names();
    for (std::size_t i = 0; i < names.size(); ++i)
        if (names[i] == name) return static_cast<Activation>(i);
    if (name == "linear") return Activation::identity;
    std::string valid;
    for (const auto& n : names) valid += (valid.empty() ? "" : ", ") + n;
    throw std::invalid_argument("unknown activation '" + name + "'; valid: " + valid +
                                " (and 'linear' for identity)");
}

namespace {

constexpr double kInvSqrt2 = 0.707106781186547524400844362104849039;
constexpr double kInvSqrt2Pi = 0.398942280401432677939946059934381868;
constexpr double kSqrtPiOver2 = 1.25331413731550025120788264240552263;
constexpr double kInvSqrtPi = 0.564189583547756286948079451560772586;

// Below this |z| (2^-900) every activation is its first-order Taylor form to
// the last bit; above 2^1000 its asymptotic form. In between z is a double.
constexpr exp_t kTinyExp = -900;
constexpr exp_t kHugeExp = 1000;

[[noreturn]] void derivative_out_of_range(Activation act, Ext z) {
    throw range_error(activation_name(act) + " at a pre-activation of " +
                      (sign(z) < 0 ? "-" : "+") + "10^" + std::to_string(log10abs(z)) +
                      " has a value or derivative beyond loggrad's exponent range (|log2| < 2^60)");
}

void set(Ext* p, Ext v) {
    if (p) *p = v;
}

// sigmoid from t = e^{-|z|}: value and derivative t/(1+t)^2, both extended.
void sigmoid_from_t(bool positive, Ext t, Ext* a, Ext* d) {
    if (t.e < -60) {  // 1 + t rounds to 1
        set(a, positive ? kExtOne : t);
        set(d, t);
        return;
    }
    const double td = to_double(t);
    const double onep = 1.0 + td;
    set(a, from_double(positive ? 1.0 / onep : td / onep));
    set(d, from_double(td / (onep * onep)));
}

// erfcx(x) = e^{x^2} erfc(x) for x >= 3.5.
double erfcx_large(double x) {
    if (x < 26.0) {
        // e^{x^2} with x^2 = h + l exactly (fma), so the exponent carries no rounding error.
        const double h = x * x;
        const double l = std::fma(x, x, -h);
        return std::exp(h) * std::erfc(x) * (1.0 + l);
    }
    // Asymptotic series: 1/(x sqrt(pi)) sum_n (-1)^n (2n-1)!! / (2x^2)^n; x >= 26 gives
    // terms below 1e-22 after ten.
    const double w = 1.0 / (2.0 * x * x);
    double term = 1.0, sum = 1.0;
    for (int n = 1; n <= 12; ++n) {
        term *= -(2.0 * n - 1.0) * w;
        sum += term;
    }
    return sum * kInvSqrtPi / x;
}

// e^{-z^2/2} for double z, extended, with z^2 split exactly.
Ext gauss_ext(double z) {
    const double h = z * z;
    const double l = std::fma(z, z, -h);
    Ext g = exp_ext(-0.5 * h);
    return mul(g, from_double(std::exp(-0.5 * l)));
}

// Above this z, e^{-z} < 2^-70: softplus(z) = silu(z) = z, their derivatives
// and sigmoid(z) are 1 to the last bit (z e^{-z} < 2^-64 too). Taking these
// forms there avoids e^{-z}, which leaves the extended range for z > 2^60 ln 2
// although the results do not.
constexpr double kSaturated = 50.0;

void activate_double_range(Activation act, Ext zx, double z, Ext* a, Ext* d) {
    if (z > kSaturated && (act == Activation::softplus || act == Activation::silu)) {
        set(a, zx);
        set(d, kExtOne);
        return;
    }
    switch (act) {
        case Activation::sigmoid:
            if (z > kSaturated && !d) {  // the value alone: 1 (the derivative e^{-z} needs the range)
                set(a, kExtOne);
                return;
            }
            sigmoid_from_t(z >= 0, exp_ext(-std::fabs(z)), a, d);
            return;
        case Activation::tanh: {
            set(a, from_double(std::tanh(z)));
            if (d) {
                const Ext t = exp_ext(-2.0 * std::fabs(z));  // 1 - tanh^2 = 4t/(1+t)^2
                if (t.e < -60) {
                    *d = Ext{t.m, t.e + 2};
                } else {
                    const double td = to_double(t);
                    *d = from_double(4.0 * td / ((1.0 + td) * (1.0 + td)));
                }
            }
            return;
        }
        case Activation::elu:
            if (z > 0) {
                set(a, zx);
                set(d, kExtOne);
            } else {
                set(a, from_double(kEluAlpha * std::expm1(z)));
                if (d) *d = mul(exp_ext(z), from_double(kEluAlpha));
            }
            return;
        case Activation::selu:
            if (z > 0) {
                set(a, mul(zx, from_double(kSeluLambda)));
                set(d, from_double(kSeluLambda));
            } else {
                set(a, from_double(kSeluLambda * kSeluAlpha * std::expm1(z)));
                if (d) *d = mul(exp_ext(z), from_double(kSeluLambda * kSeluAlpha));
            }
            return;
        case Activation::softplus:
            if (z > 0) {
                set(a, from_double(z + std::log1p(std::exp(-z))));
                if (d) sigmoid_from_t(true, exp_ext(-z), d, nullptr);  // softplus' = sigmoid
            } else {
                const Ext t = exp_ext(z);
                set(a, log1p_ext(t));
                if (d) sigmoid_from_t(false, t, d, nullptr);
            }
            return;
        case Activation::gelu: {
            if (z >= -5.0) {
                const double cdf = 0.5 * std::erfc(-z * kInvSqrt2);
                set(a, from_double(z * cdf));
                set(d, from_double(cdf + z * kInvSqrt2Pi * std::exp(-0.5 * z * z)));
            } else {
                // Phi(z) = phi(z) R with R = sqrt(pi/2) erfcx(-z/sqrt2) (Mills ratio):
                // a = z phi R, a' = phi (R + z); phi in extended range.
                const Ext phi = mul(gauss_ext(z), from_double(kInvSqrt2Pi));
                const double r = kSqrtPiOver2 * erfcx_large(-z * kInvSqrt2);
                set(a, mul(phi, from_double(z * r)));
                set(d, mul(phi, from_double(r + z)));
            }
            return;
        }
        case Activation::silu: {
            const Ext t = exp_ext(-std::fabs(z));
            Ext s;  // sigmoid(z)
            sigmoid_from_t(z >= 0, t, &s, nullptr);
            set(a, mul(s, from_double(z)));
            if (d) {
                // silu' = s (1 + z (1 - s)), with 1 - s = sigmoid(-z) from the same t.
                Ext sm;
                sigmoid_from_t(z < 0, t, &sm, nullptr);
                *d = mul(s, from_double(1.0 + z * to_double(sm)));
            }
            return;
        }
        default:
            throw std::logic_error("activate_double_range: piecewise-linear activation");
    }
}

}  // namespace

void activate_ext(Activation act, Ext z, Ext* a, Ext* d) {
    const bool pos = z.m > 0;
    switch (act) {  // piecewise-linear ones are exact in any range
        case Activation::identity:
            set(a, z);
            set(d, kExtOne);
            return;
        case Activation::relu:
            set(a, pos ? z : kExtZero);
            set(d, pos ? kExtOne : kExtZero);
            return;
        case Activation::leaky_relu:
            set(a, pos ? z : mul(z, from_double(kLeakySlope)));
            set(d, from_double(pos ? 1.0 : kLeakySlope));
            return;
        default:
            break;
    }
    if (z.m == 0.0 || z.e < kTinyExp) {
        // First-order Taylor forms: f(z) = f(0) + f'(0) z to the last bit.
        switch (act) {
            case Activation::sigmoid:
                set(a, from_double(0.5));
                set(d, from_double(0.25));
                return;
            case Activation::tanh:
            case Activation::elu:
                set(a, z);
                set(d, kExtOne);
                return;
            case Activation::selu: {
                const double k = pos ? kSeluLambda : kSeluLambda * kSeluAlpha;
                set(a, mul(z, from_double(k)));
                set(d, from_double(k));
                return;
            }
            case Activation::softplus:
                set(a, from_double(kLn2));
                set(d, from_double(0.5));
                return;
            case Activation::gelu:
            case Activation::silu:
                set(a, Ext{z.m, z.m == 0.0 ? kZeroExp : z.e - 1});
                set(d, from_double(0.5));
                return;
            default:
                break;
        }
    }
    if (z.e > kHugeExp) {
        // |z| > 2^1000: the saturated side is exact; the other side's value or
        // derivative is e^{-|z|}, beyond the extended range.
        switch (act) {
            case Activation::sigmoid:
                if (!pos) derivative_out_of_range(act, z);
                set(a, kExtOne);
                break;
            case Activation::tanh:
                set(a, from_double(pos ? 1.0 : -1.0));
                break;
            case Activation::elu:
                set(a, pos ? z : from_double(-kEluAlpha));
                if (pos) set(d, kExtOne);
                break;
            case Activation::selu:
                set(a, pos ? mul(z, from_double(kSeluLambda))
                           : from_double(-kSeluLambda * kSeluAlpha));
                if (pos) set(d, from_double(kSeluLambda));
                break;
            case Activation::softplus:
            case Activation::gelu:
            case Activation::silu:
                if (!pos) derivative_out_of_range(act, z);
                set(a, z);
                set(d, kExtOne);
                return;
            default:
                break;
        }
        if (d && (!pos || act == Activation::sigmoid || act == Activation::tanh))
            derivative_out_of_range(act, z);
        return;
    }
    activate_double_range(act, z, to_double(z), a, d);
}

namespace {

// float64 value and derivative of activation A at z (the derivative only when
// kDer: libm calls are not free to drop). One definition for the scalar and
// the array forms, so both give the same bits.
template <Activation A, bool kDer>
inline void f64_one(double z, double& v, double& g) {
    if constexpr (A == Activation::identity) {
        v = z;
        g = 1;
    } else if constexpr (A == Activation::sigmoid) {
        v = 1.0 / (1.0 + std::exp(-z));
        g = v * (1.0 - v);
    } else if constexpr (A == Activation::tanh) {
        v = tanh_kernel::tanh_f64(z);
        g = 1.0 - v * v;
    } else if constexpr (A == Activation::relu) {
        // nan propagates as in torch.relu / np.maximum (z > 0 alone would turn it into 0)
        v = z > 0 ? z : (z == z ? 0.0 : z);
        g = z > 0 ? 1.0 : 0.0;
    } else if constexpr (A == Activation::leaky_relu) {
        v = z > 0 ? z : kLeakySlope * z;
        g = z > 0 ? 1.0 : kLeakySlope;
    } else if constexpr (A == Activation::elu) {
        v = z > 0 ? z : kEluAlpha * std::expm1(z);
        if constexpr (kDer) g = z > 0 ? 1.0 : kEluAlpha * std::exp(z);
    } else if constexpr (A == Activation::selu) {
        v = z > 0 ? kSeluLambda * z : kSeluLambda * kSeluAlpha * std::expm1(z);
        if constexpr (kDer) g = z > 0 ? kSeluLambda : kSeluLambda * kSeluAlpha * std::exp(z);
    } else if constexpr (A == Activation::softplus) {
        // log(1 + e^z) as numpy's logaddexp(0, z) forms it: finite wherever the
        // value is (log1p(exp(z)) overflowed for z > 709; PyTorch's is finite there too)
        v = std::max(z, 0.0) + std::log1p(std::exp(-std::fabs(z)));
        if constexpr (kDer) g = 1.0 / (1.0 + std::exp(-z));
    } else if constexpr (A == Activation::gelu) {
        const double cdf = 0.5 * (1.0 + std::erf(z * kInvSqrt2));
        v = z * cdf;
        if constexpr (kDer) g = cdf + z * kInvSqrt2Pi * std::exp(-0.5 * z * z);
    } else {
        static_assert(A == Activation::silu, "every activation has a float64 form");
        const double s = 1.0 / (1.0 + std::exp(-z));
        v = z * s;
        g = s * (1.0 + z * (1.0 - s));
    }
}

// Calls fn(std::integral_constant<Activation, act>{}): the switch on the
// activation is made once, outside the loops.
template <class F>
void with_activation(Activation act, F&& fn) {
    using A = Activation;
    switch (act) {
        case A::identity: return fn(std::integral_constant<A, A::identity>{});
        case A::sigmoid: return fn(std::integral_constant<A, A::sigmoid>{});
        case A::tanh: return fn(std::integral_constant<A, A::tanh>{});
        case A::relu: return fn(std::integral_constant<A, A::relu>{});
        case A::leaky_relu: return fn(std::integral_constant<A, A::leaky_relu>{});
        case A::elu: return fn(std::integral_constant<A, A::elu>{});
        case A::selu: return fn(std::integral_constant<A, A::selu>{});
        case A::softplus: return fn(std::integral_constant<A, A::softplus>{});
        case A::gelu: return fn(std::integral_constant<A, A::gelu>{});
        case A::silu: return fn(std::integral_constant<A, A::silu>{});
    }
    throw std::invalid_argument("unknown activation code " + std::to_string(static_cast<int>(act)));
}

// a = f(z + b) (b per column; without kBias, f(z)) over rows x n values, and
// d = f'(...) when kDer. Piecewise-linear activations and tanh vectorise.
template <Activation A, bool kBias, bool kDer>
void f64_rows(std::size_t rows, std::size_t n, const double* z, const double* b, double* a, double* d) {
    for (std::size_t r = 0; r < rows; ++r) {
        const double* zr = z + r * n;
        double* ar = a + r * n;
        double* dr = kDer ? d + r * n : nullptr;
        for (std::size_t j = 0; j < n; ++j) {
            double v, g = 0;
            if constexpr (kBias) f64_one<A, kDer>(zr[j] + b[j], v, g);
            else f64_one<A, kDer>(zr[j], v, g);
            ar[j] = v;
            if constexpr (kDer) dr[j] = g;
        }
    }
}

// The piecewise-linear ones and tanh vectorise: built for AVX2 and AVX-512 too
// (see simd.hpp).
template <Activation A, bool kBias, bool kDer>
LOGGRAD_TARGET_AVX2 void f64_rows_avx2(std::size_t rows, std::size_t n, const double* z, const double* b, double* a,
                                       double* d) {
    f64_rows<A, kBias, kDer>(rows, n, z, b, a, d);
}
template <Activation A, bool kBias, bool kDer>
LOGGRAD_TARGET_AVX512 void f64_rows_avx512(std::size_t rows, std::size_t n, const double* z, const double* b,
                                           double* a, double* d) {
    f64_rows<A, kBias, kDer>(rows, n, z, b, a, d);
}

template <Activation A, bool kBias, bool kDer>
void f64_rows_dispatch(std::size_t rows, std::size_t n, const double* z, const double* b, double* a, double* d) {
#if LOGGRAD_SIMD_AVX2
    if constexpr (A == Activation::identity || A == Activation::relu || A == Activation::leaky_relu ||
                  A == Activation::tanh)
        return simd::pick(&f64_rows_avx512<A, kBias, kDer>, &f64_rows_avx2<A, kBias, kDer>,
                          &f64_rows<A, kBias, kDer>)(rows, n, z, b, a, d);
#endif
    f64_rows<A, kBias, kDer>(rows, n, z, b, a, d);
}

template <bool kBias>
void f64_rows(Activation act, std::size_t rows, std::size_t n, const double* z, const double* b, double* a,
              double* d) {
    with_activation(act, [&](auto A) {
        if (d) f64_rows_dispatch<decltype(A)::value, kBias, true>(rows, n, z, b, a, d);
        else f64_rows_dispatch<decltype(A)::value, kBias, false>(rows, n, z, b, a, d);
    });
}

}  // namespace

void activate_f64(Activation act, double z, double* a, double* d) { f64_rows<false>(act, 1, 1, &z, nullptr, a, d); }

void activate_f64_n(Activation act, std::size_t n, const double* z, double* a, double* d) {
    f64_rows<false>(act, 1, n, z, nullptr, a, d);
}

void bias_activate_f64(Activation act, std::size_t rows, std::size_t n, const double* z, const double* b,
                       double* a, double* d) {
    f64_rows<true>(act, rows, n, z, b, a, d);
}

namespace {

// Fast paths for the common case, a pre-activation well inside float64 range,
// written as doubles. Returns false when z is outside that range and the
// general path must be taken.
// tanh: 2^-900 <= |z| < 256, tanh_kernel::tanh_parts (the vectorised
// extended layers take the same; below 2^-900 both give z and 1).
inline bool fast_tanh(double zm, exp_t ze, Ext* a, Ext* d) {
    if (ze < kTinyExp || ze > 8) return false;
    double v, dv;
    tanh_kernel::tanh_parts(zm * pow2(static_cast<int>(ze)), v, dv);
    *a = from_double(v);
    if (d) *d = from_double(dv);
    return true;
}

// sigmoid: 2^-900 <= |z| < 512, where e^{-|z|} is one libm call and a normal double.
inline bool fast_sigmoid(double zm, exp_t ze, Ext* a, Ext* d) {
    if (ze < kTinyExp || ze > 9) return false;
    const double z = zm * pow2(static_cast<int>(ze));
    const double t = std::exp(-std::fabs(z)), onep = 1.0 + t;
    *a = from_double(z >= 0 ? 1.0 / onep : t / onep);
    if (d) *d = from_double(t / (onep * onep));
    return true;
}

template <bool (*Fast)(double, exp_t, Ext*, Ext*)>
void activate_loop(Activation act, std::size_t n, const double* zm, const exp_t* ze, double* am,
                   exp_t* ae, double* dm, exp_t* de) {
    Ext a, d;
    for (std::size_t i = 0; i < n; ++i) {
        bool done = false;
        if constexpr (Fast != nullptr) done = Fast(zm[i], ze[i], &a, dm ? &d : nullptr);
        if (!done) activate_ext(act, Ext{zm[i], ze[i]}, &a, dm ? &d : nullptr);
        am[i] = a.m;
        ae[i] = a.e;
        if (dm) {
            dm[i] = d.m;
            de[i] = d.e;
        }
    }
}

}  // namespace

void activate_ext_n(Activation act, std::size_t n, const double* zm, const exp_t* ze, double* am,
                    exp_t* ae, double* dm, exp_t* de) {
    // Elementwise: chunks run in parallel, results independent of the split.
    const auto body = [&](std::size_t b, std::size_t e) {
        double* dmb = dm ? dm + b : nullptr;
        exp_t* deb = de ? de + b : nullptr;
        switch (act) {
            case Activation::tanh:
                return activate_loop<fast_tanh>(act, e - b, zm + b, ze + b, am + b, ae + b, dmb, deb);
            case Activation::sigmoid:
                return activate_loop<fast_sigmoid>(act, e - b, zm + b, ze + b, am + b, ae + b, dmb, deb);
            case Activation::relu:
            case Activation::identity:
                return simd::relu_ext(act == Activation::relu, e - b, zm + b, ze + b, am + b, ae + b, dmb, deb);
            default:
                return activate_loop<nullptr>(act, e - b, zm + b, ze + b, am + b, ae + b, dmb, deb);
        }
    };
    constexpr std::size_t kGrain = 4096;
    if (n < 2 * kGrain) {  // too little to share: no pool dispatch, no std::function
        body(0, n);
        return;
    }
    parallel_chunks(n, kGrain, body);
}


}  // namespace loggrad
