"""`klua check` (issue 4 §3): every script loaded as `klua run` would, without
a cluster; messages with file and line; exit codes; quick."""
import re
import shutil
import time

from conftest import ROOT, run_klua

FIX = ROOT / "spec/lua_fixtures"


def test_good_folders_pass():
    t0 = time.monotonic()
    p = run_klua("check", str(FIX / "good"), str(ROOT / "lua"))
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert f"ok: {FIX}/good/hello.lua (controller hello watches v1 ConfigMap)" in p.stdout
    assert f"ok: {ROOT}/lua/comment.lua (controller comment watches github.klua.dev/v1 Comment)" \
        in p.stdout
    assert "warning" not in p.stdout
    print(f"klua check: {took * 1000:.0f} ms")


def test_bad_folder_reports_each_script_with_file_and_line():
    p = run_klua("check", str(FIX / "bad"))
    assert p.returncode == 1
    bad = f"{FIX}/bad"
    for want in [
        f'{bad}/bad_api_version.lua:2: watch.apiVersion "Apps/V1" is not a valid apiVersion',
        f'{bad}/bad_watch.lua:4: watch.kind "configmap" is not a valid kind',
        f"{bad}/endless.lua:1: ",
        f"{bad}/huge_workers.lua:4: workers must be an integer from 1 to 1024",
        f"{bad}/missing_reconcile.lua:2: the controller has no reconcile function",
        f'{bad}/reconclie.lua:4: unknown field "reconclie" in the controller table '
        f'(did you mean "reconcile"?',
        f"{bad}/returns_nothing.lua:1: the script must return a table declaring a controller",
        f"{bad}/syntax.lua:5: unexpected symbol near ','",
        f'{bad}/typo_field.lua:4: unknown field "worker" in the controller table '
        f'(did you mean "workers"?',
    ]:
        assert f"error: {want}" in p.stderr, (want, p.stderr)
    assert len(p.stderr.strip().splitlines()) == 9, p.stderr


def test_warnings_are_reported_but_do_not_fail():
    p = run_klua("check", str(FIX / "warnings"))
    assert p.returncode == 0, p.stderr
    noisy = f"{FIX}/warnings/noisy.lua"
    assert f"warning: {noisy}:3: assigns the global 'counter' (declare it local)" in p.stdout
    assert f"warning: {noisy}:4: noisy: this controller is only a test" in p.stdout
    assert f"ok: {noisy}" in p.stdout


def test_one_file_duplicates_and_missing_folders(tmp_path):
    p = run_klua("check", str(FIX / "good/hello.lua"))
    assert p.returncode == 0 and "ok: " in p.stdout
    d = tmp_path / "dup"
    d.mkdir()
    shutil.copy(FIX / "warnings/noisy.lua", d / "a.lua")
    shutil.copy(FIX / "warnings/noisy.lua", d / "b.lua")
    (d / "b.lua").write_text((d / "b.lua").read_text().replace("return {", 'return {\n  name = "a",'))
    p = run_klua("check", str(d))
    assert p.returncode == 1
    assert f'{d}/b.lua: controller name "a" is already used by {d}/a.lua' in p.stderr
    p = run_klua("check", str(tmp_path / "nope"))
    assert p.returncode == 1 and f"script directory {tmp_path}/nope:" in p.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    p = run_klua("check", str(empty))
    assert p.returncode == 1 and "no *.lua scripts found" in p.stderr


ESCAPES = {
    # the kill fires in a coroutine; the script catches it in a loop after
    "coroutine_then_pcall.lua": """
pcall(coroutine.wrap(function() while true do end end))
while true do pcall(function() for i = 1, 1e6 do end end) end
return {}
""",
    # C calls the count hook cannot see, each refused, in a loop
    "pattern_loop.lua": """
local s = string.rep("a", 2e6)
for i = 1, 1e5 do pcall(string.find, s, ".-.-b") end
return {}
""",
}


def test_check_stops_scripts_that_try_to_outlive_the_deadline(tmp_path):
    for name, src in ESCAPES.items():
        (tmp_path / name).write_text(src.lstrip())
    t0 = time.monotonic()
    p = run_klua("check", str(tmp_path), timeout=120)
    took = time.monotonic() - t0
    assert p.returncode == 1, p.stderr
    # (long paths are shortened from the left: match the file's base name;
    # the first kill fires in the coroutine, on line 1)
    assert re.search(r"/coroutine_then_pcall\.lua:1: deadline exceeded", p.stderr), p.stderr
    assert re.search(r"/pattern_loop\.lua:2: deadline exceeded", p.stderr), p.stderr
    print(f"\nklua check of {len(ESCAPES)} escaping scripts: {took:.2f} s")
    assert took < 20, took   # 200 ms deadline each; generous for the sanitizer build
