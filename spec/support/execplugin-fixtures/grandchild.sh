#!/bin/sh
# Leaves a grandchild (sleep 300) holding stdout and stderr, prints an
# ExecCredential and exits 0. The grandchild's pid goes to $FIXTURE_OUT; the
# token is read from $FIXTURE_TOKEN_FILE (else "fixture-token").
sleep 300 &
echo "$!" >"${FIXTURE_OUT:-/dev/null}"
token=fixture-token
[ -n "${FIXTURE_TOKEN_FILE:-}" ] && token=$(cat "$FIXTURE_TOKEN_FILE")
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}\n' "$token"
exit 0
