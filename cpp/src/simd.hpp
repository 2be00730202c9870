// simd.hpp — the engine's elementwise kernels (private to the engine).
//
// Each kernel is compiled three times: for the x86-64 baseline (SSE2, what the
// wheels target), for AVX2 and for AVX-512 (F, VL, DQ, BW: 64-bit integer
// min/max and int64 <-> double conversions in one instruction), and the widest
// build the CPU has is called. All builds do the same IEEE operations in the
// same order on every element (no FMA: -ffp-contract=off; vectorisation only
// runs independent elements side by side, and no sum is reordered), so they
// give the same bits: results do not depend on the machine. LOGGRAD_SIMD=avx2
// or LOGGRAD_SIMD=baseline in the environment caps the build that runs (the
// tests compare all three).
//
// The loops are branch-free integer and float64 operations so that they
// vectorise even with SSE2, which has no 64-bit integer compare: the sign of a
// difference stands in for it. Exponents lie in [kZeroExp, kMaxExp], so their
// differences do not overflow.
#pragma once

#include <cstddef>
#include <cstdint>

#include "loggrad/ext.hpp"

// LOGGRAD_TARGET_AVX2 builds a function, and everything it calls that can be
// inlined (flatten), for AVX2; LOGGRAD_TARGET_AVX512 for AVX-512;
// LOGGRAD_FLATTEN the same for the baseline.
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define LOGGRAD_SIMD_AVX2 1
#define LOGGRAD_TARGET_AVX2 __attribute__((target("avx2"), flatten))
#define LOGGRAD_TARGET_AVX512 __attribute__((target("avx2,avx512f,avx512vl,avx512dq,avx512bw"), flatten))
#define LOGGRAD_FLATTEN __attribute__((flatten))
#else
#define LOGGRAD_SIMD_AVX2 0
#define LOGGRAD_TARGET_AVX2
#define LOGGRAD_TARGET_AVX512
#define LOGGRAD_FLATTEN
#endif

