"""Exponential backoff with jitter, for reconnecting watches and streams.

Every proxy reconnecting to a restarted control plane, or every watch retrying a
restarted API server, at the same instants would hit it in waves. Each delay is
drawn uniformly from the upper half of an exponentially growing window (the
"equal jitter" of the AWS architecture note), so retries spread out while the
wait still grows: base, 2×base, 4×base … up to ``cap``.
"""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays before successive retries; ``reset()`` after a success."""

    def __init__(self, base: float = 0.1, cap: float = 10.0,
                 uniform: Callable[[float, float], float] | None = None) -> None:
        self.base = base
        self.cap = cap
        self._uniform = uniform or random.uniform
        self.attempts = 0

    def next(self) -> float:
        window = min(self.cap, self.base * (2 ** min(self.attempts, 30)))
        self.attempts += 1
        return self._uniform(window / 2, window)

    def reset(self) -> None:
        self.attempts = 0
