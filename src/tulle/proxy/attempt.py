"""One try of a request on one endpoint: its lease, its per-try timer, its outcome.

An exchange makes an `Attempt` each time the balance layer picks an endpoint for it: a
retry is a second attempt after the first failed, and a hedge is a second attempt
while the first goes on.
The attempt holds what belongs to that one try — the endpoint, the upstream stream it
leased from the endpoint's pool, when the request was sent, whether it is the circuit
breaker's probe, its per-try deadline — and reports how the try went: to the feedback
layer (balancer and breaker) and to its exchange (forward the response, retry, or
answer the client).

Theory of operation::

    CONNECTING ──leased──▶ SENT ──response head──▶ RESPONDING ──end──▶ ENDED
        │    ◀─reconnect─   │                          │
        └──────── failure ──┴──▶ FAILED                └── lost ──▶ FAILED
    any state before ENDED/FAILED ── cancel ──▶ CANCELLED

An attempt ends once: in ENDED, FAILED or CANCELLED it ignores whatever else arrives
(a connection that completes after its try timed out is not used for it, and goes to
the pool for the next request). Before the response head, a failure is reported with
its retry *condition* (connect-failure, reset, timeout: the names retry policies use);
the exchange decides what it means for the client. When its exchange hedges, a try
whose per-try timeout passes is not failed but marked ``overdue`` and goes on, racing
its hedge: if it loses, its endpoint is blamed for not answering in time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from tulle.grpc.status import grpc_status
from tulle.proxy import errors
from tulle.proxy.streams import LeaseWaiter
from tulle.proxy.transitions import Machine
from tulle.resilience.retry import CONNECT_FAILURE, REFUSED_STREAM, RESET, TIMEOUT
from tulle.transport.timers import HasDeadline

if TYPE_CHECKING:
    from tulle.http import Headers, ResponseHead
    from tulle.proxy.exchange import Exchange
    from tulle.proxy.layers.feedback import Feedback
    from tulle.proxy.streams import ConnectFailure, UpstreamStream
    from tulle.proxy.targets import Endpoint
    from tulle.transport.timers import TimerWheel

# Sent again on a new connection when a reused one turns out closed (RFC 9110 §9.2.2).
_RESENDABLE: Final = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})

# Times one try is sent again because the endpoint refused its stream unprocessed.
MAX_REFUSALS: Final = 3

_CONNECT_ERRORS: Final = {
    "connect-refused": errors.CONNECT_REFUSED,
    "connect-timeout": errors.CONNECT_TIMEOUT,
    "connect-failed": errors.CONNECT_FAILED,
    "local-exhaustion": errors.LOCAL_EXHAUSTION,
}


# Phases (see the theory of operation); ENDED and after: over.
CONNECTING: Final = 0  # waiting for the pool to lend a stream
SENT: Final = 1  # the request head went out; waiting for the response head
RESPONDING: Final = 2  # the response is flowing to the client
ENDED: Final = 3  # the response ended
FAILED: Final = 4
CANCELLED: Final = 5  # abandoned: the exchange no longer wants it
# Events.
_LEASED: Final = 0
_HEAD: Final = 1
_END: Final = 2
_FAIL: Final = 3
_CANCEL: Final = 4
_RECONNECT: Final = 5  # a stale pooled connection: the same try on a new one

MACHINE: Final = Machine(
    "attempt",
    states=("connecting", "sent", "responding", "ended", "failed", "cancelled"),
    events=("leased", "head", "end", "fail", "cancel", "reconnect"),
    moves={
        "connecting": {"leased": "sent", "fail": "failed", "cancel": "cancelled"},
        "sent": {"head": "responding", "reconnect": "connecting", "fail": "failed",
                 "cancel": "cancelled"},
        "responding": {"end": "ended", "fail": "failed", "cancel": "cancelled"},
    },
)


class Attempt(HasDeadline, LeaseWaiter):
    """One try of ``exchange`` on ``endpoint`` (see the module note)."""

    __slots__ = (
        "endpoint",
        "exchange",
        "feedback",
        "grpc_status",
        "overdue",
        "phase",
        "probe",
        "refusals",
        "sent_at",
        "stream",
        "wheel",
    )

    def __init__(self, exchange: Exchange, endpoint: Endpoint) -> None:
        self.exchange = exchange
        self.endpoint = endpoint
        self.phase: int = CONNECTING
        self.stream: UpstreamStream | None = None
        self.sent_at = 0.0  # when the request was handed to the pool (for the balancer)
        self.probe = False  # the circuit breaker's probe of its endpoint
        self.refusals = 0  # times the endpoint refused the stream unprocessed
        # A gRPC call's grpc-status (from a trailers-only head, or the trailers); -1: none.
        self.grpc_status = -1
        self.overdue = False  # its per-try timeout passed and it went on (hedging)
        self.deadline = 0.0  # the per-try timeout, on the timer wheel (0.0: none)
        self.wheel_slot = 0
        self.wheel: TimerWheel | None = None  # set by the forward layer when it arms one
        self.feedback: Feedback | None = None  # hears how the try went

    @property
    def over(self) -> bool:
        return self.phase >= ENDED

    # -- from the pool (LeaseWaiter) --

    def wants_lease(self) -> bool:
        return self.phase == CONNECTING and self.stream is None

    def leased(self, stream: UpstreamStream) -> None:
        """The pool lends a stream: send the request head and the body held so far."""
        self.phase = MACHINE.move(self.phase, _LEASED)
        self.stream = stream
        exchange = self.exchange
        body = exchange.take_held_body()
        stream.send_request_head(
            exchange.head, exchange.client.peer_ip, body, exchange.request_trailers,
            exchange.request_complete,
        )

    def lease_failed(self, failure: ConnectFailure) -> None:
        if self.phase == CONNECTING:
            error = _CONNECT_ERRORS.get(failure.code, errors.CONNECT_FAILED)
            reason = error.reason(endpoint=self.endpoint.address, detail=failure.detail)
            self._fail(CONNECT_FAILURE, error, reason, refused=failure.code == "connect-refused")

    # -- from the upstream stream (ResponseSink) --

    def response_informational(self, head: ResponseHead) -> None:
        if self.phase == SENT:
            self.exchange.attempt_informational(head)

    def response_head(self, head: ResponseHead) -> None:
        if self.phase != SENT:
            return
        self.phase = MACHINE.move(self.phase, _HEAD)
        if self.wheel_slot:
            self._disarm()
        exchange = self.exchange
        feedback = self.feedback
        if exchange.head.grpc:  # the verdict is the grpc-status, at the end
            self.grpc_status = grpc_status(head.headers)
        elif feedback is not None:
            feedback.responded(self, head.status < 500)
        exchange.attempt_responded(self, head)

    def response_body(self, data: bytes) -> None:
        if self.phase == RESPONDING:
            self.exchange.attempt_body(data)

    def response_end(self, trailers: Headers | None) -> None:
        if self.phase != RESPONDING:
            return
        self.phase = MACHINE.move(self.phase, _END)
        exchange = self.exchange
        stream = self.stream
        self.stream = None
        if stream is not None:
            stream.release(exchange.request_complete)
        feedback = self.feedback
        if feedback is not None:
            if exchange.head.grpc:
                if trailers:
                    code = grpc_status(trailers)
                    if code >= 0:
                        self.grpc_status = code
                # Linkerd's classification: grpc-status 0 is a success, any other a failure.
                feedback.responded(self, self.grpc_status <= 0)
            feedback.released(self)
        elif exchange.head.grpc and trailers:
            code = grpc_status(trailers)
            if code >= 0:
                self.grpc_status = code
        exchange.attempt_ended(self, trailers)

    def response_flush(self) -> None:
        if self.phase == RESPONDING:
            self.exchange.client.flush()

    def upstream_lost(self, mid_response: bool) -> None:
        """The connection closed before the response ended."""
        phase = self.phase
        if phase == SENT:
            stream = self.stream
            exchange = self.exchange
            head = exchange.head
            if (stream is not None and stream.reused and not mid_response
                    and not head.has_body and head.method in _RESENDABLE):
                # A reused keep-alive connection the endpoint had already closed: the
                # request never reached it. Send it again on a new connection.
                self.phase = MACHINE.move(self.phase, _RECONNECT)
                self.stream = None
                exchange.held = []
                self.endpoint.pool.connect(self)
                return
            self._fail(RESET, errors.UPSTREAM_RESET,
                       errors.UPSTREAM_RESET.reason(endpoint=self.endpoint.address))
        elif phase == RESPONDING:
            self._fail(RESET, errors.UPSTREAM_RESET, "the endpoint closed mid-response")

    def upstream_refused(self) -> None:
        """The endpoint never processed the request: send it again on a fresh stream (for
        any method, RFC 9113 §8.7) if its body can be sent again, a few times at most."""
        if self.phase != SENT:
            return
        exchange = self.exchange
        head = exchange.head
        replayable = not head.has_body or (exchange.request_complete
                                            and exchange.replay is not None)
        if replayable and self.refusals < MAX_REFUSALS:
            self.refusals += 1
            self.phase = MACHINE.move(self.phase, _RECONNECT)
            self.stream = None
            exchange.rewind_body()
            self.endpoint.pool.h2.lease(self)
            return
        self._fail(REFUSED_STREAM, errors.UPSTREAM_RESET,
                   errors.UPSTREAM_RESET.reason(endpoint=self.endpoint.address))

    def upstream_failed(self, reason: str) -> None:
        """The endpoint sent bytes that are not HTTP."""
        if not self.over:
            self._fail(RESET, errors.BAD_RESPONSE,
                       errors.BAD_RESPONSE.reason(endpoint=self.endpoint.address, detail=reason))

    def pause_request(self) -> None:
        self.exchange.client.pause_request()

    def resume_request(self) -> None:
        self.exchange.client.resume_request()

    # -- the per-try timer (the timer wheel) --

    def expired(self) -> None:
        if self.phase == CONNECTING or self.phase == SENT:
            self.overdue = True
            exchange = self.exchange
            if exchange.attempt_overdue(self):
                return  # hedged (or hedging waits): it goes on
            timeout = exchange.per_try_timeout
            self._fail(TIMEOUT, errors.PER_TRY_TIMEOUT,
                       errors.PER_TRY_TIMEOUT.reason(timeout=timeout))

    # -- ending --

    def cancel(self) -> None:
        """The exchange no longer wants this try (retried, its client left): no verdict."""
        self.abandon(failed=False)

    def abandon(self, failed: bool) -> None:
        """Let go of this try; ``failed``: the endpoint is blamed (it did not answer in
        time), as if the try had failed, but the exchange is not told."""
        if self.over:
            return
        responded = self.phase == RESPONDING
        self.phase = MACHINE.move(self.phase, _CANCEL)
        if self.wheel_slot:
            self._disarm()
        self._reset_stream()
        feedback = self.feedback
        if feedback is not None:
            if failed and not responded:
                feedback.failed(self, False)
            feedback.released(self)

    def _fail(self, condition: str, error: errors.ProxyError, reason: str,
              refused: bool = False) -> None:
        responded = self.phase == RESPONDING
        self.phase = MACHINE.move(self.phase, _FAIL)
        if self.wheel_slot:
            self._disarm()
        self._reset_stream()
        feedback = self.feedback
        if feedback is not None:
            if not responded or self.exchange.head.grpc:  # a gRPC verdict comes at the end
                feedback.failed(self, refused)
            feedback.released(self)
        self.exchange.attempt_failed(self, condition, error, reason)

    def _disarm(self) -> None:
        wheel = self.wheel
        assert wheel is not None
        wheel.disarm(self)

    def _reset_stream(self) -> None:
        stream = self.stream
        if stream is not None:
            self.stream = None
            stream.reset()
