"""``tulle top``: the busiest paths right now, with success rate and latency, live.

Paths are not metric labels (they would explode Prometheus' series count), so
``top`` is built on tap: it reads the proxies' request stream and aggregates it
here, per (service, method, path). Tap is rate-limited inside each proxy, so
counts are of the events seen, a sample on a busy proxy; success rate and
latency percentiles are those of the sample, which is what a person needs to
see which path is failing. The table refreshes every second (rich Live) until
Ctrl-C or ``--duration``; without a terminal it is printed once at the end.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from collections import deque
from dataclasses import dataclass, field

import click
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tulle.cli.admins import admin_options
from tulle.cli.formatting import millis, percent
from tulle.cli.tap import events_until, tap_filter_options, tap_params

# Latencies kept per path for its percentiles: enough for a stable p99.
LATENCY_SAMPLE = 1000
ROWS_SHOWN = 20


@dataclass
class PathStats:
    """What tap showed of one (service, method, path)."""

    count: int = 0
    successes: int = 0
    last_status: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLE))

    def add(self, status: int, error: str, latency_ms: float) -> None:
        self.count += 1
        if status < 500 and not error:
            self.successes += 1
        self.last_status = status
        self.latencies.append(latency_ms)

    def quantile(self, q: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class PathTable:
    """Tap events aggregated per (service, method, path); the query string is dropped."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.paths: dict[tuple[str, str, str], PathStats] = {}

    def add(self, event: dict[str, object]) -> None:
        path = str(event.get("path", "")).split("?", 1)[0]
        key = (str(event.get("service") or "(unknown)"), str(event.get("method", "")), path)
        stats = self.paths.get(key)
        if stats is None:
            stats = self.paths[key] = PathStats()
        stats.add(int(event.get("status", 0)), str(event.get("error", "")),  # type: ignore[call-overload]
                  float(event.get("latency_ms", 0.0)))  # type: ignore[arg-type]

    def busiest(self, limit: int = ROWS_SHOWN) -> list[tuple[tuple[str, str, str], PathStats]]:
        return sorted(self.paths.items(), key=lambda item: (-item[1].count, item[0]))[:limit]

    def render(self, rate: float) -> Table:
        elapsed = max(1e-9, time.monotonic() - self.started)
        table = Table(title="tulle top: busiest paths (from tap)", header_style="bold",
                      caption=f"{elapsed:.0f}s; tap samples up to {rate:g} events/s per proxy")
        for column in ("SERVICE", "METHOD", "PATH", "COUNT", "RPS", "SUCCESS", "P50",
                       "P99", "LAST"):
            table.add_column(column, justify="left" if column in ("SERVICE", "METHOD", "PATH")
                             else "right", no_wrap=True,
                             overflow="fold" if column == "PATH" else "ellipsis",
                             min_width=4 if column == "LAST" else None)
        for (service, method, path), stats in self.busiest():
            table.add_row(service, method, Text(path), str(stats.count),
                          f"{stats.count / elapsed:.1f}", percent(stats.successes / stats.count),
                          millis(stats.quantile(0.5)),
                          millis(stats.quantile(0.99)), str(stats.last_status))
        return table


@click.command()
@admin_options
@tap_filter_options
def top(admins: list[str], names: dict[str, str], service: str | None, method: str | None,
        path_prefix: str | None, status: int | None, rate: float,
        duration: float | None) -> None:
    """The busiest paths (of SERVICE, or all) live, with success rate and latency."""
    params = tap_params(service, method, path_prefix, status, rate)
    table = PathTable()
    live_view = sys.stdout.isatty()
    # Without a terminal rich assumes 80 columns; the final table is for a log: widen it.
    console = Console() if live_view else Console(width=120)

    async def consume() -> None:
        async for event in events_until(admins, params, duration):
            table.add(event)

    async def run() -> None:
        if not live_view:
            await consume()
            return
        with Live(table.render(rate), console=console, refresh_per_second=2) as live:
            task = asyncio.create_task(consume())
            while not task.done():  # bounded by the consumer (duration or Ctrl-C)
                await asyncio.wait({task}, timeout=1.0)
                live.update(table.render(rate))
            task.result()

    try:
        asyncio.run(run())
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass
    if not live_view:
        console.print(table.render(rate))
