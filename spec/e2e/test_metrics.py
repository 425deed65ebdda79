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
    "klua_informer_relists_total", "klua_informer_watch_restarts_total", "klua_cache_objects",
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
