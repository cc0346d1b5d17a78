"""``tulle edges``: who calls whom, with success rate, across the given proxies.

A proxy's *outbound* metrics say "this proxy's application called dst_service":
the edge's source is the proxy, named by ``--name HOST:PORT=NAME`` or shown as
its admin address. A proxy's *inbound* metrics say "someone called the service
this proxy fronts"; the caller is only known if the metrics carry a
``src_service`` (or ``client_id``) label, otherwise it shows as ``(unmeshed
or unknown)``. Each edge says which side it was measured on, so an edge seen by
both ends appears twice rather than being counted twice.
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
    service_name,
    signal_cells,
    signal_fields,
)
from tulle.telemetry.golden import GroupRow, Scrape, group_window

UNKNOWN_SOURCE = "(unmeshed or unknown)"


def edge_rows(previous: list[Scrape], current: list[Scrape]) -> dict[Hashable, GroupRow]:
    """Rows keyed (source, destination, measured-at)."""

    def key(source: str, labels: Mapping[str, str]) -> Hashable | None:
        destination = service_name(labels.get("dst_service", ""), labels.get("dst_namespace", ""))
        direction = labels.get("direction", "")
        if direction == "outbound":
            return (source, destination, f"outbound of {source}")
        if direction == "inbound":
            caller = labels.get("src_service") or labels.get("client_id") or UNKNOWN_SOURCE
            return (caller, destination, f"inbound of {source}")
        return None

    return group_window(previous, current, key)


@click.command()
@admin_options
@window_option("5s")
@OUTPUT
def edges(admins: list[str], names: dict[str, str], window: float, output: str) -> None:
    """Who calls whom, with success rate, RPS and latency, seen from each proxy."""
    previous, current = run_window(admins, names, window)
    ordered = sorted((row for row in edge_rows(previous, current).values()
                      if row.signals.responses > 0), key=lambda row: str(row.key))
    if output == "json":
        print_json({"windowSeconds": window, "edges": [
            {"src": row.key[0], "dst": row.key[1], "seenBy": row.key[2],  # type: ignore[index]
             **signal_fields(row.signals)} for row in ordered]})
        return
    if not ordered:
        click.echo(f"No traffic in the last {window:g}s on {', '.join(admins)}.")
        return
    print_table(["SRC", "DST", "SEEN_BY", *SIGNAL_COLUMNS],
                [[*map(str, row.key), *signal_cells(row.signals)]  # type: ignore[call-overload]
                 for row in ordered])
