#!/bin/sh
# curl.sh - builds the libcurl that bin/klua (and the sanitizer, fuzz and bench
# builds) link statically: Debian 12's own curl source, with Debian's patch series
# (its security fixes), configured for what klua speaks and nothing else.
#
# Provides: ${KLUA_CACHE:-$HOME/.cache/klua}/curl-<version>-<hash>/ with lib/libcurl.a,
#           include/curl/*.h, lib/pkgconfig/libcurl.pc and bin/curl-config, where
#           <hash> covers the configure flags, the compiler flags and the patch list,
#           so changing any of them re-keys the cache. `sh tools/curl.sh --prefix`
#           prints that directory without building (the Makefile reads it).
# Uses:     curl or wget, tar, xz, patch, a C compiler, make; libssl-dev (OpenSSL 3)
#           and zlib1g-dev; deb.debian.org (the source is pinned by sha256 below).
#
# What klua uses of libcurl (src/http.c, src/kube.c, src/lua_ctx_io.c): the multi
# interface over its own epoll loop, HTTP/1.1 and HTTPS through OpenSSL (client
# certificates and keys as files or blobs, CA files/paths/blobs, hostname
# verification, SNI), plain HTTP to loopback stand-ins, basic auth, gzip
# (CURLOPT_ACCEPT_ENCODING ""), http_proxy/https_proxy (klua test routes ctx:http
# through its in-process API server as a proxy), the SSL session share, the URL
# API and curl_getdate (Retry-After). Everything else is configured out: no
# LDAP, RTSP, FTP, SMTP, SSH, RTMP, HTTP/2, Kerberos, IDN, PSL, brotli, zstd.
#
# Quiet and instant when the prefix exists. The build runs in a temporary
# directory and is installed under a temporary name renamed into place, so an
# interrupted build never leaves a prefix a later run would trust; concurrent
# runs (several checkouts sharing the cache) wait on a lock and build once.
# A failed download fails the build: there is no fallback to the system libcurl.
# Env: KLUA_CACHE, CURL_JOBS (make -j, default nproc), KLUA_CURL_MIRRORS.
set -eu

