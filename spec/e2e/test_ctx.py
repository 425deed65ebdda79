"""The ctx's I/O through bin/klua against the real API server: ctx:http bounded by the
script's memory cap, its User-Agent, --secret (re-read when the file changes) kept out of
logs, Events, conditions and /metrics, and --allow-env as an allowlist.

A stand-in HTTP server runs in the test (a thread): /big streams a body of any size, /echo
records the headers it got. A probe script reconciles ConfigMaps labelled klua.dev/probe and
writes what it saw into data.result, so each check waits on that write, never on a sleep.
"""
import json
import os
import re
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import wait_for

PROBE = r'''
return {
  watch    = { apiVersion = "v1", kind = "ConfigMap" },
  selector = "klua.dev/probe=true",
  reconcile = function(ctx, cm)
    local d = cm.data or {}
    if d.result then return nil end
    local base = ctx:getenv("KLUA_STUB_URL")
    local result
    if d.action == "big" then
      local r, err = ctx:http{ url = base .. "/big?bytes=" .. d.bytes .. "&status=" .. (d.status or "200") }
      result = err and ("err " .. err.reason) or ("ok " .. #r.body)
    elseif d.action == "echo" then
      local body = d.body or ""
      if d.body_mib then  -- built in two halves: string.rep would hold twice the size at once
        local half = string.rep("y", math.tointeger(tonumber(d.body_mib)) * 1048576 // 2)
        body = half .. half
      end
      local r, err = ctx:http{ url = base .. "/echo", method = "POST", body = body }
      result = err and ("err " .. err.reason) or ("ok " .. r.status)
    elseif d.action == "kinds" then
      -- kinds this controller does not watch: resolved through discovery
      local ns, name = cm.metadata.namespace, cm.metadata.name .. "-s"
      local made, cerr = ctx:create{ apiVersion = "v1", kind = "Secret",
        metadata = { name = name, namespace = ns }, stringData = { a = "b" } }
      local got, gerr = ctx:get({ apiVersion = "v1", kind = "Secret" }, ns, name)
      local deps, lerr = ctx:list({ apiVersion = "apps/v1", kind = "Deployment" }, { namespace = ns })
      local ok, msg = pcall(ctx.get, ctx, { apiVersion = "nothing.klua.dev/v1", kind = "Thing" }, ns, "x")
      result = table.concat({ made and "created" or tostring(cerr),
        got and got.metadata.name or tostring(gerr), deps and ("deployments " .. #deps) or tostring(lerr),
        tostring(ok), (tostring(msg):gsub("^.-: ", "", 1)) }, " | ")
    elseif d.action == "env" then
      result = tostring(ctx:getenv(d.var))
    elseif d.action == "secret" then
      local key = ctx:secret("api_key")
      local r, err = ctx:http{ url = base .. "/echo", headers = { Authorization = "Bearer " .. key } }
      ctx.log.info("calling the stand-in with " .. key, { auth = "Bearer " .. key })
      ctx:event(cm, "Normal", "Called", "used key " .. key)
      if d.fail then error("the call failed with key " .. key) end
      result = err and ("err " .. err.reason) or ("sent " .. #key)
    end
    local _, err = ctx:patch(cm, { data = { result = result } })
    if err then error(tostring(err)) end
  end,
}
'''


class Stub:
    """The stand-in HTTP server; counts requests and keeps the headers of /echo calls."""

    def __init__(self):
        self.echoes = []
        self.big_sent = 0
        stub = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                u = urlsplit(self.path)
                if u.path == "/big":
                    q = parse_qs(u.query)
                    total = int(q["bytes"][0])
                    self.send_response(int(q.get("status", ["200"])[0]))
                    self.send_header("Content-Length", str(total))
                    self.end_headers()
                    chunk = b"x" * (1 << 20)
                    left = total
                    try:
                        while left > 0:
                            n = min(left, len(chunk))
                            self.wfile.write(chunk[:n])
                            left -= n
                            stub.big_sent += n
                    except (BrokenPipeError, ConnectionResetError):
                        pass   # klua gave up: what this test wants
                    self.close_connection = True
                    return
                self._echo()

            def do_POST(self):
                self._echo()

            def _echo(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                stub.echoes.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                    "body_len": len(body)})
                out = b"ok"
                self.send_response(200)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def stub():
    s = Stub()
    yield s
    s.stop()


def _scripts(tmp_path):
    d = tmp_path / "scripts"
    d.mkdir(exist_ok=True)
    (d / "probe.lua").write_text(PROBE)
    return d


