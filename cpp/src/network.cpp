// Forward and backward passes of the whole chain (see loggrad/network.hpp).
#include "loggrad/network.hpp"
#include "loggrad/stats.hpp"

#include <algorithm>
#include <atomic>
#include <exception>
#include <cfloat>
#include <cstring>
#include <memory>
#include <cmath>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "loggrad/gemm.hpp"
#include "loggrad/interrupt.hpp"
#include "loggrad/memory.hpp"
#include "loggrad/parallel.hpp"
#include "schedule.hpp"
#include "simd.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace loggrad {

Architecture::Architecture(std::vector<std::size_t> widths, std::vector<Activation> activations)
    : widths_(std::move(widths)), activations_(std::move(activations)) {
    if (activations_.empty()) throw std::invalid_argument("a network needs at least one layer");
    if (widths_.size() != activations_.size() + 1)
        throw std::invalid_argument("a network of " + std::to_string(activations_.size()) +
                                    " layers needs " + std::to_string(activations_.size() + 1) +
                                    " widths, got " + std::to_string(widths_.size()));
    for (std::size_t i = 0; i < widths_.size(); ++i)
        if (widths_[i] == 0)
            throw std::invalid_argument("width " + std::to_string(i) + " is zero: every layer needs at least one unit");
    max_width_ = *std::max_element(widths_.begin(), widths_.end());
    offsets_.resize(activations_.size() + 1);
    offsets_[0] = 0;
    for (std::size_t l = 0; l < activations_.size(); ++l)
        offsets_[l + 1] = offsets_[l] + widths_[l + 1] * (widths_[l] + 1);
}

Architecture::Architecture(std::vector<std::size_t> widths, std::vector<Activation> activations,
                           std::vector<double> residual)
    : Architecture(std::move(widths), std::move(activations)) {
    bool any = false;
    if (!residual.empty()) {
        if (residual.size() != depth())
            throw std::invalid_argument("got " + std::to_string(residual.size()) + " residual scales for " +
                                        std::to_string(depth()) + " layers");
        for (std::size_t l = 0; l < depth(); ++l) {
            const double s = residual[l];
            if (s != s) continue;  // NaN: a plain layer
            if (!std::isfinite(s))
                throw std::invalid_argument("layer " + std::to_string(l) + ": the residual scale must be finite, got " +
                                            std::to_string(s));
            if (widths_[l] != widths_[l + 1])
                throw std::invalid_argument("layer " + std::to_string(l) + " (" + std::to_string(widths_[l]) + " -> " +
                                            std::to_string(widths_[l + 1]) +
                                            ") cannot be residual: a residual layer adds its input to its output, "
                                            "so it needs as many outputs as inputs");
            any = true;
        }
    }
    if (any) residual_ = std::move(residual);
}

std::size_t Architecture::unit_count() const {
    std::size_t n = 0;
    for (std::size_t w : widths_) n += w;
    return n;
}

namespace {
// simd::all_finite, with a large block split over the engine's threads (a wide
// layer's check would otherwise keep the others waiting).
bool all_finite(const double* x, std::size_t n) {
    constexpr std::size_t kGrain = std::size_t(1) << 16;
    if (n < 2 * kGrain) return simd::all_finite(x, n);
    std::atomic<bool> ok{true};
    parallel_chunks(n, kGrain, [&](std::size_t b, std::size_t e) {
        if (!simd::all_finite(x + b, e - b)) ok.store(false, std::memory_order_relaxed);
    });
    return ok.load();
}
}  // namespace

void Architecture::check_params(const double* params) const {
    if (all_finite(params, param_count())) return;
    for (std::size_t l = 0; l < depth(); ++l) check_layer_params(params, l);
}

void Architecture::check_layer_params(const double* params, std::size_t l) const {
    const std::size_t n_out = widths_[l + 1], n_in = widths_[l];
    // W_l and b_l are contiguous: one vectorised test, the message only on failure.
    if (all_finite(params + weight_offset(l), n_out * (n_in + 1))) return;
    const double* w = params + weight_offset(l);
    for (std::size_t i = 0; i < n_out * n_in; ++i)
        if (!std::isfinite(w[i]))
            throw std::invalid_argument("weights[" + std::to_string(l) + "] has a non-finite value (" +
                                        std::to_string(w[i]) + ") at [" + std::to_string(i / n_in) +
                                        ", " + std::to_string(i % n_in) + "]");
    const double* b = params + bias_offset(l);
    for (std::size_t i = 0; i < n_out; ++i)
        if (!std::isfinite(b[i]))
            throw std::invalid_argument("biases[" + std::to_string(l) + "] has a non-finite value (" +
                                        std::to_string(b[i]) + ") at [" + std::to_string(i) + "]");
}

void check_inputs(const double* x, std::size_t rows, std::size_t cols) {
    if (all_finite(x, rows * cols)) return;
    for (std::size_t i = 0; i < rows * cols; ++i)
        if (!std::isfinite(x[i]))
            throw std::invalid_argument("input x has a non-finite value (" + std::to_string(x[i]) +
                                        ") at [" + std::to_string(i / cols) + ", " +
                                        std::to_string(i % cols) + "]");
}

namespace {

// Refuses, before allocating, a pass that cannot fit in physical memory
// (an overcommitted allocation would otherwise be killed, not refused).
void reserve_check(std::size_t bytes, const char* what) {
#if defined(_SC_PHYS_PAGES) && defined(_SC_PAGESIZE)
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) {
        const double phys = static_cast<double>(pages) * static_cast<double>(page);
        if (static_cast<double>(bytes) > phys) {
            struct too_big : std::bad_alloc {
                std::string msg;  // what() names the pass and the sizes
                explicit too_big(std::string m) : msg(std::move(m)) {}
                const char* what() const noexcept override { return msg.c_str(); }
            };
            throw too_big(std::string(what) + " needs " + std::to_string(bytes >> 20) +
                          " MiB, more than this machine's " +
                          std::to_string(static_cast<long long>(phys) >> 20) + " MiB of memory");
        }
    }
#else
    (void)bytes;
    (void)what;
#endif
}

// Values past the exponent range. Above it a pass throws range_error; below
// it (an underflow) the value becomes an exact zero and is counted, as IEEE
// float64 does at its own range, unless the pass raises (on_underflow="raise"),
// which is what a thread without a PassFlush (tl_pass null) does. The message
// names the layer and the quantity, the same whichever path found the value.
constexpr std::size_t kNoLayer = kNoUnderflowLayer;

enum class Quantity : unsigned { activations, derivatives, loss, gradients, input_gradients };

const char* quantity_name(Quantity q) {
    switch (q) {
        case Quantity::activations: return "activations";
        case Quantity::derivatives: return "activation derivatives";
        case Quantity::loss: return "the loss";
        case Quantity::gradients: return "gradients";
        case Quantity::input_gradients: return "input gradients";
    }
    return "values";
}

[[noreturn]] void throw_out_of_range(std::size_t l, Quantity q, bool below, const std::string& detail = "") {
    throw range_error((l == kNoLayer ? std::string() : "layer " + std::to_string(l) + " ") + quantity_name(q) +
                      (below ? ": a value below" : ": a value above") +
                      " loggrad's exponent range (|log2| < 2^60)" + (detail.empty() ? "" : "; " + detail));
}

}  // namespace

// The flushes of one pass: their count and where the first was, in the order
// of a layer-by-layer sweep (forward layers up, the loss, backward layers
// down; within a backward layer the weight gradients before the input
// gradients, as the sweep meets them). Any thread may record; the smallest
// key wins, so the first does not depend on the thread count.
struct PassFlush {
    std::atomic<std::uint64_t> count{0};                   // values flushed so far
    std::atomic<std::uint64_t> first{~std::uint64_t(0)};  // key() of the first in sweep order (none: all ones)
    // Off while a checkpointed segment is recomputed: its activations were
    // counted by the forward pass (which, not storing derivatives, counted no
    // derivatives: the recomputation counts those).
    bool count_activations = true;

    static std::uint64_t key(std::size_t l, Quantity q) {
        const auto ql = static_cast<std::uint64_t>(q);
        if (q == Quantity::loss) return (std::uint64_t(1) << 60) | ql;
        const std::uint64_t ll = static_cast<std::uint64_t>(l) & ((std::uint64_t(1) << 40) - 1);
        if (q == Quantity::activations || q == Quantity::derivatives) return (ll << 8) | ql;
        return (std::uint64_t(2) << 60) | ((((std::uint64_t(1) << 40) - 1 - ll)) << 8) | ql;
    }
    void record(std::size_t l, Quantity q, std::uint64_t n) {
        if (n == 0 || (q == Quantity::activations && !count_activations)) return;
        count.fetch_add(n, std::memory_order_relaxed);
        const std::uint64_t k = key(l, q);
        std::uint64_t cur = first.load(std::memory_order_relaxed);
        while (k < cur && !first.compare_exchange_weak(cur, k, std::memory_order_relaxed)) {
        }
    }
    void report(Underflow& u) const {
        u.count = count.load();
        u.layer = kNoLayer;
        u.quantity.clear();
        if (u.count == 0) return;
        const std::uint64_t k = first.load();
        const auto q = static_cast<Quantity>(k & 0xff);
        const std::uint64_t ll = (k >> 8) & ((std::uint64_t(1) << 40) - 1);
        u.quantity = quantity_name(q);
        if (q == Quantity::loss) return;
        u.layer = static_cast<std::size_t>(k >> 60 == 2 ? ((std::uint64_t(1) << 40) - 1 - ll) : ll);
    }
};

