"""A process's memory and open descriptors over time, and how fast they grow.

The soak and the socket fuzzer sample the proxy once a second; a leak shows as a
slope. `slope` is the least-squares line through the samples, so one noisy
sample moves it little, and a warm-up (caches, pools, the allocator's arenas
filling) can be left out by starting the fit later.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # seconds since the watch started
    rss_kib: int
    fds: int


def sample(pid: int) -> tuple[int, int]:
    """(resident KiB, open descriptors) of process ``pid`` now."""
    rss = 0
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
                break
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points (y per unit of x); 0 for fewer than two."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


@dataclass
class ResourceWatch:
    """Samples one process; call `take` about once a second."""

    pid: int
    started: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)

    def take(self) -> Sample:
        rss, fds = sample(self.pid)
        taken = Sample(time.monotonic() - self.started, rss, fds)
        self.samples.append(taken)
        return taken

    def after(self, warmup: float) -> list[Sample]:
        return [s for s in self.samples if s.at >= warmup]

    def rss_slope_kib_per_min(self, warmup: float = 0.0) -> float:
        return 60 * slope([(s.at, s.rss_kib) for s in self.after(warmup)])

    def fd_slope_per_min(self, warmup: float = 0.0) -> float:
        return 60 * slope([(s.at, s.fds) for s in self.after(warmup)])
