// Network passes. The bindings check buffer sizes, allocate the result arrays
// and release the GIL around the engine call; they hold no numerics.
#include "pybind11.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "loggrad/network.hpp"

namespace {

using loggrad::Architecture;
using loggrad::exp_t;

// A refusal that Python sees as MemoryError with this message (pybind11 maps
// std::bad_alloc to MemoryError and keeps what()).
struct too_large : std::bad_alloc {
    std::string msg;
    explicit too_large(std::string m) : msg(std::move(m)) {}
    const char* what() const noexcept override { return msg.c_str(); }
};

// a * b, or false when it does not fit in `limit`.
bool mul_within(std::size_t a, std::size_t b, std::size_t limit, std::size_t& out) {
    if (a != 0 && b > limit / a) return false;
    out = a * b;
    return out <= limit;
}

// Every size the engine derives from the widths (parameter count, bytes of
// gradients, units) must fit in size_t with room for 16-byte extended values,
// or its offset arithmetic would wrap and index out of bounds.
constexpr std::size_t kMaxValues = std::numeric_limits<std::size_t>::max() / 64;

}  // namespace

// Checks shared by every binding that runs a pass (declared in pybind11.hpp).

// Checks params and x against the architecture; returns the batch size.
std::size_t check_call(const Architecture& net, const array_d& params, const array_d& x) {
    if (static_cast<std::size_t>(params.size()) != net.param_count())
        throw std::invalid_argument("parameter block has " + std::to_string(params.size()) +
                                    " values, the architecture needs " + std::to_string(net.param_count()));
    if (x.ndim() != 2 || static_cast<std::size_t>(x.shape(1)) != net.n_in())
        throw std::invalid_argument("x must have shape (batch, " + std::to_string(net.n_in()) + ")");
    if (x.shape(0) == 0) throw std::invalid_argument("x is empty: the batch needs at least one row");
    const auto batch = static_cast<std::size_t>(x.shape(0));
    // The engine sizes its buffers as batch * (units + widths); refuse sizes whose
    // byte counts would wrap around size_t before it computes them.
    std::size_t maxw = 0;
    for (std::size_t w : net.widths()) maxw = std::max(maxw, w);
    std::size_t values = 0;
    if (!mul_within(batch, 2 * net.unit_count() + 4 * maxw, kMaxValues, values))
        throw too_large("a pass over " + std::to_string(batch) + " rows of this network needs more than 2^64 bytes");
    return batch;
}

bool is_extended(const std::string& precision) {
    if (precision == "extended") return true;
    if (precision == "float64") return false;
    throw std::invalid_argument("unknown precision '" + precision + "'; valid: extended, float64");
}

// The target of a pass: a named loss with y or labels, or dL/d(output) itself.
loggrad::Target make_target(const Architecture& net, std::size_t batch, const std::string& loss,
                            const std::optional<array_d>& y, const std::optional<array_i64>& labels,
                            const std::optional<array_d>& grad_output_m,
                            const std::optional<array_i64>& grad_output_e) {
    loggrad::Target t;
    if (grad_output_m) {  // dL/d(output) given: no loss
        const auto& g = *grad_output_m;
        if (g.ndim() != 2 || static_cast<std::size_t>(g.shape(0)) != batch ||
            static_cast<std::size_t>(g.shape(1)) != net.n_out())
            throw std::invalid_argument("grad_output must have the output's shape (" + std::to_string(batch) + ", " +
                                        std::to_string(net.n_out()) + ")");
        if (grad_output_e && grad_output_e->size() != g.size())
            throw std::invalid_argument("grad_output: the exponents do not match the mantissas");
        t.loss = loggrad::Loss::upstream;
        t.grad_m = g.data();
        if (grad_output_e) t.grad_e = grad_output_e->data();
        return t;
    }
    t.loss = loggrad::loss_from_name(loss);
    if (t.loss == loggrad::Loss::cross_entropy) {
        if (!labels || static_cast<std::size_t>(labels->size()) != batch)
            throw std::invalid_argument("cross_entropy needs integer labels of shape (" + std::to_string(batch) + ",)");
        t.labels = labels->data();
    } else if (t.loss == loggrad::Loss::mse || t.loss == loggrad::Loss::bce) {
        if (!y || y->ndim() != 2 || static_cast<std::size_t>(y->shape(0)) != batch ||
            static_cast<std::size_t>(y->shape(1)) != net.n_out())
            throw std::invalid_argument(loss + " needs y of shape (" + std::to_string(batch) + ", " +
                                        std::to_string(net.n_out()) + ")");
        t.y = y->data();
    }
    return t;
}