namespace {

// After a range test found bits (as simd::out_of_range's): throws for a value
// above the range, or below it where the pass raises; else flushes the values
// below it to exact zeros and counts them. The rare path: the test itself is
// branch-free and vectorises.
void settle_range(double* m, exp_t* e, std::size_t n, std::size_t l, Quantity q, std::uint64_t bits) {
    if ((bits >> 62) & 1) throw_out_of_range(l, q, false);
    PassFlush* pass = tl_pass;
    if (!pass) throw_out_of_range(l, q, true);
    std::uint64_t flushed = 0;
    for (std::size_t i = 0; i < n; ++i)
        if (m[i] != 0.0 && e[i] < -kMaxExp) {
            m[i] = 0.0;
            e[i] = kZeroExp;
            ++flushed;
        }
    pass->record(l, q, flushed);
}

void check_range(double* m, exp_t* e, std::size_t n, std::size_t l, Quantity q) {
    const std::uint64_t bits = simd::out_of_range(m, e, n);
    if (bits >> 62) settle_range(m, e, n, l, q, bits);
}

std::string layer_tag(std::size_t l) { return "layer " + std::to_string(l); }

// Range check of a weight gradient delta^T a and its bias gradient (layer l).
// bound = max |e_delta| + max |e_a| over their nonzero entries comes from
// ext_gemm_tn, which finds it in a pass it makes anyway, at some cost per
// operand entry: asked for only where the operands are smaller than the
// gradient (bound_wanted), else kNoBound. Every nonzero term delta_bj a_bk
// lies within 2^(+-(bound + 1)), and ext_gemm_tn's sums of at most 2^64 such
// terms, rounded as float64 would (the float64 kernel works on entries scaled
// into [2^-501, 1]), stay within 2^(+-(bound + 2048)). Far from 2^60 —
// always, short of pathological inputs — no entry can be out of range, and
// reading the gradient again is skipped; otherwise every entry is checked.
constexpr std::uint64_t kNoBound = ~std::uint64_t(0);

bool bound_wanted(std::size_t batch, std::size_t n_out, std::size_t n_in) {
    return batch * (n_out + n_in) < n_out * (n_in + 1);
}

void check_gradient_range(std::size_t n_out, std::size_t n_in, std::uint64_t bound, double* gm, exp_t* ge,
                          std::size_t l) {
    constexpr std::uint64_t kMargin = 4096;
    if (bound != kNoBound && bound + kMargin <= static_cast<std::uint64_t>(kMaxExp)) return;
    check_range(gm, ge, n_out * (n_in + 1), l, Quantity::gradients);
}

// out, der = the activation of layer l (and its derivative, when der.m is
// not null) at the n extended values of z from offset o, and their range
// checks; errors name the layer.
void activate_checked(Activation act, std::size_t l, std::size_t o, std::size_t n, ExtMat z, ExtMat out,
                      ExtMat der) {
    const auto run = [&] {
        activate_ext_n(act, n, z.m + o, z.e + o, out.m + o, out.e + o, der.m ? der.m + o : nullptr,
                       der.e ? der.e + o : nullptr);
    };
    try {
        run();  // no sink on this thread: an underflow throws, and the rare path below takes it
    } catch (const underflow_error& e) {
        PassFlush* pass = tl_pass;
        if (!pass)
            throw_out_of_range(l, e.derivative() ? Quantity::derivatives : Quantity::activations, true, e.detail());
        // Again with a sink, flushing: elementwise, so every other value comes out the same.
        UnderflowSink sink;
        {
            const UnderflowScope scope(&sink);
            run();
        }
        pass->record(l, Quantity::activations, sink.values.load());
        pass->record(l, Quantity::derivatives, sink.derivatives.load());
    } catch (const range_error& e) {
        throw range_error(layer_tag(l) + ": " + e.what());
    }
    check_range(out.m + o, out.e + o, n, l, Quantity::activations);
    if (der.m) check_range(der.m + o, der.e + o, n, l, Quantity::derivatives);
}

// The epilogue bias_act_rows runs for an activation (false: none, the
// layer goes step by step).
bool epilogue_kind(Activation act, simd::Epilogue& kind) {
    switch (act) {
        case Activation::identity: kind = simd::Epilogue::identity; return true;
        case Activation::relu: kind = simd::Epilogue::relu; return true;
        case Activation::tanh: kind = simd::Epilogue::tanh; return true;
        default: return false;
    }
}

// What follows simd::bias_act_rows over a layer's rows (l) once no product
// needs exact recomputation: the range check of the activations where its
// range bits say so, then the tanh rows it left in z (general[i] = 1, those
// beyond the fast tanh's range, saturated ones) through activate_ext_n,
// rows in parallel.
void epilogue_rest(Activation act, std::size_t l, std::size_t batch, std::size_t n_out, std::uint64_t range,
                   ExtMat out, ExtMat der, ExtMat z, const unsigned char* general) {
    if (range >> 62) check_range(out.m, out.e, batch * n_out, l, Quantity::activations);
    if (act != Activation::tanh) return;
    pass_rows(batch, n_out, [&](std::size_t r0, std::size_t r1) {
        for (std::size_t i = r0; i < r1; ++i)
            if (general[i]) activate_checked(act, l, i * n_out, n_out, z, out, der);
    });
}

// The bias, activation and range checks of an identity, relu or tanh layer
// (l) in one pass over ext_gemm_xw_product's outputs: simd::bias_act_rows,
// rows in parallel. tanh rows it leaves in z go through activate_ext_n.
// Returns false, having written nothing that counts, where some product
// needs exact recomputation: the caller then finishes the layer step by step.
bool fused_epilogue(Activation act, std::size_t l, std::size_t batch, std::size_t n_out, std::size_t n_in,
                    const double* b, const double* bm, const exp_t* be, ExtMat out, ExtMat der, ExtMat z,
                    Workspace& ws) {
    simd::Epilogue kind;
    if (!epilogue_kind(act, kind)) return false;
    bool b_plain = true;
    for (std::size_t j = 0; j < n_out; ++j)
        b_plain &= b[j] == 0.0 || (std::fabs(b[j]) >= DBL_MIN && std::fabs(b[j]) <= std::ldexp(1.0, 1020));
    const double* cs = ws.cs.data();
    const exp_t* rowE = ws.ex.data();
    ws.marks.resize(batch);
    unsigned char* general = ws.marks.data();
    std::atomic<std::uint64_t> suspect{0}, range{0};
    parallel_rows(batch, n_out, [&](std::size_t r0, std::size_t r1) {
        const std::size_t o = r0 * n_out;
        const simd::BiasAct op{kind, ext_gemm_xw_tiny(n_in), DBL_MAX, b, b_plain, bm, be, out.m + o, out.e + o,
                               der.m ? der.m + o : nullptr, der.e ? der.e + o : nullptr, z.m + o, z.e + o,
                               general + r0};
        std::uint64_t bad = 0;
        suspect.fetch_or(simd::bias_act_rows(op, r1 - r0, n_out, cs + o, rowE + r0, &bad), std::memory_order_relaxed);
        range.fetch_or(bad, std::memory_order_relaxed);
    });
    if (suspect.load() >> 63) return false;
    epilogue_rest(act, l, batch, n_out, range.load(), out, der, z, general);
    return true;
}

}  // namespace

namespace {
// How a layer about to run checks its parameters. A whole test reads the
// layer's n_out (n_in + 1) parameters. Where the product has fewer outputs
// than weights (batch < n_in; at batch 1, 1/n_in of them) and runs in the
// fixed-order kernel, which carries any inf or nan weight into every output
// row (gemm_fixed_order), the outputs and the bias are tested instead, and the
// parameters read only when some output is not finite: the layer's weights
// then hold an inf or nan, or (float64) an input did, or the product overflowed.
// Either way the layer's own parameters are tested before anything else can
// fail, so the error is the one a test ahead of the layer gives.
enum class ParamCheck { none, before, after };

ParamCheck forward_layer_checks(bool check, std::size_t batch, std::size_t n_out, std::size_t n_in) {
    if (!check) return ParamCheck::none;
    return batch < n_in && gemm_fixed_order(batch, n_out, n_in) ? ParamCheck::after : ParamCheck::before;
}

// The `after` test: products z (batch x n_out) and the bias b.
void check_after_product(const Architecture& net, const double* params, std::size_t l, std::size_t batch,
                         const double* z, const double* b) {
    const std::size_t n_out = net.width(l + 1);
    if (!simd::all_finite(z, batch * n_out) || !simd::all_finite(b, n_out)) net.check_layer_params(params, l);
}
}  // namespace

