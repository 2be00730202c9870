// loggrad/parallel.hpp — the engine's own thread pool.
//
// Work is cut into tasks whose boundaries depend only on the problem's sizes,
// never on the number of threads, and every task writes its own outputs. So
// results are bitwise identical for any thread count (BLAS runs
// single-threaded inside each task; see gemm.cpp).
#pragma once

#include <cstddef>
#include <functional>

namespace loggrad {

// Threads the engine uses (default: hardware concurrency, or the
// LOGGRAD_NUM_THREADS environment variable when set).
int num_threads();
void set_num_threads(int n);

// Runs fn(0) .. fn(ntasks - 1), spread over the pool; returns when all are
// done. Exceptions thrown by a task are rethrown here (the first one).
// Concurrent callers (several Python threads) are safe: while the pool is
// busy, a call runs its tasks on the calling thread.
void parallel_for(std::size_t ntasks, const std::function<void(std::size_t)>& fn);

// Splits [0, n) into chunks of `grain` (the last may be shorter) and runs
// fn(begin, end) for each in parallel; serial when n < 2 * grain.
void parallel_chunks(std::size_t n, std::size_t grain,
                     const std::function<void(std::size_t, std::size_t)>& fn);

}  // namespace loggrad
