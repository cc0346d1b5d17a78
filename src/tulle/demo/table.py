"""The demo's table: golden signals per service and per endpoint, as a rich ``Table``.

Rows come from a :class:`tulle.telemetry.scrape.Window` — the proxy's own
counters over the last second — so the table shows what the mesh measured, the
same numbers Prometheus would. Every endpoint the demo configured gets a row
even before it has traffic, in manifest order, so rows do not jump around.
SHARE is each endpoint's part of the service's responses: where the balancer sent
the traffic (the slow endpoint's should be small, docs/demo.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich import box
from rich.table import Table

from tulle.telemetry.scrape import Signals, Target, Window

__all__ = ["EndpointRow", "build_table"]

# (endpoint address, a few words on what the demo made it do)
EndpointRow = tuple[str, str]

NO_VALUE = "-"


def _rate(value: float | None) -> str:
    return NO_VALUE if value is None else f"{value * 100:.2f}%"


def _ms(value: float | None) -> str:
    if value is None:
        return NO_VALUE
    return f"{value:.1f}ms" if value < 9.95 else f"{value:.0f}ms"  # never "10.0ms"


def _share(signals: Signals | None, total: Signals | None) -> str:
    if total is None or total.responses <= 0:
        return NO_VALUE
    responses = 0.0 if signals is None else signals.responses
    return f"{responses / total.responses * 100:.0f}%"


def _cells(signals: Signals | None, total: Signals | None) -> list[str]:
    if signals is None:
        return ["0.0", _share(None, total), NO_VALUE, NO_VALUE, NO_VALUE, NO_VALUE]
    return [
        f"{signals.rps:.1f}",
        _share(signals, total),
        _rate(signals.success_rate),
        _ms(signals.p50),
        _ms(signals.p95),
        _ms(signals.p99),
    ]


def build_table(
    window: Window | None,
    service: Target,
    endpoints: Sequence[EndpointRow],
    title: str,
    ascii_only: bool = False,
) -> Table:
    """A table for ``service`` (a Target with endpoint ``""``) and its endpoints.

    ``window`` may be None before the second scrape: the rows are shown empty.
    Responses the proxy made itself (no endpoint) get their own row when there
    are any, since they are part of the service's success rate.
    """
    table = Table(
        title=title,
        box=box.ASCII if ascii_only else box.SIMPLE_HEAVY,
        title_justify="left",
        pad_edge=False,
    )
    # Sized to fit an 80-column terminal with roles of up to ~10 characters (a test
    # checks): no padding at the edges, "6.5ms" rather than "6.5 ms".
    table.add_column("NAME", no_wrap=True)
    table.add_column("ROLE", no_wrap=True)
    for heading in ("RPS", "SHARE", "SUCCESS", "P50", "P95", "P99"):
        table.add_column(heading, justify="right", no_wrap=True)

    by_endpoint: Mapping[Target, Signals] = window.endpoints if window else {}
    services: Mapping[Target, Signals] = window.services if window else {}
    total = services.get(service)
    table.add_row(service.service, "total", *_cells(total, total), style="bold")
    for address, role in endpoints:
        signals = by_endpoint.get(service._replace(endpoint=address))
        table.add_row(f"  {address}", role, *_cells(signals, total))
    own = by_endpoint.get(service)
    if own is not None and own.responses > 0:
        table.add_row("  (proxy)", "by proxy", *_cells(own, total))
    return table