namespace {

// Largest width of a layer that runs the narrow forward and chain steps
// (simd::narrow_forward_rows, narrow_chain_rows).
constexpr std::size_t kNarrowMaxWidth = simd::kNarrowMaxN;

// Whether an extended layer's forward step for `rows` rows takes the narrow
// way: an activation bias_act_rows takes, a product gemm runs in the
// fixed-order kernel, and so few rows that every step of the layer would run
// them as one block on this thread anyway.
bool narrow_forward(Activation act, std::size_t rows, std::size_t n_out, std::size_t n_in) {
    simd::Epilogue kind;
    return epilogue_kind(act, kind) && n_in <= kNarrowMaxWidth && n_out <= kNarrowMaxWidth &&
           gemm_fixed_order(rows, n_out, n_in) && rows * std::max(n_in, n_out) <= kElemGrain;
}

// The narrow forward step of an extended identity, relu or tanh layer (l):
// simd::narrow_forward_rows makes the product and runs the fused epilogue's
// float64 way in one call, leaving the workspace as ext_gemm_xw_product
// leaves it; the parameter test (pc) follows as it follows the product.
// Returns false where some row was flagged (as ext_gemm_xw_product does);
// otherwise finishes what fused_epilogue would, rows pending through
// bias_act_rows (each row's bits do not depend on the rows beside it), and
// returns whether it could (false: a product needs exact recomputation, as
// fused_epilogue returns). The biases, extended, are made only for pending
// rows, by bias_ext.
// Where ran is not null, simd::narrow_forward_run has already made this
// layer's step (into the same workspace and outputs) and *ran is its status.
template <class BiasExt>
bool narrow_forward_ext(const Architecture& net, const double* params, std::size_t l, std::size_t batch, ExtCMat in,
                        const double* W, const double* b, ExtMat out, ExtMat der, ExtMat z, Workspace& ws,
                        ParamCheck pc, const unsigned* ran, BiasExt&& bias_ext) {
    const std::size_t n_in = net.width(l), n_out = net.width(l + 1);
    const Activation act = net.activation(l);
    simd::Epilogue kind = simd::Epilogue::identity;
    epilogue_kind(act, kind);
    ws.xs.resize(batch * n_in);
    ws.cs.resize(batch * n_out);
    ws.ex.resize(batch);
    ws.flags.resize(batch);
    ws.marks.resize(batch);
    const double* cs = ws.cs.data();
    const exp_t* rowE = ws.ex.data();
    unsigned char* general = ws.marks.data();
    simd::BiasAct op;  // field by field: a braced initialiser zero-fills it first
    op.kind = kind;
    op.lo = ext_gemm_xw_tiny(n_in);
    op.hi = DBL_MAX;
    op.b = b;
    op.b_plain = false;
    op.bm = nullptr;
    op.be = nullptr;
    op.am = out.m;
    op.ae = out.e;
    op.dm = der.m;
    op.de = der.m ? der.e : nullptr;
    op.zm = z.m;
    op.ze = z.e;
    op.general = general;
    const unsigned status = ran ? *ran
                                : simd::narrow_forward_rows(op, batch, n_in, n_out, in.m, in.e, W, kXwDrop,
                                                            ws.xs.data(), ws.ex.data(), ws.flags.data(), ws.cs.data());
    if (pc == ParamCheck::after && (status & simd::kNarrowNotFinite)) net.check_layer_params(params, l);
    if (status & simd::kNarrowFlagged) return false;
    std::uint64_t suspect = 0, range = 0;
    if (status & simd::kNarrowSomePending) {
        const auto [bm, be] = bias_ext();
        op.b_plain = (status & simd::kNarrowBPlain) != 0;
        op.bm = bm;
        op.be = be;
        for (std::size_t i = 0; i < batch; ++i) {
            if (general[i] != simd::kNarrowPending) continue;
            const std::size_t o = i * n_out;
            simd::BiasAct row = op;
            row.am += o;
            row.ae += o;
            if (row.dm) {
                row.dm += o;
                row.de += o;
            }
            row.zm += o;
            row.ze += o;
            row.general += i;
            std::uint64_t bad = 0;
            suspect |= simd::bias_act_rows(row, 1, n_out, cs + o, rowE + i, &bad);
            range |= bad;
        }
    }
    if (suspect >> 63) return false;
    epilogue_rest(act, l, batch, n_out, range, out, der, z, general);
    return true;
}

// out = f(in W_l^T + b_l) and der = f'(...) (when der.m is not null) of a
// dense layer, extended; z is scratch. The body of forward_layer_ext. ran:
// as narrow_forward_ext's (a layer a run stopped at).
void dense_forward_ext(const Architecture& net, const double* params, std::size_t l, std::size_t batch,
                       ExtCMat in, ExtMat out, ExtMat der, ExtMat z, Workspace& ws, bool check,
                       const unsigned* ran = nullptr) {
    const std::size_t n_in = net.width(l), n_out = net.width(l + 1);
    const double* W = params + net.weight_offset(l);
    const double* b = params + net.bias_offset(l);
    const ParamCheck pc = forward_layer_checks(check, batch, n_out, n_in);
    if (pc == ParamCheck::before) net.check_layer_params(params, l);
    const Activation act = net.activation(l);
    bool biases_made = false;
    const auto bias_ext = [&] {  // the biases, extended
        if (!biases_made) {
            ws.bm.resize(n_out);
            ws.be.resize(n_out);
            for (std::size_t j = 0; j < n_out; ++j) {
                const Ext bj = from_double(b[j]);
                ws.bm[j] = bj.m;
                ws.be[j] = bj.e;
            }
            biases_made = true;
        }
        return std::pair<const double*, const exp_t*>(ws.bm.data(), ws.be.data());
    };
    if (narrow_forward(act, batch, n_out, n_in)) {
        if (narrow_forward_ext(net, params, l, batch, in, W, b, out, der, z, ws, pc, ran, bias_ext)) return;
    } else {
        const bool exact = ext_gemm_xw_product(ws, batch, n_out, n_in, in, W, true);
        // The product's rows are finite mantissas scaled to at most 1 in magnitude:
        // with finite weights, only an overflow of the sum makes an output inf.
        if (pc == ParamCheck::after) check_after_product(net, params, l, batch, ws.cs.data(), b);
        if (exact) {
            const auto [bm, be] = bias_ext();
            if (fused_epilogue(act, l, batch, n_out, n_in, b, bm, be, out, der, z, ws)) return;
        }
    }
    const auto [bm, be] = bias_ext();
    ext_gemm_xw_finish(ws, batch, n_out, n_in, in, W, true, z);
    // z += b, activation and range checks, rows in parallel (elementwise:
    // the same results for any split).
    pass_rows(batch, n_out, [&](std::size_t r0, std::size_t r1) {
        for (std::size_t i = r0; i < r1; ++i) simd::add_n(n_out, z.m + i * n_out, z.e + i * n_out, bm, be);
        activate_checked(act, l, r0 * n_out, (r1 - r0) * n_out, z, out, der);
    });
}

// A residual layer's step on the dense layer's results: out = in + s out
// (the branch scaled by s, added to the layer's input) and der = s der, the
// factor the backward chain multiplies dL/da_{l+1} by on the branch. The
// product by s is exact as float64's, the sum rounded once: what float64
// gives, with an unbounded exponent.
void residual_forward_ext(const Architecture& net, std::size_t l, std::size_t batch, ExtCMat in, ExtMat out,
                          ExtMat der) {
    const std::size_t n = net.width(l + 1);
    const Ext s = from_double(net.residual_scale(l));
    pass_rows(batch, n, [&](std::size_t r0, std::size_t r1) {
        // s as a row of extended values, for the array operations (same bits as mul and add)
        thread_local std::vector<double> sm;
        thread_local std::vector<exp_t> se;
        sm.assign(n, s.m);
        se.assign(n, s.e);
        for (std::size_t r = r0; r < r1; ++r) {
            const std::size_t o = r * n;
            simd::mul_n(n, sm.data(), se.data(), out.m + o, out.e + o);  // s f(z)
            simd::add_n(n, out.m + o, out.e + o, in.m + o, in.e + o);    // + a_l
            if (der.m) simd::mul_n(n, sm.data(), se.data(), der.m + o, der.e + o);
        }
        check_range(out.m + r0 * n, out.e + r0 * n, (r1 - r0) * n, l, Quantity::activations);
    });
}

}  // namespace

void forward_layer_ext(const Architecture& net, const double* params, std::size_t l, std::size_t batch,
                       ExtCMat in, ExtMat out, ExtMat der, ExtMat z, Workspace& ws, bool check) {
    dense_forward_ext(net, params, l, batch, in, out, der, z, ws, check);
    if (net.residual(l)) residual_forward_ext(net, l, batch, in, out, der);
}

namespace {

// The values of one precision, as planes: float64 (one double per value)
// or extended (a mantissa and a binary exponent per value). The passes below
// that differ between the precisions only in these are written once, over
// the planes type P.
struct F64Planes {
    using Mat = double*;
    using CMat = const double*;
    static constexpr std::size_t kValueBytes = sizeof(double);
    Buffer<double> m;  // the values
    void resize(std::size_t n) { m.resize(n); }
    Mat at(std::size_t o) { return m.data() + o; }
};

struct ExtPlanes {
    using Mat = ExtMat;
    using CMat = ExtCMat;
    static constexpr std::size_t kValueBytes = sizeof(double) + sizeof(exp_t);
    Buffer<double> m;  // mantissas
    Buffer<exp_t> e;   // binary exponents
    void resize(std::size_t n) {
        m.resize(n);
        e.resize(n);
    }
    Mat at(std::size_t o) { return ExtMat{m.data() + o, e.data() + o}; }
};

// A read-only view o values on; a view made read-only; n values copied.
inline const double* shift(const double* p, std::size_t o) { return p + o; }
inline ExtCMat shift(ExtCMat p, std::size_t o) { return ExtCMat{p.m + o, p.e + o}; }
inline const double* readonly(double* p) { return p; }
inline ExtCMat readonly(ExtMat p) { return ExtCMat{p.m, p.e}; }
inline void copy_values(const double* from, std::size_t n, double* to) { std::copy(from, from + n, to); }
inline void copy_values(ExtCMat from, std::size_t n, ExtMat to) {
    std::copy(from.m, from.m + n, to.m);
    std::copy(from.e, from.e + n, to.e);
}

// Storage of a pass over layers [l0, l1) for the backward sweep, batch-major
// within a layer (see plan_store).
template <class P>
struct Store {
    P a;                                  // a_{l0} .. a_{l1}
    P d;                                  // f'(z_{l0}) .. f'(z_{l1-1}); the backward chain writes delta_l over f'(z_l)
    std::vector<std::size_t> aoff, doff;  // where each layer's rows start in a and in d
};
using ExtStore = Store<ExtPlanes>;
using F64Store = Store<F64Planes>;

// Where a stored range of layers [l0, l1) keeps its values: aoff[i] is the
// offset of a_{l0+i} (batch x n, batch-major), doff[i] that of f'(z_{l0+i}).
// Without keep, two alternating buffers of batch x maxw and no derivatives.
// Returns the activation and derivative value counts.
std::pair<std::size_t, std::size_t> plan_store(const Architecture& net, std::size_t l0, std::size_t l1,
                                               std::size_t batch, bool keep, std::vector<std::size_t>& aoff,
                                               std::vector<std::size_t>& doff) {
    const std::size_t n = l1 - l0, maxw = net.max_width();
    aoff.assign(n + 1, 0);
    doff.assign(n, 0);
    std::size_t atotal = 0, dtotal = 0;
    for (std::size_t i = 0; i <= n; ++i) {
        aoff[i] = keep ? atotal : (i % 2) * batch * maxw;
        atotal += batch * net.width(l0 + i);
        if (i < n) {
            doff[i] = dtotal;
            dtotal += batch * net.width(l0 + i + 1);
        }
    }
    if (!keep) return {2 * batch * maxw, 0};
    return {atotal, dtotal};
}

void inputs_ext(const double* x, std::size_t n, Buffer<double>& m, Buffer<exp_t>& e) {
    m.resize(n);
    e.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        const Ext v = from_double(x[i]);
        m[i] = v.m;
        e[i] = v.e;
    }
}

