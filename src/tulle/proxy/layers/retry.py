"""Retry: failed tries are tried again, within the policy, the budget, and the body kept.

On the way in it counts the request in the service's retry budget and registers on the
exchange, which keeps (up to 64 KiB of) the body for replay. On the way back it hears
every attempt that failed before the response began, and every 5xx response head, and
decides: a retry (on another endpoint where there is one, after a short jittered
backoff, sending the kept body again) or not (the exchange answers the client). A
try is retried only when the policy names its condition (or status) and method, the
request has tries left, its body was small enough to keep, and the budget allows it
(Linkerd's and Envoy's rules; see `tulle.resilience.retry`).

Hedging (``retries.hedge``, Envoy's ``hedge_on_per_try_timeout``): when a try's per-try
timeout passes, the try is not abandoned; if the request may be hedged (an idempotent
method the policy lists, its whole body kept or none) and it has tries left, the budget
allows one more and another endpoint has room, a second try goes there at once and the
two race (`tulle.proxy.exchange`). A hedge is a retry for the ``attempts`` count and
the budget. No backoff: the per-try timeout was the wait, and the hedge goes to another
endpoint. No timer of its own either: each try's per-try deadline is already on the
timer wheel.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Final

from tulle.proxy import errors
from tulle.proxy.exchange import WAITING
from tulle.proxy.layers import ExchangeLayer
from tulle.resilience.retry import GRPC_STATUS, STATUS, backoff

if TYPE_CHECKING:
    import asyncio

    from tulle.http import ResponseHead
    from tulle.proxy.attempt import Attempt
    from tulle.proxy.exchange import Exchange
    from tulle.proxy.layers.balance import Balance
    from tulle.proxy.targets import ServiceTarget

_jitter: Final = random.Random()


class Retry(ExchangeLayer):
    __slots__ = ("inner", "loop", "target")

    def __init__(
        self, target: ServiceTarget, loop: asyncio.AbstractEventLoop, inner: Balance
    ) -> None:
        self.target = target
        self.loop = loop
        self.inner = inner

    def call(self, exchange: Exchange) -> None:
        if exchange.retry_policy is not None:
            self.target.budget.record_request()
            exchange.retry = self
            exchange.keep_for_replay()
        self.inner.call(exchange)

    # -- the way back --

    def retries_status(self, exchange: Exchange, attempt: Attempt, head: ResponseHead) -> bool:
        """A 5xx response head: True when this layer retries it (the attempt is dropped)."""
        status = head.status
        policy = exchange.retry_policy
        if policy is None or not policy.retries_status(status) or not self._may(exchange, STATUS):
            return False
        attempt.cancel()  # its body is not wanted: the connection can't be reused
        exchange.last_failure = (status, errors.UPSTREAM_STATUS.code,
                                 errors.UPSTREAM_STATUS.reason(status=status))
        self._again(exchange, attempt)
        return True

    def retries_some_grpc(self, exchange: Exchange) -> bool:
        """Whether the policy retries any grpc-status (so a gRPC head is worth holding)."""
        policy = exchange.retry_policy
        return policy is not None and policy.retries_some_grpc

    def retries_grpc(self, exchange: Exchange, attempt: Attempt, code: int) -> bool:
        """A gRPC call ended (before its response reached the client) with grpc-status
        ``code``: True when this layer retries it."""
        policy = exchange.retry_policy
        if policy is None or not policy.retries_grpc(code) or not self._may(exchange,
                                                                            GRPC_STATUS):
            return False
        attempt.cancel()
        exchange.last_failure = (502, errors.UPSTREAM_STATUS.code,
                                 f"the call failed with grpc-status {code}")
        self._again(exchange, attempt)
        return True

    def attempt_failed(self, exchange: Exchange, attempt: Attempt, condition: str,
                       error: errors.ProxyError, reason: str) -> bool:
        """An attempt failed before the response began: True when this layer retries it."""
        if not self._may(exchange, condition):
            return False
        exchange.last_failure = (error.status, error.code, reason)
        self._again(exchange, attempt)
        return True

    def retryable_status(self, exchange: Exchange, status: int) -> bool:
        """Whether the policy retries an answer with ``status`` (a racer that gets one has
        failed: the other racer's answer is awaited instead)."""
        policy = exchange.retry_policy
        return policy is not None and policy.retries_status(status)

    # -- hedging --

    def hedges(self, exchange: Exchange) -> bool:
        """Whether a try of ``exchange`` that outlives its per-try timeout is hedged (and
        goes on) rather than failed as a timeout."""
        policy = exchange.retry_policy
        if policy is None or not policy.hedge:
            return False
        head = exchange.head
        if not policy.hedges(head.method, head.grpc):
            return False
        return not head.has_body or (exchange.request_complete and exchange.replay is not None)

    def hedge(self, exchange: Exchange, overdue: Attempt) -> None:
        """Send a hedge to race ``overdue`` if the request has tries left, the budget allows
        one more, and the balancer has an endpoint other than ``overdue``'s with room."""
        policy = exchange.retry_policy
        if policy is None or exchange.tries >= policy.attempts:
            return
        balance = self.inner
        endpoint = balance.other_than(exchange, overdue.endpoint)
        if endpoint is None:
            return
        target = self.target
        if not target.budget.try_withdraw():
            target.counters.retry_budget_exhausted += 1
            return
        exchange.tries += 1
        target.counters.hedges += 1
        balance.hedge(exchange, endpoint)

    def _may(self, exchange: Exchange, condition: str) -> bool:
        """Whether the failed try may be sent again: policy, tries, body, budget."""
        policy = exchange.retry_policy
        if policy is None or exchange.tries >= policy.attempts:
            return False
        head = exchange.head
        if not policy.allows(condition, head.method, head.grpc):
            return False
        if head.has_body and exchange.replay is None:
            return False  # the body was too large to keep
        target = self.target
        if not target.budget.try_withdraw():
            target.counters.retry_budget_exhausted += 1
            return False
        return True

    def _again(self, exchange: Exchange, failed: Attempt) -> None:
        exchange.tries += 1
        self.target.counters.retries += 1
        # The try's failure will not show in the final answer: count it here, so that
        # outlier detection sees endpoints whose failures retries hide.
        failed.endpoint.failed_tries += 1
        exchange.park()
        exchange.rewind_body()
        self.loop.call_later(backoff(exchange.tries, _jitter), self._resend, exchange)

    def _resend(self, exchange: Exchange) -> None:
        if exchange.state == WAITING:
            exchange.resume()
            self.inner.call(exchange)
