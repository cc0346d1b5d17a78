"""Scrape the proxies on a timer and keep what the dashboard shows.

Every `interval` the sampler reads every admin's ``/metrics`` and
``/endpoints``. The signals shown are over the last `window` seconds of
scrapes (like ``tulle stat --window``), recomputed each tick; each tick's
service numbers are also appended to a bounded history, which the page draws as
sparklines. A proxy that cannot be read is reported in ``errors`` and skipped,
so one proxy going down does not blank the page for the others.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Hashable, Mapping

from tulle.telemetry.golden import GroupRow, Scrape, group_window, parse_scrape
from tulle.telemetry.scrape import fetch_metrics_async

# Points per sparkline: two minutes at one tick a second.
HISTORY_POINTS = 120


def _signals_json(row: GroupRow) -> dict[str, object]:
    signals = row.signals
    return {"successRate": signals.success_rate, "rps": signals.rps,
            "p50": signals.p50, "p95": signals.p95, "p99": signals.p99,
            "successes": signals.successes, "failures": signals.failures}


def _service_key(source: str, labels: Mapping[str, str]) -> Hashable | None:
    if not labels.get("dst_service"):
        return None  # the proxy's answers for unknown hosts: not a service
    return (labels.get("direction", ""), labels.get("dst_namespace", ""), labels["dst_service"])


def _endpoint_key(source: str, labels: Mapping[str, str]) -> Hashable | None:
    if not labels.get("endpoint"):
        return None
    return (source, labels.get("direction", ""), labels.get("dst_service", ""),
            labels["endpoint"])


class Sampler:
    """The dashboard's view of the proxies, refreshed every `interval` seconds."""

    def __init__(
        self, admins: list[str], window: float = 10.0, interval: float = 1.0,
        names: Mapping[str, str] | None = None,
    ) -> None:
        self.admins = admins
        self.names = dict(names or {})
        self.window = window
        self.interval = interval
        self._rounds: deque[list[Scrape]] = deque(maxlen=max(2, round(window / interval) + 1))
        self._history: dict[str, deque[dict[str, object]]] = {}
        self._endpoints: dict[str, object] = {}
        self._errors: list[str] = []
        self._summary: dict[str, object] = {"services": [], "endpoints": [], "errors": []}

    async def tick(self) -> None:
        """One round: scrape, recompute the summary, extend the history."""
        errors: list[str] = []
        scrapes: list[Scrape] = []
        endpoints: dict[str, object] = {}
        for admin in self.admins:
            name = self.names.get(admin, admin)
            try:
                text = await fetch_metrics_async(admin)
                scrapes.append(parse_scrape(name, text))
                endpoints[name] = json.loads(
                    await fetch_metrics_async(admin, path="/endpoints"))
            except (OSError, TimeoutError, ValueError) as exc:
                errors.append(f"{admin}: {exc or type(exc).__name__}")
        self._rounds.append(scrapes)
        self._endpoints = endpoints
        self._errors = errors
        self._summary = self._summarize(time.time())

    def _summarize(self, now: float) -> dict[str, object]:
        first, last = self._rounds[0], self._rounds[-1]
        seconds = (last[0].taken_at - first[0].taken_at) if first and last else 0.0
        totals: dict[Hashable, float] = {}
        for scrape in last:
            for labels, value in scrape.series("response_total"):
                key = _service_key(scrape.source, labels)
                if key is not None:
                    totals[key] = totals.get(key, 0.0) + value
        services = []
        for key, row in sorted(group_window(first, last, _service_key).items(),
                               key=lambda item: str(item[0])):
            direction, namespace, name = key  # type: ignore[misc]
            label = f"{name}.{namespace}/{direction}"
            point = {"at": now, **_signals_json(row)}
            history = self._history.setdefault(label, deque(maxlen=HISTORY_POINTS))
            if len(self._rounds) > 1:
                history.append(point)
            services.append({"id": label, "service": name, "namespace": namespace,
                             "direction": direction, "responsesTotal": totals.get(key, 0.0),
                             **_signals_json(row), "history": list(history)})
        endpoint_signals = group_window(first, last, _endpoint_key)
        return {"at": now, "windowSeconds": seconds, "admins": self.admins,
                "services": services, "endpoints": self._endpoint_rows(endpoint_signals),
                "errors": self._errors}

    def _endpoint_rows(self, signals: Mapping[Hashable, GroupRow]) -> list[dict[str, object]]:
        """The admin /endpoints state of each endpoint, with its signals when it had traffic."""
        rows: list[dict[str, object]] = []
        for admin, by_direction in self._endpoints.items():
            if not isinstance(by_direction, dict):
                continue
            for direction, services in sorted(by_direction.items()):
                for service in services or []:
                    for endpoint in service.get("endpoints", []):
                        key = (admin, direction, service.get("name", ""), endpoint.get("address"))
                        row = signals.get(key)
                        rows.append({"admin": admin, "direction": direction,
                                     "service": service.get("name", ""), **endpoint,
                                     "signals": _signals_json(row) if row else None})
        return rows

    def summary(self) -> dict[str, object]:
        return self._summary

    async def run(self) -> None:
        """Tick every `interval` until cancelled."""
        while True:  # bounded by cancellation when the dashboard stops
            started = time.monotonic()
            await self.tick()
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
