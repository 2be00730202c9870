"""A deep sigmoid chain whose first-layer gradient is far below float64's range,
with its gradient computed independently in mpmath (arbitrary precision,
unbounded exponent).

    python tests/data/deep_chain_reference.py     # writes deep_chain_reference.json

The network is made from exact binary fractions by a 64-bit LCG in integer
arithmetic, so loggrad and mpmath start from identical numbers, and neither
numpy's random generators nor loggrad is involved in making the reference.
This file is also imported (without mpmath) by scripts/wheel_smoke_test.py
and tests/test_deep_chain_reference.py, which compare an installed loggrad
with the stored JSON: only the standard library is needed for that.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from decimal import Decimal, getcontext
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
JSON = HERE / "deep_chain_reference.json"

SPEC: dict[str, Any] = {
    "depth": 1500,
    "width": 4,
    "batch": 2,
    "activation": "sigmoid",
    "loss": "mse",
    "seed": 20250101,
}


def _lcg(seed: int) -> Iterator[int]:
    """Knuth's MMIX LCG; yields 20-bit integers (the state's top bits)."""
    s = seed % 2**64
    while True:
        s = (s * 6364136223846793005 + 1442695040888963407) % 2**64
        yield s >> 44


def inputs(spec: dict[str, Any] = SPEC) -> dict[str, Any]:
    """widths, weights[l] (n_out x n_in lists), biases[l], x, y: exact binary fractions.

    weights uniform in [-2, 2) (step 2^-18), biases in [-1/8, 1/8), x in
    [-1, 1), y in [0, 1).
    """
    r = _lcg(spec["seed"])
    n, depth, batch = spec["width"], spec["depth"], spec["batch"]
    weights = [[[next(r) / 2**18 - 2.0 for _ in range(n)] for _ in range(n)] for _ in range(depth)]
    biases = [[next(r) / 2**23 - 0.125 for _ in range(n)] for _ in range(depth)]
    x = [[next(r) / 2**19 - 1.0 for _ in range(n)] for _ in range(batch)]
    y = [[next(r) / 2**20 for _ in range(n)] for _ in range(batch)]
    return {"widths": [n] * (depth + 1), "weights": weights, "biases": biases, "x": x, "y": y}


def reference(spec: dict[str, Any] = SPEC, dps: int = 60) -> dict[str, Any]:
    """Loss, dL/dW_0, dL/db_0, dL/dW_{L-1} and dL/dx of the mse loss, in mpmath."""
    import mpmath
    from mpmath import mp, mpf

    assert spec["activation"] == "sigmoid" and spec["loss"] == "mse"
    mp.dps = dps
    net = inputs(spec)
    W = [[[mpf(v) for v in row] for row in w] for w in net["weights"]]
    b = [[mpf(v) for v in bl] for bl in net["biases"]]
    n, depth, batch = spec["width"], spec["depth"], spec["batch"]

    def sig(z: Any) -> Any:
        return 1 / (1 + mpmath.exp(-z))

    # forward: a[l] (batch x n), z[l]
    a = [[[mpf(v) for v in row] for row in net["x"]]]
    zs = []
    for l in range(depth):
        z = [[mpmath.fsum(W[l][i][j] * a[l][s][j] for j in range(n)) + b[l][i] for i in range(n)] for s in range(batch)]
        zs.append(z)
        a.append([[sig(v) for v in row] for row in z])
    out = a[-1]
    y = [[mpf(v) for v in row] for row in net["y"]]
    count = batch * n
    loss = mpmath.fsum((out[s][i] - y[s][i]) ** 2 for s in range(batch) for i in range(n)) / count
    # backward: g = dL/da
    g = [[2 * (out[s][i] - y[s][i]) / count for i in range(n)] for s in range(batch)]
    dW_last = None
    for l in reversed(range(depth)):
        # sigmoid'(z) = s (1 - s), exact in mpmath's precision
        d = [[g[s][i] * a[l + 1][s][i] * (1 - a[l + 1][s][i]) for i in range(n)] for s in range(batch)]
        dW = [[mpmath.fsum(d[s][i] * a[l][s][j] for s in range(batch)) for j in range(n)] for i in range(n)]
        db = [mpmath.fsum(d[s][i] for s in range(batch)) for i in range(n)]
        if l == depth - 1:
            dW_last = dW
        g = [[mpmath.fsum(d[s][i] * W[l][i][j] for i in range(n)) for j in range(n)] for s in range(batch)]

    def enc(v: Any) -> str:
        return mpmath.nstr(v, 25, min_fixed=1, max_fixed=0)  # type: ignore[no-any-return]

    return {
        "loss": enc(loss),
        "dW0": [[enc(v) for v in row] for row in dW],
        "db0": [enc(v) for v in db],
        "dW_last": [[enc(v) for v in row] for row in dW_last],  # type: ignore[union-attr]
        "dx": [[enc(v) for v in row] for row in g],
    }


def log10_and_sign(s: str) -> tuple[float, int]:
    """log10|v| and sign of a decimal string of any exponent (standard library only)."""
    getcontext().prec = 40
    v = Decimal(s)
    if v == 0:
        return -math.inf, 0
    return float(abs(v).log10()), (1 if v > 0 else -1)


def error_bound_units(spec: dict[str, Any]) -> int:
    """Relative error, in units of roundoff u = 2^-53, that float64 arithmetic with an
    unbounded exponent may commit on this chain's gradients.

    Per layer: a dot product of `width` terms (width u), sigmoid' evaluated in log
    space (4 u); doubled for the forward pass's errors carried into f'(z), and for
    the batch sum of the weight gradient (batch u). The 1,500-layer chain's dL/dW_0
    measures 3,436 u against this bound of 24,002 u.
    """
    return int(2 * spec["depth"] * (spec["width"] + 4) + spec["batch"])


def compare(lg: Any, ref: dict[str, Any], rel_units: float | None = None) -> list[str]:
    """Runs the chain in the given loggrad module; returns the disagreements (empty: all agree).

    Every stored value must agree in sign, and in log10 within the contract's
    bound: rel_units u / ln 10 for the value's rounding errors (default
    error_bound_units(spec)) plus 4 ulps of |log10| for evaluating the log10.
    A log10(2) cut to 13 digits (4e-11 at 10^-624) is 30 times that bound.
    """
    import numpy as np

    spec, net = ref["spec"], inputs(ref["spec"])
    model = lg.Network([np.array(w) for w in net["weights"]], [np.array(b) for b in net["biases"]], spec["activation"])
    g = model.backward(np.array(net["x"]), np.array(net["y"]), loss=spec["loss"])
    got = {
        "loss": g.loss,
        "dW0": g.weights[0],
        "db0": g.biases[0],
        "dW_last": g.weights[spec["depth"] - 1],
        "dx": g.input,
    }
    if rel_units is None:
        rel_units = error_bound_units(spec)
    tol_rel = rel_units * 2.0**-53 / math.log(10)
    bad = []
    for key, arr in got.items():
        expect = np.array(ref["values"][key], dtype=object).reshape(-1)
        lg10 = np.asarray(arr.log10(), dtype=float).reshape(-1)
        sign = np.asarray(arr.sign()).reshape(-1)
        for i, s in enumerate(expect):
            e10, esign = log10_and_sign(s)
            tol = tol_rel + 4 * math.ulp(abs(e10))
            if sign[i] != esign or not abs(lg10[i] - e10) <= tol:
                bad.append(f"{key}[{i}]: loggrad sign {sign[i]} log10 {lg10[i]!r}, reference {s}")
    # The point of the chain: float64 cannot represent the first layer's gradient.
    g64 = model.backward(np.array(net["x"]), np.array(net["y"]), loss=spec["loss"], precision="float64")
    if np.any(g64.weights[0] != 0):
        bad.append("float64 path: expected dL/dW_0 to underflow to exactly 0.0")
    return bad


def main() -> int:
    vals = reference(SPEC)
    lo = min(log10_and_sign(v)[0] for row in vals["dW0"] for v in row)
    data = {
        "about": "Deep sigmoid chain, mse loss: gradients from mpmath at 60 digits. Made by "
        "tests/data/deep_chain_reference.py; compared with loggrad by scripts/wheel_smoke_test.py "
        "and tests/test_deep_chain_reference.py.",
        "spec": SPEC,
        "values": vals,
    }
    JSON.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {JSON} (smallest |dL/dW_0| = 10^{lo:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
