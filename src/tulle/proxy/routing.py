"""Which service a request is for, from its authority.

Outbound, the authority is the Host header or the authority of an
absolute-form target (what a client sends through ``HTTP_PROXY``). A service
``web`` in namespace ``default`` answers to ``web``, ``web.default``,
``web.default.svc`` and ``web.default.svc.cluster.local``, with or without a
port, as Kubernetes DNS names it. Inbound, everything goes to the local app.

When iptables captured the connection (``tulle proxy --transparent``), its original
destination decides first: a service's ``clusterIP`` and port is that service; any
other address (a pod IP, or inbound the app's own port) gets a target of its own
that forwards to it as it is (``direct``, made by ``tulle.proxy.mesh``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final

from tulle.http import RequestHead
from tulle.proxy.targets import ServiceTarget

CLUSTER_DOMAIN: Final = "cluster.local"


def service_names(name: str, namespace: str) -> list[str]:
    """Every host name a service answers to."""
    return [
        f"{name}.{namespace}",
        f"{name}.{namespace}.svc",
        f"{name}.{namespace}.svc.{CLUSTER_DOMAIN}",
    ]


def authority_host(authority: bytes) -> bytes:
    """The host part of an authority, lower-cased, without port or final dot."""
    if authority.startswith(b"["):  # IPv6 literal
        end = authority.find(b"]")
        host = authority[: end + 1] if end >= 0 else authority
    else:
        host = authority.rsplit(b":", 1)[0] if b":" in authority else authority
    return host.lower().rstrip(b".")


def take_absolute_form(head: RequestHead) -> None:
    """Turn ``GET http://web/x`` into ``GET /x`` with ``Host: web`` (RFC 9112 §3.2.2)."""
    target = head.target
    scheme_end = target.find(b"://")
    if scheme_end <= 0 or target[0:1] == b"/":
        return
    rest = target[scheme_end + 3 :]
    slash = rest.find(b"/")
    query = rest.find(b"?")
    cut = min(i for i in (slash, query, len(rest)) if i >= 0)
    authority = rest[:cut]
    path = rest[cut:] or b"/"
    if path.startswith(b"?"):
        path = b"/" + path
    head.target = path
    head.host = authority
    head.headers = [(n, v) for n, v in head.headers if n.lower() != b"host"]
    head.headers.append((b"host", authority))


Destination = tuple[str, int]  # (ip, port), as SO_ORIGINAL_DST gives it


class Router:
    """Maps authorities and original destinations to targets; built once per configuration."""

    __slots__ = ("_by_destination", "_by_name", "_direct", "default")

    def __init__(
        self,
        targets: Iterable[ServiceTarget],
        default: ServiceTarget | None = None,
        destinations: Mapping[Destination, ServiceTarget] | None = None,
        direct: Callable[[Destination], ServiceTarget] | None = None,
    ) -> None:
        by_name: dict[bytes, ServiceTarget] = {}
        short: dict[str, ServiceTarget] = {}
        for target in targets:
            for name in service_names(target.name, target.namespace):
                by_name[name.encode()] = target
            # A bare name means the service in the "default" namespace when
            # there is one, else the first one with that name.
            if target.name not in short or target.namespace == "default":
                short[target.name] = target
        for name, target in short.items():
            by_name.setdefault(name.encode(), target)
        self._by_name = by_name
        self.default = default
        self._by_destination = dict(destinations or {})
        self._direct = direct

    def resolve(self, head: RequestHead) -> ServiceTarget | None:
        if head.target[:1] != b"/":
            take_absolute_form(head)
        authority = head.host
        if authority is None:
            return self.default
        by_name = self._by_name
        target = by_name.get(authority)
        if target is None:
            target = by_name.get(authority_host(authority), self.default)
        return target

    def resolve_authority(self, authority: bytes) -> ServiceTarget | None:
        """The service an authority names (a CONNECT's ``web:443``), with no default."""
        by_name = self._by_name
        return by_name.get(authority) or by_name.get(authority_host(authority))

    def resolve_destination(self, destination: Destination) -> ServiceTarget | None:
        """The target for a captured connection's original destination: the service
        whose clusterIP and port it is, else one that forwards to it as it is."""
        target = self._by_destination.get(destination)
        if target is None and self._direct is not None:
            target = self._direct(destination)
        return target