namespace loggrad::simd {

enum class Isa { baseline, avx2, avx512 };
// The build that runs: the widest the CPU and OS have, at most what
// LOGGRAD_SIMD ("avx2", "baseline") allows; decided once.
Isa level();
// "avx512", "avx2" or "baseline".
const char* isa();

// Of a function's three builds, the one for level().
template <class F>
F pick(F avx512, F avx2, F base) {
    const Isa isa = level();
    return isa == Isa::avx512 ? avx512 : isa == Isa::avx2 ? avx2 : base;
}

// Defines `ret name params`, which runs the body (the last argument) built for
// AVX-512, AVX2 or the baseline; each build inlines what the body calls.
#if LOGGRAD_SIMD_AVX2
#define LOGGRAD_SIMD_KERNEL(ret, name, params, args, ...)                       \
    namespace {                                                                 \
    LOGGRAD_TARGET_AVX512 ret name##_avx512 params __VA_ARGS__                  \
    LOGGRAD_TARGET_AVX2 ret name##_avx2 params __VA_ARGS__                      \
    LOGGRAD_FLATTEN ret name##_base params __VA_ARGS__                          \
    }                                                                           \
    ret name params { return ::loggrad::simd::pick(&name##_avx512, &name##_avx2, &name##_base) args; }
#else
#define LOGGRAD_SIMD_KERNEL(ret, name, params, args, ...) ret name params __VA_ARGS__
#endif

// The extended-number array operations of ext.hpp (same bits).
void add_n(std::size_t n, double* am, exp_t* ae, const double* bm, const exp_t* be);
void mul_n(std::size_t n, const double* am, const exp_t* ae, double* bm, exp_t* be);
void normalize_n(std::size_t n, const double* c, exp_t base, const exp_t* add, double* om, exp_t* oe);
// b[i] = a[i] where b[i] is nonzero, else b[i] stays 0: mul_n's result (the
// same bits) when every nonzero b[i] is 1 in normal form, (0.5, 1), as relu's
// and identity's derivatives are, without the products. a in normal form.
void select_n(std::size_t n, const double* am, const exp_t* ae, double* bm, exp_t* be);

// E[j] = max(E[j], e[i * n + j]) for j < n, i < rows (rows of normal-form
// exponents). Returns, when with_abs, the largest |e| among them, zeros
// (kZeroExp) apart; else 0.
std::uint64_t max_exps(std::size_t rows, std::size_t n, const exp_t* e, exp_t* E, bool with_abs);

// For each n-wide row i < rows: s[k] = m[k] 2^(e[k] - E[k]) where e[k] - E[k]
// >= -T, else 0, with E[k] per column. Returns nonzero iff some nonzero m[k]
// was dropped (a residual).
std::uint64_t scale_cols(std::size_t rows, std::size_t n, const double* m, const exp_t* e, const exp_t* E, exp_t T,
                         double* s);

// For each row i < rows of an n-wide row-major (m, e): E[i] = the row's
// largest exponent (kZeroExp when it is all zeros), s = the row scaled as
// scale_cols does with that one E[i], and flags[i] = 1 iff it dropped a
// nonzero entry. Returns true iff some row did.
bool scale_rows(std::size_t rows, std::size_t n, const double* m, const exp_t* e, exp_t T, double* s, exp_t* E,
                unsigned char* flags);

// For each n-wide row i < rows of c: (om, oe) = normal form of c[j] * 2^base[i]
// for a normal or zero c[j] (see detail::normal_parts). Returns a value with
// bit 63 set iff some |c[j]| is below lo or above hi (compared as bit
// patterns of |c|, which order as the values do; a subnormal is below any
// normal lo), and sets *range as out_of_range over (om, oe) would.
std::uint64_t normalize_rows_outside(std::size_t rows, std::size_t n, const double* c, const exp_t* base, double lo,
                                     double hi, double* om, exp_t* oe, std::uint64_t* range);

// The backward chain's step from one layer's product to the scaled deltas of
// the layer below, row by row, for each row i < rows whose |c| all lie within
// [lo, hi] or whose base[i] is kZeroExp (a row of zeros): g = the normal form
// of c 2^base[i] (as normalize_rows_outside, its range bits or-ed into
// *range); delta = g * f' written over f' = (dm, de) (select_n where unit,
// else mul_n: the same bits); and delta's row scaled as scale_rows does, into
// s, E[i] and flags[i]. base and E may be the same array. Other rows are
// left untouched and skipped[i] set to 1 (else 0). Returns bit 0: some row
// was flagged; bit 1: some row was skipped.
unsigned chain_rows(bool unit, std::size_t rows, std::size_t n, const double* c, const exp_t* base, double lo,
                    double hi, double* dm, exp_t* de, exp_t T, double* s, exp_t* E, unsigned char* flags,
                    unsigned char* skipped, std::uint64_t* range);

// The activations bias_act_rows takes.
enum class Epilogue { identity, relu, tanh };

// Operands of bias_act_rows.
struct BiasAct {
    Epilogue kind;
    double lo, hi;                      // the range of trusted |c| (as in normalize_rows_outside)
    const double* b;                    // the biases, float64
    bool b_plain;                       // every b is zero, or normal and at most 2^1020 in size
    const double* bm;                   // the biases, extended
    const exp_t* be;
    double* am;                         // outputs, rows x n: the activations
    exp_t* ae;
    double* dm;                         // and their derivatives, when dm is not null
    exp_t* de;
    double* zm;                         // tanh: z of the rows marked in general
    exp_t* ze;
    unsigned char* general;             // per row: 1 where tanh left z for the caller to finish
};

// The extended forward epilogue of an identity, relu or tanh layer, for each
// n-wide row i < rows of c: z = c[j] 2^base[i] as normalize_rows_outside
// gives it, z += b[j] as add_n, then a = f(z) and (when op.dm is not null)
// f'(z): relu and identity as relu_ext, tanh as activate_ext_n; the same bits
// as those kernels in turn. A tanh row beyond tanh_kernel::tanh_parts' range
// is left as z in (zm, ze), general[i] = 1, for the caller to finish.
// Returns what normalize_rows_outside returns (bit 63 set: some output is
// wrong and must be redone; zero rows, base[i] = kZeroExp, never are), and
// sets *range as out_of_range over the activations would (tanh rows apart,
// whose values are within [-1, 1] and derivatives within [4e^-512, 1]).
std::uint64_t bias_act_rows(const BiasAct& op, std::size_t rows, std::size_t n, const double* c, const exp_t* base,
                            std::uint64_t* range);

// The forward step of a narrow extended layer (n <= kNarrowMaxN) in one
// call: for each row i < rows of X = (xm, xe) (rows x K), what
// ext_gemm_xw_product and then bias_act_rows do to it, in turn, with the
// same bits: the row scaled as scale_rows scales it (into s, E[i], flags[i],
// T = kXwDrop), its product with W^T (W: n x K) as gemm_small makes it (into
// c, row i), and, where the row was not flagged, bias_act_rows' float64 way
// into op's outputs (op.general[i] = 0), or its general way where that
// leaves nothing to do after it (identity and relu rows that need no exact
// recomputation and stay within the range; tanh rows whose every z is zero
// or below 2^-900, where activate_ext_n gives z and 1). Any other row gets
// op.general[i] = kNarrowPending and is left for bias_act_rows. op.b_plain,
// op.bm and op.be are not read: the kernel makes them itself. Returns
// kNarrow* bits.
constexpr std::size_t kNarrowMaxN = 64;
constexpr unsigned kNarrowFlagged = 1;      // some row was flagged (as ext_gemm_xw_product returning false)
constexpr unsigned kNarrowSomePending = 2;  // some row is pending
constexpr unsigned kNarrowNotFinite = 4;    // some product or bias is inf or nan
constexpr unsigned kNarrowBPlain = 8;       // the biases are plain (BiasAct::b_plain)
constexpr unsigned char kNarrowPending = 2;
unsigned narrow_forward_rows(const BiasAct& op, std::size_t rows, std::size_t K, std::size_t n, const double* xm,
                             const exp_t* xe, const double* W, exp_t T, double* s, exp_t* E, unsigned char* flags,
                             double* c);

// One layer of narrow_forward_run: its weights (n x n) and biases, and where
// its activations and (when the run stores them) derivatives go.
struct NarrowLayer {
    const double* W;
    const double* b;
    double* am;
    exp_t* ae;
    double* dm;
    exp_t* de;
};

// narrow_forward_rows over `count` layers of one row, n wide in and out, the
// same epilogue each (with derivatives where der), each layer's activations
// the next one's input (the first's is (xm, xe)): layer by layer, the same
// bits. Stops at the first layer whose status has any bit but
// kNarrowBPlain, leaving that layer as narrow_forward_rows leaves it (its
// status in *stop) for the caller to finish, and returns how many layers it
// finished. The scratch (s, E, flags, c, general) is that of
// narrow_forward_rows for one row (the zm, ze of BiasAct are not written:
// narrow_forward_rows writes them only for pending rows' callers).
std::size_t narrow_forward_run(Epilogue kind, bool der, std::size_t n, std::size_t count, const NarrowLayer* layers,
                               const double* xm, const exp_t* xe, exp_t T, double* s, exp_t* E, unsigned char* flags,
                               double* c, unsigned char* general, unsigned* stop);

// The backward chain's step of a narrow layer in one call: for each row i <
// rows, its product c = x W (x: rows x K, scaled rows; W: K x n) as
// gemm_small makes it (into c, row i), then chain_rows on that row (the
// other operands as there). Returns what chain_rows returns.
unsigned narrow_chain_rows(bool unit, std::size_t rows, std::size_t K, std::size_t n, const double* x,
                           const double* W, double* c, const exp_t* base, double lo, double hi, double* dm, exp_t* de,
                           exp_t T, double* s, exp_t* E, unsigned char* flags, unsigned char* skipped,
                           std::uint64_t* range);

// One layer of narrow_chain_run: its weights W (n x n), the stored f' of
// the layer below (fm, fe), which the step writes that layer's delta over,
// and whether f' is 1 or 0 there (chain_rows' unit).
struct NarrowChainLayer {
    const double* W;
    double* fm;
    exp_t* fe;
    bool unit;
};

// narrow_chain_rows over `count` layers of one row, n wide in and out, going
// down: step k takes its scaled row from (x, E)[k % 2] and leaves the next
// one in (x, E, flags)[1 - k % 2] (two buffers taking turns, as a workspace's
// xs and xs2 do), its product in c. Stops after the first step whose
// chain_rows result or range bits are not 0, returning its index, with
// *any and *range set to them; else returns count.
std::size_t narrow_chain_run(std::size_t n, std::size_t count, const NarrowChainLayer* layers, double* const* x,
                             exp_t* const* E, unsigned char* const* flags, double* c, unsigned char* skipped, exp_t T,
                             unsigned* any, std::uint64_t* range);

// (cm, ce)[j * n + k] = d[j] * a[k] for j < rows, k < n: rows of an outer
// product (one call for a block of rows).
void outer_rows(std::size_t rows, std::size_t n, const double* dm, const exp_t* de, const double* am,
                const exp_t* ae, double* cm, exp_t* ce);

// The weight gradient of one row (ext_gemm_tn at B = 1) in one call:
// outer_rows over all n1 rows into (cm, ce); when sm is not null, (sm, se) =
// (dm, de) normalised as loggrad::normalize_n(n1, dm, 0, de, ...) gives them
// (the bias gradient); and, when bound, returns max_abs_exponent of d plus
// that of a (else 0).
std::uint64_t outer_gradient(std::size_t n1, std::size_t n2, const double* dm, const exp_t* de, const double* am,
                             const exp_t* ae, double* cm, exp_t* ce, double* sm, exp_t* se, bool bound);

// The operands of one layer of outer_gradient_run: d (n1), a (n2), the
// weight gradient c (n1 x n2) and the bias gradient s (n1).
struct OuterGradient {
    const double* dm;
    const exp_t* de;
    const double* am;
    const exp_t* ae;
    double* cm;
    exp_t* ce;
    double* sm;
    exp_t* se;
};

// outer_gradient for `count` layers of the same sizes (each with its bias
// gradient), one after another: the same bits; bounds[k] is layer k's
// result.
void outer_gradient_run(std::size_t n1, std::size_t n2, std::size_t count, const OuterGradient* g, bool bound,
                        std::uint64_t* bounds);

// loggrad::gemm_naive for K >= 1; without op(B) transposed, tiles of a row of
// C are held in registers across k (each output's operations are unchanged).
void gemm_small(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, const double* A,
                const double* B, double* C);

// Bit 63 of the result is set iff some nonzero (m, e) has e < -kMaxExp (an
// underflow past the range), bit 62 iff some has e > kMaxExp (an overflow);
// the other bits are 0. The kernels below that report range bits use the same.
std::uint64_t out_of_range(const double* m, const exp_t* e, std::size_t n);
// Largest |e| among the nonzero entries (0 when all are zero).
std::uint64_t max_abs_exponent(const double* m, const exp_t* e, std::size_t n);
// True when all n values are finite.
bool all_finite(const double* x, std::size_t n);

// relu (or identity, when !relu) of extended values as activate_ext gives
// them; the derivative too when dm is not null.
void relu_ext(bool relu, std::size_t n, const double* zm, const exp_t* ze, double* am, exp_t* ae, double* dm,
              exp_t* de);

}  // namespace loggrad::simd
