#!/usr/bin/env python3
"""webhook.py - klua's webhook benchmark against controller-runtime's
webhook server (issue 13).

Both servers answer a trivial validating webhook for a Widget: klua runs
bench/scripts/webhook/widget.lua (validate returns true) with
--webhook-addr / --webhook-cert-dir; bench/peers/webhookpeer registers an
allow-all admission.HandlerFunc on controller-runtime's webhook.Server. The
same certificate serves both. bench/peers/webhookload sends one Widget
CREATE AdmissionReview (1 KB object) from C keep-alive TLS connections for
D seconds after a warm-up, and reports round-trip p50/p99 and requests/s.
Servers alternate (klua, peer, then peer, klua, ...); medians of the
repetitions are quoted. Output: a table, then RATIO lines (klua / peer;
lower is better for latency, higher for requests/s).

  python3 bench/webhook.py --kubeconfig K --klua bin/klua --peers build/bench \
      --out build/bench [--reps 3] [--duration 5] [--conns 1,8]

klua needs a cluster with bench/crd.yaml (it starts its Widget controller);
the load goes straight to the servers, not through the API server, so the
figures are the webhook servers' own. Uses: openssl, the programs named.
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def make_certs(d):
    """A CA and a serving certificate for 127.0.0.1 (openssl CLI)."""
    def run(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True, cwd=d)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=bench CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "tls.key", "-out", "tls.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "tls.crt", "-days", "2", "-extfile", "ext")


def review(path):
    obj = {"apiVersion": "bench.klua.dev/v1", "kind": "Widget",
           "metadata": {"name": "w-1", "namespace": "bench", "uid": "0e4f1f5e-0000-4000-8000-000000000001",
                        "labels": {"app": "bench"}},
           "spec": {"seq": 1, "payload": "x" * 800}}
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                        "kind": {"group": "bench.klua.dev", "version": "v1", "kind": "Widget"},
                        "resource": {"group": "bench.klua.dev", "version": "v1",
                                     "resource": "widgets"},
                        "requestKind": {"group": "bench.klua.dev", "version": "v1",
                                        "kind": "Widget"},
                        "name": "w-1", "namespace": "bench", "operation": "CREATE",
                        "userInfo": {"username": "bench", "groups": ["system:authenticated"]},
                        "object": obj, "oldObject": None, "dryRun": False,
                        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}}
    with open(path, "w") as f:
        json.dump(body, f)


def wait_line(proc, logpath, pattern, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(logpath, errors="replace") as f:
            if re.search(pattern, f.read()):
                return
        if proc.poll() is not None:
            raise RuntimeError(f"exited ({proc.returncode}); see {logpath}")
        time.sleep(0.02)
    raise RuntimeError(f"no /{pattern}/ within {timeout}s; see {logpath}")


def start(name, argv, logpath, ready):
    f = open(logpath, "w")
    p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT)
    wait_line(p, logpath, ready)
    return p


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--klua", required=True)
    ap.add_argument("--peers", required=True, help="folder with webhookpeer and webhookload")
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--conns", default="1,8")
    a = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.makedirs(a.out, exist_ok=True)
    d = tempfile.mkdtemp(prefix="klua-bench-webhook-")
    make_certs(d)
    body = os.path.join(d, "review.json")
    review(body)
    results = {}   # (conns, prog) -> list of runs

    def one(prog, conns, rep):
        port = free_port()
        logpath = os.path.join(a.out, f"webhook-{prog}-{conns}-{rep}.log")
        if prog == "klua":
            p = start(prog, [a.klua, "run", "--scripts", os.path.join(root, "bench/scripts/webhook"),
                             "--kubeconfig", a.kubeconfig, "--namespace", "bench-webhook",
                             "--webhook-addr", f"127.0.0.1:{port}", "--webhook-cert-dir", d],
                      logpath, r"webhook server listening")
        else:
            p = start(prog, [os.path.join(a.peers, "webhookpeer"), "-addr", f"127.0.0.1:{port}",
                             "-cert-dir", d], logpath, r"BENCH ready")
        try:
            out = subprocess.run(
                [os.path.join(a.peers, "webhookload"), "-url",
                 f"https://127.0.0.1:{port}/validate/widget", "-ca", os.path.join(d, "ca.crt"),
                 "-body", body, "-conns", str(conns), "-duration", f"{a.duration}s"],
                capture_output=True, text=True, check=True, timeout=a.duration + 60)
            r = json.loads(out.stdout)
            r["rss_bytes"] = rss(p.pid)
        finally:
            stop(p)
        if r["errors"]:
            log(f"{prog} conns={conns}: {r['errors']} requests failed (see {logpath})")
        results.setdefault((conns, prog), []).append(r)
        log(f"{prog:6} conns={conns} rep={rep}: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.3f} ms, "
            f"p99 {r['p99_ms']:.3f} ms")

    conns_list = [int(c) for c in a.conns.split(",")]
    for rep in range(a.reps):
        order = ["klua", "controller-runtime"] if rep % 2 == 0 else ["controller-runtime", "klua"]
        for conns in conns_list:
            for prog in order:
                one(prog, conns, rep)

    ratios = []
    print(f"{'scenario':28} {'metric':10} {'klua':>12} {'controller-runtime':>20}")
    for conns in conns_list:
        sc = f"webhook_validate_c{conns}"
        med = {}
        for prog in ("klua", "controller-runtime"):
            runs = results[(conns, prog)]
            med[prog] = {m: statistics.median(r[m] for r in runs)
                         for m in ("p50_ms", "p99_ms", "rps", "rss_bytes")}
        for m, fmt in (("p50_ms", "{:.3f} ms"), ("p99_ms", "{:.3f} ms"), ("rps", "{:.0f}/s"),
                       ("rss_bytes", "{:.1f} MiB")):
            k, c = med["klua"][m], med["controller-runtime"][m]
            if m == "rss_bytes":
                k, c = k / 2**20, c / 2**20
            print(f"{sc:28} {m:10} {fmt.format(k):>12} {fmt.format(c):>20}")
            if c:
                ratios.append(f"RATIO {sc} {m}_vs_controller-runtime {k / c:.3f}")
    print(f"medians of {a.reps} runs, {a.duration:.0f} s each after a 1 s warm-up; "
          "RATIO = klua / controller-runtime (lower is better for latency and RSS, higher for rps)")
    for r in ratios:
        print(r)
    with open(os.path.join(a.out, "webhook-results.json"), "w") as f:
        json.dump({f"{c}/{p}": v for (c, p), v in results.items()}, f, indent=1)
    subprocess.run(["rm", "-rf", d])


if __name__ == "__main__":
    main()
