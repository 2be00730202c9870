// The engine's elementwise kernels, each built for the baseline, AVX2 and
// AVX-512 (see simd.hpp).
#include "simd.hpp"

#include "loggrad/gemm.hpp"
#include "tanh.hpp"

#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

namespace loggrad::simd {

namespace {

Isa detect() {
#if LOGGRAD_SIMD_AVX2
    const char* env = std::getenv("LOGGRAD_SIMD");
    if (env && (std::strcmp(env, "baseline") == 0 || std::strcmp(env, "sse2") == 0)) return Isa::baseline;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2")) return Isa::baseline;
    if (env && std::strcmp(env, "avx2") == 0) return Isa::avx2;
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw");
    return avx512 ? Isa::avx512 : Isa::avx2;
#else
    return Isa::baseline;
#endif
}

using detail::max_exp;

// |e| of a normal-form exponent, and 0 for an exact zero's kZeroExp.
inline std::uint64_t abs_exponent(exp_t e) {
    const std::uint64_t sg = static_cast<std::uint64_t>(e >> 63);  // all ones iff e < 0
    const std::uint64_t a = (static_cast<std::uint64_t>(e) ^ sg) - sg;
    return a & detail::nonzero_mask(static_cast<std::uint64_t>(e - kZeroExp));
}

inline void max_exps_impl(std::size_t n, const exp_t* e, exp_t* E) {
    for (std::size_t j = 0; j < n; ++j) E[j] = max_exp(E[j], e[j]);
}

template <bool kPerColumn>
inline std::uint64_t scale_impl(std::size_t n, const double* m, const exp_t* e, const exp_t* E, exp_t T,
                                double* s) {
    std::uint64_t dropped = 0;
    for (std::size_t k = 0; k < n; ++k) {
        const exp_t d = e[k] - E[kPerColumn ? k : 0];
        const std::uint64_t keep = (static_cast<std::uint64_t>(d + T) >> 63) - 1;  // all ones iff d >= -T
        const std::uint64_t dk = static_cast<std::uint64_t>(d) & keep;              // in [-T, 0], or 0
        const double p = m[k] * detail::from_bits((dk + 1023) << 52);
        s[k] = detail::from_bits(detail::bits(p) & keep);
        dropped |= ~keep & (detail::bits(m[k]) << 1);  // the sign bit shifted out: nonzero iff m != 0
    }
    return dropped;
}

// Largest of n exponents (kZeroExp when there are none).
inline exp_t max_exp_of_impl(std::size_t n, const exp_t* e) {
    exp_t acc[4] = {kZeroExp, kZeroExp, kZeroExp, kZeroExp};  // four lanes: no reduction to vectorise
    std::size_t k = 0;
    for (; k + 4 <= n; k += 4) max_exps_impl(4, e + k, acc);
    for (; k < n; ++k) acc[0] = max_exp(acc[0], e[k]);
    return max_exp(max_exp(acc[0], acc[1]), max_exp(acc[2], acc[3]));
}

// Bit 63 set iff |c| is below lo or above hi (or nan), given the bit patterns
// of lo and hi: bit 63 of (|c| - lo) or of (hi - |c|) borrows exactly then.
inline std::uint64_t outside_bits(double c, std::uint64_t lo_bits, std::uint64_t hi_bits) {
    const std::uint64_t ab = detail::bits(c) & ~(std::uint64_t(1) << 63);
    return (ab - lo_bits) | (hi_bits - ab);
}

// For a nonzero m: bit 63 set iff e < -kMaxExp (below the range), bit 62 iff
// e > kMaxExp (above it); 0 for a zero. Unsigned arithmetic, so that the
// exponent of a zero (kZeroExp) or of a product just past the range cannot
// overflow; every exponent the engine forms lies within +-2^62.
inline std::uint64_t range_bits(double m, exp_t e) {
    const auto ue = static_cast<std::uint64_t>(e), um = static_cast<std::uint64_t>(kMaxExp);
    const std::uint64_t below = (ue + um) & (std::uint64_t(1) << 63);           // e + kMaxExp < 0
    const std::uint64_t above = ((um - ue) >> 1) & (std::uint64_t(1) << 62);    // kMaxExp - e < 0
    return (below | above) & detail::nonzero_mask(detail::bits(m) << 1);  // << 1: +-0 alike
}

// One row of normalize_rows_outside; range |= the row's range_bits.
inline std::uint64_t normalize_outside_impl(std::size_t n, const double* c, exp_t base, double lo, double hi,
                                            double* om, exp_t* oe, std::uint64_t& range) {
    const std::uint64_t lo_bits = detail::bits(lo), hi_bits = detail::bits(hi);
    std::uint64_t out = 0, bad = 0;
    for (std::size_t j = 0; j < n; ++j) {
        double m;
        exp_t e;
        detail::normal_parts(c[j], base, m, e);
        out |= outside_bits(c[j], lo_bits, hi_bits);
        bad |= range_bits(m, e);
        om[j] = m;
        oe[j] = e;
    }
    range |= bad;
    return out;
}

// relu (or identity, when !kRelu) of an extended z, as activate_ext gives it:
// (am, ae) and (kDer) the derivative (dm, de).
template <bool kRelu, bool kDer>
inline void relu_parts(double zm, exp_t ze, double& am, exp_t& ae, double& dm, exp_t& de) {
    const bool pos = !kRelu || zm > 0;
    am = pos ? zm : 0.0;
    ae = pos ? ze : kZeroExp;
    if constexpr (kDer) {
        dm = pos ? kExtOne.m : 0.0;
        de = pos ? kExtOne.e : kZeroExp;
    }
}

// Runs body(std::integral_constant<Epilogue, kind>, std::bool_constant<der>).
template <class F>
inline void with_kind_der(Epilogue kind, bool der, F&& body) {
    const auto with_der = [&](auto k) {
        if (der) body(k, std::true_type{});
        else body(k, std::false_type{});
    };
    switch (kind) {
        case Epilogue::identity: return with_der(std::integral_constant<Epilogue, Epilogue::identity>{});
        case Epilogue::relu: return with_der(std::integral_constant<Epilogue, Epilogue::relu>{});
        case Epilogue::tanh: return with_der(std::integral_constant<Epilogue, Epilogue::tanh>{});
    }
}

}  // namespace

Isa level() {
    static const Isa on = detect();
    return on;
}

const char* isa() {
    switch (level()) {
        case Isa::avx512: return "avx512";
        case Isa::avx2: return "avx2";
        default: return "baseline";
    }
}

LOGGRAD_SIMD_KERNEL(void, add_n, (std::size_t n, double* am, exp_t* ae, const double* bm, const exp_t* be),
                    (n, am, ae, bm, be), { loggrad::add_n(n, am, ae, bm, be); })

LOGGRAD_SIMD_KERNEL(void, mul_n, (std::size_t n, const double* am, const exp_t* ae, double* bm, exp_t* be),
                    (n, am, ae, bm, be), { loggrad::mul_n(n, am, ae, bm, be); })

LOGGRAD_SIMD_KERNEL(void, select_n, (std::size_t n, const double* am, const exp_t* ae, double* bm, exp_t* be),
                    (n, am, ae, bm, be), {
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint64_t keep = detail::nonzero_mask(detail::bits(bm[i]) << 1);  // << 1: +-0 alike
        bm[i] = detail::from_bits(detail::bits(am[i]) & keep);
        be[i] = static_cast<exp_t>((static_cast<std::uint64_t>(ae[i]) & keep) |
                                   (static_cast<std::uint64_t>(kZeroExp) & ~keep));
    }
})

