"""Kubernetes as a discovery source: Services, EndpointSlices and Tulle's own kinds, watched.

One ``Reflector`` per kind keeps a current copy of the cluster's objects; after
any change (bursts coalesced over ``debounce`` seconds) the whole set is turned
into a new :class:`Config` by ``tulle.config.cluster`` — the same checks and
assembly as manifests on disk — and handed on if it differs from the last one.

Kinds read: ``v1`` Service; ``discovery.k8s.io`` EndpointSlice in ``v1`` or, on
servers older than 1.21, ``v1beta1`` (chosen from what the server advertises);
``tulle.dev/v1alpha1`` MeshService and ServiceMesh (deploy/crds/); Gateway API
HTTPRoute (``v1``, else ``v1beta1``); the inbound policy kinds of
``policy.tulle.dev/v1alpha1``; and Pods, to know which endpoints are meshed and under
which ServiceAccount (their expected identity, for mTLS). Kinds whose CRD is not
installed count as empty until it is. Broken objects are logged once, by kind, namespace and name,
and left out; the rest of the cluster keeps working.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tulle.config import Config
from tulle.config.cluster import config_from_objects
from tulle.config.schema_authorization import POLICY_API_VERSION, POLICY_RESOURCES
from tulle.config.schema_gateway import GATEWAY_API_VERSION
from tulle.discovery.kubernetes_access import ClusterAccess
from tulle.discovery.kubernetes_api import ApiError, KubeApi
from tulle.discovery.kubernetes_watch import Reflector, Resource
from tulle.discovery.source import OnConfig, OnError

log = logging.getLogger(__name__)

SLICE_GROUP = "discovery.k8s.io"
SLICE_VERSIONS = ("v1", "v1beta1")  # preferred first
GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_VERSIONS = ("v1", "v1beta1")
TULLE_VERSION = "tulle.dev/v1alpha1"
# Long enough to fold a Deployment's burst of slice updates into one snapshot,
# short enough to stay well inside the 1 s propagation target.
DEBOUNCE_SECONDS = 0.05
SYNC_TIMEOUT = 30.0


class KubernetesSource:
    """Services and endpoints from a Kubernetes API server (a ``ConfigSource``)."""

    def __init__(
        self,
        access: ClusterAccess,
        *,
        namespace: str | None = None,
        environ: Mapping[str, str] | None = None,
        debounce: float = DEBOUNCE_SECONDS,
        trust_domain: str | None = None,
    ) -> None:
        self.api = KubeApi(access)
        self.namespace = namespace
        # Endpoints that are meshed pods get the identity of their ServiceAccount in it.
        self.trust_domain = trust_domain
        self._environ = dict(os.environ if environ is None else environ)
        self._debounce = debounce
        self.reflectors: list[Reflector] = []
        self.config: Config | None = None
        self._last: dict[str, Any] | None = None
        self._reported: set[str] = set()
        self._empty_reported: set[str] = set()
        self._on_config: OnConfig | None = None
        self._on_error: OnError | None = None
        self._pending: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None
        self.sources = (Path(f"kubernetes:{access.url}"),)

    async def resources(self) -> list[Resource]:
        """The kinds to watch, in the versions this server serves."""
        slice_version = await self._pick(SLICE_GROUP, SLICE_VERSIONS)
        if slice_version is None:  # EndpointSlices are served from Kubernetes 1.17 on
            raise ApiError(0, f"the API server serves no {SLICE_GROUP} version Tulle reads "
                              f"({', '.join(SLICE_VERSIONS)}); Kubernetes 1.17 or later needed")
        route_version = await self._pick(GATEWAY_GROUP, GATEWAY_VERSIONS) or "v1"
        log.info("watching EndpointSlice %s/%s, HTTPRoute %s/%s",
                 SLICE_GROUP, slice_version, GATEWAY_GROUP, route_version)
        return [
            Resource("v1", "Service", "services"),
            Resource(f"{SLICE_GROUP}/{slice_version}", "EndpointSlice", "endpointslices"),
            Resource(TULLE_VERSION, "MeshService", "meshservices"),
            Resource(TULLE_VERSION, "ServiceMesh", "servicemeshes", namespaced=False),
            Resource(f"{GATEWAY_GROUP}/{route_version}", "HTTPRoute", "httproutes"),
            Resource("v1", "Pod", "pods"),
            *(Resource(POLICY_API_VERSION, kind, plural)
              for kind, plural in POLICY_RESOURCES.items()),
        ]

    async def _pick(self, group: str, preferred: tuple[str, ...]) -> str | None:
        served = await self.api.served_versions(group)
        return next((version for version in preferred if version in served), None)

    # -- ConfigSource --

    async def initial(self) -> Config:
        """Start watching and return the configuration once every kind is listed."""
        if not self.reflectors:
            for resource in await self.resources():
                reflector = Reflector(self.api, resource, self._changed,
                                      namespace=self.namespace)
                self.reflectors.append(reflector)
                reflector.start()
        waits = [reflector.synced.wait() for reflector in self.reflectors]
        await asyncio.wait_for(asyncio.gather(*waits), SYNC_TIMEOUT)
        return self._build()

    def start(self, on_config: OnConfig, on_error: OnError) -> None:
        self._on_config = on_config
        self._on_error = on_error

    def refresh(self, reason: str) -> None:
        self._publish(reason)

    def stop(self) -> None:
        self._closing = asyncio.get_running_loop().create_task(self.aclose())

    async def aclose(self) -> None:
        """Stop every watch, wait until they have stopped, and close the client."""
        if self._pending is not None:
            self._pending.cancel()
        reflectors, self.reflectors = self.reflectors, []
        for reflector in reflectors:
            await reflector.stop()
        await self.api.close()

    # -- building --

    def objects(self) -> list[dict[str, Any]]:
        every: list[dict[str, Any]] = []
        for reflector in self.reflectors:
            for obj in reflector.objects.values():
                if obj.get("kind") == "HTTPRoute" and obj.get("apiVersion") != GATEWAY_API_VERSION:
                    obj = {**obj, "apiVersion": GATEWAY_API_VERSION}  # v1beta1: same shape
                every.append(obj)
        return every

    def _changed(self) -> None:
        if self._pending is None and self._on_config is not None:
            loop = asyncio.get_running_loop()
            self._pending = loop.call_later(self._debounce, self._publish, "the cluster changed")

    def _publish(self, reason: str) -> None:
        self._pending = None
        try:
            config = self._build()
        except Exception as exc:  # never let one bad rebuild stop the watches
            log.exception("cannot build a configuration from the cluster")
            if self._on_error is not None:
                self._on_error(f"cannot build a configuration from the cluster: {exc}")
            return
        rendered = config.to_dict()
        if rendered != self._last and self._on_config is not None:
            self._last = rendered
            self._on_config(config, reason)

    def _build(self) -> Config:
        objects = self.objects()
        config, problems = config_from_objects(objects, sources=self.sources,
                                               environ=self._environ,
                                               trust_domain=self.trust_domain)
        current = {str(problem) for problem in problems}
        for problem in sorted(current - self._reported):
            log.warning("skipped: %s", problem)
        self._reported = current
        self._report_empty(config, objects)
        self.config = config
        if self._last is None:
            self._last = config.to_dict()
        return config

    def _report_empty(self, config: Config, objects: list[dict[str, Any]]) -> None:
        """Log once each service that has no endpoints at all (no slices, or none ready)."""
        empty = {key for key, service in config.services.items() if not service.endpoints}
        for key in sorted(empty - self._empty_reported):
            log.info("service %s has no ready endpoints (no EndpointSlice, or none ready): "
                     "requests to it get 503 until it has", key)
        self._empty_reported = empty
