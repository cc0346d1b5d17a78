"""Slow start and zone awareness, on a fake clock, around real balancers."""

from __future__ import annotations

import itertools
import random
from collections import Counter

from balance_testkit import NO_REQUEST, Endpoint, FakeClock, endpoints

from tulle.balance import LeastRequest, RoundRobin, SlowStart, ZoneAware, new_balancer
from tulle.balance.slow_start import FAILED_AFTER, MIN_RAMP
from tulle.config import LoadBalancer


def slow_start(clock: FakeClock, rng: random.Random) -> SlowStart[Endpoint]:
    return SlowStart(RoundRobin(), clock, 30.0, rng.random)


def share(balancer: SlowStart[Endpoint] | ZoneAware[Endpoint], endpoint: Endpoint,
          n: int = 6000) -> float:
    return Counter(balancer.pick(NO_REQUEST) for _ in range(n))[endpoint] / n


def test_first_endpoints_do_not_ramp() -> None:
    clock, rng = FakeClock(), random.Random(1)
    balancer = slow_start(clock, rng)
    members = endpoints(3)
    balancer.update(members)
    assert all(balancer.ramp(e) == 1.0 for e in members)


def test_new_endpoint_ramps_linearly_over_the_window() -> None:
    clock, rng = FakeClock(), random.Random(1)
    balancer = slow_start(clock, rng)
    old = endpoints(3)
    balancer.update(old)
    new = Endpoint("10.0.0.9:80")
    balancer.update([*old, new])
    assert balancer.ramp(new) == MIN_RAMP
    clock.advance(15.0)
    assert balancer.ramp(new) == MIN_RAMP + (1 - MIN_RAMP) * 0.5
    clock.advance(15.0)
    assert balancer.ramp(new) == 1.0


def test_new_endpoint_share_grows_over_the_window() -> None:
    clock, rng = FakeClock(), random.Random(2)
    balancer = slow_start(clock, rng)
    old = endpoints(3)
    balancer.update(old)
    new = Endpoint("10.0.0.9:80")
    balancer.update([*old, new])
    shares = []
    for _ in range(4):
        shares.append(share(balancer, new, 2000))
        clock.advance(10.0)
    assert shares == sorted(shares)
    assert shares[0] < 0.1 and abs(shares[-1] - 0.25) < 0.02  # fair share once warm


def test_recovered_endpoint_ramps_again() -> None:
    clock, rng = FakeClock(), random.Random(3)
    balancer = slow_start(clock, rng)
    members = endpoints(2)
    balancer.update(members)
    sick = members[0]
    for _ in range(FAILED_AFTER):
        balancer.on_response(sick, 0.001, False)
    assert balancer.ramp(sick) == 1.0  # failing is the breaker's business
    balancer.on_response(sick, 0.001, True)
    assert balancer.ramp(sick) == MIN_RAMP


def test_endpoint_that_leaves_and_returns_ramps_again() -> None:
    clock, rng = FakeClock(), random.Random(4)
    balancer = slow_start(clock, rng)
    a, b = endpoints(2)
    balancer.update([a, b])
    balancer.update([a])
    balancer.update([a, b])
    assert balancer.ramp(b) == MIN_RAMP


def zoned() -> tuple[list[Endpoint], list[Endpoint]]:
    local = endpoints(3, zone="zone-a")
    remote = [Endpoint(f"10.0.1.{i}:80", zone="zone-b") for i in range(3)]
    return local, remote


def zone_aware(rng: random.Random) -> ZoneAware[Endpoint]:
    return ZoneAware(lambda: LeastRequest(rng), "zone-a", rng.random)


def test_healthy_idle_local_zone_takes_everything() -> None:
    local, remote = zoned()
    balancer = zone_aware(random.Random(5))
    balancer.update([*remote, *local])
    assert {balancer.pick(NO_REQUEST) for _ in range(500)} <= set(local)


def test_busy_local_zone_spills_over() -> None:
    local, remote = zoned()
    balancer = zone_aware(random.Random(6))
    balancer.update([*local, *remote])
    for endpoint in local:
        endpoint.in_flight = 10  # > 2 × 0 + 2
    picks = Counter(balancer.pick(NO_REQUEST) for _ in range(2000))
    # Spilled to all six; P2C then stays local only when it draws two local ones:
    # C(3,2) / C(6,2) = 20% of the time.
    assert 0.72 < sum(picks[e] for e in remote) / 2000 < 0.88
    for endpoint in remote:
        endpoint.in_flight = 5  # 10 ≤ 2 × 5 + 2: stay home
    assert {balancer.pick(NO_REQUEST) for _ in range(500)} <= set(local)


def test_unhealthy_local_endpoints_send_a_share_out() -> None:
    """2 of 3 local endpoints failing: the local zone keeps 1.4 × 1/3 ≈ 47% of the
    requests; the other 53% go to all six endpoints (least-request on equal loads,
    so half of those stay local): remote share ≈ 0.53 / 2 ≈ 27%."""
    local, remote = zoned()
    balancer = zone_aware(random.Random(7))
    balancer.update([*local, *remote])
    for sick, _ in itertools.product(local[:2], range(3)):
        balancer.on_response(sick, 0.001, False)
    picks = Counter(balancer.pick(NO_REQUEST) for _ in range(10_000))
    remote_share = sum(picks[e] for e in remote) / 10_000
    assert 0.23 < remote_share < 0.31
    balancer.on_response(local[0], 0.001, True)  # one recovers: 1.4 × 2/3 ≈ 93% local
    picks = Counter(balancer.pick(NO_REQUEST) for _ in range(10_000))
    assert sum(picks[e] for e in remote) / 10_000 < 0.06


def test_no_local_endpoints_means_every_zone() -> None:
    _, remote = zoned()
    balancer = zone_aware(random.Random(8))
    balancer.update(remote)
    assert {balancer.pick(NO_REQUEST) for _ in range(300)} == set(remote)


def test_new_balancer_wraps_as_configured() -> None:
    plain = LoadBalancer()
    assert not isinstance(new_balancer(plain, clock=FakeClock(), local_zone=None), ZoneAware)
    assert isinstance(new_balancer(plain, clock=FakeClock(), local_zone="z"), ZoneAware)
    off = LoadBalancer.model_validate({"zoneAware": False})
    assert not isinstance(new_balancer(off, clock=FakeClock(), local_zone="z"), ZoneAware)
    ramp = LoadBalancer.model_validate({"slowStart": {"window": "1m"}})
    wrapped = new_balancer(ramp, clock=FakeClock(), local_zone=None)
    assert isinstance(wrapped, SlowStart)
