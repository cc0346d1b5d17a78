"""Load balancing: one module per algorithm, found by name in `ALGORITHMS`.

`new_balancer` turns a service's ``loadBalancer`` settings into a balancer; the
proxy passes the clock (so time-dependent algorithms run on a fake clock in
tests) and its own zone. The algorithm comes from `ALGORITHMS`; around it go the
wrappers every algorithm shares: zone awareness (when the proxy knows its zone
and ``zoneAware`` is on) and slow start (when ``slowStart`` is set). See
docs/load-balancing.md for when to use which.

Randomness: balancers that draw take a ``random.Random``; the factories use
`default_rng` (module level, so a test or the simulator can seed it or swap it),
and tests construct balancers with their own seeded generator.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from tulle.balance.base import Balancer, Pickable, RequestView
from tulle.balance.clock import Clock
from tulle.balance.expected_latency import ExpectedLatency
from tulle.balance.least_request import LeastRequest
from tulle.balance.least_response_time import LeastResponseTime
from tulle.balance.peak_ewma import PeakEwma
from tulle.balance.ring_hash import RingHash
from tulle.balance.round_robin import RoundRobin
from tulle.balance.slow_start import SlowStart
from tulle.balance.weighted_random import WeightedRandom
from tulle.balance.weighted_round_robin import WeightedRoundRobin
from tulle.balance.zone_aware import ZoneAware

if TYPE_CHECKING:
    from tulle.config.schema_policy import LoadBalancer

# The generator the factories draw from; replace or seed it for reproducible runs.
default_rng = random.Random()


def _ring_hash(settings: LoadBalancer, clock: Clock) -> Balancer:
    hash_on = settings.hash_on
    return RingHash(
        header=hash_on.header if hash_on else None,
        cookie=hash_on.cookie if hash_on else None,
        balance_factor=settings.hash_balance_factor / 100,
        rng=default_rng,
    )


# Manifest name -> factory(settings, clock). The config package validates names
# against LOAD_BALANCER_ALGORITHMS; a test checks the two list the same names.
ALGORITHMS: dict[str, Callable[[LoadBalancer, Clock], Balancer]] = {
    "expected-latency": lambda settings, clock: ExpectedLatency(
        clock, decay=settings.decay, default_rtt=settings.default_rtt, rng=default_rng
    ),
    "peak-ewma": lambda settings, clock: PeakEwma(
        clock, decay=settings.decay, default_rtt=settings.default_rtt, rng=default_rng
    ),
    "least-request": lambda settings, clock: LeastRequest(default_rng),
    "least-response-time": lambda settings, clock: LeastResponseTime(
        clock, decay=settings.decay, default_rtt=settings.default_rtt, rng=default_rng
    ),
    "round-robin": lambda settings, clock: RoundRobin(),
    "weighted-round-robin": lambda settings, clock: WeightedRoundRobin(),
    "random": lambda settings, clock: WeightedRandom(default_rng),
    "ring-hash": _ring_hash,
}


def new_balancer(settings: LoadBalancer, *, clock: Clock, local_zone: str | None) -> Balancer:
    """A fresh balancer for a service's settings (checked at load, so names are known)."""
    factory = ALGORITHMS[settings.algorithm]
    balancer: Balancer
    if local_zone is not None and settings.zone_aware:
        balancer = ZoneAware(lambda: factory(settings, clock), local_zone, default_rng.random)
    else:
        balancer = factory(settings, clock)
    if settings.slow_start is not None:
        balancer = SlowStart(balancer, clock, settings.slow_start.window, default_rng.random)
    return balancer


__all__ = ["ALGORITHMS", "Balancer", "Clock", "ExpectedLatency", "LeastRequest",
           "LeastResponseTime", "PeakEwma", "Pickable", "RequestView", "RingHash", "RoundRobin",
           "SlowStart", "WeightedRandom", "WeightedRoundRobin", "ZoneAware", "default_rng",
           "new_balancer"]
