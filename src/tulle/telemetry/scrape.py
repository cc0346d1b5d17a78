"""Read a proxy's ``/metrics`` from the outside and turn two reads into golden signals.

This is the client side of Tulle's monitoring: the demo table and ``tulle stat``
fetch the Prometheus text a proxy's admin server exposes, keep it as a
:class:`Snapshot` (counters and histogram buckets keyed by their labels), and
compute, over the *difference* between two snapshots, what happened in that
window: requests per second, success rate and latency percentiles, per
(service, endpoint) and per service. Working on deltas, as Prometheus' ``rate``
does, means a proxy that has run for an hour still shows what it is doing *now*.

The metric names are Linkerd's, so the same arithmetic works against a Linkerd
proxy: ``response_total`` (by ``classification``) and ``response_latency_ms``
(a histogram in milliseconds).
"""

from __future__ import annotations

import asyncio
import http.client
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "Signals",
    "Snapshot",
    "Target",
    "Window",
    "compute_window",
    "fetch_metrics",
    "fetch_metrics_async",
    "histogram_quantile",
    "parse_snapshot",
    "split_address",
]

RESPONSE_TOTAL = "response_total"
LATENCY_BUCKET = "response_latency_ms_bucket"

# A scrape of one proxy is a few kilobytes; anything this large is not a proxy.
MAX_METRICS_BYTES = 16 * 1024 * 1024


class Target(NamedTuple):
    """Where requests went: the labels every per-destination series carries.

    ``endpoint`` is ``""`` for responses the proxy made itself (404, 503, ...):
    no endpoint was involved.
    """

    direction: str
    namespace: str
    service: str
    endpoint: str


# Cumulative histogram: (upper bound, count of observations <= bound), sorted by bound.
Buckets = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Snapshot:
    """One read of a proxy's counters, with the monotonic time it was taken."""

    taken_at: float
    # (target, classification) -> responses so far; classification is
    # "success" or "failure".
    responses: Mapping[tuple[Target, str], float] = field(default_factory=dict)
    latency: Mapping[Target, Buckets] = field(default_factory=dict)


@dataclass(frozen=True)
class Signals:
    """The golden signals of one target (or one service) over a window."""

    successes: float
    failures: float
    rps: float
    # None when nothing was answered in the window: there is no rate to show.
    success_rate: float | None
    # Milliseconds; None when no latency was observed in the window.
    p50: float | None
    p95: float | None
    p99: float | None

    @property
    def responses(self) -> float:
        return self.successes + self.failures


@dataclass(frozen=True)
class Window:
    """Signals between two snapshots: per endpoint and per service."""

    seconds: float
    endpoints: Mapping[Target, Signals]
    # Keyed by a Target whose endpoint is "" — the whole service, including the
    # responses the proxy made itself.
    services: Mapping[Target, Signals]


def _target(labels: Mapping[str, str]) -> Target:
    return Target(
        direction=labels.get("direction", ""),
        namespace=labels.get("dst_namespace", ""),
        service=labels.get("dst_service", ""),
        endpoint=labels.get("endpoint", ""),
    )


