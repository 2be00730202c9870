// float64 matrix products and their extended-range forms (see loggrad/gemm.hpp).
#include "loggrad/gemm.hpp"

#include "loggrad/parallel.hpp"
#include "simd.hpp"

#include <algorithm>
#include <atomic>
#include <cfloat>
#include <climits>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <utility>
#include <vector>

#include <cblas.h>  // OpenBLAS from scipy-openblas32 (scipy_ symbol prefix)

namespace loggrad {

void gemm_naive(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, const double* A,
                const double* B, double* C) {
    // The summation order is documented in gemm.hpp; simd::gemm_small keeps it.
    if (K == 0) {
        std::fill(C, C + M * N, 0.0);
        return;
    }
    simd::gemm_small(ta, tb, M, N, K, A, B, C);
}

void column_sums(std::size_t rows, std::size_t cols, const double* A, double* out) {
    auto sums = [&](std::size_t c0, std::size_t c1) {
        std::fill(out + c0, out + c1, 0.0);
        for (std::size_t i = 0; i < rows; ++i)
            for (std::size_t j = c0; j < c1; ++j) out[j] += A[i * cols + j];
    };
    if (rows * cols < 2 * kElemGrain) sums(0, cols);
    else parallel_chunks(cols, std::max<std::size_t>(16, kElemGrain / rows), sums);
}

namespace {

void blas_call(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, const double* A, std::size_t lda,
               const double* B, std::size_t ldb, double* C, std::size_t ldc) {
    scipy_cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                      static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), 1.0, A,
                      static_cast<int>(lda), B, static_cast<int>(ldb), 0.0, C, static_cast<int>(ldc));
}

// BLAS itself runs single-threaded: its own threading may change results
// with the thread count. Parallelism comes from fixed blocks of C instead.
const bool kBlasSingleThreaded = [] {
    scipy_openblas_set_num_threads(1);
    return true;
}();

// A run of whole blocks may go to BLAS as one call, which packs the other
// operand once instead of once per block (the gain is largest for the
// transposed-A form of the weight gradients; benchmarks/test_bench_matmul.py
// measures it). The bits stay those of the block-by-block calls:
// - OpenBLAS cuts K by K alone, and in a run of whole blocks its micro-kernels
//   see only whole tiles (kGemmBlock is a multiple of the tile sizes of its
//   dgemm kernels), so each element is the same sequence of K-block sums in
//   either split. The partial last block, whose tiles the library cuts by
//   the call's size (merged with the others it changes bits),
//   stays a call of its own.
// - Blocks of at least kMergeMinWork (2^21) multiply-adds: every
//   small-matrix kernel OpenBLAS has for dgemm (another summation) is
//   permitted only below half of it (M N K <= 10^6).
// - A check, once per process, that this BLAS does give the same bits for
//   every transpose form, splitting rows and columns, with a partial block,
//   a partial tile and a K of several K blocks; where it does not, every
//   block stays one call.
constexpr std::size_t kMergeMinWork = std::size_t(1) << 21;

// The calls along [0, len) of a product cut into `runs` runs of whole blocks,
// then the partial last block (when there is one) alone: call t covers
// [first, second). runs == len / kGemmBlock is one call per block.
std::size_t call_count(std::size_t len, std::size_t runs) { return runs + (len % kGemmBlock != 0); }
std::pair<std::size_t, std::size_t> call_range(std::size_t len, std::size_t runs, std::size_t t) {
    const std::size_t full = len / kGemmBlock;
    if (t == runs) return {full * kGemmBlock, len};
    return {t * full / runs * kGemmBlock, (t + 1) * full / runs * kGemmBlock};
}

// C (m x n) by blocks of rows (rows) or columns, cut as call_range cuts it.
void blas_runs(bool ta, bool tb, bool rows, std::size_t runs, std::size_t m, std::size_t n, std::size_t K,
               const double* A, const double* B, double* C, std::size_t t) {
    const std::size_t lda = ta ? m : K, ldb = tb ? K : n;
    const auto [b, e] = call_range(rows ? m : n, runs, t);
    if (rows)
        blas_call(ta, tb, e - b, n, K, ta ? A + b : A + b * K, lda, B, ldb, C + b * n, n);
    else
        blas_call(ta, tb, m, e - b, K, A, lda, tb ? B + b * K : B + b, ldb, C + b, n);
}

