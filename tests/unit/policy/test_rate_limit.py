"""GCRA local rate limits on exact time: bursts, steady rates, and how the limits of a
policy combine (Linkerd's order: total, then an override, else the identity's bucket)."""

from __future__ import annotations

import random

from tulle.policy.rate_limit import (
    IDENTITY,
    MAX_BUCKETS,
    NANOS,
    OVERRIDE,
    TOTAL,
    Bucket,
    LocalRateLimit,
)

MS = NANOS // 1000


def test_a_full_bucket_admits_one_second_worth_at_once_then_the_rate() -> None:
    bucket = Bucket(10)
    start = 5 * NANOS
    assert [bucket.take(start) for _ in range(10)] == [0] * 10
    wait = bucket.take(start)
    assert wait == 100 * MS  # the next cell is one interval away
    assert bucket.take(start + 99 * MS) == MS
    assert bucket.take(start + 100 * MS) == 0
    assert bucket.take(start + 100 * MS) > 0


def test_over_any_window_the_admitted_count_follows_the_formula() -> None:
    """Arrivals every 7 ms for 3 s against 20/s. The k-th admission (from 0) needs
    t >= k·I − τ (I = 50 ms, τ = (B − 1)·I): so over arrivals from 0 to D, dense enough
    never to lose credit (gap 7 ms < τ = 950 ms), exactly B + floor(D / I) are admitted."""
    rate, gap = 20, 7 * MS
    bucket = Bucket(rate)
    arrivals = range(0, 3 * NANOS + 1, gap)
    admitted_at = [t for t in arrivals if bucket.take(t) == 0]
    assert len(admitted_at) == rate + arrivals[-1] // (NANOS // rate)
    # And no window holds more than a burst plus its cells: n admissions span at least
    # (n - B) intervals.
    interval = NANOS // rate
    for first in range(len(admitted_at)):
        for last in range(first + rate, len(admitted_at)):
            assert admitted_at[last] - admitted_at[first] >= (last - first + 1 - rate) * interval


def test_an_idle_bucket_refills_but_never_beyond_its_burst() -> None:
    bucket = Bucket(5)
    assert all(bucket.take(0) == 0 for _ in range(5))
    later = 60 * NANOS
    assert sum(bucket.take(later) == 0 for _ in range(20)) == 5


def test_random_arrivals_never_exceed_the_bound() -> None:
    rng = random.Random(7)
    for rate in (1, 3, 50, 1000):
        bucket = Bucket(rate)
        now, admitted, horizon = 0, 0, 2 * NANOS
        while now <= horizon:
            admitted += bucket.take(now) == 0
            now += rng.randrange(1, 3 * NANOS // rate + 2)
        assert admitted <= rate + horizon // (NANOS // rate) + 1


def test_total_then_override_then_identity() -> None:
    web, cli = "spiffe://td/ns/shop/sa/web", "spiffe://td/ns/shop/sa/cli"
    vip = "spiffe://td/ns/shop/sa/vip"
    limit = LocalRateLimit(total=100, identity=2, overrides=[(5, [vip, cli])])
    now = NANOS
    assert [limit.check(web, now) == 0 for _ in range(3)] == [True, True, False]
    assert limit.refused_by == IDENTITY and limit.refused_rate == 2
    # Plaintext clients share one bucket (no identity).
    assert [limit.check(None, now) == 0 for _ in range(3)] == [True, True, False]
    # vip and cli share their override's 5, whatever the identity limit says.
    assert sum(limit.check(who, now) == 0 for who in (vip, cli) * 4) == 5
    assert limit.refused_by == OVERRIDE and limit.refused_rate == 5
    tight = LocalRateLimit(total=3, identity=None)
    assert [tight.check(None, now) == 0 for _ in range(4)] == [True, True, True, False]
    assert tight.refused_by == TOTAL


def test_identity_buckets_are_bounded() -> None:
    limit = LocalRateLimit(total=None, identity=1)
    for index in range(MAX_BUCKETS + 10):
        limit.check(f"spiffe://td/ns/a/sa/s{index}", index * NANOS)
    assert len(limit._buckets) <= MAX_BUCKETS
