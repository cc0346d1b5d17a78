"""Feedback: how each try went, told to the balancer and the endpoint's circuit breaker.

On the way in it counts the try against its endpoint (requests in flight, requests
sent) and, when the breaker is probing, marks the try as its probe. On the way back
it reports the try's latency and verdict when the response head arrives (or the try
fails first) — a 5xx or a failure is a failure — and frees the endpoint when the try is
over. The balancer hears the time since the try was handed to the pool, not since the
request reached the proxy: time spent queued in the proxy says nothing about the
endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tulle.proxy.layers import AttemptLayer
from tulle.resilience.breaker import CLOSED

if TYPE_CHECKING:
    from tulle.proxy.attempt import Attempt
    from tulle.proxy.targets import ServiceTarget


class Feedback(AttemptLayer):
    __slots__ = ("clock", "inner", "target")

    def __init__(
        self, target: ServiceTarget, clock: Callable[[], float], inner: AttemptLayer
    ) -> None:
        self.target = target
        self.clock = clock
        self.inner = inner

    def call(self, attempt: Attempt) -> None:
        endpoint = attempt.endpoint
        endpoint.in_flight += 1
        stats = attempt.exchange.stats  # the endpoint's (or, inbound, its client's share)
        if stats is not None:
            stats.requests += 1
        breaker = endpoint.breaker
        if breaker is not None and breaker.state != CLOSED:
            attempt.probe = breaker.on_dispatch()
        attempt.feedback = self
        self.inner.call(attempt)

    # -- the way back --

    def responded(self, attempt: Attempt, ok: bool) -> None:
        """The response head arrived; ``ok`` is False for a 5xx."""
        self._report(attempt, ok, refused=False)

    def failed(self, attempt: Attempt, refused: bool) -> None:
        """The try failed before a response head (``refused``: the connection was)."""
        self._report(attempt, False, refused)

    def released(self, attempt: Attempt) -> None:
        """The try is over, whatever its verdict: the endpoint is free of it."""
        endpoint = attempt.endpoint
        endpoint.in_flight -= 1
        attempt.feedback = None  # released once
        if attempt.probe:  # a probe that ended without a verdict (its client left)
            attempt.probe = False
            if endpoint.breaker is not None:
                endpoint.breaker.abandon_probe()

    def _report(self, attempt: Attempt, ok: bool, refused: bool) -> None:
        endpoint = attempt.endpoint
        self.target.balancer.on_response(endpoint, self.clock() - attempt.sent_at, ok)
        breaker = endpoint.breaker
        if breaker is not None:
            breaker.record(ok, attempt.probe, refused)
            attempt.probe = False
