"""Parameter sweeps of gradient-health reports: depth x width x activation x init x gain x residual x seed.

``sweep(...)`` builds one network per configuration, runs
:func:`loggrad.report.report` on a random batch and returns tidy rows (one
dict per configuration, or one per configuration and layer), ready for
``pandas.DataFrame(rows)``::

    rows = loggrad.sweep.sweep(depths=[10, 100, 1000], widths=[8, 64],
                               activations=["tanh", "relu"], inits=["he_normal"],
                               gains=[0.5, 1.0, 2.0], seeds=range(3),
                               residuals=[None, 0.1], resume="sweep.jsonl")

Execution: threads by default (the engine releases the GIL), processes with
``executor="process"``, or a Dask cluster with ``scheduler="dask"`` (a
``dask.distributed.LocalCluster``), ``scheduler="tcp://host:port"`` (an
existing scheduler) or ``scheduler=<distributed.Client>``. Dask is an
optional dependency (``pip install "dask[distributed]"``), imported only then.

Resuming: with ``resume="file.jsonl"`` every finished configuration is
appended to the file as one JSON line as soon as it is done, and a later call
with the same file skips the configurations already there.

Networks: widths ``[width] * (depth + 1)`` (input and output of the same
width as the hidden layers, so with a residual scale s every layer is
residual: ``a_{l+1} = a_l + s f(W_l a_l + b_l)``; None is the plain chain),
weights from ``loggrad.init.init_layers`` when that module exists;
otherwise from the local Gaussian fallback described in :func:`build_network`. Inputs are standard normal, targets as in
:func:`make_batch`; both are fixed by the seed.
"""

from __future__ import annotations

import importlib
import itertools
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ._json import from_lossless, lossless
from .network import Network
from .report import LAYER_FIELDS, Report, report

__all__ = ["sweep", "run_config", "build_network", "make_batch", "configurations", "CONFIG_KEYS"]

#: The fields that identify a configuration (and a line of a resume file).
CONFIG_KEYS: tuple[str, ...] = (
    "depth", "width", "activation", "init", "gain", "seed", "batch", "loss", "bias_init", "lr", "residual",
)

# ---------------------------------------------------------------------------
# Building one configuration
# ---------------------------------------------------------------------------


def build_network(depth: int, width: int, activation: str, init: Any, gain: float = 1.0, seed: int = 0,
                  bias_init: Any = "zeros", residual: float | None = None) -> Network:
    """The network of one sweep configuration: ``depth`` layers of ``width`` units.

    ``Network.build([width] * (depth + 1), activation, init=init,
    bias_init=bias_init, seed=seed, gain=gain, residual=residual)``: the
    same weights with and without residual connections; the initializers of
    :mod:`loggrad.init` by name or object. A number as ``bias_init`` is a
    constant bias (the Keras/PyTorch meaning); Gaussian biases of standard
    deviation s are ``{"name": "normal", "std": s}``.
    """
    return Network.build([int(width)] * (int(depth) + 1), activation, init=init, bias_init=bias_init,
                         seed=seed, gain=gain, residual=residual)


def make_batch(width: int, batch: int, loss: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """Inputs and targets of one configuration, from ``default_rng([seed, 1])``.

    x ~ N(0, 1) of shape (batch, width); y ~ N(0, 1) for mse, Bernoulli(1/2)
    for bce, uniform labels for cross_entropy, None for sum.
    """
    rng = np.random.default_rng([int(seed), 1])
    x = rng.standard_normal((batch, width))
    y: np.ndarray | None
    if loss == "sum":
        y = None
    elif loss == "bce":
        y = rng.integers(0, 2, size=(batch, width)).astype(np.float64)
    elif loss == "cross_entropy":
        y = rng.integers(0, width, size=batch)
    else:
        y = rng.standard_normal((batch, width))
    return x, y


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    out = []
    for k in CONFIG_KEYS:
        v = row.get(k)
        numeric = k in ("gain", "lr", "residual") and isinstance(v, (int, float))
        out.append(float(v) if numeric and v is not None else v)
    return tuple(out)


def run_config(config: dict[str, Any], per_layer: bool = False, derivatives: bool = True) -> dict[str, Any]:
    """Build, run and summarise one configuration (a dict with the CONFIG_KEYS).

    Returns the configuration, the report's summary figures, ``seconds``, and
    with per_layer the per-layer columns under ``"layers"`` (dict of lists).
    """
    t0 = time.perf_counter()
    net = build_network(config["depth"], config["width"], config["activation"], config["init"],
                        config["gain"], config["seed"], config["bias_init"], config.get("residual"))
    x, y = make_batch(config["width"], config["batch"], config["loss"], config["seed"])
    rep = report(net, x, y, loss=config["loss"], lr=config["lr"], derivatives=derivatives)
    row = dict(config)
    summ = rep.summary()
    for k in ("depth", "loss", "batch", "lr"):
        summ.pop(k)
    row.update(summ)
    row["error"] = None
    if per_layer:
        row["layers"] = _layer_columns(rep)
    row["seconds"] = time.perf_counter() - t0
    return row


def _run_config_safe(config: dict[str, Any], per_layer: bool, derivatives: bool) -> dict[str, Any]:
    try:
        return run_config(config, per_layer, derivatives)
    except Exception as exc:  # noqa: BLE001 - recorded in the row, the sweep goes on
        row = dict(config)
        row["verdict"] = "error"
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row


def _layer_columns(rep: Report) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {}
    for key, attr, _, _ in LAYER_FIELDS:
        v = getattr(rep, attr)
        cols[key] = [None] * rep.depth if v is None else v.tolist()
    return cols


def _values(v: Any) -> list[Any]:
    if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
        return [v]
    return list(v)


def _is_whole(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, np.integer))


