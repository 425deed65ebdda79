"""The libcurl klua ships: built by tools/curl.sh from Debian's curl source for
HTTP(S) only and linked statically, so bin/klua maps none of the ~30 shared
libraries Debian's libcurl4 pulls in (GnuTLS via librtmp, LDAP, Kerberos, SSH,
nghttp2, ...). Also the script's failure modes: no download, wrong checksum.

The TLS features klua uses through this libcurl (private CAs, SNI and hostname
checks, client certificates, basic auth, gzip) are exercised by
spec/c/test_http.c; proxies by `klua test` (test_kluatest.py)."""
import functools
import http.server
import os
import pathlib
import subprocess
import threading

import pytest

from conftest import KLUA, ROOT

CURL_SH = ROOT / "tools/curl.sh"
# What bin/klua may load: Lua, libyaml, OpenSSL, zlib and the C library.
ALLOWED = {"linux-vdso", "liblua5.4", "libyaml-0", "libssl", "libcrypto", "libz", "libc", "libm",
           "ld-linux-x86-64"}
# Libraries that only Debian's libcurl4 brings in.
CURL_EXTRAS = ("libcurl", "librtmp", "libgnutls", "libldap", "liblber", "libgssapi", "libkrb5",
               "libssh", "libnghttp2", "libpsl", "libidn2", "libbrotli", "libzstd", "libsasl2")


def _libs(path):
    p = subprocess.run(["ldd", str(path)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    names = set()
    for line in p.stdout.splitlines():
        word = line.split()[0]
        names.add(os.path.basename(word).split(".so")[0])
    return names


def test_release_binary_loads_only_lua_yaml_openssl_zlib_libc():
    klua = ROOT / "bin/klua"
    if not klua.exists():
        pytest.skip("bin/klua is not built (make bin/klua)")
    libs = _libs(klua)
    assert libs <= ALLOWED, f"bin/klua loads {sorted(libs - ALLOWED)} beyond {sorted(ALLOWED)}"


def test_tested_binary_links_the_same_static_libcurl():
    libs = _libs(KLUA)
    extras = sorted(n for n in libs if n.startswith(CURL_EXTRAS))
    assert not extras, f"{KLUA} loads {extras}: not the libcurl tools/curl.sh builds"


def test_cached_build_is_a_quiet_no_op():
    prefix = subprocess.run(["sh", str(CURL_SH), "--prefix"], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert (pathlib.Path(prefix) / "lib/libcurl.a").exists()
    p = subprocess.run(["sh", str(CURL_SH)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stdout == "" and p.stderr == ""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


PROBE = r"""
#include <curl/curl.h>
#include <stdio.h>
int main(void)
{
    curl_version_info_data *d = curl_version_info(CURLVERSION_NOW);
    for (const char *const *p = d->protocols; *p; p++)
        printf("%s ", *p);
    printf("| ssl=%d libz=%d asyncdns=%d https-proxy=%d http2=%d\n",
           !!(d->features & CURL_VERSION_SSL), !!(d->features & CURL_VERSION_LIBZ),
           !!(d->features & CURL_VERSION_ASYNCHDNS), !!(d->features & CURL_VERSION_HTTPS_PROXY),
           !!(d->features & CURL_VERSION_HTTP2));
    printf("%s\n", curl_version());
    return 0;
}
"""


def test_built_libcurl_speaks_http_and_https_only(tmp_path):
    prefix = subprocess.run(["sh", str(CURL_SH), "--prefix"], capture_output=True, text=True,
                            check=True).stdout.strip()
    (tmp_path / "probe.c").write_text(PROBE)
    subprocess.run(["cc", "-I", f"{prefix}/include", "-o", str(tmp_path / "probe"),
                    str(tmp_path / "probe.c"), f"{prefix}/lib/libcurl.a", "-lssl", "-lcrypto",
                    "-lz", "-pthread"], check=True, timeout=120)
    out = subprocess.run([str(tmp_path / "probe")], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    # gzip, TLS, a resolver off the loop, proxies (klua test): kept; HTTP/2 and the rest: out.
    assert out[0] == "http https | ssl=1 libz=1 asyncdns=1 https-proxy=1 http2=0", out
    assert out[1].startswith("libcurl/7.88.1 OpenSSL/3"), out


def _run_uncached(tmp_path, mirrors):
    env = dict(os.environ, KLUA_CACHE=str(tmp_path / "cache"), KLUA_CURL_MIRRORS=mirrors)
    p = subprocess.run(["sh", str(CURL_SH)], capture_output=True, text=True, env=env, timeout=120)
    prefix = subprocess.run(["sh", str(CURL_SH), "--prefix"], capture_output=True, text=True,
                            env=env, check=True).stdout.strip()
    assert p.returncode == 1
    assert not os.path.exists(prefix), "a failed build left a prefix a later run would trust"
    return " ".join(p.stderr.split())


def test_unreachable_source_fails_naming_it(tmp_path):
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    err = _run_uncached(tmp_path, "http://127.0.0.1:1/pool")
    assert "could not download curl_7.88.1.orig.tar.gz" in err
    assert "does not fall back to the system libcurl" in err


def test_source_with_a_wrong_checksum_is_refused(tmp_path):
    served = tmp_path / "mirror"
    served.mkdir()
    (served / "curl_7.88.1.orig.tar.gz").write_bytes(b"not the curl source\n")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                          functools.partial(_Quiet, directory=str(served)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        err = _run_uncached(tmp_path, f"http://127.0.0.1:{srv.server_address[1]}")
    finally:
        srv.shutdown()
        srv.server_close()
    assert "curl_7.88.1.orig.tar.gz has sha256" in err and "refusing to build from it" in err
    assert not (tmp_path / "cache/src/curl_7.88.1.orig.tar.gz").exists()
