#!/bin/sh
# Prints an ExecCredential with a token; writes what it was given to $FIXTURE_OUT.
{
    echo "args=$*"
    echo "info=$KUBERNETES_EXEC_INFO"
    echo "extra=${FIXTURE_EXTRA:-unset}"
    echo "stdin=$(cat)"
} >"${FIXTURE_OUT:-/dev/null}"
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"fixture-token","expirationTimestamp":"2099-01-01T00:00:00Z"}}\n'
