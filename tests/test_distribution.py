"""What a distribution promises: one version everywhere, the configuration
report, the typed API (stubs in step with the compiled bindings) and the files
compiled code needs (headers, .pxd).

Runs against whatever loggrad is installed (editable, wheel or sdist build).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

import loggrad as lg
from loggrad import _core

ROOT = Path(__file__).resolve().parents[1]
PKG = Path(lg.__file__).resolve().parent
# PEP 440 public version (the part a wheel filename carries).
VERSION_RE = re.compile(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?$")


def _pyproject_version() -> str | None:
    path = ROOT / "pyproject.toml"
    if not path.is_file():  # tests run from an installed copy without the source tree
        return None
    text = path.read_text(encoding="utf-8")
    try:
        import tomllib
    except ImportError:  # Python 3.10
        m = re.search(r'^\[project\][^\[]*?^version\s*=\s*"([^"]+)"', text, re.M | re.S)
        return m.group(1) if m else None
    return str(tomllib.loads(text)["project"]["version"])


def _editable() -> bool:
    """scikit-build-core's editable install: Python files from the source tree,
    compiled modules (and the installed headers) in site-packages."""
    return Path(_core.__file__).resolve().parent != PKG


# -- one version ---------------------------------------------------------------


def test_version_is_pep440_and_from_metadata() -> None:
    assert VERSION_RE.match(lg.__version__), lg.__version__
    assert lg.__version__ == metadata.version("loggrad")


def test_version_matches_pyproject() -> None:
    v = _pyproject_version()
    if v is None:
        pytest.skip("no pyproject.toml beside the tests")
    assert lg.__version__ == v


def test_dist_info_matches_version() -> None:
    """The installed distribution's name and version are the wheel's."""
    dist = metadata.distribution("loggrad")
    assert dist.metadata["Name"] == "loggrad"
    assert dist.version == lg.__version__
    infos = {Path(str(f)).parts[0] for f in dist.files or [] if ".dist-info" in str(f)}
    assert f"loggrad-{lg.__version__}.dist-info" in infos


def test_command_line_version() -> None:
    out = subprocess.run([sys.executable, "-m", "loggrad", "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"loggrad {lg.__version__}"


def test_console_script_version() -> None:
    """The `loggrad` entry point installed beside this interpreter."""
    exe = shutil.which("loggrad", path=sysconfig.get_path("scripts"))
    if exe is None:
        pytest.skip("the loggrad console script is not installed beside this interpreter")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"loggrad {lg.__version__}"


# -- configuration report ------------------------------------------------------


def test_show_config(capsys: pytest.CaptureFixture[str]) -> None:
    cfg = lg.show_config()
    assert set(cfg) == {"version", "blas", "blas_threads", "simd", "simd_kernels", "compiler", "blas_min_work",
                        "max_binary_exponent"}
    assert cfg["version"] == lg.__version__
    assert isinstance(cfg["blas"], str) and cfg["blas"]
    assert isinstance(cfg["blas_threads"], int) and cfg["blas_threads"] >= 1
    assert cfg["simd"] in {"avx512", "avx2", "sse2", "neon", "none"}
    assert cfg["simd_kernels"] in {"avx512", "avx2", "baseline"}
    assert isinstance(cfg["compiler"], str) and cfg["compiler"]
    assert cfg["blas_min_work"] == _core.blas_min_work
    assert cfg["max_binary_exponent"] == 2**60
    printed = capsys.readouterr().out
    for k in cfg:
        assert re.search(rf"^\s*{k}: ", printed, re.M), k


# -- typed API -----------------------------------------------------------------


def test_typing_files_installed() -> None:
    for name in ("py.typed", "_core.pyi", "_engine.pyi"):
        assert (PKG / name).is_file(), name


def _split_args(s: str) -> list[str]:
    """Split a pybind11 signature's argument list at top-level commas."""
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def _runtime_signature(obj: Any, name: str) -> tuple[list[tuple[str, Any]], str]:
    """(parameters as (name, default or ...), return annotation) from pybind11's docstring."""
    doc = (obj.__doc__ or "").strip().splitlines()[0]
    m = re.match(rf"^{re.escape(name)}\((.*)\) -> (.+)$", doc)
    assert m, f"no signature in {name}'s docstring: {doc!r}"
    params: list[tuple[str, Any]] = []
    for a in _split_args(m.group(1)):
        pname, _, rest = a.partition(":")
        default: Any = ...
        if " = " in rest:
            default = ast.literal_eval(rest.rsplit(" = ", 1)[1])
        if pname.strip() != "self":
            params.append((pname.strip(), default))
    return params, m.group(2).strip()


