"""The one small interface every load-balancing algorithm implements.

A balancer holds the current endpoint set (``update``), picks one per request
(``pick``), and hears how each request it placed went (``on_response``), which
is all that latency-aware algorithms need. It sees endpoints only through
`Pickable` and requests only through `RequestView`, so an algorithm is written
and tested without the proxy.

State a balancer learns about an endpoint (an EWMA, a slow-start clock) is kept
by the balancer, keyed by the endpoint object; ``update`` keeps it for the
endpoints that stay, because the proxy hands the same objects back across
reloads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

from mypy_extensions import mypyc_attr


@mypyc_attr(allow_interpreted_subclasses=True)
class Pickable:
    """What a balancer may read of an endpoint (identity, weight, zone, load).

    ``address`` (``host:port``) names the endpoint the same way in every proxy, so
    that ring-hash puts a key on the same endpoint whichever proxy hashes it.
    ``in_flight`` is maintained by the proxy: requests sent and not yet answered.

    A base class rather than a Protocol: compiled, a balancer then reads the four
    fields of any endpoint directly instead of looking each up by name (seven lookups
    per pick). Subclasses must not list them in ``__slots__``.
    """

    def __init__(self, address: str, weight: int = 1, zone: str | None = None,
                 in_flight: int = 0) -> None:
        self.address = address
        self.weight = weight
        self.zone = zone
        self.in_flight = in_flight


class RequestView(Protocol):
    """What a balancer may read of a request (for hashing)."""

    @property
    def client_ip(self) -> bytes: ...

    def header(self, name: bytes) -> bytes | None:
        """The first value of the lower-case header ``name``, or None."""


E = TypeVar("E", bound=Pickable)


@mypyc_attr(allow_interpreted_subclasses=True)
class Balancer(Generic[E]):
    """Chooses an endpoint for each request. Every algorithm subclasses it (a base
    class rather than a Protocol, so that compiled, the proxy calls ``pick`` and
    ``on_response`` directly instead of by name)."""

    def update(self, endpoints: Sequence[E]) -> None:
        """Replace the endpoint set. Endpoints that stay keep their identity."""
        raise NotImplementedError

    def pick(self, request: RequestView) -> E | None:
        """The endpoint for this request, or None when the set is empty."""
        raise NotImplementedError

    def on_response(self, endpoint: E, latency: float, ok: bool) -> None:
        """A request placed on ``endpoint`` got its response head (or failed) after
        ``latency`` seconds; ``ok`` is False for 5xx and connection failures.

        Call semantics the balancers rely on: once per try that reached the endpoint
        (a try released without a verdict — the client left, the proxy answered
        itself — is not reported), and ``latency`` counts from when the try was
        handed to the endpoint's connection pool, not from the request's arrival (time
        queued in the proxy says nothing about the endpoint). ``pick`` is followed by
        the try that raises ``endpoint.in_flight`` (or by nothing, when the request is
        shed), and ``in_flight`` drops when the try is released."""
        raise NotImplementedError
