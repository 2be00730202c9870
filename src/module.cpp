// loggrad._core: bindings of the C++ engine. Declarations only; the engine does the work.
#include "pybind11.hpp"

void register_train(py::module_& m);

PYBIND11_MODULE(_core, m) {
    m.doc() = "loggrad engine: dense-network passes in float64 with an unbounded exponent range";
    register_network(m);
    register_config(m);
    register_spectrum(m);
    register_train(m);
}
