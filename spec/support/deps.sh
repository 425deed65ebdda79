#!/bin/sh
# deps.sh - installs the Debian packages klua builds and tests with.
# Idempotent and quiet when everything is already there.
set -eu
# No libcurl package: tools/curl.sh builds the one klua links (it needs
# libssl-dev, zlib1g-dev, xz-utils and curl to fetch and build it).
PKGS="build-essential pkg-config lua5.4 liblua5.4-dev libssl-dev zlib1g-dev xz-utils
libyaml-dev lua-busted clang libclang-rt-14-dev openssl curl
python3 python3-yaml kubernetes-client golang-go procps iproute2 prometheus"
missing=""
for p in $PKGS; do
    case "$p" in
        golang-go) command -v go >/dev/null 2>&1 && continue ;;
        kubernetes-client) command -v kubectl >/dev/null 2>&1 && continue ;;
        python3) command -v python3 >/dev/null 2>&1 && continue ;;
        python3-yaml) python3 -c 'import yaml' >/dev/null 2>&1 && continue ;;
    esac
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
echo "deps: installing$missing"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# pytest runs the end-to-end suite; the machine's python3 may be a pyenv build.
if ! python3 -c 'import pytest' >/dev/null 2>&1; then
    echo "deps: installing pytest"
    python3 -m pip install -q pytest >/dev/null 2>&1 || $SUDO apt-get install -y -qq python3-pytest >/dev/null
fi
# emmylua_check, the type checker `klua check --types` runs: built once with cargo
# at the version tools/emmylua.sh pins, cached in ~/.cache/klua/bin.
sh "$(dirname "$0")/../../tools/emmylua.sh"
