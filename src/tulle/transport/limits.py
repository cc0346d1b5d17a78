"""The open-files limit: raised to its ceiling at start, and said out loud.

Every proxied connection holds two file descriptors (the client's and the
upstream's), so the soft ``RLIMIT_NOFILE`` — 1024 by default on most Linux
systems — caps a proxy near 500 concurrent connections while the hard limit
usually allows far more. Raising the soft limit to the hard one needs no
privilege; HAProxy and nginx (``worker_rlimit_nofile``) do the same. The log
line at start tells the operator how many connections that leaves room for,
so running out of descriptors is never a surprise.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Sized
from dataclasses import dataclass
from pathlib import Path

# Descriptors the process needs besides proxied connections: listeners, admin
# and tap clients, the event loop's own, log files, manifests being read, a
# control-plane stream. Generous: a miscount here only lowers the estimate.
RESERVED_FDS = 64

# Descriptors kept free beyond those open at start, when the client-connection budget is
# worked out (a reload reading manifests, a tap client, a control-plane reconnect).
HEADROOM_FDS = 16

# Linux refuses a soft limit above fs.nr_open even when the hard one is unlimited.
_NR_OPEN = Path("/proc/sys/fs/nr_open")


@dataclass(frozen=True, slots=True)
class FileLimit:
    """The soft open-files limit before and after raising it."""

    before: int
    after: int

    def describe(self) -> str:
        """One line for the start-up log."""
        if self.after == resource.RLIM_INFINITY:
            return "open files: no limit"
        how = f"raised from {self.before}" if self.after > self.before else "not raised"
        return (f"open files limit {self.after} ({how}): room for about "
                f"{connections_allowed(self.after)} proxied connections (two descriptors each)")


def connections_allowed(limit: int) -> int:
    """How many proxied connections (two descriptors each) ``limit`` leaves room for."""
    return max(0, (limit - RESERVED_FDS) // 2)


def raise_open_files_limit() -> FileLimit:
    """Raise the soft RLIMIT_NOFILE to the hard limit (best effort; never raises)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return FileLimit(soft, soft)
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            target = int(_NR_OPEN.read_text())
        except (OSError, ValueError):
            return FileLimit(soft, soft)
    if soft >= target:
        return FileLimit(soft, soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError):
        return FileLimit(soft, soft)
    return FileLimit(soft, target)


class LogLimit:
    """At most one log line per ``interval`` seconds for one kind of trouble."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._last = -interval

    def allow(self, now: float) -> bool:
        if now - self._last >= self.interval:
            self._last = now
            return True
        return False


class ConnectionBudget:
    """How many client connections every listener together may hold (issue 15 #4).

    Each client connection needs its own descriptor and, while it is proxied, an
    upstream one. Past the open-files limit an accept fails with EMFILE, which libuv
    answers by closing the pending connections unseen; this budget refuses a client
    before that, so that the refusal is counted and logged and the descriptors left
    stay for the connections already being served. HAProxy's ``maxconn``, derived from
    ``ulimit -n``, is the same idea.
    """

    __slots__ = ("_held", "limit", "log")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.log = LogLimit()
        self._held: list[Sized] = []  # each listener's set of open connections

    @classmethod
    def from_open_files_limit(cls) -> ConnectionBudget:
        """The room the current soft limit leaves after the descriptors open now."""
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY:
            return cls(0)
        try:
            open_now = len(os.listdir("/proc/self/fd"))
        except OSError:
            open_now = RESERVED_FDS
        return cls(max(1, (soft - open_now - HEADROOM_FDS) // 2))

    def watch(self, connections: Sized) -> None:
        """Count ``connections`` (a listener's open connections) against the budget."""
        self._held.append(connections)

    def full(self) -> bool:
        """No room for another client connection (never, when ``limit`` is 0)."""
        if not self.limit:
            return False
        held = 0
        for connections in self._held:
            held += len(connections)
        return held >= self.limit