// One float64 layer: out = f(in W_l^T + b_l), der = f'(...) when not null; z is
// scratch. With check, first throws as net.check_layer_params(params, l) would.
void forward_layer_f64(const Architecture& net, const double* params, std::size_t l, std::size_t batch,
                       const double* in, double* out, double* der, double* z, bool check) {
    const std::size_t n_in = net.width(l), n_out = net.width(l + 1);
    const double* b = params + net.bias_offset(l);
    const ParamCheck pc = forward_layer_checks(check, batch, n_out, n_in);
    if (pc == ParamCheck::before) net.check_layer_params(params, l);
    gemm(false, true, batch, n_out, n_in, in, params + net.weight_offset(l), z);
    if (pc == ParamCheck::after) check_after_product(net, params, l, batch, z, b);
    const Activation act = net.activation(l);
    const bool residual = net.residual(l);
    const double scale = residual ? net.residual_scale(l) : 1.0;
    parallel_rows(batch, n_out, [&](std::size_t r0, std::size_t r1) {
        const std::size_t o0 = r0 * n_out;
        bias_activate_f64(act, r1 - r0, n_out, z + o0, b, out + o0, der ? der + o0 : nullptr);
        if (!residual) return;
        // a_{l+1} = a_l + s f(z); the chain's factor on the branch is s f'(z)
        for (std::size_t i = o0; i < r1 * n_out; ++i) {
            const double branch = scale * out[i];
            out[i] = in[i] + branch;
            if (der) der[i] *= scale;
        }
    });
}

// One layer of either precision (the workspace serves the extended one).
inline void forward_layer(const Architecture& net, const double* params, std::size_t l, std::size_t batch, ExtCMat in,
                          ExtMat out, ExtMat der, ExtMat z, Workspace& ws, bool check) {
    forward_layer_ext(net, params, l, batch, in, out, der, z, ws, check);
}
inline void forward_layer(const Architecture& net, const double* params, std::size_t l, std::size_t batch,
                          const double* in, double* out, double* der, double* z, Workspace&, bool check) {
    forward_layer_f64(net, params, l, batch, in, out, der, z, check);
}

// Layers of one row per run of simd::narrow_forward_run: at most the
// interrupt stride of a narrow chain.
constexpr std::size_t kRunLayers = 16;

// The layers of a one-row pass that take the narrow way one after another,
// run in one call (simd::narrow_forward_run) instead of one each: from layer
// l0 + i on, while they are identity, relu or tanh layers of one activation
// and one width (2 to kNarrowMaxWidth in and out: each layer's product runs
// in the fixed-order kernel and its parameters are tested after it, as
// forward_layer_checks has it), not residual, at most run_len. Where the
// run stops at a layer (a flagged or pending row, a value that is not
// finite), that layer is finished as dense_forward_ext finishes a narrow
// step: the same bits as layer by layer. Returns false where layer l0 + i
// does not take this way; else i is the last layer run and a its output.
// With one block of rows (nb == 1: rows 0 on, never alternating buffers).
// run_len is left as the next run's: kRunLayers after runs that finish,
// fewer after runs that stop early, so that a stretch of layers that each
// stop a run (such as activations below float64's range that a row's
// general way cannot finish) is not gathered kRunLayers at a time.
bool forward_run(const Architecture& net, const double* params, std::size_t l0, std::size_t n, std::size_t rows,
                 std::size_t nb, std::size_t& i, ExtCMat& a, ExtStore& st, bool keep, Workspace& ws, ExtMat z,
                 bool check, InterruptCheck& interrupt, std::size_t& run_len) {
    const std::size_t l = l0 + i, width = net.width(l);
    const Activation act = net.activation(l);
    simd::Epilogue kind;
    if (rows != 1 || nb != 1 || width < 2 || width > kNarrowMaxWidth || !epilogue_kind(act, kind)) return false;
    simd::NarrowLayer layers[kRunLayers];
    std::size_t count = 0;
    for (; count < run_len && i + count < n; ++count) {
        const std::size_t lc = l + count, ic = i + count;
        if (net.width(lc + 1) != width || net.activation(lc) != act || net.residual(lc)) break;
        const ExtMat out = st.a.at(st.aoff[ic + 1]);
        const ExtMat der = keep ? st.d.at(st.doff[ic]) : ExtMat{nullptr, nullptr};
        layers[count] = simd::NarrowLayer{params + net.weight_offset(lc), params + net.bias_offset(lc), out.m, out.e,
                                          der.m, der.e};
    }
    if (count == 0) return false;
    ws.xs.resize(width);
    ws.cs.resize(width);
    ws.ex.resize(1);
    ws.flags.resize(1);
    ws.marks.resize(1);
    unsigned status = 0;
    const std::size_t done = simd::narrow_forward_run(kind, keep, width, count, layers, a.m, a.e, kXwDrop, ws.xs.data(),
                                                      ws.ex.data(), ws.flags.data(), ws.cs.data(), ws.marks.data(),
                                                      &status);
    for (std::size_t k = 0; k < done; ++k) interrupt();  // one check per layer run, as layer by layer
    if (done > 0) a = ExtCMat{layers[done - 1].am, layers[done - 1].ae};
    i += done;
    if (done == count) {
        run_len = std::min(kRunLayers, 2 * run_len);
        --i;
        return true;
    }
    run_len = std::max<std::size_t>(1, done);
    interrupt();
    const simd::NarrowLayer& L = layers[done];  // its step made, to be finished
    dense_forward_ext(net, params, l0 + i, 1, a, ExtMat{L.am, L.ae}, ExtMat{L.dm, L.de}, z, ws, check, &status);
    a = ExtCMat{L.am, L.ae};
    return true;
}

// Layer by layer for float64.
template <class CMat, class Store, class Mat>
bool forward_run(const Architecture&, const double*, std::size_t, std::size_t, std::size_t, std::size_t, std::size_t&,
                 CMat&, Store&, bool, Workspace&, Mat, bool, InterruptCheck&, std::size_t&) {
    return false;
}

// Runs layers [l0, l1) from `in` (batch x n_{l0}). st then holds a_{l0}..a_{l1}
// (indexed l - l0) and, when keep, f'(z_l) for l in [l0, l1); without keep only
// two alternating activation buffers are used.
template <class P>
void forward_range(const Architecture& net, const double* params, std::size_t l0, std::size_t l1, std::size_t batch,
                   typename P::CMat in, bool keep, Store<P>& st, Workspace& ws, bool check) {
    using Mat = typename P::Mat;
    const std::size_t n = l1 - l0, maxw = net.max_width();
    const auto [atotal, dtotal] = plan_store(net, l0, l1, batch, keep, st.aoff, st.doff);
    reserve_check((atotal + dtotal + batch * maxw) * P::kValueBytes,
                  "this pass (stored activations; backward(checkpoint=...) stores fewer)");
    st.a.resize(atotal);
    st.d.resize(dtotal);
    P z;  // z of every row
    z.resize(batch * maxw);
    if (keep) copy_values(in, batch * net.width(l0), st.a.at(0));  // a_{l0}, for the weight gradients
    // Blocks of rows, each through every layer. Without keep, one block
    // alternates between st's two buffers, several between their own.
    const std::size_t nb = forward_blocks(net, params, l0, l1, batch, check);
    std::vector<Failure> failures(nb);
    for_each_block(batch, nb, [&](std::size_t r0, std::size_t r1) {
        const std::size_t rows = r1 - r0;
        Workspace local;
        Workspace& w = nb == 1 ? ws : local;
        P own;  // this block's two alternating buffers (no keep, several blocks)
        const bool alternate = !keep && nb > 1 && n > 1;
        if (alternate) own.resize(2 * rows * maxw);
        const Mat zb = z.at(r0 * maxw);
        auto a = shift(in, r0 * net.width(l0));
        InterruptCheck interrupt(interrupt_stride(net, rows));  // between layers (Ctrl-C)
        std::size_t run_len = kRunLayers;  // of the next run of narrow layers (forward_run)
        for (std::size_t i = 0; i < n; ++i) {
            try {
                if (forward_run(net, params, l0, n, rows, nb, i, a, st, keep, w, zb, check && nb == 1, interrupt,
                                run_len))
                    continue;
            } catch (...) {
                failures[r0 / kBlockRows] = Failure{l0 + i, std::current_exception()};
                return;
            }
            const std::size_t l = l0 + i, o = r0 * net.width(l + 1);
            Mat out = st.a.at(st.aoff[i + 1] + o);
            Mat der{};  // null: not stored
            if (keep) der = st.d.at(st.doff[i] + o);
            else if (alternate && i + 1 < n) out = own.at((i % 2) * rows * maxw);
            try {
                interrupt();
                forward_layer(net, params, l, rows, a, out, der, zb, w, check && nb == 1);
            } catch (...) {
                failures[r0 / kBlockRows] = Failure{l, std::current_exception()};
                return;
            }
            a = readonly(out);
        }
    });
    rethrow_first(failures, true);
}

