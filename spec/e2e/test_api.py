"""Reconciler API v1 declarations (issue 10 §1-2) through bin/klua against the
real API server: watch.predicate, watches with map, finalizer, error_condition,
selectors checked at load time, the start-up rule.

Reconciles are counted from klua's JSON log (each test script logs one
"reconciled" line per run). "Did not run" is never read after a sleep: a later
event on the same watch (or the same workqueue, FIFO, one worker) is the
barrier, since klua handles a watch's events in order.
"""
import json
import textwrap

from conftest import COMMENTS, comment, wait_for

COUNTER = """
return {
  watch = { apiVersion = "github.klua.dev/v1", kind = "Comment"%(predicate)s },
  workers = 1,
  reconcile = function(ctx, obj)
    ctx.log.info("reconciled", { generation = obj.metadata.generation })
  end,
}
"""


def write_script(tmp_path, name, text, sub="scripts"):
    d = tmp_path / sub
    d.mkdir(exist_ok=True)
    (d / name).write_text(textwrap.dedent(text))
    return d


def log_records(klua):
    out = []
    for line in klua.log().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def reconciles(klua, key, msg="reconciled"):
    return [r for r in log_records(klua) if r.get("msg") == msg and r.get("key") == key]


def wait_reconciles(klua, key, n, msg="reconciled", timeout=60):
    def enough():
        if klua.proc.poll() is not None:
            raise AssertionError(f"klua exited ({klua.proc.returncode}):\n{klua.log()[-3000:]}")
        got = reconciles(klua, key, msg)
        return got if len(got) >= n else None
    return wait_for(enough, timeout, what=f"{n} x {msg} for {key}")


def start(klua_factory, scripts, namespace, *args):
    k = klua_factory(scripts=scripts, args=["--namespace", namespace, "--log-format", "json",
                                            *args]).start()
    k.wait_log(r"caches synced")
    return k


def status_patch(cluster, namespace, name, status):
    cluster.kubectl("patch", COMMENTS, name, "-n", namespace, "--subresource=status",
                    "--type=merge", "-p", json.dumps({"status": status}))


def spec_patch(cluster, namespace, name, spec):
    cluster.kubectl("patch", COMMENTS, name, "-n", namespace, "--type=merge",
                    "-p", json.dumps({"spec": spec}))


def label(cluster, namespace, name, kv):
    cluster.kubectl("label", COMMENTS, name, "-n", namespace, "--overwrite", kv)


# ---- watch.predicate ----

def test_default_predicate_status_write_does_not_reconcile(crds, namespace, klua_factory,
                                                           tmp_path):
    cluster = crds
    scripts = write_script(tmp_path, "counter.lua", COUNTER % {"predicate": ""})
    k = start(klua_factory, scripts, namespace)
    cluster.apply(comment("a"), namespace)
    wait_reconciles(k, f"{namespace}/a", 1)

    status_patch(cluster, namespace, "a", {"url": "https://example.invalid/1"})
    # barrier: an event after the status write on the same watch and queue
    cluster.apply(comment("barrier"), namespace)
    wait_reconciles(k, f"{namespace}/barrier", 1)
    assert len(reconciles(k, f"{namespace}/a")) == 1, "a status-only write re-ran the reconciler"

    spec_patch(cluster, namespace, "a", {"message": "edited"})
    got = wait_reconciles(k, f"{namespace}/a", 2)
    assert str(got[1]["generation"]) == "2"
    # a label is metadata too: it passes the default filter
    label(cluster, namespace, "a", "tier=x")
    wait_reconciles(k, f"{namespace}/a", 3)


def test_predicate_any_reconciles_status_writes(crds, namespace, klua_factory, tmp_path):
    cluster = crds
    scripts = write_script(tmp_path, "counter.lua", COUNTER % {"predicate": ', predicate = "any"'})
    k = start(klua_factory, scripts, namespace)
    cluster.apply(comment("a"), namespace)
    wait_reconciles(k, f"{namespace}/a", 1)
    status_patch(cluster, namespace, "a", {"url": "https://example.invalid/1"})
    wait_reconciles(k, f"{namespace}/a", 2)


