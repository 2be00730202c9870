"""Weight initializers: by name or as objects, seeded and reproducible.

An initializer is an object with ``__call__(shape, rng) -> ndarray`` (float64,
of the given shape). ``rng`` is a :class:`numpy.random.Generator`, an int seed,
a :class:`numpy.random.SeedSequence` or ``None`` (fresh entropy). Weight
shapes follow the torch ``Linear`` convention ``(n_out, n_in)``, so
``fan_in = n_in = shape[1]`` and ``fan_out = n_out = shape[0]`` (for more
dimensions, torch's convolution rule: both times the receptive field
``prod(shape[2:])``; for a 1-D shape, Keras' rule ``fan_in = fan_out = n``).

Two families share the same variances but not the same shapes:

* the **Keras names** ``glorot_*``, ``he_*``, ``lecun_*`` and
  :class:`VarianceScaling` follow ``keras.initializers``: their ``*_normal``
  variants draw a normal truncated at 2 standard deviations whose std was
  divided by 0.87962566103423978 beforehand, so the variance of what is drawn
  is exactly ``scale / fan``;
* the **torch names** ``xavier_*`` and ``kaiming_*`` follow
  ``torch.nn.init``: their ``*_normal`` variants are untruncated normals;
  ``kaiming_*`` take torch's ``a``, ``mode`` and ``nonlinearity``.

The gain ``gamma`` of the seed notes (``W ~ gamma * N(0, 1/n)``) is a parameter
of every initializer where it makes sense: it multiplies the standard
deviation (or the limit of a uniform, or the matrix of ``orthogonal`` and
``identity``). :func:`init_layers` (used by ``Network.build``) applies a gain
to any initializer through :meth:`Initializer.with_gain`.

Reproducibility: :func:`init_layers` draws layer ``l``'s weights from
``Generator(PCG64(SeedSequence(seed).spawn(...)[l].spawn(2)[0]))`` and its
biases from ``...spawn(2)[1]``: every layer has its own stream, so layer
``l`` gets the same values whatever the depth of the network built, and the
weights do not depend on the bias initializer. PCG64 and SeedSequence give the
same streams on every machine.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Union

import numpy as np

__all__ = [
    "Initializer", "Zeros", "Ones", "Constant", "Normal", "Uniform", "TruncatedNormal", "VarianceScaling",
    "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "LecunNormal", "LecunUniform",
    "XavierNormal", "XavierUniform", "KaimingNormal", "KaimingUniform", "Orthogonal", "Identity",
    "get", "names", "init_layers", "layer_generators", "recommended_gain", "compute_fans", "as_generator",
    "TRUNCATED_STD_CORRECTION",
]

#: std of the standard normal truncated to [-2, 2] (Keras divides by it).
TRUNCATED_STD_CORRECTION = 0.87962566103423978

RngLike = Union[np.random.Generator, np.random.SeedSequence, int, None]
ShapeLike = Union[int, Sequence[int]]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def is_int(v: object) -> bool:
    """An integer (numpy ones too), not a bool."""
    return not isinstance(v, bool) and isinstance(v, (numbers.Integral, np.integer))


def _real(value: Any, what: str, *, positive: bool = False, nonneg: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{what} must be a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{what} must be finite, got {v}")
    if positive and not v > 0:
        raise ValueError(f"{what} must be positive, got {v}")
    if nonneg and v < 0:
        raise ValueError(f"{what} must be >= 0, got {v}")
    return v


def _gain(value: Any, what: str = "gain") -> float:
    return _real(value, what, positive=True)


def _shape(shape: Any) -> tuple[int, ...]:
    if type(shape) is tuple and shape and all(type(s) is int and s > 0 for s in shape):
        return shape  # the common case, fast
    if is_int(shape):
        shape = (int(shape),)
    if isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, np.ndarray)):
        raise TypeError(f"shape must be a tuple of ints, got {type(shape).__name__} {shape!r}")
    out = []
    for s in shape:
        if not is_int(s):
            raise TypeError(f"shape must be a tuple of ints, got {tuple(shape)!r}")
        if int(s) < 1:
            raise ValueError(f"every dimension of shape must be at least 1, got {tuple(int(v) for v in shape)}")
        out.append(int(s))
    if not out:
        raise ValueError("shape must have at least one dimension, got ()")
    return tuple(out)


def compute_fans(shape: ShapeLike) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of this shape.

    2-D ``(n_out, n_in)``: ``(n_in, n_out)`` (torch ``Linear``). More
    dimensions ``(out, in, *k)``: both times ``prod(k)`` (torch). 1-D ``(n,)``:
    ``(n, n)`` (Keras; torch refuses fans of 1-D tensors).
    """
    s = _shape(shape)
    if len(s) == 1:
        return s[0], s[0]
    rf = math.prod(s[2:])
    return s[1] * rf, s[0] * rf