// Where layer l's parameter gradients go (kNoGradient: nowhere).
std::size_t grad_offset(const Architecture& net, const std::size_t* offsets, std::size_t l) {
    return offsets ? offsets[l] : net.weight_offset(l);
}

// A dense layer's parameter gradients, float64: dW (n_out x n_in) =
// delta^T a and db (n_out) = the column sums of delta, from delta (batch x
// n_out, dL/dz) and the layer input a (batch x n_in); and, when stats is not
// null, the statistics of all four (on this thread).
void dense_backward_f64(double* dW, double* db, const double* delta, const double* a, std::size_t batch,
                        std::size_t n_in, std::size_t n_out, LayerStats* stats) {
    gemm(true, false, n_out, n_in, batch, delta, a, dW);
    column_sums(batch, n_out, delta, db);
    if (!stats) return;
    tensor_stats_f64(delta, batch * n_out, stats->delta);
    tensor_stats_f64(a, batch * n_in, stats->a);
    tensor_stats_f64(dW, n_out * n_in, stats->dW);
    tensor_stats_f64(db, n_out, stats->db);
}

// delta (rows x n) = dout * f'(z_l), elementwise: dL/dz_l of a dense layer,
// float64, from dout = dL/da_{l+1} (rows x n). delta holds f'(z_l) on entry
// (the forward pass stored it there) and is written over.
inline void dense_delta_f64(double* delta, const double* dout, std::size_t rows, std::size_t n) {
    if (rows * n < kElemGrain) {  // a narrow layer: the loop alone, where a call would cost as much
        for (std::size_t o = 0; o < rows * n; ++o) delta[o] *= dout[o];
        return;
    }
    parallel_rows(rows, n, [&](std::size_t q0, std::size_t q1) {
        for (std::size_t o = q0 * n; o < q1 * n; ++o) delta[o] *= dout[o];
    });
}

// A dense layer's step back through the chain, float64: dinp (rows x n_in) =
// dL/da_l = delta W (W: n_out x n_in, delta: rows x n_out). For a residual
// layer dinp holds the skip's dL/da_{l+1} on entry (n_in == n_out) and the
// branch's product is added to it; branch is the scratch that product needs.
inline void dense_chain_f64(double* dinp, const double* delta, const double* W, std::size_t rows, std::size_t n_in,
                            std::size_t n_out, bool residual, Buffer<double>& branch) {
    if (!residual) {
        gemm(false, false, rows, n_in, n_out, delta, W, dinp);
        return;
    }
    branch.resize(rows * n_in);
    gemm(false, false, rows, n_in, n_out, delta, W, branch.data());
    parallel_rows(rows, n_in, [&](std::size_t q0, std::size_t q1) {
        for (std::size_t o = q0 * n_in; o < q1 * n_in; ++o) dinp[o] += branch[o];
    });
}

// Back through the layers [l0, l1) of one stored segment. First the chain,
// layer by layer: delta_l = dL/da_{l+1} * f'(z_l) (written over f'(z_l)) and
// dL/da_l = delta_l W_l into g. Then the weight gradients dW_l = delta_l^T a_l
// and db_l, which depend on nothing but their own layer (chain_and_gradients
// runs them beside the chain where that pays).
void backward_segment_f64(const Architecture& net, const double* params, std::size_t l0, std::size_t l1,
                          std::size_t batch, F64Store& st, Buffer<double>& g, const GradF64& res) {
    const std::size_t maxw = net.max_width(), nb = row_blocks(net, batch);
    if (res.stats)  // f'(z_l), before the chain writes delta_l over it; one task per run of layers
        parallel_chunks(l1 - l0, 8, [&](std::size_t i0, std::size_t i1) {
            for (std::size_t i = i0; i < i1; ++i)
                derivative_stats_f64(st.d.m.data() + st.doff[i], batch * net.width(l0 + i + 1),
                                     res.stats[l0 + i].der);
        });
    const auto chain = [&](auto&& publish) {
        for_each_block(batch, nb, [&](std::size_t r0, std::size_t r1) {
            const std::size_t rows = r1 - r0;
            double* gb = g.data() + r0 * maxw;  // this block's rows of dL/da
            Buffer<double> branch;              // residual layers: dL/da_l through the branch
            InterruptCheck interrupt(interrupt_stride(net, rows));  // between layers (Ctrl-C)
            for (std::size_t l = l1; l-- > l0;) {
                interrupt();
                const std::size_t n_in = net.width(l), n_out = net.width(l + 1);
                double* delta = st.d.m.data() + st.doff[l - l0] + r0 * n_out;
                dense_delta_f64(delta, gb, rows, n_out);
                publish(l);
                if (l == 0 && !res.dx) continue;
                dense_chain_f64(gb, delta, params + net.weight_offset(l), rows, n_in, n_out, net.residual(l), branch);
            }
        });
        return l0;
    };
    Workspace unused;
    chain_and_gradients(l0, l1, layer_sizes(net, l0, l1, batch), nb == 1, unused, chain,
                        [&](std::size_t l, Workspace&) {
        const std::size_t go = grad_offset(net, res.grad_offset, l);
        if (go == kNoGradient) return;
        const std::size_t n_in = net.width(l), n_out = net.width(l + 1), i = l - l0;
        dense_backward_f64(res.grad + go, res.grad + go + n_out * n_in, st.d.m.data() + st.doff[i],
                           st.a.m.data() + st.aoff[i], batch, n_in, n_out, res.stats ? &res.stats[l] : nullptr);
    });
}

}  // namespace

std::size_t backward_workspace_bytes(const Architecture& net, std::size_t batch, bool extended) {
    const std::size_t maxw = net.max_width();
    const std::size_t values = batch * (2 * net.unit_count() - net.n_in() + 4 * maxw);
    return values * (extended ? sizeof(double) + sizeof(exp_t) : sizeof(double));
}

std::vector<std::size_t> gradient_offsets(const Architecture& net, const std::vector<std::size_t>& layers,
                                          std::size_t* total) {
    std::vector<std::size_t> off(net.depth(), kNoGradient);
    std::size_t next = 0;
    for (std::size_t i = 0; i < layers.size(); ++i) {
        const std::size_t l = layers[i];
        if (l >= net.depth())
            throw std::invalid_argument("layer " + std::to_string(l) + " out of range for " +
                                        std::to_string(net.depth()) + " layers");
        if (i > 0 && l <= layers[i - 1])
            throw std::invalid_argument("gradient layers must be strictly increasing");
        off[l] = next;
        next += net.width(l + 1) * (net.width(l) + 1);
    }
    if (total) *total = next;
    return off;
}

void forward_ext(const Architecture& net, const double* params, const double* x,
                 std::size_t batch, ExtOut out, Underflow* underflow) {
    check_inputs(x, batch, net.n_in());
    PassFlush pass;
    const PassScope scope(underflow ? &pass : nullptr);
    ExtStore st;
    Workspace ws;
    ExtPlanes xv;
    inputs_ext(x, batch * net.n_in(), xv.m, xv.e);
    forward_range(net, params, 0, net.depth(), batch, readonly(xv.at(0)), false, st, ws, true);
    const std::size_t o = st.aoff[net.depth()], n = batch * net.n_out();
    std::copy(st.a.m.data() + o, st.a.m.data() + o + n, out.m);
    std::copy(st.a.e.data() + o, st.a.e.data() + o + n, out.e);
    if (underflow) pass.report(*underflow);
}

void forward_f64(const Architecture& net, const double* params, const double* x,
                 std::size_t batch, double* out) {
    check_inputs(x, batch, net.n_in());
    F64Store st;
    Workspace unused;
    forward_range(net, params, 0, net.depth(), batch, x, false, st, unused, true);
    const std::size_t o = st.aoff[net.depth()];
    std::copy(st.a.m.data() + o, st.a.m.data() + o + batch * net.n_out(), out);
}