bool merging_is_exact() {
    static const bool exact = [] {
        constexpr std::size_t M = 67, N = 3 * kGemmBlock + 37, K = 700;
        static_assert(M * kGemmBlock * K >= kMergeMinWork, "the check must take the merged calls' path");
        std::vector<double> A(N * K), B(N * K), blocks(M * N), merged(M * N);
        std::uint64_t r = 0x9e3779b97f4a7c15u;  // xorshift: values in [-1, 1)
        auto next = [&] {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            return static_cast<double>(static_cast<std::int64_t>(r >> 11) - (std::int64_t(1) << 52)) * 0x1p-52;
        };
        for (double& a : A) a = next();
        for (double& b : B) b = next();
        for (int form = 0; form < 8; ++form) {
            const bool ta = form & 1, tb = form & 2, rows = form & 4;
            const std::size_t m = rows ? N : M, n = rows ? M : N, full = N / kGemmBlock;
            auto product = [&](std::size_t runs, double* C) {
                for (std::size_t t = 0; t < call_count(N, runs); ++t)
                    blas_runs(ta, tb, rows, runs, m, n, K, A.data(), B.data(), C, t);
            };
            product(full, blocks.data());
            for (std::size_t runs : {std::size_t(1), std::size_t(2)}) {
                product(runs, merged.data());
                if (std::memcmp(merged.data(), blocks.data(), merged.size() * sizeof(double)) != 0) return false;
            }
        }
        return true;
    }();
    return exact;
}

// C by blocks of rows or columns (len of them) in parallel: one call per
// block, or, where merging is exact and each block holds at least
// kMergeMinWork multiply-adds, one run of whole blocks per thread.
void blas_blocks(bool ta, bool tb, bool rows, std::size_t M, std::size_t N, std::size_t K, const double* A,
                 const double* B, double* C) {
    const std::size_t len = rows ? M : N, full = len / kGemmBlock;
    const std::size_t threads = static_cast<std::size_t>(num_threads());
    const bool merge = (rows ? N : M) * kGemmBlock * K >= kMergeMinWork && threads < full && merging_is_exact();
    const std::size_t runs = merge ? threads : full;
    parallel_for(call_count(len, runs), [&](std::size_t t) { blas_runs(ta, tb, rows, runs, M, N, K, A, B, C, t); });
}

}  // namespace

void gemm(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, const double* A,
          const double* B, double* C) {
    if (M == 0 || N == 0) return;
    if (K == 0) {
        std::fill(C, C + M * N, 0.0);
        return;
    }
    if (M * N * K < kBlasMinWork || M > INT_MAX || N > INT_MAX || K > INT_MAX) {
        gemm_naive(ta, tb, M, N, K, A, B, C);
        return;
    }
    (void)kBlasSingleThreaded;
    // Blocks of kGemmBlock columns (or rows) of C, chosen from the sizes alone.
    // Columns first: each block then packs only its own part of B.
    if (N >= 2 * kGemmBlock) blas_blocks(ta, tb, false, M, N, K, A, B, C);
    else if (M >= 2 * kGemmBlock) blas_blocks(ta, tb, true, M, N, K, A, B, C);
    else blas_call(ta, tb, M, N, K, A, ta ? M : K, B, tb ? K : N, C, N);
}

int blas_threads() { return scipy_openblas_get_num_threads(); }
std::string blas_config() {
    const char* cfg = scipy_openblas_get_config();
    const char* core = scipy_openblas_get_corename();
    return std::string(cfg ? cfg : "OpenBLAS") + " (core " + (core ? core : "?") + "; " +
           (merging_is_exact() ? "runs of whole blocks per call)" : "one block per call)");
}

namespace {

// Rows of an operand whose scaled entries would fall below 2^-T of the row's
// largest: they are left out of the float64 kernel and added exactly.
struct Residuals {
    std::size_t line;               // the row (or column) they belong to
    exp_t max_rel;                  // largest e - E among them (< -T)
    std::vector<std::size_t> idx;   // their positions along the reduction
};

// Number of bits needed for n: 2^bits > n.
int bit_width(std::size_t n) {
    int b = 0;
    while (n) {
        ++b;
        n >>= 1;
    }
    return b;
}

int frexp_exp(double c) {
    int k = 0;
    std::frexp(c, &k);
    return k;
}

// The float64 kernel gives c (in units of the scale) for an output whose
// residual terms are bounded by 2^bound_exp: they may be dropped when they are
// below 2^-61 |c|, i.e. below the rounding error of the sum, as in float64.
bool residual_negligible(double c, int bound_exp) {
    if (c == 0.0) return false;
    return bound_exp + 62 <= frexp_exp(c);
}

}  // namespace

