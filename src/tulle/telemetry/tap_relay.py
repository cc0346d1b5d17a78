"""Tap across worker processes: a supervisor's ``/tap`` relays its workers' ``/tap``.

With ``tulle proxy --workers N`` each request is seen by one worker, so a tap of the
public admin port must listen to all of them. `WorkerTaps` is the supervisor's
`TapSource`: each client that subscribes gets, for every worker serving, a ``/tap``
stream opened on that worker's private admin port with the client's own filter and
rate, and a worker that starts later (a replacement) is tapped as soon as it serves.
The events flow into the client's one `TapSubscription`, whose token bucket holds the
merged stream to the client's rate (each worker already holds its own part to it).

While nobody taps, no stream is open, and the workers pay what a single proxy pays for
an unused tap: one attribute read per request. When the client goes, its streams are
closed. A worker that goes ends its stream; nothing is retried, the replacement is
tapped when it reports.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from tulle.telemetry.tap import TapEvent, TapFilter, TapSubscription
from tulle.telemetry.tap_client import tap_events
from tulle.telemetry.tap_stream import MAX_TAP_RATE, tap_query

log = logging.getLogger("tulle.workers")


class WorkerTaps:
    """The tap of several workers, as one `TapSource` (module note)."""

    def __init__(self, clock: Callable[[], float], workers: Callable[[], Iterable[str]]) -> None:
        self._clock = clock
        self._workers = workers  # the private admin address of each worker serving now
        self._streams: dict[TapSubscription, set[asyncio.Task[None]]] = {}

    def subscribe(
        self,
        tap_filter: TapFilter,
        deliver: Callable[[TapEvent], None],
        max_per_second: float = MAX_TAP_RATE,
    ) -> TapSubscription:
        subscription = TapSubscription(tap_filter, deliver, max_per_second, self._clock())
        self._streams[subscription] = set()
        for admin in self._workers():
            self._relay(subscription, admin)
        return subscription

    def unsubscribe(self, subscription: TapSubscription) -> None:
        for task in self._streams.pop(subscription, ()):
            task.cancel()

    def worker_serving(self, admin: str) -> None:
        """A worker (new or replaced) serves: every tap listens to it too."""
        for subscription in list(self._streams):
            self._relay(subscription, admin)

    def close(self) -> None:
        for subscription in list(self._streams):
            self.unsubscribe(subscription)

    def _relay(self, subscription: TapSubscription, admin: str) -> None:
        params = tap_query(subscription.filter, subscription.max_per_second)
        task = asyncio.get_running_loop().create_task(self._pump(subscription, admin, params))
        tasks = self._streams[subscription]
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _pump(
        self, subscription: TapSubscription, admin: str, params: dict[str, object]
    ) -> None:
        try:
            async for fields in tap_events(admin, params):
                try:
                    event = TapEvent.from_dict(fields)
                except (KeyError, TypeError, ValueError):
                    continue
                subscription.offer(event, self._clock())
        except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError) as exc:
            # The worker went (it is replaced and tapped again when it serves).
            log.debug("tap of worker %s ended: %s", admin, exc)
