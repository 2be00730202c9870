# Hand-written stubs for loggrad._core (src/register_*.cpp). Keep in step with
# the bindings: tests/test_distribution.py compares names, parameters and
# defaults with the compiled module's signatures.
#
# Float64 inputs are converted by the bindings (pybind11 forcecast: any
# array-like of numbers); results are new arrays the caller owns.

from collections.abc import Sequence
from typing import Any, Literal, SupportsIndex, SupportsInt, TypeAlias, overload

import numpy as np
import numpy.typing as npt

_F64: TypeAlias = npt.NDArray[np.float64]
_I64: TypeAlias = npt.NDArray[np.int64]
_Int: TypeAlias = SupportsInt | SupportsIndex
# An extended array: (mantissa, binary exponent) of the same shape, value m * 2**e.
_Ext: TypeAlias = tuple[_F64, _I64]

class ExponentRangeError(OverflowError):
    """A value left even the extended range (|log2| > 2**60)."""

# register_network.cpp

class Architecture:
    """Widths and activations of a dense chain."""

    def __init__(
        self, widths: Sequence[_Int], activations: Sequence[str], residual: Sequence[float | None] = []
    ) -> None: ...
    @property
    def depth(self) -> int: ...
    @property
    def residual(self) -> list[float | None]: ...
    @property
    def widths(self) -> list[int]: ...
    @property
    def activations(self) -> list[str]: ...
    @property
    def param_count(self) -> int: ...
    def weight_offset(self, layer: _Int) -> int: ...
    def bias_offset(self, layer: _Int) -> int: ...
    def workspace_bytes(self, batch: _Int, extended: bool = True) -> int: ...
    @property
    def offsets(self) -> npt.NDArray[np.int64]: ...
    def gradient_offsets(self, layers: Sequence[_Int]) -> tuple[npt.NDArray[np.int64], int]: ...
    def store_plan(self, checkpoint: _Int) -> tuple[int, int, int]: ...

# (count, first layer or None for the loss, first quantity) of the values an
# extended pass with on_underflow="flush" made zero below the exponent range.
_Flushed: TypeAlias = tuple[int, int | None, str]

@overload
def forward(
    arch: Architecture,
    params: npt.ArrayLike,
    x: npt.ArrayLike,
    precision: Literal["extended"] = "extended",
    on_underflow: Literal["raise"] = "raise",
) -> _Ext: ...
@overload
def forward(
    arch: Architecture, params: npt.ArrayLike, x: npt.ArrayLike, precision: Literal["extended"],
    on_underflow: Literal["flush"],
) -> tuple[_F64, _I64, _Flushed]: ...
@overload
def forward(
    arch: Architecture, params: npt.ArrayLike, x: npt.ArrayLike, precision: Literal["float64"], on_underflow: str = "raise"
) -> _F64: ...
@overload
def forward(
    arch: Architecture, params: npt.ArrayLike, x: npt.ArrayLike, precision: str = "extended", on_underflow: str = "raise"
) -> _Ext | _F64 | tuple[_F64, _I64, _Flushed]: ...

# backward: (loss, out, grad, dx). loss is 0-d, out (batch, n_out), grad
# (param_count,), dx (batch, n_in), or (0, n_in) when want_dx is False.
# grad_output_m (with grad_output_e: extended values) replaces the loss by
# dL/d(output); out_grad_m/_e are earlier gradient arrays written again.
# on_underflow="flush" (extended): a fifth item, _Flushed.
@overload
def backward(
    arch: Architecture,
    params: npt.ArrayLike,
    x: npt.ArrayLike,
    loss: str,
    y: npt.ArrayLike | None = None,
    labels: npt.ArrayLike | None = None,
    precision: Literal["extended"] = "extended",
    want_dx: bool = True,
    checkpoint: _Int = 0,
    layers: npt.ArrayLike | None = None,
    grad_output_m: npt.ArrayLike | None = None,
    grad_output_e: npt.ArrayLike | None = None,
    out_grad_m: npt.NDArray[np.float64] | None = None,
    out_grad_e: npt.NDArray[np.int64] | None = None,
    on_underflow: Literal["raise"] = "raise",
) -> tuple[_Ext, _Ext, _Ext, _Ext]: ...
@overload
def backward(
    arch: Architecture,
    params: npt.ArrayLike,
    x: npt.ArrayLike,
    loss: str,
    y: npt.ArrayLike | None,
    labels: npt.ArrayLike | None,
    precision: Literal["float64"],
    want_dx: bool = True,
    checkpoint: _Int = 0,
    layers: npt.ArrayLike | None = None,
    grad_output_m: npt.ArrayLike | None = None,
    grad_output_e: npt.ArrayLike | None = None,
    out_grad_m: npt.NDArray[np.float64] | None = None,
    out_grad_e: npt.NDArray[np.int64] | None = None,
    on_underflow: str = "raise",
) -> tuple[_F64, _F64, _F64, _F64]: ...
@overload
def backward(
    arch: Architecture,
    params: npt.ArrayLike,
    x: npt.ArrayLike,
    loss: str,
    y: npt.ArrayLike | None = None,
    labels: npt.ArrayLike | None = None,
    *,
    precision: Literal["float64"],
    want_dx: bool = True,
    checkpoint: _Int = 0,
    layers: npt.ArrayLike | None = None,
    grad_output_m: npt.ArrayLike | None = None,
    grad_output_e: npt.ArrayLike | None = None,
    out_grad_m: npt.NDArray[np.float64] | None = None,
    out_grad_e: npt.NDArray[np.int64] | None = None,
    on_underflow: str = "raise",
) -> tuple[_F64, _F64, _F64, _F64]: ...
@overload
def backward(
    arch: Architecture,
    params: npt.ArrayLike,
    x: npt.ArrayLike,
    loss: str,
    y: npt.ArrayLike | None = None,
    labels: npt.ArrayLike | None = None,
    precision: str = "extended",
    want_dx: bool = True,
    checkpoint: _Int = 0,
    layers: npt.ArrayLike | None = None,
    grad_output_m: npt.ArrayLike | None = None,
    grad_output_e: npt.ArrayLike | None = None,
    out_grad_m: npt.NDArray[np.float64] | None = None,
    out_grad_e: npt.NDArray[np.int64] | None = None,
    on_underflow: str = "raise",
) -> (
    tuple[_Ext, _Ext, _Ext, _Ext] | tuple[_Ext, _Ext, _Ext, _Ext, _Flushed] | tuple[_F64, _F64, _F64, _F64]
): ...

