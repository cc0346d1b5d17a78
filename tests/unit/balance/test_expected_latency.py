"""Expected-latency (the default balancer) against the properties of issue 11, on a fake
clock. Every bound is derived in the test's docstring from the algorithm's constants
(ALPHA 0.1, BAND 2, FAILURE_WEIGHT 10, STREAK 3, FRESH 0.1, decay 10 s); seeds are fixed.
"""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from balance_testkit import NO_REQUEST, Endpoint, FakeClock, drive, endpoints, one_at_a_time
from hypothesis import given
from hypothesis import strategies as st

from tulle.balance import ExpectedLatency
from tulle.balance.expected_latency import FAILURE_WEIGHT
from tulle.balance.response_estimate import ALPHA, ResponseEstimate

DECAY = 10.0


def balancer(clock: FakeClock, seed: int = 1) -> ExpectedLatency[Endpoint]:
    return ExpectedLatency(clock, decay=DECAY, default_rtt=0.030, rng=random.Random(seed))


# -- 1. equal endpoints share evenly from the first request


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_equal_endpoints_take_exact_turns_one_request_at_a_time(n: int) -> None:
    """Equal, constant latency, nothing ever in flight. Up to SCAN_LIMIT every pick
    scans all; every quality is equal (unmeasured ones rank as the reference, the
    measured ones average the same constant), so costs tie and the earliest deadline
    wins; each pick moves the winner's deadline on by exactly 1. The first round goes in
    the random order of the initial offsets (all in [0, 1)), and every round after in
    the same order: after k rounds each endpoint has exactly k picks, from the first."""
    clock = FakeClock()
    lb = balancer(clock)
    members = endpoints(n)
    lb.update(members)
    for rounds in (1, 2, 50):
        picks = one_at_a_time(lb, clock, n if rounds < 50 else 48 * n, lambda e: 0.001)
        assert set(picks.values()) == {1 if rounds < 50 else 48}, picks


def test_equal_endpoints_above_the_scan_limit_stay_within_a_few_picks() -> None:
    """20 endpoints: each pick scans 4 drawn at random and takes the earliest deadline.
    That is balanced allocation with d = 4 choices on "picks so far": its gap between
    the most and the average is ln ln n / ln d + O(1), independent of the number of
    picks (Berenbrink, Czumaj, Steger and Vöcking, 2000) — under 1 + a small constant
    for n = 20. A gap of 8 leaves room for the constant; random choice (multinomial,
    20,000 picks over 20) would spread them by ±3σ ≈ ±93."""
    clock = FakeClock()
    lb = balancer(clock, seed=7)
    members = endpoints(20)
    lb.update(members)
    picks = one_at_a_time(lb, clock, 20_000, lambda e: 0.001)
    assert max(picks.values()) - min(picks.values()) <= 8, sorted(picks.values())


def test_a_cold_first_answer_does_not_starve_an_equal_endpoint() -> None:
    """The issue's day-one failure: three equal endpoints (0.3 ms), one answers its
    first request in 5 ms, 300 requests one at a time (Linkerd's balancer left one at 0).
    An endpoint ranks with the best until its WARM_UP (2nd) answer and its estimate is
    then the faster of the two, 0.3 ms: never out of the band, and turns in the band do
    not depend on latency. So each gets exactly 100, whichever was cold."""
    for cold_index in range(3):
        clock = FakeClock()
        lb = balancer(clock, seed=cold_index)
        members = endpoints(3)
        lb.update(members)
        cold = members[cold_index]
        answered: Counter[Endpoint] = Counter()

        def latency(e: Endpoint, cold: Endpoint = cold,
                    seen: Counter[Endpoint] = answered) -> float:
            seen[e] += 1
            return 0.005 if e is cold and seen[e] == 1 else 0.0003

        picks = one_at_a_time(lb, clock, 300, latency)
        assert sorted(picks.values()) == [100, 100, 100], picks


# -- 2. a slow endpoint stays small however it ranks


