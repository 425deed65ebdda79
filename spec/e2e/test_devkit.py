"""The Lua developer kit (issue 11): `klua types`, `klua check --types`,
`klua init`, and the Alert and App examples, against the real API server."""
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request

import pytest

from conftest import ROOT, run_klua, wait_for

EXAMPLE_CRDS = [ROOT / "crds", ROOT / "examples/alert/crd.yaml", ROOT / "examples/app/crd.yaml"]


def tree(d):
    """relative path -> bytes of every file under d."""
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def crd_args():
    args = []
    for p in EXAMPLE_CRDS:
        args += ["--crds", str(p)]
    return args


@pytest.fixture(scope="module")
def example_crds(cluster):
    for p in EXAMPLE_CRDS:
        cluster.kubectl("apply", "-f", str(p))
    cluster.kubectl("wait", "--for", "condition=established", "--timeout=60s",
                    "crd/comments.github.klua.dev", "crd/alerts.pager.klua.dev",
                    "crd/apps.platform.klua.dev")
    # Established is not published: the API server adds a CRD's OpenAPI v3
    # document a moment later, and `klua types --from-cluster` reads those.
    def published():
        paths = json.loads(cluster.kubectl("get", "--raw", "/openapi/v3").stdout)["paths"]
        return all(f"apis/{g}/v1" in paths
                   for g in ("github.klua.dev", "pager.klua.dev", "platform.klua.dev"))
    wait_for(published, 60, what="the example CRDs' OpenAPI v3 documents")
    return cluster


@pytest.fixture(scope="module")
def cluster_types(example_crds, tmp_path_factory):
    """Types for the example CRDs (files) and every kind the cluster serves."""
    out = tmp_path_factory.mktemp("types")
    p = run_klua("types", *crd_args(), "--from-cluster", "--kubeconfig", example_crds.kubeconfig,
                 "-o", str(out))
    assert p.returncode == 0, p.stderr
    return out


# --- klua types ---------------------------------------------------------------

def test_types_from_crd_files_are_classes_with_fields_enums_and_required(tmp_path):
    p = run_klua("types", "--crds", str(ROOT / "crds"), "-o", str(tmp_path / "a"))
    assert p.returncode == 0, p.stderr
    assert re.match(r"types: wrote 2 files to \S+ in \d+ ms$", p.stdout.strip()), p.stdout
    files = tree(tmp_path / "a")
    assert sorted(files) == ["github.klua.dev.lua", "kinds.lua"]
    g = files["github.klua.dev.lua"].decode()
    assert "---@class github.klua.dev.v1.Comment: klua.Object\n" in g
    assert "---@field spec github.klua.dev.v1.Comment.spec\n" in g          # required
    assert "---@field status? github.klua.dev.v1.Comment.status\n" in g     # optional
    assert ('---@field deletionPolicy? "Retain"|"Delete" # What happens to the GitHub comment '
            'when this Comment is deleted.\n') in g                           # enum + description
    assert "---@field issue integer # The issue or pull request number.\n" in g
    assert "---@field conditions? github.klua.dev.v1.Comment.status.conditions.item[]" in g
    assert '---@field status "True"|"False"|"Unknown"\n' in g
    k = files["kinds.lua"].decode()
    assert ("---@class klua.ref.github.klua.dev.v1.Comment: klua.Ref<github.klua.dev.v1.Comment>\n"
            '---@field apiVersion "github.klua.dev/v1"\n---@field kind "Comment"\n') in k
    assert ("---@field reconcile fun(ctx: klua.Context, obj: github.klua.dev.v1.Comment): "
            "klua.Result|nil\n") in k


def test_types_are_deterministic(tmp_path):
    for d in ("a", "b"):
        p = run_klua("types", *crd_args(), "-o", str(tmp_path / d))
        assert p.returncode == 0, p.stderr
    a, b = tree(tmp_path / "a"), tree(tmp_path / "b")
    assert a == b and len(a) == 4
    # fewer schemas into the same folder: what it wrote before and no longer
    # writes is gone; a file it did not write stays
    (tmp_path / "a" / "mine.lua").write_text("-- mine\n")
    p = run_klua("types", "--crds", str(ROOT / "crds"), "-o", str(tmp_path / "a"))
    assert p.returncode == 0 and "(removed 2 it had written before)" in p.stdout, p.stdout
    assert sorted(tree(tmp_path / "a")) == ["github.klua.dev.lua", "kinds.lua", "mine.lua"]


