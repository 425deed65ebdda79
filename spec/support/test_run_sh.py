"""Tests of the suite runner (spec/run.sh) itself.

A broken test build must never read "0 failed": run.sh runs what the sources
call for, so a missing binary, a binary that runs no tests, a TAP plan that
does not match, a missing klua.json module and a part with nothing to run are
all failures. Each case runs run.sh on a scratch build folder
(KLUA_BUILD_DIR) holding stand-in test binaries (shell scripts printing TAP).
Run: python3 -m pytest spec/support/test_run_sh.py
"""
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]
UNIT = sorted(p.stem for p in (ROOT / "spec/c").glob("test_*.c")) + ["test_json_nosse2"]
FUZZ = sorted(p.stem for p in (ROOT / "spec/fuzz").glob("fuzz_*.c")) + ["fuzz_json_nosse2"]

PASSING = "#!/bin/sh\necho 'ok 1 - one'\necho 'ok 2 - two'\necho '1..2'\n"


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)


def _unit_build(tmp_path, skip=(), override=None):
    """A build folder with a passing stand-in for every unit test binary."""
    for n in UNIT:
        if n in skip:
            continue
        _write(tmp_path / "asan/spec" / n, (override or {}).get(n, PASSING))
    return tmp_path


def _run(build, part):
    env = dict(os.environ, KLUA_BUILD_DIR=str(build), SPEC_ONLY=part)
    p = subprocess.run(["bash", str(ROOT / "spec/run.sh")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout + p.stderr


def test_every_unit_binary_present_and_passing_is_a_pass(tmp_path):
    rc, out = _run(_unit_build(tmp_path), "unit")
    assert rc == 0, out
    # two tests per stand-in binary, plus the source check
    assert out.rstrip().endswith(f"{2 * len(UNIT) + 1} passed, 0 failed"), out


def test_a_missing_unit_binary_fails_the_run(tmp_path):
    rc, out = _run(_unit_build(tmp_path, skip={"test_loop"}), "unit")
    assert rc != 0
    assert "FAILED: test_loop: test binary" in out and "is missing" in out, out
    assert out.rstrip().endswith(f"{2 * (len(UNIT) - 1) + 1} passed, 1 failed"), out


def test_the_portable_json_variant_is_required_too(tmp_path):
    rc, out = _run(_unit_build(tmp_path, skip={"test_json_nosse2"}), "unit")
    assert rc != 0
    assert "FAILED: test_json_nosse2: test binary" in out, out


def test_no_unit_binaries_at_all_fails_each_one(tmp_path):
    rc, out = _run(tmp_path, "unit")
    assert rc != 0
    assert out.rstrip().endswith(f"1 passed, {len(UNIT)} failed"), out


def test_a_binary_that_runs_no_tests_fails(tmp_path):
    silent = "#!/bin/sh\nexit 0\n"
    rc, out = _run(_unit_build(tmp_path, override={"test_json": silent}), "unit")
    assert rc != 0
    assert "FAILED: test_json: ran no tests" in out, out


def test_a_tap_plan_that_does_not_match_fails(tmp_path):
    cut = "#!/bin/sh\necho '1..3'\necho 'ok 1 - one'\n"   # stopped after one of three
    rc, out = _run(_unit_build(tmp_path, override={"test_store": cut}), "unit")
    assert rc != 0
    assert "FAILED: test_store: TAP plan 3, 1 tests ran" in out, out


def test_fuzz_targets_missing_fail(tmp_path):
    rc, out = _run(tmp_path, "fuzz")
    assert rc != 0
    for n in FUZZ:
        assert f"FAILED: {n}: fuzz target" in out, out
    assert out.rstrip().endswith(f"0 passed, {len(FUZZ)} failed"), out


def test_busted_without_the_klua_json_module_fails(tmp_path):
    rc, out = _run(tmp_path, "lua")
    assert rc != 0
    assert "klua.json) is missing" in out, out