namespace {

Architecture make_architecture(std::vector<std::size_t> widths, const std::vector<std::string>& acts,
                               const std::vector<std::optional<double>>& residual) {
    std::size_t params = 0, units = 0;
    for (std::size_t l = 0; l < widths.size(); ++l) {
        if (widths[l] > kMaxValues - units)
            throw std::invalid_argument("width " + std::to_string(l) + " (" + std::to_string(widths[l]) +
                                        ") is too large: the unit count overflows");
        units += widths[l];
        std::size_t layer = 0;
        if (l + 1 < widths.size() &&
            (widths[l] >= kMaxValues || !mul_within(widths[l + 1], widths[l] + 1, kMaxValues, layer) ||
             layer > kMaxValues - params))
            throw std::invalid_argument("widths " + std::to_string(widths[l]) + " -> " + std::to_string(widths[l + 1]) +
                                        " at layer " + std::to_string(l) + " are too large: the parameter count overflows");
        params += layer;
    }
    std::vector<loggrad::Activation> a;
    a.reserve(acts.size());
    for (const auto& name : acts) a.push_back(loggrad::activation_from_name(name));
    std::vector<double> scales;  // NaN: a plain layer
    for (const auto& r : residual) scales.push_back(r ? *r : std::numeric_limits<double>::quiet_NaN());
    return Architecture(std::move(widths), std::move(a), std::move(scales));
}


std::size_t checked_layer(const Architecture& net, std::size_t l) {
    if (l >= net.depth())
        throw py::index_error("layer " + std::to_string(l) + " out of range for " + std::to_string(net.depth()) +
                              " layers");
    return l;
}


// on_underflow: "raise" (an underflow past the exponent range throws, as an
// overflow does) or "flush" (it becomes zero; the result then ends with
// flushed_info's tuple).
bool flushes(const std::string& on_underflow) {
    if (on_underflow == "flush") return true;
    if (on_underflow == "raise") return false;
    throw std::invalid_argument("unknown on_underflow '" + on_underflow + "'; valid: flush, raise");
}

// (count, layer or None, quantity) of the values a pass flushed.
py::tuple flushed_info(const loggrad::Underflow& u) {
    const py::object layer = u.layer == loggrad::kNoUnderflowLayer ? py::object(py::none()) : py::int_(u.layer);
    return py::make_tuple(py::int_(u.count), layer, u.quantity);
}

// Allocates the output of a forward pass (batch x n_out), runs `pass` on it
// and returns it: (mantissa, exponent) on the extended path, with
// flushed_info's tuple when flushing; an array on float64.
template <class Ext, class F64>
py::object forward_results(const Architecture& net, std::size_t batch, bool extended, bool flush, Ext&& pass_ext,
                           F64&& pass_f64) {
    const std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(batch), static_cast<py::ssize_t>(net.n_out())};
    if (extended) {
        py::array_t<double> m(shape);
        py::array_t<exp_t> e(shape);
        loggrad::ExtOut out{m.mutable_data(), e.mutable_data()};
        loggrad::Underflow u;
        engine_call([&] { pass_ext(out, flush ? &u : nullptr); });
        if (flush) return py::make_tuple(m, e, flushed_info(u));
        return py::make_tuple(m, e);
    }
    py::array_t<double> out(shape);
    engine_call([&] { pass_f64(out.mutable_data()); });
    return std::move(out);
}

