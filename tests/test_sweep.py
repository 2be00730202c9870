"""loggrad.sweep: rows equal direct reports; threads, processes, Dask; resume."""

from __future__ import annotations

import importlib
import json
import math
import sys

import pytest

from loggrad.report import report

sw = importlib.import_module("loggrad.sweep")  # the module; lg.sweep is the function

GRID = dict(depths=[4, 60], widths=[5], activations=["tanh", "relu"], inits=["lecun_normal"],
            gains=[1.0, 2.0], seeds=[0, 1])
N_GRID = 2 * 1 * 2 * 1 * 2 * 2

SUMMARY_KEYS = ("slope", "slope_ci_low", "slope_ci_high", "slope_stderr", "total_change", "verdict",
                "log10_grad_norm_first", "log10_grad_norm_last", "f64_fail_layer", "f32_fail_layer",
                "loss_log10", "theory_slope")


def same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def strip(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def assert_rows_equal(r1, r2):
    assert len(r1) == len(r2)
    for a, b in zip(strip(r1), strip(r2)):
        assert a.keys() == b.keys()
        for k in a:
            assert same(a[k], b[k]), (k, a[k], b[k])


@pytest.fixture(scope="module")
def serial_rows():
    return sw.sweep(**GRID, n_jobs=1, progress=False, lr=1e-3)


def test_rows_equal_direct_reports(serial_rows):
    assert len(serial_rows) == N_GRID
    cfgs = sw.configurations(**GRID, lr=1e-3)
    assert [sw._key(r) for r in serial_rows] == [sw._key(c) for c in cfgs]
    for row in serial_rows:
        net = sw.build_network(row["depth"], row["width"], row["activation"], row["init"], row["gain"],
                               row["seed"], row["bias_init"])
        assert net.depth == row["depth"] and net.widths == [row["width"]] * (row["depth"] + 1)
        x, y = sw.make_batch(row["width"], row["batch"], row["loss"], row["seed"])
        summ = report(net, x, y, loss=row["loss"], lr=row["lr"]).summary()
        for k in SUMMARY_KEYS:
            assert same(row[k], summ[k]), k
        assert row["error"] is None and row["seconds"] > 0
    assert {r["verdict"] for r in serial_rows} <= {"vanishing", "exploding", "healthy"}


def test_threads_and_processes_give_the_same_rows(serial_rows):
    assert_rows_equal(sw.sweep(**GRID, n_jobs=2, progress=False, lr=1e-3), serial_rows)
    assert_rows_equal(sw.sweep(**GRID, n_jobs=2, executor="process", progress=False, lr=1e-3), serial_rows)


def test_per_layer_rows():
    rows = sw.sweep(depths=[3, 7], widths=4, activations="sigmoid", inits="lecun_normal", seeds=5,
                    per_layer=True, n_jobs=1, progress=False)
    assert len(rows) == 10
    assert [r["layer"] for r in rows] == [0, 1, 2] + list(range(7))
    net = sw.build_network(7, 4, "sigmoid", "lecun_normal", 1.0, 5)
    rep = report(net, *sw.make_batch(4, 4, "mse", 5))
    for r, rec in zip(rows[3:], rep.records()):
        assert r["depth"] == 7 and r["verdict"] == rep.verdict
        for k in ("log10_grad_norm_w", "mean_log10_act_deriv", "f64_underflow_frac"):
            assert same(r[k], rec[k])


def test_resume_skips_done_configurations(tmp_path, monkeypatch):
    path = tmp_path / "sweep.jsonl"
    calls = []
    real = sw.run_config

    def counting(cfg, per_layer=False, derivatives=True):
        calls.append(sw._key(cfg))
        return real(cfg, per_layer, derivatives)

    monkeypatch.setattr(sw, "run_config", counting)
    small = dict(GRID, depths=[4])
    first = sw.sweep(**small, n_jobs=1, progress=False, resume=path)
    assert len(calls) == N_GRID // 2 and len(path.read_text().splitlines()) == N_GRID // 2
    # an interrupted run leaves a cut line; a failed configuration is tried again
    with path.open("a") as fh:
        fh.write('{"depth": 60, "width": 5, "activ')
    calls.clear()
    full = sw.sweep(**GRID, n_jobs=2, progress=False, resume=path)
    assert len(calls) == N_GRID // 2 and all(c[0] == 60 for c in calls)
    done4 = [r for r in full if r["depth"] == 4]
    assert [r["seconds"] for r in done4] == [r["seconds"] for r in first]  # read back, not recomputed
    assert_rows_equal(done4, first)
    calls.clear()
    again = sw.sweep(**GRID, n_jobs=2, progress=False, resume=path)
    assert calls == []
    assert_rows_equal(again, full)
    # every line is strict JSON
    for line in path.read_text().splitlines()[:1] + path.read_text().splitlines()[-3:]:
        json.loads(line, parse_constant=lambda c: pytest.fail(c))


def test_errors_are_recorded_and_retried(tmp_path, monkeypatch):
    path = tmp_path / "err.jsonl"
    real = sw.run_config

    def fails_for_orthogonal(config, *a, **k):
        if config["init"] == "orthogonal":
            raise RuntimeError("no_such_luck")
        return real(config, *a, **k)

    monkeypatch.setattr(sw, "run_config", fails_for_orthogonal)
    rows = sw.sweep(3, 4, "tanh", ["lecun_normal", "orthogonal"], n_jobs=1, progress=False, resume=path)
    assert rows[0]["error"] is None
    assert rows[1]["verdict"] == "error" and "no_such_luck" in rows[1]["error"]
    assert len(sw._read_resume(path)) == 1  # the failed one will run again


def test_plain_progress_lines(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "rich", None)
    monkeypatch.setitem(sys.modules, "rich.progress", None)
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    sw.sweep([2, 3], 3, "tanh", "lecun_normal", n_jobs=1, progress=True)
    assert "sweep: 2/2 configurations done" in capsys.readouterr().err


def test_dask_needs_distributed(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r'pip install "dask\[distributed\]"'):
        sw.sweep(2, 3, "tanh", "lecun_normal", scheduler="dask", progress=False)


def test_dask_local_cluster_and_address(serial_rows):
    distributed = pytest.importorskip("distributed")
    kw = dict(processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None)
    rows = sw.sweep(**GRID, scheduler="dask", dask_kwargs=kw, progress=False, lr=1e-3)
    assert_rows_equal(rows, serial_rows)
    with distributed.LocalCluster(**kw) as cluster:
        rows = sw.sweep(**GRID, scheduler=cluster.scheduler_address, progress=False, lr=1e-3)
        assert_rows_equal(rows, serial_rows)
        with distributed.Client(cluster) as client:
            rows = sw.sweep(**dict(GRID, depths=[4]), scheduler=client, progress=False, lr=1e-3)
            assert_rows_equal(rows, serial_rows[: N_GRID // 2])
            assert client.status == "running"  # a Client passed in is left open


@pytest.mark.parametrize(
    "grid, message, cli_message",
    [
        (dict(activations=["foo"]), "activations: unknown activation 'foo'", "--activations: unknown activation 'foo'"),
        (dict(activations=["tanh", 3]), "unknown activation 3", None),
        (dict(inits=["nonsense"]), "inits: unknown initializer 'nonsense'", "--inits: unknown initializer 'nonsense'"),
        (dict(depths=[3, 0]), "depths must be positive integers, got 0", "--depths must be positive integers, got 0"),
        (dict(widths=[8.5]), "widths must be positive integers, got 8.5", None),
        (dict(seeds=[-1]), "seeds must be non-negative integers", "--seeds must be non-negative integers"),
        (dict(gains=[0.0]), "gains must be positive numbers", "--gains must be positive numbers"),
        (dict(gains=[float("nan")]), "gains must be positive numbers", "--gains must be positive numbers"),
        (dict(batch=0), "batch must be a positive integer", "--batch must be a positive integer"),
        (dict(loss="hinge"), "loss: unknown loss 'hinge'", "--loss: unknown loss 'hinge'"),
    ],
)
def test_bad_grids_refused_before_any_run_as_the_cli_refuses_them(grid, message, cli_message, monkeypatch, capsys):
    from loggrad.__main__ import main

    def never(*a, **k):
        raise AssertionError("a configuration ran")

    monkeypatch.setattr(sw, "run_config", never)
    kw = dict(depths=[3], widths=[4], activations=["tanh"], inits=["lecun_normal"], gains=[1.0], seeds=[0],
              batch=2, loss="mse")
    kw.update(grid)
    with pytest.raises(ValueError, match=message):
        sw.sweep(**kw, n_jobs=1, progress=False)
    if cli_message is None:  # not expressible on the command line
        return
    argv = ["sweep", "--json", "--jobs", "1", "--batch", str(kw["batch"]), "--loss", kw["loss"]]
    for k in ("depths", "widths", "activations", "inits", "gains", "seeds"):
        argv += [f"--{k}", ",".join(str(v) for v in kw[k])]
    assert main(argv) == 2
    assert cli_message in capsys.readouterr().err


def test_residual_is_a_swept_parameter():
    grid = dict(depths=[5], widths=[4], activations=["tanh", "relu"], inits=["lecun_normal"], seeds=[0, 1])
    rows = sw.sweep(**grid, residuals=[None, 0.1, 1.0], n_jobs=1, progress=False)
    assert len(rows) == 2 * 3 * 2
    # seeds vary fastest, then residuals
    assert [(r["activation"], r["residual"], r["seed"]) for r in rows[:6]] == [
        ("tanh", None, 0), ("tanh", None, 1), ("tanh", 0.1, 0), ("tanh", 0.1, 1), ("tanh", 1.0, 0), ("tanh", 1.0, 1)]
    for row in rows:
        net = sw.build_network(row["depth"], row["width"], row["activation"], row["init"], row["gain"],
                               row["seed"], row["bias_init"], row["residual"])
        assert net.residual == [row["residual"]] * 5
        summ = report(net, *sw.make_batch(4, row["batch"], row["loss"], row["seed"])).summary()
        for k in SUMMARY_KEYS:
            assert same(row[k], summ[k]), k
    # the same weights with and without the skip connections: different gradients
    assert rows[0]["log10_grad_norm_first"] != rows[2]["log10_grad_norm_first"]
    # the default is the plain chain, and a scalar is swept like a list of one
    assert sw.sweep(**grid, n_jobs=1, progress=False)[0]["residual"] is None
    one = sw.sweep(**grid, residuals=0.1, n_jobs=1, progress=False)
    assert_rows_equal(one, [r for r in rows if r["residual"] == 0.1])


@pytest.mark.parametrize("bad,fragment", [
    (float("nan"), "residual must be finite"), (float("inf"), "residual must be finite"),
    ("0.5", "residuals must be real numbers"), (True, "residuals must be real numbers"),
    ([0.5], "residuals must be real numbers"),
])
def test_bad_residuals_refused_before_running(bad, fragment, monkeypatch):
    monkeypatch.setattr(sw, "run_config", lambda *a, **k: pytest.fail("ran"))
    with pytest.raises(ValueError, match=fragment):
        sw.sweep(depths=3, widths=3, activations="tanh", inits="lecun_normal", residuals=[None, bad],
                 n_jobs=1, progress=False)


def test_resume_tells_residual_configurations_apart(tmp_path):
    path = tmp_path / "r.jsonl"
    grid = dict(depths=[5], widths=[4], activations=["tanh"], inits=["lecun_normal"])
    plain = sw.sweep(**grid, n_jobs=1, progress=False, resume=path)
    both = sw.sweep(**grid, residuals=[None, 0.5], n_jobs=1, progress=False, resume=path)
    assert [r["residual"] for r in both] == [None, 0.5]
    assert both[0]["seconds"] == plain[0]["seconds"]  # read back, not recomputed
    assert len(path.read_text().splitlines()) == 2