bool ext_gemm_xw_product(Workspace& ws, std::size_t M, std::size_t N, std::size_t K, ExtCMat X, const double* W,
                         bool w_trans) {
    ws.xs.resize(M * K);
    ws.cs.resize(M * N);
    ws.ex.resize(M);
    double* xs = ws.xs.data();
    exp_t* rowE = ws.ex.data();

    // 1. Scale each row of X by its largest exponent (rows in parallel; a row
    // with terms below 2^-kXwDrop of its largest is flagged).
    ws.flags.resize(M);
    unsigned char* flagged = ws.flags.data();
    std::atomic<bool> any_flagged{false};
    parallel_rows(M, K, [&](std::size_t r0, std::size_t r1) {
        if (simd::scale_rows(r1 - r0, K, X.m + r0 * K, X.e + r0 * K, kXwDrop, xs + r0 * K, rowE + r0, flagged + r0))
            any_flagged.store(true, std::memory_order_relaxed);
    });

    // 2. float64 kernel on the scaled mantissas.
    gemm(false, w_trans, M, N, K, xs, W, ws.cs.data());
    return !any_flagged.load();
}

namespace {

// The end of ext_gemm_xw_chain (and ext_gemm_xw_scaled_chain) once
// simd::chain_rows has run over every row, `any` its result: the rows it
// skipped made from C in full, and Y's scaled rows swapped in.
bool chain_rest(Workspace& ws, std::size_t M, std::size_t N, std::size_t K, ExtCMat X, const double* W,
                bool w_trans, bool unit, ExtMat F, ExtMat C, std::uint64_t* range, unsigned any) {
    double* ys = ws.xs2.data();
    exp_t* yE = ws.ex2.data();
    unsigned char* yflags = ws.flags2.data();
    const unsigned char* skipped = ws.marks.data();
    bool flagged = (any & 1u) != 0;
    if (any & 2u) {  // the others: C in full, then their rows of Y as before
        ext_gemm_xw_finish(ws, M, N, K, X, W, w_trans, C, range);  // its range covers every row
        for (std::size_t i = 0; i < M; ++i) {
            if (!skipped[i]) continue;
            const std::size_t o = i * N;
            if (unit) simd::select_n(N, C.m + o, C.e + o, F.m + o, F.e + o);
            else simd::mul_n(N, C.m + o, C.e + o, F.m + o, F.e + o);
            flagged |= simd::scale_rows(1, N, F.m + o, F.e + o, kXwDrop, ys + o, yE + i, yflags + i);
        }
    }
    std::swap(ws.xs, ws.xs2);
    std::swap(ws.ex, ws.ex2);
    std::swap(ws.flags, ws.flags2);
    return !flagged;
}

void chain_buffers(Workspace& ws, std::size_t M, std::size_t N) {
    ws.xs2.resize(M * N);
    ws.ex2.resize(M);
    ws.flags2.resize(M);
    ws.marks.resize(M);
}

}  // namespace

