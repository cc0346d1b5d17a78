"""One request and its response, from the client's head to the response's end.

An `Exchange` is made per request and carries everything that lives exactly as
long as the request: the parsed head, the endpoint chosen, the upstream
connection lent to it, the request's timer, and the framing chosen for each
side. The layers of the stack (`tulle.proxy.stack`) decide where it goes; this
object only moves bytes between the client and the upstream and answers the
client itself when something fails.

Theory of operation. The client connection feeds the request's body in as it
arrives; until an upstream connection is attached the body is held (bounded by
pausing the client), after that it is written straight through, re-framed
when chunked. The upstream connection feeds the response back the same way.
Whatever happens (the endpoint refuses, resets, speaks bad HTTP, or the timer
fires) the exchange ends exactly once, in `_finish`, which records the
response and hands the client connection its next request. Before the first
byte of the response has gone to the client, a failure becomes a clear error
response (502/503/504 with ``tulle-error``); after it, the only honest signal
left is to cut the client connection.
"""

from __future__ import annotations

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
from tulle.telemetry.tap import TapEvent

if TYPE_CHECKING:
    import asyncio

    from tulle.proxy.connection import ClientConnection
    from tulle.proxy.pool import ConnectError
    from tulle.proxy.targets import Endpoint, ServiceTarget
    from tulle.proxy.upstream import UpstreamConnection
    from tulle.telemetry.metrics import ResponseStats

VIA = b"1.1 tulle"
_CHUNKED = (b"transfer-encoding", b"chunked")
_CLOSE = (b"connection", b"close")
_KEEP_ALIVE = (b"connection", b"keep-alive")
_VIA = (b"via", VIA)

# Body bytes held per request while no upstream connection is attached yet;
# past this the client is paused until the connection is there.
MAX_BUFFERED_BODY = 64 * 1024


