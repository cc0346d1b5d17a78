"""Per-service policy: load balancer, timeouts, retries, circuit breaker, outlier
detection and health checks.

The same models hold the mesh-wide defaults and a service's own settings; a service's
effective policy is the mesh default with the fields the service wrote laid over it
(see ``tulle.config.assemble``). Defaults come from DESIGN.md "Defaults".
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, StrictBool, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from tulle.config.durations import format_duration
from tulle.config.problems import describe
from tulle.config.schema_common import PositiveDuration, Schema, StrictInt
from tulle.http.methods import HTTP_METHODS, IDEMPOTENT_METHODS

# The balancing algorithms Tulle implements, by the name manifests use. The schema,
# the error messages and the docs all read this one tuple; tulle.balance.ALGORITHMS
# has one factory per name (a test checks the two agree).
LOAD_BALANCER_ALGORITHMS: tuple[str, ...] = (
    "expected-latency", "peak-ewma", "least-request", "least-response-time", "round-robin",
    "weighted-round-robin", "random", "ring-hash",
)  # fmt: skip
# Latency-aware with no settings, like Linkerd's peak-EWMA, without its failures on day
# one (issue 11: starved equal endpoints, a slow endpoint kept at a third of the traffic);
# measured in bench/results/balancing.md and simulate_lb.md. peak-ewma remains available.
DEFAULT_LOAD_BALANCER_ALGORITHM = "expected-latency"
# Linkerd's values (linkerd2-proxy outbound EWMA config): the estimate forgets with
# a 10 s time constant, and an endpoint nothing is known about is assumed to answer
# in 30 ms — slow enough that a measured-fast endpoint is preferred, fast enough
# that a new one gets tried.
DEFAULT_EWMA_DECAY_SECONDS = 10.0
DEFAULT_EWMA_RTT_SECONDS = 0.030
# Consistent hashing with bounded loads: no endpoint takes more than this percentage
# of the mean load per unit of weight (Envoy's hash_balance_factor and HAProxy's
# hash-balance-factor use the same percentage; 125 is the value the paper by
# Mirrokni, Thorup and Zadimoghaddam and Vimeo's deployment of it recommend).
DEFAULT_HASH_BALANCE_FACTOR = 125
# Slow start: Envoy's default slow-start window is off; ours, when asked for with
# no window, is the 30 s.
DEFAULT_SLOW_START_WINDOW_SECONDS = 30.0
LoadBalancerAlgorithm = Literal[LOAD_BALANCER_ALGORITHMS]  # type: ignore[valid-type]

# What a failed try may be retried on (the names Envoy and Linkerd use).
RETRY_CONDITIONS: tuple[str, ...] = (
    "5xx",              # any 5xx answer from the endpoint
    "gateway-error",    # 502, 503, 504
    "connect-failure",  # could not connect; the request never left
    "reset",            # connection reset before the response head
    "refused-stream",   # HTTP/2 REFUSED_STREAM; safe for any method
    "timeout",          # the per-try timeout ran out
    # gRPC calls whose grpc-status is one of these (Linkerd's retry.linkerd.io/grpc);
    # a gRPC call is retried whatever ``methods`` says (every call is a POST).
    "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
)
RetryCondition = Literal[RETRY_CONDITIONS]  # type: ignore[valid-type]

HttpMethod = Literal[HTTP_METHODS]  # type: ignore[valid-type]


_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token


def _header_name(value: str) -> str:
    if not _HEADER_NAME.fullmatch(value):
        raise PydanticCustomError(
            "header_name", f"expected an HTTP header or cookie name, got {describe(value)}"
        )
    return value.lower()


HeaderName = Annotated[str, AfterValidator(_header_name)]


class HashOn(Schema):
    """What ring-hash hashes: exactly one of a header, a cookie or the client address."""

    header: HeaderName | None = None
    cookie: HeaderName | None = None
    client_address: Literal[True] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        chosen = [name for name in ("header", "cookie", "client_address")
                  if getattr(self, name) is not None]
        if len(chosen) != 1:
            raise PydanticCustomError(
                "hash_on",
                "expected exactly one of header: <name>, cookie: <name> or "
                f"clientAddress: true, got {len(chosen)}",
            )
        return self


class SlowStart(Schema):
    """A new or recovered endpoint's share of traffic ramps up over ``window``."""

    window: PositiveDuration = DEFAULT_SLOW_START_WINDOW_SECONDS