LOGGRAD_SIMD_KERNEL(void, normalize_n,
                    (std::size_t n, const double* c, exp_t base, const exp_t* add, double* om, exp_t* oe),
                    (n, c, base, add, om, oe), { loggrad::normalize_n(n, c, base, add, om, oe); })


LOGGRAD_SIMD_KERNEL(std::uint64_t, max_exps,
                    (std::size_t rows, std::size_t n, const exp_t* e, exp_t* E, bool with_abs),
                    (rows, n, e, E, with_abs), {
    if (!with_abs) {
        for (std::size_t i = 0; i < rows; ++i) max_exps_impl(n, e + i * n, E);
        return std::uint64_t(0);
    }
    std::uint64_t mx = 0;
    for (std::size_t i = 0; i < rows; ++i) {
        const exp_t* ei = e + i * n;
        for (std::size_t j = 0; j < n; ++j) {
            E[j] = max_exp(E[j], ei[j]);
            const std::uint64_t a = abs_exponent(ei[j]);
            mx = mx < a ? a : mx;
        }
    }
    return mx;
})

LOGGRAD_SIMD_KERNEL(std::uint64_t, scale_cols,
                    (std::size_t rows, std::size_t n, const double* m, const exp_t* e, const exp_t* E, exp_t T,
                     double* s),
                    (rows, n, m, e, E, T, s), {
    std::uint64_t dropped = 0;
    for (std::size_t i = 0; i < rows; ++i) dropped |= scale_impl<true>(n, m + i * n, e + i * n, E, T, s + i * n);
    return dropped;
})

LOGGRAD_SIMD_KERNEL(std::uint64_t, normalize_rows_outside,
                    (std::size_t rows, std::size_t n, const double* c, const exp_t* base, double lo, double hi,
                     double* om, exp_t* oe, std::uint64_t* range),
                    (rows, n, c, base, lo, hi, om, oe, range), {
    std::uint64_t out = 0, bad = 0;
    for (std::size_t i = 0; i < rows; ++i)
        out |= normalize_outside_impl(n, c + i * n, base[i], lo, hi, om + i * n, oe + i * n, bad);
    *range = bad;
    return out;
})

