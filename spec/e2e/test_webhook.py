"""Webhooks in Lua, end to end: `klua run --dev --webhook-addr 127.0.0.1:0`
against the real kube-apiserver, which calls klua back on loopback.

The Comment's validate / mutate / convert (lua/lib/klua/comment_webhooks.lua,
declared by lua/comment.lua) are served from a copy of lua/ so that a test
can edit the script and watch the verdict change without a restart. klua
installs the webhook configurations (scoped to the test's namespace) and
the CRD's conversion stanza itself; the teardown removes them again.
"""
import json
import re
import shutil

import pytest

from conftest import COMMENTS, ROOT, comment, wait_for

CRD = "crd/comments.github.klua.dev"


@pytest.fixture
def scripts(tmp_path):
    d = tmp_path / "scripts"
    d.mkdir()
    shutil.copy(ROOT / "lua/comment.lua", d / "comment.lua")
    return d


@pytest.fixture
def dev_webhooks(crds):
    yield crds
    crds.kubectl("delete", "validatingwebhookconfiguration,mutatingwebhookconfiguration",
                 "klua-dev", "--ignore-not-found", check=False)
    crds.kubectl("patch", CRD, "--type=merge", "-p",
                 json.dumps({"spec": {"conversion": {"strategy": "None", "webhook": None}}}),
                 check=False)


def start(klua_factory, github, namespace, scripts):
    k = klua_factory(scripts=scripts, github=github,
                     args=["--namespace", namespace, "--dev", "--webhook-addr",
                           "127.0.0.1:0"]).start()
    k.wait_log(r"webhook server listening url=https://127\.0\.0\.1:\d+")
    k.wait_log(r"webhook configuration installed")
    return k


def installed(cluster, url_part):
    """The API server has our validating webhook with a URL containing url_part."""
    p = cluster.kubectl("get", "validatingwebhookconfiguration", "klua-dev", "-o", "json",
                        check=False)
    if p.returncode != 0:
        return False
    hooks = json.loads(p.stdout)["webhooks"]
    return any(url_part in h["clientConfig"].get("url", "") for h in hooks)


def apply(cluster, namespace, obj, *extra):
    return cluster.kubectl("apply", "-n", namespace, *extra, "-f", "-", input=json.dumps(obj),
                           check=False)


def denied(p):
    assert p.returncode != 0, f"expected a denial, got: {p.stdout}"
    return p.stderr


