#!/usr/bin/env python3
"""webhook.py - klua's webhook benchmark against controller-runtime's
webhook server (issue 13).

Both servers answer a trivial validating webhook for a Widget: klua runs
bench/scripts/webhook/widget.lua (validate returns true) with
--webhook-addr / --webhook-cert-dir; bench/peers/webhookpeer registers an
allow-all admission.HandlerFunc on controller-runtime's webhook.Server. The
same certificate serves both. bench/peers/webhookload sends one Widget
CREATE AdmissionReview (1 KB object) from C keep-alive TLS connections for
D seconds after a warm-up, and reports round-trip p50/p99 and requests/s
(webhook_validate_cC: straight to the server). Then the whole admission
round trip (webhook_admission_cC): a ValidatingWebhookConfiguration points
the API server at the server under test, and webhookload sends server-side
dry-run creates of a Widget to the API server, which calls the webhook; the
same without any webhook ("none") is the API server's own floor. Servers
alternate (klua, peer, then peer, klua, ...); medians of the repetitions
are quoted. Output: a table, then RATIO lines (klua / peer; lower is better
for latency, higher for requests/s).

  python3 bench/webhook.py --kubeconfig K --klua bin/klua --peers build/bench \
      --out build/bench [--reps 3] [--duration 5] [--conns 1,8]

klua needs a cluster with bench/crd.yaml (it starts its Widget controller);
Uses: openssl, kubectl, the programs named.
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


NS = "bench-webhook"
CONFIG = "klua-bench-webhook"


def kubectl(kubeconfig, *args, input=None, check=True):
    return subprocess.run(["kubectl", "--kubeconfig", kubeconfig, *args], input=input,
                          capture_output=True, text=True, check=check, timeout=60)


def install_webhook(kubeconfig, port, ca_pem):
    import base64
    conf = {"apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration", "metadata": {"name": CONFIG},
            "webhooks": [{"name": "widget.bench.klua.dev",
                          "clientConfig": {"url": f"https://127.0.0.1:{port}/validate/widget",
                                           "caBundle": base64.b64encode(ca_pem).decode()},
                          "rules": [{"apiGroups": ["bench.klua.dev"], "apiVersions": ["v1"],
                                     "operations": ["CREATE"], "resources": ["widgets"]}],
                          "namespaceSelector": {"matchLabels": {
                              "kubernetes.io/metadata.name": NS}},
                          "admissionReviewVersions": ["v1"], "sideEffects": "None",
                          "failurePolicy": "Fail", "timeoutSeconds": 10}]}
    kubectl(kubeconfig, "apply", "-f", "-", input=json.dumps(conf))


def remove_webhook(kubeconfig):
    kubectl(kubeconfig, "delete", "validatingwebhookconfiguration", CONFIG, "--ignore-not-found",
            check=False)


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
    results = {}   # (scenario, prog) -> list of runs
    kubectl(a.kubeconfig, "create", "namespace", NS, check=False)
    remove_webhook(a.kubeconfig)
    with open(os.path.join(d, "ca.crt"), "rb") as f:
        ca_pem = f.read()

    def load(argv):
        out = subprocess.run([os.path.join(a.peers, "webhookload"), *argv, "-duration",
                              f"{a.duration}s"], capture_output=True, text=True, check=True,
                             timeout=a.duration + 120)
        return json.loads(out.stdout)

    def note(sc, prog, r, logpath):
        if r["errors"]:
            log(f"{prog} {sc}: {r['errors']} requests failed (see {logpath})")
        results.setdefault((sc, prog), []).append(r)
        log(f"{sc:22} {prog:18}: {r['rps']:.0f} req/s, p50 {r['p50_ms']:.3f} ms, "
            f"p99 {r['p99_ms']:.3f} ms")

    def one(prog, conns, rep, via):
        port = free_port()
        logpath = os.path.join(a.out, f"webhook-{via}-{prog}-{conns}-{rep}.log")
        sc = f"webhook_{'validate' if via == 'direct' else 'admission'}_c{conns}"
        if prog == "none":
            note(sc, prog, load(["-kubeconfig", a.kubeconfig, "-namespace", NS, "-no-webhook",
                                 "-conns", str(conns)]), logpath)
            return
        if prog == "klua":
            p = start(prog, [a.klua, "run", "--scripts", os.path.join(root, "bench/scripts/webhook"),
                             "--kubeconfig", a.kubeconfig, "--namespace", "bench-webhook",
                             "--webhook-addr", f"127.0.0.1:{port}", "--webhook-cert-dir", d],
                      logpath, r"webhook server listening")
        else:
            p = start(prog, [os.path.join(a.peers, "webhookpeer"), "-addr", f"127.0.0.1:{port}",
                             "-cert-dir", d], logpath, r"BENCH ready")
        try:
            if via == "direct":
                r = load(["-url", f"https://127.0.0.1:{port}/validate/widget",
                          "-ca", os.path.join(d, "ca.crt"), "-body", body, "-conns", str(conns)])
            else:
                install_webhook(a.kubeconfig, port, ca_pem)
                try:
                    r = load(["-kubeconfig", a.kubeconfig, "-namespace", NS, "-conns", str(conns)])
                finally:
                    remove_webhook(a.kubeconfig)
            r["rss_bytes"] = rss(p.pid)
        finally:
            stop(p)
        note(sc, prog, r, logpath)

    conns_list = [int(c) for c in a.conns.split(",")]
    for via in ("direct", "apiserver"):
        for rep in range(a.reps):
            order = ["klua", "controller-runtime"] if rep % 2 == 0 else \
                ["controller-runtime", "klua"]
            if via == "apiserver":
                order.append("none")
            for conns in conns_list:
                for prog in order:
                    one(prog, conns, rep, via)

    ratios = []
    print(f"{'scenario':24} {'metric':10} {'klua':>12} {'controller-runtime':>20} "
          f"{'no webhook':>12}")
    for sc in sorted({k[0] for k in results}, key=lambda x: (x.split("_")[1], x)):
        med = {}
        for prog in ("klua", "controller-runtime", "none"):
            runs = results.get((sc, prog))
            if runs:
                med[prog] = {m: statistics.median(r.get(m, 0) for r in runs)
                             for m in ("p50_ms", "p99_ms", "rps", "rss_bytes")}
        for m, fmt in (("p50_ms", "{:.3f} ms"), ("p99_ms", "{:.3f} ms"), ("rps", "{:.0f}/s"),
                       ("rss_bytes", "{:.1f} MiB")):
            k, c = med["klua"][m], med["controller-runtime"][m]
            n = med["none"][m] if "none" in med and m != "rss_bytes" else None
            if m == "rss_bytes":
                k, c = k / 2**20, c / 2**20
            print(f"{sc:24} {m:10} {fmt.format(k):>12} {fmt.format(c):>20} "
                  f"{fmt.format(n) if n is not None else '':>12}")
            if c:
                ratios.append(f"RATIO {sc} {m}_vs_controller-runtime {k / c:.3f}")
    print(f"medians of {a.reps} runs, {a.duration:.0f} s each after a 1 s warm-up; "
          "RATIO = klua / controller-runtime (lower is better for latency and RSS, higher for rps)")
    for r in ratios:
        print(r)
    with open(os.path.join(a.out, "webhook-results.json"), "w") as f:
        json.dump({f"{sc}/{p}": v for (sc, p), v in results.items()}, f, indent=1)
    subprocess.run(["rm", "-rf", d])


if __name__ == "__main__":
    main()
