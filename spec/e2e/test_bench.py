"""The benchmark (bench/run.sh, issue 5) in its tiny mode, against the test cluster.

A smoke test only: the Go peers build from bench/peers at their pinned
versions, and one tiny run of every scenario prints its table and RATIO lines
with klua and both peers measured. No time or memory is asserted here; the
numbers of a tiny run on a shared machine mean nothing.
"""
import os
import re
import subprocess

from conftest import ROOT


def test_tiny_benchmark_prints_ratios(cluster):
    env = dict(os.environ)
    env["BENCH_KUBECONFIG"] = cluster.kubeconfig
    # The release build, as `make bench` uses; the sanitizer build would measure ASan.
    release = ROOT / "bin/klua"
    if release.exists():
        env["KLUA_BIN"] = str(release)
    p = subprocess.run(["sh", str(ROOT / "bench/run.sh"), "tiny"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=1200)
    out = p.stdout
    assert p.returncode == 0, p.stderr[-3000:]
    for peer in ("crpeer", "informer", "loader"):
        assert (ROOT / "build/bench" / peer).exists(), f"{peer} was not built"

    # Nothing that should have run is reported missing (hot reload may be).
    missing = [l for l in out.splitlines() if l.startswith("MISSING ")]
    assert not [l for l in missing if not l.startswith("MISSING hot_reload")], missing

    assert re.search(r"^MACHINE nproc=\d+ mem=\d+MiB", out, re.M), out
    assert re.search(r"^VERSION sigs.k8s.io/controller-runtime v0\.\d+\.\d+$", out, re.M), out
    assert re.search(r"^PARAMS mode=tiny N=200 ", out, re.M), out

    ratios = {}
    for scenario, metric, value in re.findall(r"^RATIO (\S+) (\S+) (\S+)$", out, re.M):
        ratios[(scenario, metric)] = float(value)
    for key in [("initial_sync", "synced_ms"), ("initial_sync", "peak_rss_bytes"),
                ("initial_sync", "synced_ms_vs_kubectl"),
                ("footprint", "idle_rss_bytes"), ("footprint", "binary_bytes"),
                ("event_latency_100", "max_ms"), ("throughput", "objects_per_s")]:
        assert key in ratios, f"no RATIO {key[0]} {key[1]} in:\n{out}"
        assert ratios[key] > 0, (key, ratios[key])
    # Bytes per cached object is measured, though with 200 objects it is noise.
    assert re.search(r"^initial_sync +bytes_per_object ", out, re.M), out
