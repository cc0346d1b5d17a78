"""The one small interface every load-balancing algorithm implements.

A balancer holds the current endpoint set (``update``) and picks one per
request (``pick``). It sees endpoints only through `Pickable` (a weight and an
in-flight count), so an algorithm can be written and tested without the proxy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar


class Pickable(Protocol):
    """What a balancer may read of an endpoint."""

    @property
    def weight(self) -> int: ...

    @property
    def in_flight(self) -> int: ...


E = TypeVar("E", bound=Pickable)


class Balancer(Protocol[E]):
    """Chooses an endpoint for each request."""

    def update(self, endpoints: Sequence[E]) -> None:
        """Replace the endpoint set. Endpoints that stay keep their identity."""

    def pick(self, request: object) -> E | None:
        """The endpoint for this request, or None when the set is empty."""
