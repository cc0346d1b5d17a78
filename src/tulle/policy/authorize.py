"""Inbound authorization, compiled: a few dict lookups and integer ANDs per request.

Each authorization a proxy knows — an AuthorizationPolicy that applies to it, or a
default policy (``all-unauthenticated`` …, a Server's ``accessPolicy``) — becomes one
`Authorization` with one bit. It requires zero or more *authentications*: a client
identity among some (MeshTLSAuthentication, ServiceAccount refs, ``*-authenticated``)
and an address among some networks (NetworkAuthentication, ``cluster-*``); all of them
must hold (Linkerd: "in the case of multiple entries, all authentications must
match").

What a client satisfies does not depend on the request: `InboundPolicy.identity_bits`
is the set of authorizations whose identity requirement a client identity meets, and
`network_bits` those whose network requirement an address meets, each computed once
per distinct identity or address and then remembered (bounded tables). A target — a
`ServerPolicy` (a Server, or the default for ports no Server selects) or one of its
routes — has a mask of the authorizations that apply to it. So a request is allowed
when ``mask & identity_bits(id) & network_bits(ip)`` is not zero, and the lowest bit
set names the authorization that allowed it (for ``inbound_http_authz_allow_total``).

A denial says why: ``unauthenticated`` when some authorization would have allowed the
client had it come over mutual TLS (plaintext where mTLS is required), else
``unauthorized``. A Server in ``audit`` mode lets denied requests through and counts
them as audited.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from tulle.policy.rate_limit import LocalRateLimit
    from tulle.proxy.http_routes import RouteTable
    from tulle.telemetry.metrics import PolicyCounters

# Distinct client identities and addresses remembered per policy; a table that fills
# is emptied and refilled (a client costs one computation more, then).
MAX_REMEMBERED: Final = 4096

# Denial reasons (inbound_http_authz_deny_total{reason}).
UNAUTHENTICATED: Final = "unauthenticated"
UNAUTHORIZED: Final = "unauthorized"

Network = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]]


@dataclass(frozen=True, slots=True)
class IdentityRule:
    """Which client identities an authorization accepts (any of them will do)."""

    any_identity: bool = False  # "*": every meshed client
    exact: frozenset[str] = frozenset()  # SPIFFE IDs
    prefixes: tuple[str, ...] = ()  # "spiffe://td/ns/shop/" for "spiffe://td/ns/shop/*"

    def accepts(self, identity: str) -> bool:
        return (self.any_identity or identity in self.exact
                or any(identity.startswith(prefix) for prefix in self.prefixes))


@dataclass(frozen=True, slots=True)
class NetworkRule:
    """Which client addresses an authorization accepts."""

    networks: tuple[Network, ...]

    def accepts(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        for network, excepted in self.networks:
            if address.version == network.version and address in network and not any(
                    address.version == e.version and address in e for e in excepted):
                return True
        return False


@dataclass(frozen=True, slots=True)
class Authorization:
    """One way in: its name for metrics and what it requires, every rule of it (none:
    anybody; an identity rule: a client over mutual TLS)."""

    name: str
    identities: tuple[IdentityRule, ...] = ()
    networks: tuple[NetworkRule, ...] = ()


@dataclass(slots=True)
class PolicyRoute:
    """An HTTPRoute rule attached to a Server: the authorizations that admit it."""

    name: str
    mask: int


class ServerPolicy:
    """The policy of one port: a Server's, or the default's."""

    __slots__ = ("audit", "counters", "mask", "name", "open", "probes", "rate_limit", "routes")

    def __init__(self, name: str, mask: int, counters: PolicyCounters, *, audit: bool = False,
                 routes: RouteTable[PolicyRoute] | None = None,
                 probes: frozenset[bytes] = frozenset(),
                 rate_limit: LocalRateLimit | None = None) -> None:
        self.name = name
        self.mask = mask
        self.counters = counters
        self.audit = audit
        self.routes = routes  # None: every request is the server's (no HTTPRoutes)
        # Kubelet probe paths a GET may reach whatever the policy (without routes only,
        # as Linkerd's default probe authorizations).
        self.probes = probes
        self.rate_limit = rate_limit
        # The name of an authorization that requires nothing, when one applies to all of
        # this server's traffic: then no lookup is needed (the default, all-unauthenticated).
        self.open: str | None = None


class InboundPolicy:
    """Everything one proxy's inbound side decides with (see the module note)."""

    __slots__ = ("_identity_bits", "_network_bits", "authorizations", "default", "names",
                 "servers")

    def __init__(self, authorizations: Iterable[Authorization],
                 servers: dict[int, ServerPolicy], default: ServerPolicy) -> None:
        self.authorizations = tuple(authorizations)
        self.names = tuple(a.name for a in self.authorizations)
        self.servers = servers  # by port
        self.default = default
        self._identity_bits: dict[str | None, int] = {}
        self._network_bits: dict[bytes, int] = {}
        for server in (*servers.values(), default):
            if server.routes is None:
                server.open = next((a.name for bit, a in enumerate(self.authorizations)
                                    if (server.mask >> bit) & 1 and not a.identities
                                    and not a.networks), None)

    def server_for(self, port: int) -> ServerPolicy:
        return self.servers.get(port, self.default)

    def identity_bits(self, identity: str | None) -> int:
        bits = self._identity_bits.get(identity)
        if bits is None:
            bits = 0
            for bit, authorization in enumerate(self.authorizations):
                rules = authorization.identities
                if not rules or (identity is not None and all(
                        rule.accepts(identity) for rule in rules)):
                    bits |= 1 << bit
            table = self._identity_bits
            if len(table) >= MAX_REMEMBERED:
                table.clear()
            table[identity] = bits
        return bits

    def network_bits(self, peer_ip: bytes) -> int:
        bits = self._network_bits.get(peer_ip)
        if bits is None:
            bits = 0
            try:
                address = ipaddress.ip_address(peer_ip.decode("ascii").partition("%")[0])
            except ValueError:
                address = None
            for bit, authorization in enumerate(self.authorizations):
                rules = authorization.networks
                if not rules or (address is not None and all(
                        rule.accepts(address) for rule in rules)):
                    bits |= 1 << bit
            table = self._network_bits
            if len(table) >= MAX_REMEMBERED:
                table.clear()
            table[peer_ip] = bits
        return bits

    def decide(self, mask: int, identity: str | None, peer_ip: bytes) -> int:
        """The authorizations among ``mask`` this client satisfies (0: none)."""
        return mask & self.identity_bits(identity) & self.network_bits(peer_ip)

    def denial(self, mask: int, identity: str | None, peer_ip: bytes) -> str:
        """Why a client was denied: would mutual TLS have let it in?"""
        if identity is None:
            for bit, authorization in enumerate(self.authorizations):
                if (mask >> bit) & 1 and authorization.identities and \
                        (self.network_bits(peer_ip) >> bit) & 1:
                    return UNAUTHENTICATED
        return UNAUTHORIZED


def lowest_bit(bits: int) -> int:
    """The index of the lowest bit set (the first authorization that allowed)."""
    return (bits & -bits).bit_length() - 1
