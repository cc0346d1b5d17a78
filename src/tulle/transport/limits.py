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

import resource
from dataclasses import dataclass
from pathlib import Path

# Descriptors the process needs besides proxied connections: listeners, admin
# and tap clients, the event loop's own, log files, manifests being read, a
# control-plane stream. Generous: a miscount here only lowers the estimate.
RESERVED_FDS = 64

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
