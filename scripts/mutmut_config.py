"""mutmut hooks for scripts/mutation.sh (found through PYTHONPATH=scripts).

MUTATION_SAMPLE=F (0 < F <= 1, default 1) runs a fixed fraction F of each
module's mutants and marks the others "skipped" (left out of the score, and
counted as "not run" by scripts/mutation_score.py). The choice is a hash of the
module name, the mutated source line and the mutant's index on that line: the
same mutants are chosen on every run, whatever the line numbers, so that a
resumed run (MUTATION_RESUME=1) reruns the same sample, and a sample of F is
part of every sample of a larger F. A sample's score estimates the module's
score; scripts/mutation_score.py prints its binomial interval.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def _fraction() -> float:
    raw = os.environ.get("MUTATION_SAMPLE", "1")
    try:
        f = float(raw)
    except ValueError:
        raise SystemExit(f"MUTATION_SAMPLE must be a number in (0, 1], got {raw!r}") from None
    if not 0.0 < f <= 1.0:
        raise SystemExit(f"MUTATION_SAMPLE must be a number in (0, 1], got {raw!r}")
    return f


def in_sample(module: str, line: str, index: int, fraction: float) -> bool:
    """Whether a mutant belongs to the sample of the given fraction (deterministic)."""
    if fraction >= 1.0:
        return True
    key = f"{module}\0{line.strip()}\0{index}".encode()
    h = int.from_bytes(hashlib.sha256(key).digest()[:8], "big")
    return h < fraction * 2.0**64


def pre_mutation(context) -> None:  # mutmut's hook: called before each mutant is applied and tested
    f = _fraction()
    mid = context.mutation_id
    if not in_sample(Path(context.filename).stem, mid.line, mid.index, f):
        context.skip = True
