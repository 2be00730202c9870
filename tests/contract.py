"""Tolerances that follow from the numerical contract (DESIGN.md section 1).

A value that float64 arithmetic with an unbounded exponent computes with a
relative error of at most k units of roundoff (u = 2^-53) has a log10 within
k u / ln 10 of the true log10; the log10 itself is then evaluated and
rounded, a few ulps of |log10|. Tests state k from the computation they
check (one rounding per multiply in a chain of products, a dot product of n
terms per layer, ...), so each tolerance is derived, not chosen, and a bug
the contract forbids (a constant cut to 13 digits, a lost factor of 1 + 1e-12)
is larger than it.
"""

from __future__ import annotations

import math

import numpy as np

U = 2.0**-53  # unit roundoff of float64
LOG10_ULPS = 4  # ulps of |log10| allowed for evaluating log10 = e log10(2) + log10|m|


def log10_tol(log10_value: float, rel_units: float) -> float:
    """Bound on |computed log10 - true log10| for a value with a relative error of at most rel_units * u."""
    return rel_units * U / math.log(10) + LOG10_ULPS * math.ulp(abs(log10_value))


def assert_log10_close(got: object, want: object, rel_units: float, what: str = "") -> None:
    """Elementwise |got - want| <= log10_tol(want, rel_units); infinities and nans must match exactly."""
    g = np.asarray(got, dtype=float)
    w = np.asarray(want, dtype=float)
    assert g.shape == w.shape, f"{what}: shape {g.shape} != {w.shape}"
    inf = ~np.isfinite(w)
    assert np.array_equal(g[inf], w[inf], equal_nan=True), f"{what}: infinities or nans differ"
    err = np.abs(g[~inf] - w[~inf])
    tol = np.array([log10_tol(v, rel_units) for v in w[~inf]])
    bad = np.flatnonzero(err > tol)
    assert bad.size == 0, (
        f"{what}: {bad.size} log10 values beyond the bound of {rel_units:g} u; first: "
        f"got {g[~inf][bad[0]]!r}, want {w[~inf][bad[0]]!r}, error {err[bad[0]]:.3g} > {tol[bad[0]]:.3g}"
    )
