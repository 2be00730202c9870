"""Command line: ``loggrad`` / ``python -m loggrad``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from . import __version__
from ._logarray import LogArray
from .network import ACTIVATIONS, LOSSES, Network


def sigmoid_chain_demo(depth: int = 2000, width: int = 8, batch: int = 4, seed: int = 0,
                       activation: str = "sigmoid", loss: str = "mse") -> dict[str, object]:
    """A deep chain with N(0, 1) weights: the first layer's gradient, exact and in float64.

    Returns the per-layer largest |dL/dW| (log10) from both paths so callers
    (and tests) can check what is printed.
    """
    rng = np.random.default_rng(seed)
    ws = [rng.standard_normal((width, width)) for _ in range(depth)]
    net = Network(ws, None, activation)
    x = rng.standard_normal((batch, width))
    y = np.zeros((batch, width))
    g = net.backward(x, y, loss=loss)
    g64 = net.backward(x, y, loss=loss, precision="float64")
    ext = np.array([float(g.weights[l].max_abs().log10()) for l in range(depth)])
    f64 = np.array([float(np.max(np.abs(g64.weights[l]))) for l in range(depth)])
    return {"net": net, "ext_log10": ext, "f64": f64, "grad": g, "grad64": g64}


def _fmt(v: float) -> str:
    return str(LogArray.from_log10(1, v)) if np.isfinite(v) else "0."


def cmd_demo(args: argparse.Namespace) -> int:
    r = sigmoid_chain_demo(args.depth, args.width, args.batch, args.seed, args.activation, args.loss)
    ext, f64 = r["ext_log10"], r["f64"]
    assert isinstance(ext, np.ndarray) and isinstance(f64, np.ndarray)
    print(f"loggrad {__version__}: a {args.depth}-layer {args.activation} chain, width {args.width}, "
          f"N(0,1) weights, {args.loss} loss, batch {args.batch}")
    print("largest |dL/dW| of each layer, exact (loggrad) and as float64 computes it:\n")
    print(f"{'layer':>7}  {'loggrad (extended)':>20}  {'log10':>10}  {'float64':>12}")
    depth = args.depth
    shown = sorted({0, 1, depth // 10, depth // 4, depth // 2, (3 * depth) // 4, depth - 2, depth - 1} & set(range(depth)))
    for l in shown:
        print(f"{l:>7}  {_fmt(ext[l]):>20}  {ext[l]:>10.2f}  {f64[l]:>12.4g}")
    zero = np.flatnonzero(f64 == 0)
    print()
    if zero.size:
        print(f"float64 reports exactly 0.0 for layers 0..{zero.max()} ({zero.size} of {depth} layers);")
        print(f"loggrad reports the true values, down to 10^{ext.min():.1f}.")
    else:
        print("float64 stays in range for this network; try --depth 2000.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="loggrad", description="Exact gradients of deep dense networks.")
    p.add_argument("--version", action="version", version=f"loggrad {__version__}")
    sub = p.add_subparsers(dest="command")
    d = sub.add_parser("demo", help="a deep chain's first-layer gradient, exact beside float64 (default)")
    for q in (p, d):
        q.add_argument("--depth", type=int, default=2000)
        q.add_argument("--width", type=int, default=8)
        q.add_argument("--batch", type=int, default=4)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--activation", choices=sorted(set(ACTIVATIONS) | {"linear"}), default="sigmoid")
        q.add_argument("--loss", choices=LOSSES, default="mse")
    args = p.parse_args(argv)
    if args.depth < 1 or args.width < 1 or args.batch < 1:
        p.error("--depth, --width and --batch must be positive")
    return cmd_demo(args)


if __name__ == "__main__":
    sys.exit(main())
