"""Inbound policy kinds, ``policy.tulle.dev/v1alpha1``: who may call a workload, how often.

They are Linkerd's policy resources (policy.linkerd.io ``Server``,
``AuthorizationPolicy``, ``MeshTLSAuthentication``, ``NetworkAuthentication``,
``HTTPLocalRateLimitPolicy``) with the same fields and meaning, in Tulle's API group
so both can be installed side by side; docs/security.md has the mapping. Identities
are SPIFFE IDs (``spiffe://<trust-domain>/ns/<ns>/sa/<sa>``) rather than Linkerd's DNS
form. An HTTPRoute whose ``parentRef`` is a Server (``group: policy.tulle.dev, kind:
Server``) divides that server's traffic into routes an AuthorizationPolicy can target.

How the proxy applies them is `tulle.policy`.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from tulle.config.methods import LabelSelectorMethods
from tulle.config.problems import describe
from tulle.config.schema_common import (
    DnsLabel,
    DnsSubdomain,
    ObjectMeta,
    Port,
    Schema,
    StrictInt,
)
from tulle.policy.defaults import DEFAULT_POLICIES  # Linkerd's, plus audit

POLICY_API_VERSION = "policy.tulle.dev/v1alpha1"
POLICY_GROUP = "policy.tulle.dev"
DefaultPolicy = Literal[DEFAULT_POLICIES]  # type: ignore[valid-type]
PROXY_PROTOCOLS: tuple[str, ...] = ("unknown", "HTTP/1", "HTTP/2", "gRPC", "opaque", "TLS")
ProxyProtocol = Literal[PROXY_PROTOCOLS]  # type: ignore[valid-type]
# Linkerd's default clusterNetworks: the private ranges a cluster's pods live in.
CLUSTER_NETWORKS: tuple[str, ...] = (
    "10.0.0.0/8", "100.64.0.0/10", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8",
)
_PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?")  # IANA_SVC_NAME: 15 at most
_LABEL_KEY = re.compile(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*"
                        r"[A-Za-z0-9])?")


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise PydanticCustomError(
            "cidr", f"expected a network in CIDR notation (10.0.0.0/8, fd00::/8) or an "
                    f"address, got {describe(value)}") from None


Cidr = Annotated[str, AfterValidator(_cidr)]


def _port_name(value: str) -> str:
    if not _PORT_NAME.fullmatch(value):
        raise PydanticCustomError(
            "port_name", f"expected a port number or a container port name (lower-case "
                         f"letters, digits and '-', at most 15), got {describe(value)}")
    return value


PortName = Annotated[str, AfterValidator(_port_name)]


def _identity_pattern(value: str) -> str:
    """``*``, a SPIFFE ID, or a SPIFFE ID prefix ending in ``/*``."""
    from tulle.identity.spiffe import IdentityError, WorkloadIdentity

    if value == "*":
        return value
    if value.endswith("/*") and value.startswith("spiffe://") and value.count("/") >= 3:
        return value
    try:
        return WorkloadIdentity.parse(value).uri
    except IdentityError as exc:
        raise PydanticCustomError(
            "identity", f"{exc}; or '*' for every meshed client, or a prefix ending in "
                        f"'/*' (spiffe://cluster.local/ns/shop/*)") from None


IdentityPattern = Annotated[str, AfterValidator(_identity_pattern),
                            WithJsonSchema({"type": "string", "pattern": r"^(\*|spiffe://.+)$"},
                                           mode="validation")]


def _label_key(value: str) -> str:
    if not _LABEL_KEY.fullmatch(value) or len(value) > 316:
        raise PydanticCustomError("label_key", f"expected a label key, got {describe(value)}")
    return value


LabelKey = Annotated[str, AfterValidator(_label_key)]


class LabelSelectorRequirement(Schema):
    key: LabelKey
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _values_fit(self) -> Self:
        if self.operator in ("In", "NotIn") and not self.values:
            raise PydanticCustomError("selector", f"operator {self.operator} needs values")
        if self.operator in ("Exists", "DoesNotExist") and self.values:
            raise PydanticCustomError("selector", f"operator {self.operator} takes no values")
        return self


class LabelSelector(LabelSelectorMethods, Schema):
    """Kubernetes' label selector: every label and every expression must match; an
    empty selector matches every pod."""

    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: tuple[LabelSelectorRequirement, ...] = ()


class ServerSpec(Schema):
    pod_selector: LabelSelector = Field(default_factory=LabelSelector)
    port: Port | PortName
    proxy_protocol: ProxyProtocol = "unknown"
    # What traffic that no AuthorizationPolicy allows gets (Linkerd's default: deny).
    access_policy: DefaultPolicy = "deny"


class Server(Schema):
    """A port on the pods a selector picks, in its namespace: the unit policy targets."""

    api_version: Literal["policy.tulle.dev/v1alpha1"]
    kind: Literal["Server"]
    metadata: ObjectMeta
    spec: ServerSpec


class TargetRef(Schema):
    group: str | None = None
    kind: str
    name: DnsSubdomain
    namespace: DnsLabel | None = None


AUTHORIZATION_TARGETS = ("Server", "HTTPRoute", "Namespace")
AUTHENTICATION_KINDS = ("MeshTLSAuthentication", "NetworkAuthentication", "ServiceAccount")


class AuthorizationPolicySpec(Schema):
    target_ref: TargetRef
    required_authentication_refs: tuple[TargetRef, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _kinds(self) -> Self:
        if self.target_ref.kind not in AUTHORIZATION_TARGETS:
            raise PydanticCustomError(
                "target", f"expected targetRef.kind one of {', '.join(AUTHORIZATION_TARGETS)}, "
                          f"got {describe(self.target_ref.kind)}")
        for ref in self.required_authentication_refs:
            if ref.kind not in AUTHENTICATION_KINDS:
                raise PydanticCustomError(
                    "authentication", f"expected requiredAuthenticationRefs kinds among "
                                      f"{', '.join(AUTHENTICATION_KINDS)}, got "
                                      f"{describe(ref.kind)}")
        return self


class AuthorizationPolicy(Schema):
    """Traffic to the target is allowed when every required authentication holds."""

    api_version: Literal["policy.tulle.dev/v1alpha1"]
    kind: Literal["AuthorizationPolicy"]
    metadata: ObjectMeta
    spec: AuthorizationPolicySpec


class IdentityRef(Schema):
    kind: Literal["ServiceAccount", "Namespace"]
    name: DnsSubdomain
    namespace: DnsLabel | None = None


class MeshTLSAuthenticationSpec(Schema):
    identities: tuple[IdentityPattern, ...] = ()
    identity_refs: tuple[IdentityRef, ...] = ()

    @model_validator(mode="after")
    def _some(self) -> Self:
        if not self.identities and not self.identity_refs:
            raise PydanticCustomError("identities", "expected identities or identityRefs")
        return self


class MeshTLSAuthentication(Schema):
    """Clients over mutual TLS whose identity is one of these."""

    api_version: Literal["policy.tulle.dev/v1alpha1"]
    kind: Literal["MeshTLSAuthentication"]
    metadata: ObjectMeta
    spec: MeshTLSAuthenticationSpec


class Network(Schema):
    cidr: Cidr
    except_: tuple[Cidr, ...] = Field((), alias="except")


class NetworkAuthenticationSpec(Schema):
    networks: tuple[Network, ...] = Field(min_length=1)


class NetworkAuthentication(Schema):
    """Clients whose address is in one of these networks (and none of their exceptions)."""

    api_version: Literal["policy.tulle.dev/v1alpha1"]
    kind: Literal["NetworkAuthentication"]
    metadata: ObjectMeta
    spec: NetworkAuthenticationSpec


class RateLimit(Schema):
    requests_per_second: StrictInt = Field(ge=1)


class ClientRef(Schema):
    kind: Literal["ServiceAccount"]
    name: DnsSubdomain
    namespace: DnsLabel | None = None


class RateLimitOverride(Schema):
    requests_per_second: StrictInt = Field(ge=1)
    client_refs: tuple[ClientRef, ...] = Field(min_length=1)


class HTTPLocalRateLimitPolicySpec(Schema):
    target_ref: TargetRef
    total: RateLimit | None = None
    identity: RateLimit | None = None
    overrides: tuple[RateLimitOverride, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.target_ref.kind != "Server":
            raise PydanticCustomError("target", f"expected targetRef.kind Server, got "
                                                f"{describe(self.target_ref.kind)}")
        total = self.total.requests_per_second if self.total else None
        if total is not None:
            if self.identity is not None and self.identity.requests_per_second > total:
                raise PydanticCustomError(
                    "rate", f"expected identity.requestsPerSecond <= total.requestsPerSecond "
                            f"({total}), got {self.identity.requests_per_second}")
            for override in self.overrides:
                if override.requests_per_second > total:
                    raise PydanticCustomError(
                        "rate", f"expected each override's requestsPerSecond <= "
                                f"total.requestsPerSecond ({total}), got "
                                f"{override.requests_per_second}")
        return self


class HTTPLocalRateLimitPolicy(Schema):
    """A local rate limit on a Server's HTTP requests: in total, per client identity,
    and for named clients."""

    api_version: Literal["policy.tulle.dev/v1alpha1"]
    kind: Literal["HTTPLocalRateLimitPolicy"]
    metadata: ObjectMeta
    spec: HTTPLocalRateLimitPolicySpec


POLICY_KINDS: dict[str, type[Schema]] = {
    "Server": Server,
    "AuthorizationPolicy": AuthorizationPolicy,
    "MeshTLSAuthentication": MeshTLSAuthentication,
    "NetworkAuthentication": NetworkAuthentication,
    "HTTPLocalRateLimitPolicy": HTTPLocalRateLimitPolicy,
}
# Their resource names (the CRDs' plurals), for watching them.
POLICY_RESOURCES: dict[str, str] = {
    "Server": "servers",
    "AuthorizationPolicy": "authorizationpolicies",
    "MeshTLSAuthentication": "meshtlsauthentications",
    "NetworkAuthentication": "networkauthentications",
    "HTTPLocalRateLimitPolicy": "httplocalratelimitpolicies",
}
