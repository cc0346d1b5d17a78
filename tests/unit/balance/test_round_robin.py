"""RoundRobin: every endpoint in turn, safe across updates of the endpoint set."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tulle.balance import ALGORITHMS, Balancer, Pickable, RoundRobin, new_balancer
from tulle.config import LoadBalancer


class Endpoint(Pickable):
    """The part of an endpoint a balancer may read; named by its address."""

    def __init__(self, name: str, weight: int = 1, in_flight: int = 0) -> None:
        super().__init__(name, weight, in_flight=in_flight)
        self.name = name


A, B, C, D = (Endpoint(n) for n in "abcd")


def balancer_of(*endpoints: Endpoint) -> RoundRobin[Endpoint]:
    balancer: RoundRobin[Endpoint] = RoundRobin()
    balancer.update(endpoints)
    return balancer


def picks(balancer: RoundRobin[Endpoint], n: int) -> list[Endpoint | None]:
    return [balancer.pick(None) for _ in range(n)]


def test_picks_endpoints_in_order_cyclically() -> None:
    assert picks(balancer_of(A, B, C), 7) == [A, B, C, A, B, C, A]


def test_empty_set_picks_none() -> None:
    assert RoundRobin().pick(None) is None
    assert picks(balancer_of(), 3) == [None, None, None]


def test_single_endpoint_is_always_picked() -> None:
    assert picks(balancer_of(A), 5) == [A] * 5


def test_weights_and_load_are_ignored() -> None:
    heavy, busy = Endpoint("heavy", weight=100), Endpoint("busy", in_flight=1000)
    assert picks(balancer_of(heavy, busy), 4) == [heavy, busy, heavy, busy]


def test_request_does_not_influence_the_pick() -> None:
    balancer = balancer_of(A, B)
    assert [balancer.pick(r) for r in ("x", "x", object(), None)] == [A, B, A, B]


def test_update_takes_a_snapshot_of_the_sequence() -> None:
    endpoints = [A, B]
    balancer = balancer_of(*endpoints)
    balancer.update(endpoints)
    endpoints.append(C)
    assert picks(balancer, 3) == [A, B, A]


def test_shrinking_the_set_mid_cycle_stays_in_range() -> None:
    balancer = balancer_of(A, B, C, D)
    assert picks(balancer, 3) == [A, B, C]  # next would be D
    balancer.update([A, B])
    got = picks(balancer, 4)
    assert set(got) == {A, B}
    assert got[0::2] == [got[0]] * 2 and got[1::2] == [got[1]] * 2  # still alternates


def test_shrinking_to_empty_and_back() -> None:
    balancer = balancer_of(A, B, C)
    picks(balancer, 2)
    balancer.update([])
    assert balancer.pick(None) is None
    balancer.update([D])
    assert picks(balancer, 2) == [D, D]


def test_growing_the_set_includes_new_endpoints_within_one_cycle() -> None:
    balancer = balancer_of(A, B)
    assert picks(balancer, 1) == [A]
    balancer.update([A, B, C, D])
    assert sorted(e.name for e in picks(balancer, 4)) == ["a", "b", "c", "d"]


def test_update_with_the_same_set_keeps_the_position() -> None:
    balancer = balancer_of(A, B, C)
    picks(balancer, 1)
    balancer.update([A, B, C])
    assert picks(balancer, 3) == [B, C, A]


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.one_of(
            st.integers(min_value=0, max_value=5),  # pick this many times
            st.lists(st.sampled_from([A, B, C, D]), unique=True).map(tuple),  # update to this
        ),
        max_size=20,
    )
)
def test_picks_always_come_from_the_current_set(
    steps: list[int | tuple[Endpoint, ...]],
) -> None:
    balancer: RoundRobin[Endpoint] = RoundRobin()
    current: tuple[Endpoint, ...] = ()
    for step in steps:
        if isinstance(step, tuple):
            balancer.update(step)
            current = step
            continue
        for _ in range(step):
            picked = balancer.pick(None)
            assert picked in current if current else picked is None
    # After any history, a full cycle visits each endpoint exactly once.
    if current:
        assert Counter(picks(balancer, len(current))) == Counter(current)


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_even_distribution(n: int) -> None:
    endpoints = [Endpoint(str(i)) for i in range(n)]
    counts = Counter(picks(balancer_of(*endpoints), 100 * n))
    assert counts == Counter({e: 100 for e in endpoints})


def test_round_robin_is_registered_by_name_and_each_balancer_is_fresh() -> None:
    assert "round-robin" in ALGORITHMS
    settings = LoadBalancer(algorithm="round-robin")
    first = new_balancer(settings, clock=lambda: 0.0, local_zone=None)
    second = new_balancer(settings, clock=lambda: 0.0, local_zone=None)
    assert isinstance(first, RoundRobin) and first is not second
    first.update([A, B])
    second.update([A, B])
    assert (first.pick(None), first.pick(None), second.pick(None)) == (A, B, A)


def test_round_robin_satisfies_the_balancer_interface() -> None:
    balancer: Balancer[Endpoint] = RoundRobin()
    balancer.update([A])
    assert balancer.pick(None) is A