namespace {

// The rare path of the fused chain step (ext_gemm_xw_chain) at layer l when
// some dL/da_l left the range: that step wrote delta_{l-1} = dL/da_l f'(z_{l-1})
// over f' without storing dL/da_l. An overflow throws. For an underflow,
// dL/da_l is formed again into g (ext_gemm_xw: the same bits as the fused
// step's), and where it fell below the range (a zero, as settle_range makes it
// on the unfused path) delta_{l-1} becomes zero. Counts as the unfused path
// would: one per dL/da_l value flushed.
void settle_chain_underflow(std::size_t rows, std::size_t n_in, std::size_t n_out, ExtCMat delta, const double* W,
                            std::uint64_t bits, std::size_t l, double* gm, exp_t* ge, double* dm1, exp_t* de1) {
    if ((bits >> 62) & 1) throw_out_of_range(l, Quantity::input_gradients, false);
    PassFlush* pass = tl_pass;
    if (!pass) throw_out_of_range(l, Quantity::input_gradients, true);
    Workspace w;
    ext_gemm_xw(w, rows, n_in, n_out, delta, W, false, ExtMat{gm, ge});
    std::uint64_t flushed = 0;
    for (std::size_t i = 0; i < rows * n_in; ++i)
        if (gm[i] != 0.0 && ge[i] < -kMaxExp) {
            dm1[i] = 0.0;
            de1[i] = kZeroExp;
            ++flushed;
        }
    pass->record(l, Quantity::input_gradients, flushed);
}

// A dense layer's parameter gradients, extended: dW (n_out x n_in) =
// delta^T a and db (n_out) from delta (batch x n_out) and the layer input a
// (batch x n_in), range-checked as one block (db follows dW, as in the
// parameter layout; errors name layer l); and, when stats is not null, the
// statistics of all four (on this thread).
void dense_backward_ext(ExtMat dW, ExtMat db, ExtCMat delta, ExtCMat a, std::size_t batch, std::size_t n_in,
                        std::size_t n_out, std::size_t l, Workspace& ws, LayerStats* stats) {
    std::uint64_t bound = kNoBound;
    ext_gemm_tn(ws, batch, n_out, n_in, delta, a, dW, db, bound_wanted(batch, n_out, n_in) ? &bound : nullptr);
    check_gradient_range(n_out, n_in, bound, dW.m, dW.e, l);
    if (!stats) return;
    tensor_stats_ext(delta.m, delta.e, batch * n_out, stats->delta);
    tensor_stats_ext(a.m, a.e, batch * n_in, stats->a);
    tensor_stats_ext(dW.m, dW.e, n_out * n_in, stats->dW);
    tensor_stats_ext(db.m, db.e, n_out, stats->db);
}

// Whether layer l's chain factor is relu's or identity's f', 1 or 0, so that
// a select gives the product's bits (a residual layer's factor is s f'(z)).
inline bool unit_derivative(const Architecture& net, std::size_t l) {
    return (net.activation(l) == Activation::relu || net.activation(l) == Activation::identity) && !net.residual(l);
}

// delta (rows x n) = dout * f'(z_l), elementwise (never lost): dL/dz_l of a
// dense layer, extended, from dout = dL/da_{l+1} (rows x n). delta holds
// f'(z_l) on entry and is written over; unit: f' is 1 or 0 (unit_derivative).
inline void dense_delta_ext(ExtMat delta, ExtCMat dout, std::size_t rows, std::size_t n, bool unit) {
    parallel_rows(rows, n, [&](std::size_t q0, std::size_t q1) {
        const std::size_t q = q0 * n, k = (q1 - q0) * n;
        if (unit) simd::select_n(k, dout.m + q, dout.e + q, delta.m + q, delta.e + q);
        else simd::mul_n(k, dout.m + q, dout.e + q, delta.m + q, delta.e + q);
    });
}

// What the extended chain carries from one layer's step to the next.
struct ChainCarry {
    bool made = false;    // the step above made this layer's delta (fused with its product)
    bool scaled = false;  // and left its rows scaled in the Workspace, where the next product starts
    bool exact = false;   // the last product needs no exact recomputation (ext_gemm_xw_product's result)
};

// A dense layer's step back through the chain, extended, for `rows` rows:
// the product delta W_l (delta: rows x n_out, dL/dz_l; W_l: n_out x n_in)
// with its rows scaled to common exponents, then either
// - fused (where fuse allows it and the product is exact): delta_below
//   (rows x n_in) = (delta W_l) * f'(z_{l-1}), written over f'(z_{l-1}),
//   without writing dL/da_l (ext_gemm_xw_chain; unit_below: f'(z_{l-1}) is 1
//   or 0), its rows left scaled for the next step's product; or
// - dinp (rows x n_in) = dL/da_l = delta W_l, plus, for a residual layer, the
//   skip's dL/da_{l+1}, which dinp holds on entry (skip: scratch for it).
// Values past the exponent range: above it throws range_error naming layer
// l; below it flushes them and counts them for the pass (settle_range,
// settle_chain_underflow), or throws where the pass raises.
void dense_chain_ext(ExtMat dinp, ExtMat delta_below, ExtCMat delta, const double* W, std::size_t rows,
                     std::size_t n_in, std::size_t n_out, std::size_t l, bool fuse, bool unit_below, bool residual,
                     ChainCarry& carry, Workspace& w, Buffer<double>& skm, Buffer<exp_t>& ske) {
    std::uint64_t range = 0;
    if (residual) {
        skm.resize(rows * n_out);
        ske.resize(rows * n_out);
        std::copy(dinp.m, dinp.m + rows * n_out, skm.data());
        std::copy(dinp.e, dinp.e + rows * n_out, ske.data());
    }
    if (carry.made && carry.scaled && carry.exact && fuse) {  // the product and the chain step in one
        carry.exact = ext_gemm_xw_scaled_chain(w, rows, n_in, n_out, delta, W, unit_below, delta_below, dinp, &range);
    } else {
        if (carry.made && carry.scaled) ext_gemm_xw_scaled(w, rows, n_in, n_out, W, false);
        else carry.exact = ext_gemm_xw_product(w, rows, n_in, n_out, delta, W, false);
        carry.made = carry.scaled = carry.exact && fuse;
        if (carry.made)
            carry.exact =
                ext_gemm_xw_chain(w, rows, n_in, n_out, delta, W, false, unit_below, delta_below, dinp, &range);
        else
            ext_gemm_xw_finish(w, rows, n_in, n_out, delta, W, false, dinp, &range);
    }
    if (residual) {  // dL/da_l = the branch's delta_l W_l + the skip's dL/da_{l+1}
        simd::add_n(rows * n_in, dinp.m, dinp.e, skm.data(), ske.data());
        range |= simd::out_of_range(dinp.m, dinp.e, rows * n_in);
    }
    if (!(range >> 62)) return;
    if (carry.made) {
        settle_chain_underflow(rows, n_in, n_out, delta, W, range, l, dinp.m, dinp.e, delta_below.m, delta_below.e);
        carry.scaled = false;  // the next product starts from the settled delta
    } else {
        settle_range(dinp.m, dinp.e, rows * n_in, l, Quantity::input_gradients, range);
    }
}

// Layers of one row taken down the chain in runs (ext_gemm_xw_chain_run)
// rather than a dense_chain_ext call each: from layer `at` down, while each
// step is the fused one dense_chain_ext would take from a scaled product
// (layers above l0, neither they nor the layer below residual) and the
// layers are n wide in and out (2 to kNarrowMaxWidth), at most kRunLayers.
// Each layer is published and passes an interrupt check as the
// layer-by-layer loop has it, and the last step's values past the range are
// settled as dense_chain_ext settles them. Returns false where layer `at`
// does not take this way; else `at` is the last layer run (its delta_below
// made) and carry as dense_chain_ext leaves it.
template <class Publish>
bool chain_run(const Architecture& net, const double* params, std::size_t l0, ExtStore& st, ExtMat g,
               ChainCarry& carry, Workspace& w, Publish&& publish, InterruptCheck& interrupt, std::size_t& at) {
    const std::size_t l = at, n = net.width(l);
    if (n < 2 || n > kNarrowMaxWidth) return false;
    ChainStep steps[kRunLayers];
    std::size_t count = 0;
    for (; count < kRunLayers; ++count) {
        const std::size_t lc = l - count;
        if (lc <= l0 || net.width(lc + 1) != n || net.width(lc - 1) != n || net.residual(lc) ||
            net.residual(lc - 1))
            break;
        const std::size_t o = st.doff[lc - l0], o1 = st.doff[lc - 1 - l0];
        steps[count] = ChainStep{ExtCMat{st.d.m.data() + o, st.d.e.data() + o}, params + net.weight_offset(lc),
                                 ExtMat{st.d.m.data() + o1, st.d.e.data() + o1}, unit_derivative(net, lc - 1)};
    }
    if (count == 0) return false;
    for (std::size_t k = 1; k < count; ++k) interrupt();  // layer l's check was made
    std::uint64_t range = 0;
    bool exact = true;
    const std::size_t ran = ext_gemm_xw_chain_run(w, n, count, steps, g, &range, &exact);
    for (std::size_t k = 1; k < ran; ++k) publish(l - k);  // delta_{l-k} is made
    at = l - (ran - 1);
    carry.exact = exact;
    if (range >> 62) {
        const ChainStep& last = steps[ran - 1];
        settle_chain_underflow(1, n, n, last.X, last.W, range, at, g.m, g.e, last.F.m, last.F.e);
        carry.scaled = false;  // the next product starts from the settled delta
    }
    return true;
}

// Extended counterpart of backward_segment_f64: the chain, then the weight
// gradients. A twin rather than one template over the planes: the extended
// chain fuses each product with the next layer's delta, carries ChainCarry
// from layer to layer and records failures by block where the float64 chain
// is one product per layer; written once, most of its steps would branch on
// the precision. When the chain stops at layer l (an input gradient out of range),
// the gradients of layers l..l1-1 are still formed first, so that the error
// reported is the one a layer-by-layer sweep would have met first.
void backward_segment_ext(const Architecture& net, const double* params, std::size_t l0, std::size_t l1,
                          std::size_t batch, ExtStore& st, Buffer<double>& gm, Buffer<exp_t>& ge,
                          const GradExt& res, Workspace& ws) {
    const std::size_t maxw = net.max_width(), nb = row_blocks(net, batch);
    if (res.stats)  // f'(z_l), before the chain writes delta_l over it; one task per run of layers
        parallel_chunks(l1 - l0, 8, [&](std::size_t i0, std::size_t i1) {
            for (std::size_t i = i0; i < i1; ++i)
                derivative_stats_ext(st.d.m.data() + st.doff[i], st.d.e.data() + st.doff[i],
                                     batch * net.width(l0 + i + 1), res.stats[l0 + i].der);
        });
    std::vector<Failure> failures(nb);
    const LayerSizes sizes = layer_sizes(net, l0, l1, batch);
    // Tiny layers of one row form their weight gradients after the chain, on
    // this thread (chain_and_gradients), highest first: their products
    // (outer products, dense_backward_ext's at batch 1) go in runs of up to
    // kRunLayers layers of one shape per call, from the highest not yet
    // formed down to the lowest whose delta the chain made (chain_lo); each
    // layer's range check, which may throw or flush, stays where it was.
    const bool grad_runs = sizes == LayerSizes::tiny && batch == 1 && !res.stats;
    std::size_t chain_lo = l0;                 // as the chain returns it
    std::size_t run_top = 0, run_lo = l1;      // the layers of the last run: (run_top, ..., run_lo]
    std::uint64_t run_bounds[kRunLayers] = {};  // their bounds (dense_backward_ext's), from run_top down
    const auto gradient_run = [&](std::size_t l) {
        const std::size_t n_in = net.width(l), n_out = net.width(l + 1);
        simd::OuterGradient g[kRunLayers];
        std::size_t count = 0;
        for (; count < kRunLayers && count <= l && l - count >= chain_lo; ++count) {
            const std::size_t lc = l - count, go = grad_offset(net, res.grad_offset, lc);
            if (go == kNoGradient || net.width(lc) != n_in || net.width(lc + 1) != n_out) break;
            const std::size_t i = lc - l0, bo = go + n_out * n_in;
            g[count] = simd::OuterGradient{st.d.m.data() + st.doff[i], st.d.e.data() + st.doff[i],
                                           st.a.m.data() + st.aoff[i], st.a.e.data() + st.aoff[i],
                                           res.grad.m + go, res.grad.e + go, res.grad.m + bo, res.grad.e + bo};
        }
        const bool bound = bound_wanted(1, n_out, n_in);
        simd::outer_gradient_run(n_out, n_in, count, g, bound, run_bounds);
        if (!bound) std::fill(run_bounds, run_bounds + count, kNoBound);
        run_top = l;
        run_lo = l + 1 - count;
    };
    const auto chain = [&](auto&& publish) {
        for_each_block(batch, nb, [&](std::size_t r0, std::size_t r1) {
            const std::size_t rows = r1 - r0;
            Workspace local;
            Workspace& w = nb == 1 ? ws : local;
            const ExtMat g{gm.data() + r0 * maxw, ge.data() + r0 * maxw};  // this block's rows of dL/da
            Buffer<double> skm;  // residual layers: dL/da_{l+1}, kept for the skip
            Buffer<exp_t> ske;
            ChainCarry carry;
            InterruptCheck interrupt(interrupt_stride(net, rows));  // between layers (Ctrl-C)
            for (std::size_t l = l1; l-- > l0;) {
                interrupt();
                const std::size_t n_in = net.width(l), n_out = net.width(l + 1), o = st.doff[l - l0] + r0 * n_out;
                const ExtMat delta{st.d.m.data() + o, st.d.e.data() + o};  // f'(z_l), then delta_l
                if (!carry.made) dense_delta_ext(delta, ExtCMat{g.m, g.e}, rows, n_out, unit_derivative(net, l));
                publish(l);
                if (l == 0 && !res.dx.m) break;
                // Fused only within the segment (f'(z_{l-1}) is stored) and not
                // through residual layers, whose dL/da adds the skip.
                const bool fuse = l > l0 && !net.residual(l) && !net.residual(l - 1);
                if (rows == 1 && nb == 1 && fuse && carry.made && carry.scaled && carry.exact) {
                    std::size_t at = l;  // the layer being run, for a failure
                    try {
                        if (chain_run(net, params, l0, st, g, carry, w, publish, interrupt, at)) {
                            l = at;
                            continue;
                        }
                    } catch (...) {
                        failures[0] = Failure{at, std::current_exception()};
                        return;
                    }
                }
                ExtMat below{nullptr, nullptr};
                if (fuse) {
                    const std::size_t o1 = st.doff[l - 1 - l0] + r0 * n_in;
                    below = ExtMat{st.d.m.data() + o1, st.d.e.data() + o1};
                }
                try {
                    dense_chain_ext(g, below, ExtCMat{delta.m, delta.e}, params + net.weight_offset(l), rows, n_in,
                                    n_out, l, fuse, fuse && unit_derivative(net, l - 1), net.residual(l), carry, w,
                                    skm, ske);
                } catch (...) {
                    failures[r0 / kBlockRows] = Failure{l, std::current_exception()};
                    return;
                }
            }
        });
        std::size_t lo = l0;  // lowest layer whose deltas are known for every row
        for (const Failure& f : failures)
            if (f.error) lo = std::max(lo, f.layer);
        chain_lo = lo;
        return lo;
    };
    chain_and_gradients(l0, l1, sizes, nb == 1, ws, chain, [&](std::size_t l, Workspace& w) {
        const std::size_t go = grad_offset(net, res.grad_offset, l);
        if (go == kNoGradient) return;
        const std::size_t n_in = net.width(l), n_out = net.width(l + 1), i = l - l0, bo = go + n_out * n_in;
        if (grad_runs) {  // the products in runs, the range checks layer by layer
            if (l < run_lo) gradient_run(l);
            check_gradient_range(n_out, n_in, run_bounds[run_top - l], res.grad.m + go, res.grad.e + go, l);
            return;
        }
        dense_backward_ext(ExtMat{res.grad.m + go, res.grad.e + go}, ExtMat{res.grad.m + bo, res.grad.e + bo},
                           ExtCMat{st.d.m.data() + st.doff[i], st.d.e.data() + st.doff[i]},
                           ExtCMat{st.a.m.data() + st.aoff[i], st.a.e.data() + st.aoff[i]}, batch, n_in, n_out, l, w,
                           res.stats ? &res.stats[l] : nullptr);
    });
    rethrow_first(failures, false);
}

// Segment length for checkpointing: 0 = store everything; kAuto = ~sqrt(depth).
std::size_t segment_length(std::size_t depth, std::size_t checkpoint) {
    if (checkpoint == kCheckpointAuto) {
        std::size_t c = 1;
        while (c * c < depth) ++c;
        return c;
    }
    return checkpoint == 0 || checkpoint >= depth ? depth : checkpoint;
}

}  // namespace