_HASH_ONLY = ("hash_on", "hash_balance_factor")
_EWMA_ONLY = ("decay", "default_rtt")
_EWMA_ALGORITHMS = ("expected-latency", "peak-ewma", "least-response-time")


class LoadBalancer(Schema):
    """How a service's requests are spread over its endpoints (see docs/load-balancing.md).

    ``decay`` and ``defaultRtt`` tune the latency estimate of ``expected-latency``,
    ``peak-ewma`` and ``least-response-time``; ``hashOn`` and ``hashBalanceFactor``
    tune ``ring-hash``; ``slowStart`` and ``zoneAware`` apply to every algorithm.
    """

    algorithm: LoadBalancerAlgorithm = DEFAULT_LOAD_BALANCER_ALGORITHM
    hash_on: HashOn | None = None  # ring-hash; None hashes the client address
    hash_balance_factor: StrictInt = Field(DEFAULT_HASH_BALANCE_FACTOR, ge=100, le=10_000)
    decay: PositiveDuration = DEFAULT_EWMA_DECAY_SECONDS
    default_rtt: PositiveDuration = DEFAULT_EWMA_RTT_SECONDS
    slow_start: SlowStart | None = None
    zone_aware: bool = Field(True, strict=True)

    @model_validator(mode="after")
    def _settings_fit_the_algorithm(self) -> Self:
        # Only when the algorithm is written here: a service may set hashOn alone and
        # inherit ring-hash from the mesh defaults.
        if "algorithm" not in self.model_fields_set:
            return self
        wrong = []
        if self.algorithm != "ring-hash":
            wrong += [n for n in _HASH_ONLY if n in self.model_fields_set]
        if self.algorithm not in _EWMA_ALGORITHMS:
            wrong += [n for n in _EWMA_ONLY if n in self.model_fields_set]
        if wrong:
            fields = ", ".join(to_camel(name) for name in wrong)
            raise PydanticCustomError(
                "load_balancer",
                f"{fields} does not apply to algorithm {self.algorithm}",
            )
        return self


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
    """A service's retry policy. ``budget`` falls back to the mesh default.

    ``hedge``: a try that outlives ``timeouts.perTry`` is not abandoned; another goes to a
    different endpoint and the first answer wins (Envoy's ``hedge_on_per_try_timeout``).
    Hedges count as retries (``attempts``, ``budget``). Off by default: a hedge sends
    the request twice on purpose, which only the service's owner can say is cheap enough.
    """

    attempts: StrictInt = Field(2, ge=1, le=10)
    # The default: 502, 503, 504 and connection errors (refused or reset).
    on: tuple[RetryCondition, ...] = ("connect-failure", "reset", "gateway-error")
    methods: tuple[HttpMethod, ...] = IDEMPOTENT_METHODS
    budget: RetryBudget | None = None
    hedge: StrictBool = False


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
    """Eject endpoints whose failures stand out from their peers' (Envoy's rules and names).

    ``successRateStdevFactor`` is Envoy's ``success_rate_stdev_factor`` / 1000;
    ``failurePercentage`` is Envoy's ``failure_percentage_threshold``. Consecutive
    failures are the circuit breaker's job, not this one's.
    """

    interval: PositiveDuration = 10.0
    base_ejection_time: PositiveDuration = 30.0
    max_ejection_percent: StrictInt = Field(10, ge=0, le=100)
    minimum_requests: StrictInt = Field(20, ge=1)
    minimum_endpoints: StrictInt = Field(3, ge=1)
    success_rate_stdev_factor: float = Field(1.9, gt=0, allow_inf_nan=False)
    failure_percentage: float = Field(85.0, gt=0, le=100, allow_inf_nan=False)


class Limits(Schema):
    """Fail fast and shed load instead of queueing without bound.

    ``failFastAfter`` is how long a request waits for an endpoint to become
    available when none is (all ejected, open or unhealthy) before it gets 503;
    ``pendingRequests`` caps how many may wait so per service; and
    ``requestsPerEndpoint`` caps the requests (HTTP/1.1: connections) in flight
    to one endpoint. Past a cap, a request gets 503 at once.
    """

    fail_fast_after: PositiveDuration = 1.0
    pending_requests: StrictInt = Field(1000, ge=0)
    requests_per_endpoint: StrictInt = Field(10000, ge=1)


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
