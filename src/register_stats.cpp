// A backward pass with per-layer statistics (loggrad/stats.hpp). The binding
// checks sizes, allocates the result arrays and releases the GIL around the
// engine call; it holds no numerics.
#include "pybind11.hpp"

#include <stdexcept>
#include <string>
#include <vector>

#include "loggrad/network.hpp"
#include "loggrad/stats.hpp"

namespace {

using loggrad::Architecture;
using loggrad::exp_t;

py::tuple backward_stats(const Architecture& net, const array_d& params, const array_d& x, const std::string& loss,
                         const std::optional<array_d>& y, const std::optional<array_i64>& labels,
                         const std::string& precision) {
    const bool extended = is_extended(precision);
    const std::size_t batch = check_call(net, params, x);
    const loggrad::Target t = make_target(net, batch, loss, y, labels, std::nullopt, std::nullopt);
    const auto b = static_cast<py::ssize_t>(batch);
    const std::vector<py::ssize_t> out_shape{b, static_cast<py::ssize_t>(net.n_out())};
    const std::vector<py::ssize_t> grad_shape{static_cast<py::ssize_t>(net.param_count())};
    py::array_t<double> flat(std::vector<py::ssize_t>{static_cast<py::ssize_t>(net.depth()),
                                                      static_cast<py::ssize_t>(loggrad::kLayerStatsFields)});
    std::vector<loggrad::LayerStats> stats(net.depth());
    if (!extended) {
        py::array_t<double> loss_v(std::vector<py::ssize_t>{}), out(out_shape);
        auto grad = result_array<double>(grad_shape);
        loggrad::GradF64 r;
        r.loss = loss_v.mutable_data();
        r.out = out.mutable_data();
        r.grad = grad.mutable_data();
        r.stats = stats.data();
        // only the arrays and the vector above (kept alive by this frame) are touched
        engine_call([&] {
            loggrad::backward_f64(net, params.data(), x.data(), batch, t, r, 0);
            for (std::size_t l = 0; l < net.depth(); ++l)
                loggrad::flatten_stats(stats[l], flat.mutable_data() + l * loggrad::kLayerStatsFields);
        });
        return py::make_tuple(loss_v, out, grad, flat);
    }
    py::array_t<double> loss_m(std::vector<py::ssize_t>{}), out_m(out_shape);
    py::array_t<exp_t> loss_e(std::vector<py::ssize_t>{}), out_e(out_shape);
    auto grad_m = result_array<double>(grad_shape);
    auto grad_e = result_array<exp_t>(grad_shape);
    loggrad::GradExt r;
    r.loss = {loss_m.mutable_data(), loss_e.mutable_data()};
    r.out = {out_m.mutable_data(), out_e.mutable_data()};
    r.grad = {grad_m.mutable_data(), grad_e.mutable_data()};
    r.stats = stats.data();
    engine_call([&] {
        loggrad::backward_ext(net, params.data(), x.data(), batch, t, r, 0);
        for (std::size_t l = 0; l < net.depth(); ++l)
            loggrad::flatten_stats(stats[l], flat.mutable_data() + l * loggrad::kLayerStatsFields);
    });
    return py::make_tuple(py::make_tuple(loss_m, loss_e), py::make_tuple(out_m, out_e),
                          py::make_tuple(grad_m, grad_e), flat);
}

}  // namespace

void register_stats(py::module_& m) {
    m.attr("LAYER_STATS_FIELDS") = loggrad::kLayerStatsFields;
    m.attr("SATURATED_DERIVATIVE") = loggrad::kSaturatedDerivative;
    m.def("backward_stats", &backward_stats, py::arg("arch"), py::arg("params"), py::arg("x"), py::arg("loss"),
          py::arg("y") = py::none(), py::arg("labels") = py::none(), py::arg("precision") = "extended",
          "Backward pass with per-layer statistics: (loss, out, grad, stats (depth, LAYER_STATS_FIELDS)), "
          "loss/out/grad (mantissa, exponent) on the extended path, ndarrays on float64 (a real float64 pass: "
          "its own flushes); see loggrad/stats.hpp for the field order");
}
