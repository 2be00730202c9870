// Jacobian growth of directions (Lyapunov spectrum, log |J v|).
#include "pybind11.hpp"

#include "loggrad/spectrum.hpp"

namespace {

py::tuple jacobian_log_growth(const loggrad::Architecture& net, const array_d& params, const array_d& x,
                              const array_d& V, bool orthonormalize, bool per_layer) {
    if (static_cast<std::size_t>(params.size()) != net.param_count())
        throw std::invalid_argument("parameter block has " + std::to_string(params.size()) +
                                    " values, the architecture needs " + std::to_string(net.param_count()));
    if (x.ndim() != 1 || static_cast<std::size_t>(x.shape(0)) != net.n_in())
        throw std::invalid_argument("x must have shape (" + std::to_string(net.n_in()) + ",)");
    if (V.ndim() != 2 || static_cast<std::size_t>(V.shape(0)) != net.n_in())
        throw std::invalid_argument("directions must have shape (" + std::to_string(net.n_in()) + ", k)");
    const auto k = static_cast<std::size_t>(V.shape(1));
    py::array_t<double> total(static_cast<py::ssize_t>(k));
    py::array_t<double> layers(std::vector<py::ssize_t>{per_layer ? static_cast<py::ssize_t>(net.depth()) : 0,
                                                        static_cast<py::ssize_t>(k)});
    engine_call([&] {
        loggrad::jacobian_log_growth(net, params.data(), x.data(), V.data(), k, orthonormalize, total.mutable_data(),
                                     per_layer ? layers.mutable_data() : nullptr);
    });
    return py::make_tuple(total, layers);
}

}  // namespace

void register_spectrum(py::module_& m) {
    m.def("jacobian_log_growth", &jacobian_log_growth, py::arg("arch"), py::arg("params"), py::arg("x"),
          py::arg("directions"), py::arg("orthonormalize") = true, py::arg("per_layer") = false,
          "Natural-log growth of directions through the input-output Jacobian: (total (k,), per layer (depth, k))");
}