def test_predicate_generation_and_list_and_function(crds, namespace, klua_factory, tmp_path):
    cluster = crds
    write_script(tmp_path, "gen.lua", (COUNTER % {"predicate": ', predicate = "generation"'})
                 .replace('"reconciled"', '"gen"'))
    write_script(tmp_path, "labels.lua", (COUNTER % {
        "predicate": ', predicate = { "labels", "annotations" }'}).replace('"reconciled"', '"lab"'))
    scripts = write_script(tmp_path, "fn.lua", (COUNTER % {
        "predicate": ", predicate = function(old, new) "
                     "return (new.metadata.labels or {}).go == 'yes' end"})
        .replace('"reconciled"', '"fn"'))
    k = start(klua_factory, scripts, namespace)
    key = f"{namespace}/a"
    cluster.apply(comment("a"), namespace)
    for m in ("gen", "lab", "fn"):
        wait_reconciles(k, key, 1, m)        # an add always enqueues

    label(cluster, namespace, "a", "go=no")
    wait_reconciles(k, key, 2, "lab")
    spec_patch(cluster, namespace, "a", {"message": "edited"})
    wait_reconciles(k, key, 2, "gen")
    label(cluster, namespace, "a", "go=yes")
    wait_reconciles(k, key, 3, "lab")
    wait_reconciles(k, key, 2, "fn")
    # every event so far has reached every controller (barriers above): the
    # counts are final for them
    assert len(reconciles(k, key, "gen")) == 2, "labels passed the generation predicate"
    assert len(reconciles(k, key, "fn")) == 2, "the function's false was ignored"
    cluster.kubectl("annotate", COMMENTS, "a", "-n", namespace, "note=1")
    wait_reconciles(k, key, 4, "lab")


# ---- load-time checks (klua check loads as klua run does) ----

def test_check_refuses_bad_declarations_with_file_and_line():
    from conftest import ROOT, run_klua
    bad = ROOT / "spec/lua_fixtures/bad_decl"
    p = run_klua("check", str(bad))
    assert p.returncode == 1
    for want in [
        f'{bad}/bad_selector.lua:3: selector: invalid label selector "a in (b"',
        f'{bad}/bad_predicate.lua:3: watch.predicate must be "any", "generation", "labels", '
        f'"annotations", a list of those, or a function(old, new)',
        f'{bad}/bad_finalizer.lua:3: finalizer "cleanup" must be a qualified name',
        f'{bad}/bad_error_condition.lua:3: error_condition must be a condition type',
        f'{bad}/watches_bad_selector.lua:3: watches[1].selector: invalid label selector',
        f'{bad}/watches_without_map.lua:3: watches[1].map must be a function(obj)',
    ]:
        assert f"error: {want}" in p.stderr, (want, p.stderr)
    p = run_klua("check", str(ROOT / "spec/lua_fixtures/good/api_v1.lua"))
    assert p.returncode == 0 and "ok: " in p.stdout, p.stderr


# ---- watches with map ----

MAPPED = """
return {
  watch = { apiVersion = "github.klua.dev/v1", kind = "Comment" },
  watches = {
    { apiVersion = "v1", kind = "ConfigMap", selector = "klua.dev/map=yes",
      map = function(cm)
        local keys = {}
        for name in string.gmatch((cm.data or {}).comments or "", "[^,]+") do
          keys[#keys + 1] = cm.metadata.namespace .. "/" .. name
        end
        return keys
      end },
  },
  workers = 1,
  reconcile = function(ctx, obj)
    ctx.log.info("reconciled", { generation = obj.metadata.generation })
  end,
}
"""


def configmap(name, comments, labels=None):
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels or {}}, "data": {"comments": comments}}


def test_watches_map_enqueues_the_keys_it_returns(crds, namespace, klua_factory, tmp_path):
    cluster = crds
    scripts = write_script(tmp_path, "mapped.lua", MAPPED)
    k = start(klua_factory, scripts, namespace)
    for n in ("a", "b", "c"):
        cluster.apply(comment(n), namespace)
    for n in ("a", "b", "c"):
        wait_reconciles(k, f"{namespace}/{n}", 1)

    cluster.apply(configmap("unselected", "a"), namespace)          # not selected
    cluster.apply(configmap("pick", "b,c", {"klua.dev/map": "yes"}), namespace)
    wait_reconciles(k, f"{namespace}/b", 2)
    wait_reconciles(k, f"{namespace}/c", 2)
    cluster.apply(comment("barrier"), namespace)
    wait_reconciles(k, f"{namespace}/barrier", 1)
    assert len(reconciles(k, f"{namespace}/a")) == 1, "an unselected or unmapped object enqueued a"

    # an update maps the old and the new version
    cluster.apply(configmap("pick", "a", {"klua.dev/map": "yes"}), namespace)
    wait_reconciles(k, f"{namespace}/a", 2)
    wait_reconciles(k, f"{namespace}/b", 3)
    wait_reconciles(k, f"{namespace}/c", 3)


