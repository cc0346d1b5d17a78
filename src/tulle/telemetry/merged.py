"""Several worker processes' admin pages as one proxy's: ``/metrics`` and ``/endpoints``.

``tulle proxy --workers N`` runs N processes that each count what they serve; the
supervisor's admin port answers for all of them (`tulle.proxy.workers`). What it
serves is built here from the workers' own pages, read just before:

- **/metrics** (`MergedMetrics`, a prometheus_client collector). Every request is
  served, and counted, by exactly one worker, so counters and histograms (each bucket,
  ``_sum`` and ``_count``) are summed per label set and count every request once.
  Gauges that count things sum too: ``tcp_open_connections``,
  ``tulle_endpoint_in_flight``, and ``tulle_endpoint_state`` (which then says how many
  workers see the endpoint in that state: each worker has its own breaker and outlier
  detector). A gauge that estimates is averaged instead (`AVERAGED_GAUGES`: the
  balancer's latency estimate). A worker's ``tulle_admin_*`` families describe its
  private admin listener, which only the supervisor reads, and are left out; the
  supervisor's own take their place.

  A worker that exits takes its counts with it, and a sum that goes down reads as a
  counter reset to Prometheus' ``rate()``. So the counts last read from a worker are
  kept when it goes (`retire`) and added to every later sum: merged counters only grow.
  What the worker counted after its last read is lost, as for a single proxy killed
  between two scrapes. A worker that does not answer one read counts with its last
  counts (and no gauges) in that scrape.

- **/endpoints** (`merge_endpoints`). The same services and endpoints, one entry each.
  Numbers that count (`ADDITIVE_FIELDS`: in flight, idle connections, ejections,
  breaker openings, waiting requests, …) are summed; any other field that all workers
  agree on is shown as it is, and one they disagree on (a breaker open in one worker
  only) becomes the list of each worker's value, in worker order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

# Gauges whose merged value is the mean over the workers that report the series.
AVERAGED_GAUGES = frozenset({"tulle_balancer_latency_estimate_seconds"})
# Families about a worker's private admin listener (the supervisor publishes its own).
PRIVATE_PREFIX = "tulle_admin_"
# Family types whose samples only grow: summed, and kept when a worker goes.
CUMULATIVE_TYPES = frozenset({"counter", "histogram"})

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]  # sample name, sorted labels


@dataclass(frozen=True, slots=True)
class _Family:
    name: str
    documentation: str
    type: str
    unit: str


# A worker's last read: family name -> series -> value.
_Read = dict[str, dict[SeriesKey, float]]


class MergedMetrics(Collector):
    """The sum of the workers' metrics, as the supervisor last read them (module note)."""

    def __init__(self) -> None:
        self._families: dict[str, _Family] = {}  # in the order first seen
        self._reads: dict[int, _Read] = {}  # by worker pid: the last good read
        self._stale: set[int] = set()  # workers whose last read failed
        self._retired: _Read = {}

    def update(self, worker: int, text: str | None) -> None:
        """Take ``worker``'s ``/metrics`` text just read; None when it did not answer."""
        if text is None:
            self._stale.add(worker)
            return
        self._stale.discard(worker)
        self._reads[worker] = self._parse(text)

    def retire(self, worker: int) -> None:
        """``worker`` is gone: keep its last counts in every later sum."""
        self._stale.discard(worker)
        read = self._reads.pop(worker, None)
        if read is None:
            return
        for family, series in read.items():
            if self._families[family].type in CUMULATIVE_TYPES:
                _add_into(self._retired.setdefault(family, {}), series)

    def _parse(self, text: str) -> _Read:
        read: _Read = {}
        for family in text_string_to_metric_families(text):
            if family.name.startswith(PRIVATE_PREFIX):
                continue
            if family.name not in self._families:
                self._families[family.name] = _Family(
                    family.name, family.documentation, family.type, family.unit
                )
            series = read.setdefault(family.name, {})
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                series[key] = series.get(key, 0.0) + sample.value
        return read

    def collect(self) -> Iterator[Metric]:
        totals: dict[str, dict[SeriesKey, float]] = {}
        counts: dict[str, dict[SeriesKey, int]] = {}  # readers of each averaged series
        for worker, read in self._reads.items():
            stale = worker in self._stale
            for name, series in read.items():
                family = self._families[name]
                if stale and family.type not in CUMULATIVE_TYPES:
                    continue  # a gauge from an old read would describe the past
                _add_into(totals.setdefault(name, {}), series)
                if name in AVERAGED_GAUGES:
                    seen = counts.setdefault(name, {})
                    for key in series:
                        seen[key] = seen.get(key, 0) + 1
        for name, series in self._retired.items():
            _add_into(totals.setdefault(name, {}), series)
        for name, family in self._families.items():
            if name not in totals:
                continue
            metric = Metric(name, family.documentation, family.type, family.unit)
            readers = counts.get(name)
            for (sample_name, labels), value in totals[name].items():
                if readers is not None:
                    value /= readers[(sample_name, labels)]
                metric.samples.append(Sample(sample_name, dict(labels), value))
            yield metric


def _add_into(total: dict[SeriesKey, float], series: Mapping[SeriesKey, float]) -> None:
    for key, value in series.items():
        total[key] = total.get(key, 0.0) + value


# -- /endpoints --

# Fields of a service or an endpoint (or its breaker) that count, per worker.
ADDITIVE_FIELDS = frozenset({
    "inFlight", "idleConnections", "ejections", "failedTriesRetried", "opened", "waiting",
})  # fmt: skip


def merge_endpoints(pages: list[Mapping[str, object]]) -> dict[str, object]:
    """Several workers' ``/endpoints`` as one (module note); ``pages`` in worker order."""
    merged: dict[str, object] = {}
    for direction in _keys_in_order(pages):
        services = [page.get(direction) for page in pages]
        merged[direction] = _merge_list(
            [s for s in services if isinstance(s, list)],
            identity=lambda service: (service.get("name"), service.get("namespace")),
        )
    return merged


def _merge_list(
    lists: list[list[object]], identity: Callable[[Mapping[str, object]], object]
) -> list[object]:
    """Items of several workers' lists matched by ``identity(item)`` and merged."""
    groups: dict[object, list[Mapping[str, object]]] = {}
    for items in lists:
        for item in items:
            if isinstance(item, Mapping):
                groups.setdefault(identity(item), []).append(item)
    return [_merge_fields(group) for group in groups.values()]


def _merge_fields(items: list[Mapping[str, object]]) -> dict[str, object]:
    merged: dict[str, object] = {}
    for key in _keys_in_order(items):
        values = [item.get(key) for item in items]
        if key == "endpoints":
            merged[key] = _merge_list(
                [v for v in values if isinstance(v, list)],
                identity=lambda endpoint: endpoint.get("address"),
            )
        elif key in ADDITIVE_FIELDS and all(_is_number(v) for v in values):
            merged[key] = sum(values)  # type: ignore[arg-type]
        elif all(isinstance(v, Mapping) for v in values):
            merged[key] = _merge_fields(values)  # type: ignore[arg-type]
        elif all(v == values[0] for v in values):
            merged[key] = values[0]
        else:
            merged[key] = values
    return merged


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _keys_in_order(items: Iterable[Mapping[str, object]]) -> list[str]:
    return list(dict.fromkeys(key for item in items for key in item))
