#!/usr/bin/env python3
"""harness.py - klua's benchmark against client-go and controller-runtime.

bench/run.sh builds everything, starts a control plane and calls this with
its kubeconfig. This file runs the scenarios of issue 5, measuring every
program from the outside in the same way:

  initial_sync   N Widgets already stored; process start to "synced" (the
                 informer holds the list) and to every object reconciled once;
                 peak RSS (VmHWM); RSS per cached object above the footprint
                 run. klua syncs with the streaming list (watch-list) when the
                 server has it; "klua-paged" is klua forced to paged LISTs
                 (KLUA_WATCH_LIST=0). Floors: client-go's bare informer, and
                 the list itself paged through `kubectl get --raw`, over one
                 keep-alive HTTPS connection from Python (https-keepalive),
                 and streamed as a watch-list on one connection
                 (https-watchlist: read to the initial-events-end bookmark).
  footprint      a few Widgets: start to ready, idle RSS, stripped binary size.
  event_latency  the loader patches spec.seq at fixed rates; a reconcile logs
                 the seq it saw with its own clock; latency = seen - accepted.
  throughput     T Widgets stored before the controller starts; it patches
                 status.run to a token new for each run, once per object;
                 objects/s from synced to the last status written (a separate
                 watcher notices that).
  hot_reload     klua only: a script saved to its new code reconciling.

Programs are alternated (klua, peers, then the reverse order) and repeated;
medians are quoted. Output: a table, then `RATIO <scenario> <metric> <value>`
lines (value = klua / peer). Nothing here asserts a time.

Uses: the programs named on the command line, kubectl, /proc.
"""
import argparse
import base64
import bisect
import http.client
import json
import os
import platform
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import yaml

MODES = {
    # n: initial-sync objects; small: footprint objects; lat_objs/rates/lat_s:
    # event latency; tp: throughput objects; reps: repetitions; reload_scripts.
    "tiny": dict(n=200, small=20, lat_objs=50, rates=[20, 100], lat_s=2, tp=200, reps=1,
                 reload=[1, 3]),
    "short": dict(n=10000, small=100, lat_objs=1000, rates=[50, 500], lat_s=10, tp=5000, reps=3,
                  reload=[1, 20]),
    "long": dict(n=100000, small=100, lat_objs=5000, rates=[50, 500], lat_s=60, tp=5000, reps=5,
                 reload=[1, 20]),
}
SYNCED = re.compile(r"BENCH synced|caches synced")
ALL = re.compile(r"BENCH reconciled_all")
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')
WORKERS = 4


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def fields(line):
    return {k: v.strip('"') for k, v in FIELD.findall(line)}


