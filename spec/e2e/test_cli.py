"""The klua command line and its bad-input behaviour, against the real API server."""
import os
import pathlib
import shutil
import socket

from conftest import run_klua


def _no_secrets(text, cluster):
    token = cluster.env.get("ADMIN_TOKEN") or cluster.env.get("KLUA_ADMIN_TOKEN")
    if token:
        assert token not in text


def test_version_and_help():
    p = run_klua("--version")
    assert p.returncode == 0 and p.stdout.startswith("klua ")
    p = run_klua("--help")
    assert p.returncode == 0 and "klua run --scripts DIR" in p.stdout


def test_unknown_flag_is_a_usage_error():
    p = run_klua("--frobnicate")
    assert p.returncode == 2
    assert "unknown flag: --frobnicate" in p.stderr
    p = run_klua("frobnicate")
    assert p.returncode == 2 and "unknown command" in p.stderr


def test_server_version_with_each_credential_kind(cluster):
    for kc in ("kubeconfig", "kubeconfig-cert", "kubeconfig-tokenfile", "kubeconfig-exec"):
        p = run_klua("server-version", "--kubeconfig", str(cluster.dir / kc))
        assert p.returncode == 0, (kc, p.stderr)
        assert p.stdout.startswith("v1."), (kc, p.stdout)
        _no_secrets(p.stdout + p.stderr, cluster)


def test_kubeconfig_from_env_list(cluster, tmp_path):
    missing = tmp_path / "missing"
    p = run_klua("server-version", env={"KUBECONFIG": f"{missing}:{cluster.kubeconfig}"})
    assert p.returncode == 0, p.stderr


def test_missing_kubeconfig(tmp_path):
    path = tmp_path / "nope.yaml"
    p = run_klua("server-version", "--kubeconfig", str(path))
    assert p.returncode == 1
    assert str(path) in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_malformed_kubeconfig(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: v1\nclusters:\n  - name: x\n    cluster: [unclosed\n")
    p = run_klua("server-version", "--kubeconfig", str(path))
    assert p.returncode == 1
    assert str(path) in p.stderr and "line" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_unknown_context(cluster):
    p = run_klua("server-version", "--kubeconfig", cluster.kubeconfig, "--context", "nowhere")
    assert p.returncode == 1
    assert 'context "nowhere" not found' in p.stderr
    _no_secrets(p.stderr, cluster)


def test_unreadable_certificate(cluster, tmp_path):
    d = tmp_path / "kc"
    d.mkdir()
    text = (cluster.dir / "kubeconfig-cert").read_text()
    kc = d / "config"
    # point the client key at a file that does not exist
    import re
    text = re.sub(r"client-key: .*", "client-key: missing.key", text)
    kc.write_text(text)
    p = run_klua("server-version", "--kubeconfig", str(kc))
    assert p.returncode == 1
    assert "missing.key" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_server_down(cluster, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    text = cluster.dir.joinpath("kubeconfig").read_text()
    import re
    text = re.sub(r"server: https://127\.0\.0\.1:\d+", f"server: https://127.0.0.1:{port}", text)
    kc = tmp_path / "down"
    kc.write_text(text)
    p = run_klua("server-version", "--kubeconfig", str(kc), timeout=60)
    assert p.returncode == 1
    assert f"127.0.0.1:{port}" in p.stderr
    assert f"cannot connect to https://127.0.0.1:{port}" in p.stderr, p.stderr
    _no_secrets(p.stderr, cluster)


def test_wrong_ca_is_refused(cluster):
    p = run_klua("server-version", "--kubeconfig", str(cluster.dir / "kubeconfig-wrongca"))
    assert p.returncode == 1
    assert "TLS verification of" in p.stderr and "certificate-authority" in p.stderr, p.stderr
    _no_secrets(p.stderr, cluster)


def test_run_requires_scripts():
    p = run_klua("run")
    assert p.returncode == 2
    assert "--scripts" in p.stderr


def test_out_of_range_run_flags_are_usage_errors(tmp_path):
    """Values the throttle and limits cannot use are refused up front, naming the flag and
    the accepted range (--qps 1e-300 or inf used to overflow the token bucket's wait)."""
    (tmp_path / "noop.lua").write_text(
        'return { watch = { apiVersion = "v1", kind = "ConfigMap" }, '
        'reconcile = function() end }\n')
    cases = [
        ("--qps", "1e-300"), ("--qps", "inf"), ("--qps", "-inf"), ("--qps", "nan"),
        ("--qps", "1e400"), ("--qps", "0"), ("--qps", "-5"), ("--qps", "5x"),
        ("--burst", "0"), ("--burst", "99999999999999999999"), ("--burst", "-1"),
        ("--workers", "0"), ("--lua-memory", "0"), ("--lua-timeout", "1e9"),
        ("--leader-lease-duration", "0"),
    ]
    for flag, value in cases:
        for argv in ([flag, value], [f"{flag}={value}"]):
            p = run_klua("run", "--scripts", str(tmp_path), "--kubeconfig",
                         str(tmp_path / "absent"), *argv)
            assert p.returncode == 2, (argv, p.returncode, p.stderr)
            line = p.stderr.strip()
            assert len(line.splitlines()) == 1, (argv, p.stderr)
            assert f'invalid value "{value}" for {flag}: want ' in line, (argv, line)
            assert " from " in line and " to " in line, (argv, line)
