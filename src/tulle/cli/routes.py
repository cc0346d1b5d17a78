"""``tulle routes SERVICE``: success rate, RPS and latency per route of one service.

Rows come from the ``route`` label of the proxies' metrics (the HTTPRoute rule
a request matched). A proxy that does not export ``route`` yet, or a request
that matched no rule, shows as the one row ``[default]``, as Linkerd's
``viz routes`` does.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import click

from tulle.cli.admins import admin_options, run_window, window_option
from tulle.cli.formatting import (
    OUTPUT,
    SIGNAL_COLUMNS,
    print_json,
    print_table,
    signal_cells,
    signal_fields,
)
from tulle.cli.stat import matches_service
from tulle.telemetry.golden import GroupRow, Scrape, group_window

DEFAULT_ROUTE = "[default]"


def route_rows(
    previous: list[Scrape], current: list[Scrape], service: str, direction: str
) -> dict[Hashable, GroupRow]:
    """Rows keyed by route name."""

    def key(source: str, labels: Mapping[str, str]) -> Hashable | None:
        if labels.get("direction") != direction or not matches_service(service, labels):
            return None
        return labels.get("route") or DEFAULT_ROUTE

    return group_window(previous, current, key)


@click.command()
@click.argument("service")
@admin_options
@window_option("5s")
@click.option("--direction", default="outbound", show_default=True,
              type=click.Choice(["outbound", "inbound"]), help="Which side of the proxies.")
@OUTPUT
def routes(
    service: str, admins: list[str], names: dict[str, str], window: float, direction: str,
    output: str,
) -> None:
    """Success rate, RPS and latency per route of SERVICE."""
    previous, current = run_window(admins, names, window)
    rows = route_rows(previous, current, service, direction)
    ordered = sorted(rows.values(), key=lambda row: (row.key == DEFAULT_ROUTE, str(row.key)))
    if output == "json":
        print_json({"service": service, "windowSeconds": window,
                    "rows": [{"route": row.key, **signal_fields(row.signals)}
                             for row in ordered]})
        return
    if not ordered:
        click.echo(f"No traffic for {service} in the last {window:g}s on {', '.join(admins)}.")
        return
    print_table(["ROUTE", *SIGNAL_COLUMNS],
                [[str(row.key), *signal_cells(row.signals)] for row in ordered])
