"""Keep-alive connections to one upstream address, reused across requests.

A pool hands an exchange a connection: an idle one when it has one (last in,
first out, so the warmest connection is reused and the others can age out), a
new one otherwise. Pools are keyed by address and shared by every service that
lists that address. A retired pool (its address left the configuration) closes
its idle connections at once and each busy one when its exchange ends.

A pool also knows whether its address is *reachable*, the way linkerd2-proxy's
endpoint stack does: when a connection cannot be made, the address leaves every
balancer at once (its requests are retried elsewhere, since they never left),
and the pool tries to connect again in the background — 100 ms, doubling to 1 s,
with jitter — until the address accepts a connection, which goes straight into
the idle list as the address rejoins the balancers. A restarted endpoint is thus
back within about a second, and nobody's request is spent finding out.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from tulle.proxy.upstream import UpstreamConnection
from tulle.telemetry.metrics import TcpStats

if TYPE_CHECKING:
    from tulle.proxy.exchange import Exchange

# Idle upstream connections kept per address. Enough for a burst of the
# concurrency one proxy sees per endpoint; beyond it, extras are closed.
MAX_IDLE_PER_ADDRESS = 256
# Background reconnection to an unreachable address: first try, and the cap.
RECONNECT_MIN = 0.1
RECONNECT_MAX = 1.0

_jitter = random.Random()


class ConnectError(Exception):
    """A new upstream connection could not be made (refused, unreachable, timed out)."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error  # the short code used as the metrics label


class EndpointPool:
    """Idle keep-alive connections to one address, and the way to make new ones."""

    __slots__ = ("_idle", "_loop", "_reconnect", "_reconnect_delay", "connect_timeout", "host",
                 "port", "reachable", "retired", "tcp", "watchers")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        tcp: TcpStats,
        connect_timeout: float,
    ) -> None:
        self._loop = loop
        self.host = host
        self.port = port
        self.tcp = tcp
        self.connect_timeout = connect_timeout
        self._idle: list[UpstreamConnection] = []
        self.retired = False
        self.reachable = True
        # Called when ``reachable`` changes (the targets whose endpoints use this pool).
        self.watchers: set[Callable[[], None]] = set()
        self._reconnect: asyncio.TimerHandle | None = None
        self._reconnect_delay = RECONNECT_MIN

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def acquire(self, exchange: Exchange) -> None:
        """Give ``exchange`` a connection, now (idle one) or once connected."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.reused = True
                exchange.upstream_ready(conn)
                return
        self.connect(exchange)

    def connect(self, exchange: Exchange) -> None:
        """Open a new connection for ``exchange`` (never an idle one)."""
        loop = self._loop
        task = loop.create_task(
            loop.create_connection(
                partial(UpstreamConnection, self, self.tcp), self.host, self.port
            )
        )
        timer = loop.call_later(self.connect_timeout, task.cancel)
        task.add_done_callback(partial(self._connected, exchange, exchange.try_id, timer))

    def _connected(
        self, exchange: Exchange, try_id: int, timer: asyncio.TimerHandle, task: asyncio.Task
    ) -> None:
        timer.cancel()
        if exchange.finished or exchange.try_id != try_id or exchange.upstream is not None:
            # The try this connection was for is over (timed out, retried elsewhere,
            # the client left): keep a connection that worked, forget one that didn't.
            if not task.cancelled() and task.exception() is None:
                self.release(task.result()[1])
            elif not task.cancelled() and isinstance(task.exception(), ConnectionRefusedError):
                self._unreachable()
            return
        if task.cancelled():
            exchange.connect_failed(
                ConnectError(f"connecting to {self.host}:{self.port} timed out", "connect-timeout")
            )
            return
        exc = task.exception()
        if exc is not None:
            if isinstance(exc, ConnectionRefusedError):
                error = ConnectError(f"{self.host}:{self.port} refused the connection",
                                     "connect-refused")
            else:
                error = ConnectError(f"connecting to {self.host}:{self.port} failed: {exc}",
                                     "connect-failed")
            self._unreachable()
            exchange.connect_failed(error)
            return
        _, conn = task.result()
        exchange.upstream_ready(conn)

    def release(self, conn: UpstreamConnection) -> None:
        """Take back a connection whose exchange ended cleanly."""
        if conn.closed:
            return
        if self.retired or len(self._idle) >= MAX_IDLE_PER_ADDRESS:
            conn.close()
            return
        conn.idle_since = self._loop.time()
        self._idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        """An idle connection closed under us (the upstream's idle timeout)."""
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)

    def close_idle_before(self, deadline: float) -> None:
        """Close idle connections unused since before ``deadline``."""
        idle = self._idle
        while idle and idle[0].idle_since < deadline:
            idle.pop(0).close()

    def retire(self) -> None:
        """The address left the configuration: close what is idle, refuse to keep more."""
        self.retired = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            self._reconnect = None
        while self._idle:
            self._idle.pop().close()

    # -- reachability --

    def _unreachable(self) -> None:
        if not self.reachable or self.retired:
            return
        self.reachable = False
        self._reconnect_delay = RECONNECT_MIN
        self._schedule_reconnect()
        self._notify()

    def _schedule_reconnect(self) -> None:
        delay = self._reconnect_delay * _jitter.uniform(0.5, 1.0)
        self._reconnect_delay = min(self._reconnect_delay * 2, RECONNECT_MAX)
        self._reconnect = self._loop.call_later(delay, self._try_reconnect)

    def _try_reconnect(self) -> None:
        self._reconnect = None
        if self.retired:
            return
        loop = self._loop
        task = loop.create_task(
            loop.create_connection(
                partial(UpstreamConnection, self, self.tcp), self.host, self.port
            )
        )
        timer = loop.call_later(self.connect_timeout, task.cancel)
        task.add_done_callback(partial(self._reconnected, timer))

    def _reconnected(self, timer: asyncio.TimerHandle, task: asyncio.Task) -> None:
        timer.cancel()
        if task.cancelled() or task.exception() is not None:
            if not self.retired:
                self._schedule_reconnect()
            return
        _, conn = task.result()
        self.reachable = True
        self.release(conn)
        self._notify()

    def _notify(self) -> None:
        for watcher in list(self.watchers):
            with contextlib.suppress(Exception):
                watcher()


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Disable Nagle: a proxy forwards small heads that must not wait for an ACK."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
