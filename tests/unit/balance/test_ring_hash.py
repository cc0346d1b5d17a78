"""Ring-hash: stickiness, minimal movement when the set changes, bounded loads."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from balance_testkit import Endpoint, Request, endpoints

from tulle.balance import RingHash

KEYS = [b"user-%d" % i for i in range(10_000)]


def by_header(key: bytes) -> Request:
    return Request(headers={b"x-user": key})


def ring(*members: Endpoint, factor: float = 1.25) -> RingHash[Endpoint]:
    balancer: RingHash[Endpoint] = RingHash(header="X-User", balance_factor=factor,
                                            rng=random.Random(1))
    balancer.update(members)
    return balancer


def test_a_key_stays_on_its_endpoint() -> None:
    balancer = ring(*endpoints(5))
    for key in KEYS[:200]:
        first = balancer.pick(by_header(key))
        assert all(balancer.pick(by_header(key)) is first for _ in range(5))


def test_placement_depends_on_addresses_not_on_objects_or_order() -> None:
    one, other = endpoints(5), endpoints(5)
    a, b = ring(*one), ring(*reversed(other))
    for key in KEYS[:500]:
        assert a.owner(key).address == b.owner(key).address  # type: ignore[union-attr]


def test_one_of_n_leaving_moves_only_its_keys_about_one_nth() -> None:
    n = 10
    members = endpoints(n)
    before = ring(*members)
    owners = {key: before.owner(key) for key in KEYS}
    leaving = members[3]
    after = ring(*(e for e in members if e is not leaving))
    moved = [key for key in KEYS if after.owner(key) is not owners[key]]
    assert set(moved) == {key for key in KEYS if owners[key] is leaving}
    # Each endpoint's share of the ring is 1/n within a few times 1/sqrt(160 points).
    assert 0.6 / n < len(moved) / len(KEYS) < 1.4 / n


def test_one_joining_takes_about_one_n_plus_first() -> None:
    members = endpoints(10)
    before = ring(*members)
    joined = Endpoint("10.0.1.1:80")
    after = ring(*members, joined)
    moved = [key for key in KEYS if after.owner(key) is not before.owner(key)]
    assert all(after.owner(key) is joined for key in moved)
    assert 0.6 / 11 < len(moved) / len(KEYS) < 1.4 / 11


def test_weight_gives_a_proportional_share_of_keys() -> None:
    heavy, light = Endpoint("10.0.0.1:80", weight=3), Endpoint("10.0.0.2:80")
    balancer = ring(heavy, light)
    counts = Counter(balancer.owner(key) for key in KEYS)
    assert 0.68 < counts[heavy] / len(KEYS) < 0.82


@pytest.mark.parametrize("factor", [1.25, 2.0])
def test_bounded_load_caps_a_hot_key(factor: float) -> None:
    """One key sends 300 requests that all stay in flight, 10 other keys one each. No
    endpoint may exceed factor × (total + 1) / n; the hot key spills to neighbours."""
    members = endpoints(5)
    balancer = ring(*members, factor=factor)
    home = balancer.owner(b"hot")
    placed: Counter[Endpoint] = Counter()
    for i in range(300):
        key = b"hot" if i % 30 else b"cold-%d" % i
        chosen = balancer.pick(by_header(key))
        assert chosen is not None
        chosen.in_flight += 1
        placed[chosen] += 1
        total = sum(e.in_flight for e in members)
        assert max(e.in_flight for e in members) <= factor * total / len(members) + 1
    assert placed[home] < 300 * factor / len(members) + 2
    assert len(placed) == len(members)


def test_unloaded_ring_is_pure_consistent_hashing() -> None:
    members = endpoints(4)
    balancer = ring(*members)
    for key in KEYS[:300]:
        assert balancer.pick(by_header(key)) is balancer.owner(key)


def test_cookie_and_client_address_keys() -> None:
    members = endpoints(4)
    by_cookie: RingHash[Endpoint] = RingHash(cookie="session")
    by_client: RingHash[Endpoint] = RingHash()
    by_cookie.update(members)
    by_client.update(members)
    request = Request(headers={b"cookie": b"theme=dark; session=abc123"}, client_ip=b"10.1.1.1")
    assert by_cookie.key(request) == b"abc123"
    assert by_client.key(request) == b"10.1.1.1"
    assert by_cookie.pick(request) is by_cookie.owner(b"abc123")


def test_requests_without_a_key_are_spread() -> None:
    members = endpoints(4)
    balancer = ring(*members)
    counts = Counter(balancer.pick(Request()) for _ in range(4000))
    assert set(counts) == set(members)
    assert min(counts.values()) > 600
