#!/bin/sh
# Prints an ExecCredential whose token carries CR LF and a second "header".
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"fixture-token\\r\\nX-Injected: yes"}}\n'