// What a backward pass keeps from its forward pass (see Tape in network.hpp).
struct Tape::Impl {
    enum class State { empty, extended, f64 } state = State::empty;  // which forward pass it holds, if any
    std::size_t batch = 0, seg = 0, nseg = 0;  // rows; segment length and count
    std::vector<std::size_t> widths;           // of the network it ran (a store's layout depends on them)
    ExtStore est;                               // extended: the last segment's store
    F64Store fst;                               // float64: the same
    Workspace ws;                               // the extended layers' scratch, kept from pass to pass
    ExtPlanes ecp, eout;  // extended: a_{sC} of every segment s (when nseg > 1); the network output
    F64Planes fcp, fout;  // float64: the same
    std::atomic<bool> busy{false};              // a call is using the tape (TapeUse)
};

Tape::Tape() : impl_(std::make_unique<Impl>()) {}
Tape::~Tape() = default;
bool Tape::ready() const { return impl_->state != Impl::State::empty; }
std::size_t Tape::batch() const { return impl_->batch; }

namespace {

// One call at a time on a tape: it is the caller's to share, and two passes
// writing one store at once would corrupt it.
class TapeUse {
public:
    explicit TapeUse(Tape::Impl& t) : t_(t) {
        if (t_.busy.exchange(true)) throw std::invalid_argument("this tape is in use by another call");
    }
    ~TapeUse() { t_.busy.store(false); }
    TapeUse(const TapeUse&) = delete;
    TapeUse& operator=(const TapeUse&) = delete;

private:
    Tape::Impl& t_;  // the tape this call holds
};

// Empties the tape and records the pass it is about to hold: the batch, the
// segment length for `checkpoint` and the segment count. (The widths, which
// only a kept tape needs, are recorded by forward_tape_*.)
void begin_tape(const Architecture& net, std::size_t batch, std::size_t checkpoint, Tape::Impl& t) {
    t.state = Tape::Impl::State::empty;
    t.batch = batch;
    t.seg = segment_length(net.depth(), checkpoint);
    t.nseg = (net.depth() + t.seg - 1) / t.seg;
}

// The forward pass of a tape, either precision: x (batch x n_0), into st
// (the whole pass, or with checkpointing the last segment's), cp (each
// segment's input) and out (the network output).
template <class P>
void forward_tape_unchecked(const Architecture& net, const double* params, typename P::CMat x, std::size_t batch,
                            std::size_t checkpoint, Tape::Impl& t, Store<P>& st, P& cp, P& out) {
    begin_tape(net, batch, checkpoint, t);
    const std::size_t L = net.depth(), C = t.seg, nseg = t.nseg, maxw = net.max_width();
    out.resize(batch * maxw);  // the current segment's output (at last, the network's)
    if (nseg == 1) {
        forward_range(net, params, 0, L, batch, x, true, st, t.ws, true);
        copy_values(readonly(st.a.at(st.aoff[L])), batch * net.n_out(), out.at(0));
        return;
    }
    reserve_check(nseg * batch * maxw * P::kValueBytes, "the checkpoints of this pass");
    cp.resize(nseg * batch * maxw);
    typename P::CMat cur = x;
    for (std::size_t s = 0; s < nseg; ++s) {
        const std::size_t l0 = s * C, l1 = std::min(L, l0 + C);
        copy_values(cur, batch * net.width(l0), cp.at(s * batch * maxw));
        forward_range(net, params, l0, l1, batch, cur, false, st, t.ws, true);
        copy_values(readonly(st.a.at(st.aoff[l1 - l0])), batch * net.width(l1), out.at(0));  // a_{l1}
        cur = readonly(out.at(0));
    }
}

void forward_tape_ext_unchecked(const Architecture& net, const double* params, const double* x, std::size_t batch,
                                std::size_t checkpoint, Tape::Impl& t) {
    ExtPlanes xv;  // the inputs, extended
    inputs_ext(x, batch * net.n_in(), xv.m, xv.e);
    forward_tape_unchecked(net, params, readonly(xv.at(0)), batch, checkpoint, t, t.est, t.ecp, t.eout);
    t.state = Tape::Impl::State::extended;
}

void forward_tape_f64_unchecked(const Architecture& net, const double* params, const double* x, std::size_t batch,
                                std::size_t checkpoint, Tape::Impl& t) {
    forward_tape_unchecked(net, params, x, batch, checkpoint, t, t.fst, t.fcp, t.fout);
    t.state = Tape::Impl::State::f64;
}

// The tape's buffers go back to the engine's cache: a backward sweep consumes
// the store (deltas overwrite the derivatives).
void release(Tape::Impl& t) {
    t.state = Tape::Impl::State::empty;
    t.est = ExtStore{};
    t.fst = F64Store{};
    t.ws = Workspace{};
    t.ecp = ExtPlanes{};
    t.eout = ExtPlanes{};
    t.fcp = F64Planes{};
    t.fout = F64Planes{};
}

// The backward pass of a tape, extended; backward_tape_f64_unchecked is its
// float64 twin. The sweep is the same; kept apart because only the extended
// one counts the loss's flushes and, recomputing a checkpointed segment, must
// not count its activations' flushes a second time.
void backward_tape_ext_unchecked(const Architecture& net, const double* params, Tape::Impl& t, const Target& target,
                                 const GradExt& res) {
    const std::size_t L = net.depth(), C = t.seg, nseg = t.nseg, maxw = net.max_width(), batch = t.batch;
    ExtStore& st = t.est;
    Buffer<double> gm;  // dL/da of the layer reached
    Buffer<exp_t> ge;
    gm.resize(batch * maxw);
    ge.resize(batch * maxw);
    PassFlush* pass = tl_pass;
    UnderflowSink sink;  // the loss's flushes
    Ext loss;
    try {
        const UnderflowScope scope(pass ? &sink : underflow_sink());
        loss = loss_ext(target, batch, net.n_out(), t.eout.m.data(), t.eout.e.data(), gm.data(), ge.data());
    } catch (const underflow_error& e) {
        throw_out_of_range(kNoLayer, Quantity::loss, true, e.detail());
    }
    if (pass) pass->record(kNoLayer, Quantity::loss, sink.values.load() + sink.derivatives.load());
    check_range(&loss.m, &loss.e, 1, kNoLayer, Quantity::loss);
    *res.loss.m = loss.m;
    *res.loss.e = loss.e;
    const std::size_t nb = row_blocks(net, batch);
    to_block_layout(gm.data(), batch, net.n_out(), maxw, nb);
    to_block_layout(ge.data(), batch, net.n_out(), maxw, nb);
    if (res.out.m) {
        copy_values(readonly(t.eout.at(0)), batch * net.n_out(), ExtMat{res.out.m, res.out.e});
    }
    for (std::size_t s = nseg; s-- > 0;) {
        const std::size_t l0 = s * C, l1 = std::min(L, l0 + C);
        if (nseg > 1) {  // recompute the segment's activations and derivatives from its checkpoint
            if (pass) pass->count_activations = false;
            forward_range(net, params, l0, l1, batch, readonly(t.ecp.at(s * batch * maxw)), true, st, t.ws, false);
            if (pass) pass->count_activations = true;
        }
        backward_segment_ext(net, params, l0, l1, batch, st, gm, ge, res, t.ws);
    }
    if (res.dx.m) {
        from_block_layout(gm.data(), batch, net.n_in(), maxw, nb, res.dx.m);
        from_block_layout(ge.data(), batch, net.n_in(), maxw, nb, res.dx.e);
    }
}

void backward_tape_f64_unchecked(const Architecture& net, const double* params, Tape::Impl& t, const Target& target,
                                 const GradF64& res) {
    const std::size_t L = net.depth(), C = t.seg, nseg = t.nseg, maxw = net.max_width(), batch = t.batch;
    F64Store& st = t.fst;
    Buffer<double> g;  // dL/da of the layer reached
    g.resize(batch * maxw);
    *res.loss = loss_f64(target, batch, net.n_out(), t.fout.m.data(), g.data());
    const std::size_t nb = row_blocks(net, batch);
    to_block_layout(g.data(), batch, net.n_out(), maxw, nb);
    if (res.out) copy_values(t.fout.m.data(), batch * net.n_out(), res.out);
    for (std::size_t s = nseg; s-- > 0;) {
        const std::size_t l0 = s * C, l1 = std::min(L, l0 + C);
        if (nseg > 1) forward_range(net, params, l0, l1, batch, readonly(t.fcp.at(s * batch * maxw)), true, st, t.ws, false);
        backward_segment_f64(net, params, l0, l1, batch, st, g, res);
    }
    if (res.dx) from_block_layout(g.data(), batch, net.n_in(), maxw, nb, res.dx);
}

// The tape must hold a forward pass of this precision and network.
void check_tape(const Architecture& net, const Tape::Impl& t, Tape::Impl::State want) {
    if (t.state == Tape::Impl::State::empty)
        throw std::invalid_argument("the tape holds no forward pass (none was run, or a backward pass used it)");
    if (t.state != want)
        throw std::invalid_argument(std::string("the tape holds a ") +
                                    (t.state == Tape::Impl::State::extended ? "extended" : "float64") +
                                    " forward pass; this backward pass is " +
                                    (want == Tape::Impl::State::extended ? "extended" : "float64"));
    if (t.widths != net.widths()) throw std::invalid_argument("the tape holds a forward pass of another network");
}

}  // namespace

