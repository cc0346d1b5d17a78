"""The outbound request path, on one screen: what happens to a request an app sends.

Read top to bottom, this is the whole path (each layer is one module of
`tulle.proxy.layers`; each registers itself on the way in to act on the way back)::

    observe  → counts every answer in the metrics and shows it to tap          (listener)
    loop     → a request that already passed through this proxy: 508          (listener)
    route    → which service: authority, then HTTPRoute rules and splits; 404  (listener)
    timeout  → the request's deadline over all its tries; 504                  (service)
    retry    → the retry budget; failed tries come back here and go again      (service)
    balance  → which endpoint; waits a moment when none is up; 503             (service)
    feedback → in-flight counts, breaker probes; each try's latency and verdict
               to the balancer and the breaker                                 (endpoint)
    forward  → a stream leased from the endpoint's pool, under the per-try timeout

The listener's stack is built when the listener starts (its router is swapped on each
reload); a service's stack is built with the service's target, when a configuration is
loaded — never per request (linkerd2-proxy's ``NewService`` per target).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tulle.proxy.layers.balance import Balance
from tulle.proxy.layers.feedback import Feedback
from tulle.proxy.layers.forward import Forward
from tulle.proxy.layers.loop_guard import LoopGuard
from tulle.proxy.layers.observe import Observe
from tulle.proxy.layers.retry import Retry
from tulle.proxy.layers.route import Route
from tulle.proxy.layers.timeout import RequestTimeout

if TYPE_CHECKING:
    from tulle.proxy.layers import ExchangeLayer
    from tulle.proxy.routing import Router
    from tulle.proxy.runtime import Runtime
    from tulle.proxy.targets import ServiceTarget
    from tulle.telemetry.metrics import ResponseStats
    from tulle.telemetry.tap import TapHub


def listener_stack(
    direction: str, router: Router, unknown: ResponseStats, runtime: Runtime, tap: TapHub
) -> Observe:
    """What every request a listener accepts goes through first."""
    return Observe(direction, runtime.clock, tap, LoopGuard(Route(router, unknown)))


def service_stack(target: ServiceTarget, runtime: Runtime) -> ExchangeLayer:
    """What a request for ``target`` goes through once routed there."""
    clock, wheel = runtime.clock, runtime.wheel
    return RequestTimeout(wheel, Retry(target, runtime.loop, Balance(target, Feedback(
        target, clock, Forward(wheel, clock, h2=target.speaks_h2)))))
