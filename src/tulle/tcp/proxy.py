"""Opaque TCP for one listener: where a connection that is not HTTP goes, and its session.

`TcpProxy` is made per listener (outbound or inbound) beside its HTTP request stack. It
answers the questions protocol detection asks of a new connection (`tulle.downstream.
detect`), and starts a `tulle.tcp.session.TcpSession` for each connection that is
proxied as TCP:

- **Where to.** A connection captured by iptables goes where the client was going: the
  service whose ``clusterIP:port`` that is, else the address itself, as HTTP does
  (`tulle.proxy.routing`). An inbound connection without capture goes to the app. A
  connection to the outbound listener without capture has nowhere to go but its HTTP
  Host header, so it is HTTP or nothing.
- **Whether to wait for the client's first bytes.** Not for a port listed as opaque
  (``--opaque-ports``, Linkerd's opaque ports), nor for a service declared ``protocol:
  tcp``: their servers may speak first (SMTP, MySQL), and their bytes are not looked at.
- **Which metrics.** A named service's connections are counted under its own
  ``dst_service``/``dst_namespace``; a bare address's (a pod IP, the app) under the
  listener's and the pools' (no label per address, which could grow without bound).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from tulle.tcp.session import TcpSession

if TYPE_CHECKING:
    import asyncio

    from tulle.proxy.mesh import DirectionState
    from tulle.proxy.targets import ServiceTarget
    from tulle.tcp.session import Refusal
    from tulle.telemetry.metrics import Metrics

class TcpProxy:
    """Opaque TCP of one direction's listener (see the module note)."""

    __slots__ = ("clock", "direction", "metrics", "opaque_ports", "sessions", "state")

    def __init__(
        self,
        state: DirectionState,
        metrics: Metrics,
        clock: Callable[[], float],
        opaque_ports: Collection[int] = (),
    ) -> None:
        self.state = state  # its router is replaced on every reload: read it each time
        self.direction = state.direction
        self.metrics = metrics
        self.clock = clock
        self.opaque_ports = frozenset(opaque_ports)
        self.sessions: set[TcpSession] = set()

    def destination(self, original_dst: tuple[str, int] | None) -> ServiceTarget | None:
        """Where a connection that is not HTTP goes (None: nowhere)."""
        router = self.state.router
        if original_dst is not None:
            return router.resolve_destination(original_dst)
        return router.default if self.direction == "inbound" else None

    def is_opaque(self, original_dst: tuple[str, int] | None,
                  target: ServiceTarget | None) -> bool:
        """True when the connection is TCP without looking at it: an opaque port, or a
        service declared ``protocol: tcp``."""
        if target is None:
            return False
        if target.protocol == "tcp":
            return True
        port = original_dst[1] if original_dst is not None else _app_port(target)
        return port in self.opaque_ports

    def start(
        self,
        transport: asyncio.Transport,
        target: ServiceTarget,
        pending: bytes,
        client_ip: bytes,
        *,
        counted: bool = False,
        greeting: bytes = b"",
        refuse: Refusal | None = None,
    ) -> TcpSession:
        """Proxy the connection on ``transport`` to an endpoint of ``target``."""
        named = bool(target.namespace)
        service = target.name if named else ""
        namespace = target.namespace if named else ""
        session = TcpSession(
            target,
            self.metrics.tcp(self.direction, "src", service, namespace),
            self.metrics.tcp(self.direction, "dst", service, namespace),
            self.clock,
            self.sessions.discard,
        )
        self.sessions.add(session)
        session.start(transport, pending, client_ip, counted=counted, greeting=greeting,
                      refuse=refuse)
        return session


def _app_port(target: ServiceTarget) -> int | None:
    """The port of a one-endpoint target (the app, inbound), whose port is the one dialled."""
    endpoints = target.endpoints
    return endpoints[0].pool.port if len(endpoints) == 1 else None
