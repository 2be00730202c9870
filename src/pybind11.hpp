// Included first by every binding file.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

namespace py = pybind11;

// Float64 input arrays: C-contiguous, other dtypes converted (float32, int).
using array_d = py::array_t<double, py::array::c_style | py::array::forcecast>;
using array_i64 = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

void register_network(py::module_& m);
void register_config(py::module_& m);
void register_spectrum(py::module_& m);