def _stub_signature(fn: ast.FunctionDef) -> list[tuple[str, Any]]:
    a = fn.args
    pos = a.posonlyargs + a.args
    defaults: list[Any] = [...] * (len(pos) - len(a.defaults)) + [ast.literal_eval(d) for d in a.defaults]
    out = [(p.arg, d) for p, d in zip(pos, defaults)]
    out += [(p.arg, ... if d is None else ast.literal_eval(d)) for p, d in zip(a.kwonlyargs, a.kw_defaults)]
    return [(n, d) for n, d in out if n != "self"]


def _is_property(fn: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "property" for d in fn.decorator_list)


# Return annotations both sides can state the same way.
SIMPLE = {"int", "str", "bool", "None", "float", "list[str]", "list[int]"}


def _check_function(stub_fns: list[ast.FunctionDef], obj: Any, name: str, where: str) -> None:
    params, ret = _runtime_signature(obj, name)
    # The last overload (or the only definition) states the full signature.
    stub = stub_fns[-1]
    assert _stub_signature(stub) == params, f"{where}{name}: stub {_stub_signature(stub)} != bindings {params}"
    if ret in SIMPLE and stub.returns is not None:
        assert ast.unparse(stub.returns) == ret, f"{where}{name} returns {ret}"


def test_core_stub_matches_bindings() -> None:
    tree = ast.parse((PKG / "_core.pyi").read_text(encoding="utf-8"))
    funcs: dict[str, list[ast.FunctionDef]] = {}
    values: set[str] = set()
    classes: dict[str, ast.ClassDef] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            funcs.setdefault(node.name, []).append(node)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if not node.target.id.startswith("_"):
                values.add(node.target.id)
        elif isinstance(node, ast.ClassDef):
            classes[node.name] = node

    runtime = {n for n in dir(_core) if not n.startswith("_")}
    assert runtime == set(funcs) | values | set(classes), "names differ between _core.pyi and loggrad._core"

    for name, fns in funcs.items():
        _check_function(fns, getattr(_core, name), name, "")
    for name in values:
        v = getattr(_core, name)
        ann = next(ast.unparse(n.annotation) for n in tree.body
                   if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.target.id == name)
        assert type(v).__name__ == ann, f"{name}: {type(v).__name__} at run time, {ann} in the stub"

    assert issubclass(_core.ExponentRangeError, OverflowError)
    arch = _core.Architecture
    members: dict[str, list[ast.FunctionDef]] = {}
    for node in classes["Architecture"].body:
        if isinstance(node, ast.FunctionDef):
            members.setdefault(node.name, []).append(node)
    public = {n for n in dir(arch) if not n.startswith("_")} | {"__init__"}
    assert public == set(members), "Architecture members differ between _core.pyi and the bindings"
    for name, fns in members.items():
        obj = getattr(arch, name)
        if isinstance(obj, property):
            assert _is_property(fns[0]), f"Architecture.{name} is a property"
            _, ret = _runtime_signature(obj.fget, "")
            if ret in SIMPLE:
                assert ast.unparse(fns[0].returns) == ret, f"Architecture.{name} returns {ret}"  # type: ignore[arg-type]
        else:
            _check_function(fns, obj, name, "Architecture.")


