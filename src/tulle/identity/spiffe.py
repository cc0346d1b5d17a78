"""Workload identities: who a proxy is, as a SPIFFE ID and as the TLS server name.

A meshed workload is its Kubernetes ServiceAccount: ``spiffe://<trust-domain>/ns/<ns>/
sa/<sa>`` (the SPIFFE ID form Istio and Linkerd use; SPIFFE ID spec, "SPIFFE ID" and
"Trust Domain"). Certificates carry it as a URI subject alternative name; that is the
identity policy and metrics speak of.

A TLS client names the server it wants with SNI, which must be a DNS host name (RFC
6066 §3), so every identity also has a DNS form,
``<sa>.<ns>.serviceaccount.identity.<trust-domain>`` (Linkerd's shape), carried as a
DNS SAN of the same certificate. The outbound side sends it as SNI and OpenSSL checks
it during the handshake; the inbound side terminates only ClientHellos that name its
own, and passes any other TLS (the application's own) through untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCHEME = "spiffe://"
DNS_INFIX = "serviceaccount.identity"
# A trust domain is a DNS-like name (SPIFFE ID spec §2.1: lower-case letters, digits,
# '.', '-', '_'); namespaces are DNS labels and service account names DNS subdomains
# (Kubernetes object names).
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")
_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_SERVICE_ACCOUNT = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
DEFAULT_TRUST_DOMAIN = "cluster.local"


class IdentityError(ValueError):
    """Not a workload identity Tulle issues or accepts."""


@dataclass(frozen=True, slots=True)
class WorkloadIdentity:
    """A ServiceAccount in a trust domain."""

    trust_domain: str
    namespace: str
    service_account: str

    def __post_init__(self) -> None:
        for value, pattern, what in ((self.trust_domain, _TRUST_DOMAIN, "trust domain"),
                                     (self.namespace, _NAMESPACE, "namespace"),
                                     (self.service_account, _SERVICE_ACCOUNT,
                                      "service account name")):
            if not pattern.fullmatch(value):
                raise IdentityError(f"expected a {what} (lower-case letters, digits, '-'), "
                                    f"got {value!r}")

    @property
    def uri(self) -> str:
        """``spiffe://cluster.local/ns/default/sa/web``"""
        return f"{SCHEME}{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    @property
    def dns_name(self) -> str:
        """``web.default.serviceaccount.identity.cluster.local``: the TLS server name."""
        return f"{self.service_account}.{self.namespace}.{DNS_INFIX}.{self.trust_domain}"

    def __str__(self) -> str:
        return self.uri

    @classmethod
    def parse(cls, uri: str) -> WorkloadIdentity:
        """The identity a SPIFFE ID names; IdentityError for anything else."""
        if not uri.startswith(SCHEME):
            raise IdentityError(f"expected a SPIFFE ID (spiffe://<trust-domain>/ns/<namespace>/"
                                f"sa/<service-account>), got {uri!r}")
        domain, _, path = uri[len(SCHEME):].partition("/")
        parts = path.split("/")
        if len(parts) != 4 or parts[0] != "ns" or parts[2] != "sa":
            raise IdentityError(f"expected spiffe://{domain}/ns/<namespace>/sa/"
                                f"<service-account>, got {uri!r}")
        return cls(domain, parts[1], parts[3])


def dns_name_of(uri: str) -> str:
    """The TLS server name of a SPIFFE ID (IdentityError if it is not one)."""
    return WorkloadIdentity.parse(uri).dns_name
