"""From a configuration's policy objects to the `InboundPolicy` one proxy decides with.

Done once per configuration, off the request path. Of all the policy objects in the
configuration, a proxy keeps those that apply to its workload (`Workload`: namespace,
pod labels, named ports, probes):

- the **Servers** of its namespace whose ``podSelector`` matches its labels, each on
  its port (a port name is looked up in the workload's ports); the first by name wins
  a port two of them select (Linkerd's admission controller refuses such overlaps);
- the **AuthorizationPolicies** of its namespace that target one of those Servers, an
  HTTPRoute attached to one, or the namespace itself (every Server in it), each with
  its required authentications resolved: a MeshTLSAuthentication's identities and
  identity refs, a ServiceAccount ref, a NetworkAuthentication's networks (a missing
  authentication makes the policy admit nobody, as in Linkerd);
- the **HTTPRoutes** whose parent is one of those Servers: with routes, a request that
  matches none is 404, and a route is admitted by the Server's authorizations and its
  own;
- the **HTTPLocalRateLimitPolicy** of each Server.

A port no Server selects gets the default policy (the mesh's ``defaultInboundPolicy``
or the proxy's own ``--default-inbound-policy``), named ``default:<policy>`` in metrics
as Linkerd names its default servers. GET requests to the workload's probe paths are
let through wherever no HTTPRoute says otherwise, so a ``deny`` default does not stop
the kubelet's probes.

Rate limits whose settings did not change keep their buckets across reloads.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tulle.policy.authorize import (
    Authorization,
    IdentityRule,
    InboundPolicy,
    NetworkRule,
    PolicyRoute,
    ServerPolicy,
)
from tulle.policy.rate_limit import LocalRateLimit
from tulle.proxy.http_routes import RouteTable
from tulle.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from tulle.config.model import Config
    from tulle.config.schema_authorization import (
        AuthorizationPolicy,
        HTTPLocalRateLimitPolicy,
        MeshTLSAuthentication,
        NetworkAuthentication,
        Server,
        TargetRef,
    )
    from tulle.config.schema_tulle import Workload as MeshWorkload
    from tulle.policy.workload import Workload as PodWorkload

    Workload = MeshWorkload | PodWorkload  # read alike

log = logging.getLogger("tulle.policy")


def default_authorizations(policy: str, cluster_networks: Iterable[str]
                           ) -> list[Authorization]:
    """What a default policy (or a Server's accessPolicy) admits; empty for deny (and
    audit, which admits by letting denials through)."""
    cluster = NetworkRule(tuple((ipaddress.ip_network(cidr), ()) for cidr in cluster_networks))
    meshed = IdentityRule(any_identity=True)
    name = f"default:{policy}"
    return {
        "all-unauthenticated": [Authorization(name)],
        "all-authenticated": [Authorization(name, identities=(meshed,))],
        "cluster-unauthenticated": [Authorization(name, networks=(cluster,))],
        "cluster-authenticated": [Authorization(name, identities=(meshed,),
                                                networks=(cluster,))],
    }.get(policy, [])


@dataclass(slots=True)
class _Builder:
    """Authorizations gathered while compiling, each with its bit."""

    authorizations: list[Authorization] = field(default_factory=list)
    bits: dict[Authorization, int] = field(default_factory=dict)

    def mask(self, authorizations: Iterable[Authorization]) -> int:
        mask = 0
        for authorization in authorizations:
            bit = self.bits.get(authorization)
            if bit is None:
                bit = self.bits[authorization] = len(self.authorizations)
                self.authorizations.append(authorization)
            mask |= 1 << bit
        return mask


class PolicyState:
    """The current `InboundPolicy` of a proxy, replaced at each configuration."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.current = InboundPolicy((), {}, self._default("all-unauthenticated", ()))
        # Set by the proxy: overrides of what the configuration says.
        self.workload: Workload | None = None
        self.default_policy: str | None = None
        self.trust_domain: str | None = None  # this proxy's own, from its certificate

    def _default(self, policy: str, networks: Iterable[str],
                 builder: _Builder | None = None, probes: frozenset[bytes] = frozenset()
                 ) -> ServerPolicy:
        builder = builder or _Builder()
        name = f"default:{policy}"
        return ServerPolicy(name, builder.mask(default_authorizations(policy, networks)),
                            self.metrics.policy_counters(name), audit=policy == "audit",
                            probes=probes)

    def apply(self, config: Config) -> InboundPolicy:
        workload = self.workload or config.mesh.proxy.workload
        default = self.default_policy or config.mesh.default_inbound_policy
        networks = config.mesh.cluster_networks
        previous = self.current
        builder = _Builder()
        probes: dict[int, set[bytes]] = {}
        for probe in workload.probes:
            probes.setdefault(probe.port, set()).add(probe.path.encode("latin-1"))
        all_probes = frozenset(path for paths in probes.values() for path in paths)
        servers = self._servers(config, workload)
        namespace = workload.namespace
        policy = config.policy
        mesh_tls = {(m.metadata.namespace, m.metadata.name): m for m in policy.mesh_tls}
        nets = {(n.metadata.namespace, n.metadata.name): n for n in policy.networks}
        targeting: dict[tuple[str, str], list[Authorization]] = {}
        for item in policy.authorizations:
            if item.metadata.namespace != namespace:
                continue
            authorization = self._authorization(item, mesh_tls, nets)
            target = item.spec.target_ref
            targeting.setdefault((target.kind, target.name), []).append(authorization)
        namespace_wide = targeting.get(("Namespace", namespace), [])
        compiled: dict[int, ServerPolicy] = {}
        for port, server in servers.items():
            name = server.metadata.name
            mask = builder.mask([*targeting.get(("Server", name), []), *namespace_wide,
                                 *default_authorizations(server.spec.access_policy, networks)])
            routes = self._routes(config, server, mask, targeting, builder)
            compiled[port] = ServerPolicy(
                name, mask, self.metrics.policy_counters(name),
                audit=server.spec.access_policy == "audit", routes=routes,
                probes=frozenset(probes.get(port, ())) if routes is None else frozenset(),
                rate_limit=self._rate_limit(policy.rate_limits, server, previous))
        fallback = self._default(default, networks, builder, all_probes)
        self.current = InboundPolicy(builder.authorizations, compiled, fallback)
        return self.current

    def _servers(self, config: Config, workload: Workload) -> dict[int, Server]:
        """The Servers that select this workload, by port."""
        chosen: dict[int, Server] = {}
        for server in sorted(config.policy.servers, key=lambda s: s.metadata.name):
            if server.metadata.namespace != workload.namespace or \
                    not server.spec.pod_selector.matches(workload.labels):
                continue
            port = server.spec.port
            number = port if isinstance(port, int) else workload.ports.get(port)
            if number is None:
                continue  # a named port this workload does not have
            if number in chosen:
                log.warning("Servers %s and %s both select port %d; %s applies",
                            chosen[number].metadata.name, server.metadata.name, number,
                            chosen[number].metadata.name)
                continue
            chosen[number] = server
        return chosen

    def _identity(self, namespace: str, name: str) -> str:
        return f"spiffe://{self.trust_domain}/ns/{namespace}/sa/{name}"

    def _authorization(self, item: AuthorizationPolicy,
                       mesh_tls: dict[tuple[str, str], MeshTLSAuthentication],
                       nets: dict[tuple[str, str], NetworkAuthentication]) -> Authorization:
        namespace = item.metadata.namespace
        identities: list[IdentityRule] = []
        networks: list[NetworkRule] = []
        for ref in item.spec.required_authentication_refs:
            key = (ref.namespace or namespace, ref.name)
            if ref.kind == "ServiceAccount":
                identities.append(IdentityRule(exact=frozenset(
                    [self._identity(key[0], ref.name)] if self.trust_domain else [])))
            elif ref.kind == "MeshTLSAuthentication":
                found = mesh_tls.get(key)
                identities.append(self._mesh_tls(found) if found else IdentityRule())
            else:
                network = nets.get(key)
                networks.append(NetworkRule(tuple(
                    (ipaddress.ip_network(n.cidr), tuple(ipaddress.ip_network(e)
                                                         for e in n.except_))
                    for n in network.spec.networks) if network else ()))
        return Authorization(f"authorizationpolicy:{item.metadata.name}",
                             identities=tuple(identities), networks=tuple(networks))

    def _mesh_tls(self, item: MeshTLSAuthentication) -> IdentityRule:
        exact: set[str] = set()
        prefixes: list[str] = []
        any_identity = False
        for pattern in item.spec.identities:
            if pattern == "*":
                any_identity = True
            elif pattern.endswith("/*"):
                prefixes.append(pattern[:-1])
            else:
                exact.add(pattern)
        if self.trust_domain:
            for ref in item.spec.identity_refs:
                namespace = ref.namespace or item.metadata.namespace
                if ref.kind == "ServiceAccount":
                    exact.add(self._identity(namespace, ref.name))
                else:  # a Namespace: every ServiceAccount in it
                    prefixes.append(f"spiffe://{self.trust_domain}/ns/{ref.name}/sa/")
        return IdentityRule(any_identity, frozenset(exact), tuple(prefixes))

    def _routes(self, config: Config, server: Server, server_mask: int,
                targeting: dict[tuple[str, str], list[Authorization]],
                builder: _Builder) -> RouteTable[PolicyRoute] | None:
        entries = []
        order = 0
        for route in config.routes:
            if not any(_is_server(parent, route.namespace, server)
                       for parent in route.spec.parent_refs):
                continue
            mask = server_mask | builder.mask(targeting.get(("HTTPRoute", route.name), []))
            rules = route.spec.rules
            for index, rule in enumerate(rules):
                name = route.name if len(rules) == 1 else rule.name or f"{route.name}/{index}"
                target = PolicyRoute(name, mask)
                for match in rule.matches:
                    entries.append((match, order, target))
                    order += 1
        return RouteTable(entries) if entries else None

    def _rate_limit(self, limits: tuple[HTTPLocalRateLimitPolicy, ...], server: Server,
                    previous: InboundPolicy) -> LocalRateLimit | None:
        for item in limits:
            target = item.spec.target_ref
            if item.metadata.namespace != server.metadata.namespace or \
                    target.name != server.metadata.name:
                continue
            spec = item.spec
            for old in previous.servers.values():
                if old.name == server.metadata.name and old.rate_limit is not None and \
                        old.rate_limit.settings == spec:
                    return old.rate_limit
            overrides = [(o.requests_per_second, [
                self._identity(ref.namespace or item.metadata.namespace, ref.name)
                for ref in o.client_refs]) for o in spec.overrides] if self.trust_domain else []
            return LocalRateLimit(spec.total.requests_per_second if spec.total else None,
                                  spec.identity.requests_per_second if spec.identity else None,
                                  overrides, settings=spec)
        return None


def _is_server(parent: TargetRef | object, namespace: str, server: Server) -> bool:
    kind = getattr(parent, "kind", None)
    name = getattr(parent, "name", None)
    parent_namespace = getattr(parent, "namespace", None) or namespace
    return (kind == "Server" and name == server.metadata.name
            and parent_namespace == server.metadata.namespace)
