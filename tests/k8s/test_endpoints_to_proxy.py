"""Endpoints change in the cluster → the control plane → a real proxy moves its traffic.

A real ``tulle control --kubeconfig`` process watches the test cluster; a real proxy
(``ProxyServer`` on a ``ControlSource``) subscribes to it; requests go through the
proxy to stdlib backends on loopback, named after themselves in every answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.k8s.cluster import Cluster
from tests.k8s.control_proxy import ControlPlaneProcess, ControlProxy
from tests.k8s.kube import SLICES, endpoint_slice, sync_call, unique
from tests.k8s.traffic import Load
from tests.support.backend import Backend

PROPAGATION_LIMIT = 1.0  # seconds, from a change in the API server to the proxy's traffic


@pytest.fixture(scope="module")
def control(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[ControlPlaneProcess]:
    plane = ControlPlaneProcess(cluster, tmp_path_factory.mktemp("control"))
    plane.start()
    yield plane
    plane.stop()


@pytest.fixture(scope="module")
def proxy(control: ControlPlaneProcess, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[ControlProxy]:
    running = ControlProxy(control.url, tmp_path_factory.mktemp("proxy"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def backends() -> Iterator[list[Backend]]:
    servers = [Backend(f"backend-{i}").start() for i in range(3)]
    yield servers
    for server in servers:
        server.stop()


def _port(backend: Backend) -> int:
    return int(backend.address.rsplit(":", 1)[1])


def _mesh_service(cluster: Cluster, name: str) -> None:
    """A MeshService (Tulle's CRD) balanced round-robin, so every endpoint gets traffic at
    once (the default, peak-EWMA, rightly prefers a known-fast endpoint to a new one)."""
    sync_call(cluster, "POST", "/apis/tulle.dev/v1alpha1/namespaces/default/meshservices", {
        "apiVersion": "tulle.dev/v1alpha1", "kind": "MeshService", "metadata": {"name": name},
        "spec": {"port": 80, "loadBalancer": {"algorithm": "round-robin"}},
    })


def _add_slice(cluster: Cluster, name: str, service_name: str, backend: Backend) -> None:
    sync_call(cluster, "POST", SLICES.format(ns="default"),
              endpoint_slice(name, service_name, _port(backend), ["127.0.0.1"]))


def _delete_slice(cluster: Cluster, name: str) -> None:
    sync_call(cluster, "DELETE", SLICES.format(ns="default") + f"/{name}")


def test_slices_scaled_up_and_down_move_traffic_within_a_second(
    cluster: Cluster, control: ControlPlaneProcess, proxy: ControlProxy,
    backends: list[Backend],
) -> None:
    name = unique("scale")
    _mesh_service(cluster, name)
    slices = [f"{name}-{index}" for index in range(3)]
    _add_slice(cluster, slices[0], name, backends[0])
    with Load(proxy.outbound, f"{name}.default", limit=40) as load:
        assert load.wait_for("backend-0", 0, timeout=5), load.failures[:5] or proxy.log()
        load.failures.clear()  # before the service existed in the proxy: 404s
        for index in (1, 2):  # scale up: one slice per backend, merged into one service
            changed = time.monotonic()
            _add_slice(cluster, slices[index], name, backends[index])
            seen = load.wait_for(f"backend-{index}", changed, timeout=3)
            assert seen is not None and seen - changed < PROPAGATION_LIMIT, (seen, proxy.log())
        for index in (0, 1):  # scale down
            _delete_slice(cluster, slices[index])
            removed = time.monotonic()
            time.sleep(PROPAGATION_LIMIT + 0.3)
            last = load.last_seen(f"backend-{index}")
            assert last is not None and last - removed < PROPAGATION_LIMIT, (last - removed)
        assert load.first_seen("backend-2", time.monotonic() - 0.3)
    assert load.failures == [], load.failures[:5]
    assert len(load.seen) > 100


def test_control_plane_killed_under_load_then_restarted_resyncs(
    cluster: Cluster, control: ControlPlaneProcess, proxy: ControlProxy,
    backends: list[Backend],
) -> None:
    name = unique("outage")
    _mesh_service(cluster, name)
    _add_slice(cluster, f"{name}-0", name, backends[0])
    with Load(proxy.outbound, f"{name}.default", limit=40) as load:
        assert load.wait_for("backend-0", 0, timeout=5), proxy.log()
        load.failures.clear()
        control.kill()
        killed = time.monotonic()
        # The cluster changes while the control plane is away.
        _add_slice(cluster, f"{name}-1", name, backends[1])
        time.sleep(2.0)
        assert load.first_seen("backend-0", killed + 1.5), "the proxy stopped serving"
        assert load.first_seen("backend-1", killed) is None
        control.start()
        restarted = time.monotonic()
        # Resync: the first line of the new stream is the whole, current configuration.
        # The proxy's reconnect backoff is at most 5 s.
        seen = load.wait_for("backend-1", restarted, timeout=8)
        assert seen is not None, proxy.log()
    assert load.failures == [], load.failures[:5]
    proxies = control.get("/proxies")["proxies"]
    assert [p["admin"] for p in proxies] == [f"127.0.0.1:{proxy.admin_port}"]
