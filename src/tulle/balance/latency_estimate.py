"""A per-endpoint latency estimate that decays with time: EWMA, optionally peak-sensitive.

Theory of operation (the facts from tower's ``load/peak_ewma.rs``, which
linkerd2-proxy uses, and finagle's ``PeakEwma``; the code is ours). The estimate
is a moving average over *time*, not over samples: an observation ``rtt`` made
``elapsed`` seconds after the previous update is blended in with weight
``1 - exp(-elapsed / decay)``. Reading the estimate counts as observing 0, so an
endpoint nobody sends to drifts back towards "fast" and is tried again — this is
how a recovered endpoint wins traffic back. With ``peak`` set, an observation
above the estimate replaces it at once: one slow answer is enough to move
traffic away, and only time brings it back.

Without ``peak`` (``least-response-time``) the estimate is a plain time-weighted
EWMA of the observations: reading it changes nothing, so it moves only as answers
come in, with the ``decay`` time constant — smoother, and slower to react.

A new endpoint starts at ``default_rtt`` (30 ms in Linkerd): slow enough that
endpoints known to be fast are preferred, fast enough that it gets tried — or,
when it joins endpoints that have already been measured, at their median
(`initial`), so that a pod added by a scale-up gets its first requests within
moments instead of after the default has decayed. Its first answer then
*replaces* the starting guess outright (here we differ from tower,
which lets the default decay with time like any estimate): the default is a
guess, not a measurement, and decaying 30 ms down to a 0.3 ms loopback answer
would take 10 s × ln 100 ≈ 46 s, during which a 50 ms endpoint still looks
comparable to the fast ones.

Failures: an error that came back fast must not make an endpoint look attractive
(the "black hole" a failing endpoint becomes under least-latency balancing), so a
failed request is observed as at least twice the current estimate and at least
``default_rtt``; repeated failures push the estimate up geometrically, and decay
brings it back once they stop.
"""

from __future__ import annotations

import math

from tulle.balance.clock import Clock


class LatencyEstimate:
    """The latency estimate of one endpoint (seconds), read with :meth:`get`."""

    __slots__ = ("_clock", "_decay", "_measured", "_peak", "default_rtt", "stamp", "value")

    def __init__(
        self,
        clock: Clock,
        decay: float,
        default_rtt: float,
        peak: bool,
        initial: float | None = None,
    ) -> None:
        self._clock = clock
        self._decay = decay
        self._peak = peak
        self.default_rtt = default_rtt
        self.value = default_rtt if initial is None else initial
        self.stamp = clock()
        self._measured = False  # False until the first answer replaces the default

    def _blend(self, rtt: float) -> float:
        now = self._clock()
        elapsed = now - self.stamp
        self.stamp = now
        if self._peak and rtt > self.value:
            self.value = rtt
        elif elapsed > 0.0:
            keep = math.exp(-elapsed / self._decay)
            self.value = self.value * keep + rtt * (1.0 - keep)
        return self.value

    @property
    def measured(self) -> bool:
        """True once an answer replaced the starting guess."""
        return self._measured

    def get(self) -> float:
        """The estimate now (peak: decayed towards 0 for the time since the last update)."""
        return self._blend(0.0) if self._peak else self.value

    def observe(self, latency: float, ok: bool) -> None:
        """A request answered (``ok``) or failed after ``latency`` seconds."""
        if not ok:
            latency = max(latency, 2.0 * self.value, self.default_rtt)
        if not self._measured:
            self._measured = True
            self.value, self.stamp = latency, self._clock()
            return
        self._blend(latency)
