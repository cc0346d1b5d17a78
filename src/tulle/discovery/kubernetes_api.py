"""The few Kubernetes API calls Tulle makes: list, watch, discover versions, write.

Objects stay plain JSON dictionaries (camelCase, exactly as the server sends
them), because that is what Tulle's manifest schemas read: a Service from the
cluster and a Service from a YAML file go through the same checks.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from tulle.discovery.http_stream import HttpStreamError, StreamingResponse, request
from tulle.discovery.kubernetes_access import ClusterAccess

# A watch is a long poll: the server ends it after timeoutSeconds and we resume
# from the last resourceVersion. Reads time out a little after that, so a server
# that went silent (a dead connection) is noticed within WATCH_SECONDS + slack.
WATCH_SECONDS = 60
WATCH_READ_SLACK = 15.0
REQUEST_TIMEOUT = 15.0


class ApiError(Exception):
    """The API server answered with an error status (or could not be reached: status 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


class KubeApi:
    """A Kubernetes API server, reached as ``access`` says."""

    def __init__(self, access: ClusterAccess) -> None:
        self.access = access

    async def _open(self, method: str, path: str, body: Any = None,
                    content_type: str = "application/json",
                    read_timeout: float = REQUEST_TIMEOUT) -> StreamingResponse:
        headers = [("Accept", "application/json"), *self.access.auth_headers()]
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers.append(("Content-Type", content_type))
        try:
            return await request(
                self.access.host, self.access.port, method, path, headers=headers,
                body=payload, ssl=self.access.ssl, server_hostname=self.access.server_hostname,
                read_timeout=read_timeout,
            )
        except HttpStreamError as exc:
            raise ApiError(0, str(exc)) from None

    async def call(self, method: str, path: str, body: Any = None,
                   content_type: str = "application/json") -> dict[str, Any]:
        """One request; the decoded JSON answer, or ApiError for any status >= 400."""
        async with await self._open(method, path, body, content_type) as response:
            try:
                answer = await response.json()
            except HttpStreamError as exc:
                raise ApiError(response.status or 0, str(exc)) from None
        if response.status >= 400:
            message = answer.get("message") if isinstance(answer, dict) else None
            raise ApiError(response.status, message or f"HTTP {response.status}")
        return answer if isinstance(answer, dict) else {}

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        return await self.call("GET", _with_query(path, params))

    async def watch(self, path: str, resource_version: str) -> StreamingResponse:
        """Open a watch from ``resource_version``; events arrive as JSON lines."""
        target = _with_query(path, {
            "watch": "1", "resourceVersion": resource_version,
            "allowWatchBookmarks": "true", "timeoutSeconds": WATCH_SECONDS,
        })
        response = await self._open("GET", target,
                                    read_timeout=WATCH_SECONDS + WATCH_READ_SLACK)
        if response.status >= 400:
            try:
                answer = await response.json()
            except HttpStreamError:
                answer = {}
            finally:
                response.close()
            message = answer.get("message") if isinstance(answer, dict) else None
            raise ApiError(response.status, message or f"HTTP {response.status}")
        return response

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
