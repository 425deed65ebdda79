#!/bin/bash
# spec/run.sh - runs every klua test and ends with "N passed, N failed".
#
# Parts: C unit tests (sanitizer build, TAP), C integration tests and
# end-to-end tests against a real kube-apiserver + etcd started here (and
# always stopped, also on failure), fuzz smoke runs, busted specs for the Lua
# library and `klua test lua` (the Comment controller's specs, in-memory API),
# pytest for the stand-in GitHub and the end-to-end suite.
# Env: SPEC_ONLY=unit|itest|fuzz|lua|e2e runs one part; FUZZ_SMOKE_SECONDS;
# KLUA_BUILD_DIR (default build) is where the test binaries and logs are.
#
# What is run comes from the sources, not from what happens to be built:
# every spec/c/test_*.c, spec/c/itest_*.c and spec/fuzz/fuzz_*.c (plus the
# JSON_NO_SSE2 variants the Makefile builds) must have its binary, else that
# is a failure; a part that finds no tests fails; a TAP log whose plan does
# not match what ran fails. A broken test build can never read "0 failed".
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PASS=0
FAIL=0
FAILED_NAMES=()
BUILD=${KLUA_BUILD_DIR:-build}
LOGDIR=$BUILD/test-logs
mkdir -p "$LOGDIR"
# Second builds of a test with -DJSON_NO_SSE2 (see the Makefile).
UNIT_VARIANTS="test_json_nosse2"
FUZZ_VARIANTS="fuzz_json_nosse2"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$ROOT/spec/support/lsan.supp:print_suppressions=0"
part() { [ -z "${SPEC_ONLY:-}" ] || [ "$SPEC_ONLY" = "$1" ]; }

fail() { FAIL=$((FAIL + 1)); FAILED_NAMES+=("$1"); }

# count_tap NAME LOGFILE EXITCODE: adds a file's TAP results to the totals.
count_tap() {
    local name=$1 log=$2 rc=$3 ok notok plan
    ok=$(grep -c '^ok ' "$log")
    notok=$(grep -c '^not ok ' "$log")
    plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\).*/\1/p' "$log" | head -n 1)
    PASS=$((PASS + ok))
    FAIL=$((FAIL + notok))
    if [ "$notok" -gt 0 ]; then
        FAILED_NAMES+=("$name: $(grep '^not ok ' "$log" | sed 's/^not ok [0-9]* - //' | tr '\n' ' ')")
    fi
    # A crash (sanitizer report, signal) after the last TAP line is a failure too.
    if [ "$rc" -ne 0 ] && [ "$notok" -eq 0 ]; then
        fail "$name: exited with status $rc (see $log)"
    elif [ $((ok + notok)) -eq 0 ]; then
        fail "$name: ran no tests (see $log)"
    elif [ -z "$plan" ] || [ "$plan" -ne $((ok + notok)) ]; then
        fail "$name: TAP plan ${plan:-missing}, $((ok + notok)) tests ran (see $log)"
    fi
}

# expected_bins KIND: the names of the binaries the sources call for.
expected_bins() {
    local f
    case $1 in
    unit) for f in spec/c/test_*.c; do [ -e "$f" ] && basename "$f" .c; done
          for f in $UNIT_VARIANTS; do echo "$f"; done ;;
    itest) for f in spec/c/itest_*.c; do [ -e "$f" ] && basename "$f" .c; done ;;
    fuzz) for f in spec/fuzz/fuzz_*.c; do [ -e "$f" ] && basename "$f" .c; done
          for f in $FUZZ_VARIANTS; do echo "$f"; done ;;
    esac
}

# run_tap_bins KIND DIR [TIMEOUT]: runs every expected binary of a kind from
# DIR, counting TAP; a missing one and an empty kind are failures.
run_tap_bins() {
    local kind=$1 dir=$2 limit=${3:-0} n t rc count=0
    for n in $(expected_bins "$kind"); do
        count=$((count + 1))
        t=$dir/$n
        if [ ! -x "$t" ]; then
            fail "$n: test binary $t is missing (make test-build)"
            printf '  %-28s MISSING\n' "$n"
            continue
        fi
        if [ "$limit" -gt 0 ]; then
            timeout "$limit" "$t" > "$LOGDIR/$n.log" 2>&1
        else
            "$t" > "$LOGDIR/$n.log" 2>&1
        fi
        rc=$?
        count_tap "$n" "$LOGDIR/$n.log" $rc
        printf '  %-28s %s passed, %s failed\n' "$n" "$(grep -c '^ok ' "$LOGDIR/$n.log")" \
            "$(grep -c '^not ok ' "$LOGDIR/$n.log")"
    done
    [ "$count" -gt 0 ] || fail "$kind: no tests found"
}