py::object forward(const Architecture& net, const array_d& params, const array_d& x,
                   const std::string& precision, const std::string& on_underflow) {
    const bool flush = flushes(on_underflow);
    const std::size_t batch = check_call(net, params, x);
    return forward_results(
        net, batch, is_extended(precision), flush,
        [&](loggrad::ExtOut out, loggrad::Underflow* u) {
            loggrad::forward_ext(net, params.data(), x.data(), batch, out, u);
        },
        [&](double* out) { loggrad::forward_f64(net, params.data(), x.data(), batch, out); });
}

// An earlier result array handed back to be written again (backward(out=)):
// exactly the dtype, shape and C order the pass would allocate, writeable.
template <class T>
py::array_t<T> reused_result(const py::object& a, const std::vector<py::ssize_t>& shape, const char* what) {
    if (!py::isinstance<py::array_t<T>>(a))
        throw std::invalid_argument(std::string("out: ") + what + " is not an array of the result's dtype");
    auto arr = py::reinterpret_borrow<py::array_t<T>>(a);
    const bool same_shape = arr.ndim() == static_cast<py::ssize_t>(shape.size()) &&
                            std::equal(shape.begin(), shape.end(), arr.shape());
    if (!same_shape || !(arr.flags() & py::array::c_style) || !arr.writeable())
        throw std::invalid_argument(std::string("out: ") + what +
                                    " does not match this pass's result (shape, C order, writeable)");
    return arr;
}

template <class T>
py::array_t<T> result_or_reused(const py::object& reuse, const std::vector<py::ssize_t>& shape, const char* what) {
    return reuse.is_none() ? result_array<T>(shape) : reused_result<T>(reuse, shape, what);
}


// Allocates (or takes back, see reused_result) the result arrays of a backward
// pass, runs `pass` on them and returns (loss, out, grad, dx): each a
// (mantissa, exponent) pair on the extended path, an array on float64.
// layers selects the layers whose parameter gradients are computed (all
// when absent), packed in layer order.
template <class Ext, class F64>
py::tuple backward_results(const Architecture& net, std::size_t batch, bool extended, bool want_dx,
                           const std::optional<array_i64>& layers, const py::object& out_grad_m,
                           const py::object& out_grad_e, bool flush, Ext&& pass_ext, F64&& pass_f64) {
    const auto b = static_cast<py::ssize_t>(batch);
    const std::vector<py::ssize_t> out_shape{b, static_cast<py::ssize_t>(net.n_out())};
    const std::vector<py::ssize_t> dx_shape{want_dx ? b : 0, static_cast<py::ssize_t>(net.n_in())};
    std::size_t grad_count = net.param_count();
    std::vector<std::size_t> grad_offset;
    if (layers) {
        std::vector<std::size_t> sel;
        sel.reserve(static_cast<std::size_t>(layers->size()));
        for (py::ssize_t i = 0; i < layers->size(); ++i) {
            const long long l = layers->data()[i];
            if (l < 0) throw std::invalid_argument("layer " + std::to_string(l) + " out of range");
            sel.push_back(static_cast<std::size_t>(l));
        }
        grad_offset = loggrad::gradient_offsets(net, sel, &grad_count);
    }
    const std::size_t* go = layers ? grad_offset.data() : nullptr;
    const std::vector<py::ssize_t> grad_shape{static_cast<py::ssize_t>(grad_count)};
    if (extended) {
        py::array_t<double> loss_m(std::vector<py::ssize_t>{}), out_m(out_shape), dx_m(dx_shape);
        py::array_t<exp_t> loss_e(std::vector<py::ssize_t>{}), out_e(out_shape), dx_e(dx_shape);
        auto grad_m = result_or_reused<double>(out_grad_m, grad_shape, "the gradient mantissas");
        auto grad_e = result_or_reused<exp_t>(out_grad_e, grad_shape, "the gradient exponents");
        loggrad::GradExt r;
        r.loss = {loss_m.mutable_data(), loss_e.mutable_data()};
        r.out = {out_m.mutable_data(), out_e.mutable_data()};
        r.grad = {grad_m.mutable_data(), grad_e.mutable_data()};
        if (want_dx) r.dx = {dx_m.mutable_data(), dx_e.mutable_data()};
        r.grad_offset = go;
        loggrad::Underflow u;
        if (flush) r.underflow = &u;
        engine_call([&] { pass_ext(r); });
        if (flush)
            return py::make_tuple(py::make_tuple(loss_m, loss_e), py::make_tuple(out_m, out_e),
                                  py::make_tuple(grad_m, grad_e), py::make_tuple(dx_m, dx_e), flushed_info(u));
        return py::make_tuple(py::make_tuple(loss_m, loss_e), py::make_tuple(out_m, out_e),
                              py::make_tuple(grad_m, grad_e), py::make_tuple(dx_m, dx_e));
    }
    if (!out_grad_e.is_none()) throw std::invalid_argument("out: a float64 pass has no gradient exponents");
    py::array_t<double> loss_v(std::vector<py::ssize_t>{}), out(out_shape), dx(dx_shape);
    auto grad = result_or_reused<double>(out_grad_m, grad_shape, "the gradients");
    loggrad::GradF64 r;
    r.loss = loss_v.mutable_data();
    r.out = out.mutable_data();
    r.grad = grad.mutable_data();
    if (want_dx) r.dx = dx.mutable_data();
    r.grad_offset = go;
    engine_call([&] { pass_f64(r); });
    return py::make_tuple(loss_v, out, grad, dx);
}

