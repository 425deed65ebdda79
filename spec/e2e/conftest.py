"""Fixtures for klua's end-to-end tests.

Everything here runs against the real kube-apiserver + etcd that spec/run.sh
starts (KLUA_TEST_CLUSTER names its folder, made by spec/support/cluster.sh),
through the real bin/klua (the sanitizer build by default, KLUA_BIN), with
the stand-in GitHub from spec/support/fakegithub.py.
"""
import json
import os
import pathlib
import re
import signal
import subprocess
import time
import urllib.request
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
KLUA = os.environ.get("KLUA_BIN", str(ROOT / "build/asan/klua"))


def wait_for(pred, timeout=30.0, interval=0.1, what="condition"):
    """Poll pred() until it returns a truthy value; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Cluster:
    def __init__(self, d):
        self.dir = pathlib.Path(d)
        self.kubeconfig = str(self.dir / "kubeconfig")
        self.env = {}
        envfile = self.dir / "env"
        if envfile.exists():
            for line in envfile.read_text().splitlines():
                m = re.match(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
                if m:
                    self.env[m.group(1)] = m.group(2).strip("'\"")

    def kubectl(self, *args, input=None, check=True, kubeconfig=None):
        cmd = ["kubectl", "--kubeconfig", kubeconfig or self.kubeconfig, *args]
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=120)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed: {p.stderr.strip()}")
        return p

    def get_json(self, *args):
        return json.loads(self.kubectl("get", "-o", "json", *args).stdout)

    def apply(self, obj, namespace=None):
        args = ["apply", "-f", "-"]
        if namespace:
            args += ["-n", namespace]
        return self.kubectl(*args, input=json.dumps(obj))


@pytest.fixture(scope="session")
def cluster():
    d = os.environ.get("KLUA_TEST_CLUSTER")
    if not d or not pathlib.Path(d, "kubeconfig").exists():
        pytest.fail("KLUA_TEST_CLUSTER does not name a running control plane (run spec/run.sh)")
    return Cluster(d)


@pytest.fixture(scope="session")
def crds(cluster):
    cluster.kubectl("apply", "-f", str(ROOT / "crds"))
    cluster.kubectl("wait", "--for", "condition=established", "--timeout=60s",
                    "crd/comments.github.klua.dev")
    return cluster


@pytest.fixture
def namespace(cluster):
    ns = "e2e-" + uuid.uuid4().hex[:8]
    cluster.kubectl("create", "namespace", ns)
    yield ns
    cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


class GitHub:
    """The stand-in GitHub server, as a subprocess."""

    def __init__(self, tmp):
        self.token = "ghp_e2e" + uuid.uuid4().hex
        self.out = open(tmp / "github.out", "w+")
        self.proc = subprocess.Popen(
            ["python3", "-u", str(ROOT / "spec/support/fakegithub.py"), "--port", "0",
             "--token", self.token],
            stdout=self.out, stderr=open(tmp / "github.log", "w"))

        def port():
            self.out.seek(0)
            m = re.search(r"^PORT (\d+)", self.out.read(), re.M)
            return m and m.group(1)
        self.url = "http://127.0.0.1:" + wait_for(port, 10, what="stand-in GitHub to start")

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return json.loads(raw) if raw else None

    def comments(self):
        return self.call("GET", "/_fake/comments")

    def faults(self, **kw):
        return self.call("POST", "/_fake/faults", kw)

    def requests(self):
        return self.call("GET", "/_fake/requests")

    def missing(self, *repos):
        """Repositories that answer 404 from now on."""
        return self.call("POST", "/_fake/missing", {"repos": list(repos)})

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def github(tmp_path):
    g = GitHub(tmp_path)
    yield g
    g.stop()


class Klua:
    """One `klua run` process with its log captured to a file."""

    def __init__(self, cluster, tmp, scripts, github=None, args=(), env=None):
        self.cluster, self.tmp, self.scripts = cluster, tmp, str(scripts)
        self.github, self.args, self.extra_env = github, list(args), env or {}
        self.proc = None
        self.logs = []
        self.n = 0

    def start(self):
        self.n += 1
        log = self.tmp / f"klua-{self.n}.log"
        self.logs.append(log)
        env = dict(os.environ)
        env.pop("GITHUB_TOKEN", None)
        if self.github:
            env["GITHUB_TOKEN"] = self.github.token
            env["GITHUB_API_URL"] = self.github.url
        env.setdefault("KLUA_GITHUB_MIN_GAP", "0")
        env.update(self.extra_env)
        cmd = [KLUA, "run", "--scripts", self.scripts, "--kubeconfig", self.cluster.kubeconfig,
               *self.args]
        self.proc = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                     env=env)
        return self

    def log(self):
        return "".join(p.read_text(errors="replace") for p in self.logs)

    def wait_log(self, pattern, timeout=60):
        def seen():
            if self.proc.poll() is not None and not re.search(pattern, self.log()):
                raise AssertionError(f"klua exited ({self.proc.returncode}):\n{self.log()[-3000:]}")
            return re.search(pattern, self.log())
        return wait_for(seen, timeout, what=f"log line /{pattern}/")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def kill9(self):
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def klua_factory(cluster, tmp_path):
    started = []

    def make(scripts=ROOT / "lua", cluster=cluster, **kw):
        # cluster: another control plane, or a view of this one through a
        # proxy (a Cluster whose kubeconfig points elsewhere)
        k = Klua(cluster, tmp_path, scripts, **kw)
        started.append(k)
        return k
    yield make
    for k in started:
        rc = k.stop()
        log = k.log()
        # The sanitizer build reports leaks and UB at exit: a report fails the test.
        assert "ERROR: AddressSanitizer" not in log, log[-4000:]
        assert "ERROR: LeakSanitizer" not in log, log[-4000:]
        assert "runtime error:" not in log, log[-4000:]


def run_klua(*args, env=None, timeout=60):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([KLUA, *args], capture_output=True, text=True, timeout=timeout, env=e)


# --- Comments (github.klua.dev/v1): helpers for test_comment.py and test_resilience.py

COMMENTS = "comments.github.klua.dev"
REPO = "klua-e2e/playground"


def comment(name, message=None, repository=REPO, issue=1, policy=None):
    """A Comment manifest (a dict, for Cluster.apply or a List)."""
    spec = {"repository": repository, "issue": issue,
            "message": f"e2e message for {name}" if message is None else message}
    if policy:
        spec["deletionPolicy"] = policy
    return {"apiVersion": "github.klua.dev/v1", "kind": "Comment",
            "metadata": {"name": name}, "spec": spec}


def apply_list(cluster, namespace, objs):
    """kubectl apply of a v1 List: many objects in one command."""
    return cluster.kubectl("apply", "-n", namespace, "-f", "-",
                           input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))


def get_comments(cluster, namespace):
    """name -> Comment, as the API server has them now."""
    return {o["metadata"]["name"]: o
            for o in cluster.get_json(COMMENTS, "-n", namespace)["items"]}


def condition(obj, ctype="Delivered"):
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def is_delivered(obj):
    """Delivered=True for the object's current generation, with a comment id."""
    st = obj.get("status") or {}
    c = condition(obj)
    gen = obj["metadata"].get("generation")
    return bool(c and c.get("status") == "True" and st.get("commentID")
                and st.get("observedGeneration") == gen)


