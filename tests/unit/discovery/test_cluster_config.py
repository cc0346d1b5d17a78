"""Cluster objects → Config: conditions, zones, ports, several slices, bad objects skipped."""

from __future__ import annotations

import json
from typing import Any

from tulle.config import load
from tulle.config.cluster import config_from_objects
from tulle.config.snapshot import config_from_dict


def _service(name: str, target: Any = None, port_name: str | None = None) -> dict[str, Any]:
    port: dict[str, Any] = {"port": 80, "protocol": "TCP"}
    if target is not None:
        port["targetPort"] = target
    if port_name:
        port["name"] = port_name
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": "5",
                         "managedFields": [{"manager": "x"}]},
            "spec": {"ports": [port], "clusterIP": "10.96.0.9", "futureField": {"a": 1}}}


def _slice(name: str, service: str, endpoints: list[dict[str, Any]], port: int | None = 8080,
           version: str = "v1", port_name: str = "") -> dict[str, Any]:
    return {"apiVersion": f"discovery.k8s.io/{version}", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "default",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "ports": [{"name": port_name, "port": port}],
            "endpoints": endpoints}


def _addresses(config: Any, key: str) -> set[tuple[str, str | None]]:
    return {(e.address, e.zone) for e in config.services[key].endpoints}


def test_slices_merge_and_zone_comes_from_v1_or_v1beta1() -> None:
    objects = [
        _service("web"),
        _slice("web-a", "web", [{"addresses": ["10.0.0.1"], "zone": "z1",
                                 "conditions": {"ready": True}}]),
        _slice("web-b", "web", [{"addresses": ["10.0.0.2"],
                                 "topology": {"topology.kubernetes.io/zone": "z2"}}],
               version="v1beta1"),
    ]
    config, problems = config_from_objects(objects)
    assert problems == []
    assert _addresses(config, "web.default") == {("10.0.0.1:8080", "z1"), ("10.0.0.2:8080", "z2")}


def test_not_ready_is_left_out_and_terminating_serves_only_when_nothing_is_ready() -> None:
    ready = {"addresses": ["10.0.0.1"], "conditions": {"ready": True}}
    leaving = {"addresses": ["10.0.0.2"],
               "conditions": {"ready": False, "serving": True, "terminating": True}}
    down = {"addresses": ["10.0.0.3"], "conditions": {"ready": False, "serving": False}}
    config, _ = config_from_objects([_service("web"), _slice("s", "web", [ready, leaving, down])])
    assert _addresses(config, "web.default") == {("10.0.0.1:8080", None)}
    config, _ = config_from_objects([_service("web"), _slice("s", "web", [leaving, down])])
    assert _addresses(config, "web.default") == {("10.0.0.2:8080", None)}


def test_slice_port_without_number_takes_the_numeric_target_port() -> None:
    objects = [_service("web", target=9090),
               _slice("s", "web", [{"addresses": ["10.0.0.1"]}], port=None)]
    config, problems = config_from_objects(objects)
    assert problems == []
    assert _addresses(config, "web.default") == {("10.0.0.1:9090", None)}


def test_bad_objects_are_reported_by_name_and_the_rest_still_works() -> None:
    bad_slice = _slice("odd", "web", [{"addresses": ["10.0.0.9"]}], port_name="grpc")
    bad_slice["ports"].append({"name": "admin", "port": 1})
    objects = [
        _service("web", port_name="http"),
        bad_slice,
        _service("api"),
        _slice("api-1", "api", [{"addresses": ["10.0.0.5"]}]),
        {"apiVersion": "tulle.dev/v1alpha1", "kind": "MeshService",
         "metadata": {"name": "broken", "namespace": "default"}, "spec": {"protocol": "x"}},
    ]
    config, problems = config_from_objects(objects)
    text = "\n".join(map(str, problems))
    assert 'EndpointSlice "odd"' in text and 'MeshService "broken"' in text
    assert _addresses(config, "api.default") == {("10.0.0.5:8080", None)}
    assert config.services["web.default"].endpoints == ()
    assert "broken.default" not in config.services


def test_mesh_service_takes_precedence_over_the_service_of_the_same_name() -> None:
    objects = [
        _service("web"),
        {"apiVersion": "tulle.dev/v1alpha1", "kind": "MeshService",
         "metadata": {"name": "web", "namespace": "default"},
         "spec": {"port": 80, "loadBalancer": {"algorithm": "round-robin"}}},
        _slice("web-a", "web", [{"addresses": ["10.0.0.1"]}]),
    ]
    config, problems = config_from_objects(objects)
    assert problems == []
    service = config.services["web.default"]
    assert service.load_balancer.algorithm == "round-robin"
    assert _addresses(config, "web.default") == {("10.0.0.1:8080", None)}


def test_snapshot_round_trips_the_examples() -> None:
    config = load("examples")
    again = config_from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def test_snapshot_carries_limits_and_cluster_ip() -> None:
    objects = [
        {"apiVersion": "tulle.dev/v1alpha1", "kind": "MeshService",
         "metadata": {"name": "web", "namespace": "default"},
         "spec": {"clusterIP": "10.96.0.7",
                  "limits": {"failFastAfter": "250ms", "pendingRequests": 5}}},
    ]
    config, problems = config_from_objects(objects)
    assert problems == []
    again = config_from_dict(json.loads(json.dumps(config.to_dict())))
    service = again.services["web.default"]
    assert (service.limits.fail_fast_after, service.limits.pending_requests) == (0.25, 5)
    assert service.cluster_ip == "10.96.0.7"
    assert again == config
