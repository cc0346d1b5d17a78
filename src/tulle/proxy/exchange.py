"""One request and its response: a state machine that finishes exactly once.

An `Exchange` is made per request by the client side (`tulle.downstream`) and owns
what lives exactly as long as the request: its head, the policy the route layer chose
for it, the body held for a retry, the attempt in flight, and how it ended. It owns
the client side (`ClientStream`) and nothing else: which endpoint, how many tries, how
long to wait are decided by the layers (`tulle.proxy.layers`), which register
themselves on it on the way in and are called back on the way out; the upstream side
belongs to each `Attempt`.

Theory of operation. The states, and the event that moves each (a missing entry is a
bug in Tulle, raised as `LocalProtocolError`, h11-style)::

    ROUTING ──attempt──▶ ATTEMPTING ──response head──▶ RESPONDING ──end──▶ DONE
       ▲  │                 │   ▲  ◀── retract (nothing reached the client) ─┘   ▲
       │  └──park──▶ WAITING ◀──┘ retry (backoff) / wait for an endpoint   │
       └───resume──────┘                                                   │
    any state but DONE ── answer locally / cut / client lost ──────────────┘

    ATTEMPTING ──hedge (a second try)──▶ RACING ──settle (one try won or failed)──▶ ATTEMPTING

While ROUTING, WAITING, ATTEMPTING or RACING nothing has reached the client, so any
failure becomes a clear answer (404/502/503/504 with ``tulle-error``) or a retry; once
RESPONDING, the only honest signal left is to cut the client's connection. `finish`
runs once, on entering DONE, and is where the outcome is observed (metrics, tap).

Hedging (Envoy's ``hedge_on_per_try_timeout``). When a try's per-try timeout passes
and the retry layer allows a hedge, a second try goes to another endpoint and the
first is *not* abandoned: the exchange is RACING, with the newer try in ``attempt``
and the older in ``racing``. The first response head that is not one the retry
policy would retry wins: the race settles on it and the other try is cancelled
(freeing its endpoint). A racer that fails — or answers with a status the policy
retries — while the other runs is dropped, and the race settles on the other: that
is not the exchange's failure, and the survivor is hedged again if its own per-try
timeout has already passed. With hedging on, a per-try timeout never ends a try (the
request timeout does). Only a complete request is hedged, and only when its body was
kept for replay (or it has none), so each racer sends the whole body.

The request body: until an attempt's upstream stream is attached, body bytes are held
(the client is paused past `MAX_HELD_BODY`); after that they go straight through. A
copy of up to `MAX_REPLAY_BODY` is kept while the request may be retried, so a retry
can send the body again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from tulle.proxy import errors
from tulle.proxy.errors import ProxyError
from tulle.proxy.transitions import Machine
from tulle.resilience.retry import MAX_REPLAY_BODY
from tulle.transport.timers import HasDeadline

if TYPE_CHECKING:
    from tulle.http import Headers, RequestHead, ResponseHead
    from tulle.proxy.attempt import Attempt
    from tulle.proxy.layers.observe import Observe
    from tulle.proxy.layers.retry import Retry
    from tulle.proxy.layers.timeout import RequestTimeout
    from tulle.proxy.streams import ClientStream
    from tulle.proxy.targets import Endpoint, ServiceTarget
    from tulle.resilience import RetryPolicy
    from tulle.telemetry.metrics import ResponseStats

# Body bytes held per request while no upstream stream is attached yet; past this the
# client is paused until one is.
MAX_HELD_BODY: Final = 64 * 1024


# States (see the theory of operation).
ROUTING: Final = 0  # in the stack, on its way to an endpoint
WAITING: Final = 1  # parked: for an endpoint to become available, or a retry's backoff
ATTEMPTING: Final = 2  # an attempt is connecting or waiting for the response head
RACING: Final = 3  # two attempts (a try and its hedge) wait for the first response head
RESPONDING: Final = 4  # the response head went to the client; the body follows
DONE: Final = 5  # answered, cut, or the client left
# Events.
_ATTEMPT: Final = 0
_PARK: Final = 1
_RESUME: Final = 2
_HEAD: Final = 3
_ANSWER: Final = 4
_END: Final = 5
_LOST: Final = 6
_RETRACT: Final = 7
_HEDGE: Final = 8
_SETTLE: Final = 9

MACHINE: Final = Machine(
    "exchange",
    states=("routing", "waiting", "attempting", "racing", "responding", "done"),
    events=("attempt", "park", "resume", "head", "answer", "end", "lost", "retract", "hedge",
            "settle"),
    moves={
        "routing": {"attempt": "attempting", "park": "waiting", "answer": "done", "lost": "done"},
        "waiting": {"resume": "routing", "answer": "done", "lost": "done"},
        "attempting": {"head": "responding", "park": "waiting", "answer": "done",
                       "lost": "done", "hedge": "racing"},
        "racing": {"settle": "attempting", "answer": "done", "lost": "done"},
        "responding": {"end": "done", "answer": "done", "lost": "done",
                       "retract": "attempting"},
    },
)


class Exchange(HasDeadline):
    """One request from its head to its response's end (see the module note)."""

    __slots__ = (
        "attempt",
        "client",
        "close_after",
        "endpoint",
        "error",
        "grpc_status",
        "head",
        "held",
        "held_bytes",
        "held_head",
        "last_failure",
        "observer",
        "per_try_timeout",
        "racing",
        "racing_stats",
        "replay",
        "replay_bytes",
        "request_complete",
        "request_timeout",
        "request_trailers",
        "retry",
        "retry_after",
        "retry_policy",
        "route",
        "started_at",
        "state",
        "stats",
        "status",
        "target",
        "timeout",
        "tries",
    )

    def __init__(self, client: ClientStream, head: RequestHead, now: float) -> None:
        self.client = client
        self.head = head
        self.started_at = now
        self.state: int = ROUTING
        # Set on the way in by the layers: where it goes and under which policy.
        self.target: ServiceTarget | None = None
        self.route: ResponseStats | None = None  # the HTTPRoute rule's stats, when routed
        self.stats: ResponseStats | None = None  # where the answer is counted
        self.request_timeout: float | None = None
        self.per_try_timeout: float | None = None
        self.retry_policy: RetryPolicy | None = None
        # Layers that act on the way back register here.
        self.observer: Observe | None = None
        self.timeout: RequestTimeout | None = None
        self.retry: Retry | None = None
        self.deadline = 0.0  # the request timeout, on the timer wheel (0.0: none)
        self.wheel_slot = 0
        # Tries.
        self.attempt: Attempt | None = None
        self.racing: Attempt | None = None  # RACING: the older try, still running
        self.racing_stats: ResponseStats | None = None  # ... and where its answer counts
        self.tries = 0  # retries and hedges so far
        self.endpoint: Endpoint | None = None  # the latest attempt's (a retry avoids it)
        self.last_failure: tuple[int, str, str] | None = None  # (status, code, reason)
        # The request body.
        self.request_complete = not head.has_body
        self.request_trailers: Headers | None = None
        self.held: list[bytes] | None = []
        self.held_bytes = 0
        # A gRPC response head held until its first message or its end: a call that ends
        # at once with a retryable grpc-status is retried (Linkerd peeks the same way).
        self.held_head: ResponseHead | None = None
        self.replay: list[bytes] | None = None
        self.replay_bytes = 0
        # The outcome.
        self.status = 0
        self.error = ""
        self.grpc_status = -1  # a gRPC call's grpc-status (tulle.grpc), once known
        self.retry_after = 0  # seconds, sent as Retry-After with a 429 the proxy makes
        self.close_after = not head.keep_alive

    @property
    def finished(self) -> bool:
        return self.state == DONE

    # -- what balancers may read (tulle.balance.RequestView) --

    @property
    def client_ip(self) -> bytes:
        return self.client.peer_ip

    def header(self, name: bytes) -> bytes | None:
        return self.head.header(name)

    # -- the request body, fed by the client side --

    def request_body(self, data: bytes) -> None:
        replay = self.replay
        if replay is not None:
            self.replay_bytes += len(data)
            if self.replay_bytes > MAX_REPLAY_BODY:
                self.replay = None  # too large to send twice: no more retries
            else:
                replay.append(data)
        attempt = self.attempt
        if attempt is not None and attempt.stream is not None:
            attempt.stream.send_request_body(data)
            return
        held = self.held
        if held is None:
            return  # answered already; the rest of the body is dropped
        held.append(data)
        self.held_bytes += len(data)
        if self.held_bytes > MAX_HELD_BODY:
            self.client.pause_request()

    def request_end(self, trailers: Headers | None) -> None:
        self.request_complete = True
        self.request_trailers = trailers
        attempt = self.attempt
        if attempt is not None and attempt.stream is not None:
            attempt.stream.send_request_end(trailers)

    def keep_for_replay(self) -> None:
        """This request may be tried again: keep (up to 64 KiB of) its body."""
        if self.head.has_body and self.replay is None:
            self.replay = []

    def take_held_body(self) -> list[bytes] | None:
        """The body held until now, for the stream just attached; from now on it flows.
        The second of two racers gets the whole body kept for replay (the first took
        what was held; a request is hedged only once it is complete)."""
        held = self.held
        if held is None and self.request_complete:
            return self.replay
        self.held = None
        if self.held_bytes > MAX_HELD_BODY:
            self.client.resume_request()
        self.held_bytes = 0
        return held

    def rewind_body(self) -> None:
        """A retry sends the body again: hold what was kept for replay."""
        replay = self.replay
        self.held = list(replay) if replay else []
        self.held_bytes = self.replay_bytes if replay else 0

    # -- the way in, driven by the layers --

    def start_attempt(self, attempt: Attempt) -> None:
        self.state = MACHINE.move(self.state, _ATTEMPT)
        self.attempt = attempt

    def start_hedge(self, attempt: Attempt) -> None:
        """A hedge: ``attempt`` races the try in flight, which goes on (see the module note)."""
        self.state = MACHINE.move(self.state, _HEDGE)
        self.racing = self.attempt
        self.racing_stats = self.stats
        self.attempt = attempt

    def park(self) -> None:
        """Wait: for an endpoint to become available, or for a retry's backoff."""
        self.state = MACHINE.move(self.state, _PARK)
        self.attempt = None

    def resume(self) -> None:
        self.state = MACHINE.move(self.state, _RESUME)

    def send_continue(self) -> None:
        """Answer ``Expect: 100-continue`` once we know where the body goes."""
        if self.head.expect_continue and not self.request_complete and self.tries == 0:
            self.client.send_continue()

    # -- the way back, from the current attempt --

    def attempt_informational(self, head: ResponseHead) -> None:
        if self.state != RACING:  # while racing, which try will answer is not known yet
            self.client.send_informational(head)

    def attempt_overdue(self, attempt: Attempt) -> bool:
        """``attempt``'s per-try timeout passed: True when it goes on, hedged if the retry
        layer can send a hedge now; False when it fails as a timeout (no hedging)."""
        retry = self.retry
        if retry is None or not retry.hedges(self):
            return False
        if self.state == ATTEMPTING:  # one hedge at a time: two racers at most
            retry.hedge(self, attempt)
        return True

    def attempt_responded(self, attempt: Attempt, head: ResponseHead) -> None:
        """``attempt`` got its response head: retry it, or start the client's response."""
        retry = self.retry
        if self.state == RACING:
            assert retry is not None  # only the retry layer hedges
            status = head.status
            if status >= 500 and retry.retryable_status(self, status):
                attempt.cancel()  # a status the policy retries: this racer failed
                self._racer_failed(attempt, status, errors.UPSTREAM_STATUS.code,
                                   errors.UPSTREAM_STATUS.reason(status=status))
                return
            _let_go(self._settle(attempt))  # the first answer wins
        if retry is not None:
            if head.status >= 500 and retry.retries_status(self, attempt, head):
                return
            if self.head.grpc and retry.retries_some_grpc(self):
                code = attempt.grpc_status
                if code < 0:
                    self.held_head = head  # its grpc-status comes with the end
                    return
                if retry.retries_grpc(self, attempt, code):
                    return
        self._respond(head)

    def _respond(self, head: ResponseHead) -> None:
        self.state = MACHINE.move(self.state, _HEAD)
        if self.wheel_slot:
            self._disarm()  # the request timeout is met
        self.status = head.status
        observer = self.observer
        if observer is not None:
            observer.response_started(self)
        self.client.send_response_head(head, self)

    def attempt_body(self, data: bytes) -> None:
        held = self.held_head
        if held is not None:
            self.held_head = None
            self._respond(held)
        self.client.send_response_body(data)

    def attempt_ended(self, attempt: Attempt, trailers: Headers | None) -> None:
        """The response ended: finish (the attempt has released its stream)."""
        self.grpc_status = attempt.grpc_status
        held = self.held_head
        if held is not None:
            self.held_head = None
            retry = self.retry
            code = attempt.grpc_status
            if retry is not None and code >= 0 and retry.retries_grpc(self, attempt, code):
                return
            self._respond(held)
        if not self.request_complete:
            # The endpoint answered before the request body ended: the rest of that
            # body has nowhere to go, so this connection cannot carry another request.
            self.close_after = True
        self.attempt = None
        self.client.send_response_end(trailers)
        self.state = MACHINE.move(self.state, _END)
        self._finish()

    def attempt_failed(self, attempt: Attempt, condition: str, error: ProxyError,
                       reason: str) -> None:
        """``attempt`` failed (it has reported and released itself): retry or answer."""
        if self.state == RACING:
            self._racer_failed(attempt, error.status, error.code, reason)
            return
        self.attempt = None
        if self.state == RESPONDING:
            if not self.client.retract():
                self.cut(error.code)
                return
            # Nothing of the response reached the client (its head was still held):
            # take it back, and this is a failure like any before the head.
            self.state = MACHINE.move(self.state, _RETRACT)
            self.status = 0
        retry = self.retry
        if retry is not None and retry.attempt_failed(self, attempt, condition, error, reason):
            return
        self.answer(error.status, error.code, reason)

    # -- a race between a try and its hedge --

    def _settle(self, keep: Attempt) -> Attempt:
        """The race is over: ``keep`` goes on alone. Returns the other try."""
        self.state = MACHINE.move(self.state, _SETTLE)
        other = self.attempt
        if keep is other:
            other = self.racing
        else:  # the older try goes on: the answer counts where it went
            self.attempt = keep
            self.endpoint = keep.endpoint
            self.stats = self.racing_stats
        self.racing = None
        self.racing_stats = None
        assert other is not None
        return other

    def _racer_failed(self, attempt: Attempt, status: int, code: str, reason: str) -> None:
        """A racer failed while the other runs: that is not the exchange's failure. The
        other goes on alone, hedged again if its own per-try timeout has passed."""
        attempt.endpoint.failed_tries += 1  # the answer will not show this failure
        self.last_failure = (status, code, reason)
        survivor = self.racing if attempt is self.attempt else self.attempt
        assert survivor is not None
        self._settle(survivor)
        retry = self.retry
        if survivor.overdue and retry is not None:
            retry.hedge(self, survivor)

    # -- ending --

    def fail(self, error: ProxyError, **details: object) -> None:
        """Answer with ``error`` (or cut the client, if the response has begun)."""
        if self.state == RESPONDING:
            self.cut(error.code)
        elif self.state != DONE:
            self.answer(error.status, error.code, error.reason(**details))

    def answer(self, status: int, code: str, reason: str) -> None:
        """Send a response made by the proxy, and finish."""
        self._drop_attempt()
        self.status = status
        self.error = code
        self.held_head = None
        if not self.request_complete or status in (400, 431):
            self.close_after = True
        self.held = None
        self.state = MACHINE.move(self.state, _ANSWER)
        observer = self.observer
        if observer is not None:
            observer.response_started(self)
        self.client.send_local(status, reason, self)
        self._finish()

    def cut(self, code: str) -> None:
        """The response has begun and cannot be completed: cut the client off."""
        self._drop_attempt()
        self.error = code
        self.close_after = True
        self.state = MACHINE.move(self.state, _ANSWER)
        self.client.cut()
        self._finish()

    def client_lost(self) -> None:
        """The client went away: let go of everything, count nothing."""
        if self.state == DONE:
            return
        self._drop_attempt()
        self.state = MACHINE.move(self.state, _LOST)
        if self.wheel_slot:
            self._disarm()
        target = self.target
        if target is not None:
            target.forget_waiting(self)

    def expired(self) -> None:
        """The timer wheel: the request timeout passed (the timeout layer answers)."""
        if self.timeout is not None and self.state != DONE:
            self.timeout.expired(self)

    def abandon_tries(self) -> None:
        """The request timeout passed: every try in flight is let go of, its endpoint
        told that it did not answer in time (a hanging endpoint opens its breaker)."""
        self._drop_attempt(failed=True)

    def _drop_attempt(self, failed: bool = False) -> None:
        attempt = self.attempt
        if attempt is not None:
            self.attempt = None
            attempt.abandon(failed)
            racing = self.racing
            if racing is not None:
                self.racing = None
                self.racing_stats = None
                racing.abandon(failed)
        if self.state == WAITING and self.target is not None:
            self.target.forget_waiting(self)

    def _disarm(self) -> None:
        timeout = self.timeout
        assert timeout is not None  # only the request timeout layer arms an exchange
        timeout.wheel.disarm(self)

    def _finish(self) -> None:
        if self.wheel_slot:
            self._disarm()
        observer = self.observer
        if observer is not None:
            observer.finished(self)
        self.client.exchange_finished(self)


def _let_go(loser: Attempt) -> None:
    """Cancel the try that lost a race; if its per-try timeout had passed, its endpoint
    is told it did not answer in time (the balancer and the breaker hear a failure)."""
    if loser.overdue:
        loser.endpoint.failed_tries += 1
        loser.abandon(failed=True)
    else:
        loser.cancel()
