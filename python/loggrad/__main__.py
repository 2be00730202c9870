"""Command line: ``loggrad`` / ``python -m loggrad``.

    loggrad                       the main demo: a deep sigmoid chain, exact beside float64
    loggrad report   [network]    per-layer gradient report and verdict
    loggrad spectrum [network]    Lyapunov spectrum of the input-output Jacobian
    loggrad sweep    [grid]       report summaries over depth x width x activation x init x gain x seed
    loggrad demo     [NAME|all]   the demos of the seed notes (no NAME: list them)
    loggrad bench    [args...]    the benchmark runner (arguments go to loggrad.bench)

A network comes from flags (--depth, --width or --widths, --activation,
--init, --gain, --seed) or from a file saved with ``Network.save``
(--network FILE); its inputs are random (--batch, --seed) or come from a
.npz file (--data FILE, arrays ``x`` and optionally ``y``). The random batch
and the flag-built network are those of :mod:`loggrad.sweep` for the same
configuration, so ``loggrad report`` shows in detail what a sweep row sums up.

``--json`` prints machine-readable output (strict JSON: non-finite numbers,
such as the log10 of an exact zero, as null), ``--plot FILE`` writes a figure
(.png, .svg, .pdf; matplotlib), ``--plain`` gives plain-text tables even when
rich is installed. These three go before or after the subcommand.

Exit codes: 0 success; 1 a computation or output that failed (out of
exponent range, out of memory, a plot that could not be written, a missing
optional module); 2 bad usage (argparse's usage errors, and one-line
``loggrad: error: ...`` messages for bad values such as an unknown activation,
a negative depth or a missing file); 130 interrupted (Ctrl-C); 141 output
pipe closed by the reader (``loggrad report | head -1``), without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import io
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import __version__
from ._layout import param_count
from ._logarray import LogArray
from .network import ACTIVATIONS, LOSSES, Network

__all__ = ["main", "sigmoid_chain_demo", "UsageError"]

_FLOAT64_TINY_LOG10 = math.log10(np.finfo(np.float64).tiny)  # smallest normal, -307.65
_FLOAT32_TINY_LOG10 = math.log10(float(np.finfo(np.float32).tiny))
_ACT_NAMES = tuple(sorted(set(ACTIVATIONS) | {"linear"}))


class UsageError(Exception):
    """A bad value on the command line: one-line message, exit status 2."""


class RunError(Exception):
    """A failure the user can act on (missing optional module, failed configurations): exit status 1."""


# ---------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------


def _emit_json(obj: Any) -> None:
    from ._json import dumps

    print(dumps(obj, indent=2))  # strict JSON: non-finite numbers as null


def _use_rich(args: argparse.Namespace) -> bool:
    """rich tables only on a terminal: box characters do not belong in pipes and files."""
    if getattr(args, "plain", False):
        return False
    try:
        if not sys.stdout.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], rich: bool) -> str:
    """Right-aligned table: a rich table (no colour) when rich is True, else plain columns."""
    if rich:
        from rich.console import Console
        from rich.table import Table

        t = Table(show_lines=False)
        for h in head:
            t.add_column(h, justify="right")
        for r in rows:
            t.add_row(*r)
        buf = io.StringIO()
        Console(file=buf, width=200, color_system=None, force_terminal=False).print(t)
        return buf.getvalue().rstrip("\n")
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def _fmt_log10(v: float) -> str:
    """An extended value given by its log10, as 1.2345e-689 (0 for -inf)."""
    return str(LogArray.from_log10(1, v)) if np.isfinite(v) else "0"


_PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def _check_plot_path(path: str | None) -> None:
    """Before any computation: a known image suffix and an existing folder (usage errors)."""
    if path is None:
        return
    ext = os.path.splitext(path)[1].lower()
    if ext not in _PLOT_SUFFIXES:
        raise UsageError(f"--plot {path}: the file name must end in {', '.join(_PLOT_SUFFIXES)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"--plot {path}: no such folder {folder}")


def _figure(figsize: tuple[float, float] = (8.0, 4.5)) -> Any:
    """A matplotlib Figure (no pyplot, no display needed)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise RunError(f"--plot needs matplotlib: pip install matplotlib (or 'loggrad[plot]') ({e})") from None
    return Figure(figsize=figsize)


