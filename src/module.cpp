// loggrad._core: bindings of the C++ engine. Declarations only; the engine does the work.
#include "pybind11.hpp"

#include <pythread.h>

namespace {
unsigned long g_main_thread = 0;
}  // namespace

bool on_main_thread() { return PyThread_get_thread_ident() == g_main_thread; }

bool python_signal_pending(void*) {
    // Called from an engine call on the main thread, the GIL released: take it
    // for the check. A handler that raises leaves its exception set for the
    // translator below.
    const PyGILState_STATE gil = PyGILState_Ensure();
    const bool stop = PyErr_CheckSignals() != 0;
    PyGILState_Release(gil);
    return stop;
}

void register_train(py::module_& m);

PYBIND11_MODULE(_core, m) {
    m.doc() = "loggrad engine: dense-network passes in float64 with an unbounded exponent range";
    g_main_thread = py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const loggrad::interrupted&) {
            // The signal handler's exception (KeyboardInterrupt) is already set;
            // a stop that came from elsewhere reads as one.
            if (!PyErr_Occurred()) PyErr_SetNone(PyExc_KeyboardInterrupt);
        }
    });
    register_network(m);
    register_config(m);
    register_spectrum(m);
    register_train(m);
    register_stats(m);
}
