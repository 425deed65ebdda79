#!/bin/bash
# spec/run.sh - runs every klua test and ends with "N passed, N failed".
#
# Parts: C unit tests (sanitizer build, TAP), C integration tests and
# end-to-end tests against a real kube-apiserver + etcd started here (and
# always stopped, also on failure), fuzz smoke runs, busted specs for the Lua
# library, pytest for the stand-in GitHub and the end-to-end suite.
# Env: SPEC_ONLY=unit|itest|fuzz|lua|e2e runs one part; FUZZ_SMOKE_SECONDS.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PASS=0
FAIL=0
FAILED_NAMES=()
LOGDIR=build/test-logs
mkdir -p "$LOGDIR"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$ROOT/spec/support/lsan.supp:print_suppressions=0"
part() { [ -z "${SPEC_ONLY:-}" ] || [ "$SPEC_ONLY" = "$1" ]; }

# count_tap NAME LOGFILE EXITCODE: adds a file's TAP results to the totals.
count_tap() {
    local name=$1 log=$2 rc=$3 ok notok
    ok=$(grep -c '^ok ' "$log")
    notok=$(grep -c '^not ok ' "$log")
    PASS=$((PASS + ok))
    FAIL=$((FAIL + notok))
    if [ "$notok" -gt 0 ]; then
        FAILED_NAMES+=("$name: $(grep '^not ok ' "$log" | sed 's/^not ok [0-9]* - //' | tr '\n' ' ')")
    fi
    # A crash (sanitizer report, signal) after the last TAP line is a failure too.
    if [ "$rc" -ne 0 ] && [ "$notok" -eq 0 ]; then
        FAIL=$((FAIL + 1))
        FAILED_NAMES+=("$name: exited with status $rc (see $log)")
    fi
}

CLUSTER=""
cleanup() {
    if [ -n "$CLUSTER" ]; then
        sh spec/support/cluster.sh down "$CLUSTER" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if part unit; then
    echo "== C unit tests"
    for t in build/asan/spec/test_*; do
        [ -x "$t" ] || continue
        n=$(basename "$t")
        "$t" > "$LOGDIR/$n.log" 2>&1
        rc=$?
        count_tap "$n" "$LOGDIR/$n.log" $rc
        printf '  %-28s %s passed, %s failed\n' "$n" "$(grep -c '^ok ' "$LOGDIR/$n.log")" \
            "$(grep -c '^not ok ' "$LOGDIR/$n.log")"
    done
fi

if part unit; then
    echo "== source checks (banned unsafe functions)"
    if sh spec/support/check-src.sh > "$LOGDIR/check-src.log" 2>&1; then
        PASS=$((PASS + 1)); echo "  check-src ok"
    else
        FAIL=$((FAIL + 1)); FAILED_NAMES+=("check-src: $(head -3 "$LOGDIR/check-src.log" | tr '\n' ' ')")
        cat "$LOGDIR/check-src.log"
    fi
fi

if part fuzz; then
    echo "== fuzz smoke runs (${FUZZ_SMOKE_SECONDS:-10} s each)"
    for f in build/fuzz/fuzz_*; do
        [ -x "$f" ] || continue
        n=$(basename "$f")
        corpus="build/fuzz/corpus/$n"
        mkdir -p "$corpus"
        if "$f" -max_total_time="${FUZZ_SMOKE_SECONDS:-10}" -print_final_stats=0 "$corpus" \
            "spec/fuzz/corpus/$n" > "$LOGDIR/$n.log" 2>&1; then
            PASS=$((PASS + 1)); echo "  $n ok"
        else
            FAIL=$((FAIL + 1)); FAILED_NAMES+=("$n: fuzz smoke run failed (see $LOGDIR/$n.log)")
            echo "  $n FAILED"
        fi
    done
fi

if part lua; then
    echo "== busted (Lua library)"
    busted -o TAP spec/lua > "$LOGDIR/busted.log" 2>&1
    rc=$?
    count_tap busted "$LOGDIR/busted.log" $rc
    echo "  $(grep -c '^ok ' "$LOGDIR/busted.log") passed, $(grep -c '^not ok ' "$LOGDIR/busted.log") failed"
fi

if part itest || part e2e; then
    echo "== starting the local control plane (kube-apiserver + etcd)"
    CLUSTER="$ROOT/build/test-cluster"
    sh spec/support/cluster.sh down "$CLUSTER" >/dev/null 2>&1 || true
    if ! sh spec/support/cluster.sh up "$CLUSTER" > "$LOGDIR/cluster-up.log" 2>&1; then
        cat "$LOGDIR/cluster-up.log"
        FAIL=$((FAIL + 1)); FAILED_NAMES+=("control plane: could not start (see $LOGDIR/cluster-up.log)")
        CLUSTER_FAILED=1
    fi
    export KLUA_TEST_CLUSTER="$CLUSTER"
fi

if part itest && [ -z "${CLUSTER_FAILED:-}" ]; then
    echo "== C integration tests (real API server)"
    for t in build/asan/spec/itest_*; do
        [ -x "$t" ] || continue
        n=$(basename "$t")
        timeout 600 "$t" > "$LOGDIR/$n.log" 2>&1
        rc=$?
        count_tap "$n" "$LOGDIR/$n.log" $rc
        printf '  %-28s %s passed, %s failed\n' "$n" "$(grep -c '^ok ' "$LOGDIR/$n.log")" \
            "$(grep -c '^not ok ' "$LOGDIR/$n.log")"
    done
fi

if part e2e && [ -z "${CLUSTER_FAILED:-}" ]; then
    echo "== end-to-end tests (bin/klua, real API server, stand-in GitHub)"
    export KLUA_BIN="$ROOT/build/asan/klua"
    python3 -m pytest -q -p no:cacheprovider --junitxml="$LOGDIR/pytest.xml" \
        spec/support/test_fakegithub.py spec/e2e > "$LOGDIR/pytest.log" 2>&1
    rc=$?
    tail -n 30 "$LOGDIR/pytest.log" | sed 's/^/  /'
    read -r tp tf < <(python3 - "$LOGDIR/pytest.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    r = ET.parse(sys.argv[1]).getroot()
except Exception:
    print(0, 1); sys.exit()
suites = [r] if r.tag == "testsuite" else list(r)
t = sum(int(s.get("tests", 0)) for s in suites)
f = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
sk = sum(int(s.get("skipped", 0)) for s in suites)
print(t - f - sk, f)
PY
)
    PASS=$((PASS + tp)); FAIL=$((FAIL + tf))
    [ "$tf" -gt 0 ] && FAILED_NAMES+=("pytest: $tf failed (see $LOGDIR/pytest.log)")
    if [ "$rc" -ne 0 ] && [ "$tf" -eq 0 ]; then
        FAIL=$((FAIL + 1)); FAILED_NAMES+=("pytest exited with status $rc")
    fi
fi

cleanup
CLUSTER=""
if pgrep -f "$ROOT/build/test-cluster" >/dev/null 2>&1; then
    FAIL=$((FAIL + 1)); FAILED_NAMES+=("processes of the test control plane were left behind")
fi
for n in "${FAILED_NAMES[@]}"; do echo "FAILED: $n"; done
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