def as_generator(rng: RngLike) -> np.random.Generator:
    """A numpy Generator: ``rng`` itself, or PCG64 seeded by an int / SeedSequence, or fresh entropy for None."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, np.random.SeedSequence):
        return np.random.Generator(np.random.PCG64(rng))
    if is_int(rng):
        seed = int(rng)
        if seed < 0:
            raise ValueError(f"a seed must be >= 0, got {seed}")
        return np.random.Generator(np.random.PCG64(seed))
    raise TypeError(f"rng must be a numpy Generator, a SeedSequence, an int seed or None, got {type(rng).__name__}")


def _truncated_standard_normal(gen: np.random.Generator, shape: tuple[int, ...], bound: float = 2.0) -> np.ndarray:
    """Standard normals with every draw outside [-bound, bound] drawn again (Keras' and torch's distribution)."""
    out = gen.standard_normal(shape)
    flat = out.reshape(-1)
    bad = np.flatnonzero(np.abs(flat) > bound)
    while bad.size:
        flat[bad] = gen.standard_normal(bad.size)
        bad = bad[np.abs(flat[bad]) > bound]
    return out


_NONLINEARITIES = ("linear", "identity", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                   "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu")


def recommended_gain(nonlinearity: str, param: float | None = None) -> float:
    """The gain torch.nn.init.calculate_gain recommends for an activation.

    identity/linear/conv*/sigmoid 1, tanh 5/3, relu sqrt(2), leaky_relu
    ``sqrt(2 / (1 + slope^2))`` (slope ``param``, default 0.01 as torch and
    loggrad's engine), selu 3/4. Other activations (elu, gelu, silu,
    softplus) have no torch value and raise ValueError:
    :func:`loggrad.theory.critical_sigma_w` gives the mean-field gain for them.
    """
    sq = _gain_squared(nonlinearity, param)
    exact = {1.0: 1.0, 25.0 / 9.0: 5.0 / 3.0, 0.5625: 0.75}
    return exact.get(sq, math.sqrt(sq))


def _gain_squared(nonlinearity: Any, param: float | None = None) -> float:
    """recommended_gain(nonlinearity, param) ** 2, exactly where it is rational."""
    if not isinstance(nonlinearity, str):
        raise TypeError(f"nonlinearity must be a name (str), got {type(nonlinearity).__name__}")
    nl = nonlinearity.lower()
    if nl in ("linear", "identity", "sigmoid", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
              "conv_transpose2d", "conv_transpose3d"):
        return 1.0
    if nl == "tanh":
        return 25.0 / 9.0
    if nl == "relu":
        return 2.0
    if nl == "leaky_relu":
        slope = 0.01 if param is None else _real(param, "leaky_relu slope")
        return 2.0 / (1.0 + slope * slope)
    if nl == "selu":
        return 0.5625
    raise ValueError(
        f"no recommended gain for nonlinearity {nonlinearity!r}; valid: {', '.join(_NONLINEARITIES)} "
        "(for others, loggrad.theory.critical_sigma_w gives the mean-field critical sigma_w)"
    )


# ---------------------------------------------------------------------------
# the initializers
# ---------------------------------------------------------------------------


class Initializer:
    """Base class: ``init(shape, rng)`` returns a float64 array of that shape.

    Subclasses implement ``_sample(shape, gen)``. ``with_gain(g)`` returns the
    same initializer with its standard deviation (or limit, or matrix)
    multiplied by ``g``. ``get_config()`` gives the constructor arguments;
    initializers compare equal when their class and configuration do.
    """

    #: registry name
    name = "initializer"
    #: whether drawing needs random numbers (False: the rng is not used)
    random = True

    def __call__(self, shape: ShapeLike, rng: RngLike = None) -> np.ndarray:
        s = _shape(shape)
        return self._make(s, as_generator(rng) if self.random else None)

    def _make(self, s: tuple[int, ...], gen: np.random.Generator | None) -> np.ndarray:
        out = np.ascontiguousarray(self._sample(s, gen), dtype=np.float64)  # type: ignore[arg-type]
        if out.shape != s:  # pragma: no cover - a subclass bug
            raise RuntimeError(f"{type(self).__name__} returned shape {out.shape} for shape {s}")
        return out

    def _sample(self, shape: tuple[int, ...], gen: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def with_gain(self, gain: float) -> Initializer:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {}

    def std(self, shape: ShapeLike) -> float:
        """The standard deviation of one entry drawn for this shape (mean-zero families)."""
        raise NotImplementedError(f"{type(self).__name__} has no closed-form std")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Initializer) and type(other) is type(self) and other.get_config() == self.get_config()

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class Constant(Initializer):
    """Every entry ``value`` (Keras ``Constant``, torch ``constant_``). Gain multiplies the value."""

    name = "constant"
    random = False

    def __init__(self, value: float = 0.0) -> None:
        self.value = _real(value, "constant value")

    def _sample(self, shape: tuple[int, ...], gen: np.random.Generator) -> np.ndarray:
        return np.full(shape, self.value)

    def with_gain(self, gain: float) -> Initializer:
        return Constant(self.value * _gain(gain))

    def get_config(self) -> dict[str, Any]:
        return {"value": self.value}


class Zeros(Constant):
    """All zeros (Keras ``Zeros``, torch ``zeros_``); a gain changes nothing."""

    name = "zeros"

    def __init__(self) -> None:
        super().__init__(0.0)

    def with_gain(self, gain: float) -> Initializer:
        _gain(gain)
        return self

    def get_config(self) -> dict[str, Any]:
        return {}


class Ones(Constant):
    """All ones (Keras ``Ones``, torch ``ones_``); a gain multiplies the value."""

    name = "ones"

    def __init__(self) -> None:
        super().__init__(1.0)

    def get_config(self) -> dict[str, Any]:
        return {}


class Normal(Initializer):
    """``N(mean, std^2)``, untruncated (torch ``normal_``, default std 1; Keras
    ``RandomNormal`` has default std 0.05). Gain multiplies std."""

    name = "normal"

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        self.mean = _real(mean, "mean")
        self.stddev = _real(std, "std", positive=True)

    def _sample(self, shape: tuple[int, ...], gen: np.random.Generator) -> np.ndarray:
        return self.mean + self.stddev * gen.standard_normal(shape)

    def with_gain(self, gain: float) -> Initializer:
        return Normal(self.mean, self.stddev * _gain(gain))

    def std(self, shape: ShapeLike) -> float:
        return self.stddev

    def get_config(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.stddev}


class Uniform(Initializer):
    """``U(-limit, limit)``, or ``U(a, b)`` with ``a < b`` (Keras ``RandomUniform(minval,
    maxval)``, torch ``uniform_(a, b)``). Default ``U(-1, 1)``. Gain widens the
    interval about its midpoint."""

    name = "uniform"

    def __init__(self, limit: float | None = None, a: float | None = None, b: float | None = None) -> None:
        if limit is not None:
            if a is not None or b is not None:
                raise ValueError("give either limit or (a, b), not both")
            lim = _real(limit, "limit", positive=True)
            self.a, self.b = -lim, lim
        elif a is None and b is None:
            self.a, self.b = -1.0, 1.0
        elif a is None or b is None:
            raise ValueError("uniform needs both a and b (or a limit)")
        else:
            self.a, self.b = _real(a, "a"), _real(b, "b")
            if not self.a < self.b:
                raise ValueError(f"uniform needs a < b, got a={self.a}, b={self.b}")

    def _sample(self, shape: tuple[int, ...], gen: np.random.Generator) -> np.ndarray:
        return gen.uniform(self.a, self.b, shape)

    def with_gain(self, gain: float) -> Initializer:
        g = _gain(gain)
        mid, half = 0.5 * (self.a + self.b), 0.5 * (self.b - self.a)
        return Uniform(a=mid - g * half, b=mid + g * half)

    def std(self, shape: ShapeLike) -> float:
        return (self.b - self.a) / math.sqrt(12.0)

    def get_config(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b}


class TruncatedNormal(Initializer):
    """``N(mean, std^2)`` with draws more than 2 std from the mean drawn again
    (Keras ``TruncatedNormal``; torch ``trunc_normal_(mean, std, mean - 2 std,
    mean + 2 std)``). No correction: the std of the result is
    ``0.87962566 * std``. Gain multiplies std."""

    name = "truncated_normal"

    def __init__(self, mean: float = 0.0, std: float = 1.0) -> None:
        self.mean = _real(mean, "mean")
        self.stddev = _real(std, "std", positive=True)

    def _sample(self, shape: tuple[int, ...], gen: np.random.Generator) -> np.ndarray:
        return self.mean + self.stddev * _truncated_standard_normal(gen, shape)

    def with_gain(self, gain: float) -> Initializer:
        return TruncatedNormal(self.mean, self.stddev * _gain(gain))

    def std(self, shape: ShapeLike) -> float:
        return self.stddev * TRUNCATED_STD_CORRECTION

    def get_config(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.stddev}


_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("truncated_normal", "untruncated_normal", "uniform")


class VarianceScaling(Initializer):
    """Keras ``VarianceScaling``: entries of variance ``scale / n``.

    ``n`` is fan_in, fan_out or their mean (``mode``). ``distribution``:
    ``"truncated_normal"`` (std ``sqrt(scale/n) / 0.87962566103423978``,
    truncated at 2 of those std, so the variance drawn is ``scale/n``),
    ``"untruncated_normal"`` (std ``sqrt(scale/n)``) or ``"uniform"``
    (``U(-l, l)``, ``l = sqrt(3 scale / n)``). ``scale`` multiplies the
    *variance*; the gain ``gamma`` multiplies the std: ``with_gain(g)`` is
    ``scale * g^2``.
    """

    name = "variance_scaling"

    def __init__(self, scale: float = 1.0, mode: str = "fan_in", distribution: str = "truncated_normal") -> None:
        self.scale = _real(scale, "scale", positive=True)
        if mode not in _MODES:
            raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(_MODES)}")
        if distribution == "normal":
            raise ValueError("distribution 'normal' is ambiguous (Keras 2 meant truncated); "
                             f"use one of {', '.join(_DISTRIBUTIONS)}")
        if distribution not in _DISTRIBUTIONS:
            raise ValueError(f"unknown distribution {distribution!r}; valid: {', '.join(_DISTRIBUTIONS)}")
        self.mode = mode
        self.distribution = distribution

    def _fan(self, shape: ShapeLike) -> float:
        fan_in, fan_out = compute_fans(shape)
        return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": 0.5 * (fan_in + fan_out)}[self.mode]

    def std(self, shape: ShapeLike) -> float:
        return math.sqrt(self.scale / self._fan(shape))

    def _sample(self, shape: tuple[int, ...], gen: np.random.Generator) -> np.ndarray:
        sd = self.std(shape)
        if self.distribution == "truncated_normal":
            return (sd / TRUNCATED_STD_CORRECTION) * _truncated_standard_normal(gen, shape)
        if self.distribution == "untruncated_normal":
            return sd * gen.standard_normal(shape)
        lim = math.sqrt(3.0) * sd
        return gen.uniform(-lim, lim, shape)

    def with_gain(self, gain: float) -> Initializer:
        g = _gain(gain)
        return VarianceScaling(self.scale * g * g, self.mode, self.distribution)

    def get_config(self) -> dict[str, Any]:
        return {"scale": self.scale, "mode": self.mode, "distribution": self.distribution}


class _Named(VarianceScaling):
    """A VarianceScaling case with a fixed mode/distribution/base scale and a gain."""

    _base = 1.0
    _mode = "fan_in"
    _dist = "truncated_normal"

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = _gain(gain)
        super().__init__(self._base * self.gain * self.gain, self._mode, self._dist)

    def with_gain(self, gain: float) -> Initializer:
        return type(self)(self.gain * _gain(gain))

    def get_config(self) -> dict[str, Any]:
        return {"gain": self.gain}


class GlorotNormal(_Named):
    """Keras ``GlorotNormal``: truncated normal (Keras-corrected) of variance
    ``gain^2 * 2 / (fan_in + fan_out)``; ``VarianceScaling(gain^2, "fan_avg", "truncated_normal")``."""

    name = "glorot_normal"
    _mode = "fan_avg"


class GlorotUniform(_Named):
    """Keras ``GlorotUniform`` (= torch ``xavier_uniform_``): ``U(-l, l)``,
    ``l = gain * sqrt(6 / (fan_in + fan_out))``."""

    name = "glorot_uniform"
    _mode, _dist = "fan_avg", "uniform"


class HeNormal(_Named):
    """Keras ``HeNormal``: truncated normal (Keras-corrected) of variance ``gain^2 * 2 / fan_in``."""

    name = "he_normal"
    _base = 2.0


class HeUniform(_Named):
    """Keras ``HeUniform``: ``U(-l, l)``, ``l = gain * sqrt(6 / fan_in)``."""

    name = "he_uniform"
    _base, _dist = 2.0, "uniform"


class LecunNormal(_Named):
    """Keras ``LecunNormal``: truncated normal (Keras-corrected) of variance ``gain^2 / fan_in``
    (the notes' ``var(w) = 1/n``)."""

    name = "lecun_normal"


class LecunUniform(_Named):
    """Keras ``LecunUniform``: ``U(-l, l)``, ``l = gain * sqrt(3 / fan_in)``."""

    name = "lecun_uniform"
    _dist = "uniform"


class XavierNormal(_Named):
    """torch ``xavier_normal_(gain)``: untruncated ``N(0, gain^2 * 2 / (fan_in + fan_out))``."""

    name = "xavier_normal"
    _mode, _dist = "fan_avg", "untruncated_normal"


class XavierUniform(_Named):
    """torch ``xavier_uniform_(gain)``: ``U(-l, l)``, ``l = gain * sqrt(6 / (fan_in + fan_out))``."""

    name = "xavier_uniform"
    _mode, _dist = "fan_avg", "uniform"


class _Kaiming(VarianceScaling):
    _dist = "untruncated_normal"

    def __init__(self, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                 gain: float = 1.0) -> None:
        self.a = _real(a, "a")
        self.nonlinearity = nonlinearity
        self.gain = _gain(gain)
        # the squared gain, without a rounded square root: 2, 2/(1 + a^2), 25/9, ...
        super().__init__(self.gain * self.gain * _gain_squared(nonlinearity, self.a), mode, self._dist)

    def with_gain(self, gain: float) -> Initializer:
        return type(self)(self.a, self.mode, self.nonlinearity, self.gain * _gain(gain))

    def get_config(self) -> dict[str, Any]:
        return {"a": self.a, "mode": self.mode, "nonlinearity": self.nonlinearity, "gain": self.gain}


class KaimingNormal(_Kaiming):
    """torch ``kaiming_normal_(a, mode, nonlinearity)``: untruncated normal, std
    ``gain * calculate_gain(nonlinearity, a) / sqrt(fan)``. torch's defaults
    (``a=0``, ``leaky_relu``) give ``sqrt(2 / fan_in)``; ``gain`` is an extra gamma."""

    name = "kaiming_normal"


class KaimingUniform(_Kaiming):
    """torch ``kaiming_uniform_(a, mode, nonlinearity)``: ``U(-l, l)``, ``l = gain *
    calculate_gain(nonlinearity, a) * sqrt(3 / fan)``; defaults give ``sqrt(6 / fan_in)``."""

    name = "kaiming_uniform"
    _dist = "uniform"


class Orthogonal(Initializer):
    """torch ``orthogonal_(gain)`` (and Keras ``Orthogonal``): ``gain * Q`` from the QR
    factorization of a standard normal matrix, with Q's columns multiplied by
    the signs of R's diagonal (so Q is Haar-distributed). A non-square
    ``(rows, cols)`` gets orthonormal rows (rows < cols) or columns; more
    dimensions are flattened to ``(shape[0], prod(shape[1:]))``."""

    name = "orthogonal"

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = _gain(gain)

    def _sample(self, shape: tuple[int, ...], gen: np.random.Generator) -> np.ndarray:
        if len(shape) < 2:
            raise ValueError(f"orthogonal needs a shape of at least 2 dimensions, got {shape}")
        rows = shape[0]
        cols = math.prod(shape[1:])
        flat = gen.standard_normal((rows, cols))
        if rows < cols:
            flat = flat.T
        q, r = np.linalg.qr(flat)
        d = np.sign(np.diag(r))
        d[d == 0] = 1.0
        q = q * d
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape)

    def with_gain(self, gain: float) -> Initializer:
        return Orthogonal(self.gain * _gain(gain))

    def std(self, shape: ShapeLike) -> float:
        s = _shape(shape)
        return self.gain / math.sqrt(max(s[0], math.prod(s[1:])))

    def get_config(self) -> dict[str, Any]:
        return {"gain": self.gain}


