"""A meshed pod, run for real: the Pod the API server returned after injection has its
init container's command and its sidecar's command run in a network namespace.

There is no kubelet here, so the test plays its part, and only that: it makes the
pod's network namespace (tests.support.netns), runs the init container's command
(``tulle init …``, iptables for real) and the sidecar's (``tulle proxy --transparent
--control=http://tulle-control.tulle.svc:8086 …``) exactly as injected, and stands in
for cluster DNS and kube-proxy where the pod reaches the control plane: the name
resolves (an /etc/hosts for the namespace) to the control plane Service's real
ClusterIP, where a relay (socat, over a Unix socket) reaches ``tulle control``; and
``web`` resolves to its ClusterIP as the pod's DNS search path would make it. The
three endpoints of ``web`` are Pods whose status the test sets (their IPs are
served inside the namespace by three backends), and the controller-manager turns them
into the EndpointSlice the control plane streams. Then a plain ``curl`` (as the app's
UID) reaches all three through the proxy, by ClusterIP and by name.

The steps are those of docs/kubernetes.md's walk-through (``walkthrough.record``):
kubectl apply a Service and its MeshService, annotate the namespace, create a pod,
``curl http://web``, ``tulle stat``.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k8s.conftest import InstalledMesh
from tests.k8s.kubectl import Kube
from tests.k8s.walkthrough import record
from tests.support.netns import NetworkNamespace, require_namespaces
from tests.support.proxy import TULLE
from tests.support.tools import require_tools

APP_UID = 1000
POD_IP = "10.244.0.5"
WEB_IPS = ["10.244.1.1", "10.244.1.2", "10.244.1.3"]

WEB = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {name: web, namespace: default}
spec:
  port: 80
  loadBalancer: {algorithm: round-robin}
"""


def _web_pods(kube: Kube) -> None:
    # The EndpointSlice controller publishes pods of known nodes only.
    kube.kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}}))
    for index, ip in enumerate(WEB_IPS):
        name = f"web-{index}"
        kube.kubectl("apply", "-f", "-", stdin=json.dumps({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"nodeName": "node-1", "containers": [{
                "name": "web", "image": "example/web:1", "ports": [{"containerPort": 8080}]}]},
        }))
        kube.kubectl("patch", "pod", name, "-n", "default", "--subresource=status",
                     "--type=merge", "-p", json.dumps({"status": {
                         "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                         "conditions": [{"type": "Ready", "status": "True"},
                                        {"type": "ContainersReady", "status": "True"}]}}))


