"""The server side of ``GET /tap``: one subscriber writing JSON lines as HTTP chunks.

The admin connection hands its transport to a `TapStream` once the response head
is written. The stream subscribes to the proxy's `TapHub` with the client's
filter and a rate the server caps (`MAX_TAP_RATE`), writes every delivered event
as one chunk holding one JSON line, and unsubscribes when the client goes away —
so the request path goes back to paying nothing for tap.

A client that reads slower than events arrive does not grow the proxy's memory:
while the transport's write buffer is over `MAX_BUFFERED_BYTES`, events are
dropped (and counted) instead of queued.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs

from tulle.telemetry.tap import TapEvent, TapFilter, TapSource, TapSubscription

# Events per second one tap client may receive. The hub's token bucket enforces
# it inside the proxy; 100/s is more than a person can read and small next to
# the proxy's own throughput, so tapping a busy proxy stays cheap.
MAX_TAP_RATE = 100.0
DEFAULT_TAP_RATE = 50.0
# About a few hundred events of backlog for a slow reader; past it, drop.
MAX_BUFFERED_BYTES = 256 * 1024


def parse_tap_query(query: str) -> tuple[TapFilter, float]:
    """``service=&method=&path=&status=&rate=`` -> (filter, events per second).

    Empty values match anything. ``rate`` is capped at `MAX_TAP_RATE`.
    Raises ValueError naming the bad parameter.
    """
    params = {name: values[-1] for name, values in parse_qs(query).items() if values[-1]}
    status: int | None = None
    if "status" in params:
        if not params["status"].isdigit():
            raise ValueError(f"status must be a number, got {params['status']!r}")
        status = int(params["status"])
    rate = DEFAULT_TAP_RATE
    if "rate" in params:
        try:
            rate = float(params["rate"])
        except ValueError:
            raise ValueError(f"rate must be a number, got {params['rate']!r}") from None
        if not rate > 0:
            raise ValueError("rate must be above 0")
    tap_filter = TapFilter(
        service=params.get("service"),
        method=params.get("method"),
        path_prefix=params.get("path"),
        status=status,
    )
    return tap_filter, min(rate, MAX_TAP_RATE)


def tap_query(tap_filter: TapFilter, rate: float) -> dict[str, object]:
    """The query parameters `parse_tap_query` reads back as ``(tap_filter, rate)``."""
    return {
        "service": tap_filter.service,
        "method": tap_filter.method,
        "path": tap_filter.path_prefix,
        "status": tap_filter.status,
        "rate": rate,
    }


class TapStream:
    """One tapping client: subscribed while its connection is open."""

    def __init__(
        self, hub: TapSource, transport: asyncio.Transport, tap_filter: TapFilter, rate: float
    ) -> None:
        self._hub = hub
        self._transport = transport
        self.dropped = 0
        self._subscription: TapSubscription | None = hub.subscribe(
            tap_filter, self._deliver, max_per_second=rate
        )

    def _deliver(self, event: TapEvent) -> None:
        transport = self._transport
        if transport.is_closing():
            self.close()
            return
        if transport.get_write_buffer_size() > MAX_BUFFERED_BYTES:
            self.dropped += 1
            return
        line = json.dumps(event.to_dict(), separators=(",", ":")).encode() + b"\n"
        transport.write(b"%x\r\n%b\r\n" % (len(line), line))

    def close(self) -> None:
        """Unsubscribe (idempotent); called when the client disconnects."""
        if self._subscription is not None:
            self._hub.unsubscribe(self._subscription)
            self._subscription = None