namespace {
// One row of chain_rows past its range test: g from c 2^base, delta over (dm, de).
template <bool kUnit>
inline std::uint64_t chain_row_deltas(std::size_t n, const double* c, exp_t base, double* dm, exp_t* de) {
    std::uint64_t bad = 0;
    for (std::size_t j = 0; j < n; ++j) {
        double gm;
        exp_t ge;
        detail::normal_parts(c[j], base, gm, ge);
        bad |= range_bits(gm, ge);
        if constexpr (kUnit) {  // select_n
            const std::uint64_t keep = detail::nonzero_mask(detail::bits(dm[j]) << 1);
            dm[j] = detail::from_bits(detail::bits(gm) & keep);
            de[j] = static_cast<exp_t>((static_cast<std::uint64_t>(ge) & keep) |
                                       (static_cast<std::uint64_t>(kZeroExp) & ~keep));
        } else {  // mul_n
            detail::normal_parts(gm * dm[j], ge + de[j], dm[j], de[j]);
        }
    }
    return bad;
}
// Row i of chain_rows; any and bad as there.
template <bool kUnit>
inline unsigned chain_row(std::size_t i, std::size_t n, const double* c, const exp_t* base, std::uint64_t lo_bits,
                          std::uint64_t hi_bits, double* dm, exp_t* de, exp_t T, double* s, exp_t* E,
                          unsigned char* flags, unsigned char* skipped, std::uint64_t& bad) {
    const double* ci = c + i * n;
    const exp_t b = base[i];
    std::uint64_t out = 0;
    if (b != kZeroExp)
        for (std::size_t j = 0; j < n; ++j) out |= outside_bits(ci[j], lo_bits, hi_bits);
    skipped[i] = static_cast<unsigned char>(out >> 63);
    if (skipped[i]) return 2u;
    double* dmi = dm + i * n;
    exp_t* dei = de + i * n;
    bad |= chain_row_deltas<kUnit>(n, ci, b, dmi, dei);
    E[i] = max_exp_of_impl(n, dei);
    const bool f = scale_impl<false>(n, dmi, dei, E + i, T, s + i * n) != 0;
    flags[i] = f;
    return f ? 1u : 0u;
}
}  // namespace

LOGGRAD_SIMD_KERNEL(unsigned, chain_rows,
                    (bool unit, std::size_t rows, std::size_t n, const double* c, const exp_t* base, double lo,
                     double hi, double* dm, exp_t* de, exp_t T, double* s, exp_t* E, unsigned char* flags,
                     unsigned char* skipped, std::uint64_t* range),
                    (unit, rows, n, c, base, lo, hi, dm, de, T, s, E, flags, skipped, range), {
    const std::uint64_t lo_bits = detail::bits(lo), hi_bits = detail::bits(hi);
    unsigned any = 0;
    std::uint64_t bad = 0;
    for (std::size_t i = 0; i < rows; ++i)
        any |= unit ? chain_row<true>(i, n, c, base, lo_bits, hi_bits, dm, de, T, s, E, flags, skipped, bad)
                    : chain_row<false>(i, n, c, base, lo_bits, hi_bits, dm, de, T, s, E, flags, skipped, bad);
    *range |= bad;
    return any;
})

LOGGRAD_SIMD_KERNEL(bool, scale_rows,
                    (std::size_t rows, std::size_t n, const double* m, const exp_t* e, exp_t T, double* s, exp_t* E,
                     unsigned char* flags),
                    (rows, n, m, e, T, s, E, flags), {
    bool any = false;
    for (std::size_t i = 0; i < rows; ++i) {
        E[i] = max_exp_of_impl(n, e + i * n);
        const bool f = scale_impl<false>(n, m + i * n, e + i * n, E + i, T, s + i * n) != 0;
        flags[i] = f;
        any |= f;
    }
    return any;
})

namespace {
inline std::uint64_t max_abs_exponent_impl(const double* m, const exp_t* e, std::size_t n) {
    std::uint64_t mx = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint64_t a = abs_exponent(e[i]) & detail::nonzero_mask(detail::bits(m[i]) << 1);
        mx = mx < a ? a : mx;
    }
    return mx;
}

// Rows [0, rows) of outer_rows.
inline void outer_rows_impl(std::size_t rows, std::size_t n, const double* dm, const exp_t* de, const double* am,
                            const exp_t* ae, double* cm, exp_t* ce) {
    // A product of two normal-form mantissas is a normal double or zero.
    for (std::size_t j = 0; j < rows; ++j) {
        const double d = dm[j];
        const exp_t e = de[j];
        double* cmj = cm + j * n;
        exp_t* cej = ce + j * n;
        for (std::size_t k = 0; k < n; ++k) detail::normal_parts(d * am[k], e + ae[k], cmj[k], cej[k]);
    }
}
}  // namespace

LOGGRAD_SIMD_KERNEL(void, outer_rows,
                    (std::size_t rows, std::size_t n, const double* dm, const exp_t* de, const double* am,
                     const exp_t* ae, double* cm, exp_t* ce),
                    (rows, n, dm, de, am, ae, cm, ce), { outer_rows_impl(rows, n, dm, de, am, ae, cm, ce); })