class Identity(Initializer):
    """``scale * I``: the notes' ``W = c I`` (c = 1.2 explodes, 0.5 vanishes). Non-square
    shapes get ones on the main diagonal as torch ``eye_`` (Keras ``Identity(gain)``).
    2-D only. Gain multiplies the scale."""

    name = "identity"
    random = False

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = _real(scale, "identity scale")

    def _sample(self, shape: tuple[int, ...], gen: np.random.Generator) -> np.ndarray:
        if len(shape) != 2:
            raise ValueError(f"identity needs a 2-D shape (n_out, n_in), got {shape}")
        return self.scale * np.eye(shape[0], shape[1])

    def with_gain(self, gain: float) -> Initializer:
        return Identity(self.scale * _gain(gain))

    def get_config(self) -> dict[str, Any]:
        return {"scale": self.scale}


class _FromCallable(Initializer):
    """A user callable ``(shape, rng) -> array``, checked; gain multiplies what it returns."""

    name = "callable"

    def __init__(self, fn: Callable[..., Any], gain: float = 1.0) -> None:
        self.fn = fn
        self.gain = _gain(gain)

    def _sample(self, shape: tuple[int, ...], gen: np.random.Generator) -> np.ndarray:
        what = f"initializer {getattr(self.fn, '__name__', repr(self.fn))}"
        raw = self.fn(shape, gen)
        try:
            arr = np.asarray(raw)
        except Exception as e:  # ragged
            raise ValueError(f"{what} returned something that is not an array: {e}") from None
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{what} returned dtype {arr.dtype}; expected real numbers")
        if arr.shape != shape:
            raise ValueError(f"{what} returned shape {arr.shape}; expected {shape}")
        out = arr.astype(np.float64) * self.gain
        if not np.all(np.isfinite(out)):
            raise ValueError(f"{what} returned non-finite values")
        return out

    def with_gain(self, gain: float) -> Initializer:
        return _FromCallable(self.fn, self.gain * _gain(gain))

    def get_config(self) -> dict[str, Any]:
        return {"fn": self.fn, "gain": self.gain}