class Exchange:
    __slots__ = (
        "_buffer",
        "_buffered",
        "_endpoint_busy",
        "_error",
        "_request_trailers",
        "_response_chunked",
        "_status",
        "_timer",
        "_upstream_reusable",
        "close_after",
        "conn",
        "endpoint",
        "finished",
        "head",
        "request_complete",
        "response_started",
        "started_at",
        "stats",
        "target",
        "upstream",
    )

    def __init__(self, conn: ClientConnection, head: RequestHead, now: float) -> None:
        self.conn = conn
        self.head = head
        self.started_at = now
        self.target: ServiceTarget | None = None
        self.endpoint: Endpoint | None = None
        self.stats: ResponseStats | None = None
        self.upstream: UpstreamConnection | None = None
        self.request_complete = not head.has_body
        self.response_started = False
        self.finished = False
        self.close_after = not head.keep_alive
        self._buffer: list[bytes] | None = []
        self._buffered = 0
        self._request_trailers: Headers | None = None
        self._response_chunked = False
        self._endpoint_busy = False
        self._timer: asyncio.TimerHandle | None = None
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
        upstream = self.upstream
        if upstream is not None:
            if self.head.chunked:
                upstream.send(encode_last_chunk(trailers))
        else:
            self._request_trailers = trailers

    # -- set-up, driven by the layers of the stack --

    def arm_timeout(self, seconds: float) -> None:
        self._timer = self.conn.loop.call_later(seconds, self._timed_out)

    def send_continue(self) -> None:
        """Answer ``Expect: 100-continue`` ourselves once we know where the body goes."""
        head = self.head
        if head.expect_continue and head.version == "1.1" and not self.request_complete:
            self.conn.write(CONTINUE)

    def dispatch_to(self, endpoint: Endpoint) -> None:
        """Send the request to ``endpoint`` over one of its pool's connections."""
        self.endpoint = endpoint
        self.stats = endpoint.stats
        endpoint.stats.requests += 1
        endpoint.in_flight += 1
        self._endpoint_busy = True
        endpoint.pool.acquire(self)

    def upstream_ready(self, upstream: UpstreamConnection) -> None:
        """The pool lends us ``upstream``: write the request head and any held body."""
        if self.finished:
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
        upstream.begin(self, b"".join(parts), head.method == b"HEAD")
        if was_full:
            self.conn.resume_reading()

    # -- response side, fed by the upstream connection --

    def response_head(self, response: ResponseHead) -> None:
        timer = self._timer
        if timer is not None:
            timer.cancel()
            self._timer = None
        conn = self.conn
        status = response.status
        self._status = status
        self._upstream_reusable = response.keep_alive
        assert self.stats is not None and self.target is not None
        elapsed = conn.loop.time() - self.started_at
        self.stats.latency.observe(elapsed * 1000.0)
        self.target.balancer.on_response(self.endpoint, elapsed, status < 500)
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

    # -- failures --

    def connect_failed(self, error: ConnectError) -> None:
        if self.finished:
            return
        self._release_endpoint(failed=True)
        self.fail(502, error.error, error.reason)

    def upstream_lost(self, upstream: UpstreamConnection) -> None:
        """The upstream closed or reset before the response ended."""
        if self.finished:
            return
        self.upstream = None
        if not self.response_started and upstream.reused and not self.head.has_body:
            # A reused keep-alive connection that the upstream had already
            # closed: the request never reached it. Send it again on a new one.
            upstream.pool.connect(self)
            return
        self._release_endpoint(failed=not self.response_started)
        address = self.endpoint.address if self.endpoint else "upstream"
        self.fail(502, "upstream-reset", f"{address} closed the connection before responding")

    def upstream_failed(self, reason: str, error: str) -> None:
        """The upstream sent bytes that are not HTTP/1.1."""
        if self.finished:
            return
        self.upstream = None
        self._release_endpoint(failed=not self.response_started)
        self.fail(502, error, reason)

    def _timed_out(self) -> None:
        self._timer = None
        if self.finished:
            return
        upstream = self.upstream
        if upstream is not None:
            self.upstream = None
            upstream.close()
        self._release_endpoint(failed=True)
        timeout = self.target.timeouts.request if self.target else None
        self.fail(504, "request-timeout", f"no response within the request timeout ({timeout}s)")

    def fail(self, status: int, error: str, reason: str) -> None:
        """Answer the client ourselves, or cut it off when the response has begun."""
        if self.finished:
            return
        if self.stats is None and self.target is not None:
            self.stats = self.target.stats
        self._error = error
        if self.response_started:
            self.close_after = True
            self.conn.abort()
            self._finish()
            return
        self.respond(status, error, reason)

    def respond(self, status: int, error: str, reason: str) -> None:
        """Send a response made by the proxy (404, 502, 503, 504 …) and end."""
        self._status = status
        self._error = error
        if not self.request_complete or status in (400, 431):
            self.close_after = True
        if self.conn.draining:
            self.close_after = True
        stats = self.stats
        if stats is not None:
            if self.endpoint is None:
                stats.requests += 1  # never reached an endpoint, so not counted there
            stats.latency.observe((self.conn.loop.time() - self.started_at) * 1000.0)
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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        upstream = self.upstream
        if upstream is not None:
            self.upstream = None
            upstream.close()
        self._release_endpoint()

    # -- the one way out --

    def _release_endpoint(self, failed: bool = False) -> None:
        """The endpoint is done with this request; a failure is reported to the balancer."""
        if self._endpoint_busy:
            self._endpoint_busy = False
            endpoint = self.endpoint
            assert endpoint is not None
            endpoint.in_flight -= 1
            if failed and self.target is not None:
                elapsed = self.conn.loop.time() - self.started_at
                self.target.balancer.on_response(endpoint, elapsed, False)

    def _finish(self) -> None:
        self.finished = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        stats = self.stats
        if stats is not None:
            key = (self._status, self._error)
            responses = stats.responses
            responses[key] = responses.get(key, 0) + 1
        tap = self.conn.ctx.tap
        if tap.active:
            tap.publish(self._tap_event())
        self.conn.exchange_done(self)

    def _tap_event(self) -> TapEvent:
        head = self.head
        target = self.target
        return TapEvent(
            direction=self.conn.ctx.direction,
            service=target.name if target else "",
            namespace=target.namespace if target else "",
            endpoint=self.endpoint.address if self.endpoint else "",
            method=head.method.decode("latin-1"),
            authority=(head.host or b"").decode("latin-1"),
            path=head.target.decode("latin-1"),
            status=self._status,
            latency_ms=(self.conn.loop.time() - self.started_at) * 1000.0,
            error=self._error,
            at=time.time(),
        )
