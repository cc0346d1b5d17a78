"""Traffic captured by iptables reaches the proxy, which routes by original destination.

A real network namespace (tests.support.netns) stands in for a pod: the app (curl,
run as UID 1000) dials a ClusterIP, a pod IP, or is dialled by a client in another
namespace, and the NAT rules of ``tulle init`` send each connection to ``tulle proxy
--transparent``. The proxy reads ``SO_ORIGINAL_DST`` and routes: the ClusterIP to its
service, balanced per request; a pod IP as it is; inbound, to the app on the port the
client dialled. The proxy runs as its own UID (2102), whose connections are not
redirected, so they are not looped back to it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.netns import NetworkNamespace, readable_copy, require_namespaces
from tests.support.proxy import TULLE

APP_UID = 1000
PROXY_UID = 2102
CLUSTER_IP = "10.96.0.50"
POD_IP = "10.244.0.5"
ENDPOINTS = ["10.244.1.1", "10.244.1.2", "10.244.1.3"]

MANIFEST = f"""\
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {{name: web}}
spec:
  clusterIP: {CLUSTER_IP}
  port: 80
  loadBalancer: {{algorithm: round-robin}}
  endpoints:
{"".join(f'    - {{address: "{ip}:8080"}}{chr(10)}' for ip in ENDPOINTS)}"""


def _proxy(pod: NetworkNamespace, manifests: Path, *args: str) -> None:
    process = pod.spawn("proxy", TULLE, "proxy", "-f", str(manifests), "--transparent",
                        "--admin", "127.0.0.1:4191", *args, uid=PROXY_UID)
    pod.wait_for_port("127.0.0.1", 4191, process)


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[NetworkNamespace]:
    """A pod whose TCP is captured by ``tulle init``; the other pods' addresses live on
    the same loopback, as KUBERNETES-TESTING.md shows."""
    require_namespaces()
    with readable_copy({"web.yaml": MANIFEST}) as manifests, \
            NetworkNamespace("pod", tmp_path) as pod:
        for ip in [POD_IP, *ENDPOINTS]:
            pod.run("ip", "addr", "add", f"{ip}/32", "dev", "lo")
        pod.run("ip", "route", "add", "default", "dev", "lo", "src", POD_IP)
        pod.run("sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1",
                "net.ipv4.conf.lo.route_localnet=1")
        for index, ip in enumerate(ENDPOINTS):
            pod.backend(f"web-{index}", ip, 8080)  # probed before capture starts
        pod.run(TULLE, "init", "--proxy-uid", str(PROXY_UID))
        _proxy(pod, Path(manifests), "--outbound", "127.0.0.1:4140", "--inbound", "off")
        yield pod


def _curl(pod: NetworkNamespace, *args: str) -> list[str]:
    """Answers, one per URL, from one curl run as the app (one keep-alive connection)."""
    result = pod.run("curl", "-sS", "--max-time", "10", "-w", "\\n", *args, uid=APP_UID)
    return result.stdout.splitlines()


def test_cluster_ip_is_balanced_per_request_over_one_connection(pod: NetworkNamespace) -> None:
    answers = _curl(pod, *[f"http://{CLUSTER_IP}/"] * 9)
    assert Counter(answers) == {"web-0": 3, "web-1": 3, "web-2": 3}, pod.logs()
    metrics = pod.run("curl", "-s", "http://127.0.0.1:4191/metrics").stdout
    # One captured connection from curl; the proxy's own three were not captured again.
    assert 'tcp_open_total{direction="outbound",peer="src"} 1.0' in metrics
    assert 'tcp_open_total{direction="outbound",peer="dst"} 3.0' in metrics


def test_service_name_resolved_to_the_cluster_ip(pod: NetworkNamespace) -> None:
    name = "web.default.svc.cluster.local"
    answers = _curl(pod, "--resolve", f"{name}:80:{CLUSTER_IP}", *[f"http://{name}/"] * 3)
    assert sorted(answers) == ["web-0", "web-1", "web-2"], pod.logs()


def test_a_pod_ip_is_forwarded_as_it_is(pod: NetworkNamespace) -> None:
    assert _curl(pod, *[f"http://{ENDPOINTS[1]}:8080/"] * 3) == ["web-1"] * 3, pod.logs()
    metrics = pod.run("curl", "-s", "http://127.0.0.1:4191/metrics").stdout
    assert f'service="{ENDPOINTS[1]}:8080"' in metrics


def test_uncaptured_connections_route_by_host_header(pod: NetworkNamespace) -> None:
    # Loopback is not redirected: this dials the proxy's port itself, as HTTP_PROXY would.
    answer = _curl(pod, "-H", "Host: web", "http://127.0.0.1:4140/")
    assert answer[0].startswith("web-"), pod.logs()


def test_init_is_idempotent(pod: NetworkNamespace) -> None:
    before = _rules(pod)
    pod.run(TULLE, "init", "--proxy-uid", str(PROXY_UID))
    assert _rules(pod) == before
    assert "TULLE" not in pod.run("ip6tables-save", "-t", "nat").stdout  # IPv6: opt-in
    assert before.count("-j TULLE_OUTBOUND") == 1 and before.count("-j TULLE_INBOUND") == 1
    assert "-A TULLE_OUTBOUND -m owner --uid-owner 2102 -j RETURN" in before
    dry = pod.run(TULLE, "init", "--dry-run").stdout
    assert "-A TULLE_OUTBOUND -p tcp -j REDIRECT --to-ports 4140" in dry
    assert _rules(pod) == before  # a dry run changes nothing
    for _ in range(2):
        pod.run(TULLE, "init", "--proxy-uid", str(PROXY_UID), "--ipv6")
    saved6 = pod.run("ip6tables-save", "-t", "nat").stdout
    assert saved6.count("-A OUTPUT -j TULLE_OUTBOUND") == 1
    assert "-A TULLE_OUTBOUND -d ::1/128 -j RETURN" in saved6


def _rules(pod: NetworkNamespace) -> str:
    saved = pod.run("iptables-save", "-t", "nat").stdout
    return "\n".join(line for line in saved.splitlines() if line.startswith("-A"))


def test_inbound_goes_to_the_app_on_its_original_port(tmp_path: Path) -> None:
    """A client in another namespace dials the pod's IP; PREROUTING sends it to the
    inbound port; the proxy forwards to the app, which listens on localhost only."""
    require_namespaces()
    mesh = "apiVersion: tulle.dev/v1alpha1\nkind: ServiceMesh\nmetadata: {name: default}\n"
    with readable_copy({"mesh.yaml": mesh}) as manifests, \
            NetworkNamespace("client", tmp_path) as client, \
            NetworkNamespace("pod", tmp_path) as pod:
        client.run("ip", "link", "add", "vc", "type", "veth", "peer", "name", "vp",
                   "netns", pod.name)
        client.run("ip", "addr", "add", "10.250.0.1/24", "dev", "vc")
        client.run("ip", "link", "set", "vc", "up")
        pod.run("ip", "addr", "add", "10.250.0.2/24", "dev", "vp")
        pod.run("ip", "link", "set", "vp", "up")
        pod.run(TULLE, "init", "--proxy-uid", str(PROXY_UID))
        pod.backend("app", "127.0.0.1", 8080)
        _proxy(pod, Path(manifests), "--outbound", "127.0.0.1:4140",
               "--inbound", "0.0.0.0:4143")
        answer = client.run("curl", "-sS", "--max-time", "10", "http://10.250.0.2:8080/")
        assert answer.stdout == "app", pod.logs()
        metrics = pod.run("curl", "-s", "http://127.0.0.1:4191/metrics").stdout
        assert 'response_total{' in metrics and 'direction="inbound"' in metrics


V6_MANIFEST = """\
apiVersion: tulle.dev/v1alpha1
kind: MeshService
metadata: {name: web}
spec:
  clusterIP: "fd00:96::50"
  port: 80
  loadBalancer: {algorithm: round-robin}
  endpoints:
    - {address: "[fd00:244:1::1]:8080"}
    - {address: "[fd00:244:1::2]:8080"}
