"""Ring-hash: consistent hashing on a header, a cookie or the client address, with bounded loads.

Stickiness: requests with the same key go to the same endpoint while it is there
and not overloaded, so per-key caches on the endpoints stay warm.

The ring (Karger et al.'s consistent hashing, as ketama and Envoy's RING_HASH do
it): each endpoint is hashed onto a circle of 64-bit points ``POINTS_PER_WEIGHT ×
weight`` times, at points derived from its address alone; a key goes to the
first endpoint point clockwise from the key's own hash. Because an endpoint's
points depend only on its address and weight, removing one of N endpoints moves
only the keys that were on it (about 1/N of them) and adding one takes about
1/(N+1) from the others.

Bounded loads (Mirrokni, Thorup, Zadimoghaddam, "Consistent Hashing with Bounded
Loads", 2018; Vimeo's and HAProxy's ``hash-balance-factor``): no endpoint may hold
more than ``factor × (in-flight total + 1) × weight / total weight`` requests in
flight. A key whose endpoint is full walks on clockwise to the next endpoint with
room; since the capacities add up to more than the load, one always has room. So a
hot key spills over to its ring neighbours instead of melting one endpoint, and
cold keys stay where they were.

A request with no key (the header or cookie missing) is placed at a random point
of the ring, which still respects the bound.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Sequence

from tulle.balance.base import Balancer, E, RequestView

# Points per unit of weight. 160 is ketama's (40 hashes × 4 points each): with 160
# points an endpoint's share of the ring is within about ±8% (1/√160) of its fair
# share; more points cost memory and ring-build time for little gain.
POINTS_PER_WEIGHT = 160
# Rings beyond this many points are scaled down (all weights alike), so that a
# weight of 1000 does not build a ring of 160,000 points.
MAX_RING_POINTS = 65_536


def hash64(data: bytes) -> int:
    """A well-mixed, stable 64-bit hash (the same in every proxy and Python run)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _cookie(header: bytes | None, name: bytes) -> bytes | None:
    """The value of cookie ``name`` in a ``Cookie`` header (RFC 6265 syntax)."""
    if header is None:
        return None
    for part in header.split(b";"):
        key, sep, value = part.strip().partition(b"=")
        if sep and key == name:
            return value
    return None


class RingHash(Balancer[E]):
    """Consistent hashing with bounded loads on one request property."""

    __slots__ = ("_cookie", "_endpoints", "_factor", "_header", "_owners", "_points", "_rng",
                 "_total_weight")

    def __init__(
        self,
        *,
        header: str | None = None,
        cookie: str | None = None,
        balance_factor: float = 1.25,
        rng: random.Random | None = None,
    ) -> None:
        """Hash ``header``, else ``cookie``, else the client address."""
        self._header = header.lower().encode("latin-1") if header else None
        self._cookie = cookie.encode("latin-1") if cookie else None
        self._factor = balance_factor
        self._rng = rng or random.Random()
        self._endpoints: tuple[E, ...] = ()
        self._points: list[int] = []
        self._owners: list[E] = []
        self._total_weight = 0

    def update(self, endpoints: Sequence[E]) -> None:
        self._endpoints = tuple(endpoints)
        self._total_weight = sum(max(1, e.weight) for e in self._endpoints)
        per_weight = POINTS_PER_WEIGHT
        if self._total_weight * per_weight > MAX_RING_POINTS:
            per_weight = max(1, MAX_RING_POINTS // self._total_weight)
        ring: list[tuple[int, E]] = []
        for endpoint in self._endpoints:
            name = endpoint.address.encode()
            for i in range(max(1, endpoint.weight) * per_weight):
                ring.append((hash64(b"%s-%d" % (name, i)), endpoint))
        ring.sort(key=lambda point: point[0])
        self._points = [point for point, _ in ring]
        self._owners = [owner for _, owner in ring]

    def key(self, request: RequestView) -> bytes | None:
        """The bytes this request is hashed on, or None when it has none."""
        if self._header is not None:
            return request.header(self._header)
        if self._cookie is not None:
            return _cookie(request.header(b"cookie"), self._cookie)
        return request.client_ip

    def owner(self, key: bytes) -> E | None:
        """Where ``key`` goes when no endpoint is overloaded (for tests and tools)."""
        if not self._points:
            return None
        index = bisect.bisect_left(self._points, hash64(key)) % len(self._points)
        return self._owners[index]

    def pick(self, request: RequestView) -> E | None:
        points = self._points
        if not points:
            return None
        key = self.key(request)
        point = hash64(key) if key is not None else int(self._rng.random() * 2**64)
        index = bisect.bisect_left(points, point)
        endpoints = self._endpoints
        if len(endpoints) == 1:
            return endpoints[0]
        in_flight = sum(e.in_flight for e in endpoints)
        # Capacity per unit of weight, in requests: the bound of the paper with the
        # request about to be placed counted in.
        per_weight = self._factor * (in_flight + 1) / self._total_weight
        owners = self._owners
        n = len(points)
        tried: set[int] = set()
        for step in range(n):
            owner = owners[(index + step) % n]
            if owner.in_flight < per_weight * max(1, owner.weight):
                return owner
            tried.add(id(owner))
            if len(tried) == len(endpoints):
                break
        return owners[index % n]  # unreachable while factor > 1; the home endpoint

    def on_response(self, endpoint: E, latency: float, ok: bool) -> None:
        pass  # ring-hash places by key and in-flight load only
