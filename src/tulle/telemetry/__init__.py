"""Telemetry: counters on the request path, Prometheus exposition, the admin listener.

``metrics`` holds the plain counters the proxy increments; ``collector`` renders
them when scraped (import it from there: it loads prometheus_client, which a proxy
loads only at its first scrape); ``admin`` serves them with the health and state
pages; ``scrape`` reads them back from a running proxy (for the CLI and the demo).
"""

from tulle.telemetry.metrics import LATENCY_BUCKETS_MS, Metrics, ResponseStats, TcpStats

__all__ = [
    "LATENCY_BUCKETS_MS",
    "Metrics",
    "ResponseStats",
    "TcpStats",
]
