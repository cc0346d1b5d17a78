"""Many simulated proxies in one process: raw asyncio subscribers to ``/v1/watch``.

A :class:`Fleet` opens N connections to the control plane's destination API and
reads the JSON-lines stream the way a proxy would, minus the proxy: no
``json.loads`` and no ``Config`` rebuilt, because N full parses per change in one
Python process would measure the bench, not the control plane. Each line is
instead searched for the *markers* of the changes made so far (bytes that appear
in a snapshot only once that change is in it) and the arrival time of the first
line carrying each marker is recorded, per subscriber.

The time is taken in ``data_received`` when the line's last byte arrives, before
any searching, so the search cost of other subscribers delays a reading only by
the event loop's turn, not by its own work.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

CONNECT_BATCH = 100  # connections opened at once (the server's listen backlog is 100)


@dataclass
class Change:
    """One change the bench made: the marker it put in the snapshot, and when."""

    marker: bytes
    at: float  # time.monotonic() just after the change was made


@dataclass
class FleetState:
    """What every subscriber shares: the changes made so far."""

    changes: list[Change] = field(default_factory=list)
    closing: bool = False  # the bench is closing the connections itself


class Watcher(asyncio.Protocol):
    """One simulated proxy: collects lines, records when each change's marker arrives."""

    def __init__(self, state: FleetState, name: str) -> None:
        self.state = state
        self.name = name
        self.transport: asyncio.Transport | None = None
        self.snapshots = 0
        self.bytes = 0
        self.received: dict[int, float] = {}  # change number -> arrival time
        self.lost_early = False  # the server closed it before the bench did
        self._pieces: list[bytes] = []
        self._next = 0  # every change before this one has been seen

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(f"GET /v1/watch?proxy={self.name} HTTP/1.1\r\nHost: control\r\n"
                        "\r\n".encode())

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.bytes += len(data)
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                if start < len(data):
                    self._pieces.append(data[start:])
                return
            self._pieces.append(data[start:end])
            line = b"".join(self._pieces)
            self._pieces = []
            self._line(line, now)
            start = end + 1

    def _line(self, line: bytes, now: float) -> None:
        # Chunk framing and the response head ride along in the line; harmless here.
        if b'"type":"snapshot"' not in line:
            return
        self.snapshots += 1
        changes = self.state.changes
        for number in range(self._next, len(changes)):
            if number not in self.received and changes[number].marker in line:
                self.received[number] = now
        while self._next in self.received:
            self._next += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_early = not self.state.closing


@dataclass
class Fleet:
    """N watchers against one control plane."""

    state: FleetState
    watchers: list[Watcher]

    @classmethod
    async def connect(cls, host: str, port: int, count: int, timeout: float = 60.0) -> Fleet:
        """Open ``count`` subscriptions; return once every one has its first snapshot."""
        loop = asyncio.get_running_loop()
        state = FleetState()
        watchers: list[Watcher] = []
        for first in range(0, count, CONNECT_BATCH):
            names = [f"sim-{i}" for i in range(first, min(count, first + CONNECT_BATCH))]
            made = await asyncio.gather(*(
                loop.create_connection(lambda n=n: Watcher(state, n), host, port)  # type: ignore[misc]
                for n in names))
            watchers += [protocol for _, protocol in made]
        fleet = cls(state, watchers)
        deadline = loop.time() + timeout
        while not all(w.snapshots for w in watchers):
            if loop.time() > deadline:
                waiting = sum(1 for w in watchers if not w.snapshots)
                raise TimeoutError(f"{waiting} of {count} subscribers had no snapshot "
                                   f"after {timeout:g} s")
            await asyncio.sleep(0.05)
        return fleet

    def mark(self, marker: bytes) -> None:
        """Record that a change carrying ``marker`` was just made."""
        self.state.changes.append(Change(marker, time.monotonic()))

    def all_received(self) -> bool:
        total = len(self.state.changes)
        return all(len(w.received) >= total for w in self.watchers)

    async def settle(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for every subscriber to have seen every change."""
        deadline = time.monotonic() + timeout
        while not self.all_received() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def delays(self) -> list[float]:
        """Seconds from each change to its arrival, per subscriber and change."""
        changes = self.state.changes
        return [at - changes[n].at for w in self.watchers for n, at in w.received.items()]

    def missing(self) -> int:
        """(subscriber, change) pairs never received."""
        total = len(self.state.changes)
        return sum(total - len(w.received) for w in self.watchers)

    def disconnected(self) -> int:
        return sum(1 for w in self.watchers if w.lost_early)

    def close(self) -> None:
        self.state.closing = True
        for watcher in self.watchers:
            if watcher.transport is not None:
                with contextlib.suppress(Exception):
                    watcher.transport.close()