# ---------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------

_REGISTRY: dict[str, type[Initializer]] = {
    "zeros": Zeros, "ones": Ones, "constant": Constant,
    "normal": Normal, "random_normal": Normal, "uniform": Uniform, "random_uniform": Uniform,
    "truncated_normal": TruncatedNormal, "variance_scaling": VarianceScaling,
    "glorot_normal": GlorotNormal, "glorot_uniform": GlorotUniform,
    "xavier_normal": XavierNormal, "xavier_uniform": XavierUniform,
    "he_normal": HeNormal, "he_uniform": HeUniform,
    "kaiming_normal": KaimingNormal, "kaiming_uniform": KaimingUniform,
    "lecun_normal": LecunNormal, "lecun_uniform": LecunUniform,
    "orthogonal": Orthogonal, "identity": Identity, "eye": Identity,
}
_CLASS_NAMES = {cls.__name__.lower(): key for key, cls in _REGISTRY.items()}
_CLASS_NAMES.update({"randomnormal": "normal", "randomuniform": "uniform"})


def names() -> list[str]:
    """The initializer names :func:`get` knows."""
    return sorted(_REGISTRY)


def get(identifier: Any, **kwargs: Any) -> Initializer:
    """An Initializer from a name (``"he_normal"``, ``"HeNormal"``), a dict
    ``{"name": ..., **arguments}``, an Initializer, a number (a constant), or
    a callable ``(shape, rng) -> array``. ``kwargs`` go to the constructor of a
    named one: ``get("identity", scale=1.2)``, ``get("variance_scaling",
    scale=2.0, mode="fan_avg")``.
    """
    if isinstance(identifier, Mapping):
        conf = dict(identifier)
        if "name" not in conf:
            raise ValueError(f"an initializer given as a dict needs a 'name' key, got keys {sorted(conf)}")
        name = conf.pop("name")
        conf.update(kwargs)
        return get(name, **conf)
    if isinstance(identifier, str):
        key = identifier.strip().lower().replace("-", "_")
        key = _CLASS_NAMES.get(key, key)
        if key not in _REGISTRY:
            raise ValueError(f"unknown initializer {identifier!r}; valid: {', '.join(names())}")
        cls = _REGISTRY[key]
        try:
            return cls(**kwargs)
        except TypeError as e:
            raise TypeError(f"initializer {key!r}: {e}") from None
    if kwargs:
        raise TypeError(f"arguments {sorted(kwargs)} only go with an initializer name, not {identifier!r}")
    if isinstance(identifier, Initializer):
        return identifier
    if not isinstance(identifier, bool) and isinstance(identifier, (numbers.Real, np.floating, np.integer)):
        return Constant(float(identifier))
    if callable(identifier):
        return _FromCallable(identifier)
    raise TypeError(
        f"an initializer must be a name, a dict, an Initializer, a number or a callable (shape, rng) -> array; "
        f"got {type(identifier).__name__}"
    )