def test_a_failing_map_is_reported_once_naming_the_script(crds, namespace, klua_factory,
                                                           tmp_path):
    cluster = crds
    scripts = write_script(tmp_path, "broken.lua", MAPPED.replace(
        "local keys = {}",
        "if cm.metadata.name ~= 'ok' then error('no map today') end\n        local keys = {}"))
    k = start(klua_factory, scripts, namespace)
    cluster.apply(comment("barrier"), namespace)
    wait_reconciles(k, f"{namespace}/barrier", 1)
    for i in range(3):
        cluster.apply(configmap(f"m{i}", "barrier", {"klua.dev/map": "yes"}), namespace)
    # barrier: a later ConfigMap on the same watch that maps
    cluster.apply(configmap("ok", "barrier", {"klua.dev/map": "yes"}), namespace)
    wait_reconciles(k, f"{namespace}/barrier", 2)
    failed = [r for r in log_records(k) if r.get("msg", "").startswith("script function failed")]
    assert len(failed) == 1, failed
    assert "broken.lua:" in failed[0]["error"] and "no map today" in failed[0]["error"], failed
    assert len(reconciles(k, f"{namespace}/barrier")) == 2


# ---- finalizers ----

FINALIZING = """
return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },%(extra)s
  workers = 1,
  reconcile = function(ctx, obj)
    ctx.log.info("reconciled", { deleting = obj.metadata.deletionTimestamp ~= nil,
                                 finalizers = table.concat(obj.metadata.finalizers or {}, ",") })
  end,%(finalize)s
}
"""
FINALIZE = """
  finalize = function(ctx, obj)
    ctx.log.info("finalized", {})
  end,"""


def cm(name):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"x": "1"}}


def finalizers(cluster, namespace, name):
    p = cluster.kubectl("get", "configmap", name, "-n", namespace, "-o", "json", check=False)
    if p.returncode != 0:
        return None                       # gone
    return json.loads(p.stdout)["metadata"].get("finalizers") or []


def wait_finalizer(cluster, namespace, name, want):
    wait_for(lambda: want in (finalizers(cluster, namespace, name) or []), 60,
             what=f"finalizer {want} on {name}")


def wait_gone(cluster, namespace, name):
    wait_for(lambda: finalizers(cluster, namespace, name) is None, 60,
             what=f"configmap {name} deleted (finalizers: "
                  f"{finalizers(cluster, namespace, name)})")


def test_explicit_finalizer_deleting_objects_go_to_finalize_only(cluster, namespace,
                                                                 klua_factory, tmp_path):
    scripts = write_script(tmp_path, "app.lua", FINALIZING % {
        "extra": '\n  finalizer = "example.com/cleanup",', "finalize": FINALIZE})
    k = start(klua_factory, scripts, namespace)
    cluster.apply(cm("a"), namespace)
    wait_finalizer(cluster, namespace, "a", "example.com/cleanup")
    cluster.kubectl("delete", "configmap", "a", "-n", namespace, "--wait=false")
    wait_gone(cluster, namespace, "a")
    assert len(reconciles(k, f"{namespace}/a", "finalized")) == 1
    assert all(r["deleting"] in (False, "false") for r in reconciles(k, f"{namespace}/a")), \
        "reconcile saw an object being deleted although finalize is declared"


