"""What a balancer knows of one endpoint: how fast it answers and how often it fails,
each bounded, and how stale that knowledge is.

Theory of operation. Two estimates per endpoint, kept apart on purpose (peak-EWMA
folds failures into latency, each failure doubling the estimate, which is how a fast
endpoint failing 5% of requests came to rank below one ten times slower — issue 11):

- **latency**: for its first ``WARM_UP`` answers, the fastest of them (one cold answer
  is no verdict; two slow ones are); after that a moving average of the *logarithm* of
  answer times, a slower answer weighing ``ALPHA`` and a faster one ``ALPHA_DOWN``. In
  the log domain one answer 100× slower than the rest moves the estimate by
  100^``ALPHA`` ≈ 1.6× (a linear average would move it 11×), so a heavy request or a
  hiccup does not push an endpoint out of rotation; a faster answer counts for more,
  so an endpoint that was slow for a moment is believed again within two or three
  answers. The estimate always lies between the fastest and the slowest answer the
  endpoint gave: bounded by what was seen.
- **failure**: a moving average over *time* (weight ``1 − exp(−elapsed ÷ decay)`` per
  try, so "the last ``decay`` seconds" whatever the request rate) of 0 (ok) and 1
  (failed), in [0, 1]. ``STREAK`` failures in a row (0.0125% likely for a 5% endpoint)
  raise it to at least 1 − 2^−(streak − ``STREAK`` + 1) until the next success: a dead
  endpoint is noticed within three tries even by a proxy that sends it one request a
  second. A failure changes the latency estimate only when it came back *slower* than
  the estimate (a timeout says the endpoint is slow; a refused connection says nothing
  about its speed, and a fast error must not make it look fast).

**Until its ``WARM_UP``-th answer** an endpoint ranks as the reference, the best latency
the balancer knows: as fast as the best, so it gets tried at once. An unmeasured
endpoint must never rank last; that is how an equal endpoint starved for 10–20 s
under peak-EWMA.

**Staleness.** What was learned ages, but is not forgotten: an estimate whose last
answer is older than ``FRESH`` × ``decay`` is *ranked* as if it had drifted towards
the reference (and no failures) with time constant ``decay``; the stored estimate
stays, and the next answer replaces as much of it as has aged (its weight is at least
``1 − freshness``). So an endpoint nobody sends to gets tried again after a while —
about ``decay`` × ln(ln(how much worse it looked) ÷ ln(the balancer's band)) — and
that one answer decides: a still-slow endpoint goes straight back out (it does not sit
at the band's edge drawing probes from every proxy of a fleet), a recovered one comes
back in. A busy endpoint is always fresh and pays no ``exp()``.
"""

from __future__ import annotations

import math
from typing import Final

# One answer's weight in the log-latency average (see the module note for what it buys);
# an answer faster than the estimate weighs ALPHA_DOWN.
ALPHA: Final = 0.1
ALPHA_DOWN: Final = 0.3
# An endpoint with fewer answers than this ranks as the best known, and its estimate is
# the fastest of them: one cold answer is no verdict, two slow ones are. (Three cost a
# fleet: each of 100 proxies sends a slow endpoint one more request before it knows.)
WARM_UP: Final = 2
# Consecutive failures from which the failure rate counts as at least 1/2, 3/4, ...
STREAK: Final = 3
# An estimate is fresh for this fraction of ``decay`` after its last answer (1 s of
# Linkerd's 10 s): long enough that a busy endpoint never pays for staleness.
FRESH: Final = 0.1
# Answers faster than this are measured as this (the logarithm of 0 is not a number;
# a loopback answer takes ~100 µs, so nothing real is lost).
LATENCY_FLOOR: Final = 20e-6
LOG_FLOOR: Final = math.log(LATENCY_FLOOR)


