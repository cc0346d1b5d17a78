"""The inbound request path, on one screen: what happens to a request sent to the app.

Inbound, every authority routes to the local application (`tulle.proxy.mesh`), and
the request then goes the same way as outbound (`tulle.proxy.outbound`), with inbound
policy first (`tulle.policy`): the app is the one endpoint, so balancing is trivial,
but policy, timeouts, the breaker, metrics and tap apply::

    observe      → counts every answer, shows it to tap                    (listener)
    loop         → a request that already passed through this proxy: 508   (listener)
    route        → to the app                                              (listener)
    authorize    → may this client make this request? 403 (or 404: no route) (service)
    rate limit   → within the server's local rate limit? 429 + Retry-After  (service)
    timeout → retry → balance                                              (service)
    client stats → over mutual TLS, counted per client identity            (endpoint)
    feedback → forward                                                     (endpoint)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tulle.proxy.layers.authorize import Authorize, ServerOf
from tulle.proxy.layers.balance import Balance
from tulle.proxy.layers.client_stats import ClientStats
from tulle.proxy.layers.feedback import Feedback
from tulle.proxy.layers.forward import Forward
from tulle.proxy.layers.rate_limit import RateLimit
from tulle.proxy.layers.retry import Retry
from tulle.proxy.layers.timeout import RequestTimeout
from tulle.proxy.outbound import listener_stack

if TYPE_CHECKING:
    from tulle.policy.compile import PolicyState
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


def inbound_service_stack(target: ServiceTarget, runtime: Runtime,
                          policy: PolicyState) -> ExchangeLayer:
    """What a request to the app goes through once routed (``policy``: the proxy's
    inbound policy, replaced at each configuration)."""
    clock, wheel = runtime.clock, runtime.wheel
    server_of = ServerOf(target, policy)
    return Authorize(server_of, RateLimit(server_of, RequestTimeout(wheel, Retry(
        target, runtime.loop, Balance(target, ClientStats(policy.metrics, Feedback(
            target, clock, Forward(wheel, clock))))))))
