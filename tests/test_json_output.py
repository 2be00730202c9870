"""JSON output is strict: non-finite numbers are null, never NaN/Infinity constants or strings."""

import json
import math

import numpy as np
import pytest

import loggrad as lg
from loggrad.__main__ import main
from loggrad.report import Report, report


def strict_loads(s: str):
    return json.loads(s, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def strings_in(v):
    if isinstance(v, str):
        yield v
    elif isinstance(v, list):
        for u in v:
            yield from strings_in(u)
    elif isinstance(v, dict):
        for u in v.values():
            yield from strings_in(u)


@pytest.fixture
def dead_net():
    """Layer 1's weights are exactly zero: layer 0's gradient is exactly zero (log10 -inf, max nan)."""
    rng = np.random.default_rng(0)
    ws = [rng.standard_normal((4, 3)), np.zeros((4, 4)), rng.standard_normal((2, 4))]
    return lg.Network(ws, [np.zeros(4), np.ones(4), np.zeros(2)], "tanh")


def test_report_to_json_writes_null(dead_net):
    x = np.random.default_rng(1).standard_normal((3, 3))
    y = np.zeros((3, 2))
    rep = report(dead_net, x, y)
    assert rep.grad_norm_w[0] == -np.inf and math.isnan(rep.grad_max[0])  # the case under test is there
    s = rep.to_json()
    d = strict_loads(s)
    assert d["layers"]["grad_norm_w"][0] is None and d["layers"]["grad_max"][0] is None
    assert not {"inf", "-inf", "nan"} & set(strings_in(d))
    back = Report.from_json(s)
    assert math.isnan(back.grad_norm_w[0]) and back.grad_norm_w[2] == rep.grad_norm_w[2]
    assert back.to_json() == s


def test_cli_json_writes_null(dead_net, tmp_path, capsys):
    dead_net.save(tmp_path / "net.npz")
    np.savez(tmp_path / "data.npz", x=np.ones((2, 3)), y=np.zeros((2, 2)))
    rc = main(["report", "--network", str(tmp_path / "net.npz"), "--data", str(tmp_path / "data.npz"), "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    d = strict_loads(out)
    assert d["layers"]["grad_norm_w"][0] is None
    assert not {"inf", "-inf", "nan"} & set(strings_in(d))


def test_strict_encoder():
    from loggrad._json import dumps, strict

    v = {"a": [1.0, math.inf, -math.inf, math.nan], "b": np.float64("nan"), "c": np.array([[np.inf, 2.0]]),
         "z": lg.LogArray([0.0, -2.0])}
    d = strict_loads(dumps(v))
    assert d["a"] == [1.0, None, None, None] and d["b"] is None and d["c"] == [[None, 2.0]]
    assert d["z"] == {"sign": [0, -1], "log10": [None, math.log10(2.0)]}
    assert strict(np.int64(3)) == 3 and type(strict(np.int64(3))) is int
