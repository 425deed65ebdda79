#!/bin/sh
# A plugin for a running klua (spec/e2e/test_exec_plugin.py). Each run
# appends "started N" to $FIXTURE_CALLS (N counts the runs), then:
# - while the file $FIXTURE_FAIL exists: prints a token on stdout (which
#   must never be logged) and fails with a line on stderr;
# - while the file $FIXTURE_HOLD exists: appends "held N" and waits for the
#   file $FIXTURE_GO before answering;
# - answers with the token in $FIXTURE_TOKEN_FILE and appends "answered N".
# The token expires in 5 s: stale at once for klua (it refreshes 10 s early),
# so every request that does not wait for a run in flight starts one.
calls=${FIXTURE_CALLS:?FIXTURE_CALLS is not set}
n=$(( $(grep -c '^started' "$calls" 2>/dev/null || echo 0) + 1 ))
echo "started $n" >>"$calls"
if [ -n "${FIXTURE_FAIL:-}" ] && [ -e "$FIXTURE_FAIL" ]; then
    printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"s3cr3t-never-logged"}}\n'
    echo "refresh-plugin: the identity provider said no" >&2
    exit 1
fi
if [ -n "${FIXTURE_HOLD:-}" ] && [ -e "$FIXTURE_HOLD" ]; then
    echo "held $n" >>"$calls"
    while [ ! -e "$FIXTURE_GO" ]; do
        sleep 0.02
    done
fi
exp=$(date -u -d "@$(( $(date +%s) + 5 ))" +%Y-%m-%dT%H:%M:%SZ)
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"%s"}}\n' "$(cat "$FIXTURE_TOKEN_FILE")" "$exp"
echo "answered $n" >>"$calls"