class ResponseEstimate:
    """Latency and failure estimates of one endpoint, plus its place in the rotation.

    ``deadline``, ``capacity``, ``busy_since``, ``confirmed`` (and ``confirmed_at``),
    ``exploring`` and ``scratch`` belong to the balancer (its rotation, the endpoint's
    weight ÷ the mean weight, when the oldest request still out began to be the oldest,
    how many second opinions in a row kept it out of the band (and when the last did),
    whether one is under way, and a pick's note of its quality); they live here so that
    a pick reads one object per endpoint.
    """

    __slots__ = ("answers", "busy_since", "capacity", "confirmed", "confirmed_at", "deadline",
                 "exploring", "failure", "failure_rate", "latency", "log_latency", "measured",
                 "scratch", "stamp", "streak")

    def __init__(self, now: float, deadline: float, capacity: float) -> None:
        self.measured = False  # True once an answer told something about its speed
        self.answers = 0  # answers that told something about its speed, up to WARM_UP
        self.log_latency = 0.0
        self.latency = 0.0
        self.failure_rate = 0.0  # the moving average of failures
        self.streak = 0  # consecutive failures
        self.failure = 0.0  # what the cost uses: the average, or the streak's rate if higher
        self.stamp = now  # when it last answered (or was added)
        self.busy_since = now
        self.confirmed = 0  # second opinions in a row that kept it out of the band
        self.confirmed_at = -math.inf
        self.exploring = False  # picked while out of the band (a second opinion)
        self.deadline = deadline
        self.capacity = capacity
        self.scratch = 0.0

    def freshness(self, now: float, decay: float) -> float:
        """How much of what was learned still holds: 1 for ``FRESH × decay`` after the
        last answer, then ``exp(-(age - FRESH × decay) / decay)``."""
        age = now - self.stamp - FRESH * decay
        return 1.0 if age <= 0.0 else math.exp(-age / decay)

    def quality(self, now: float, decay: float, reference: float, reference_log: float,
                failure_weight: float) -> float:
        """Expected seconds for one request here with nothing queued: the latency (the
        reference's while warming up), made dearer by the failure rate (× ``1 +
        failure_weight × failure``, at most ``1 + failure_weight``), both ranked as
        drifted towards the reference if stale."""
        freshness = self.freshness(now, decay)
        if freshness == 1.0:
            latency = self.latency if self.answers >= WARM_UP else reference
            return latency * (1.0 + failure_weight * self.failure)
        if self.answers >= WARM_UP:
            latency = math.exp(reference_log + (self.log_latency - reference_log) * freshness)
        else:
            latency = reference
        return latency * (1.0 + failure_weight * self.failure * freshness)

    def observe(self, latency: float, ok: bool, now: float, decay: float,
                reference_log: float) -> None:
        """A try answered (``ok``) or failed after ``latency`` seconds.

        ``reference_log`` is the log of the best latency the balancer knows (of its
        ``defaultRtt`` while it knows none): a failure slower than that, from an
        endpoint not measured yet, says it is slow.
        """
        sample = math.log(latency) if latency > LATENCY_FLOOR else LOG_FLOOR
        elapsed = now - self.stamp
        # 1 - exp(-elapsed / decay), linear while that is within 5% of it.
        failure_weight = elapsed / decay if elapsed < 0.1 * decay else (
            1.0 - math.exp(-elapsed / decay))
        weight = ALPHA
        freshness = self.freshness(now, decay)
        if freshness < 1.0:
            weight = max(weight, 1.0 - freshness)  # replaces what has aged
        self.stamp = self.busy_since = now
        self.failure_rate += failure_weight * ((0.0 if ok else 1.0) - self.failure_rate)
        self.streak = 0 if ok else self.streak + 1
        self.failure = self.failure_rate
        if self.streak >= STREAK:
            self.failure = max(self.failure_rate, 1.0 - 0.5 ** (self.streak - STREAK + 1))
        if not ok and sample <= (self.log_latency if self.measured else reference_log):
            return  # a fast failure says nothing about speed
        if self.answers < WARM_UP:
            # Warming up: the fastest of its first answers.
            if not self.measured or sample < self.log_latency:
                self.log_latency = sample
            self.answers += 1
        elif sample < self.log_latency:
            self.log_latency += max(weight, ALPHA_DOWN) * (sample - self.log_latency)
        else:
            self.log_latency += weight * (sample - self.log_latency)
        self.measured = True
        self.latency = math.exp(self.log_latency)
