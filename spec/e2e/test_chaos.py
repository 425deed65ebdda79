"""The chaos suite's short run: `spec/support/chaos.py` (what `make chaos` runs
for longer) for about a minute on its own control plane, so that killing its
API server disturbs no other test.

What a user sees: under watch cuts, API server kills, etcd compaction,
stand-in GitHub failures, SIGKILLed replicas and leaders, klua settles once
the faults stop, every Comment is delivered exactly once, no counter update is
lost, both replicas' caches equal a quorum LIST, and no two replicas made
mutating GitHub calls at the same time. CHAOS_SEED replays a failing run;
CHAOS_SECONDS lengthens it.
"""
import os
import random
import re
import subprocess
import sys

import pytest

from conftest import KLUA, ROOT


def figures(out):
    """From the "chaos: ... k=v ..." lines: each key with its values, in order."""
    got = {}
    for line in out.splitlines():
        if line.startswith("chaos: ") and "FAILED" not in line:
            for k, v in re.findall(r"(\w+)=(\S+)", line):
                got.setdefault(k, []).append(v)
    return got


def test_chaos_short_run_keeps_every_invariant():
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 2**31))
    seconds = os.environ.get("CHAOS_SECONDS", "60")
    # not in tmp_path: a failing run's logs must outlive pytest's clean-up
    # (the driver removes the folder itself when the run passes)
    work = ROOT / "build/test-logs" / f"chaos-{seed}"
    cmd = [sys.executable, "-u", str(ROOT / "spec/support/chaos.py"), "--seconds", seconds,
           "--seed", str(seed), "--dir", str(work), "--klua", KLUA, "--settle", "90"]
    replay = f"replay with CHAOS_SEED={seed} CHAOS_SECONDS={seconds} (logs in {work}/logs)"
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = p.communicate(timeout=float(seconds) + 400)
    except subprocess.TimeoutExpired:
        p.terminate()   # the driver stops its control plane on SIGTERM
        stdout, stderr = p.communicate(timeout=180)
        pytest.fail(f"the chaos run did not finish in time; {replay}\n{stdout[-4000:]}")
    out = stdout + stderr[-3000:]
    failed = [line for line in out.splitlines() if "FAILED" in line]
    assert p.returncode == 0, f"the chaos run found problems; {replay}:\n" + (
        "\n".join(failed) if failed else "") + "\n\n" + out[-6000:]
    f = figures(out)
    # every kind of fault struck at least once, and replicas really died
    for kind in ("cut", "block", "partition", "apiserver", "compact", "kill", "leader",
                 "github"):
        assert int(f[kind][0]) >= 1, f"no {kind} fault in the run; {replay}\n{out}"
    assert int(f["starts"][0]) >= 4, out
    # the invariants, as figures
    assert f["duplicates"] == ["0"] and f["missing"] == ["0"] and f["wrong"] == ["0"], out
    assert int(f["comments"][0]) > 0 and f["delivered"] == f["comments"], out
    assert f["counter"] == f["increments"] == f["applied"] and f["lost"] == ["0"], out
    assert int(f["increments"][0]) > 0, out
    assert f["overlaps"] == ["0"], out
    assert f["mismatched"] == ["0", "0"], out        # both replicas' caches
    assert len(set(f["replica"])) == 2, out
    assert f["unexpected_exits"] == ["0"] and f["sanitizer_reports"] == ["0"], out
