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
void poll_interrupt();  // the slow path of check_interrupt
}  // namespace detail

// Throws interrupted when a stop was requested (or, on a thread with a poll
// function, when it asks for one now).
void check_interrupt();

}  // namespace loggrad
