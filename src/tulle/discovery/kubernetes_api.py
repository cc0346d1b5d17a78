"""The few Kubernetes API calls Tulle makes: get, write, watch, discover versions.

Requests go through the ``kubernetes_asyncio`` client (its authentication, TLS and
connection pool). Objects stay plain JSON dictionaries (camelCase, exactly as the
server sends them) rather than the library's generated models, because that is what
Tulle's manifest schemas read: a Service from the cluster and a Service from a YAML
file go through the same checks, and kinds the library has no model for (custom
resources, EndpointSlice v1beta1 on old servers) work the same way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from tulle.discovery.kubernetes_access import ClusterAccess

# A watch is a long poll: the server ends it after timeoutSeconds and we resume
# from the last resourceVersion. Reads time out a little after that, so a server
# that went silent (a dead connection) is noticed within WATCH_SECONDS + slack.
WATCH_SECONDS = 60
WATCH_READ_SLACK = 15.0
REQUEST_TIMEOUT = 15.0
CONNECT_TIMEOUT = 5.0
# A list of every object of a kind in a big cluster is tens of MB; past this, refuse.
MAX_BODY = 256 * 1024 * 1024
# One object is at most about 1.5 MB in etcd; an event line past this is not one.
MAX_EVENT = 16 * 1024 * 1024


class ApiError(Exception):
    """The API server answered with an error status (or could not be reached: status 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


class WatchStream:
    """An open watch: its events, one JSON line each. Always closed (``async with``)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def lines(self) -> AsyncIterator[bytes]:
        """Each event's line as it arrives. Lines are split here rather than by aiohttp's
        readline, whose 128 KiB limit a large object (an EndpointSlice of 1,000
        endpoints) passes; an event over ``MAX_EVENT`` ends the watch instead."""
        pending = b""
        try:
            async for chunk in self._response.content.iter_any():
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    if line.strip():
                        yield line
                if len(pending) > MAX_EVENT:
                    raise ApiError(0, f"a watch event over {MAX_EVENT} bytes")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ApiError(0, f"watch lost: {exc or type(exc).__name__}") from None
        if pending.strip():
            yield pending

    def close(self) -> None:
        self._response.close()

    async def __aenter__(self) -> WatchStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()


class KubeApi:
    """A Kubernetes API server, reached as ``access`` says. ``await close()`` when done."""

    def __init__(self, access: ClusterAccess) -> None:
        self.access = access
        self._client = ApiClient(access.configuration)

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> KubeApi:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _open(self, method: str, path: str, body: Any, content_type: str,
                    timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        try:
            return await self._client.call_api(
                path, method, header_params={"Accept": "application/json",
                                             "Content-Type": content_type},
                body=body, auth_settings=["BearerToken"], _preload_content=False,
                _request_timeout=timeout)
        except ApiException as exc:
            raise ApiError(exc.status or 0, str(exc.reason)) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ApiError(0, f"cannot reach {self.access.url}: "
                              f"{exc or type(exc).__name__}") from None

    async def call(self, method: str, path: str, body: Any = None,
                   content_type: str = "application/json") -> dict[str, Any]:
        """One request; the decoded JSON answer, or ApiError for any status >= 400."""
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        response = await self._open(method, path, body, content_type, timeout)
        body = bytearray()
        try:
            async for chunk in response.content.iter_any():
                body += chunk
                if len(body) > MAX_BODY:
                    raise ApiError(response.status, f"answer over {MAX_BODY} bytes")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ApiError(0, f"{method} {path}: {exc or type(exc).__name__}") from None
        finally:
            response.close()
        try:
            answer = json.loads(body) if body else {}
        except ValueError:
            if response.status < 400:
                raise ApiError(0, f"{method} {path}: the answer is not JSON") from None
            answer = {}
        if response.status >= 400:
            message = answer.get("message") if isinstance(answer, dict) else None
            raise ApiError(response.status, message or f"HTTP {response.status}")
        return answer if isinstance(answer, dict) else {}

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        return await self.call("GET", _with_query(path, params))

    async def watch(self, path: str, resource_version: str) -> WatchStream:
        """Open a watch from ``resource_version``; events arrive as JSON lines."""
        target = _with_query(path, {
            "watch": "1", "resourceVersion": resource_version,
            "allowWatchBookmarks": "true", "timeoutSeconds": WATCH_SECONDS,
        })
        timeout = aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT,
                                        sock_read=WATCH_SECONDS + WATCH_READ_SLACK)
        response = await self._open("GET", target, None, "application/json", timeout)
        if response.status >= 400:
            try:
                answer = json.loads(await asyncio.wait_for(response.read(), REQUEST_TIMEOUT))
            except (ValueError, aiohttp.ClientError, TimeoutError, OSError):
                answer = {}
            finally:
                response.close()
            message = answer.get("message") if isinstance(answer, dict) else None
            raise ApiError(response.status, message or f"HTTP {response.status}")
        return WatchStream(response)

    async def served_versions(self, group: str) -> list[str]:
        """The versions of API group ``group`` this server serves (empty if none)."""
        try:
            answer = await self.get(f"/apis/{group}")
        except ApiError as exc:
            if exc.status == 404:
                return []
            raise
        return [entry.get("version") for entry in answer.get("versions") or []
                if isinstance(entry, dict) and entry.get("version")]


def _with_query(path: str, params: dict[str, Any]) -> str:
    params = {key: value for key, value in params.items() if value is not None}
    return f"{path}?{urlencode(params)}" if params else path
