#!/bin/sh
# bench/run.sh - `make bench`: klua side by side with controller-runtime and
# client-go on one real kube-apiserver (issue 5).
#
#   sh bench/run.sh [tiny|short|long]     (default short; or BENCH_MODE)
#
# Builds what it needs (Debian packages, bin/klua, the control plane, the Go
# peers in bench/peers at the versions its go.mod pins), starts a fresh local
# control plane in build/bench-cluster (stopped again on exit), installs
# bench/crd.yaml and runs bench/harness.py, which prints the table and the
# RATIO lines. Logs of every run and results.json land in build/bench/.
#
# Environment:
#   BENCH_KUBECONFIG   use this running cluster instead of starting one
#                      (the end-to-end test points it at the test cluster)
#   BENCH_ARGS         extra flags for bench/harness.py (e.g. --only initial_sync)
#   KLUA_BIN           the klua binary (default bin/klua, the release build)
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
mode=${1:-${BENCH_MODE:-short}}
case "$mode" in tiny | short | long) ;; *) echo "usage: sh bench/run.sh [tiny|short|long]" >&2; exit 2 ;; esac
out=$ROOT/build/bench

sh spec/support/deps.sh
mkdir -p "$out"
klua=${KLUA_BIN:-$ROOT/bin/klua}
skip=""
if [ -z "${KLUA_BIN:-}" ]; then
    # A klua that does not build is reported as missing; the peers still run.
    make --no-print-directory bin/klua >"$out.make.log" 2>&1 || {
        tail -n 20 "$out.make.log" >&2
        skip="bin/klua did not build (see $out.make.log)"
    }
fi
[ -n "${BENCH_KUBECONFIG:-}" ] || sh spec/support/controlplane/build.sh

echo "bench: building the Go peers (bench/peers)" >&2
(cd bench/peers && GOTOOLCHAIN=local GOFLAGS=-mod=readonly go build -trimpath -buildvcs=false \
    -o "$out/" ./crpeer ./informer ./loader)

cluster=""
cleanup() {
    [ -z "$cluster" ] || sh spec/support/cluster.sh down "$cluster" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
if [ -n "${BENCH_KUBECONFIG:-}" ]; then
    kubeconfig=$BENCH_KUBECONFIG
    prefix="bench-$$-"
else
    cluster=$ROOT/build/bench-cluster
    # No audit log here: writing one line per request costs the API server CPU
    # that every program under test would pay for alike.
    KLUA_APISERVER_EXTRA_ARGS="--audit-log-path= ${KLUA_APISERVER_EXTRA_ARGS:-}" \
        sh spec/support/cluster.sh up "$cluster" >&2
    kubeconfig=$cluster/kubeconfig
    prefix="bench-"
fi
kubectl --kubeconfig "$kubeconfig" apply -f bench/crd.yaml >&2
kubectl --kubeconfig "$kubeconfig" wait --for condition=established --timeout=60s \
    crd/widgets.bench.klua.dev >&2

# shellcheck disable=SC2086
python3 bench/harness.py --mode "$mode" --kubeconfig "$kubeconfig" --klua "$klua" \
    --peers "$out" --out "$out" --ns-prefix "$prefix" ${skip:+--skip-klua "$skip"} \
    ${BENCH_ARGS:-}

# The webhook benchmark (issue 13): a trivial validate in klua against
# controller-runtime's webhook server, round trips straight to each server.
if [ -z "$skip" ]; then
    (cd bench/peers && GOTOOLCHAIN=local GOFLAGS=-mod=readonly go build -trimpath -buildvcs=false \
        -o "$out/" ./webhookpeer ./webhookload)
    case "$mode" in tiny) wreps=1 wsecs=2 ;; short) wreps=3 wsecs=5 ;; *) wreps=5 wsecs=20 ;; esac
    python3 bench/webhook.py --kubeconfig "$kubeconfig" --klua "$klua" --peers "$out" \
        --out "$out" --reps "$wreps" --duration "$wsecs"
fi
