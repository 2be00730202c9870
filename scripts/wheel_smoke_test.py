"""Smoke test of an installed loggrad wheel (run by scripts/build_wheel.sh in a
fresh virtual environment: numpy, scipy-openblas32 and the wheel, nothing else).

    python scripts/wheel_smoke_test.py [--version X.Y.Z]

Checks: the deep chain of tests/data/deep_chain_reference.json against its
mpmath gradients; loggrad imported from the environment, not a source tree;
the version (given: the wheel filename's) equals loggrad.__version__ and
`loggrad --version`; the C-level API files (loggrad._engine, .pxd, headers
at get_include()) and the typing files are installed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--version", help="the version the wheel's filename carries")
    args = p.parse_args()
    t0 = time.perf_counter()
    failures: list[str] = []

    import loggrad as lg
    import loggrad._engine

    pkg = Path(lg.__file__).resolve().parent
    print(f"loggrad {lg.__version__} from {pkg}")
    if ROOT in pkg.parents:
        failures.append(f"loggrad was imported from the source tree ({pkg}), not the installed wheel")

    sys.path.insert(0, str(ROOT / "tests" / "data"))
    import deep_chain_reference as ref_mod

    ref = json.loads(ref_mod.JSON.read_text(encoding="utf-8"))
    bad = ref_mod.compare(lg, ref)
    failures += bad
    spec = ref["spec"]
    print(f"deep chain ({spec['depth']} layers, width {spec['width']}, {spec['activation']}, {spec['loss']}): "
          f"{'agrees with mpmath' if not bad else f'{len(bad)} values disagree'}")

    if args.version and args.version != lg.__version__:
        failures.append(f"wheel filename says {args.version}, loggrad.__version__ is {lg.__version__}")
    exe = shutil.which("loggrad", path=sysconfig.get_path("scripts"))
    if exe is None:
        failures.append("the loggrad console script is not installed")
    else:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
        if out != f"loggrad {lg.__version__}":
            failures.append(f"`loggrad --version` printed {out!r}")

    inc = Path(lg.get_include())
    need = [inc / "loggrad" / "network.hpp", inc / "loggrad" / "ext.hpp", pkg / "_engine.pxd", pkg / "engine.pxd",
            pkg / "py.typed", pkg / "_core.pyi", pkg / "_engine.pyi"]
    failures += [f"missing from the wheel: {f}" for f in need if not f.is_file()]
    if "backward_ext" not in loggrad._engine.__pyx_capi__:
        failures.append("loggrad._engine exports no backward_ext capsule")

    for f in failures:
        print("FAIL:", f)
    print(f"wheel smoke test: {'passed' if not failures else 'FAILED'} in {time.perf_counter() - t0:.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
