#!/bin/sh
# cluster.sh - a real, local Kubernetes control plane (etcd + kube-apiserver) for
# klua's tests and demo, in the spirit of controller-runtime's envtest.
#
#   sh spec/support/cluster.sh up DIR        start a fresh one with its state in DIR
#   sh spec/support/cluster.sh down DIR      stop it and remove DIR
#   sh spec/support/cluster.sh status DIR    say what runs; exit 0 only if ready
#   sh spec/support/cluster.sh compact DIR [REV]   compact etcd (to REV, default now)
#
# Provides, in DIR (absolute paths everywhere, so files work from any directory):
#   env                shell-sourceable: KUBECONFIG, KLUA_APISERVER_URL, ports, tokens,
#                      file paths, pids (see write_env below)
#   etcd.env           KLUA_ETCD_URL and ports, for tests that compact through etcd's
#                      HTTP/JSON gateway (POST /v3/kv/compaction)
#   kubeconfig         admin bearer token, CA embedded (what kubectl and klua use)
#   kubeconfig-cert    client certificate CN=klua-admin O=system:masters, by file path
#   kubeconfig-tokenfile  tokenFile: DIR/admin.token
#   kubeconfig-exec    exec plugin spec/support/exec-plugin.sh (one line per run in
#                      DIR/exec-plugin.calls; knobs documented in that script)
#   kubeconfig-viewer  token of user "viewer", who has no RBAC grants at all
#   kubeconfig-wrongca the admin token, but a CA that did not sign the server cert
#   audit.log          every request at level Metadata, one line per request at
#                      ResponseComplete (watches also log ResponseStarted)
#   etcd.log, apiserver.log, *.pid
# The serving certificate is valid for 127.0.0.1, localhost and klua-test.local
# (for tls-server-name tests). Only 127.0.0.1 is bound, on free random ports.
#
# Uses: the binaries spec/support/controlplane/build.sh wrote (or KLUA_APISERVER /
# KLUA_ETCD from the environment), openssl, curl, python3 (to pick free ports),
# setsid. There is no controller-manager: nothing garbage-collects owned objects,
# no namespace finishes terminating, no service account is created on its own.
#
# Environment knobs: KLUA_CLUSTER_TIMEOUT (seconds to wait for readiness, 90),
# KLUA_ETCD_COMPACTION_INTERVAL (the apiserver's own periodic compaction, default
# 0 = off, so only a test's explicit compaction expires resourceVersions),
# KLUA_APISERVER_EXTRA_ARGS (appended to kube-apiserver's flags).
set -eu

here=$(cd "$(dirname "$0")" && pwd -P)
cache=${KLUA_CACHE:-$HOME/.cache/klua}
MARK=.klua-cluster   # only a directory holding this file is ever wiped

die() { echo "cluster: $*" >&2; exit 1; }
usage() {
    echo "usage: sh spec/support/cluster.sh up|down|status DIR, or compact DIR [REVISION]" >&2
    exit 2
}

# running PID: true if PID is a live process of this cluster. Our processes carry
# DIR in their command line; checking it means a stale pid file can never make us
# signal an unrelated process that reused the pid (and skips zombies).
running() {
    case "$1" in '' | *[!0-9]*) return 1 ;; esac
    kill -0 "$1" 2>/dev/null || return 1
    tr '\0' '\n' 2>/dev/null <"/proc/$1/cmdline" | grep -qF "$dir/"
}

# pidof_ NAME: the pid recorded for NAME (apiserver, etcd) if it still runs.
pidof_() {
    [ -f "$dir/$1.pid" ] || return 1
    p=$(cat "$dir/$1.pid")
    running "$p" || return 1
    echo "$p"
}

