"""The command line end to end: in-process (main(argv) with capsys) and as `python -m loggrad`.

Numbers printed with --json are checked against direct computation with the
Python API, a plain numpy backprop and mpmath; plot files against image
headers; errors against exit codes and one-line messages.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import mpmath
import numpy as np
import pytest

import loggrad as lg
from loggrad import __main__ as cli
from loggrad._json import from_lossless as _dec  # the decoder of the lossless JSON ("inf", "nan" strings)
from loggrad.report import report

from contract import assert_log10_close, log10_tol



def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 0, err
    return _dec(json.loads(out))


def run_sub(*argv: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loggrad", *argv], capture_output=True, text=True,
                          timeout=300, **kw)


# ---------------------------------------------------------------------------
# The default demo
# ---------------------------------------------------------------------------


def _max_log10(g: lg.Gradients, l: int) -> float:
    w = g.weights[l]
    assert isinstance(w, lg.LogArray)
    return float(w.log10().max())


def _demo_net(depth: int, width: int, batch: int, seed: int) -> tuple[lg.Network, np.ndarray]:
    """The demo's network, drawn one layer at a time (the CLI draws all layers at once)."""
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((width, width)) for _ in range(depth)]
    return lg.Network(ws, None, "sigmoid"), rng.standard_normal((batch, width))


def test_default_demo_json_matches_backward(capsys: pytest.CaptureFixture[str]) -> None:
    d = run_json(capsys, "--json")
    depth, width, batch = d["depth"], d["width"], d["batch"]
    assert (depth, width, batch, d["activation"], d["loss"]) == (2000, 8, 4, "sigmoid", "mse")
    net, x = _demo_net(depth, width, batch, 0)
    y = np.zeros((batch, width))
    g = net.backward(x, y, loss="mse")
    g64 = net.backward(x, y, loss="mse", precision="float64")
    ext = np.asarray(d["max_abs_grad_log10"])
    f64 = np.asarray(d["max_abs_grad_float64"])
    assert ext.shape == f64.shape == (depth,)
    for l in (0, 1, 777, depth - 1):
        assert ext[l] == _max_log10(g, l)  # the same pass and the same log10: the same bits
        assert f64[l] == np.abs(np.asarray(g64.weights[l])).max()
    assert ext[0] < -308  # the point of the demo: far below float64's range ...
    assert f64[0] == 0.0  # ... where float64 says 0.0
    zero = [l for l in range(depth) if not np.any(np.asarray(g64.weights[l]))]
    assert d["float64_zero_layers"] == len(zero) > 0
    assert d["min_log10"] == float(ext.min())