namespace {

// sum_k a[k] b[k] in four partial sums by k mod 4, combined as (s0 + s1) + (s2 + s3).
inline double dot4(std::size_t K, const double* a, const double* b) {
    double s[4] = {0.0, 0.0, 0.0, 0.0};
    std::size_t k = 0;
    for (; k + 4 <= K; k += 4)
        for (int u = 0; u < 4; ++u) s[u] += a[k + static_cast<std::size_t>(u)] * b[k + static_cast<std::size_t>(u)];
    for (int u = 0; k < K; ++k, ++u) s[u] += a[k] * b[k];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

// dot4 of a with kD rows of B (B + d K, d < kD) at once: the same operations
// for each, with kD independent chains of additions in flight. The four
// partial sums of a row are the lanes of one vector (GCC vector extension;
// two SSE2 halves in the baseline build: the same elementwise operations).
typedef double V4 __attribute__((vector_size(32)));

// By reference: a V4 passed or returned by value would change the calling
// convention between the baseline and AVX2 builds (GCC warns, -Wpsabi).
inline void load4(V4& v, const double* p) { std::memcpy(&v, p, sizeof v); }
inline void store4(double* p, const V4& v) { std::memcpy(p, &v, sizeof v); }

template <int kD>
inline void dots4(std::size_t K, const double* a, const double* B, double* c) {
    V4 s[kD];
    for (int d = 0; d < kD; ++d) s[d] = V4{0.0, 0.0, 0.0, 0.0};
    std::size_t k = 0;
    for (; k + 4 <= K; k += 4) {
        V4 av, bv;
        load4(av, a + k);
        for (int d = 0; d < kD; ++d) {
            load4(bv, B + static_cast<std::size_t>(d) * K + k);
            s[d] += av * bv;
        }
    }
    for (int u = 0; k < K; ++k, ++u)
        for (int d = 0; d < kD; ++d) s[d][u] += a[k] * B[static_cast<std::size_t>(d) * K + k];
    for (int d = 0; d < kD; ++d) c[d] = (s[d][0] + s[d][1]) + (s[d][2] + s[d][3]);
}

// kW columns c[0, kW) of one row of C = op(A) B (B not transposed), held in
// registers across k: c = 0.0 + a(0) b_0, then c += a(k) b_k in k order.
// kW a multiple of 4: vectors of four columns (as in dots4, so that the
// compiler's choices cannot leave the tile in scalar registers).
template <int kW, typename GetA>
inline void row_tile(std::size_t K, std::size_t N, GetA a, const double* B, double* c) {
    if constexpr (kW % 4 == 0) {
        constexpr int kV = kW / 4;
        V4 t[kV];
        const double a0 = a(0);
        const V4 zero{0.0, 0.0, 0.0, 0.0};
        V4 bv;
        for (int v = 0; v < kV; ++v) {
            load4(bv, B + 4 * v);
            t[v] = zero + a0 * bv;
        }
        for (std::size_t k = 1; k < K; ++k) {
            const double ak = a(k);
            const double* b = B + k * N;
            for (int v = 0; v < kV; ++v) {
                load4(bv, b + 4 * v);
                t[v] += ak * bv;
            }
        }
        for (int v = 0; v < kV; ++v) store4(c + 4 * v, t[v]);
    } else {
        double t[kW];
        const double a0 = a(0);
        for (int j = 0; j < kW; ++j) t[j] = 0.0 + a0 * B[j];
        for (std::size_t k = 1; k < K; ++k) {
            const double ak = a(k);
            const double* b = B + k * N;
            for (int j = 0; j < kW; ++j) t[j] += ak * b[j];
        }
        for (int j = 0; j < kW; ++j) c[j] = t[j];
    }
}

// Row c of C = op(A) B (B not transposed, K x N), as gemm_small makes it:
// tiles of 16, 4 and 1 columns (row_tile); a(k) is op(A)'s row. (gemm_small
// keeps its own copy of these loops: the float64 path returns its products
// as they are, and the compiler, free to swap the operands of a sum, could
// then pass on another of two NaNs.)
template <typename GetA>
inline void row_tiles(std::size_t K, std::size_t N, GetA a, const double* B, double* c) {
    std::size_t j = 0;
    for (; j + 16 <= N; j += 16) row_tile<16>(K, N, a, B + j, c + j);
    for (; j + 4 <= N; j += 4) row_tile<4>(K, N, a, B + j, c + j);
    for (; j < N; ++j) row_tile<1>(K, N, a, B + j, c + j);
}

// Row c of C = A B^T (A: M x K, B: N x K), as gemm_small makes it: four
// outputs at a time (dots4), then one at a time (dot4).
inline void row_dots(std::size_t K, std::size_t N, const double* a, const double* B, double* c) {
    std::size_t j = 0;
    for (; j + 4 <= N; j += 4) dots4<4>(K, a, B + j * K, c + j);
    for (; j < N; ++j) c[j] = dot4(K, a, B + j * K);
}

}  // namespace

LOGGRAD_SIMD_KERNEL(void, gemm_small,
                    (bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, const double* A,
                     const double* B, double* C),
                    (ta, tb, M, N, K, A, B, C), {
    if (!ta && tb) {
        for (std::size_t i = 0; i < M; ++i) {
            const double* a = A + i * K;
            std::size_t j = 0;
            for (; j + 4 <= N; j += 4) dots4<4>(K, a, B + j * K, C + i * N + j);
            for (; j < N; ++j) C[i * N + j] = dot4(K, a, B + j * K);
        }
        return;
    }
    for (std::size_t i = 0; i < M; ++i) {
        double* c = C + i * N;
        if (!tb) {
            const auto a = [&](std::size_t k) { return ta ? A[k * M + i] : A[i * K + k]; };
            std::size_t j = 0;
            for (; j + 16 <= N; j += 16) row_tile<16>(K, N, a, B + j, c + j);
            for (; j + 4 <= N; j += 4) row_tile<4>(K, N, a, B + j, c + j);
            for (; j < N; ++j) row_tile<1>(K, N, a, B + j, c + j);
            continue;
        }
        const double a0 = ta ? A[i] : A[i * K];
        for (std::size_t j = 0; j < N; ++j) c[j] = 0.0 + a0 * B[j * K];
        for (std::size_t k = 1; k < K; ++k) {
            const double a = ta ? A[k * M + i] : A[i * K + k];
            for (std::size_t j = 0; j < N; ++j) c[j] += a * B[j * K + k];
        }
    }
})

LOGGRAD_SIMD_KERNEL(std::uint64_t, out_of_range, (const double* m, const exp_t* e, std::size_t n), (m, e, n), {
    std::uint64_t bad = 0;
    for (std::size_t i = 0; i < n; ++i) bad |= range_bits(m[i], e[i]);
    return bad;
})

LOGGRAD_SIMD_KERNEL(std::uint64_t, max_abs_exponent, (const double* m, const exp_t* e, std::size_t n), (m, e, n), {
    return max_abs_exponent_impl(m, e, n);
})

LOGGRAD_SIMD_KERNEL(std::uint64_t, outer_gradient,
                    (std::size_t n1, std::size_t n2, const double* dm, const exp_t* de, const double* am,
                     const exp_t* ae, double* cm, exp_t* ce, double* sm, exp_t* se, bool bound),
                    (n1, n2, dm, de, am, ae, cm, ce, sm, se, bound), {
    outer_rows_impl(n1, n2, dm, de, am, ae, cm, ce);
    if (sm) loggrad::normalize_n(n1, dm, 0, de, sm, se);
    return bound ? max_abs_exponent_impl(dm, de, n1) + max_abs_exponent_impl(am, ae, n2) : std::uint64_t(0);
})

LOGGRAD_SIMD_KERNEL(void, outer_gradient_run,
                    (std::size_t n1, std::size_t n2, std::size_t count, const OuterGradient* g, bool bound,
                     std::uint64_t* bounds),
                    (n1, n2, count, g, bound, bounds), {
    for (std::size_t k = 0; k < count; ++k) {
        const OuterGradient& G = g[k];
        outer_rows_impl(n1, n2, G.dm, G.de, G.am, G.ae, G.cm, G.ce);
        loggrad::normalize_n(n1, G.dm, 0, G.de, G.sm, G.se);
        bounds[k] = bound ? max_abs_exponent_impl(G.dm, G.de, n1) + max_abs_exponent_impl(G.am, G.ae, n2)
                          : std::uint64_t(0);
    }
})

LOGGRAD_SIMD_KERNEL(bool, all_finite, (const double* x, std::size_t n), (x, n), {
    // An all-ones exponent field (inf/nan) plus one carries into bit 63.
    constexpr std::uint64_t kExpMask = std::uint64_t(0x7ff) << 52;
    std::uint64_t acc = 0;
    for (std::size_t i = 0; i < n; ++i) acc |= (detail::bits(x[i]) & kExpMask) + (std::uint64_t(1) << 52);
    return (acc >> 63) == 0;
})

LOGGRAD_SIMD_KERNEL(void, relu_ext,
                    (bool relu, std::size_t n, const double* zm, const exp_t* ze, double* am, exp_t* ae, double* dm,
                     exp_t* de),
                    (relu, n, zm, ze, am, ae, dm, de), {
    with_kind_der(relu ? Epilogue::relu : Epilogue::identity, dm != nullptr, [&](auto kKind, auto kDer) {
        for (std::size_t i = 0; i < n; ++i) {
            double d;
            exp_t f;
            relu_parts<kKind == Epilogue::relu, kDer>(zm[i], ze[i], am[i], ae[i], d, f);
            if constexpr (kDer) {
                dm[i] = d;
                de[i] = f;
            }
        }
    });
})

namespace {

// Stores element j of row i of bias_act_rows' outputs: the activation (am, ae)
// and, with kDer, the derivative (dm, de), both in normal form.
template <bool kDer>
inline void bias_act_put(const BiasAct& op, std::size_t n, std::size_t i, std::size_t j, double am, exp_t ae,
                         double dm, exp_t de) {
    op.am[i * n + j] = am;
    op.ae[i * n + j] = ae;
    if constexpr (kDer) {
        op.dm[i * n + j] = dm;
        op.de[i * n + j] = de;
    }
}

// Row i of bias_act_rows the float64 way (its products c, scale exponent e):
// true where that way applies and the row is done, false where the row must
// go the general way (bias_act_general_row), which then writes every output
// of the row again.
template <Epilogue kKind, bool kDer>
inline bool bias_act_float_row(const BiasAct& op, bool b_plain, std::size_t i, std::size_t n, const double* ci,
                               exp_t e, std::uint64_t lo_bits) {
    constexpr bool kTanh = kKind == Epilogue::tanh;
    // A float64 row: for |c| within [2^(-960 - e), 2^(1020 - e)],
    // t = c 2^e is exact and normal, and t + b (b zero or normal, |b|
    // <= 2^1020) neither overflows nor lands among the subnormals
    // (terms of at least 2^-970 are multiples of 2^-1022; a smaller b
    // leaves |t + b| > 2^-961). So the float64 sum is the exact sum
    // rounded once: what the extended steps give, in a fraction of the
    // operations. A c outside (or e too far out for 2^e to be a
    // double; for tanh, a sum beyond tanh_parts' range) sends the row
    // the general way. Where a bound is not a double, the trusted
    // range [lo, hi] lies within it already.
    if (!(b_plain && e >= -1022 && e <= 1023)) return false;
    const int k = static_cast<int>(e);
    const double p = pow2(k);
    const std::uint64_t hi_bits = detail::bits(op.hi);
    const std::uint64_t lo_f = -960 - k < -1022 ? lo_bits : std::max(lo_bits, detail::bits(pow2(-960 - k)));
    const std::uint64_t hi_f = 1020 - k > 1023 ? hi_bits : detail::bits(pow2(1020 - k));
    const std::uint64_t s_max = detail::bits(tanh_kernel::kTanhPartsMax);
    std::uint64_t miss = 0;
    // Each element reads inputs only and writes its own outputs: no
    // dependence between iterations, and no alias checks needed.
    _Pragma("GCC ivdep")
    for (std::size_t j = 0; j < n; ++j) {
        const double s = ci[j] * p + op.b[j];
        miss |= outside_bits(ci[j], lo_f, hi_f);
        double am, dm = 0.0;
        exp_t ae, de = 0;
        if constexpr (kTanh) {
            double v, d;
            tanh_kernel::tanh_parts(s, v, d);
            miss |= ~tanh_kernel::below(detail::bits(s) & ~(std::uint64_t(1) << 63), s_max);
            detail::normal_parts(v, 0, am, ae);
            detail::normal_parts(d, 0, dm, de);
        } else {
            double zm;
            exp_t ze;
            detail::normal_parts(s, 0, zm, ze);
            relu_parts<kKind == Epilogue::relu, kDer>(zm, ze, am, ae, dm, de);
        }
        bias_act_put<kDer>(op, n, i, j, am, ae, dm, de);
    }
    return !(miss >> 63);
}

// Row i of bias_act_rows the general way; out and bad as there.
template <Epilogue kKind, bool kDer>
inline void bias_act_general_row(const BiasAct& op, std::size_t i, std::size_t n, const double* ci, exp_t e,
                                 std::uint64_t lo_bits, std::uint64_t& out, std::uint64_t& bad) {
    constexpr bool kTanh = kKind == Epilogue::tanh;
    const std::uint64_t hi_bits = detail::bits(op.hi);
    // A zero row (e = kZeroExp) has exact zero products: nothing to redo
    // there. tanh leaves z in (zm, ze) for the caller.
    const std::uint64_t lo_row = e == kZeroExp ? 0 : lo_bits;
    _Pragma("GCC ivdep")
    for (std::size_t j = 0; j < n; ++j) {
        double zm, am, dm;
        exp_t ze, ae, de;
        detail::normal_parts(ci[j], e, zm, ze);
        out |= outside_bits(ci[j], lo_row, hi_bits);
        detail::add_parts(zm, ze, op.bm[j], op.be[j], zm, ze);
        if constexpr (kTanh) {
            op.zm[i * n + j] = zm;
            op.ze[i * n + j] = ze;
        } else {
            relu_parts<kKind == Epilogue::relu, kDer>(zm, ze, am, ae, dm, de);
            bad |= range_bits(am, ae);
            bias_act_put<kDer>(op, n, i, j, am, ae, dm, de);
        }
    }
    op.general[i] = kTanh;
}

}  // namespace

LOGGRAD_SIMD_KERNEL(std::uint64_t, bias_act_rows,
                    (const BiasAct& op, std::size_t rows, std::size_t n, const double* c, const exp_t* base,
                     std::uint64_t* range),
                    (op, rows, n, c, base, range), {
    const std::uint64_t lo_bits = detail::bits(op.lo);
    std::uint64_t out = 0, bad = 0;
    with_kind_der(op.kind, op.dm != nullptr, [&](auto kKind, auto kDer) {
        for (std::size_t i = 0; i < rows; ++i) {
            op.general[i] = 0;
            if (bias_act_float_row<kKind, kDer>(op, op.b_plain, i, n, c + i * n, base[i], lo_bits)) continue;
            bias_act_general_row<kKind, kDer>(op, i, n, c + i * n, base[i], lo_bits, out, bad);
        }
    });
    *range = bad;
    return out;
})

namespace {
// tanh(z) = z and tanh'(z) = 1 to the last bit below this exponent
// (activate_ext's first-order form; its fast way starts there).
constexpr exp_t kTanhTinyExp = -900;

// Row i of bias_act_rows the general way, where that leaves nothing for its
// caller: identity and relu rows whose products need no exact recomputation
// and whose activations are within the range; tanh rows, whose z it leaves
// to activate_ext_n, where every z is zero or below 2^kTanhTinyExp, so that
// tanh(z) = z and tanh'(z) = 1 (activate_ext's values there) and no range
// check can fail. (bm, be): the biases, extended. Returns whether the row
// is done; else it is left for bias_act_rows, which writes it again.
template <Epilogue kKind, bool kDer>
inline bool general_row_done(const BiasAct& op, std::size_t i, std::size_t n, const double* ci, exp_t e,
                             std::uint64_t lo_bits, const double* bm, const exp_t* be) {
    std::uint64_t out = 0, bad = 0;
    if constexpr (kKind != Epilogue::tanh) {
        BiasAct g = op;
        g.bm = bm;
        g.be = be;
        bias_act_general_row<kKind, kDer>(g, i, n, ci, e, lo_bits, out, bad);
        return !(out >> 63) && bad == 0;
    } else {
        const std::uint64_t hi_bits = detail::bits(op.hi);
        const std::uint64_t lo_row = e == kZeroExp ? 0 : lo_bits;  // as bias_act_general_row
        std::uint64_t big = 0;
        for (std::size_t j = 0; j < n; ++j) {
            double zm;
            exp_t ze;
            detail::normal_parts(ci[j], e, zm, ze);
            out |= outside_bits(ci[j], lo_row, hi_bits);
            detail::add_parts(zm, ze, bm[j], be[j], zm, ze);
            big |= static_cast<std::uint64_t>(zm != 0.0 && ze >= kTanhTinyExp);
            bad |= range_bits(zm, ze);
            bias_act_put<kDer>(op, n, i, j, zm, ze, kExtOne.m, kExtOne.e);
        }
        return !(out >> 63) && big == 0 && bad == 0;
    }
}

// narrow_forward_rows for one epilogue kind and derivative flag.
template <Epilogue kKind, bool kDer>
inline unsigned narrow_forward_impl(const BiasAct& op, std::size_t rows, std::size_t K, std::size_t n,
                                    const double* xm, const exp_t* xe, const double* W, exp_t T, double* s, exp_t* E,
                                    unsigned char* flags, double* c) {
    // The biases: as fused_epilogue tests them (b_plain), and whether all are finite.
    constexpr std::uint64_t kExpMask = std::uint64_t(0x7ff) << 52;
    bool b_plain = true;
    std::uint64_t b_inf = 0;
    for (std::size_t j = 0; j < n; ++j) {
        const double a = std::fabs(op.b[j]);
        b_plain &= op.b[j] == 0.0 || (a >= DBL_MIN && a <= 0x1p1020);
        b_inf |= (detail::bits(op.b[j]) & kExpMask) + (std::uint64_t(1) << 52);
    }
    const std::uint64_t lo_bits = detail::bits(op.lo);
    unsigned status = b_plain ? kNarrowBPlain : 0u;
    if (b_inf >> 63) status |= kNarrowNotFinite;
    std::uint64_t c_inf = 0;
    double bm[kNarrowMaxN];  // the biases, extended, once a row needs them
    exp_t be[kNarrowMaxN];
    bool have_bias = false;
    for (std::size_t i = 0; i < rows; ++i) {
        const double* xmi = xm + i * K;
        const exp_t* xei = xe + i * K;
        double* si = s + i * K;
        double* ci = c + i * n;
        // scale_rows
        E[i] = max_exp_of_impl(K, xei);
        const bool f = scale_impl<false>(K, xmi, xei, E + i, T, si) != 0;
        flags[i] = f;
        // gemm_small, W transposed
        row_dots(K, n, si, W, ci);
        for (std::size_t j = 0; j < n; ++j) c_inf |= (detail::bits(ci[j]) & kExpMask) + (std::uint64_t(1) << 52);
        if (f) {
            status |= kNarrowFlagged;
            continue;
        }
        // bias_act_rows, the float64 way, else the general way where that finishes the row
        op.general[i] = 0;
        if (bias_act_float_row<kKind, kDer>(op, b_plain, i, n, ci, E[i], lo_bits)) continue;
        if (!have_bias) {
            for (std::size_t j = 0; j < n; ++j) {
                const Ext bj = from_double(op.b[j]);
                bm[j] = bj.m;
                be[j] = bj.e;
            }
            have_bias = true;
        }
        if (general_row_done<kKind, kDer>(op, i, n, ci, E[i], lo_bits, bm, be)) continue;
        op.general[i] = kNarrowPending;
        status |= kNarrowSomePending;
    }
    if (c_inf >> 63) status |= kNarrowNotFinite;
    return status;
}
}  // namespace

LOGGRAD_SIMD_KERNEL(unsigned, narrow_forward_rows,
                    (const BiasAct& op, std::size_t rows, std::size_t K, std::size_t n, const double* xm,
                     const exp_t* xe, const double* W, exp_t T, double* s, exp_t* E, unsigned char* flags,
                     double* c),
                    (op, rows, K, n, xm, xe, W, T, s, E, flags, c), {
    unsigned status = 0;
    with_kind_der(op.kind, op.dm != nullptr, [&](auto kKind, auto kDer) {
        status = narrow_forward_impl<kKind, kDer>(op, rows, K, n, xm, xe, W, T, s, E, flags, c);
    });
    return status;
})

LOGGRAD_SIMD_KERNEL(std::size_t, narrow_forward_run,
                    (Epilogue kind, bool der, std::size_t n, std::size_t count, const NarrowLayer* layers,
                     const double* xm, const exp_t* xe, exp_t T, double* s, exp_t* E, unsigned char* flags,
                     double* c, unsigned char* general, unsigned* stop),
                    (kind, der, n, count, layers, xm, xe, T, s, E, flags, c, general, stop), {
    std::size_t done = 0;
    with_kind_der(kind, der, [&](auto kKind, auto kDer) {
        BiasAct op;
        op.kind = kind;
        op.lo = ext_gemm_xw_tiny(n);
        op.hi = DBL_MAX;
        op.b_plain = false;
        op.bm = nullptr;
        op.be = nullptr;
        op.zm = nullptr;
        op.ze = nullptr;
        op.general = general;
        for (; done < count; ++done) {
            const NarrowLayer& L = layers[done];
            op.b = L.b;
            op.am = L.am;
            op.ae = L.ae;
            op.dm = kDer ? L.dm : nullptr;
            op.de = kDer ? L.de : nullptr;
            const unsigned status = narrow_forward_impl<kKind, kDer>(op, 1, n, n, xm, xe, L.W, T, s, E, flags, c);
            if (status & ~kNarrowBPlain) {  // the caller finishes this layer
                *stop = status;
                return;
            }
            xm = L.am;
            xe = L.ae;
        }
    });
    return done;
})

LOGGRAD_SIMD_KERNEL(unsigned, narrow_chain_rows,
                    (bool unit, std::size_t rows, std::size_t K, std::size_t n, const double* x, const double* W,
                     double* c, const exp_t* base, double lo, double hi, double* dm, exp_t* de, exp_t T, double* s,
                     exp_t* E, unsigned char* flags, unsigned char* skipped, std::uint64_t* range),
                    (unit, rows, K, n, x, W, c, base, lo, hi, dm, de, T, s, E, flags, skipped, range), {
    const std::uint64_t lo_bits = detail::bits(lo), hi_bits = detail::bits(hi);
    unsigned any = 0;
    std::uint64_t bad = 0;
    for (std::size_t i = 0; i < rows; ++i) {
        const double* xi = x + i * K;
        row_tiles(K, n, [&](std::size_t k) { return xi[k]; }, W, c + i * n);
        any |= unit ? chain_row<true>(i, n, c, base, lo_bits, hi_bits, dm, de, T, s, E, flags, skipped, bad)
                    : chain_row<false>(i, n, c, base, lo_bits, hi_bits, dm, de, T, s, E, flags, skipped, bad);
    }
    *range |= bad;
    return any;
})

LOGGRAD_SIMD_KERNEL(std::size_t, narrow_chain_run,
                    (std::size_t n, std::size_t count, const NarrowChainLayer* layers, double* const* x,
                     exp_t* const* E, unsigned char* const* flags, double* c, unsigned char* skipped, exp_t T,
                     unsigned* any, std::uint64_t* range),
                    (n, count, layers, x, E, flags, c, skipped, T, any, range), {
    const std::uint64_t lo_bits = detail::bits(ext_gemm_xw_tiny(n)), hi_bits = detail::bits(DBL_MAX);
    for (std::size_t k = 0; k < count; ++k) {
        const NarrowChainLayer& L = layers[k];
        const std::size_t in = k % 2, out = 1 - in;
        const double* xi = x[in];
        row_tiles(n, n, [&](std::size_t q) { return xi[q]; }, L.W, c);
        std::uint64_t bad = 0;
        const unsigned a =
            L.unit ? chain_row<true>(0, n, c, E[in], lo_bits, hi_bits, L.fm, L.fe, T, x[out], E[out], flags[out],
                                     skipped, bad)
                   : chain_row<false>(0, n, c, E[in], lo_bits, hi_bits, L.fm, L.fe, T, x[out], E[out], flags[out],
                                      skipped, bad);
        if (a != 0 || bad != 0) {
            *any = a;
            *range = bad;
            return k;
        }
    }
    return count;
})

}  // namespace loggrad::simd

namespace loggrad {
std::string kernel_isa() { return simd::isa(); }
}  // namespace loggrad
