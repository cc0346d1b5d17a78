"""Which failed tries may be tried again, and how long to wait before doing it.

A try fails with a *condition* (Envoy's and Linkerd's names):
``connect-failure`` (the request never left: always safe to retry),
``reset`` (the connection broke before the response head), ``gateway-error``
(502/503/504 from the endpoint), ``5xx`` (any 5xx) and ``timeout`` (the per-try
timeout). Anything but a connect failure may have reached the endpoint, so it
is retried only for the methods the policy lists (the idempotent ones by
default), and only while the request body can still be replayed.

A hedge (``hedge: true``) sends a slow try again without abandoning it, so the request
reaches two endpoints at once: only for the RFC 9110 idempotent methods (§9.2.2) among
those the policy lists, never for a gRPC call (every call is a POST, and whether one is
idempotent is the service's to say).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from tulle.grpc.status import CODE_NAMES
from tulle.http.methods import HTTP_METHODS, IDEMPOTENT_METHODS

if TYPE_CHECKING:
    from tulle.config.schema_policy import Retries

CONNECT_FAILURE: Final = "connect-failure"
REFUSED_STREAM: Final = "refused-stream"
RESET: Final = "reset"
TIMEOUT: Final = "timeout"
STATUS: Final = "status"  # the endpoint answered with a status `retries_status` accepted
GRPC_STATUS: Final = "grpc-status"  # a gRPC call ended with a grpc-status `retries_grpc` accepted
GATEWAY_STATUSES: Final = frozenset({502, 503, 504})

# Backoff between tries: full jitter over an exponential range, short enough that
# a retry hides a dead endpoint from the client, long enough to spread a herd.
BACKOFF_BASE: Final = 0.005
BACKOFF_MAX: Final = 0.1

# Request bodies up to this size are kept for replay (DESIGN.md "Defaults").
MAX_REPLAY_BODY: Final = 64 * 1024


class RetryPolicy:
    """A service's retry settings, checked once and read per failed try."""

    __slots__ = ("_conditions", "_grpc", "_hedged", "_methods", "_statuses", "attempts",
                 "hedge")

    def __init__(self, attempts: int, on: Iterable[str], methods: Iterable[str],
                 hedge: bool = False) -> None:
        self.attempts = attempts
        self.hedge = hedge
        self._methods = frozenset(m.encode() for m in methods)
        self._hedged = self._methods & frozenset(m.encode() for m in IDEMPOTENT_METHODS)
        self._conditions = frozenset(on)
        statuses: set[int] = set()
        if "gateway-error" in self._conditions:
            statuses |= GATEWAY_STATUSES
        if "5xx" in self._conditions:
            statuses |= set(range(500, 600))
        self._statuses = frozenset(statuses)
        self._grpc = frozenset(code for code, name in CODE_NAMES.items()
                               if name in self._conditions)

    @classmethod
    def of(cls, settings: Retries) -> RetryPolicy:
        """A service's ``retries`` settings."""
        return cls(settings.attempts, settings.on, settings.methods, settings.hedge)

    @classmethod
    def for_route(cls, attempts: int, codes: tuple[int, ...]) -> RetryPolicy:
        """A route marked retryable: any method, on these codes and broken connections."""
        return cls(attempts, (CONNECT_FAILURE, RESET), HTTP_METHODS).with_statuses(codes)

    def with_statuses(self, codes: tuple[int, ...]) -> RetryPolicy:
        self._statuses = frozenset(codes)
        return self

    def retries_status(self, status: int) -> bool:
        """Whether an endpoint's answer with this status is worth another try."""
        return status in self._statuses

    def retries_grpc(self, code: int) -> bool:
        """Whether a gRPC call that ended with grpc-status ``code`` is worth another try."""
        return code in self._grpc

    @property
    def retries_some_grpc(self) -> bool:
        return bool(self._grpc)

    def hedges(self, method: bytes, grpc: bool) -> bool:
        """Whether a slow request with ``method`` may be hedged (see the module note)."""
        return not grpc and method in self._hedged

    def allows(self, condition: str, method: bytes, grpc: bool = False) -> bool:
        """Whether a try that failed with ``condition`` may be retried for ``method``.

        ``condition`` is a failure condition, or "status" for an answer whose
        status `retries_status` accepted.
        """
        if condition == CONNECT_FAILURE:
            return True  # the request never reached the endpoint
        if condition == REFUSED_STREAM:
            return condition in self._conditions  # never processed: safe for any method
        if grpc:  # every gRPC call is a POST: the conditions alone decide
            return condition == GRPC_STATUS or condition in self._conditions
        if method not in self._methods:
            return False
        return condition == STATUS or condition in self._conditions


def backoff(attempt: int, rng: random.Random) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based), with full jitter."""
    return rng.uniform(0, min(BACKOFF_MAX, BACKOFF_BASE * (2 ** (attempt - 1))))
