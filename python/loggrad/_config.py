"""Checks of the environment variables the engine reads.

The engine reads them with C functions that never complain:
``LOGGRAD_NUM_THREADS`` with ``atoi`` (text becomes 0 and then one thread,
``"4x"`` becomes 4) and ``LOGGRAD_SIMD`` by exact comparison with a few
names (anything else is ignored). These checks accept exactly what the engine
understands and warn about the rest, at ``import loggrad``.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping

#: LOGGRAD_SIMD values the engine acts on (cpp/src/simd.cpp); unset means "the best this CPU has"
SIMD_VALUES = ("baseline", "sse2", "avx2")

_INT_MAX = 2**31 - 1


def _atoi(text: str) -> int:
    """What C's atoi makes of text (leading blanks, a sign, then digits; 0 without digits)."""
    m = re.match(r"[ \t\n\v\f\r]*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0


def check_environment(environ: Mapping[str, str] | None = None) -> list[str]:
    """Warn (RuntimeWarning) about each engine setting the engine would misread or ignore.

    Returns the warning messages. An empty value counts as unset.
    """
    env = os.environ if environ is None else environ
    msgs: list[str] = []
    threads = env.get("LOGGRAD_NUM_THREADS")
    if threads:
        n = _atoi(threads)
        whole = re.fullmatch(r"\s*\+?\d+\s*", threads) is not None
        if not whole or not 1 <= n <= _INT_MAX:
            if abs(n) > _INT_MAX:
                used = "too large for the engine's int"
            else:
                used = f"the engine would use {max(1, n)} thread{'s' if n > 1 else ''}"
            msgs.append(
                f"LOGGRAD_NUM_THREADS={threads!r} is not a valid thread count ({used}); "
                "valid values: a positive integer such as 4"
            )
    simd = env.get("LOGGRAD_SIMD")
    if simd and simd not in SIMD_VALUES:
        msgs.append(
            f"LOGGRAD_SIMD={simd!r} is not a valid setting and is ignored (the best kernels this CPU "
            f"supports run); valid values: {', '.join(SIMD_VALUES)}"
        )
    for msg in msgs:
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return msgs
