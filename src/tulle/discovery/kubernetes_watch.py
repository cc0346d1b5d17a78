"""Keep a local copy of one kind of Kubernetes object current: list, then watch.

Theory of operation (the "reflector" of client-go, reduced to what Tulle needs):
list every object of the kind, remembering the list's ``resourceVersion``; then
watch from that version and apply each ADDED / MODIFIED / DELETED event to the
copy, moving the version forward with every event and BOOKMARK. When the watch
ends (the server closes it after ``timeoutSeconds``, or the connection drops)
it is reopened from the last version seen, so nothing is missed and nothing is
listed again. When the server says that version is too old (410 Gone, as an
HTTP status or as an ERROR event) the copy is rebuilt from a fresh list. Any
other failure waits a jittered, growing delay before trying again. A kind the
server does not serve (404: a CRD not installed) counts as empty and is looked
for again now and then.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from tulle.discovery.backoff import Backoff
from tulle.discovery.kubernetes_api import ApiError, KubeApi

log = logging.getLogger(__name__)

# How often to look again for a kind the server does not serve (CRD not installed).
ABSENT_RECHECK = 30.0

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Resource:
    """One kind of object: where to list it, and how its objects are labelled."""

    api_version: str  # "v1", "discovery.k8s.io/v1beta1", ...
    kind: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None) -> str:
        """The collection's path: every namespace, or only ``namespace``."""
        prefix = "/api" if "/" not in self.api_version else "/apis"
        if namespace and self.namespaced:
            return f"{prefix}/{self.api_version}/namespaces/{namespace}/{self.plural}"
        return f"{prefix}/{self.api_version}/{self.plural}"


class _Gone(Exception):
    """The resourceVersion we hold is too old: relist."""


class Reflector:
    """A watched, always-current copy of every object of one kind, by "namespace/name"."""

    def __init__(self, api: KubeApi, resource: Resource, on_change: Callable[[], None],
                 *, namespace: str | None = None, sleep: Sleep = asyncio.sleep,
                 backoff: Backoff | None = None) -> None:
        self.api = api
        self.resource = resource
        self.path = resource.path(namespace)
        self.objects: dict[str, dict[str, Any]] = {}
        self.synced = asyncio.Event()
        self.served = True
        self.resource_version = ""
        self.relists = 0
        self._on_change = on_change
        self._sleep = sleep
        self._backoff = backoff or Backoff(base=0.2, cap=10.0)
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        self._stopped = False
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"watch {self.resource.plural}")

    async def stop(self) -> None:
        self._stopped = True  # wait_for (before 3.12) can swallow a racing cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        kind = self.resource.kind
        while not self._stopped:
            try:
                await self._list()
                while not self._stopped:
                    await self._watch_once()
                    self._backoff.reset()
            except _Gone:
                log.info("%s watch: resourceVersion %s expired; listing again",
                         kind, self.resource_version)
                continue
            except ApiError as exc:
                if exc.status == 404:
                    await self._absent()
                    continue
                delay = self._backoff.next()
                what = "lost" if exc.status == 0 else "failed"
                log.warning("%s watch %s (%s); retrying in %.2fs", kind, what, exc, delay)
                await self._sleep(delay)

    async def _absent(self) -> None:
        if self.served or self.objects:
            log.info("%s is not served by the API server (CRD not installed?); "
                     "looking again every %gs", self.resource.kind, ABSENT_RECHECK)
        self.served = False
        if self.objects:
            self.objects = {}
            self._on_change()
        self.synced.set()
        await self._sleep(ABSENT_RECHECK)

    async def _list(self) -> None:
        answer = await self.api.get(self.path)
        objects = {}
        for item in answer.get("items") or []:
            if isinstance(item, dict):
                # List items carry no apiVersion/kind of their own.
                item.setdefault("apiVersion", self.resource.api_version)
                item.setdefault("kind", self.resource.kind)
                objects[_key(item)] = item
        self.resource_version = (answer.get("metadata") or {}).get("resourceVersion", "")
        self.served = True
        self.relists += 1
        changed = objects != self.objects
        self.objects = objects
        self._backoff.reset()
        self.synced.set()
        if changed:
            self._on_change()

    async def _watch_once(self) -> None:
        try:
            response = await self.api.watch(self.path, self.resource_version)
        except ApiError as exc:
            if exc.status == 410:
                raise _Gone from None
            raise
        async with response:
            async for line in response.lines():
                self._apply(line)

    def _apply(self, line: bytes) -> None:
        try:
            event = json.loads(line)
            kind, obj = event["type"], event["object"]
        except (ValueError, KeyError, TypeError):
            log.warning("%s watch: ignoring a malformed event", self.resource.kind)
            return
        if kind == "ERROR":
            if isinstance(obj, dict) and obj.get("code") == 410:
                raise _Gone
            raise ApiError(obj.get("code", 0) if isinstance(obj, dict) else 0,
                           str(obj.get("message") if isinstance(obj, dict) else obj))
        if not isinstance(obj, dict):
            return
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = version
        if kind == "BOOKMARK":
            return
        key = _key(obj)
        if kind == "DELETED":
            if self.objects.pop(key, None) is not None:
                self._on_change()
        elif kind in ("ADDED", "MODIFIED"):
            obj.setdefault("apiVersion", self.resource.api_version)
            obj.setdefault("kind", self.resource.kind)
            self.objects[key] = obj
            self._on_change()


def _key(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    return f"{metadata.get('namespace', '')}/{metadata.get('name', '')}"
