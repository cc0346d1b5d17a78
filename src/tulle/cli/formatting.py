"""How the monitoring commands print numbers: the same way everywhere.

Success rate as a percentage with two decimals (99.50%), rates with one decimal,
latencies in milliseconds, and "-" for a value the window has none of (no
responses, no latency observed). ``-o json`` prints the same rows as objects,
with numbers unrounded and None as null.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tulle.telemetry.scrape import Signals

OUTPUT = click.option(
    "-o", "--output", default="table", show_default=True,
    type=click.Choice(["table", "wide", "json"]),
    help="table, wide (one row per endpoint where it applies) or json.",
)
SIGNAL_COLUMNS = ("SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99")


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def rate(value: float) -> str:
    return f"{value:.1f}"


def millis(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}ms" if value >= 10 else f"{value:.1f}ms"


def signal_cells(signals: Signals) -> list[str]:
    return [percent(signals.success_rate), rate(signals.rps), millis(signals.p50),
            millis(signals.p95), millis(signals.p99)]


def signal_fields(signals: Signals) -> dict[str, object]:
    """The JSON form of a row's signals."""
    return {
        "successRate": signals.success_rate,
        "rps": signals.rps,
        "successes": signals.successes,
        "failures": signals.failures,
        "latencyMs": {"p50": signals.p50, "p95": signals.p95, "p99": signals.p99},
    }


def print_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A plain table (no box), as ``kubectl``/``linkerd viz`` print, to stdout."""
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # text, not markup: "[default]"
    # As wide as the widest cell of each column needs: nothing is cut (a SPIFFE ID in
    # ``tulle edges -o wide`` is longer than any header).
    widths = [max([len(column), *(len(row[index]) for row in rows)])
              for index, column in enumerate(columns)]
    Console(width=max(80, sum(width + 2 for width in widths))).print(table)


def print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2))


def service_name(service: str, namespace: str) -> str:
    """``web`` (namespace default), ``web.shop``, or ``(unknown)`` for no service."""
    if not service:
        return "(unknown)"
    return service if namespace in ("", "default") else f"{service}.{namespace}"
