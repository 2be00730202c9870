"""Jacobian spectra of deep chains: Lyapunov exponents and log |J v|.

The input-output Jacobian of a deep network is the product of per-layer
Jacobians ``D_l W_l`` (``D_l = diag f'(z_l)`` along the trajectory of one
input). The engine pushes k directions through it in forward mode,
re-orthonormalising after every layer (QR) and accumulating ``ln |R_jj|``
(Benettin, Galgani, Giorgilli & Strelcyn 1980; for products of random
matrices, Newman 1986). Memory is O(width * k) whatever the depth, so depth
10^5 and beyond works; the values themselves never leave float64 range
because only their logarithms are accumulated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from . import _core

if TYPE_CHECKING:
    from .network import Network

__all__ = ["Spectrum", "spectrum", "jvp_log_norm"]

_LOG10_E = math.log10(math.e)


@dataclass(frozen=True)
class Spectrum:
    """Lyapunov spectrum of the input-output Jacobian J (largest first).

    The accumulated ln|R_ii| of the QR-orthonormalised basis pushed through J.
    As the depth grows they converge to the log singular values of J
    (Oseledets' theorem); they are exactly the log singular values when the
    per-layer Jacobians share their singular vectors (c*I or diagonal chains).

    log_singular_values: sum over layers of ln|R_ii|, i = 1..k (natural log)
    lyapunov:            the same divided by the depth: per-layer exponents
    per_layer:           (depth, k) contribution of each layer to ln sigma_i
    depth:               number of layers
    """

    log_singular_values: np.ndarray
    lyapunov: np.ndarray
    per_layer: np.ndarray | None
    depth: int

    @property
    def log10_singular_values(self) -> np.ndarray:
        """log10 sigma_i(J)."""
        return self.log_singular_values * _LOG10_E

    @property
    def condition_log10(self) -> float:
        """log10 sigma_1 / sigma_k: J's condition number when k is the smallest width (every
        singular value); with fewer exponents a lower bound of it."""
        v = self.log10_singular_values
        return float(v[0] - v[-1])

    def cumulative(self) -> np.ndarray:
        """(depth, k): ln sigma_i of the Jacobian of the first l+1 layers (needs per_layer)."""
        if self.per_layer is None:
            raise ValueError("computed without per_layer=True")
        return np.cumsum(self.per_layer, axis=0)


def _x_vector(net: Network, x: npt.ArrayLike | None) -> np.ndarray:
    if x is None:
        return np.zeros(net.n_in)
    xa = np.asarray(x, dtype=np.float64).reshape(-1)
    if xa.shape != (net.n_in,):
        raise ValueError(f"x must have shape ({net.n_in},) (one input), got {np.shape(x)}")
    return np.ascontiguousarray(xa)


def spectrum(net: Network, x: npt.ArrayLike | None = None, k: int | None = None,
             per_layer: bool = False, seed: int = 0) -> Spectrum:
    """The k leading Lyapunov exponents of the Jacobian of net at input x.

    x: one input of shape (n_in,) (zeros by default). k: number of exponents
    (default: min of the widths, the whole spectrum). Exact for linear chains;
    for nonlinear nets the Jacobian is taken along the trajectory of x. The
    starting directions are a seeded random orthonormal set (any set in
    general position converges to the same exponents).
    """
    kmax = min(net.widths)
    k = kmax if k is None else int(k)
    if not 1 <= k <= kmax:
        raise ValueError(f"k must be between 1 and min(widths) = {kmax}, got {k}")
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((net.n_in, k)) if k < net.n_in else np.eye(net.n_in)[:, :k]
    total, layers = _core.jacobian_log_growth(net._arch, net.params, _x_vector(net, x), np.ascontiguousarray(v), True, per_layer)
    order = np.argsort(-total)  # the QR order is already descending in practice; make it certain
    return Spectrum(
        log_singular_values=total[order],
        lyapunov=total[order] / net.depth,
        per_layer=layers[:, order] if per_layer else None,
        depth=net.depth,
    )


def jvp_log_norm(net: Network, x: npt.ArrayLike | None, directions: npt.ArrayLike,
                 per_layer: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """ln ||J v|| for each column v of directions (n_in, m), or for a single v (n_in,).

    Exact growth of each direction through the whole chain, without
    orthonormalisation. With per_layer=True also returns the (depth, m)
    per-layer contributions.
    """
    v = np.asarray(directions, dtype=np.float64)
    single = v.ndim == 1
    if single:
        v = v[:, None]
    if v.ndim != 2 or v.shape[0] != net.n_in:
        raise ValueError(f"directions must have shape ({net.n_in},) or ({net.n_in}, m), got {np.shape(directions)}")
    norms = np.linalg.norm(v, axis=0)
    if np.any(norms == 0):
        raise ValueError("directions must be nonzero")
    total, layers = _core.jacobian_log_growth(net._arch, net.params, _x_vector(net, x), np.ascontiguousarray(v / norms), False, per_layer)
    total = total + np.log(norms)
    if single:
        total = total[0]
        layers = layers[:, 0]
    return (total, layers) if per_layer else total
