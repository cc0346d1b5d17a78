"""The proxy's view of the mesh: service targets, endpoints and pools, per direction.

Built from a `tulle.config.Config` and re-applied on every reload. Applying a
new configuration keeps every target, endpoint and pool that is still named
in it (so learned state and warm connections survive), makes the new ones,
and retires what left: a retired pool closes its idle connections now and its
busy ones when their requests end, so in-flight requests are never failed by
a reload.

With iptables capture (``tulle proxy --transparent``) each direction also routes by
original destination: a service's ``clusterIP:port`` is that service, and any other
address gets a *direct* target of its own, made on first use, with the mesh
defaults and one endpoint: outbound the address itself (a pod IP, forwarded as it
is), inbound the app on localhost at the port the client dialled. Direct targets
are dropped at each reload (and the oldest beyond ``MAX_DIRECT_TARGETS``) and made
again when next used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from tulle.balance import new_balancer
from tulle.config.model import Config, Service
from tulle.config.model import Endpoint as EndpointConfig
from tulle.policy.compile import PolicyState
from tulle.proxy.failover import HealthDriver, OutlierDriver
from tulle.proxy.http_routes import RouteRuleTarget, RouteTable
from tulle.proxy.inbound import inbound_service_stack
from tulle.proxy.layers import ExchangeLayer
from tulle.proxy.outbound import service_stack
from tulle.proxy.routing import Router
from tulle.proxy.runtime import Runtime
from tulle.proxy.targets import Endpoint, ServiceTarget, TargetTimeouts
from tulle.resilience import CircuitBreaker, RetryBudget, RetryPolicy
from tulle.telemetry.metrics import Metrics
from tulle.upstream import EndpointPool

if TYPE_CHECKING:
    from tulle.config.schema_gateway import HTTPRoute
    from tulle.transport.tls import MeshTls

StackBuilder = Callable[[ServiceTarget, Runtime], ExchangeLayer]

# Direct targets kept per direction: one per distinct address the app dials outside
# any service. Bounded, so an app that dials many addresses cannot grow the proxy.
MAX_DIRECT_TARGETS = 1024


class DirectionState:
    """Targets and pools of one direction (outbound or inbound)."""

    def __init__(
        self, runtime: Runtime, metrics: Metrics, direction: str, build_stack: StackBuilder
    ) -> None:
        self.runtime = runtime
        self.loop = runtime.loop
        self._build_stack = build_stack
        self.zone: str | None = None
        self.metrics = metrics
        self.direction = direction
        self.targets: dict[str, ServiceTarget] = {}
        self.pools: dict[tuple[str, int], EndpointPool] = {}
        self.router = Router((), direct=self.direct_target)
        self._tcp_dst = metrics.tcp(direction, "dst")
        self._drivers: list[OutlierDriver | HealthDriver] = []
        self._direct: dict[tuple[str, int], ServiceTarget] = {}
        # Settings for direct targets: the mesh defaults of the configuration applied
        # (until one is, the built-in defaults; see direct_target).
        self._direct_defaults: Service | None = None
        # This proxy's TLS contexts, when it has an identity: endpoints that name the
        # identity of their proxy are then reached over mutual TLS.
        self.tls: MeshTls | None = None

    def apply(
        self,
        services: Iterable[Service],
        endpoints_of: Callable[[Service], Iterable[EndpointConfig]],
        default: Service | None = None,
        direct_defaults: Service | None = None,
    ) -> None:
        """Make the targets match ``services``; ``endpoints_of(service)`` lists their endpoints."""
        for target in self._direct.values():
            target.detach()
        self._direct = {}
        if direct_defaults is not None:
            self._direct_defaults = direct_defaults
        wanted: dict[str, ServiceTarget] = {}
        used_pools: set[tuple[str, int]] = set()
        services = list(services)
        all_services = [*services, default] if default is not None else services
        for service in all_services:
            target = self._target_for(service)
            wanted[target.key] = target
            endpoints = []
            for config in endpoints_of(service):
                used_pools.add((config.host, config.port))
                endpoints.append(self._endpoint_for(target, config, service))
            target.set_endpoints(endpoints)
        kept = {id(e) for target in wanted.values() for e in target.endpoints}
        for key, old in self.targets.items():
            if wanted.get(key) is not old:
                old.detach()
        for old in self.targets.values():
            for endpoint in old.endpoints:
                if id(endpoint) not in kept and endpoint.breaker is not None:
                    endpoint.breaker.cancel()  # it left: no more probes
        self.targets = wanted
        self._restart_drivers(all_services)
        for address in list(self.pools):
            if address not in used_pools:
                self.pools.pop(address).retire()
        default_target = wanted[f"{default.name}.{default.namespace}"] if default else None
        self.router = Router(
            [t for key, t in wanted.items() if default_target is None or t is not default_target],
            default=default_target,
            destinations={(service.cluster_ip, service.port): wanted[service.key]
                          for service in services if service.cluster_ip is not None},
            direct=self.direct_target,
        )

    def direct_target(self, destination: tuple[str, int]) -> ServiceTarget:
        """The target for an address outside every service: it forwards there as it is
        (inbound: to the app on localhost, at the port the client dialled)."""
        target = self._direct.get(destination)
        if target is not None:
            return target
        if len(self._direct) >= MAX_DIRECT_TARGETS:
            self._forget_direct(next(iter(self._direct)))
        host, port = destination
        if self.direction == "inbound":
            host = "::1" if ":" in host else "127.0.0.1"
        endpoint = EndpointConfig(host=host, port=port)
        name = f"[{destination[0]}]:{port}" if ":" in destination[0] else f"{destination[0]}:{port}"
        service = replace(self._direct_defaults or _built_in_defaults(), name=name, port=port,
                          endpoints=(endpoint,))
        target = self._target_for(service)
        target.set_endpoints([self._endpoint_for(target, endpoint, service)])
        self._direct[destination] = target
        return target

    def _forget_direct(self, destination: tuple[str, int]) -> None:
        target = self._direct.pop(destination)
        target.detach()
        in_use = {id(e.pool) for t in (*self.targets.values(), *self._direct.values())
                  for e in t.endpoints}
        for endpoint in target.endpoints:
            if id(endpoint.pool) not in in_use:
                self.pools.pop((endpoint.pool.host, endpoint.pool.port), None)
                endpoint.pool.retire()

    def _target_for(self, service: Service) -> ServiceTarget:
        key = f"{service.name}.{service.namespace}"
        timeouts = TargetTimeouts(
            request=service.timeouts.request,
            connect=service.timeouts.connect or 1.0,
            per_try=service.timeouts.per_try,
        )
        settings = service.load_balancer
        target = self.targets.get(key)
        if (target is None or target.load_balancer != settings
                or target.protocol != service.protocol):
            stats = self.metrics.responses(self.direction, service.name, service.namespace)
            counters = self.metrics.service_counters(
                self.direction, service.name, service.namespace
            )
            balancer = new_balancer(settings, clock=self.runtime.clock, local_zone=self.zone)
            budget = _budget(service, self.loop)
            target = ServiceTarget(
                service.name, service.namespace, settings, balancer, timeouts, stats, counters,
                budget, self.loop, service.limits, service.protocol,
            )
            target.stack = self._build_stack(target, self.runtime)
        else:
            target.timeouts = timeouts
            target.budget = _budget(service, self.loop, keep=target.budget)
            target.set_limits(service.limits)
        target.retry_policy = RetryPolicy.of(service.retries) if service.retries else None
        return target

    def _endpoint_for(
        self, target: ServiceTarget, config: EndpointConfig, service: Service
    ) -> Endpoint:
        address = (config.host, config.port)
        pool = self.pools.get(address)
        connect_timeout = service.timeouts.connect or 1.0
        if pool is None:
            pool = self.pools[address] = EndpointPool(
                self.loop, config.host, config.port, self._tcp_dst, connect_timeout
            )
        pool.connect_timeout = connect_timeout
        pool.secure(config.identity, self.tls)
        peer = ("server_id", config.identity) if pool.secured and config.identity else None
        for endpoint in target.endpoints:
            if endpoint.pool is pool:
                endpoint.weight = config.weight
                endpoint.zone = config.zone
                endpoint.stats.peer = peer
                return endpoint
        stats = self.metrics.responses(
            self.direction, target.name, target.namespace, f"{config.host}:{config.port}"
        )
        stats.peer = peer
        endpoint = Endpoint(pool, config.weight, config.zone, stats)
        breaker = service.circuit_breaker
        if breaker is not None:
            endpoint.breaker = CircuitBreaker(
                breaker.consecutive_failures,
                breaker.backoff.min,
                breaker.backoff.max,
                schedule=self.loop.call_later,
                on_change=target.refresh,
            )
        return endpoint

    def _restart_drivers(self, services: list[Service]) -> None:
        for driver in self._drivers:
            driver.stop()
        self._drivers = []
        for service in services:
            target = self.targets[f"{service.name}.{service.namespace}"]
            for endpoint in target.endpoints:
                endpoint.health = None  # the health driver (if any) starts it afresh
            if service.outlier_detection is not None:
                self._drivers.append(OutlierDriver(self.loop, target, service.outlier_detection))
            if service.health_check is not None:
                self._drivers.append(HealthDriver(self.loop, target, service.health_check))
        for driver in self._drivers:
            driver.start()
        for target in self.targets.values():
            target.refresh()  # health and ejections may have been reset

    def stop(self) -> None:
        """Stop the background drivers (at shutdown)."""
        for driver in self._drivers:
            driver.stop()
        self._drivers = []

    def attach_routes(self, routes: Iterable[HTTPRoute]) -> None:
        """Compile each service's HTTPRoutes (GAMMA: routes whose parent is the service)."""
        entries: dict[str, list] = {}
        order = 0
        for route in routes:
            for rule_index, rule in enumerate(route.spec.rules):
                backends, cumulative, total = [], [], 0
                for ref in rule.backend_refs:
                    backend = self.targets.get(f"{ref.name}.{ref.namespace or route.namespace}")
                    if backend is None or ref.weight == 0:
                        continue
                    total += ref.weight
                    backends.append(backend)
                    cumulative.append(total)
                for parent in route.spec.parent_refs:
                    if parent.kind == "Server":
                        continue  # a route of inbound policy (tulle.policy), not of a service
                    parent_key = f"{parent.name}.{parent.namespace or route.namespace}"
                    if parent_key not in self.targets:
                        continue
                    name = route.name if len(route.spec.rules) == 1 else (
                        rule.name or f"{route.name}/{rule_index}")
                    stats = self.metrics.route_responses(
                        self.direction, parent.name, parent.namespace or route.namespace, name
                    )
                    target = RouteRuleTarget(
                        name, tuple(backends), tuple(cumulative), stats,
                        request_timeout=rule.timeouts.request if rule.timeouts else None,
                        per_try_timeout=(
                            rule.timeouts.backend_request if rule.timeouts else None),
                        retry_policy=RetryPolicy.for_route(rule.retry.attempts, rule.retry.codes)
                        if rule.retry else None,
                    )
                    for match in rule.matches:
                        entries.setdefault(parent_key, []).append((match, order, target))
                        order += 1
        for key, target in self.targets.items():
            target.routes = RouteTable(entries[key]) if key in entries else None

    def close_idle_before(self, deadline: float) -> None:
        for pool in self.pools.values():
            pool.close_idle_before(deadline)

    def describe(self) -> list[dict[str, object]]:
        return [target.describe() for target in self.targets.values()]


