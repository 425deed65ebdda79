"""Exec credential plugins under a running `klua run`, against the real API server.

- The plugin runs on the event loop, not in its way: while a credential
  refresh is still running, /healthz answers and another object's event is
  reconciled; every request that needs the credential meanwhile waits for
  that one run, then goes out with its token.
- A failing plugin: its error reaches the log once, in plain words, without
  the token it printed; klua does not spawn it in a hot loop, and carries on
  once the plugin works again.

The plugin is spec/support/execplugin-fixtures/refresh.sh: it counts its runs
in a file, holds its answer while a file exists, fails while another does.
"""
import re
import time
import urllib.request

from conftest import ROOT, wait_for
from test_hostile import kubeconfig_with

FIXTURES = ROOT / "spec/support/execplugin-fixtures"

# Marks each labelled ConfigMap seen=yes; logs before the write.
SCRIPT = """
return {
  watch    = { apiVersion = "v1", kind = "ConfigMap" },
  selector = "klua.dev/exec-test=true",
  workers  = 4,   -- one reconcile waiting for the credential must not hold the next
  reconcile = function(ctx, cm)
    if (cm.data or {}).seen == "yes" then
      return nil
    end
    ctx.log.info("reconciling", { name = cm.metadata.name })
    local _, err = ctx:patch(cm, { data = { seen = "yes" } })
    if err then
      error("patching " .. ctx.key .. ": " .. tostring(err))
    end
  end,
}
"""


class Plugin:
    """refresh.sh's files under tmp_path."""

    def __init__(self, cluster, tmp_path):
        self.calls = tmp_path / "plugin.calls"
        self.hold, self.go, self.fail = (tmp_path / "hold", tmp_path / "go", tmp_path / "fail")
        self.kubeconfig = kubeconfig_with(cluster, tmp_path, f"""    exec:
      apiVersion: client.authentication.k8s.io/v1
      command: {FIXTURES / "refresh.sh"}
      env:
      - {{name: FIXTURE_CALLS, value: "{self.calls}"}}
      - {{name: FIXTURE_HOLD, value: "{self.hold}"}}
      - {{name: FIXTURE_GO, value: "{self.go}"}}
      - {{name: FIXTURE_FAIL, value: "{self.fail}"}}
      - {{name: FIXTURE_TOKEN_FILE, value: "{cluster.dir / 'admin.token'}"}}""")

    def lines(self):
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def runs(self):
        return sum(1 for ln in self.lines() if ln.startswith("started"))


def start(klua_factory, tmp_path, cluster, plugin, ns):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "exectest.lua").write_text(SCRIPT)
    view = type(cluster)(cluster.dir)
    view.kubeconfig = plugin.kubeconfig           # klua talks through the plugin
    k = klua_factory(scripts=scripts, cluster=view,
                     args=["--namespace", ns, "--metrics-addr", "127.0.0.1:0"]).start()
    addr = k.wait_log(r"ops server listening addr=(\S+)").group(1)
    return k, "http://" + addr.replace("0.0.0.0", "127.0.0.1")


def labelled_cm(cluster, ns, name):
    cluster.kubectl("create", "configmap", name, "-n", ns, "--from-literal=x=1")
    cluster.kubectl("label", "configmap", name, "-n", ns, "klua.dev/exec-test=true")


def seen(cluster, ns, name):
    cm = cluster.get_json("configmap", name, "-n", ns)
    return (cm.get("data") or {}).get("seen") == "yes"


def healthz(url):
    # generous: a loop blocked by the plugin answers once the plugin is killed
    # (10 s); what tells blocked from not is whether the held run answered
    with urllib.request.urlopen(url + "/healthz", timeout=30) as r:
        return r.status


def test_reconciles_and_health_go_on_while_the_plugin_refreshes(cluster, namespace,
                                                                  klua_factory, tmp_path):
    ns = namespace
    plugin = Plugin(cluster, tmp_path)
    k, url = start(klua_factory, tmp_path, cluster, plugin, ns)
    labelled_cm(cluster, ns, "warm")
    wait_for(lambda: seen(cluster, ns, "warm"), 60, what="warm reconciled (klua is up)")

    # From now on a run holds its answer until the test says go.
    plugin.hold.write_text("")
    labelled_cm(cluster, ns, "a")          # its patch needs a fresh credential: a run starts
    held = wait_for(lambda: [ln for ln in plugin.lines() if ln.startswith("held")], 60,
                    what="a plugin run holding its answer")
    n = held[0].split()[1]
    # The plugin is still running; the loop is not waiting for it.
    t0 = time.monotonic()
    assert healthz(url) == 200
    print(f"/healthz during the held plugin run: {(time.monotonic() - t0) * 1000:.1f} ms")
    labelled_cm(cluster, ns, "b")
    k.wait_log(r"reconciling.*name=\"?b\b", 60)
    assert f"answered {n}" not in plugin.lines()   # still the same run, still waiting
    runs_while_held = plugin.runs()

    plugin.go.write_text("")
    wait_for(lambda: seen(cluster, ns, "a") and seen(cluster, ns, "b"), 60,
             what="a and b patched with the refreshed credential")
    lines = plugin.lines()
    # The held run answered (a blocking plugin would have been killed at its timeout
    # first, with the loop stopped until then), and both patches shared it.
    assert f"answered {n}" in lines, lines
    assert runs_while_held == int(n), lines
    assert len([ln for ln in lines if ln.startswith("held")]) == 1, lines
    print(f"plugin runs: {plugin.runs()}; held run {n} answered after b was reconciled")


def test_failing_plugin_is_logged_once_backed_off_and_recovered(cluster, namespace,
                                                                 klua_factory, tmp_path):
    ns = namespace
    plugin = Plugin(cluster, tmp_path)
    plugin.fail.write_text("")
    k, url = start(klua_factory, tmp_path, cluster, plugin, ns)
    k.wait_log(r"exec credential plugin failed")
    # klua keeps asking (discovery waits for the API server), but not in a hot loop:
    # at least 4 runs means it backed off 0.5 + 1 + 2 s in between.
    wait_for(lambda: plugin.runs() >= 4, 60, what="the plugin run again after backoffs")
    runs = plugin.runs()
    plugin.fail.unlink()
    labelled_cm(cluster, ns, "after")
    wait_for(lambda: seen(cluster, ns, "after"), 90, what="reconciled once the plugin works")
    k.wait_log(r"exec credential plugin works again")
    log = k.log()
    failed = [ln for ln in log.splitlines() if "exec credential plugin failed" in ln]
    assert len(failed) == 1, failed                   # once, not once per run or request
    assert re.search(r"exec plugin \S+refresh\.sh failed: exit status 1: refresh-plugin: "
                     r"the identity provider said no", failed[0]), failed[0]
    assert "s3cr3t" not in log                        # the token it printed is never shown
    # stderr is not copied through raw: the words only appear inside klua's messages
    raw = [ln for ln in log.splitlines() if ln.startswith("refresh-plugin:")]
    assert not raw, raw
    print(f"failing plugin: {runs} runs before it was fixed; log line: {failed[0]}")
