"""Helpers for the balancer tests: endpoints, requests, a fake clock, a load driver,
and the chi-square critical value the statistical tests compare against."""

from __future__ import annotations

import heapq
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tulle.balance import Balancer, Pickable


class Endpoint(Pickable):
    """An endpoint as a balancer sees it (``Endpoint(address, weight, zone,
    in_flight)``); hashed by identity like the proxy's."""

    def __repr__(self) -> str:
        return f"<{self.address} w{self.weight} {self.zone} {self.in_flight}>"


def endpoints(n: int, **kwargs: object) -> list[Endpoint]:
    return [Endpoint(f"10.0.0.{i}:80", **kwargs) for i in range(1, n + 1)]  # type: ignore[arg-type]


@dataclass
class Request:
    """A request as a balancer sees it."""

    headers: dict[bytes, bytes] = field(default_factory=dict)
    client_ip: bytes = b"127.0.0.1"

    def header(self, name: bytes) -> bytes | None:
        return self.headers.get(name)


NO_REQUEST = Request()


class FakeClock:
    """Time that moves only when a test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def drive(
    balancer: Balancer[Endpoint],
    clock: FakeClock,
    requests: int,
    latency: Callable[[Endpoint], float],
    *,
    concurrency: int = 8,
    ok: Callable[[Endpoint], bool] = lambda e: True,
    request: Callable[[int], Request] = lambda i: NO_REQUEST,
) -> Counter[Endpoint]:
    """A closed loop of ``concurrency`` clients on the fake clock: each sends its next
    request when its previous one is answered. Keeps ``in_flight`` as the proxy does
    and reports every answer to the balancer. Returns the picks per endpoint."""
    picks: Counter[Endpoint] = Counter()
    pending: list[tuple[float, int, Endpoint]] = []
    for sequence, i in enumerate(range(requests)):
        if len(pending) >= concurrency:
            done_at, _, done = heapq.heappop(pending)
            clock.now = max(clock.now, done_at)
            done.in_flight -= 1
            balancer.on_response(done, latency(done), ok(done))
        chosen = balancer.pick(request(i))
        assert chosen is not None
        picks[chosen] += 1
        chosen.in_flight += 1
        heapq.heappush(pending, (clock.now + latency(chosen), sequence, chosen))
    for _, _, done in pending:
        done.in_flight -= 1
    return picks


def one_at_a_time(
    balancer: Balancer[Endpoint],
    clock: FakeClock,
    requests: int,
    latency: Callable[[Endpoint], float],
    *,
    gap: float = 0.010,
    ok: Callable[[Endpoint], bool] = lambda e: True,
) -> Counter[Endpoint]:
    """Sequential requests, ``gap`` seconds apart, each answered before the next is
    sent (``curl`` in a loop): nothing is ever in flight at a pick. Returns the picks
    per endpoint."""
    picks: Counter[Endpoint] = Counter()
    for _ in range(requests):
        chosen = balancer.pick(NO_REQUEST)
        assert chosen is not None
        picks[chosen] += 1
        took = latency(chosen)
        chosen.in_flight += 1
        clock.advance(took)
        balancer.on_response(chosen, took, ok(chosen))
        chosen.in_flight -= 1
        clock.advance(gap)
    return picks


# Upper 0.1% point of the standard normal distribution.
Z_999 = 3.090232


def chi_square_critical(df: int, z: float = Z_999) -> float:
    """Critical value of the chi-square distribution with ``df`` degrees of freedom at
    the level whose normal quantile is ``z`` (Wilson and Hilferty, 1931: (X/df)^(1/3)
    is close to normal with mean 1 - 2/(9 df) and variance 2/(9 df)). At this level it
    is within 2.5% of the exact value for df = 2 and 1.5% for df >= 4, erring high;
    good enough for a bound, and no scipy needed."""
    h = 2.0 / (9.0 * df)
    return df * (1.0 - h + z * math.sqrt(h)) ** 3


def chi_square(observed: Sequence[int], expected: Sequence[float]) -> float:
    """Pearson's statistic: sum of (observed - expected)^2 / expected."""
    return sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True))
