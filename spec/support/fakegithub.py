#!/usr/bin/env python3
"""fakegithub.py - a stand-in for GitHub's REST API (issue comments), for tests and the demo.

Provides: a loopback HTTP server (Python 3 standard library only) that answers
the issue-comment endpoints the way api.github.com does:

  POST   /repos/{owner}/{repo}/issues/{n}/comments     {"body"} -> 201 comment
  GET    /repos/{owner}/{repo}/issues/{n}/comments     oldest first, per_page/page, Link
  GET    /repos/{owner}/{repo}/issues/comments/{id}
  PATCH  /repos/{owner}/{repo}/issues/comments/{id}    {"body"} -> 200 comment
  DELETE /repos/{owner}/{repo}/issues/comments/{id}    -> 204

with GitHub's checks and failure shapes: a User-Agent is required (403), a
token is required (`Authorization: Bearer T` or `token T`, else 401), an empty
body is 422 "Validation Failed", unknown things are 404 "Not Found", and every
answer carries x-ratelimit-* headers counting down from --rate-limit; at zero
the answer is GitHub's 403 "API rate limit exceeded".

A control API that GitHub does not have lives under /_fake/ (no token needed):
  GET  /_fake/comments    every comment, with "repo" and "issue"
  GET  /_fake/requests    log of API requests: method, path, time (arrival), end
                          (answer sent or connection dropped), status, fault, who
                          (the name of the token it carried, see /_fake/tokens;
                          never a header, so never the token)
  POST /_fake/reset       forget comments, faults, the log; full rate limit
  POST /_fake/faults      {"mode": "5xx"|"secondary403"|"429"|"slow"|"drop"|"none",
                           "count": N, "retry_after": S, "delay": S, "status": 502|503,
                           "method": "POST", "apply": true}
                          queues N faults for the next API requests ("method" limits
                          them to one verb; "apply" with "drop" performs the request
                          and then drops the answer, like a connection cut after
                          GitHub acted); "none" clears the queue.
  GET  /_fake/faults      the queued faults
  POST /_fake/ratelimit   {"remaining": N, "reset_in": S, "limit": L}
  POST /_fake/missing     {"repos": ["owner/repo", ...]} repositories that answer 404
  POST /_fake/tokens      {"tokens": {"TOKEN": "name", ...}} more tokens to accept, each
                          with the name the log and comments record as "who" (the
                          --token one is "default"); lets a test tell replicas apart
  GET  /_fake/tokens      the accepted names (never a token)
  POST /_fake/chaos       {"seed": S, "5xx": P, "429": P, "slow": P, "drop": P,
                           "drop_apply": P, "delay": [LO, HI], "retry_after": S}
                          random faults: each API request draws one fault with these
                          probabilities from a generator seeded with S (queued
                          faults go first); {} turns it off
  GET  /_fake/chaos       the settings and how many faults of each mode it injected

Usage: fakegithub.py [--port 0] [--host 127.0.0.1] [--token T] [--rate-limit 5000]
                     [--missing-repo owner/repo]... [--first-id N] [--login NAME] [-v]
Port 0 picks a free port; the first line on stdout is "PORT <n>".

Uses: only the Python 3 standard library.
"""
import argparse
import base64
import io
import json
import random
import re
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

DOCS = "https://docs.github.com/rest"
MSG_PRIMARY = ("API rate limit exceeded for user ID 1. If you reach out to GitHub Support for "
               "help, please include the request ID and timestamp.")
MSG_SECONDARY = ("You have exceeded a secondary rate limit. Please wait a few minutes before "
                 "you try again. If you reach out to GitHub Support for help, please include "
                 "the request ID.")
MSG_NO_UA = ("Request forbidden by administrative rules. Please make sure your request has a "
             "User-Agent header (https://docs.github.com/en/rest/overview/"
             "resources-in-the-rest-api#user-agent-required). Check https://developer.github.com "
             "for other possible causes.")
MAX_BODY = 65536
CHAOS_MODES = ("5xx", "429", "slow", "drop", "drop_apply")

