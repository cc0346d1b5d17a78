"""Expected-latency: each request goes where it is expected to be answered soonest — the default.

Derived from how Linkerd's balancer (peak-EWMA with power of two choices, which
``peak-ewma`` reproduces) fails its users (issue 11; linkerd2 #14086, #9652, #5017,
#11043), one rule per failure:

1. **Equal endpoints starve.** Under light load nothing is in flight, so the cost is
   latency alone; noise orders equal endpoints, and P2C never picks the last of three.
   Here, qualities (below) within ``BAND``× of the best count as *equal*, and equals
   take turns: an earliest-deadline-first rotation in which each pick moves the
   endpoint's deadline on by (1 + ``FAILURE_WEIGHT`` × failure rate) ÷ capacity
   (Envoy's weighted least-request uses an EDF schedule the same way). Equal endpoints
   get exactly equal shares even one request at a time; one failing 5% gets 1/1.5 of
   a share. Latency inside the band does not shorten turns: if it did, whichever
   estimate converged first would earn more answers, converge faster still and pull
   away (a cold first answer would then starve an equal endpoint after all). An
   endpoint ranks with the best until its second answer
   (`tulle.balance.response_estimate`). And an endpoint once out of the band is not
   out for good: up to ``SCAN_LIMIT`` endpoints, an idle one gets a *second opinion*
   every (quality ÷ band edge)^k turns, k the second opinions in a row that upheld the
   verdict (see ``EXPLORE_POWER``), so an equal endpoint that a paused process or a few
   unlucky answers pushed out is back within a few turns at any request rate, while a
   truly slow one is asked less and less often. (Above ``SCAN_LIMIT`` the time-based
   staleness probes of `response_estimate` do this: there each of many proxies sends
   each endpoint a trickle, and turn-based second opinions would add up to a share.)
2. **A slow endpoint ranked second of three gets a third of the picks.** P2C's share
   depends on rank, not on how much worse an endpoint is. Up to ``SCAN_LIMIT``
   endpoints, every pick scans them all, so a slow endpoint gets a request only when
   it is truly the cheapest. Above that, ``SAMPLE`` endpoints drawn at random (by
   weight) are scanned: a scan of 50 would cost ~8 µs a pick, and random candidates
   keep many proxies from herding. With four candidates an endpoint must be worse than
   the other three to be stuck with a request. With P2C one worse partner is enough,
   which at 100 proxies × 50 endpoints overloaded the slow ones (bench/simulate_lb.py).
3. **Failures compound.** Failure rate and latency are estimated apart and meet only
   here, bounded: quality = latency × (1 + ``FAILURE_WEIGHT`` × failure rate). A
   fast endpoint failing 5% is 1.5× dearer: it gets fewer turns but stays in rotation.
   One failing 10% or more leaves the rotation while the others can serve (second
   opinions aside), and nothing is ever dearer than 11× its latency. Consecutive
   failures are the circuit breaker's business (it takes the endpoint out of the set),
   outliers the outlier detector's; the balancer only prices.
4. **Outstanding load.** cost = quality × (1 + in-flight ÷ capacity), compared exactly
   (the band applies to quality, never to load): among the good endpoints a request
   goes to the one with the least outstanding work per unit of weight. That is
   least-request among equals, which uneven request costs need (linkerd2 #11043), and a
   slow endpoint gets requests when the fast ones are that much busier. While an
   endpoint has requests out, how long it has been silent (from its last answer, or
   from becoming busy, to the last answer from any endpoint) stands in for its quality
   if longer: an endpoint busy with a request 100× heavier than the rest, or frozen,
   is avoided before any answer says so, and the requests that would have queued
   behind it do not teach the balancer that a fast endpoint is slow. Silence is
   measured up to the last answer heard, not up to now: while the proxy itself is busy
   placing a burst of requests it reads no answers, and every busy endpoint would
   look stalled (an idle slow one then took a share of each burst).
5. **New endpoints** are unmeasured, so they rank with the best and join the rotation
   at once. A cold one shows its first slow answers and is passed over until warm; no
   slow start is needed for that (measured: bench/results/simulate_lb.md), and
   ``slowStart`` still applies on top when configured.

Capacity is the endpoint's weight ÷ the mean weight, so weights shape both the turns
and the load an endpoint may hold, whatever their scale.

Theory of operation, per pick: (a) every ``REFRESH_SECONDS`` the reference (the best
measured latency) is recomputed; (b) each candidate's quality is read
(`ResponseEstimate.quality`, or its silence if longer); (c) qualities below the
band's edge, ``BAND`` × the best candidate's, count as the best's, and such a
candidate's deadline is never more than one of its turns ahead of the virtual time;
(d) cost = quality × (1 + in-flight ÷ capacity), the lowest cost wins, an exact tie
goes to the earliest deadline — unless an idle candidate out of the band is due (its
deadline has passed), which gets the pick as a second opinion; (e) the winner's turn
starts at its deadline, or at the virtual time − ``CREDIT`` if later (without the
credit for a second opinion), and lasts (1 + ``FAILURE_WEIGHT`` × failure rate) ÷
capacity, × (quality ÷ band edge)^k when out of the band; the virtual time moves up to
where the turn began. An answer that brings what the endpoint learned back into the band
ends its verdict and brings its deadline back to one turn away.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Final

from tulle.balance.base import Balancer, E, RequestView
from tulle.balance.clock import Clock
from tulle.balance.response_estimate import FRESH, WARM_UP, ResponseEstimate
from tulle.balance.weighted_random import WeightedSampler

# Qualities within this factor of the best count as equal. Wide enough for noise
# between equal endpoints (two log-averages of answers jittering ±50% differ by under
# 1.2× almost always, and one answer 100× slower moves an estimate 1.6×), narrow
# enough that an endpoint twice as slow is not "equal".
BAND: Final = 2.0
# A failure rate f makes an endpoint (1 + FAILURE_WEIGHT × f) times dearer: 5% → 1.5×,
# 10% → 2× (out of the band), 100% → 11×.
FAILURE_WEIGHT: Final = 10.0
# Up to this many endpoints every pick scans them all (~1.5 µs at 8); above, SAMPLE.
SCAN_LIMIT: Final = 8
SAMPLE: Final = 4
# Out of the band, an idle endpoint still gets a turn once every (quality ÷ band edge)
# to the power k, k the answers in a row to such turns that were out of the band too
# (slower than BAND × the reference, or failed), at least 1 and at most this: the surer
# the verdict, the rarer the second opinion. Judged 5× slow on answers that may all
# have been cold, an endpoint is tried again after 5 turns, and an answer that brings
# its estimate back into the band ends the verdict; found slow 8 times in a row, 10×
# slower is tried every 390,625 turns (in practice, at the ~13 s staleness probe).
EXPLORE_POWER: Final = 8
# A second opinion upholds a verdict only this long after the last one that did: answers
# close together may share one passing cause (a paused process, a cold start, a full
# queue). At 0.1 s a newcomer cold for its first 3 s had its verdict at full strength
# before it warmed and waited ~13 s more (bench/simulate_lb.py); at 0.5 s it is back
# within 2 s of warming, and a slow endpoint gets ~0.1 points more of the traffic.
CONFIRM_SPACING: Final = 0.5
# Turns an endpoint may be behind the rotation and still catch up: enough for one drawn
# late above SCAN_LIMIT, too few for one back from a long absence to take a burst.
CREDIT: Final = 2.0
# How often the reference latency is recomputed (O(n)); answers only lower it between.
REFRESH_SECONDS: Final = 0.1


class ExpectedLatency(Balancer[E]):
    """Lowest quality × (1 + in-flight ÷ capacity); equals take turns (see module note)."""

    __slots__ = ("_clock", "_decay", "_drawn", "_fresh", "_heard", "_members",
                 "_reference", "_reference_known", "_reference_log", "_refreshed", "_rng",
                 "_sampler", "_seen_any", "_states", "_virtual_time")

    def __init__(
        self,
        clock: Clock,
        *,
        decay: float,
        default_rtt: float,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._decay = decay
        self._fresh = FRESH * decay  # an estimate this recent is taken as it is
        self._rng = rng or random.Random()
        self._sampler: WeightedSampler[E] = WeightedSampler(self._rng)
        self._states: dict[E, ResponseEstimate] = {}
        # A list, not a tuple: compiled, a list is iterated by index, not by an iterator.
        self._members: list[tuple[E, ResponseEstimate]] = []
        # The candidates of a pick above SCAN_LIMIT, refilled in place (no list per pick).
        self._drawn: list[tuple[E, ResponseEstimate]] = []
        self._virtual_time = 0.0
        self._seen_any = False
        # The best measured latency (its log too); ``defaultRtt`` until one is measured.
        self._reference_known = False
        self._reference = default_rtt
        self._reference_log = math.log(default_rtt)
        self._refreshed = -math.inf
        # When any endpoint last answered: a stall is measured up to then, not up to now.
        self._heard = clock()

    # -- the endpoint set

    def update(self, endpoints: Sequence[E]) -> None:
        now = self._clock()
        old = self._states
        weights = [max(1, e.weight) for e in endpoints]
        mean_weight = sum(weights) / len(weights) if weights else 1.0
        states: dict[E, ResponseEstimate] = {}
        for endpoint, weight in zip(endpoints, weights, strict=True):
            state = old.get(endpoint)
            if state is None:
                # Joining a running set: due now. The first set: in a random order, so
                # that proxies started together do not take turns in step.
                offset = self._rng.random() if not self._seen_any else 0.0
                state = ResponseEstimate(now, self._virtual_time + offset, weight / mean_weight)
            else:
                state.capacity = weight / mean_weight
            states[endpoint] = state
        self._states = states
        self._members = list(states.items())
        self._drawn = list(self._members[:SAMPLE])
        self._sampler.update(endpoints)
        self._seen_any = self._seen_any or bool(states)
        self._refresh_reference(now)

    def _refresh_reference(self, now: float) -> None:
        self._refreshed = now
        best = min((s.log_latency for _, s in self._members if s.measured), default=None)
        if best is not None:
            self._reference_known = True
            self._reference_log = best
            self._reference = math.exp(best)

    # -- picking

    def pick(self, request: RequestView) -> E | None:
        members = self._members
        if len(members) < 2:
            return members[0][0] if members else None
        now = self._clock()
        if now - self._refreshed > REFRESH_SECONDS:
            self._refresh_reference(now)
        scan = len(members) <= SCAN_LIMIT
        candidates: list[tuple[E, ResponseEstimate]]
        if scan:
            candidates = members
        else:
            drawn = self._drawn
            index = self._sampler.index
            for slot in range(SAMPLE):
                drawn[slot] = members[index()]
            candidates = drawn
        reference = self._reference
        heard = self._heard
        fresh_since = now - self._fresh
        best_quality = math.inf
        for endpoint, state in candidates:
            if state.stamp >= fresh_since:  # the common case, inlined
                quality = (state.latency if state.answers >= WARM_UP else reference) * (
                    1.0 + FAILURE_WEIGHT * state.failure)
            else:
                quality = state.quality(now, self._decay, reference, self._reference_log,
                                        FAILURE_WEIGHT)
            if endpoint.in_flight and heard - state.busy_since > quality:
                quality = heard - state.busy_since  # silent longer than it should be
            state.scratch = quality
            if quality < best_quality:
                best_quality = quality
        limit = BAND * best_quality
        chosen, chosen_state = candidates[0]
        chosen_cost = chosen_due = math.inf
        explore: ResponseEstimate | None = None
        explore_endpoint = chosen
        virtual_time = self._virtual_time
        for endpoint, state in candidates:
            quality = state.scratch
            due = state.deadline
            if quality < limit:
                quality = best_quality
                # In the band, never more than one of its own turns away: a deadline set
                # far ahead by a second opinion must not keep it out once it is back.
                turn = (1.0 + FAILURE_WEIGHT * state.failure) / state.capacity
                if due > virtual_time + turn:
                    due = state.deadline = virtual_time + turn
            elif (scan and due <= virtual_time and not endpoint.in_flight
                  and (explore is None or due < explore.deadline)):
                explore, explore_endpoint = state, endpoint  # idle, out of the band, due
            cost = quality * (1.0 + endpoint.in_flight / state.capacity)
            if cost < chosen_cost or (cost == chosen_cost and due < chosen_due):
                chosen, chosen_state, chosen_cost, chosen_due = endpoint, state, cost, due
        if explore is not None:  # its turn has come: one request tells how it does now
            chosen, chosen_state, chosen_due = explore_endpoint, explore, explore.deadline
        # A second opinion: what it learned says out of the band (if staleness has let
        # it back into the ranking, this is how its verdict gets checked).
        failure_factor = 1.0 + FAILURE_WEIGHT * chosen_state.failure
        learned = (chosen_state.latency if chosen_state.answers >= WARM_UP else reference
                   ) * failure_factor
        worse = max(learned, chosen_state.scratch)
        chosen_state.exploring = worse >= limit
        turn = failure_factor / chosen_state.capacity
        if worse >= limit:
            turn *= (worse / limit) ** max(1, chosen_state.confirmed)
        if not chosen.in_flight:
            chosen_state.busy_since = now
        # A turn lasts (1 + FAILURE_WEIGHT × failure rate) ÷ capacity: latencies in the
        # band are equal, so they take equal turns (turns in proportion to speed would
        # let whichever estimate converged first pull away); failures and weight count.
        # Out of the band, a turn is (quality ÷ limit)^k times longer (EXPLORE_POWER).
        # A second opinion starts now: the catch-up CREDIT is for endpoints in the band.
        start = max(chosen_due, virtual_time if worse >= limit else virtual_time - CREDIT)
        if start > virtual_time:
            self._virtual_time = start
        chosen_state.deadline = start + turn
        return chosen

    # -- feedback

    def on_response(self, endpoint: E, latency: float, ok: bool) -> None:
        state = self._states.get(endpoint)
        if state is None:
            return  # removed by an update since it was picked
        now = self._clock()
        self._heard = now
        state.observe(latency, ok, now, self._decay, self._reference_log)
        limit = BAND * self._reference
        learned = state.latency if state.answers >= WARM_UP else self._reference
        if learned * (1.0 + FAILURE_WEIGHT * state.failure) < limit:
            if state.confirmed:  # a verdict overturned: back in the rotation now
                turn = (1.0 + FAILURE_WEIGHT * state.failure) / state.capacity
                state.deadline = min(state.deadline, self._virtual_time + turn)
            state.confirmed = 0  # what it learned is in the band again: no verdict stands
        elif (state.exploring and (not ok or latency >= limit)
              and state.confirmed < EXPLORE_POWER
              and state.stamp - state.confirmed_at >= CONFIRM_SPACING):
            state.confirmed += 1  # a second opinion upheld the verdict
            state.confirmed_at = state.stamp
        state.exploring = False
        if state.measured and (not self._reference_known
                               or state.log_latency < self._reference_log):
            self._reference_known = True
            self._reference_log = state.log_latency
            self._reference = state.latency

    def latency_estimate_ms(self, endpoint: E) -> float | None:
        """The latency estimate for ``endpoint`` in ms (for /metrics), None if unknown:
        as ranked now (drifted if stale, the reference while warming up), without the
        failure factor."""
        state = self._states.get(endpoint)
        if state is None:
            return None
        return state.quality(self._clock(), self._decay, self._reference,
                             self._reference_log, 0.0) * 1000.0