def _per_layer(spec: Any, depth: int, what: str) -> list[Initializer]:
    if isinstance(spec, (list, tuple)):
        if len(spec) != depth:
            raise ValueError(f"{what} has {len(spec)} entries for {depth} layers (give one, or one per layer)")
        return [get(s) for s in spec]
    one = get(spec)
    return [one] * depth


def _seed_sequence(seed: Any) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if seed is None:
        return np.random.SeedSequence()
    if is_int(seed):
        if int(seed) < 0:
            raise ValueError(f"seed must be >= 0, got {int(seed)}")
        return np.random.SeedSequence(int(seed))
    raise TypeError(f"seed must be an int >= 0, a numpy SeedSequence or None, got {type(seed).__name__}")


def layer_generators(seed: Any, layer: Any) -> tuple[np.random.Generator, np.random.Generator]:
    """The (weights, biases) generators of one layer: children ``[layer].spawn(2)`` of ``SeedSequence(seed)``.

    Equal to ``SeedSequence(seed).spawn(layer + 1)[layer].spawn(2)``, built
    directly (O(1) in the layer index).
    """
    ss = _seed_sequence(seed)
    if not is_int(layer) or int(layer) < 0:
        raise ValueError(f"layer must be an int >= 0, got {layer!r}")
    key = (*ss.spawn_key, int(layer))
    return _stream(ss, (*key, 0)), _stream(ss, (*key, 1))


