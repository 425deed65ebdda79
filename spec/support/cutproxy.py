#!/usr/bin/env python3
"""cutproxy.py - a loopback TCP proxy that can cut every connection on command.

Provides: a plain TCP forwarder (it never looks inside the bytes, so TLS to the
API server passes through untouched) from 127.0.0.1:PORT to --target, and a
control API on a second loopback port, so a test can cut klua's watches and
API calls the way a network failure would:

  POST /cut       close every open connection now (both sides, RST)
  POST /block     cut, and close every new connection at once until /unblock
                  (the API server looks down)
  POST /unblock   forward new connections again
  GET  /stats     {"active": n, "accepted": n, "cut": n, "refused": n, "blocked": bool}

SIGUSR1 cuts as /cut does (for a shell). The first lines on stdout are
"PORT <n>" and "CONTROL <n>".

Usage: cutproxy.py --target HOST:PORT [--port 0] [--control-port 0]
Uses: only the Python 3 standard library.
"""
import argparse
import json
import signal
import socket
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Proxy:
    """The forwarder. Every access to conns and the counters holds lock."""

    def __init__(self, target, port):
        self.target = target
        self.lock = threading.Lock()
        self.conns = set()       # (client socket, upstream socket) pairs
        self.blocked = False
        self.accepted = self.cuts = self.refused = 0
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]

    @staticmethod
    def _kill(sock):
        # Linger 0: close with a RST, as a dropped network path or a crashed
        # peer looks to the other side; nothing pending is delivered.
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass

    def cut(self):
        with self.lock:
            pairs = list(self.conns)
            self.conns.clear()
            self.cuts += len(pairs)
        for a, b in pairs:
            self._kill(a)
            self._kill(b)
        return len(pairs)

    def set_blocked(self, on):
        with self.lock:
            self.blocked = on
        return self.cut() if on else 0

    def stats(self):
        with self.lock:
            return {"active": len(self.conns), "accepted": self.accepted, "cut": self.cuts,
                    "refused": self.refused, "blocked": self.blocked}

    def serve(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                blocked = self.blocked
                if blocked:
                    self.refused += 1
            if blocked:
                self._kill(client)
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client):
        try:
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.settimeout(None)
        except OSError:
            self._kill(client)
            return
        pair = (client, upstream)
        with self.lock:
            if self.blocked:   # blocked while connecting
                self.refused += 1
                pair = None
            else:
                self.accepted += 1
                self.conns.add((client, upstream))
        if pair is None:
            self._kill(client)
            self._kill(upstream)
            return
        threading.Thread(target=self._pump, args=(client, upstream, pair), daemon=True).start()
        self._pump(upstream, client, pair)

    def _pump(self, src, dst, pair):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        # One side ended: end the other too (unless a cut already did).
        with self.lock:
            mine = pair in self.conns
            self.conns.discard(pair)
        if mine:
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass


class Control(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/stats":
            self.reply(200, self.server.proxy.stats())
        else:
            self.reply(404, {"message": "not found"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        p = self.server.proxy
        if self.path == "/cut":
            self.reply(200, {"cut": p.cut()})
        elif self.path == "/block":
            self.reply(200, {"cut": p.set_blocked(True)})
        elif self.path == "/unblock":
            p.set_blocked(False)
            self.reply(200, {"cut": 0})
        else:
            self.reply(404, {"message": "not found"})


def parse_target(s):
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("--target must be HOST:PORT, got " + s)
    return host, int(port)


def main(argv=None):
    ap = argparse.ArgumentParser(description="A TCP proxy whose connections can be cut.")
    ap.add_argument("--target", required=True, type=parse_target, help="HOST:PORT to forward to")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--control-port", type=int, default=0)
    args = ap.parse_args(argv)

    proxy = Proxy(args.target, args.port)
    ctl = ThreadingHTTPServer(("127.0.0.1", args.control_port), Control)
    ctl.daemon_threads = True
    ctl.proxy = proxy
    threading.Thread(target=proxy.serve, daemon=True).start()
    signal.signal(signal.SIGUSR1, lambda *_: proxy.cut())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("PORT %d" % proxy.port, flush=True)
    print("CONTROL %d" % ctl.server_address[1], flush=True)
    try:
        ctl.serve_forever(poll_interval=0.2)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        proxy.set_blocked(True)
        proxy.listener.close()
        ctl.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
