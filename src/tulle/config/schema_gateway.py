"""Gateway API ``gateway.networking.k8s.io/v1`` ``HTTPRoute``: matches and weighted backends.

Routes are parsed and checked now (regular expressions are compiled here, so a bad
one is a load error rather than a surprise on the first request); routing by them is
the proxy's job. Only the parts of HTTPRoute Tulle acts on are accepted (matches,
backendRefs, a rule's timeouts and retry): a filter it would silently ignore is
reported as an unknown field instead.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, PrivateAttr, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from tulle.config.methods import NamedByMetadata, ValueMatchMethods
from tulle.config.schema_common import (
    DnsLabel,
    DnsSubdomain,
    ObjectMeta,
    Port,
    PositiveDuration,
    Schema,
    StrictInt,
)
from tulle.config.schema_policy import HttpMethod

GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
_HOSTNAME = re.compile(r"(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as error:
        raise PydanticCustomError(
            "regex", f'expected a regular expression, got "{pattern}" ({error})'
        ) from None


class ParentRef(Schema):
    """What the route attaches to; in a mesh, the Service whose traffic it routes."""

    group: str | None = None
    kind: str = "Gateway"
    namespace: DnsLabel | None = None
    name: DnsSubdomain
    section_name: str | None = None
    port: Port | None = None


class _ValueMatch(ValueMatchMethods, Schema):
    """A match on a ``value`` that may be a regular expression, compiled once at load."""

    type: str
    value: str
    _pattern: re.Pattern[str] | None = PrivateAttr(None)

    def model_post_init(self, context: Any) -> None:
        if self.type == "RegularExpression":
            self.__pydantic_private__["_pattern"] = re.compile(self.value)


class PathMatch(_ValueMatch):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: str = "/"
    @field_validator("value")
    @classmethod
    def _check_value(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("type") == "RegularExpression":
            _compile(value)
        elif not value.startswith("/"):
            raise PydanticCustomError(
                "path", f'expected a path starting with "/", got "{value}"'
            )
        return value


class HeaderMatch(_ValueMatch):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: str = Field(pattern=_HEADER_NAME.pattern)
    value: str

    @field_validator("value")
    @classmethod
    def _check_value(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("type") == "RegularExpression":
            _compile(value)
        return value


class RouteMatch(Schema):
    path: PathMatch = Field(default_factory=PathMatch)
    method: HttpMethod | None = None
    headers: tuple[HeaderMatch, ...] = ()


class BackendRef(Schema):
    group: str = ""
    kind: Literal["Service", "MeshService"] = "Service"
    name: DnsLabel
    namespace: DnsLabel | None = None
    port: Port | None = None
    # Gateway API allows weights 0 (no traffic) to 1,000,000.
    weight: StrictInt = Field(1, ge=0, le=1_000_000)


class RouteTimeouts(Schema):
    """Gateway API's rule timeouts (GEP-1742): the whole request, and each try."""

    request: PositiveDuration | None = None
    backend_request: PositiveDuration | None = None


class RouteRetry(Schema):
    """A rule marked retryable (Gateway API's ``retry``, GEP-1731): its requests are
    retried whatever their method, on these status codes and on broken connections."""

    attempts: StrictInt = Field(2, ge=1, le=10)
    codes: tuple[Annotated[int, Field(ge=500, le=599)], ...] = (502, 503, 504)


class RouteRule(Schema):
    name: str | None = None
    matches: tuple[RouteMatch, ...] = (RouteMatch(),)
    backend_refs: tuple[BackendRef, ...] = ()
    timeouts: RouteTimeouts | None = None
    retry: RouteRetry | None = None


def _hostname(value: str) -> str:
    if not _HOSTNAME.fullmatch(value) or len(value) > 253:
        raise PydanticCustomError(
            "hostname", f'expected a host name like web.example.com or *.example.com, got "{value}"'
        )
    return value


Hostname = Annotated[str, AfterValidator(_hostname)]


class HTTPRouteSpec(Schema):
    parent_refs: tuple[ParentRef, ...] = ()
    hostnames: tuple[Hostname, ...] = ()
    rules: tuple[RouteRule, ...] = (RouteRule(),)


class HTTPRoute(NamedByMetadata, Schema):
    api_version: Literal["gateway.networking.k8s.io/v1"]
    kind: Literal["HTTPRoute"]
    metadata: ObjectMeta
    spec: HTTPRouteSpec = Field(default_factory=HTTPRouteSpec)
    status: dict[str, Any] | None = None