CLUSTER=""
STARTED_CLUSTER=""
cleanup() {
    if [ -n "$CLUSTER" ]; then
        sh spec/support/cluster.sh down "$CLUSTER" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if part unit; then
    echo "== C unit tests"
    run_tap_bins unit "$BUILD/asan/spec"
fi

if part unit; then
    echo "== source checks (banned unsafe functions)"
    if sh spec/support/check-src.sh > "$LOGDIR/check-src.log" 2>&1; then
        PASS=$((PASS + 1)); echo "  check-src ok"
    else
        fail "check-src: $(head -3 "$LOGDIR/check-src.log" | tr '\n' ' ')"
        cat "$LOGDIR/check-src.log"
    fi
fi

if part fuzz; then
    echo "== fuzz smoke runs (${FUZZ_SMOKE_SECONDS:-10} s each)"
    nfuzz=0
    for n in $(expected_bins fuzz); do
        nfuzz=$((nfuzz + 1))
        f=$BUILD/fuzz/$n
        if [ ! -x "$f" ]; then
            fail "$n: fuzz target $f is missing (make test-build)"
            echo "  $n MISSING"
            continue
        fi
        corpus="$BUILD/fuzz/corpus/$n"
        mkdir -p "$corpus"
        # a variant (fuzz_json_nosse2) starts from its target's seeds
        if "$f" -max_total_time="${FUZZ_SMOKE_SECONDS:-10}" -print_final_stats=0 "$corpus" \
            "spec/fuzz/corpus/${n%_nosse2}" > "$LOGDIR/$n.log" 2>&1; then
            PASS=$((PASS + 1)); echo "  $n ok"
        else
            fail "$n: fuzz smoke run failed (see $LOGDIR/$n.log)"
            echo "  $n FAILED"
        fi
    done
    [ "$nfuzz" -gt 0 ] || fail "fuzz: no targets found"
fi

if part lua; then
    echo "== busted (Lua library, JSON through klua.json as klua runs it)"
    if [ ! -f "$BUILD/lua/klua/json.so" ]; then
        fail "busted: $BUILD/lua/klua/json.so (klua.json) is missing (make test-build)"
        echo "  klua.json module MISSING"
    else
        busted -o TAP --cpath="$BUILD/lua/?.so;" spec/lua > "$LOGDIR/busted.log" 2>&1
        rc=$?
        count_tap busted "$LOGDIR/busted.log" $rc
        echo "  $(grep -c '^ok ' "$LOGDIR/busted.log") passed, $(grep -c '^not ok ' "$LOGDIR/busted.log") failed"
    fi
    # The Comment controller's specs run as klua runs it (real ctx, codec,
    # informers, workqueue) on klua test's in-memory API; spec/e2e/test_kluatest.py
    # runs them again on the real API server.
    echo "== klua test lua (the Comment controller and klua.github, in-memory API)"
    KT_BIN="$BUILD/asan/klua"
    if [ ! -x "$KT_BIN" ]; then
        fail "klua test: $KT_BIN is missing (make test-build)"
        echo "  klua MISSING"
    else
        "$KT_BIN" test lua --crds crds > "$LOGDIR/kluatest-lua.log" 2>&1
        rc=$?
        read -r kp kf < <(sed -n 's/^\([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed.*/\1 \2/p' \
            "$LOGDIR/kluatest-lua.log" | tail -n 1)
        kp=${kp:-0}; kf=${kf:-0}
        PASS=$((PASS + kp)); FAIL=$((FAIL + kf))
        if [ "$kf" -gt 0 ]; then
            FAILED_NAMES+=("klua test lua: $(sed -n 's/^FAIL //p' "$LOGDIR/kluatest-lua.log" | tr '\n' ';')")
        fi
        if [ "$rc" -ne 0 ] && [ "$kf" -eq 0 ]; then
            fail "klua test lua: exited with status $rc (see $LOGDIR/kluatest-lua.log)"
        elif [ $((kp + kf)) -eq 0 ]; then
            fail "klua test lua: ran no tests (see $LOGDIR/kluatest-lua.log)"
        fi
        echo "  $kp passed, $kf failed"
    fi
fi

if part itest || part e2e; then
    echo "== starting the local control plane (kube-apiserver + etcd)"
    CLUSTER="$ROOT/build/test-cluster"
    STARTED_CLUSTER=1
    sh spec/support/cluster.sh down "$CLUSTER" >/dev/null 2>&1 || true
    if ! sh spec/support/cluster.sh up "$CLUSTER" > "$LOGDIR/cluster-up.log" 2>&1; then
        cat "$LOGDIR/cluster-up.log"
        fail "control plane: could not start (see $LOGDIR/cluster-up.log)"
        CLUSTER_FAILED=1
    fi
    export KLUA_TEST_CLUSTER="$CLUSTER"
fi

if part itest && [ -z "${CLUSTER_FAILED:-}" ]; then
    echo "== C integration tests (real API server)"
    run_tap_bins itest "$BUILD/asan/spec" 600
fi

if part e2e && [ -z "${CLUSTER_FAILED:-}" ]; then
    echo "== end-to-end tests (bin/klua, real API server, stand-in GitHub)"
    export KLUA_BIN="$ROOT/$BUILD/asan/klua"
    [ -x "$KLUA_BIN" ] || fail "e2e: $KLUA_BIN is missing (make test-build)"
    rm -f "$LOGDIR/pytest.xml"   # a crash must not leave an old run's figures
    python3 -m pytest -q -p no:cacheprovider --junitxml="$LOGDIR/pytest.xml" \
        spec/support/test_fakegithub.py spec/support/test_run_sh.py spec/e2e > "$LOGDIR/pytest.log" 2>&1
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
        fail "pytest exited with status $rc"
    elif [ $((tp + tf)) -eq 0 ]; then
        fail "pytest: ran no tests (see $LOGDIR/pytest.log)"
    fi
fi

cleanup
CLUSTER=""
# Only a run that started the control plane answers for its processes.
if [ -n "$STARTED_CLUSTER" ] && pgrep -f "$ROOT/build/test-cluster" >/dev/null 2>&1; then
    fail "processes of the test control plane were left behind"
fi
for n in "${FAILED_NAMES[@]}"; do echo "FAILED: $n"; done
echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