RE_ISSUE_COMMENTS = re.compile(r"^/repos/([^/]+)/([^/]+)/issues/([0-9]+)/comments$")
RE_COMMENT = re.compile(r"^/repos/([^/]+)/([^/]+)/issues/comments/([0-9]+)$")


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class State:
    """Everything the server knows; every access holds self.lock."""

    def __init__(self, args):
        self.lock = threading.Lock()
        self.token = args.token
        self.login = args.login
        self.limit = args.rate_limit
        self.missing = {r.lower() for r in args.missing_repo}
        self.next_id = args.first_id
        self.tokens = {args.token: "default"}   # token -> name; kept over reset()
        self.reset()

    def reset(self):
        self.comments = {}   # id -> dict(id, repo, issue, body, created, updated)
        self.faults = []     # queued fault dicts, each with a "count"
        self.log = []
        self.remaining = self.limit
        self.reset_at = int(time.time()) + 3600
        self.chaos = None        # random fault settings (see set_chaos)
        self.chaos_rng = None
        self.chaos_counts = {}

    def set_chaos(self, arg):
        """Random faults per request; an empty dict turns them off. Raises
        ValueError on a bad setting."""
        probs = {m: float(arg.get(m, 0)) for m in CHAOS_MODES}
        if any(p < 0 for p in probs.values()) or sum(probs.values()) > 1:
            raise ValueError("probabilities must be >= 0 and sum to at most 1")
        lo, hi = (float(x) for x in arg.get("delay", (0.5, 2.0)))
        if not 0 <= lo <= hi:
            raise ValueError("delay must be [LO, HI] with 0 <= LO <= HI")
        if not any(probs.values()):
            self.chaos, self.chaos_rng = None, None
            return
        self.chaos = {"probs": probs, "delay": (lo, hi),
                      "retry_after": int(arg.get("retry_after", 1)), "seed": arg.get("seed")}
        self.chaos_rng = random.Random(arg.get("seed"))
        self.chaos_counts = {m: 0 for m in CHAOS_MODES}

    def draw_chaos(self):
        """A random fault dict (as a queued one would be) or None."""
        if not self.chaos:
            return None
        x = self.chaos_rng.random()
        for m in CHAOS_MODES:
            p = self.chaos["probs"][m]
            if x < p:
                self.chaos_counts[m] += 1
                if m == "slow":
                    return {"mode": "slow", "delay": self.chaos_rng.uniform(*self.chaos["delay"])}
                if m == "drop_apply":
                    return {"mode": "drop", "apply": True}
                if m == "5xx":
                    return {"mode": "5xx", "status": self.chaos_rng.choice((500, 502, 503))}
                if m == "429":
                    return {"mode": "429", "retry_after": self.chaos["retry_after"]}
                return {"mode": m}
            x -= p
        return None

    def take_fault(self, method):
        """Pops one fault that applies to this method, or draws a random one, or None."""
        for f in self.faults:
            if f.get("method") and f["method"].upper() != method:
                continue
            f["count"] -= 1
            if f["count"] <= 0:
                self.faults.remove(f)
            return dict(f)
        return self.draw_chaos()

    def who(self, auth):
        """The name of the token in an Authorization header, or None."""
        parts = (auth or "").split(None, 1)
        if len(parts) != 2 or parts[0].lower() not in ("bearer", "token"):
            return None
        return self.tokens.get(parts[1].strip())

    def rate_headers(self):
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-used": str(self.limit - self.remaining),
            "x-ratelimit-reset": str(self.reset_at),
            "x-ratelimit-resource": "core",
        }

    def refill_if_due(self):
        now = time.time()
        if now >= self.reset_at:
            self.remaining = self.limit
            self.reset_at = int(now) + 3600


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "GitHub.com"
    sys_version = ""

    def version_string(self):
        return self.server_version

    # -- plumbing ---------------------------------------------------------

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("fakegithub: " + (fmt % args) + "\n")

    @property
    def st(self):
        return self.server.state

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                line = self.rfile.readline()
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(n)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def answer(self, status, obj=None, headers=None):
        body = b"" if obj is None else json.dumps(obj).encode()
        # Log an API request before its answer leaves: a client that reads
        # /_fake/requests right after its answer must find it there.
        entry = getattr(self, "_log_entry", None)
        if entry is not None:
            self._log_entry = None
            entry["status"] = status
            entry["end"] = time.time()
            # no st.lock here: answer() may run while api() holds it;
            # list.append is atomic, and readers copy the list
            self.st.log.append(entry)
        self.send_response(status)
        self.send_header("X-GitHub-Request-Id", "FAKE:%08X" % (id(self) & 0xFFFFFFFF))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if status != 204:
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 204:
            self.wfile.write(body)
        return status

    def error(self, status, message, headers=None, **extra):
        obj = {"message": message, "documentation_url": DOCS}
        obj.update(extra)
        return self.answer(status, obj, headers)

    def base_url(self):
        return "http://" + (self.headers.get("Host") or "%s:%d" % self.server.server_address[:2])

    def comment_json(self, c):
        base = self.base_url()
        owner_repo = c["repo"]
        node = base64.b64encode(("IC_%d" % c["id"]).encode()).decode().rstrip("=")
        return {
            "id": c["id"],
            "node_id": "IC_" + node,
            "url": "%s/repos/%s/issues/comments/%d" % (base, owner_repo, c["id"]),
            "html_url": "https://github.com/%s/issues/%d#issuecomment-%d"
                        % (owner_repo, c["issue"], c["id"]),
            "issue_url": "%s/repos/%s/issues/%d" % (base, owner_repo, c["issue"]),
            "body": c["body"],
            "user": {"login": self.st.login, "id": 1, "type": "User"},
            "author_association": "OWNER",
            "created_at": iso(c["created"]),
            "updated_at": iso(c["updated"]),
        }

    # -- dispatch ---------------------------------------------------------

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_DELETE(self):
        self.handle_any("DELETE")

    def do_PUT(self):
        self.handle_any("PUT")

    def handle_any(self, method):
        try:
            raw = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return
        url = urlsplit(self.path)
        if url.path.startswith("/_fake/"):
            self.control(method, url.path, raw)
            return
        with self.st.lock:
            who = self.st.who(self.headers.get("Authorization"))
        self._log_entry = {"method": method, "path": self.path, "time": time.time(),
                           "end": None, "status": 0, "fault": None, "who": who}
        entry = self._log_entry
        status, fault = self.api(method, url, raw)
        entry["fault"] = fault
        if self._log_entry is not None:   # dropped: no answer was sent
            self._log_entry = None
            entry["status"] = status
            entry["end"] = time.time()
            with self.st.lock:
                self.st.log.append(entry)

    # -- the GitHub API ---------------------------------------------------

    def api(self, method, url, raw):
        """Answers one API request; returns (status or 0 when dropped, fault mode or None)."""
        with self.st.lock:
            fault = self.st.take_fault(method)
            self.st.refill_if_due()
            rl = self.st.rate_headers()
        mode = fault and fault.get("mode")
        if getattr(self, "_log_entry", None) is not None:
            self._log_entry["fault"] = mode
        if mode == "slow":
            time.sleep(float(fault.get("delay", 2)))
        elif mode == "drop" and not fault.get("apply"):
            return self.drop(), mode
        elif mode == "5xx":
            st = int(fault.get("status") or (502 if fault.get("count", 1) % 2 else 503))
            msg = "Server Error" if st != 503 else "Service Unavailable"
            return self.answer(st, {"message": msg}, rl), mode
        elif mode in ("secondary403", "429"):
            hdr = dict(rl)
            ra = fault.get("retry_after")
            if mode == "429":
                hdr["Retry-After"] = str(int(ra if ra is not None else 60))
            elif ra is not None:
                hdr["Retry-After"] = str(int(ra))
            return self.error(403 if mode == "secondary403" else 429, MSG_SECONDARY, hdr,
                              documentation_url=DOCS + "/overview/rate-limits-for-the-rest-api"
                              "#about-secondary-rate-limits"), mode

        if mode == "drop":   # "apply": GitHub acts, then the answer is lost
            real, self.wfile = self.wfile, io.BytesIO()
            try:
                self.api_checked(method, url, raw)
            finally:
                self.wfile = real
            return self.drop(), mode
        return self.api_checked(method, url, raw), mode

    def drop(self):
        # Close without a byte of answer: the client sees an empty reply.
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return 0

    def api_checked(self, method, url, raw):
        """The request after fault injection: headers, rate limit, then the endpoint."""
        if not self.headers.get("User-Agent"):
            return self.error(403, MSG_NO_UA)
        auth = self.headers.get("Authorization")
        with self.st.lock:
            rl = self.st.rate_headers()
        if auth is None:
            return self.error(401, "Requires authentication", rl)
        parts = auth.split(None, 1)
        with self.st.lock:
            who = self.st.who(auth)
        if who is None:
            return self.error(401, "Bad credentials", rl)
        with self.st.lock:
            if self.st.remaining <= 0:
                return self.error(403, MSG_PRIMARY, self.st.rate_headers(),
                                  documentation_url=DOCS + "/overview/rate-limits-for-the-rest-api"
                                  "#about-the-primary-rate-limit")
            self.st.remaining -= 1
            rl = self.st.rate_headers()

        m = RE_ISSUE_COMMENTS.match(url.path)
        if m:
            repo, issue = m.group(1) + "/" + m.group(2), int(m.group(3))
            if repo.lower() in self.st.missing or issue < 1:
                return self.error(404, "Not Found", rl)
            if method == "POST":
                return self.create(repo, issue, raw, rl, who)
            if method == "GET":
                return self.list(repo, issue, url, rl)
            return self.error(404, "Not Found", rl)
        m = RE_COMMENT.match(url.path)
        if m:
            repo, cid = m.group(1) + "/" + m.group(2), int(m.group(3))
            with self.st.lock:
                c = self.st.comments.get(cid)
                if (c is None or c["repo"].lower() != repo.lower()
                        or repo.lower() in self.st.missing):
                    c = None
            if c is None or method not in ("GET", "PATCH", "DELETE"):
                return self.error(404, "Not Found", rl)
            if method == "GET":
                with self.st.lock:
                    obj = self.comment_json(c)
                return self.answer(200, obj, rl)
            if method == "DELETE":
                with self.st.lock:
                    self.st.comments.pop(cid, None)
                return self.answer(204, None, rl)
            return self.edit(c, raw, rl, who)
        return self.error(404, "Not Found", rl)

    def parse_body(self, raw, rl):
        """Returns (body string, None) or (None, status already answered)."""
        try:
            obj = json.loads(raw or b"null")
        except ValueError:
            return None, self.error(400, "Problems parsing JSON", rl)
        body = obj.get("body") if isinstance(obj, dict) else None
        if not isinstance(body, str) or body == "":
            return None, self.error(422, "Validation Failed", rl, errors=[
                {"resource": "IssueComment", "code": "missing_field", "field": "body"}])
        if len(body) > MAX_BODY:
            return None, self.error(422, "Validation Failed", rl, errors=[
                {"resource": "IssueComment", "code": "custom", "field": "body",
                 "message": "body is too long (maximum is %d characters)" % MAX_BODY}])
        return body, None

    def create(self, repo, issue, raw, rl, who):
        body, failed = self.parse_body(raw, rl)
        if failed:
            return failed
        now = time.time()
        with self.st.lock:
            cid = self.st.next_id
            self.st.next_id += 1
            c = {"id": cid, "repo": repo, "issue": issue, "body": body,
                 "created": now, "updated": now, "by": who, "edited_by": None}
            self.st.comments[cid] = c
            obj = self.comment_json(c)
        hdr = dict(rl)
        hdr["Location"] = obj["url"]
        return self.answer(201, obj, hdr)

    def edit(self, c, raw, rl, who):
        body, failed = self.parse_body(raw, rl)
        if failed:
            return failed
        with self.st.lock:
            c["body"] = body
            c["edited_by"] = who
            c["updated"] = time.time()
            obj = self.comment_json(c)
        return self.answer(200, obj, rl)

    def list(self, repo, issue, url, rl):
        q = parse_qs(url.query)

        def intarg(name, default):
            try:
                return int(q.get(name, [default])[0])
            except ValueError:
                return default
        per_page = min(max(intarg("per_page", 30), 1), 100)
        page = max(intarg("page", 1), 1)
        with self.st.lock:
            mine = sorted((c for c in self.st.comments.values()
                           if c["repo"].lower() == repo.lower() and c["issue"] == issue),
                          key=lambda c: c["id"])
            items = [self.comment_json(c) for c in mine[(page - 1) * per_page:page * per_page]]
        last = max((len(mine) + per_page - 1) // per_page, 1)
        hdr = dict(rl)

        def link(p):
            return '<%s%s?per_page=%d&page=%d>' % (self.base_url(), url.path, per_page, p)
        rels = []
        if page > 1:
            rels.append(link(min(page - 1, last)) + '; rel="prev"')
        if page < last:
            rels.append(link(page + 1) + '; rel="next"')
            rels.append(link(last) + '; rel="last"')
        if page > 1:
            rels.append(link(1) + '; rel="first"')
        if rels:
            hdr["Link"] = ", ".join(rels)
        return self.answer(200, items, hdr)

    # -- the control API --------------------------------------------------

    def control(self, method, path, raw):
        try:
            arg = json.loads(raw) if raw else {}
        except ValueError:
            self.answer(400, {"message": "Problems parsing JSON"})
            return
        st = self.st
        with st.lock:
            if method == "GET" and path == "/_fake/comments":
                out = []
                for c in sorted(st.comments.values(), key=lambda c: c["id"]):
                    o = self.comment_json(c)
                    o["repo"], o["issue"] = c["repo"], c["issue"]
                    o["by"], o["edited_by"] = c["by"], c["edited_by"]
                    out.append(o)
                self.answer(200, out)
            elif method == "GET" and path == "/_fake/requests":
                self.answer(200, list(st.log))
            elif method == "GET" and path == "/_fake/faults":
                self.answer(200, st.faults)
            elif method == "POST" and path == "/_fake/reset":
                st.reset()
                self.answer(200, {"ok": True})
            elif method == "POST" and path == "/_fake/faults":
                mode = arg.get("mode")
                if mode not in ("5xx", "secondary403", "429", "slow", "drop", "none"):
                    self.answer(400, {"message": "mode must be one of 5xx, secondary403, 429, "
                                                 "slow, drop, none"})
                    return
                if mode == "none":
                    st.faults = []
                else:
                    f = dict(arg)
                    f["count"] = int(arg.get("count", 1))
                    st.faults.append(f)
                self.answer(200, st.faults)
            elif method == "POST" and path == "/_fake/ratelimit":
                if "limit" in arg:
                    st.limit = int(arg["limit"])
                if "remaining" in arg:
                    st.remaining = int(arg["remaining"])
                if "reset_in" in arg:
                    st.reset_at = int(time.time() + float(arg["reset_in"]))
                self.answer(200, st.rate_headers())
            elif method == "POST" and path == "/_fake/tokens":
                toks = arg.get("tokens")
                if not isinstance(toks, dict) or not all(
                        isinstance(k, str) and k and isinstance(v, str) and v
                        for k, v in toks.items()):
                    self.answer(400, {"message": "tokens must map token strings to names"})
                    return
                st.tokens.update(toks)
                self.answer(200, sorted(set(st.tokens.values())))
            elif method == "GET" and path == "/_fake/tokens":
                self.answer(200, sorted(set(st.tokens.values())))
            elif method == "POST" and path == "/_fake/chaos":
                try:
                    st.set_chaos(arg if isinstance(arg, dict) else {})
                except (ValueError, TypeError) as e:
                    self.answer(400, {"message": "chaos: %s" % e})
                    return
                self.answer(200, {"on": st.chaos is not None})
            elif method == "GET" and path == "/_fake/chaos":
                self.answer(200, {"settings": st.chaos, "injected": st.chaos_counts})
            elif method == "POST" and path == "/_fake/missing":
                st.missing = {r.lower() for r in arg.get("repos", [])}
                self.answer(200, sorted(st.missing))
            else:
                self.answer(404, {"message": "Not Found"})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv=None):
    p = argparse.ArgumentParser(description="A stand-in for GitHub's issue-comment REST API.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--token", default="test-token", help="the token requests must carry")
    p.add_argument("--rate-limit", type=int, default=5000, help="requests per hour")
    p.add_argument("--missing-repo", action="append", default=[],
                   help="owner/repo that answers 404 (repeatable)")
    p.add_argument("--first-id", type=int, default=3000000001,
                   help="id of the first comment (GitHub's are beyond 2^31)")
    p.add_argument("--login", default="klua-bot")
    p.add_argument("-v", "--verbose", action="store_true", help="log requests on stderr")
    args = p.parse_args(argv)

    srv = Server((args.host, args.port), Handler)
    srv.state = State(args)
    srv.verbose = args.verbose
    print("PORT %d" % srv.server_address[1], flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        srv.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
