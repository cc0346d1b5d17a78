"""Load balancing: one module per algorithm, found by name in `ALGORITHMS`."""

from __future__ import annotations

from collections.abc import Callable

from tulle.balance.base import Balancer, Pickable
from tulle.balance.round_robin import RoundRobin

# Manifest name -> factory. The config package validates names against the
# same list of algorithm names; add a module here and its name there.
ALGORITHMS: dict[str, Callable[[], Balancer]] = {
    "round-robin": RoundRobin,
}


def new_balancer(algorithm: str) -> Balancer:
    """A fresh balancer for the named algorithm (names are checked at load)."""
    return ALGORITHMS[algorithm]()


__all__ = ["ALGORITHMS", "Balancer", "Pickable", "RoundRobin", "new_balancer"]