def test_types_bad_input_is_an_error_naming_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: CustomResourceDefinition\nspec: [unclosed\n")
    p = run_klua("types", "--crds", str(bad), "-o", str(tmp_path / "out"))
    assert p.returncode == 1
    assert p.stderr.startswith(f"error: {bad}:"), p.stderr
    none = tmp_path / "cm.yaml"
    none.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")
    p = run_klua("types", "--crds", str(none), "-o", str(tmp_path / "out"))
    assert p.returncode == 1 and f"no CustomResourceDefinition in {none}" in p.stderr
    assert run_klua("types", "-o", str(tmp_path / "out")).returncode == 2


def test_types_from_cluster_covers_crds_and_built_in_kinds(example_crds, tmp_path):
    took = []
    for d in ("a", "b"):
        t0 = time.monotonic()
        p = run_klua("types", "--from-cluster", "--kubeconfig", example_crds.kubeconfig,
                     "-o", str(tmp_path / d))
        took.append(time.monotonic() - t0)
        assert p.returncode == 0, p.stderr
    a = tree(tmp_path / "a")
    assert a == tree(tmp_path / "b")
    apps = a["apps.lua"].decode()
    assert "---@class apps.v1.Deployment: klua.Object\n" in apps
    assert "---@field spec k8s.apps.v1.DeploymentSpec" in apps
    assert "---@class pager.klua.dev.v1.Alert: klua.Object\n" in a["pager.klua.dev.lua"].decode()
    assert "---@class core.v1.ConfigMap: klua.Object\n" in a["core.lua"].decode()
    assert "---@field replicas? integer" in a["k8s.lua"].decode()
    assert 'klua.ref.apps.v1.Deployment: klua.Ref<apps.v1.Deployment>' in a["kinds.lua"].decode()
    print(f"klua types --from-cluster: {min(took) * 1000:.0f} ms")


# --- klua check --types -------------------------------------------------------

BAD_SCRIPT = """\
---@type klua.Controller.github.klua.dev.v1.Comment
local controller = {
  watch = { apiVersion = "github.klua.dev/v1", kind = "Comment" },
  reconcile = function(ctx, obj)
    local m = obj.spec.mesage
    obj.spec.message = 42
    ctx.log.info("seen", { m = m })
    return nil
  end,
}

---@param spec github.klua.dev.v1.Comment.spec
local function describe_spec(spec) return spec.repository end
describe_spec({ repository = "o/r", issue = "7", message = "hi" })
return controller
"""


def test_check_types_reports_a_typo_and_a_wrong_type_with_file_and_line(tmp_path):
    types = tmp_path / "types"
    assert run_klua("types", "--crds", str(ROOT / "crds"), "-o", str(types)).returncode == 0
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "bad.lua").write_text(BAD_SCRIPT)
    # without --types: it loads, so plain klua check passes
    assert run_klua("check", str(scripts)).returncode == 0
    p = run_klua("check", "--types", str(types), str(scripts))
    assert p.returncode == 1, (p.stdout, p.stderr)
    bad = scripts / "bad.lua"
    assert f"error: {bad}:5:24: Undefined field `mesage`." in p.stderr, p.stderr
    assert f"error: {bad}:6:5: Cannot assign `integer` to `string`." in p.stderr, p.stderr
    assert f"error: {bad}:14:37: Cannot assign `string` to `integer`." in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 3, p.stderr
    # fixed, it checks clean
    (scripts / "bad.lua").write_text(BAD_SCRIPT.replace("mesage", "message")
                                     .replace("obj.spec.message = 42", "obj.spec.message = 'x'")
                                     .replace('issue = "7"', "issue = 7"))
    p = run_klua("check", "--types", str(types), str(scripts))
    assert p.returncode == 0, p.stderr
    assert f"types ok: {scripts}" in p.stdout


