"""A :class:`Config` from objects read from a Kubernetes API server.

The objects go through the same schemas and the same assembly as manifests on
disk (``check_document`` then ``assemble``), so a Service in the cluster and a
Service in a YAML file mean the same thing. Three differences, all because a
live cluster is not a file a person can fix before loading it:

- Nothing is refused whole: a broken object is reported (by kind, namespace and
  name) and left out; the rest of the cluster still makes a configuration.
- Objects are trimmed to the fields Tulle reads before checking, so fields a
  newer API server adds do not make every object "invalid".
- Endpoint conditions are decided here, per service across all its slices: an
  endpoint is used when it is ready; when a service has no ready endpoint at
  all, its serving-but-terminating ones are used instead (as kube-proxy does),
  so a rolling restart never leaves a service empty while old Pods still serve.
  A slice port without a number takes the Service's numeric targetPort.

When a MeshService (Tulle's CRD, carrying policy) and a Service share a name, the
MeshService is the service and the Service is left out, so the slices of the
Service fill the MeshService's endpoints.

Pods say which endpoints are meshed: an endpoint whose address is a pod with Tulle's
proxy gets the identity of that pod's ServiceAccount (``spiffe://<trust domain>/ns/
<namespace>/sa/<name>``), so proxies calling it speak mutual TLS and expect that
identity. Inbound policy objects (``policy.tulle.dev``) pass through like the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tulle.config.assemble import Checked, assemble
from tulle.config.loading import check_document
from tulle.config.model import Config
from tulle.config.problems import Problem
from tulle.config.schema_authorization import POLICY_KINDS
from tulle.config.schema_kubernetes import SERVICE_NAME_LABEL
from tulle.config.yaml_reader import Document
from tulle.identity.spiffe import IdentityError, WorkloadIdentity

# Order objects are assembled in: the mesh first, services before their slices.
_KIND_ORDER = {"ServiceMesh": 0, "MeshService": 1, "Service": 2, "EndpointSlice": 3,
               "HTTPRoute": 4, **dict.fromkeys(POLICY_KINDS, 5)}
# The sidecar a meshed pod has (tulle.kube.inject).
PROXY_CONTAINER = "tulle-proxy"
_METADATA_FIELDS = ("name", "namespace", "labels")
_SLICE_ENDPOINT_FIELDS = ("addresses", "hostname", "targetRef", "nodeName", "zone", "topology")


def config_from_objects(
    objects: Iterable[Mapping[str, Any]],
    *,
    sources: tuple[Path, ...] = (),
    environ: Mapping[str, str] | None = None,
    trust_domain: str | None = None,
) -> tuple[Config, list[Problem]]:
    """The configuration the objects make, and the problems of those left out
    (``trust_domain``: meshed pods' endpoints get identities in it)."""
    objects = list(objects)
    identities = _meshed_pods(objects, trust_domain) if trust_domain else {}
    items = sorted(
        (obj for obj in objects if obj.get("kind") in _KIND_ORDER),
        key=lambda obj: (_KIND_ORDER[obj["kind"]], _namespace(obj), _name(obj)),
    )
    mesh_services = {(_namespace(obj), _name(obj)) for obj in items
                     if obj["kind"] == "MeshService"}
    services = {(_namespace(obj), _name(obj)): obj for obj in items if obj["kind"] == "Service"}
    usable = _usable_endpoints([obj for obj in items if obj["kind"] == "EndpointSlice"])
    checked: list[Checked] = []
    problems: list[Problem] = []
    for obj in items:
        kind, key = obj["kind"], (_namespace(obj), _name(obj))
        if kind == "Service":
            if key in mesh_services:
                continue
            content = _trim_service(obj)
            if content is None:
                continue  # no TCP port: nothing for a TCP/HTTP proxy to do
        elif kind == "EndpointSlice":
            owner = services.get((_namespace(obj), _labels(obj).get(SERVICE_NAME_LABEL, "")))
            content = _trim_slice(obj, usable, owner)
        elif kind == "MeshService":
            content = _with_cluster_ip({**obj, "metadata": _trim_metadata(obj)},
                                       services.get(key))
        elif kind in POLICY_KINDS:
            content = {"apiVersion": obj.get("apiVersion"), "kind": kind,
                       "metadata": _trim_metadata(obj), "spec": obj.get("spec")}
        else:
            content = {**obj, "metadata": _trim_metadata(obj)}
        document = Document(Path(f"{key[0]}/{key[1]}"), 1, content)
        manifest, document_problems = check_document(document)
        problems += document_problems
        if manifest is not None:
            checked.append(Checked(document, manifest))
    config, cross = assemble(checked, sources=sources, environ=environ or {})
    if identities:
        config = _with_identities(config, identities)
    return config, problems + cross


def _meshed_pods(objects: list[Mapping[str, Any]], trust_domain: str) -> dict[str, str]:
    """The identity of each meshed pod's addresses (pods with Tulle's proxy)."""
    identities: dict[str, str] = {}
    for pod in objects:
        if pod.get("kind") != "Pod":
            continue
        spec = pod.get("spec") or {}
        if not any(isinstance(c, dict) and c.get("name") == PROXY_CONTAINER
                   for c in spec.get("containers") or []):
            continue
        account = spec.get("serviceAccountName") or "default"
        try:
            uri = WorkloadIdentity(trust_domain, _namespace(pod), account).uri
        except IdentityError:
            continue
        status = pod.get("status") or {}
        addresses = [status.get("podIP")] + [entry.get("ip") for entry in
                                             status.get("podIPs") or [] if isinstance(entry, dict)]
        for address in addresses:
            if isinstance(address, str) and address:
                identities[address] = uri
    return identities


def _with_identities(config: Config, identities: Mapping[str, str]) -> Config:
    """``config`` with the endpoints that are meshed pods naming their identity."""
    services = {}
    for key, service in config.services.items():
        if any(endpoint.host in identities for endpoint in service.endpoints):
            service = replace(service, endpoints=tuple(
                replace(endpoint, identity=identities.get(endpoint.host, endpoint.identity))
                for endpoint in service.endpoints))
        services[key] = service
    return replace(config, services=MappingProxyType(services))


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _namespace(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "default")


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    labels = (obj.get("metadata") or {}).get("labels")
    return labels if isinstance(labels, dict) else {}


def _trim_metadata(obj: Mapping[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata") or {}
    return {key: metadata[key] for key in _METADATA_FIELDS if key in metadata}


def _trim_service(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    spec = obj.get("spec") or {}
    ports = [port for port in spec.get("ports") or [] if isinstance(port, dict)]
    tcp = [port for port in ports if port.get("protocol", "TCP") == "TCP"]
    if not tcp:
        return None
    keep = ("name", "protocol", "appProtocol", "port", "targetPort")
    # The first TCP port is the service's port (Tulle serves one port per service).
    trimmed = [{key: port[key] for key in keep if key in port} for port in tcp]
    kept: dict[str, Any] = {"ports": trimmed}
    if isinstance(spec.get("clusterIP"), str):
        kept["clusterIP"] = spec["clusterIP"]
    return {"apiVersion": obj.get("apiVersion"), "kind": "Service",
            "metadata": _trim_metadata(obj), "spec": kept}


def _with_cluster_ip(mesh_service: dict[str, Any],
                     service: Mapping[str, Any] | None) -> dict[str, Any]:
    """A MeshService takes the clusterIP of the Service it stands for, unless it has one."""
    spec = mesh_service.get("spec")
    cluster_ip = ((service or {}).get("spec") or {}).get("clusterIP")
    if not isinstance(spec, dict) or "clusterIP" in spec or not isinstance(cluster_ip, str):
        return mesh_service
    return {**mesh_service, "spec": {**spec, "clusterIP": cluster_ip}}


def _usable_endpoints(slices: list[Mapping[str, Any]]) -> set[tuple[str, str, str]]:
    """(namespace, service, address) of each endpoint to use, per the rule above."""
    ready: dict[tuple[str, str], set[str]] = {}
    serving: dict[tuple[str, str], set[str]] = {}
    for obj in slices:
        service = (_namespace(obj), _labels(obj).get(SERVICE_NAME_LABEL, ""))
        for endpoint in obj.get("endpoints") or []:
            if not isinstance(endpoint, dict):
                continue
            conditions = endpoint.get("conditions") or {}
            addresses = [a for a in endpoint.get("addresses") or [] if isinstance(a, str)]
            # Absent "ready" means ready (the API's own rule).
            if conditions.get("ready") is not False:
                ready.setdefault(service, set()).update(addresses)
            elif conditions.get("serving") is True:
                serving.setdefault(service, set()).update(addresses)
    usable = set()
    for service in ready.keys() | serving.keys():
        chosen = ready.get(service) or serving.get(service, set())
        usable.update((service[0], service[1], address) for address in chosen)
    return usable


def _trim_slice(obj: Mapping[str, Any], usable: set[tuple[str, str, str]],
                owner: Mapping[str, Any] | None) -> dict[str, Any]:
    namespace, service = _namespace(obj), _labels(obj).get(SERVICE_NAME_LABEL, "")
    endpoints = []
    for endpoint in obj.get("endpoints") or []:
        if not isinstance(endpoint, dict):
            endpoints.append(endpoint)  # let the schema say what is wrong with it
            continue
        trimmed = {key: endpoint[key] for key in _SLICE_ENDPOINT_FIELDS if key in endpoint}
        addresses = [a for a in endpoint.get("addresses") or [] if isinstance(a, str)]
        use = any((namespace, service, address) in usable for address in addresses)
        trimmed["conditions"] = {"ready": use}
        endpoints.append(trimmed)
    ports = []
    for port in obj.get("ports") or []:
        if isinstance(port, dict) and port.get("port") is None and owner is not None:
            port = {**port, "port": _numeric_target(owner, port.get("name"))}
        if isinstance(port, dict) and port.get("name") == "":
            port = {key: value for key, value in port.items() if key != "name"}
        ports.append(port)
    return {"apiVersion": obj.get("apiVersion"), "kind": "EndpointSlice",
            "metadata": _trim_metadata(obj), "addressType": obj.get("addressType"),
            "ports": ports, "endpoints": endpoints}


def _numeric_target(service: Mapping[str, Any], port_name: Any) -> int | None:
    for port in (service.get("spec") or {}).get("ports") or []:
        if isinstance(port, dict) and (port.get("name") or None) == (port_name or None):
            target = port.get("targetPort", port.get("port"))
            return target if isinstance(target, int) else None
    return None