def _probe(cluster, ns, name, **data):
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": name, "namespace": ns, "labels": {"klua.dev/probe": "true"}},
          "data": {k: str(v) for k, v in data.items()}}
    cluster.apply(cm)

    def result():
        got = cluster.get_json("configmap", name, "-n", ns)
        return (got.get("data") or {}).get("result")
    return wait_for(result, 90, what=f"the probe's result on {name}")


def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M)
    return int(m.group(1))


def _start(klua_factory, tmp_path, stub, ns, args=(), env=None):
    e = {"KLUA_STUB_URL": stub.url}
    e.update(env or {})
    k = klua_factory(_scripts(tmp_path), args=["--namespace", ns, *args], env=e).start()
    k.wait_log("caches synced")
    return k


def test_http_response_bounded_by_the_memory_cap(cluster, namespace, klua_factory, tmp_path,
                                                  stub):
    """A 512 MB answer with --lua-memory 64 is an error for the script (ResponseTooLarge),
    whatever its status, and klua's RSS stays far below the body; repeating it does not grow
    RSS (every buffer is freed on the error path, not at a later GC)."""
    # no quarantine: memory the sanitizer build frees goes back at once, so RSS shows leaks
    asan = (os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=0").lstrip(":")
    k = _start(klua_factory, tmp_path, stub, namespace, ["--lua-memory", "64"],
               env={"ASAN_OPTIONS": asan})
    base = _rss_kib(k.proc.pid)
    assert _probe(cluster, namespace, "big1", action="big", bytes=512 << 20) == \
        "err ResponseTooLarge"
    after_one = _rss_kib(k.proc.pid)
    assert _probe(cluster, namespace, "big-err", action="big", bytes=512 << 20,
                  status=500) == "err ResponseTooLarge"
    for i in range(6):
        assert _probe(cluster, namespace, f"big-again{i}", action="big",
                      bytes=256 << 20) == "err ResponseTooLarge"
    after_many = _rss_kib(k.proc.pid)
    # klua stopped reading near the cap, far from 512 MB
    # 8 answers of 256-512 MB: each read only up to about the cap (plus socket buffers)
    assert stub.big_sent < 8 * (128 << 20), stub.big_sent
    print(f"RSS KiB: start {base}, after one 512 MB answer {after_one}, after 7 more "
          f"{after_many}; bytes the stand-in sent {stub.big_sent}")
    # the sanitizer build's RSS: the body cap (64 MiB) plus shadow memory, never the body
    assert after_one - base < 400 * 1024, (base, after_one)
    assert after_many - after_one < 64 * 1024, (after_one, after_many)
    # a body that fits still arrives whole
    assert _probe(cluster, namespace, "small", action="big", bytes=3 << 20) == \
        f"ok {3 << 20}"


def test_http_request_body_bounded_and_user_agent(cluster, namespace, klua_factory, tmp_path,
                                                  stub):
    """ctx:http names klua and its version in User-Agent; a request whose body passes the
    script's cap is refused with RequestTooLarge instead of being copied into C memory."""
    k = _start(klua_factory, tmp_path, stub, namespace, ["--lua-memory", "16"])
    assert _probe(cluster, namespace, "ua", action="echo", body="hello") == "ok 200"
    ua = stub.echoes[-1]["headers"]["user-agent"]
    assert re.fullmatch(r"klua/\S+", ua), ua
    # 9 MiB as a Lua string fits the 16 MiB cap; its C copy on top does not
    assert _probe(cluster, namespace, "bigreq", action="echo", body_mib=9) == \
        "err RequestTooLarge"
    assert all(e["body_len"] < (9 << 20) for e in stub.echoes)
    # 3 MiB fits with its copy: sent whole
    assert _probe(cluster, namespace, "midreq", action="echo", body_mib=3) == "ok 200"
    assert stub.echoes[-1]["body_len"] == 3 << 20
    k.stop()


def test_kinds_outside_the_caches_resolve_through_discovery(cluster, namespace, klua_factory,
                                                          tmp_path, stub):
    """ctx calls on kinds the controller does not watch find them through the discovery
    service; a kind the server does not serve is a raised error naming it."""
    _start(klua_factory, tmp_path, stub, namespace)
    got = _probe(cluster, namespace, "k1", action="kinds")
    assert got == ("created | k1-s | deployments 0 | false | no resource for kind Thing in "
                   "nothing.klua.dev/v1 (is the CRD installed?)"), got


def test_allow_env_is_an_allowlist(cluster, namespace, klua_factory, tmp_path, stub):
    """Default: KLUA_* and GITHUB_API_URL only (GITHUB_PAT is not readable); --allow-env
    replaces the default; a refused name is logged once, naming the variable and the flag."""
    env = {"GITHUB_PAT": "pat-value-123", "GITHUB_API_URL": "http://gh.example",
           "KLUA_PROBE": "probe-value", "MYAPP_MODE": "fast"}
    k = _start(klua_factory, tmp_path, stub, namespace, env=env)
    assert _probe(cluster, namespace, "e1", action="env", var="GITHUB_PAT") == "nil"
    assert _probe(cluster, namespace, "e2", action="env", var="GITHUB_PAT") == "nil"
    assert _probe(cluster, namespace, "e3", action="env", var="GITHUB_API_URL") == \
        "http://gh.example"
    assert _probe(cluster, namespace, "e4", action="env", var="KLUA_PROBE") == "probe-value"
    assert _probe(cluster, namespace, "e5", action="env", var="MYAPP_MODE") == "nil"
    log = k.log()
    warns = [l for l in log.splitlines() if "GITHUB_PAT" in l]
    assert len(warns) == 1, warns
    assert "--allow-env" in warns[0] and "pat-value-123" not in log
    k.stop()

    k2 = _start(klua_factory, tmp_path, stub, namespace,
                ["--allow-env", "MYAPP_*", "--allow-env", "KLUA_STUB_URL"], env=env)
    assert _probe(cluster, namespace, "e6", action="env", var="MYAPP_MODE") == "fast"
    assert _probe(cluster, namespace, "e7", action="env", var="KLUA_PROBE") == "nil"
    k2.stop()


def _metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def test_secret_file_reread_and_never_written(cluster, namespace, klua_factory, tmp_path,
                                              stub):
    """--secret NAME=FILE: ctx:secret reads it; a changed file is read again; the value never
    appears in klua's log (even at -v 10 and when the script logs it), in Events, in the
    ReconcileError condition/Event, or in /metrics."""
    first, second = "sk-first-" + "a1b2c3d4e5", "sk-second-" + "f6g7h8i9j0"
    sfile = tmp_path / "api_key"
    sfile.write_text(first + "\n")
    k = _start(klua_factory, tmp_path, stub, namespace,
               ["--secret", f"api_key={sfile}", "-v", "10", "--metrics-addr", "127.0.0.1:0"])
    assert _probe(cluster, namespace, "s1", action="secret") == f"sent {len(first)}"
    assert stub.echoes[-1]["headers"]["authorization"] == "Bearer " + first

    # rotate: a new file swapped in (as a Secret volume does), then written in place
    tmp = tmp_path / "api_key.new"
    tmp.write_text(second)
    tmp.rename(sfile)
    assert _probe(cluster, namespace, "s2", action="secret") == f"sent {len(second)}"
    assert stub.echoes[-1]["headers"]["authorization"] == "Bearer " + second

    # an error whose message carries the secret: logged, recorded as an Event
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "s3", "namespace": namespace,
                                "labels": {"klua.dev/probe": "true"}},
                   "data": {"action": "secret", "fail": "yes"}})
    k.wait_log(r"reconcile failed.*s3")

    def events():
        ev = cluster.get_json("events.events.k8s.io", "-n", namespace)["items"]
        reasons = {e.get("reason") for e in ev}
        return ev if {"Called", "ReconcileError"} <= reasons else None
    ev = wait_for(events, 60, what="the Called and ReconcileError Events")
    port = re.search(r'ops server listening.*?:(\d+)', k.log()).group(1)
    text = k.log() + json.dumps(ev) + _metrics(port) + \
        json.dumps(cluster.get_json("configmaps", "-n", namespace))
    for value in (first, second):
        assert value not in text
    assert "[redacted]" in k.log()
    assert any("[redacted]" in (e.get("note") or "") for e in ev)


def test_secret_flag_errors(cluster, tmp_path):
    """Bad --secret values and unreadable files are refused up front, naming the secret and
    the file, never a value."""
    from conftest import run_klua
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "noop.lua").write_text(
        'return { watch = { apiVersion = "v1", kind = "ConfigMap" }, '
        'reconcile = function() end }\n')
    for argv, rc, want in (
        (["--secret", "novalue"], 2, "--secret wants NAME=FILE"),
        (["--secret", "=file"], 2, "--secret wants NAME=FILE"),
        (["--secret", f"k={tmp_path}/absent"], 1, f"secret k: {tmp_path}/absent"),
    ):
        p = run_klua("run", "--scripts", str(tmp_path / "s"), "--kubeconfig",
                     cluster.kubeconfig, *argv)
        assert p.returncode == rc and want in p.stderr, (argv, p.returncode, p.stderr)
