"""loggrad: exact forward/backward passes of deep dense networks.

Every number on the extended path is what IEEE float64 would give if float64
had an unbounded exponent: a deep network's early-layer gradient of 10^-4217
is reported as 10^-4217, sign and all, where other frameworks say 0.0 or inf.
"""

from __future__ import annotations

from importlib import metadata as _metadata

from . import _config, _core
from ._core import ExponentRangeError
from ._logarray import LogArray
from .network import ACTIVATIONS, LOSSES, PRECISIONS, Gradients, Network

# Submodules by name (lg.init.he_normal, lg.theory.chi1, ...). The functions
# report, spectrum and sweep take the names of their modules on purpose:
# lg.report(net, x, y) is the call people make; the modules stay importable
# as loggrad.report etc. through importlib / "from loggrad.report import ...".
from . import init, theory, train
from .report import Report, report
from .spectrum import Spectrum, jvp_log_norm, spectrum
from .sweep import sweep
from .train import clip_grad_norm, clip_grad_value

_config.check_environment()  # the engine reads these later, silently

try:
    __version__ = _metadata.version("loggrad")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "PRECISIONS",
    "ExponentRangeError",
    "Gradients",
    "LogArray",
    "Network",
    "Report",
    "Spectrum",
    "clip_grad_norm",
    "clip_grad_value",
    "init",
    "jvp_log_norm",
    "report",
    "spectrum",
    "sweep",
    "theory",
    "train",
    "__version__",
    "get_include",
    "show_config",
]


def get_include() -> str:
    """Directory of loggrad's C++ headers (for code compiled against the engine)."""
    import os

    # beside the compiled modules: right for wheels and editable installs alike
    return os.path.join(os.path.dirname(_core.__file__), "include")


def show_config() -> dict[str, object]:
    """Build options of the engine: BLAS, SIMD level of the build and of the elementwise
    kernels on this machine, threads, compiler. Also printed."""
    cfg: dict[str, object] = {
        "version": __version__,
        "blas": _core.blas_config(),
        "blas_threads": _core.blas_threads(),
        "simd": _core.simd,
        "simd_kernels": _core.kernel_isa(),
        "compiler": _core.compiler,
        "blas_min_work": _core.blas_min_work,
        "max_binary_exponent": _core.max_exponent,
    }
    for k, v in cfg.items():
        print(f"{k:>20}: {v}")
    return cfg
