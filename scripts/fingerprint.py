"""Bitwise fingerprint of the engine's results, to compare two builds.

    python scripts/fingerprint.py --write a.json     # with one build installed
    python scripts/fingerprint.py --compare a.json   # with another: lists every difference

A change that must not alter any result (a faster kernel doing the same IEEE
operations in the same order) is checked by writing the fingerprint with the
build before it and comparing with the build after it. Each case is a network
drawn from a fixed seed (widths 1-40, batch 1-70, depth 1-300, every
activation, plain and residual layers, ordinary and extreme weight scales that
leave float64's range and, for some, loggrad's own), run through forward and
backward in both precisions, on 1 and 2 threads, with and without
checkpointing, with grad_output=, layers= and input_grad=False, and through
the tape (forward_tape / backward_tape) and the statistics pass. Every output
array is hashed (mantissas and exponents on the extended path), together with
the flush count, the warnings and the message of any exception. NaNs are
hashed as one value: builds may differ in a NaN's sign bit (docs/guarantees.md).

--quick runs a smaller set; --cases N sets how many random networks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings
from typing import Any, Callable

import numpy as np

import loggrad as lg
from loggrad import LogArray, _core


def _digest(h: Any, v: Any) -> None:
    """Feeds v (arrays, LogArrays, Gradients fields, scalars) into the hash h."""
    if v is None:
        h.update(b"None")
    elif isinstance(v, LogArray):
        h.update(b"L")
        _digest(h, np.ascontiguousarray(v.mantissa))
        _digest(h, np.ascontiguousarray(v.exponent))
    elif isinstance(v, np.ndarray):
        h.update(f"{v.dtype.str}{v.shape}".encode())
        if v.dtype.kind == "f":  # every NaN as one: its sign bit is not a result (docs/guarantees.md)
            v = np.where(np.isnan(v), np.nan, v)
        h.update(np.ascontiguousarray(v).tobytes())
    elif isinstance(v, (list, tuple)):
        h.update(f"({len(v)}".encode())
        for x in v:
            _digest(h, x)
        h.update(b")")
    elif isinstance(v, (float, np.floating)):
        h.update(np.float64(v).tobytes())
    else:
        h.update(repr(v).encode())


def _run(fn: Callable[[], Any]) -> str:
    """The hash of fn()'s results, warnings and exception (type and message)."""
    h = hashlib.sha256()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _digest(h, fn())
        except Exception as exc:  # the error itself is part of the result
            h.update(f"raised {type(exc).__name__}: {exc}".encode())
    for w in caught:
        h.update(f"warned {w.category.__name__}: {w.message}".encode())
    return h.hexdigest()[:24]


def _grads(g: Any) -> list[Any]:
    return [g.loss, g.output, g.params, g.input, g.flushed, g.layers]


def _network(rng: np.random.Generator, depth: int, width_lo: int, width_hi: int, *, residual: bool,
             scale: float, acts: list[str], bias: str = "normal") -> tuple[lg.Network, list[int]]:
    if residual:  # square layers, some residual
        w = int(rng.integers(width_lo, width_hi + 1))
        widths = [w] * (depth + 1)
        res = [float(rng.choice([0.0, 0.5, 1.0, -0.3, 3.0])) if rng.random() < 0.7 else None for _ in range(depth)]
    else:
        widths = [int(rng.integers(width_lo, width_hi + 1)) for _ in range(depth + 1)]
        if rng.random() < 0.5:  # mostly one width, as deep chains are
            widths = [widths[0]] * depth + [widths[-1]]
        res = None
    layer_acts = [acts[int(rng.integers(len(acts)))] for _ in range(depth)] if len(acts) > 1 else acts[0]
    net = lg.Network.build(widths, activation=layer_acts, init="normal", seed=int(rng.integers(1 << 30)),
                           bias_init=bias, gain=scale, residual=res)
    return net, widths


