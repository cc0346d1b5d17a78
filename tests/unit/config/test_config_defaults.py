"""Defaults from DESIGN.md are applied, service policy is laid over the mesh defaults,
and the loaded configuration cannot be changed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pydantic
import pytest
from config_testkit import MESH_SERVICE, load_text

from tulle.config import LOAD_BALANCER_ALGORITHMS, Address, Endpoint
from tulle.config.schema_policy import IDEMPOTENT_METHODS


def test_no_service_mesh_means_all_defaults(tmp_path: Path) -> None:
    config = load_text(tmp_path, MESH_SERVICE)
    mesh = config.mesh
    assert mesh.zone is None
    assert (mesh.proxy.outbound, mesh.proxy.inbound, mesh.proxy.admin, mesh.proxy.app) == (
        Address("127.0.0.1", 4140), Address("127.0.0.1", 4143), Address("127.0.0.1", 4191), None
    )
    assert mesh.defaults.load_balancer.algorithm == "expected-latency"  # issue 11
    timeouts = mesh.defaults.timeouts
    assert (timeouts.request, timeouts.connect, timeouts.idle, timeouts.per_try) == (
        10.0, 1.0, 60.0, None
    )
    budget = mesh.defaults.retries.budget
    assert (budget.ratio, budget.min_per_second, budget.window) == (0.2, 10, 10.0)

    web = config.services["web.default"]
    assert (web.name, web.namespace, web.protocol, web.port) == ("web", "default", "http", 80)
    assert web.endpoints == (Endpoint("127.0.0.1", 9001, 1, None),)
    assert web.endpoints[0].address == "127.0.0.1:9001"
    assert web.load_balancer.algorithm == "expected-latency"
    assert web.timeouts == timeouts
    # Idempotent requests are retried and every endpoint has a breaker, by default;
    # outlier detection and health checks are opt-in.
    assert web.retries is not None and web.retries.methods == IDEMPOTENT_METHODS
    assert web.retries.budget == mesh.defaults.retries.budget
    assert web.circuit_breaker == mesh.defaults.circuit_breaker
    assert web.circuit_breaker.consecutive_failures == 7
    assert (web.outlier_detection, web.health_check) == (None, None)
    assert (web.limits.fail_fast_after, web.limits.pending_requests) == (1.0, 1000)


def test_algorithm_choices_come_from_one_tuple() -> None:
    assert "round-robin" in LOAD_BALANCER_ALGORITHMS


def test_service_policy_overlays_mesh_defaults(tmp_path: Path) -> None:
    config = load_text(tmp_path, """
        apiVersion: tulle.dev/v1alpha1
        kind: ServiceMesh
        metadata: {name: default}
        spec:
          zone: zone-a
          proxy: {outbound: "0.0.0.0:0", app: "127.0.0.1:8080"}
          defaults:
            timeouts: {connect: 2s, idle: 5m}
            retries: {budget: {ratio: 0.1}}
        ---
        apiVersion: tulle.dev/v1alpha1
        kind: MeshService
        metadata: {name: web, namespace: shop}
        spec:
          protocol: grpc
          port: 8080
          endpoints:
            - {address: "web-1.local:9001", weight: 3, zone: zone-b}
            - {address: "[::1]:9002"}
          timeouts: {request: 2s, perTry: 500ms}
          retries: {attempts: 3, on: [gateway-error], methods: [GET]}
          circuitBreaker: {}
          outlierDetection: {minimumRequests: 3}
          healthCheck: {tcp: {}, interval: 2s}
    """, zone="ignored-because-the-mesh-names-one")
    assert config.mesh.zone == "zone-a"
    assert str(config.mesh.proxy.outbound) == "0.0.0.0:0"
    assert config.mesh.proxy.app == Address.parse("127.0.0.1:8080")
    web = config.services["web.shop"]
    assert (web.protocol, web.port) == ("grpc", 8080)
    assert [(e.host, e.port, e.weight, e.zone, e.address) for e in web.endpoints] == [
        ("web-1.local", 9001, 3, "zone-b", "web-1.local:9001"),
        ("::1", 9002, 1, None, "[::1]:9002"),
    ]
    t = web.timeouts
    assert (t.request, t.connect, t.idle, t.per_try) == (2.0, 2.0, 300.0, 0.5)
    assert web.retries is not None
    assert (web.retries.attempts, web.retries.on, web.retries.methods) == (
        3, ("gateway-error",), ("GET",)
    )
    assert web.retries.budget == config.mesh.defaults.retries.budget
    assert web.retries.budget.ratio == 0.1
    assert web.circuit_breaker is not None
    assert web.circuit_breaker.consecutive_failures == 7
    assert (web.circuit_breaker.backoff.min, web.circuit_breaker.backoff.max) == (1.0, 60.0)
    assert web.outlier_detection is not None
    od = web.outlier_detection
    assert (od.minimum_requests, od.interval, od.base_ejection_time, od.max_ejection_percent,
            od.failure_percentage) == (3, 10.0, 30.0, 10, 85.0)
    assert web.health_check is not None
    hc = web.health_check
    assert (hc.http, hc.interval, hc.timeout, hc.unhealthy_after, hc.healthy_after) == (
        None, 2.0, 1.0, 3, 2
    )


def test_retries_defaults_and_own_budget(tmp_path: Path) -> None:
    config = load_text(tmp_path, MESH_SERVICE + "  retries: {budget: {minPerSecond: 1}}\n")
    retries = config.services["web.default"].retries
    assert retries is not None
    assert retries.attempts == 2
    assert retries.on == ("connect-failure", "reset", "gateway-error")
    assert retries.methods == ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE")
    assert retries.budget is not None
    assert (retries.budget.ratio, retries.budget.min_per_second) == (0.2, 1)
    assert retries.hedge is False  # hedging sends requests twice: only when asked


def test_hedging_takes_its_delay_from_the_per_try_timeout_of_the_mesh_defaults(
    tmp_path: Path,
) -> None:
    mesh = ("apiVersion: tulle.dev/v1alpha1\nkind: ServiceMesh\nmetadata: {name: default}\n"
            "spec: {defaults: {timeouts: {perTry: 50ms}}}\n---\n")
    config = load_text(tmp_path, mesh + MESH_SERVICE.lstrip() + "  retries: {hedge: true}\n")
    web = config.services["web.default"]
    assert web.retries is not None and web.retries.hedge
    assert web.timeouts.per_try == 0.05


def test_zone_from_environment_when_mesh_names_none(tmp_path: Path) -> None:
    assert load_text(tmp_path, MESH_SERVICE, zone="zone-c").mesh.zone == "zone-c"


def test_services_keep_file_order(tmp_path: Path) -> None:
    text = "".join(
        f"---\napiVersion: tulle.dev/v1alpha1\nkind: MeshService\nmetadata: {{name: {name}}}\n"
        for name in ("zeta", "alpha", "mid")
    )
    assert list(load_text(tmp_path, text).services) == [
        "zeta.default", "alpha.default", "mid.default"
    ]


def test_loaded_configuration_is_frozen(tmp_path: Path) -> None:
    config = load_text(tmp_path, MESH_SERVICE + "  timeouts: {request: 1s}\n")
    web = config.services["web.default"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.mesh = config.mesh  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        web.port = 81  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        web.endpoints[0].weight = 2  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        web.timeouts.request = 5.0  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        config.mesh.proxy.outbound = Address("0.0.0.0", 1)  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.services["other.default"] = web  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.mesh.proxy.admin.port = 1  # type: ignore[misc]
    assert isinstance(config.routes, tuple)
    assert isinstance(web.endpoints, tuple)


def test_address_parse_and_render() -> None:
    assert Address.parse("127.0.0.1:4140") == Address("127.0.0.1", 4140)
    assert str(Address.parse("[::1]:80")) == "[::1]:80"
    assert Address.parse("localhost:0", allow_port_zero=True).port == 0
    with pytest.raises(ValueError, match="expected a port from 1 to 65535"):
        Address.parse("localhost:0")
