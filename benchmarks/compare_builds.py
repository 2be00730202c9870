"""Speed of two loggrad builds side by side: each in its own interpreter (a virtual
environment with that build installed), in alternating processes, best of many runs.

    python benchmarks/compare_builds.py OLD_PYTHON NEW_PYTHON [--rounds 10] [--repeat 200] [--budget 0.3]

Prints, per configuration (depth x width x batch, tanh, mse, backward with
input_grad=False, one thread), the best time of each build and the ratio new/old.
A shared machine is noisy: alternating processes and taking the minimum of every
round keeps a drift in the machine's load from favouring either build. The
per-layer rows (a depth difference, ``d2000-1000``) take the Python call's fixed
cost out: (t(2000 layers) - t(1000 layers)) / 1000.
"""

import argparse
import json
import subprocess
import sys

CONFIGS = [(1000, 4, 1), (2000, 4, 1), (1000, 32, 1), (1000, 32, 64), (100, 256, 64)]

# Runs in the build's own interpreter: best-of-`repeat` time of one backward call per
# configuration and precision, as JSON.
WORKER = r"""
import json, sys, time
import numpy as np
import loggrad as lg
from loggrad import _core
_core.set_num_threads(1)
configs, repeat, precisions = json.loads(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
budget = float(sys.argv[4])
res = {}
for depth, width, batch in configs:
    net = lg.Network.build([width] * (depth + 1), activation="tanh", seed=0)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((batch, width)), rng.standard_normal((batch, width))
    for prec in precisions:
        for _ in range(3):
            net.backward(x, y, precision=prec, input_grad=False)
        best, spent, n = float("inf"), 0.0, 0
        while n < 5 or (n < repeat and spent < budget):  # at most `budget` seconds, at least 5 calls
            t = time.perf_counter()
            net.backward(x, y, precision=prec, input_grad=False)
            t = time.perf_counter() - t
            best, spent, n = min(best, t), spent + t, n + 1
        res[f"{depth}x{width}x{batch} {prec}"] = best
print(json.dumps(res))
"""


def run(python, configs, repeat, precisions, budget):
    out = subprocess.run([python, "-c", WORKER, json.dumps(configs), str(repeat), json.dumps(precisions), str(budget)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old", help="python of the reference build")
    p.add_argument("new", help="python of the build under test")
    p.add_argument("--rounds", type=int, default=10, help="alternating process pairs")
    p.add_argument("--repeat", type=int, default=200, help="calls per configuration and process (at most)")
    p.add_argument("--budget", type=float, default=0.3, help="seconds per configuration and process (at most)")
    p.add_argument("--precision", action="append", choices=("extended", "float64"),
                   help="precisions to measure (default: both)")
    p.add_argument("--config", action="append", metavar="DxWxB", help="configurations (default: the standard set)")
    args = p.parse_args(argv)
    precisions = args.precision or ["extended", "float64"]
    configs = [tuple(int(v) for v in c.split("x")) for c in args.config] if args.config else CONFIGS
    best = {"old": {}, "new": {}}
    for r in range(args.rounds):
        order = ("old", "new") if r % 2 == 0 else ("new", "old")
        for which in order:
            res = run(getattr(args, which), configs, args.repeat, precisions, args.budget)
            for k, v in res.items():
                best[which][k] = min(best[which].get(k, float("inf")), v)
    print(f"{'configuration':<28}{'old (ms)':>10}{'new (ms)':>10}{'new/old':>9}")
    for k in best["old"]:
        o, n = best["old"][k], best["new"][k]
        print(f"{k:<28}{o * 1e3:>10.4f}{n * 1e3:>10.4f}{n / o:>9.3f}")
    for prec in precisions:
        a, b = f"1000x4x1 {prec}", f"2000x4x1 {prec}"
        if a in best["old"] and b in best["old"]:
            o = (best["old"][b] - best["old"][a]) / 1000
            n = (best["new"][b] - best["new"][a]) / 1000
            print(f"{'per layer, 4x1 ' + prec:<28}{o * 1e9:>9.1f}n{n * 1e9:>9.1f}n{n / o:>9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
