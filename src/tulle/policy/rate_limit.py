"""Local rate limits: integer GCRA buckets, as Linkerd's ``HTTPLocalRateLimitPolicy``.

Each limit is the generic cell rate algorithm (the "virtual scheduling" form of ITU-T
I.371; what the ``governor`` crate behind linkerd2-proxy's limiter implements): a
request is let through when it arrives no earlier than ``tolerance`` before its
*theoretical arrival time*, which each admitted request pushes one ``interval`` further.
With ``interval = 1 s / rate`` and a burst of one second's worth (``tolerance =
(rate - 1) × interval``, governor's ``Quota::per_second``), a limit of R per second
admits at most R at once and R per second after. The state is one integer per bucket,
in nanoseconds on the proxy's clock (the time the request's head arrived, which the
exchange already has), so a check is a few integer operations and allocates nothing.

`LocalRateLimit` combines them as linkerd2-proxy does: the ``total`` limit first; then a
client named in an ``override`` uses that override's bucket (shared by the clients it
names); any other client its own ``identity`` bucket, with every client without an
identity (plaintext) sharing one. Over a limit the request gets 429 with Retry-After
(seconds, rounded up) and is counted by which limit said no.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

NANOS: Final = 1_000_000_000
# Per-identity buckets kept at most; past this, buckets that are full again (idle for
# a second or more) are dropped, so a flood of identities cannot grow the proxy.
MAX_BUCKETS: Final = 10_000

# Which limit refused the last request (`LocalRateLimit.refused_by`).
TOTAL: Final = 1
IDENTITY: Final = 2
OVERRIDE: Final = 3
LIMIT_NAMES: Final = ("", "total", "identity", "override")


class Bucket:
    """One GCRA limit of ``rate`` requests per second."""

    __slots__ = ("interval", "rate", "tat", "tolerance")

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.interval = NANOS // rate
        self.tolerance = self.interval * (rate - 1)
        self.tat = 0  # theoretical arrival time of the next request, ns

    def take(self, now: int) -> int:
        """0 if a request arriving at ``now`` (ns) is admitted, else the nanoseconds
        until one would be."""
        tat = self.tat
        if tat < now:
            tat = now
        wait = tat - self.tolerance - now
        if wait > 0:
            return wait
        self.tat = tat + self.interval
        return 0


class LocalRateLimit:
    """The limits of one Server (see the module note)."""

    __slots__ = ("_buckets", "identity_rate", "overrides", "refused_by", "refused_rate",
                 "settings", "total")

    def __init__(self, total: int | None, identity: int | None,
                 overrides: Sequence[tuple[int, Sequence[str]]] = (),
                 settings: object = None) -> None:
        self.total = Bucket(total) if total else None
        self.identity_rate = identity or 0
        # One bucket per override, shared by the identities it names.
        self.overrides: dict[str, Bucket] = {}
        for rate, clients in overrides:
            bucket = Bucket(rate)
            for client in clients:
                self.overrides.setdefault(client, bucket)
        self._buckets: dict[str | None, Bucket] = {}
        self.refused_by = 0
        self.refused_rate = 0
        self.settings = settings  # what it was made from (kept across reloads if equal)

    def check(self, identity: str | None, now: int) -> int:
        """0 if the request is admitted, else nanoseconds to wait (`refused_by` and
        `refused_rate` say which limit)."""
        total = self.total
        if total is not None:
            wait = total.take(now)
            if wait:
                self.refused_by = TOTAL
                self.refused_rate = total.rate
                return wait
        if identity is not None:
            override = self.overrides.get(identity)
            if override is not None:
                wait = override.take(now)
                if wait:
                    self.refused_by = OVERRIDE
                    self.refused_rate = override.rate
                return wait
        if self.identity_rate:
            bucket = self._buckets.get(identity)
            if bucket is None:
                bucket = self._new_bucket(identity, now)
            wait = bucket.take(now)
            if wait:
                self.refused_by = IDENTITY
                self.refused_rate = bucket.rate
                return wait
        return 0

    def _new_bucket(self, identity: str | None, now: int) -> Bucket:
        buckets = self._buckets
        if len(buckets) >= MAX_BUCKETS:
            for key in [key for key, bucket in buckets.items() if bucket.tat <= now]:
                del buckets[key]
        bucket = buckets[identity] = Bucket(self.identity_rate)
        return bucket
