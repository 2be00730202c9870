#!/usr/bin/env python3
"""Leak check: many forward/backward calls must not make the process grow.

    python scripts/leakcheck.py                    10,000 calls, RSS growth check
    python scripts/leakcheck.py --calls 2000       fewer calls
    python scripts/leakcheck.py --valgrind         also under valgrind (fewer calls):
                                                   no block definitely lost from
                                                   loggrad's code

The calls cycle through both precisions, a few shapes and activations, all
losses, checkpointed passes, and calls that raise at every level (Python
validation, the bindings' checks, the engine's non-finite and exponent-range
errors thrown after it allocated its buffers, the memory pre-check). After a
warm-up (the first tenth of the calls: allocator pools, thread pool, BLAS
buffers), the resident set size must not grow by more than --max-growth-mb.
Prints one JSON line with the numbers; exit status 0 when clean, 1 when not.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Any, Callable


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; else ru_maxrss as a fallback)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def make_calls() -> list[tuple[str, Callable[[], Any], type[BaseException] | None]]:
    import numpy as np

    import loggrad as lg

    rng = np.random.default_rng(0)

    def net(widths: list[int], act: str | list[str]) -> lg.Network:
        return lg.Network([rng.standard_normal((widths[i + 1], widths[i])) / np.sqrt(widths[i])
                           for i in range(len(widths) - 1)],
                          [0.1 * rng.standard_normal(w) for w in widths[1:]], act)

    deep = net([8] * 201, "tanh")
    wide = net([64, 128, 64, 10], "relu")
    one = net([3, 2], "sigmoid")
    mixed = net([5, 7, 6, 4], ["gelu", "softplus", "silu"])
    x8, y8 = rng.standard_normal((4, 8)), rng.standard_normal((4, 8))
    x64, lab = rng.standard_normal((16, 64)), rng.integers(0, 10, 16)
    x3, y2 = rng.standard_normal((2, 3)), rng.random((2, 2))
    x5 = rng.standard_normal((3, 5))
    bad_x = x8.copy()
    bad_x[1, 1] = np.nan
    poisoned = deep.copy()
    poisoned.weights[100][0, 0] = np.inf  # only the engine sees it
    out_of_range = lg.Network([np.full((1, 1), 1e200)] * 3, None, ["identity", "identity", "sigmoid"])
    huge = lg.Network([np.ones((1, 1))] * 1000, None, "identity")
    tall = np.broadcast_to(np.ones((1, 1)), (10**11, 1))
    core = lg._core
    calls: list[tuple[str, Callable[[], Any], type[BaseException] | None]] = []
    for p in ("extended", "float64"):
        calls += [
            (f"deep forward {p}", lambda p=p: deep.forward(x8, precision=p), None),
            (f"deep backward mse {p}", lambda p=p: deep.backward(x8, y8, precision=p), None),
            (f"deep backward checkpoint {p}", lambda p=p: deep.backward(x8, y8, precision=p, checkpoint=7), None),
            (f"wide backward cross_entropy {p}", lambda p=p: wide.backward(x64, lab, "cross_entropy", precision=p), None),
            (f"one backward bce {p}", lambda p=p: one.backward(x3, y2, "bce", precision=p), None),
            (f"mixed backward sum {p}", lambda p=p: mixed.backward(x5, loss="sum", precision=p), None),
            (f"single sample {p}", lambda p=p: deep.backward(x8[0], y8[0], precision=p), None),
            (f"nan input {p}", lambda p=p: deep.backward(bad_x, y8, precision=p), ValueError),
            (f"engine: inf weight {p}", lambda p=p: poisoned.backward(x8, y8, precision=p), ValueError),
            (f"bad labels {p}", lambda p=p: wide.backward(x64, lab + 10, "cross_entropy", precision=p), ValueError),
            (f"memory pre-check {p}", lambda p=p: huge.backward(tall, loss="sum", precision=p), MemoryError),
            (f"bindings: bad y {p}", lambda p=p: core.backward(deep._arch, deep.params, x8, "mse", y8[:2], None, p),
             ValueError),
            (f"bindings: labels {p}", lambda p=p: core.backward(wide._arch, wide.params, x64, "cross_entropy", None,
                                                                 lab + 10, p), ValueError),
        ]
    calls += [
        ("engine: exponent range",
         lambda: out_of_range.backward(np.ones((1, 1)), loss="sum", on_underflow="raise"), lg.ExponentRangeError),
        ("logarray arithmetic", lambda: (deep.backward(x8, y8).params * 0.5).norm(), None),
    ]
    return calls


def run(n_calls: int, max_growth_mb: float, inject_leak_kb: float = 0.0) -> dict[str, Any]:
    calls = make_calls()
    kept: list[bytearray] = []  # --inject-leak-kb: proves the check can fail
    warm = max(len(calls), n_calls // 10)
    samples: list[tuple[int, int]] = []
    start = time.perf_counter()
    base = 0
    for i in range(n_calls):
        name, fn, exc = calls[i % len(calls)]
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - checked right below
            if exc is None or not isinstance(e, exc):
                raise AssertionError(f"call {name!r} raised {type(e).__name__}: {e}") from e
        else:
            if exc is not None:
                raise AssertionError(f"call {name!r} did not raise {exc.__name__}")
        if inject_leak_kb:
            kept.append(bytearray(b"x" * int(inject_leak_kb * 1024)))
        if i + 1 == warm:
            gc.collect()
            base = rss_bytes()
        if (i + 1) % max(1, n_calls // 20) == 0:
            samples.append((i + 1, rss_bytes()))
    gc.collect()
    end = rss_bytes()
    growth = end - base
    return {
        "calls": n_calls,
        "kinds": len(calls),
        "seconds": round(time.perf_counter() - start, 2),
        "rss_after_warmup_mb": round(base / 2**20, 2),
        "rss_end_mb": round(end / 2**20, 2),
        "growth_mb": round(growth / 2**20, 3),
        "max_growth_mb": max_growth_mb,
        "rss_samples_mb": [(n, round(r / 2**20, 2)) for n, r in samples],
        "ok": growth <= max_growth_mb * 2**20,
    }


_OURS = re.compile(r"loggrad|_core\.cpython|_engine\.cpython|register_network|pybind11")


def valgrind(n_calls: int) -> dict[str, Any]:
    """Run this script under valgrind; count definitely-lost blocks whose stack shows loggrad's code."""
    vg = shutil.which("valgrind")
    if vg is None:
        return {"valgrind": "not installed", "ok": True}
    log = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"loggrad-leakcheck-{os.getpid()}.valgrind")
    env = dict(os.environ, PYTHONMALLOC="malloc")
    cmd = [vg, "--leak-check=full", "--show-leak-kinds=definite", "--num-callers=40", f"--log-file={log}",
           sys.executable, os.path.abspath(__file__), "--calls", str(n_calls), "--max-growth-mb", "1e9", "--inner"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    with open(log) as f:
        text = f.read()
    os.unlink(log)
    # loss records: "N bytes in M blocks are definitely lost in loss record i of n" + stack
    records = re.split(r"\n==\d+== \n", text)
    ours = [r for r in records if "definitely lost in loss record" in r and _OURS.search(r)]
    summary = re.search(r"definitely lost: ([\d,]+) bytes in ([\d,]+) blocks", text)
    return {
        "valgrind_calls": n_calls,
        "valgrind_seconds": round(time.perf_counter() - t, 1),
        "valgrind_exit": proc.returncode,
        "definitely_lost_total": summary.group(0) if summary else "none",
        "definitely_lost_in_loggrad": len(ours),
        "loggrad_records": [r.strip()[:2000] for r in ours[:3]],
        "ok": proc.returncode == 0 and not ours,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--max-growth-mb", type=float, default=4.0)
    ap.add_argument("--valgrind", action="store_true", help="also run under valgrind (slow: fewer calls)")
    ap.add_argument("--valgrind-calls", type=int, default=600)
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--inject-leak-kb", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.calls < 1:
        ap.error("--calls must be at least 1")
    result = run(args.calls, args.max_growth_mb, args.inject_leak_kb)
    if args.valgrind and not args.inner:
        result["valgrind"] = valgrind(args.valgrind_calls)
        result["ok"] = result["ok"] and result["valgrind"]["ok"]
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