def _save(fig: Any, path: str) -> None:
    fig.savefig(path, bbox_inches="tight", dpi=100)


def _require_matplotlib(path: str | None) -> None:
    if path is not None:
        _figure()


# ---------------------------------------------------------------------------
# The main demo
# ---------------------------------------------------------------------------


def sigmoid_chain_demo(depth: int = 2000, width: int = 8, batch: int = 4, seed: int = 0,
                       activation: str = "sigmoid", loss: str = "mse") -> dict[str, Any]:
    """A deep chain with N(0, 1) weights and zero biases, zero targets: every layer's
    largest |dL/dW|, exact and in float64.

    Weights W_0..W_{L-1} then inputs x (batch, width) are drawn in that order
    from ``numpy.random.default_rng(seed)``. Returns the network, the
    per-layer log10 max |dL/dW_l| on the extended path (``ext_log10``) and
    max |dL/dW_l| on the float64 path (``f64``), both (depth,) arrays, so
    callers and tests can check what is printed.
    """
    rng = np.random.default_rng(seed)
    ws = rng.standard_normal((depth, width, width))  # the same stream as one draw per layer
    net = Network(list(ws), None, activation)
    x = rng.standard_normal((batch, width))
    y: np.ndarray | None = None if loss == "sum" else np.zeros((batch, width))
    if loss == "cross_entropy":
        y = np.zeros(batch, dtype=np.int64)
    g = net.backward(x, y, loss=loss)
    g64 = net.backward(x, y, loss=loss, precision="float64")
    assert isinstance(g.params, LogArray)
    # parameter block: per layer W (width*width, row-major) then b (width)
    blk = width * (width + 1)
    ext = g.params.log10().reshape(depth, blk)[:, : width * width].max(axis=1)
    f64 = np.abs(np.asarray(g64.params)).reshape(depth, blk)[:, : width * width].max(axis=1)
    return {"net": net, "x": x, "y": y, "ext_log10": ext, "f64": f64, "grad": g, "grad64": g64}


