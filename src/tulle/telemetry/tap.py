"""Tap: a live feed of the requests a proxy handles, for ``tulle tap`` and the dashboard.

The request path pays one attribute read per request while nobody taps
(`TapHub.active` is False). When someone does, each finished exchange becomes a
`TapEvent` offered to every subscriber whose filter matches, within that
subscriber's rate limit, so tapping cannot flood the proxy or the client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Protocol


@dataclass(frozen=True, slots=True)
class TapEvent:
    """One request and its response, as the proxy saw it."""

    direction: str
    service: str
    namespace: str
    endpoint: str
    method: str
    authority: str
    path: str
    status: int
    latency_ms: float
    error: str
    at: float  # wall-clock seconds since the epoch, when the response ended
    grpc_status: int = -1  # a gRPC call's grpc-status (-1: not a gRPC response)
    # The peer's identity over mutual TLS ("": plaintext): inbound the client's, outbound
    # the endpoint's.
    identity: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> TapEvent:
        """The event `to_dict` gave (keys it did not give are ignored); raises
        TypeError or ValueError for anything else."""
        return cls(**{field.name: data[field.name] for field in fields(cls)  # type: ignore[arg-type]
                      if field.name in data})


@dataclass(frozen=True, slots=True)
class TapFilter:
    """Which events a subscriber wants; None matches anything."""

    service: str | None = None
    method: str | None = None
    path_prefix: str | None = None
    status: int | None = None

    def matches(self, event: TapEvent) -> bool:
        return (
            (self.service is None or self.service in (event.service,
                                                      f"{event.service}.{event.namespace}"))
            and (self.method is None or self.method.upper() == event.method)
            and (self.path_prefix is None or event.path.startswith(self.path_prefix))
            and (self.status is None or self.status == event.status)
        )


class TapSubscription:
    """One tapping client: its filter, its rate limit, and where events go."""

    __slots__ = ("_allowance", "_last", "deliver", "dropped", "filter", "max_per_second")

    def __init__(
        self,
        tap_filter: TapFilter,
        deliver: Callable[[TapEvent], None],
        max_per_second: float,
        now: float,
    ) -> None:
        self.filter = tap_filter
        self.deliver = deliver
        self.max_per_second = max_per_second
        self.dropped = 0
        self._allowance = max_per_second
        self._last = now

    def offer(self, event: TapEvent, now: float) -> None:
        """Deliver ``event`` if it matches and the token bucket has a token."""
        if not self.filter.matches(event):
            return
        self._allowance = min(
            self.max_per_second, self._allowance + (now - self._last) * self.max_per_second
        )
        self._last = now
        if self._allowance < 1.0:
            self.dropped += 1
            return
        self._allowance -= 1.0
        self.deliver(event)


class TapSource(Protocol):
    """Where a /tap stream subscribes: a proxy's `TapHub`, or a supervisor's relay of
    its workers' taps (`tulle.telemetry.tap_relay`)."""

    def subscribe(
        self,
        tap_filter: TapFilter,
        deliver: Callable[[TapEvent], None],
        max_per_second: float = ...,
    ) -> TapSubscription: ...

    def unsubscribe(self, subscription: TapSubscription) -> None: ...


class TapHub:
    """The subscribers of one proxy process."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._subscriptions: list[TapSubscription] = []
        self.active = False

    def subscribe(
        self,
        tap_filter: TapFilter,
        deliver: Callable[[TapEvent], None],
        max_per_second: float = 100.0,
    ) -> TapSubscription:
        subscription = TapSubscription(tap_filter, deliver, max_per_second, self._clock())
        self._subscriptions.append(subscription)
        self.active = True
        return subscription

    def unsubscribe(self, subscription: TapSubscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)
        self.active = bool(self._subscriptions)

    def publish(self, event: TapEvent) -> None:
        now = self._clock()
        for subscription in list(self._subscriptions):
            subscription.offer(event, now)
