"""Small helpers for tests to write objects into the test cluster, with Tulle's own client."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

from tests.k8s.cluster import Cluster
from tulle.discovery.kubernetes_access import from_kubeconfig
from tulle.discovery.kubernetes_api import ApiError, KubeApi

SLICES = "/apis/discovery.k8s.io/v1beta1/namespaces/{ns}/endpointslices"
SERVICES = "/api/v1/namespaces/{ns}/services"
_names = itertools.count(1)


def unique(prefix: str) -> str:
    """A name no other test uses (tests share one cluster)."""
    return f"{prefix}-{next(_names)}-{int(time.time() * 1000) % 100000}"


@contextlib.asynccontextmanager
async def api(cluster: Cluster) -> AsyncIterator[KubeApi]:
    """Tulle's client for the test cluster, closed on exit."""
    async with KubeApi(await from_kubeconfig(cluster.kubeconfig)) as client:
        yield client


def sync_call(cluster: Cluster, method: str, path: str, body: Any = None,
              content_type: str = "application/json") -> dict[str, Any]:
    """One API call from synchronous code, retried while the server is (re)starting."""
    async def call() -> dict[str, Any]:
        for _ in range(50):
            try:
                async with api(cluster) as client:
                    return await client.call(method, path, body, content_type)
            except ApiError as exc:
                if exc.status not in (0, 503):
                    raise
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{method} {path}: the API server did not answer")
    return asyncio.run(call())


def service(name: str, port: int = 80, target: int | str | None = None,
            selector: dict[str, str] | None = None, port_name: str | None = None
            ) -> dict[str, Any]:
    spec_port: dict[str, Any] = {"port": port, "protocol": "TCP"}
    if target is not None:
        spec_port["targetPort"] = target
    if port_name is not None:
        spec_port["name"] = port_name
    spec: dict[str, Any] = {"ports": [spec_port]}
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def endpoint_slice(name: str, service_name: str, port: int, addresses: list[str],
                   port_name: str = "", ready: bool = True, zone: str | None = None
                   ) -> dict[str, Any]:
    endpoints = []
    for address in addresses:
        endpoint: dict[str, Any] = {"addresses": [address], "conditions": {"ready": ready}}
        if zone:
            endpoint["topology"] = {"topology.kubernetes.io/zone": zone}
        endpoints.append(endpoint)
    return {
        "apiVersion": "discovery.k8s.io/v1beta1", "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {"kubernetes.io/service-name": service_name}},
        "addressType": "IPv4",
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        "endpoints": endpoints,
    }