@pytest.fixture
def meshed_pod(kube: Kube, mesh: InstalledMesh, tmp_path: Path
               ) -> Iterator[tuple[NetworkNamespace, str]]:
    """The injected client pod, running; and the ClusterIP of web."""
    require_namespaces()
    require_tools(["socat"])
    record("kubectl apply -f web.yaml", kube.kubectl("apply", "-f", "-", stdin=WEB).stdout)
    _web_pods(kube)
    cluster_ip = kube.get("service", "web", "-n", "default")["spec"]["clusterIP"]
    control_ip = kube.get("service", "tulle-control", "-n", mesh.namespace)["spec"]["clusterIP"]
    annotate = ("annotate", "namespace", "default", "tulle.dev/inject=enabled")
    record(f"kubectl {' '.join(annotate)}", kube.kubectl(*annotate).stdout)
    try:
        run = ("run", "curl", "--image=curlimages/curl", "--", "sleep", "infinity")
        record(f"kubectl {' '.join(run)}", kube.kubectl(*run).stdout)
    finally:
        kube.kubectl("annotate", "namespace", "default", "tulle.dev/inject-")
    names = ("get", "pod", "curl", "-o",
             "jsonpath={.spec.initContainers[*].name} {.spec.containers[*].name}")
    record(f"kubectl {' '.join(names[:-1])} '{names[-1]}'", kube.kubectl(*names).stdout)
    pod = kube.get("pod", "curl", "-n", "default")
    init = next(c for c in pod["spec"]["initContainers"] if c["name"] == "tulle-init")
    sidecar = next(c for c in pod["spec"]["containers"] if c["name"] == "tulle-proxy")
    relay_dir = tempfile.TemporaryDirectory(prefix="tulle-relay-")
    socket_path = f"{relay_dir.name}/control.sock"
    relay = subprocess.Popen(["socat", f"UNIX-LISTEN:{socket_path},fork",
                              f"TCP:127.0.0.1:{mesh.control.port}"], stderr=subprocess.DEVNULL)
    try:
        with NetworkNamespace("client", tmp_path) as netns:
            netns.hosts({f"tulle-control.{mesh.namespace}.svc": control_ip, "web": cluster_ip})
            for ip in [POD_IP, control_ip, *WEB_IPS]:
                netns.run("ip", "addr", "add", f"{ip}/32", "dev", "lo")
            netns.run("ip", "route", "add", "default", "dev", "lo", "src", POD_IP)
            netns.run("sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1",
                      "net.ipv4.conf.lo.route_localnet=1")
            netns.spawn("control-relay", "socat", f"TCP-LISTEN:8086,bind={control_ip},fork,"
                        "reuseaddr", f"UNIX-CONNECT:{socket_path}")
            for index, ip in enumerate(WEB_IPS):
                netns.backend(f"web-{index}", ip, 8080)
            # The init container (as root, with NET_ADMIN), then the sidecar as its UID.
            netns.run(TULLE, *init["args"])
            uid = sidecar["securityContext"]["runAsUser"]
            proxy = netns.spawn("tulle-proxy", TULLE, *sidecar["args"], uid=uid)
            netns.wait_for_port("127.0.0.1", 4191, proxy)
            ready = netns.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                              "--retry", "20", "--retry-delay", "0", "--retry-all-errors",
                              "--fail", "http://127.0.0.1:4191/ready", check=False)
            assert ready.stdout == "200", netns.logs()
            yield netns, cluster_ip
    finally:
        relay.terminate()
        relay.wait(10)
        relay_dir.cleanup()
        kube.kubectl("delete", "-f", "-", "--wait=false", stdin=WEB, check=False)
        kube.kubectl("delete", "pods", "-n", "default", "-l", "app=web", "--wait=false",
                     check=False)
        kube.kubectl("delete", "pod", "curl", "-n", "default", "--wait=false", check=False)


def _curl(netns: NetworkNamespace, *args: str) -> list[str]:
    result = netns.run("curl", "-sS", "--max-time", "10", "-w", "\\n", *args, uid=APP_UID)
    return result.stdout.splitlines()


def test_curl_reaches_every_endpoint_of_web_through_the_proxy(
    meshed_pod: tuple[NetworkNamespace, str],
) -> None:
    netns, cluster_ip = meshed_pod
    # The proxy knows web's endpoints once the slice has reached it through the control
    # plane; until then a request gets 503 (no endpoints) or 404.
    for _ in range(50):
        if _curl(netns, f"http://{cluster_ip}/")[0].startswith("web-"):
            break
    answers = _curl(netns, *[f"http://{cluster_ip}/"] * 9)
    assert Counter(answers) == {"web-0": 3, "web-1": 3, "web-2": 3}, netns.logs()
    seed = _curl(netns, "-s", "http://web", "http://web", "http://web")
    assert sorted(seed) == ["web-0", "web-1", "web-2"]
    record("kubectl exec curl -c curl -- curl -s -w '\\n' http://web http://web http://web",
           "\n".join(seed))
    name = "web.default.svc.cluster.local"
    by_name = _curl(netns, "--resolve", f"{name}:80:{cluster_ip}", *[f"http://{name}/"] * 3)
    assert sorted(by_name) == ["web-0", "web-1", "web-2"]
    metrics = netns.run("curl", "-s", "http://127.0.0.1:4191/metrics").stdout
    # The proxy's own connections to the endpoints were not captured and looped back:
    # each curl run is one captured connection, and the proxy keeps one per endpoint.
    counts = {line.split()[0]: float(line.split()[-1]) for line in metrics.splitlines()
              if line.startswith('tcp_open_total{direction="outbound"')}
    assert counts['tcp_open_total{direction="outbound",peer="src"}'] <= 53, counts
    assert counts['tcp_open_total{direction="outbound",peer="dst"}'] <= 6, counts
    with netns.load(f"http://{cluster_ip}/", uid=APP_UID, seconds=6):
        stat = netns.run(TULLE, "stat", "--admin", "127.0.0.1:4191", "-o", "wide",
                         "--window", "5s", "--direction", "outbound").stdout
    record("tulle stat -o wide --direction outbound", stat)
    for ip in WEB_IPS:
        assert f"{ip}:8080" in stat, stat
