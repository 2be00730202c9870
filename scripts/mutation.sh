#!/usr/bin/env bash
# Mutation testing of the Python package's numeric modules with mutmut (not part of CI).
#
#   scripts/mutation.sh                    # all of: _logarray train init network spectrum theory report
#   scripts/mutation.sh _logarray init     # some of them
#
# Each module is mutated in place, one mutant at a time, and its own test selection
# (below, chosen to kill fast) runs against every mutant. The modules are restored
# afterwards, even on Ctrl-C. Without MUTATION_SAMPLE a run takes a fixed 3% sample of
# each module's mutants (about 110 of 4,000; 13 minutes for all modules on 2 cores);
# MUTATION_SAMPLE=1 runs every mutant (many hours: docs/testing.md).
# String mutants are not generated: mutmut wraps a string in "XX...XX", and in these
# modules strings are error messages (tests match their key words, which the wrapped
# text still contains) and option names (whose misspellings the tests of each option
# catch anyway); see docs/testing.md. Equivalent mutants (no test can tell them from
# the original) are listed, each with its reason, in docs/testing.md and left out of
# the score. Do not run `mutmut show` while this runs: it rereads the mutated file. The last line printed is
#   mutation score: K/N killed (P%)
# Needs the `mutation` extra (pip install -e ".[mutation]": mutmut, and scipy, matplotlib
# and torch, which some tests compare with) and an editable install, so that the tests
# import the mutated source.
#
#   MUTATION_RESUME=1 scripts/mutation.sh ...     # rerun only the mutants not killed before
#   MUTATION_SAMPLE=0.25 scripts/mutation.sh ...  # a fixed quarter of each module's mutants
#   MUTATION_SAMPLE=1 scripts/mutation.sh ...     # every mutant
#
# A sample (scripts/mutmut_config.py picks it by a hash of each mutant, the same on every
# run) estimates a module's score where running every mutant takes too long; the others
# are "skipped", left out of K/N, and the score line of each module gives the interval.
# A mutant times out (and counts as killed) after MUTATION_TIMEOUT_FACTOR (default 3)
# times its selection's baseline time, not mutmut's 10: hung mutants cost minutes each.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
# A mutant often has the original's size and lands within the same second, so a cached
# .pyc would still pass as up to date and the tests would run the original: no .pyc.
export PYTHONDONTWRITEBYTECODE=1
find python/loggrad -name __pycache__ -type d -prune -exec rm -rf {} +
PYTEST="$PY -m pytest -x -q -p no:cacheprovider"
# The default sample (see above); scripts/mutmut_config.py reads it.
export MUTATION_SAMPLE="${MUTATION_SAMPLE:-0.03}"
echo "mutation.sh: MUTATION_SAMPLE=$MUTATION_SAMPLE of each module's mutants" >&2
# mutmut imports its hooks (mutmut_config: the sample) from the path.
export PYTHONPATH="$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}"

declare -A TESTS=(
    [_logarray]="tests/test_logarray.py tests/test_logarray_array.py tests/test_logarray_reference.py tests/test_boundaries.py -k 'not package_metadata'"
    [init]="tests/test_init.py tests/test_init_reference.py -k 'not torch'"
    [train]="tests/test_train.py tests/test_history_repr.py tests/test_boundaries.py"
    [network]="tests/test_network_api.py tests/test_errors.py tests/test_underflow.py tests/test_bad_input.py tests/test_layer_selection.py tests/test_residual.py tests/test_save_load.py tests/test_save_load_residual.py tests/test_backend.py tests/test_reference.py"
    [spectrum]="tests/test_spectrum.py"
    [theory]="tests/test_theory.py tests/test_theory_edges.py tests/test_theory_residual.py tests/test_report_residual.py"
    [report]="tests/test_report.py tests/test_report_edges.py tests/test_report_stats.py tests/test_report_residual.py"
)
MODULES=("$@")
[ ${#MODULES[@]} -gt 0 ] || MODULES=(_logarray train init network spectrum theory report)
for m in "${MODULES[@]}"; do
    [ -n "${TESTS[$m]+x}" ] || { echo "mutation.sh: unknown module '$m'; known: ${!TESTS[*]}" >&2; exit 2; }
done
"$PY" -c "import mutmut" 2>/dev/null || { echo "mutation.sh: mutmut is not installed (pip install -e '.[mutation]')" >&2; exit 2; }
# Tests that compare with these skip without them, and the mutants only they kill survive.
for pkg in scipy matplotlib torch; do
    "$PY" -c "import $pkg" 2>/dev/null || echo "mutation.sh: $pkg is not installed: tests that need it skip and their mutants survive (pip install -e '.[mutation]')" >&2
done

BACKUP=$(mktemp -d)
restore() {
    for m in "${MODULES[@]}"; do
        [ -f "$BACKUP/$m.py" ] && cp "$BACKUP/$m.py" "python/loggrad/$m.py"
    done
    rm -rf "$BACKUP"
}
trap restore EXIT

# MUTATION_RESUME=1 keeps mutmut's cache: killed mutants stay killed (more tests cannot
# revive them) and only the others run again, e.g. after adding tests for survivors.
[ "${MUTATION_RESUME:-0}" = 1 ] || rm -f .mutmut-cache
for m in "${MODULES[@]}"; do
    cp "python/loggrad/$m.py" "$BACKUP/$m.py"
    # mutmut keeps one baseline time (a mutant's timeout is 10 times it, and a timeout counts
    # as killed) for all modules, since their tests hash alike: time each module's own selection.
    # Mutants left out of an earlier sample are looked at again (this run's sample may be larger).
    [ ! -f .mutmut-cache ] || "$PY" -c "import sqlite3; c = sqlite3.connect('.mutmut-cache'); \
c.execute(\"DELETE FROM MiscData WHERE key = 'baseline_time_elapsed'\"); \
c.execute(\"UPDATE Mutant SET status = 'untested' WHERE status = 'skipped'\"); c.commit()"
    echo "== $m: $PYTEST ${TESTS[$m]}" >&2
    "$PY" -m mutmut run --paths-to-mutate "python/loggrad/$m.py" --runner "$PYTEST ${TESTS[$m]}" \
        --tests-dir tests --disable-mutation-types string,fstring --no-progress --simple-output >&2 || true  # exit status: a bit mask of outcomes
    cp "$BACKUP/$m.py" "python/loggrad/$m.py"
done

"$PY" scripts/mutation_score.py .mutmut-cache docs/testing.md "${MODULES[@]}"