def _slow_among(n: int, clock: FakeClock) -> tuple[ExpectedLatency[Endpoint], list[Endpoint]]:
    lb = balancer(clock, seed=n)
    members = endpoints(n)
    lb.update(members)
    return lb, members


def _mix(members: list[Endpoint]) -> tuple[dict[Endpoint, float], set[Endpoint]]:
    """members[0] is 10× slower (10 ms); a third of the rest fail every 20th request."""
    latency = {e: 0.001 for e in members}
    latency[members[0]] = 0.010
    flaky = set(members[1: 1 + (len(members) - 1) // 3])
    return latency, flaky


def _every_twentieth_fails(flaky: set[Endpoint]) -> object:
    tries: Counter[Endpoint] = Counter()

    def ok(e: Endpoint) -> bool:
        tries[e] += 1
        return e not in flaky or tries[e] % 20 != 0

    return ok


@pytest.mark.parametrize("n", [2, 3, 5, 8, 9, 20, 50])
def test_a_slow_endpoint_gets_a_handful_of_requests_one_at_a_time(n: int) -> None:
    """One endpoint 10× slower than the rest, a third of the rest failing 5% (1.5×
    dearer, so the slow one ranks second of three at n = 3 — the issue's case), one
    request at a time for 60 s (90 turns a second at most). The slow endpoint gets:

    - its 2 warm-up turns (WARM_UP), after which its estimate is the fastest of its
      answers, 10 ms: 5× the band's edge;
    - second opinions, (10 / 2)^k turns apart, k rising by one per upheld opinion but
      at most once per CONFIRM_SPACING (0.5 s = 45 turns): at level 1 (5 turns) at most
      1 + 45 / 5 = 10, at level 2 (25 turns) 2, then one per level up to EXPLORE_POWER:
      18 in all;
    - staleness probes: it ranks as drifting to the best FRESH × decay after its last
      answer, and is back at the band's edge 1 s + 10 s × ln(ln 10 / ln 2) = 13 s
      after it: at most 5 in 60 s.

    At most 2 + 18 + 5 = 25 picks of 6,000 (0.42%); round-robin would give it 1/n."""
    clock = FakeClock()
    lb, members = _slow_among(n, clock)
    latency, flaky = _mix(members)
    picks = one_at_a_time(lb, clock, 6000, latency.__getitem__,
                          ok=_every_twentieth_fails(flaky))  # type: ignore[arg-type]
    assert picks[members[0]] <= 25, (n, picks[members[0]])


@pytest.mark.parametrize("n", [2, 3, 9, 50])
def test_a_slow_endpoint_stays_small_under_load(n: int) -> None:
    """The same mix, 8 requests always in flight (2.5 s of simulated time). A fast
    endpoint with k requests out costs (1 + k) ms, at most 9 ms: never more than the
    slow one's 10 ms, so the slow one gets only:

    - warm-up: ranked with the best until its 2nd answer, 10 ms after its first pick;
      meanwhile it takes its share of the 8 in flight: at most 2 + 8;
    - second opinions, only while it is idle, so at most one per 10 ms, each level
      lasting at least CONFIRM_SPACING (0.5 s): 50 at level 1 and 50 at level 2 (5 and
      25 turns apart, turns are ~0.125 ms), 31 at level 3 (125 turns = 16 ms), 7 at
      level 4, 2 at level 5, 1 at level 6 (reached after 2.5 s at the earliest): 141;
    - no staleness probe (it answers within every 13 s).

    At most 10 + 141 = 151 picks of 20,000 (0.75%), all while its verdict hardens in
    the first 2.5 s; a second opinion every 10^5 turns or more after that."""
    clock = FakeClock()
    lb, members = _slow_among(n, clock)
    latency, flaky = _mix(members)
    picks = drive(lb, clock, 20_000, latency.__getitem__, concurrency=8,
                  ok=_every_twentieth_fails(flaky))  # type: ignore[arg-type]
    assert picks[members[0]] <= 151, (n, picks[members[0]])


# -- 3. failures are counted, not compounded


def test_a_fast_endpoint_failing_5_percent_gets_two_thirds_of_a_share() -> None:
    """Two endpoints at 1 ms, one failing every 20th try. Its failure rate, a time
    average over decay = 10 s, tends to 5% × (1 - e^(-t/10)): 4.75% from t = 30 s. Its
    quality is then 1 + FAILURE_WEIGHT × 0.0475 = 1.475× the other's: both in the band,
    so they take turns, in proportion to 1/quality: the flaky one gets 1/2.475 = 40.4%.
    The average moves by 1/20 of a failure's weight between failures, a few thousandths,
    so the share in 30–60 s stays within 37–44%."""
    clock = FakeClock()
    lb = balancer(clock)
    fast, flaky = endpoints(2)
    lb.update([fast, flaky])
    ok = _every_twentieth_fails({flaky})
    one_at_a_time(lb, clock, 2700, lambda e: 0.001, ok=ok)  # type: ignore[arg-type]
    assert clock.now > 30.0
    picks = one_at_a_time(lb, clock, 2700, lambda e: 0.001, ok=ok)  # type: ignore[arg-type]
    assert 0.37 <= picks[flaky] / 2700 <= 0.44, picks


def test_a_dead_endpoint_leaves_after_three_tries_and_is_only_probed() -> None:
    """An endpoint that fails every try at once, one request at a time for 60 s (90
    turns a second). Its failures say nothing about speed, so it never looks fast. The
    3rd in a row (STREAK) prices it at 1 + 10 × 1/2 = 6×, 3× the band's edge, and each
    further failure dearer (7/8 → 9.75×). It gets 3 tries in rotation, then second
    opinions: at level 1 (3 turns apart) at most 1 + 45 / 3 = 16 in the first 0.5 s,
    at level 2 (at least 9 turns apart) 6, then one per level to EXPLORE_POWER (6), then
    staleness probes when failure × freshness < 0.1, 1 s + 10 s × ln(9.75) = 24 s after
    its last try: 2 in 60 s. At most 3 + 16 + 6 + 6 + 2 = 33 failures of 5,500 tries
    (the circuit breaker, 7 in a row, would take it out of the set first)."""
    clock = FakeClock()
    lb = balancer(clock)
    good, dead = endpoints(2)
    lb.update([good, dead])
    picks = one_at_a_time(lb, clock, 5500, lambda e: 0.001 if e is good else 0.0001,
                          ok=lambda e: e is good)
    assert clock.now > 60.0
    assert picks[dead] <= 33, picks
    dead_ms, good_ms = lb.latency_estimate_ms(dead), lb.latency_estimate_ms(good)
    assert dead_ms is not None and good_ms is not None and dead_ms >= good_ms


@given(st.lists(st.tuples(st.floats(1e-6, 100.0), st.booleans(), st.floats(0.0, 30.0)),
                max_size=60))
def test_every_estimate_is_bounded(answers: list[tuple[float, bool, float]]) -> None:
    """Whatever the answers: the failure rate stays in [0, 1]; the quality is the
    latency times a factor in [1, 1 + FAILURE_WEIGHT]; the latency estimate stays
    between the smallest and the largest of the reference and the answers it learned
    from (a weighted average of logarithms can leave neither end)."""
    reference = 0.001
    estimate = ResponseEstimate(0.0, 0.0, 1.0)
    now = 0.0
    seen = [reference]
    for latency, ok, wait in answers:
        now += wait
        estimate.observe(latency, ok, now, DECAY, math.log(reference))
        if ok or latency > reference:
            seen.append(max(latency, 20e-6))
        assert 0.0 <= estimate.failure_rate <= estimate.failure <= 1.0
        if estimate.measured:
            assert min(seen) * (1 - 1e-9) <= estimate.latency <= max(seen) * (1 + 1e-9)
            fresh = estimate.quality(now, DECAY, reference, math.log(reference), 0.0)
            priced = estimate.quality(now, DECAY, reference, math.log(reference),
                                      FAILURE_WEIGHT)
            assert fresh * (1 - 1e-9) <= priced <= fresh * (1 + FAILURE_WEIGHT) * (1 + 1e-9)


def test_one_answer_moves_the_latency_estimate_by_at_most_its_ratio_to_the_alpha() -> None:
    clock = FakeClock()
    estimate = ResponseEstimate(clock(), 0.0, 1.0)
    for _ in range(3):  # warmed up at 1 ms
        estimate.observe(0.001, True, clock(), DECAY, math.log(0.030))
        clock.advance(0.01)
    clock.advance(0.01)
    estimate.observe(0.1, True, clock(), DECAY, math.log(0.001))  # 100× slower
    assert estimate.latency == pytest.approx(0.001 * 100**ALPHA)


# -- 4. a new endpoint ramps in under load


def test_a_new_endpoint_is_not_flooded_while_cold_nor_starved_once_warm() -> None:
    """Two endpoints at 1 ms with 8 requests always in flight; a third joins, answering
    in 10 ms for its first second. Unmeasured, it ranks with the best and takes requests
    until its in-flight count matches the others' (about 8/3). Its 10 ms answers push it
    out of the band within 4, after which it gets only probes: under 10% of the picks
    in that second. Warm, it takes its third of the load (8 in flight spread by least
    load, equal turns): 28–39% over the next 6,000 picks."""
    clock = FakeClock()
    lb = balancer(clock)
    first = endpoints(2)
    lb.update(first)
    drive(lb, clock, 2000, lambda e: 0.001, concurrency=8)
    new = Endpoint("10.0.0.9:80")
    lb.update([*first, new])
    joined = clock.now

    def latency(e: Endpoint) -> float:
        return 0.010 if e is new and clock.now < joined + 1.0 else 0.001

    cold = Counter[Endpoint]()
    while clock.now < joined + 1.0:
        cold += drive(lb, clock, 500, latency, concurrency=8)
    assert cold[new] / sum(cold.values()) < 0.10, cold
    drive(lb, clock, 20_000, latency, concurrency=8)  # long enough for probes to find it warm
    warm = drive(lb, clock, 6000, latency, concurrency=8)
    assert 0.28 <= warm[new] / 6000 <= 0.39, warm


def test_an_unmeasured_endpoint_ranks_as_the_best_known() -> None:
    clock = FakeClock()
    lb = balancer(clock)
    fast, slow = endpoints(2)
    lb.update([fast, slow])
    lb.on_response(fast, 0.002, True)
    lb.on_response(slow, 0.050, True)
    new = Endpoint("10.0.0.9:80")
    lb.update([fast, slow, new])
    assert lb.latency_estimate_ms(new) == pytest.approx(lb.latency_estimate_ms(fast))


def test_the_first_answer_replaces_the_default_guess() -> None:
    clock = FakeClock()
    lb = balancer(clock)
    (only, other) = endpoints(2)
    lb.update([only, other])
    assert lb.latency_estimate_ms(only) == pytest.approx(30.0)  # defaultRtt, a guess
    lb.on_response(only, 0.0004, True)
    assert lb.latency_estimate_ms(only) == pytest.approx(0.4)
    assert lb.latency_estimate_ms(other) == pytest.approx(0.4)  # unmeasured: the best


# -- 5. outstanding load


def test_an_endpoint_busy_longer_than_its_estimate_is_avoided() -> None:
    """Two endpoints at 1 ms, one request out on each. One was sent 50 ms ago and has
    not come back (a heavy request, or a frozen endpoint); the other has just been sent.
    The stall (50 ms) stands in for the first one's quality, out of the band."""
    clock = FakeClock()
    lb = balancer(clock)
    stuck, busy = endpoints(2)
    lb.update([stuck, busy])
    for e in (stuck, busy):
        lb.on_response(e, 0.001, True)
    assert lb.pick(NO_REQUEST) is not None  # the first pick finds one idle: mark it busy
    chosen = lb.pick(NO_REQUEST)
    assert chosen is not None
    stuck_one = chosen if chosen is stuck else busy
    other = busy if stuck_one is stuck else stuck
    stuck_one.in_flight = 1
    clock.advance(0.050)
    lb.on_response(other, 0.001, True)  # the other answers and takes one more
    other.in_flight = 1
    assert {lb.pick(NO_REQUEST) for _ in range(20)} == {other}


def test_a_burst_placed_before_any_answer_is_read_does_not_make_busy_endpoints_stalled() -> None:
    """hey's 50 workers fire in step: the proxy places 50 requests in a row, 0.2 ms of
    its own time each, and reads no answer meanwhile. Two endpoints at 1 ms, one at
    50 ms (out of the band since its warm-up). Measured up to now, the fast endpoints'
    silence reached 10 ms within the burst, and × (1 + ~12 in flight) they cost more
    than the idle slow one (50 ms): it took ~8% of every burst (slow_endpoint's p99 was
    its 50 ms; here 4 of 50). Measured up to the last answer heard, nobody has been
    silent during the burst: the slow endpoint gets only the one second opinion that
    fell due at its warm-up (deterministic: three endpoints are scanned, no draw)."""
    clock = FakeClock()
    lb = balancer(clock)
    fast1, fast2, slow = endpoints(3)
    lb.update([fast1, fast2, slow])
    for _ in range(2):
        for e, latency in ((fast1, 0.001), (fast2, 0.001), (slow, 0.050)):
            lb.on_response(e, latency, True)
    picks: Counter[Endpoint] = Counter()
    for _ in range(50):
        chosen = lb.pick(NO_REQUEST)
        assert chosen is not None
        chosen.in_flight += 1
        picks[chosen] += 1
        clock.advance(0.0002)
    assert picks[slow] <= 1
    assert abs(picks[fast1] - picks[fast2]) <= 1


def test_load_is_compared_exactly_among_equals() -> None:
    """Equal qualities, different loads: the least loaded wins every pick (no band on
    load), as least-request would choose."""
    clock = FakeClock()
    lb = balancer(clock)
    a, b, c = endpoints(3)
    lb.update([a, b, c])
    for e in (a, b, c):
        lb.on_response(e, 0.001, True)
    a.in_flight, b.in_flight, c.in_flight = 2, 1, 3
    assert {lb.pick(NO_REQUEST) for _ in range(20)} == {b}


def test_weights_share_turns_exactly_one_request_at_a_time() -> None:
    """Weights 3 and 1: capacities 1.5 and 0.5, strides 1/1.5 and 1/0.5, so per 2
    units of virtual time the heavy endpoint is picked 3 times and the light one once."""
    clock = FakeClock()
    lb = balancer(clock)
    heavy, light = Endpoint("h", weight=3), Endpoint("l", weight=1)
    lb.update([heavy, light])
    picks = one_at_a_time(lb, clock, 4000, lambda e: 0.001)
    assert abs(picks[heavy] - 3000) <= 2, picks


# -- staleness: a recovered endpoint comes back


def test_a_recovered_endpoint_wins_its_share_back() -> None:
    """Three endpoints at 1 ms; one is 10× slower for the first 30 s, then recovers. It
    is probed at most 13 s after its last answer (see the slow-endpoint test), and each
    probe replaces what aged (weight ≥ 1 - e^(-1.2) = 0.7 at that age): two probes bring
    it within the band (10^(0.3 × 0.3) = 1.2×), then it takes turns again. By 30 s after
    the recovery it has a full third of the picks again (≥ 30% over 5 s)."""
    clock = FakeClock()
    lb = balancer(clock)
    members = endpoints(3)
    lb.update(members)
    slow = members[2]

    def latency(e: Endpoint) -> float:
        return 0.010 if e is slow and clock.now < 1030.0 else 0.001

    while clock.now < 1030.0:
        one_at_a_time(lb, clock, 100, latency)
    while clock.now < 1060.0:
        one_at_a_time(lb, clock, 100, latency)
    back = one_at_a_time(lb, clock, 450, latency)
    assert back[slow] / 450 >= 0.30, back
