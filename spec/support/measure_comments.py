#!/usr/bin/env python3
"""measure_comments.py CLUSTER_DIR [N] - the Comment controller's figures.

Starts the stand-in GitHub and bin/klua (release build) against a running
control plane (spec/support/cluster.sh up DIR), then measures:
  * latency: kubectl apply of one Comment -> its Delivered=True, 5 times;
  * throughput: N Comments (default 1000, ten per issue) applied at once -> all delivered,
    reconciles per second, with the GitHub mutating-request gap set to 0.
Prints plain lines; nothing here asserts a time.
"""
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "spec/e2e"))
import conftest  # noqa: E402  (the e2e fixtures' helper classes)


def metric(port, family):
    """The sum of family's series for controller "comment" (0 when absent)."""
    import urllib.request
    body = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port).read().decode()
    return sum(int(float(line.split()[-1])) for line in body.splitlines()
               if line.startswith(family + "{") and 'controller="comment"' in line)


def main():
    cdir = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    conftest.KLUA = os.environ.get("KLUA_BIN", str(ROOT / "bin/klua"))
    cluster = conftest.Cluster(cdir)
    cluster.kubectl("apply", "-f", str(ROOT / "crds"))
    cluster.kubectl("wait", "--for", "condition=established", "--timeout=60s",
                    "crd/comments.github.klua.dev")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="klua-measure-"))
    gh = conftest.GitHub(tmp)
    ns = "measure-%d" % int(time.time())
    cluster.kubectl("create", "namespace", ns)
    # --namespace: Comments other runs left behind must not post here
    k = conftest.Klua(cluster, tmp, ROOT / "lua", github=gh,
                      args=["--namespace", ns, "--metrics-addr", "127.0.0.1:0"],
                      env={"KLUA_GITHUB_MIN_GAP": "0"}).start()
    try:
        port = k.wait_log(r"ops server listening addr=\S*:(\d+)", 60).group(1)
        k.wait_log("caches synced", 60)
        # the stand-in's primary limit (5000/h) is not what is measured here
        gh.call("POST", "/_fake/ratelimit", {"remaining": 1000000, "reset_in": 3600})
        lat = []
        for i in range(5):
            name = "lat-%d" % i
            obj = {"apiVersion": "github.klua.dev/v1", "kind": "Comment",
                   "metadata": {"name": name, "namespace": ns},
                   "spec": {"repository": "klua-dev/measure", "issue": 1, "message": "m %d" % i}}
            t0 = time.monotonic()
            cluster.apply(obj)
            while True:
                st = cluster.kubectl("get", "comment", name, "-n", ns, "-o",
                                     "jsonpath={.status.conditions[?(@.type==\"Delivered\")].status}").stdout
                if st == "True":
                    break
                time.sleep(0.01)
            lat.append(time.monotonic() - t0)
        print("latency apply->Delivered=True: median %.0f ms, min %.0f ms, max %.0f ms (5 runs, "
              "includes kubectl start-up of ~%s)" % (statistics.median(lat) * 1000, min(lat) * 1000,
                                                    max(lat) * 1000, "40-80 ms"))
        items = [{"apiVersion": "github.klua.dev/v1", "kind": "Comment",
                  "metadata": {"name": "tp-%04d" % i, "namespace": ns},
                  "spec": {"repository": "klua-dev/measure", "issue": 2 + i % 100,
                           "message": "t %d" % i}}
                 for i in range(n)]
        t0 = time.monotonic()
        cluster.apply({"apiVersion": "v1", "kind": "List", "items": items})
        t_applied = time.monotonic()

        def delivered():
            out = cluster.kubectl("get", "comments", "-n", ns, "-o", "json").stdout
            return sum(1 for c in json.loads(out)["items"]
                       if c["metadata"]["name"].startswith("tp-")
                       and any(x.get("type") == "Delivered" and x.get("status") == "True"
                               for x in c.get("status", {}).get("conditions", [])))
        while delivered() < n:
            time.sleep(0.5)
        t1 = time.monotonic()
        posted = sum(1 for c in gh.comments() if c.get("issue", 0) >= 2)
        print("throughput: %d Comments delivered in %.1f s after the apply returned "
              "(%.1f s including kubectl apply): %.0f Comments/s; comments on GitHub: %d"
              % (n, t1 - t_applied, t1 - t0, n / (t1 - t0), posted))
        print("reconciles to deliver %d Comments: %d (echoes of klua's own writes skipped: %d)"
              % (n + 5, metric(port, "controller_runtime_reconcile_total"),
                 metric(port, "klua_reconcile_echoes_skipped_total")))
        # Reconciles per second of the runtime itself: a restart reconciles
        # every cached Comment once; all are delivered, so each reconcile
        # reads the cache, compares, and returns without a GitHub call.
        k.stop()
        k.args = ["--namespace", ns, "--metrics-addr", "127.0.0.1:0"]
        k.start()
        m = k.wait_log(r"ops server listening addr=\S*:(\d+)", 60)
        port = m.group(1)
        k.wait_log("caches synced", 60)
        t0 = time.monotonic()

        while metric(port, "controller_runtime_reconcile_total") < n + 5:
            time.sleep(0.05)
        dt = time.monotonic() - t0
        print("resync after restart: %d no-op reconciles in %.2f s = %.0f reconciles/s "
              "(metrics refresh every 100 ms bounds the resolution)" % (n + 5, dt, (n + 5) / dt))
        pid = k.proc.pid
        rss = [l for l in open("/proc/%d/status" % pid) if l.startswith(("VmRSS", "VmHWM"))]
        print("klua memory with %d Comments cached: %s" % (n + 5, " ".join(x.split(":")[0] + "=" + x.split(":")[1].strip() for x in rss)))
    finally:
        k.stop()
        gh.stop()
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


if __name__ == "__main__":
    main()