def cases(n_random: int, quick: bool) -> list[tuple[str, Callable[[], lg.Network], dict[str, Any]]]:
    """(name, network maker, input description) of every case, drawn from a fixed seed."""
    acts = list(lg.ACTIVATIONS)
    out: list[tuple[str, Callable[[], lg.Network], dict[str, Any]]] = []
    rng = np.random.default_rng(20261207)
    # Fixed shapes: the narrow chains the benchmarks time, every activation alone.
    shapes = [(300, 4, 1), (200, 32, 1), (60, 32, 64), (120, 1, 1), (100, 2, 3), (80, 8, 70), (250, 16, 2)]
    for depth, width, batch in shapes[: 3 if quick else None]:
        for act in acts:
            # no biases and small weights: activations below float64's range
            for scale, bias in ((1.0, "normal"), (0.05, "normal"), (25.0, "normal"), (0.1, "zeros")):
                seed = int(rng.integers(1 << 30))
                name = f"fixed {depth}x{width}x{batch} {act} gain={scale} bias={bias}"
                mk = (lambda d=depth, w=width, a=act, s=scale, sd=seed, bi=bias:
                      lg.Network.build([w] * (d + 1), activation=a, init="normal", gain=s, seed=sd,
                                       bias_init=bi))
                out.append((name, mk, {"batch": batch, "seed": seed, "xscale": 1.0}))
    # Random networks: widths 1-40, batch 1-70, depth 1-300, mixed activations.
    for i in range(n_random):
        depth = int(rng.choice([1, 2, 3, int(rng.integers(4, 40)), int(rng.integers(40, 301))]))
        lo = int(rng.integers(1, 41))
        hi = int(rng.integers(lo, 41))
        batch = int(rng.choice([1, 1, 2, int(rng.integers(1, 71)), 64, 65, 70]))
        residual = rng.random() < 0.3
        scale = float(rng.choice([1.0, 1.0, 0.01, 0.3, 3.0, 40.0, 1e3, 1e150]))
        mixed = rng.random() < 0.4
        act_set = acts if mixed else [acts[int(rng.integers(len(acts)))]]
        xscale = float(rng.choice([1.0, 1.0, 1e-300, 1e300, 1e5]))
        bias = str(rng.choice(["normal", "normal", "zeros"]))
        seed = int(rng.integers(1 << 30))
        name = (f"random {i}: depth {depth}, widths {lo}-{hi}, batch {batch}, residual {residual}, "
                f"gain {scale}, acts {'mixed' if mixed else act_set[0]}, x*{xscale}, bias {bias}")
        mk = (lambda sd=seed, d=depth, lo=lo, hi=hi, r=residual, s=scale, a=tuple(act_set), bi=bias:
              _network(np.random.default_rng(sd), d, lo, hi, residual=r, scale=s, acts=list(a), bias=bi)[0])
        out.append((name, mk, {"batch": batch, "seed": seed, "xscale": xscale}))
    # Values past loggrad's own range: sigmoid' of z ~ -1e19 flushes; huge weights overflow.
    for act in ("sigmoid", "softplus", "elu", "tanh", "identity", "relu"):
        for gain, xs in ((1e19, 1.0), (1e-200, 1e-200), (1e200, 1e200), (1e-100, 1.0), (1e100, 1e-300)):
            for widths, batch in (([3, 5, 5, 5, 2], 3), ([4] * 41, 1), ([6] * 20 + [3] * 20, 1)):
                seed = int(rng.integers(1 << 30))
                mk = (lambda a=act, g=gain, sd=seed, w=tuple(widths):
                      lg.Network.build(list(w), activation=a, init="normal", gain=g, seed=sd))
                out.append((f"range {act} gain={gain} x*{xs} widths {widths[0]}x{len(widths) - 1} batch {batch}",
                            mk, {"batch": batch, "seed": seed, "xscale": xs}))
    return out