class MeshState:
    """Both directions, re-applied from each new configuration."""

    def __init__(self, runtime: Runtime, metrics: Metrics, tls: MeshTls | None = None) -> None:
        self.policy = PolicyState(metrics)
        self.outbound = DirectionState(runtime, metrics, "outbound", service_stack)
        self.inbound = DirectionState(runtime, metrics, "inbound",
                                      partial(inbound_service_stack, policy=self.policy))
        self.outbound.tls = tls
        self.config: Config | None = None

    def apply(self, config: Config) -> None:
        tls = self.outbound.tls
        self.policy.trust_domain = tls.credentials.identity.trust_domain if tls else None
        self.policy.apply(config)
        services = list(config.services.values())
        direct = _unknown_authority(config)
        self.outbound.zone = self.inbound.zone = config.mesh.zone
        self.outbound.apply(services, lambda service: service.endpoints, direct_defaults=direct)
        self.outbound.attach_routes(config.routes)
        app = config.mesh.proxy.app
        if app is not None:
            app_endpoint = [EndpointConfig(host=app.host, port=app.port)]
            # Inbound: every known service, and any other authority, goes to the app.
            self.inbound.apply(
                services,
                lambda service: app_endpoint,
                default=direct,
                direct_defaults=direct,
            )
        else:  # captured inbound traffic still goes to the app, by original port
            self.inbound.apply((), lambda service: (), direct_defaults=direct)
        self.config = config


def _unknown_authority(config: Config) -> Service:
    """Inbound requests whose authority names no known service: still the app's."""
    defaults = config.mesh.defaults
    return Service(
        name="",
        namespace="",
        protocol="http",
        port=0,
        endpoints=(),
        load_balancer=defaults.load_balancer,
        timeouts=defaults.timeouts,
        limits=defaults.limits,
    )


def _built_in_defaults() -> Service:
    """Direct targets' settings before any configuration was applied (tests do that)."""
    from tulle.config.schema_tulle import MeshSpec

    return _unknown_authority(Config((), MeshSpec(), {}, ()))


def _budget(
    service: Service, loop: asyncio.AbstractEventLoop, keep: RetryBudget | None = None
) -> RetryBudget:
    """The service's retry budget; an unchanged one is kept with what it has counted."""
    settings = service.retries.budget if service.retries and service.retries.budget else None
    ratio, per_second, window = (
        (settings.ratio, settings.min_per_second, settings.window) if settings else (0.2, 10, 10.0)
    )
    if keep is not None and (keep.ratio, keep.min_per_second, keep.window) == (
        ratio, per_second, window
    ):
        return keep
    return RetryBudget(ratio, per_second, window, clock=loop.time)
