"""LogArray: an array of float64 values with an unbounded exponent range.

Each element is ``m * 2**e`` with a float64 mantissa ``m`` (``0.5 <= |m| < 1``,
or exactly 0) and an int64 binary exponent ``e``. This is the representation
the engine computes in; everything here is a vectorised numpy view of it.
"""

from __future__ import annotations

import math
import operator
import sys
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _core

_LOG10_2 = math.log10(2.0)
_LOG10_2_LO = -2.8037281277851704e-18  # log10(2) - _LOG10_2
_LN2 = math.log(2.0)
_LN2_LO = 2.3190468138462996e-17  # ln(2) - _LN2
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
            raise _core.ExponentRangeError("LogArray.from_log10: log10 beyond loggrad's exponent range (|log2| < 2^60)")
        return cls._wrap(*_in_range(*_normalize(m, e.astype(np.int64)), "LogArray.from_log10"))

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
    def _log_abs(self, hi: float, lo: float, direct: Any) -> np.ndarray:
        """log|x| in some base, given log_base(2) as hi + lo: -inf for exact zeros.

        Within float64's normal range the value converts exactly and the float64
        function applies directly (no cancellation near |x| = 1); beyond it
        |log| > 700, so e*log(2) + log|m| loses nothing to cancellation, and the
        split constant keeps e*log(2) within an ulp for exponents up to 2^60.
        """
        inside = (self._e >= -1021) & (self._e <= 1024)
        e = self._e.astype(np.float64)
        with np.errstate(divide="ignore"):
            wide = e * hi + (e * lo + direct(np.abs(self._m)))
            near = direct(np.abs(np.ldexp(self._m, np.where(inside, self._e, 0).astype(np.int32))))
        out = np.where(inside, near, wide)
        return np.asarray(np.where(self._m == 0, -np.inf, out))

    def log10(self) -> np.ndarray:
        """float64 log10|x|; -inf for an exact zero."""
        return self._log_abs(_LOG10_2, _LOG10_2_LO, np.log10)

    def log2(self) -> np.ndarray:
        """float64 log2|x|; -inf for an exact zero."""
        return self._log_abs(1.0, 0.0, np.log2)

    def log(self) -> np.ndarray:
        """float64 natural log|x|; -inf for an exact zero."""
        return self._log_abs(_LN2, _LN2_LO, np.log)

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

    # torch.as_tensor / torch.tensor ask for DLPack before they would walk the
    # LogArray as a nested sequence of 0-d LogArrays; stop them here with a
    # message saying which conversion to ask for.
    def __dlpack__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(_NO_IMPLICIT)

    def __dlpack_device__(self) -> Any:
        raise TypeError(_NO_IMPLICIT)

    def __float__(self) -> float:
        if self.size != 1:
            raise TypeError("only single-element LogArrays convert to float")
        return float(self.to_numpy().reshape(()))

    def __bool__(self) -> bool:
        if self.size != 1:
            raise ValueError(
                "the truth value of a LogArray with more than one element is ambiguous; use .any() or .all() "
                "on a comparison, e.g. (a != 0).all()"
            )
        return bool(self._m.reshape(()) != 0)

    def in_float64_range(self) -> np.ndarray:
        """True where the value is a nonzero normal float64 or an exact zero."""
        return np.asarray((self._m == 0) | ((self._e >= -1021) & (self._e <= 1024)))

    # -- numpy ufuncs -------------------------------------------------------
    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        """Exact ufuncs on LogArrays; a TypeError for every other one.

        numpy would otherwise convert through float64 (``__array__``) and flush
        every value beyond its range to 0 or inf without a word.
        """
        name = getattr(ufunc, "__name__", str(ufunc))
        out = kwargs.pop("out", None)
        if out is not None and out != (None,) * len(out):
            raise TypeError(f"np.{name} with out= is not supported on LogArray (the result would be float64)")
        if method == "reduce" and name in _REDUCTIONS:
            if len(inputs) != 1 or not isinstance(inputs[0], LogArray):
                raise TypeError(f"np.{name}.reduce: expected one LogArray")
            allowed = {"axis", "keepdims"}
            if set(kwargs) - allowed:
                raise TypeError(f"np.{name}.reduce on LogArray takes only axis and keepdims")
            axis = kwargs.get("axis", 0)
            keep = bool(kwargs.get("keepdims", False))
            return getattr(inputs[0], _REDUCTIONS[name])(axis=axis, keepdims=keep)
        if method != "__call__" or name not in _UFUNCS:
            raise TypeError(
                f"np.{name}{'' if method == '__call__' else '.' + method} is not supported on LogArray: numpy "
                "would compute it in float64, where values beyond float64's range become 0 or inf. Convert "
                "explicitly with .to_numpy() (float64, 0/inf out of range) or use .log10()/.sign()."
            )
        if kwargs:
            raise TypeError(f"np.{name} on LogArray takes no keyword arguments (got {sorted(kwargs)})")
        args = [LogArray._coerce(x) for x in inputs]
        return _UFUNCS[name](*args)

    # -- exact arithmetic ---------------------------------------------------
    @staticmethod
    def _coerce(other: Any) -> LogArray:
        return other if isinstance(other, LogArray) else LogArray(other)

    def _try_coerce(self, other: Any) -> LogArray | None:
        try:
            return self._coerce(other)
        except (TypeError, ValueError):
            return None

    def __neg__(self) -> LogArray:
        return LogArray._wrap(-self._m, self._e.copy())

    def __pos__(self) -> LogArray:
        return self.copy()

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

    def __rtruediv__(self, other: Any) -> LogArray:
        return self._coerce(other) / self

    def __add__(self, other: Any) -> LogArray:
        """Sum rounded once, as float64 rounds it, with an unbounded exponent."""
        o = self._coerce(other)
        m1, e1, m2, e2 = np.broadcast_arrays(self._m, self._e, o._m, o._e)
        # Zeros carry the zero exponent, below every other: emax is the exponent
        # of the larger nonzero term (both zero: the sum is zero whatever emax is).
        emax = np.maximum(e1, e2)
        # Both mantissas scaled to the larger exponent are exact float64 values
        # (a shift past 2000 bits leaves a term far below half an ulp of the
        # other, which float64 would drop as well), so one float64 addition
        # rounds the exact sum once.
        d1 = np.maximum(e1 - emax, -2000).astype(np.int32)
        d2 = np.maximum(e2 - emax, -2000).astype(np.int32)
        with np.errstate(under="ignore"):
            s = np.ldexp(m1, d1)
            s += np.ldexp(m2, d2)
        return LogArray._wrap(*_in_range(*_normalize(s, emax), "LogArray sum"))

    __radd__ = __add__

    def __sub__(self, other: Any) -> LogArray:
        return self + (-self._coerce(other))

    def __rsub__(self, other: Any) -> LogArray:
        return self._coerce(other) + (-self)

    def sqrt(self) -> LogArray:
        """Square root, rounded once (exact exponent halving)."""
        if np.any(self._m < 0):
            raise ValueError("sqrt of a negative LogArray value")
        e = np.where(self._m == 0, 0, self._e)
        odd = (e & 1).astype(bool)
        m = np.where(odd, self._m * 2.0, self._m)  # exact; sqrt of m * 2^(even)
        half = (e - odd) // 2
        return LogArray._wrap(*_normalize(np.sqrt(m), half))

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

    # -- comparisons --------------------------------------------------------
    def _compare(self, other: LogArray) -> np.ndarray:
        """-1, 0 or 1 per element: the exact order of self and other."""
        m1, e1, m2, e2 = np.broadcast_arrays(self._m, self._e, other._m, other._e)
        s1, s2 = np.sign(m1), np.sign(m2)
        # same nonzero sign: the larger exponent has the larger magnitude; equal
        # exponents order as the (signed) mantissas do
        by_exp = np.sign(e1 - e2) * s1
        same_sign = np.where(e1 != e2, by_exp, np.sign(m1 - m2))
        out = np.where(s1 == s2, np.where(s1 == 0, 0.0, same_sign), np.sign(s1 - s2))
        return np.asarray(out, dtype=np.int8)

    def __eq__(self, other: object) -> Any:
        o = self._try_coerce(other)
        return NotImplemented if o is None else self._compare(o) == 0

    def __ne__(self, other: object) -> Any:
        o = self._try_coerce(other)
        return NotImplemented if o is None else self._compare(o) != 0

    def __lt__(self, other: Any) -> np.ndarray:
        return self._compare(self._coerce(other)) < 0

    def __le__(self, other: Any) -> np.ndarray:
        return self._compare(self._coerce(other)) <= 0

    def __gt__(self, other: Any) -> np.ndarray:
        return self._compare(self._coerce(other)) > 0

    def __ge__(self, other: Any) -> np.ndarray:
        return self._compare(self._coerce(other)) >= 0

    __hash__ = None  # type: ignore[assignment]  # mutable and compared elementwise, like ndarray

    def maximum(self, other: Any) -> LogArray:
        """Elementwise larger value (exact)."""
        return _select(self._compare(self._coerce(other)) >= 0, self, self._coerce(other))

    def minimum(self, other: Any) -> LogArray:
        """Elementwise smaller value (exact)."""
        return _select(self._compare(self._coerce(other)) <= 0, self, self._coerce(other))

    # -- reductions ---------------------------------------------------------
    def _aligned(self, axis: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Mantissas scaled to the largest exponent along axis, and that exponent."""
        e = np.where(self._m == 0, _ZERO_EXP, self._e)
        emax = np.max(e, axis=axis, keepdims=True) if e.size else np.full((1,) * e.ndim, _ZERO_EXP)
        emax = np.where(emax == _ZERO_EXP, 0, emax)
        d = np.clip(e - emax, -2000, 0).astype(np.int32)
        with np.errstate(under="ignore"):
            scaled = np.ldexp(self._m, d)
        return scaled, emax

    def _reduced_shape(self, axis: Any, keepdims: bool) -> tuple[int, ...]:
        return np.sum(np.broadcast_to(np.int8(0), self.shape), axis=axis, keepdims=keepdims).shape  # type: ignore[no-any-return]

    def sum(self, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False) -> LogArray:
        """Sum in extended range: terms below the rounding error of the largest may be lost, as in float64."""
        _check_reduction_args("sum", dtype, out)
        shape = self._reduced_shape(axis, keepdims)
        if self.size == 0 or 0 in self.shape:
            return LogArray(np.zeros(shape))
        scaled, emax = self._aligned(axis)
        s = np.sum(scaled, axis=axis, keepdims=True)
        m, e = _in_range(*_normalize(s, emax.astype(np.int64)), "LogArray.sum")
        return LogArray._wrap(m.reshape(shape), e.reshape(shape))

    def mean(self, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False) -> LogArray:
        """Arithmetic mean: the extended sum divided (once rounded) by the count."""
        _check_reduction_args("mean", dtype, out)
        total = self.sum(axis=axis, keepdims=keepdims)
        n = self.size // max(total.size, 1) if total.size else 0
        if n == 0:
            raise ValueError("mean of an empty LogArray")
        return total / LogArray(float(n))

    def max(self, axis: Any = None, out: Any = None, keepdims: bool = False) -> LogArray:
        """Largest value (exact); ValueError for an empty reduction, as numpy does."""
        _check_reduction_args("max", None, out)
        return self._extreme(axis, keepdims, largest=True)

    def min(self, axis: Any = None, out: Any = None, keepdims: bool = False) -> LogArray:
        """Smallest value (exact); ValueError for an empty reduction, as numpy does."""
        _check_reduction_args("min", None, out)
        return self._extreme(axis, keepdims, largest=False)

    def _extreme(self, axis: Any, keepdims: bool, largest: bool) -> LogArray:
        shape = self._reduced_shape(axis, keepdims)
        axes = _axes(axis, self.ndim)
        rest = [a for a in range(self.ndim) if a not in axes]
        n = int(np.prod([self.shape[a] for a in axes], dtype=np.int64))
        if n == 0:
            raise ValueError(f"{'max' if largest else 'min'} of an empty LogArray (zero-size reduction)")
        order = rest + list(axes)
        m = np.transpose(self._m, order).reshape(-1, n)
        e = np.transpose(self._e, order).reshape(-1, n)
        key_m = m if largest else -m
        # order by sign class, then by signed exponent, then by mantissa: all exact
        c = np.sign(key_m).astype(np.int64)
        c_best = c.max(axis=1, keepdims=True)
        cand = c == c_best
        k2 = np.where(cand, c * np.where(c == 0, 0, e), np.iinfo(np.int64).min)
        cand &= k2 == k2.max(axis=1, keepdims=True)
        i = np.argmax(np.where(cand, key_m, -np.inf), axis=1)[:, None]
        mo = np.take_along_axis(m, i, axis=1)
        eo = np.take_along_axis(e, i, axis=1)
        return LogArray._wrap(mo.reshape(shape), eo.reshape(shape))

    def any(self) -> bool:
        """True if any element is nonzero."""
        return bool(np.any(self._m != 0))

    def all(self) -> bool:
        """True if every element is nonzero."""
        return bool(np.all(self._m != 0))

    def norm(self) -> LogArray:
        """Euclidean norm over all elements, overflow- and underflow-free."""
        scaled, emax = self._aligned(None)
        s = float(np.sqrt(np.sum(scaled * scaled)))
        m, e = _normalize(np.asarray(s), np.asarray(emax.reshape(()), dtype=np.int64))
        return LogArray._wrap(*_in_range(m, e, "LogArray.norm"))

    def max_abs(self) -> LogArray:
        """Largest |x| (0-d LogArray)."""
        if self.size == 0:
            raise ValueError("max_abs of an empty LogArray")
        return abs(self).max()

    # -- display ------------------------------------------------------------
    def _element_string(self, flat: int, digits: int = 4) -> str:
        m = float(self._m.flat[flat])
        if m == 0:
            return "0."
        v = int(self._e.flat[flat]) * _LOG10_2 + math.log10(abs(m))
        k = math.floor(v)
        mant = 10.0 ** (v - k)
        if round(mant, digits) >= 10.0:
            mant /= 10.0
            k += 1
        return f"{'-' if m < 0 else ''}{mant:.{digits}f}e{'+' if k >= 0 else '-'}{abs(k):02d}"

    def _body(self, prefix: str) -> str:
        """numpy's layout of the elements, summarised past 1000 of them.

        Only the elements shown are formatted: beyond the threshold the index
        array handed to array2string keeps just the edge items of each long
        axis (and one hidden placeholder between them, so numpy prints ...).
        """
        shape = self.shape
        summarise = self.size > _REPR_THRESHOLD
        if summarise:
            keep = [
                np.r_[0:_EDGE, 0, n - _EDGE : n] if n > 2 * _EDGE else np.arange(n) for n in shape
            ]
            idx = np.ravel_multi_index(np.ix_(*keep), shape) if shape else np.zeros((), dtype=np.intp)
        else:
            idx = np.arange(self.size).reshape(shape)
        return np.array2string(
            np.asarray(idx),
            separator=", " if prefix else " ",
            prefix=prefix,
            formatter={"int": lambda i: self._element_string(int(i))},
            threshold=0 if summarise else sys.maxsize,
            edgeitems=_EDGE,
        )

    def __repr__(self) -> str:
        if self.ndim == 0:
            return f"LogArray({self._element_string(0)})"
        return f"LogArray({self._body('LogArray(')})"

    def __str__(self) -> str:
        if self.ndim == 0:
            return self._element_string(0)
        return self._body("")


_NO_IMPLICIT = (
    "a LogArray does not convert implicitly: values beyond float64's range would become 0 or inf. "
    "Use .to_numpy() for float64 values (then torch.as_tensor(a.to_numpy())), or .log10() and .sign()."
)
_REPR_THRESHOLD = 1000
_EDGE = 3


def _select(cond: np.ndarray, a: LogArray, b: LogArray) -> LogArray:
    ma, ea, mb, eb = np.broadcast_arrays(a._m, a._e, b._m, b._e)
    return LogArray._wrap(np.where(cond, ma, mb), np.where(cond, ea, eb))


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    raw = axis if isinstance(axis, tuple) else (axis,)
    out = []
    for a in raw:
        a = operator.index(a)
        if not -ndim <= a < ndim:
            raise np.exceptions.AxisError(a, ndim) if hasattr(np, "exceptions") else ValueError(
                f"axis {a} is out of bounds for a LogArray of dimension {ndim}"
            )
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError("repeated axis")
    return tuple(sorted(out))


def _check_reduction_args(name: str, dtype: Any, out: Any) -> None:
    if dtype is not None:
        raise TypeError(f"LogArray.{name}: dtype= is not supported (results are LogArrays)")
    if out is not None:
        raise TypeError(f"LogArray.{name}: out= is not supported (results are LogArrays)")


def _log_ufunc(method: str) -> Any:
    def f(a: LogArray) -> np.ndarray:
        out: np.ndarray = getattr(a, method)()
        if np.any(a._m < 0):
            warnings.warn(f"invalid value encountered in {method} (negative LogArray value)", RuntimeWarning, stacklevel=3)
            out = np.where(a._m < 0, np.nan, out)
        return out

    return f


_UFUNCS: dict[str, Any] = {
    "log": _log_ufunc("log"),
    "log10": _log_ufunc("log10"),
    "log2": _log_ufunc("log2"),
    "absolute": abs,
    "fabs": abs,
    "negative": operator.neg,
    "positive": operator.pos,
    "multiply": operator.mul,
    "divide": operator.truediv,
    "true_divide": operator.truediv,
    "add": operator.add,
    "subtract": operator.sub,
    "sqrt": LogArray.sqrt,
    "square": lambda a: a * a,
    "equal": operator.eq,
    "not_equal": operator.ne,
    "less": operator.lt,
    "less_equal": operator.le,
    "greater": operator.gt,
    "greater_equal": operator.ge,
    "maximum": LogArray.maximum,
    "minimum": LogArray.minimum,
    "fmax": LogArray.maximum,
    "fmin": LogArray.minimum,
    "sign": lambda a: np.sign(a._m),
    "isfinite": lambda a: np.ones(a.shape, dtype=bool),
    "isinf": lambda a: np.zeros(a.shape, dtype=bool),
    "isnan": lambda a: np.zeros(a.shape, dtype=bool),
}
_REDUCTIONS = {"add": "sum", "maximum": "max", "minimum": "min", "fmax": "max", "fmin": "min"}
