"""Prometheus exposition: a custom collector that reads `Metrics` when scraped.

The request path never touches prometheus_client; this collector turns the
plain counters into metric families at scrape time (client_python's "custom
collector" pattern), so the cost of rendering is paid by the scraper.

This is the one module of the proxy that imports prometheus_client, and the admin
listener imports it at the first scrape: prometheus_client's package imports its
whole exposition side (http.server, urllib.request, email, wsgiref: ~1.8 MB of a
proxy's memory), which a proxy nobody scrapes never needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample

from tulle.policy.rate_limit import LIMIT_NAMES
from tulle.telemetry.metrics import (
    DURATION_BUCKETS_MS,
    LATENCY_BUCKETS_MS,
    Metrics,
    ResponseStats,
    TcpStats,
    classify,
)

if TYPE_CHECKING:
    from tulle.telemetry.admin import AdminListener

_ENDPOINT_LABELS = ["direction", "dst_service", "dst_namespace", "endpoint"]
_TCP_LABELS = ["direction", "peer"]
_ROUTE_ONLY_LABELS = ["direction", "dst_service", "dst_namespace", "route"]


class MeshCollector(Collector):
    """Renders a `Metrics` object as Linkerd-named metric families."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from _response_families("", _ENDPOINT_LABELS, self._metrics.all_responses())
        # Linkerd's route metrics: the same three families per HTTPRoute rule.
        yield from _response_families(
            "route_", _ROUTE_ONLY_LABELS, self._metrics.all_route_responses()
        )

        yield from _tcp_families(self._metrics.all_tcp())
        yield self._abuse_family()
        yield from self._exhaustion_families()
        yield from self._failover_families()
        yield from self._identity_families()
        yield from self._policy_families()

    def _policy_families(self) -> Iterator[Metric]:
        allow = CounterMetricFamily(
            "inbound_http_authz_allow", "Inbound requests an authorization allowed.",
            labels=["srv_name", "authz_name"])
        deny = CounterMetricFamily(
            "inbound_http_authz_deny", "Inbound requests policy denied (403), by reason.",
            labels=["srv_name", "reason"])
        not_found = CounterMetricFamily(
            "inbound_http_route_not_found", "Inbound requests no route of the server matched.",
            labels=["srv_name"])
        audited = CounterMetricFamily(
            "tulle_inbound_authz_audited", "Inbound requests policy would deny, let through "
            "because the server is in audit mode.", labels=["srv_name"])
        tcp_allow = CounterMetricFamily(
            "inbound_tcp_authz_allow", "Inbound opaque TCP connections policy let in.",
            labels=["srv_name"])
        tcp_deny = CounterMetricFamily(
            "inbound_tcp_authz_deny", "Inbound opaque TCP connections policy refused (reset).",
            labels=["srv_name"])
        limited = CounterMetricFamily(
            "tulle_inbound_rate_limited", "Inbound requests over a local rate limit (429), by "
            "the limit that refused them.", labels=["srv_name", "limit"])
        for counters in self._metrics.all_policy_counters():
            (server,) = counters.labels
            for name, count in list(counters.allowed.items()):
                allow.add_metric([server, name], count)
            for reason, count in list(counters.denied.items()):
                deny.add_metric([server, reason], count)
            not_found.add_metric([server], counters.route_not_found)
            audited.add_metric([server], counters.audited)
            tcp_allow.add_metric([server], counters.tcp_allowed)
            tcp_deny.add_metric([server], counters.tcp_denied)
            for index, limit in enumerate(LIMIT_NAMES):
                if limit:
                    limited.add_metric([server, limit], counters.rate_limited[index])
        yield from (allow, deny, not_found, audited, tcp_allow, tcp_deny, limited)

    def _identity_families(self) -> Iterator[Metric]:
        handshakes = CounterMetricFamily(
            "tulle_tls_handshakes_total",
            "TLS connections a listener saw: terminated (mesh TLS for this proxy), failed "
            "(a bad or unfinished handshake), passed_on (TLS for the application).",
            labels=[*_TCP_LABELS, "result"])
        for tls in self._metrics.all_tls():
            labels = list(tls.labels)
            handshakes.add_metric([*labels, "terminated"], tls.terminated)
            handshakes.add_metric([*labels, "failed"], tls.failed)
            handshakes.add_metric([*labels, "passed_on"], tls.passed_on)
        yield handshakes
        identity = self._metrics.identity
        if identity is not None:
            # Linkerd's identity metrics.
            yield GaugeMetricFamily(
                "identity_cert_expiration_timestamp_seconds",
                "When this proxy's certificate expires, in seconds since the epoch.",
                value=identity.expires_at())
            yield CounterMetricFamily(
                "identity_cert_refresh", "Times this proxy's certificate was renewed.",
                value=identity.refreshes())
            info = GaugeMetricFamily("tulle_identity_info", "This proxy's identity.",
                                     labels=["identity"])
            info.add_metric([identity.name()], 1)
            yield info

    def _abuse_family(self) -> Metric:
        abuse = CounterMetricFamily(
            "tulle_h2_abuse_closes_total",
            "HTTP/2 clients closed with GOAWAY(ENHANCE_YOUR_CALM): rapid resets, or floods "
            "of SETTINGS/PING.", labels=_TCP_LABELS)
        for tcp in self._metrics.all_tcp():
            direction, peer, service, _ = tcp.labels
            if peer == "src" and not service:  # HTTP/2 clients are counted per listener
                abuse.add_metric([direction, peer], tcp.abuse_closes)
        return abuse

    def _exhaustion_families(self) -> Iterator[Metric]:
        send_timeouts = CounterMetricFamily(
            "tulle_send_timeouts_total",
            "Clients cut off for not reading what they were sent within the send timeout.",
            labels=_TCP_LABELS)
        exhaustion = CounterMetricFamily(
            "tulle_connect_local_exhaustion_total",
            "Connections the proxy lacked file descriptors or memory for: peer=dst, "
            "connects that failed (EMFILE, ENFILE, ENOBUFS, ENOMEM; the endpoint is not "
            "blamed); peer=src, clients refused past what the open-files limit leaves "
            "room for.",
            labels=_TCP_LABELS)
        for tcp in self._metrics.all_tcp():
            direction, peer, service, _ = tcp.labels
            if service:
                continue  # per-listener and per-pool counters only
            if peer == "src":
                send_timeouts.add_metric([direction, peer], tcp.send_timeouts)
            exhaustion.add_metric([direction, peer], tcp.local_exhaustion)
        yield send_timeouts
        yield exhaustion

    def _failover_families(self) -> Iterator[Metric]:
        service_labels = ["direction", "dst_service", "dst_namespace"]
        retries = CounterMetricFamily(
            "tulle_retries_total", "Tries sent again after a failure.", labels=service_labels
        )
        hedges = CounterMetricFamily(
            "tulle_hedges_total", "Tries sent beside one that outlived its per-try timeout.",
            labels=service_labels,
        )
        exhausted = CounterMetricFamily(
            "tulle_retry_budget_exhausted_total",
            "Retries and hedges refused because the retry budget was spent.",
            labels=service_labels,
        )
        shed = CounterMetricFamily(
            "tulle_load_shed_total", "Requests answered 503 at once by a limit.",
            labels=service_labels,
        )
        waits = CounterMetricFamily(
            "tulle_fail_fast_waits_total",
            "Requests that waited because no endpoint was available.", labels=service_labels,
        )
        for counters in self._metrics.all_service_counters():
            labels = list(counters.labels)
            retries.add_metric(labels, counters.retries)
            hedges.add_metric(labels, counters.hedges)
            exhausted.add_metric(labels, counters.retry_budget_exhausted)
            shed.add_metric(labels, counters.load_shed)
            waits.add_metric(labels, counters.fail_fast_waits)
        yield from (retries, hedges, exhausted, shed, waits)

        state = GaugeMetricFamily(
            "tulle_endpoint_state", "1 for the endpoint's current state.",
            labels=[*_ENDPOINT_LABELS, "state"],
        )
        in_flight = GaugeMetricFamily(
            "tulle_endpoint_in_flight", "Requests in flight to the endpoint.",
            labels=_ENDPOINT_LABELS,
        )
        opens = CounterMetricFamily(
            "tulle_breaker_opens_total", "Times the endpoint's circuit breaker opened.",
            labels=_ENDPOINT_LABELS,
        )
        ejections = CounterMetricFamily(
            "tulle_outlier_ejections_total", "Times outlier detection ejected the endpoint.",
            labels=_ENDPOINT_LABELS,
        )
        # Tulle's own metrics are in base units (Prometheus naming conventions,
        # checked by `promtool check metrics`); only Linkerd's names keep their _ms.
        estimate = GaugeMetricFamily(
            "tulle_balancer_latency_estimate_seconds",
            "The balancer's latency estimate for the endpoint.", labels=_ENDPOINT_LABELS,
        )
        for endpoint in self._metrics.endpoint_states():
            labels = list(endpoint.labels)
            state.add_metric([*labels, endpoint.state], 1)
            in_flight.add_metric(labels, endpoint.in_flight)
            opens.add_metric(labels, endpoint.breaker_opens)
            ejections.add_metric(labels, endpoint.ejections)
            if endpoint.latency_estimate_ms is not None:
                estimate.add_metric(labels, endpoint.latency_estimate_ms / 1000.0)
        yield from (state, in_flight, opens, ejections, estimate)