class Proc:
    """A child process whose output lines are stamped as they arrive."""

    def __init__(self, name, argv, env=None, logdir=None):
        self.name = name
        self.lines = []          # (monotonic seconds, text)
        self.cond = threading.Condition()
        self.logdir = logdir
        self.t0 = time.monotonic()
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=env)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.p.stdout:
            t = time.monotonic()
            with self.cond:
                self.lines.append((t, raw.decode("utf-8", "replace").rstrip("\n")))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, pattern, timeout, start=0):
        """Monotonic stamp of the first line matching pattern (from index start)."""
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    if pattern.search(self.lines[i][1]):
                        return self.lines[i][0]
                    i += 1
                if self.p.poll() is not None and not self.reader.is_alive():
                    raise RuntimeError(f"{self.name} exited with status {self.p.returncode} "
                                       f"before printing /{pattern.pattern}/; last lines:\n"
                                       + self.tail())
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{self.name} printed no /{pattern.pattern}/ within "
                                       f"{timeout:.0f}s; last lines:\n" + self.tail())
                self.cond.wait(min(left, 0.5))

    def tail(self, n=15):
        with self.cond:
            return "\n".join("    " + l for _, l in self.lines[-n:])

    def mem(self):
        """VmRSS, VmHWM and RssAnon (RSS less mapped files: shared libraries) in
        bytes, and Pss (shared pages divided among the processes sharing them)."""
        out = {}
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "RssAnon"):
                    out[k] = int(v.split()[0]) * 1024
        try:
            with open(f"/proc/{self.p.pid}/smaps_rollup") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k == "Pss":
                        out["Pss"] = int(v.split()[0]) * 1024
        except OSError:
            pass
        return out

    def cpu_ms(self):
        with open(f"/proc/{self.p.pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) * 1000 / os.sysconf("SC_CLK_TCK")

    def stop(self, save_as=None):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.reader.join(5)
        if save_as and self.logdir:
            with open(os.path.join(self.logdir, save_as + ".log"), "w") as f:
                f.writelines(f"{t - self.t0:10.4f} {l}\n" for t, l in self.lines)


class Bench:
    def __init__(self, a):
        self.a = a
        self.m = MODES[a.mode]
        self.kc = a.kubeconfig
        self.prefix = a.ns_prefix
        self.results = {}        # scenario -> metric -> program -> [values]
        self.errors = {}         # program -> first error
        self.notes = []
        self.missing = {}        # scenario -> why it was not measured
        self.seq = 1
        os.makedirs(a.out, exist_ok=True)
        self.logdir = os.path.join(a.out, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.scriptdir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts")
        self.programs = ["klua", "controller-runtime", "client-go"]
        if a.reps:
            self.m = dict(self.m, reps=a.reps)
        if a.skip_klua:
            self.programs.remove("klua")
            self.errors["klua"] = a.skip_klua

    # --- helpers -------------------------------------------------------------

    def klua_flags(self):
        """Extra flags for every `klua run`: client-side throttling off like the peers."""
        qps = [] if self.a.klua_qps == "default" else ["--qps", self.a.klua_qps,
                                                        "--burst", self.a.klua_qps]
        return qps + self.a.klua_arg

    def ns(self, name):
        return f"{self.prefix}{name}"

    def record(self, scenario, metric, prog, value):
        self.results.setdefault(scenario, {}).setdefault(metric, {}).setdefault(prog, []).append(value)

    def order(self, rep, progs):
        progs = [p for p in progs
                 if p in self.programs or (p == "klua-paged" and "klua" in self.programs)]
        return progs if rep % 2 == 0 else list(reversed(progs))

    def loader(self, *args, timeout=600):
        argv = [os.path.join(self.a.peers, "loader"), args[0], "-kubeconfig", self.kc, *args[1:]]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"loader {args[0]} failed: {p.stderr.strip()}")
        return p.stdout

    def create(self, ns, count):
        # 100k objects on a busy 2-core machine take longer than the defaults
        out = self.loader("create", "-namespace", ns, "-count", str(count), "-timeout", "60m",
                          timeout=3600)
        m = re.search(r"METRIC create_per_s (\S+)", out)
        log(f"created {count} Widgets in {ns} ({m.group(1) if m else '?'}/s)")

    def start(self, prog, ns, mode, expect, tag, run="bench"):
        env = dict(os.environ)
        if prog == "klua-paged":
            env["KLUA_WATCH_LIST"] = "0"
        if prog in ("klua", "klua-paged"):
            env["KLUA_BENCH_EXPECT"] = str(expect)
            env["KLUA_BENCH_RUN"] = run
            argv = [self.a.klua, "run", "--scripts", os.path.join(self.scriptdir, mode),
                    "--kubeconfig", self.kc, "--namespace", ns] + self.klua_flags()
        elif prog == "controller-runtime":
            argv = [os.path.join(self.a.peers, "crpeer"), "-kubeconfig", self.kc, "-namespace", ns,
                    "-mode", mode, "-run", run, "-expect", str(expect), "-workers", str(WORKERS)]
        else:
            argv = [os.path.join(self.a.peers, "informer"), "-kubeconfig", self.kc,
                    "-namespace", ns, "-expect", str(expect)]
        return Proc(f"{prog} ({tag})", argv, env=env, logdir=self.logdir)

    def guarded(self, prog, fn):
        """Run one measurement; a failing program is reported, not fatal."""
        if prog in self.errors and prog != "klua":
            return
        if prog in ("klua", "klua-paged") and "klua" in self.errors:
            return
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - report and go on with the others
            msg = str(e)
            log(f"{prog}: {msg}")
            self.errors.setdefault(prog, msg.splitlines()[0])

    # --- scenarios ------------------------------------------------------------

    def sync_run(self, scenario, prog, ns, n, rep, settle):
        p = self.start(prog, ns, "noop", n, f"{scenario} #{rep}")
        try:
            t_sync = p.wait_for(SYNCED, 300)
            t_all = p.wait_for(ALL, 300) if n > 0 else t_sync
            time.sleep(settle)
            mem = p.mem()
            cpu = p.cpu_ms()
        finally:
            p.stop(save_as=f"{scenario}-{prog}-{rep}")
        pre = "ready_ms" if scenario == "footprint" else "synced_ms"
        self.record(scenario, pre, prog, (t_sync - p.t0) * 1000)
        self.record(scenario, "all_reconciled_ms", prog, (t_all - p.t0) * 1000)
        self.record(scenario, "idle_rss_bytes" if scenario == "footprint" else "rss_bytes",
                    prog, mem["VmRSS"])
        self.record(scenario, "peak_rss_bytes", prog, mem["VmHWM"])
        if scenario == "footprint":
            self.record(scenario, "idle_anon_rss_bytes", prog, mem["RssAnon"])
            if "Pss" in mem:
                self.record(scenario, "idle_pss_bytes", prog, mem["Pss"])
        self.record(scenario, "cpu_ms", prog, cpu)

    def kubectl_floor(self, ns, n):
        path = f"/apis/bench.klua.dev/v1/namespaces/{ns}/widgets?limit=500"
        t0 = time.monotonic()
        cont, pages, total = None, 0, 0
        while True:
            url = path + (f"&continue={urllib.parse.quote(cont)}" if cont else "")
            p = subprocess.run(["kubectl", "--kubeconfig", self.kc, "get", "--raw", url],
                               capture_output=True, timeout=120)
            if p.returncode != 0:
                raise RuntimeError(f"kubectl get --raw {url}: {p.stderr.decode().strip()}")
            pages += 1
            total += len(p.stdout)
            m = re.search(rb'"continue":"([^"]*)"', p.stdout[-2048:])
            cont = m.group(1).decode() if m and m.group(1) else None
            if not cont:
                break
        return (time.monotonic() - t0) * 1000, pages, total

    def http_floor(self, ns):
        """The same paged list over one keep-alive HTTPS connection."""
        with open(self.kc) as f:
            kc = yaml.safe_load(f)
        cluster = kc["clusters"][0]["cluster"]
        user = kc["users"][0]["user"]
        u = urllib.parse.urlsplit(cluster["server"])
        ctx = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        headers = {"Authorization": f"Bearer {user['token']}", "Accept": "application/json"}
        t0 = time.monotonic()
        conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=120)
        cont, total = None, 0
        while True:
            url = f"/apis/bench.klua.dev/v1/namespaces/{ns}/widgets?limit=500"
            if cont:
                url += f"&continue={urllib.parse.quote(cont)}"
            conn.request("GET", url, headers=headers)
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                raise RuntimeError(f"GET {url}: HTTP {r.status}")
            total += len(body)
            m = re.search(rb'"continue":"([^"]*)"', body[-2048:])
            cont = m.group(1).decode() if m and m.group(1) else None
            if not cont:
                break
        conn.close()
        return (time.monotonic() - t0) * 1000, total

    def watchlist_floor(self, ns):
        """The streaming list on one HTTPS connection: read (no decoding) until
        the bookmark annotated k8s.io/initial-events-end."""
        with open(self.kc) as f:
            kc = yaml.safe_load(f)
        cluster = kc["clusters"][0]["cluster"]
        user = kc["users"][0]["user"]
        u = urllib.parse.urlsplit(cluster["server"])
        ctx = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        headers = {"Authorization": f"Bearer {user['token']}", "Accept": "application/json"}
        t0 = time.monotonic()
        conn = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=120)
        conn.request("GET", f"/apis/bench.klua.dev/v1/namespaces/{ns}/widgets?watch=1"
                     "&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
                     "&allowWatchBookmarks=true", headers=headers)
        r = conn.getresponse()
        if r.status != 200:
            raise RuntimeError(f"watch-list: HTTP {r.status}")
        tail, total = b"", 0
        while True:
            chunk = r.read1(1 << 16)
            if not chunk:
                raise RuntimeError("watch-list: the stream ended before its initial events")
            total += len(chunk)
            if b"initial-events-end" in tail[-64:] + chunk:
                break
            tail = chunk
        ms = (time.monotonic() - t0) * 1000
        conn.close()
        return ms, total

    def initial_sync(self):
        n, ns = self.m["n"], self.ns("sync")
        if self.a.sync_ns:
            ns = self.a.sync_ns   # already holds n Widgets
        else:
            self.create(ns, n)
        progs = self.programs + (["klua-paged"] if "klua" in self.programs else [])
        for rep in range(self.m["reps"]):
            for prog in self.order(rep, progs):
                self.guarded(prog, lambda: self.sync_run("initial_sync", prog, ns, n, rep, 1.0))
            if not self.a.no_kubectl_floor:
                ms, pages, total = self.kubectl_floor(ns, n)
                self.record("initial_sync", "synced_ms", "kubectl", ms)
            ms, total = self.http_floor(ns)
            self.record("initial_sync", "synced_ms", "https-keepalive", ms)
            self.json_bytes = total / n
            ms, _ = self.watchlist_floor(ns)
            self.record("initial_sync", "synced_ms", "https-watchlist", ms)
        pages = (n + 499) // 500
        self.notes.append(f"initial_sync floor: kubectl get --raw, {pages} pages of 500; "
                          f"list JSON {self.json_bytes:.0f} bytes per object")

    def footprint(self):
        n, ns = self.m["small"], self.ns("small")
        self.create(ns, n)
        for rep in range(self.m["reps"]):
            for prog in self.order(rep, self.programs):
                self.guarded(prog, lambda: self.sync_run("footprint", prog, ns, n, rep, 2.0))
        bins = {"klua": self.a.klua, "controller-runtime": os.path.join(self.a.peers, "crpeer"),
                "client-go": os.path.join(self.a.peers, "informer")}
        tmp = tempfile.mkdtemp()
        try:
            for prog, path in bins.items():
                if not os.path.exists(path):
                    continue
                dst = os.path.join(tmp, prog)
                shutil.copy(path, dst)
                subprocess.run(["strip", dst], check=False)
                self.record("footprint", "binary_bytes", prog, os.path.getsize(dst))
        finally:
            shutil.rmtree(tmp)
        if os.path.exists(self.a.klua):
            self.notes.append("footprint: klua's binary links dynamically; shared libraries "
                              "beyond libc: " + klua_libs(self.a.klua))
        # Bytes per cached object: RSS after the big sync minus idle RSS with the few.
        s, f = self.results.get("initial_sync", {}), self.results.get("footprint", {})
        for prog in self.programs:
            big = s.get("rss_bytes", {}).get(prog)
            small = f.get("idle_rss_bytes", {}).get(prog)
            if big and small:
                per = (statistics.median(big) - statistics.median(small)) / (self.m["n"] - n)
                self.record("initial_sync", "bytes_per_object", prog, per)

    def latency_run(self, prog, ns, rep):
        m = self.m["lat_objs"]
        p = self.start(prog, ns, "noop", m, f"event_latency #{rep}")
        acks = {}
        try:
            p.wait_for(ALL, 300)
            for rate in self.m["rates"]:
                seq0 = self.seq
                out = self.loader("update", "-namespace", ns, "-count", str(m), "-rate", str(rate),
                                  "-concurrency", "64",
                                  "-duration", str(self.m["lat_s"]), "-seq-start", str(seq0))
                self.seq += int(rate * self.m["lat_s"])
                acks[rate] = [fields(l) for l in out.splitlines() if l.startswith("ACK ")]
                rtt = re.search(r"METRIC update_rtt_p50_ms (\S+)", out)
                if rtt:
                    self.record(f"event_latency_{rate}", "loader_rtt_p50_ms", "loader", float(rtt.group(1)))
                got = re.search(r"METRIC update_rate_achieved (\S+)", out)
                if got and float(got.group(1)) < 0.9 * rate:
                    self.notes.append(f"event_latency {prog} #{rep}: the loader reached only "
                                      f"{got.group(1)}/s of {rate}/s")
            time.sleep(1.0)
        finally:
            p.stop(save_as=f"event_latency-{prog}-{rep}")
        seen = {}
        for _, line in p.lines:
            if "BENCH seen" in line:
                f = fields(line)
                try:
                    seen.setdefault(f["obj"], []).append((int(f["seq"]), int(f["t"])))
                except (KeyError, ValueError):
                    continue
        index = {}
        for key, lst in seen.items():
            lst.sort()
            seqs = [s for s, _ in lst]
            # suffix minimum of the stamps: the first reconcile that saw seq >= s
            mins = [0] * len(lst)
            best = None
            for i in range(len(lst) - 1, -1, -1):
                best = lst[i][1] if best is None else min(best, lst[i][1])
                mins[i] = best
            index[key] = (seqs, mins)
        for rate, lst in acks.items():
            lat, from_send, missed = [], [], 0
            for a in lst:
                seqs, mins = index.get(a["obj"], ([], []))
                i = bisect.bisect_left(seqs, int(a["seq"]))
                if i == len(seqs):
                    missed += 1
                    continue
                lat.append((mins[i] - int(a["t"])) / 1e6)
                from_send.append((mins[i] - int(a["sent"])) / 1e6)
            sc = f"event_latency_{rate}"
            if not lat:
                raise RuntimeError(f"no reconcile reported any of the {len(lst)} updates at {rate}/s")
            lat.sort()
            self.record(sc, "p50_ms", prog, pct(lat, 50))
            self.record(sc, "p99_ms", prog, pct(lat, 99))
            self.record(sc, "max_ms", prog, lat[-1])
            from_send.sort()
            self.record(sc, "p50_from_send_ms", prog, pct(from_send, 50))
            self.record(sc, "p99_from_send_ms", prog, pct(from_send, 99))
            if missed:
                self.notes.append(f"{sc} {prog} #{rep}: {missed} of {len(lst)} updates never seen")

    def event_latency(self):
        ns = self.ns("latency")
        self.create(ns, self.m["lat_objs"])
        progs = ["klua", "controller-runtime"] + (["client-go"] if self.a.latency_floor else [])
        self.notes.append("event_latency: from the loader's clock right after the API server's "
                          "response to the reconcile's clock when it saw the seq; the watch event "
                          "can beat the response to the loader, so a latency can be slightly "
                          "negative (loader_rtt_p50_ms: the loader's own request round trip); "
                          "*_from_send_ms count from just before the loader sent the patch")
        for rep in range(self.m["reps"]):
            for prog in self.order(rep, progs):
                self.guarded(prog, lambda: self.latency_run(prog, ns, rep))

    def throughput_run(self, prog, ns, rep):
        t = self.m["tp"]
        token = f"{prog}-{rep}-{time.time_ns()}"
        watcher = Proc("status watcher",
                       [os.path.join(self.a.peers, "loader"), "wait-status", "-kubeconfig", self.kc,
                        "-namespace", ns, "-count", str(t), "-run", token, "-timeout", "600s"])
        p = self.start(prog, ns, "status", t, f"throughput #{rep}", run=token)
        try:
            t_sync = p.wait_for(SYNCED, 300)
            t_done = watcher.wait_for(re.compile(r"BENCH all_status"), 600)
            cpu = p.cpu_ms()
            mem = p.mem()
        finally:
            p.stop(save_as=f"throughput-{prog}-{rep}")
            watcher.stop()
        self.record("throughput", "objects_per_s", prog, t / max(t_done - t_sync, 1e-3))
        self.record("throughput", "total_ms", prog, (t_done - p.t0) * 1000)
        self.record("throughput", "cpu_ms", prog, cpu)
        self.record("throughput", "peak_rss_bytes", prog, mem["VmHWM"])

    def throughput(self):
        ns = self.ns("throughput")
        self.create(ns, self.m["tp"])
        for rep in range(self.m["reps"]):
            for prog in self.order(rep, ["klua", "controller-runtime"]):
                self.guarded(prog, lambda: self.throughput_run(prog, ns, rep))

    def hot_reload(self):
        if "klua" not in self.programs or "klua" in self.errors:
            return
        self.reload_arg, self.reload_signal = list(self.a.klua_reload_arg), self.a.klua_reload_signal
        if not self.reload_arg and not self.reload_signal:
            # Find the switch in `klua run --help`: a flag whose line mentions reload,
            # else SIGHUP if the help names it.
            h = subprocess.run([self.a.klua, "run", "--help"], capture_output=True, text=True)
            text = h.stdout + h.stderr
            m = re.search(r"^\s*(--[\w-]+)[^\n]*reload", text, re.M | re.I)
            if m:
                self.reload_arg = [m.group(1)]
            elif "SIGHUP" in text:
                self.reload_signal = True
            else:
                self.notes.append("hot_reload: not measured: `klua run --help` names no reload "
                                  "flag and no SIGHUP (hot reload is not implemented yet)")
                self.missing["hot_reload"] = "klua run has no hot reload"
                return
        for count in self.m["reload"]:
            self.guarded("klua", lambda: self.reload_run(count))

    def reload_run(self, count):
        """count scripts watching one Widget each; time from saving one to its new code."""
        ns = self.ns(f"reload-{count}")
        self.create(ns, 1)
        d = tempfile.mkdtemp()
        try:
            for i in range(count):
                write_reload_script(d, i, "v1")
            env = dict(os.environ)
            p = Proc(f"klua (hot_reload {count})",
                     [self.a.klua, "run", "--scripts", d, "--kubeconfig", self.kc,
                      "--namespace", ns] + self.reload_arg + self.klua_flags(),
                     env=env, logdir=self.logdir)
            try:
                p.wait_for(re.compile(r"BENCH reload r0 v1\b"), 120)
                for rep in range(max(self.m["reps"], 3)):
                    ver = f"v{rep + 2}"
                    mark = len(p.lines)
                    t0 = time.monotonic()
                    write_reload_script(d, 0, ver)
                    if self.reload_signal:
                        p.p.send_signal(signal.SIGHUP)
                    t1 = p.wait_for(re.compile(rf"BENCH reload r0 {ver}\b"), 60, start=mark)
                    self.record("hot_reload", f"scripts_{count}_ms", "klua", (t1 - t0) * 1000)
                    time.sleep(0.3)
            finally:
                p.stop(save_as=f"hot_reload-{count}")
        finally:
            shutil.rmtree(d)

    # --- output ----------------------------------------------------------------

    def report(self):
        peers = {"controller-runtime": "", "client-go": "_vs_client_go", "kubectl": "_vs_kubectl",
                 "https-keepalive": "_vs_https", "https-watchlist": "_vs_https_watchlist"}
        cols = [c for c in ["klua", "klua-paged", "controller-runtime", "client-go", "kubectl",
                            "https-keepalive", "https-watchlist", "loader"]
                if any(c in per for metrics in self.results.values() for per in metrics.values())]
        print()
        print(f"{'scenario':<20} {'metric':<20} " + " ".join(f"{c:>18}" for c in cols))
        ratios = []
        for sc, metrics in self.results.items():
            for metric, per in metrics.items():
                med = {p: statistics.median(v) for p, v in per.items()}
                print(f"{sc:<20} {metric:<20} " +
                      " ".join(f"{fmt(metric, med.get(c)):>18}" for c in cols))
                # klua's paged-LIST fallback against the paged floor
                if "klua-paged" in med and med.get("https-keepalive", 0) > 0:
                    ratios.append(f"RATIO {sc} {metric}_paged_vs_https "
                                  f"{med['klua-paged'] / med['https-keepalive']:.3f}")
                if "https-watchlist" in med and med.get("https-keepalive", 0) > 0:
                    ratios.append(f"RATIO {sc} watchlist_floor_vs_paged_floor "
                                  f"{med['https-watchlist'] / med['https-keepalive']:.3f}")
                if "klua" not in med:
                    continue
                for peer, suffix in peers.items():
                    # A ratio needs two positive figures (a latency can be slightly
                    # negative: see the event_latency note).
                    if peer in med and med[peer] > 0 and med["klua"] >= 0:
                        ratios.append(f"RATIO {sc} {metric}{suffix} {med['klua'] / med[peer]:.3f}")
        print()
        print("medians of", self.m["reps"], "runs; RATIO = klua / peer (lower is better for time and "
              "memory, higher for objects_per_s)")
        for line in ratios:
            print(line)
        for n in self.notes:
            print("NOTE", n)
        for prog, e in self.errors.items():
            print(f"MISSING {prog}: {e}")
        for sc, e in self.missing.items():
            print(f"MISSING {sc}: {e}")
        with open(os.path.join(self.a.out, "results.json"), "w") as f:
            json.dump({"mode": self.a.mode, "params": self.m, "results": self.results,
                       "errors": self.errors, "missing": self.missing, "notes": self.notes},
                      f, indent=1)

    def header(self):
        cpu = "?"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem = f.readline().split()[1]
        print(f"MACHINE nproc={os.cpu_count()} mem={int(mem) // 1024}MiB cpu=\"{cpu}\" "
              f"kernel={platform.release()} load={os.getloadavg()[0]:.2f}")
        for name, v in versions(self.a).items():
            print(f"VERSION {name} {v}")
        m = self.m
        print(f"PARAMS mode={self.a.mode} N={m['n']} footprint_objects={m['small']} "
              f"latency_objects={m['lat_objs']} rates={','.join(map(str, m['rates']))}/s "
              f"latency_seconds={m['lat_s']} throughput_objects={m['tp']} reps={m['reps']} "
              f"workers={WORKERS} klua_qps={self.a.klua_qps}", flush=True)


