"""Baseline engines for the benchmarks, the correctness check every benchmarked result passes, and
the median-and-ratio record the suites that compare rows share (record_median).

The engines and the check live in the package (loggrad.bench) so that `loggrad bench`
works from an installed wheel and checks its results the same way; this module re-exports
them. `check_result` compares each engine with a renormalised numpy backprop: the textbook
float64 backprop with the backward delta rescaled by a power of two after every layer
(exact), so it is what float64 would compute with an unbounded exponent and stays a
reference where the gradients leave float64's range (width 4 at depth 10,000 reaches
about 10^-600).
"""

from loggrad.bench import (  # noqa: F401
    U,
    ACTIVATIONS,
    ENGINES,
    QUICK,
    Config,
    grid,
    installed,
    jax_runner,
    loggrad_runner,
    make_problem,
    make_runner,
    numpy_backward,
    numpy_runner,
    torch_runner,
    check_result,
    error_bound_units,
    renormalised_backward,
)


def record_median(benchmark, row: dict, name: str, base: str) -> None:
    """Keeps benchmark's median as row[name] and, once row has the base entry, the ratio to
    it as extra_info["ratio_to_<base>"] (a suite's rows are compared within one run);
    nothing under --benchmark-disable, where there are no statistics."""
    stats = getattr(benchmark, "stats", None)
    if stats is None:
        return
    row[name] = stats.stats.median
    if name != base and base in row:
        benchmark.extra_info[f"ratio_to_{base}"] = row[name] / row[base]
