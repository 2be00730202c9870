"""The physical reference: float64 matrix multiply (numpy's OpenBLAS dgemm, all cores) at
1024 and 2048. ratios.py divides every configuration's GFLOP/s by the best of these."""

import numpy as np
import pytest


@pytest.mark.parametrize("n", [1024, 2048])
def test_dgemm(benchmark, n):
    rng = np.random.default_rng(n)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    benchmark.group = "matmul peak"
    benchmark.extra_info.update(matmul_n=n, flops=2.0 * n**3)
    c = benchmark(np.matmul, a, b)
    # Spot-check the product against a plain dot of one row and column.
    i, j = n // 3, n // 5
    assert c[i, j] == pytest.approx(float(np.dot(a[i], b[:, j])), rel=1e-9, abs=1e-9 * np.sqrt(n))