void forward_tape_ext(const Architecture& net, const double* params, const double* x, std::size_t batch,
                      std::size_t checkpoint, Tape& tape, ExtOut out, Underflow* underflow) {
    Tape::Impl& t = *tape.impl_;
    const TapeUse use(t);
    check_inputs(x, batch, net.n_in());
    t.state = Tape::Impl::State::empty;
    t.widths = net.widths();
    PassFlush pass;
    {
        const PassScope scope(underflow ? &pass : nullptr);
        forward_tape_ext_unchecked(net, params, x, batch, checkpoint, t);
    }
    if (underflow) pass.report(*underflow);
    if (out.m) {
        copy_values(readonly(t.eout.at(0)), batch * net.n_out(), ExtMat{out.m, out.e});
    }
}

void forward_tape_f64(const Architecture& net, const double* params, const double* x, std::size_t batch,
                      std::size_t checkpoint, Tape& tape, double* out) {
    Tape::Impl& t = *tape.impl_;
    const TapeUse use(t);
    check_inputs(x, batch, net.n_in());
    t.state = Tape::Impl::State::empty;
    t.widths = net.widths();
    forward_tape_f64_unchecked(net, params, x, batch, checkpoint, t);
    if (out) copy_values(t.fout.m.data(), batch * net.n_out(), out);
}

void backward_tape_ext(const Architecture& net, const double* params, Tape& tape, const Target& target,
                       const GradExt& res) {
    Tape::Impl& t = *tape.impl_;
    const TapeUse use(t);
    check_tape(net, t, Tape::Impl::State::extended);
    check_target(target, t.batch, net.n_out());
    t.state = Tape::Impl::State::empty;  // consumed, whatever happens below
    try {
        PassFlush pass;
        const PassScope scope(res.underflow ? &pass : nullptr);
        backward_tape_ext_unchecked(net, params, t, target, res);
        if (res.underflow) pass.report(*res.underflow);
    } catch (...) {
        release(t);
        throw;
    }
    release(t);
}

void backward_tape_f64(const Architecture& net, const double* params, Tape& tape, const Target& target,
                       const GradF64& res) {
    Tape::Impl& t = *tape.impl_;
    const TapeUse use(t);
    check_tape(net, t, Tape::Impl::State::f64);
    check_target(target, t.batch, net.n_out());
    t.state = Tape::Impl::State::empty;
    try {
        backward_tape_f64_unchecked(net, params, t, target, res);
    } catch (...) {
        release(t);
        throw;
    }
    release(t);
}

StorePlan store_plan(const Architecture& net, std::size_t checkpoint) {
    StorePlan plan;
    const std::size_t L = net.depth();
    plan.segment = segment_length(L, checkpoint);
    plan.segments = (L + plan.segment - 1) / plan.segment;
    for (std::size_t l0 = 0; l0 < L; l0 += plan.segment) {  // as plan_store lays out a segment
        const std::size_t l1 = std::min(L, l0 + plan.segment);
        std::size_t units = 0;
        for (std::size_t l = l0; l <= l1; ++l) units += net.width(l) * (l > l0 ? 2 : 1);
        plan.units = std::max(plan.units, units);
    }
    return plan;
}

void backward_ext(const Architecture& net, const double* params, const double* x,
                  std::size_t batch, const Target& target, const GradExt& res, std::size_t checkpoint) {
    check_inputs(x, batch, net.n_in());
    check_target(target, batch, net.n_out());
    Tape::Impl t;
    PassFlush pass;
    const PassScope scope(res.underflow ? &pass : nullptr);
    forward_tape_ext_unchecked(net, params, x, batch, checkpoint, t);
    backward_tape_ext_unchecked(net, params, t, target, res);
    if (res.underflow) pass.report(*res.underflow);
}

void backward_f64(const Architecture& net, const double* params, const double* x,
                  std::size_t batch, const Target& target, const GradF64& res, std::size_t checkpoint) {
    check_inputs(x, batch, net.n_in());
    check_target(target, batch, net.n_out());
    Tape::Impl t;
    forward_tape_f64_unchecked(net, params, x, batch, checkpoint, t);
    backward_tape_f64_unchecked(net, params, t, target, res);
}

}  // namespace loggrad