std::size_t checkpoint_arg(long long checkpoint) {
    if (checkpoint < -1) throw std::invalid_argument("checkpoint must be -1 (auto), 0 (off) or a segment length");
    return checkpoint == -1 ? loggrad::kCheckpointAuto : static_cast<std::size_t>(checkpoint);
}

py::tuple backward(const Architecture& net, const array_d& params, const array_d& x,
                   const std::string& loss, const std::optional<array_d>& y,
                   const std::optional<array_i64>& labels, const std::string& precision, bool want_dx,
                   long long checkpoint, const std::optional<array_i64>& layers,
                   const std::optional<array_d>& grad_output_m, const std::optional<array_i64>& grad_output_e,
                   const py::object& out_grad_m, const py::object& out_grad_e, const std::string& on_underflow) {
    const bool flush = flushes(on_underflow);
    const std::size_t cp = checkpoint_arg(checkpoint);
    const std::size_t batch = check_call(net, params, x);
    const loggrad::Target t = make_target(net, batch, loss, y, labels, grad_output_m, grad_output_e);
    const bool extended = is_extended(precision);
    return backward_results(
        net, batch, extended, want_dx, layers, out_grad_m, out_grad_e, flush && extended,
        [&](const loggrad::GradExt& r) { loggrad::backward_ext(net, params.data(), x.data(), batch, t, r, cp); },
        [&](const loggrad::GradF64& r) { loggrad::backward_f64(net, params.data(), x.data(), batch, t, r, cp); });
}

// The forward half of a backward pass: the output, and the tape keeping what
// backward_tape needs.
py::object forward_tape(const Architecture& net, const array_d& params, const array_d& x,
                        const std::string& precision, long long checkpoint, loggrad::Tape& tape,
                        const std::string& on_underflow) {
    const bool flush = flushes(on_underflow);
    const std::size_t cp = checkpoint_arg(checkpoint);
    const std::size_t batch = check_call(net, params, x);
    return forward_results(
        net, batch, is_extended(precision), flush,
        [&](loggrad::ExtOut out, loggrad::Underflow* u) {
            loggrad::forward_tape_ext(net, params.data(), x.data(), batch, cp, tape, out, u);
        },
        [&](double* out) { loggrad::forward_tape_f64(net, params.data(), x.data(), batch, cp, tape, out); });
}

