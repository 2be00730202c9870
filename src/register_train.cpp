// Training steps. The bindings check buffer sizes and layouts, allocate the
// result arrays and release the GIL around the engine call; no numerics.
#include "pybind11.hpp"

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>

#include "loggrad/train.hpp"

namespace {

using loggrad::exp_t;
using array_e = py::array_t<exp_t, py::array::c_style | py::array::forcecast>;
// (limit, e_star, m_star): the limit and numpy's "log2|x| > log2(limit)" as a threshold.
using Clip = std::optional<std::tuple<double, exp_t, double>>;

bool overlaps(const void* a, std::size_t na, const void* b, std::size_t nb) {
    const auto pa = reinterpret_cast<std::uintptr_t>(a), pb = reinterpret_cast<std::uintptr_t>(b);
    return na && nb && pa < pb + nb && pb < pa + na;
}

py::dict sgd_step(py::array params, const array_d& gm, const array_e& ge, const array_i64& bounds, double lr,
                  const Clip& clip_norm, const Clip& clip_value) {
    // The parameters are updated in place: no conversion, no copy.
    if (!params.dtype().is(py::dtype::of<double>()) || !(params.flags() & py::array::c_style))
        throw std::invalid_argument("params must be a C-contiguous float64 array");
    if (!params.writeable()) throw std::invalid_argument("params must be writeable");
    const auto n = static_cast<std::size_t>(params.size());
    if (static_cast<std::size_t>(gm.size()) != n || static_cast<std::size_t>(ge.size()) != n)
        throw std::invalid_argument("the gradient has " + std::to_string(gm.size()) + " mantissas and " +
                                    std::to_string(ge.size()) + " exponents for " + std::to_string(n) +
                                    " parameters");
    if (bounds.ndim() != 1 || bounds.size() < 2)
        throw std::invalid_argument("bounds must be a 1-D array of at least two offsets");
    const std::size_t nblocks = static_cast<std::size_t>(bounds.size()) - 1;
    const std::int64_t* bd = bounds.data();
    if (bd[0] != 0 || static_cast<std::size_t>(bd[nblocks]) != n)
        throw std::invalid_argument("bounds must run from 0 to the parameter count " + std::to_string(n));
    for (std::size_t b = 0; b < nblocks; ++b)
        if (bd[b + 1] <= bd[b]) throw std::invalid_argument("bounds must be strictly increasing");
    double* w = static_cast<double*>(params.mutable_data());
    if (overlaps(w, n * sizeof(double), gm.data(), n * sizeof(double)) ||
        overlaps(w, n * sizeof(double), ge.data(), n * sizeof(exp_t)))
        throw std::invalid_argument("params must not share memory with the gradient");

    loggrad::SgdConfig cfg;
    cfg.lr = lr;
    if (clip_norm) {
        cfg.clip_norm = true;
        std::tie(cfg.max_norm, cfg.norm_over.e_star, cfg.norm_over.m_star) = *clip_norm;
    }
    if (clip_value) {
        cfg.clip_value = true;
        std::tie(cfg.clip_value_limit, cfg.value_over.e_star, cfg.value_over.m_star) = *clip_value;
    }
    const auto nb = static_cast<py::ssize_t>(nblocks);
    py::array_t<std::int64_t> nonzero(nb), unchanged(nb);
    py::array_t<exp_t> update_emax(nb), grad_emax(nb);
    py::array_t<double> top0(nb), top1(nb), update_norm(nb), grad_norm(nb);
    loggrad::SgdBlockStats st{nonzero.mutable_data(),   unchanged.mutable_data(), update_emax.mutable_data(),
                              top0.mutable_data(),      top1.mutable_data(),      update_norm.mutable_data(),
                              grad_emax.mutable_data(), grad_norm.mutable_data()};
    loggrad::SgdTotals tot;
    {
        // Safe without the GIL: every pointer belongs to an array held by
        // this frame, and the engine touches nothing else.
        py::gil_scoped_release release;
        loggrad::sgd_step(st, tot, w, gm.data(), ge.data(), bd, nblocks, cfg);
    }
    py::dict out;
    out["nonzero"] = nonzero;
    out["unchanged"] = unchanged;
    out["update_emax"] = update_emax;
    out["update_top0"] = top0;
    out["update_top1"] = top1;
    out["update_norm"] = update_norm;
    out["grad_emax"] = grad_emax;
    out["grad_norm"] = grad_norm;
    out["total_norm"] = tot.grad_norm;
    out["total_emax"] = tot.grad_emax;
    out["clipped"] = tot.clipped;
    out["bad_index"] = tot.bad_index;
    out["bad_update"] = py::make_tuple(tot.bad_update_m, tot.bad_update_e);
    return out;
}

py::tuple segment_norms(const array_d& gm, const array_e& ge, const array_i64& starts, const array_i64& lengths) {
    if (gm.ndim() != 1 || ge.ndim() != 1 || gm.size() != ge.size())
        throw std::invalid_argument("mantissa and exponent must be 1-D arrays of one length, got " +
                                    std::to_string(gm.size()) + " and " + std::to_string(ge.size()) + " values");
    if (starts.ndim() != 1 || lengths.ndim() != 1 || starts.size() != lengths.size())
        throw std::invalid_argument("starts and lengths must be 1-D arrays of one length");
    const auto nseg = static_cast<std::size_t>(starts.size());
    py::array_t<exp_t> emax(static_cast<py::ssize_t>(nseg));
    py::array_t<double> norm(static_cast<py::ssize_t>(nseg));
    engine_call([&] {
        loggrad::segment_norms(emax.mutable_data(), norm.mutable_data(), gm.data(), ge.data(),
                               static_cast<std::size_t>(gm.size()), starts.data(), lengths.data(), nseg);
    });
    return py::make_tuple(emax, norm);
}

}  // namespace

void register_train(py::module_& m) {
    m.def("sgd_step", &sgd_step, py::arg("params"), py::arg("grad_mantissa"), py::arg("grad_exponent"),
          py::arg("bounds"), py::arg("lr"), py::arg("clip_norm") = py::none(), py::arg("clip_value") = py::none(),
          "One SGD step in place on params (see loggrad/train.hpp); per-block statistics as a dict.\n"
          "clip_norm, clip_value: None or (limit, e_star, m_star), numpy's log2 comparison with the limit\n"
          "as a threshold on normal-form values.");
    m.def("segment_norms", &segment_norms, py::arg("mantissa"), py::arg("exponent"), py::arg("starts"),
          py::arg("lengths"),
          "Euclidean norms of the segments [starts[k], starts[k] + lengths[k]) of an extended array in\n"
          "normal form, as (emax, norm): ||x_k|| = norm[k] * 2^emax[k] (see loggrad/train.hpp).");
}
