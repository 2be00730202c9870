// Included first by every binding file.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <vector>

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

void register_network(py::module_& m);
void register_config(py::module_& m);
void register_spectrum(py::module_& m);
