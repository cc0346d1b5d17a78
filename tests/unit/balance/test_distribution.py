"""How picks are distributed: exact sequences where the algorithm is deterministic,
chi-square bounds at the 0.1% level (fixed seeds) where it draws at random."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from balance_testkit import (
    NO_REQUEST,
    Endpoint,
    FakeClock,
    chi_square,
    chi_square_critical,
    endpoints,
)

from tulle.balance import LeastRequest, PeakEwma, RoundRobin, WeightedRandom, WeightedRoundRobin

PICKS = 10_000


def test_chi_square_critical_values_match_the_tables() -> None:
    # Published 0.1% points: df 1 → 10.83, 2 → 13.82, 4 → 18.47, 9 → 27.88.
    for df, table in ((2, 13.816), (4, 18.467), (9, 27.877)):
        assert chi_square_critical(df) == pytest.approx(table, rel=0.025)


def test_round_robin_is_exact() -> None:
    a, b, c = endpoints(3)
    balancer: RoundRobin[Endpoint] = RoundRobin()
    balancer.update([a, b, c])
    assert Counter(balancer.pick(NO_REQUEST) for _ in range(PICKS - 1)) == {
        a: 3333, b: 3333, c: 3333
    }


def test_smooth_weighted_round_robin_sequence() -> None:
    a, b, c = (Endpoint(n, weight=w) for n, w in (("a", 5), ("b", 1), ("c", 1)))
    balancer: WeightedRoundRobin[Endpoint] = WeightedRoundRobin()
    balancer.update([a, b, c])
    # nginx's example: interleaved, not a a a a a b c.
    assert [balancer.pick(NO_REQUEST).address for _ in range(14)] == list("aabacaa" * 2)


def test_smooth_weighted_round_robin_counts_are_exact_per_cycle() -> None:
    weighted = [Endpoint(f"e{w}", weight=w) for w in (1, 2, 3, 7)]
    balancer: WeightedRoundRobin[Endpoint] = WeightedRoundRobin()
    balancer.update(weighted)
    cycle = sum(e.weight for e in weighted)
    for _ in range(5):
        counts = Counter(balancer.pick(NO_REQUEST) for _ in range(cycle))
        assert counts == {e: e.weight for e in weighted}


def test_weighted_round_robin_keeps_its_place_across_an_identical_update() -> None:
    a, b = Endpoint("a", weight=2), Endpoint("b", weight=1)
    balancer: WeightedRoundRobin[Endpoint] = WeightedRoundRobin()
    balancer.update([a, b])
    first = [balancer.pick(NO_REQUEST) for _ in range(2)]
    balancer.update([a, b])
    assert [*first, balancer.pick(NO_REQUEST)] == [a, b, a]


@pytest.mark.parametrize("weights", [(1, 1, 1, 1, 1), (1, 2, 3, 4), (10, 1)])
def test_random_is_proportional_to_weight(weights: tuple[int, ...]) -> None:
    """Pearson's chi-square over PICKS draws with k categories has k - 1 degrees of
    freedom; a fair generator exceeds the 0.1% critical value once in a thousand
    seeds, and the seed is fixed, so this fails only if the draw is biased."""
    weighted = [Endpoint(f"e{i}", weight=w) for i, w in enumerate(weights)]
    balancer: WeightedRandom[Endpoint] = WeightedRandom(random.Random(42))
    balancer.update(weighted)
    counts = Counter(balancer.pick(NO_REQUEST) for _ in range(PICKS))
    total = sum(weights)
    expected = [PICKS * w / total for w in weights]
    statistic = chi_square([counts[e] for e in weighted], expected)
    assert statistic < chi_square_critical(len(weights) - 1)


@pytest.mark.parametrize("make", [
    lambda rng: LeastRequest(rng),
    lambda rng: PeakEwma(FakeClock(), decay=10.0, default_rtt=0.03, rng=rng),
], ids=["least-request", "peak-ewma"])
def test_two_choices_pick_the_less_loaded_with_the_right_probability(make) -> None:  # type: ignore[no-untyped-def]
    """n endpoints with distinct loads 0..n-1 (equal weight and latency). P2C draws an
    unordered pair uniformly from the n(n-1)/2 and takes its less loaded member, so the
    endpoint of rank k (0 = least loaded) wins the pairs with every more loaded one:
    P(k) = (n - 1 - k) / (n(n-1)/2) = 2(n-1-k) / (n(n-1)). The most loaded never wins."""
    n = 6
    loaded = endpoints(n)
    for rank, endpoint in enumerate(loaded):
        endpoint.in_flight = rank
    balancer = make(random.Random(5))
    balancer.update(loaded)
    counts = Counter(balancer.pick(NO_REQUEST) for _ in range(PICKS))
    assert counts[loaded[-1]] == 0
    expected = [PICKS * 2 * (n - 1 - k) / (n * (n - 1)) for k in range(n - 1)]
    statistic = chi_square([counts[e] for e in loaded[:-1]], expected)
    assert statistic < chi_square_critical(n - 2)


def test_two_choices_with_two_endpoints_always_take_the_less_loaded() -> None:
    a, b = endpoints(2)
    b.in_flight = 1
    balancer: LeastRequest[Endpoint] = LeastRequest(random.Random(1))
    balancer.update([a, b])
    assert {balancer.pick(NO_REQUEST) for _ in range(100)} == {a}


def test_least_request_divides_load_by_weight() -> None:
    heavy, light = Endpoint("h", weight=4, in_flight=6), Endpoint("l", weight=1, in_flight=2)
    balancer: LeastRequest[Endpoint] = LeastRequest(random.Random(1))
    balancer.update([heavy, light])
    # (6 + 1) / 4 = 1.75 < (2 + 1) / 1 = 3: the heavy one has more room.
    assert {balancer.pick(NO_REQUEST) for _ in range(100)} == {heavy}
