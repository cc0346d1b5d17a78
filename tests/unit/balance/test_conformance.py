"""What every balancer must do, whatever its algorithm (run against each one in
ALGORITHMS, bare and inside the zone-aware and slow-start wrappers)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from balance_testkit import NO_REQUEST, Endpoint, FakeClock, Request, drive, endpoints

import tulle.balance
from tulle.balance import ALGORITHMS, Balancer, new_balancer
from tulle.config import LoadBalancer
from tulle.config.schema_policy import LOAD_BALANCER_ALGORITHMS

WRAPPINGS = {
    "bare": {},
    "zone-aware": {"local_zone": "zone-a"},
    "slow-start": {"slowStart": {"window": "30s"}},
}

Make = Callable[[], tuple[Balancer[Endpoint], FakeClock]]


def maker(algorithm: str, wrapping: str) -> Make:
    def make() -> tuple[Balancer[Endpoint], FakeClock]:
        options = dict(WRAPPINGS[wrapping])
        local_zone = options.pop("local_zone", None)
        settings = LoadBalancer.model_validate({"algorithm": algorithm, **options})
        clock = FakeClock()
        return new_balancer(settings, clock=clock, local_zone=local_zone), clock

    return make


CASES = [(a, w) for a in ALGORITHMS for w in WRAPPINGS]


@pytest.fixture(params=CASES, ids=[f"{a}-{w}" for a, w in CASES])
def make(request: pytest.FixtureRequest) -> Make:
    tulle.balance.default_rng.seed(1234)
    return maker(*request.param)


def test_algorithms_and_config_names_agree() -> None:
    assert set(ALGORITHMS) == set(LOAD_BALANCER_ALGORITHMS)


def test_empty_set_picks_none(make: Make) -> None:
    balancer, _ = make()
    assert balancer.pick(NO_REQUEST) is None
    balancer.update([])
    assert balancer.pick(NO_REQUEST) is None


def test_single_endpoint_is_always_picked(make: Make) -> None:
    balancer, clock = make()
    (only,) = endpoints(1, zone="zone-b")
    balancer.update([only])
    picks = drive(balancer, clock, 200, lambda e: 0.001)
    assert picks == {only: 200}


def test_emptied_set_picks_none_and_refills(make: Make) -> None:
    balancer, clock = make()
    first = endpoints(3)
    balancer.update(first)
    drive(balancer, clock, 30, lambda e: 0.001)
    balancer.update([])
    assert balancer.pick(NO_REQUEST) is None
    fresh = Endpoint("10.9.9.9:80")
    balancer.update([fresh])
    assert balancer.pick(NO_REQUEST) is fresh


def test_update_while_requests_are_in_flight(make: Make) -> None:
    balancer, clock = make()
    a, b, c = endpoints(3, zone="zone-a")
    balancer.update([a, b, c])
    placed = [balancer.pick(Request(client_ip=bytes([i]))) for i in range(30)]
    for endpoint in placed:
        assert endpoint is not None
        endpoint.in_flight += 1
    removed = placed[0]
    assert removed is not None
    staying = [e for e in (a, b, c) if e is not removed]
    balancer.update(staying)
    clock.advance(0.01)
    for endpoint in placed:  # answers for the removed endpoint come in too
        assert endpoint is not None
        endpoint.in_flight -= 1
        balancer.on_response(endpoint, 0.01, endpoint is not removed)
    picks = drive(balancer, clock, 300, lambda e: 0.001,
                  request=lambda i: Request(client_ip=b"%d" % i))
    assert set(picks) <= set(staying)
    assert sum(picks.values()) == 300


def test_picks_always_come_from_the_current_set(make: Make) -> None:
    balancer, clock = make()
    pool = endpoints(6, zone="zone-a") + endpoints(0)
    for i, endpoint in enumerate(pool):
        endpoint.zone = "zone-a" if i % 2 else "zone-b"
    rng = random.Random(7)
    for _ in range(40):
        current = rng.sample(pool, rng.randint(0, len(pool)))
        balancer.update(current)
        for _ in range(10):
            picked = balancer.pick(Request(client_ip=b"%d" % rng.randint(0, 1000)))
            assert picked in current if current else picked is None
            if picked is not None:
                clock.advance(0.001)
                balancer.on_response(picked, rng.random() / 100, rng.random() > 0.1)


def test_answers_for_unknown_endpoints_are_ignored(make: Make) -> None:
    balancer, _ = make()
    balancer.update(endpoints(2))
    balancer.on_response(Endpoint("10.8.8.8:80"), 0.5, False)
    assert balancer.pick(NO_REQUEST) is not None


WEIGHT_AWARE = [a for a in ALGORITHMS if a != "round-robin"]  # round-robin ignores weights


@pytest.mark.parametrize("algorithm", WEIGHT_AWARE)
def test_weights_are_respected(algorithm: str) -> None:
    """Weights 3 and 1, equal latency, 8 concurrent clients: the heavy endpoint gets
    about 3/4 of the requests (every algorithm is proportional to weight here:
    random and ring-hash by draw, weighted-round-robin exactly, the load-aware ones
    by comparing in-flight / weight)."""
    tulle.balance.default_rng.seed(99)
    balancer, clock = maker(algorithm, "bare")()
    heavy, light = Endpoint("10.0.0.1:80", weight=3), Endpoint("10.0.0.2:80", weight=1)
    balancer.update([heavy, light])
    picks = drive(balancer, clock, 4000, lambda e: 0.010,
                  request=lambda i: Request(client_ip=b"client-%d" % i))
    share = picks[heavy] / 4000
    assert 0.65 <= share <= 0.85, (algorithm, share)
