"""Peak-EWMA and least-response-time on a fake clock: the estimate, and traffic moving
off a slow endpoint and back after it recovers."""

from __future__ import annotations

import math
import random
from collections import Counter

from balance_testkit import NO_REQUEST, Endpoint, FakeClock, drive, endpoints

from tulle.balance import LeastResponseTime, PeakEwma
from tulle.balance.latency_estimate import LatencyEstimate


def test_new_estimate_is_the_default_rtt_and_decays_towards_zero() -> None:
    clock = FakeClock()
    estimate = LatencyEstimate(clock, decay=10.0, default_rtt=0.030, peak=True)
    assert estimate.get() == 0.030
    clock.advance(10.0)
    assert math.isclose(estimate.get(), 0.030 / math.e)


def test_the_first_answer_replaces_the_default() -> None:
    clock = FakeClock()
    estimate = LatencyEstimate(clock, decay=10.0, default_rtt=0.030, peak=True)
    estimate.observe(0.0003, ok=True)
    assert estimate.get() == 0.0003


def test_peak_replaces_the_estimate_at_once_and_time_brings_it_back() -> None:
    clock = FakeClock()
    estimate = LatencyEstimate(clock, decay=10.0, default_rtt=0.001, peak=True)
    estimate.observe(0.001, ok=True)
    estimate.observe(0.050, ok=True)
    assert estimate.get() == 0.050
    clock.advance(1.0)
    estimate.observe(0.001, ok=True)  # below: blended in by the time since the last update
    keep = math.exp(-0.1)
    assert math.isclose(estimate.value, 0.050 * keep + 0.001 * (1 - keep))


def test_plain_ewma_is_not_moved_by_reads_and_follows_samples_over_time() -> None:
    clock = FakeClock()
    estimate = LatencyEstimate(clock, decay=10.0, default_rtt=0.030, peak=False)
    estimate.observe(0.030, ok=True)
    clock.advance(100.0)
    assert estimate.get() == 0.030  # no decay on read
    estimate.observe(0.050, ok=True)  # 100 s since the last update: almost all new
    assert 0.0499 < estimate.get() < 0.050
    estimate.observe(0.010, ok=True)  # no time since the last: no weight
    assert 0.0499 < estimate.get() < 0.050


def test_a_fast_failure_does_not_make_an_endpoint_look_fast() -> None:
    clock = FakeClock()
    estimate = LatencyEstimate(clock, decay=10.0, default_rtt=0.030, peak=True)
    estimate.observe(0.0001, ok=False)
    assert estimate.get() == 0.060  # twice the estimate, at least the default RTT
    estimate.observe(0.0001, ok=False)
    assert estimate.get() == 0.120
    fresh = LatencyEstimate(clock, decay=10.0, default_rtt=0.030, peak=True)
    fresh.observe(0.001, ok=True)
    fresh.observe(0.0001, ok=False)
    assert fresh.get() == 0.030  # at least the default RTT


def _peak_ewma(clock: FakeClock) -> PeakEwma[Endpoint]:
    return PeakEwma(clock, decay=10.0, default_rtt=0.030, rng=random.Random(3))


def test_new_endpoints_start_at_the_default_rtt() -> None:
    clock = FakeClock()
    balancer = _peak_ewma(clock)
    first, second = endpoints(2)
    balancer.update([first, second])  # nothing measured yet
    assert balancer.cost(first) == balancer.cost(second) == 0.030


def test_an_endpoint_joining_measured_ones_starts_at_their_median() -> None:
    """A scale-up must get traffic soon: the newcomer is not priced at the 30 ms
    default next to endpoints known to answer in 2 ms."""
    clock = FakeClock()
    balancer = _peak_ewma(clock)
    known, new = endpoints(2)
    balancer.update([known])
    balancer.on_response(known, 0.002, True)
    balancer.update([known, new])
    assert balancer.cost(new) == balancer.cost(known) == 0.002
    balancer.on_response(new, 0.004, True)  # its first answer replaces the guess
    assert balancer.cost(new) == 0.004


def test_peak_ewma_moves_traffic_off_a_slow_endpoint_and_back() -> None:
    """Three endpoints at 1 ms; c jumps to 50 ms, later recovers. One request at a
    time, 10 ms apart, so only latency decides. Bound: after c's first slow answer
    its estimate is 50 ms and only decays (×e every 10 s) — it cannot win a
    comparison against a 1 ms endpoint until 50 ms × exp(-t/10 s) < 1 ms, that is
    for t < 10 s × ln 50 ≈ 39 s. So in the next 1,000 requests (10 s) it gets at
    most the one that revealed the jump (plus one for a tie at the boundary)."""
    clock = FakeClock()
    balancer = _peak_ewma(clock)
    a, b, c = endpoints(3)
    balancer.update([a, b, c])
    slow = {c: 0.050}

    def latency(endpoint: Endpoint) -> float:
        return slow.get(endpoint, 0.001)

    def run(n: int) -> Counter[Endpoint]:
        picks: Counter[Endpoint] = Counter()
        for _ in range(n):
            chosen = balancer.pick(NO_REQUEST)
            assert chosen is not None
            picks[chosen] += 1
            balancer.on_response(chosen, latency(chosen), True)
            clock.advance(0.010)
        return picks

    slow.clear()
    warm = run(600)
    assert min(warm.values()) > 100  # all three share while equal
    slow[c] = 0.050
    run(30)  # c is picked (and revealed slow) with high probability in 30 tries
    after = run(1000)
    assert after[c] <= 2
    slow.clear()  # c recovers; time (40+ s) makes it worth trying, then it earns its share
    run(6000)
    back = run(1000)
    assert back[c] >= 200, back


def test_least_response_time_prefers_the_fastest_under_load() -> None:
    clock = FakeClock()
    balancer: LeastResponseTime[Endpoint] = LeastResponseTime(
        clock, decay=1.0, default_rtt=0.030, rng=random.Random(2)
    )
    a, b, c = endpoints(3)
    balancer.update([a, b, c])
    latency = {a: 0.001, b: 0.001, c: 0.020}
    drive(balancer, clock, 2000, latency.__getitem__, concurrency=4)  # learn
    picks = drive(balancer, clock, 3000, latency.__getitem__, concurrency=4)
    assert picks[c] < 0.05 * 3000, picks
    assert min(picks[a], picks[b]) > 0.3 * 3000
