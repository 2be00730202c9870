"""cibuildwheel's repair step on Windows: delvewheel, told where the OpenBLAS DLL is.

    python scripts/repair_wheel_windows.py WHEEL DEST_DIR

Linux and macOS wheels do not bundle OpenBLAS: they load libscipy_openblas
from the scipy-openblas32 package installed beside loggrad, through the RPATH
set in CMakeLists.txt (see scripts/build_wheel.sh). Windows has no RPATH, so
the DLL (and the MSVC C++ runtime, which Python does not ship) is bundled by
delvewheel, which also patches loggrad/__init__.py to find them. The DLL lies
in scipy_openblas32's lib folder (installed by before-build in
[tool.cibuildwheel.windows]); delvewheel only searches PATH unless told.
"""

from __future__ import annotations

import subprocess
import sys

import scipy_openblas32


def main() -> int:
    wheel, dest = sys.argv[1:3]
    cmd = [sys.executable, "-m", "delvewheel", "repair", "--add-path", scipy_openblas32.get_lib_dir(),
           "-w", dest, wheel]
    print(" ".join(cmd), flush=True)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
