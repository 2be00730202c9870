// Included first by every binding file.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <string>
#include <vector>

#include "loggrad/interrupt.hpp"
#include "loggrad/memory.hpp"

namespace py = pybind11;

// Float64 input arrays: C-contiguous, other dtypes converted (float32, int).
using array_d = py::array_t<double, py::array::c_style | py::array::forcecast>;
using array_i64 = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

// A result array (uninitialised) in the engine's memory: large ones sit on
// huge pages, so a pass does not spend its time faulting in fresh 4 KiB pages.
template <class T>
py::array_t<T> result_array(const std::vector<py::ssize_t>& shape) {
    std::size_t n = 1;
    for (py::ssize_t d : shape) n *= static_cast<std::size_t>(d);
    void* p = loggrad::allocate(n * sizeof(T));
    py::capsule owner(p, [](void* q) { loggrad::deallocate(q); });
    return py::array_t<T>(shape, static_cast<T*>(p), owner);
}

// Runs an engine call with the GIL released, stoppable by Ctrl-C: on the
// main thread the engine asks, between layers (every 20 ms at most), whether a
// signal is pending; Python's handler then runs (for SIGINT it sets
// KeyboardInterrupt) and the engine stops with loggrad::interrupted, which the
// module translates back into that Python exception. Other threads only
// release the GIL: Python runs signal handlers on the main thread alone.
// Safe to release: the engine touches only buffers that the caller keeps alive.
bool python_signal_pending(void*);
bool on_main_thread();
template <class F>
void engine_call(F&& f) {
    const bool main = on_main_thread();
    py::gil_scoped_release release;
    if (main) {
        loggrad::InterruptScope scope(&python_signal_pending, nullptr);
        f();
    } else {
        f();
    }
}

// Checks every binding that runs a pass makes (register_network.cpp): params
// and x against the architecture (returns the batch size; sizes whose byte
// counts would wrap refused as MemoryError), the precision's name, and the
// target of a loss (y or labels) or of an upstream gradient.
namespace loggrad {
class Architecture;
struct Target;
}  // namespace loggrad
std::size_t check_call(const loggrad::Architecture& net, const array_d& params, const array_d& x);
bool is_extended(const std::string& precision);
loggrad::Target make_target(const loggrad::Architecture& net, std::size_t batch, const std::string& loss,
                            const std::optional<array_d>& y, const std::optional<array_i64>& labels,
                            const std::optional<array_d>& grad_output_m,
                            const std::optional<array_i64>& grad_output_e);

void register_network(py::module_& m);
void register_config(py::module_& m);
void register_spectrum(py::module_& m);
void register_stats(py::module_& m);
