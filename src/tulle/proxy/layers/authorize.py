"""Authorize: inbound, may this client make this request? (`tulle.policy`)

The server is the policy of the port the request goes to (the application's port:
the target's endpoint), looked up again only when a new policy is compiled. A server
with routes matches the request against them first (none matches: 404). Then the
client — its identity over mutual TLS, its address — must satisfy one of the
authorizations of the server or route (a few dict lookups and integer ANDs, see
`tulle.policy.authorize`); the one that does is counted. A denied request gets 403
with the reason (``unauthenticated``: it would have been allowed over mutual TLS;
``unauthorized``), is counted by reason, and shows in tap with ``error=forbidden``.
A server in audit mode lets it through and counts it as audited.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tulle.policy.authorize import lowest_bit
from tulle.proxy import errors
from tulle.proxy.layers import ExchangeLayer

if TYPE_CHECKING:
    from tulle.policy.authorize import InboundPolicy, ServerPolicy
    from tulle.policy.compile import PolicyState
    from tulle.proxy.exchange import Exchange
    from tulle.proxy.targets import ServiceTarget


class ServerOf:
    """The server policy of a target's port, for the current policy (cached: looked up
    again only when a new policy was compiled). ``policy`` is the policy it is from."""

    __slots__ = ("_server", "policy", "state", "target")

    def __init__(self, target: ServiceTarget, state: PolicyState) -> None:
        self.target = target
        self.state = state
        self.policy: InboundPolicy = state.current
        self._server: ServerPolicy | None = None

    def current(self) -> ServerPolicy:
        policy = self.state.current
        server = self._server
        if policy is not self.policy or server is None:
            endpoints = self.target.endpoints
            server = self._server = policy.server_for(endpoints[0].pool.port if endpoints
                                                      else 0)
            self.policy = policy
        return server


class Authorize(ExchangeLayer):
    __slots__ = ("inner", "server_of")

    def __init__(self, server_of: ServerOf, inner: ExchangeLayer) -> None:
        self.server_of = server_of
        self.inner = inner

    def call(self, exchange: Exchange) -> None:
        server_of = self.server_of
        server = server_of.current()
        counters = server.counters
        allowed = counters.allowed
        name = server.open
        if name is not None:  # the default: anybody may, nothing to look up
            allowed[name] = allowed.get(name, 0) + 1
            self.inner.call(exchange)
            return
        mask = server.mask
        routes = server.routes
        if routes is not None:
            route = routes.match(exchange.head)
            if route is None:
                counters.route_not_found += 1
                exchange.fail(errors.NO_ROUTE, service=server.name)
                return
            mask = route.mask
        client = exchange.client
        identity = client.peer_identity
        policy = server_of.policy
        bits = policy.decide(mask, identity, client.peer_ip) if mask else 0
        if bits:
            name = policy.names[lowest_bit(bits)]
            allowed[name] = allowed.get(name, 0) + 1
            self.inner.call(exchange)
            return
        head = exchange.head
        if server.probes and head.method == b"GET" and \
                head.target.split(b"?", 1)[0] in server.probes:
            allowed["probe"] = allowed.get("probe", 0) + 1
            self.inner.call(exchange)
            return
        if server.audit:
            counters.audited += 1
            self.inner.call(exchange)
            return
        reason = policy.denial(mask, identity, client.peer_ip)
        denied = counters.denied
        denied[reason] = denied.get(reason, 0) + 1
        exchange.fail(errors.FORBIDDEN, client=identity or client.peer_ip.decode("latin-1"),
                      server=server.name, reason=reason)
