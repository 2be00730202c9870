// Cooperative stop of a pass (see loggrad/interrupt.hpp).
#include "loggrad/interrupt.hpp"

#include <atomic>
#include <chrono>

namespace loggrad {

namespace {

// Set once a poll answered true; cleared when the outermost scope that could
// have set it ends. Shared by every thread, so the pool's workers stop too.
std::atomic<bool> g_stop{false};

// The calling thread's poll function (null on workers) and its bookkeeping.
thread_local PollFn tl_poll = nullptr;
thread_local void* tl_ctx = nullptr;
thread_local unsigned tl_calls = 0;
thread_local std::chrono::steady_clock::time_point tl_last{};

// The clock is read once per kCallsPerClock checks, and the poll function is
// asked at most once per kPollInterval: a check costs a counter increment on
// the narrowest layers, and a poll that takes the GIL stays rare.
constexpr unsigned kCallsPerClock = 64;
constexpr std::chrono::milliseconds kPollInterval{20};

}  // namespace

InterruptScope::InterruptScope(PollFn poll, void* ctx) : saved_poll_(tl_poll), saved_ctx_(tl_ctx) {
    if (!saved_poll_) g_stop.store(false, std::memory_order_relaxed);
    tl_poll = poll;
    tl_ctx = ctx;
    tl_calls = 0;
    tl_last = std::chrono::steady_clock::now();
}

InterruptScope::~InterruptScope() {
    tl_poll = saved_poll_;
    tl_ctx = saved_ctx_;
    if (!saved_poll_) g_stop.store(false, std::memory_order_relaxed);
}

namespace detail {
void poll_interrupt() {
    const auto now = std::chrono::steady_clock::now();
    if (now - tl_last < kPollInterval) return;
    tl_last = now;
    if (tl_poll(tl_ctx)) {
        g_stop.store(true, std::memory_order_relaxed);
        throw interrupted();
    }
}
}  // namespace detail

void check_interrupt() {
    if (g_stop.load(std::memory_order_relaxed)) throw interrupted();
    if (tl_poll && ++tl_calls % kCallsPerClock == 0) detail::poll_interrupt();
}

}  // namespace loggrad
