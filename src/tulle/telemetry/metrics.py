"""Counters the request path increments: plain integers, fixed histogram slots.

Each (direction, service, endpoint) gets one `ResponseStats` handle, made once
and kept on the object the request path already holds (an endpoint, a
service), so recording a response is two integer additions and one binary search. The
Prometheus text is produced only when scraped, by `tulle.telemetry.collector`.

Names and labels follow Linkerd's proxy metrics (linkerd.io, "Proxy Metrics"),
so queries and dashboards written for Linkerd work on Tulle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# Linkerd's response_latency_ms buckets (DESIGN.md "Defaults"), in milliseconds.
LATENCY_BUCKETS_MS: tuple[int, ...] = (
    1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500,
    1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000,
)  # fmt: skip


def slot_of(bounds: tuple[int, ...], value: float) -> int:
    """The histogram slot ``value`` falls in: the first bound at or above it (``bisect_left``;
    ``len(bounds)`` is +Inf). Written out because, compiled, it compares native numbers,
    where calling ``bisect_left`` compares Python objects (~2k instructions a response)."""
    low = 0
    high = len(bounds)
    while low < high:
        middle = (low + high) >> 1
        if bounds[middle] < value:
            low = middle + 1
        else:
            high = middle
    return low


def classify(status: int, error: str, grpc_status: int = -1) -> str:
    """Linkerd's classification: 5xx and proxy-made errors are failures, and a gRPC
    response is classified by its grpc-status (0 is a success; `tulle.grpc.status`)."""
    if error:
        return "failure"
    if grpc_status >= 0:
        return "success" if grpc_status == 0 else "failure"
    return "failure" if status >= 500 else "success"


class LatencyHistogram:
    """Counts per fixed bucket (the last slot is +Inf) and the running sum."""

    __slots__ = ("counts", "sum_ms")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self.sum_ms = 0.0

    def observe(self, ms: float) -> None:
        self.counts[slot_of(LATENCY_BUCKETS_MS, ms)] += 1
        self.sum_ms += ms


class ResponseStats:
    """Requests and responses of one (direction, service, endpoint).

    ``responses`` is keyed by (status code, error, grpc-status); ``error`` is empty
    when an endpoint answered and names the cause when the proxy answered itself;
    grpc-status is -1 for anything but a gRPC response. Nearly every response is an
    endpoint's answer to a request that is not gRPC, so those are counted by status
    alone (an int key: no tuple made, hashed and compared per response), the rest by
    the whole key; ``responses`` puts the two together when read.

    ``peer`` is set for traffic over mutual TLS: (``"server_id"``, the identity the
    endpoint presented) outbound, (``"client_id"``, the client's) inbound; such stats
    carry ``tls="true"`` and that label too (Linkerd's labels).
    """

    __slots__ = ("_answered", "_others", "labels", "latency", "peer", "requests")

    def __init__(self, labels: tuple[str, str, str, str],
                 peer: tuple[str, str] | None = None) -> None:
        self.labels = labels  # direction, dst_service, dst_namespace, endpoint
        self.peer = peer
        self.requests = 0
        self._answered: dict[int, int] = {}  # by status, for the key (status, "", -1)
        self._others: dict[tuple[int, str, int], int] = {}
        self.latency = LatencyHistogram()

    @property
    def responses(self) -> dict[tuple[int, str, int], int]:
        """Responses by (status code, error, grpc-status), made when read."""
        counts = {(status, "", -1): count for status, count in self._answered.items()}
        counts.update(self._others)
        return counts

    def count(self, status: int, error: str, grpc_status: int = -1) -> None:
        """One more response with this status, error and grpc-status."""
        if not error and grpc_status == -1:
            answered = self._answered
            answered[status] = answered.get(status, 0) + 1
        else:
            key = (status, error, grpc_status)
            others = self._others
            others[key] = others.get(key, 0) + 1

    def record(self, status: int, error: str, latency_ms: float, grpc_status: int = -1) -> None:
        self.count(status, error, grpc_status)
        self.latency.observe(latency_ms)


# Buckets of tcp_connection_duration_ms: a connection lives from milliseconds (one
# request) to days (a database session), so decades from 1 ms to about a day.
DURATION_BUCKETS_MS: tuple[int, ...] = (
    1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000,
)  # fmt: skip


class DurationHistogram:
    """Connection lifetimes in milliseconds, per `DURATION_BUCKETS_MS` slot (last: +Inf)."""

    __slots__ = ("counts", "sum_ms")

    def __init__(self) -> None:
        self.counts = [0] * (len(DURATION_BUCKETS_MS) + 1)
        self.sum_ms = 0.0

    def observe(self, ms: float) -> None:
        self.counts[slot_of(DURATION_BUCKETS_MS, ms)] += 1
        self.sum_ms += ms


class TcpStats:
    """Connections and bytes of one (direction, peer) — and, for opaque TCP and tunnels,
    of one destination service (``dst_service``/``dst_namespace`` set).

    ``closed`` counts every close; ``failures`` those that ended with an error, by its
    errno name (Linkerd's ``tcp_close_total{classification="failure", errno=…}``).
    ``durations`` holds the lifetimes of the connections whose owner measures them (opaque
    TCP and tunnels; HTTP connections count only opens, closes and bytes).
    """

    __slots__ = ("abuse_closes", "closed", "durations", "failures", "labels",
                 "local_exhaustion", "opened", "read_bytes", "send_timeouts", "write_bytes")

    def __init__(self, labels: tuple[str, str, str, str]) -> None:
        self.labels = labels  # direction, peer ("src": clients, "dst": upstreams), service, ns
        self.opened = 0
        self.closed = 0
        self.read_bytes = 0
        self.write_bytes = 0
        self.send_timeouts = 0  # clients cut off for not reading what they were sent
        self.local_exhaustion = 0  # connects that failed for want of fds or memory
        # HTTP/2 clients closed for abusing the protocol (rapid reset, control floods).
        self.abuse_closes = 0
        self.failures: dict[str, int] = {}
        self.durations = DurationHistogram()

    def record_close(self, duration_ms: float, errno_name: str) -> None:
        """A connection ended after ``duration_ms``; ``errno_name`` is "" when it ended
        cleanly."""
        self.closed += 1
        self.durations.observe(duration_ms)
        if errno_name:
            self.failures[errno_name] = self.failures.get(errno_name, 0) + 1


class TlsStats:
    """Mesh TLS handshakes one listener saw: terminated, failed, or not ours (passed on
    as the application's own TLS)."""

    __slots__ = ("failed", "labels", "passed_on", "terminated")

    def __init__(self, labels: tuple[str, str]) -> None:
        self.labels = labels  # direction, peer
        self.terminated = 0
        self.failed = 0
        self.passed_on = 0


class PolicyCounters:
    """Inbound policy decisions on one server's traffic (Linkerd's authz metrics)."""

    __slots__ = ("allowed", "audited", "denied", "labels", "rate_limited", "route_not_found",
                 "tcp_allowed", "tcp_denied")

    def __init__(self, labels: tuple[str]) -> None:
        self.labels = labels  # srv_name
        self.tcp_allowed = 0  # opaque TCP connections let in
        self.tcp_denied = 0  # ... reset
        self.allowed: dict[str, int] = {}  # by authorization name
        self.denied: dict[str, int] = {}  # by reason: unauthenticated, unauthorized
        self.audited = 0  # denied, but let through (audit mode)
        self.route_not_found = 0
        self.rate_limited = [0, 0, 0, 0]  # by limit: -, total, identity, override


class ServiceCounters:
    """Failover events of one (direction, service): retries, hedges, budget, shedding."""

    __slots__ = ("fail_fast_waits", "hedges", "labels", "load_shed", "retries",
                 "retry_budget_exhausted")

    def __init__(self, labels: tuple[str, str, str]) -> None:
        self.labels = labels  # direction, dst_service, dst_namespace
        self.retries = 0
        self.hedges = 0  # second tries sent beside a slow one (retries.hedge)
        self.retry_budget_exhausted = 0
        self.load_shed = 0
        self.fail_fast_waits = 0


class Metrics:
    """Every stats handle of one proxy process; a fresh one per test."""

    def __init__(self) -> None:
        self._responses: dict[tuple[str, str, str, str], ResponseStats] = {}
        self._tcp: dict[tuple[str, str, str, str], TcpStats] = {}
        self._services: dict[tuple[str, str, str], ServiceCounters] = {}
        self._routes: dict[tuple[str, str, str, str], ResponseStats] = {}
        self._by_client: dict[tuple[str, str, str, str, str], ResponseStats] = {}
        self._tls: dict[tuple[str, str], TlsStats] = {}
        self._policy: dict[str, PolicyCounters] = {}
        # Set by a proxy with an identity: its name, expiry and renewals, when scraped.
        self.identity: IdentityView | None = None
        # Set by the proxy: reads per-endpoint state (breaker, ejection, health,
        # in flight, latency estimate) when scraped.
        self.endpoint_states: Callable[[], list[EndpointState]] = list

    def responses(
        self, direction: str, service: str, namespace: str, endpoint: str = ""
    ) -> ResponseStats:
        """The handle for these labels, made on first use and then shared."""
        key = (direction, service, namespace, endpoint)
        stats = self._responses.get(key)
        if stats is None:
            stats = self._responses[key] = ResponseStats(key)
        return stats

    def client_responses(self, stats: ResponseStats, client_id: str) -> ResponseStats:
        """The handle for what ``stats`` counts, from the client ``client_id`` over mTLS."""
        key = (*stats.labels, client_id)
        found = self._by_client.get(key)
        if found is None:
            found = self._by_client[key] = ResponseStats(stats.labels, ("client_id", client_id))
        return found

    def route_responses(
        self, direction: str, service: str, namespace: str, route: str
    ) -> ResponseStats:
        """The handle of one HTTPRoute rule (labels: direction, service, namespace, route)."""
        key = (direction, service, namespace, route)
        stats = self._routes.get(key)
        if stats is None:
            stats = self._routes[key] = ResponseStats(key)
        return stats

    def all_route_responses(self) -> list[ResponseStats]:
        return list(self._routes.values())

    def service_counters(self, direction: str, service: str, namespace: str) -> ServiceCounters:
        key = (direction, service, namespace)
        counters = self._services.get(key)
        if counters is None:
            counters = self._services[key] = ServiceCounters(key)
        return counters

    def all_service_counters(self) -> list[ServiceCounters]:
        return list(self._services.values())

    def tcp(self, direction: str, peer: str, service: str = "", namespace: str = "") -> TcpStats:
        """Connections of a listener or pool (no service), or those proxied as opaque TCP
        or tunnelled to a service."""
        key = (direction, peer, service, namespace)
        stats = self._tcp.get(key)
        if stats is None:
            stats = self._tcp[key] = TcpStats(key)
        return stats

    def all_responses(self) -> list[ResponseStats]:
        return [*self._responses.values(), *self._by_client.values()]

    def policy_counters(self, server: str) -> PolicyCounters:
        counters = self._policy.get(server)
        if counters is None:
            counters = self._policy[server] = PolicyCounters((server,))
        return counters

    def all_policy_counters(self) -> list[PolicyCounters]:
        return list(self._policy.values())

    def tls(self, direction: str, peer: str) -> TlsStats:
        key = (direction, peer)
        stats = self._tls.get(key)
        if stats is None:
            stats = self._tls[key] = TlsStats(key)
        return stats

    def all_tls(self) -> list[TlsStats]:
        return list(self._tls.values())

    def all_tcp(self) -> list[TcpStats]:
        return list(self._tcp.values())



@dataclass(frozen=True, slots=True)
class IdentityView:
    """How the exposition reads this proxy's identity (functions: it changes on renewal)."""

    name: Callable[[], str]
    expires_at: Callable[[], float]  # seconds since the epoch
    refreshes: Callable[[], int]


@dataclass(frozen=True, slots=True)
class EndpointState:
    """One endpoint's state at scrape time."""

    labels: tuple[str, str, str, str]  # direction, dst_service, dst_namespace, endpoint
    state: str  # active, probing, open-circuit, ejected, unhealthy
    in_flight: int
    breaker_opens: int
    ejections: int
    latency_estimate_ms: float | None
