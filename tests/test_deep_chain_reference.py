"""A 1,500-layer sigmoid chain against gradients stored from mpmath
(tests/data/deep_chain_reference.json, made by tests/data/deep_chain_reference.py).

The same comparison is the smoke test of a built wheel (scripts/wheel_smoke_test.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import loggrad as lg

DATA = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(DATA))
try:
    import deep_chain_reference as ref_mod
finally:
    sys.path.remove(str(DATA))


def test_inputs_are_exact_binary_fractions() -> None:
    net = ref_mod.inputs({**ref_mod.SPEC, "depth": 3})
    for v in (v for w in net["weights"] for row in w for v in row):
        assert -2.0 <= v < 2.0 and (v * 2**18).is_integer()


def test_deep_chain_matches_mpmath() -> None:
    ref = json.loads(ref_mod.JSON.read_text(encoding="utf-8"))
    assert ref["spec"] == ref_mod.SPEC
    # the first layer's gradient is far outside float64's range
    assert max(ref_mod.log10_and_sign(v)[0] for row in ref["values"]["dW0"] for v in row) < -600
    assert ref_mod.compare(lg, ref) == []
