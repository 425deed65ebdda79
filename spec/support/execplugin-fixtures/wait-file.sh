#!/bin/sh
# Appends "started" to $FIXTURE_CALLS, waits until the file $FIXTURE_GO
# exists (the test creates it only after seeing something happen while this
# plugin is still running), appends "answered" and prints a token.
calls=${FIXTURE_CALLS:-/dev/null}
echo started >>"$calls"
while [ ! -e "$FIXTURE_GO" ]; do
    sleep 0.02
done
echo answered >>"$calls"
token=fixture-token
[ -n "${FIXTURE_TOKEN_FILE:-}" ] && token=$(cat "$FIXTURE_TOKEN_FILE")
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}\n' "$token"