def _response_families(
    prefix: str, label_names: list[str], all_stats: list[ResponseStats]
) -> Iterator[Metric]:
    requests = CounterMetricFamily(
        f"{prefix}request_total", "Requests received, by destination.", labels=label_names
    )
    responses = CounterMetricFamily(
        f"{prefix}response_total",
        "Responses sent, by status code and classification.",
        labels=[*label_names, "status_code", "classification", "error"],
    )
    latency = HistogramMetricFamily(
        f"{prefix}response_latency_ms",
        "Time from a request's head to its response's head, in milliseconds.",
        labels=label_names,
    )
    bounds = (*(str(float(b)) for b in LATENCY_BUCKETS_MS), "+Inf")
    for stats in all_stats:
        labels = list(stats.labels)
        named = dict(zip(label_names, labels, strict=True))
        if stats.peer is not None:  # over mTLS: tls="true" and the peer's identity
            named |= {"tls": "true", stats.peer[0]: stats.peer[1]}
        requests.add_sample(f"{prefix}request_total", named, stats.requests)
        for (status, error, grpc), count in list(stats.responses.items()):
            sample = named | {"status_code": str(status),
                              "classification": classify(status, error, grpc), "error": error}
            if grpc >= 0:  # gRPC responses carry grpc_status_code too (Linkerd's label)
                sample["grpc_status_code"] = str(grpc)
            responses.add_sample(f"{prefix}response_total", sample, count)
        cumulative = 0
        for bound, count in zip(bounds, list(stats.latency.counts), strict=True):
            cumulative += count
            latency.add_sample(f"{prefix}response_latency_ms_bucket", named | {"le": bound},
                               cumulative)
        latency.add_sample(f"{prefix}response_latency_ms_count", named, cumulative)
        latency.add_sample(f"{prefix}response_latency_ms_sum", named, stats.latency.sum_ms)
    yield requests
    yield responses
    yield latency