def test_core_stub_overloads_agree() -> None:
    """Every overload of a stubbed function names the same parameters as the full
    (last) one, so a parameter added to the bindings is added to each."""
    tree = ast.parse((PKG / "_core.pyi").read_text(encoding="utf-8"))
    funcs: dict[str, list[ast.FunctionDef]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            funcs.setdefault(node.name, []).append(node)
    for name, fns in funcs.items():
        full = [n for n, _ in _stub_signature(fns[-1])]
        for fn in fns[:-1]:
            assert sorted(n for n, _ in _stub_signature(fn)) == sorted(full), f"an overload of {name}"


def test_engine_stub_matches_module() -> None:
    import loggrad._engine as eng

    tree = ast.parse((PKG / "_engine.pyi").read_text(encoding="utf-8"))
    names = {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    runtime = {n for n in dir(eng) if not n.startswith("_")} | {"__pyx_capi__"}
    assert names == runtime
    assert set(eng.__pyx_capi__) == {"param_count", "forward_f64", "forward_ext", "backward_f64",
                                     "backward_ext", "workspace_bytes"}


# -- what compiled code needs ----------------------------------------------------


def test_get_include_has_headers() -> None:
    inc = Path(lg.get_include())
    if _editable() and not (inc / "loggrad" / "network.hpp").is_file():
        pytest.skip("editable install: get_include() points into the source tree, the headers are "
                    f"installed beside the compiled modules ({Path(_core.__file__).parent / 'include'})")
    headers = sorted(p.name for p in (inc / "loggrad").glob("*.hpp"))
    for h in ("activations.hpp", "ext.hpp", "gemm.hpp", "losses.hpp", "network.hpp"):
        assert h in headers
    src = ROOT / "cpp" / "include" / "loggrad"
    if src.is_dir():  # every public header is shipped
        assert headers == sorted(p.name for p in src.glob("*.hpp"))


def test_engine_pxd_declares_every_header() -> None:
    """loggrad/engine.pxd has a `cdef extern from` block for each installed header."""
    where = Path(_core.__file__).parent
    pxd = (where / "engine.pxd").read_text(encoding="utf-8")
    declared = set(re.findall(r'^cdef extern from "loggrad/([a-z_]+\.hpp)"', pxd, re.M))
    headers = {p.name for p in (where / "include" / "loggrad").glob("*.hpp")}
    assert headers and headers == declared, f"declare the new headers in src/engine.pxd: {headers - declared}"


def test_pxd_installed_beside_modules() -> None:
    where = Path(_core.__file__).parent  # the install tree (also in an editable install)
    assert (where / "_engine.pxd").is_file() and (where / "engine.pxd").is_file()
    if not _editable():
        assert (PKG / "_engine.pxd").is_file()


def test_engine_module_loads_without_source_tree() -> None:
    """loggrad._engine imports in a fresh interpreter (its capsules are what cimport uses)."""
    code = "import loggrad._engine as e; print(sorted(e.__pyx_capi__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=os.path.expanduser("~"))
    assert out.returncode == 0, out.stderr
    assert "backward_ext" in out.stdout


@pytest.mark.parametrize("flags, bad", [
    ("-O2 -ffast-math", "-ffast-math"),
    ("-Ofast", "-Ofast"),
    ("-O3 -funsafe-math-optimizations -g", "-funsafe-math-optimizations"),
    ("-ffinite-math-only", "-ffinite-math-only"),
    ("-O2 -g", None),
    ("-fno-fast-math", None),
])
def test_cmake_refuses_value_unsafe_math_flags(tmp_path: Path, flags: str, bad: str | None) -> None:
    """CXXFLAGS such as -ffast-math would break inf, nan and rounding: configuring stops with a message."""
    cmake = shutil.which("cmake")
    if cmake is None or not (ROOT / "CMakeLists.txt").is_file():
        pytest.skip("needs cmake and the source tree")
    p = subprocess.run([cmake, "-S", str(ROOT), "-B", str(tmp_path / "b"), f"-DCMAKE_CXX_FLAGS={flags}",
                        f"-DPython_EXECUTABLE={sys.executable}"],
                       capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    if bad is None:
        assert "breaks inf, nan" not in out, out[-2000:]
    else:
        assert p.returncode != 0
        assert f"contains '{bad}', which breaks inf, nan" in out.replace("\n  ", " "), out[-2000:]


@pytest.mark.skipif(sys.platform == "win32", reason="DLLs export only what is marked for export")
def test_compiled_modules_export_only_their_init_functions() -> None:
    """The engine is linked statically into _core and _engine with hidden symbols: its
    functions are not exported (no clash with another copy loaded beside it, and the engine's
    calls to itself are direct, not through the PLT). The init functions must still be found."""
    import ctypes

    from loggrad import _engine

    engine_symbols = ["_ZN7loggrad10gemm_naiveEbbmmmPKdS1_Pd", "_ZN7loggrad4simd4avx2Ev", "_ZN7loggrad11num_threadsEv"]
    for mod, init in ((_core, "PyInit__core"), (_engine, "PyInit__engine")):
        lib = ctypes.CDLL(mod.__file__)
        assert hasattr(lib, init), (mod.__name__, init)
        for sym in engine_symbols:
            assert not hasattr(lib, sym), (mod.__name__, sym)