bool ext_gemm_xw_chain(Workspace& ws, std::size_t M, std::size_t N, std::size_t K, ExtCMat X, const double* W,
                       bool w_trans, bool unit, ExtMat F, ExtMat C, std::uint64_t* range) {
    // Rows whose products all lie in [tiny, DBL_MAX] (or that are zero rows)
    // are final as the float64 kernel left them: each goes from the product
    // to its scaled row of Y in one pass, C never written (simd::chain_rows).
    // ws.cs, ws.ex and ws.flags stay as they are for ext_gemm_xw_finish.
    chain_buffers(ws, M, N);
    const double* cs = ws.cs.data();
    const exp_t* rowE = ws.ex.data();
    double* ys = ws.xs2.data();
    exp_t* yE = ws.ex2.data();
    unsigned char* yflags = ws.flags2.data();
    unsigned char* skipped = ws.marks.data();
    const double tiny = ext_gemm_xw_tiny(K);
    std::atomic<unsigned> any{0};
    std::atomic<std::uint64_t> range_bits{0};
    parallel_rows(M, N, [&](std::size_t r0, std::size_t r1) {
        std::uint64_t bad = 0;
        any.fetch_or(simd::chain_rows(unit, r1 - r0, N, cs + r0 * N, rowE + r0, tiny, DBL_MAX, F.m + r0 * N,
                                      F.e + r0 * N, kXwDrop, ys + r0 * N, yE + r0, yflags + r0, skipped + r0, &bad),
                     std::memory_order_relaxed);
        range_bits.fetch_or(bad, std::memory_order_relaxed);
    });
    if (range) *range = range_bits.load();
    return chain_rest(ws, M, N, K, X, W, w_trans, unit, F, C, range, any.load());
}

bool ext_gemm_xw_scaled_chain(Workspace& ws, std::size_t M, std::size_t N, std::size_t K, ExtCMat X,
                              const double* W, bool unit, ExtMat F, ExtMat C, std::uint64_t* range) {
    if (!gemm_fixed_order(M, N, K) || M * std::max(N, K) > kElemGrain) {
        ext_gemm_xw_scaled(ws, M, N, K, W, false);
        return ext_gemm_xw_chain(ws, M, N, K, X, W, false, unit, F, C, range);
    }
    // A product in the fixed-order kernel, rows few enough to run as one
    // block: each row's product and its step in one call (the same bits).
    ws.cs.resize(M * N);
    chain_buffers(ws, M, N);
    std::uint64_t bad = 0;
    const unsigned any = simd::narrow_chain_rows(unit, M, K, N, ws.xs.data(), W, ws.cs.data(), ws.ex.data(),
                                                 ext_gemm_xw_tiny(K), DBL_MAX, F.m, F.e, kXwDrop, ws.xs2.data(),
                                                 ws.ex2.data(), ws.flags2.data(), ws.marks.data(), &bad);
    if (range) *range = bad;
    return chain_rest(ws, M, N, K, X, W, false, unit, F, C, range, any);
}

std::size_t ext_gemm_xw_chain_run(Workspace& ws, std::size_t n, std::size_t count, const ChainStep* steps, ExtMat C,
                                  std::uint64_t* range, bool* exact) {
    constexpr std::size_t kSteps = 16;  // per kernel call
    ws.cs.resize(n);
    chain_buffers(ws, 1, n);
    simd::NarrowChainLayer layers[kSteps];
    std::size_t done = 0;
    while (done < count) {
        const std::size_t m = std::min(kSteps, count - done);
        for (std::size_t k = 0; k < m; ++k) {
            const ChainStep& st = steps[done + k];
            layers[k] = simd::NarrowChainLayer{st.W, st.F.m, st.F.e, st.unit};
        }
        double* const x[2] = {ws.xs.data(), ws.xs2.data()};
        exp_t* const E[2] = {ws.ex.data(), ws.ex2.data()};
        unsigned char* const flags[2] = {ws.flags.data(), ws.flags2.data()};
        unsigned any = 0;
        std::uint64_t bad = 0;
        const std::size_t k =
            simd::narrow_chain_run(n, m, layers, x, E, flags, ws.cs.data(), ws.marks.data(), kXwDrop, &any, &bad);
        if (k % 2) {  // the two buffers turned k times: xs is again the next step's input
            std::swap(ws.xs, ws.xs2);
            std::swap(ws.ex, ws.ex2);
            std::swap(ws.flags, ws.flags2);
        }
        done += k;
        if (k < m) {  // step `done` ran its row; the rest as ext_gemm_xw_scaled_chain has it
            const ChainStep& st = steps[done];
            if (range) *range = bad;
            *exact = chain_rest(ws, 1, n, n, st.X, st.W, false, st.unit, st.F, C, range, any);
            return done + 1;
        }
    }
    if (range) *range = 0;
    *exact = true;
    return count;
}

void ext_gemm_xw_scaled(Workspace& ws, std::size_t M, std::size_t N, std::size_t K, const double* W, bool w_trans) {
    ws.cs.resize(M * N);
    gemm(false, w_trans, M, N, K, ws.xs.data(), W, ws.cs.data());
}