py::tuple backward_tape(const Architecture& net, const array_d& params, loggrad::Tape& tape,
                        const std::string& precision, bool want_dx, const std::optional<array_i64>& layers,
                        const array_d& grad_output_m, const std::optional<array_i64>& grad_output_e,
                        const py::object& out_grad_m, const py::object& out_grad_e, const std::string& on_underflow) {
    const bool flush = flushes(on_underflow);
    if (static_cast<std::size_t>(params.size()) != net.param_count())
        throw std::invalid_argument("parameter block has " + std::to_string(params.size()) +
                                    " values, the architecture needs " + std::to_string(net.param_count()));
    if (!tape.ready())
        throw std::invalid_argument("the tape holds no forward pass (none was run, or a backward pass used it)");
    const std::size_t batch = tape.batch();
    const loggrad::Target t = make_target(net, batch, "", std::nullopt, std::nullopt, grad_output_m, grad_output_e);
    return backward_results(
        net, batch, is_extended(precision), want_dx, layers, out_grad_m, out_grad_e, flush && is_extended(precision),
        [&](const loggrad::GradExt& r) { loggrad::backward_tape_ext(net, params.data(), tape, t, r); },
        [&](const loggrad::GradF64& r) { loggrad::backward_tape_f64(net, params.data(), tape, t, r); });
}

}  // namespace