def _tcp_families(all_stats: list[TcpStats]) -> Iterator[Metric]:
    """Linkerd's transport metrics. Every series has ``direction`` and ``peer``; those of
    opaque TCP and tunnels also ``dst_service`` and ``dst_namespace`` (a listener's or a
    pool's connections carry no service, and no empty labels are made up for them)."""
    opened = CounterMetricFamily("tcp_open_total", "Connections opened.")
    closed = CounterMetricFamily("tcp_close_total", "Connections closed, by classification "
                                 "(failure: ended with an error, named by errno).")
    open_now = GaugeMetricFamily("tcp_open_connections", "Connections open now.")
    read = CounterMetricFamily("tcp_read_bytes_total", "Bytes read.")
    written = CounterMetricFamily("tcp_write_bytes_total", "Bytes written.")
    duration = HistogramMetricFamily(
        "tcp_connection_duration_ms", "How long connections lived, in milliseconds.")
    bounds = (*(str(float(b)) for b in DURATION_BUCKETS_MS), "+Inf")
    for tcp in all_stats:
        direction, peer, service, namespace = tcp.labels
        labels = {"direction": direction, "peer": peer}
        if service:
            labels.update(dst_service=service, dst_namespace=namespace)
        failures = dict(tcp.failures)
        _sample(opened, "tcp_open_total", labels, tcp.opened)
        _sample(closed, "tcp_close_total",
                {**labels, "classification": "success", "errno": ""},
                tcp.closed - sum(failures.values()))
        for errno_name, count in sorted(failures.items()):
            _sample(closed, "tcp_close_total",
                    {**labels, "classification": "failure", "errno": errno_name}, count)
        _sample(open_now, "tcp_open_connections", labels, tcp.opened - tcp.closed)
        _sample(read, "tcp_read_bytes_total", labels, tcp.read_bytes)
        _sample(written, "tcp_write_bytes_total", labels, tcp.write_bytes)
        counts = list(tcp.durations.counts)
        if any(counts):
            cumulative = 0
            for bound, count in zip(bounds, counts, strict=True):
                cumulative += count
                _sample(duration, "tcp_connection_duration_ms_bucket",
                        {**labels, "le": bound}, cumulative)
            _sample(duration, "tcp_connection_duration_ms_count", labels, cumulative)
            _sample(duration, "tcp_connection_duration_ms_sum", labels, tcp.durations.sum_ms)
    yield from (opened, closed, open_now, read, written, duration)