def pct(sorted_vals, p):
    k = (len(sorted_vals) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def fmt(metric, v):
    if v is None:
        return "-"
    if metric.endswith("bytes") and "per_object" not in metric:
        return f"{v / 1048576:.1f} MiB"
    if metric.endswith("_ms"):
        return f"{v:.1f} ms" if v < 100 else f"{v:.0f} ms"
    return f"{v:.0f}"


def write_reload_script(d, i, ver):
    # Written whole to a temporary name and renamed, as an editor's save does.
    path = os.path.join(d, f"r{i}.lua")
    with open(path + ".tmp", "w") as f:
        f.write(f'''-- generated by bench/harness.py (hot reload scenario)
return {{
  name = "r{i}",
  watch = {{ apiVersion = "bench.klua.dev/v1", kind = "Widget" }},
  reconcile = function(ctx, obj)
    ctx.log.info("BENCH reload r{i} {ver}")
  end,
}}
''')
    os.replace(path + ".tmp", path)


def klua_libs(path):
    p = subprocess.run(["ldd", path], capture_output=True, text=True)
    total, names = 0, []
    for line in p.stdout.splitlines():
        m = re.search(r"(\S+) => (\S+)", line)
        if not m or re.match(r"lib(c|m|pthread|dl|rt)\.so", m.group(1)):
            continue
        try:
            total += os.path.getsize(os.path.realpath(m.group(2)))
            names.append(m.group(1).split(".so")[0])
        except OSError:
            pass
    return f"{len(names)} libraries, {total / 1048576:.1f} MiB ({', '.join(names)})"


def versions(a):
    out = {}
    try:
        out["klua"] = subprocess.run([a.klua, "--version"], capture_output=True, text=True,
                                     timeout=10).stdout.strip() or "?"
    except OSError:
        out["klua"] = "not built"
    gomod = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers", "go.mod")
    with open(gomod) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0] in ("sigs.k8s.io/controller-runtime", "k8s.io/client-go"):
                out[parts[0]] = parts[1]
    out["go"] = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True).stdout.strip()
    try:
        v = json.loads(subprocess.run(["kubectl", "--kubeconfig", a.kubeconfig, "version", "-o", "json"],
                                      capture_output=True, text=True, timeout=30).stdout)
        out["kube-apiserver"] = v["serverVersion"]["gitVersion"]
        out["kubectl"] = v["clientVersion"]["gitVersion"]
    except (ValueError, KeyError, subprocess.TimeoutExpired):
        pass
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=sorted(MODES), default="short")
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--klua", required=True, help="the klua binary")
    ap.add_argument("--klua-arg", action="append", default=[], help="extra flag for `klua run`")
    ap.add_argument("--klua-reload-arg", action="append", default=[],
                    help="flag that turns hot reload on (e.g. --dev)")
    ap.add_argument("--klua-reload-signal", action="store_true", help="send SIGHUP after saving")
    ap.add_argument("--klua-qps", default="100000",
                    help="--qps and --burst for klua ('default': klua's own, 50/100); the Go "
                         "peers run without client-side throttling, controller-runtime's default")
    ap.add_argument("--skip-klua", default="", help="reason klua is left out (peers only)")
    ap.add_argument("--peers", required=True, help="directory with crpeer, informer, loader")
    ap.add_argument("--out", required=True, help="directory for logs and results.json")
    ap.add_argument("--ns-prefix", default="bench-")
    ap.add_argument("--only", default="", help="comma-separated scenarios to run")
    ap.add_argument("--reps", type=int, default=0, help="repetitions (default: the mode's)")
    ap.add_argument("--sync-ns", default="",
                    help="initial_sync: a namespace that already holds the mode's N Widgets")
    ap.add_argument("--no-kubectl-floor", action="store_true",
                    help="skip the kubectl floor (a process per page: slow at 100k)")
    ap.add_argument("--latency-floor", action="store_true", help="also run client-go in event_latency")
    a = ap.parse_args()
    if not a.skip_klua and not os.access(a.klua, os.X_OK):
        a.skip_klua = f"{a.klua} is not built"
    b = Bench(a)
    b.header()
    scenarios = ["initial_sync", "footprint", "event_latency", "throughput", "hot_reload"]
    only = [s for s in a.only.split(",") if s]
    t0 = time.monotonic()
    for sc in scenarios:
        if only and sc not in only:
            continue
        log(f"scenario {sc}")
        getattr(b, sc)()
    b.report()
    print(f"TOTAL {time.monotonic() - t0:.0f}s")


if __name__ == "__main__":
    main()
