"""RetryPolicy and backoff: which failed tries are tried again, and after how long."""

from __future__ import annotations

import random
import statistics

import pytest

from tulle.config import Retries
from tulle.config.schema_policy import HTTP_METHODS, IDEMPOTENT_METHODS
from tulle.resilience import RetryPolicy, backoff
from tulle.resilience.retry import BACKOFF_BASE, BACKOFF_MAX

ALL_METHODS = [m.encode() for m in HTTP_METHODS]


def policy(on: tuple[str, ...] = ("connect-failure", "gateway-error"),
           methods: tuple[str, ...] = IDEMPOTENT_METHODS, attempts: int = 2) -> RetryPolicy:
    return RetryPolicy.of(Retries(on=on, methods=methods, attempts=attempts))


def test_attempts_come_from_the_settings() -> None:
    assert policy(attempts=5).attempts == 5
    assert policy().attempts == 2


@pytest.mark.parametrize("on", [(), ("connect-failure",), ("5xx", "reset", "timeout")])
@pytest.mark.parametrize("method", ALL_METHODS)
def test_a_connect_failure_is_always_retried_even_for_post(on: tuple[str, ...],
                                                          method: bytes) -> None:
    assert policy(on=on, methods=("GET",)).allows("connect-failure", method)


@pytest.mark.parametrize("condition", ["reset", "timeout"])
def test_reset_and_timeout_need_both_the_condition_and_the_method(condition: str) -> None:
    listed = policy(on=(condition,), methods=("GET", "PUT"))
    assert listed.allows(condition, b"GET")
    assert listed.allows(condition, b"PUT")
    assert not listed.allows(condition, b"POST")  # may have reached the endpoint
    assert not listed.allows(condition, b"DELETE")

    unlisted = policy(on=("connect-failure", "gateway-error", "5xx"), methods=("GET", "PUT"))
    assert not unlisted.allows(condition, b"GET")


def test_reset_does_not_imply_timeout_or_the_reverse() -> None:
    assert not policy(on=("reset",)).allows("timeout", b"GET")
    assert not policy(on=("timeout",)).allows("reset", b"GET")


def test_the_default_methods_are_the_idempotent_ones() -> None:
    default = RetryPolicy.of(Retries(on=("reset",)))
    for method in (b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"):
        assert default.allows("reset", method)
    for method in (b"POST", b"PATCH", b"CONNECT"):
        assert not default.allows("reset", method)


def test_methods_are_matched_exactly_as_bytes() -> None:
    p = policy(on=("reset",), methods=("GET",))
    assert p.allows("reset", b"GET")
    assert not p.allows("reset", b"get")


def test_a_retryable_status_is_retried_only_for_listed_methods() -> None:
    p = policy(on=("5xx",), methods=("GET",))
    assert p.allows("status", b"GET")
    assert not p.allows("status", b"POST")


def retried(p: RetryPolicy) -> set[int]:
    return {status for status in range(100, 1000) if p.retries_status(status)}


def test_gateway_error_means_502_503_504_only() -> None:
    assert retried(policy(on=("gateway-error",))) == {502, 503, 504}


def test_5xx_means_500_to_599() -> None:
    assert retried(policy(on=("5xx",))) == set(range(500, 600))
    assert retried(policy(on=("5xx", "gateway-error"))) == set(range(500, 600))


@pytest.mark.parametrize("on", [(), ("connect-failure",), ("reset", "timeout")])
def test_without_a_status_condition_no_status_is_retried(on: tuple[str, ...]) -> None:
    assert retried(policy(on=on)) == set()


def ceiling(attempt: int) -> float:
    return min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (attempt - 1))


def test_backoff_ceilings_double_from_base_to_max() -> None:
    # Spelled out, so that a change of the constants is a visible decision.
    assert [ceiling(n) for n in range(1, 8)] == pytest.approx(
        [0.005, 0.01, 0.02, 0.04, 0.08, 0.1, 0.1]
    )


@pytest.mark.parametrize("attempt", range(1, 11))
def test_backoff_is_full_jitter_within_zero_and_the_ceiling(attempt: int) -> None:
    rng = random.Random(attempt)
    waits = [backoff(attempt, rng) for _ in range(2000)]
    assert all(0.0 <= w <= ceiling(attempt) for w in waits)
    # Full jitter covers the whole range, not just its top.
    assert min(waits) < 0.05 * ceiling(attempt)
    assert max(waits) > 0.95 * ceiling(attempt)


def test_backoff_grows_with_the_attempt_until_the_cap() -> None:
    rng = random.Random(1)
    means = [statistics.fmean(backoff(n, rng) for _ in range(4000)) for n in range(1, 9)]
    for n, mean in enumerate(means, start=1):  # uniform over [0, c]: mean c / 2
        assert mean == pytest.approx(ceiling(n) / 2, rel=0.05)
    assert means[0] < means[1] < means[2] < means[3] < means[4] < means[5]
    assert means[5:] == pytest.approx([BACKOFF_MAX / 2] * 3, rel=0.05)


def test_backoff_is_deterministic_for_a_seeded_rng() -> None:
    a, b = random.Random(42), random.Random(42)
    assert [backoff(n, a) for n in range(1, 8)] == [backoff(n, b) for n in range(1, 8)]


def test_refused_stream_is_retried_for_any_method_when_listed() -> None:
    assert policy(on=("refused-stream",), methods=("GET",)).allows("refused-stream", b"POST")


def test_refused_stream_is_not_retried_unless_listed() -> None:
    assert not policy(on=("connect-failure",), methods=("GET",)).allows("refused-stream", b"GET")
