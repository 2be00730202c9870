// How the passes of network.cpp share their work among the engine's threads
// (an internal header of the engine, not installed).
//
// Two schedules, both fixed by the sizes alone so that results never depend
// on the thread count:
// - row blocks: through the forward pass and the backward chain the rows of
//   a batch are independent, so narrow layers run blocks of rows on separate
//   threads, each block through every layer, with no synchronisation per
//   layer (a narrow layer is too little work to share);
// - layer tasks: a layer's parameter gradients depend on nothing but its own
//   delta and input, so they run beside the chain (chain_and_gradients).
// Every task handed to the pool works for the caller's pass (tl_pass), so a
// value flushed below the exponent range is counted wherever it is met.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <thread>
#include <utility>
#include <vector>

#include "loggrad/gemm.hpp"
#include "loggrad/interrupt.hpp"
#include "loggrad/network.hpp"
#include "loggrad/parallel.hpp"

namespace loggrad {

struct PassFlush;  // network.cpp: the values one pass flushed below the exponent range

// The pass this thread works for (null: an underflow throws). Set by the
// entry points on the calling thread, and by every task the schedules below
// hand to the pool.
extern thread_local PassFlush* tl_pass;

// Sets tl_pass for one scope and restores the previous value after it.
class PassScope {
public:
    explicit PassScope(PassFlush* p) : saved_(tl_pass) { tl_pass = p; }
    ~PassScope() { tl_pass = saved_; }
    PassScope(const PassScope&) = delete;
    PassScope& operator=(const PassScope&) = delete;

private:
    PassFlush* saved_;  // tl_pass before the scope, restored after it
};

// parallel_rows for work that may meet a range check: the pool's threads
// work for the caller's pass. Small arrays run on the calling thread, as
// parallel_rows runs them, without touching the thread-local state.
template <class F>
void pass_rows(std::size_t rows, std::size_t row_len, F&& fn) {
    const std::size_t per = std::max<std::size_t>(1, kElemGrain / std::max<std::size_t>(1, row_len));
    if (rows < 2 * per) {
        if (rows) fn(std::size_t(0), rows);
        return;
    }
    PassFlush* pass = tl_pass;
    parallel_chunks(rows, per, [&](std::size_t r0, std::size_t r1) {
        const PassScope scope(pass);
        fn(r0, r1);
    });
}

// Layer steps per Ctrl-C check (InterruptCheck's stride) in a loop over the
// layers of net for `rows` rows: 16 where every layer's product has fewer
// than kNarrowWork multiply-adds (a step then takes a microsecond or less, and
// 16 of them still stop the pass at once), else 1.
constexpr std::size_t kNarrowWork = 4096;

inline unsigned interrupt_stride(const Architecture& net, std::size_t rows) {
    return rows * net.max_width() * net.max_width() < kNarrowWork ? 16u : 1u;
}

// -- row blocks ---------------------------------------------------------------

// Rows per block, and the widest network that runs in blocks: wider layers
// have enough work to share each product among the threads instead.
constexpr std::size_t kBlockRows = 32;
constexpr std::size_t kBlockMaxWidth = 128;

// How many blocks of rows a pass of `batch` rows through net runs in (1: the
// whole batch as one).
std::size_t row_blocks(const Architecture& net, std::size_t batch);

// Rows [r0, r1) of block b of nb.
inline std::pair<std::size_t, std::size_t> block_rows(std::size_t b, std::size_t nb, std::size_t batch) {
    if (nb == 1) return {0, batch};
    return {b * kBlockRows, std::min(batch, (b + 1) * kBlockRows)};
}

// A block's failure: the layer it stopped at and what was thrown there.
struct Failure {
    std::size_t layer = 0;       // the layer being run when it threw
    std::exception_ptr error;    // null: the block did not fail
};

// Rethrows the failure a layer-by-layer pass over the whole batch would have
// met first: the lowest layer going forward, the highest going back; among
// blocks that failed at the same layer, the first (its rows come first).
void rethrow_first(const std::vector<Failure>& failures, bool forward);

// dL/da during the backward chain is kept in block layout: the rows of the
// block starting at row r0 begin at r0 * maxw (one block: plain batch-major).
// Rearranges batch x n values in place from batch-major into that layout.
template <class T>
void to_block_layout(T* g, std::size_t batch, std::size_t n, std::size_t maxw, std::size_t nb) {
    for (std::size_t b = nb; b-- > 1;) {  // from the last block: each target lies at or after its source
        const auto [r0, r1] = block_rows(b, nb, batch);
        std::copy_backward(g + r0 * n, g + r1 * n, g + r0 * maxw + (r1 - r0) * n);
    }
}

// Copies batch x n values from block layout into batch-major `out`.
template <class T>
void from_block_layout(const T* g, std::size_t batch, std::size_t n, std::size_t maxw, std::size_t nb, T* out) {
    for (std::size_t b = 0; b < nb; ++b) {
        const auto [r0, r1] = block_rows(b, nb, batch);
        std::copy(g + r0 * maxw, g + r0 * maxw + (r1 - r0) * n, out + r0 * n);
    }
}

// Runs fn(r0, r1) for every block of rows, the blocks on the pool's threads.
template <class F>
void for_each_block(std::size_t batch, std::size_t nb, F&& fn) {
    if (nb == 1) {  // on the calling thread: the layers inside may still share the pool
        fn(std::size_t(0), batch);
        return;
    }
    PassFlush* pass = tl_pass;
    parallel_for(nb, [&](std::size_t b) {
        const PassScope scope(pass);
        const auto [r0, r1] = block_rows(b, nb, batch);
        fn(r0, r1);
    });
}

// The row blocks of a forward pass over layers [l0, l1). With one block (the
// whole batch) the pass checks each layer's parameters as it reaches them,
// while they are in cache; with several, all are checked here, first.
std::size_t forward_blocks(const Architecture& net, const double* params, std::size_t l0, std::size_t l1,
                           std::size_t batch, bool check);

// -- layer tasks: the parameter gradients beside the chain ---------------------

// Layers whose weight-gradient product has fewer multiply-adds than this run
// one per task in the gradient phase (see chain_and_gradients); larger ones
// in turn, each product split over the threads. Tasks beside the chain leave
// no thread waiting at a product's end; from about this size on a split
// product keeps the threads as busy, and a task's own Workspace would hold a
// whole gradient product.
constexpr std::size_t kLayerTaskWork = std::size_t(1) << 26;

// Below this many multiply-adds in every layer's weight-gradient product
// (width 4 at batch 1: 16) the gradients are formed after the chain on the
// calling thread: handing a layer to another thread costs more than forming
// it.
constexpr std::size_t kLayerShareWork = 64;

enum class LayerSizes { tiny, small, large };

// tiny: every layer in [l0, l1) below kLayerShareWork; small: every layer
// below kLayerTaskWork (one task each); large otherwise.
LayerSizes layer_sizes(const Architecture& net, std::size_t l0, std::size_t l1, std::size_t batch);

// The backward pass of a segment [l0, l1): run_chain(publish) makes the deltas
// from the top layer down, calls publish(l) once delta_l is made, and returns
// the lowest layer whose delta is made for every row; grad(l, ws) then forms
// layer l's weight gradient, for exactly those layers. The gradients, which
// are independent of each other once their deltas are known, run highest
// first: large layers in turn (each product split over the threads); small
// ones (see kLayerTaskWork) one per task, each task with its own Workspace,
// and with one block of rows (at batch 1 the chain is one thread's serial
// work) while the chain goes on, each as soon as its delta is made; tiny ones
// (kLayerShareWork) after the chain, on the calling thread. A layer's
// result does not depend on the thread that forms it. Rethrows the highest
// layer's gradient error: the one a layer-by-layer sweep would meet first.
template <class Chain, class Grad>
void chain_and_gradients(std::size_t l0, std::size_t l1, LayerSizes sizes, bool one_block, Workspace& ws,
                         Chain&& run_chain, Grad&& grad) {
    const auto threads = sizes == LayerSizes::tiny ? std::size_t(1) : static_cast<std::size_t>(num_threads());
    const bool small = sizes != LayerSizes::large;
    const std::size_t n = l1 - l0;
    const bool overlap = small && one_block && std::min(n, threads) >= 2;
    std::atomic<std::size_t> made{0};  // deltas made, counted from the top layer
    std::atomic<bool> chain_over{false};
    if (!overlap) {
        const std::size_t lo = run_chain([](std::size_t) {});
        if (!small || std::min(l1 - lo, threads) < 2) {
            InterruptCheck interrupt(sizes == LayerSizes::tiny ? 16 : 1);  // between layers (Ctrl-C)
            for (std::size_t l = l1; l-- > lo;) {
                interrupt();
                grad(l, ws);
            }
            return;
        }
        made = l1 - lo;
        chain_over = true;
    }
    std::atomic<std::size_t> next{0};
    std::vector<std::exception_ptr> errors(n);  // by position in the sweep
    std::exception_ptr chain_error;
    const std::size_t todo = overlap ? n : made.load();  // layers whose gradients the tasks form
    PassFlush* pass = tl_pass;
    parallel_for(std::min(todo, threads), [&](std::size_t t) {
        const PassScope scope(pass);
        if (overlap && t == 0) {  // the chain (whichever thread takes task 0), then gradients like the rest
            try {
                run_chain([&](std::size_t l) { made.store(l1 - l, std::memory_order_release); });
            } catch (...) {
                chain_error = std::current_exception();
            }
            chain_over.store(true, std::memory_order_release);
        }
        Workspace local;
        InterruptCheck interrupt;  // between layers (Ctrl-C)
        for (std::size_t i; (i = next.fetch_add(1)) < n;) {
            while (made.load(std::memory_order_acquire) <= i) {  // delta not made yet
                if (chain_over.load(std::memory_order_acquire) && made.load(std::memory_order_acquire) <= i)
                    return;  // and never will be: the chain stopped above
                std::this_thread::yield();
            }
            try {
                interrupt();
                grad(l1 - 1 - i, t == 0 ? ws : local);
            } catch (...) {
                errors[i] = std::current_exception();
            }
        }
    });
    if (chain_error) std::rethrow_exception(chain_error);
    for (const std::exception_ptr& e : errors)
        if (e) std::rethrow_exception(e);
}

}  // namespace loggrad