class Tape:
    def __init__(self) -> None: ...
    @property
    def ready(self) -> bool: ...
    @property
    def batch(self) -> int: ...

def forward_tape(
    arch: Architecture, params: npt.ArrayLike, x: npt.ArrayLike, precision: str, checkpoint: _Int, tape: Tape,
    on_underflow: str = "raise",
) -> Any: ...
def backward_tape(
    arch: Architecture,
    params: npt.ArrayLike,
    tape: Tape,
    precision: str,
    want_dx: bool,
    layers: npt.ArrayLike | None,
    grad_output_m: npt.ArrayLike,
    grad_output_e: npt.ArrayLike | None = None,
    out_grad_m: npt.NDArray[np.float64] | None = None,
    out_grad_e: npt.NDArray[np.int64] | None = None,
    on_underflow: str = "raise",
) -> Any: ...

# register_config.cpp

def activation_names() -> list[str]: ...
def loss_names() -> list[str]: ...
def blas_config() -> str: ...
def cached_memory_bytes() -> int: ...
def release_memory() -> None: ...
def kernel_isa() -> str: ...
def gemm_fixed_order(a: npt.ArrayLike, b: npt.ArrayLike, trans_a: bool = False, trans_b: bool = False) -> _F64: ...
def blas_threads() -> int: ...
def num_threads() -> int: ...
def set_num_threads(n: _Int) -> None: ...
def threads_used() -> int: ...
def reset_threads_used() -> None: ...

max_exponent: int
zero_exponent: int
blas_min_work: int
simd: str
compiler: str

# register_spectrum.cpp

def jacobian_log_growth(
    arch: Architecture,
    params: npt.ArrayLike,
    x: npt.ArrayLike,
    directions: npt.ArrayLike,
    orthonormalize: bool = True,
    per_layer: bool = False,
) -> tuple[_F64, _F64]: ...

# register_train.cpp

# Keys: nonzero, unchanged, update_emax, grad_emax (int64 per block); update_top0,
# update_top1, update_norm, grad_norm (float64 per block); total_norm (float),
# total_emax (int), clipped (bool), bad_index (int), bad_update (float, int).
def sgd_step(
    params: _F64,
    grad_mantissa: npt.ArrayLike,
    grad_exponent: npt.ArrayLike,
    bounds: npt.ArrayLike,
    lr: float,
    clip_norm: tuple[float, int, float] | None = None,
    clip_value: tuple[float, int, float] | None = None,
) -> dict[str, object]: ...
def segment_norms(
    mantissa: npt.ArrayLike, exponent: npt.ArrayLike, starts: npt.ArrayLike, lengths: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], _F64]: ...

# register_stats.cpp

LAYER_STATS_FIELDS: int
SATURATED_DERIVATIVE: float

# backward_stats: (loss, out, grad, stats); stats is (depth, LAYER_STATS_FIELDS),
# per layer the statistics of dW, db, delta, a and f' (loggrad/stats.hpp);
# extended values as (mantissa, exponent), float64 ones as ndarrays.
def backward_stats(
    arch: Architecture,
    params: npt.ArrayLike,
    x: npt.ArrayLike,
    loss: str,
    y: npt.ArrayLike | None = None,
    labels: npt.ArrayLike | None = None,
    precision: str = "extended",
) -> tuple[_Ext, _Ext, _Ext, _F64] | tuple[_F64, _F64, _F64, _F64]: ...
