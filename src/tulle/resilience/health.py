"""Active health checks: probe each endpoint on a schedule, off the request path.

An HTTP check sends ``GET path`` and wants a 2xx or 3xx status within the
timeout; a TCP check wants the connection to open. ``unhealthy_after``
consecutive failures mark an endpoint unhealthy (it leaves the balancer's
set); ``healthy_after`` consecutive successes bring it back. Endpoints start
healthy, so that turning checks on never empties a working service; a dead one
leaves after ``unhealthy_after`` intervals.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """What to probe: ``http_path`` set means HTTP, None means a TCP connect."""

    http_path: str | None
    host_header: str
    timeout: float


async def probe(host: str, port: int, spec: ProbeSpec) -> bool:
    """One check of one endpoint: True when it passed."""

    async def run() -> bool:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            if spec.http_path is None:
                return True
            writer.write(
                f"GET {spec.http_path} HTTP/1.1\r\nHost: {spec.host_header}\r\n"
                "User-Agent: tulle-health-check\r\nConnection: close\r\n\r\n".encode()
            )
            status_line = await reader.readline()
            parts = status_line.split()
            return len(parts) >= 2 and parts[0].startswith(b"HTTP/1.") and parts[1][:1] in b"23"
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    try:
        return await asyncio.wait_for(run(), spec.timeout)
    except (OSError, TimeoutError, ValueError):
        return False


class HealthState:
    """Consecutive results of one endpoint, and the healthy flag they decide."""

    __slots__ = ("_failures", "_successes", "healthy", "healthy_after", "unhealthy_after")

    def __init__(self, healthy_after: int, unhealthy_after: int) -> None:
        self.healthy_after = healthy_after
        self.unhealthy_after = unhealthy_after
        self.healthy = True
        self._successes = 0
        self._failures = 0

    def record(self, passed: bool) -> bool:
        """Record one check; True when the healthy flag changed."""
        if passed:
            self._failures = 0
            self._successes += 1
            if not self.healthy and self._successes >= self.healthy_after:
                self.healthy = True
                return True
        else:
            self._successes = 0
            self._failures += 1
            if self.healthy and self._failures >= self.unhealthy_after:
                self.healthy = False
                return True
        return False


class HealthChecker:
    """Runs the checks of one service's endpoints every ``interval``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        spec: ProbeSpec,
        interval: float,
        targets: Callable[[], list[tuple[str, int, HealthState]]],
        on_change: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._spec = spec
        self._interval = interval
        self._targets = targets
        self._on_change = on_change
        self._handle: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._handle = self._loop.call_soon(self._round)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for task in self._tasks:
            task.cancel()

    def _round(self) -> None:
        for host, port, state in self._targets():
            task = self._loop.create_task(self._check(host, port, state))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._handle = self._loop.call_later(self._interval, self._round)

    async def _check(self, host: str, port: int, state: HealthState) -> None:
        if state.record(await probe(host, port, self._spec)):
            self._on_change()
