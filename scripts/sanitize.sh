#!/usr/bin/env bash
# Build loggrad with AddressSanitizer + UndefinedBehaviorSanitizer (CMake option
# LOGGRAD_SANITIZE) into a separate virtual environment and run the test suite
# against that build. Nothing in the checkout or in an editable install changes:
# the build, the venv and the logs live under $LOGGRAD_SANITIZE_DIR
# (default /tmp/loggrad-sanitize).
#
#   scripts/sanitize.sh            the whole test suite
#   scripts/sanitize.sh --quick    a CI-sized subset (bad input, errors,
#                                  checkpointing, threads, LogArray)
#   scripts/sanitize.sh --rebuild  force a fresh build first
#   scripts/sanitize.sh -- -k foo  further arguments go to pytest
#
# Exit status: 0 when the build is clean under the sanitizers and every test
# passes; non-zero otherwise (the first sanitizer report aborts the run:
# halt_on_error). Python itself leaks by design, so LeakSanitizer is off here;
# scripts/leakcheck.py covers leaks.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

quick=0
rebuild=0
pytest_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1 ;;
    --rebuild) rebuild=1 ;;
    --) shift; pytest_args+=("$@"); break ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "sanitize.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

dir=${LOGGRAD_SANITIZE_DIR:-/tmp/loggrad-sanitize}
venv="$dir/venv"
python=${PYTHON:-python3}
cxx=${CXX:-c++}

# The sanitizer runtimes of the compiler that builds the extension: a Python
# that is not itself instrumented must load them first (LD_PRELOAD).
libasan=$("$cxx" -print-file-name=libasan.so)
libubsan=$("$cxx" -print-file-name=libubsan.so)
if [[ ! -e "$libasan" ]]; then
  echo "sanitize.sh: $cxx has no libasan.so (install the compiler's sanitizer runtime)" >&2
  exit 2
fi

start=$(date +%s)
mkdir -p "$dir"
stamp="$dir/built-from"
src_hash=$(cat CMakeLists.txt pyproject.toml cpp/include/loggrad/*.hpp cpp/src/*.cpp src/* python/loggrad/*.py \
           | sha256sum | cut -c1-16)
if [[ $rebuild -eq 1 ]]; then
  rm -rf "$venv" "$dir/build" "$stamp"
fi
if [[ ! -x "$venv/bin/python" ]]; then
  echo "sanitize.sh: creating $venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  # The build requirements (pyproject.toml [build-system]) live in the venv itself, so
  # that later builds reuse $dir/build incrementally (no isolated build environment
  # with new paths each time), plus what the tests import.
  "$venv/bin/python" -m pip install --quiet "scikit-build-core>=0.10" "pybind11>=2.13" "scipy-openblas32>=0.3.27" \
    "cython>=3.0" "numpy>=1.23" "pytest>=7" "mpmath>=1.3" "pytest-benchmark>=4" "hypothesis>=6" "setuptools>=64"
fi
if [[ ! -e "$venv/.optional-installed" ]]; then
  # Optional packages whose tests skip without them (as .ci/run installs them).
  # torch is left out: it is large and its own code is not what is checked here.
  "$venv/bin/python" -m pip install --quiet matplotlib rich scipy \
    && touch "$venv/.optional-installed" \
    || echo "sanitize.sh: optional packages unavailable; their tests will be skipped"
fi
if [[ "$(cat "$stamp" 2>/dev/null)" != "$src_hash" ]]; then
  echo "sanitize.sh: building with -fsanitize=address,undefined into $dir/build"
  build_start=$(date +%s)
  # RelWithDebInfo keeps optimisation (the suite stays fast) and line numbers for reports.
  CXX="$cxx" "$venv/bin/python" -m pip install --quiet --no-build-isolation --no-deps --force-reinstall . \
    -C cmake.define.LOGGRAD_SANITIZE=ON -C cmake.build-type=RelWithDebInfo \
    -C build-dir="$dir/build" -C install.strip=false
  echo "$src_hash" > "$stamp"
  echo "sanitize.sh: build took $(( $(date +%s) - build_start )) s"
else
  echo "sanitize.sh: reusing the build in $dir (sources unchanged)"
fi

# The installed module must really be the instrumented one.
core=$(find "$venv" -name '_core*.so' | head -1)
if [[ -z "$core" ]] || ! nm -D "$core" | grep __asan >/dev/null; then
  echo "sanitize.sh: ${core:-loggrad._core} is not instrumented (LOGGRAD_SANITIZE had no effect)" >&2
  exit 1
fi

if [[ $quick -eq 1 ]]; then
  tests=(tests/test_bad_input.py tests/test_errors.py tests/test_checkpoint.py tests/test_threads.py
         tests/test_logarray.py)
else
  tests=(tests)
fi

export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=86:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=87"
# Python objects through malloc, so ASan sees the bindings' use of them too.
export PYTHONMALLOC=malloc
# Tests that measure resident memory skip themselves under the sanitizer's
# allocator (quarantine, redzones); test_spectrum's peak-RSS test does not, and
# the threads test that needs two calls to compute in parallel measures time
# (2-5x slower here), so both are deselected.
export LOGGRAD_SANITIZED=1
deselect=(--deselect tests/test_spectrum.py::test_depth_1e5_peak_memory_independent_of_depth
          --deselect tests/test_threads.py::test_engine_calls_in_two_threads_overlap_in_time)
log="$dir/pytest.log"
echo "sanitize.sh: running pytest ${tests[*]} ${pytest_args[*]:-} (log: $log)"
test_start=$(date +%s)
set +e
( cd "$repo" && LD_PRELOAD="$libasan${libubsan:+:$libubsan}" \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider -o addopts="-ra --benchmark-disable" "${deselect[@]}" "${tests[@]}" \
    "${pytest_args[@]}" ) \
  2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
echo "sanitize.sh: tests took $(( $(date +%s) - test_start )) s, $(( $(date +%s) - start )) s in all"
if grep -qE "ERROR: AddressSanitizer|runtime error:|SUMMARY: UndefinedBehaviorSanitizer" "$log"; then
  echo "sanitize.sh: NOT CLEAN: sanitizer reports in $log" >&2
  exit 1
fi
if [[ $rc -ne 0 ]]; then
  echo "sanitize.sh: pytest failed (exit $rc; 86 = AddressSanitizer, 87 = UBSan abort)" >&2
  exit "$rc"
fi
echo "sanitize.sh: clean (no AddressSanitizer or UndefinedBehaviorSanitizer report; all tests passed)"
