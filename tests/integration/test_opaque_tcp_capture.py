"""Redis through the opaque TCP path: three real redis-servers behind one captured service.

A network namespace stands in for a pod (as in test_transparent_capture): redis-cli, run
as the app, dials the service's ClusterIP; the NAT rules of ``tulle init`` send each
connection to ``tulle proxy --transparent``, which balances it, once, over the three
endpoints and splices it. ``redis`` is declared ``protocol: tcp`` (no detection); ``cache``
points at the same servers on a port that is neither opaque nor declared, so detection
sees RESP's first byte and proxies it as opaque TCP at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.netns import NetworkNamespace, readable_copy, require_namespaces
from tests.support.proxy import TULLE
from tests.support.tools import require_tools

APP_UID = 1000
PROXY_UID = 2102
POD_IP = "10.244.0.5"
REDIS_IP = "10.96.0.60"
CACHE_IP = "10.96.0.61"
ENDPOINTS = ["10.244.1.1", "10.244.1.2", "10.244.1.3"]


def _service(name: str, cluster_ip: str, port: int, protocol: str) -> str:
    endpoints = "".join(f'    - {{address: "{ip}:6379"}}\n' for ip in ENDPOINTS)
    return (f"apiVersion: tulle.dev/v1alpha1\nkind: MeshService\nmetadata: {{name: {name}}}\n"
            f"spec:\n  clusterIP: {cluster_ip}\n  port: {port}\n  protocol: {protocol}\n"
            f"  loadBalancer: {{algorithm: round-robin}}\n  timeouts: {{connect: 500ms}}\n"
            f"  endpoints:\n{endpoints}")


MANIFESTS = {
    "redis.yaml": _service("redis", REDIS_IP, 6379, "tcp"),
    "cache.yaml": _service("cache", CACHE_IP, 7000, "http"),
}


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[NetworkNamespace]:
    require_namespaces()
    require_tools(["redis-server", "redis-cli"])
    with readable_copy(MANIFESTS) as manifests, NetworkNamespace("redis", tmp_path) as pod:
        for ip in [POD_IP, *ENDPOINTS]:
            pod.run("ip", "addr", "add", f"{ip}/32", "dev", "lo")
        pod.run("ip", "route", "add", "default", "dev", "lo", "src", POD_IP)
        pod.run("sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1",
                "net.ipv4.conf.lo.route_localnet=1")
        for index, ip in enumerate(ENDPOINTS):
            process = pod.spawn(f"redis-{index}", "redis-server", "--bind", ip, "--port", "6379",
                                "--save", "", "--appendonly", "no", "--protected-mode", "no",
                                "--dir", str(tmp_path))
            pod.wait_for_port(ip, 6379, process)
            pod.run("redis-cli", "-h", ip, "SET", "whoami", f"redis-{index}")  # before capture
        pod.run(TULLE, "init", "--proxy-uid", str(PROXY_UID))
        proxy = pod.spawn("proxy", TULLE, "proxy", "-f", manifests, "--transparent",
                          "--outbound", "127.0.0.1:4140", "--inbound", "off",
                          "--admin", "127.0.0.1:4191", uid=PROXY_UID)
        pod.wait_for_port("127.0.0.1", 4191, proxy)
        yield pod


def _whoami(pod: NetworkNamespace, ip: str, port: int, times: int) -> list[str]:
    """One redis-cli connection per GET, as the app."""
    script = f"for i in $(seq {times}); do redis-cli -h {ip} -p {port} GET whoami; done"
    return pod.run("sh", "-c", script, uid=APP_UID, timeout=60).stdout.split()


def _metrics(pod: NetworkNamespace) -> str:
    return pod.run("curl", "-s", "http://127.0.0.1:4191/metrics").stdout


def test_each_connection_is_balanced_over_three_redis_servers(pod: NetworkNamespace) -> None:
    answers = _whoami(pod, REDIS_IP, 6379, 9)
    assert Counter(answers) == {"redis-0": 3, "redis-1": 3, "redis-2": 3}, pod.logs()
    metrics = _metrics(pod)
    labels = 'direction="outbound",dst_namespace="default",dst_service="redis"'
    assert f'tcp_open_total{{{labels},peer="dst"}} 9.0' in metrics
    assert f'tcp_open_total{{{labels},peer="src"}} 9.0' in metrics
    # The proxy's own connections to the endpoints were not captured again.
    assert 'tcp_open_total{direction="outbound",peer="src"} 0.0' in metrics
    stat = pod.run(TULLE, "stat", "--admin", "127.0.0.1:4191", "--window", "1s").stdout
    assert any(line.split()[:2] == ["redis", "outbound"] for line in stat.splitlines()), stat


def test_a_port_that_is_not_declared_is_detected_as_opaque(pod: NetworkNamespace) -> None:
    answers = _whoami(pod, CACHE_IP, 7000, 6)
    assert Counter(answers) == {"redis-0": 2, "redis-1": 2, "redis-2": 2}, pod.logs()


def test_a_dead_endpoint_costs_no_client_a_failure(pod: NetworkNamespace) -> None:
    process, _ = next(p for p in pod.processes if p[1].name.endswith("redis-0.log"))
    process.terminate()
    process.wait(10)
    answers = _whoami(pod, REDIS_IP, 6379, 12)
    assert len(answers) == 12, pod.logs()  # every GET answered: the refused connect retried
    assert set(answers) == {"redis-1", "redis-2"}, answers
