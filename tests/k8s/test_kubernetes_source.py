"""``KubernetesSource`` against the real API server: controller-made slices, bad input,
watches that survive an API server restart and an expired resourceVersion."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.k8s.cluster import Cluster
from tests.k8s.kube import SERVICES, SLICES, api, endpoint_slice, service, unique
from tulle.config import Config
from tulle.discovery.kubernetes import KubernetesSource
from tulle.discovery.kubernetes_access import from_kubeconfig
from tulle.discovery.kubernetes_api import ApiError
from tulle.discovery.kubernetes_watch import Reflector, Resource


class Watched:
    """A started source and the configurations it reported."""

    def __init__(self, source: KubernetesSource) -> None:
        self.source = source
        self.config: Config | None = None

    def on_config(self, config: Config, reason: str) -> None:
        self.config = config

    async def until(self, check: Callable[[Config], bool], timeout: float = 5.0) -> Config:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            config = self.config or self.source.config
            if config is not None and check(config):
                return config
            await asyncio.sleep(0.02)
        raise AssertionError(f"no configuration satisfied the check in {timeout}s")


@pytest.fixture
async def watched(cluster: Cluster) -> AsyncIterator[Watched]:
    source = KubernetesSource(await from_kubeconfig(cluster.kubeconfig), environ={})
    holder = Watched(source)
    holder.config = await source.initial()
    source.start(holder.on_config, lambda message: None)
    yield holder
    await source.aclose()


def _endpoints(config: Config, key: str) -> set[str]:
    service_ = config.services.get(key)
    return {endpoint.address for endpoint in service_.endpoints} if service_ else set()


async def _post(cluster: Cluster, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with api(cluster) as client:
        return await client.call("POST", path, body)


async def _pod(cluster: Cluster, name: str, app: str, port_name: str, port: int) -> None:
    await _post(cluster, "/api/v1/namespaces/default/pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"nodeName": "node-1", "containers": [{
            "name": "app", "image": "example/app",
            "ports": [{"name": port_name, "containerPort": port}]}]},
    })


async def _set_ready(cluster: Cluster, name: str, ip: str, ready: bool) -> None:
    status = "True" if ready else "False"
    async with api(cluster) as client:
        await client.call(
            "PATCH", f"/api/v1/namespaces/default/pods/{name}/status",
            {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                        "conditions": [{"type": "Ready", "status": status},
                                       {"type": "ContainersReady", "status": status}]}},
            content_type="application/merge-patch+json")


async def test_pod_readiness_flows_through_the_endpointslice_controller(
    cluster: Cluster, watched: Watched
) -> None:
    with contextlib.suppress(ApiError):  # 409 if another test made it already
        await _post(cluster, "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node",
                                               "metadata": {"name": "node-1"}})
    app = unique("ready")
    named, numeric = f"{app}-named", f"{app}-numeric"
    await _post(cluster, SERVICES.format(ns="default"),
                service(named, 80, target="web", selector={"app": app}))
    await _post(cluster, SERVICES.format(ns="default"),
                service(numeric, 80, target=9090, selector={"app": app}))
    # Two Pods whose named port "web" resolves to different numbers: the controller
    # makes one slice per port mapping, and the source merges them.
    await _pod(cluster, f"{app}-a", app, "web", 8081)
    await _pod(cluster, f"{app}-b", app, "web", 8082)
    await _set_ready(cluster, f"{app}-a", "127.0.0.11", True)
    await _set_ready(cluster, f"{app}-b", "127.0.0.12", True)
    key_named, key_numeric = f"{named}.default", f"{numeric}.default"
    await watched.until(lambda c: _endpoints(c, key_named) == {
        "127.0.0.11:8081", "127.0.0.12:8082"}, timeout=10)
    await watched.until(lambda c: _endpoints(c, key_numeric) == {
        "127.0.0.11:9090", "127.0.0.12:9090"}, timeout=10)
    await _set_ready(cluster, f"{app}-a", "127.0.0.11", False)
    await watched.until(lambda c: _endpoints(c, key_named) == {"127.0.0.12:8082"}, timeout=10)
    await _set_ready(cluster, f"{app}-a", "127.0.0.11", True)
    await watched.until(lambda c: len(_endpoints(c, key_named)) == 2, timeout=10)
    async with api(cluster) as client:
        slices = await client.get(SLICES.format(ns="default"),
                                  labelSelector=f"kubernetes.io/service-name={named}")
    assert len(slices["items"]) == 2


async def test_zone_and_conditions_from_hand_made_slices(
    cluster: Cluster, watched: Watched
) -> None:
    name = unique("zoned")
    await _post(cluster, SERVICES.format(ns="default"), service(name))
    await _post(cluster, SLICES.format(ns="default"),
                endpoint_slice(f"{name}-a", name, 7001, ["127.0.0.21"], zone="zone-a"))
    await _post(cluster, SLICES.format(ns="default"),
                endpoint_slice(f"{name}-b", name, 7001, ["127.0.0.22"], ready=False))
    config = await watched.until(lambda c: bool(_endpoints(c, f"{name}.default")))
    (endpoint,) = config.services[f"{name}.default"].endpoints
    assert (endpoint.address, endpoint.zone) == ("127.0.0.21:7001", "zone-a")


async def test_bad_cluster_input_is_logged_by_name_and_skipped(
    cluster: Cluster, watched: Watched, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tulle.discovery.kubernetes")
    good, lonely, ports = unique("good"), unique("lonely"), unique("ports")
    await _post(cluster, SERVICES.format(ns="default"), service(good))
    await _post(cluster, SLICES.format(ns="default"),
                endpoint_slice(f"{good}-1", good, 7002, ["127.0.0.31"]))
    await _post(cluster, SERVICES.format(ns="default"), service(lonely))
    await _post(cluster, SERVICES.format(ns="default"), service(ports, port_name="http"))
    bad_slice = endpoint_slice(f"{ports}-1", ports, 7003, ["127.0.0.32"], port_name="grpc")
    bad_slice["ports"].append({"name": "admin", "port": 7004, "protocol": "TCP"})
    await _post(cluster, SLICES.format(ns="default"), bad_slice)
    broken = unique("broken")
    await _post(cluster, "/apis/tulle.dev/v1alpha1/namespaces/default/meshservices", {
        "apiVersion": "tulle.dev/v1alpha1", "kind": "MeshService",
        # The CRD's schema accepts this; only Tulle knows SRV records carry their own ports.
        "metadata": {"name": broken},
        "spec": {"dns": {"name": "_http._tcp.example.com", "type": "SRV", "port": 80}},
    })
    config = await watched.until(lambda c: bool(_endpoints(c, f"{good}.default"))
                                 and f"{ports}.default" in c.services)
    assert _endpoints(config, f"{ports}.default") == set()
    assert _endpoints(config, f"{lonely}.default") == set()
    assert f"{broken}.default" not in config.services
    await asyncio.sleep(0.2)
    text = caplog.text
    assert f'EndpointSlice "{ports}-1"' in text and "expected a port named" in text
    assert f'MeshService "{broken}"' in text and "spec.dns" in text
    assert f"service {lonely}.default has no ready endpoints" in text


async def test_expired_resource_version_relists(cluster: Cluster) -> None:
    changes: list[int] = []
    async with api(cluster) as client:
        await _relist_after_gone(cluster, Reflector(
            client, Resource("v1", "Service", "services"), lambda: changes.append(1)))


async def _relist_after_gone(cluster: Cluster, reflector: Reflector) -> None:
    reflector.start()
    try:
        await asyncio.wait_for(reflector.synced.wait(), 10)
        assert reflector.relists == 1
        reflector.resource_version = "1"  # long compacted away: the server says 410 Gone
        await reflector.stop()
        reflector.start()
        name = unique("after-gone")
        await _post(cluster, SERVICES.format(ns="default"), service(name))
        deadline = time.monotonic() + 10
        while f"default/{name}" not in reflector.objects and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert f"default/{name}" in reflector.objects
    finally:
        await reflector.stop()


async def test_watches_resume_after_the_api_server_restarts(
    cluster: Cluster, watched: Watched
) -> None:
    name = unique("restart")
    await _post(cluster, SERVICES.format(ns="default"), service(name))
    await watched.until(lambda c: f"{name}.default" in c.services)
    await asyncio.to_thread(cluster.restart_apiserver)
    for _ in range(50):  # the API server takes a moment to serve writes again
        try:
            await _post(cluster, SLICES.format(ns="default"),
                        endpoint_slice(f"{name}-1", name, 7005, ["127.0.0.41"]))
            break
        except Exception:
            await asyncio.sleep(0.2)
    # Watches reconnect with a jittered backoff of at most 10 s.
    await watched.until(lambda c: _endpoints(c, f"{name}.default") == {"127.0.0.41:7005"},
                        timeout=15)


async def test_a_watch_event_larger_than_a_read_buffer_arrives(
    cluster: Cluster, watched: Watched
) -> None:
    name = unique("large")
    await _post(cluster, "/apis/tulle.dev/v1alpha1/namespaces/default/meshservices", {
        "apiVersion": "tulle.dev/v1alpha1", "kind": "MeshService",
        "metadata": {"name": name, "annotations": {"note": "x" * 200_000}},
        "spec": {"endpoints": [{"address": "127.0.0.51:80"}]},
    })
    await watched.until(lambda c: _endpoints(c, f"{name}.default") == {"127.0.0.51:80"})
