"""Golden signals over a window, grouped by any labels, across several proxies.

`tulle.telemetry.scrape` keeps one proxy's responses keyed by a fixed
(direction, service, endpoint) target, which is what the demo needs. The CLI
and the dashboard need more: rows per service, per endpoint, per route, per
edge (who calls whom), summed over every admin address given. So this module
keeps every sample of a scrape with all its labels (`Scrape`), and
`group_window` turns two rounds of scrapes into `Signals` per group, the group
being whatever a key function makes of (source, labels).

A label or metric a proxy does not export yet (``route``, say) is just absent:
the key function sees no such label and decides the default, and no row is
invented for a metric that is not there. Rates are computed per proxy over its
own scrape interval and then added, as ``sum(rate(...))`` does in PromQL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from tulle.telemetry.scrape import Signals, histogram_quantile

__all__ = ["IDENTITY_INFO", "GroupRow", "KeyFn", "Scrape", "group_window", "parse_scrape"]

Labels = frozenset[tuple[str, str]]
# (source, labels) -> the group a series belongs to, or None to leave it out.
KeyFn = Callable[[str, Mapping[str, str]], Hashable | None]

_RESPONSES = "response_total"
_BUCKETS = "response_latency_ms_bucket"
_TCP_OPEN = "tcp_open_connections"
IDENTITY_INFO = "tulle_identity_info"  # the proxy's own identity (a label), for edges
_KEPT = (_RESPONSES, _BUCKETS, _TCP_OPEN, IDENTITY_INFO)


@dataclass(frozen=True)
class Scrape:
    """Every sample one proxy exposed (of the families used here), with its labels."""

    source: str  # the admin address, or the name the user gave it
    taken_at: float  # monotonic seconds
    samples: Mapping[tuple[str, Labels], float] = field(default_factory=dict)

    def series(self, name: str) -> Iterable[tuple[dict[str, str], float]]:
        for (sample_name, labels), value in self.samples.items():
            if sample_name == name:
                yield dict(labels), value


def parse_scrape(source: str, text: str, taken_at: float | None = None) -> Scrape:
    """Parse Prometheus (or OpenMetrics) text, keeping the families the signals use."""
    samples: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in _KEPT:
                key = (sample.name, frozenset(sample.labels.items()))
                samples[key] = samples.get(key, 0.0) + sample.value
    return Scrape(source, time.monotonic() if taken_at is None else taken_at, samples)


@dataclass(frozen=True)
class GroupRow:
    """One group's signals, and its open TCP connections when the labels allow it."""

    key: Hashable
    signals: Signals
    tcp_open: float | None = None


def _increase(current: float, previous: float) -> float:
    # A counter that went down was reset (the proxy restarted): count since the reset.
    return current - previous if current >= previous else current


def group_window(
    previous: Sequence[Scrape],
    current: Sequence[Scrape],
    key: KeyFn,
    tcp_key: KeyFn | None = None,
) -> dict[Hashable, GroupRow]:
    """Signals per group for what happened between two rounds of scrapes.

    ``previous`` and ``current`` are matched by source; a source missing from
    ``previous`` counts from zero. ``tcp_key`` groups ``tcp_open_connections``
    (a gauge: its current value); groups it does not reach have ``tcp_open`` None, and a
    group only it reaches (an opaque TCP service) gets a row with no responses.
    """
    before = {scrape.source: scrape for scrape in previous}
    counts: dict[Hashable, list[float]] = {}  # successes, failures, rps
    buckets: dict[Hashable, dict[float, float]] = {}
    tcp: dict[Hashable, float] = {}
    for scrape in current:
        old = before.get(scrape.source)
        old_samples = old.samples if old else {}
        seconds = scrape.taken_at - old.taken_at if old else 0.0
        for (name, labels), value in scrape.samples.items():
            label_map = dict(labels)
            if name == IDENTITY_INFO:
                continue
            if name == _TCP_OPEN:
                group = tcp_key(scrape.source, label_map) if tcp_key else None
                if group is not None:
                    tcp[group] = tcp.get(group, 0.0) + value
                continue
            group = key(scrape.source, label_map)
            if group is None:
                continue
            delta = _increase(value, old_samples.get((name, labels), 0.0))
            if name == _RESPONSES:
                row = counts.setdefault(group, [0.0, 0.0, 0.0])
                row[0 if label_map.get("classification") == "success" else 1] += delta
                row[2] += delta / seconds if seconds > 0 else 0.0
            else:
                bound = float(label_map.get("le", "+Inf"))
                merged = buckets.setdefault(group, {})
                merged[bound] = merged.get(bound, 0.0) + delta
    rows: dict[Hashable, GroupRow] = {}
    for group in counts.keys() | buckets.keys() | tcp.keys():  # a TCP service: no responses
        successes, failures, rps = counts.get(group, (0.0, 0.0, 0.0))
        ordered = tuple(sorted(buckets.get(group, {}).items()))
        answered = successes + failures
        signals = Signals(
            successes=successes,
            failures=failures,
            rps=rps,
            success_rate=successes / answered if answered > 0 else None,
            p50=histogram_quantile(0.50, ordered),
            p95=histogram_quantile(0.95, ordered),
            p99=histogram_quantile(0.99, ordered),
        )
        rows[group] = GroupRow(group, signals, tcp.get(group))
    return rows
