"""Hostile input through bin/klua against the real API server.

- A custom resource nested deeper than klua's JSON limit (a CRD with
  x-kubernetes-preserve-unknown-fields lets anyone who may create it do so;
  its managedFields mirror the nesting) must cost that object only: the LIST
  at start-up and the watch afterwards go on, every other object is
  reconciled, /readyz answers 200, the skip is counted and logged by name.
- An exec credential plugin that leaves a grandchild holding its stdout must
  not stall klua until the plugin timeout, and no grandchild may survive.
"""
import json
import os
import pathlib
import re
import signal
import stat
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import KLUA, ROOT, wait_for

GROUP = "hostile.klua.dev"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": f"deeps.{GROUP}"},
    "spec": {
        "group": GROUP, "scope": "Namespaced",
        "names": {"plural": "deeps", "singular": "deep", "kind": "Deep", "listKind": "DeepList"},
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object",
                                           "x-kubernetes-preserve-unknown-fields": True}},
        }],
    },
}

# Logs every object it reconciles; nothing else.
SCRIPT = """
return {
  watch = { apiVersion = "hostile.klua.dev/v1", kind = "Deep" },
  reconcile = function(ctx, obj)
    ctx.log.info("reconciled deep", { name = obj.metadata.name })
  end,
}
"""


def nested(depth):
    """{"a":{"a":...1...}} with `depth` maps, built without recursion."""
    return "{\"a\":" * depth + "1" + "}" * depth


def deep_manifest(name, depth=197):
    # the spec alone stays under klua's 200 levels; managedFields.fieldsV1
    # mirrors it a few levels further down and goes past
    return ('{"apiVersion":"%s/v1","kind":"Deep","metadata":{"name":"%s"},"spec":%s}'
            % (GROUP, name, nested(depth)))


def plain_manifest(name):
    return json.dumps({"apiVersion": f"{GROUP}/v1", "kind": "Deep",
                       "metadata": {"name": name}, "spec": {"n": 1}})


@pytest.fixture(scope="module")
def deep_crd(cluster):
    cluster.kubectl("apply", "-f", "-", input=json.dumps(CRD))
    cluster.kubectl("wait", "--for", "condition=established", "--timeout=60s",
                    f"crd/deeps.{GROUP}")
    return cluster


def ops_url(k):
    m = k.wait_log(r"ops server listening addr=(\S+)")
    return "http://" + m.group(1).replace("0.0.0.0", "127.0.0.1")


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def skipped_metric(url):
    _, text = http_get(url + "/metrics")
    m = re.search(r'^klua_informer_objects_skipped_total\{resource="%s/v1/deeps"\} (\S+)$'
                  % re.escape(GROUP), text, re.M)
    return float(m.group(1)) if m else None


def start_klua(klua_factory, tmp_path, namespace):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "deep.lua").write_text(SCRIPT)
    k = klua_factory(scripts, args=["--namespace", namespace,
                                    "--metrics-addr", "127.0.0.1:0"]).start()
    return k, ops_url(k)


def reconciled(k, name):
    return len(re.findall(r"reconciled deep .*name=%s( |$)" % re.escape(name), k.log(), re.M))


def check_healthy_after_skips(k, url, n):
    wait_for(lambda: (skipped_metric(url) or 0) >= n, 30, what=f"{n} skips counted")
    assert skipped_metric(url) == n  # each deep object once
    assert http_get(url + "/readyz")[0] == 200
    assert http_get(url + "/healthz")[0] == 200
    assert not re.search(r"reconciled deep .*name=deep-", k.log())
    # one warning per skipped object, not a failing list or stream
    assert "watch or list failed" not in k.log(), k.log()[-3000:]
    assert k.proc.poll() is None


def test_deep_object_in_the_startup_list_costs_that_object_only(deep_crd, namespace,
                                                                 klua_factory, tmp_path):
    cluster = deep_crd
    create = lambda text: cluster.kubectl("create", "-n", namespace, "-f", "-", input=text)
    create(plain_manifest("plain-a"))
    create(deep_manifest("deep-before"))
    create(plain_manifest("plain-b"))
    # the API server keeps it, with managedFields mirroring the nesting
    got = cluster.kubectl("get", "-n", namespace, "deeps", "deep-before", "-o", "json",
                          "--show-managed-fields").stdout
    assert '"managedFields"' in got

    k, url = start_klua(klua_factory, tmp_path, namespace)
    wait_for(lambda: reconciled(k, "plain-a") and reconciled(k, "plain-b"), 60,
             what="the objects beside the deep one reconciled")
    wait_for(lambda: http_get(url + "/readyz")[0] == 200, 30, what="/readyz 200")
    k.wait_log(r"skipping an object that cannot be decoded.* object=%s/deep-before"
               % re.escape(namespace))
    # the watch that follows the list works
    create(plain_manifest("plain-c"))
    wait_for(lambda: reconciled(k, "plain-c"), 60, what="plain-c reconciled")
    check_healthy_after_skips(k, url, 1)


