"""From checked documents to one effective :class:`Config`: defaults and references.

Each document has already passed its own schema; what is checked here needs more
than one document: at most one ServiceMesh, service names unique, EndpointSlices and
HTTPRoute backends naming services that exist. Policy is resolved here once, so the
proxy reads finished values: a service's policy is the mesh default with the fields
the service wrote laid over it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from pydantic import BaseModel

from tulle.config.addresses import Address
from tulle.config.model import Config, Endpoint, PolicySet, Service
from tulle.config.problems import Problem, describe
from tulle.config.schema_authorization import (
    POLICY_KINDS,
    AuthorizationPolicy,
    HTTPLocalRateLimitPolicy,
)
from tulle.config.schema_common import DEFAULT_NAMESPACE
from tulle.config.schema_gateway import HTTPRoute
from tulle.config.schema_kubernetes import (
    SERVICE_NAME_LABEL,
    EndpointSlice,
    EndpointSliceV1Beta1,
    KubernetesService,
    cluster_ip_of,
)
from tulle.config.schema_policy import Retries
from tulle.config.schema_tulle import MeshService, MeshServiceSpec, MeshSpec, ServiceMesh
from tulle.config.yaml_reader import Document

ZONE_ENVIRONMENT_VARIABLE = "TULLE_ZONE"
SERVICE_KINDS = ("MeshService", "Service")
# Service.appProtocol values that name a Tulle protocol; anything else is HTTP.
_APP_PROTOCOLS = {"http": "http", "http2": "http2", "grpc": "grpc", "tcp": "tcp",
                  "kubernetes.io/h2c": "http2"}

Policy = TypeVar("Policy", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Checked:
    """A document and the manifest model it became (None if it failed its schema)."""

    document: Document
    manifest: Any

    @property
    def kind(self) -> str | None:
        kind = self.document.content.get("kind")
        return kind if isinstance(kind, str) else None

    @property
    def name(self) -> str | None:
        metadata = self.document.content.get("metadata")
        name = metadata.get("name") if isinstance(metadata, dict) else None
        return name if isinstance(name, str) else None

    @property
    def service_key(self) -> str | None:
        """``name.namespace`` if this document means to define a service."""
        if self.kind not in SERVICE_KINDS or self.name is None:
            return None
        namespace = self.document.content["metadata"].get("namespace")
        return f"{self.name}.{namespace if isinstance(namespace, str) else DEFAULT_NAMESPACE}"

    def problem(self, path: str, message: str) -> Problem:
        return Problem(file=self.document.file, document=self.document.index, kind=self.kind,
                       name=self.name, path=path, message=message)


@dataclass(slots=True)
class _Draft:
    """A service while its endpoints are still being gathered from slices."""

    origin: Checked
    name: str
    namespace: str
    protocol: str
    port: int
    port_name: str | None
    spec: MeshServiceSpec
    cluster_ip: str | None = None
    endpoints: dict[tuple[str, int], Endpoint] = field(default_factory=dict)


def overlay(base: Policy, override: Policy | None) -> Policy:
    """``base`` with the fields ``override`` set explicitly replacing its own."""
    if override is None:
        return base
    return base.model_copy(update={name: getattr(override, name)
                                   for name in override.model_fields_set})


def assemble(
    documents: Iterable[Checked], *, sources: tuple[Path, ...], environ: Mapping[str, str]
) -> tuple[Config, list[Problem]]:
    """Build the effective configuration; return it with every cross-document problem.

    ``documents`` are all mapping documents in order, including those that failed
    their schema: they still count for "one ServiceMesh" and "unique names", and
    references to a broken service are not reported again as unknown.
    """
    items = list(documents)
    valid = [item for item in items if item.manifest is not None]
    problems: list[Problem] = []
    mesh = _mesh(items, problems, environ)
    drafts, unusable_services = _services(items, problems)
    for item in valid:
        if isinstance(item.manifest, EndpointSlice | EndpointSliceV1Beta1):
            _attach_slice(item, drafts, unusable_services, problems)
    services = {key: _finish(draft, mesh) for key, draft in drafts.items()}
    for key, draft in drafts.items():
        _check_hedge(draft, services[key], problems)
    routes = tuple(item.manifest for item in valid if isinstance(item.manifest, HTTPRoute))
    for item in valid:
        if isinstance(item.manifest, HTTPRoute):
            _check_route(item, services, unusable_services, problems)
    policy = PolicySet.of(item.manifest for item in valid)
    _check_policy(valid, problems)
    config = Config(sources=sources, mesh=mesh, services=MappingProxyType(services), routes=routes,
                    policy=policy)
    return config, problems


def _mesh(items: list[Checked], problems: list[Problem], environ: Mapping[str, str]) -> MeshSpec:
    meshes = [item for item in items if item.kind == "ServiceMesh"]
    for extra in meshes[1:]:
        first = meshes[0].document
        problems.append(extra.problem(
            "", f"expected at most one ServiceMesh in a configuration; the first is "
                f"{first.file}: document {first.index}",
        ))
    first_mesh = meshes[0].manifest if meshes else None
    spec = first_mesh.spec if isinstance(first_mesh, ServiceMesh) else MeshSpec()
    if spec.zone is None and environ.get(ZONE_ENVIRONMENT_VARIABLE):
        spec = spec.model_copy(update={"zone": environ[ZONE_ENVIRONMENT_VARIABLE]})
    return spec


def _services(items: list[Checked], problems: list[Problem]) -> tuple[dict[str, _Draft], set[str]]:
    """Service drafts by key, and the keys whose defining document is broken."""
    drafts: dict[str, _Draft] = {}
    first_seen: dict[str, Checked] = {}
    for item in items:
        key = item.service_key
        if key is None:
            continue
        if key in first_seen:
            first = first_seen[key].document
            problems.append(item.problem(
                "metadata.name",
                f'expected a unique service name; "{key}" is already defined in '
                f"{first.file}: document {first.index}",
            ))
            continue
        first_seen[key] = item
        draft = _draft(item, problems)
        if draft is not None:
            drafts[key] = draft
    return drafts, set(first_seen) - set(drafts)


def _draft(item: Checked, problems: list[Problem]) -> _Draft | None:
    manifest = item.manifest
    if isinstance(manifest, MeshService):
        draft = _Draft(item, manifest.metadata.name, manifest.metadata.namespace,
                       manifest.spec.protocol, manifest.spec.port, None, manifest.spec,
                       cluster_ip_of(manifest.spec.cluster_ip))
        if manifest.spec.dns is not None and manifest.spec.endpoints:
            problems.append(item.problem(
                "spec.dns", "expected either spec.endpoints or spec.dns, not both (endpoints "
                            "are listed statically or looked up in DNS)"))
        for index, static in enumerate(manifest.spec.endpoints):
            endpoint = Endpoint(static.address.host, static.address.port, static.weight,
                                static.zone, static.identity)
            if (endpoint.host, endpoint.port) in draft.endpoints:
                problems.append(item.problem(f"spec.endpoints[{index}].address",
                                             f"duplicate endpoint {endpoint.address}"))
            draft.endpoints.setdefault((endpoint.host, endpoint.port), endpoint)
        return draft
    if isinstance(manifest, KubernetesService):
        port = manifest.spec.ports[0]
        if port.protocol != "TCP":
            problems.append(item.problem(
                "spec.ports[0].protocol",
                f"expected TCP (Tulle proxies TCP only), got {describe(port.protocol)}",
            ))
        protocol = _APP_PROTOCOLS.get(port.app_protocol or "http", "http")
        return _Draft(item, manifest.metadata.name, manifest.metadata.namespace,
                      protocol, port.port, port.name, MeshServiceSpec(),
                      cluster_ip_of(manifest.spec.cluster_ip))
    return None


def _attach_slice(
    item: Checked,
    drafts: dict[str, _Draft],
    unusable_services: set[str],
    problems: list[Problem],
) -> None:
    slice_: EndpointSlice | EndpointSliceV1Beta1 = item.manifest
    ready_hosts: list[tuple[str, str | None]] = []
    for index, endpoint in enumerate(slice_.endpoints):
        for position, host in enumerate(endpoint.addresses):
            if not _valid_host(host, slice_.address_type):
                problems.append(item.problem(
                    f"endpoints[{index}].addresses[{position}]",
                    f"expected an {slice_.address_type} address, got {describe(host)}",
                ))
            elif endpoint.conditions.ready is not False:
                ready_hosts.append((host, endpoint.endpoint_zone))
    label_path = f'metadata.labels["{SERVICE_NAME_LABEL}"]'
    service_name = slice_.metadata.labels.get(SERVICE_NAME_LABEL)
    if service_name is None:
        problems.append(item.problem(
            label_path, "required label is missing (the name of the Service this slice serves)"
        ))
        return
    key = f"{service_name}.{slice_.metadata.namespace}"
    draft = drafts.get(key)
    if draft is None:
        if key not in unusable_services:
            problems.append(item.problem(label_path, _unknown_service(
                service_name, slice_.metadata.namespace, drafts)))
        return
    if draft.spec.dns is not None:
        problems.append(item.problem(label_path, (
            f'service "{key}" takes its endpoints from DNS (spec.dns); an EndpointSlice '
            f"cannot add to them")))
        return
    port = _slice_port(item, draft, problems)
    if port is None:
        return
    for host, zone in ready_hosts:
        draft.endpoints.setdefault((host, port), Endpoint(host, port, 1, zone))


def _slice_port(item: Checked, draft: _Draft, problems: list[Problem]) -> int | None:
    ports = item.manifest.ports
    chosen = [index for index, port in enumerate(ports) if port.name == draft.port_name]
    if not chosen and len(ports) == 1:
        chosen = [0]
    if not chosen:
        names = ", ".join(describe(port.name) for port in ports) or "no ports"
        problems.append(item.problem("ports", (
            f'expected a port named {describe(draft.port_name)} (the port name of service '
            f'"{draft.name}") or exactly one port, got {names}'
        )))
        return None
    number: int | None = ports[chosen[0]].port
    if number is None:
        problems.append(item.problem(f"ports[{chosen[0]}].port", "required field is missing"))
    return number


def _valid_host(host: str, address_type: str) -> bool:
    try:
        if address_type == "IPv4":
            ipaddress.IPv4Address(host)
        elif address_type == "IPv6":
            ipaddress.IPv6Address(host)
        else:
            Address.parse(f"{host}:1")
    except ValueError:
        return False
    return True


def _finish(draft: _Draft, mesh: MeshSpec) -> Service:
    spec, defaults = draft.spec, mesh.defaults
    # Idempotent requests are retried unless a service says otherwise (DESIGN.md
    # "Defaults"), and every service has a circuit breaker with the mesh defaults.
    retries: Retries = spec.retries or Retries()
    if retries.budget is None:
        retries = retries.model_copy(update={"budget": defaults.retries.budget})
    return Service(
        name=draft.name,
        namespace=draft.namespace,
        protocol=draft.protocol,
        port=draft.port,
        endpoints=tuple(draft.endpoints.values()),
        load_balancer=overlay(defaults.load_balancer, spec.load_balancer),
        timeouts=overlay(defaults.timeouts, spec.timeouts),
        retries=retries,
        circuit_breaker=overlay(defaults.circuit_breaker, spec.circuit_breaker),
        outlier_detection=spec.outlier_detection,
        health_check=spec.health_check,
        limits=overlay(defaults.limits, spec.limits),
        dns=spec.dns,
        cluster_ip=draft.cluster_ip,
    )


def _check_hedge(draft: _Draft, service: Service, problems: list[Problem]) -> None:
    """A hedge is sent when a try outlives ``perTry``: without one it would never be."""
    retries = draft.spec.retries
    if retries is not None and retries.hedge and service.timeouts.per_try is None:
        problems.append(draft.origin.problem("spec.retries.hedge", (
            "expected timeouts.perTry to be set with hedge: true (the per-try timeout is "
            "how long a try waits before a hedge is sent), in this service or in the "
            "ServiceMesh defaults")))


def _unknown_service(name: str, namespace: str, known: Mapping[str, Any]) -> str:
    listed = ", ".join(known) or "none"
    return (f'expected the name of a known service, got "{name}" (no Service or MeshService '
            f'"{name}" in namespace "{namespace}"; known: {listed})')


def _check_route(
    item: Checked,
    services: Mapping[str, Service],
    unusable_services: set[str],
    problems: list[Problem],
) -> None:
    route: HTTPRoute = item.manifest
    for index, parent in enumerate(route.spec.parent_refs):
        if parent.kind not in ("Service", "MeshService"):
            continue
        namespace = parent.namespace or route.namespace
        key = f"{parent.name}.{namespace}"
        if key not in services and key not in unusable_services:
            problems.append(item.problem(f"spec.parentRefs[{index}].name",
                                         _unknown_service(parent.name, namespace, services)))
    for rule_index, rule in enumerate(route.spec.rules):
        for ref_index, ref in enumerate(rule.backend_refs):
            path = f"spec.rules[{rule_index}].backendRefs[{ref_index}]"
            namespace = ref.namespace or route.namespace
            key = f"{ref.name}.{namespace}"
            service = services.get(key)
            if service is None:
                if key not in unusable_services:
                    problems.append(item.problem(f"{path}.name",
                                                 _unknown_service(ref.name, namespace, services)))
            elif ref.port is not None and ref.port != service.port:
                problems.append(item.problem(
                    f"{path}.port", f'expected {service.port} (the port of service "{key}"), '
                                    f"got {ref.port}",
                ))


def _check_policy(valid: list[Checked], problems: list[Problem]) -> None:
    """Every reference between policy objects names an object of the configuration (in
    the same namespace, unless the reference says otherwise)."""
    known: dict[str, set[tuple[str, str]]] = {}
    for item in valid:
        manifest = item.manifest
        if isinstance(manifest, (*POLICY_KINDS.values(), HTTPRoute)):
            known.setdefault(manifest.kind, set()).add(
                (manifest.metadata.namespace, manifest.metadata.name))
    limited: dict[tuple[str, str], str] = {}

    def expect(item: Checked, path: str, kind: str, namespace: str, name: str) -> None:
        if (namespace, name) not in known.get(kind, set()):
            names = sorted(n for ns, n in known.get(kind, set()) if ns == namespace)
            problems.append(item.problem(path, (
                f'expected the name of a {kind} in namespace "{namespace}", got "{name}" '
                f"(known: {', '.join(names) or 'none'})")))

    for item in valid:
        manifest = item.manifest
        namespace = getattr(getattr(manifest, "metadata", None), "namespace", "")
        if isinstance(manifest, AuthorizationPolicy):
            target = manifest.spec.target_ref
            if target.kind == "Namespace":
                if target.name != namespace:
                    problems.append(item.problem("spec.targetRef.name", (
                        f'expected the namespace of the policy itself, "{namespace}", got '
                        f'"{target.name}"')))
            else:
                expect(item, "spec.targetRef.name", target.kind, namespace, target.name)
            for index, ref in enumerate(manifest.spec.required_authentication_refs):
                if ref.kind != "ServiceAccount":
                    expect(item, f"spec.requiredAuthenticationRefs[{index}].name", ref.kind,
                           ref.namespace or namespace, ref.name)
        elif isinstance(manifest, HTTPLocalRateLimitPolicy):
            target = manifest.spec.target_ref
            expect(item, "spec.targetRef.name", "Server", namespace, target.name)
            first = limited.setdefault((namespace, target.name), item.name or "")
            if first != item.name:
                problems.append(item.problem("spec.targetRef.name", (
                    f'expected one HTTPLocalRateLimitPolicy per Server; Server "{target.name}" '
                    f'already has "{first}"')))
        elif isinstance(manifest, HTTPRoute):
            for index, parent in enumerate(manifest.spec.parent_refs):
                if parent.kind == "Server":
                    expect(item, f"spec.parentRefs[{index}].name", "Server",
                           parent.namespace or namespace, parent.name)