def _sample(family: Metric, name: str, labels: dict[str, str], value: float) -> None:
    """One sample with its own label set (prometheus_client's ``add_metric`` would give
    every sample of a family the same label names)."""
    family.samples.append(Sample(name, labels, value))


def registry_for(metrics: Metrics) -> CollectorRegistry:
    """A fresh prometheus_client registry holding only this proxy's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MeshCollector(metrics))
    return registry


class AdminCollector(Collector):
    """The admin listener's own counters (see `AdminListener`)."""

    def __init__(self, listener: AdminListener) -> None:
        self._listener = listener

    def collect(self) -> Iterator[Metric]:
        listener = self._listener
        yield GaugeMetricFamily("tulle_admin_open_connections",
                                "Admin connections open now.", value=len(listener.connections))
        yield CounterMetricFamily(
            "tulle_admin_connections_refused",
            "Admin connections answered 503 and closed: over the connection cap.",
            value=listener.refused,
        )
        timeouts = CounterMetricFamily(
            "tulle_admin_timeouts", "Admin connections closed by a timeout.", labels=["timeout"]
        )
        timeouts.add_metric(["head"], listener.head_timeouts)
        timeouts.add_metric(["idle"], listener.idle_timeouts)
        yield timeouts


def render(registry: CollectorRegistry, accept: str) -> tuple[bytes, bytes]:
    """The content type and body of a scrape that sent this Accept header: OpenMetrics
    when the scraper asks for it, else the Prometheus text format."""
    encoder, content_type = choose_encoder(accept)
    return content_type.encode(), encoder(registry)
