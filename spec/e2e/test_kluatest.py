"""`klua test` end to end: the shipped specs pass in both modes (the
in-memory API and the real control plane), a failing spec is reported with
file:line and exit 1, an unexpected ctx:http request fails its test, and
`klua run` / `klua check` leave *_spec.lua alone."""
import re
import subprocess
import textwrap

import pytest

from conftest import KLUA, ROOT, run_klua, wait_for

SUITES = [
    ("lua", ["--crds", "crds"], 46),            # the Comment controller and klua.github
    ("examples/scripts", [], 3),                # greeter
    ("examples/alert", [], 2),
    ("examples/app", [], 4),
    ("spec/e2e/kluatest/api", [], 8),           # the API semantics specs rely on
]


def klua_test(*args, env=None, timeout=300):
    p = subprocess.run([KLUA, "test", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=timeout, env=env)
    # The sanitizer build reports leaks and UB at exit: a report fails the test.
    for bad in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert bad not in p.stderr, p.stderr[-4000:]
    return p


def summary(out):
    m = re.search(r"^(\d+) passed, (\d+) failed", out, re.M)
    assert m, f"no summary line in:\n{out}"
    return int(m.group(1)), int(m.group(2))


@pytest.mark.parametrize("folder,extra,count", SUITES, ids=[s[0] for s in SUITES])
def test_shipped_specs_pass_in_memory(folder, extra, count):
    p = klua_test(folder, *extra)
    assert p.returncode == 0, p.stdout + p.stderr
    assert summary(p.stdout) == (count, 0)
    assert p.stdout.rstrip().splitlines()[-1] == f"{count} passed, 0 failed"


# Tests that need the in-memory API (kt.api.fail) skip themselves on the cluster.
CLUSTER_SKIPS = {"lua": 1}


@pytest.mark.parametrize("folder,extra,count", SUITES, ids=[s[0] for s in SUITES])
def test_shipped_specs_pass_on_the_cluster(cluster, folder, extra, count):
    p = klua_test(folder, *extra, "--cluster", "--kubeconfig", cluster.kubeconfig)
    assert p.returncode == 0, p.stdout + p.stderr
    skips = CLUSTER_SKIPS.get(folder, 0)
    assert summary(p.stdout) == (count - skips, 0)
    assert len(re.findall(r"^SKIP ", p.stdout, re.M)) == skips, p.stdout
    # each test's namespace is deleted afterwards
    left = cluster.kubectl("get", "namespaces", "-o", "name").stdout
    for line in left.splitlines():
        if line.startswith("namespace/klua-test-"):
            phase = cluster.kubectl("get", line, "-o", "jsonpath={.status.phase}",
                                    check=False).stdout
            assert phase in ("", "Terminating"), f"{line} left behind: {phase}"


GREETER = (ROOT / "examples/scripts/greeter.lua").read_text()


def test_init_scaffold_spec_passes(tmp_path):
    d = tmp_path / "widgets"
    p = subprocess.run([KLUA, "init", str(d), "--group", "example.klua.dev", "--version", "v1",
                        "--kind", "Widget"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    p = klua_test(str(d))
    assert p.returncode == 0, p.stdout + p.stderr
    assert summary(p.stdout) == (1, 0)


def test_failing_spec_is_reported_with_file_and_line(tmp_path):
    (tmp_path / "greeter.lua").write_text(GREETER)
    spec = tmp_path / "greeter_spec.lua"
    spec.write_text(textwrap.dedent("""\
        local CM = { apiVersion = "v1", kind = "ConfigMap" }
        describe("greeter", function()
          it("passes", function(kt)
            kt.create({ apiVersion = "v1", kind = "ConfigMap",
              metadata = { name = "a", labels = { ["klua.dev/greet"] = "true" } } })
            kt.run()
            assert.equal("Hello, world!", kt.get(CM, nil, "a").data.greeting)
          end)
          it("expects the wrong greeting", function(kt)
            kt.create({ apiVersion = "v1", kind = "ConfigMap",
              metadata = { name = "b", labels = { ["klua.dev/greet"] = "true" } } })
            kt.run()
            assert.equal("Bonjour", kt.get(CM, nil, "b").data.greeting)
          end)
        end)
        """))
    p = klua_test(str(tmp_path))
    assert p.returncode == 1, p.stdout + p.stderr
    assert f"{spec}:13: expected \"Bonjour\", got \"Hello, world!\"" in p.stdout, p.stdout
    assert "FAIL greeter > expects the wrong greeting" in p.stdout
    assert p.stdout.rstrip().splitlines()[-1] == "1 passed, 1 failed"


def test_unexpected_http_request_fails_the_test(tmp_path):
    (tmp_path / "caller.lua").write_text(textwrap.dedent("""\
        return {
          watch = { apiVersion = "v1", kind = "ConfigMap" },
          reconcile = function(ctx, cm)
            if (cm.data or {}).answer then return nil end
            local resp = ctx:http({ method = "GET", url = "http://api.example/v1/" .. cm.metadata.name })
            if resp and resp.status == 200 then
              ctx:patch(cm, { data = { answer = resp.body } })
            end
          end,
        }
        """))
    (tmp_path / "caller_spec.lua").write_text(textwrap.dedent("""\
        local CM = { apiVersion = "v1", kind = "ConfigMap" }
        describe("caller", function()
          it("uses the declared answer", function(kt)
            kt.http.expect({ method = "GET", url = "http://api.example/v1/a", body = "42" })
            kt.create({ apiVersion = "v1", kind = "ConfigMap", metadata = { name = "a" } })
            kt.run()
            assert.equal("42", kt.get(CM, nil, "a").data.answer)
          end)
          it("calls what nobody declared", function(kt)
            kt.create({ apiVersion = "v1", kind = "ConfigMap", metadata = { name = "b" } })
            kt.run()
          end)
          it("leaves an expected request unmade", function(kt)
            kt.http.expect({ method = "POST", url = "http://api.example/never" })
          end)
        end)
        """))
    p = klua_test(str(tmp_path))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "unexpected request: GET http://api.example/v1/b" in p.stdout, p.stdout
    assert "expected request not made: POST http://api.example/never" in p.stdout, p.stdout
    assert p.stdout.rstrip().splitlines()[-1] == "1 passed, 2 failed"


def test_api_faults_and_skips(tmp_path):
    """kt.api.fail answers matching in-memory API requests with an error, and an
    unused fault fails its test; kt.skip ends a test as pending, saying why."""
    (tmp_path / "greeter.lua").write_text(GREETER)
    (tmp_path / "greeter_spec.lua").write_text(textwrap.dedent("""\
        local function cm(name) return { apiVersion = "v1", kind = "ConfigMap", metadata = { name = name } } end
        describe("faults", function()
          it("fails a patch once", function(kt)
            local a = kt.create(cm("a"))
            kt.api.fail({ method = "PATCH", match = "/configmaps/a$", status = 503, reason = "ServiceUnavailable" })
            local out, err = kt.patch(a, { data = { k = "v" } })
            assert.is_nil(out)
            assert.equal(503, err.code)
            assert.equal("ServiceUnavailable", err.reason)
            assert.not_nil(kt.patch(a, { data = { k = "v" } }))
          end)
          it("leaves a fault unused", function(kt)
            kt.api.fail({ method = "DELETE", match = "/configmaps/never$" })
          end)
          it("skips", function(kt)
            kt.skip("not here")
            error("not reached")
          end)
        end)
        """))
    p = klua_test(str(tmp_path))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "API fault not used: DELETE /configmaps/never$ (0 of 1)" in p.stdout, p.stdout
    assert "SKIP faults > skips: not here" in p.stdout, p.stdout
    assert p.stdout.rstrip().splitlines()[-1] == "1 passed, 1 failed, 1 pending"


def test_run_and_check_skip_spec_files(tmp_path):
    (tmp_path / "greeter.lua").write_text(GREETER)
    (tmp_path / "greeter_spec.lua").write_text("this is not a controller(")
    p = subprocess.run([KLUA, "check", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "greeter_spec" not in p.stdout + p.stderr


def test_no_specs_is_an_error(tmp_path):
    (tmp_path / "greeter.lua").write_text(GREETER)
    p = klua_test(str(tmp_path))
    assert p.returncode == 1
    assert "no *_spec.lua files" in p.stderr


# --- klua run --record, klua replay

SECRET_WATCHER = """\
return {
  watch = { apiVersion = "v1", kind = "Secret" },
  selector = "kt/rec=yes",
  reconcile = function(ctx, s) return nil end,
}
"""


def test_record_then_replay_shows_a_changed_write_after_a_script_edit(
        cluster, namespace, klua_factory, tmp_path):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "greeter.lua").write_text(GREETER)
    (scripts / "secrets.lua").write_text(SECRET_WATCHER)
    rec = tmp_path / "rec.jsonl"
    k = klua_factory(scripts, args=["--namespace", namespace, "--record", str(rec)]).start()
    k.wait_log("caches synced")
    cluster.kubectl("create", "-n", namespace, "secret", "generic", "s1",
                    "--from-literal=password=hunter2-e2e")
    cluster.kubectl("label", "-n", namespace, "secret", "s1", "kt/rec=yes")
    cluster.kubectl("create", "-n", namespace, "configmap", "hi", "--from-literal=name=Ada")
    cluster.kubectl("label", "-n", namespace, "configmap", "hi", "klua.dev/greet=true")
    wait_for(lambda: cluster.get_json("-n", namespace, "configmap", "hi")
             .get("data", {}).get("greeting") == "Hello, Ada!", what="the greeting")
    wait_for(lambda: '"t":"write"' in rec.read_text(), what="the write in the recording")
    assert k.stop() == 0
    text = rec.read_text()
    assert "hunter2" not in text and "aHVudGVyMi1lMmU" not in text   # plain or base64
    assert '"password":"<redacted>"' in text

    same = run_klua("replay", str(rec), "--scripts", str(scripts))
    assert same.returncode == 0, same.stdout + same.stderr
    assert "Sanitizer" not in same.stderr and "runtime error:" not in same.stderr, same.stderr
    assert f"{namespace}/hi (greeter): unchanged" in same.stdout
    assert same.stdout.rstrip().endswith("0 changed, 1 unchanged")

    edited = tmp_path / "edited"
    edited.mkdir()
    (edited / "greeter.lua").write_text(GREETER.replace('"Hello, "', '"Hi, "'))
    (edited / "secrets.lua").write_text(SECRET_WATCHER)
    diff = run_klua("replay", str(rec), "--scripts", str(edited))
    assert diff.returncode == 1, diff.stdout + diff.stderr
    out = diff.stdout
    assert f"{namespace}/hi (greeter): changed" in out
    assert f'- PATCH ConfigMap {namespace}/hi {{"data":{{"greeting":"Hello, Ada!"}}}}' in out, out
    assert f'+ PATCH ConfigMap {namespace}/hi {{"data":{{"greeting":"Hi, Ada!"}}}}' in out, out
    assert out.rstrip().endswith("1 changed, 0 unchanged")
