"""deploy/ (the kustomize base) against the real API server.

The base renders with kubectl's built-in kustomize; the Deployment is
hardened as DESIGN.md asks; the whole base passes a server-side dry run
(schema, defaulting, admission, RBAC escalation checks); and the RBAC
objects, really applied, let the klua service account do what the Comment
controller needs and nothing else (`kubectl auth can-i` as that account).
"""
import subprocess

import yaml

from conftest import ROOT, wait_for

NS = "klua-system"
SA = f"system:serviceaccount:{NS}:klua"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def render():
    # deploy/scripts/ is generated from lua/ (kustomize may not read ../lua)
    subprocess.run(["sh", str(ROOT / "deploy/sync-scripts.sh")], check=True, timeout=30)
    p = subprocess.run(["kubectl", "kustomize", str(ROOT / "deploy")], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, f"kubectl kustomize deploy/ failed: {p.stderr}"
    return p.stdout, [d for d in yaml.safe_load_all(p.stdout) if d]


def by_kind(docs, kind):
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"want one {kind}, got {len(found)}"
    return found[0]


def as_yaml(docs):
    return yaml.safe_dump_all(docs, sort_keys=False)


def ensure_namespace(cluster, docs):
    """The namespace really exists (a dry run creates nothing, and namespaced
    objects need their namespace). It is never deleted: without a
    controller-manager a namespace stays Terminating forever."""
    cluster.kubectl("apply", "-f", "-", input=as_yaml([by_kind(docs, "Namespace")]))


def test_script_copies_are_current():
    subprocess.run(["sh", str(ROOT / "deploy/sync-scripts.sh")], check=True, timeout=30)
    p = subprocess.run(["sh", str(ROOT / "deploy/sync-scripts.sh"), "--check"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr


def test_base_renders_a_hardened_deployment():
    _, docs = render()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                            "Role", "RoleBinding", "ConfigMap", "Deployment"])
    for d in docs:
        if d["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"]["namespace"] == NS, d["metadata"]

    cm = by_kind(docs, "ConfigMap")
    assert cm["metadata"]["name"].startswith("klua-scripts-")   # content hash suffix
    assert cm["data"]["comment.lua"] == (ROOT / "lua/comment.lua").read_text()

    dep = by_kind(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "klua"
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    (c,) = pod["containers"]
    assert c["args"][:5] == ["run", "--scripts", "/scripts", "--metrics-addr", ":8080"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["resources"]["requests"] and c["resources"]["limits"]
    env = {e["name"]: e for e in c["env"]}
    ref = env["GITHUB_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref["optional"] is True and ref["name"] == "klua-github"
    assert "value" not in env["GITHUB_TOKEN"]   # no token in the manifest
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["scripts"]["configMap"]["name"] == cm["metadata"]["name"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/scripts"]["readOnly"] is True


def test_server_side_dry_run_accepts_the_base(cluster, crds):
    text, docs = render()
    ensure_namespace(cluster, docs)
    p = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=text, check=False)
    assert p.returncode == 0, f"server-side dry run failed:\n{p.stderr}"
    # Pod Security admission checks the pod template against "restricted"
    assert "would violate PodSecurity" not in p.stderr, p.stderr
    for kind in ("deployment.apps/klua", "clusterrole.rbac.authorization.k8s.io/klua",
                 "serviceaccount/klua"):
        assert kind in p.stdout and "(server dry run)" in p.stdout, p.stdout
    # a dry run persists nothing
    p = cluster.kubectl("get", "deployment", "klua", "-n", NS, check=False)
    assert p.returncode != 0 and "NotFound" in p.stderr


def test_rbac_is_least_privilege(cluster, crds):
    _, docs = render()
    ensure_namespace(cluster, docs)
    rbac = as_yaml([d for d in docs if d["kind"] in RBAC_KINDS])
    cluster.kubectl("apply", "-f", "-", input=rbac)
    try:
        def can(*args):
            p = cluster.kubectl("auth", "can-i", *args, f"--as={SA}", check=False)
            return p.stdout.strip()

        # RBAC is cached in the API server: wait for the first grant to show
        wait_for(lambda: can("list", "comments.github.klua.dev", "-A") == "yes", 30,
                 what="the ClusterRoleBinding to take effect")
        allowed = [
            ("get", "comments.github.klua.dev", "-n", "default"),
            ("list", "comments.github.klua.dev", "-A"),
            ("watch", "comments.github.klua.dev", "-A"),
            ("patch", "comments.github.klua.dev", "-n", "team-a"),
            ("update", "comments.github.klua.dev", "-n", "team-a"),
            ("patch", "comments.github.klua.dev", "--subresource=status", "-n", "team-a"),
            ("update", "comments.github.klua.dev", "--subresource=status", "-n", "team-a"),
            ("create", "events.events.k8s.io", "-n", "team-a"),
            ("patch", "events.events.k8s.io", "-n", "team-a"),
            ("get", "leases.coordination.k8s.io", "-n", NS),
            ("create", "leases.coordination.k8s.io", "-n", NS),
            ("update", "leases.coordination.k8s.io", "-n", NS),
        ]
        denied = [
            ("list", "secrets", "-A"),
            ("get", "secrets", "-n", NS),
            ("create", "comments.github.klua.dev", "-n", "team-a"),
            ("delete", "comments.github.klua.dev", "-n", "team-a"),
            ("delete", "events.events.k8s.io", "-n", "team-a"),
            ("create", "events", "-n", "team-a"),            # core/v1 events: not used
            ("create", "leases.coordination.k8s.io", "-n", "default"),
            ("delete", "leases.coordination.k8s.io", "-n", NS),
            ("list", "pods", "-A"),
            ("create", "pods", "-n", NS),
            ("escalate", "clusterroles.rbac.authorization.k8s.io"),
            ("impersonate", "serviceaccounts", "-A"),
            ("*", "*", "-A"),
        ]
        wrong = [" ".join(a) + " -> " + can(*a) for a in allowed if can(*a) != "yes"]
        wrong += [" ".join(a) + " -> " + can(*a) for a in denied if can(*a) != "no"]
        assert not wrong, "unexpected permissions:\n" + "\n".join(wrong)
    finally:
        cluster.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", input=rbac,
                        check=False)