def fingerprint(n_random: int, quick: bool, log: Callable[[str], None]) -> dict[str, str]:
    res: dict[str, str] = {}
    for name, mk, spec in cases(n_random, quick):
        net = mk()
        rng = np.random.default_rng(spec["seed"])
        batch = spec["batch"]
        x = rng.standard_normal((batch, net.n_in)) * spec["xscale"]
        y = rng.standard_normal((batch, net.n_out))
        gout = rng.standard_normal((batch, net.n_out)) * 1e-3
        depth = net.depth
        sel = sorted({0, depth // 2, depth - 1})
        for threads in (1, 2):
            _core.set_num_threads(threads)
            for prec in ("extended", "float64"):
                key = f"{name} | {prec} | t{threads}"
                res[f"{key} | forward"] = _run(lambda: net.forward(x, precision=prec))
                for cp in (None, 3, "auto"):
                    res[f"{key} | backward cp={cp}"] = _run(
                        lambda: _grads(net.backward(x, y, precision=prec, checkpoint=cp)))
                res[f"{key} | backward no input grad"] = _run(
                    lambda: _grads(net.backward(x, y, precision=prec, input_grad=False)))
                res[f"{key} | backward grad_output"] = _run(
                    lambda: _grads(net.backward(x, grad_output=gout, precision=prec, checkpoint=2)))
                # dL/d(output) near the bottom of loggrad's range: gradients below it flush
                deep = LogArray.from_parts(np.full(gout.shape, 0.75), np.full(gout.shape, -(2**60) + 3))
                res[f"{key} | backward grad_output deep"] = _run(
                    lambda: _grads(net.backward(x, grad_output=deep, precision=prec)))
                res[f"{key} | backward layers"] = _run(
                    lambda: _grads(net.backward(x, y, precision=prec, layers=sel, checkpoint=None)))
                res[f"{key} | backward raise"] = _run(
                    lambda: _grads(net.backward(x, y, precision=prec, on_underflow="raise")))
                res[f"{key} | backward sum"] = _run(lambda: _grads(net.backward(x, y * 0, loss="sum",
                                                                              precision=prec)))

                def tape() -> Any:
                    out, t = net._forward_tape(net._params, x, prec, checkpoint=2)
                    return [out, _grads(net._backward_tape(net._params, t, gout, prec))]

                res[f"{key} | tape"] = _run(tape)
            if not quick:
                xa = np.ascontiguousarray(x)
                ya = np.ascontiguousarray(y)
                res[f"{name} | t{threads} | stats"] = _run(
                    lambda: list(_core.backward_stats(net._arch, net._params, xa, "mse", ya, None)))
        log(name)
    _core.set_num_threads(1)
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", metavar="FILE", help="write this build's fingerprint to FILE")
    g.add_argument("--compare", metavar="FILE", help="compare this build with the fingerprint in FILE")
    p.add_argument("--cases", type=int, default=80, help="random networks (default 80)")
    p.add_argument("--quick", action="store_true", help="fewer fixed shapes, no statistics pass")
    p.add_argument("-v", "--verbose", action="store_true", help="name each case as it runs")
    args = p.parse_args(argv)
    log = (lambda s: print(s, file=sys.stderr)) if args.verbose else (lambda s: None)
    if args.compare:
        with open(args.compare) as f:
            ref = json.load(f)
        res = fingerprint(ref["cases"], ref["quick"], log)
        theirs = ref["results"]
        diff = [k for k in theirs if res.get(k) != theirs[k]]
        missing = [k for k in res if k not in theirs]
        for k in diff[:50]:
            print(f"DIFFERS: {k}")
        for k in missing[:10]:
            print(f"NOT IN {args.compare}: {k}")
        print(f"{len(res)} results, {len(diff)} differ, {len(missing)} not in the reference "
              f"({_core.kernel_isa()} kernels)")
        return 1 if diff or missing else 0
    res = fingerprint(args.cases, args.quick, log)
    with open(args.write, "w") as f:
        json.dump({"cases": args.cases, "quick": args.quick, "isa": _core.kernel_isa(), "results": res}, f, indent=0)
    print(f"{len(res)} results written to {args.write} ({_core.kernel_isa()} kernels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