def test_renamed_script_without_explicit_finalizer_deletes_cleanly(cluster, namespace,
                                                                   klua_factory, tmp_path):
    scripts = write_script(tmp_path, "app.lua", FINALIZING % {"extra": "", "finalize": FINALIZE})
    k = start(klua_factory, scripts, namespace, "--dev")
    cluster.apply(cm("a"), namespace)
    wait_finalizer(cluster, namespace, "a", "klua.dev/app")
    (scripts / "app.lua").rename(scripts / "webapp.lua")
    wait_finalizer(cluster, namespace, "a", "klua.dev/webapp")   # the new controller runs
    assert "klua.dev/app" in finalizers(cluster, namespace, "a")
    cluster.kubectl("delete", "configmap", "a", "-n", namespace, "--wait=false")
    wait_gone(cluster, namespace, "a")
    warned = [r for r in log_records(k)
              if r.get("msg") == "removing a finalizer no script declares any more"]
    assert [r["finalizer"] for r in warned] == ["klua.dev/app"], warned


def test_reload_that_drops_finalize_deletes_cleanly(cluster, namespace, klua_factory, tmp_path):
    scripts = write_script(tmp_path, "app.lua", FINALIZING % {"extra": "", "finalize": FINALIZE})
    k = start(klua_factory, scripts, namespace, "--dev")
    cluster.apply(cm("a"), namespace)
    wait_finalizer(cluster, namespace, "a", "klua.dev/app")
    (scripts / "app.lua").write_text(FINALIZING % {"extra": "", "finalize": ""})
    k.wait_log(r'"changed":"app \(reloaded\)"')
    cluster.kubectl("delete", "configmap", "a", "-n", namespace, "--wait=false")
    wait_gone(cluster, namespace, "a")
    warned = [r for r in log_records(k)
              if r.get("msg") == "removing a finalizer no script declares any more"]
    assert [r["finalizer"] for r in warned] == ["klua.dev/app"], warned
    # Once the stale finalizer is off, the watch may deliver the last state
    # (deleting, no finalizers) before the delete itself: reconcile seeing that
    # is controller-runtime's behaviour too. What must not happen is reconcile
    # running on the deleting object while the stale finalizer is still on it.
    assert not [r for r in reconciles(k, f"{namespace}/a")
                if r["deleting"] in (True, "true") and "klua.dev/app" in r["finalizers"]], \
        "reconcile ran on the deleting object before the stale finalizer came off"


def test_orphan_finalizers_reported_once_and_removed_on_request(cluster, namespace,
                                                                klua_factory, tmp_path):
    scripts = write_script(tmp_path, "plain.lua", FINALIZING % {"extra": "", "finalize": ""})
    for name, fin in (("ghost1", "klua.dev/ghost"), ("ghost2", "klua.dev/ghost"),
                      ("other", "example.com/other")):
        o = cm(name)
        o["metadata"]["finalizers"] = [fin]
        cluster.apply(o, namespace)
    try:
        k = start(klua_factory, scripts, namespace)
        for n in ("ghost1", "ghost2", "other"):
            wait_reconciles(k, f"{namespace}/{n}", 1)
        orphans = [r for r in log_records(k) if r.get("msg", "").startswith(
            "finalizer no script declares")]
        assert len(orphans) == 1, orphans
        assert orphans[0]["finalizer"] == "klua.dev/ghost" and orphans[0]["objects"] == "2"
        for n in ("ghost1", "ghost2", "other"):
            cluster.kubectl("delete", "configmap", n, "-n", namespace, "--wait=false")
        for n in ("ghost1", "ghost2", "other"):
            wait_reconciles(k, f"{namespace}/{n}", 2)    # reconcile sees them deleting
        assert finalizers(cluster, namespace, "ghost1") == ["klua.dev/ghost"]
        k.stop()

        k2 = start(klua_factory, scripts, namespace, "--remove-orphan-finalizers")
        wait_gone(cluster, namespace, "ghost1")
        wait_gone(cluster, namespace, "ghost2")
        wait_reconciles(k2, f"{namespace}/other", 1)
        assert finalizers(cluster, namespace, "other") == ["example.com/other"], \
            "another controller's finalizer was touched"
    finally:
        cluster.kubectl("patch", "configmap", "other", "-n", namespace, "--type=merge",
                        "-p", '{"metadata":{"finalizers":null}}', check=False)


# ---- error_condition ----

