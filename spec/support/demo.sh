#!/bin/bash
# demo.sh - the `make demo` job: a local control plane, the Comment CRD, a
# stand-in GitHub (unless GITHUB_TOKEN is set: then the real api.github.com
# or $GITHUB_API_URL), klua running lua/, and examples/ applied. Shows the
# Comment's status and the posted comment, then keeps running until Ctrl-C.
# DEMO_EXIT=1 stops after showing the result (used by the tests).
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
DIR="$ROOT/build/demo-cluster"
LOG="$ROOT/build/demo"
mkdir -p "$LOG"
PIDS=()
cleanup() {
    trap - EXIT INT TERM
    echo
    echo "demo: stopping"
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    sh spec/support/cluster.sh down "$DIR" >/dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "demo: starting kube-apiserver and etcd on loopback"
sh spec/support/cluster.sh down "$DIR" >/dev/null 2>&1 || true
sh spec/support/cluster.sh up "$DIR" > "$LOG/cluster.log" 2>&1 || { cat "$LOG/cluster.log"; exit 1; }
export KUBECONFIG="$DIR/kubeconfig"
kubectl apply -f crds/ >/dev/null
kubectl wait --for condition=established --timeout=60s crd/comments.github.klua.dev >/dev/null

if [ -z "${GITHUB_TOKEN:-}" ]; then
    export GITHUB_TOKEN="demo-token-$RANDOM$RANDOM"
    python3 -u spec/support/fakegithub.py --port 0 --token "$GITHUB_TOKEN" > "$LOG/github.out" 2> "$LOG/github.log" &
    PIDS+=($!)
    for _ in $(seq 50); do grep -q '^PORT ' "$LOG/github.out" 2>/dev/null && break; sleep 0.1; done
    port=$(sed -n 's/^PORT //p' "$LOG/github.out" | head -1)
    export GITHUB_API_URL="http://127.0.0.1:$port"
    export KLUA_GITHUB_MIN_GAP=0.2
    echo "demo: stand-in GitHub at $GITHUB_API_URL (set GITHUB_TOKEN to use the real one)"
else
    echo "demo: using GitHub at ${GITHUB_API_URL:-https://api.github.com}"
fi

echo "demo: klua run --scripts lua/  (log: build/demo/klua.log)"
bin/klua run --scripts lua/ > "$LOG/klua.log" 2>&1 &
PIDS+=($!)
KLUA_PID=$!

echo "demo: kubectl apply -f examples/comment.yaml"
kubectl apply -f examples/comment.yaml
for _ in $(seq 120); do
    st=$(kubectl get comment hello -o jsonpath='{.status.conditions[?(@.type=="Delivered")].status}' 2>/dev/null)
    [ "$st" = "True" ] && break
    kill -0 "$KLUA_PID" 2>/dev/null || { echo "demo: klua exited:"; cat "$LOG/klua.log"; exit 1; }
    sleep 0.5
done
echo
kubectl get comments
echo
kubectl get comment hello -o jsonpath='{.status}' | python3 -m json.tool
if [ -n "${port:-}" ]; then
    echo
    echo "demo: the comment as posted on the stand-in GitHub:"
    curl -s -H "Authorization: Bearer $GITHUB_TOKEN" -H "User-Agent: klua-demo" \
        "$GITHUB_API_URL/repos/klua-dev/demo/issues/1/comments" | python3 -m json.tool
fi
[ "$st" = "True" ] || { echo "demo: the comment was not delivered; klua's log:"; tail -20 "$LOG/klua.log"; exit 1; }
[ -n "${DEMO_EXIT:-}" ] && exit 0
echo
echo "demo: running. Edit it:  KUBECONFIG=$DIR/kubeconfig kubectl edit comment hello"
echo "demo: Ctrl-C stops everything."
wait "$KLUA_PID"