def check_grid(depths: Any, widths: Any, activations: Any, inits: Any, gains: Any = (1.0,), seeds: Any = (0,),
               batch: Any = 4, loss: Any = "mse", residuals: Any = (None,)) -> None:
    """ValueError (or TypeError) naming the first bad value of a sweep grid, before any configuration runs.

    The one check behind both :func:`sweep` and ``loggrad sweep``: each
    message starts with the parameter's name (the command line puts ``--``
    before it).
    """
    from .network import ACTIVATION_ALIASES, ACTIVATIONS, LOSSES

    for name, vals in (("depths", depths), ("widths", widths), ("seeds", seeds)):
        lo = 0 if name == "seeds" else 1
        for v in _values(vals):
            if not _is_whole(v) or int(v) < lo:
                kind = "non-negative integers" if lo == 0 else "positive integers"
                raise ValueError(f"{name} must be {kind}, got {v!r}")
    for g in _values(gains):
        if isinstance(g, bool) or not isinstance(g, (int, float, np.integer, np.floating)) or not (
            np.isfinite(g) and g > 0
        ):
            raise ValueError(f"gains must be positive numbers, got {g!r}")
    from .network import residual_scales

    for r in _values(residuals):
        if r is None:
            continue
        if isinstance(r, (bool, np.bool_)) or not isinstance(r, (int, float, np.integer, np.floating)):
            raise ValueError(f"residuals must be real numbers (the branch scale s) or None, got {r!r}")
        try:  # Network.build's own check of a branch scale
            residual_scales(r, [1, 1])
        except (ValueError, TypeError) as e:
            raise ValueError(f"residuals: {e}") from None
    names = sorted(set(ACTIVATIONS) | set(ACTIVATION_ALIASES))
    for a in _values(activations):
        if not isinstance(a, str) or ACTIVATION_ALIASES.get(a, a) not in ACTIVATIONS:
            raise ValueError(f"activations: unknown activation {a!r}; choose from {', '.join(names)}")
    if not _is_whole(batch) or int(batch) < 1:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss: unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
    from . import init as _init

    for i in _values(inits):
        try:
            _init.get(i)
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"inits: {str(e).strip(chr(39))}") from None


def configurations(depths: Any, widths: Any, activations: Any, inits: Any, gains: Any = (1.0,),
                   seeds: Any = (0,), batch: int = 4, loss: str = "mse", bias_init: Any = "zeros",
                   lr: float | None = None, residuals: Any = (None,)) -> list[dict[str, Any]]:
    """The cartesian product as configuration dicts, in sweep order (seeds vary fastest, then residuals)."""
    def seq(v: Any) -> list[Any]:
        if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
            return [v]
        return list(v)

    out = []
    for d, w, a, i, g, r, s in itertools.product(seq(depths), seq(widths), seq(activations), seq(inits),
                                                 seq(gains), seq(residuals), seq(seeds)):
        out.append({
            "depth": int(d), "width": int(w), "activation": str(a), "init": str(i), "gain": float(g),
            "seed": int(s), "batch": int(batch), "loss": str(loss), "bias_init": bias_init,
            "lr": None if lr is None else float(lr), "residual": None if r is None else float(r),
        })
    return out