FAILING = """
local written = {}
return {
  watch = { apiVersion = "github.klua.dev/v1", kind = "Comment" },%(decl)s
  reconcile = function(ctx, obj)
    if not written[obj.metadata.uid] then
      local _, err = ctx:patch_status(obj, { conditions = { {
        type = "Ready", status = "True", reason = "ScriptSaysSo", message = "mine",
        observedGeneration = obj.metadata.generation,
        lastTransitionTime = "2026-01-01T00:00:00Z" } } })
      if err then error("patch_status: " .. tostring(err)) end
      written[obj.metadata.uid] = true
    end
    error("always failing")
  end,
}
"""


def conditions_after_failures(cluster, namespace, klua_factory, tmp_path, decl, n=6):
    scripts = write_script(tmp_path, "failing.lua", FAILING % {"decl": decl})
    k = start(klua_factory, scripts, namespace)
    cluster.apply(comment("a"), namespace)
    # every failure runs klua's condition write; several retries (backoff
    # 5 ms doubling) leave time for the script's own write to reach the cache
    wait_for(lambda: len([r for r in log_records(k) if r.get("msg") == "reconcile failed"]) >= n,
             60, what=f"{n} failed reconciles")
    k.stop()   # no further writes: the status read next is final
    o = cluster.get_json(COMMENTS, "a", "-n", namespace)
    return {c["type"]: c for c in (o.get("status") or {}).get("conditions") or []}


def test_error_condition_never_overwrites_the_scripts_condition_of_this_generation(
        crds, namespace, klua_factory, tmp_path):
    conds = conditions_after_failures(crds, namespace, klua_factory, tmp_path, "")
    assert conds["Ready"]["reason"] == "ScriptSaysSo", conds
    assert set(conds) == {"Ready"}, conds


def test_error_condition_names_the_condition_type(crds, namespace, klua_factory, tmp_path):
    conds = conditions_after_failures(crds, namespace, klua_factory, tmp_path,
                                      '\n  error_condition = "Synced",')
    assert conds["Ready"]["reason"] == "ScriptSaysSo", conds
    assert conds["Synced"]["status"] == "False", conds
    assert conds["Synced"]["reason"] == "ReconcileError", conds
    assert "always failing" in conds["Synced"]["message"], conds


def test_error_condition_false_writes_no_condition(crds, namespace, klua_factory, tmp_path):
    conds = conditions_after_failures(crds, namespace, klua_factory, tmp_path,
                                      "\n  error_condition = false,")
    assert set(conds) == {"Ready"} and conds["Ready"]["reason"] == "ScriptSaysSo", conds


# ---- LIST/WATCH refused by the API server ----

def test_forbidden_list_is_reported_once_naming_the_script(cluster, namespace, klua_factory,
                                                           tmp_path):
    scripts = write_script(tmp_path, "nosy.lua", FINALIZING % {"extra": "", "finalize": ""})
    k = klua_factory(scripts=scripts, args=[
        "--namespace", namespace, "--log-format", "json",
        "--kubeconfig", str(cluster.dir / "kubeconfig-viewer")]).start()

    def retries():
        return len([r for r in log_records(k) if r.get("msg") == "watch or list failed, retrying"])
    wait_for(lambda: retries() >= 3, 60, what="three failed LISTs")
    refused = [r for r in log_records(k) if r.get("msg", "").startswith("cannot list or watch")]
    assert len(refused) == 1, refused
    assert refused[0]["file"].endswith("/nosy.lua") and refused[0]["code"] == "403", refused
    assert refused[0]["resource"] == "configmaps"


# ---- the start-up rule ----

BROKEN = "return {\n  watch = { apiVersion = 'v1', kind = 'ConfigMap' },\n  reconcile = function(,\n}\n"
BAD_SELECTOR = (FINALIZING % {"extra": "", "finalize": ""}).replace(
    "workers = 1,", 'workers = 1,\n  selector = "a in (b",')


def widget_crd(group):
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"widgets.{group}"},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                               "listKind": "WidgetList"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {
                                       "type": "object",
                                       "x-kubernetes-preserve-unknown-fields": True}}}]}}


WIDGETS = """
return {
  watch = { apiVersion = "%s/v1", kind = "Widget" },
  reconcile = function(ctx, obj) ctx.log.info("reconciled", {}) end,
}
"""


