"""Prometheus exposition: a custom collector that reads `Metrics` when scraped.

The request path never touches prometheus_client; this collector turns the
plain counters into metric families at scrape time (client_python's "custom
collector" pattern), so the cost of rendering is paid by the scraper.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample

from tulle.telemetry.metrics import (
    DURATION_BUCKETS_MS,
    LATENCY_BUCKETS_MS,
    Metrics,
    ResponseStats,
    TcpStats,
    classify,
)

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
        yield from self._failover_families()

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

    def _failover_families(self) -> Iterator[Metric]:
        service_labels = ["direction", "dst_service", "dst_namespace"]
        retries = CounterMetricFamily(
            "tulle_retries_total", "Tries sent again after a failure.", labels=service_labels
        )
        exhausted = CounterMetricFamily(
            "tulle_retry_budget_exhausted_total",
            "Retries refused because the retry budget was spent.", labels=service_labels,
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
            exhausted.add_metric(labels, counters.retry_budget_exhausted)
            shed.add_metric(labels, counters.load_shed)
            waits.add_metric(labels, counters.fail_fast_waits)
        yield from (retries, exhausted, shed, waits)

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
        requests.add_metric(labels, stats.requests)
        for (status, error, grpc), count in list(stats.responses.items()):
            values = [*labels, str(status), classify(status, error, grpc), error]
            if grpc < 0:
                responses.add_metric(values, count)
            else:  # gRPC responses carry grpc_status_code too (Linkerd's label)
                names = [*label_names, "status_code", "classification", "error",
                         "grpc_status_code"]
                responses.add_sample(f"{prefix}response_total",
                                     dict(zip(names, [*values, str(grpc)], strict=True)), count)
        cumulative = 0
        buckets = []
        for bound, count in zip(bounds, list(stats.latency.counts), strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        latency.add_metric(labels, buckets, stats.latency.sum_ms)
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