def test_deep_object_in_the_watch_costs_that_object_only(deep_crd, namespace, klua_factory,
                                                         tmp_path):
    cluster = deep_crd
    create = lambda text: cluster.kubectl("create", "-n", namespace, "-f", "-", input=text)
    create(plain_manifest("plain-a"))
    k, url = start_klua(klua_factory, tmp_path, namespace)
    wait_for(lambda: reconciled(k, "plain-a"), 60, what="plain-a reconciled")

    create(deep_manifest("deep-during"))
    create(plain_manifest("plain-b"))
    wait_for(lambda: reconciled(k, "plain-b"), 60, what="plain-b, created after the deep one")
    k.wait_log(r"skipping an object that cannot be decoded.* object=%s/deep-during"
               % re.escape(namespace))
    # the same stream goes on: a change to an older object arrives too
    cluster.kubectl("patch", "-n", namespace, "deeps", "plain-a", "--type", "merge",
                    "-p", '{"spec":{"n":2}}')
    wait_for(lambda: reconciled(k, "plain-a") >= 2, 60, what="plain-a reconciled after its change")
    # a deleted deep object is no trouble either
    cluster.kubectl("delete", "-n", namespace, "deeps", "deep-during")
    create(plain_manifest("plain-c"))
    wait_for(lambda: reconciled(k, "plain-c"), 60, what="plain-c reconciled")
    check_healthy_after_skips(k, url, 2)  # its ADDED and its DELETED


# ---- credentials -------------------------------------------------------------

FIXTURES = ROOT / "spec/support/execplugin-fixtures"


def kubeconfig_with(cluster, tmp_path, user_yaml):
    """A kubeconfig for the test cluster whose user is user_yaml (indented by 4)."""
    text = pathlib.Path(cluster.kubeconfig).read_text()
    server = re.search(r"server: (\S+)", text).group(1)
    ca = re.search(r"certificate-authority-data: (\S+)", text).group(1)
    kc = tmp_path / "kubeconfig"
    kc.write_text(f"""apiVersion: v1
kind: Config
current-context: x
clusters:
- name: x
  cluster: {{server: "{server}", certificate-authority-data: {ca}}}
users:
- name: x
  user:
{user_yaml}
contexts:
- name: x
  context: {{cluster: x, user: x}}
""")
    return str(kc)


def server_version(kc):
    t0 = time.monotonic()
    p = subprocess.run([KLUA, "server-version", "--kubeconfig", kc], capture_output=True,
                       text=True, timeout=120)
    return p, time.monotonic() - t0


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_exec_plugin_grandchild_does_not_stall_klua(cluster, tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    kc = kubeconfig_with(cluster, tmp_path, f"""    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: {FIXTURES / "grandchild.sh"}
      env:
      - {{name: FIXTURE_OUT, value: "{pidfile}"}}
      - {{name: FIXTURE_TOKEN_FILE, value: "{cluster.dir / 'admin.token'}"}}""")
    p, took = server_version(kc)
    pid = int(pidfile.read_text())
    try:
        # before the fix this waited for EOF on stdout for the whole timeout, then
        # failed ("no answer ... killed"): a credential at all is the behaviour
        assert p.returncode == 0, p.stderr
        print(f"klua server-version with a plugin that forks a grandchild: {took:.2f} s")
        # the plugin's process group was killed: the grandchild is gone
        wait_for(lambda: not alive(pid), 10, what=f"grandchild {pid} gone")
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


BAD_TOKEN = "s3cr3t-part\r\nX-Injected: yes"


def refused(p, where):
    assert p.returncode != 0
    err = p.stderr
    assert where in err, err
    assert "line break (CR or LF)" in err, err
    assert "s3cr3t" not in err and "fixture-token" not in err and "X-Injected" not in err, err


def test_token_with_crlf_in_kubeconfig_is_refused(cluster, tmp_path):
    kc = kubeconfig_with(cluster, tmp_path, '    token: "s3cr3t-part\\r\\nX-Injected: yes"')
    p, _ = server_version(kc)
    refused(p, 'user "x" in kubeconfig %s: token' % kc)


def test_token_with_crlf_in_token_file_is_refused(cluster, tmp_path):
    tf = tmp_path / "token"
    tf.write_text(BAD_TOKEN + "\n")  # the trailing newline alone is fine
    kc = kubeconfig_with(cluster, tmp_path, f"    tokenFile: {tf}")
    p, _ = server_version(kc)
    refused(p, f"token file {tf}")
    # and a clean one works, trailing newline and all
    tf.write_text((cluster.dir / "admin.token").read_text().strip() + "\n")
    p, _ = server_version(kc)
    assert p.returncode == 0, p.stderr


def test_token_with_crlf_from_exec_plugin_is_refused(cluster, tmp_path):
    kc = kubeconfig_with(cluster, tmp_path, f"""    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: {FIXTURES / "crlf-token.sh"}""")
    p, _ = server_version(kc)
    refused(p, f"exec plugin {FIXTURES / 'crlf-token.sh'} returned invalid ExecCredential: "
               "status.token")
