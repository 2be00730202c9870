"""LogArray: an array of float64 values with an unbounded exponent range.

Each element is ``m * 2**e`` with a float64 mantissa ``m`` (``0.5 <= |m| < 1``,
or exactly 0) and an int64 binary exponent ``e``. This is the representation
the engine computes in; everything here is a vectorised numpy view of it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _core

_LOG10_2 = math.log10(2.0)
_ZERO_EXP = int(_core.zero_exponent)
_MAX_EXP = int(_core.max_exponent)

__all__ = ["LogArray"]


def _normalize(m: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bring (m, e) to normal form (|m| in [0.5, 1) or m == 0 with the zero exponent).

    Always ndarrays (0-d for scalars), never numpy scalars.
    """
    fm, fe = np.frexp(m)
    e = np.asarray(e + fe.astype(np.int64), dtype=np.int64)
    zero = fm == 0
    if zero.any():
        e = np.where(zero, _ZERO_EXP, e)
    return np.asarray(fm), np.asarray(e)


def _in_range(m: np.ndarray, e: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(m, e) unchanged; ExponentRangeError where a nonzero value's exponent left [-2^60, 2^60].

    Keeping every exponent within 2^60 also keeps sums of two exponents far
    from int64 overflow, so products can never wrap around silently.
    """
    bad = (m != 0) & ((e > _MAX_EXP) | (e < -_MAX_EXP))
    if np.any(bad):
        i = int(np.argmax(np.ravel(bad)))
        raise _core.ExponentRangeError(
            f"{what}: a value of 2^{int(np.ravel(e)[i])} is beyond loggrad's exponent range (|log2| < 2^60)"
        )
    return m, e


class LogArray:
    """An array of extended-range float64 values: ``mantissa * 2**exponent``.

    Results of loggrad's extended path come back as LogArrays. They support
    ``shape``, indexing and slicing (views), ``np.asarray`` (float64 values,
    0 or inf where out of float64 range), exact products, and the
    conversions ``log10()``, ``sign()`` and ``to_numpy()``.

    Build one from float64 values with ``LogArray(values)`` or
    ``LogArray.from_float``; from signs and base-10 logarithms with
    ``LogArray.from_log10(sign, log10)``.
    """

    __slots__ = ("_m", "_e")
    __array_priority__ = 20.0
    _m: np.ndarray
    _e: np.ndarray

    def __init__(self, values: npt.ArrayLike | LogArray = 0.0) -> None:
        if isinstance(values, LogArray):
            self._m, self._e = values._m, values._e
            return
        if isinstance(values, (str, bytes)):
            raise TypeError(f"LogArray values must be numbers, got {type(values).__name__}")
        raw = np.asarray(values)
        if raw.dtype.kind not in "biuf":
            raise TypeError(f"LogArray values must be real numbers (float or int), got dtype {raw.dtype}")
        x = np.asarray(raw, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError("LogArray values must be finite (use from_log10 for magnitudes beyond float64)")
        self._m, self._e = _normalize(x, np.zeros(x.shape, dtype=np.int64))

    # -- construction -------------------------------------------------------
    @classmethod
    def _wrap(cls, m: np.ndarray, e: np.ndarray) -> LogArray:
        """Wrap normalised planes without copying (used for engine results)."""
        out = cls.__new__(cls)
        out._m, out._e = m, e
        return out

    @classmethod
    def from_parts(cls, mantissa: npt.ArrayLike, exponent: npt.ArrayLike) -> LogArray:
        """``mantissa * 2**exponent`` for any finite mantissas and integer exponents."""
        m = np.asarray(mantissa, dtype=np.float64)
        e = np.asarray(exponent)
        if e.dtype.kind not in "iu":
            raise TypeError("exponents must be integers")
        if m.dtype.kind == "c":
            raise TypeError("mantissas must be real numbers")
        m, e = np.broadcast_arrays(m, e.astype(np.int64))
        if not np.all(np.isfinite(m)):
            raise ValueError("mantissas must be finite")
        if np.any((e > 2**62) | (e < -(2**62))):  # keeps e + frexp's exponent from wrapping
            raise _core.ExponentRangeError("exponents beyond loggrad's exponent range (|log2| < 2^60)")
        return cls._wrap(*_in_range(*_normalize(m.copy(), e.copy()), "LogArray.from_parts"))

    @classmethod
    def from_float(cls, values: npt.ArrayLike) -> LogArray:
        """Exact conversion of float64 values."""
        return cls(values)

    @classmethod
    def from_log10(cls, sign: npt.ArrayLike, log10: npt.ArrayLike) -> LogArray:
        """``sign * 10**log10``; sign 0 or log10 = -inf gives an exact zero."""
        s = np.asarray(sign, dtype=np.float64)
        l10 = np.asarray(log10, dtype=np.float64)
        s, l10 = np.broadcast_arrays(s, l10)
        if np.any(np.isnan(l10)) or np.any(np.isposinf(l10)):
            raise ValueError("log10 must be finite or -inf")
        if np.any(np.abs(s[s != 0]) != 1):
            raise ValueError("sign must be -1, 0 or 1")
        zero = (s == 0) | np.isneginf(l10)
        l2 = np.where(zero, 0.0, l10) / _LOG10_2
        e = np.floor(l2)
        m = np.exp2(l2 - e) * np.where(zero, 0.0, s)
        if np.any(np.abs(e) > _MAX_EXP):
            raise OverflowError("log10 beyond loggrad's exponent range (|log2| < 2^60)")
        return cls._wrap(*_normalize(m, e.astype(np.int64)))

    # -- array protocol -----------------------------------------------------
    @property
    def mantissa(self) -> np.ndarray:
        """Mantissas, |m| in [0.5, 1) or 0 (read-only view)."""
        v: np.ndarray = self._m.view()
        v.flags.writeable = False
        return v

    @property
    def exponent(self) -> np.ndarray:
        """Binary exponents (read-only view); exact zeros carry a large negative sentinel."""
        v: np.ndarray = self._e.view()
        v.flags.writeable = False
        return v

    @property
    def shape(self) -> tuple[int, ...]:
        return self._m.shape

    @property
    def ndim(self) -> int:
        return self._m.ndim

    @property
    def size(self) -> int:
        return self._m.size

    def __len__(self) -> int:
        if self._m.ndim == 0:
            raise TypeError("len() of a 0-d LogArray")
        return len(self._m)

    def __getitem__(self, key: Any) -> LogArray:
        # np.asarray: an integer index gives a numpy scalar, kept as a 0-d array view
        return LogArray._wrap(np.asarray(self._m[key]), np.asarray(self._e[key]))

    def __iter__(self):  # type: ignore[no-untyped-def]
        for i in range(len(self)):
            yield self[i]

    def reshape(self, *shape: Any) -> LogArray:
        return LogArray._wrap(self._m.reshape(*shape), self._e.reshape(*shape))

    def ravel(self) -> LogArray:
        return LogArray._wrap(self._m.ravel(), self._e.ravel())

    @property
    def T(self) -> LogArray:
        return LogArray._wrap(self._m.T, self._e.T)

    def copy(self) -> LogArray:
        return LogArray._wrap(self._m.copy(), self._e.copy())

    # -- conversions --------------------------------------------------------
    def log10(self) -> np.ndarray:
        """float64 log10|x|; -inf for an exact zero."""
        with np.errstate(divide="ignore"):
            out = self._e * _LOG10_2 + np.log10(np.abs(self._m))
        return np.where(self._m == 0, -np.inf, out)

    def log2(self) -> np.ndarray:
        """float64 log2|x|; -inf for an exact zero."""
        with np.errstate(divide="ignore"):
            out = self._e + np.log2(np.abs(self._m))
        return np.where(self._m == 0, -np.inf, out)

    def sign(self) -> np.ndarray:
        """Signs in {-1, 0, 1} (int8)."""
        return np.asarray(np.sign(self._m), dtype=np.int8)

    def to_numpy(self) -> np.ndarray:
        """float64 values: 0 or +-inf where the value is out of float64 range."""
        e = np.clip(self._e, -2200, 2200).astype(np.int32)
        with np.errstate(over="ignore", under="ignore"):
            return np.asarray(np.ldexp(self._m, e))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.to_numpy()
        return out if dtype is None else out.astype(dtype)

    def __float__(self) -> float:
        if self.size != 1:
            raise TypeError("only single-element LogArrays convert to float")
        return float(self.to_numpy().reshape(()))

    def in_float64_range(self) -> np.ndarray:
        """True where the value is a nonzero normal float64 or an exact zero."""
        return np.asarray((self._m == 0) | ((self._e >= -1021) & (self._e <= 1024)))

    # -- exact arithmetic ---------------------------------------------------
    @staticmethod
    def _coerce(other: Any) -> LogArray:
        return other if isinstance(other, LogArray) else LogArray(other)

    def __neg__(self) -> LogArray:
        return LogArray._wrap(-self._m, self._e.copy())

    def __abs__(self) -> LogArray:
        return LogArray._wrap(np.abs(self._m), self._e.copy())

    def __mul__(self, other: Any) -> LogArray:
        o = self._coerce(other)
        m = self._m * o._m
        e = np.where((self._m == 0) | (o._m == 0), 0, self._e + o._e)
        return LogArray._wrap(*_in_range(*_normalize(m, e), "LogArray product"))

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> LogArray:
        o = self._coerce(other)
        if np.any(o._m == 0):
            raise ZeroDivisionError("division of a LogArray by zero")
        e = np.where(self._m == 0, 0, self._e - o._e)
        return LogArray._wrap(*_in_range(*_normalize(self._m / o._m, e), "LogArray quotient"))

    def __pow__(self, k: object) -> LogArray:
        """Integer powers, exact in exponent and rounded like repeated float64 products."""
        if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or int(k) < 0:
            raise TypeError("LogArray powers must be non-negative integers")
        out = LogArray(np.ones(self.shape))
        base = self
        n = int(k)  # type: ignore[call-overload,unused-ignore]  # checked above
        while n:
            if n & 1:
                out = out * base
            n >>= 1
            if n:  # square only while a higher bit needs it: no spurious range errors
                base = base * base
        return out

    def _aligned(self, axis: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Mantissas scaled to the largest exponent along axis, and that exponent."""
        e = np.where(self._m == 0, _ZERO_EXP, self._e)
        emax = np.max(e, axis=axis, keepdims=True) if e.size else np.full((1,) * e.ndim, _ZERO_EXP)
        emax = np.where(emax == _ZERO_EXP, 0, emax)
        d = np.clip(e - emax, -2000, 0).astype(np.int32)
        with np.errstate(under="ignore"):
            scaled = np.ldexp(self._m, d)
        return scaled, emax

    def sum(self, axis: Any = None) -> LogArray:
        """Sum in extended range: terms below the rounding error of the largest may be lost, as in float64."""
        scaled, emax = self._aligned(axis)
        s = np.sum(scaled, axis=axis, keepdims=True)
        out = LogArray._wrap(*_normalize(s, emax.astype(np.int64)))
        if axis is None:
            return out.reshape(())
        return LogArray._wrap(np.squeeze(out._m, axis=axis), np.squeeze(out._e, axis=axis))

    def norm(self) -> LogArray:
        """Euclidean norm over all elements, overflow- and underflow-free."""
        scaled, emax = self._aligned(None)
        s = float(np.sqrt(np.sum(scaled * scaled)))
        return LogArray._wrap(*_normalize(np.asarray(s), np.asarray(emax.reshape(()), dtype=np.int64)))

    def max_abs(self) -> LogArray:
        """Largest |x| (0-d LogArray)."""
        if self.size == 0:
            raise ValueError("max_abs of an empty LogArray")
        i = np.argmax(np.where(self._m == 0, -np.inf, self.log2()).ravel())
        return abs(self.ravel()[int(i)])

    # -- display ------------------------------------------------------------
    def _element_strings(self, digits: int = 4) -> list[str]:
        l10 = self.log10().ravel()
        sg = self.sign().ravel()
        out = []
        for s, v in zip(sg, l10):
            if s == 0:
                out.append("0.")
                continue
            k = math.floor(v)
            mant = 10.0 ** (v - k)
            if round(mant, digits) >= 10.0:
                mant /= 10.0
                k += 1
            out.append(f"{'-' if s < 0 else ''}{mant:.{digits}f}e{'+' if k >= 0 else '-'}{abs(k):02d}")
        return out

    def __repr__(self) -> str:
        if self.ndim == 0:
            return f"LogArray({self._element_strings()[0]})"
        strs = self._element_strings()
        idx = np.arange(self.size).reshape(self.shape)
        body = np.array2string(
            idx, separator=", ", prefix="LogArray(", formatter={"int": lambda i: strs[i]}, threshold=100
        )
        return f"LogArray({body})"

    def __str__(self) -> str:
        if self.ndim == 0:
            return self._element_strings()[0]
        strs = self._element_strings()
        idx = np.arange(self.size).reshape(self.shape)
        return np.array2string(idx, formatter={"int": lambda i: strs[i]}, threshold=100)