"""


def test_ipv6_is_routed_by_ip6t_so_original_dst(tmp_path: Path) -> None:
    """The same over IPv6: ip6tables rules (tulle init --ipv6) and a proxy whose outbound
    listener is on IPv6 loopback."""
    require_namespaces()
    endpoints = ["fd00:244:1::1", "fd00:244:1::2"]
    with readable_copy({"web.yaml": V6_MANIFEST}) as manifests, \
            NetworkNamespace("pod6", tmp_path) as pod:
        for ip in ["fd00:244::5", *endpoints]:
            pod.run("ip", "-6", "addr", "add", f"{ip}/128", "dev", "lo", "nodad")
        pod.run("ip", "-6", "route", "add", "default", "dev", "lo", "src", "fd00:244::5")
        for index, ip in enumerate(endpoints):
            pod.backend(f"web6-{index}", ip, 8080)
        pod.run(TULLE, "init", "--proxy-uid", str(PROXY_UID), "--ipv6")
        _proxy(pod, Path(manifests), "--outbound", "[::1]:4140", "--inbound", "off")
        answers = _curl(pod, *["http://[fd00:96::50]/"] * 4)
        assert Counter(answers) == {"web6-0": 2, "web6-1": 2}, pod.logs()
        assert _curl(pod, f"http://[{endpoints[1]}]:8080/") == ["web6-1"]
