"""Strict JSON for what loggrad prints and exports.

Non-finite numbers become ``null``, as strict JSON (RFC 8259) has no NaN or
Infinity and as pandas, jq and JavaScript read them. In loggrad's output a
null number is a log10 of an exact zero (-inf), a figure that does not exist
(nan: the largest entry of an all-zero block, a slope of one layer) or an
infinity. A LogArray is written as its signs and log10s, so a zero there is
still told apart by its sign 0.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from ._logarray import LogArray


def strict(v: Any) -> Any:
    """v with numpy values as Python ones and every non-finite float as None."""
    if isinstance(v, LogArray):
        return {"sign": strict(np.asarray(v.sign())), "log10": strict(np.asarray(v.log10()))}
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.ndarray):
        return strict(v.tolist())
    if isinstance(v, (list, tuple)):
        return [strict(u) for u in v]
    if isinstance(v, dict):
        return {str(k): strict(u) for k, u in v.items()}
    return v


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`strict` (obj): never NaN or Infinity in the text."""
    return json.dumps(strict(obj), allow_nan=False, **kwargs)


def lossless(v: Any) -> Any:
    """Strict-JSON value that keeps every number (resume files, ``Report.to_dict``):
    non-finite floats as the strings "inf", "-inf", "nan";
    a LogArray as its sign and log10; numpy scalars and arrays as Python ones."""
    if isinstance(v, LogArray):
        return {"sign": lossless(np.asarray(v.sign())), "log10": lossless(np.asarray(v.log10()))}
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return f
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.ndarray):
        return lossless(v.tolist())
    if isinstance(v, (list, tuple)):
        return [lossless(u) for u in v]
    if isinstance(v, dict):
        return {str(k): lossless(u) for k, u in v.items()}
    return v


_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def from_lossless(v: Any) -> Any:
    """The values :func:`lossless` wrote, non-finite floats restored."""
    if isinstance(v, str) and v in _NONFINITE:
        return _NONFINITE[v]
    if isinstance(v, list):
        return [from_lossless(u) for u in v]
    if isinstance(v, dict):
        return {k: from_lossless(u) for k, u in v.items()}
    return v
