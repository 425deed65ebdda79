#!/bin/sh
# emmylua.sh - installs emmylua_check, the EmmyLua analyzer that `klua check --types`
# runs over the scripts (it reads LuaLS annotations: lua/types and `klua types` output).
#
# Provides: ${KLUA_CACHE:-$HOME/.cache/klua}/bin/emmylua_check-<version> and a symlink
#           .../bin/emmylua_check to it (the name klua looks up first, before PATH).
# Uses:     cargo and crates.io; the version is pinned below, so a bump re-keys the cache.
#
# Quiet and instant when the binary is cached. cargo installs into a temporary root,
# renamed into place, so an interrupted build never leaves a binary a later run trusts.
set -eu

EMMYLUA_VERSION=0.25.1
cache=${KLUA_CACHE:-$HOME/.cache/klua}
bindir=$cache/bin
bin=$bindir/emmylua_check-$EMMYLUA_VERSION

die() { echo "emmylua: $*" >&2; exit 1; }

if [ ! -x "$bin" ]; then
    command -v cargo >/dev/null 2>&1 ||
        die "cargo is not installed; klua check --types needs it once to build emmylua_check $EMMYLUA_VERSION (https://rustup.rs)"
    mkdir -p "$bindir"
    root=$cache/emmylua-root.$$
    log=$cache/build-emmylua_check.log
    echo "building emmylua_check $EMMYLUA_VERSION with cargo (first run only, a few minutes)..."
    trap 'rm -rf "$root"; exit 130' INT TERM HUP
    if ! cargo install --locked --quiet --root "$root" --version "$EMMYLUA_VERSION" \
        emmylua_check >"$log" 2>&1; then
        rm -rf "$root"
        tail -n 20 "$log" >&2
        die "cargo install emmylua_check $EMMYLUA_VERSION failed; the log is $log"
    fi
    mv "$root/bin/emmylua_check" "$bin.tmp.$$"
    mv "$bin.tmp.$$" "$bin"
    rm -rf "$root"
    trap - INT TERM HUP
fi
ln -sf "emmylua_check-$EMMYLUA_VERSION" "$bindir/emmylua_check.tmp.$$"
mv -f "$bindir/emmylua_check.tmp.$$" "$bindir/emmylua_check"
