#!/bin/sh
# Counts its runs in $FIXTURE_CALLS, prints a credential on stdout (which
# must never reach a message or a log), then fails with two lines on stderr.
echo run >>"${FIXTURE_CALLS:-/dev/null}"
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"s3cr3t-never-logged"}}\n'
echo "" >&2
echo "broken-plugin: the identity provider said no" >&2
echo "	try again later" >&2
echo "third line is not kept" >&2
exit 1