# stop_one NAME: TERM the process group of NAME, KILL it if it still runs after
# 5 s, and wait until it is gone.
stop_one() {
    p=$(pidof_ "$1") || return 0
    # setsid made the process the leader of its own group: signal the group.
    kill -TERM -"$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
    deadline=$(( $(date +%s) + 5 ))
    signal=TERM
    while running "$p"; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            [ "$signal" = KILL ] && die "could not stop $1 (pid $p)"
            kill -KILL -"$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
            signal=KILL
            deadline=$(( $(date +%s) + 5 ))
        fi
        sleep 0.05
    done
}

# stop_all: the API server first: stopped while etcd still answers it exits in
# about a second; with etcd gone first it waits on etcd timeouts instead.
stop_all() {
    stop_one apiserver
    stop_one etcd
}

# --- certificates and credentials ------------------------------------------

write_openssl_cnf() {
    cat >"$dir/pki/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost,DNS:klua-test.local,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.0.0.1
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
EOF
}

# new_ca NAME CN: pki/NAME.crt + pki/NAME.key, a self-signed P-256 CA.
new_ca() {
    openssl req -x509 -new -config "$dir/pki/openssl.cnf" -extensions ca_ext \
        -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -noenc \
        -keyout "$dir/pki/$1.key" -out "$dir/pki/$1.crt" -subj "/CN=$2" -days 3650 \
        2>>"$dir/openssl.log"
}

# new_leaf NAME CA SUBJECT EXT: pki/NAME.crt + .key signed by pki/CA.
new_leaf() {
    openssl req -new -config "$dir/pki/openssl.cnf" \
        -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -noenc \
        -keyout "$dir/pki/$1.key" -out "$dir/pki/$1.csr" -subj "$3" 2>>"$dir/openssl.log"
    openssl x509 -req -in "$dir/pki/$1.csr" -CA "$dir/pki/$2.crt" -CAkey "$dir/pki/$2.key" \
        -set_serial "0x$(openssl rand -hex 8)" -days 825 \
        -extfile "$dir/pki/openssl.cnf" -extensions "$4" -out "$dir/pki/$1.crt" 2>>"$dir/openssl.log"
    rm -f "$dir/pki/$1.csr"
}

make_pki() {
    mkdir -p "$dir/pki"
    write_openssl_cnf
    new_ca ca klua-test-ca
    new_ca client-ca klua-test-client-ca
    new_ca wrong-ca klua-test-wrong-ca
    new_leaf apiserver ca /CN=kube-apiserver server_ext
    new_leaf admin client-ca "/O=system:masters/CN=klua-admin" client_ext
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
        -out "$dir/pki/sa.key" 2>>"$dir/openssl.log"
    openssl pkey -in "$dir/pki/sa.key" -pubout -out "$dir/pki/sa.pub" 2>>"$dir/openssl.log"

    admin_token=$(openssl rand -hex 24)
    viewer_token=$(openssl rand -hex 24)
    printf '%s' "$admin_token" >"$dir/admin.token"
    printf '%s,admin,uid-admin,"system:masters"\n%s,viewer,uid-viewer\n' \
        "$admin_token" "$viewer_token" >"$dir/pki/tokens.csv"
}

write_audit_policy() {
    # RequestReceived is left out so each request is one ResponseComplete line.
    cat >"$dir/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
EOF
}

# --- kubeconfigs ------------------------------------------------------------

# kubeconfig FILE USER CLUSTER-AUTH-LINES USER-LINES
kubeconfig() {
    {
        printf 'apiVersion: v1\nkind: Config\nclusters:\n- name: klua-test\n  cluster:\n'
        printf '    server: %s\n%s\n' "$url" "$3"
        printf 'contexts:\n- name: klua-test\n  context:\n    cluster: klua-test\n'
        printf '    user: %s\n    namespace: default\ncurrent-context: klua-test\n' "$2"
        printf 'users:\n- name: %s\n  user:\n%s\n' "$2" "$4"
    } >"$1"
}

