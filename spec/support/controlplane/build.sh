#!/bin/sh
# build.sh - builds the real kube-apiserver and etcd that klua's tests and demo
# run against (what envtest downloads for controller-runtime, we build).
#
# Provides: ${KLUA_CACHE:-$HOME/.cache/klua}/bin/kube-apiserver-<version>,
#           .../bin/etcd-<version>, and .../bin/current.env, a shell file
#           setting KLUA_APISERVER and KLUA_ETCD that spec/support/cluster.sh reads.
# Uses:     go (>= 1.26) and the Go module proxy; the two Go modules beside this
#           script (apiserver/, etcd/) whose go.mod pins the versions. A version
#           bump in a go.mod changes the binary's name, so the cache re-keys itself.
#
# Quiet and instant when both binaries are cached. Each binary is built under a
# temporary name and renamed into place, so an interrupted build never leaves a
# half-written binary that a later run would trust.
set -eu

here=$(cd "$(dirname "$0")" && pwd -P)
cache=${KLUA_CACHE:-$HOME/.cache/klua}
bindir=$cache/bin

die() { echo "controlplane: $*" >&2; exit 1; }

# modver GOMOD MODULE: the version MODULE is required at in GOMOD.
modver() {
    awk -v m="$2" '
        $1 == "require" { $1 = ""; $0 = $0 }
        $1 == m && $2 ~ /^v[0-9]/ { print $2; exit }' "$1"
}

k8s_ver=$(modver "$here/apiserver/go.mod" k8s.io/kubernetes)
etcd_ver=$(modver "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)
[ -n "$k8s_ver" ] || die "no k8s.io/kubernetes version in $here/apiserver/go.mod"
[ -n "$etcd_ver" ] || die "no go.etcd.io/etcd/server/v3 version in $here/etcd/go.mod"

apiserver=$bindir/kube-apiserver-$k8s_ver
etcd=$bindir/etcd-$etcd_ver

# The go.mod files say "go 1.26"; an older go would try to download a toolchain
# (or fail with a confusing message), so check first and say what to do.
check_go() {
    command -v go >/dev/null 2>&1 ||
        die "go is not installed; klua needs Go 1.26 or newer in PATH to build kube-apiserver and etcd (https://go.dev/dl/)"
    gv=$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null || true)
    mm=$(echo "$gv" | sed -n 's/^go\([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p')
    # shellcheck disable=SC2086
    set -- $mm
    if [ $# -ne 2 ] || [ "$1" -lt 1 ] || { [ "$1" -eq 1 ] && [ "$2" -lt 26 ]; }; then
        die "$(command -v go) is ${gv:-of unknown version}; building kube-apiserver $k8s_ver needs Go 1.26 or newer in PATH (https://go.dev/dl/)"
    fi
}

# build NAME VERSION MODDIR OUT MINUTES LDFLAGS: go build with a progress line
# every 30 s, into a temporary file renamed to OUT on success.
build() {
    name=$1 ver=$2 moddir=$3 out=$4 minutes=$5 ldflags=$6
    tmp=$out.tmp.$$
    log=$cache/build-$name.log
    echo "building $name $ver from the Go module proxy (first run only, ~$minutes minutes)..."
    start=$(date +%s)
    # -buildvcs=false: the modules live inside klua's git tree, whose state says
    # nothing about these binaries (and a fresh `git init` has no commit to stamp).
    (cd "$moddir" && GOTOOLCHAIN=local exec go build -trimpath -buildvcs=false \
        -ldflags "$ldflags" -o "$tmp" .) >"$log" 2>&1 &
    gopid=$!
    trap 'kill $gopid 2>/dev/null; rm -f "$tmp"; exit 130' INT TERM HUP
    next=30
    while kill -0 "$gopid" 2>/dev/null; do
        sleep 1
        el=$(( $(date +%s) - start ))
        if [ "$el" -ge "$next" ]; then
            echo "  ... still building $name ($((el / 60))m$((el % 60))s)"
            next=$((next + 30))
        fi
    done
    rc=0
    wait "$gopid" || rc=$?
    trap - INT TERM HUP
    if [ "$rc" -ne 0 ] || [ ! -s "$tmp" ]; then
        rm -f "$tmp"
        echo "controlplane: building $name $ver failed (go build exit $rc); last lines of $log:" >&2
        tail -n 30 "$log" >&2
        exit 1
    fi
    mv -f "$tmp" "$out"
    echo "built $out in $(( $(date +%s) - start ))s"
}

write_env() {
    envf=$bindir/current.env
    want="KLUA_APISERVER='$apiserver'
KLUA_ETCD='$etcd'
KLUA_APISERVER_VERSION='$k8s_ver'
KLUA_ETCD_VERSION='$etcd_ver'"
    if [ ! -f "$envf" ] || [ "$(cat "$envf")" != "$want" ]; then
        printf '%s\n' "$want" >"$envf.tmp.$$"
        mv -f "$envf.tmp.$$" "$envf"
    fi
}

if [ -x "$apiserver" ] && [ -x "$etcd" ]; then
    mkdir -p "$bindir"
    write_env
    exit 0
fi

mkdir -p "$bindir"
# Two builds at once (make test and make demo in two terminals) would each take
# both cores for minutes; the second waits for the first and then finds the cache.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$bindir/.build.lock"
    if ! flock -n 9; then
        echo "controlplane: another build is running; waiting for it..."
        flock 9
    fi
fi

if [ ! -x "$apiserver" ]; then
    check_go
    # Stamp the release into the binary as the official build does, so /version
    # and `kubectl version` report the real version instead of v0.0.0-master.
    minor=$(echo "$k8s_ver" | sed 's/^v[0-9]*\.\([0-9]*\)\..*/\1/')
    major=$(echo "$k8s_ver" | sed 's/^v\([0-9]*\)\..*/\1/')
    pkg=k8s.io/component-base/version
    build kube-apiserver "$k8s_ver" "$here/apiserver" "$apiserver" 8 \
        "-s -w -X $pkg.gitVersion=$k8s_ver -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
fi
if [ ! -x "$etcd" ]; then
    check_go
    build etcd "$etcd_ver" "$here/etcd" "$etcd" 2 "-s -w"
fi
write_env
