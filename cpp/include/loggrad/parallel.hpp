// loggrad/parallel.hpp — the engine's own thread pool.
//
// Work is cut into tasks whose boundaries depend only on the problem's sizes,
// never on the number of threads, and every task writes its own outputs. So
// results are bitwise identical for any thread count (BLAS runs
// single-threaded inside each task; see gemm.cpp).
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>

namespace loggrad {

// Threads the engine uses (default: hardware concurrency, or the
// LOGGRAD_NUM_THREADS environment variable when set).
int num_threads();
void set_num_threads(int n);

// Distinct threads that ran at least one task of a parallel_for since the
// last reset_threads_used(): pool workers each count once, and every thread
// outside the pool (the callers) counts as one. Lets a test check that a
// pass really was shared among threads without timing it. Counting costs one
// relaxed store per thread per parallel_for and changes no result.
int threads_used();
void reset_threads_used();

// Runs fn(0) .. fn(ntasks - 1), spread over the pool; returns when all are
// done. An exception thrown by a task is rethrown here: that of the
// lowest-numbered task that threw, whatever the timing.
// Concurrent callers (several Python threads) are safe: while the pool is
// busy, a call runs its tasks on the calling thread.
void parallel_for(std::size_t ntasks, const std::function<void(std::size_t)>& fn);

// Splits [0, n) into chunks of `grain` (the last may be shorter) and runs
// fn(begin, end) for each in parallel; serial when n < 2 * grain.
void parallel_chunks(std::size_t n, std::size_t grain,
                     const std::function<void(std::size_t, std::size_t)>& fn);

// Elements per task of the elementwise loops (scaling, normalisation, bias,
// activations): below twice this no task is shared and no pool is involved.
constexpr std::size_t kElemGrain = 4096;

// Runs fn(r0, r1) over blocks of whole rows of a (rows x row_len) array, each
// block about kElemGrain elements; the blocks depend on the sizes only. Small
// arrays run as one block on the calling thread (no dispatch, no std::function).
template <class F>
void parallel_rows(std::size_t rows, std::size_t row_len, F&& fn) {
    const std::size_t per = std::max<std::size_t>(1, kElemGrain / std::max<std::size_t>(1, row_len));
    if (rows < 2 * per) {
        if (rows) fn(std::size_t(0), rows);
        return;
    }
    parallel_chunks(rows, per, fn);
}

}  // namespace loggrad
