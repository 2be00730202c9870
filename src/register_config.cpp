// Build configuration and thread control.
#include "pybind11.hpp"

#include <stdexcept>
#include <string>

#include "loggrad/activations.hpp"
#include "loggrad/ext.hpp"
#include "loggrad/gemm.hpp"
#include "loggrad/losses.hpp"
#include "loggrad/memory.hpp"
#include "loggrad/parallel.hpp"

void register_config(py::module_& m) {
    m.def("activation_names", &loggrad::activation_names, "Canonical activation names");
    m.def("loss_names", &loggrad::loss_names, "Loss names");
    m.def("blas_config", &loggrad::blas_config, "The BLAS library the engine calls");
    m.def("cached_memory_bytes", &loggrad::cached_memory_bytes,
          "Bytes of freed result and scratch memory kept for the next pass of the same size (at most 512 MiB in 32 blocks)");
    m.def("release_memory", &loggrad::release_cached_memory,
          "Give the kept memory (cached_memory_bytes) back to the system");
    m.def("kernel_isa", &loggrad::kernel_isa,
          "Instruction set of the engine's elementwise kernels here: 'avx512', 'avx2' or 'baseline' "
          "(LOGGRAD_SIMD=avx2 or LOGGRAD_SIMD=baseline caps it; all give the same bits)");
    m.def(
        "gemm_fixed_order",
        [](const array_d& a, const array_d& b, bool ta, bool tb) {
            if (a.ndim() != 2 || b.ndim() != 2) throw std::invalid_argument("gemm_fixed_order: a and b must be 2-D");
            const auto M = static_cast<std::size_t>(a.shape(ta ? 1 : 0)), K = static_cast<std::size_t>(a.shape(ta ? 0 : 1));
            const auto N = static_cast<std::size_t>(b.shape(tb ? 0 : 1));
            if (static_cast<std::size_t>(b.shape(tb ? 1 : 0)) != K)
                throw std::invalid_argument("gemm_fixed_order: inner dimensions differ");
            auto c = result_array<double>({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(N)});
            {
                py::gil_scoped_release nogil;
                loggrad::gemm_naive(ta, tb, M, N, K, a.data(), b.data(), c.mutable_data());
            }
            return c;
        },
        py::arg("a"), py::arg("b"), py::arg("trans_a") = false, py::arg("trans_b") = false,
        "op(a) @ op(b) by the engine's small-product kernel, whose summation order is fixed "
        "(the kernel small layers use; exposed for the tests)");
    m.def("blas_threads", &loggrad::blas_threads, "Threads of the BLAS library itself (kept at 1)");
    m.def("num_threads", &loggrad::num_threads, "Threads the engine uses");
    m.def(
        "set_num_threads",
        [](long long n) {
            // The pool starts n - 1 threads: a bad count would fail half-way (and leave
            // num_threads() reporting threads that never started) or silently mean 1.
            if (n < 1 || n > 1024)
                throw std::invalid_argument("set_num_threads: n must be between 1 and 1024, got " + std::to_string(n));
            loggrad::set_num_threads(static_cast<int>(n));
        },
        py::arg("n"), "Set the engine's thread count, 1..1024 (results do not depend on it)");
    m.def("threads_used", &loggrad::threads_used,
          "Distinct threads that ran tasks of the engine's parallel loops since reset_threads_used() "
          "(each pool worker once, the calling threads together once)");
    m.def("reset_threads_used", &loggrad::reset_threads_used, "Start a new threads_used() count");
    m.attr("max_exponent") = loggrad::kMaxExp;
    m.attr("zero_exponent") = loggrad::kZeroExp;
    m.attr("blas_min_work") = loggrad::kBlasMinWork;
#if defined(__AVX512F__)
    m.attr("simd") = "avx512";
#elif defined(__AVX2__)
    m.attr("simd") = "avx2";
#elif defined(__SSE2__) || defined(_M_X64)
    m.attr("simd") = "sse2";
#elif defined(__ARM_NEON)
    m.attr("simd") = "neon";
#else
    m.attr("simd") = "none";
#endif
#if defined(__VERSION__)
    m.attr("compiler") = __VERSION__;
#else
    m.attr("compiler") = "unknown";
#endif
}