def test_validate_mutate_convert(dev_webhooks, namespace, klua_factory, github, scripts):
    cluster = dev_webhooks
    k = start(klua_factory, github, namespace, scripts)
    url = re.search(r"url=(https://\S+)", k.log()).group(1)
    assert installed(cluster, url + "/validate/comment")

    # an invalid Comment is denied with the script's words
    err = denied(apply(cluster, namespace, comment("bad-repo", repository="not-a-repo")))
    assert 'admission webhook "comment.validate.klua.dev" denied the request' in err, err
    assert 'spec.repository "not-a-repo" must be "owner/name" (one slash)' in err, err

    # the message limit is GitHub's, less klua's marker: one character over is refused
    too_long = "x" * 65473
    err = denied(apply(cluster, namespace, comment("long", message=too_long), "--dry-run=server"))
    assert "spec.message has 65473 characters; a GitHub comment takes at most 65472" in err, err
    assert "shorten it by 1" in err, err
    ok = apply(cluster, namespace, comment("long", message="x" * 65472), "--dry-run=server")
    assert ok.returncode == 0, ok.stderr

    # the mutating default is stored
    created = apply(cluster, namespace, comment("defaulted"))
    assert created.returncode == 0, created.stderr
    obj = cluster.get_json(COMMENTS, "-n", namespace, "defaulted")
    assert obj["spec"]["deletionPolicy"] == "Retain"
    explicit = apply(cluster, namespace, comment("explicit", policy="Delete"))
    assert explicit.returncode == 0, explicit.stderr
    assert cluster.get_json(COMMENTS, "-n", namespace, "explicit")["spec"]["deletionPolicy"] \
        == "Delete"

    # v1alpha1 in, stored as v1, read back as either
    old = {"apiVersion": "github.klua.dev/v1alpha1", "kind": "Comment",
           "metadata": {"name": "from-alpha"},
           "spec": {"repository": "klua-e2e/playground", "issue": 1, "text": "said in alpha"}}
    made = apply(cluster, namespace, old)
    assert made.returncode == 0, made.stderr
    as_v1 = cluster.get_json("comments.v1.github.klua.dev", "-n", namespace, "from-alpha")
    assert as_v1["apiVersion"] == "github.klua.dev/v1"
    assert as_v1["spec"]["message"] == "said in alpha" and "text" not in as_v1["spec"]
    assert as_v1["spec"]["deletionPolicy"] == "Retain"   # mutated after conversion to v1
    as_alpha = cluster.get_json("comments.v1alpha1.github.klua.dev", "-n", namespace,
                                "from-alpha")
    assert as_alpha["apiVersion"] == "github.klua.dev/v1alpha1"
    assert as_alpha["spec"]["text"] == "said in alpha" and "message" not in as_alpha["spec"]
    crd = cluster.get_json(CRD)
    assert crd["status"]["storedVersions"] == ["v1"]
    assert crd["spec"]["conversion"]["webhook"]["clientConfig"]["url"] == url + "/convert/comment"
    # a v1 object read as v1alpha1 goes through convert too
    alpha = cluster.get_json("comments.v1alpha1.github.klua.dev", "-n", namespace, "defaulted")
    assert alpha["spec"]["text"] == "e2e message for defaulted"
    assert k.proc.poll() is None

    # stopping klua removes what --dev installed: a cluster must not keep
    # calling (failurePolicy Fail) a klua that is gone
    assert k.stop() == 0
    assert "webhook configuration removed" in k.log()
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        p = cluster.kubectl("get", kind, "klua-dev", check=False)
        assert p.returncode != 0 and "NotFound" in p.stderr, p.stdout
    assert cluster.get_json(CRD)["spec"]["conversion"] == {"strategy": "None"}
    after = apply(cluster, namespace, comment("after-klua", repository="not-a-repo"),
                  "--dry-run=server")
    assert after.returncode == 0, after.stderr   # no webhook answers now, and none is asked


def edit(path, old, new):
    src = path.read_text()
    assert old in src
    path.write_text(src.replace(old, new))


def test_dev_reload_and_failing_handlers(dev_webhooks, namespace, klua_factory, github, scripts):
    cluster = dev_webhooks
    k = start(klua_factory, github, namespace, scripts)
    pid = k.proc.pid
    script = scripts / "comment.lua"
    good = apply(cluster, namespace, comment("before", repository="klua-e2e/playground"),
                 "--dry-run=server")
    assert good.returncode == 0, good.stderr

    def reloads():
        return len(re.findall(r"reload changed=", k.log()))

    def reload_to(old, new):
        n = reloads()
        edit(script, old, new)
        wait_for(lambda: reloads() > n, 30, what="the edited script to reload")

    # a script edit changes the verdict, same process
    reload_to("validate = webhooks.validate,",
              "validate = function(ctx, req) return false, 'closed for the weekend' end,")
    err = denied(apply(cluster, namespace, comment("edited"), "--dry-run=server"))
    assert "closed for the weekend" in err, err

    # a handler that loops is stopped by the CPU deadline and denies, naming the script
    reload_to("return false, 'closed for the weekend'", "while true do end")
    err = denied(apply(cluster, namespace, comment("looping"), "--dry-run=server"))
    assert re.search(r"validate failed: .*comment\.lua:\d+: .*(deadline exceeded|instruction budget)",
                     err), err

    # a handler that raises denies with its file:line and message
    reload_to("while true do end", "error('no comments today')")
    err = denied(apply(cluster, namespace, comment("raising"), "--dry-run=server"))
    assert re.search(r"validate failed: .*comment\.lua:\d+: no comments today", err), err

    # a handler that tries to write is refused
    reload_to("error('no comments today')", "ctx:delete(req.object)")
    err = denied(apply(cluster, namespace, comment("writing"), "--dry-run=server"))
    assert "webhook handlers cannot write (ctx:delete)" in err, err

    # and back: klua never went down
    reload_to("validate = function(ctx, req) ctx:delete(req.object) end,",
              "validate = webhooks.validate,")
    ok = apply(cluster, namespace, comment("after"), "--dry-run=server")
    assert ok.returncode == 0, ok.stderr
    assert k.proc.poll() is None and k.proc.pid == pid


