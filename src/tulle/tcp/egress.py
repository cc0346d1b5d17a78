"""Which CONNECT targets outside the mesh may be tunnelled to (``ServiceMesh spec.egress``).

A CONNECT to a mesh service is always tunnelled (and balanced). Any other target — the
public internet, a database outside the cluster — is refused with 403 unless a rule of
``spec.egress.allow`` names it, so that ``https_proxy`` pointed at the mesh does not turn
every proxy into an open relay. Rules are checked once per tunnel, in order:

- ``*`` — any host;
- ``api.example.com`` — that name; ``*.example.com`` — any name below it (not the name
  itself, as in TLS certificates);
- ``203.0.113.7`` or ``10.0.0.0/8`` — a target written as an IP address in that block
  (a name is not resolved to be matched against it);

each on ``ports`` (every port when the rule lists none).
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tulle.config.schema_tulle import EgressRule

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class EgressPolicy:
    """The allow rules, made once per configuration."""

    __slots__ = ("_rules",)

    def __init__(self, rules: Iterable[EgressRule] = ()) -> None:
        compiled: list[tuple[str, IPNetwork | None, frozenset[int]]] = []
        for rule in rules:
            network: IPNetwork | None = None
            with contextlib.suppress(ValueError):
                network = ipaddress.ip_network(rule.host, strict=False)
            compiled.append((rule.host, network, frozenset(rule.ports)))
        self._rules = tuple(compiled)

    def allows(self, host: str, port: int) -> bool:
        """May a CONNECT to ``host:port`` (not a mesh service) be tunnelled?"""
        host = host.lower().rstrip(".")
        address = None
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(host)
        for pattern, network, ports in self._rules:
            if ports and port not in ports:
                continue
            if pattern == "*":
                return True
            if network is not None:
                if address is not None and address in network:
                    return True
            elif pattern.startswith("*."):
                if host.endswith(pattern[1:]):
                    return True
            elif host == pattern:
                return True
        return False