write_kubeconfigs() {
    ca_data="    certificate-authority-data: $(base64 -w0 <"$dir/pki/ca.crt")"
    ca_file="    certificate-authority: $dir/pki/ca.crt"
    wrong_data="    certificate-authority-data: $(base64 -w0 <"$dir/pki/wrong-ca.crt")"
    kubeconfig "$dir/kubeconfig" admin "$ca_data" "    token: $admin_token"
    kubeconfig "$dir/kubeconfig-viewer" viewer "$ca_data" "    token: $viewer_token"
    kubeconfig "$dir/kubeconfig-wrongca" admin "$wrong_data" "    token: $admin_token"
    kubeconfig "$dir/kubeconfig-tokenfile" admin "$ca_file" "    tokenFile: $dir/admin.token"
    kubeconfig "$dir/kubeconfig-cert" klua-admin "$ca_file" \
"    client-certificate: $dir/pki/admin.crt
    client-key: $dir/pki/admin.key"
    # /bin/sh runs the plugin so it need not carry the executable bit in git.
    kubeconfig "$dir/kubeconfig-exec" exec-admin "$ca_data" \
"    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: /bin/sh
      args:
      - $here/exec-plugin.sh
      env:
      - name: KLUA_EXEC_TOKEN_FILE
        value: $dir/admin.token
      - name: KLUA_EXEC_CALLS
        value: $dir/exec-plugin.calls
      interactiveMode: Never
      provideClusterInfo: false"
}

write_env() {
    cat >"$dir/etcd.env" <<EOF
export KLUA_ETCD_URL='http://127.0.0.1:$etcd_port'
export KLUA_ETCD_CLIENT_PORT=$etcd_port
export KLUA_ETCD_PEER_PORT=$peer_port
export KLUA_ETCD_PREFIX=/registry
EOF
    cat >"$dir/env" <<EOF
# klua test cluster in $dir - source this file: . $dir/env
export KLUA_CLUSTER_DIR='$dir'
export KUBECONFIG='$dir/kubeconfig'
export KLUA_APISERVER_URL='$url'
export KLUA_APISERVER_PORT=$api_port
export KLUA_TLS_SERVER_NAME=klua-test.local
export KLUA_ADMIN_TOKEN='$admin_token'
export KLUA_VIEWER_TOKEN='$viewer_token'
export KLUA_CA_FILE='$dir/pki/ca.crt'
export KLUA_WRONG_CA_FILE='$dir/pki/wrong-ca.crt'
export KLUA_CLIENT_CA_FILE='$dir/pki/client-ca.crt'
export KLUA_CLIENT_CERT='$dir/pki/admin.crt'
export KLUA_CLIENT_KEY='$dir/pki/admin.key'
export KLUA_AUDIT_LOG='$dir/audit.log'
export KLUA_EXEC_CALLS='$dir/exec-plugin.calls'
export KLUA_APISERVER_PID=$api_pid
export KLUA_ETCD_PID=$etcd_pid
EOF
    cat "$dir/etcd.env" >>"$dir/env"
}

# --- up / down / status / compact ---------------------------------------------

load_binaries() {
    if [ -z "${KLUA_APISERVER:-}" ] || [ -z "${KLUA_ETCD:-}" ]; then
        envf=$cache/bin/current.env
        [ -f "$envf" ] ||
            die "no control plane binaries in $cache/bin; run 'make controlplane' (sh spec/support/controlplane/build.sh) first"
        # shellcheck disable=SC1090
        . "$envf"
    fi
    [ -x "$KLUA_APISERVER" ] || die "kube-apiserver binary $KLUA_APISERVER is missing; run 'make controlplane'"
    [ -x "$KLUA_ETCD" ] || die "etcd binary $KLUA_ETCD is missing; run 'make controlplane'"
}

# fail_with LOG MESSAGE: report a start-up failure with the log's last lines.
fail_with() {
    echo "cluster: $2; last lines of $1:" >&2
    tail -n 40 "$1" >&2 || true
    exit 1
}

