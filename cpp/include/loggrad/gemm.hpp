// loggrad/gemm.hpp — float64 matrix products and their extended-range forms.
//
// Extended products follow DESIGN.md §2: scale rows/columns of the extended
// operands to a common exponent (C = D1 * M * D2), run a float64 kernel on the
// scaled mantissas, carry the scale exponents out. Terms that the scaling
// would flush, and outputs where the float64 kernel could have under- or
// overflowed, are detected and accumulated exactly, element by element, so
// the result is what float64 with an unbounded exponent would give.
#pragma once

#include <cstddef>
#include <string>

#include "loggrad/ext.hpp"
#include "loggrad/memory.hpp"

namespace loggrad {

// C (M x N) = op(A) op(B), row-major, contiguous. op(A) is M x K (A is K x M
// when ta), op(B) is K x N (B is N x K when tb). Small products use the
// fixed-order kernel below (no call overhead), larger ones BLAS dgemm.
void gemm(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, const double* A,
          const double* B, double* C);

// out[j] = sum_i A[i, j] for A (rows x cols, row-major): each column summed in
// row order, column blocks in parallel, so the bits do not depend on the split.
void column_sums(std::size_t rows, std::size_t cols, const double* A, double* out);

// The kernel of small products, with a summation order fixed in the source
// (the same bits from every build): with op(B) transposed, four partial sums
// by k mod 4, each in k order, combined as (s0 + s1) + (s2 + s3); otherwise
// each output accumulated in k order from 0.0 + its k = 0 term.
void gemm_naive(bool ta, bool tb, std::size_t M, std::size_t N, std::size_t K, const double* A,
                const double* B, double* C);

// Products below this many multiply-adds skip BLAS.
constexpr std::size_t kBlasMinWork = 32 * 32 * 32;

// True when gemm runs the fixed-order kernel for these sizes. Each output is
// then a float64 sum of all its K products, in float64: an inf or nan in
// op(B) (or op(A)) makes every output it enters inf or nan (inf * 0 is nan,
// and no sum of terms leaves inf or nan for a finite value).
inline bool gemm_fixed_order(std::size_t M, std::size_t N, std::size_t K) { return M * N * K < kBlasMinWork; }
// Larger products run as independent BLAS calls on blocks of this many rows
// (or columns) of C, in parallel on the engine's threads; each thread's run
// of whole blocks goes to BLAS as one call where that gives the same bits
// (gemm.cpp, blas_config()).
constexpr std::size_t kGemmBlock = 128;

struct ExtMat {  // row-major extended matrix, separate mantissa/exponent planes
    double* m;
    exp_t* e;
};
struct ExtCMat {
    const double* m;
    const exp_t* e;
};

// Scratch buffers reused across layers of one pass: uninitialised, grown on
// demand, from loggrad::allocate (a repeated pass reuses mapped pages).
// Each kernel resizes what it uses; fields shared by two kernels carry one
// kernel's result to the next, as said below.
struct Workspace {
    // ext_gemm_xw*: X's rows scaled to a common exponent per row (M x K), the
    // float64 product of the scaled rows with W (M x N; ext_gemm_xw_product
    // leaves it for ext_gemm_xw_finish or for the fused epilogue), each row's
    // scale exponent (M), and the rows whose scaling flushed a term and need
    // exact recomputation (M).
    Buffer<double> xs, cs;
    Buffer<exp_t> ex;
    Buffer<unsigned char> flags;
    // ext_gemm_xw_chain: the next layer's xs, ex and flags, formed while the
    // current ones are read (swapped in at the end), and the rows it left to
    // the step-by-step path (marks; the fused epilogue uses marks for rows
    // beyond the fast tanh's range).
    Buffer<double> xs2;
    Buffer<exp_t> ex2;
    Buffer<unsigned char> flags2, marks;
    // ext_gemm_tn (dW = delta^T a): the scaled columns of a (ys, B x N2),
    // their exponents (ey); xs and ex then hold delta's scaled columns and
    // exponents. sums: the bias gradient's column sums (N1).
    Buffer<double> ys, sums;
    Buffer<exp_t> ey;
    // forward_layer_ext: the bias as extended values (n_out).
    Buffer<double> bm;
    Buffer<exp_t> be;
};

// C (M x N) = X (M x K, extended) op(W), W float64: op(W) = W^T (W is N x K)
// when w_trans, else W (K x N). When range is not null, *range is set as
// simd::out_of_range over C would set it (bits 62-63: some entry of C left the
// exponent range).
void ext_gemm_xw(Workspace& ws, std::size_t M, std::size_t N, std::size_t K, ExtCMat X,
                 const double* W, bool w_trans, ExtMat C, std::uint64_t* range = nullptr);

// ext_gemm_xw in two steps, for callers that finish the outputs themselves:
// ext_gemm_xw_product leaves the float64 product of X's rows scaled by their
// largest exponents in ws.cs (the exponents in ws.ex); output (i, j) is
// ws.cs[i N + j] 2^ws.ex[i], exactly as ext_gemm_xw gives it, when it returns
// true and that |ws.cs| lies within [ext_gemm_xw_tiny(K), DBL_MAX], or row i
// is all zeros (ws.ex[i] = kZeroExp). Otherwise ext_gemm_xw_finish, called
// next with the same operands, writes C as ext_gemm_xw does.
bool ext_gemm_xw_product(Workspace& ws, std::size_t M, std::size_t N, std::size_t K, ExtCMat X, const double* W,
                         bool w_trans);
void ext_gemm_xw_finish(Workspace& ws, std::size_t M, std::size_t N, std::size_t K, ExtCMat X, const double* W,
                        bool w_trans, ExtMat C, std::uint64_t* range = nullptr);
// K 2^-1020: below it, a float64 sum of K products may have lost bits to
// underflow (inline: narrow layers ask for it at every step).
inline double ext_gemm_xw_tiny(std::size_t K) { return static_cast<double>(K) * 0x1p-1020; }

// The backward chain's step between two layers. After ext_gemm_xw_product
// returned true for C = X op(W) (M x N), makes the next product's operand
// Y = C * F elementwise, written over F (M x N; unit: F's nonzero entries are
// all 1, as relu's and identity's derivatives are, and Y selects C there),
// and leaves Y's rows scaled in ws for ext_gemm_xw_scaled. C is not written
// where none of its products needs exact recomputation; rows that need it go
// through ext_gemm_xw_finish into C first. Bits as ext_gemm_xw, then
// simd::select_n or mul_n; *range: C's range bits, as ext_gemm_xw gives them.
// Returns the value ext_gemm_xw_product would return for Y.
bool ext_gemm_xw_chain(Workspace& ws, std::size_t M, std::size_t N, std::size_t K, ExtCMat X, const double* W,
                       bool w_trans, bool unit, ExtMat F, ExtMat C, std::uint64_t* range);

// ext_gemm_xw_product for X (M x K) whose rows ext_gemm_xw_chain has scaled.
void ext_gemm_xw_scaled(Workspace& ws, std::size_t M, std::size_t N, std::size_t K, const double* W, bool w_trans);

// ext_gemm_xw_scaled and then ext_gemm_xw_chain (W not transposed), the same
// bits; for a small product, each row's product and chain step in one pass.
bool ext_gemm_xw_scaled_chain(Workspace& ws, std::size_t M, std::size_t N, std::size_t K, ExtCMat X,
                              const double* W, bool unit, ExtMat F, ExtMat C, std::uint64_t* range);

// One step of ext_gemm_xw_chain_run: ext_gemm_xw_scaled_chain's X, W, unit and F.
struct ChainStep {
    ExtCMat X;
    const double* W;
    ExtMat F;
    bool unit;
};

// ext_gemm_xw_scaled_chain(ws, 1, n, n, X, W, unit, F, C, range) for each of
// `count` steps of one row in turn (each step's product starts from the
// scaled row the step before left), the same bits, in few calls: stops
// after the first step that does not return true with *range 0, and
// returns how many steps ran; *exact and *range are the last one's.
std::size_t ext_gemm_xw_chain_run(Workspace& ws, std::size_t n, std::size_t count, const ChainStep* steps, ExtMat C,
                                  std::uint64_t* range, bool* exact);

// Below this row-relative exponent, entries of X are left out of the scaled
// product of ext_gemm_xw* and added exactly (scaled entries stay >= 2^-601:
// normal, far from underflow).
constexpr exp_t kXwDrop = 600;

// C (N1 x N2) = D^T A with D (B x N1) and A (B x N2) extended; when colsum.m is
// not null, colsum[j] = sum_i D[i, j] (the bias gradient) as well. When bound
// is not null, *bound is set to the largest |exponent| among D's nonzero
// entries plus that among A's (what a range test of C can start from).
void ext_gemm_tn(Workspace& ws, std::size_t B, std::size_t N1, std::size_t N2, ExtCMat D,
                 ExtCMat A, ExtMat C, ExtMat colsum, std::uint64_t* bound = nullptr);

// Threads of the BLAS library itself (kept at 1, see gemm.cpp) and its description.
int blas_threads();
std::string blas_config();

// Instruction set the engine's elementwise kernels run with on this machine:
// "avx512", "avx2", or "baseline" (the build's own target); LOGGRAD_SIMD=avx2 or
// LOGGRAD_SIMD=baseline caps it. All give the same bits.
std::string kernel_isa();

}  // namespace loggrad
