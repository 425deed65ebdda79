#!/bin/sh
echo "cannot reach the identity provider" >&2
echo "second line" >&2
exit 3
