"""Backoff: growing windows, jitter inside them, reset after success."""

from __future__ import annotations

from tulle.discovery.backoff import Backoff


def test_windows_grow_to_the_cap_and_jitter_within_the_upper_half() -> None:
    asked: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        asked.append((low, high))
        return high

    backoff = Backoff(base=0.1, cap=1.0, uniform=uniform)
    delays = [backoff.next() for _ in range(6)]
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert all(low == high / 2 for low, high in asked)
    backoff.reset()
    assert backoff.next() == 0.1


def test_real_jitter_spreads_delays() -> None:
    delays = {round(Backoff(base=1.0, cap=10.0).next(), 6) for _ in range(50)}
    assert len(delays) > 40
    assert all(0.5 <= delay <= 1.0 for delay in delays)
