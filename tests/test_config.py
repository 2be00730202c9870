"""Engine settings from the environment: invalid values warn at import, naming what is valid."""

import os
import subprocess
import sys

import pytest

from loggrad._config import SIMD_VALUES, check_environment


@pytest.mark.parametrize("value", ["1", "4", "16", " 8", "+3", "2147483647"])
def test_valid_thread_counts_are_quiet(value, recwarn):
    assert check_environment({"LOGGRAD_NUM_THREADS": value}) == []
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize(
    "value, used",
    [("abc", "use 1 thread"), ("0", "use 1 thread"), ("-3", "use 1 thread"), ("4abc", "use 4 threads"),
     ("2.5", "use 2 threads"), ("99999999999", "too large"), ("four", "use 1 thread")],
)
def test_invalid_thread_counts_warn(value, used):
    with pytest.warns(RuntimeWarning, match="LOGGRAD_NUM_THREADS") as rec:
        msgs = check_environment({"LOGGRAD_NUM_THREADS": value})
    assert len(msgs) == 1 and repr(value) in msgs[0] and used in msgs[0] and "positive integer" in msgs[0]
    assert str(rec[0].message) == msgs[0]


def test_simd_values():
    for v in SIMD_VALUES + ("",):
        assert check_environment({"LOGGRAD_SIMD": v}) == []
    for bad in ("avx512", "AVX2", "fast", "avx2 "):
        with pytest.warns(RuntimeWarning, match="LOGGRAD_SIMD"):
            (msg,) = check_environment({"LOGGRAD_SIMD": bad})
        assert repr(bad) in msg and "baseline, sse2, avx2" in msg


def test_engine_accepts_exactly_the_simd_names():
    """The names the Python check accepts are the ones the engine compares against."""
    src = os.path.join(os.path.dirname(__file__), os.pardir, "cpp", "src", "simd.cpp")
    if not os.path.exists(src):
        pytest.skip("engine sources not present")
    text = open(src).read()
    import re

    names = set(re.findall(r'strcmp\(env, "([^"]+)"\)', text))
    assert names == set(SIMD_VALUES)


def test_warning_at_import():
    env = dict(os.environ, LOGGRAD_NUM_THREADS="lots", LOGGRAD_SIMD="avx9000")
    r = subprocess.run([sys.executable, "-c", "import loggrad"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0
    assert "RuntimeWarning: LOGGRAD_NUM_THREADS='lots'" in r.stderr
    assert "RuntimeWarning: LOGGRAD_SIMD='avx9000'" in r.stderr
    env = dict(os.environ, LOGGRAD_NUM_THREADS="2", LOGGRAD_SIMD="baseline")
    r = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", "import loggrad"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
