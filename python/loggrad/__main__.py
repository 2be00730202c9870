"""Command line: ``loggrad`` / ``python -m loggrad``.

    loggrad                      the main demo: a deep sigmoid chain, exact beside float64
    loggrad report  [network]    per-layer gradient report and verdict
    loggrad spectrum [network]   Lyapunov spectrum of the input-output Jacobian
    loggrad sweep   [grid]       report summaries over depth x width x activation x init x gain x seed
    loggrad demo    [NAME|all]   the demos of the seed notes (no NAME: list them)
    loggrad bench   [options]    the benchmark suite (pytest-benchmark) and its ratio table

A network comes from flags (--depth, --width or --widths, --activation,
--init, --gain, --seed) or from a file saved with ``Network.save``
(--network FILE). ``--json`` prints machine-readable output; ``--plot FILE``
writes a figure (matplotlib). Exit codes: 0 success, 1 a failed computation,
2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import __version__
from ._logarray import LogArray
from .network import ACTIVATIONS, LOSSES, Network


def sigmoid_chain_demo(depth: int = 2000, width: int = 8, batch: int = 4, seed: int = 0,
                       activation: str = "sigmoid", loss: str = "mse") -> dict[str, Any]:
    """A deep chain with N(0, 1) weights: every layer's gradient, exact and in float64.

    Returns the per-layer largest |dL/dW| (log10) from both paths so callers
    (and tests) can check what is printed.
    """
    rng = np.random.default_rng(seed)
    net = Network([rng.standard_normal((width, width)) for _ in range(depth)], None, activation)
    x = rng.standard_normal((batch, width))
    y = np.zeros((batch, width))
    g = net.backward(x, y, loss=loss)
    g64 = net.backward(x, y, loss=loss, precision="float64")
    starts = np.asarray([0] + list(np.cumsum([width * (width + 1)] * depth)[:-1]))
    wmask = np.tile(np.r_[np.ones(width * width, bool), np.zeros(width, bool)], depth)
    assert isinstance(g.params, LogArray)
    l10 = np.where(wmask, g.params.log10(), -np.inf)
    a64 = np.where(wmask, np.abs(np.asarray(g64.params)), 0.0)
    ext = np.maximum.reduceat(l10, starts)
    f64 = np.maximum.reduceat(a64, starts)
    return {"net": net, "ext_log10": ext, "f64": f64, "grad": g, "grad64": g64}


def _fmt(v: float) -> str:
    return str(LogArray.from_log10(1, v)) if np.isfinite(v) else "0."


def _emit_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, LogArray):
        return {"sign": o.sign().tolist(), "log10": o.log10().tolist()}
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# -- the main demo ---------------------------------------------------------------

def cmd_main_demo(args: argparse.Namespace) -> int:
    r = sigmoid_chain_demo(args.depth, args.width, args.batch, args.seed, args.activation, args.loss)
    ext, f64 = r["ext_log10"], r["f64"]
    depth = args.depth
    if args.json:
        _emit_json({"depth": depth, "width": args.width, "activation": args.activation,
                    "max_abs_grad_log10": ext, "max_abs_grad_float64": f64})
        return 0
    print(f"loggrad {__version__}: a {depth}-layer {args.activation} chain, width {args.width}, "
          f"N(0,1) weights, {args.loss} loss, batch {args.batch}")
    print("largest |dL/dW| of each layer, exact (loggrad) and as float64 computes it:\n")
    print(f"{'layer':>7}  {'loggrad (extended)':>20}  {'log10':>10}  {'float64':>12}")
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
    print("\nmore: loggrad report --help, loggrad spectrum, loggrad sweep, loggrad demo")
    if args.plot:
        _plot_demo(ext, f64, args.plot)
    return 0


def _plot_demo(ext: np.ndarray, f64: np.ndarray, path: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    layers = np.arange(len(ext))
    ax.plot(layers, ext, label="loggrad (exact)")
    with np.errstate(divide="ignore"):
        ax.plot(layers, np.log10(f64), "--", label="float64")
    ax.axhline(np.log10(np.finfo(float).tiny), color="grey", lw=0.8, ls=":", label="float64 smallest normal")
    ax.set_xlabel("layer")
    ax.set_ylabel("log10 max |dL/dW|")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise SystemExit(f"--plot needs matplotlib: pip install 'loggrad[plot]' ({e})")
    return plt


# -- networks from flags -----------------------------------------------------------

def _add_network_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("network (flags, or --network FILE)")
    g.add_argument("--network", metavar="FILE", help="a network saved with Network.save (.npz)")
    g.add_argument("--depth", type=int, default=100, help="number of layers (default 100)")
    g.add_argument("--width", type=int, default=32, help="width of every layer (default 32)")
    g.add_argument("--widths", help="comma-separated widths n_0,...,n_L (overrides --depth/--width)")
    g.add_argument("--activation", default="tanh", help=f"one of {', '.join(ACTIVATIONS)} (default tanh)")
    g.add_argument("--init", default="lecun_normal", help="initializer name (default lecun_normal)")
    g.add_argument("--gain", type=float, default=None, help="gain gamma on the initializer's scale")
    g.add_argument("--seed", type=int, default=0)
    d = p.add_argument_group("data")
    d.add_argument("--batch", type=int, default=8, help="random N(0,1) inputs (default 8)")
    d.add_argument("--loss", choices=LOSSES, default="mse")


def _network(args: argparse.Namespace) -> Network:
    if args.network:
        return Network.load(args.network)
    if args.widths:
        try:
            widths = [int(w) for w in args.widths.split(",")]
        except ValueError:
            raise ValueError(f"--widths must be comma-separated integers, got {args.widths!r}") from None
    else:
        if args.depth < 1 or args.width < 1:
            raise ValueError("--depth and --width must be positive")
        widths = [args.width] * (args.depth + 1)
    return Network.build(widths, args.activation, init=args.init, seed=args.seed, gain=args.gain)


def _data(net: Network, args: argparse.Namespace) -> tuple[np.ndarray, Any]:
    if args.batch < 1:
        raise ValueError("--batch must be positive")
    rng = np.random.default_rng(args.seed + 1)
    x = rng.standard_normal((args.batch, net.n_in))
    if args.loss == "cross_entropy":
        y: Any = rng.integers(0, net.n_out, args.batch)
    elif args.loss == "bce":
        y = rng.integers(0, 2, (args.batch, net.n_out)).astype(float)
    elif args.loss == "sum":
        y = None
    else:
        y = rng.standard_normal((args.batch, net.n_out))
    return x, y


# -- subcommands --------------------------------------------------------------------

def cmd_report(args: argparse.Namespace) -> int:
    from .report import report

    net = _network(args)
    x, y = _data(net, args)
    rep = report(net, x, y, loss=args.loss, lr=args.lr)
    if args.json:
        print(rep.to_json(indent=2))
    else:
        print(rep.table(max_rows=args.rows))
    if args.plot:
        rep.plot(args.plot)
    return 0


def cmd_spectrum(args: argparse.Namespace) -> int:
    from .spectrum import spectrum

    net = _network(args)
    x = np.random.default_rng(args.seed + 1).standard_normal(net.n_in)
    s = spectrum(net, x, k=args.k, per_layer=bool(args.plot))
    if args.json:
        _emit_json({"depth": s.depth, "lyapunov": s.lyapunov, "log10_singular_values": s.log10_singular_values})
    else:
        print(f"Lyapunov spectrum of a {net.depth}-layer {net.activations[0]} network (widths {net.widths[0]}..{net.widths[-1]})")
        print(f"{'i':>4}  {'lambda_i (ln/layer)':>20}  {'log10 sigma_i(J)':>18}")
        for i, (lam, l10) in enumerate(zip(s.lyapunov, s.log10_singular_values), 1):
            print(f"{i:>4}  {lam:>20.6f}  {l10:>18.3f}")
        print(f"\nlog10 condition number of J: {s.condition_log10:.3f}")
    if args.plot:
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(np.arange(1, s.depth + 1), s.cumulative() / np.log(10))
        ax.set_xlabel("layer")
        ax.set_ylabel("log10 sigma_i of the first l layers")
        fig.tight_layout()
        fig.savefig(args.plot)
        plt.close(fig)
    return 0


def _csv(kind: Any, text: str) -> list[Any]:
    try:
        return [kind(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"expected a comma-separated list, got {text!r}") from None


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import sweep

    rows = sweep(
        depths=_csv(int, args.depths), widths=_csv(int, args.widths), activations=_csv(str, args.activations),
        inits=_csv(str, args.inits), gains=_csv(float, args.gains), seeds=_csv(int, args.seeds),
        batch=args.batch, loss=args.loss, n_jobs=args.jobs, scheduler=args.scheduler, resume=args.resume,
        progress=not args.json,
    )
    if args.json:
        _emit_json(rows)
        return 0
    keys = [k for k in ("depth", "width", "activation", "init", "gain", "seed", "slope", "verdict", "f64_fail_from_output")
            if rows and k in rows[0]]
    print("  ".join(f"{k:>12}" for k in keys))
    for r in rows:
        print("  ".join(f"{(f'{r[k]:.4g}' if isinstance(r[k], float) else str(r[k])):>12}" for k in keys))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demos

    return demos.main(args.names)


def cmd_bench(args: argparse.Namespace) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    bench_dir = os.path.join(root, "benchmarks")
    if not os.path.isdir(bench_dir):
        print("the benchmark suite lives in the source tree (benchmarks/); run this from a checkout", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "pytest", bench_dir, "--benchmark-enable", "-q",
           f"--benchmark-json={args.output}"] + args.pytest_args
    rc = subprocess.call(cmd)
    table = os.path.join(bench_dir, "ratios.py")
    if rc == 0 and os.path.exists(table):
        rc = subprocess.call([sys.executable, table, args.output])
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="loggrad", description="Exact gradients of deep dense networks "
                                "(float64 precision, unbounded exponent).")
    p.add_argument("--version", action="version", version=f"loggrad {__version__}")
    sub = p.add_subparsers(dest="command")

    for q in (p,):
        q.add_argument("--depth", type=int, default=2000, help="demo depth (default 2000)")
        q.add_argument("--width", type=int, default=8)
        q.add_argument("--batch", type=int, default=4)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--activation", choices=sorted(set(ACTIVATIONS) | {"linear"}), default="sigmoid")
        q.add_argument("--loss", choices=LOSSES, default="mse")
        q.add_argument("--json", action="store_true", help="machine-readable output")
        q.add_argument("--plot", metavar="FILE", help="write a figure")

    r = sub.add_parser("report", help="per-layer gradient report and verdict")
    _add_network_flags(r)
    r.add_argument("--lr", type=float, default=1e-3, help="learning rate for the lost-update column")
    r.add_argument("--rows", type=int, default=16, help="layers shown in the table (0: all)")
    r.add_argument("--json", action="store_true")
    r.add_argument("--plot", metavar="FILE")
    r.set_defaults(func=cmd_report)

    s = sub.add_parser("spectrum", help="Lyapunov spectrum of the input-output Jacobian")
    _add_network_flags(s)
    s.add_argument("-k", type=int, default=None, help="number of exponents (default: all)")
    s.add_argument("--json", action="store_true")
    s.add_argument("--plot", metavar="FILE")
    s.set_defaults(func=cmd_spectrum)

    w = sub.add_parser("sweep", help="report summaries over a grid of configurations")
    w.add_argument("--depths", default="10,100")
    w.add_argument("--widths", default="32")
    w.add_argument("--activations", default="tanh,relu")
    w.add_argument("--inits", default="lecun_normal,he_normal")
    w.add_argument("--gains", default="1.0")
    w.add_argument("--seeds", default="0")
    w.add_argument("--batch", type=int, default=8)
    w.add_argument("--loss", choices=LOSSES, default="mse")
    w.add_argument("--jobs", type=int, default=None, help="parallel configurations (default: cores)")
    w.add_argument("--scheduler", default=None, help="'dask' for a local Dask cluster, or a scheduler address")
    w.add_argument("--resume", metavar="FILE", default=None, help="JSON-lines file to resume from and append to")
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=cmd_sweep)

    d = sub.add_parser("demo", help="the demos of the seed notes")
    d.add_argument("names", nargs="*", help="demo names, or 'all' (none: list them)")
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser("bench", help="run the benchmark suite and print the ratio table")
    b.add_argument("--output", default="bench.json", help="pytest-benchmark JSON output")
    b.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    b.set_defaults(func=cmd_bench)

    args = p.parse_args(argv)
    try:
        if args.command is None:
            if args.depth < 1 or args.width < 1 or args.batch < 1:
                p.error("--depth, --width and --batch must be positive")
            return cmd_main_demo(args)
        return int(args.func(args))
    except (ValueError, TypeError, OverflowError, FileNotFoundError) as e:
        print(f"loggrad {args.command or ''}: error: {e}".replace("  ", " "), file=sys.stderr)
        return 2 if isinstance(e, (ValueError, TypeError, FileNotFoundError)) else 1


if __name__ == "__main__":
    sys.exit(main())