CURL_VERSION=7.88.1
DEB_REVISION=10+deb12u15
ORIG=curl_$CURL_VERSION.orig.tar.gz
ORIG_SHA256=cdb38b72e36bc5d33d5b8810f8018ece1baa29a8f215b4495e495ded82bbf3c7
DEBIAN=curl_$CURL_VERSION-$DEB_REVISION.debian.tar.xz
DEBIAN_SHA256=961b78bc48492c5693e4decb352ddd176f343260a8956f48b2887874048ef23b
# Both files live in Debian's main pool (bookworm point releases carry the
# security updates); the security archive is the second place to look.
# KLUA_CURL_MIRRORS (space-separated base URLs) replaces the list: a local
# mirror, or the tests of this script's failure modes.
MIRRORS=${KLUA_CURL_MIRRORS:-"http://deb.debian.org/debian/pool/main/c/curl
http://deb.debian.org/debian-security/pool/updates/main/c/curl"}

# Debian's series minus the two patches that make its GnuTLS and NSS flavours
# (90_gnutls, 99_nss): Debian builds its OpenSSL libcurl4 without them too.
SKIP_PATCHES="90_gnutls.patch 99_nss.patch"

# --with-ca-*: the paths Debian's libcurl4 uses, so a real GitHub (or any
# public CA) verifies as before. The threaded resolver stays: a name lookup
# must not block the event loop. Proxy support stays (klua test relies on it).
CONFIGURE_FLAGS="--disable-shared --enable-static --disable-dependency-tracking
--enable-http --enable-proxy --enable-ipv6 --enable-threaded-resolver --enable-dateparse
--with-openssl --with-zlib --with-ca-bundle=/etc/ssl/certs/ca-certificates.crt
--with-ca-path=/etc/ssl/certs
--disable-ftp --disable-file --disable-ldap --disable-ldaps --disable-rtsp --disable-dict
--disable-telnet --disable-tftp --disable-pop3 --disable-imap --disable-smb --disable-smtp
--disable-gopher --disable-mqtt --disable-manual --disable-libcurl-option
--disable-crypto-auth --disable-ntlm --disable-ntlm-wb --disable-tls-srp
--disable-unix-sockets --disable-cookies --disable-doh --disable-mime --disable-netrc
--disable-progress-meter --disable-get-easy-options --disable-alt-svc --disable-headers-api
--disable-hsts --disable-websockets --disable-ares --disable-sspi
--without-librtmp --without-libssh2 --without-libssh --without-wolfssh --without-libpsl
--without-libidn2 --without-nghttp2 --without-ngtcp2 --without-nghttp3 --without-quiche
--without-msh3 --without-hyper --without-brotli --without-zstd --without-gssapi
--without-libgsasl --without-zsh-functions-dir --without-fish-functions-dir"
# Debian's hardening flags; -g keeps curl's frames readable in sanitizer reports.
CURL_CFLAGS="-O2 -g -fstack-protector-strong -Wformat -Werror=format-security"
CURL_CPPFLAGS="-D_FORTIFY_SOURCE=2 -DCURL_PATCHSTAMP=\"$DEB_REVISION\""

cache=${KLUA_CACHE:-$HOME/.cache/klua}
key=$(printf '%s\n' "$CURL_VERSION-$DEB_REVISION" "$SKIP_PATCHES" "$CONFIGURE_FLAGS" \
    "$CURL_CFLAGS" "$CURL_CPPFLAGS" | sha256sum | cut -c1-12)
prefix=$cache/curl-$CURL_VERSION-$DEB_REVISION-$key

if [ "${1:-}" = "--prefix" ]; then
    echo "$prefix"
    exit 0
fi
[ $# -eq 0 ] || { echo "usage: sh tools/curl.sh [--prefix]" >&2; exit 2; }
[ -f "$prefix/lib/libcurl.a" ] && [ -f "$prefix/include/curl/curl.h" ] && exit 0

die() { echo "curl.sh: $*" >&2; exit 1; }

# fetch NAME SHA256: NAME from the first mirror that has it, into $cache/src,
# checked against SHA256 (a file already there with the right hash is kept).
fetch() {
    name=$1 sum=$2 dst=$cache/src/$1
    part=$dst.part.$$
    mkdir -p "$cache/src"
    if [ -f "$dst" ] && echo "$sum  $dst" | sha256sum -c - >/dev/null 2>&1; then
        return 0
    fi
    why=""
    for m in $MIRRORS; do
        rm -f "$part"
        if command -v curl >/dev/null 2>&1; then
            out=$(curl -fsSL --retry 3 -m 300 -o "$part" "$m/$name" 2>&1) ||
                { why="$why
  $m/$name: $out"; continue; }
        elif command -v wget >/dev/null 2>&1; then
            out=$(wget -q -T 60 -t 3 -O "$part" "$m/$name" 2>&1) ||
                { why="$why
  $m/$name: wget failed $out"; continue; }
        else
            die "neither curl nor wget is installed: cannot download $name"
        fi
        if echo "$sum  $part" | sha256sum -c - >/dev/null 2>&1; then
            mv "$part" "$dst"
            return 0
        fi
        got=$(sha256sum "$part" | cut -d' ' -f1)
        rm -f "$part"
        die "$m/$name has sha256 $got, expected $sum; refusing to build from it"
    done
    rm -f "$part"
    die "could not download $name:$why
klua links a libcurl built from Debian's curl source and does not fall back to the
system libcurl; check the network (or put the file, sha256 $sum, in $cache/src/)."
}

for t in tar xz patch make sha256sum flock; do
    command -v "$t" >/dev/null 2>&1 || die "$t is not installed (make deps installs what klua needs)"
done
[ -f /usr/include/openssl/ssl.h ] || die "OpenSSL headers are missing: apt-get install libssl-dev"
[ -f /usr/include/zlib.h ] || die "zlib headers are missing: apt-get install zlib1g-dev"

# One build at a time per cache; whoever waited finds the prefix made.
mkdir -p "$cache"
exec 9>"$cache/curl.lock"
flock 9
[ -f "$prefix/lib/libcurl.a" ] && [ -f "$prefix/include/curl/curl.h" ] && exit 0

fetch "$ORIG" "$ORIG_SHA256"
fetch "$DEBIAN" "$DEBIAN_SHA256"

work=$cache/curl-build.$$
log=$cache/build-curl.log
tmp=$prefix.tmp.$$
trap 'rm -rf "$work" "$tmp"' EXIT
trap 'exit 130' INT TERM HUP
echo "building libcurl $CURL_VERSION-$DEB_REVISION (HTTP(S) only, static) into $prefix (first run only, about a minute)..."
start=$(date +%s)
rm -rf "$work" && mkdir -p "$work"
tar -xzf "$cache/src/$ORIG" -C "$work"
src=$work/curl-$CURL_VERSION
tar -xJf "$cache/src/$DEBIAN" -C "$src"
# The series as Debian applies it (quilt: -p1, in order, blank lines and
# comments skipped). Three patches edit configure.ac/Makefile.am (zsh
# completion, LDAP, GSSAPI link flags); all three features are off here and
# curl's maintainer mode is off, so the shipped configure is used unchanged.
n=0
while read -r p _; do
    case "$p" in '' | '#'*) continue ;; esac
    case " $SKIP_PATCHES " in *" $p "*) continue ;; esac
    patch -d "$src" -p1 -s -f --no-backup-if-mismatch <"$src/debian/patches/$p" >>"$log.patch" 2>&1 ||
        { cat "$log.patch" >&2; rm -f "$log.patch"; die "Debian patch $p does not apply"; }
    n=$((n + 1))
done <"$src/debian/patches/series"
rm -f "$log.patch"

# Run from make: a jobserver of the calling make is not ours to use.
unset MAKEFLAGS MFLAGS MAKELEVEL
jobs=${CURL_JOBS:-$(nproc 2>/dev/null || echo 2)}
# shellcheck disable=SC2086
if ! (cd "$src" &&
    CFLAGS="$CURL_CFLAGS" CPPFLAGS="$CURL_CPPFLAGS" ./configure --prefix="$tmp" $CONFIGURE_FLAGS &&
    make -C lib -j"$jobs" && make -C lib install && make -C include install &&
    make install-pkgconfigDATA install-binSCRIPTS) >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "building libcurl failed; the log is $log"
fi
# curl-config and libcurl.pc name the prefix they were installed into.
sed -i "s|$tmp|$prefix|g" "$tmp/bin/curl-config" "$tmp/lib/pkgconfig/libcurl.pc"
rm -f "$tmp"/lib/*.la
printf '%s\n' "$CURL_VERSION-$DEB_REVISION, $n Debian patches" "$CONFIGURE_FLAGS" >"$tmp/BUILD-INFO"
rm -rf "$prefix"
mv "$tmp" "$prefix"
echo "libcurl built in $(($(date +%s) - start)) s ($n Debian patches applied; log $log)"
