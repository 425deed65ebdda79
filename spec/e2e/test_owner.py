"""Owned kinds: events on a secondary object reconcile its owner.

spec/e2e/scripts/owner/parent.lua watches labelled ConfigMaps and owns
Secrets: each ConfigMap keeps a child Secret (controller ownerReference).
Deleting or changing the child must reconcile the parent, which restores
it; that only happens if klua maps the Secret's event back to its owner.
"""
import json

from conftest import ROOT, wait_for


def _child(cluster, ns, name):
    p = cluster.kubectl("get", "secret", name, "-n", ns, "-o", "json", check=False)
    return json.loads(p.stdout) if p.returncode == 0 else None


def _value(child):
    return child and child["metadata"].get("annotations", {}).get("klua-e2e/value")


def test_owned_objects_reconcile_their_owner(cluster, namespace, klua_factory):
    k = klua_factory(ROOT / "spec/e2e/scripts/owner", args=["--namespace", namespace]).start()
    k.wait_log("caches synced")
    cluster.kubectl("create", "configmap", "p1", "-n", namespace, "--from-literal=value=one")
    cluster.kubectl("label", "configmap", "p1", "-n", namespace, "klua-e2e/parent=yes")
    child = wait_for(lambda: _child(cluster, namespace, "p1-child"), 30, what="child Secret")
    ref = child["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "ConfigMap" and ref["name"] == "p1" and ref["controller"] is True
    wait_for(lambda: _value(_child(cluster, namespace, "p1-child")) == "one", 30,
             what="child value one")

    # the child is deleted: its delete event maps to p1, which recreates it
    cluster.kubectl("delete", "secret", "p1-child", "-n", namespace)
    wait_for(lambda: _value(_child(cluster, namespace, "p1-child")) == "one", 30,
             what="child recreated after delete")

    # the child is changed behind the controller's back: put back
    cluster.kubectl("annotate", "--overwrite", "secret", "p1-child", "-n", namespace,
                    "klua-e2e/value=tampered")
    wait_for(lambda: _value(_child(cluster, namespace, "p1-child")) == "one", 30,
             what="child restored after tampering")

    # the parent changes: the child follows
    cluster.kubectl("patch", "configmap", "p1", "-n", namespace, "--type", "merge",
                    "-p", '{"data":{"value":"two"}}')
    wait_for(lambda: _value(_child(cluster, namespace, "p1-child")) == "two", 30,
             what="child follows the parent")

    # a Secret that no watched object owns is ignored: no reconcile, no error line
    k.wait_log(r"child applied .*value=two")   # the log line may trail the API write
    before = k.log().count("child applied")
    cluster.kubectl("create", "secret", "generic", "stray", "-n", namespace,
                    "--from-literal=x=y")
    # Barrier instead of a sleep: tamper with the child after the stray Secret.
    # Secret events reach klua in order on one watch, and the parent's keys are
    # reconciled in order by its one worker, so once the tampering is undone,
    # whatever the stray Secret caused has happened too.
    cluster.kubectl("annotate", "--overwrite", "secret", "p1-child", "-n", namespace,
                    "klua-e2e/value=tampered-again")
    wait_for(lambda: _value(_child(cluster, namespace, "p1-child")) == "two", 30,
             what="child restored after the stray Secret")
    wait_for(lambda: k.log().count("child applied") > before, 10, what="the restore logged")
    assert k.proc.poll() is None
    assert k.log().count("child applied") == before + 1, k.log()[-2000:]   # the restore only
    assert not [l for l in k.log().splitlines() if " error " in l], k.log()[-2000:]
