#!/bin/sh
# sync-scripts.sh - copy the controller scripts into deploy/scripts/, the
# only place kustomize (with its default load restrictor) may read them from.
#
#   sh deploy/sync-scripts.sh          copy lua/*.lua -> deploy/scripts/
#   sh deploy/sync-scripts.sh --check  exit 1 (naming the files) if a copy is stale
#
# Only top-level lua/*.lua are controllers; lua/lib/klua/*.lua are compiled
# into the binary. Uses: cmp, cp.
set -eu
cd "$(dirname "$0")/.."
check=0
[ "${1:-}" = "--check" ] && check=1
stale=0
mkdir -p deploy/scripts
for f in lua/*.lua; do
    [ -f "$f" ] || continue
    dst="deploy/scripts/$(basename "$f")"
    if ! cmp -s "$f" "$dst"; then
        if [ $check = 1 ]; then
            echo "$dst differs from $f: run sh deploy/sync-scripts.sh" >&2
            stale=1
        else
            cp "$f" "$dst"
        fi
    fi
done
exit $stale
