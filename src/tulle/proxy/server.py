"""A running proxy: listeners, admin, reloads, and a graceful stop.

`ProxyServer` wires the parts together: it takes configurations from a
`ConfigSource` (manifests on disk by default) into a `MeshState`, binds the
outbound and inbound listeners (each with its request stack) and the admin
listener, applies each new configuration the source reports (on SIGHUP or when
the files change; a bad one is refused, logged, and the old one keeps serving),
closes idle upstream connections once a second, and on SIGTERM stops accepting,
lets requests in flight finish within a grace period, and returns.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

from tulle.config.addresses import Address
from tulle.config.model import Config
from tulle.config.records import with_changes
from tulle.discovery import ConfigSource, ManifestSource
from tulle.downstream import ListenerContext, ProtocolDetector
from tulle.downstream.listener import DEFAULT_DETECT_TIMEOUT, DEFAULT_SEND_TIMEOUT
from tulle.proxy.inbound import inbound_listener_stack
from tulle.proxy.layers.observe import Observe
from tulle.proxy.layers.route import Route
from tulle.proxy.mesh import DirectionState, MeshState
from tulle.proxy.outbound import listener_stack
from tulle.proxy.runtime import Runtime
from tulle.tcp import TcpProxy
from tulle.tcp.egress import EgressPolicy
from tulle.telemetry.admin import AdminSources, serve_admin
from tulle.telemetry.metrics import EndpointState, IdentityView, Metrics
from tulle.telemetry.tap import TapHub
from tulle.transport.detect import DEFAULT_OPAQUE_PORTS
from tulle.transport.limits import ConnectionBudget
from tulle.transport.listen import listen

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from tulle.identity.client import IdentityClient, IdentitySettings
    from tulle.policy.workload import Workload
    from tulle.transport.tls import MeshTls

log = logging.getLogger("tulle.proxy")

# How often idle upstream connections are looked for.
SWEEP_INTERVAL = 1.0
# Upstream connections unused this long are closed, before a typical server
# keep-alive timeout (nginx: 75 s, Node: 5 s is the outlier) closes them under us.
UPSTREAM_IDLE = 30.0


@dataclass(frozen=True, slots=True)
class ProxyOptions:
    """What the command line may override; None means "as the manifests say"."""

    manifests: Path | None = None
    outbound: Address | None = None
    inbound: Address | None = None
    inbound_enabled: bool = True
    admin: Address | None = None
    app: Address | None = None
    head_timeout: float = 10.0
    send_timeout: float = DEFAULT_SEND_TIMEOUT
    shutdown_grace: float = 10.0
    allow_tap: bool = False
    # Connections arrive redirected by iptables (tulle init): route each by its original
    # destination, and take inbound traffic even without an app address (it goes to the
    # port the client dialled).
    transparent: bool = False
    # A silent client is taken as opaque TCP after this; connections to these ports are
    # opaque TCP from the start (tulle.downstream.detect).
    detect_timeout: float = DEFAULT_DETECT_TIMEOUT
    opaque_ports: frozenset[int] = DEFAULT_OPAQUE_PORTS
    # One of several worker processes (tulle.proxy.workers): the proxy listeners join
    # the others' SO_REUSEPORT group, and the admin listener is private (127.0.0.1, any
    # port), read by the supervisor, which serves the public one.
    worker: bool = False
    # Get a certificate from the control plane's identity service, and speak mutual TLS
    # with meshed proxies (None: this proxy has no identity; everything is plaintext).
    identity: IdentitySettings | None = None
    # Inbound policy: the workload this proxy fronts and its default policy, where the
    # manifests do not say (an injected proxy reads them from its pod).
    workload: Workload | None = None
    default_inbound_policy: str | None = None


class _Listener:
    """One bound proxy listener and its shared connection context."""

    def __init__(self, ctx: ListenerContext, route: Route, server: asyncio.Server) -> None:
        self.ctx = ctx
        self.route = route  # its router is replaced on each reload
        self.server = server


class ProxyServer:
    def __init__(
        self,
        options: ProxyOptions,
        source: ConfigSource | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.options = options
        self.loop = asyncio.get_running_loop()
        self.runtime = Runtime.on(self.loop)
        if source is None:
            assert options.manifests is not None, "a proxy needs manifests or a source"
            source = ManifestSource(self.loop, options.manifests)
        self.source = source
        self.metrics = metrics or Metrics()
        self.mesh = MeshState(self.runtime, self.metrics)
        self.tap = TapHub(clock=self.loop.time)
        self.metrics.endpoint_states = self._endpoint_states
        self._listeners: dict[str, _Listener] = {}
        self.budget = ConnectionBudget(0)  # set at start, from the open-files limit
        self._admin: asyncio.Server | None = None
        self.admin_address: Address | None = None  # the public one, even for a worker
        self._sweeper: asyncio.TimerHandle | None = None
        self._stop = asyncio.Event()
        self.ready = False
        self.draining = False
        self.tls: MeshTls | None = None
        self.identity: IdentityClient | None = None

    # -- start --

    async def start(self) -> None:
        """Get the first configuration (raising ConfigError) and an identity (waiting for
        it), and bind every listener."""
        options = self.options
        if options.identity is not None:
            await self._start_identity(options.identity)
        self.mesh.policy.workload = options.workload
        self.mesh.policy.default_policy = options.default_inbound_policy
        config = await self.source.initial()
        self.budget = ConnectionBudget.from_open_files_limit()
        if options.app is not None:
            config = _with_app(config, options.app)
        self.mesh.apply(config)
        listen = config.mesh.proxy
        await self._bind("outbound", options.outbound or listen.outbound, self.mesh.outbound)
        if options.inbound_enabled and (config.mesh.proxy.app is not None
                                        or options.transparent):
            await self._bind("inbound", options.inbound or listen.inbound, self.mesh.inbound)
        elif options.inbound_enabled:
            log.info("inbound listener off: no application address (spec.proxy.app or --app)")
        admin = self.admin_address = options.admin or listen.admin
        if options.worker:
            admin = Address("127.0.0.1", 0)
        sources = AdminSources(
            registry=self._registry,
            tap=self.tap,
            tap_enabled=options.allow_tap,
            ready=lambda: self.ready and not self.draining,
            config=lambda: self.mesh.config.to_dict() if self.mesh.config else {},
            endpoints=self._describe_endpoints,
        )
        self._admin = await serve_admin(self.loop, admin.host, admin.port, sources)
        log.info("admin on http://%s", _bound(self._admin))
        self.source.start(self.apply, self._refused)
        self.loop.add_signal_handler(signal.SIGHUP, self.source.refresh, "SIGHUP")
        self.loop.add_signal_handler(signal.SIGTERM, self.stop)
        self.loop.add_signal_handler(signal.SIGINT, self.stop)
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)
        self.ready = True

    async def _bind(self, direction: str, address: Address, state: DirectionState) -> None:
        unknown = self.metrics.responses(direction, "", "")
        if direction == "inbound":
            stack = inbound_listener_stack(state.router, unknown, self.runtime, self.tap)
        else:
            stack = listener_stack(direction, state.router, unknown, self.runtime, self.tap)
        route = _route_of(stack)
        timeouts = self.mesh.config.mesh.defaults.timeouts if self.mesh.config else None
        opaque = TcpProxy(state, self.metrics, self.runtime.clock, self.options.opaque_ports)
        if self.mesh.config is not None:
            opaque.egress = EgressPolicy(self.mesh.config.mesh.egress.allow)
        if direction == "inbound":
            opaque.policy = self.mesh.policy  # who may connect, as for HTTP
        ctx = ListenerContext(
            runtime=self.runtime,
            direction=direction,
            stack=stack,
            tcp=self.metrics.tcp(direction, "src"),
            malformed=unknown,
            head_timeout=self.options.head_timeout,
            idle_timeout=timeouts.idle if timeouts else 60.0,
            send_timeout=self.options.send_timeout,
            transparent=self.options.transparent,
            opaque=opaque,
            detect_timeout=self.options.detect_timeout,
            # Mesh TLS is terminated inbound: meshed proxies call this one there.
            tls=self.tls if direction == "inbound" else None,
            tls_stats=self.metrics.tls(direction, "src"),
            budget=self.budget,
        )
        self.budget.watch(ctx.connections)
        server = await listen(
            self.loop, lambda: cast(asyncio.Protocol, ProtocolDetector(ctx)), address.host,
            address.port, backlog=1024, reuse_port=self.options.worker,
        )
        self._listeners[direction] = _Listener(ctx, route, server)
        log.info("%s listener on %s", direction, _bound(server))

    def bound_addresses(self) -> dict[str, tuple[str, int]]:
        """Where each listener is bound: "outbound", "inbound" (when on) and "admin"."""
        return {name: self.bound_address(name) for name in (*self._listeners, "admin")}

    async def _start_identity(self, settings: IdentitySettings) -> None:
        """A certificate first (a meshed proxy serves nothing without one), then renewals
        in the background: each new certificate is used for new connections only."""
        from tulle.transport.tls import MeshTls

        self.identity = client = settings.client()
        credentials = await client.initial()
        self.tls = tls = MeshTls(credentials)
        self.mesh.outbound.tls = tls
        client.start(tls.update)
        self.metrics.identity = IdentityView(
            name=lambda: tls.identity,
            expires_at=lambda: tls.credentials.not_after.timestamp(),
            refreshes=lambda: tls.renewals,
        )

    def bound_address(self, name: str) -> tuple[str, int]:
        """Where a listener ("outbound", "inbound", "admin") is bound (for port 0)."""
        server = self._admin if name == "admin" else self._listeners[name].server
        assert server is not None
        host, port = server.sockets[0].getsockname()[:2]
        return host, port

    # -- reload --

    def apply(self, config: Config, reason: str) -> None:
        """Serve a new configuration from now on (requests in flight finish as they were)."""
        if self.options.app is not None:
            config = _with_app(config, self.options.app)
        self.mesh.apply(config)
        for direction, listener in self._listeners.items():
            state = self.mesh.outbound if direction == "outbound" else self.mesh.inbound
            listener.route.router = state.router
            listener.ctx.idle_timeout = config.mesh.defaults.timeouts.idle
            if listener.ctx.opaque is not None:
                listener.ctx.opaque.egress = EgressPolicy(config.mesh.egress.allow)
        log.info("configuration reloaded (%s): %d services", reason, len(config.services))

    def _refused(self, message: str) -> None:
        log.error("%s", message)

    # -- periodic work off the request path --

    def _sweep(self) -> None:
        now = self.loop.time()
        self.mesh.outbound.close_idle_before(now - UPSTREAM_IDLE)
        self.mesh.inbound.close_idle_before(now - UPSTREAM_IDLE)
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    # -- stop --

    def stop(self) -> None:
        self._stop.set()

    async def serve_until_stopped(self) -> None:
        """Serve until SIGTERM/SIGINT (or `stop`), then drain and close."""
        await self._stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stop accepting; let requests in flight finish within the grace period."""
        self.draining = True
        log.info("draining: %d connections", self._open_connections())
        self.source.stop()
        for listener in self._listeners.values():
            listener.ctx.draining = True
            listener.server.close()
            for conn in list(listener.ctx.connections):
                conn.close_if_idle()
        deadline = self.loop.time() + self.options.shutdown_grace
        while self._open_connections() and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for listener in self._listeners.values():
            for conn in list(listener.ctx.connections):
                conn.abort()
            if listener.ctx.opaque is not None:
                for session in list(listener.ctx.opaque.sessions):
                    session.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.identity is not None:
            self.identity.stop()
        self.runtime.wheel.stop()
        for state in (self.mesh.outbound, self.mesh.inbound):
            state.stop()
            for pool in state.pools.values():
                pool.retire()
        if self._admin is not None:
            self._admin.close()
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            self.loop.remove_signal_handler(sig)
        log.info("stopped")

    def _open_connections(self) -> int:
        return sum(len(listener.ctx.connections)
                   + (len(listener.ctx.opaque.sessions) if listener.ctx.opaque else 0)
                   for listener in self._listeners.values())

    def _endpoint_states(self) -> list[EndpointState]:
        states = []
        for direction in (self.mesh.outbound, self.mesh.inbound):
            for target in direction.targets.values():
                estimate = getattr(target.balancer, "latency_estimate_ms", None)
                for endpoint in target.endpoints:
                    breaker = endpoint.breaker
                    states.append(EndpointState(
                        labels=(direction.direction, target.name, target.namespace,
                                endpoint.address),
                        state=endpoint.state,
                        in_flight=endpoint.in_flight,
                        breaker_opens=breaker.opened if breaker is not None else 0,
                        ejections=endpoint.ejections,
                        latency_estimate_ms=estimate(endpoint) if estimate else None,
                    ))
        return states

    def _registry(self) -> CollectorRegistry:
        """This proxy's metrics registry, made at the admin listener's first scrape."""
        from tulle.telemetry.collector import registry_for

        return registry_for(self.metrics)

    def _describe_endpoints(self) -> dict[str, object]:
        return {
            "outbound": self.mesh.outbound.describe(),
            "inbound": self.mesh.inbound.describe(),
        }


def _route_of(stack: Observe) -> Route:
    """The route layer of a listener's stack (its router is swapped on reload)."""
    layer = stack.inner
    while not isinstance(layer, Route):
        layer = layer.inner  # type: ignore[attr-defined]
    return layer


def _bound(server: asyncio.Server) -> str:
    host, port = server.sockets[0].getsockname()[:2]
    return f"{host}:{port}"


def _with_app(config: Config, app: Address) -> Config:
    """The configuration with the application address given on the command line."""
    proxy = with_changes(config.mesh.proxy, app=app)
    return replace(config, mesh=with_changes(config.mesh, proxy=proxy))