def test_strict_start_up_lists_every_failing_script_and_exits_1(cluster, namespace,
                                                                  klua_factory, tmp_path):
    write_script(tmp_path, "good.lua", FINALIZING % {"extra": "", "finalize": ""})
    write_script(tmp_path, "broken.lua", BROKEN)
    scripts = write_script(tmp_path, "selector.lua", BAD_SELECTOR)
    k = klua_factory(scripts=scripts, args=["--namespace", namespace, "--log-format",
                                            "json"]).start()
    assert k.proc.wait(60) == 1
    failed = {r["file"].rsplit("/", 1)[1]: r["error"] for r in log_records(k)
              if r.get("msg") == "script not loaded"}
    assert set(failed) == {"broken.lua", "selector.lua"}, failed
    assert "selector.lua:5: selector: invalid label selector" in failed["selector.lua"]
    assert "error: 2 scripts could not start (each is logged above); the first: " in k.log()
    assert "caches synced" not in k.log()


def test_strict_start_up_with_several_missing_kinds_says_caches_never_synced(
        cluster, namespace, klua_factory, tmp_path):
    write_script(tmp_path, "gadgets.lua", WIDGETS % "nowhere.klua.dev")
    scripts = write_script(tmp_path, "widgets.lua", WIDGETS % "nowhere.klua.dev")
    k = klua_factory(scripts=scripts, args=["--namespace", namespace]).start()
    assert k.proc.wait(60) == 1
    assert "caches synced" not in k.log(), k.log()   # nothing runs: nothing synced
    assert "error: 2 scripts could not start (each is logged above); the first: " in k.log()
    assert "watch: no resource for kind Widget" in k.log()


def test_strict_start_up_with_a_missing_kind_exits_1_naming_it(cluster, namespace,
                                                               klua_factory, tmp_path):
    write_script(tmp_path, "good.lua", FINALIZING % {"extra": "", "finalize": ""})
    scripts = write_script(tmp_path, "widgets.lua", WIDGETS % "nowhere.klua.dev")
    k = klua_factory(scripts=scripts, args=["--namespace", namespace]).start()
    assert k.proc.wait(60) == 1
    assert "widgets.lua: watch: no resource for kind Widget" in k.log()


def test_dev_skips_failing_scripts_and_retries_them(cluster, namespace, klua_factory,
                                                    tmp_path):
    import uuid
    group = f"e2e{uuid.uuid4().hex[:8]}.klua.dev"
    write_script(tmp_path, "good.lua", FINALIZING % {"extra": "", "finalize": ""})
    write_script(tmp_path, "broken.lua", BROKEN)
    scripts = write_script(tmp_path, "widgets.lua", WIDGETS % group)
    k = start(klua_factory, scripts, namespace, "--dev")
    cluster.apply(cm("a"), namespace)
    wait_reconciles(k, f"{namespace}/a", 1)            # the good one runs
    k.wait_log(r'"msg":"script not loaded; retried when its files change".*broken\.lua')
    k.wait_log(r'"msg":"script not started; retried when its kind appears".*widgets\.lua')

    # a CRD installed later: its script starts without a touch or SIGHUP
    try:
        cluster.apply(widget_crd(group))
        cluster.kubectl("wait", "--for", "condition=established", "--timeout=60s",
                        f"crd/widgets.{group}")
        k.wait_log(r'"msg":"controller loaded","name":"widgets"')
        cluster.apply({"apiVersion": f"{group}/v1", "kind": "Widget",
                       "metadata": {"name": "w"}}, namespace)
        wait_reconciles(k, f"{namespace}/w", 1)
        # a fixed script starts on save
        (scripts / "broken.lua").write_text(
            (FINALIZING % {"extra": "", "finalize": ""}).replace("return {", 'return {\n  name = "fixed",'))
        k.wait_log(r'"changed":"[^"]*fixed \(added\)')
        assert len([r for r in log_records(k) if r.get("msg", "").startswith(
            "script not loaded")]) == 1, "the same failure was reported again"
    finally:
        # waited for: a CRD going away meanwhile would change what later tests discover
        cluster.kubectl("delete", "crd", f"widgets.{group}", "--timeout=60s", check=False)


