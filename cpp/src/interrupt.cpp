// Cooperative stop of a pass (see loggrad/interrupt.hpp).
#include "loggrad/interrupt.hpp"

#include <atomic>
#include <chrono>

namespace loggrad {

namespace detail {
// Set once a poll answered true; cleared when the outermost scope that could
// have set it ends. Shared by every thread, so the pool's workers stop too.
std::atomic<bool> g_stop{false};
}  // namespace detail

using detail::g_stop;

namespace {

// The calling thread's poll function (null on workers) and its bookkeeping.
thread_local PollFn tl_poll = nullptr;
thread_local void* tl_ctx = nullptr;
thread_local std::chrono::steady_clock::time_point tl_last{};

// The poll function is asked at most once per kPollInterval (InterruptCheck
// reads the clock every 64 checks): a poll that takes the GIL stays rare.
constexpr std::chrono::milliseconds kPollInterval{20};

}  // namespace

InterruptScope::InterruptScope(PollFn poll, void* ctx) : saved_poll_(tl_poll), saved_ctx_(tl_ctx) {
    if (!saved_poll_) g_stop.store(false, std::memory_order_relaxed);
    tl_poll = poll;
    tl_ctx = ctx;
    tl_last = std::chrono::steady_clock::now();
}

InterruptScope::~InterruptScope() {
    tl_poll = saved_poll_;
    tl_ctx = saved_ctx_;
    if (!saved_poll_) g_stop.store(false, std::memory_order_relaxed);
}

namespace detail {
bool has_poll() { return tl_poll != nullptr; }

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


}  // namespace loggrad
