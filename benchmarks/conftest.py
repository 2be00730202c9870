"""Options of the benchmark suite.

    --bench-grid=quick   the corners of the grid that decide the targets (default; CI runs
                         these once each with --benchmark-disable, as correctness checks)
    --bench-grid=full    depth {10..10000} x width {4..1024} x batch {1,64,256} x {tanh, relu}
                         within loggrad.bench's limits (a few seconds and 24 GiB per pass)
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))


def pytest_addoption(parser):
    parser.addoption("--bench-grid", choices=("quick", "full"), default="quick",
                     help="benchmark grid: quick (default) or full")
