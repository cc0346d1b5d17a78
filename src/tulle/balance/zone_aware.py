"""Zone awareness: stay in the proxy's own zone while it can serve, spill over when not.

Cross-zone traffic costs latency and, in clouds, money; but a zone that is short of
healthy endpoints or busier than the others must not be kept to. The rule, per
request, when the proxy knows its zone and the service has endpoints in it:

1. **Health.** A local endpoint with ``UNHEALTHY_AFTER`` consecutive failures
   counts as unhealthy until it answers well again. The local zone gets
   ``min(1, OVERPROVISIONING × healthy local / all local)`` of the requests and
   the rest go to every endpoint — Envoy's priority-level rule with its
   overprovisioning factor of 1.4: losing one endpoint of five changes nothing,
   losing half of them sends 30% of the requests out. Unhealthy endpoints stay in
   the local set (so they are still probed and can recover); keeping traffic off
   them is the inner balancer's and the circuit breaker's job.
2. **Load.** If the local endpoints have, on average, more requests in flight per
   unit of weight than ``SPILL_RATIO ×`` the other zones' average ``+
   SPILL_SLACK``, this request goes to every endpoint instead. The slack keeps a
   lightly loaded zone (1 vs 0 in flight) from spilling; the ratio means the
   cross-zone hop is paid only when the local zone is clearly the busier one.
   Spilling goes to the whole set, not only to other zones, so the inner balancer
   still chooses by load and latency and the local zone keeps its fair share.
3. Otherwise the request stays in the local zone.

With no local zone, no local endpoint, or only local endpoints, this wrapper is a
pass-through. It keeps two inner balancers (local and all) made by the same
factory, and tells both about every response, so each learns latency for its set.
In-flight counts are the proxy's, read per request (O(n); services are small).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from tulle.balance.base import Balancer, E, RequestView

# Envoy's default overprovisioning factor (1.4): a zone at ≥ 1/1.4 ≈ 71% health keeps
# all of its own traffic.
OVERPROVISIONING = 1.4
# Local in-flight per unit of weight beyond SPILL_RATIO × remote + SPILL_SLACK spills.
SPILL_RATIO = 2.0
SPILL_SLACK = 2.0
# Consecutive failures that count a local endpoint out (the circuit breaker, 7 by
# default, acts later and for every balancer; this only steers zone preference).
UNHEALTHY_AFTER = 3


class ZoneAware(Balancer[E]):
    """Prefers endpoints in ``local_zone`` (see module note for the rule)."""

    __slots__ = ("_all", "_failures", "_local", "_local_endpoints", "_local_share", "_random",
                 "_remote", "local_zone")

    def __init__(
        self,
        make_inner: Callable[[], Balancer[E]],
        local_zone: str,
        rng_random: Callable[[], float],
    ) -> None:
        self.local_zone = local_zone
        self._local: Balancer[E] = make_inner()
        self._all: Balancer[E] = make_inner()
        self._random = rng_random
        self._local_endpoints: tuple[E, ...] = ()
        self._remote: tuple[E, ...] = ()
        self._failures: dict[E, int] = {}
        self._local_share = 0.0

    def update(self, endpoints: Sequence[E]) -> None:
        old = self._failures
        self._failures = {e: old.get(e, 0) for e in endpoints if e.zone == self.local_zone}
        self._local_endpoints = tuple(e for e in endpoints if e.zone == self.local_zone)
        self._remote = tuple(e for e in endpoints if e.zone != self.local_zone)
        self._all.update(endpoints)
        self._local.update(self._local_endpoints)
        self._refresh_share()

    def _refresh_share(self) -> None:
        total = len(self._failures)
        healthy = sum(1 for failures in self._failures.values() if failures < UNHEALTHY_AFTER)
        self._local_share = min(1.0, OVERPROVISIONING * healthy / total) if total else 0.0

    def _local_overloaded(self) -> bool:
        local, remote = self._local_endpoints, self._remote
        local_load = sum(e.in_flight for e in local) / sum(e.weight for e in local)
        remote_load = sum(e.in_flight for e in remote) / sum(e.weight for e in remote)
        return local_load > SPILL_RATIO * remote_load + SPILL_SLACK

    def pick(self, request: RequestView) -> E | None:
        if not self._local_endpoints or not self._remote:
            return self._all.pick(request)
        if self._local_share < 1.0 and self._random() >= self._local_share:
            return self._all.pick(request)
        if self._local_overloaded():
            return self._all.pick(request)
        return self._local.pick(request)

    def latency_estimate_ms(self, endpoint: E) -> float | None:
        estimate = getattr(self._all, "latency_estimate_ms", None)
        return estimate(endpoint) if estimate is not None else None

    def on_response(self, endpoint: E, latency: float, ok: bool) -> None:
        failures = self._failures.get(endpoint)
        if failures is not None:
            now = 0 if ok else failures + 1
            self._failures[endpoint] = now
            if (failures < UNHEALTHY_AFTER) != (now < UNHEALTHY_AFTER):
                self._refresh_share()
        self._local.on_response(endpoint, latency, ok)
        self._all.on_response(endpoint, latency, ok)
