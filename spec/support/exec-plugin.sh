#!/bin/sh
# exec-plugin.sh - a client-go exec credential plugin for klua's tests.
#
# Provides: prints an ExecCredential (client.authentication.k8s.io/v1) whose
#           token is read from $KLUA_EXEC_TOKEN_FILE, and appends one line per run
#           to $KLUA_EXEC_CALLS so tests can count how often klua ran it.
# Uses:     the env set by the kubeconfig-exec that spec/support/cluster.sh writes,
#           plus these knobs a test may set in klua's environment:
#   KLUA_EXEC_EXPIRES_IN=N     expirationTimestamp N seconds from now (may be 0 or
#                              negative: already expired); unset = no expiry
#   KLUA_EXEC_EXPIRATION=TS    expirationTimestamp exactly TS (RFC 3339)
#   KLUA_EXEC_BAD_FIRST=N      the first N runs (counted from the calls file) hand
#                              out a token the API server rejects, to test re-running
#                              the plugin on 401
#   KLUA_EXEC_FAIL=1           exit 1 with a message on stderr, no credential
#
# Each line of the calls file: "<run number> <unix time> <KUBERNETES_EXEC_INFO or ->".
set -eu

calls=${KLUA_EXEC_CALLS:-}
n=1
if [ -n "$calls" ]; then
    [ -f "$calls" ] && n=$(( $(wc -l <"$calls") + 1 ))
    info=$(printf '%s' "${KUBERNETES_EXEC_INFO:--}" | tr '\n' ' ')
    printf '%s %s %s\n' "$n" "$(date +%s)" "$info" >>"$calls"
fi

if [ "${KLUA_EXEC_FAIL:-0}" = 1 ]; then
    echo "exec-plugin: failing on purpose (KLUA_EXEC_FAIL=1)" >&2
    exit 1
fi

tf=${KLUA_EXEC_TOKEN_FILE:?KLUA_EXEC_TOKEN_FILE is not set}
token=$(cat "$tf")
if [ "$n" -le "${KLUA_EXEC_BAD_FIRST:-0}" ]; then
    token="not-a-valid-token-$n"
fi

exp=""
if [ -n "${KLUA_EXEC_EXPIRATION:-}" ]; then
    exp=$KLUA_EXEC_EXPIRATION
elif [ -n "${KLUA_EXEC_EXPIRES_IN:-}" ]; then
    exp=$(date -u -d "@$(( $(date +%s) + KLUA_EXEC_EXPIRES_IN ))" +%Y-%m-%dT%H:%M:%SZ)
fi

if [ -n "$exp" ]; then
    printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"%s"}}\n' "$token" "$exp"
else
    printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}\n' "$token"
fi
