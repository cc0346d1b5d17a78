"""Building blocks shared by every manifest schema: the base model, names, durations.

All schema models are frozen and refuse unknown fields, so a typo in a manifest is an
error at load instead of a setting silently ignored. YAML spells fields in camelCase
like Kubernetes; Python reads the same fields in snake_case.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from tulle.config.durations import DURATION_EXAMPLES, format_duration, parse_duration
from tulle.config.names import DNS_LABEL, DNS_SUBDOMAIN
from tulle.config.problems import describe


class Schema(BaseModel):
    """Base of every manifest model: frozen, strict about unknown fields, camelCase in YAML."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        hide_input_in_errors=False,
        # A model's validator (pydantic-core, native memory) is built when the model is
        # first validated, not when its class is defined: a proxy builds only the kinds
        # its manifests use (~1.2 MB for all of them).
        defer_build=True,
    )


# Numbers are strict so that `weight: true` or `port: "80"` is a mistake, not a guess.
StrictInt = Annotated[int, Field(strict=True)]
Port = Annotated[StrictInt, Field(ge=1, le=65535)]


# What a duration looks like (tulle.config.durations has the exact rules): numbers with
# units, e.g. 250ms, 10s, 1m30s.
DURATION_PATTERN = r"^(0|(([0-9]+(\.[0-9]+)?|\.[0-9]+)(ms|us|h|m|s))+)$"


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise PydanticCustomError(
            "duration", f"expected {DURATION_EXAMPLES}, got {describe(value)}"
        )
    if not isinstance(value, str):
        raise PydanticCustomError(
            "duration",
            f"expected {DURATION_EXAMPLES}, got {describe(value)} (add a unit, e.g. {value}s)",
        )
    try:
        return parse_duration(value)
    except ValueError as error:
        raise PydanticCustomError("duration", str(error)) from None


def _positive(seconds: float) -> float:
    if seconds <= 0:
        raise PydanticCustomError("duration", "expected a duration greater than zero, got 0s")
    return seconds


# A duration in float seconds; written "250ms" / "10s" / "1m30s", rendered the same way.
Duration = Annotated[
    float,
    BeforeValidator(_seconds, json_schema_input_type=str),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    # For the CRDs' OpenAPI schemas (tulle.kube.crds): written as a string with a unit.
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN}, mode="validation"),
]
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


def _dns_label(value: str) -> str:
    if not DNS_LABEL.fullmatch(value):
        raise PydanticCustomError(
            "dns_label",
            "expected a DNS label (lowercase letters, digits and '-', starting and ending "
            f"with a letter or digit, at most 63 characters), got {describe(value)}",
        )
    return value


def _dns_subdomain(value: str) -> str:
    if len(value) > 253 or not DNS_SUBDOMAIN.fullmatch(value):
        raise PydanticCustomError(
            "dns_subdomain",
            "expected a DNS name (lowercase letters, digits, '-' and '.', at most 253 "
            f"characters), got {describe(value)}",
        )
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
DnsSubdomain = Annotated[str, AfterValidator(_dns_subdomain)]

SPIFFE_ID_PATTERN = (r"^spiffe://[a-z0-9._-]+/ns/[a-z0-9]([-a-z0-9]*[a-z0-9])?"
                     r"/sa/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def _spiffe_id(value: str) -> str:
    from tulle.identity.spiffe import IdentityError, WorkloadIdentity

    try:
        return WorkloadIdentity.parse(value).uri
    except IdentityError as exc:
        raise PydanticCustomError("spiffe_id", str(exc)) from None


# A workload identity: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
SpiffeId = Annotated[str, AfterValidator(_spiffe_id),
                     WithJsonSchema({"type": "string", "pattern": SPIFFE_ID_PATTERN},
                                    mode="validation")]

DEFAULT_NAMESPACE = "default"


class ObjectMeta(Schema):
    """Kubernetes object metadata. Tulle reads name, namespace and labels; the fields a
    cluster adds (uid, resourceVersion, ...) are accepted so `kubectl get -o yaml`
    output loads as it is."""

    name: DnsSubdomain
    namespace: DnsLabel = DEFAULT_NAMESPACE
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # Written by the API server; accepted and ignored.
    uid: str | None = None
    resource_version: str | None = None
    generation: StrictInt | None = None
    creation_timestamp: Any = None
    deletion_timestamp: Any = None
    deletion_grace_period_seconds: StrictInt | None = None
    generate_name: str | None = None
    owner_references: list[dict[str, Any]] | None = None
    finalizers: list[str] | None = None
    managed_fields: list[dict[str, Any]] | None = None
    self_link: str | None = None


class ServiceMeta(ObjectMeta):
    """Metadata of a service: its name becomes a DNS label (``web.default``)."""

    name: DnsLabel
