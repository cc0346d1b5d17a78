"""Load balancing: one module per algorithm, found by name in `ALGORITHMS`.

`new_balancer` turns a service's ``loadBalancer`` settings into a balancer; the
proxy passes the clock (so time-dependent algorithms run on a fake clock in
tests) and its own zone.
"""

from __future__ import annotations

from collections.abc import Callable

from tulle.balance.base import Balancer, Pickable, RequestView
from tulle.balance.round_robin import RoundRobin
from tulle.config import LoadBalancer

Clock = Callable[[], float]

# Manifest name -> factory(settings, clock). The config package validates
# names against LOAD_BALANCER_ALGORITHMS; add a module here and its name there.
ALGORITHMS: dict[str, Callable[[LoadBalancer, Clock], Balancer]] = {
    "round-robin": lambda settings, clock: RoundRobin(),
}


def new_balancer(settings: LoadBalancer, *, clock: Clock, local_zone: str | None) -> Balancer:
    """A fresh balancer for a service's settings (checked at load, so names are known)."""
    return ALGORITHMS[settings.algorithm](settings, clock)


__all__ = ["ALGORITHMS", "Balancer", "Clock", "Pickable", "RequestView", "RoundRobin",
           "new_balancer"]
