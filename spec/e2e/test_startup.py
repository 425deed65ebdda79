"""klua started while the API server cannot be reached (a node boot, an API
server restart) waits for it, as client-go's informers do, instead of exiting:
the chaos suite found replicas exiting 1 at start-up whenever the API server
was restarting. A definite answer (a kind that is not served) still fails
start-up, as the strict start-up rule says."""
import re
import uuid

from conftest import ROOT, wait_for
from test_resilience import CutProxy


def _via_proxy(cluster, tmp_path, proxy):
    from conftest import Cluster
    view = Cluster(cluster.dir)
    view.kubeconfig = str(tmp_path / "kubeconfig-proxy")
    text = (cluster.dir / "kubeconfig").read_text()
    (tmp_path / "kubeconfig-proxy").write_text(
        re.sub(r"server: https://127\.0\.0\.1:\d+", f"server: https://127.0.0.1:{proxy.port}", text))
    return view


def test_start_waits_for_an_unreachable_api_server(cluster, klua_factory, tmp_path):
    port = int(re.search(r"server: https://127\.0\.0\.1:(\d+)",
                         (cluster.dir / "kubeconfig").read_text()).group(1))
    proxy = CutProxy(tmp_path, port)
    ns = "startup-" + uuid.uuid4().hex[:6]
    cluster.kubectl("create", "namespace", ns)
    try:
        proxy.block()
        k = klua_factory(scripts=ROOT / "examples/scripts", cluster=_via_proxy(cluster, tmp_path, proxy),
                         args=["--namespace", ns]).start()
        k.wait_log(r"waiting for the API server")
        # still trying, not gone: more refused connections while it waits
        refused = proxy.stats()["refused"]
        wait_for(lambda: proxy.stats()["refused"] > refused, 60, 0.1, "klua to try again")
        assert k.proc.poll() is None, k.log()[-3000:]
        assert k.log().count("waiting for the API server") == 1, k.log()[-3000:]
        proxy.unblock()
        cluster.apply({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "hello", "labels": {"klua.dev/greet": "true"}},
                       "data": {"name": "boot"}}, namespace=ns)
        wait_for(lambda: cluster.get_json("-n", ns, "configmap", "hello")
                 .get("data", {}).get("greeting") == "Hello, boot!", 90,
                 what="the greeter to reconcile once the API server answers")
    finally:
        proxy.stop()
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
