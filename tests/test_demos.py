"""Each demo of the seed notes runs and its key numbers are right (checked independently)."""

import math

import mpmath
import numpy as np
import pytest

from loggrad import demos

mpmath.mp.dps = 30


def quiet(_line: str = "") -> None:
    pass


def test_listing_and_unknown(capsys):
    assert demos.main([]) == 0
    listed = capsys.readouterr().out
    for name in demos.DEMOS:
        assert name in listed
    assert demos.main(["nope"]) == 2
    with pytest.raises(ValueError, match="unknown demo"):
        demos.run("nope")


def test_chain_rule():
    r = demos.run("chain_rule", quiet)
    ref = mpmath.fprod([mpmath.mpf(f) for f in [0.1, 0.001, 0.00025] * 50])
    assert abs(float(r["grad"].log10()) - float(mpmath.log10(ref))) < 1e-9
    assert r["grad_float64"] == 0.0
    assert abs(r["update_log10"] - (float(mpmath.log10(ref)) - 3)) < 1e-9
    assert r["unchanged"] == 2  # w_1 and its bias: both updates lost


def test_sigmoid_bound():
    r = demos.run("sigmoid_bound", quiet)
    for z, d in zip(r["z"], r["derivative_log10"]):
        t = mpmath.exp(-mpmath.mpf(z))
        assert abs(d - float(mpmath.log10(t / (1 + t) ** 2))) < 1e-9
    assert max(r["derivative_log10"]) == pytest.approx(math.log10(0.25), abs=1e-15)
    for L, got, bound, f64 in r["chain"]:
        assert abs(got - bound) < 1e-9 * max(1, abs(bound))
        if bound < -324:
            assert f64 == 0.0


def test_exploding_factor():
    r = demos.run("exploding_factor", quiet)
    assert r["factor"] == 125.0 and r["product"] == 300 * 200 * 125 * 1001
    assert r["w_new"] < 0
    for L, got, expect, f64 in r["chain"]:
        assert abs(got - expect) < 1e-9 * max(1, expect)
        if expect > 308.26:
            assert f64 == math.inf


def test_linear_chain():
    r = demos.run("linear_chain", quiet, depths=(10, 1000, 4000))
    for c, rows in (("1.2", r["1.2"]), ("0.5", r["0.5"])):
        for L, yhat, dw, _y64, dw64 in rows:
            assert abs(yhat - L * math.log10(float(c))) < 1e-9 * L
            assert abs(dw - (L - 1) * math.log10(float(c))) < 1e-9 * L
    assert r["0.5"][-1][4] == 0.0  # float64 underflows at 4000 layers of 0.5
    assert not np.isfinite(r["1.2"][-1][4])  # and overflows for 1.2


def test_learning_rate():
    r = demos.run("learning_rate", quiet)
    small, good, big = r[1e-20], r[0.1], r[3.0]
    assert all(f == 1.0 for f in small["fraction_unchanged"]) and small["w"] == 0.5
    assert good["loss_log10"][-1] < -3 and abs(good["w"] - 2) < 0.01
    assert big["overflow_at"] is not None and big["loss_beyond_float64_at"] is not None
    assert max(big["loss_log10"]) > 308