def has_marker(body, uid):
    """The body carries the resource's uid in a hidden (HTML comment) marker."""
    return re.search(r"<!--[^>]*" + re.escape(uid) + r"[^>]*-->", body or "") is not None


def wait_delivered(cluster, namespace, names, klua=None, timeout=60):
    """Waits until every named Comment is delivered for its generation; returns name -> obj."""
    names = set(names)

    def done():
        if klua and klua.proc.poll() is not None:
            raise AssertionError(f"klua exited ({klua.proc.returncode}):\n{klua.log()[-3000:]}")
        objs = get_comments(cluster, namespace)
        pending = sorted(n for n in names if n not in objs or not is_delivered(objs[n]))
        if pending:
            done.last = f"{len(pending)} not delivered, e.g. {pending[:3]}: " + json.dumps(
                [(objs.get(n) or {}).get("status") for n in pending[:2]])[:600]
            return None
        return objs
    done.last = ""
    try:
        return wait_for(done, timeout, interval=0.5, what=f"{len(names)} Comments delivered")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{done.last}") from None


def assert_exactly_once(github, objs):
    """Each Comment has exactly one comment on the stand-in (found by its uid
    marker), the one its status names, carrying its current message."""
    posted = github.comments()
    problems = []
    for name, o in sorted(objs.items()):
        uid = o["metadata"]["uid"]
        mine = [c for c in posted if has_marker(c["body"], uid)]
        if len(mine) != 1:
            problems.append(f"{name}: {len(mine)} comments carry its marker "
                            f"(ids {[c['id'] for c in mine]})")
            continue
        c = mine[0]
        if (o.get("status") or {}).get("commentID") != c["id"]:
            problems.append(f"{name}: status.commentID {o.get('status', {}).get('commentID')} "
                            f"but the comment with its marker is {c['id']}")
        if o["spec"]["message"] not in c["body"]:
            problems.append(f"{name}: comment {c['id']} does not carry the message "
                            f"{o['spec']['message']!r}: {c['body'][:200]!r}")
    assert not problems, (f"{len(problems)} problems:\n" + "\n".join(problems[:20])
                          + "\nthe stand-in's requests:\n" + request_log(github))
    return posted


def request_log(github, last=60):
    """The stand-in's request log as text (relative times), for failure messages."""
    reqs = github.requests()
    t0 = reqs[0]["time"] if reqs else 0
    return "\n".join(f"  {r['time'] - t0:7.3f} {r['method']:6} {r['status']} "
                     f"{r.get('fault') or '':6} {r['path']}" for r in reqs[-last:])


def start_comments(klua_factory, github, namespace, args=(), env=None, **kw):
    """klua on lua/ (the Comment controller), restricted to the test's namespace
    so that Comments left by other tests (namespaces never finish terminating
    without a controller-manager) stay out of the counts."""
    return klua_factory(github=github, args=["--namespace", namespace, *args],
                        env=env, **kw).start()
