"""A :class:`Config` back from its JSON form (``Config.to_dict()``), as the control plane
streams it to proxies.

The snapshot is already an effective configuration (defaults applied, references
checked by the control plane), so this only rebuilds the frozen objects; the
policy models still validate what they receive, so a snapshot from a mismatched
control plane fails loudly (``SnapshotError``) instead of half-applying.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from tulle.config.addresses import Address
from tulle.config.model import Config, Endpoint, PolicySet, Service
from tulle.config.schema_authorization import POLICY_KINDS
from tulle.config.schema_common import Schema
from tulle.config.schema_gateway import GATEWAY_API_VERSION, HTTPRoute
from tulle.config.schema_policy import (
    _EWMA_ALGORITHMS,
    _EWMA_ONLY,
    _HASH_ONLY,
    CircuitBreaker,
    HealthCheck,
    Limits,
    LoadBalancer,
    OutlierDetection,
    Retries,
    Timeouts,
)
from tulle.config.schema_tulle import MeshSpec
from tulle.identity.spiffe import WorkloadIdentity


class SnapshotError(ValueError):
    """The snapshot is not a configuration this version of Tulle understands."""


def config_from_dict(data: Any) -> Config:
    """Rebuild the Config that ``to_dict()`` rendered as ``data``."""
    # ``to_dict`` renders unset options as null; the schemas read them as "not written"
    # (some, e.g. hashOn, are refused when written for an algorithm they don't apply to).
    data = _without_nulls(data)
    try:
        _fit_load_balancer(data.get("mesh", {}).get("defaults", {}).get("loadBalancer"))
        for service in data.get("services") or ():
            _fit_load_balancer(service.get("loadBalancer"))
        return Config(
            sources=tuple(Path(source) for source in data.get("sources", ())),
            mesh=MeshSpec.model_validate(data.get("mesh") or {}),
            services=MappingProxyType({
                service.key: service for service in map(_service, data.get("services") or ())
            }),
            routes=tuple(_route(route) for route in data.get("routes") or ()),
            policy=PolicySet.of(_policy(item) for item in data.get("policy") or ()),
        )
    except (ValidationError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SnapshotError(f"malformed configuration snapshot: {exc}") from None


def _fit_load_balancer(policy: dict[str, Any] | None) -> None:
    """Drop the settings (rendered at their defaults) that the algorithm does not use:
    written next to an explicit algorithm, the schema refuses them."""
    if not policy:
        return
    algorithm = policy.get("algorithm")
    unused: set[str] = set()
    if algorithm != "ring-hash":
        unused.update(_HASH_ONLY)
    if algorithm not in _EWMA_ALGORITHMS:
        unused.update(_EWMA_ONLY)
    for name in unused:
        policy.pop(to_camel(name), None)


def _without_nulls(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: _without_nulls(value) for key, value in data.items() if value is not None}
    if isinstance(data, list):
        return [_without_nulls(value) for value in data]
    return data


def _service(data: dict[str, Any]) -> Service:
    def optional(model: Any, key: str) -> Any:
        value = data.get(key)
        return None if value is None else model.model_validate(value)

    endpoints = []
    for endpoint in data["endpoints"]:
        address = Address.parse(endpoint["address"])
        endpoints.append(Endpoint(address.host, address.port, int(endpoint.get("weight", 1)),
                                  endpoint.get("zone"), _identity(endpoint.get("identity"))))
    return Service(
        name=data["name"],
        namespace=data["namespace"],
        protocol=data["protocol"],
        port=int(data["port"]),
        endpoints=tuple(endpoints),
        load_balancer=LoadBalancer.model_validate(data["loadBalancer"]),
        timeouts=Timeouts.model_validate(data["timeouts"]),
        retries=optional(Retries, "retries"),
        circuit_breaker=optional(CircuitBreaker, "circuitBreaker"),
        outlier_detection=optional(OutlierDetection, "outlierDetection"),
        health_check=optional(HealthCheck, "healthCheck"),
        limits=optional(Limits, "limits") or Limits(),
        cluster_ip=_cluster_ip(data.get("clusterIP")),
    )


def _identity(value: Any) -> str | None:
    if value is None:
        return None
    return WorkloadIdentity.parse(str(value)).uri


def _cluster_ip(value: Any) -> str | None:
    if value is None:
        return None
    return str(ipaddress.ip_address(value))


def _policy(data: dict[str, Any]) -> Schema:
    kind = POLICY_KINDS.get(data.get("kind", ""))
    if kind is None:
        raise SnapshotError(f"unknown policy kind {data.get('kind')!r}")
    return kind.model_validate(data)


def _route(data: dict[str, Any]) -> HTTPRoute:
    spec = {key: value for key, value in data.items() if key not in ("name", "namespace")}
    return HTTPRoute.model_validate({
        "apiVersion": GATEWAY_API_VERSION,
        "kind": "HTTPRoute",
        "metadata": {"name": data["name"], "namespace": data["namespace"]},
        "spec": spec,
    })
