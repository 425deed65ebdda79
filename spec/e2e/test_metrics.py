"""End-to-end: /metrics, /healthz and /readyz as an operator uses them.

A klua running the Comment controller and a small probe controller (which
creates an object, reads a missing one and keeps reconciling) is scraped:
every family of issue 12 is there with controller-runtime's names, values
that must have moved have moved (rest_client_requests_total 201 after a
create, 404 after a missing GET), `promtool check metrics` accepts the scrape,
a reloaded script counts in klua_script_reloads_total and a removed script's
series disappear. A real Prometheus (Debian's `prometheus`) scrapes klua on
loopback every second and answers sum(rate(controller_runtime_reconcile_total[1m]))
> 0. /healthz turns 503 when an informer cannot list or watch (the API server
behind a proxy that refuses connections) for longer than
--healthz-informer-failure, and 200 again once it can. The monitoring
manifests in deploy/monitoring pass `promtool check rules` and a server-side
dry run. Every wait is on a condition.
"""
import json
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml

from conftest import ROOT, comment, wait_delivered, wait_for

PROBE = """\
-- probe.lua - spec/e2e/test_metrics.py: moves the API metrics on purpose.
return {
  name = "probe",
  watch = { apiVersion = "v1", kind = "ConfigMap" },
  selector = "klua-e2e=probe",
  reconcile = function(ctx, cm)
    -- a live GET of an object that does not exist: a 404
    ctx:get({ apiVersion = "v1", kind = "Secret" }, ctx.namespace, "klua-e2e-missing")
    if (cm.data or {}).probed ~= "yes" then
      local _, cerr = ctx:create({ apiVersion = "v1", kind = "ConfigMap",
        metadata = { name = ctx.name .. "-out", namespace = ctx.namespace },
        data = { from = ctx.name } })                                   -- a 201
      if cerr and cerr.reason ~= "AlreadyExists" then error("create: " .. tostring(cerr)) end
      local _, perr = ctx:patch(cm, { data = { probed = "yes" } })
      if perr then error("patch: " .. tostring(perr)) end
    end
    local n = 0
    for i = 1, 3000 do n = n + i end                  -- Lua instructions to count
    return { requeue_after = 0.5 }                    -- keeps reconciling: rate() > 0
  end,
}
"""

