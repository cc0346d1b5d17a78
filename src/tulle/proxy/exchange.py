"""One request and its response, from the client's head to the response's end.

An `Exchange` is made per request and carries everything that lives exactly as
long as the request: the parsed head, the endpoint chosen for the current try,
the upstream connection lent to it, the request's timers, what is kept of the
body for a retry, and the framing chosen for each side. The layers of the stack
(`tulle.proxy.stack`) decide where it goes; this object moves bytes between the
client and the upstream, reports each try's result, and answers the client
itself when something fails.

Theory of operation. The client connection feeds the request's body in as it
arrives; until an upstream connection is attached the body is held (bounded by
pausing the client), after that it is written straight through, re-framed when
chunked. A copy of up to 64 KiB is kept while the request may still be retried.
The upstream connection feeds the response back the same way. A try fails when
the connection can't be made, breaks before the response head, the endpoint
answers with a status the retry policy names, or the per-try timer fires;
`_try_failed` then either sends the request again (on another endpoint, after
a jittered pause, within the retry budget) or answers the client. Whatever
happens, the exchange ends exactly once, in `_finish`, which records the
response and hands the client connection its next request. Before the first
byte of the response has gone to the client, a failure becomes a clear error
response (502/503/504 with ``tulle-error``); after it, the only honest signal
left is to cut the client connection.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING

from tulle.http import (
    CONTINUE,
    RequestHead,
    ResponseHead,
    encode_chunk,
    encode_head,
    encode_last_chunk,
    end_to_end,
    reason_phrase,
)
from tulle.http.h1 import Headers
from tulle.http.headers import append_forwarded_for
from tulle.proxy.errors import local_response
from tulle.resilience.retry import (
    CONNECT_FAILURE,
    MAX_REPLAY_BODY,
    RESET,
    STATUS,
    TIMEOUT,
    backoff,
)
from tulle.telemetry.tap import TapEvent

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from tulle.proxy.connection import ClientConnection
    from tulle.proxy.pool import ConnectError
    from tulle.proxy.targets import Endpoint, ServiceTarget
    from tulle.proxy.upstream import UpstreamConnection
    from tulle.resilience import RetryPolicy
    from tulle.telemetry.metrics import ResponseStats

VIA = b"1.1 tulle"
_CHUNKED = (b"transfer-encoding", b"chunked")
_CLOSE = (b"connection", b"close")
_KEEP_ALIVE = (b"connection", b"keep-alive")
_VIA = (b"via", VIA)

# Sent again on a new connection when a reused one turns out closed (RFC 9110 §9.2.2).
_RESENDABLE = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})

# Body bytes held per request while no upstream connection is attached yet;
# past this the client is paused until the connection is there.
MAX_BUFFERED_BODY = 64 * 1024

_jitter = random.Random()


class Exchange:
    __slots__ = (
        "_buffer",
        "_buffered",
        "_endpoint_busy",
        "_error",
        "_failed_endpoint",
        "_last_failure",
        "_probe",
        "_replay",
        "_replay_bytes",
        "_request_trailers",
        "_response_chunked",
        "_sent_at",
        "_status",
        "_timer",
        "_tries",
        "_try_timer",
        "_upstream_reusable",
        "close_after",
        "conn",
        "endpoint",
        "finished",
        "head",
        "per_try_timeout",
        "redispatch",
        "request_complete",
        "request_timeout",
        "response_started",
        "retry_policy",
        "route",
        "started_at",
        "stats",
        "target",
        "try_id",
        "upstream",
    )

    def __init__(self, conn: ClientConnection, head: RequestHead, now: float) -> None:
        self.conn = conn
        self.head = head
        self.started_at = now
        self.target: ServiceTarget | None = None
        self.endpoint: Endpoint | None = None
        self.stats: ResponseStats | None = None
        self.route: ResponseStats | None = None  # the HTTPRoute rule's stats, when routed
        # Set by the route layer: the service's, or the matched rule's own.
        self.request_timeout: float | None = None
        self.per_try_timeout: float | None = None
        self.retry_policy: RetryPolicy | None = None
        self.upstream: UpstreamConnection | None = None
        # The layers below the retry layer, to run again for a retry or after
        # waiting for an endpoint; None when this request is not retried.
        self.redispatch: Callable[[Exchange], None] | None = None
        self.request_complete = not head.has_body
        self.response_started = False
        self.finished = False
        self.close_after = not head.keep_alive
        self._buffer: list[bytes] | None = []
        self._buffered = 0
        self._replay: list[bytes] | None = None
        self._replay_bytes = 0
        self._request_trailers: Headers | None = None
        self._response_chunked = False
        self._sent_at = now  # when the current try was written to its endpoint
        self._endpoint_busy = False
        self._failed_endpoint: Endpoint | None = None
        self._last_failure: tuple[int, str, str] | None = None  # of the previous try
        self._probe = False  # this try is its endpoint's circuit-breaker probe
        self._timer: asyncio.TimerHandle | None = None
        self._try_timer: asyncio.TimerHandle | None = None
        self._tries = 0
        self.try_id = 0  # which try a connection being made belongs to
        self._upstream_reusable = False
        self._status = 0
        self._error = ""

    # -- what balancers may read (tulle.balance.RequestView) --

    @property
    def client_ip(self) -> bytes:
        return self.conn.peer_ip

    def header(self, name: bytes) -> bytes | None:
        return self.head.header(name)

    # -- request side, fed by the client connection --

    def request_body(self, data: bytes) -> None:
        replay = self._replay
        if replay is not None:
            self._replay_bytes += len(data)
            if self._replay_bytes > MAX_REPLAY_BODY:
                self._replay = None  # too large to send twice: no more retries
            else:
                replay.append(data)
        upstream = self.upstream
        if upstream is not None:
            upstream.send(encode_chunk(data) if self.head.chunked else data)
            return
        if self._buffer is None:
            return  # answered already (an error); the rest of the body is dropped
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered > MAX_BUFFERED_BODY:
            self.conn.pause_reading()

    def request_end(self, trailers: Headers | None) -> None:
        self.request_complete = True
        self._request_trailers = trailers
        upstream = self.upstream
        if upstream is not None and self.head.chunked:
            upstream.send(encode_last_chunk(trailers))

    # -- set-up, driven by the layers of the stack --

    def arm_timeout(self, seconds: float) -> None:
        self._timer = self.conn.loop.call_later(seconds, self._timed_out)

    def allow_retries(self, redispatch: Callable[[Exchange], None]) -> None:
        """This request may be tried again by running ``redispatch`` (the retry layer)."""
        self.redispatch = redispatch
        if self.head.has_body:
            self._replay = []

    def wait_for_endpoint(self, seconds: float) -> None:
        """No endpoint is available now: wait (parked by the caller) at most ``seconds``."""
        self._try_timer = self.conn.loop.call_later(seconds, self._gave_up_waiting)

    def stop_waiting(self) -> None:
        if self._try_timer is not None:
            self._try_timer.cancel()
            self._try_timer = None

    def retry_found_no_endpoint(self) -> bool:
        """A retry found nothing to go to: answer what the previous try got (False: not a
        retry, the caller decides)."""
        if self._last_failure is None:
            return False
        self.respond(*self._last_failure)
        return True

    @property
    def failed_endpoint(self) -> Endpoint | None:
        """The endpoint the previous try failed on (a retry prefers another one)."""
        return self._failed_endpoint

    def send_continue(self) -> None:
        """Answer ``Expect: 100-continue`` ourselves once we know where the body goes."""
        head = self.head
        if (head.expect_continue and head.version == "1.1" and not self.request_complete
                and self._tries == 0):
            self.conn.write(CONTINUE)

    def dispatch_to(self, endpoint: Endpoint, per_try_timeout: float | None) -> None:
        """Send the request to ``endpoint`` over one of its pool's connections."""
        self.endpoint = endpoint
        self.stats = endpoint.stats
        self.try_id += 1
        endpoint.stats.requests += 1
        endpoint.in_flight += 1
        self._endpoint_busy = True
        self._sent_at = self.conn.clock()
        breaker = endpoint.breaker
        if breaker is not None and breaker.state != "closed":
            self._probe = breaker.on_dispatch()
        if per_try_timeout is not None:
            self._try_timer = self.conn.loop.call_later(per_try_timeout, self._try_timed_out)
        endpoint.pool.acquire(self)

    def upstream_ready(self, upstream: UpstreamConnection) -> None:
        """The pool lends us ``upstream``: write the request head and any held body."""
        if self.finished or self.endpoint is None or self.upstream is not None:
            upstream.pool.release(upstream)
            return
        self.upstream = upstream
        head = self.head
        headers = end_to_end(head.headers)
        headers.append(_VIA)
        append_forwarded_for(headers, self.conn.peer_ip)
        if head.chunked:
            headers.append(_CHUNKED)
        parts = [encode_head(head.method + b" " + head.target + b" HTTP/1.1", headers)]
        buffer = self._buffer
        if buffer:
            if head.chunked:
                parts.extend(encode_chunk(chunk) for chunk in buffer)
            else:
                parts.extend(buffer)
        if self.request_complete and head.chunked:
            parts.append(encode_last_chunk(self._request_trailers))
        was_full = self._buffered > MAX_BUFFERED_BODY
        self._buffer = None
        self._buffered = 0
        self._sent_at = self.conn.clock()
        upstream.begin(self, b"".join(parts), head.method == b"HEAD")
        if was_full:
            self.conn.resume_reading()

    # -- response side, fed by the upstream connection --

    def response_head(self, response: ResponseHead) -> None:
        if self.finished:
            return
        status = response.status
        policy = self.retry_policy
        if status >= 500 and self.redispatch is not None and policy is not None \
                and policy.retries_status(status) and self._may_retry(STATUS):
            self._close_upstream()  # its body is not wanted: the connection can't be reused
            self._end_try(ok=False)
            self._last_failure = (status, "upstream-status",
                                  f"the endpoint answered {status} and no retry could save it")
            self._retry()
            return
        self._cancel_try_timer()
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        conn = self.conn
        self._status = status
        self._upstream_reusable = response.keep_alive
        assert self.stats is not None
        self.stats.latency.observe((conn.clock() - self.started_at) * 1000.0)
        self._report(status < 500)
        headers = end_to_end(response.headers)
        headers.append(_VIA)
        has_body = self.head.method != b"HEAD" and status not in (204, 304)
        if has_body and response.content_length is None:
            if self.head.version == "1.1":
                self._response_chunked = True
                headers.append(_CHUNKED)
            else:
                self.close_after = True  # HTTP/1.0: the close ends the body
        if conn.draining:
            self.close_after = True
        if self.close_after:
            headers.append(_CLOSE)
        elif self.head.version == "1.0":
            headers.append(_KEEP_ALIVE)
        reason = response.reason or reason_phrase(status)
        self.response_started = True
        conn.write(encode_head(b"HTTP/1.1 %d %b" % (status, reason), headers))

    def response_body(self, data: bytes) -> None:
        self.conn.write(encode_chunk(data) if self._response_chunked else data)

    def response_end(self, trailers: Headers | None, upstream: UpstreamConnection) -> None:
        if self.finished:
            upstream.close()
            return
        if self._response_chunked:
            self.conn.write(encode_last_chunk(trailers))
        self.upstream = None
        self._release_endpoint()
        if self.request_complete:
            if self._upstream_reusable:
                upstream.pool.release(upstream)
            else:
                upstream.close()
        else:
            # The upstream answered before the request body ended: neither
            # connection can be reused, the rest of that body has nowhere to go.
            upstream.close()
            self.close_after = True
        self._finish()

    # -- failures of one try --

    def connect_failed(self, error: ConnectError) -> None:
        if not self.finished:
            self._try_failed(CONNECT_FAILURE, 502, error.error, error.reason)

    def upstream_lost(self, upstream: UpstreamConnection) -> None:
        """The upstream closed or reset before the response ended."""
        if self.finished:
            return
        self.upstream = None
        if (not self.response_started and upstream.reused and not self.head.has_body
                and self.head.method in _RESENDABLE and not upstream.mid_response):
            # A reused keep-alive connection that the upstream had already
            # closed: the request never reached it. Send it again on a new one.
            upstream.pool.connect(self)
            return
        address = self.endpoint.address if self.endpoint else "upstream"
        self._try_failed(RESET, 502, "upstream-reset",
                         f"{address} closed the connection before responding")

    def upstream_failed(self, reason: str, error: str) -> None:
        """The upstream sent bytes that are not HTTP/1.1."""
        if not self.finished:
            self.upstream = None
            self._try_failed(RESET, 502, error, reason)

    def _try_timed_out(self) -> None:
        self._try_timer = None
        if self.finished or self.response_started:
            return
        self._close_upstream()
        timeout = self.per_try_timeout
        self._try_failed(TIMEOUT, 504, "per-try-timeout",
                         f"no response within the per-try timeout ({timeout}s)")

    def _try_failed(self, condition: str, status: int, error: str, reason: str) -> None:
        self._end_try(ok=False, refused=error == "connect-refused")
        if self._may_retry(condition):
            self._last_failure = (status, error, reason)
            self._retry()
        else:
            self.fail(status, error, reason)

    def _may_retry(self, condition: str) -> bool:
        """Whether the failed try may be sent again: policy, body, attempts, budget."""
        target = self.target
        if self.redispatch is None or target is None or self.response_started:
            return False
        policy = self.retry_policy
        if policy is None or self._tries >= policy.attempts:
            return False
        if not policy.allows(condition, self.head.method):
            return False
        if self.head.has_body and self._replay is None:
            return False  # the body was too large to keep
        if not target.budget.try_withdraw():
            target.counters.retry_budget_exhausted += 1
            return False
        return True

    def _retry(self) -> None:
        """Send the request again after a short jittered pause."""
        target = self.target
        assert target is not None
        self._tries += 1
        target.counters.retries += 1
        failed = self._failed_endpoint
        if failed is not None:
            # The try's failure will not show in the final answer: count it here,
            # so outlier detection sees endpoints whose failures retries hide.
            failed.failed_tries += 1
        self.upstream = None
        self._buffer = list(self._replay) if self._replay else []
        self._buffered = self._replay_bytes if self._replay else 0
        self._try_timer = self.conn.loop.call_later(
            backoff(self._tries, _jitter), self._send_again
        )

    def _send_again(self) -> None:
        self._try_timer = None
        if not self.finished and self.redispatch is not None:
            self.redispatch(self)

    def _gave_up_waiting(self) -> None:
        self._try_timer = None
        if self.finished or self.target is None:
            return
        self.target.forget_waiting(self)
        self.respond(503, "fail-fast",
                     f"no endpoint of {self.target.key} became available in time")

    def _timed_out(self) -> None:
        self._timer = None
        if self.finished:
            return
        self._cancel_try_timer()
        if self.target is not None:
            self.target.forget_waiting(self)
        self._close_upstream()
        if self._endpoint_busy:
            self._end_try(ok=False)
        timeout = self.request_timeout
        self.fail(504, "request-timeout", f"no response within the request timeout ({timeout}s)")

    # -- answering the client ourselves --

    def fail(self, status: int, error: str, reason: str) -> None:
        """Answer the client ourselves, or cut it off when the response has begun."""
        if self.finished:
            return
        if self.stats is None and self.target is not None:
            self.stats = self.target.stats
        self._error = error
        if self.response_started:
            self.close_after = True
            self._detach_upstream()
            self.conn.abort()
            self._finish()
            return
        self.respond(status, error, reason)

    def respond(self, status: int, error: str, reason: str) -> None:
        """Send a response made by the proxy (404, 502, 503, 504 …) and end."""
        self._detach_upstream()
        self._status = status
        self._error = error
        if not self.request_complete or status in (400, 431):
            self.close_after = True
        if self.conn.draining:
            self.close_after = True
        stats = self.stats
        if stats is not None:
            if self.endpoint is None and self._failed_endpoint is None:
                stats.requests += 1  # never reached an endpoint, so not counted there
            stats.latency.observe((self.conn.clock() - self.started_at) * 1000.0)
        self.response_started = True
        self._buffer = None
        self.conn.write(
            local_response(status, reason, self.close_after, self.head.method == b"HEAD")
        )
        self._finish()

    def client_lost(self) -> None:
        """The client went away: drop the upstream side, count nothing."""
        if self.finished:
            return
        self.finished = True
        self._cancel_timers()
        if self.target is not None:
            self.target.forget_waiting(self)
        self._detach_upstream()

    def _detach_upstream(self) -> None:
        """Let go of the current try without a verdict on the endpoint (not its fault)."""
        self._close_upstream()
        self._release_endpoint()

    def _close_upstream(self) -> None:
        """Close the current try's connection: what it still delivers is not wanted."""
        upstream = self.upstream
        if upstream is not None:
            self.upstream = None
            upstream.close()

    # -- bookkeeping --

    def _report(self, ok: bool, refused: bool = False) -> None:
        """Tell the balancer and the endpoint's breaker how the current try went.

        The balancer hears the time since the try was written to the endpoint,
        not since the request reached the proxy: time a request spent queued in
        the proxy says nothing about the endpoint.
        """
        endpoint = self.endpoint
        if endpoint is None or self.target is None:
            return
        self.target.balancer.on_response(endpoint, self.conn.clock() - self._sent_at, ok)
        breaker = endpoint.breaker
        if breaker is not None:
            breaker.record(ok, self._probe, refused)
            self._probe = False

    def _end_try(self, ok: bool, refused: bool = False) -> None:
        """The current try is over (failed): report it and free the endpoint."""
        self._cancel_try_timer()
        self.try_id += 1  # a connection still being made for this try is now stale
        if self._endpoint_busy:
            self._report(ok, refused)
            self._release_endpoint()
            # If no retry follows, the answer is counted on this endpoint's stats,
            # where the try counted its request.
            self._failed_endpoint = self.endpoint
            self.endpoint = None

    def _release_endpoint(self) -> None:
        if self._endpoint_busy:
            self._endpoint_busy = False
            endpoint = self.endpoint
            assert endpoint is not None
            endpoint.in_flight -= 1
            if self._probe:  # a probe that ended without a result
                self._probe = False
                if endpoint.breaker is not None:
                    endpoint.breaker.abandon_probe()

    def _cancel_try_timer(self) -> None:
        if self._try_timer is not None:
            self._try_timer.cancel()
            self._try_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_try_timer()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _finish(self) -> None:
        self.finished = True
        self._cancel_timers()
        key = (self._status, self._error)
        stats = self.stats
        if stats is not None:
            responses = stats.responses
            responses[key] = responses.get(key, 0) + 1
        route = self.route
        if route is not None:
            route.responses[key] = route.responses.get(key, 0) + 1
            route.latency.observe((self.conn.clock() - self.started_at) * 1000.0)
        tap = self.conn.ctx.tap
        if tap.active:
            tap.publish(self._tap_event())
        self.conn.exchange_done(self)

    def _tap_event(self) -> TapEvent:
        head = self.head
        target = self.target
        endpoint = self.endpoint or self._failed_endpoint
        return TapEvent(
            direction=self.conn.ctx.direction,
            service=target.name if target else "",
            namespace=target.namespace if target else "",
            endpoint=endpoint.address if endpoint else "",
            method=head.method.decode("latin-1"),
            authority=(head.host or b"").decode("latin-1"),
            path=head.target.decode("latin-1"),
            status=self._status,
            latency_ms=(self.conn.clock() - self.started_at) * 1000.0,
            error=self._error,
            at=time.time(),
        )
