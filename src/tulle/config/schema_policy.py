"""Per-service policy: load balancer, timeouts, retries, circuit breaker, outlier
detection and health checks.

The same models hold the mesh-wide defaults and a service's own settings; a service's
effective policy is the mesh default with the fields the service wrote laid over it
(see ``tulle.config.assemble``). Defaults come from DESIGN.md "Defaults".
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from tulle.config.durations import format_duration
from tulle.config.problems import describe
from tulle.config.schema_common import PositiveDuration, Schema, StrictInt

# The balancing algorithms Tulle implements, by the name manifests use. The
# load-balancing work adds names here (and a balancer per name); the schema, the
# error messages and the docs all read this one tuple.
LOAD_BALANCER_ALGORITHMS: tuple[str, ...] = ("round-robin",)
# DESIGN.md makes peak-ewma the default once it exists; until then, the only choice.
DEFAULT_LOAD_BALANCER_ALGORITHM = "round-robin"
LoadBalancerAlgorithm = Literal[LOAD_BALANCER_ALGORITHMS]  # type: ignore[valid-type]

# What a failed try may be retried on (the names Envoy and Linkerd use).
RETRY_CONDITIONS: tuple[str, ...] = (
    "5xx",              # any 5xx answer from the endpoint
    "gateway-error",    # 502, 503, 504
    "connect-failure",  # could not connect; the request never left
    "reset",            # connection reset before the response head
    "refused-stream",   # HTTP/2 REFUSED_STREAM; safe for any method
    "timeout",          # the per-try timeout ran out
)
RetryCondition = Literal[RETRY_CONDITIONS]  # type: ignore[valid-type]

HTTP_METHODS: tuple[str, ...] = (
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
)
HttpMethod = Literal[HTTP_METHODS]  # type: ignore[valid-type]
# RFC 9110 idempotent methods: retried by default because repeating them is safe.
IDEMPOTENT_METHODS: tuple[str, ...] = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE")


class LoadBalancer(Schema):
    algorithm: LoadBalancerAlgorithm = DEFAULT_LOAD_BALANCER_ALGORITHM


class Timeouts(Schema):
    """How long a request, a connect, an idle connection and one try may take."""

    request: PositiveDuration = 10.0
    connect: PositiveDuration = 1.0
    idle: PositiveDuration = 60.0
    per_try: PositiveDuration | None = None


class RetryBudget(Schema):
    """Retries allowed: ``ratio`` of requests, at least ``minPerSecond``, over ``window``."""

    ratio: float = Field(0.2, ge=0.0, le=1.0, allow_inf_nan=False)
    min_per_second: StrictInt = Field(10, ge=0)
    window: PositiveDuration = 10.0


class RetryDefaults(Schema):
    """Mesh-wide retry settings: the budget every service shares unless it sets its own."""

    budget: RetryBudget = Field(default_factory=RetryBudget)


class Retries(Schema):
    """A service's retry policy. ``budget`` falls back to the mesh default."""

    attempts: StrictInt = Field(2, ge=1, le=10)
    on: tuple[RetryCondition, ...] = ("connect-failure", "gateway-error")
    methods: tuple[HttpMethod, ...] = IDEMPOTENT_METHODS
    budget: RetryBudget | None = None


class Backoff(Schema):
    min: PositiveDuration = 1.0
    max: PositiveDuration = 60.0

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Self:
        if self.min > self.max:
            raise PydanticCustomError(
                "backoff",
                f"expected min <= max, got min {format_duration(self.min)} and max "
                f"{format_duration(self.max)}",
            )
        return self


class CircuitBreaker(Schema):
    """Open an endpoint after consecutive failures; probe it again with backoff."""

    consecutive_failures: StrictInt = Field(7, ge=1)
    backoff: Backoff = Field(default_factory=Backoff)


class OutlierDetection(Schema):
    """Eject endpoints that keep failing (Envoy's names and defaults)."""

    consecutive_5xx: StrictInt = Field(5, ge=1, alias="consecutive5xx")
    interval: PositiveDuration = 10.0
    base_ejection_time: PositiveDuration = 30.0
    max_ejection_percent: StrictInt = Field(10, ge=0, le=100)


def _request_path(value: str) -> str:
    if not value.startswith("/"):
        raise PydanticCustomError(
            "path", f"expected a path starting with \"/\", got {describe(value)}"
        )
    return value


RequestPath = Annotated[str, AfterValidator(_request_path)]


class HttpHealthCheck(Schema):
    path: RequestPath = "/"


class TcpHealthCheck(Schema):
    """Connecting is the check; no settings yet."""


class HealthCheck(Schema):
    """Active checks: exactly one of ``http`` or ``tcp``."""

    http: HttpHealthCheck | None = None
    tcp: TcpHealthCheck | None = None
    interval: PositiveDuration = 5.0
    timeout: PositiveDuration = 1.0
    unhealthy_after: StrictInt = Field(3, ge=1)
    healthy_after: StrictInt = Field(2, ge=1)

    @model_validator(mode="after")
    def _one_kind_of_check(self) -> Self:
        if (self.http is None) == (self.tcp is None):
            raise PydanticCustomError(
                "health_check", "expected exactly one of http: {path: ...} or tcp: {}"
            )
        if self.timeout > self.interval:
            raise PydanticCustomError(
                "health_check",
                f"expected timeout <= interval, got timeout {format_duration(self.timeout)} "
                f"and interval {format_duration(self.interval)}",
            )
        return self
