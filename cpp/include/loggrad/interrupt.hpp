// loggrad/interrupt.hpp — stopping a long pass from outside (Ctrl-C).
//
// The engine polls between layers (check_interrupt). A caller that can be
// interrupted installs a poll function on its own thread for the length of
// one call (InterruptScope); that thread asks it every kPollInterval or so,
// and once it answers true every thread of the pass stops at its next check
// with loggrad::interrupted. Threads without a poll function (the pool's
// workers, other callers) only read the shared stop flag, one relaxed atomic
// load. A stopped call leaves its inputs untouched: the engine writes only to
// its own buffers and to result arrays.
#pragma once

#include <atomic>
#include <stdexcept>

namespace loggrad {

class interrupted : public std::runtime_error {
public:
    interrupted() : std::runtime_error("interrupted") {}
};

// poll(ctx) returns true when the call should stop. It runs on the thread
// that created the scope, never concurrently with itself.
using PollFn = bool (*)(void* ctx);

class InterruptScope {
public:
    InterruptScope(PollFn poll, void* ctx);
    ~InterruptScope();
    InterruptScope(const InterruptScope&) = delete;
    InterruptScope& operator=(const InterruptScope&) = delete;

private:
    PollFn saved_poll_;
    void* saved_ctx_;
};

namespace detail {
extern std::atomic<bool> g_stop;  // a poll answered true: every thread of the pass stops
bool has_poll();                  // this thread has a poll function (a thread-local read)
void poll_interrupt();            // the slow path: asks the poll function, at most every 20 ms
}  // namespace detail

// The check of one loop over layers: it reads the thread's poll function once,
// then costs a relaxed atomic load per check, and a counter on the thread that
// polls (the clock is read every 64 checks). Throws interrupted when a stop was
// requested. stride: calls per check, for loops whose steps are so short (a
// narrow layer: well under a microsecond) that a check at each would cost a
// noticeable part of the step; the first call checks.
class InterruptCheck {
public:
    explicit InterruptCheck(unsigned stride = 1) : poll_(detail::has_poll()), stride_(stride) {}
    void operator()() {
        if (left_-- != 0) return;
        left_ = stride_ - 1;
        if (detail::g_stop.load(std::memory_order_relaxed)) throw interrupted();
        if (poll_ && ++calls_ % 64 == 0) detail::poll_interrupt();
    }

private:
    bool poll_;            // this thread has a poll function (the caller's thread)
    unsigned stride_;      // calls per check
    unsigned left_ = 0;    // calls before the next check
    unsigned calls_ = 0;   // checks so far, for the poll's rate
};

// A one-off check (outside a loop: InterruptCheck).
inline void check_interrupt() { InterruptCheck()(); }

}  // namespace loggrad
