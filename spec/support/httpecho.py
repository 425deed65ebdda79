#!/usr/bin/env python3
"""httpecho.py - a tiny local HTTP(S) server for klua's HTTP client tests.

Usage: httpecho.py [--tls CERT KEY]... [--mtls CERT KEY CA]... [--tls6 CERT KEY]...

Listens on 127.0.0.1: one plain HTTP port, plus one HTTPS port per --tls
pair and one HTTPS port requiring a client certificate signed by CA per
--mtls, and one HTTPS port on [::1] per --tls6 (reported as port 0 when
the host has no IPv6 loopback). Prints all ports on the first line of stdout, space-separated, in
the order given (plain first), then serves until stdin reaches end of file (the test holds the other
end of a pipe, so the server goes away with the test even if it crashes) or
until it is killed. Python 3 standard library only.

Endpoints (any method):
  /echo             200, JSON {method, path, headers, body}; headers lower-cased
  /status/NNN       status NNN, body "status NNN"
  /stream?n=N&ms=M  200, chunked: N chunks "chunk I\\n", M ms apart
  /stream/NNN       like /stream but with status NNN and one plain body
  /gzip             200, a gzip-encoded body (Content-Encoding: gzip)
  /slow?ms=M        waits M ms, then 200 "slow"
  /small            200 "ok", with X-Client-Port (to observe keep-alive)
  /redirect         302 to /echo
  /early            103 Early Hints (with X-Early), then 200 with X-Final
"""
import gzip
import json
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive
    server_version = "httpecho/1"
    # Headers and body go out in separate writes; with Nagle on, the second
    # waits for the client's delayed ACK (~40 ms a request).
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):   # keep the TAP output clean
        pass

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status, body, ctype="text/plain", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _any(self):
        url = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        body = self._body()
        path = url.path
        if path == "/echo":
            out = {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
            }
            self._send(200, json.dumps(out).encode(), "application/json",
                       [("X-Echo", "  padded value  ")])
        elif path.startswith("/status/"):
            code = int(path[len("/status/"):])
            self._send(code, b"status %d" % code)
        elif path == "/stream" or path.startswith("/stream/"):
            code = int(path[len("/stream/"):]) if path.startswith("/stream/") else 200
            n, ms = int(q.get("n", "5")), int(q.get("ms", "50"))
            if code != 200:
                self._send(code, b"stream refused with %d" % code)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(n):
                self._chunk(b"chunk %d\n" % i)
                time.sleep(ms / 1000.0)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        elif path == "/gzip":
            plain = b"hello gzip " * 100
            self._send(200, gzip.compress(plain), "text/plain",
                       [("Content-Encoding", "gzip")])
        elif path == "/slow":
            time.sleep(int(q.get("ms", "1000")) / 1000.0)
            self._send(200, b"slow")
        elif path == "/small":
            self._send(200, b"ok", extra=[("X-Client-Port", str(self.client_address[1]))])
        elif path == "/early":
            self.wfile.write(b"HTTP/1.1 103 Early Hints\r\nX-Early: 1\r\n"
                             b"Link: </a.css>; rel=preload\r\n\r\n")
            self._send(200, b"final", extra=[("X-Final", "1")])
        elif path == "/redirect":
            self._send(302, b"moved", extra=[("Location", "/echo")])
        else:
            self._send(404, b"no such endpoint")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128   # the tests open 20 connections at once
    tls = None

    def finish_request(self, request, client_address):
        # Runs in the per-connection thread, so a slow or failed handshake
        # does not hold up accept().
        if self.tls:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        self.RequestHandlerClass(request, client_address, self)

    def handle_error(self, request, client_address):
        pass   # clients hanging up (timeouts, cancels) are expected


class Server6(Server):
    address_family = socket.AF_INET6


def main(argv):
    servers = [Server(("127.0.0.1", 0), Handler)]
    ports = []
    i = 0
    while i < len(argv):
        v6 = False
        if argv[i] in ("--tls", "--tls6") and i + 2 < len(argv):
            cert, key, ca, v6 = argv[i + 1], argv[i + 2], None, argv[i] == "--tls6"
            i += 3
        elif argv[i] == "--mtls" and i + 3 < len(argv):
            cert, key, ca = argv[i + 1], argv[i + 2], argv[i + 3]
            i += 4
        else:
            sys.stderr.write("usage: httpecho.py [--tls CERT KEY]... [--mtls CERT KEY CA]...\n")
            return 2
        if v6:
            try:
                s = Server6(("::1", 0), Handler)
            except OSError:
                ports.append(0)
                continue
        else:
            s = Server(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        if ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(ca)
        s.tls = ctx
        servers.append(s)
        ports.append(s.server_address[1])
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    ports.insert(0, servers[0].server_address[1])
    print(" ".join(str(p) for p in ports), flush=True)
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, KeyboardInterrupt):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
