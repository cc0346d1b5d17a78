"""The inbound request path, on one screen: what happens to a request sent to the app.

Inbound, every authority routes to the local application (`tulle.proxy.mesh`), and
the request then goes the same way as outbound (`tulle.proxy.outbound`): the app is
the one endpoint, so balancing is trivial, but timeouts, the breaker, metrics and tap
apply::

    observe → route (to the app) → timeout → retry → balance → feedback → forward

Inbound policy — who may call (authorization) and how often (rate limits) — will sit
here, between route and timeout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tulle.proxy.outbound import listener_stack, service_stack

if TYPE_CHECKING:
    from tulle.proxy.layers import ExchangeLayer
    from tulle.proxy.layers.observe import Observe
    from tulle.proxy.routing import Router
    from tulle.proxy.runtime import Runtime
    from tulle.proxy.targets import ServiceTarget
    from tulle.telemetry.metrics import ResponseStats
    from tulle.telemetry.tap import TapHub


def inbound_listener_stack(
    router: Router, unknown: ResponseStats, runtime: Runtime, tap: TapHub
) -> Observe:
    return listener_stack("inbound", router, unknown, runtime, tap)


def inbound_service_stack(target: ServiceTarget, runtime: Runtime) -> ExchangeLayer:
    return service_stack(target, runtime)
