"""Several workers' pages as one (`tulle.telemetry.merged`): what sums, what averages,
what is left out, and counters that never go down when a worker goes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tulle.telemetry import Metrics
from tulle.telemetry.collector import registry_for
from tulle.telemetry.merged import MergedMetrics, merge_endpoints


def worker_text(requests: int, latencies_ms: list[float], open_connections: int = 0,
                estimate_ms: float | None = None) -> str:
    """The /metrics of a worker that served ``requests`` (one endpoint)."""
    metrics = Metrics()
    stats = metrics.responses("outbound", "web", "default", "127.0.0.1:9001")
    tcp = metrics.tcp("outbound", "src")
    for index in range(requests):
        stats.requests += 1
        stats.record(200, "", latencies_ms[index % len(latencies_ms)])
    tcp.opened += open_connections
    text = generate_latest(registry_for(metrics)).decode()
    if estimate_ms is not None:
        text += (
            "# HELP tulle_balancer_latency_estimate_seconds estimate\n"
            "# TYPE tulle_balancer_latency_estimate_seconds gauge\n"
            'tulle_balancer_latency_estimate_seconds{endpoint="127.0.0.1:9001"} '
            f"{estimate_ms / 1000}\n"
            "# HELP tulle_admin_open_connections private\n"
            "# TYPE tulle_admin_open_connections gauge\n"
            "tulle_admin_open_connections 1.0\n"
        )
    return text


def samples(merged: MergedMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(merged)
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(merged: MergedMetrics, name: str, **labels: str) -> float:
    for (sample_name, sample_labels), sample_value in samples(merged).items():
        if sample_name == name and labels.items() <= dict(sample_labels).items():
            return sample_value
    raise KeyError(name)


def test_counters_and_histograms_are_summed_per_label_set() -> None:
    merged = MergedMetrics()
    merged.update(101, worker_text(3, [1.5]))
    merged.update(102, worker_text(5, [25.0]))
    assert value(merged, "request_total", endpoint="127.0.0.1:9001") == 8
    assert value(merged, "response_total", status_code="200") == 8
    assert value(merged, "response_latency_ms_bucket", le="2.0") == 3
    assert value(merged, "response_latency_ms_bucket", le="30.0") == 8
    assert value(merged, "response_latency_ms_count") == 8
    assert value(merged, "response_latency_ms_sum") == 3 * 1.5 + 5 * 25.0


def test_counting_gauges_sum_estimates_average_and_private_families_are_left_out() -> None:
    merged = MergedMetrics()
    merged.update(101, worker_text(0, [1.0], open_connections=2, estimate_ms=10.0))
    merged.update(102, worker_text(0, [1.0], open_connections=3, estimate_ms=30.0))
    assert value(merged, "tcp_open_connections", direction="outbound", peer="src") == 5
    assert value(merged, "tulle_balancer_latency_estimate_seconds") == 0.020
    assert not any(name.startswith("tulle_admin_") for name, _ in samples(merged))


def test_a_retired_workers_counts_stay_in_the_sum_and_its_gauges_go() -> None:
    merged = MergedMetrics()
    merged.update(101, worker_text(4, [1.0], open_connections=4))
    merged.update(102, worker_text(6, [1.0], open_connections=6))
    assert value(merged, "request_total", endpoint="127.0.0.1:9001") == 10
    merged.retire(101)
    merged.update(103, worker_text(1, [1.0], open_connections=1))  # its replacement
    assert value(merged, "request_total", endpoint="127.0.0.1:9001") == 11
    assert value(merged, "tcp_open_total", peer="src") == 11
    assert value(merged, "tcp_open_connections", peer="src") == 6 + 1


def test_a_worker_that_does_not_answer_counts_with_its_last_counters_only() -> None:
    merged = MergedMetrics()
    merged.update(101, worker_text(4, [1.0], open_connections=4))
    merged.update(102, worker_text(6, [1.0], open_connections=6))
    merged.update(101, None)
    assert value(merged, "request_total", endpoint="127.0.0.1:9001") == 10
    assert value(merged, "tcp_open_connections", peer="src") == 6
    merged.update(101, worker_text(5, [1.0], open_connections=4))
    assert value(merged, "tcp_open_connections", peer="src") == 10


def endpoint(address: str, state: str, in_flight: int, opened: int) -> dict[str, object]:
    return {"address": address, "weight": 1, "state": state, "inFlight": in_flight,
            "breaker": {"state": "closed", "opened": opened}, "ejected": False}


def page(*endpoints: dict[str, object], waiting: int = 0) -> dict[str, object]:
    return {"outbound": [{"name": "web", "namespace": "default", "waiting": waiting,
                          "endpoints": list(endpoints)}], "inbound": []}


def test_endpoints_sum_what_counts_and_show_disagreements_per_worker() -> None:
    merged = merge_endpoints([
        page(endpoint("a:1", "active", 2, 0), endpoint("b:1", "active", 0, 1), waiting=1),
        page(endpoint("a:1", "active", 3, 0), endpoint("b:1", "probing", 1, 2), waiting=2),
    ])  # fmt: skip
    [web] = merged["outbound"]  # type: ignore[misc]
    assert web["waiting"] == 3
    a, b = web["endpoints"]
    assert a == {"address": "a:1", "weight": 1, "state": "active", "inFlight": 5,
                 "breaker": {"state": "closed", "opened": 0}, "ejected": False}
    assert b["state"] == ["active", "probing"]
    assert b["inFlight"] == 1
    assert b["breaker"] == {"state": "closed", "opened": 3}
    assert merged["inbound"] == []


def test_an_endpoint_only_one_worker_knows_yet_is_shown_as_that_worker_sees_it() -> None:
    merged = merge_endpoints([page(endpoint("a:1", "active", 1, 0)),
                              page(endpoint("a:1", "active", 1, 0),
                                   endpoint("c:1", "active", 4, 0))])
    [web] = merged["outbound"]  # type: ignore[misc]
    assert [e["address"] for e in web["endpoints"]] == ["a:1", "c:1"]
    assert web["endpoints"][1]["inFlight"] == 4