on_exit_up() {
    rc=$?
    if [ "$up_ok" != 1 ]; then
        stop_all || true
        [ "$rc" -ne 0 ] || rc=1
        echo "cluster: start-up failed; stopped what was started (logs kept in $dir)" >&2
    fi
    exit "$rc"
}

up() {
    load_binaries
    for tool in openssl curl python3 setsid base64; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (make deps installs it)"
    done
    if [ -d "$dir_arg" ]; then
        dir=$(cd "$dir_arg" && pwd -P)
        if [ -f "$dir/$MARK" ]; then
            if pidof_ apiserver >/dev/null || pidof_ etcd >/dev/null; then
                echo "cluster: stopping the cluster already running in $dir_arg"
                stop_all
            fi
            rm -rf "$dir"
        elif [ -n "$(ls -A "$dir")" ]; then
            die "$dir_arg exists and is not a klua test cluster directory; not touching it"
        fi
    fi
    umask 077   # tokens and keys live here
    mkdir -p "$dir_arg"
    dir=$(cd "$dir_arg" && pwd -P)
    : >"$dir/$MARK"
    up_ok=0
    trap on_exit_up EXIT
    trap 'exit 130' INT TERM HUP
    start=$(date +%s)
    timeout=${KLUA_CLUSTER_TIMEOUT:-90}

    # Three distinct free ports, held open together so they differ.
    # shellcheck disable=SC2046
    set -- $(python3 -c 'import socket
ss = [socket.socket() for _ in range(3)]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
    etcd_port=$1 peer_port=$2 api_port=$3
    url=https://127.0.0.1:$api_port

    make_pki
    write_audit_policy
    write_kubeconfigs

    setsid "$KLUA_ETCD" --name klua --data-dir "$dir/etcd-data" \
        --listen-client-urls "http://127.0.0.1:$etcd_port" \
        --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-cluster "klua=http://127.0.0.1:$peer_port" \
        --initial-cluster-state new --unsafe-no-fsync --log-level warn \
        >"$dir/etcd.log" 2>&1 </dev/null &
    etcd_pid=$!
    echo "$etcd_pid" >"$dir/etcd.pid"

    until curl -s -m 2 "http://127.0.0.1:$etcd_port/health" 2>/dev/null | grep -q '"health":"true"'; do
        running "$etcd_pid" || fail_with "$dir/etcd.log" "etcd exited during start-up"
        [ $(( $(date +%s) - start )) -lt "$timeout" ] ||
            fail_with "$dir/etcd.log" "etcd was not healthy within ${timeout}s"
        sleep 0.1
    done

    # A loopback advertise address is refused by the endpoint reconciler, and
    # nothing here needs the "kubernetes" Service's endpoints: reconciler off.
    # shellcheck disable=SC2086
    setsid "$KLUA_APISERVER" \
        --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
        --endpoint-reconciler-type=none \
        --etcd-servers="http://127.0.0.1:$etcd_port" \
        --etcd-compaction-interval="${KLUA_ETCD_COMPACTION_INTERVAL:-0}" \
        --cert-dir="$dir/pki" \
        --tls-cert-file="$dir/pki/apiserver.crt" --tls-private-key-file="$dir/pki/apiserver.key" \
        --client-ca-file="$dir/pki/client-ca.crt" --token-auth-file="$dir/pki/tokens.csv" \
        --authorization-mode=RBAC \
        --service-account-issuer=https://klua-test.local \
        --service-account-key-file="$dir/pki/sa.pub" \
        --service-account-signing-key-file="$dir/pki/sa.key" \
        --service-cluster-ip-range=10.0.0.0/24 \
        --disable-admission-plugins=ServiceAccount \
        --allow-privileged=true --profiling=false \
        --audit-policy-file="$dir/audit-policy.yaml" --audit-log-path="$dir/audit.log" \
        ${KLUA_APISERVER_EXTRA_ARGS:-} \
        >"$dir/apiserver.log" 2>&1 </dev/null &
    api_pid=$!
    echo "$api_pid" >"$dir/apiserver.pid"

    # The admin client certificate (system:masters) is used for polling so no
    # token appears on a command line.
    auth="--cacert $dir/pki/ca.crt --cert $dir/pki/admin.crt --key $dir/pki/admin.key"
    # shellcheck disable=SC2086
    until [ "$(curl -s -m 5 $auth "$url/readyz" 2>/dev/null)" = ok ]; do
        running "$api_pid" || fail_with "$dir/apiserver.log" "kube-apiserver exited during start-up"
        [ $(( $(date +%s) - start )) -lt "$timeout" ] ||
            fail_with "$dir/apiserver.log" "kube-apiserver was not ready within ${timeout}s"
        sleep 0.25
    done
    # shellcheck disable=SC2086
    until [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' $auth "$url/api/v1/namespaces/default")" = 200 ]; do
        [ $(( $(date +%s) - start )) -lt "$timeout" ] ||
            fail_with "$dir/apiserver.log" "the default namespace did not appear within ${timeout}s"
        sleep 0.25
    done

    write_env
    up_ok=1
    echo "cluster up in $(( $(date +%s) - start ))s: $url (. $dir/env, or KUBECONFIG=$dir/kubeconfig)"
}

down() {
    [ -d "$dir_arg" ] || return 0
    dir=$(cd "$dir_arg" && pwd -P)
    [ -f "$dir/$MARK" ] || die "$dir_arg is not a klua test cluster directory; not removing it"
    stop_all
    rm -rf "$dir"
}

status() {
    [ -d "$dir_arg" ] && [ -f "$dir_arg/$MARK" ] || { echo "no cluster in $dir_arg"; exit 1; }
    dir=$(cd "$dir_arg" && pwd -P)
    ok=1
    if p=$(pidof_ etcd); then echo "etcd: running, pid $p"; else echo "etcd: not running"; ok=0; fi
    if p=$(pidof_ apiserver); then
        # shellcheck disable=SC1091
        . "$dir/env"
        r=$(curl -s -m 5 --cacert "$dir/pki/ca.crt" --cert "$dir/pki/admin.crt" \
            --key "$dir/pki/admin.key" "$KLUA_APISERVER_URL/readyz" 2>/dev/null || true)
        echo "kube-apiserver: running, pid $p, $KLUA_APISERVER_URL, readyz: ${r:-no answer}"
        [ "$r" = ok ] || ok=0
    else
        echo "kube-apiserver: not running"
        ok=0
    fi
    [ "$ok" = 1 ]
}

compact() {
    [ -f "$dir_arg/etcd.env" ] || die "no cluster in $dir_arg"
    # shellcheck disable=SC1091
    . "$dir_arg/etcd.env"
    rev=${1:-}
    if [ -z "$rev" ]; then
        # The response header of any range request carries the current revision.
        rev=$(curl -s -m 5 -X POST "$KLUA_ETCD_URL/v3/kv/range" -d '{"key":"Lw==","count_only":true}' |
            sed -n 's/.*"revision":"\([0-9]*\)".*/\1/p')
        [ -n "$rev" ] || die "could not read the current revision from etcd at $KLUA_ETCD_URL"
    fi
    out=$(curl -s -m 10 -X POST "$KLUA_ETCD_URL/v3/kv/compaction" -d "{\"revision\":\"$rev\",\"physical\":true}")
    case "$out" in
        *'"header"'*) echo "compacted etcd at revision $rev" ;;
        *) die "etcd at $KLUA_ETCD_URL refused to compact at revision $rev: $out" ;;
    esac
}

[ $# -ge 2 ] || usage
cmd=$1 dir_arg=$2
shift 2
case "$cmd" in
    up) [ $# -eq 0 ] || usage; up ;;
    down) [ $# -eq 0 ] || usage; down ;;
    status) [ $# -eq 0 ] || usage; status ;;
    compact) [ $# -le 1 ] || usage; compact "${1:-}" ;;
    *) usage ;;
esac