def _stream(ss: np.random.SeedSequence, spawn_key: tuple[int, ...]) -> np.random.Generator:
    child = np.random.SeedSequence(ss.entropy, spawn_key=spawn_key, pool_size=ss.pool_size)
    return np.random.Generator(np.random.PCG64(child))


def init_layers(
    widths: Sequence[int],
    init: Any = "lecun_normal",
    bias_init: Any = "zeros",
    seed: Any = None,
    gain: float | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Weights ``(n_out, n_in)`` and biases ``(n_out,)`` of a chain ``widths[0] -> ... -> widths[-1]``.

    init / bias_init: anything :func:`get` accepts, or a list with one per
    layer. seed: an int (reproducible on every machine), a SeedSequence, or
    None (fresh entropy). gain: the notes' gamma, applied to every weight
    initializer with :meth:`Initializer.with_gain` (std times gamma); None
    leaves each initializer as it is. Layer l draws from its own streams
    (see :func:`layer_generators`), so the same seed gives layer l the same
    weights in a chain of any depth.
    """
    weights: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    for wl, bl in _layer_draws(_checked_widths(widths), init, bias_init, seed, gain):
        weights.append(wl)
        biases.append(bl)
    return weights, biases


def fill_block(
    widths: list[int], out: np.ndarray, init: Any = "lecun_normal", bias_init: Any = "zeros",
    seed: Any = None, gain: float | None = None,
) -> None:
    """:func:`init_layers`'s draws, bit for bit, written layer by layer into ``out``.

    ``out`` is a flat float64 parameter block (each layer's W row-major, then
    its b). Only one layer's draw is alive besides the block, so building a
    network needs its parameters plus one layer instead of twice its
    parameters. widths must already be checked (:func:`_checked_widths`).
    """
    pos = 0
    for l, (wl, bl) in enumerate(_layer_draws(widths, init, bias_init, seed, gain)):
        if not (np.isfinite(wl).all() and np.isfinite(bl).all()):
            raise ValueError(f"the initializer of layer {l} returned non-finite values")
        out[pos : pos + wl.size] = wl.ravel()
        pos += wl.size
        out[pos : pos + bl.size] = bl
        pos += bl.size
    if pos != out.size:  # pragma: no cover - a caller's layout bug
        raise RuntimeError(f"parameter block of {out.size} values for {pos} drawn")


def _checked_widths(widths: Any) -> list[int]:
    if isinstance(widths, (str, bytes)) or not isinstance(widths, (Sequence, np.ndarray)):
        raise TypeError(f"widths must be a sequence of ints, got {type(widths).__name__}")
    w = []
    for v in widths:
        if not is_int(v):
            raise TypeError(f"widths must be ints, got {v!r} in {list(widths)}")
        w.append(int(v))
    if len(w) < 2:
        raise ValueError(f"widths needs at least two entries (inputs and outputs), got {w}")
    if min(w) < 1:
        raise ValueError(f"every width must be at least 1, got {w}")
    return w


def _layer_draws(
    w: list[int], init: Any, bias_init: Any, seed: Any, gain: float | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(weights, biases) of each layer in turn, drawn only when asked for.

    Everything is checked before the first draw.
    """
    depth = len(w) - 1
    winits = _per_layer(init, depth, "init")
    if gain is not None:
        g = _gain(gain)
        if g != 1.0:
            cache: dict[int, Initializer] = {}
            winits = [cache.setdefault(id(i), i.with_gain(g)) for i in winits]
    binits = _per_layer(bias_init, depth, "bias_init")
    ss = _seed_sequence(seed)
    return _draw(w, winits, binits, ss)


def _draw(
    w: list[int], winits: list[Initializer], binits: list[Initializer], ss: np.random.SeedSequence
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for l in range(len(w) - 1):
        n_in, n_out = w[l], w[l + 1]
        wi, bi = winits[l], binits[l]
        key = (*ss.spawn_key, l)
        gw = _stream(ss, (*key, 0)) if wi.random else None
        gb = _stream(ss, (*key, 1)) if bi.random else None
        yield wi._make((n_out, n_in), gw), bi._make((n_out,), gb)
