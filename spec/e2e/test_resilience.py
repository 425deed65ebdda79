"""klua under failure, end to end: kill -9 and restart, watch connections cut,
the API server unreachable while etcd is compacted (410 Gone, relist), and a
reconciler that raises an error.

The watch tests run on a second control plane started here with the API
server's watch cache off (--watch-cache=false): with the cache on, the API
server answers a watch from an old resourceVersion out of its memory even
after etcd compacted it, so no 410 would ever reach klua. Without the cache a
rewatch from a compacted revision gets "410 Expired", as in a cluster where
the watch cache's window has moved on.
"""
import datetime
import json
import os
import random
import re
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

from conftest import (COMMENTS, ROOT, Cluster, apply_list, assert_exactly_once, comment,
                      get_comments, is_delivered, start_comments, wait_delivered, wait_for)

CLUSTER_SH = str(ROOT / "spec/support/cluster.sh")
SCRIPTS = ROOT / "spec/e2e/scripts"


# --- kill -9 -----------------------------------------------------------------

def test_kill9_while_creating_loses_and_duplicates_nothing(crds, namespace, github, klua_factory):
    seed = int(os.environ.get("KLUA_E2E_SEED") or time.time())
    rnd = random.Random(seed)
    print(f"seed {seed} (KLUA_E2E_SEED reproduces the kill moments)")
    # A small gap spreads the 50 posts over a few seconds, so kills land mid-work.
    k = start_comments(klua_factory, github, namespace, env={"KLUA_GITHUB_MIN_GAP": "0.03"})
    names = [f"crash-{i:02d}" for i in range(50)]
    errors = []

    def create():
        try:
            for i in range(0, len(names), 5):
                apply_list(crds, namespace, [comment(n) for n in names[i:i + 5]])
                time.sleep(rnd.uniform(0.1, 0.4))
        except Exception as e:  # reported by the main thread
            errors.append(e)
    t = threading.Thread(target=create)
    t.start()
    kills = []
    try:
        for _ in range(4):
            # kill while posting: after a POST that this klua sent, a random moment later
            seen = len([r for r in github.requests() if r["method"] == "POST"])
            wait_for(lambda: len([r for r in github.requests() if r["method"] == "POST"]) > seen
                     or len(github.comments()) >= len(names), 60, 0.05, "klua to post")
            time.sleep(rnd.uniform(0, 0.4))
            k.kill9()
            kills.append(len(github.comments()))
            k.start()
    finally:
        t.join()
    assert not errors, errors
    print(f"comments on the stand-in at each kill: {kills}")
    objs = wait_delivered(crds, namespace, names, k, timeout=120)
    posted = assert_exactly_once(github, objs)
    assert len(posted) == len(names)


# --- a reconcile error ----------------------------------------------------------

def test_reconcile_error_records_a_warning_event(crds, namespace, klua_factory):
    script = SCRIPTS / "failing/boom.lua"
    line = next(i for i, text in enumerate(script.read_text().splitlines(), 1)
                if "E2E-ERROR-LINE" in text)
    where = f"boom.lua:{line}"
    k = klua_factory(scripts=SCRIPTS / "failing", args=["--namespace", namespace]).start()
    crds.apply({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "boom", "labels": {"klua-e2e": "boom"}},
                "data": {"fail": "yes"}}, namespace)

    def warning():
        evs = crds.get_json("events.v1.events.k8s.io", "-n", namespace)["items"]
        return [e for e in evs if e.get("type") == "Warning"
                and (e.get("regarding") or {}).get("name") == "boom"]
    evs = wait_for(warning, 60, 0.5, "a Warning Event on ConfigMap boom")
    ev = evs[0]
    assert ev["regarding"].get("kind") == "ConfigMap", ev
    assert where in ev.get("note", ""), ev
    assert ev["reason"] == "ReconcileError", ev
    k.wait_log(re.escape(where), 10)

    # The key backs off (5 ms doubling): measured with klua's own log time
    # stamps once nine failures are in, not by counting lines over a sleep.
    # Only lower bounds, at half the backoff: a delay counts from the loop's
    # clock, cached per iteration, so a retry may come a little early by the
    # work done before the failure in that iteration; a loaded machine only
    # makes gaps longer. A hot loop or a backoff that does not grow fails.
    def failures():
        lines = [l for l in k.log().splitlines() if where in l]
        return len(lines) >= 9 and lines
    lines = wait_for(failures, 60, 0.1, "nine failed reconciles of the key")[:9]
    stamps = [datetime.datetime.fromisoformat(l.split(" ", 1)[0].replace("Z", "+00:00"))
              for l in lines]
    gaps = [(b - a).total_seconds() * 1000 for a, b in zip(stamps, stamps[1:])]
    print(f"gaps between the first nine failures (ms): {gaps}")
    why = f"gaps {gaps}: the failing key is not backing off\n" + "\n".join(lines)
    for i in range(4, 8):                      # backoff 80, 160, 320, 640 ms
        assert gaps[i] >= 5 * 2 ** i / 2, why
    assert sum(gaps) >= 5 * (2 ** 8 - 1) / 2, why   # 1,275 ms of backoff in all
    assert k.proc.poll() is None, "a reconcile error must not stop klua"