void register_network(py::module_& m) {
    py::register_exception<loggrad::range_error>(m, "ExponentRangeError", PyExc_OverflowError);

    py::class_<Architecture>(m, "Architecture", "Widths and activations of a dense chain")
        .def(py::init(&make_architecture), py::arg("widths"), py::arg("activations"),
             py::arg("residual") = std::vector<std::optional<double>>{})
        .def_property_readonly("residual",
                               [](const Architecture& a) {
                                   std::vector<std::optional<double>> r(a.depth());
                                   for (std::size_t l = 0; l < a.depth(); ++l)
                                       if (a.residual(l)) r[l] = a.residual_scale(l);
                                   return r;
                               })
        .def_property_readonly("depth", &Architecture::depth)
        .def_property_readonly("widths", &Architecture::widths)
        .def_property_readonly("activations",
                               [](const Architecture& a) {
                                   std::vector<std::string> names;
                                   for (std::size_t l = 0; l < a.depth(); ++l)
                                       names.push_back(loggrad::activation_name(a.activation(l)));
                                   return names;
                               })
        .def_property_readonly("param_count", &Architecture::param_count)
        .def_property_readonly(
            "offsets",
            [](const Architecture& a) {
                py::array_t<std::int64_t> out(static_cast<py::ssize_t>(a.offsets().size()));
                std::copy(a.offsets().begin(), a.offsets().end(), out.mutable_data());
                return out;
            },
            "start of every layer's block (W then b) in the parameter layout, and the total (depth + 1)")
        .def(
            "gradient_offsets",
            [](const Architecture& a, const std::vector<std::size_t>& layers) {
                std::size_t total = 0;
                const auto off = loggrad::gradient_offsets(a, layers, &total);
                py::array_t<std::int64_t> out(static_cast<py::ssize_t>(off.size()));
                for (std::size_t l = 0; l < off.size(); ++l)
                    out.mutable_data()[l] = off[l] == loggrad::kNoGradient ? -1 : static_cast<std::int64_t>(off[l]);
                return py::make_tuple(out, total);
            },
            py::arg("layers"),
            "where a pass computing only these layers' gradients (strictly increasing) writes each layer's "
            "block (-1: not computed), and the gradient count")
        .def(
            "store_plan",
            [](const Architecture& a, long long checkpoint) {
                if (checkpoint < -1) throw std::invalid_argument("checkpoint must be -1 (auto), 0 (off) or a length");
                const auto p = loggrad::store_plan(
                    a, checkpoint == -1 ? loggrad::kCheckpointAuto : static_cast<std::size_t>(checkpoint));
                return py::make_tuple(p.segment, p.segments, p.units);
            },
            py::arg("checkpoint"),
            "(segment length, segments, stored values per row of the largest segment) of a backward pass")
        .def("weight_offset", [](const Architecture& a, std::size_t l) { return a.weight_offset(checked_layer(a, l)); },
             py::arg("layer"))
        .def("bias_offset", [](const Architecture& a, std::size_t l) { return a.bias_offset(checked_layer(a, l)); },
             py::arg("layer"))
        .def(
            "workspace_bytes",
            [](const Architecture& a, std::size_t batch, bool extended) {
                std::size_t maxw = 0, values = 0;
                for (std::size_t w : a.widths()) maxw = std::max(maxw, w);
                if (!mul_within(batch, 2 * a.unit_count() + 4 * maxw, kMaxValues, values))
                    throw std::overflow_error("workspace of " + std::to_string(batch) +
                                              " rows: more than 2^64 bytes");
                return loggrad::backward_workspace_bytes(a, batch, extended);
            },
            py::arg("batch"), py::arg("extended") = true);

    py::class_<loggrad::Tape>(m, "Tape",
                              "A forward pass kept for a later backward pass (forward_tape, then backward_tape)")
        .def(py::init<>())
        .def_property_readonly("ready", &loggrad::Tape::ready)
        .def_property_readonly("batch", &loggrad::Tape::batch);
    m.def("forward_tape", &forward_tape, py::arg("arch"), py::arg("params"), py::arg("x"), py::arg("precision"),
          py::arg("checkpoint"), py::arg("tape"), py::arg("on_underflow") = "raise",
          "Forward pass that keeps what a backward pass needs in tape; returns the output as forward does "
          "(with on_underflow='flush' (extended), a third item as forward's)");
    m.def("backward_tape", &backward_tape, py::arg("arch"), py::arg("params"), py::arg("tape"), py::arg("precision"),
          py::arg("want_dx"), py::arg("layers"), py::arg("grad_output_m"), py::arg("grad_output_e") = py::none(), py::arg("out_grad_m") = py::none(),
          py::arg("out_grad_e") = py::none(), py::arg("on_underflow") = "raise",
          "Backward pass of the tape's forward pass with dL/d(output) = grad_output; (loss, out, grad, dx) "
          "as backward (and with on_underflow='flush' (extended), a fifth item as backward's); consumes the tape");
    m.def("forward", &forward, py::arg("arch"), py::arg("params"), py::arg("x"), py::arg("precision") = "extended",
          py::arg("on_underflow") = "raise",
          "Forward pass: (mantissa, exponent) arrays on the extended path, an ndarray on float64; with "
          "on_underflow='flush' (extended) values below the exponent range become zero and a third item "
          "(count, first layer or None, first quantity) says how many");
    m.def("backward", &backward, py::arg("arch"), py::arg("params"), py::arg("x"), py::arg("loss"),
          py::arg("y") = py::none(), py::arg("labels") = py::none(), py::arg("precision") = "extended",
          py::arg("want_dx") = true, py::arg("checkpoint") = 0, py::arg("layers") = py::none(),
          py::arg("grad_output_m") = py::none(), py::arg("grad_output_e") = py::none(),
          py::arg("out_grad_m") = py::none(), py::arg("out_grad_e") = py::none(), py::arg("on_underflow") = "raise",
          "Backward pass: (loss, out, grad, dx), each (mantissa, exponent) on the extended path, and with "
          "on_underflow='flush' (extended) a fifth item (count, first layer or None, first quantity) of the "
          "values below the exponent range that became zero; "
          "layers (strictly increasing) limits grad to those layers' parameter gradients, packed in order; "
          "grad_output_m (and _e: extended) is dL/d(output) in place of a loss; out_grad_m/_e are earlier "
          "gradient arrays to write into");
}