void ext_gemm_xw_finish(Workspace& ws, std::size_t M, std::size_t N, std::size_t K, ExtCMat X, const double* W,
                        bool w_trans, ExtMat C, std::uint64_t* range) {
    const exp_t* rowE = ws.ex.data();
    // The flagged rows' terms below 2^-kXwDrop of their largest.
    std::vector<Residuals> residuals;
    for (std::size_t i = 0; i < M; ++i) {
        if (!ws.flags[i]) continue;
        Residuals r{i, kZeroExp, {}};
        for (std::size_t k = 0; k < K; ++k) {
            const exp_t d = X.e[i * K + k] - rowE[i];
            if (d < -kXwDrop && X.m[i * K + k] != 0.0) {
                r.max_rel = std::max(r.max_rel, d);
                r.idx.push_back(k);
            }
        }
        residuals.push_back(std::move(r));
    }
    auto wat = [&](std::size_t j, std::size_t k) { return w_trans ? W[j * K + k] : W[k * N + j]; };
    const double* cs = ws.cs.data();

    // 3. Carry the row exponents out. Suspect outputs (below
    // ext_gemm_xw_tiny, or not finite) are recomputed exactly, all terms
    // included. (Subnormal outputs are suspect too: normal_parts needs no
    // second pass.)
    const double tiny = ext_gemm_xw_tiny(K);
    auto suspect = [&](double c) { return !(std::fabs(c) >= tiny && std::fabs(c) <= DBL_MAX); };
    std::atomic<bool> any_suspect{false};
    std::atomic<std::uint64_t> range_bits{0};
    parallel_rows(M, N, [&](std::size_t r0, std::size_t r1) {
        std::uint64_t bad = 0;
        const std::uint64_t sus = simd::normalize_rows_outside(r1 - r0, N, cs + r0 * N, rowE + r0, tiny, DBL_MAX,
                                                               C.m + r0 * N, C.e + r0 * N, &bad);
        if (sus >> 63) any_suspect.store(true, std::memory_order_relaxed);
        range_bits.fetch_or(bad, std::memory_order_relaxed);
    });
    if (range) *range = range_bits.load();
    if (any_suspect.load()) {
        for (std::size_t i = 0; i < M; ++i) {
            if (rowE[i] == kZeroExp) continue;  // a zero row: the zero outputs are exact
            for (std::size_t j = 0; j < N; ++j) {
                const std::size_t o = i * N + j;
                if (!suspect(cs[o])) continue;
                Ext r = kExtZero;
                for (std::size_t k = 0; k < K; ++k) {
                    const double w = wat(j, k);
                    if (X.m[i * K + k] == 0.0 || w == 0.0) continue;
                    r = add(r, mul(Ext{X.m[i * K + k], X.e[i * K + k]}, from_double(w)));
                }
                C.m[o] = r.m;
                C.e[o] = r.e;
            }
        }
    }
    if (residuals.empty()) {
        if (range && any_suspect.load()) *range = simd::out_of_range(C.m, C.e, M * N);  // outputs redone: again
        return;
    }

    // 4. Residual terms: bounded by count * 2^max_rel * max_k |W(j,k)|; added
    // exactly unless below the rounding error of the output.
    std::vector<int> wexp(N, INT_MIN);
    for (std::size_t j = 0; j < N; ++j) {
        double mx = 0.0;
        for (std::size_t k = 0; k < K; ++k) mx = std::max(mx, std::fabs(wat(j, k)));
        if (mx > 0.0) wexp[j] = frexp_exp(mx);
    }
    for (const Residuals& r : residuals) {
        const std::size_t i = r.line;
        const int base = static_cast<int>(r.max_rel) + bit_width(r.idx.size());
        for (std::size_t j = 0; j < N; ++j) {
            const std::size_t o = i * N + j;
            if (wexp[j] == INT_MIN || suspect(cs[o])) continue;  // no terms / already exact
            if (residual_negligible(cs[o], base + wexp[j])) continue;
            Ext acc{C.m[o], C.e[o]};
            for (std::size_t k : r.idx) {
                const double w = wat(j, k);
                if (w != 0.0) acc = add(acc, mul(Ext{X.m[i * K + k], X.e[i * K + k]}, from_double(w)));
            }
            C.m[o] = acc.m;
            C.e[o] = acc.e;
        }
    }
    if (range) *range = simd::out_of_range(C.m, C.e, M * N);  // outputs redone: again
}


