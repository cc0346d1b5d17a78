"""The background drivers of failover: outlier detection and active health checks.

They run on timers, off the request path, read what the request path already
counts, change an endpoint's flags, and call `ServiceTarget.refresh` so the
balancer sees the new pickable set. One set of drivers per service target,
restarted on every reload.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from tulle.proxy.targets import Endpoint, ServiceTarget
from tulle.resilience import (
    HealthChecker,
    HealthState,
    OutlierRules,
    ProbeSpec,
    Sample,
    select_outliers,
)
from tulle.telemetry.metrics import classify

if TYPE_CHECKING:
    from tulle.config.schema_policy import HealthCheck, OutlierDetection

log = logging.getLogger("tulle.failover")


def _totals(endpoint: Endpoint) -> tuple[int, int]:
    """(answers, failures) of the endpoint so far, tries that were retried included."""
    total = failures = endpoint.failed_tries
    for (status, error, grpc), count in list(endpoint.stats.responses.items()):
        total += count
        if classify(status, error, grpc) == "failure":
            failures += count
    return total, failures


class OutlierDriver:
    """Every ``interval``, ejects the endpoints whose failures stand out."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, target: ServiceTarget, settings: OutlierDetection
    ) -> None:
        self._loop = loop
        self._target = target
        self._settings = settings
        self._rules = OutlierRules(
            minimum_requests=settings.minimum_requests,
            minimum_endpoints=settings.minimum_endpoints,
            stdev_factor=settings.success_rate_stdev_factor,
            failure_percentage=settings.failure_percentage,
            max_ejection_percent=settings.max_ejection_percent,
        )
        self._last: dict[Endpoint, tuple[int, int]] = {
            e: _totals(e) for e in target.endpoints
        }
        self._returns: dict[Endpoint, asyncio.TimerHandle] = {}
        self._tick: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._tick = self._loop.call_later(self._settings.interval, self._evaluate)

    def stop(self) -> None:
        """Stop (on reload): ejected endpoints come back now rather than never."""
        if self._tick is not None:
            self._tick.cancel()
        for endpoint, handle in self._returns.items():
            handle.cancel()
            endpoint.ejected = False
        self._returns.clear()

    def _evaluate(self) -> None:
        target = self._target
        samples = []
        for endpoint in target.endpoints:
            total, failures = _totals(endpoint)
            last_total, last_failures = self._last.get(endpoint, (0, 0))
            self._last[endpoint] = (total, failures)
            if not endpoint.ejected:
                samples.append(Sample(endpoint, total - last_total, failures - last_failures))
        ejected_now = sum(1 for e in target.endpoints if e.ejected)
        chosen = select_outliers(samples, self._rules, ejected_now, len(target.endpoints))
        for endpoint in chosen:
            assert isinstance(endpoint, Endpoint)
            endpoint.ejected = True
            endpoint.ejections += 1
            duration = self._settings.base_ejection_time * endpoint.ejections
            log.warning("ejecting %s from %s for %.0fs", endpoint.address, target.key, duration)
            self._returns[endpoint] = self._loop.call_later(duration, self._return, endpoint)
        if chosen:
            target.refresh()
        self._tick = self._loop.call_later(self._settings.interval, self._evaluate)

    def _return(self, endpoint: Endpoint) -> None:
        self._returns.pop(endpoint, None)
        endpoint.ejected = False
        log.info("%s returns to %s after ejection", endpoint.address, self._target.key)
        self._target.refresh()


class HealthDriver:
    """Runs the service's active health checks and applies their verdicts."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, target: ServiceTarget, settings: HealthCheck
    ) -> None:
        self._target = target
        for endpoint in target.endpoints:
            if endpoint.health is None:
                endpoint.health = HealthState(settings.healthy_after, settings.unhealthy_after)
        spec = ProbeSpec(
            http_path=settings.http.path if settings.http is not None else None,
            host_header=target.name,
            timeout=settings.timeout,
        )
        self._checker = HealthChecker(loop, spec, settings.interval, self._targets, self._changed)

    def _targets(self) -> list[tuple[str, int, HealthState]]:
        return [
            (e.pool.host, e.pool.port, e.health)
            for e in self._target.endpoints
            if e.health is not None
        ]

    def _changed(self) -> None:
        for endpoint in self._target.endpoints:
            if endpoint.health is not None and not endpoint.health.healthy:
                log.warning("%s of %s failed its health checks", endpoint.address,
                            self._target.key)
        self._target.refresh()

    def start(self) -> None:
        self._checker.start()

    def stop(self) -> None:
        self._checker.stop()