def cmd_main_demo(args: argparse.Namespace) -> int:
    for name in ("depth", "width", "batch"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name} must be a positive integer, got {getattr(args, name)}")
    act = _check_activation(args.activation)
    loss = _check_loss(args.loss)
    _check_plot_path(args.plot)
    _require_matplotlib(args.plot)
    depth, width = args.depth, args.width
    r = sigmoid_chain_demo(depth, width, args.batch, args.seed, act, loss)
    ext, f64 = r["ext_log10"], r["f64"]
    zero = np.flatnonzero((f64 == 0) & np.isfinite(ext))
    inf = np.flatnonzero(~np.isfinite(f64))
    if args.json:
        _emit_json({
            "depth": depth, "width": width, "batch": args.batch, "seed": args.seed, "activation": act,
            "loss": loss, "max_abs_grad_log10": ext, "max_abs_grad_float64": f64,
            "float64_zero_layers": int(zero.size), "float64_nonfinite_layers": int(inf.size),
            "min_log10": float(ext.min()), "max_log10": float(ext.max()),
        })
    else:
        print(f"loggrad {__version__}: a {depth}-layer {act} chain, width {width}, "
              f"N(0,1) weights, {loss} loss, batch {args.batch}")
        print("largest |dL/dW| of each layer, exact (loggrad) and as float64 computes it:\n")
        shown = sorted({0, 1, depth // 10, depth // 4, depth // 2, (3 * depth) // 4, depth - 2, depth - 1}
                       & set(range(depth)))
        rows = [[str(l), _fmt_log10(ext[l]), f"{ext[l]:.2f}", f"{f64[l]:.4g}"] for l in shown]
        print(_table(["layer", "loggrad (extended)", "log10", "float64"], rows, _use_rich(args)))
        print()
        if zero.size:
            print(f"float64 reports exactly 0.0 for {zero.size} of {depth} layers (layers {zero.min()}..{zero.max()});")
            print(f"loggrad reports the true values, down to 10^{ext.min():.1f}.")
        elif inf.size:
            print(f"float64 reports inf or nan for {inf.size} of {depth} layers; "
                  f"loggrad reports the true values, up to 10^{ext.max():.1f}.")
        else:
            print("float64 stays in range for this network; try a deeper one (--depth 2000).")
        print("\nmore: loggrad report --help, loggrad spectrum, loggrad sweep, loggrad demo")
    if args.plot:
        fig = _figure((7.0, 4.0))
        ax = fig.add_subplot()
        layers = np.arange(depth)
        ax.plot(layers, ext, label="loggrad (exact)")
        with np.errstate(divide="ignore"):
            ax.plot(layers, np.log10(f64), "--", label="float64")
        ax.axhline(_FLOAT64_TINY_LOG10, color="grey", lw=0.8, ls=":", label="float64 smallest normal")
        ax.set_xlabel("layer")
        ax.set_ylabel("log10 max |dL/dW|")
        ax.set_title(f"{depth}-layer {act} chain, width {width}")
        ax.legend()
        _save(fig, args.plot)
    return 0


# ---------------------------------------------------------------------------
# Networks and data from flags
# ---------------------------------------------------------------------------


def _check_activation(text: str, depth: int | None = None) -> Any:
    names = [t.strip() for t in str(text).split(",")]
    for n in names:
        if n not in _ACT_NAMES:
            raise UsageError(f"unknown activation {n!r}; choose from {', '.join(_ACT_NAMES)}")
    if len(names) == 1:
        return names[0]
    if depth is not None and len(names) != depth:
        raise UsageError(f"--activation lists {len(names)} names for {depth} layers (give one, or one per layer)")
    return names


def _check_loss(loss: str) -> str:
    if loss not in LOSSES:
        raise UsageError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
    return loss


def _build(widths: list[int], activation: Any, init: str, seed: int, gain: float | None,
           residual: float | None = None) -> Network:
    return Network.build(widths, activation, init=init, seed=seed, gain=gain, residual=residual)


_NET_FLAGS = ("depth", "width", "widths", "activation", "init", "gain", "residual")


def _residual_item(text: str) -> float | None:
    """One entry of --residuals: 'none' (a plain chain) or a branch scale."""
    if text.lower() in ("none", "plain"):
        return None
    return float(text)


def _network(args: argparse.Namespace) -> Network:
    from .network import check_params_fit

    if args.network is not None:
        given = [f"--{f}" for f in _NET_FLAGS if getattr(args, f) is not None]
        if given:
            raise UsageError(f"--network FILE cannot be combined with {', '.join(given)}")
        if not os.path.exists(args.network):
            raise UsageError(f"--network: no such file: {args.network}")
        try:
            return Network.load(args.network)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UsageError(f"--network {args.network}: cannot read a loggrad network ({e})") from None
    if args.widths is not None:
        try:
            widths = [int(w) for w in args.widths.split(",")]
        except ValueError:
            raise UsageError(f"--widths must be comma-separated integers, got {args.widths!r}") from None
        if args.depth is not None or args.width is not None:
            raise UsageError("--widths cannot be combined with --depth or --width")
        if len(widths) < 2 or min(widths) < 1:
            raise UsageError(f"--widths needs at least two positive integers (n_0,...,n_L), got {args.widths!r}")
        check_params_fit(param_count(widths))
    else:
        depth = 100 if args.depth is None else args.depth
        width = 32 if args.width is None else args.width
        if depth < 1:
            raise UsageError(f"--depth must be a positive integer, got {depth}")
        if width < 1:
            raise UsageError(f"--width must be a positive integer, got {width}")
        check_params_fit(depth * width * (width + 1))  # before a list of depth + 1 widths exists
        widths = [width] * (depth + 1)
    act = _check_activation("tanh" if args.activation is None else args.activation, len(widths) - 1)
    init = "lecun_normal" if args.init is None else args.init
    if args.gain is not None and not (math.isfinite(args.gain) and args.gain > 0):
        raise UsageError(f"--gain must be a positive number, got {args.gain}")
    if args.residual is not None and not math.isfinite(args.residual):
        raise UsageError(f"--residual must be a finite number (the branch scale s), got {args.residual}")
    try:
        return _build(widths, act, init, args.seed, args.gain, args.residual)
    except (ValueError, TypeError, KeyError) as e:
        raise UsageError(str(e).strip("'\"")) from None


def _data(net: Network, args: argparse.Namespace) -> tuple[np.ndarray, Any]:
    """Inputs and targets: from --data, or random ones as loggrad.sweep.make_batch draws them."""
    if args.data is not None:
        if not os.path.exists(args.data):
            raise UsageError(f"--data: no such file: {args.data}")
        try:
            with np.load(args.data, allow_pickle=False) as f:
                if "x" not in f:
                    raise UsageError(f"--data {args.data}: no array named 'x' (and optionally 'y') in the file")
                x = np.asarray(f["x"])
                y = np.asarray(f["y"]) if "y" in f else None
        except (OSError, ValueError) as e:
            raise UsageError(f"--data {args.data}: cannot read an .npz file ({e})") from None
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != net.n_in:
            raise UsageError(f"--data: x must have shape (batch, {net.n_in}), got {x.shape}")
        return x, y
    if args.batch < 1:
        raise UsageError(f"--batch must be a positive integer, got {args.batch}")
    rng = np.random.default_rng([int(args.seed), 1])
    x = rng.standard_normal((args.batch, net.n_in))
    if args.loss == "sum":
        y = None
    elif args.loss == "bce":
        y = rng.integers(0, 2, size=(args.batch, net.n_out)).astype(np.float64)
    elif args.loss == "cross_entropy":
        y = rng.integers(0, net.n_out, size=args.batch)
    else:
        y = rng.standard_normal((args.batch, net.n_out))
    return x, y


def _prepare(args: argparse.Namespace) -> tuple[Network, np.ndarray, Any]:
    _check_loss(args.loss)
    if args.seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {args.seed}")
    _check_plot_path(args.plot)
    _require_matplotlib(args.plot)
    net = _network(args)
    x, y = _data(net, args)
    return net, x, y


# ---------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace) -> int:
    from .report import report

    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr must be a positive number, got {args.lr}")
    if args.rows < 0:
        raise UsageError(f"--rows must be 0 (all) or positive, got {args.rows}")
    if not (math.isfinite(args.decades) and args.decades > 0):
        raise UsageError(f"--decades must be a positive number, got {args.decades}")
    net, x, y = _prepare(args)
    try:
        rep = report(net, x, y, loss=args.loss, lr=args.lr, decades=args.decades, conditioning=args.conditioning,
                     low_precision=args.low_precision, spectrum=args.spectrum)
    except ValueError as e:
        if args.data is not None:  # shapes of a user's data file
            raise UsageError(f"--data {args.data}: {e}") from None
        raise
    if args.json:
        print(rep.to_json(indent=2))
    else:
        print(rep.table(max_rows=args.rows, rich=_use_rich(args)))
    if args.plot:
        fig = _figure((8.0, 6.5))
        top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        rep.plot(ax=(top, bottom))
        _save(fig, args.plot)
    return 0


def cmd_spectrum(args: argparse.Namespace) -> int:
    from .spectrum import spectrum

    net, x, _ = _prepare(args)
    kmax = min(net.widths)
    if args.k is not None and not 1 <= args.k <= kmax:
        raise UsageError(f"-k must be between 1 and the smallest width {kmax}, got {args.k}")
    s = spectrum(net, x[0], k=args.k, per_layer=bool(args.plot))
    acts = sorted(set(net.activations))
    act = acts[0] if len(acts) == 1 else "mixed"
    l10 = s.log10_singular_values
    k = len(s.lyapunov)
    full = k == min(net.widths)  # all singular values of J: sigma_1 / sigma_k is its condition number
    # sigma_1 / sigma_k; nan when J is exactly zero (every relu gate of some layer closed)
    cond = float(l10[0] - l10[-1]) if np.isfinite(l10[0]) else math.nan
    if args.json:
        _emit_json({"depth": s.depth, "widths": net.widths, "activation": act, "k": len(s.lyapunov),
                    "lyapunov": s.lyapunov, "log_singular_values": s.log_singular_values,
                    "log10_singular_values": l10, "condition_log10": cond if full else None,
                    "spread_log10": cond})
    else:
        print(f"Lyapunov spectrum of the input-output Jacobian: {net.depth} layers, {act}, "
              f"widths {net.widths[0]}..{net.widths[-1]}, at the first input of the batch")
        rows = [[str(i), f"{lam:.6f}", f"{l10:.3f}"]
                for i, (lam, l10) in enumerate(zip(s.lyapunov, s.log10_singular_values), 1)]
        print(_table(["i", "lambda_i (ln per layer)", "log10 sigma_i(J)"], rows, _use_rich(args)))
        if np.isfinite(l10[0]) and full:
            print(f"\nlog10 condition number of J (sigma_1 / sigma_{k}): {cond:.3f}")
        elif np.isfinite(l10[0]):
            print(f"\nlog10 sigma_1 / sigma_{k}: {cond:.3f} (the {k} largest singular values only: J's "
                  f"condition number is sigma_1 / sigma_{min(net.widths)}, at least this; omit -k for it)")
        else:
            print("\nJ is exactly zero: in some layer every derivative f'(z) is 0 (e.g. all relu gates closed)")
    if args.plot:
        cum = s.cumulative() / math.log(10.0)
        fig = _figure()
        ax = fig.add_subplot()
        layers = np.arange(1, s.depth + 1)
        ax.plot(layers, cum, lw=0.8, color="C0", alpha=0.6)
        ax.plot(layers, cum[:, 0], lw=1.5, color="C0", label="largest")
        ax.plot(layers, cum[:, -1], lw=1.5, color="C3", label="smallest")
        ax.set_xlabel("layers l")
        ax.set_ylabel("log10 sigma_i of the first l layers' Jacobian")
        ax.set_title(f"Jacobian spectrum, {net.depth} layers, {act}")
        ax.legend()
        _save(fig, args.plot)
    return 0


def _csv(kind: Callable[[str], Any], text: str, flag: str) -> list[Any]:
    try:
        vals = [kind(t.strip()) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"{flag} must be a comma-separated list, got {text!r}") from None
    if not vals:
        raise UsageError(f"{flag} is empty")
    return vals


_SWEEP_COLS = ("depth", "width", "activation", "init", "gain", "seed", "slope", "total_change",
               "log10_grad_norm_first", "f64_fail_from_output", "verdict")


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import check_grid, sweep

    depths = _csv(int, args.depths, "--depths")
    widths = _csv(int, args.widths, "--widths")
    acts = _csv(str, args.activations, "--activations")
    inits = _csv(str, args.inits, "--inits")
    gains = _csv(float, args.gains, "--gains")
    seeds = _csv(int, args.seeds, "--seeds")
    residuals = _csv(_residual_item, args.residuals, "--residuals")
    try:  # the same check as lg.sweep's
        check_grid(depths, widths, acts, inits, gains, seeds, args.batch, args.loss, residuals)
    except (ValueError, TypeError) as e:
        raise UsageError(f"--{e}") from None
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be a positive integer, got {args.jobs}")
    _check_plot_path(args.plot)
    _require_matplotlib(args.plot)
    progress = not args.json and not args.no_progress and sys.stdout.isatty()
    rows = sweep(depths=depths, widths=widths, activations=acts, inits=inits, gains=gains, seeds=seeds,
                 batch=args.batch, loss=args.loss, n_jobs=args.jobs, scheduler=args.scheduler,
                 resume=args.resume, progress=progress, residuals=residuals)
    if args.json:
        _emit_json(rows)
    else:
        keys = [k for k in _SWEEP_COLS if rows and k in rows[0]]
        if any(r is not None for r in residuals):
            keys.insert(keys.index("gain") + 1 if "gain" in keys else len(keys), "residual")

        def cell(v: Any) -> str:
            if v is None:
                return "-"
            return f"{v:.4g}" if isinstance(v, float) else str(v)

        print(_table(keys, [[cell(r.get(k)) for k in keys] for r in rows], _use_rich(args)))
    if args.plot:
        _plot_sweep(rows, args.plot)
    failed = [r for r in rows if r.get("error")]
    if failed:
        raise RunError(f"{len(failed)} of {len(rows)} configurations failed; first: {failed[0]['error']}")
    return 0


def _plot_sweep(rows: list[dict[str, Any]], path: str) -> None:
    """log10 |dL/dW_0| (the input layer) against depth, one line per width/activation/init/gain (mean over seeds)."""
    fig = _figure()
    ax = fig.add_subplot()
    groups: dict[tuple[Any, ...], dict[int, list[float]]] = {}
    for r in rows:
        v = r.get("log10_grad_norm_first")
        if r.get("error") or not isinstance(v, float) or not math.isfinite(v):
            continue
        key = (r["width"], r["activation"], r["init"], r["gain"], r.get("residual"))
        groups.setdefault(key, {}).setdefault(int(r["depth"]), []).append(v)
    for (w, a, i, g, res), by_depth in groups.items():
        d = sorted(by_depth)
        label = f"{a}, {i}, gain {g:g}, width {w}" + ("" if res is None else f", residual s = {res:g}")
        ax.plot(d, [float(np.mean(by_depth[k])) for k in d], "o-", ms=3, label=label)
    ax.axhline(_FLOAT64_TINY_LOG10, color="C3", lw=1, ls=":", label="float64 smallest normal")
    ax.axhline(_FLOAT32_TINY_LOG10, color="C1", lw=1, ls=":", label="float32 smallest normal")
    ax.set_xlabel("depth")
    ax.set_ylabel("log10 |dL/dW_0| (input layer)")
    ax.set_title("sweep: input-layer gradient norm against depth")
    ax.legend(fontsize="small")
    _save(fig, path)


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demos

    registry: dict[str, Callable[..., Any]] = dict(demos.DEMOS)
    if not args.names:
        if args.json:
            _emit_json({n: (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else "" for n, fn in registry.items()})
            return 0
        print("loggrad demos (run one with: loggrad demo NAME, or loggrad demo all):\n")
        for name, fn in registry.items():
            doc = (fn.__doc__ or "").strip().splitlines()
            print(f"  {name:<18} {doc[0] if doc else ''}")
        return 0
    names = list(registry) if args.names == ["all"] else list(args.names)
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise UsageError(f"unknown demo {unknown[0]!r}; available: {', '.join(registry)} (or all)")
    plotter = getattr(demos, "plot", None)
    if args.plot is not None:
        if plotter is None:
            raise UsageError("the demos have no figures (--plot works with loggrad, report, spectrum and sweep)")
        if len(names) != 1:
            raise UsageError("--plot with demo needs exactly one demo name")
        _check_plot_path(args.plot)
        _require_matplotlib(args.plot)
    results: dict[str, Any] = {}
    for n in names:
        if args.json:
            lines: list[str] = []
            res = demos.run(n, out=lines.append)
            results[n] = {"output": lines, "result": res}
        else:
            print(f"== {n} ==")
            res = demos.run(n)
            print()
            results[n] = {"result": res}
    if args.json:
        _emit_json(results)
    if args.plot is not None and plotter is not None:
        plotter(names[0], results[names[0]]["result"], args.plot)
    return 0


def cmd_bench(argv: list[str]) -> int:
    try:
        bench = importlib.import_module(".bench", __package__)
    except ModuleNotFoundError as e:
        if e.name in (None, f"{__package__}.bench"):
            raise RunError("the benchmark runner (loggrad.bench) is not part of this installation") from None
        raise RunError(f"the benchmark runner needs {e.name}: {e}") from None
    fn = getattr(bench, "main", None)
    if not callable(fn):
        raise RunError("loggrad.bench has no main(argv) function")
    try:
        rc = fn(list(argv))
    except SystemExit as e:  # an argparse inside the runner
        rc = e.code
    if rc is None:
        return 0
    return rc if isinstance(rc, int) else 1


# ---------------------------------------------------------------------------
# Parser
# ---------------------------------------------------------------------------


def _output_flags(p: argparse.ArgumentParser, top: bool) -> None:
    """--json, --plot, --plain: on the main parser with defaults, on subcommands SUPPRESSed so
    that ``loggrad --json report`` and ``loggrad report --json`` both work."""
    d: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument("--json", action="store_true", help="machine-readable output (strict JSON)", **d)
    p.add_argument("--plot", metavar="FILE", help="write a figure (.png, .svg or .pdf)", **d)
    p.add_argument("--plain", action="store_true", help="plain-text tables even when rich is installed", **d)


def _network_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("network (from flags, or --network FILE)")
    g.add_argument("--network", metavar="FILE", help="a network saved with Network.save (.npz)")
    g.add_argument("--depth", type=int, help="number of layers (default 100)")
    g.add_argument("--width", type=int, help="width of every layer (default 32)")
    g.add_argument("--widths", metavar="N0,N1,...", help="all widths n_0,...,n_L (instead of --depth/--width)")
    g.add_argument("--activation", metavar="NAME", help=f"one of {', '.join(_ACT_NAMES)}, or a comma-separated "
                   "list with one per layer (default tanh)")
    g.add_argument("--init", metavar="NAME", help="weight initializer (default lecun_normal)")
    g.add_argument("--gain", type=float, help="gain on the initializer's scale")
    g.add_argument("--residual", type=float, metavar="S",
                   help="residual connections a_{l+1} = a_l + S f(W a_l + b) in every square layer "
                        "(default: none)")
    g.add_argument("--seed", type=int, default=0, help="seed of the weights and of the random batch (default 0)")
    d = p.add_argument_group("data")
    d.add_argument("--data", metavar="FILE", help=".npz file with arrays x (batch, n_in) and optionally y")
    d.add_argument("--batch", type=int, default=8, help="size of the random N(0,1) batch (default 8)")
    d.add_argument("--loss", default="mse", metavar="NAME", help=f"one of {', '.join(LOSSES)} (default mse)")


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    p = argparse.ArgumentParser(
        prog="loggrad",
        description="Exact gradients of deep dense networks (float64 precision, unbounded exponent). "
                    "Without a command: a deep sigmoid chain's gradients, exact beside float64.",
        epilog="exit status: 0 ok, 1 failed computation or output, 2 bad usage, 130 interrupted",
    )
    p.add_argument("--version", action="version", version=f"loggrad {__version__}")
    demo = p.add_argument_group("the default demo (no command)")
    demo.add_argument("--depth", type=int, default=2000, help="layers (default 2000)")
    demo.add_argument("--width", type=int, default=8, help="width (default 8)")
    demo.add_argument("--batch", type=int, default=4, help="batch (default 4)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--activation", default="sigmoid", metavar="NAME", help="default sigmoid")
    demo.add_argument("--loss", default="mse", metavar="NAME", help="default mse")
    _output_flags(p, top=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("report", help="per-layer gradient report and verdict",
                       description="Per-layer gradient-health report: forward signal (rms a), backward "
                                   "signal (|delta|) and |dW| with their theory, f', what float64/float32/"
                                   "bfloat16/float16 make of each gradient, lost updates, growth rate with its "
                                   "interval over draws, and the verdict.")
    _network_flags(r)
    r.add_argument("--lr", type=float, default=1e-3, help="learning rate of the lost-update column (default 1e-3)")
    r.add_argument("--decades", type=float, default=3.0, help="verdict threshold in decades (> 0; default 3)")
    r.add_argument("--rows", type=int, default=16, help="layers shown in the table (0: all; default 16)")
    r.add_argument("--conditioning", action="store_true",
                   help="a second pass on x(1 + 2^-52 u): digits of each |dW| that survive")
    r.add_argument("--low-precision", action="store_true",
                   help="simulate the float32 (and bfloat16, with ml_dtypes) backward pass")
    r.add_argument("--spectrum", action="store_true",
                   help="condition number of the input-output Jacobian (n_in extra passes)")
    _output_flags(r, top=False)
    r.set_defaults(func=cmd_report)

    s = sub.add_parser("spectrum", help="Lyapunov spectrum of the input-output Jacobian",
                       description="Lyapunov exponents of the input-output Jacobian along the trajectory of "
                                   "the batch's first input (QR re-orthonormalisation, memory independent of depth).")
    _network_flags(s)
    s.add_argument("-k", type=int, default=None, help="number of exponents (default: all)")
    _output_flags(s, top=False)
    s.set_defaults(func=cmd_spectrum)

    w = sub.add_parser("sweep", help="report summaries over a grid of configurations",
                       description="Gradient-health summaries over depth x width x activation x init x gain x "
                                   "residual x seed "
                                   "(comma-separated lists).")
    w.add_argument("--depths", default="10,100")
    w.add_argument("--widths", default="32")
    w.add_argument("--activations", default="tanh,relu")
    w.add_argument("--inits", default="lecun_normal,he_normal")
    w.add_argument("--gains", default="1.0")
    w.add_argument("--seeds", default="0")
    w.add_argument("--residuals", "--residual", default="none", metavar="S,...",
                   help="residual branch scales s, 'none' for the plain chain (default none)")
    w.add_argument("--batch", type=int, default=8)
    w.add_argument("--loss", default="mse", metavar="NAME", help=f"one of {', '.join(LOSSES)} (default mse)")
    w.add_argument("--jobs", type=int, default=None, help="parallel configurations (default: cores)")
    w.add_argument("--scheduler", default=None, help="'dask' for a local Dask cluster, or a scheduler address")
    w.add_argument("--resume", metavar="FILE", default=None, help="JSON-lines file to resume from and append to")
    w.add_argument("--no-progress", action="store_true", help="no progress bar (none is shown when not a terminal)")
    _output_flags(w, top=False)
    w.set_defaults(func=cmd_sweep)

    d = sub.add_parser("demo", help="the demos of the seed notes (no NAME: list them)")
    d.add_argument("names", nargs="*", metavar="NAME", help="demo names, or 'all' (none: list them)")
    # no --plot: the demos print their chains and draw no figures
    d.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                   help="machine-readable output (strict JSON)")
    d.add_argument("--plain", action="store_true", default=argparse.SUPPRESS,
                   help="plain-text tables even when rich is installed")
    d.set_defaults(func=cmd_demo)

    sub.add_parser("bench", help="the benchmark runner (loggrad bench --help for its options)", add_help=False)
    return p, {"report": r, "spectrum": s, "sweep": w, "demo": d}


def _run(argv: list[str]) -> int:
    if argv[:1] == ["bench"]:
        return cmd_bench(argv[1:])
    p, subs = _parser()
    try:
        args, extra = p.parse_known_args(argv)
    except SystemExit as e:  # usage errors (2), --help and --version (0)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    if args.command == "bench":  # options before the command: forward what follows "bench"
        return cmd_bench(argv[argv.index("bench") + 1:])
    if extra:
        try:
            subs.get(args.command or "", p).error(f"unrecognized arguments: {' '.join(extra)}")
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else 2
    if args.command is None:
        return cmd_main_demo(args)
    return int(args.func(args))


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the exit-time flush stays quiet."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _error(msg: str) -> None:
    try:
        print(f"loggrad: error: {msg}", file=sys.stderr)
    except (BrokenPipeError, OSError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with argv (default ``sys.argv[1:]``); returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    from ._core import ExponentRangeError

    try:
        rc = _run(args)
        sys.stdout.flush()
        return rc
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except UsageError as e:
        _error(str(e))
        return 2
    except RunError as e:
        _error(str(e))
        return 1
    except ExponentRangeError as e:
        _error(f"out of the extended exponent range: {e}")
        return 1
    except MemoryError as e:
        _error(f"out of memory{': ' + str(e) if str(e) else ''}")
        return 1
    except (OSError, ValueError, FloatingPointError, ImportError) as e:
        _error(str(e) or type(e).__name__)
        return 1


if __name__ == "__main__":
    sys.exit(main())