void ext_gemm_xw(Workspace& ws, std::size_t M, std::size_t N, std::size_t K, ExtCMat X,
                 const double* W, bool w_trans, ExtMat C, std::uint64_t* range) {
    ext_gemm_xw_product(ws, M, N, K, X, W, w_trans);
    ext_gemm_xw_finish(ws, M, N, K, X, W, w_trans, C, range);
}

namespace {

// Scales each column of the (B x N) extended matrix by its largest exponent
// into s; returns per-column residuals (entries below 2^-T of the column max)
// and, when abs_max is not null, sets *abs_max to the largest |exponent| among
// X's nonzero entries.
std::vector<Residuals> scale_columns(std::size_t B, std::size_t N, ExtCMat X, exp_t T, double* s,
                                     exp_t* colE, std::uint64_t* abs_max) {
    // Column maxima: blocks of kRows whole rows (contiguous), each into its
    // own partial maxima, combined after (max is exact, so any split gives
    // the same result).
    constexpr std::size_t kRows = 64;
    std::fill(colE, colE + N, kZeroExp);
    if (B * N < 2 * kElemGrain || B < 2 * kRows) {
        const std::uint64_t a = simd::max_exps(B, N, X.e, colE, abs_max != nullptr);
        if (abs_max) *abs_max = a;
    } else {
        const std::size_t nb = (B + kRows - 1) / kRows;
        std::vector<exp_t> part(nb * N, kZeroExp);
        std::vector<std::uint64_t> part_abs(nb);
        parallel_chunks(B, kRows, [&](std::size_t r0, std::size_t r1) {
            part_abs[r0 / kRows] =
                simd::max_exps(r1 - r0, N, X.e + r0 * N, part.data() + r0 / kRows * N, abs_max != nullptr);
        });
        simd::max_exps(nb, N, part.data(), colE, false);
        if (abs_max) *abs_max = *std::max_element(part_abs.begin(), part_abs.end());
    }
    std::atomic<bool> any_res{false};
    parallel_rows(B, N, [&](std::size_t r0, std::size_t r1) {
        if (simd::scale_cols(r1 - r0, N, X.m + r0 * N, X.e + r0 * N, colE, T, s + r0 * N))
            any_res.store(true, std::memory_order_relaxed);
    });
    std::vector<Residuals> out;
    if (!any_res.load()) return out;
    std::vector<std::pair<std::size_t, std::size_t>> res;  // (column, row)
    for (std::size_t i = 0; i < B; ++i)
        for (std::size_t j = 0; j < N; ++j) {
            const std::size_t o = i * N + j;
            if (X.m[o] != 0.0 && X.e[o] - colE[j] < -T) res.emplace_back(j, i);
        }
    std::stable_sort(res.begin(), res.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [j, i] : res) {
        if (out.empty() || out.back().line != j) out.push_back(Residuals{j, kZeroExp, {}});
        out.back().max_rel = std::max(out.back().max_rel, X.e[i * N + j] - colE[j]);
        out.back().idx.push_back(i);
    }
    return out;
}

}  // namespace

