"""The parameter layout of a network and the sizes of its passes, as the engine has them.

One source for every module: the offsets come from the engine's
``Architecture`` (``cpp/include/loggrad/network.hpp``), the packing of a
``backward(layers=...)`` result from its ``gradient_offsets``, and the store a
backward pass keeps (with or without checkpointing) from its ``store_plan``.
Python only multiplies the engine's per-row counts by the batch, in exact
integers (no wrap-around for any requested size).

Layout, layer by layer: ``[W_0 (n_1 x n_0, row-major), b_0 (n_1), W_1, b_1, ...]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import _core

__all__ = ["Layout", "param_count"]


def param_count(widths: Sequence[int]) -> int:
    """Parameters of a chain of these widths, sum of n_out * (n_in + 1), in exact integers.

    For the size checks made before any architecture exists (a file being
    read, a requested shape); it equals the engine's ``offsets[-1]`` wherever
    the engine can hold the network (tests/test_layout.py).
    """
    w = [int(v) for v in widths]
    return sum(w[l + 1] * (w[l] + 1) for l in range(len(w) - 1))


class Layout:
    """Offsets and sizes of a network's parameter blocks (int64 arrays, read-only).

    widths:         n_0 .. n_L
    n_in, n_out:    per layer
    offsets:        start of layer l's block (W_l then b_l); offsets[-1] is the parameter count
    starts:         offsets[:-1]
    sizes:          n_out * (n_in + 1), each layer's block
    weight_sizes:   n_out * n_in
    bias_offsets:   start of b_l
    segments:       (starts, sizes) of W_0, b_0, W_1, b_1, ... (2L segments)
    """

    __slots__ = ("arch", "widths", "n_in", "n_out", "offsets", "starts", "sizes", "weight_sizes", "bias_offsets")

    def __init__(self, arch: _core.Architecture) -> None:
        self.arch = arch
        self.widths = _frozen(np.asarray(arch.widths, dtype=np.int64))
        self.n_in = _frozen(self.widths[:-1])
        self.n_out = _frozen(self.widths[1:])
        self.offsets = _frozen(np.asarray(arch.offsets, dtype=np.int64))
        self.starts = _frozen(self.offsets[:-1])
        self.sizes = _frozen(np.diff(self.offsets))
        self.weight_sizes = _frozen(self.n_in * self.n_out)
        self.bias_offsets = _frozen(self.starts + self.weight_sizes)

    @property
    def depth(self) -> int:
        return len(self.n_in)

    @property
    def param_count(self) -> int:
        return int(self.offsets[-1])

    @property
    def segments(self) -> tuple[np.ndarray, np.ndarray]:
        """Starts and sizes of the 2L segments W_0, b_0, W_1, b_1, ... (for per-segment reductions)."""
        starts = np.stack([self.starts, self.bias_offsets], axis=1).ravel()
        sizes = np.stack([self.weight_sizes, self.n_out], axis=1).ravel()
        return starts, sizes

    def gradient_offsets(self, layers: np.ndarray | None) -> tuple[np.ndarray, int]:
        """Where a pass computing only ``layers`` (sorted, distinct) writes each layer's block, as the
        engine packs them (-1: not computed), and the gradient count; all layers when None."""
        if layers is None:
            return self.starts, self.param_count
        off, total = self.arch.gradient_offsets([int(l) for l in layers])
        return off, int(total)

    def pass_bytes(self, batch: int, extended: bool, backward: bool, checkpoint: int,
                   grads: int | None = None, dx: bool = True) -> int:
        """Bytes one pass allocates: result arrays and the engine's buffers (Python ints: exact).

        checkpoint: 0 (store every layer), -1 (auto) or a segment length, as
        the engine takes it; grads: the gradient values computed (all
        parameters when None); dx: whether dL/dx is.
        """
        v = 16 if extended else 8  # bytes of a value: mantissa and exponent, or a float64
        maxw = int(self.widths.max())
        n_in, n_out = int(self.widths[0]), int(self.widths[-1])
        scratch = 8 * (2 * batch * maxw + maxw * maxw + 4 * maxw) if extended else 0  # the gemm workspace
        inputs = batch * n_in * v if extended else 0  # x as extended values
        chain = 3 * batch * maxw * v  # dL/da, the segment output, z
        if not backward:
            return batch * n_out * v + inputs + chain + scratch
        _, segments, units = self.arch.store_plan(checkpoint)
        store = batch * (int(units) + maxw) * v
        checkpoints = int(segments) * batch * maxw * v if segments > 1 else 0
        results = ((self.param_count if grads is None else grads) + batch * ((n_in if dx else 0) + n_out) + 1) * v
        return results + inputs + store + checkpoints + chain + scratch


def _frozen(a: Any) -> np.ndarray:
    out = np.asarray(a, dtype=np.int64)
    out.flags.writeable = False
    return out
