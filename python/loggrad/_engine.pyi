# Stubs for loggrad._engine (src/_engine.pyx). Its API is for Cython code
# (`cimport loggrad._engine`, declared in loggrad/_engine.pxd); Python sees
# only the names of the activation and loss codes and the capsule table.

from typing import Any

ACTIVATIONS: tuple[str, ...]
LOSSES: tuple[str, ...]
__pyx_capi__: dict[str, Any]
