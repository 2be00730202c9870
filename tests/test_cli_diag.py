"""The report, spectrum and demo subcommands: argument checks, labels, output to pipes and files."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from loggrad import __main__ as cli

NET = ["--depth", "30", "--width", "8", "--activation", "tanh", "--init", "lecun_normal", "--batch", "3"]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        rc = cli.main(list(argv))
    except SystemExit as e:  # argparse refusals
        rc = int(e.code)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("bad", ["-1", "0", "nan", "inf"])
def test_report_decades_must_be_positive(capsys, bad):
    rc, _, err = run(capsys, "report", *NET, "--decades", bad)
    assert rc == 2 and "--decades must be a positive number" in err


def test_report_decades_reaches_the_verdict(capsys):
    rc, out, _ = run(capsys, "report", *NET, "--decades", "0.001", "--json")
    d = json.loads(out)
    assert rc == 0 and d["decades"] == 0.001 and d["verdict"] != "healthy"


def test_demo_offers_no_plot(capsys):
    rc, out, _ = run(capsys, "demo", "--help")
    assert rc == 0 and "--plot" not in out
    rc, _, err = run(capsys, "demo", "exploding_factor", "--plot", "x.png")
    assert rc == 2 and "--plot" in err


def test_spectrum_top_k_is_not_called_the_condition_number(capsys):
    rc, out, _ = run(capsys, "spectrum", *NET, "-k", "4")
    assert rc == 0 and "condition number of J (" not in out and "sigma_1 / sigma_4" in out
    assert "at least this" in out
    rc, out, _ = run(capsys, "spectrum", *NET, "-k", "4", "--json")
    d = json.loads(out)
    assert d["condition_log10"] is None and d["spread_log10"] > 0
    rc, out, _ = run(capsys, "spectrum", *NET)  # every singular value: the condition number
    assert rc == 0 and "condition number of J (sigma_1 / sigma_8)" in out


def test_report_to_a_pipe_has_no_box_characters():
    pytest.importorskip("rich")
    p = subprocess.run([sys.executable, "-m", "loggrad", "report", *NET], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert "verdict:" in p.stdout
    assert not any(ch in p.stdout for ch in "\u2502\u2503\u2501\u2500\u250f\u2517")


def test_report_plot_has_a_residual_panel(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "r.png"
    rc, _, err = run(capsys, "report", *NET, "--plot", str(path))
    assert rc == 0, err
    assert path.stat().st_size > 1000


def test_report_optional_diagnostics(capsys):
    rc, out, err = run(capsys, "report", *NET, "--conditioning", "--low-precision", "--spectrum", "--plain")
    assert rc == 0, err
    assert "a real float32 backward pass" in out and "condition number sigma_1/sigma_n" in out