def test_check_types_typed_reads_through_a_declared_reference(tmp_path):
    types = tmp_path / "types"
    assert run_klua("types", "--crds", str(ROOT / "crds"), "-o", str(types)).returncode == 0
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "reader.lua").write_text("""\
---@type klua.ref.github.klua.dev.v1.Comment
local COMMENT = { apiVersion = "github.klua.dev/v1", kind = "Comment" }
---@type klua.Controller.github.klua.dev.v1.Comment
local controller = {
  watch = COMMENT,
  reconcile = function(ctx, obj)
    local c = ctx:get(COMMENT, obj.metadata.namespace, obj.metadata.name)
    for _, o in ipairs(ctx:list(COMMENT)) do ctx.log.info(o.spec.repo) end
    return c and c.spec.isue and nil
  end,
}
return controller
""")
    p = run_klua("check", "--types", str(types), str(scripts))
    assert p.returncode == 1
    f = scripts / "reader.lua"
    assert f"error: {f}:8:66: Undefined field `repo`." in p.stderr, p.stderr
    assert f"error: {f}:9:25: Undefined field `isue`." in p.stderr, p.stderr


def test_repository_scripts_check_clean_with_types(cluster_types):
    t0 = time.monotonic()
    p = run_klua("check", "--types", str(cluster_types), str(ROOT / "lua"))
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    print(f"klua check --types on lua/: {took * 1000:.0f} ms")
    p = run_klua("check", "--types", str(cluster_types), str(ROOT / "examples/scripts"),
                 str(ROOT / "examples/alert"), str(ROOT / "examples/app"))
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""


def test_check_types_without_the_checker_says_how_to_install_it(tmp_path):
    env = {"KLUA_EMMYLUA_CHECK": "", "KLUA_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    p = run_klua("check", "--types", str(tmp_path), str(ROOT / "lua"), env=env)
    assert p.returncode == 1
    assert "emmylua_check is not installed" in p.stderr and "tools/emmylua.sh" in p.stderr


# --- klua init ----------------------------------------------------------------

def test_init_check_and_run_reconciles_the_example(example_crds, klua_factory, namespace,
                                                   tmp_path):
    d = tmp_path / "widget"
    p = run_klua("init", str(d), "--group", "e2e.klua.dev", "--version", "v1alpha1",
                 "--kind", "Gizmo")
    assert p.returncode == 0, p.stderr
    assert sorted(tree(d)) == [
        ".luarc.json", "crds/gizmos.e2e.klua.dev.yaml", "examples/gizmo.yaml", "gizmo.lua",
        "kustomization.yaml", "spec/gizmo_spec.lua", "types/e2e.klua.dev.lua", "types/kinds.lua"]
    luarc = json.loads((d / ".luarc.json").read_text())
    assert luarc["workspace.library"] == ["types", str(ROOT / "lua/types"), str(ROOT / "lua/lib")]

    # klua check and klua check --types pass on it as written
    p = run_klua("check", str(d))
    assert p.returncode == 0 and f"ok: {d}/gizmo.lua" in p.stdout, p.stderr
    p = run_klua("check", "--types", str(d / "types"), str(d))
    assert p.returncode == 0, p.stderr

    # a second init never overwrites
    again = run_klua("init", str(d), "--group", "e2e.klua.dev", "--version", "v1alpha1",
                     "--kind", "Gizmo")
    assert again.returncode == 1 and "exists already" in again.stderr

    # the CRD installs, and klua run reconciles the example unchanged
    example_crds.kubectl("apply", "-f", str(d / "crds"))
    example_crds.kubectl("wait", "--for", "condition=established", "--timeout=60s",
                         "crd/gizmos.e2e.klua.dev")
    example_crds.kubectl("apply", "-n", namespace, "-f", str(d / "examples/gizmo.yaml"))
    klua_factory(scripts=d, args=["--namespace", namespace]).start()

    def reconciled():
        o = example_crds.get_json("gizmos.e2e.klua.dev", "example", "-n", namespace)
        st = o.get("status") or {}
        return st.get("message") == "Hello from Gizmo" and \
            st.get("observedGeneration") == o["metadata"]["generation"] and st
    st = wait_for(reconciled, 60, what="the example Gizmo reconciled")
    ready = [c for c in st["conditions"] if c["type"] == "Ready"][0]
    assert ready["status"] == "True" and ready["reason"] == "Reconciled"
    assert not ready["lastTransitionTime"].startswith("1970")

    # the overlay renders: klua's base plus the CRD, the script and RBAC for the kind
    subprocess.run(["sh", str(ROOT / "deploy/sync-scripts.sh")], check=True, timeout=30)
    k = subprocess.run(["kubectl", "kustomize", str(d)], capture_output=True, text=True,
                       timeout=60)
    assert k.returncode == 0, k.stderr
    assert "name: gizmos.e2e.klua.dev" in k.stdout
    assert re.search(r"- e2e\.klua\.dev\n\s+resources:\n\s+- gizmos\n", k.stdout), k.stdout
    assert re.search(r"- e2e\.klua\.dev\n\s+resources:\n\s+- gizmos/status\n", k.stdout)
    assert "gizmo.lua: |" in k.stdout


def test_init_cluster_scoped_and_bad_names(tmp_path):
    d = tmp_path / "c"
    p = run_klua("init", str(d), "--group", "ops.klua.dev", "--version", "v1", "--kind", "Policy",
                 "--cluster")
    assert p.returncode == 0, p.stderr
    crd = (d / "crds/policies.ops.klua.dev.yaml").read_text()
    assert "scope: Cluster" in crd and "plural: policies" in crd
    for args, want in [
        (["--group", "nodots", "--version", "v1", "--kind", "X"], "must be a DNS subdomain"),
        (["--group", "a.k8s.io", "--version", "v1", "--kind", "X"], "reserved"),
        (["--group", "a.b", "--version", "1", "--kind", "X"], "must look like v1"),
        (["--group", "a.b", "--version", "v1", "--kind", "lower"], "must be CamelCase"),
    ]:
        p = run_klua("init", str(tmp_path / "x"), *args)
        assert p.returncode == 1 and want in p.stderr, (args, p.stderr)
    assert not (tmp_path / "x" / "crds").exists()


# --- the Alert example --------------------------------------------------------

class Pager:
    """An on-call endpoint: records each page; answers from a script of codes."""

    def __init__(self, codes=()):
        self.pages, self.codes, self.lock = [], list(codes), threading.Lock()
        pager = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with pager.lock:
                    pager.pages.append({"key": self.headers.get("Idempotency-Key"),
                                        "body": json.loads(body)})
                    code = pager.codes.pop(0) if pager.codes else 201
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"id": f"page-{len(pager.pages)}"}).encode())

            def log_message(self, *a):
                pass
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_port}/page"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self):
        with self.lock:
            return len(self.pages)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pager():
    p = Pager()
    yield p
    p.stop()


