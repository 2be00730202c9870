"""Baseline engines for the benchmarks. They live in the package (loggrad.bench) so that
`loggrad bench` works from an installed wheel; this module re-exports them."""

from loggrad.bench import (  # noqa: F401
    ACTIVATIONS,
    ENGINES,
    QUICK,
    Config,
    check_result,
    grid,
    installed,
    jax_runner,
    loggrad_runner,
    make_problem,
    make_runner,
    numpy_backward,
    numpy_runner,
    torch_runner,
)
