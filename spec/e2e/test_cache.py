"""What the cache keeps (issue 14 §2), through bin/klua against the real API server.

By default a reconciler sees no metadata.managedFields (the cache drops it);
`cache = { managed_fields = true }` keeps it; `cache = { keep = {...} }` keeps
only the listed paths plus what klua needs. Each script of
spec/e2e/scripts_cache/ writes what it saw into an annotation. And a bad
`cache` declaration is refused by `klua check` with file and line.
"""
import json

from conftest import ROOT, run_klua, wait_for

SCRIPTS = ROOT / "spec/e2e/scripts_cache"


def make_cm(cluster, ns, name, label):
    cm = {"apiVersion": "v1", "kind": "ConfigMap",
          "metadata": {"name": name, "labels": {"klua-e2e": label}}, "data": {"x": "1"}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(cm))


def seen(cluster, ns, name):
    cm = cluster.get_json("configmap", name, "-n", ns)
    return (cm["metadata"].get("annotations") or {}).get("klua.dev/seen")


def test_reconcilers_see_what_their_cache_keeps(cluster, namespace, klua_factory):
    make_cm(cluster, namespace, "d", "cache-default")
    make_cm(cluster, namespace, "m", "cache-mf")
    make_cm(cluster, namespace, "k", "cache-keep")
    # the API server keeps managedFields on every object
    assert cluster.get_json("configmap", "d", "-n", namespace, "--show-managed-fields")[
        "metadata"].get("managedFields")
    k = klua_factory(scripts=SCRIPTS, args=["--namespace", namespace]).start()
    want = {"d": "no-mf,data", "m": "mf,data", "k": "no-mf,no-data"}
    wait_for(lambda: all(seen(cluster, namespace, n) == w for n, w in want.items()), 30,
             interval=0.1, what=f"annotations {want}")
    assert k.stop() == 0


def test_check_refuses_a_bad_cache_declaration(tmp_path):
    bad = {
        "cache = 3": "cache must be a table",
        "cache = { keep = { 'a..b' } }": "has an empty segment",
        "cache = { keep = {} }": "non-empty list",
        "cache = { managed_fields = 1 }": "managed_fields must be true or false",
        "cache = { kep = { 'spec' } }": "unknown field in cache",
    }
    for decl, msg in bad.items():
        p = tmp_path / "s.lua"
        p.write_text("return {\n  watch = { apiVersion = 'v1', kind = 'ConfigMap' },\n"
                     f"  {decl},\n  reconcile = function() end,\n}}\n")
        r = run_klua("check", str(tmp_path))
        assert r.returncode == 1, (decl, r.stdout, r.stderr)
        out = r.stdout + r.stderr
        assert msg in out and "s.lua:3:" in out, (decl, out)