def reconciles(port, controller):
    """controller_runtime_reconcile_total of one controller, all results."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(m.group(1)) for m in re.finditer(
        rf'^controller_runtime_reconcile_total\{{[^}}]*controller="{controller}"[^}}]*\}} (\S+)$',
        text, re.M))


def alert(name, message, severity=None):
    spec = {"message": message}
    if severity:
        spec["severity"] = severity
    return {"apiVersion": "pager.klua.dev/v1", "kind": "Alert", "metadata": {"name": name},
            "spec": spec}


def test_alert_pages_once_and_records_delivery(example_crds, klua_factory, namespace, pager):
    k = klua_factory(scripts=ROOT / "examples/alert",
                     args=["--namespace", namespace, "--metrics-addr", "127.0.0.1:0"],
                     env={"KLUA_PAGER_URL": pager.url}).start()
    port = int(k.wait_log(r"ops server listening addr=\S+:(\d+)").group(1))
    example_crds.apply(alert("disk-full", "/var on db-0 is 95% full", "critical"), namespace)

    def delivered():
        o = example_crds.get_json("alerts.pager.klua.dev", "disk-full", "-n", namespace)
        return (o.get("status") or {}).get("deliveredAt") and o
    o = wait_for(delivered, 60, what="the Alert delivered")
    assert pager.count() == 1
    page = pager.pages[0]
    assert page["key"] == o["metadata"]["uid"]
    assert page["body"] == {"alert": f"{namespace}/disk-full", "severity": "critical",
                            "message": "/var on db-0 is 95% full", "uid": o["metadata"]["uid"]}
    assert o["status"]["pageID"] == "page-1"
    cond = o["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Delivered", "True", "Paged")

    # Touch it: it is reconciled again (the metric moves) and pages no more.
    before = reconciles(port, "alert")
    example_crds.kubectl("label", "alerts.pager.klua.dev", "disk-full", "-n", namespace,
                         "touched=yes")
    wait_for(lambda: reconciles(port, "alert") > before, 30, what="a reconcile after the label")
    assert pager.count() == 1
    # spec is immutable (one Alert, one page)
    p = example_crds.kubectl("patch", "alerts.pager.klua.dev", "disk-full", "-n", namespace,
                             "--type=merge", "-p", '{"spec":{"message":"other"}}', check=False)
    assert p.returncode != 0 and "an Alert is sent once" in p.stderr


def test_alert_retries_a_failed_page_with_the_same_key(example_crds, klua_factory, namespace):
    pager = Pager(codes=[503, 500])
    try:
        klua_factory(scripts=ROOT / "examples/alert", args=["--namespace", namespace],
                     env={"KLUA_PAGER_URL": pager.url}).start()
        example_crds.apply(alert("flaky", "retry me"), namespace)

        def delivered():
            o = example_crds.get_json("alerts.pager.klua.dev", "flaky", "-n", namespace)
            return (o.get("status") or {}).get("deliveredAt") and o
        o = wait_for(delivered, 60, what="the Alert delivered after two failures")
        assert pager.count() == 3
        assert {p["key"] for p in pager.pages} == {o["metadata"]["uid"]}
        assert pager.pages[0]["body"]["severity"] == "warning"   # the CRD's default
        # the failures were recorded as Warning Events (posted without waiting)
        def warned():
            events = example_crds.get_json("events.events.k8s.io", "-n", namespace,
                                           "--field-selector", "regarding.name=flaky")["items"]
            return any(e["reason"] == "ReconcileError" and e["type"] == "Warning" and
                       "HTTP 503" in (e.get("note") or "") for e in events)
        wait_for(warned, 30, what="a ReconcileError Event naming HTTP 503")
    finally:
        pager.stop()


# --- the App example ----------------------------------------------------------

def test_app_keeps_a_deployment_and_a_service_in_step(example_crds, klua_factory, namespace):
    klua_factory(scripts=ROOT / "examples/app", args=["--namespace", namespace]).start()
    example_crds.apply({"apiVersion": "platform.klua.dev/v1", "kind": "App",
                        "metadata": {"name": "web"},
                        "spec": {"image": "nginx:1.27", "replicas": 2, "port": 80}}, namespace)
    app = wait_for(lambda: (example_crds.get_json("apps.platform.klua.dev", "web", "-n", namespace)
                            .get("status") or {}).get("observedGeneration") == 1 and
                   example_crds.get_json("apps.platform.klua.dev", "web", "-n", namespace),
                   60, what="the App's status")
    uid = app["metadata"]["uid"]

    def owned(kind):
        p = example_crds.kubectl("get", kind, "web", "-n", namespace, "-o", "json", check=False)
        if p.returncode != 0:
            return None
        o = json.loads(p.stdout)
        refs = o["metadata"].get("ownerReferences") or []
        return any(r["uid"] == uid and r.get("controller") for r in refs) and o

    def deployment(image, replicas, port):
        d = owned("deployment")
        if not d:
            return None
        c = d["spec"]["template"]["spec"]["containers"][0]
        return (c["image"] == image and d["spec"]["replicas"] == replicas and
                c["ports"][0]["containerPort"] == port) and d

    wait_for(lambda: deployment("nginx:1.27", 2, 80), 30, what="the Deployment")
    svc = wait_for(lambda: owned("service"), 30, what="the Service")
    assert svc["spec"]["ports"][0]["port"] == 80
    assert svc["spec"]["selector"] == {"app.kubernetes.io/name": "web",
                                       "app.kubernetes.io/managed-by": "klua"}
    cond = app["status"]["conditions"][0]
    assert (cond["type"], cond["status"], cond["reason"]) == ("Ready", "False", "Progressing")

    # a spec change reaches the Deployment and the Service
    example_crds.kubectl("patch", "apps.platform.klua.dev", "web", "-n", namespace,
                         "--type=merge", "-p", '{"spec":{"image":"nginx:1.28","port":8080}}')
    wait_for(lambda: deployment("nginx:1.28", 2, 8080), 30, what="the Deployment updated")
    wait_for(lambda: (owned("service") or {}).get("spec", {}).get("ports", [{}])[0].get("port")
             == 8080, 30, what="the Service updated")

    # deleting an owned object brings it back (owns: the App is reconciled)
    old = owned("service")["metadata"]["uid"]
    example_crds.kubectl("delete", "service", "web", "-n", namespace)
    wait_for(lambda: (owned("service") or {}).get("metadata", {}).get("uid") not in (None, old),
             30, what="the Service recreated")
    # and a hand edit of the Deployment is undone
    example_crds.kubectl("scale", "deployment", "web", "-n", namespace, "--replicas=5")
    wait_for(lambda: deployment("nginx:1.28", 2, 8080), 30, what="replicas put back")
