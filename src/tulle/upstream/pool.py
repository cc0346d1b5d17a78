"""Keep-alive connections to one upstream address, lent to one attempt at a time.

A pool lends a waiter (`tulle.proxy.streams.LeaseWaiter`, in practice an attempt) a
connection: an idle one when it has one (last in, first out, so the warmest connection
is reused and the others can age out), a new one otherwise. Pools are keyed by address
and shared by every service that lists that address. A retired pool (its address left
the configuration) closes its idle connections at once and each busy one when its
lease ends.

A pool also knows whether its address is *reachable*, the way linkerd2-proxy's endpoint
stack does: when a connection cannot be made, the address leaves every balancer at once
(its requests are retried elsewhere, since they never left), and the pool tries to
connect again in the background — 100 ms, doubling to 1 s, with jitter — until the
address accepts a connection, which goes straight into the idle list as the address
rejoins the balancers. A restarted endpoint is thus back within about a second, and
nobody's request is spent finding out.

A meshed endpoint (its destination names the identity its proxy presents) is reached
over mutual TLS: each connection is opened with the proxy's current client context
(`tulle.transport.tls.MeshTls`) and the identity's TLS server name, which OpenSSL checks
in the handshake; a certificate that does not name it fails the connect like a
refusal would, and the address is unreachable until one succeeds.

Running out of file descriptors (EMFILE, ENFILE) or kernel buffers is the proxy's
problem, not the endpoint's: such a connect fails the try with ``local-exhaustion``,
is logged (at most once a second) and counted, and leaves the address reachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import random
from collections.abc import Callable, Coroutine
from functools import partial
from typing import TYPE_CHECKING, Any, Final, cast

from tulle.identity.spiffe import dns_name_of
from tulle.proxy import streams
from tulle.telemetry.metrics import TcpStats
from tulle.transport.limits import LogLimit
from tulle.transport.tls import ALPN_HTTP1, ALPN_OPAQUE
from tulle.transport.tls import connect as connect_tls
from tulle.upstream.h1 import UpstreamConnection

if TYPE_CHECKING:
    from tulle.proxy.streams import LeaseWaiter
    from tulle.transport.tls import MeshTls
    from tulle.upstream.h2 import H2Pool

log: Final = logging.getLogger("tulle.upstream")

# Idle upstream connections kept per address. Enough for a burst of the concurrency one
# proxy sees per endpoint; beyond it, extras are closed.
MAX_IDLE_PER_ADDRESS: Final = 256
# Background reconnection to an unreachable address: first try, and the cap.
RECONNECT_MIN: Final = 0.1
RECONNECT_MAX: Final = 1.0
# Errors that say the proxy itself is out of something, not that the endpoint is down.
_LOCAL_EXHAUSTION: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

_jitter: Final = random.Random()


class ConnectFailure(streams.ConnectFailure):
    """Why a connection could not be made: a metrics code and a detail for people."""

    __slots__ = ("code", "detail")

    def __init__(self, code: str, detail: str) -> None:
        self.code = code  # connect-refused, connect-timeout, connect-failed, local-exhaustion
        self.detail = detail


_exhaustion_log: Final = LogLimit()


class EndpointPool:
    """Idle keep-alive connections to one address, and the way to make new ones."""

    __slots__ = ("_h2", "_idle", "_loop", "_now", "_reconnect", "_reconnect_delay",
                 "connect_timeout", "host", "mesh_tls", "port", "reachable", "retired",
                 "server_identity", "server_name", "tcp", "watchers")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        host: str,
        port: int,
        tcp: TcpStats,
        connect_timeout: float,
    ) -> None:
        self._loop = loop
        self._now: Callable[[], float] = loop.time  # bound once: read per response
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
        self._h2: H2Pool | None = None
        # A meshed endpoint: the identity its proxy must present, the TLS server name
        # that says so, and this proxy's TLS contexts (None: plaintext).
        self.server_identity: str | None = None
        self.server_name: str | None = None
        self.mesh_tls: MeshTls | None = None

    def secure(self, identity: str | None, mesh_tls: MeshTls | None) -> None:
        """Connect with mutual TLS to a proxy presenting ``identity`` (None: plaintext);
        idle connections made otherwise are closed."""
        if identity != self.server_identity:
            self.server_identity = identity
            self.server_name = None if identity is None else dns_name_of(identity)
            while self._idle:
                self._idle.pop().close()
        self.mesh_tls = mesh_tls

    @property
    def secured(self) -> bool:
        """New connections are mutual TLS."""
        return self.server_name is not None and self.mesh_tls is not None

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def h2(self) -> H2Pool:
        """HTTP/2 connections to this address, lending streams (made on first use)."""
        pool = self._h2
        if pool is None:
            from tulle.upstream.h2 import H2Pool  # the h2 library: loaded on first use

            pool = self._h2 = H2Pool(self)
        return pool

    def lease(self, waiter: LeaseWaiter) -> None:
        """Lend ``waiter`` a connection: an idle one now, or a new one once connected."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                conn.reused = True
                conn.sink = waiter
                waiter.leased(conn)
                return
        self.connect(waiter)

    def connect(self, waiter: LeaseWaiter) -> None:
        """Open a new connection for ``waiter`` (never an idle one)."""
        task, timer = self.open_connection()
        task.add_done_callback(partial(self._connected, waiter, timer))

    def open_raw(self, protocol: object, done: Callable[[ConnectFailure | None], None]) -> None:
        """Open a connection that does not speak HTTP (opaque TCP, a tunnel) for
        ``protocol``, under the same connect timeout and reachability rules; ``done``
        hears None once ``protocol`` has its transport, or why it will not. Such a
        connection is the caller's: it never joins the idle list."""
        task, timer = self.open_connection(
            cast(Callable[[], asyncio.Protocol], lambda: protocol), ALPN_OPAQUE)
        task.add_done_callback(partial(self._opened_raw, done, timer))

    def _opened_raw(self, done: Callable[[ConnectFailure | None], None],
                    timer: asyncio.TimerHandle, task: asyncio.Task) -> None:
        timer.cancel()
        done(self.failure_of(task))

    def open_connection(
        self, factory: Callable[[], asyncio.Protocol] | None = None, alpn: str = ALPN_HTTP1
    ) -> tuple[asyncio.Task, asyncio.TimerHandle]:
        """Start connecting (an HTTP/1.1 connection unless ``factory`` says otherwise;
        ``alpn`` names what it speaks, offered in the handshake to a meshed endpoint),
        within the connect timeout, which covers that handshake too."""
        loop = self._loop
        if factory is None:
            # A plain class, not asyncio.Protocol: asyncio and uvloop call protocols by name.
            factory = cast(Callable[[], asyncio.Protocol],
                           partial(UpstreamConnection, self, self.tcp))
        mesh_tls = self.mesh_tls
        server_name = self.server_name
        if server_name is not None and mesh_tls is not None:
            connecting: Coroutine[Any, Any, tuple[Any, Any]] = connect_tls(
                loop, factory, self.host, self.port, mesh_tls.clients[alpn], server_name)
        else:
            connecting = loop.create_connection(factory, self.host, self.port)
        task = loop.create_task(connecting)
        return task, loop.call_later(self.connect_timeout, task.cancel)

    def _connected(self, waiter: LeaseWaiter, timer: asyncio.TimerHandle,
                   task: asyncio.Task) -> None:
        timer.cancel()
        failure = self.failure_of(task)
        if not waiter.wants_lease():
            # The try this connection was for is over (timed out, retried elsewhere, the
            # client left): keep a connection that worked, forget one that didn't.
            if failure is None:
                self.release(cast(UpstreamConnection, task.result()[1]))
            return
        if failure is not None:
            waiter.lease_failed(failure)
            return
        conn = cast(UpstreamConnection, task.result()[1])
        conn.sink = waiter
        waiter.leased(conn)

    def failure_of(self, task: asyncio.Task) -> ConnectFailure | None:
        """What went wrong with a connect (None: nothing), and its effect on the pool."""
        address = f"{self.host}:{self.port}"
        if task.cancelled():
            return ConnectFailure("connect-timeout", f"no answer within {self.connect_timeout}s")
        exc = task.exception()
        if exc is None:
            return None
        if isinstance(exc, OSError) and exc.errno in _LOCAL_EXHAUSTION:
            self.tcp.local_exhaustion += 1
            if _exhaustion_log.allow(self._loop.time()):
                log.error("cannot connect to %s: %s (the proxy is out of file descriptors or "
                          "memory; the endpoint is not blamed)", address, exc.strerror)
            return ConnectFailure("local-exhaustion", exc.strerror or str(exc))
        self._unreachable()
        if isinstance(exc, ConnectionRefusedError):
            return ConnectFailure("connect-refused", "refused")
        return ConnectFailure("connect-failed", str(exc))

    def release(self, conn: UpstreamConnection) -> None:
        """Take back a connection whose response ended cleanly."""
        conn.sink = None
        if conn.closed:
            return
        if self.retired or len(self._idle) >= MAX_IDLE_PER_ADDRESS:
            conn.close()
            return
        conn.idle_since = self._now()
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
        if self._h2 is not None:
            self._h2.close_idle_before(deadline)

    def retire(self) -> None:
        """The address left the configuration: close what is idle, refuse to keep more."""
        self.retired = True
        if self._reconnect is not None:
            self._reconnect.cancel()
            self._reconnect = None
        while self._idle:
            self._idle.pop().close()
        if self._h2 is not None:
            self._h2.retire()

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
        task, timer = self.open_connection()
        task.add_done_callback(partial(self._reconnected, timer))

    def _reconnected(self, timer: asyncio.TimerHandle, task: asyncio.Task) -> None:
        timer.cancel()
        if task.cancelled() or task.exception() is not None:
            if not self.retired:
                self._schedule_reconnect()
            return
        self.reachable = True
        self.release(cast(UpstreamConnection, task.result()[1]))
        self._notify()

    def _notify(self) -> None:
        for watcher in list(self.watchers):
            with contextlib.suppress(Exception):
                watcher()