def test_sighup_retries_a_script_whose_crd_was_installed_since(cluster, namespace,
                                                               klua_factory, tmp_path):
    import signal
    import uuid
    group = f"e2e{uuid.uuid4().hex[:8]}.klua.dev"
    scripts = write_script(tmp_path, "good.lua", FINALIZING % {"extra": "", "finalize": ""})
    k = start(klua_factory, scripts, namespace)
    (scripts / "widgets.lua").write_text(WIDGETS % group)
    k.proc.send_signal(signal.SIGHUP)
    k.wait_log(r'"msg":"script not loaded".*widgets\.lua.*no resource for kind Widget')
    try:
        cluster.apply(widget_crd(group))
        cluster.kubectl("wait", "--for", "condition=established", "--timeout=60s",
                        f"crd/widgets.{group}")
        k.proc.send_signal(signal.SIGHUP)              # the file did not change
        k.wait_log(r'"changed":"widgets \(added\)"')
    finally:
        # waited for: a CRD going away meanwhile would change what later tests discover
        cluster.kubectl("delete", "crd", f"widgets.{group}", "--timeout=60s", check=False)


def test_renamed_script_finalizes_objects_already_being_deleted(cluster, namespace,
                                                                klua_factory, tmp_path):
    # app.lua's finalize never finishes: the object waits, deleting, with klua.dev/app
    stuck = FINALIZING % {"extra": "", "finalize": FINALIZE.replace(
        'ctx.log.info("finalized", {})', 'return { requeue_after = 3600 }')}
    scripts = write_script(tmp_path, "app.lua", stuck)
    k = start(klua_factory, scripts, namespace, "--dev")
    cluster.apply(cm("a"), namespace)
    wait_finalizer(cluster, namespace, "a", "klua.dev/app")
    cluster.kubectl("delete", "configmap", "a", "-n", namespace, "--wait=false")
    wait_for(lambda: cluster.get_json("configmap", "a", "-n", namespace)["metadata"]
             .get("deletionTimestamp"), 30, what="a being deleted")
    # renamed, and fixed: the cleanup the stale finalizer stood for still runs
    # (removed first: webapp starts after app stopped, in this rescan or a later one)
    (scripts / "app.lua").unlink()
    (scripts / "webapp.lua").write_text(FINALIZING % {"extra": "", "finalize": FINALIZE})
    wait_gone(cluster, namespace, "a")
    assert len(reconciles(k, f"{namespace}/a", "finalized")) == 1


# ---- the echo of a reconcile's own write ----

LABELER = """
return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  workers = 1,
  reconcile = function(ctx, obj)
    local labels = obj.metadata.labels or {}
    ctx.log.info("reconciled", { other = labels.other or "" })
    if not labels.touched then
      local _, err = ctx:patch(obj, { metadata = { labels = { touched = "yes" } } })
      if err then error(tostring(err)) end
    end
    return { requeue_after = 3600 }
  end,
}
"""
WATCHER = """
return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  workers = 1,
  reconcile = function(ctx, obj)
    ctx.log.info("watched", { touched = (obj.metadata.labels or {}).touched or "" })
  end,
}
"""


def script_logs(klua, key, controller, msg="reconciled"):
    """The script's own lines (-v 2 adds klua's "reconciled" lines too)."""
    return [r for r in reconciles(klua, key, msg)
            if r.get("controller") == controller and r.get("level") == "info"]


def label_of(cluster, namespace, name, label):
    p = cluster.kubectl("get", "configmap", name, "-n", namespace, "-o", "json", check=False)
    if p.returncode != 0:
        return None
    return (json.loads(p.stdout)["metadata"].get("labels") or {}).get(label)


