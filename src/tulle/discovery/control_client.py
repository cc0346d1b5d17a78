"""The proxy's side of the destination API: configurations streamed from ``tulle control``.

``ControlSource`` is a ``ConfigSource``. It subscribes to the control plane's
``/v1/watch`` stream (see ``tulle.control.server`` and docs/architecture.md);
the first snapshot is the proxy's initial configuration, and each later one is
handed to the proxy whole. When the stream breaks — control plane restarted,
network gone, no heartbeat within ``silence_timeout`` — the proxy keeps serving
its last configuration while this source reconnects with jittered exponential
backoff; the first line of the new stream is a full snapshot, so the proxy is
resynchronised without any bookkeeping of what it missed.

Time enters only through the injected ``sleep`` and ``Backoff``, so the
reconnection schedule is tested without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode, urlsplit

from tulle.config import Config, ConfigError, Problem
from tulle.config.snapshot import SnapshotError, config_from_dict
from tulle.discovery.backoff import Backoff
from tulle.discovery.http_stream import HttpStreamError, StreamingResponse, request
from tulle.discovery.source import OnConfig, OnError

log = logging.getLogger(__name__)

# Three missed heartbeats (the control plane sends one every 5 s) mean the stream is dead.
SILENCE_TIMEOUT = 15.0
INITIAL_TIMEOUT = 30.0

Sleep = Callable[[float], Awaitable[None]]


class ControlSource:
    """Whole configurations from a Tulle control plane at ``url`` (``http://host:8086``).

    ``proxy_id`` and ``admin`` (this proxy's admin address) are sent on subscribe and
    listed by the control plane's ``/proxies``. ``zone`` (default ``$TULLE_ZONE``) is
    this proxy's own zone, laid over the mesh settings the control plane sends.
    """

    def __init__(
        self,
        url: str,
        *,
        proxy_id: str | None = None,
        admin: str | None = None,
        zone: str | None = None,
        sleep: Sleep = asyncio.sleep,
        backoff: Backoff | None = None,
        silence_timeout: float = SILENCE_TIMEOUT,
        initial_timeout: float = INITIAL_TIMEOUT,
    ) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"expected a control plane URL like http://127.0.0.1:8086, "
                             f"got {url!r}")
        self.url = url
        self._host, self._port = parts.hostname, parts.port or 8086
        query = {"proxy": proxy_id or f"pid-{os.getpid()}", "admin": admin}
        self._target = "/v1/watch?" + urlencode({k: v for k, v in query.items() if v})
        self._zone = zone if zone is not None else os.environ.get("TULLE_ZONE") or None
        self._sleep = sleep
        self.backoff = backoff or Backoff(base=0.1, cap=5.0)
        self._silence = silence_timeout
        self._initial_timeout = initial_timeout
        self._response: StreamingResponse | None = None
        self._lines: Any = None
        self._task: asyncio.Task[None] | None = None
        self._on_config: OnConfig | None = None
        self._on_error: OnError | None = None
        self.config: Config | None = None
        self._raw: Any = None  # the last snapshot's configuration, as received
        self._delivered: Any = None  # ... and the last one handed to the proxy
        self.version = 0
        self.connections = 0
        self.connected = False
        self._stopped = False

    # -- ConfigSource --

    async def initial(self) -> Config:
        """Connect and return the first snapshot, retrying up to ``initial_timeout``."""
        try:
            return await asyncio.wait_for(self._first(), self._initial_timeout)
        except TimeoutError:
            raise ConfigError([Problem(file=self.url, message=(
                f"no configuration from the control plane within {self._initial_timeout:g}s"
            ))]) from None

    def start(self, on_config: OnConfig, on_error: OnError) -> None:
        self._on_config = on_config
        self._on_error = on_error
        self._task = asyncio.get_running_loop().create_task(self._follow(), name="control")

    def refresh(self, reason: str) -> None:
        """Resubscribe now: the new stream starts with a full snapshot."""
        log.info("resubscribing to the control plane (%s)", reason)
        if self._response is not None:
            self._response.close()

    def stop(self) -> None:
        # A flag as well as cancel(): asyncio.wait_for (before 3.12) can swallow a
        # cancellation that races with the data it was waiting for.
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
        self._disconnect()

    async def aclose(self) -> None:
        """Stop, and wait until the stream's task has ended."""
        task, self._task = self._task, None
        self.stop()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the stream --

    async def _first(self) -> Config:
        while True:
            try:
                await self._connect()
                config = await self._next_snapshot()
                if config is not None:
                    self.backoff.reset()
                    self._delivered = self._raw
                    return config
                raise HttpStreamError("the stream ended before its first snapshot")
            except (HttpStreamError, SnapshotError) as exc:
                self._disconnect()
                delay = self.backoff.next()
                log.warning("control plane %s: %s; retrying in %.2fs", self.url, exc, delay)
                await self._sleep(delay)

    async def _follow(self) -> None:
        while not self._stopped:
            try:
                if self._response is None:
                    await self._connect()
                while (config := await self._next_snapshot()) is not None and not self._stopped:
                    self.backoff.reset()
                    if self._raw == self._delivered:
                        continue  # a resync after reconnecting that brought nothing new
                    self._delivered = self._raw
                    if self._on_config is not None:
                        self._on_config(config, f"control plane version {self.version}")
                raise HttpStreamError("the control plane ended the stream")
            except (HttpStreamError, SnapshotError) as exc:
                was_connected = self.connected
                self._disconnect()
                delay = self.backoff.next()
                if was_connected and self._on_error is not None:
                    self._on_error(f"lost the control plane {self.url} ({exc}); keeping the "
                                   f"last configuration, reconnecting")
                log.info("control plane %s: %s; reconnecting in %.2fs", self.url, exc, delay)
                await self._sleep(delay)

    async def _connect(self) -> None:
        response = await request(self._host, self._port, "GET", self._target,
                                 headers=[("Accept", "application/x-ndjson")],
                                 read_timeout=self._silence)
        if response.status != 200:
            response.close()
            raise HttpStreamError(f"/v1/watch answered {response.status}")
        self._response = response
        self._lines = response.lines()
        self.connections += 1
        self.connected = True

    def _disconnect(self) -> None:
        self.connected = False
        if self._response is not None:
            self._response.close()
        self._response = None
        self._lines = None

    async def _next_snapshot(self) -> Config | None:
        """The next snapshot on the stream (heartbeats skipped); None when it ends."""
        if self._lines is None:
            return None
        async for line in self._lines:
            try:
                message = json.loads(line)
            except ValueError:
                raise SnapshotError("the control plane sent a line that is not JSON") from None
            if not isinstance(message, dict) or message.get("type") != "snapshot":
                continue
            self._raw = message.get("config")
            config = config_from_dict(self._raw)
            self.version = int(message.get("version", 0))
            if self._zone is not None:
                mesh = config.mesh.model_copy(update={"zone": self._zone})
                config = replace(config, mesh=mesh)
            self.config = config
            return config
        return None