def parse_snapshot(text: str, taken_at: float | None = None) -> Snapshot:
    """Parse Prometheus exposition text into a :class:`Snapshot`.

    Samples are matched by sample name, so the text parses the same whether or
    not it carries ``# TYPE`` lines. Series the demo and ``stat`` do not use are
    ignored.
    """
    responses: dict[tuple[Target, str], float] = {}
    buckets: dict[Target, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == RESPONSE_TOTAL:
                key = (_target(sample.labels), sample.labels.get("classification", ""))
                # Several status codes share a classification: add them up.
                responses[key] = responses.get(key, 0.0) + sample.value
            elif sample.name == LATENCY_BUCKET:
                bound = float(sample.labels["le"])
                series = buckets.setdefault(_target(sample.labels), {})
                series[bound] = series.get(bound, 0.0) + sample.value
    latency = {target: tuple(sorted(series.items())) for target, series in buckets.items()}
    return Snapshot(
        taken_at=time.monotonic() if taken_at is None else taken_at,
        responses=responses,
        latency=latency,
    )


def _increase(current: float, previous: float) -> float:
    # A counter that went down was reset (the proxy restarted): like Prometheus'
    # rate(), count everything since the reset.
    return current - previous if current >= previous else current


def _bucket_increase(current: Buckets, previous: Buckets | None) -> dict[float, float]:
    before = dict(previous or ())
    return {bound: _increase(count, before.get(bound, 0.0)) for bound, count in current}


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """The q-quantile of a cumulative histogram, as Prometheus' ``histogram_quantile``.

    Find the bucket the q-th observation falls in and interpolate linearly
    between its lower and upper bound, assuming observations are spread evenly
    inside a bucket. The lowest bucket starts at 0 (latencies are not negative).
    If the rank falls in the ``+Inf`` bucket, the answer is the highest finite
    bound — nothing better can be said. Returns None for an empty histogram.
    """
    ordered = sorted(buckets)
    if not ordered or not math.isinf(ordered[-1][0]):
        return None
    total = ordered[-1][1]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for index, (upper, cumulative) in enumerate(ordered):
        if cumulative >= rank:
            if math.isinf(upper):
                return ordered[index - 1][0] if index > 0 else None
            if index == 0 and upper <= 0:
                return upper
            in_bucket = cumulative - below
            if in_bucket <= 0:
                return upper
            return lower + (upper - lower) * (rank - below) / in_bucket
        lower, below = upper, cumulative
    return None


def _signals(
    successes: float, failures: float, buckets: Mapping[float, float], seconds: float
) -> Signals:
    answered = successes + failures
    ordered = tuple(sorted(buckets.items()))
    return Signals(
        successes=successes,
        failures=failures,
        # RPS counts responses, as Linkerd's `stat` does: a request still in
        # flight at the end of the window is counted in the next one.
        rps=answered / seconds if seconds > 0 else 0.0,
        success_rate=successes / answered if answered > 0 else None,
        p50=histogram_quantile(0.50, ordered),
        p95=histogram_quantile(0.95, ordered),
        p99=histogram_quantile(0.99, ordered),
    )


def compute_window(previous: Snapshot, current: Snapshot, direction: str = "outbound") -> Window:
    """Signals for what happened between ``previous`` and ``current``.

    Only targets seen in ``current`` with the given ``direction`` are reported.
    A service's row adds up all its endpoints and the proxy's own answers.
    """
    seconds = current.taken_at - previous.taken_at
    counts: dict[Target, list[float]] = {}
    for (target, classification), value in current.responses.items():
        if target.direction != direction:
            continue
        delta = _increase(value, previous.responses.get((target, classification), 0.0))
        pair = counts.setdefault(target, [0.0, 0.0])
        pair[0 if classification == "success" else 1] += delta
    histograms: dict[Target, dict[float, float]] = {}
    for target, buckets in current.latency.items():
        if target.direction == direction:
            histograms[target] = _bucket_increase(buckets, previous.latency.get(target))

    service_counts: dict[Target, list[float]] = {}
    service_histograms: dict[Target, dict[float, float]] = {}
    for target in counts.keys() | histograms.keys():
        service = target._replace(endpoint="")
        success, failure = counts.get(target, (0.0, 0.0))
        total = service_counts.setdefault(service, [0.0, 0.0])
        total[0] += success
        total[1] += failure
        merged = service_histograms.setdefault(service, {})
        for bound, count in histograms.get(target, {}).items():
            merged[bound] = merged.get(bound, 0.0) + count

    endpoints = {
        target: _signals(*counts.get(target, (0.0, 0.0)), histograms.get(target, {}), seconds)
        for target in counts.keys() | histograms.keys()
        if target.endpoint
        or sum(counts.get(target, (0.0, 0.0))) > 0  # the proxy's own answers, if any
    }
    services = {
        service: _signals(*pair, service_histograms.get(service, {}), seconds)
        for service, pair in service_counts.items()
    }
    return Window(seconds=seconds, endpoints=endpoints, services=services)


def split_address(address: str) -> tuple[str, int]:
    """``"127.0.0.1:4191"`` -> ``("127.0.0.1", 4191)``; ``"[::1]:4191"`` works too."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def fetch_metrics(admin: str, timeout: float = 2.0, path: str = "/metrics") -> str:
    """GET the metrics text from an admin address (blocking).

    Uses ``http.client`` directly rather than ``urllib`` so that an
    ``HTTP_PROXY`` set for trying the mesh by hand does not send the scrape
    through the mesh itself.
    """
    host, port = split_address(admin)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Accept": "text/plain"})
        response = connection.getresponse()
        body = response.read(MAX_METRICS_BYTES)
        if response.status != 200:
            raise OSError(f"GET http://{admin}{path} answered {response.status}")
        return body.decode("utf-8", errors="replace")
    finally:
        connection.close()


async def fetch_metrics_async(admin: str, timeout: float = 2.0, path: str = "/metrics") -> str:
    """GET the metrics text from an admin address without blocking the event loop."""
    return await asyncio.wait_for(_fetch(admin, path), timeout)


async def _fetch(admin: str, path: str) -> str:
    host, port = split_address(admin)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {admin}\r\nAccept: text/plain\r\n"
            "Connection: close\r\n\r\n".encode("ascii")
        )
        await writer.drain()
        raw = bytearray()
        while len(raw) < MAX_METRICS_BYTES:  # bounded by the size cap and by EOF
            chunk = await reader.read(65536)
            if not chunk:
                break
            raw += chunk
    finally:
        writer.close()
    return _body_of(bytes(raw), f"http://{admin}{path}")


def _body_of(raw: bytes, url: str) -> str:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, _, header_block = head.partition(b"\r\n")
    parts = status_line.split()
    if len(parts) < 2 or parts[1] != b"200":
        raise OSError(f"GET {url} answered {status_line.decode('latin-1')!r}")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(b":") for line in header_block.split(b"\r\n"))
    }
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = _dechunk(body)
    return body.decode("utf-8", errors="replace")


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    position = 0
    while position < len(body):  # bounded: every pass consumes at least the size line
        line_end = body.find(b"\r\n", position)
        if line_end < 0:
            break
        size = int(body[position:line_end].split(b";")[0], 16)
        if size == 0:
            break
        start = line_end + 2
        out += body[start : start + size]
        position = start + size + 2
    return bytes(out)
