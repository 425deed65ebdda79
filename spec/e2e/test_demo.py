"""`make demo`, as a new user runs it: `bash spec/support/demo.sh` with DEMO_EXIT=1
(it stops after showing the result). It starts its own control plane in
build/demo-cluster and the stand-in GitHub, runs bin/klua, applies
examples/comment.yaml and must show the comment delivered.

KLUA_E2E_DEMO=0 skips it (it costs a second control plane for ~20 s).
"""
import os
import subprocess

import pytest
import yaml

from conftest import ROOT


@pytest.mark.skipif(os.environ.get("KLUA_E2E_DEMO") == "0", reason="KLUA_E2E_DEMO=0")
def test_demo_shows_a_delivered_comment():
    assert (ROOT / "bin/klua").exists(), "bin/klua is missing: the demo runs `make bin/klua` output"
    example = yaml.safe_load((ROOT / "examples/comment.yaml").read_text())
    env = {k: v for k, v in os.environ.items()
           if k not in ("GITHUB_TOKEN", "GITHUB_API_URL", "KUBECONFIG")}
    env["DEMO_EXIT"] = "1"
    # the way `make demo` runs it (Makefile: bash spec/support/demo.sh)
    p = subprocess.run(["bash", str(ROOT / "spec/support/demo.sh")], cwd=ROOT, env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    status, _, posted = out.partition("the comment as posted")
    assert '"type": "Delivered"' in status and '"status": "True"' in status, out[-4000:]
    assert example["spec"]["message"] in posted, out[-4000:]
    assert "demo: stopping" in out