# Every family of issue 12 (histograms by their _count).
FAMILIES = [
    "controller_runtime_reconcile_total", "controller_runtime_reconcile_errors_total",
    "controller_runtime_reconcile_time_seconds_count", "controller_runtime_max_concurrent_reconciles",
    "controller_runtime_active_workers", "workqueue_depth", "workqueue_adds_total",
    "workqueue_retries_total", "workqueue_queue_duration_seconds_count",
    "workqueue_work_duration_seconds_count", "workqueue_unfinished_work_seconds",
    "workqueue_longest_running_processor_seconds", "rest_client_requests_total",
    "rest_client_request_duration_seconds_count", "leader_election_master_status",
    "process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
    "process_max_fds", "process_start_time_seconds", "klua_build_info", "klua_lua_memory_bytes",
    "klua_lua_instructions_total", "klua_script_reloads_total", "klua_http_requests_total",
    "klua_reconcile_echoes_skipped_total",
    "klua_informer_relists_total", "klua_informer_watch_restarts_total", "klua_cache_objects",
    "klua_informer_objects_skipped_total",
]

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def get(port, path):
    """(status, body) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(text):
    """[(name, {label: value}, float)] of a scrape."""
    out = []
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            out.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def value(text, metric, **labels):
    """The sum over the series of metric whose labels include labels, or None."""
    vals = [v for n, ls, v in samples(text)
            if n == metric and all(ls.get(k) == want for k, want in labels.items())]
    return sum(vals) if vals else None


def metrics_port(k):
    return int(k.wait_log(r"ops server listening addr=\S+:(\d+)").group(1))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scripts_dir(tmp_path, comment_too=True):
    d = tmp_path / "scripts"
    d.mkdir()
    (d / "probe.lua").write_text(PROBE)
    if comment_too:
        shutil.copy(ROOT / "lua/comment.lua", d / "comment.lua")
    return d


def probe_configmap(cluster, ns, name="p1"):
    cluster.apply({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": name, "labels": {"klua-e2e": "probe"}},
                   "data": {"a": "b"}}, namespace=ns)


def require(tool):
    if not shutil.which(tool):
        pytest.fail(f"{tool} is not installed (spec/support/deps.sh installs Debian's prometheus)")


# ---- the scrape ----------------------------------------------------------------

def test_every_family_is_there_moves_and_passes_promtool(crds, namespace, klua_factory, github,
                                                         tmp_path):
    require("promtool")
    cluster, ns = crds, namespace
    scripts = scripts_dir(tmp_path)
    k = klua_factory(scripts=scripts, github=github,
                     args=["--namespace", ns, "--metrics-addr", "127.0.0.1:0", "--leader-elect",
                           "--leader-election-namespace", ns]).start()
    port = metrics_port(k)
    probe_configmap(cluster, ns)
    cluster.apply(comment("hello"), namespace=ns)
    wait_delivered(cluster, ns, ["hello"], k)

    def moved():
        text = get(port, "/metrics")[1]
        ok = (value(text, "rest_client_requests_total", code="201", method="POST") or 0) >= 1 \
            and (value(text, "rest_client_requests_total", code="404", method="GET") or 0) >= 1 \
            and (value(text, "klua_http_requests_total", controller="comment", code="201") or 0) >= 1 \
            and (value(text, "controller_runtime_reconcile_total", controller="probe",
                       result="requeue_after") or 0) >= 2
        return ok and text
    text = wait_for(moved, 30, what="a 201, a 404, a ctx:http 201 and probe reconciles in /metrics")

    missing = [f for f in FAMILIES if f != "klua_script_reloads_total" and value(text, f) is None]
    assert not missing, f"families missing from the scrape: {missing}\n{text[:3000]}"
    assert value(text, "leader_election_master_status", name="klua") == 1
    assert value(text, "klua_build_info") == 1
    assert value(text, "klua_cache_objects", resource="v1/configmaps") >= 1
    assert value(text, "workqueue_adds_total", name="probe", controller="probe") >= 2
    assert value(text, "workqueue_queue_duration_seconds_count", name="probe") >= 2
    assert value(text, "workqueue_work_duration_seconds_count", name="probe") >= 2
    assert value(text, "klua_lua_instructions_total", controller="probe") >= 3000
    assert value(text, "klua_lua_memory_bytes", controller="probe") > 0
    assert value(text, "controller_runtime_max_concurrent_reconciles", controller="comment") == 4
    assert value(text, "process_resident_memory_bytes") > 1e6
    assert value(text, "process_open_fds") >= 3
    assert time.time() - 3600 < value(text, "process_start_time_seconds") <= time.time()
    # every send counts in klua_api_requests_total, every answer in rest_client_requests_total
    assert value(text, "klua_api_requests_total") >= value(text, "rest_client_requests_total")
    for name, labels, _ in samples(text):   # the API server's address, never credentials
        if name.startswith("rest_client_"):
            assert re.fullmatch(r"127\.0\.0\.1:\d+", labels["host"]), labels

    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, f"promtool check metrics:\n{p.stdout}{p.stderr}"

    # a reload counts; a removed script's series go
    (scripts / "probe.lua").write_text(PROBE.replace("3000 do", "3001 do"))
    k.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: value(get(port, "/metrics")[1], "klua_script_reloads_total",
                           controller="probe", result="success") == 1, 30,
             what="klua_script_reloads_total{controller=probe,result=success} 1")
    (scripts / "probe.lua").unlink()
    k.proc.send_signal(signal.SIGHUP)

    def probe_gone():
        t = get(port, "/metrics")[1]
        left = [(n, ls) for n, ls, _ in samples(t)
                if ls.get("controller") == "probe" or ls.get("name") == "probe"]
        return not left and t
    t = wait_for(probe_gone, 30, what="every series of the removed probe controller to go")
    assert value(t, "controller_runtime_reconcile_total", controller="comment") is not None


# ---- a real Prometheus -----------------------------------------------------------

def test_prometheus_scrapes_klua_and_sees_reconciles(crds, namespace, klua_factory, tmp_path):
    require("prometheus")
    cluster, ns = crds, namespace
    k = klua_factory(scripts=scripts_dir(tmp_path, comment_too=False),
                     args=["--namespace", ns, "--metrics-addr", "127.0.0.1:0"]).start()
    port = metrics_port(k)
    probe_configmap(cluster, ns)
    prom_port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "klua",
                            "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]}))
    log = open(tmp_path / "prometheus.log", "w")
    prom = subprocess.Popen(["prometheus", f"--config.file={cfg}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        def query(q):
            url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    res = json.loads(r.read())["data"]["result"]
            except (OSError, ValueError, KeyError):
                return None
            return float(res[0]["value"][1]) if res else None

        def rate_positive():
            if prom.poll() is not None:
                raise AssertionError((tmp_path / "prometheus.log").read_text()[-3000:])
            v = query("sum(rate(controller_runtime_reconcile_total[1m]))")
            return v is not None and v > 0 and v
        v = wait_for(rate_positive, 90, interval=0.5,
                     what="Prometheus: sum(rate(controller_runtime_reconcile_total[1m])) > 0")
        print(f"Prometheus: sum(rate(controller_runtime_reconcile_total[1m])) = {v:.2f}/s")
        assert query('up{job="klua"}') == 1
        assert query('sum(workqueue_adds_total{name="probe"})') > 0
    finally:
        prom.terminate()
        try:
            prom.wait(10)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()


# ---- /healthz ----------------------------------------------------------------------

def test_healthz_fails_while_an_informer_cannot_list_or_watch(crds, namespace, klua_factory,
                                                             tmp_path):
    from test_resilience import CutProxy
    from conftest import Cluster
    cluster, ns = crds, namespace
    proxy = CutProxy(tmp_path, cluster.env["KLUA_APISERVER_PORT"])
    try:
        via = Cluster(cluster.dir)
        via.kubeconfig = str(tmp_path / "kubeconfig-proxy")
        (tmp_path / "kubeconfig-proxy").write_text(re.sub(
            r"server: https://127\.0\.0\.1:\d+", f"server: https://127.0.0.1:{proxy.port}",
            (cluster.dir / "kubeconfig").read_text()))
        probe_configmap(cluster, ns)
        k = klua_factory(scripts=scripts_dir(tmp_path, comment_too=False), cluster=via,
                         args=["--namespace", ns, "--metrics-addr", "127.0.0.1:0",
                               "--healthz-informer-failure", "2"]).start()
        port = metrics_port(k)
        wait_for(lambda: get(port, "/readyz")[0] == 200, 30, what="/readyz 200")
        assert get(port, "/healthz") == (200, "ok")

        proxy.block()          # the API server looks down: every list and watch fails
        status, body = wait_for(lambda: (lambda r: r[0] == 503 and r)(get(port, "/healthz")), 60,
                                what="/healthz 503 while the informer cannot watch")
        assert "informer v1/configmaps: cannot list or watch for" in body, body
        assert "--healthz-informer-failure 2 s" in body, body
        assert get(port, "/readyz")[0] == 200, "readiness stays: the caches synced"

        proxy.unblock()
        n = [0]

        def healthy():         # a change makes the recovered watch deliver an event
            n[0] += 1
            cluster.kubectl("annotate", "-n", ns, "configmap", "p1", f"touch=t{n[0]}", "--overwrite")
            return get(port, "/healthz") == (200, "ok")
        wait_for(healthy, 90, interval=1, what="/healthz 200 once the informer watches again")
        assert k.proc.poll() is None
    finally:
        proxy.stop()


# ---- deploy/monitoring --------------------------------------------------------------

MONITORING = ROOT / "deploy/monitoring"
EXPORTED = {f.rsplit("_count", 1)[0] if f.endswith("_seconds_count") else f for f in FAMILIES} | {
    "klua_api_requests_total",
    "klua_api_list_requests_total", "klua_api_watch_requests_total"}


def prometheus_rule():
    return yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())


def exprs():
    """Every PromQL expression of the rules and of the dashboard."""
    out = [r["expr"] for g in prometheus_rule()["spec"]["groups"] for r in g["rules"]]
    dash = json.loads((MONITORING / "klua-dashboard.json").read_text())
    for p in dash["panels"]:
        out += [t["expr"] for t in p.get("targets", [])]
    return out


def test_rules_and_dashboard_use_only_metrics_klua_exports():
    used = set()
    for e in exprs():
        # names before a selector or a range: metric names (label names sit inside {})
        bare = re.sub(r'\{[^}]*\}', "{}", e)
        bare = re.sub(r'\[[^\]]*\]', "[]", bare)
        for name in re.findall(r'\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{', bare):
            used.add(name)
    assert "up" in used
    used.discard("up")
    norm = {re.sub(r"_(bucket|sum|count)$", "", n) for n in used}
    unknown = sorted(n for n in norm if n not in EXPORTED)
    assert not unknown, f"the monitoring manifests use metrics klua does not export: {unknown}"
    # and the dashboard shows every family klua exports
    dash_text = (MONITORING / "klua-dashboard.json").read_text()
    unseen = sorted(f for f in EXPORTED if not f.startswith("klua_api_") and f not in dash_text)
    assert not unseen, f"families without a dashboard panel: {unseen}"


def test_rules_pass_promtool_and_the_alerts_fire(tmp_path):
    require("promtool")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": prometheus_rule()["spec"]["groups"]}))
    p = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, f"promtool check rules:\n{p.stdout}{p.stderr}"
    names = {r["alert"] for g in prometheus_rule()["spec"]["groups"] for r in g["rules"]}
    for want in ("KluaReconcileErrors", "KluaWorkqueueDepthGrowing", "KluaWorkqueueLatencyHigh",
                 "KluaLeaderLost", "KluaScriptReloadFailed"):
        assert want in names
    # promtool's rule unit tests: the alerts fire on the series klua exports
    # (the same rules without their annotations, which the tests would
    # otherwise have to repeat word for word)
    bare = tmp_path / "rules-bare.yaml"
    groups = prometheus_rule()["spec"]["groups"]
    for g in groups:
        for r in g["rules"]:
            r.pop("annotations", None)
    bare.write_text(yaml.safe_dump({"groups": groups}))
    j = 'job="klua-metrics", namespace="klua-system"'
    tests = {"rule_files": [str(bare)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            {"series": f'controller_runtime_reconcile_total{{{j}, controller="c", result="error"}}',
             "values": "0+30x40"},
            {"series": f'controller_runtime_reconcile_total{{{j}, controller="c", result="success"}}',
             "values": "0+30x40"},
            {"series": f'controller_runtime_reconcile_errors_total{{{j}, controller="c"}}',
             "values": "0+30x40"},
            {"series": f'workqueue_depth{{{j}, name="c", controller="c"}}', "values": "100+10x40"},
            {"series": f'leader_election_master_status{{{j}, name="klua", pod="a"}}', "values": "1 1 0x40"},
            {"series": f'leader_election_master_status{{{j}, name="klua", pod="b"}}', "values": "0x42"},
            {"series": f'klua_script_reloads_total{{{j}, controller="c", result="error"}}',
             "values": "0 0 1 1 1"},
            {"series": f'up{{{j}}}', "values": "1x42"},
        ],
        "alert_rule_test": [
            {"eval_time": "30m", "alertname": "KluaReconcileErrors", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "namespace": "klua-system", "controller": "c"}}]},
            {"eval_time": "30m", "alertname": "KluaWorkqueueDepthGrowing", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "namespace": "klua-system", "name": "c"}}]},
            {"eval_time": "10m", "alertname": "KluaLeaderLost", "exp_alerts": [
                {"exp_labels": {"severity": "critical", "namespace": "klua-system", "name": "klua"}}]},
            {"eval_time": "4m", "alertname": "KluaScriptReloadFailed", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "namespace": "klua-system", "controller": "c",
                                "result": "error", "job": "klua-metrics"}}]},
            {"eval_time": "30m", "alertname": "KluaDown", "exp_alerts": []},
        ]}]}
    t = tmp_path / "rules_test.yaml"
    t.write_text(yaml.safe_dump(tests))
    p = subprocess.run(["promtool", "test", "rules", str(t)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, f"promtool test rules:\n{p.stdout}{p.stderr}"


def minimal_crd(plural, kind):
    """Just enough of the Prometheus Operator's CRD for a server-side dry run."""
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.monitoring.coreos.com"},
            "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind,
                               "listKind": kind + "List"},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                         "openAPIV3Schema": {"type": "object", "properties": {"spec": {
                             "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]}}


def test_monitoring_manifests_pass_a_server_side_dry_run(cluster):
    # The test cluster has no Prometheus Operator: install minimal CRDs for
    # its two kinds (the real ones validate more; these check the rest).
    crds = [minimal_crd("servicemonitors", "ServiceMonitor"),
            minimal_crd("prometheusrules", "PrometheusRule")]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(crds))
    for c in crds:
        cluster.kubectl("wait", "--for", "condition=established", "--timeout=60s",
                        "crd/" + c["metadata"]["name"])
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "klua-system"}}))
    p = subprocess.run(["kubectl", "kustomize", str(MONITORING)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr

    def dry_run():   # discovery of fresh CRDs can lag a moment behind "established"
        r = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=p.stdout, check=False)
        return r.returncode == 0 and r
    r = wait_for(dry_run, 30, interval=0.5, what="kubectl apply --dry-run=server -k deploy/monitoring")
    for obj in ("service/klua-metrics", "servicemonitor.monitoring.coreos.com/klua",
                "prometheusrule.monitoring.coreos.com/klua", "configmap/klua-grafana-dashboard"):
        assert f"{obj} created (server dry run)" in r.stdout, r.stdout
    docs = list(yaml.safe_load_all(p.stdout))
    svc = next(d for d in docs if d["kind"] == "Service")
    sm = next(d for d in docs if d["kind"] == "ServiceMonitor")
    # the ServiceMonitor selects the Service, which selects klua's pods on their metrics port
    assert all(svc["metadata"]["labels"].get(k) == v
               for k, v in sm["spec"]["selector"]["matchLabels"].items())
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"] == "metrics"
    dep = subprocess.run(["kubectl", "kustomize", str(ROOT / "deploy")], capture_output=True,
                         text=True, timeout=60)
    if dep.returncode == 0:   # deploy/scripts may not be synced here; test_deploy covers it
        pod = next(d for d in yaml.safe_load_all(dep.stdout) if d and d["kind"] == "Deployment")
        labels = pod["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())