void ext_gemm_tn(Workspace& ws, std::size_t B, std::size_t N1, std::size_t N2, ExtCMat D,
                 ExtCMat A, ExtMat C, ExtMat colsum, std::uint64_t* bound) {
    // Both operands scaled to <= 1 with entries >= 2^-501: every product is a
    // normal double >= 2^-1002 and every sum stays below B, so the kernel
    // neither under- nor overflows; only the residuals need exact treatment.
    constexpr exp_t T = 500;
    if (B == 1) {
        // One row: C[j, k] = D[j] A[k], one rounded product each, which is
        // what the general path below computes too (scales 2^0, one-term sums,
        // no residuals); the bias gradient is D itself. As in mul_n, a product
        // of two normal-form mantissas is a normal double or zero.
        if (N1 * N2 < 2 * kElemGrain) {  // one block: the three steps in one call
            const std::uint64_t b = simd::outer_gradient(N1, N2, D.m, D.e, A.m, A.e, C.m, C.e, colsum.m, colsum.e,
                                                         bound != nullptr);
            if (bound) *bound = b;
            return;
        }
        parallel_rows(N1, N2, [&](std::size_t r0, std::size_t r1) {
            simd::outer_rows(r1 - r0, N2, D.m + r0, D.e + r0, A.m, A.e, C.m + r0 * N2, C.e + r0 * N2);
        });
        if (colsum.m) normalize_n(N1, D.m, 0, D.e, colsum.m, colsum.e);
        if (bound) *bound = simd::max_abs_exponent(D.m, D.e, N1) + simd::max_abs_exponent(A.m, A.e, N2);
        return;
    }
    ws.xs.resize(B * N1);
    ws.ys.resize(B * N2);
    ws.cs.resize(N1 * N2);
    ws.ex.resize(N1);
    ws.ey.resize(N2);
    double *ds = ws.xs.data(), *as = ws.ys.data(), *cs = ws.cs.data();
    exp_t *E = ws.ex.data(), *F = ws.ey.data();
    std::uint64_t d_abs = 0, a_abs = 0;
    const std::vector<Residuals> dres = scale_columns(B, N1, D, T, ds, E, bound ? &d_abs : nullptr);
    const std::vector<Residuals> ares = scale_columns(B, N2, A, T, as, F, bound ? &a_abs : nullptr);
    if (bound) *bound = d_abs + a_abs;

    gemm(true, false, N1, N2, B, ds, as, cs);

    // A zero column of D or A gives zero outputs (cs is 0 there): exact.
    parallel_rows(N1, N2, [&](std::size_t r0, std::size_t r1) {
        for (std::size_t j = r0; j < r1; ++j) simd::normalize_n(N2, cs + j * N2, E[j], F, C.m + j * N2, C.e + j * N2);
    });
    auto d_is_residual = [&](std::size_t i, std::size_t j) {
        return D.m[i * N1 + j] != 0.0 && D.e[i * N1 + j] - E[j] < -T;
    };
    auto add_term = [&](std::size_t o, std::size_t i, std::size_t j, std::size_t k) {
        const Ext t = mul(Ext{D.m[i * N1 + j], D.e[i * N1 + j]}, Ext{A.m[i * N2 + k], A.e[i * N2 + k]});
        const Ext s = add(Ext{C.m[o], C.e[o]}, t);
        C.m[o] = s.m;
        C.e[o] = s.e;
    };
    // Residuals of D (scaled A entries are < 1), then of A against the
    // non-residual entries of D (so that no term is counted twice).
    for (const Residuals& r : dres) {
        const std::size_t j = r.line;
        const int base = static_cast<int>(r.max_rel) + bit_width(r.idx.size());
        for (std::size_t k = 0; k < N2; ++k) {
            const std::size_t o = j * N2 + k;
            if (F[k] == kZeroExp || residual_negligible(cs[o], base)) continue;
            for (std::size_t i : r.idx) add_term(o, i, j, k);
        }
    }
    for (const Residuals& r : ares) {
        const std::size_t k = r.line;
        const int base = static_cast<int>(r.max_rel) + bit_width(r.idx.size());
        for (std::size_t j = 0; j < N1; ++j) {
            const std::size_t o = j * N2 + k;
            if (E[j] == kZeroExp || residual_negligible(cs[o], base)) continue;
            for (std::size_t i : r.idx)
                if (!d_is_residual(i, j)) add_term(o, i, j, k);
        }
    }

    if (!colsum.m) return;
    // Bias gradient: column sums of D in row order, on the same scaled mantissas.
    // Each column summed in row order, whatever the split into column blocks.
    ws.sums.resize(N1);
    double* s = ws.sums.data();
    column_sums(B, N1, ds, s);
    normalize_n(N1, s, 0, E, colsum.m, colsum.e);
    for (const Residuals& r : dres) {
        const std::size_t j = r.line;
        if (residual_negligible(s[j], static_cast<int>(r.max_rel) + bit_width(r.idx.size()))) continue;
        Ext acc{colsum.m[j], colsum.e[j]};
        for (std::size_t i : r.idx) acc = add(acc, Ext{D.m[i * N1 + j], D.e[i * N1 + j]});
        colsum.m[j] = acc.m;
        colsum.e[j] = acc.e;
    }
}

}  // namespace loggrad
