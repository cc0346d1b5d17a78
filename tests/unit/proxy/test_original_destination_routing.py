"""Routing by a captured connection's original destination: ClusterIPs, pod IPs, inbound.

The mesh state is built from real configurations (no sockets are opened until a
request is sent); the socket option itself is read for real in
tests/integration/test_transparent_capture.py.
"""

from __future__ import annotations

import asyncio
import socket

from tulle.config.cluster import config_from_objects
from tulle.proxy.mesh import MAX_DIRECT_TARGETS, MeshState
from tulle.proxy.runtime import Runtime
from tulle.telemetry.metrics import Metrics
from tulle.transport.original_dst import original_destination, redirected_destination


def _config(cluster_ip: str = "10.96.0.50"):
    objects = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"clusterIP": cluster_ip, "ports": [{"port": 80, "targetPort": 8080}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "ports": [{"port": 8080}],
         "endpoints": [{"addresses": [ip]} for ip in ("10.244.1.1", "10.244.1.2")]},
    ]
    config, problems = config_from_objects(objects)
    assert problems == []
    return config


async def test_a_cluster_ip_and_port_is_its_service() -> None:
    mesh = MeshState(Runtime.on(asyncio.get_running_loop()), Metrics())
    mesh.apply(_config())
    router = mesh.outbound.router
    web = router.resolve_destination(("10.96.0.50", 80))
    assert web is not None and web.key == "web.default"
    assert {e.address for e in web.endpoints} == {"10.244.1.1:8080", "10.244.1.2:8080"}


async def test_other_addresses_are_forwarded_as_they_are() -> None:
    mesh = MeshState(Runtime.on(asyncio.get_running_loop()), Metrics())
    mesh.apply(_config())
    router = mesh.outbound.router
    pod = router.resolve_destination(("10.244.1.2", 8080))
    assert pod is not None and [e.address for e in pod.endpoints] == ["10.244.1.2:8080"]
    assert router.resolve_destination(("10.244.1.2", 8080)) is pod  # made once
    other_port = router.resolve_destination(("10.96.0.50", 81))  # not the service's port
    assert other_port is not None and other_port.name == "10.96.0.50:81"
    v6 = router.resolve_destination(("fd00::5", 8080))
    assert v6 is not None and v6.name == "[fd00::5]:8080"


async def test_inbound_goes_to_localhost_at_the_original_port() -> None:
    mesh = MeshState(Runtime.on(asyncio.get_running_loop()), Metrics())
    mesh.apply(_config())
    target = mesh.inbound.router.resolve_destination(("10.244.0.5", 9000))
    assert target is not None and [e.address for e in target.endpoints] == ["127.0.0.1:9000"]
    v6 = mesh.inbound.router.resolve_destination(("fd00::5", 9000))
    assert v6 is not None and [(e.pool.host, e.pool.port) for e in v6.endpoints] == [("::1", 9000)]


async def test_a_reload_moves_the_cluster_ip_and_drops_direct_targets() -> None:
    mesh = MeshState(Runtime.on(asyncio.get_running_loop()), Metrics())
    mesh.apply(_config())
    pod = mesh.outbound.router.resolve_destination(("10.244.9.9", 80))
    mesh.apply(_config("10.96.0.60"))
    router = mesh.outbound.router
    assert router.resolve_destination(("10.96.0.60", 80)).key == "web.default"  # type: ignore[union-attr]
    assert router.resolve_destination(("10.96.0.50", 80)).name == "10.96.0.50:80"  # type: ignore[union-attr]
    assert router.resolve_destination(("10.244.9.9", 80)) is not pod


async def test_direct_targets_are_bounded() -> None:
    mesh = MeshState(Runtime.on(asyncio.get_running_loop()), Metrics())
    mesh.apply(_config())
    state = mesh.outbound
    first = state.direct_target(("10.1.0.0", 1))
    for port in range(2, MAX_DIRECT_TARGETS + 2):
        state.direct_target(("10.1.0.0", port))
    assert len(state._direct) == MAX_DIRECT_TARGETS
    assert state.direct_target(("10.1.0.0", 1)) is not first  # the oldest was dropped
    assert len(state.pools) <= MAX_DIRECT_TARGETS + 2


def test_a_connection_that_was_not_redirected_has_no_original_destination() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()):
            accepted, _ = server.accept()
            with accepted:
                assert redirected_destination(accepted) is None
        with socket.socket(socket.AF_UNIX) as unix:
            assert original_destination(unix) is None
