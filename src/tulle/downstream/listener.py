"""What every connection accepted by one listener shares: the stack, timeouts, counters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from tulle.telemetry.metrics import TlsStats

if TYPE_CHECKING:
    from tulle.proxy.layers import ExchangeLayer
    from tulle.proxy.runtime import Runtime
    from tulle.tcp import TcpProxy
    from tulle.telemetry.metrics import ResponseStats, TcpStats
    from tulle.transport.limits import ConnectionBudget
    from tulle.transport.tls import MeshTls

# A client that does not read what it is sent for this long is cut off (nginx's
# send_timeout and HAProxy's "timeout client" are both 60 s by default).
DEFAULT_SEND_TIMEOUT = 60.0
# How long a client that says nothing is waited for before its connection is taken as
# opaque TCP (tulle.downstream.detect). Linkerd waits 10 s, which a server-speaks-first
# protocol on a port not marked opaque pays on every connection; HTTP clients send their
# request as soon as they connect, so 1 s is long for them and short for the others.
DEFAULT_DETECT_TIMEOUT = 1.0


class ServedConnection(Protocol):
    """What a listener's shutdown asks of every connection it accepted (HTTP/1.1 or 2)."""

    def close_if_idle(self) -> None:
        """Draining: close now if nothing is in progress (else once it is done)."""

    def abort(self) -> None:
        """The grace period is over: close at once."""


class ListenerContext:
    """One listener's settings and shared state. A plain class rather than a dataclass
    so that mypyc compiles it (setup.py): every request reads a few of its fields, and
    on an uncompiled object each read is a lookup by name."""

    def __init__(
        self,
        *,
        runtime: Runtime,
        direction: str,  # "outbound" or "inbound"
        stack: ExchangeLayer,  # the request path, outermost layer first
        tcp: TcpStats,
        malformed: ResponseStats,  # requests too broken to route
        head_timeout: float,  # a request head must arrive within this
        idle_timeout: float,  # a keep-alive connection may sit idle this long
        send_timeout: float = DEFAULT_SEND_TIMEOUT,  # a client must read what it is sent
        transparent: bool = False,
        opaque: TcpProxy | None = None,
        detect_timeout: float = DEFAULT_DETECT_TIMEOUT,
        tls: MeshTls | None = None,
        tls_stats: TlsStats | None = None,
        budget: ConnectionBudget | None = None,
    ) -> None:
        self.runtime = runtime
        self.direction = direction
        self.stack = stack
        self.tcp = tcp
        self.malformed = malformed
        self.head_timeout = head_timeout
        self.idle_timeout = idle_timeout
        self.send_timeout = send_timeout
        self.connections: set[ServedConnection] = set()
        self.draining = False
        # Connections arrive redirected by iptables (tulle init): read each one's
        # original destination once, for the route layer.
        self.transparent = transparent
        # Where connections that are not HTTP go (None: the HTTP side answers them), and
        # how long a silent client is waited for before it is taken as one.
        self.opaque = opaque
        self.detect_timeout = detect_timeout
        # This proxy's TLS, when it has an identity: ClientHellos naming it are
        # terminated (tulle.downstream.tls), and counted here.
        self.tls = tls
        self.tls_stats = TlsStats(("", "")) if tls_stats is None else tls_stats
        # The client connections every listener together may hold (the open-files
        # limit's room); one past it is refused at once, counted and logged. None: no
        # budget.
        self.budget = budget
