"""Coefficients of the float64 tanh kernel (cpp/src/tanh.hpp, tanh_small).

For |x| < 0.7 the kernel forms tanh(a) = a + a^3 P(a^2), a = |x|. P (degree 12)
is the least-squares fit of (tanh(a)/a - 1)/a^2 at 240 Chebyshev nodes of
a^2 in [0, 0.49], solved at 50 significant digits with mpmath and rounded to
float64. Run it to print the C++ array; tests/test_reference.py measures the
kernel's error against mpmath.

    python scripts/fit_tanh.py
"""

from __future__ import annotations

import mpmath as mp

THRESHOLD = mp.mpf("0.7")
DEGREE = 12
NODES = 240


def target(s: mp.mpf) -> mp.mpf:
    if s == 0:
        return mp.mpf(-1) / 3
    a = mp.sqrt(s)
    return (mp.tanh(a) / a - 1) / s


def fit() -> list[float]:
    with mp.workdps(50):
        top = THRESHOLD**2
        xs = [top * (1 - mp.cos(mp.pi * (i + mp.mpf(0.5)) / NODES)) / 2 for i in range(NODES)]
        v = mp.matrix(NODES, DEGREE + 1)
        y = mp.matrix(NODES, 1)
        for i, x in enumerate(xs):
            for j in range(DEGREE + 1):
                v[i, j] = x**j
            y[i] = target(x)
        c = mp.lu_solve(v.T * v, v.T * y)  # normal equations: ample at 50 digits
        return [float(c[j]) for j in range(DEGREE + 1)]


if __name__ == "__main__":
    coeffs = fit()
    print(f"constexpr double kTanhP[{len(coeffs)}] = {{")
    for c in coeffs:
        print(f"    {c.hex()},")
    print("};")