# --- watch cut and 410 relist -------------------------------------------------------

class CutProxy:
    """spec/support/cutproxy.py as a subprocess."""

    def __init__(self, tmp, port):
        self.out = open(tmp / "cutproxy.out", "w+")
        self.proc = subprocess.Popen(
            ["python3", "-u", str(ROOT / "spec/support/cutproxy.py"), "--target", f"127.0.0.1:{port}"],
            stdout=self.out, stderr=subprocess.STDOUT)

        def ports():
            self.out.seek(0)
            text = self.out.read()
            p, c = re.search(r"^PORT (\d+)", text, re.M), re.search(r"^CONTROL (\d+)", text, re.M)
            return p and c and (int(p.group(1)), int(c.group(1)))
        self.port, self.control = wait_for(ports, 30, 0.05, "cutproxy to start")

    def call(self, method, path):
        req = urllib.request.Request(f"http://127.0.0.1:{self.control}{path}", method=method,
                                     data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def cut(self):
        return self.call("POST", "/cut")["cut"]

    def block(self):
        return self.call("POST", "/block")["cut"]

    def unblock(self):
        self.call("POST", "/unblock")

    def stats(self):
        return self.call("GET", "/stats")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def nocache_cluster(cluster):
    """A second control plane beside KLUA_TEST_CLUSTER, watch cache off."""
    d = cluster.dir.parent / (cluster.dir.name + "-nocache")
    env = dict(os.environ, KLUA_APISERVER_EXTRA_ARGS="--watch-cache=false")
    try:
        p = subprocess.run(["sh", CLUSTER_SH, "up", str(d)], env=env, capture_output=True,
                           text=True, timeout=180)
        if p.returncode != 0:
            pytest.fail(f"could not start a control plane without watch cache: {p.stderr[-2000:]}")
        c = Cluster(d)
        c.kubectl("apply", "-f", str(ROOT / "crds"))
        c.kubectl("wait", "--for", "condition=established", "--timeout=60s",
                  "crd/comments.github.klua.dev")
        yield c
    finally:
        subprocess.run(["sh", CLUSTER_SH, "down", str(d)], capture_output=True, timeout=60)


def _ssl_context(c):
    ctx = ssl.create_default_context(cafile=c.env["KLUA_CA_FILE"])
    ctx.load_cert_chain(c.env["KLUA_CLIENT_CERT"], c.env["KLUA_CLIENT_KEY"])
    return ctx


def _list_rv(c, namespace):
    """The resourceVersion of a LIST of Comments (kubectl get does not show it)."""
    url = f"{c.env['KLUA_APISERVER_URL']}/apis/github.klua.dev/v1/namespaces/{namespace}/comments"
    with urllib.request.urlopen(url, context=_ssl_context(c), timeout=10) as r:
        return json.loads(r.read())["metadata"]["resourceVersion"]


def _watch_answer(c, namespace, rv):
    """The first thing a watch of Comments from rv gets: an event type, or an HTTP code."""
    url = (f"{c.env['KLUA_APISERVER_URL']}/apis/github.klua.dev/v1/namespaces/{namespace}"
           f"/comments?watch=1&resourceVersion={rv}&timeoutSeconds=2")
    try:
        with urllib.request.urlopen(url, context=_ssl_context(c), timeout=10) as r:
            line = r.readline()
    except urllib.error.HTTPError as e:
        return e.code
    if not line:
        return None
    ev = json.loads(line)
    if ev["type"] == "ERROR":
        return ev["object"].get("code")
    return ev["type"]


def _klua_relists(c):
    """Count klua's LISTs of Comments in the audit log (or streaming lists);
    the test's own kubectl and urllib requests are not klua's."""
    n = 0
    with open(c.env["KLUA_AUDIT_LOG"]) as f:
        for line in f:
            if '"comments"' not in line:
                continue
            a = json.loads(line)
            if a.get("userAgent", "").startswith(("kubectl", "Python-urllib")):
                continue
            if (a.get("objectRef") or {}).get("resource") != "comments":
                continue
            # a streaming list is open until its watch ends: counted when it starts
            if ((a.get("verb") == "list" and a.get("stage") == "ResponseComplete")
                    or (a.get("verb") == "watch" and a.get("stage") == "ResponseStarted"
                        and "sendInitialEvents=true" in a.get("requestURI", ""))):
                n += 1
    return n


def _wait_state(c, namespace, expect, gone, klua, timeout=90):
    """Every Comment in expect (name -> message) delivered with that message,
    every name in gone deleted."""
    def ok():
        if klua.proc.poll() is not None:
            raise AssertionError(f"klua exited ({klua.proc.returncode}):\n{klua.log()[-3000:]}")
        objs = get_comments(c, namespace)
        bad = [n for n, msg in expect.items()
               if n not in objs or objs[n]["spec"]["message"] != msg or not is_delivered(objs[n])]
        bad += [n for n in gone if n in objs]
        ok.last = bad
        return not bad and objs
    ok.last = None
    try:
        return wait_for(ok, timeout, 0.5, "every change applied")
    except AssertionError as e:
        raise AssertionError(f"{e}; not applied: {ok.last}") from None


def test_watch_cut_and_410_relist_lose_nothing(nocache_cluster, tmp_path, github, klua_factory):
    c = nocache_cluster
    ns = "e2e-cut-" + uuid.uuid4().hex[:6]
    c.kubectl("create", "namespace", ns)
    proxy = CutProxy(tmp_path, c.env["KLUA_APISERVER_PORT"])
    try:
        via_proxy = Cluster(c.dir)
        via_proxy.kubeconfig = str(tmp_path / "kubeconfig-proxy")
        text = (c.dir / "kubeconfig").read_text()
        (tmp_path / "kubeconfig-proxy").write_text(
            re.sub(r"server: https://127\.0\.0\.1:\d+", f"server: https://127.0.0.1:{proxy.port}", text))
        k = klua_factory(cluster=via_proxy, github=github, args=["--namespace", ns]).start()

        expect = {f"a-{i}": f"a-{i} first" for i in range(5)}
        apply_list(c, ns, [comment(n, m) for n, m in expect.items()])  # Retain by default
        wait_delivered(c, ns, expect, k)
        assert proxy.stats()["active"] >= 1, "klua does not talk through the proxy"

        # 1. every connection cut (the watch with it); klua reconnects at once and
        #    rewatches from where it was. Changes just after the cut must arrive.
        assert proxy.cut() >= 1
        for n in ("a-0", "a-1"):
            expect[n] = f"{n} edited after a cut"
        for i in range(3):
            expect[f"b-{i}"] = f"b-{i} created after a cut"
        apply_list(c, ns, [comment(n, m) for n, m in expect.items()])
        _wait_state(c, ns, expect, [], k)

        # 2. the API server unreachable; meanwhile Comments are created, edited and
        #    deleted, and etcd is compacted past klua's last resourceVersion: its
        #    rewatch gets 410 Gone and only a relist can bring it up to date.
        rv = _list_rv(c, ns)
        proxy.block()
        for n in ("a-2", "a-3", "b-0"):
            expect[n] = f"{n} edited while cut off"
        for i in range(3):
            expect[f"c-{i}"] = f"c-{i} created while cut off"
        apply_list(c, ns, [comment(n, m) for n, m in expect.items()])
        del expect["a-4"]
        c.kubectl("-n", ns, "delete", COMMENTS, "a-4", "--wait=false")
        p = subprocess.run(["sh", CLUSTER_SH, "compact", str(c.dir)], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 0, f"etcd compaction failed: {p.stderr}"
        assert _watch_answer(c, ns, rv) == 410, "a watch from before the compaction should get 410"
        relists = _klua_relists(c)
        # klua retries against the blocked proxy a few times: counted, not slept
        refused = proxy.stats()["refused"]
        wait_for(lambda: proxy.stats()["refused"] >= refused + 2, 60, 0.1,
                 "klua to try the blocked API server twice more")
        proxy.unblock()
        _wait_state(c, ns, expect, ["a-4"], k)
        assert _klua_relists(c) > relists, "klua did not list Comments again after the 410"

        # 3. one more cut after the relist: the new watch works as well
        proxy.cut()
        expect["c-0"] = "c-0 edited after the relist"
        apply_list(c, ns, [comment("c-0", expect["c-0"])])
        objs = _wait_state(c, ns, expect, [], k)
        posted = assert_exactly_once(github, objs)
        # a-4 was Retain: its GitHub comment stays, and it is the only extra one
        assert len(posted) == len(expect) + 1
    finally:
        proxy.stop()
        c.kubectl("delete", "namespace", ns, "--wait=false", check=False)