def test_default_demo_text(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli(capsys, "--plain", "--depth", "1500", "--seed", "2")
    assert rc == 0 and err == ""
    net, x = _demo_net(1500, 8, 4, 2)
    g = net.backward(x, np.zeros((4, 8)), loss="mse")
    g64 = net.backward(x, np.zeros((4, 8)), loss="mse", precision="float64")
    n_zero = sum(not np.any(np.asarray(g64.weights[l])) for l in range(1500))
    assert f"float64 reports exactly 0.0 for {n_zero} of 1500 layers" in out
    row0 = next(line.split() for line in out.splitlines() if line.split()[:1] == ["0"])
    assert float(row0[2]) == pytest.approx(_max_log10(g, 0), abs=0.006)
    assert row0[3] == "0"
    assert "┃" not in out  # --plain: no rich box drawing


def test_default_demo_against_mpmath(capsys: pytest.CaptureFixture[str]) -> None:
    """Width 2, batch 1: the first layer's largest |dL/dW| from an mpmath backprop."""
    depth = 1200
    d = run_json(capsys, "--json", "--depth", str(depth), "--width", "2", "--batch", "1", "--seed", "5")
    rng = np.random.default_rng(5)
    ws = rng.standard_normal((depth, 2, 2))
    x = rng.standard_normal((1, 2))
    with mpmath.workprec(80):
        a = [mpmath.mpf(float(v)) for v in x[0]]
        acts = [a]
        derivs = []
        for W in ws:
            z = [sum(mpmath.mpf(float(W[i, j])) * a[j] for j in range(2)) for i in range(2)]
            t = [mpmath.exp(-abs(v)) for v in z]
            a = [(1 / (1 + ti) if zi >= 0 else ti / (1 + ti)) for zi, ti in zip(z, t)]
            derivs.append([ti / (1 + ti) ** 2 for ti in t])
            acts.append(a)
        delta = [2 * v / 2 for v in a]  # mse = mean over 2 outputs of (a - 0)^2
        for l in range(depth - 1, -1, -1):
            delta = [delta[i] * derivs[l][i] for i in range(2)]
            if l == 0:
                break
            delta = [sum(mpmath.mpf(float(ws[l][i, j])) * delta[i] for i in range(2)) for j in range(2)]
        dw0 = max(abs(delta[i] * acts[0][j]) for i in range(2) for j in range(2))
        ref = float(mpmath.log10(dw0))
    assert ref < -308
    # Per layer: a 2-term dot product (2 u) and sigmoid' evaluated in log space (4 u),
    # times 2 for the forward pass's errors carried into f'(z): 12 u a layer.
    assert abs(d["max_abs_grad_log10"][0] - ref) <= log10_tol(ref, 12 * depth)
    assert d["max_abs_grad_float64"][0] == 0.0


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------


def _numpy_tanh_mse(ws: list[np.ndarray], bs: list[np.ndarray], x: np.ndarray, y: np.ndarray
                    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Plain float64 backprop of a tanh chain with mean-squared-error loss."""
    a, zs = [x], []
    for W, b in zip(ws, bs):
        zs.append(a[-1] @ W.T + b)
        a.append(np.tanh(zs[-1]))
    d = 2.0 * (a[-1] - y) / y.size
    gw: list[np.ndarray] = [np.empty(0)] * len(ws)
    gb: list[np.ndarray] = [np.empty(0)] * len(ws)
    for l in range(len(ws) - 1, -1, -1):
        d = d * (1.0 - np.tanh(zs[l]) ** 2)
        gw[l], gb[l] = d.T @ a[l], d.sum(axis=0)
        d = d @ ws[l]
    return gw, gb


def test_report_json_from_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    widths = [5, 7, 6, 6, 4, 3]
    ws = [rng.standard_normal((o, i)) / math.sqrt(i) for i, o in zip(widths[:-1], widths[1:])]
    bs = [0.1 * rng.standard_normal(o) for o in widths[1:]]
    net = lg.Network(ws, bs, "tanh")
    x, y = rng.standard_normal((9, 5)), rng.standard_normal((9, 3))
    net.save(tmp_path / "net.npz")
    np.savez(tmp_path / "data.npz", x=x, y=y)
    d = run_json(capsys, "report", "--network", str(tmp_path / "net.npz"), "--data", str(tmp_path / "data.npz"),
                 "--json", "--lr", "0.01")
    direct = report(net, x, y, loss="mse", lr=0.01)
    # the command line and the API run the same computation: the same bits
    np.testing.assert_array_equal(d["layers"]["grad_norm_w"], direct.grad_norm_w)
    np.testing.assert_array_equal(d["layers"]["grad_max"], direct.grad_max)
    assert d["slope"] == direct.slope
    assert d["verdict"] == direct.verdict
    assert d["widths"] == widths and d["batch"] == 9 and d["lr"] == 0.01
    gw, gb = _numpy_tanh_mse(ws, bs, x, y)  # independent of loggrad altogether
    # Two float64 backprops of a 5-layer tanh chain (width <= 7, batch 9), each with
    # about (n + batch + 4) u a layer, and a norm over <= 49 terms: 200 u in all.
    assert_log10_close(d["layers"]["grad_norm_w"], [math.log10(np.linalg.norm(g)) for g in gw], 200, "|dW|")
    assert_log10_close(d["layers"]["grad_norm_b"], [math.log10(np.linalg.norm(g)) for g in gb], 200, "|db|")
    assert_log10_close(d["layers"]["grad_max"], [math.log10(np.abs(g).max()) for g in gw], 200, "max|dw|")


def test_report_flags_match_sweep_row(capsys: pytest.CaptureFixture[str]) -> None:
    """The flag-built network and random batch are those of the sweep for the same configuration."""
    from loggrad.sweep import sweep

    d = run_json(capsys, "report", "--depth", "12", "--width", "6", "--activation", "tanh", "--init",
                 "lecun_normal", "--gain", "1.5", "--seed", "3", "--batch", "4", "--json")
    row = sweep(depths=12, widths=6, activations="tanh", inits="lecun_normal", gains=1.5, seeds=3, batch=4,
                n_jobs=1, progress=False)[0]
    assert d["slope"] == row["slope"]  # the same network and batch: the same bits
    assert d["layers"]["grad_norm_w"][0] == row["log10_grad_norm_first"]
    assert d["verdict"] == row["verdict"]


def test_report_text_table_and_flag_order(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--depth", "20", "--width", "6", "--activation", "sigmoid", "--init", "normal", "--batch", "3"]
    after = run_json(capsys, "report", *args, "--json")
    before = run_json(capsys, "--json", "report", *args)
    assert after == before
    rc, out, _ = run_cli(capsys, "report", *args, "--plain", "--rows", "0")
    assert rc == 0
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1]
             and line.split()[0].isdigit()}
    assert sorted(int(k) for k in lines) == list(range(20))  # --rows 0: every layer
    head = out.splitlines()[0].replace("log10 rms a", "log10_rms_a").replace("mean log10 f'", "f'").split()
    col = head.index("log10|dW|")
    for l in (0, 7, 19):
        assert float(lines[str(l)][col]) == pytest.approx(after["layers"]["grad_norm_w"][l], abs=6e-4)
    assert f"verdict: {after['verdict']}" in out


def test_report_mixed_activations_and_widths(capsys: pytest.CaptureFixture[str]) -> None:
    d = run_json(capsys, "report", "--widths", "4,9,3", "--activation", "relu,tanh", "--init", "he_normal",
                 "--json")
    assert d["widths"] == [4, 9, 3] and d["activations"] == ["relu", "tanh"]


# ---------------------------------------------------------------------------
# spectrum, sweep, demo
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("c", [1.1, 0.5])
def test_spectrum_of_scaled_orthogonal_chain(capsys: pytest.CaptureFixture[str], tmp_path: Path, c: float) -> None:
    """J = prod c*Q_l: every singular value is c^L exactly."""
    rng = np.random.default_rng(4)
    qs = [c * np.linalg.qr(rng.standard_normal((5, 5)))[0] for _ in range(300)]
    lg.Network(qs, None, "identity").save(tmp_path / "q.npz")
    d = run_json(capsys, "spectrum", "--network", str(tmp_path / "q.npz"), "--json")
    # Q from numpy's QR is orthogonal to about width u; with the product and the
    # re-orthonormalisation, (3 width + 4) u a layer = 19 u, over 300 layers.
    want = float(300 * mpmath.log10(mpmath.mpf(c)))
    assert_log10_close(d["log10_singular_values"], [want] * 5, 19 * 300, "log10 singular values")
    np.testing.assert_allclose(d["lyapunov"], [math.log(c)] * 5, rtol=0, atol=19 * 2.0**-53 + 4 * math.ulp(math.log(c)))
    assert d["k"] == 5 and d["depth"] == 300


def test_spectrum_matches_api(capsys: pytest.CaptureFixture[str]) -> None:
    from loggrad.spectrum import spectrum

    d = run_json(capsys, "spectrum", "--depth", "40", "--width", "6", "--seed", "2", "-k", "3", "--json")
    net = cli._build([6] * 41, "tanh", "lecun_normal", 2, None)
    x = np.random.default_rng([2, 1]).standard_normal((8, 6))[0]  # the first input of the random batch
    s = spectrum(net, x, k=3)
    np.testing.assert_array_equal(d["lyapunov"], s.lyapunov)  # the same computation: the same bits


def test_sweep_json(capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys, "sweep", "--depths", "4,9", "--widths", "5", "--activations", "tanh,relu",
                    "--inits", "he_normal", "--seeds", "0", "--jobs", "1", "--json")
    assert [(r["depth"], r["activation"]) for r in rows] == [(4, "tanh"), (4, "relu"), (9, "tanh"), (9, "relu")]
    for r in rows:
        net = cli._build([5] * (r["depth"] + 1), r["activation"], "he_normal", 0, 1.0)
        rng = np.random.default_rng([0, 1])  # make_batch: x then y from one stream
        x = rng.standard_normal((8, 5))
        y = rng.standard_normal((8, 5))
        assert r["log10_grad_norm_first"] == float(report(net, x, y).grad_norm_w[0])


def test_demo_list_is_dynamic(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from loggrad import demos

    def extra(out: Any = None) -> dict[str, Any]:
        """A demo added later."""
        (out or print)("hello")
        return {"v": 1.0}

    monkeypatch.setitem(demos.DEMOS, "zz_added", extra)
    rc, out, _ = run_cli(capsys, "demo")
    assert rc == 0
    for name in demos.DEMOS:
        assert name in out
    assert run_json(capsys, "demo", "zz_added", "--json") == {"zz_added": {"output": ["hello"], "result": {"v": 1.0}}}


def test_demo_chain_rule_json(capsys: pytest.CaptureFixture[str]) -> None:
    d = run_json(capsys, "demo", "chain_rule", "--json")["chain_rule"]
    factors = [0.1, 0.001, 0.00025]
    with mpmath.workprec(200):  # the demo's 150-layer chain of the float64 factors, exactly
        expected = float(mpmath.log10(mpmath.fprod(mpmath.mpf(factors[i % 3]) for i in range(150))))
    # one rounding per product: 150 u
    assert abs(d["result"]["grad"]["log10"] - expected) <= log10_tol(expected, 150)
    assert d["result"]["grad_float64"] == 0.0
    assert any("chain rule" in line for line in d["output"])


# ---------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------

_HEADERS = {".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF-"}


def _check_image(path: Path) -> None:
    data = path.read_bytes()
    assert len(data) > 1000
    if path.suffix == ".svg":
        assert b"<svg" in data[:2000]
    else:
        assert data.startswith(_HEADERS[path.suffix])


@pytest.mark.parametrize("argv,suffix", [
    (["--depth", "300"], ".png"),
    (["report", "--depth", "30", "--width", "6"], ".svg"),
    (["report", "--depth", "30", "--width", "6", "--activation", "sigmoid"], ".png"),
    (["spectrum", "--depth", "30", "--width", "4"], ".pdf"),
    (["sweep", "--depths", "3,6", "--widths", "4", "--activations", "tanh", "--inits", "lecun_normal", "--jobs", "1"],
     ".png"),
])
def test_plot_files(capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], suffix: str) -> None:
    path = tmp_path / f"fig{suffix}"
    rc, _, err = run_cli(capsys, *argv, "--plot", str(path))
    assert rc == 0, err
    _check_image(path)


def test_plot_without_matplotlib(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    rc, _, err = run_cli(capsys, "report", "--depth", "5", "--plot", str(tmp_path / "a.png"))
    assert rc == 1
    assert err.startswith("loggrad: error: --plot needs matplotlib") and err.count("\n") == 1
    assert not (tmp_path / "a.png").exists()


# ---------------------------------------------------------------------------
# errors and exit codes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("argv,fragment", [
    (["--activation", "nope"], "unknown activation 'nope'"),
    (["--depth", "-3"], "--depth must be a positive integer"),
    (["report", "--depth", "-1"], "--depth must be a positive integer"),
    (["report", "--activation", "sigmod"], "unknown activation 'sigmod'"),
    (["report", "--depth", "3", "--activation", "relu,tanh"], "2 names for 3 layers"),
    (["report", "--loss", "hinge"], "unknown loss 'hinge'"),
    (["report", "--network", "/no/such/net.npz"], "no such file"),
    (["report", "--data", "/no/such/data.npz", "--depth", "3"], "no such file"),
    (["report", "--init", "nonsense", "--depth", "3"], "nonsense"),
    (["report", "--widths", "4,x"], "--widths must be comma-separated integers"),
    (["report", "--widths", "4,5", "--depth", "3"], "cannot be combined"),
    (["report", "--lr", "-1"], "--lr must be a positive number"),
    (["report", "--plot", "fig.gif"], "must end in .png, .svg, .pdf"),
    (["report", "--plot", "/no/such/folder/fig.png"], "no such folder"),
    (["spectrum", "--depth", "3", "--width", "4", "-k", "9"], "-k must be between 1 and"),
    (["sweep", "--depths", "3,x"], "--depths must be a comma-separated list"),
    (["sweep", "--depths", "3", "--inits", "nonsense"], "nonsense"),
    (["demo", "no_such_demo"], "unknown demo 'no_such_demo'"),
])
def test_bad_values_exit_2_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str) -> None:
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2
    assert err.startswith("loggrad: error: ") and err.count("\n") == 1, err
    assert fragment in err


def test_network_file_conflicts_and_bad_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lg.Network([np.eye(3)], None, "tanh").save(tmp_path / "n.npz")
    rc, _, err = run_cli(capsys, "report", "--network", str(tmp_path / "n.npz"), "--depth", "4")
    assert rc == 2 and "--network FILE cannot be combined with --depth" in err
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    rc, _, err = run_cli(capsys, "report", "--network", str(tmp_path / "junk.npz"))
    assert rc == 2 and err.startswith("loggrad: error: --network") and err.count("\n") == 1
    np.savez(tmp_path / "d.npz", x=np.ones((2, 4)))
    rc, _, err = run_cli(capsys, "report", "--network", str(tmp_path / "n.npz"), "--data", str(tmp_path / "d.npz"))
    assert rc == 2 and "x must have shape (batch, 3)" in err


@pytest.mark.parametrize("argv", [["report", "--bogus"], ["report", "--depth", "abc"], ["nosuchcommand"]])
def test_argparse_errors_exit_2_with_usage(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2
    assert "usage: loggrad" in err and "error:" in err and "Traceback" not in err


def test_runtime_error_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """sigmoid'(1e18) = e^-1e18 is beyond the int64 exponent: ExponentRangeError -> exit 1, one line."""
    lg.Network([np.array([[1e18]])], [np.zeros(1)], "sigmoid").save(tmp_path / "big.npz")
    np.savez(tmp_path / "x.npz", x=np.ones((1, 1)), y=np.zeros((1, 1)))
    rc, out, err = run_cli(capsys, "report", "--network", str(tmp_path / "big.npz"), "--data", str(tmp_path / "x.npz"))
    assert rc == 1 and out == ""
    assert err.startswith("loggrad: error: out of the extended exponent range") and err.count("\n") == 1


def test_keyboard_interrupt_130(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_main_demo", interrupted)
    rc, _, err = run_cli(capsys)
    assert rc == 130 and err == "loggrad: error: interrupted\n"


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_cli(capsys, "--version")
    assert rc == 0 and out.strip() == f"loggrad {lg.__version__}"
    rc, out, _ = run_cli(capsys, "--help")
    assert rc == 0
    for cmd in ("report", "spectrum", "sweep", "demo", "bench"):
        assert cmd in out
    rc, out, _ = run_cli(capsys, "report", "--help")
    assert rc == 0 and "--network FILE" in out and "--plot FILE" in out


# ---------------------------------------------------------------------------
# bench forwarding
# ---------------------------------------------------------------------------


def test_bench_forwards_arguments(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        seen.append(argv)
        return 3

    fake = types.ModuleType("loggrad.bench")
    fake.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "loggrad.bench", fake)
    assert cli.main(["bench", "--quick", "-k", "chain", "--help"]) == 3
    assert cli.main(["--plain", "bench", "x"]) == 3
    assert cli.main(["bench"]) == 3
    assert seen == [["--quick", "-k", "chain", "--help"], ["x"], []]


def test_bench_module_missing(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "loggrad.bench", None)
    rc, _, err = run_cli(capsys, "bench", "--quick")
    assert rc == 1
    assert err == "loggrad: error: the benchmark runner (loggrad.bench) is not part of this installation\n"


def test_bench_rounds_keep_each_engines_best_median(capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bench = importlib.import_module("loggrad.bench")
    monkeypatch.setattr(bench, "SETTLE_S", 0.0)
    monkeypatch.setattr(bench, "matmul_peak", lambda: {"peak": 10.0})
    calls: list[int] = []
    real = bench.time_call

    def counted(fn, min_time=0.3):  # type: ignore[no-untyped-def]
        calls.append(1)
        st = real(fn, min_time=min_time)
        st["median"] = float(len(calls))  # later rounds look slower: the first must be kept
        return st

    monkeypatch.setattr(bench, "time_call", counted)
    engines = "loggrad-extended,loggrad-float64,numpy"
    out_json = tmp_path / "b.json"
    assert bench.main(["--depth", "3", "--width", "4", "--batch", "1", "--engines", engines,
                       "--rounds", "2", "--min-time", "0.001", "--quiet", "--json", str(out_json)]) == 0
    assert len(calls) == 2 * 3  # every engine, every round
    kept = {b["param"]: b["stats"]["median"] for b in json.loads(out_json.read_text())["benchmarks"]}
    assert kept == {"loggrad-extended": 1.0, "loggrad-float64": 2.0, "numpy": 3.0}  # round one's
    out = capsys.readouterr().out
    assert "| 3 | 4 | 1 | tanh |" in out
    # where the numbers come from, first line of the table: CPUs and the BLAS that ran
    machine = next(line for line in out.splitlines() if line.startswith("machine: "))
    assert f"{os.cpu_count()} CPUs" in machine and "core " in machine and "peak 10.0 GFLOP/s" in machine
    assert bench.main(["--rounds", "0"]) == 2
    assert "--rounds must be >= 1" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs CPU affinity (Linux) and two CPUs")
def test_bench_threads_child_is_kept_on_that_many_cpus() -> None:
    # JAX's CPU client keeps ~1.9 cores busy at intra_op_parallelism_threads=1: the
    # child of --threads n runs on n CPUs, and so does every thread it starts.
    bench = importlib.import_module("loggrad.bench")
    pin = bench._cpu_pinning(1)
    assert pin is not None
    code = ("import os, threading; "
            "t = threading.Thread(target=lambda: print(len(os.sched_getaffinity(0)))); t.start(); t.join()")
    p = subprocess.run([sys.executable, "-c", code], preexec_fn=pin, capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "1"
    assert bench._cpu_pinning(len(os.sched_getaffinity(0))) is None  # all of them: nothing to do


# ---------------------------------------------------------------------------
# as a subprocess: python -m loggrad
# ---------------------------------------------------------------------------


def test_subprocess_version_and_report() -> None:
    p = run_sub("--version")
    assert p.returncode == 0 and p.stdout.strip() == f"loggrad {lg.__version__}"
    p = run_sub("report", "--depth", "15", "--width", "5", "--activation", "sigmoid", "--init", "normal", "--json")
    assert p.returncode == 0, p.stderr
    d = _dec(json.loads(p.stdout))
    net = cli._build([5] * 16, "sigmoid", "normal", 0, None)
    rng = np.random.default_rng([0, 1])
    x = rng.standard_normal((8, 5))
    y = rng.standard_normal((8, 5))
    np.testing.assert_array_equal(d["layers"]["grad_norm_w"], report(net, x, y, lr=1e-3).grad_norm_w)


def test_subprocess_bad_input() -> None:
    p = run_sub("report", "--activation", "nope")
    assert p.returncode == 2
    assert p.stderr.startswith("loggrad: error: unknown activation") and p.stderr.count("\n") == 1
    p = run_sub("report", "--depth", "abc")
    assert p.returncode == 2 and "usage:" in p.stderr and "Traceback" not in p.stderr


def test_subprocess_closed_pipe() -> None:
    """The reader goes away (`loggrad ... | head -1`): no BrokenPipeError traceback."""
    p = subprocess.Popen([sys.executable, "-m", "loggrad", "--json", "--depth", "3000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.read(10)
    p.stdout.close()
    err = p.stderr.read().decode()
    rc = p.wait(timeout=300)
    assert rc == 141 and err == ""


@pytest.mark.skipif(not os.path.exists("/bin/sh"), reason="needs a POSIX shell")
def test_subprocess_head_pipe() -> None:
    cmd = f"'{sys.executable}' -m loggrad --json --depth 4000 | head -1"
    p = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert p.stdout == "{\n"
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr and p.stderr == ""


def test_sweep_failed_configurations_exit_1(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows the sweep records as failed are shown, and the exit status says so."""
    sw = importlib.import_module("loggrad.sweep")  # the module (lg.sweep is the function)

    real = sw.sweep

    def one_fails(**kw: Any) -> list[dict[str, Any]]:
        rows = real(**kw)
        rows[-1] = dict(rows[-1], verdict="error", error="ExponentRangeError: beyond the range")
        return rows

    monkeypatch.setattr(sw, "sweep", one_fails)
    rc, out, err = run_cli(capsys, "sweep", "--depths", "3,4", "--widths", "4", "--activations", "tanh",
                           "--inits", "lecun_normal", "--jobs", "1", "--plain")
    assert rc == 1
    assert "error" in out.splitlines()[-1]
    assert err == "loggrad: error: 1 of 2 configurations failed; first: ExponentRangeError: beyond the range\n"


# ---------------------------------------------------------------------------
# Residual networks: --residual S (report, spectrum), --residuals (sweep)
# ---------------------------------------------------------------------------


def test_report_residual_flag_builds_the_residual_net(capsys: pytest.CaptureFixture[str]) -> None:
    d = run_json(capsys, "report", "--depth", "30", "--width", "6", "--activation", "tanh", "--seed", "2",
                 "--batch", "3", "--residual", "0.25", "--json")
    net = lg.Network.build([6] * 31, "tanh", init="lecun_normal", seed=2, residual=0.25)
    assert net.residual == [0.25] * 30
    rng = np.random.default_rng([2, 1])
    x, y = rng.standard_normal((3, 6)), rng.standard_normal((3, 6))
    rep = report(net, x, y)
    assert d["layers"]["grad_norm_w"] == rep.grad_norm_w.tolist()  # the same network and batch: the same bits
    plain = run_json(capsys, "report", "--depth", "30", "--width", "6", "--activation", "tanh", "--seed", "2",
                     "--batch", "3", "--json")
    assert plain["layers"]["grad_norm_w"] != d["layers"]["grad_norm_w"]


def test_spectrum_residual_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """--residual S gives the spectrum of the residual network (Jacobian I + s W^T diag(f')) built with
    the same weights as without the flag."""
    from loggrad.spectrum import spectrum

    d = run_json(capsys, "spectrum", "--depth", "25", "--width", "5", "--seed", "1", "--residual", "0.5",
                 "--activation", "tanh", "--json")
    net = lg.Network.build([5] * 26, "tanh", init="lecun_normal", seed=1, residual=0.5)
    x = np.random.default_rng([1, 1]).standard_normal((8, 5))[0]
    s = spectrum(net, x)
    np.testing.assert_array_equal(d["lyapunov"], s.lyapunov)
    p = run_json(capsys, "spectrum", "--depth", "25", "--width", "5", "--seed", "1", "--activation", "tanh",
                 "--json")
    assert p["lyapunov"] != d["lyapunov"]


@pytest.mark.parametrize("argv,fragment", [
    (["report", "--depth", "3", "--residual", "nan"], "--residual must be a finite number"),
    (["report", "--depth", "3", "--residual", "inf"], "--residual must be a finite number"),
    (["spectrum", "--depth", "3", "--residual=-inf"], "--residual must be a finite number"),
    (["sweep", "--depths", "3", "--residuals", "0.1,x"], "--residuals must be a comma-separated list"),
    (["sweep", "--depths", "3", "--residuals", "nan"], "--residuals: residual must be finite"),
])
def test_bad_residual_exit_2_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str) -> None:
    rc, _, err = run_cli(capsys, *argv)
    assert rc == 2
    assert err.startswith("loggrad: error: ") and err.count("\n") == 1, err
    assert fragment in err


def test_residual_flag_not_a_number_and_with_network_file(capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path) -> None:
    rc, _, err = run_cli(capsys, "report", "--residual", "abc")
    assert rc == 2 and "usage: loggrad" in err and "--residual" in err and "Traceback" not in err
    lg.Network([np.eye(3)], None, "tanh").save(tmp_path / "n.npz")
    rc, _, err = run_cli(capsys, "report", "--network", str(tmp_path / "n.npz"), "--residual", "0.5")
    assert rc == 2 and "--network FILE cannot be combined with --residual" in err


def test_residual_flag_on_non_square_widths(capsys: pytest.CaptureFixture[str]) -> None:
    """As Network.build(residual=s): the square layers are residual, the projections plain."""
    d = run_json(capsys, "report", "--widths", "3,5,5,2", "--residual", "0.5", "--json")
    net = lg.Network.build([3, 5, 5, 2], "tanh", init="lecun_normal", seed=0, residual=0.5)
    assert net.residual == [None, 0.5, None]
    rng = np.random.default_rng([0, 1])
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 2))
    assert d["layers"]["grad_norm_w"] == report(net, x, y).grad_norm_w.tolist()


def test_sweep_residuals(capsys: pytest.CaptureFixture[str]) -> None:
    from loggrad.sweep import sweep

    rows = run_json(capsys, "sweep", "--depths", "6", "--widths", "4", "--activations", "tanh", "--inits",
                    "lecun_normal", "--residuals", "none,0.5", "--jobs", "1", "--json")
    assert [r["residual"] for r in rows] == [None, 0.5]
    want = sweep(depths=6, widths=4, activations="tanh", inits="lecun_normal", residuals=[None, 0.5], batch=8,
                 n_jobs=1, progress=False)
    assert [r["log10_grad_norm_first"] for r in rows] == [r["log10_grad_norm_first"] for r in want]
    assert rows[0]["log10_grad_norm_first"] != rows[1]["log10_grad_norm_first"]
    rc, out, _ = run_cli(capsys, "sweep", "--depths", "6", "--widths", "4", "--activations", "tanh",
                         "--inits", "lecun_normal", "--residual", "0.5", "--jobs", "1", "--plain")
    assert rc == 0 and "residual" in out.splitlines()[0]
    rc, out, _ = run_cli(capsys, "sweep", "--depths", "6", "--widths", "4", "--activations", "tanh",
                         "--inits", "lecun_normal", "--jobs", "1", "--plain")
    assert rc == 0 and "residual" not in out.splitlines()[0]