def test_deploy_webhook_component_dry_run(crds, tmp_path):
    """deploy/webhook/ as a Component of an overlay of the base, and the CRD's
    conversion patch, pass a server-side dry run; cert-manager annotations
    name the Certificate that deploy/webhook/certificate.yaml declares."""
    import subprocess

    import yaml
    cluster = crds
    subprocess.run(["sh", str(ROOT / "deploy/sync-scripts.sh")], check=True, timeout=30)
    overlay = ROOT / "build/e2e-webhook-overlay"
    overlay.mkdir(parents=True, exist_ok=True)
    (overlay / "kustomization.yaml").write_text(
        "resources: [../../deploy]\ncomponents: [../../deploy/webhook]\n")
    p = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    docs = [d for d in yaml.safe_load_all(p.stdout) if d]
    kinds = {d["kind"]: d for d in docs}
    dep = kinds["Deployment"]["spec"]["template"]["spec"]
    args = dep["containers"][0]["args"]
    assert args[args.index("--webhook-addr") + 1] == ":9443"
    assert args[args.index("--webhook-cert-dir") + 1] == "/etc/klua/webhook"
    assert {"name": "webhook-tls", "secret": {"secretName": "klua-webhook-tls"}} in dep["volumes"]
    cert = [d for d in yaml.safe_load_all((ROOT / "deploy/webhook/certificate.yaml").read_text())
            if d and d["kind"] == "Certificate"][0]
    assert cert["spec"]["secretName"] == "klua-webhook-tls"
    inject = f"{cert['metadata']['namespace']}/{cert['metadata']['name']}"
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        conf = kinds[kind]
        assert conf["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == inject
        svc = conf["webhooks"][0]["clientConfig"]["service"]
        assert (svc["name"], svc["namespace"]) == (kinds["Service"]["metadata"]["name"],
                                                   kinds["Service"]["metadata"]["namespace"])
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(kinds["Namespace"]))
    p = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=p.stdout, check=False)
    assert p.returncode == 0, p.stderr
    for what in ("service/klua-webhook", "validatingwebhookconfiguration",
                 "mutatingwebhookconfiguration", "deployment.apps/klua"):
        assert what in p.stdout, p.stdout
    p = cluster.kubectl("patch", "crd", "comments.github.klua.dev", "--type", "merge",
                        "--patch-file", str(ROOT / "deploy/webhook/crd-conversion.yaml"),
                        "--dry-run=server", check=False)
    assert p.returncode == 0, p.stderr
    assert cluster.get_json(CRD)["spec"]["conversion"]["strategy"] == "None"   # a dry run


def test_webhook_flags_explain_what_is_missing(crds, tmp_path):
    from conftest import run_klua
    base = ["run", "--scripts", str(ROOT / "lua"), "--kubeconfig", crds.kubeconfig,
            "--namespace", "no-such-namespace"]
    p = run_klua(*base, "--webhook-addr", "127.0.0.1:0")
    assert p.returncode == 1
    assert "--webhook-addr needs --webhook-cert-dir (tls.crt, tls.key), or --dev" in p.stderr
    p = run_klua(*base, "--webhook-addr", "127.0.0.1:0", "--webhook-cert-dir", str(tmp_path))
    assert p.returncode == 1
    assert f"cannot load {tmp_path}/tls.crt" in p.stderr, p.stderr
    p = run_klua(*base, "--webhook-addr", "127.0.0.1:0", "--dev", "--lua-timeout", "10000")
    assert p.returncode == 1
    assert "--lua-timeout must be below the webhooks' timeoutSeconds (10 s)" in p.stderr
