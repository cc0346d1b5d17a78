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

from tulle.proxy.errors import local_response
from tulle.proxy.routing import authority_host
from tulle.tcp.egress import EgressPolicy
from tulle.tcp.session import TcpSession

if TYPE_CHECKING:
    import asyncio

    from tulle.http import RequestHead
    from tulle.policy.compile import PolicyState
    from tulle.proxy.mesh import DirectionState
    from tulle.proxy.targets import ServiceTarget
    from tulle.tcp.session import Refusal
    from tulle.telemetry.metrics import Metrics

# What a CONNECT's client is told once its tunnel is open (RFC 9110 §9.3.6: any 2xx).
CONNECTED = b"HTTP/1.1 200 Connection established\r\nvia: 1.1 tulle\r\n\r\n"
# How a tunnel that could not be opened is answered, by the session's reason.
_TUNNEL_FAILURES = {
    "connect-refused": 502,
    "connect-failed": 502,
    "connect-timeout": 504,
    "local-exhaustion": 503,
    "no-endpoints": 503,
    "unavailable": 503,
}
class TcpProxy:
    """Opaque TCP of one direction's listener (see the module note)."""

    __slots__ = ("clock", "direction", "egress", "metrics", "opaque_ports", "policy", "sessions",
                 "state")

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
        self.egress = EgressPolicy()  # replaced on every reload (spec.egress)
        self.sessions: set[TcpSession] = set()
        # Inbound: who may connect (tulle.policy); a denied client's connection is reset.
        self.policy: PolicyState | None = None

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
        identity: str | None = None,
    ) -> TcpSession | None:
        """Proxy the connection on ``transport`` to an endpoint of ``target`` (``identity``:
        the client's, over mutual TLS). None when inbound policy refuses the client: its
        connection is reset, as Linkerd refuses denied TCP."""
        if self.policy is not None and not self._admits(target, identity, client_ip):
            transport.abort()
            return None
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


    def _admits(self, target: ServiceTarget, identity: str | None, client_ip: bytes) -> bool:
        """Whether the server policy of the target's port lets this client connect (its
        HTTPRoutes do not apply to TCP); counted either way."""
        assert self.policy is not None
        policy = self.policy.current
        server = policy.server_for(_app_port(target) or 0)
        counters = server.counters
        bits = policy.decide(server.mask, identity, client_ip) if server.mask else 0
        if bits or server.audit:
            counters.tcp_allowed += 1
            return True
        counters.tcp_denied += 1
        return False

    def tunnel(self, transport: asyncio.Transport, head: RequestHead, tail: bytes,
               client_ip: bytes) -> None:
        """A CONNECT: tunnel to a mesh service (balanced, like opaque TCP) or to an
        address ``spec.egress`` allows; answer anything else with 403."""
        authority = head.target
        target = self.state.router.resolve_authority(authority)
        if target is None:
            address = _host_port(authority)
            if address is None:
                _answer(transport, 400, f"CONNECT needs host:port, got {_text(authority)}")
                return
            if self.direction != "outbound" or not self.egress.allows(*address):
                _answer(transport, 403, f"CONNECT to {_text(authority)}: not a mesh service, "
                                        "and the mesh's spec.egress.allow does not name it")
                return
            target = self.state.direct_target(address)
        self.start(transport, target, tail, client_ip, counted=True, greeting=CONNECTED,
                   refuse=lambda code, detail: _answer(
                       transport, _TUNNEL_FAILURES.get(code, 502),
                       f"CONNECT to {_text(authority)}: {detail}"))


def _answer(transport: asyncio.Transport, status: int, reason: str) -> None:
    """Answer a CONNECT that gets no tunnel, and close."""
    if not transport.is_closing():
        transport.write(local_response(status, reason, close=True))
        transport.close()


def _text(authority: bytes) -> str:
    return repr(authority.decode("latin-1")[:200])


def _host_port(authority: bytes) -> tuple[str, int] | None:
    """``host:port`` (``[v6]:port``) of a CONNECT target, or None if it has no port."""
    host = authority_host(authority).decode("latin-1").strip("[]")
    _, colon, port = authority.rpartition(b":")
    if not colon or not port.isdigit() or not host or not 0 < int(port) < 65536:
        return None
    return host, int(port)


def _app_port(target: ServiceTarget) -> int | None:
    """The port of a one-endpoint target (the app, inbound), whose port is the one dialled."""
    endpoints = target.endpoints
    return endpoints[0].pool.port if len(endpoints) == 1 else None