def test_own_write_echo_does_not_reconcile_again(cluster, namespace, klua_factory, tmp_path):
    """The label patch passes the default predicate, so without echo
    suppression its watch event would run the reconcile again at once and
    skip the requeue_after it asked for. Another writer's change still
    reconciles; another controller on the same kind still sees the write."""
    scripts = write_script(tmp_path, "labeler.lua", LABELER)
    (scripts / "watcher.lua").write_text(textwrap.dedent(WATCHER))
    k = start(klua_factory, scripts, namespace, "-v", "2", "--metrics-addr", "127.0.0.1:0")
    cluster.apply(cm("a"), namespace)
    wait_for(lambda: label_of(cluster, namespace, "a", "touched") == "yes", 60,
             what="the labeler's patch on a")
    # barrier: the echo of a's patch comes on the watch before b's add, and
    # one worker runs the queue in order: a second reconcile of a would run
    # before b's first
    cluster.apply(cm("b"), namespace)
    wait_for(lambda: script_logs(k, f"{namespace}/b", "labeler"), 60, what="labeler on b")
    wait_for(lambda: label_of(cluster, namespace, "b", "touched") == "yes", 60,
             what="the labeler's patch on b")
    cluster.apply(cm("c"), namespace)
    wait_for(lambda: script_logs(k, f"{namespace}/c", "labeler"), 60, what="labeler on c")
    for name in ("a", "b"):
        runs = script_logs(k, f"{namespace}/{name}", "labeler")
        assert len(runs) == 1, runs
    echoes = [r for r in log_records(k)
              if r.get("msg") == "event is the echo of this controller's own write"]
    assert {r["key"] for r in echoes} >= {f"{namespace}/a", f"{namespace}/b"}, echoes
    assert all(r["controller"] == "labeler" for r in echoes), echoes
    from test_metrics import get, value
    addr = [r["addr"] for r in log_records(k) if r.get("msg") == "ops server listening"][0]
    text = get(int(addr.rsplit(":", 1)[1]), "/metrics")[1]
    assert value(text, "klua_reconcile_echoes_skipped_total", controller="labeler") >= 2, text
    assert value(text, "klua_reconcile_echoes_skipped_total", controller="watcher") == 0, text
    # the other controller on the kind saw the labeler's write
    wait_for(lambda: any(r.get("touched") == "yes"
                         for r in script_logs(k, f"{namespace}/a", "watcher", "watched")), 60,
             what="watcher reconciling a after the labeler's patch")
    # another writer's change is no echo
    cluster.kubectl("label", "configmap", "a", "-n", namespace, "other=x")
    wait_for(lambda: [r for r in script_logs(k, f"{namespace}/a", "labeler") if r.get("other") == "x"], 60,
             what="labeler reconciling a after kubectl label")


PARENT = """
return {
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  owns = { { apiVersion = "v1", kind = "Secret" } },
  workers = 1,
  reconcile = function(ctx, obj)
    ctx.log.info("reconciled", {})
    local name = obj.metadata.name .. "-child"
    local _, gerr = ctx:get({ apiVersion = "v1", kind = "Secret" }, obj.metadata.namespace, name)
    if gerr and gerr.reason == "NotFound" then
      local _, err = ctx:create({ apiVersion = "v1", kind = "Secret",
        metadata = { name = name, namespace = obj.metadata.namespace,
                     ownerReferences = { ctx:owner_reference(obj) } },
        stringData = { x = "1" } })
      if err then error(tostring(err)) end
    end
    return { requeue_after = 3600 }
  end,
}
"""


def test_created_child_echo_does_not_reconcile_the_owner_again(cluster, namespace, klua_factory,
                                                               tmp_path):
    """The add event of a child the reconcile created maps to its owner: it is
    that reconcile's own write, so the owner is not reconciled again; the
    child changed by someone else still reconciles it."""
    scripts = write_script(tmp_path, "parent.lua", PARENT)
    k = start(klua_factory, scripts, namespace)
    cluster.apply(cm("a"), namespace)
    wait_for(lambda: cluster.kubectl("get", "secret", "a-child", "-n", namespace,
                                     check=False).returncode == 0, 60, what="child of a")
    # barrier: a-child's add (the Secret watch) is long delivered once b and
    # its child have made their round trips and c has been reconciled after
    # them (one worker, queue in order)
    cluster.apply(cm("b"), namespace)
    wait_for(lambda: cluster.kubectl("get", "secret", "b-child", "-n", namespace,
                                     check=False).returncode == 0, 60, what="child of b")
    cluster.apply(cm("c"), namespace)
    wait_for(lambda: reconciles(k, f"{namespace}/c"), 60, what="c reconciled")
    assert len(reconciles(k, f"{namespace}/a")) == 1, reconciles(k, f"{namespace}/a")
    cluster.kubectl("annotate", "secret", "a-child", "-n", namespace, "x=y")
    wait_for(lambda: len(reconciles(k, f"{namespace}/a")) == 2, 60,
             what="a reconciled after its child changed")
