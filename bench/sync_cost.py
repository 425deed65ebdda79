#!/usr/bin/env python3
"""sync_cost.py - where the initial sync's time goes: klua and the floors, with
the CPU each side spent.

    python3 bench/sync_cost.py --cluster DIR --ns NS [--reps 8] [--klua bin/klua]

DIR is a control plane of `spec/support/cluster.sh up DIR` (its kubeconfig and
the API server's and etcd's pids come from DIR/env); NS holds the Widgets
already (e.g. `build/bench/loader create -namespace NS -count 10000`). Each
repetition runs, alternating the order: klua with the streaming list, klua with
paged LISTs (KLUA_WATCH_LIST=0), and bench/harness.py's two floors (the
watch-list read to its initial-events-end bookmark, and the pages of 500 on one
keep-alive connection). For each: wall time (klua: process start to "caches
synced"; floors: connect to the end), the client's own CPU (klua only), and the
CPU the kube-apiserver and etcd spent meanwhile, from /proc/PID/stat (10 ms
ticks). Medians and every wall time are printed. Nothing here asserts a time.

Uses: bench/harness.py (the floors), bench/scripts/noop, /proc.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

TCK = os.sysconf("SC_CLK_TCK")


def cpu_ms(pid):
    with open(f"/proc/{pid}/stat") as f:
        p = f.read().rsplit(")", 1)[1].split()
    return (int(p[11]) + int(p[12])) * 1000 / TCK


def read_env(d):
    env = {}
    with open(os.path.join(d, "env")) as f:
        for line in f:
            line = line.strip()
            if line.startswith("export ") and "=" in line:
                k, _, v = line[7:].partition("=")
                env[k] = v.strip("'\"")
    return env


class Cost:
    def __init__(self, a):
        self.a = a
        env = read_env(a.cluster)
        self.kc = os.path.join(a.cluster, "kubeconfig")
        self.api = int(env["KLUA_APISERVER_PID"])
        self.etcd = int(env["KLUA_ETCD_PID"])
        ns = argparse.Namespace(mode="short", kubeconfig=self.kc, reps=1, skip_klua="",
                                out=os.path.join(a.out), ns_prefix="", klua=a.klua)
        self.floors = harness.Bench(ns)
        self.scripts = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts", "noop")

    def server(self):
        return cpu_ms(self.api), cpu_ms(self.etcd)

    def klua(self, paged):
        env = dict(os.environ, KLUA_BENCH_EXPECT="-1")
        if paged:
            env["KLUA_WATCH_LIST"] = "0"
        argv = [self.a.klua, "run", "--scripts", self.scripts, "--kubeconfig", self.kc,
                "--namespace", self.a.ns, "--qps", "100000", "--burst", "100000"]
        a0, e0 = self.server()
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env)
        got = None
        for raw in p.stdout:   # read to the end: a full pipe would block klua
            if got is None and b"caches synced" in raw:
                wall = (time.monotonic() - t0) * 1000
                a1, e1 = self.server()
                got = (wall, cpu_ms(p.pid), a1 - a0, e1 - e0)
                p.terminate()
        p.wait()
        if got is None:
            raise RuntimeError(f"klua exited with {p.returncode} before its caches synced")
        return got

    def floor(self, fn):
        a0, e0 = self.server()
        ms, _ = fn(self.a.ns)
        a1, e1 = self.server()
        return (ms, 0.0, a1 - a0, e1 - e0)

    def run(self):
        progs = {
            "klua (streaming)": lambda: self.klua(False),
            "floor watch-list": lambda: self.floor(self.floors.watchlist_floor),
            "klua (paged)": lambda: self.klua(True),
            "floor paged": lambda: self.floor(self.floors.http_floor),
        }
        res = {k: [] for k in progs}
        names = list(progs)
        for rep in range(self.a.reps):
            for k in (names if rep % 2 == 0 else names[::-1]):
                res[k].append(progs[k]())
        print(f"{'':18s} {'wall ms':>8s} {'own CPU':>8s} {'apiserver CPU':>14s} {'etcd CPU':>9s}"
              "   (medians of %d; every wall time)" % self.a.reps)
        for k, v in res.items():
            cols = [statistics.median(c) for c in zip(*v)]
            own = f"{cols[1]:8.0f}" if k.startswith("klua") else f"{'-':>8s}"
            print(f"{k:18s} {cols[0]:8.0f} {own} {cols[2]:14.0f} {cols[3]:9.0f}   "
                  + " ".join(f"{x[0]:.0f}" for x in v))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cluster", required=True, help="a directory of spec/support/cluster.sh up")
    ap.add_argument("--ns", required=True, help="the namespace holding the Widgets")
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--klua", default="bin/klua")
    ap.add_argument("--out", default="build/sync_cost")
    a = ap.parse_args()
    Cost(a).run()


if __name__ == "__main__":
    main()
