"""mutmut hooks for scripts/mutation.sh (found through PYTHONPATH=scripts).

MUTATION_SAMPLE=F (0 < F <= 1, default 1) runs a fixed fraction F of each
module's mutants and marks the others "skipped" (left out of the score, and
counted as "not run" by scripts/mutation_score.py). The choice is a hash of the
module name, the mutated source line and the mutant's index on that line: the
same mutants are chosen on every run, whatever the line numbers, so that a
resumed run (MUTATION_RESUME=1) reruns the same sample, and a sample of F is
part of every sample of a larger F. A sample's score estimates the module's
score; scripts/mutation_score.py prints its binomial interval.

MUTATION_TIMEOUT_FACTOR=T (default 3) times a mutant out after T times the
test selection's baseline time, in place of mutmut's fixed 10: a mutant that
hangs (a loop whose exit test is mutated) costs 10 baselines, minutes here, and
a timeout counts as killed. T must stay well above the spread of an unchanged
selection's time on a loaded machine, so that a slow survivor is not taken
for a hung one.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def _env_number(name: str, default: str, ok, what: str) -> float:
    """The number in environment variable `name`; exits naming it when it is not one `ok` accepts."""
    raw = os.environ.get(name, default)
    try:
        v = float(raw)
    except ValueError:
        v = float("nan")
    if not ok(v):
        raise SystemExit(f"{name} must be {what}, got {raw!r}")
    return v


def _fraction() -> float:
    return _env_number("MUTATION_SAMPLE", "1", lambda f: 0.0 < f <= 1.0, "a number in (0, 1]")


def in_sample(module: str, line: str, index: int, fraction: float) -> bool:
    """Whether a mutant belongs to the sample of the given fraction (deterministic)."""
    if fraction >= 1.0:
        return True
    key = f"{module}\0{line.strip()}\0{index}".encode()
    h = int.from_bytes(hashlib.sha256(key).digest()[:8], "big")
    return h < fraction * 2.0**64


def _timeout_factor() -> float:
    return _env_number("MUTATION_TIMEOUT_FACTOR", "3", lambda t: t >= 2.0, "a number >= 2")


def pre_mutation(context) -> None:  # mutmut's hook: called before each mutant is applied and tested
    config = context.config
    if not getattr(config, "_timeout_scaled", False):
        # mutmut 2.5 times a mutant out at 10 x config.baseline_time_elapsed (tests_pass), read
        # on each call; scale the baseline once so that the limit is T baselines
        config.baseline_time_elapsed *= _timeout_factor() / 10.0
        config._timeout_scaled = True
    f = _fraction()
    mid = context.mutation_id
    if not in_sample(Path(context.filename).stem, mid.line, mid.index, f):
        context.skip = True