# ---------------------------------------------------------------------------
# Progress display
# ---------------------------------------------------------------------------


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[], None]]:
    if not enabled or total == 0:
        yield lambda: None
        return
    try:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        # on stderr, like the other two: stdout stays clean for tables and JSON
        with Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      transient=False, console=Console(stderr=True)) as prog:
            task = prog.add_task("sweep", total=total)
            yield lambda: prog.advance(task)
        return
    except ImportError:
        pass
    try:
        tqdm = importlib.import_module("tqdm.auto").tqdm

        bar = tqdm(total=total, desc="sweep")
        try:
            yield lambda: bar.update(1)
        finally:
            bar.close()
        return
    except ImportError:
        pass
    done = [0]
    step = max(1, total // 20)

    def tick() -> None:
        done[0] += 1
        if done[0] % step == 0 or done[0] == total:
            print(f"sweep: {done[0]}/{total} configurations done", file=sys.stderr, flush=True)

    yield tick


# ---------------------------------------------------------------------------
# Resume file
# ---------------------------------------------------------------------------


def _read_resume(path: Path) -> dict[tuple[Any, ...], dict[str, Any]]:
    done: dict[tuple[Any, ...], dict[str, Any]] = {}
    if not path.exists():
        return done
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                row = from_lossless(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by an interrupted run
                continue
            if row.get("error"):
                continue  # failed configurations are tried again
            done[_key(row)] = row
    return done


# ---------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------


def _dask_client(scheduler: Any, n_jobs: int | None, dask_kwargs: dict[str, Any] | None) -> tuple[Any, list[Any]]:
    try:
        distributed = importlib.import_module("distributed")
    except ImportError as exc:
        raise ImportError(
            f"scheduler={scheduler!r} needs Dask's distributed scheduler: pip install \"dask[distributed]\""
        ) from exc
    if isinstance(scheduler, distributed.Client):
        return scheduler, []
    if scheduler == "dask":
        kw = dict(dask_kwargs or {})
        if n_jobs is not None:
            kw.setdefault("n_workers", int(n_jobs))
            kw.setdefault("threads_per_worker", 1)
        cluster = distributed.LocalCluster(**kw)
        client = distributed.Client(cluster)
        return client, [client, cluster]
    if isinstance(scheduler, str):
        client = distributed.Client(scheduler, **(dask_kwargs or {}))
        return client, [client]
    raise TypeError(f"scheduler must be None, 'dask', an address like 'tcp://host:8786' or a Client, got {scheduler!r}")


def _run_all(configs: list[dict[str, Any]], *, n_jobs: int | None, executor: str, scheduler: Any,
             dask_kwargs: dict[str, Any] | None, per_layer: bool, derivatives: bool,
             on_done: Callable[[int, dict[str, Any]], None]) -> None:
    if not configs:
        return
    if scheduler is not None:
        client, owned = _dask_client(scheduler, n_jobs, dask_kwargs)
        try:
            distributed = importlib.import_module("distributed")
            dfuts = client.map(_run_config_safe, configs, per_layer=per_layer, derivatives=derivatives, pure=False)
            index = {f.key: i for i, f in enumerate(dfuts)}
            for dfut in distributed.as_completed(dfuts):
                on_done(index[dfut.key], dfut.result())
        finally:
            for obj in owned:
                obj.close()
        return
    n = n_jobs if n_jobs is not None else (os.cpu_count() or 1)
    if n <= 1:
        for i, cfg in enumerate(configs):
            on_done(i, _run_config_safe(cfg, per_layer, derivatives))
        return
    pool: Executor
    if executor == "thread":
        pool = ThreadPoolExecutor(max_workers=n)
    elif executor == "process":
        # not fork: the engine's worker threads would not survive it in the child
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx)
    else:
        raise ValueError(f"executor must be 'thread' or 'process', got {executor!r}")
    with pool:
        futs: dict[Future[dict[str, Any]], int] = {
            pool.submit(_run_config_safe, cfg, per_layer, derivatives): i for i, cfg in enumerate(configs)
        }
        for fut in as_completed(futs):
            on_done(futs[fut], fut.result())


def _expand(row: dict[str, Any]) -> list[dict[str, Any]]:
    layers = row.get("layers")
    base = {k: v for k, v in row.items() if k != "layers"}
    if not layers:
        return [base]
    depth = len(next(iter(layers.values())))
    out = []
    for l in range(depth):
        r = dict(base)
        r["layer"] = l
        r["from_output"] = depth - 1 - l
        r.update({k: v[l] for k, v in layers.items()})
        out.append(r)
    return out


def sweep(
    depths: Any,
    widths: Any,
    activations: Any,
    inits: Any,
    gains: Any = (1.0,),
    seeds: Any = (0,),
    batch: int = 4,
    loss: str = "mse",
    n_jobs: int | None = None,
    scheduler: Any = None,
    resume: str | os.PathLike[str] | None = None,
    progress: bool = True,
    *,
    per_layer: bool = False,
    bias_init: Any = "zeros",
    lr: float | None = None,
    derivatives: bool = True,
    executor: str = "thread",
    dask_kwargs: dict[str, Any] | None = None,
    residuals: Any = (None,),
) -> list[dict[str, Any]]:
    """Gradient-health reports over a grid of configurations, as tidy rows.

    depths, widths, activations, inits, gains, seeds: a value or a sequence
        each; every combination is one configuration (seeds vary fastest).
    batch, loss, bias_init, lr: the same for every configuration (lr adds the
        lost-update fraction; see :func:`loggrad.report.report`).
    n_jobs: parallel workers (default: all cores; 1 runs in this thread).
    executor: "thread" (default; the engine releases the GIL) or "process"
        (a forkserver/spawn pool: workers import loggrad afresh).
    scheduler: None (local executor), "dask" (start a
        ``dask.distributed.LocalCluster(n_workers=n_jobs, **dask_kwargs)``),
        an address such as "tcp://host:8786" (connect to a running scheduler),
        or a ``distributed.Client``.
    resume: a JSON-lines file: configurations found there are not run again;
        each new one is appended as soon as it finishes (so an interrupted
        sweep loses at most the configurations in flight). Configurations
        that raised are recorded with their error and tried again next time.
    progress: show a progress bar (rich, else tqdm, else lines on stderr).
    per_layer: return one row per (configuration, layer), with the layer's
        figures (see :class:`loggrad.report.Report`) next to the summary.
    derivatives: compute the mean log10 f' column (one extra batch-1
        backward pass per sample).
    residuals: a value or a sequence of residual branch scales s, swept like
        gains: None is the plain chain, a number s makes every layer
        ``a_{l+1} = a_l + s f(W_l a_l + b_l)`` (the same weights otherwise).

    Each configuration row holds the CONFIG_KEYS, the report summary (slope,
    slope_ci_low/high, slope_stderr, total_change, theory_slope,
    log10_grad_norm_first/last, f64/f32_fail_layer and _from_output,
    verdict, loss_log10), ``seconds`` and ``error`` (None, or the exception
    text with verdict "error"). Rows come back in configuration order.
    """
    check_grid(depths, widths, activations, inits, gains, seeds, batch, loss, residuals)
    configs = configurations(depths, widths, activations, inits, gains, seeds, batch, loss, bias_init, lr, residuals)
    results: list[dict[str, Any] | None] = [None] * len(configs)
    path = Path(resume) if resume is not None else None
    todo: list[int] = []
    if path is not None:
        done = _read_resume(path)
        for i, cfg in enumerate(configs):
            row = done.get(_key(cfg))
            if row is not None and (not per_layer or row.get("layers")):
                results[i] = row
            else:
                todo.append(i)
    else:
        todo = list(range(len(configs)))

    fh = None
    if path is not None:
        fh = path.open("a", encoding="utf-8")
        if path.stat().st_size:
            with path.open("rb") as tail:
                tail.seek(-1, 2)
                if tail.read(1) != b"\n":
                    fh.write("\n")  # close a line cut short by an interrupted run
    try:
        with _progress(len(todo), progress) as tick:

            def on_done(j: int, row: dict[str, Any]) -> None:
                results[todo[j]] = row
                if fh is not None:
                    fh.write(json.dumps(lossless(row), allow_nan=False) + "\n")
                    fh.flush()
                tick()

            _run_all([configs[i] for i in todo], n_jobs=n_jobs, executor=executor, scheduler=scheduler,
                     dask_kwargs=dask_kwargs, per_layer=per_layer, derivatives=derivatives, on_done=on_done)
    finally:
        if fh is not None:
            fh.close()
    rows = [r for r in results if r is not None]
    if per_layer:
        return [x for r in rows for x in _expand(r)]
    return [{k: v for k, v in r.items() if k != "layers"} for r in rows]
